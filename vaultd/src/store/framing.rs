//! The record format of the vault's append-only files, the Raft log's segments and the
//! audit trail: `u32` length of the payload, `u32` CRC-32 of index and payload, `u64`
//! index (all little-endian), then the payload. The checksum tells a record a crash cut
//! short, or a damaged one, from a whole one.

use super::StoreError;

/// Bytes before a record's payload.
pub const HEADER: usize = 16;

/// Appends a record of `payload` under `index` to `out`.
pub fn push_record(out: &mut Vec<u8>, index: u64, payload: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(payload.len()).map_err(|_| StoreError::Encoding)?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(index, payload).to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// One whole record at the start of `bytes` whose checksum matches: its index, its
/// payload and what follows it.
pub fn split_record(bytes: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let (header, rest) = bytes.split_first_chunk::<HEADER>()?;
    let (len, crc, index) = split_header(header);
    let (payload, after) = rest.split_at_checked(len as usize)?;
    (checksum(index, payload) == crc).then_some((index, payload, after))
}

/// A header's payload length, checksum and index.
pub fn split_header(header: &[u8; HEADER]) -> (u32, u32, u64) {
    let word = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let mut index = [0u8; 8];
    index.copy_from_slice(&header[8..16]);
    (word(0), word(4), u64::from_le_bytes(index))
}

/// The CRC-32 a record of `payload` under `index` carries.
pub fn checksum(index: u64, payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&index.to_le_bytes());
    crc.update(payload);
    crc.finalize()
}
