//! The webhook client against listeners on loopback: a user's URL never reaches a private
//! address, however it is spelled or wherever its name resolves; no client follows a redirect;
//! answers are read up to a bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kappa_core::ports::{HttpClient, HttpRequest};
use kappa_runtime::http::{MAX_RESPONSE_BYTES, ReqwestHttp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A listener that counts connections and answers each with `answer`.
async fn listener(answer: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = socket.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = socket.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(&answer).await;
            });
        }
    });
    (port, count)
}

fn post(url: String, public_only: bool) -> HttpRequest {
    HttpRequest { public_only, method: "POST".into(), url, headers: vec![], body: b"{}".to_vec() }
}

#[tokio::test]
async fn a_webhook_never_reaches_a_private_address() {
    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec();
    let (port, count) = listener(ok).await;
    let http = ReqwestHttp::new(Duration::from_secs(5)).expect("client");
    for host in [
        "127.0.0.1",
        "127.1",
        "0x7f000001",
        "2130706433",
        "0177.0.0.1",
        "%31%32%37.0.0.1",
        "\u{ff11}\u{ff12}\u{ff17}.0.0.1",
        "localhost",
        "localhost.",
        "[::ffff:127.0.0.1]",
        "[::1]",
    ] {
        let url = format!("http://{host}:{port}/hook");
        let r = http.send(post(url.clone(), true)).await;
        assert!(r.is_err(), "{url} was delivered: {r:?}");
    }
    assert_eq!(count.load(Ordering::SeqCst), 0, "a refused webhook connected anyway");
    // The operator's own targets (the gateway) may be private.
    let r = http.send(post(format!("http://127.0.0.1:{port}/"), false)).await.expect("sent");
    assert_eq!(r.status, 200);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn no_redirect_is_followed_and_answers_are_bounded() {
    let (target, reached) =
        listener(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
    let redirect = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{target}/x\r\ncontent-length: 0\r\n\r\n"
    );
    let (port, _) = listener(redirect.into_bytes()).await;
    let http = ReqwestHttp::new(Duration::from_secs(5)).expect("client");
    let r = http.send(post(format!("http://127.0.0.1:{port}/"), false)).await.expect("sent");
    assert_eq!(r.status, 307);
    assert_eq!(reached.load(Ordering::SeqCst), 0, "the redirect was followed");

    let huge = 8 << 20;
    let mut answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {huge}\r\n\r\n").into_bytes();
    answer.resize(answer.len() + huge, b'x');
    let (port, _) = listener(answer).await;
    let r = http.send(post(format!("http://127.0.0.1:{port}/"), false)).await.expect("sent");
    assert_eq!(r.status, 200);
    assert!(r.body.len() <= MAX_RESPONSE_BYTES, "read {} bytes of an answer", r.body.len());
}
