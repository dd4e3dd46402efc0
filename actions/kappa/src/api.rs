//! The HTTP API of api.md, over axum. [`app`] builds the router; it is served by
//! [`crate::server::start`] and tested without a network with `tower::ServiceExt::oneshot`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use kappa_actions::{ingest, query, status, subscriptions};
use kappa_core::ports::Clock;
use kappa_core::{InvalidTopic, Topic};
use serde::Deserialize;
use serde_json::Value;

use crate::state::Server;
use crate::views;
use kappa_push::edge::{
    admit, events_response, healthz, no_method, no_route, read_body, ws_response,
};
use kappa_push::error::{ApiError, json_response, web};
use kappa_push::quota::Caller;
use kappa_push::stream::Target;

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

async fn auth(State(server): S, request: Request, next: Next) -> Response {
    admit(&server.config.api_keys, request, next).await
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
    let records = ingest::parse(&body, key).map_err(ApiError::from)?;
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
    let next = server.round_robin.fetch_add(records.len() as u64, Ordering::Relaxed);
    let now = server.core.clock.now_ms();
    let written = ingest::write(log, topic, records, partitions, next, now).await?;
    if let Some(wake) = &server.wake {
        let _ = wake.send(topic.to_string());
    }
    Ok(written)
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

async fn add_webhook(
    State(server): S,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, subscriptions::MAX_BODY_BYTES, "subscription body").await?;
    Ok(web(subscriptions::subscribe(&server.core.env(), &id, &body).await?))
}

async fn remove_webhook(
    State(server): S,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let url = params.get("url").map(String::as_str);
    Ok(web(subscriptions::unsubscribe(&server.core.env(), &id, url).await?))
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
        .follow(&server.core, name)
        .await?
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
    Ok(web(views::put(&server.core, &server.views, &name, &body).await?))
}

async fn get_view(State(server): S, Path(name): Path<String>) -> Result<Response, ApiError> {
    Ok(web(kappa_actions::views::get(&server.core.env(), &name).await?))
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
