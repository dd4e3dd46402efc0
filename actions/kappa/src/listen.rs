//! The accept loop of `kappa dev` and `kappa gateway`: HTTP/1.1 (with websocket upgrades) where
//! a client gets a bounded time to send its request head. A connection that never finishes its
//! headers would otherwise hold a descriptor for good, and a few hundred of them would stop
//! the server from accepting anyone.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Time a client has to send a complete request head (Nginx's `client_header_timeout` is 60 s).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` until `shutdown` resolves (connections being served finish on
/// their own).
pub async fn serve(listener: TcpListener, app: axum::Router, shutdown: impl Future<Output = ()>) {
    serve_with(listener, app, HEADER_READ_TIMEOUT, shutdown).await;
}

/// [`serve`] with another time for the request head.
pub async fn serve_with(
    listener: TcpListener,
    app: axum::Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
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
        let service = TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_with(listener, app, Duration::from_millis(300), async {
            let _ = stopped.await;
        }));
        // Half a request head, then silence.
        let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.expect("write");
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "the connection was still open after 5 s");
        // Others are served meanwhile and after.
        let mut ok = tokio::net::TcpStream::connect(addr).await.expect("connect");
        ok.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        ok.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let _ = stop.send(());
        server.await.expect("stopped");
    }
}
