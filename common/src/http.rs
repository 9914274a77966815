//! A minimal HTTP/1.1 client for Tarn's own plain-HTTP endpoints (health
//! and readiness probes, `/metrics`, the REST API the `tarn job` commands
//! call): one request on a fresh connection, read to its end. Not for
//! talking to anything else — no TLS, no chunked decoding, no redirects.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one request with a JSON `body` (may be empty) to `addr`
/// (`host:port`) and returns the status and body.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    request_as(addr, method, path, None, body).await
}

/// [`request`] with an `Authorization: Bearer` token, when given.
pub async fn request_as(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{addr} answered without an HTTP status line"),
            )
        })?;
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Ok((status, body))
}
