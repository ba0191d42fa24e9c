//! A minimal HTTP/1.1 keep-alive client: one TCP connection (plain, or TLS with rustls
//! when the server's API speaks HTTPS), one request in flight.
//!
//! The load generator shares the machine's two cores with the server it measures, so
//! every cycle the client spends is a cycle the server does not get. A general-purpose
//! client (pooling, redirects, header maps) costs noticeably more per request than
//! writing a prepared request and scanning the reply for its status and length, which is
//! all a benchmark needs. The trivial-handler run shows the ceiling this client reaches.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Largest response head accepted; anything longer is treated as a broken reply.
const MAX_HEAD: usize = 64 * 1024;

/// Where a server listens and how to talk to it: plain HTTP, or HTTPS trusting its CA.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub tls: Option<TlsConnector>,
}

impl Endpoint {
    /// Its base URL, `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.addr)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

/// A TLS client (rustls, ring) that trusts only the CA certificates of `ca_pem`.
pub fn tls_connector(ca_pem: &str) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The byte stream under a connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(stream) => stream.write_all(bytes).await,
            Stream::Tls(stream) => {
                stream.write_all(bytes).await?;
                // rustls holds the records until flushed.
                stream.flush().await
            }
        }
    }

    async fn read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.read_buf(buf).await,
            Stream::Tls(stream) => stream.read_buf(buf).await,
        }
    }
}

/// One keep-alive connection to a server.
pub struct Connection {
    stream: Stream,
    buf: Vec<u8>,
    /// Bytes of `buf` that belong to the last response (dropped before the next one).
    consumed: usize,
    /// Where the last response's body lies in `buf`.
    body: (usize, usize),
    /// The server asked to close the connection after the last response.
    closing: bool,
}

/// The parts of a response head the client acts on.
struct Head {
    status: u16,
    length: BodyLength,
    close: bool,
    end: usize,
}

enum BodyLength {
    Fixed(usize),
    Chunked,
    /// Neither header: HTTP/1.1 says the body runs until the connection closes.
    UntilClose,
}

impl Connection {
    /// Connects (and, for HTTPS, completes the TLS handshake).
    pub async fn connect(endpoint: &Endpoint) -> io::Result<Self> {
        let tcp = TcpStream::connect(endpoint.addr).await?;
        tcp.set_nodelay(true)?;
        let stream = match &endpoint.tls {
            None => Stream::Plain(tcp),
            Some(connector) => {
                Stream::Tls(Box::new(connector.connect(ServerName::from(endpoint.addr.ip()), tcp).await?))
            }
        };
        Ok(Connection { stream, buf: Vec::with_capacity(8192), consumed: 0, body: (0, 0), closing: false })
    }

    /// Whether the server said it will close this connection; reconnect before reuse.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// The body of the last response (dechunked only when it was sent in one chunk).
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.0..self.body.1]
    }

    /// Writes a complete request and reads the whole response; returns its status code.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<u16> {
        self.buf.drain(..self.consumed);
        self.consumed = 0;
        self.body = (0, 0);
        self.stream.write_all(request).await?;
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("response head too long"));
            }
            self.fill().await?;
        };
        self.closing = head.close;
        match head.length {
            BodyLength::Fixed(length) => {
                let end = head.end + length;
                while self.buf.len() < end {
                    self.fill().await?;
                }
                self.body = (head.end, end);
                self.consumed = end;
            }
            BodyLength::Chunked => self.read_chunked(head.end).await?,
            BodyLength::UntilClose => {
                while self.fill_or_eof().await? {}
                self.body = (head.end, self.buf.len());
                self.consumed = self.buf.len();
                self.closing = true;
            }
        }
        Ok(head.status)
    }

    /// Reads a chunked body starting at `start`; records the first chunk as the body.
    async fn read_chunked(&mut self, start: usize) -> io::Result<()> {
        let mut at = start;
        let mut first = true;
        loop {
            let line_end = loop {
                if let Some(offset) = find(&self.buf[at..], b"\r\n") {
                    break at + offset;
                }
                self.fill().await?;
            };
            let size_text = std::str::from_utf8(&self.buf[at..line_end]).map_err(|_| invalid("chunk size"))?;
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("chunk size"))?;
            let data = line_end + 2;
            if size == 0 {
                // No trailers are expected; the body ends with an empty line.
                while self.buf.len() < data + 2 {
                    self.fill().await?;
                }
                self.consumed = data + 2;
                return Ok(());
            }
            while self.buf.len() < data + size + 2 {
                self.fill().await?;
            }
            if first {
                self.body = (data, data + size);
                first = false;
            }
            at = data + size + 2;
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.fill_or_eof().await? {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"))
        }
    }

    /// Reads more bytes; false at end of stream.
    async fn fill_or_eof(&mut self) -> io::Result<bool> {
        self.buf.reserve(8192);
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }
}

fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let Some(head_len) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..head_len]).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("not an HTTP/1.x response"));
    }
    let status = parts.next().and_then(|code| code.parse().ok()).ok_or_else(|| invalid("status code"))?;
    let mut length = BodyLength::UntilClose;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = BodyLength::Fixed(value.parse().map_err(|_| invalid("content-length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            length = BodyLength::Chunked;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    // Responses that never carry a body.
    if status == 204 || status == 304 || (100..200).contains(&status) {
        length = BodyLength::Fixed(0);
    }
    Ok(Some(Head { status, length, close, end: head_len + 4 }))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed response: {what}"))
}

/// Builds request bytes into a reusable buffer.
pub fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) {
    use std::io::Write;
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    match body {
        Some(body) => {
            let _ = write!(out, "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
            out.extend_from_slice(body);
        }
        None => out.extend_from_slice(b"\r\n"),
    }
}

/// One request with vaultd's token header on a fresh connection, answered within
/// `timeout`: the status and the body (for admin requests, not for load).
pub async fn exchange(
    endpoint: &Endpoint,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    use anyhow::Context;
    let mut request = Vec::new();
    let headers = [("X-Bunker-Token", token)];
    let addr = endpoint.addr;
    write_request(&mut request, method, path, &addr.to_string(), &headers, body.map(str::as_bytes));
    let exchange = async {
        let mut connection = Connection::connect(endpoint).await?;
        let status = connection.send(&request).await?;
        io::Result::Ok((status, String::from_utf8_lossy(connection.body()).into_owned()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{method} {path} on {endpoint}: no answer within {timeout:?}"))?
        .with_context(|| format!("{method} {path} on {endpoint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixed_length_head() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\nhello";
        let head = parse_head(raw).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert!(matches!(head.length, BodyLength::Fixed(5)));
        assert!(!head.close);
        assert_eq!(&raw[head.end..], b"hello");
    }

    #[test]
    fn incomplete_head_needs_more_bytes() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap().is_none());
    }

    #[test]
    fn chunked_and_close_are_recognised() {
        let raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        let head = parse_head(raw).unwrap().unwrap();
        assert_eq!(head.status, 404);
        assert!(matches!(head.length, BodyLength::Chunked));
        assert!(head.close);
    }

    #[test]
    fn request_has_length_and_body() {
        let mut out = Vec::new();
        write_request(&mut out, "POST", "/v1/user", "h:1", &[("X-Bunker-Token", "DEMO")], Some(b"{}"));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("POST /v1/user HTTP/1.1\r\nHost: h:1\r\nX-Bunker-Token: DEMO\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"));
    }

    #[tokio::test]
    async fn reads_chunked_and_pipelined_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .await
                .unwrap();
            let _ = socket.read(&mut buf).await.unwrap();
            socket.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
        });
        let mut connection = Connection::connect(&Endpoint { addr, tls: None }).await.unwrap();
        assert_eq!(connection.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap(), 200);
        assert_eq!(connection.body(), b"abc");
        assert_eq!(connection.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap(), 201);
        assert_eq!(connection.body(), b"ok");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn speaks_https_to_a_server_its_ca_signed_and_refuses_another() {
        use rustls::pki_types::PrivateKeyDer;
        let ca = strongroom_testkit::tls::Ca::new("bench test CA").unwrap();
        let leaf = ca.issue_server("server").unwrap();
        let certs = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            // The stranger's handshake fails on its side; the trusting client is served.
            for _ in 0..2 {
                let (socket, _) = listener.accept().await.unwrap();
                let Ok(mut tls) = acceptor.accept(socket).await else { continue };
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await.unwrap();
                tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
                tls.flush().await.unwrap();
            }
        });
        let stranger = strongroom_testkit::tls::Ca::new("another CA").unwrap();
        let refused = Connection::connect(&Endpoint { addr, tls: Some(tls_connector(&stranger.pem()).unwrap()) }).await;
        assert!(refused.is_err());
        let endpoint = Endpoint { addr, tls: Some(tls_connector(&ca.pem()).unwrap()) };
        assert_eq!(endpoint.url(), format!("https://{addr}"));
        let mut connection = Connection::connect(&endpoint).await.unwrap();
        assert_eq!(connection.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap(), 200);
        assert_eq!(connection.body(), b"ok");
        server.await.unwrap();
    }
}
