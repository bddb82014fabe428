//! `pbft-replica probe`: asks a running replica's operations endpoint
//! whether it is healthy (`/healthz`) or ready (`/readyz`), for scripts
//! (localnet's start-up wait) and container health checks, where no HTTP
//! client may be installed (a scratch image holds only the binaries).
//!
//! A minimal HTTP/1.1 GET over a std `TcpStream`: the endpoint is ours, the
//! answer is small JSON, and the whole exchange is bounded in time and size.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest answer read (the probes answer a few dozen bytes).
const ANSWER_BYTES_MAX: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot reach the operations endpoint at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("operations endpoint at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("operations endpoint at {addr}: not an HTTP answer")]
    NotHttp { addr: SocketAddr },
}

/// The address to connect to for an endpoint bound to `listen`: an
/// unspecified address (`0.0.0.0`, `[::]`) is reached over loopback.
pub fn connect_addr(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// `GET path` from `addr`: the status code and the body. Every step is
/// bounded by `timeout`.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), ProbeError> {
    let io = |source| ProbeError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ProbeError::Connect { addr, source })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(ANSWER_BYTES_MAX)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let text = String::from_utf8_lossy(&answer);
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or(ProbeError::NotHttp { addr })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server that answers `reply` to the first connection.
    fn serve_once(reply: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            s.write_all(reply.as_bytes()).unwrap();
        });
        addr
    }

    #[test]
    fn reads_the_code_and_body() {
        let addr = serve_once(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\r\n{\"status\":\"unavailable\"}",
        );
        let (code, body) = get(addr, "/readyz", Duration::from_secs(5)).unwrap();
        assert_eq!((code, body.as_str()), (503, "{\"status\":\"unavailable\"}"));
    }

    #[test]
    fn a_closed_port_or_a_non_http_answer_is_an_error() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = get(addr, "/healthz", Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, ProbeError::Connect { .. }), "{e}");
        let addr = serve_once("SSH-2.0-something\r\n");
        let e = get(addr, "/healthz", Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, ProbeError::NotHttp { .. }), "{e}");
    }

    #[test]
    fn an_unspecified_address_is_reached_over_loopback() {
        let a: SocketAddr = "0.0.0.0:9102".parse().unwrap();
        assert_eq!(connect_addr(a).to_string(), "127.0.0.1:9102");
        let b: SocketAddr = "[::]:9102".parse().unwrap();
        assert_eq!(connect_addr(b).to_string(), "[::1]:9102");
        let c: SocketAddr = "10.1.2.3:9102".parse().unwrap();
        assert_eq!(connect_addr(c), c);
    }
}
