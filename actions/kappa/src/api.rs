//! The HTTP API of api.md, over axum. [`app`] builds the router; it is served by
//! [`crate::server::start`] and tested without a network with `tower::ServiceExt::oneshot`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{SinkExt, StreamExt};
use kappa_actions::push::check_webhook_url;
use kappa_actions::{query, status};
use kappa_core::ports::{Clock, LogWriter, Subscription};
use kappa_core::{InvalidTopic, Topic};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::{ApiError, json_response, web};
use crate::ingest;
use crate::quota::Caller;
use crate::server::Server;
use crate::stream::{self, Shared, Streams, Target};
use crate::views;

type S = State<Arc<Server>>;

/// The router of the API.
pub fn app(server: Arc<Server>) -> Router {
    Router::new()
        .route("/", get(crate::dashboard::index))
        .route("/assets/{file}", get(crate::dashboard::asset))
        .route("/healthz", get(healthz))
        .route("/v1/topics/{topic}/records", post(ingest_records))
        .route("/v1/queries", post(create_query))
        .route("/v1/queries/{id}", get(get_query).delete(delete_query))
        .route("/v1/queries/{id}/subscriptions", post(add_webhook).delete(remove_webhook))
        .route("/v1/queries/{id}/events", get(query_events))
        .route("/v1/queries/{id}/ws", get(query_ws))
        .route("/v1/views/{name}", get(get_view).put(put_view))
        .route("/v1/views/{name}/events", get(view_events))
        .route("/v1/views/{name}/ws", get(view_ws))
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(middleware::from_fn_with_state(server.clone(), auth))
        .with_state(server)
}

pub(crate) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no handler found for uri [{}] and method [{method}]", uri.path()))
}

pub(crate) async fn no_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        405,
        "method_not_allowed_exception",
        format!("method [{method}] is not allowed for uri [{}]", uri.path()),
    )
}

/// A path whose percent-decoded bytes are not UTF-8 is a JSON 400 like every other error
/// (the router's own answer would be a plain-text one).
pub(crate) fn utf8_path(request: &Request) -> Result<(), ApiError> {
    match percent_encoding::percent_decode_str(request.uri().path()).decode_utf8() {
        Ok(_) => Ok(()),
        Err(_) => Err(ApiError::bad_request("the request path is not valid UTF-8 once decoded")),
    }
}

/// Constant-time comparison of two keys.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(server): S, request: Request, next: Next) -> Response {
    if let Err(refused) = utf8_path(&request) {
        return refused.into_response();
    }
    match authorize(&server.config.api_keys, &request) {
        Ok(caller) => {
            let mut request = request;
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
pub(crate) struct Unauthorized(&'static str, u16);

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
pub(crate) fn authorize(keys: &[String], request: &Request) -> Result<Caller, Unauthorized> {
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

pub(crate) async fn healthz() -> Response {
    json_response(200, &json!({"status": "ok"}))
}

/// Read a body up to `limit` bytes; over it, 413 (the rest is drained so the client reads the
/// answer).
pub(crate) async fn read_body(body: Body, limit: usize, what: &str) -> Result<Vec<u8>, ApiError> {
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

#[derive(Deserialize)]
struct IngestParams {
    key: Option<String>,
}

async fn ingest_records(
    State(server): S,
    Path(topic): Path<String>,
    params: Result<Query<IngestParams>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let topic = Topic::new(topic).map_err(invalid_topic)?;
    let body = read_body(body, server.config.ingest_limit, "ingest body").await?;
    let key = params.key.as_deref().filter(|k| !k.is_empty());
    let records = ingest::parse(&body, key)?;
    Ok(json_response(200, &append_records(&server, &topic, records).await?))
}

fn invalid_topic(InvalidTopic(topic): InvalidTopic) -> ApiError {
    ApiError::new(
        400,
        "invalid_index_name_exception",
        format!("invalid topic name [{topic}]: use 1 to 249 of [A-Za-z0-9._-]"),
    )
}

/// The ingest path: create the topic if needed, spread `records` over its partitions (by key,
/// keyless ones round-robin), append them, wake the topic's queries. Returns the body of
/// `POST /v1/topics/{topic}/records`. The HTTP handler and `kappa dev --demo` both use it.
pub async fn append_records(
    server: &Server,
    topic: &Topic,
    records: Vec<ingest::Parsed>,
) -> Result<Value, ApiError> {
    let log = &*server.core.log;
    let partitions = match log.partitions(topic).await? {
        Some(n) => n,
        None => {
            // One creation at a time, so that concurrent ingests cannot pass the limit.
            let _creating = server.topic_creation.lock().await;
            let limit = server.config.max_topics;
            if log.partitions(topic).await?.is_none()
                && log.topic_count().is_some_and(|n| n >= limit)
            {
                return Err(ApiError::bad_request(format!(
                    "cannot create topic [{topic}]: there are already {limit} topics (max_topics)"
                )));
            }
            log.ensure_topic(topic, server.config.partitions).await?
        }
    };
    let count = records.len();
    let next = server.round_robin.fetch_add(count as u64, Ordering::Relaxed);
    let now = server.core.clock.now_ms();
    let mut written = serde_json::Map::new();
    for (partition, batch) in ingest::assign(records, partitions, next, now) {
        let first = LogWriter::append(log, topic, partition, &batch).await?;
        written.insert(
            partition.to_string(),
            json!({"first_offset": first, "last_offset": first + batch.len() as i64 - 1}),
        );
    }
    if let Some(wake) = &server.wake {
        let _ = wake.send(topic.to_string());
    }
    Ok(json!({"topic": topic, "count": count, "partitions": written}))
}

async fn create_query(
    State(server): S,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = server.core.config.limits.max_body_bytes;
    let body = read_body(body, limit, "query body").await?;
    let env = server.core.env();
    let plan = query::plan(&env, &body)?;
    let id = plan.id().to_string();
    server.queries.admit_query(caller, &id, &*server.core.store).await?;
    let created = query::create_planned(&env, plan, &body).await?;
    server.queries.hold_query(caller, &id);
    Ok(web(created))
}

async fn get_query(State(server): S, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(web(status::status(&server.core.env(), &id).await?))
}

async fn delete_query(
    State(server): S,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let released = query::release(&server.core.env(), &id).await?;
    server.queries.drop_query(caller, &id);
    Ok(web(released))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: String,
    secret: String,
}

async fn add_webhook(
    State(server): S,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, 64 * 1024, "subscription body").await?;
    let sub: WebhookBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            400,
            "parsing_exception",
            format!("subscription body: {e} (expected {{\"url\",\"secret\"}})"),
        )
    })?;
    if sub.secret.is_empty() {
        return Err(ApiError::bad_request("[secret] must not be empty"));
    }
    check_webhook_url(&sub.url, server.core.config.allow_private_webhooks)
        .map_err(ApiError::bad_request)?;
    let store = &*server.core.store;
    if store.query(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("query [{id}] not found")));
    }
    let existing = store.subscriptions(&id).await?;
    if existing.iter().any(|s| s.url == sub.url) {
        return Err(ApiError::new(
            409,
            "resource_already_exists_exception",
            "this URL is already subscribed to the query",
        ));
    }
    let limit = server.core.config.max_webhooks_per_query;
    if existing.len() >= limit {
        return Err(ApiError::bad_request(format!(
            "a query has at most {limit} webhooks (max_webhooks_per_query)"
        )));
    }
    store.subscribe(&id, &Subscription { url: sub.url.clone(), secret: sub.secret }).await?;
    store.add_refs(&id, 1).await?;
    store.touch(&id, server.core.clock.now_ms()).await?;
    Ok(json_response(201, &json!({"id": id, "url": sub.url, "subscribed": true})))
}

/// `DELETE /v1/queries/{id}/subscriptions?url=<url>`: the webhook of `url` gets no more
/// deliveries, and its reference on the query is dropped.
async fn remove_webhook(
    State(server): S,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let url = params
        .get("url")
        .ok_or_else(|| ApiError::bad_request("[url] query parameter is required"))?;
    let store = &*server.core.store;
    if store.query(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("query [{id}] not found")));
    }
    if !store.unsubscribe(&id, url).await? {
        return Err(ApiError::not_found(format!("query [{id}] has no webhook for this URL")));
    }
    store.add_refs(&id, -1).await?;
    store.touch(&id, server.core.clock.now_ms()).await?;
    Ok(json_response(200, &json!({"id": id, "url": url, "subscribed": false})))
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
pub(crate) async fn events_response(
    streams: &Arc<Streams>,
    caller: Caller,
    target: Target,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let since = last_event_id(headers)?;
    Ok(sse(stream::subscribe(streams, caller, target, since).await?))
}

/// The websocket of `target`, resuming after `?since=` (`kappa dev` and the gateway).
pub(crate) async fn ws_response(
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

async fn query_events(
    State(server): S,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    events_response(&server.streams, caller, Target::Query(id), &headers).await
}

async fn query_ws(
    State(server): S,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    ws_response(&server.streams, caller, Target::Query(id), &params, upgrade).await
}

async fn follow_view(server: &Arc<Server>, name: &str) -> Result<Target, ApiError> {
    server
        .views
        .follow(name)
        .await
        .map(Target::View)
        .ok_or_else(|| ApiError::not_found(format!("view [{name}] not found")))
}

async fn put_view(
    State(server): S,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = server.core.config.limits.max_body_bytes;
    let body = read_body(body, limit, "query body").await?;
    let (status, answer) = views::put(&server, &name, &body).await?;
    Ok(json_response(status, &answer))
}

async fn get_view(State(server): S, Path(name): Path<String>) -> Result<Response, ApiError> {
    let def = server
        .views
        .get(&name)
        .await
        .ok_or_else(|| ApiError::not_found(format!("view [{name}] not found")))?;
    let mut body = status::status(&server.core.env(), &def.id).await?.body;
    body["view"] = json!(name);
    body["pending"] = json!(def.pending);
    Ok(json_response(200, &body))
}

async fn view_events(
    State(server): S,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let target = follow_view(&server, &name).await?;
    events_response(&server.streams, caller, target, &headers).await
}

async fn view_ws(
    State(server): S,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let target = follow_view(&server, &name).await?;
    ws_response(&server.streams, caller, target, &params, upgrade).await
}
