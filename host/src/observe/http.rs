//! Serves `GET /metrics` for `--metrics-addr`: one thread answering one request per connection, as
//! Prometheus scrapes (a small std-net server: an HTTP stack would be most of the binary's new code
//! for a page fetched every few seconds).

use super::metrics::RunMetrics;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Why the metrics cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on `{addr}`: {source}; give a free `host:port`, like `127.0.0.1:9898` (port 0 picks a free one)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// A listening socket for the metrics, bound before the run starts so a bad address fails early.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Server {
    /// Listens on `addr` (`host:port`; port 0 picks a free port).
    pub fn bind(addr: &str) -> Result<Server, ServeError> {
        let bind = |source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        };
        let listener = TcpListener::bind(addr).map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        Ok(Server { listener, addr })
    }

    /// The address bound (with the port chosen, for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `metrics` from a thread of its own until the process exits.
    pub fn serve(self, metrics: RunMetrics) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for stream in self.listener.incoming().flatten() {
                    // A client that fails mid-request only loses its own answer.
                    let _ = answer(stream, &metrics);
                }
            })
            .map(drop)
    }
}

/// Reads one request (its head only: a scrape has no body) and answers it.
fn answer(mut stream: TcpStream, metrics: &RunMetrics) -> std::io::Result<()> {
    // A client that connects and says nothing must not hold the next scrape back for long.
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (status, content_type, body) = respond(&head, metrics);
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// The status line, content type and body for a request head.
fn respond(head: &[u8], metrics: &RunMetrics) -> (&'static str, &'static str, String) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    const TEXT: &str = "text/plain; charset=utf-8";
    match (method, path) {
        ("GET", "/metrics") => ("200 OK", RunMetrics::CONTENT_TYPE, metrics.encode()),
        ("GET", _) => (
            "404 Not Found",
            TEXT,
            "tributary serves its metrics at /metrics\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            TEXT,
            "only GET /metrics is served\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outfile::OutputMode;

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_refuses_the_rest() {
        let dir = std::env::temp_dir().join(format!("tributary-http-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (dead, _) =
            crate::deadletter::DeadLetters::create(&dir.join("d.jsonl"), OutputMode::Truncate)
                .unwrap();
        let metrics = RunMetrics::new(Vec::new(), dead);
        let server = Server::bind("127.0.0.1:0").unwrap();
        let addr = server.addr();
        assert_ne!(addr.port(), 0);
        server.serve(metrics).unwrap();

        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(
            ok.contains("# TYPE tributary_records_in_total counter"),
            "{ok}"
        );
        assert!(get(addr, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));

        // The port is taken now: a second server says where and what to do.
        let err = Server::bind(&addr.to_string()).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!("cannot listen on `{addr}`")),
            "{err}"
        );
        assert!(err.contains("give a free `host:port`"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
