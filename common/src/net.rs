//! Listening sockets, the one way every role opens them: a failure names
//! the address it could not listen on.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// An address could not be listened on.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The address, as configured.
    pub addr: String,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

impl BindError {
    /// `source` listening on `addr`.
    pub fn new(addr: impl Into<String>, source: std::io::Error) -> Self {
        Self {
            addr: addr.into(),
            source,
        }
    }
}

/// Listens on `addr` (`host:port`, port 0 for any) and returns the
/// listener with the address it got.
pub async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), BindError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| BindError::new(addr, e))?;
    let local = listener.local_addr().map_err(|e| BindError::new(addr, e))?;
    Ok((listener, local))
}

/// A free port on `host`, found by binding and releasing it: for servers
/// (Ballista's) that advertise the port they are given, so "0" cannot be
/// passed through.
pub fn free_port(host: &str) -> Result<u16, BindError> {
    let addr = format!("{host}:0");
    std::net::TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BindError::new(addr, e))
}
