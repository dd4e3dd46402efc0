//! `kappa-gateway`: the push gateway of a deployed package.
//!
//! OpenWhisk actions cannot hold a websocket, so deployed queries are followed through this
//! small long-running service. It serves the push part of api.md (`GET /v1/queries/{id}`, its
//! `/events` and `/ws`) over the deployment's Redis, with the same subscriber code as
//! `kappa dev` ([`kappa_push::stream`]: snapshot, consecutive deltas from the shared ring, resume,
//! bounded buffers).
//!
//! **Fed by the push action.** After each new version the push action POSTs the message to
//! `/v1/internal/deltas` with `Authorization: Bearer <push token>`. The gateway does not trust
//! the body as data: it only learns *which query moved*, and its subscribers read the result
//! and the ring from Redis, which stay the single source of truth (ordering, no gaps).
//!
//! **Horizontal scaling.** Any instance may receive the POST (behind a load balancer); it
//! `PUBLISH`es the wake-up on `{prefix}:gateway`, to which every instance is subscribed, and
//! each wakes its own subscribers. A lost pub/sub connection wakes every subscriber once it is
//! back (they catch up from the store), and subscribers also poll every few seconds, so a lost
//! wake-up only delays a delta.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use futures_util::StreamExt;
use kappa_actions::status::read_status;
use kappa_core::Message;
use kappa_core::ports::{Clock, PortError};
use kappa_push::edge::{
    admit, events_response, healthz, no_method, no_route, read_body, ws_response,
};
use kappa_push::error::{ApiError, json_response, web};
use kappa_push::hub::Hub;
use kappa_push::quota::{self, Caller};
use kappa_push::stream::{Streams, Target};
use kappa_runtime::clock::SystemClock;
use kappa_state_redis::{Connection, RedisStore, RedisStoreConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Everything `kappa-gateway` runs with.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The deployment's Redis.
    pub redis_url: String,
    /// Key prefix in Redis (the package's `redis_prefix`).
    pub redis_prefix: String,
    /// Tokens the push action may present (at least one).
    pub push_tokens: Vec<String>,
    /// Keys subscribers must present (empty: none, loopback only).
    pub api_keys: Vec<String>,
    /// Messages buffered per subscriber before it gets a snapshot instead.
    pub subscriber_buffer: usize,
    /// Most connections open at once (past it: 503 and closed).
    pub max_connections: usize,
    /// Most push streams one API key holds open (past it: 429).
    pub max_streams_per_key: usize,
    /// Largest push body, bytes (a snapshot of a large result is the biggest message).
    pub push_limit: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            redis_url: String::new(),
            redis_prefix: "kappa".into(),
            push_tokens: Vec::new(),
            api_keys: Vec::new(),
            subscriber_buffer: 256,
            max_connections: 4_096,
            max_streams_per_key: quota::STREAMS_PER_KEY,
            push_limit: 16 << 20,
        }
    }
}

/// A configuration the gateway refuses to run with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GatewayConfigError {
    /// Without a token anyone could post to the feed.
    #[error("the push feed must be authenticated: pass --push-token (or KAPPA_PUSH_TOKEN)")]
    NoPushToken,
    /// Beyond loopback subscribers must authenticate.
    #[error("refusing to listen on non-loopback address {0} without an API key (pass --api-key)")]
    OpenWithoutKeys(SocketAddr),
    /// Missing Redis.
    #[error("--redis-url (or REDIS_URL) is required")]
    NoRedis,
    /// An empty key or token.
    #[error("{0} must not be empty")]
    EmptySecret(&'static str),
}

impl GatewayConfig {
    /// Check the configuration before anything starts.
    pub fn check(&self) -> Result<(), GatewayConfigError> {
        if self.redis_url.is_empty() {
            return Err(GatewayConfigError::NoRedis);
        }
        if self.push_tokens.is_empty() {
            return Err(GatewayConfigError::NoPushToken);
        }
        if self.push_tokens.iter().any(|t| t.trim().is_empty()) {
            return Err(GatewayConfigError::EmptySecret("--push-token"));
        }
        if self.api_keys.iter().any(|t| t.trim().is_empty()) {
            return Err(GatewayConfigError::EmptySecret("--api-key"));
        }
        if !self.listen.ip().is_loopback() && self.api_keys.is_empty() {
            return Err(GatewayConfigError::OpenWithoutKeys(self.listen));
        }
        Ok(())
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] GatewayConfigError),
    /// Redis is unreachable or refused.
    #[error(transparent)]
    Redis(#[from] PortError),
    /// The address cannot be bound.
    #[error("listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// The state of a gateway instance.
pub struct Gateway {
    streams: Arc<Streams>,
    redis: Arc<RedisStore<Connection>>,
    config: GatewayConfig,
    channel: String,
}

type S = State<Arc<Gateway>>;

/// The router of the gateway (the subscriber routes of api.md plus the push feed).
pub fn app(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/internal/deltas", post(feed))
        .route("/v1/queries/{id}", get(get_query))
        .route("/v1/queries/{id}/events", get(query_events))
        .route("/v1/queries/{id}/ws", get(query_ws))
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(middleware::from_fn_with_state(gateway.clone(), auth))
        .with_state(gateway)
}

/// The push feed authenticates with push tokens, everything else with API keys.
async fn auth(State(gateway): S, request: Request, next: Next) -> Response {
    let keys = if request.uri().path() == "/v1/internal/deltas" {
        &gateway.config.push_tokens
    } else {
        &gateway.config.api_keys
    };
    admit(keys, request, next).await
}

/// The query a pushed message is about: `{"id": "<query>", "version": V, ...}`.
fn moved_query(body: &[u8]) -> Result<(String, u64), ApiError> {
    let message: Message = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, "parsing_exception", format!("push body: {e}")))?;
    let id = message.id();
    let named = !id.is_empty() && id.len() <= 256 && !id.contains(|c: char| c.is_control());
    match message {
        Message::Error { .. } => Err(ApiError::bad_request(
            "push body must be a Kappa message with a version, not an error",
        )),
        _ if !named => Err(ApiError::bad_request(
            "push body must be a Kappa message with a string [id] and a numeric [version]",
        )),
        _ => Ok((id.to_string(), message.version())),
    }
}

/// What one gateway instance tells the others through Redis: a query moved to `version`.
#[derive(Debug, Serialize, Deserialize)]
struct WakeUp {
    id: String,
    version: u64,
}

async fn feed(State(gateway): S, body: Body) -> Result<Response, ApiError> {
    let body = read_body(body, gateway.config.push_limit, "push body").await?;
    let (id, version) = moved_query(&body)?;
    let wake = serde_json::to_string(&WakeUp { id, version }).unwrap_or_default();
    // Through Redis, so that every instance wakes its subscribers, this one included.
    let instances = gateway.redis.transport().publish(&gateway.channel, wake.as_bytes()).await?;
    Ok(json_response(202, &json!({"accepted": true, "instances": instances})))
}

async fn get_query(State(gateway): S, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(web(read_status(&*gateway.streams.store, SystemClock.now_ms(), &id).await?))
}

async fn query_events(
    State(gateway): S,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    events_response(&gateway.streams, caller, Target::Query(id), &headers).await
}

async fn query_ws(
    State(gateway): S,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    ws_response(&gateway.streams, caller, Target::Query(id), &params, upgrade).await
}

/// Follow `{prefix}:gateway` for ever: each wake-up notifies the subscribers of its query;
/// after a lost connection every subscriber is woken once, since wake-ups may have been missed.
async fn follow_wakes(redis: Arc<RedisStore<Connection>>, channel: String, hub: Arc<Hub>) {
    let mut backoff = Duration::from_millis(100);
    let mut connected_before = false;
    loop {
        match redis.transport().subscribe_channel(&channel).await {
            Ok(wakes) => {
                if connected_before {
                    hub.notify_all();
                }
                connected_before = true;
                backoff = Duration::from_millis(100);
                tracing::info!(%channel, "following push wake-ups");
                let mut wakes = std::pin::pin!(wakes);
                while let Some(payload) = wakes.next().await {
                    match serde_json::from_slice::<WakeUp>(&payload) {
                        Ok(wake) => hub.notify(&wake.id),
                        Err(_) => tracing::debug!("wake-up that is not {{id, version}} ignored"),
                    }
                }
                tracing::warn!(%channel, "lost the pub/sub connection; resubscribing");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot subscribe to push wake-ups");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// How long a stopping gateway waits for its subscribers to leave.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running gateway.
pub struct RunningGateway {
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
    wakes: JoinHandle<()>,
}

impl RunningGateway {
    /// Stop serving: new connections are refused, subscribers get a few seconds to leave,
    /// then their connections are closed (they reconnect to another instance and resume).
    pub async fn stop(self) {
        self.wakes.abort();
        let _ = self.shutdown.send(());
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }

    /// Serve until the server stops.
    pub async fn wait(self) {
        let _ = self.task.await;
        self.wakes.abort();
    }
}

/// Connect to Redis, follow the wake-ups and serve on `config.listen`.
pub async fn start(config: GatewayConfig) -> Result<RunningGateway, GatewayError> {
    config.check()?;
    let redis = Arc::new(
        RedisStore::connect(
            &config.redis_url,
            RedisStoreConfig {
                key_prefix: config.redis_prefix.clone(),
                ..RedisStoreConfig::default()
            },
        )
        .await?,
    );
    let channel = format!("{}:gateway", config.redis_prefix);
    let hub = Arc::new(Hub::default());
    let wakes = tokio::spawn(follow_wakes(redis.clone(), channel.clone(), hub.clone()));
    let streams = Arc::new(Streams::new(
        redis.clone(),
        hub,
        config.subscriber_buffer,
        config.max_streams_per_key,
    ));
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let max_connections = config.max_connections;
    let gateway = Arc::new(Gateway { streams, redis, config, channel });
    let router = app(gateway);
    let (shutdown, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        kappa_push::listen::serve(listener, router, max_connections, async move {
            let _ = rx.await;
        })
        .await;
    });
    Ok(RunningGateway { addr, shutdown, task, wakes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GatewayConfig {
        GatewayConfig {
            redis_url: "redis://127.0.0.1:16379".into(),
            push_tokens: vec!["t".into()],
            ..GatewayConfig::default()
        }
    }

    #[test]
    fn the_feed_needs_a_token_and_open_listening_needs_keys() {
        assert_eq!(config().check(), Ok(()));
        let c = GatewayConfig { push_tokens: vec![], ..config() };
        assert_eq!(c.check(), Err(GatewayConfigError::NoPushToken));
        let c = GatewayConfig { push_tokens: vec![" ".into()], ..config() };
        assert_eq!(c.check(), Err(GatewayConfigError::EmptySecret("--push-token")));
        let c = GatewayConfig { listen: "0.0.0.0:8090".parse().expect("addr"), ..config() };
        assert_eq!(c.check(), Err(GatewayConfigError::OpenWithoutKeys(c.listen)));
        let c = GatewayConfig { api_keys: vec!["k".into()], ..c };
        assert_eq!(c.check(), Ok(()));
        let c = GatewayConfig { redis_url: String::new(), ..config() };
        assert_eq!(c.check(), Err(GatewayConfigError::NoRedis));
    }

    #[test]
    fn a_pushed_message_names_its_query_and_version() {
        assert_eq!(
            moved_query(br#"{"type":"delta","id":"q_ab","version":3,"from":2,"patch":[]}"#),
            Ok(("q_ab".to_string(), 3))
        );
        for bad in [
            &b"not json"[..],
            br#"{"id":"q"}"#,
            br#"{"version":1}"#,
            br#"{"id":"","version":1}"#,
            br#"[1]"#,
        ] {
            let e = moved_query(bad).expect_err("refused");
            assert_eq!(e.status, 400, "{}", String::from_utf8_lossy(bad));
        }
    }
}
