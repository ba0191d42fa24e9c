//! The bytes of a snapshot as openraft moves them: sent in chunks read from a seekable
//! stream, received in chunks written to one. A snapshot is sent straight from the files
//! it lives in — the state file, then the audit trail up to the snapshot's cut — so
//! sending never copies the history; it is received into a single file.

use std::fs::File;
use std::io::{self, SeekFrom};
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// openraft's `SnapshotData` for this vault.
pub enum SnapshotData {
    /// A snapshot being sent: its parts, read in order.
    Sending(Parts),
    /// A snapshot being received, into this file.
    Receiving(tokio::fs::File),
}

/// Prefixes of files read as one stream: `(file, bytes of it)` in order.
pub struct Parts {
    parts: Vec<(File, u64)>,
    position: u64,
}

impl Parts {
    pub fn new(parts: Vec<(File, u64)>) -> Self {
        Parts { parts, position: 0 }
    }

    pub fn len(&self) -> u64 {
        self.parts.iter().map(|(_, length)| length).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads at the current position, from whichever part holds it. The files are
    /// local, so the read is made in place rather than on a blocking thread.
    fn read(&mut self, buf: &mut ReadBuf<'_>) -> io::Result<()> {
        let mut start = 0;
        for (file, length) in &self.parts {
            let end = start + length;
            if self.position < end {
                let wanted = (end - self.position).min(buf.remaining() as u64) as usize;
                let target = &mut buf.initialize_unfilled()[..wanted];
                let read = file.read_at(target, self.position - start)?;
                if read == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "a snapshot file is shorter than its cut",
                    ));
                }
                buf.advance(read);
                self.position += read as u64;
                return Ok(());
            }
            start = end;
        }
        Ok(())
    }

    fn seek(&mut self, to: SeekFrom) -> io::Result<()> {
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.len().checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        self.position = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(())
    }
}

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "a snapshot being sent cannot be written")
}

impl AsyncRead for SnapshotData {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Sending(parts) => Poll::Ready(parts.read(buf)),
            SnapshotData::Receiving(file) => Pin::new(file).poll_read(cx, buf),
        }
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        match self.get_mut() {
            SnapshotData::Sending(parts) => parts.seek(position),
            SnapshotData::Receiving(file) => Pin::new(file).start_seek(position),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            SnapshotData::Sending(parts) => Poll::Ready(Ok(parts.position)),
            SnapshotData::Receiving(file) => Pin::new(file).poll_complete(cx),
        }
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SnapshotData::Sending(_) => Poll::Ready(Err(read_only())),
            SnapshotData::Receiving(file) => Pin::new(file).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Sending(_) => Poll::Ready(Ok(())),
            SnapshotData::Receiving(file) => Pin::new(file).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Sending(_) => Poll::Ready(Ok(())),
            SnapshotData::Receiving(file) => Pin::new(file).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tokio::io::{AsyncReadExt, AsyncSeekExt};

    use super::*;

    fn file_with(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    #[tokio::test]
    async fn parts_read_as_one_stream_of_their_prefixes() {
        let parts = Parts::new(vec![(file_with(b"state"), 5), (file_with(b"trail and more"), 9)]);
        let mut data = SnapshotData::Sending(parts);
        assert_eq!(data.seek(SeekFrom::End(0)).await.unwrap(), 14);
        data.seek(SeekFrom::Start(0)).await.unwrap();
        let mut all = Vec::new();
        data.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"statetrail and");
        data.seek(SeekFrom::Start(3)).await.unwrap();
        let mut chunk = vec![0; 4];
        data.read_exact(&mut chunk).await.unwrap();
        assert_eq!(chunk, b"tetr");
        assert!(tokio::io::AsyncWriteExt::write_all(&mut data, b"x").await.is_err());
    }

    #[tokio::test]
    async fn a_part_shorter_than_its_cut_is_an_error_not_an_end() {
        let mut data = SnapshotData::Sending(Parts::new(vec![(file_with(b"abc"), 10)]));
        let mut all = Vec::new();
        assert!(data.read_to_end(&mut all).await.is_err());
    }
}
