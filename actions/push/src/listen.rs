//! The accept loop of `kappa dev` and `kappa-gateway`: HTTP/1.1 (with websocket upgrades) where
//! a client gets a bounded time to send its request head. A connection that never finishes its
//! headers would otherwise hold a descriptor for good, and a few hundred of them would stop
//! the server from accepting anyone. Open connections are capped: past the cap a new one is
//! answered `503` at once and closed, so descriptors and per-connection memory stay bounded.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Time a client has to send a complete request head (Nginx's `client_header_timeout` is 60 s).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `app` on `listener`, at most `max_connections` open at once, until `shutdown`
/// resolves (connections being served finish on their own).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, app, HEADER_READ_TIMEOUT, max_connections, shutdown).await;
}

/// The body of the answer to a connection past the cap.
const BUSY_BODY: &str = r#"{"error":{"type":"unavailable_exception","reason":"too many open connections; retry later","retryable":true},"status":503}"#;

/// The whole answer to a connection past the cap.
fn busy() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BUSY_BODY}",
        BUSY_BODY.len()
    )
}

/// Raise this process's soft limit on open descriptors to its hard limit, as Go's runtime and
/// most servers do at start-up: a soft limit of 1,024 (a common default) would stop the server
/// well before `--max-connections` or `--max-topics`, which are the limits meant to apply.
/// Returns the limit now in force (`None` when unlimited or unknown).
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if setrlimit(Resource::Nofile, limit).is_err() {
            return getrlimit(Resource::Nofile).current;
        }
    }
    limit.current
}

/// [`raise_descriptor_limit`], and log the limit in force (servers call it at start-up).
pub fn log_descriptor_limit() {
    match raise_descriptor_limit() {
        Some(n) => tracing::info!(limit = n, "open descriptor limit"),
        None => tracing::info!("open descriptor limit: none"),
    }
}

/// Most bytes hyper buffers per connection, each way (its default is ~400 KiB).
pub const CONNECTION_BUFFER_BYTES: usize = 32 << 10;

/// [`serve`] with another time for the request head.
pub async fn serve_with(
    listener: TcpListener,
    app: axum::Router,
    header_read_timeout: Duration,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    // The buffer bounds what hyper queues for a client that does not read (an SSE stream's
    // events wait in the subscriber's queue instead, where they are shared), and a request head.
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(CONNECTION_BUFFER_BYTES);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, say: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut stream = stream;
                let _ = stream.write_all(busy().as_bytes()).await;
                let _ = stream.shutdown().await;
                // Drain what the client sent (briefly) so that closing does not reset the
                // connection before it has read the answer.
                let mut sink = [0u8; 4096];
                let drain =
                    async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
                let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
            });
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
        use rustix::process::{Resource, getrlimit};
        let raised = raise_descriptor_limit();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(now.current, now.maximum);
        assert_eq!(raised, now.current);
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

    /// A server of one route on a free port; dropping the sender stops it.
    async fn server(
        header_timeout: Duration,
        max_connections: usize,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task =
            tokio::spawn(serve_with(listener, app, header_timeout, max_connections, async {
                let _ = stopped.await;
            }));
        (addr, stop, task)
    }

    /// A complete GET on a new connection; the whole answer.
    async fn get(addr: std::net::SocketAddr) -> String {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(GET).await.expect("write");
        let mut answer = String::new();
        c.read_to_string(&mut answer).await.expect("read");
        answer
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let (addr, stop, task) = server(Duration::from_millis(300), 8).await;
        // Half a request head, then silence.
        let mut slow = TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.expect("write");
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "the connection was still open after 5 s");
        // Others are served meanwhile and after.
        let answer = get(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let _ = stop.send(());
        task.await.expect("stopped");
    }

    #[tokio::test]
    async fn past_the_cap_a_connection_is_told_to_come_back() {
        let (addr, stop, task) = server(Duration::from_secs(30), 2).await;
        // Two connections held open (a request head not yet finished).
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            c.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
            held.push(c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = get(addr).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(head.contains(&format!("content-length: {}", body.len())), "{answer}");
        let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(v["status"], 503);
        // Once one is closed, a new connection is served.
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = get(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let _ = stop.send(());
        task.await.expect("stopped");
    }
}
