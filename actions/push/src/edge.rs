//! The HTTP edge shared by `kappa dev` and the gateway: authentication ([`admit`]), the
//! JSON error routes, bounded bodies, and a push stream served as SSE ([`events_response`],
//! resuming after `Last-Event-ID`) or as a websocket ([`ws_response`], after `?since=`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;

use crate::error::{ApiError, json_response};
use crate::quota::Caller;
use crate::stream::{self, Shared, Streams, Target};

pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no handler found for uri [{}] and method [{method}]", uri.path()))
}

pub async fn no_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        405,
        "method_not_allowed_exception",
        format!("method [{method}] is not allowed for uri [{}]", uri.path()),
    )
}

/// A path whose percent-decoded bytes are not UTF-8 is a JSON 400 like every other error
/// (the router's own answer would be a plain-text one).
pub fn utf8_path(request: &Request) -> Result<(), ApiError> {
    match percent_encoding::percent_decode_str(request.uri().path()).decode_utf8() {
        Ok(_) => Ok(()),
        Err(_) => Err(ApiError::bad_request("the request path is not valid UTF-8 once decoded")),
    }
}

/// Constant-time comparison of two keys.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API's gate: a path that is not UTF-8 is a 400, a request without a valid key (of
/// `keys`, see [`authorize`]) a 401/403; an admitted request carries its [`Caller`].
pub async fn admit(keys: &[String], mut request: Request, next: Next) -> Response {
    if let Err(refused) = utf8_path(&request) {
        return refused.into_response();
    }
    match authorize(keys, &request) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refused) => refused.into_response(),
    }
}

/// Whether `host` (a `Host` header or an origin's authority: a name or address, maybe with a
/// port) names this machine: `localhost` or a loopback address.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A keyless server answers only requests addressed to a loopback name (`Host`) and, when
/// they come from a web page, from a loopback page (`Origin`).
fn loopback_only(request: &Request) -> Result<(), Unauthorized> {
    let header = |name| request.headers().get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if let Some(host) = header(header::HOST)
        && !is_loopback_host(host)
    {
        return Err(Unauthorized::forbidden(
            "without API keys only requests to a loopback host (localhost, 127.0.0.1, [::1]) are served",
        ));
    }
    if let Some(origin) = header(header::ORIGIN) {
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        if !authority.is_some_and(is_loopback_host) {
            return Err(Unauthorized::forbidden(
                "without API keys only pages served from this machine may call the API",
            ));
        }
    }
    Ok(())
}

/// A refused request: 401 `security_exception` with `WWW-Authenticate: Bearer` when a key is
/// missing or wrong, 403 when the request may not be served without keys.
pub struct Unauthorized(&'static str, u16);

impl Unauthorized {
    fn forbidden(reason: &'static str) -> Self {
        Unauthorized(reason, 403)
    }
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut response = ApiError::new(self.1, "security_exception", self.0).into_response();
        if self.1 == 403 {
            return response;
        }
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        response
    }
}

/// `?access_token=<key>` of a GET on a push stream (`…/ws`, `…/events`): browsers' `WebSocket`
/// and `EventSource` cannot send an `Authorization` header. Never logged (no request URI is).
/// Percent-decoded, as browsers' `URLSearchParams` encode it (`+`, `/`, `=` of base64 keys).
fn stream_access_token(request: &Request) -> Option<String> {
    let path = request.uri().path();
    if request.method() != Method::GET || !(path.ends_with("/ws") || path.ends_with("/events")) {
        return None;
    }
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "access_token")
        .map(|(_, token)| token.into_owned())
}

/// Check the request's `Authorization: Bearer <key>` (or a stream's `?access_token=`) against
/// `keys` (none configured: open; `/healthz` is always open). The caller is the key's position.
pub fn authorize(keys: &[String], request: &Request) -> Result<Caller, Unauthorized> {
    if request.uri().path() == "/healthz" {
        return Ok(Caller(None));
    }
    if keys.is_empty() {
        // Without keys the server only listens on loopback, and only this machine's own pages
        // and tools may use it: a web page elsewhere must not reach it through the browser
        // (a cross-origin POST or websocket, or DNS rebinding a name of its own to 127.0.0.1).
        return loopback_only(request).map(|()| Caller(None));
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().to_string())
        .or_else(|| stream_access_token(request));
    // Every key is compared, so the time taken does not tell which one matched.
    let matched = given.as_ref().and_then(|g| {
        keys.iter()
            .enumerate()
            .fold(None, |found, (i, k)| found.or(same_key(k.as_bytes(), g.as_bytes()).then_some(i)))
    });
    if let Some(position) = matched {
        return Ok(Caller(Some(position)));
    }
    Err(Unauthorized(
        if given.is_some() {
            "invalid API key"
        } else {
            "missing authentication credentials: Authorization: Bearer <key>"
        },
        401,
    ))
}

pub async fn healthz() -> Response {
    json_response(200, &json!({"status": "ok"}))
}

/// Read a body up to `limit` bytes; over it, 413 (the rest is drained so the client reads the
/// answer).
pub async fn read_body(body: Body, limit: usize, what: &str) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        seen += chunk.len();
        if seen > limit {
            // Drain a bounded amount so the client gets the 413 rather than a reset.
            if seen > limit.saturating_mul(4).max(64 << 20) {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if seen > limit {
        return Err(ApiError::too_large(what, limit));
    }
    Ok(buf)
}

fn since_param(params: &HashMap<String, String>) -> Result<Option<u64>, ApiError> {
    params
        .get("since")
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("[since] must be a version number, got [{s}]"))
            })
        })
        .transpose()
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("[Last-Event-ID] must be a version number"))
        })
        .transpose()
}

fn sse(rx: mpsc::Receiver<Shared>) -> Response {
    let events = tokio_stream::wrappers::ReceiverStream::new(rx).map(|m| {
        let mut event = Event::default().data(m.text());
        // Event ids are versions (for `Last-Event-ID`); an error ends the stream and has none.
        if !matches!(&**m, kappa_core::Message::Error { .. }) {
            event = event.id(m.version().to_string());
        }
        Ok::<_, Infallible>(event)
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// Largest message a websocket client may send (they send nothing but pings and a close).
const WS_CLIENT_MESSAGE_BYTES: usize = 64 << 10;

fn ws(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(e.status().as_u16(), "illegal_argument_exception", e.body_text())
    })?;
    // Each message is written and flushed on its own (no 128 KiB write batch), and the read
    // buffer is small: tungstenite's default 128 KiB, zeroed before reads, made every idle
    // subscriber cost 128 KiB of resident memory.
    Ok(upgrade
        .read_buffer_size(4 << 10)
        .write_buffer_size(0)
        .max_message_size(WS_CLIENT_MESSAGE_BYTES)
        .max_frame_size(WS_CLIENT_MESSAGE_BYTES))
}

async fn session(socket: WebSocket, mut rx: mpsc::Receiver<Shared>) {
    let (mut sink, mut incoming) = socket.split();
    // The client's side in a task of its own, polled only when the socket has something to
    // read: polled next to every send, tungstenite prepared a read buffer each time (6% of
    // `kappa dev`'s CPU under push load).
    let mut closed = tokio::spawn(async move {
        while let Some(Ok(m)) = incoming.next().await {
            if matches!(m, Message::Close(_)) {
                return;
            }
        }
    });
    let _stop_reading = AbortOnDrop(closed.abort_handle());
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => {
                    if sink.send(Message::Text(m.text().into())).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = sink.send(Message::Close(None)).await;
                    return;
                }
            },
            _ = &mut closed => return,
        }
    }
}

/// Aborts a task when dropped (the session's reader, when the session ends first).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The SSE stream of `target`, resuming after `Last-Event-ID` (`kappa dev` and the gateway).
pub async fn events_response(
    streams: &Arc<Streams>,
    caller: Caller,
    target: Target,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let since = last_event_id(headers)?;
    Ok(sse(stream::subscribe(streams, caller, target, since).await?))
}

/// The websocket of `target`, resuming after `?since=` (`kappa dev` and the gateway).
pub async fn ws_response(
    streams: &Arc<Streams>,
    caller: Caller,
    target: Target,
    params: &HashMap<String, String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = ws(upgrade)?;
    let since = since_param(params)?;
    let rx = stream::subscribe(streams, caller, target, since).await?;
    Ok(upgrade.on_upgrade(move |socket| session(socket, rx)))
}
