//! Webhook subscriptions of a query (`POST` / `DELETE /v1/queries/{id}/subscriptions`), the
//! same in `kappa dev` and the deployed web action. A subscription holds a reference on its
//! query, so a query with webhooks is never reclaimed as idle.

use kappa_core::ports::Subscription;
use serde::Deserialize;
use serde_json::json;

use crate::env::Env;
use crate::error::ActionError;
use crate::push::check_webhook_url;
use crate::web::WebResponse;

/// Largest subscription body, bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: String,
    secret: String,
}

fn not_found(id: &str) -> ActionError {
    ActionError::NotFound { what: "query", name: id.to_string() }
}

/// `POST /v1/queries/{id}/subscriptions` with `{"url", "secret"}`: deliveries of every new
/// version to `url`, signed with `secret`. 201; 400 for a bad body or a refused URL (loopback
/// and private addresses unless allowed), 404 for an unknown query, 409 for a URL already
/// subscribed.
pub async fn subscribe(env: &Env<'_>, id: &str, body: &[u8]) -> Result<WebResponse, ActionError> {
    if body.len() > MAX_BODY_BYTES {
        return Ok(WebResponse::error(
            413,
            "content_too_long_exception",
            format!("subscription body exceeds the limit of {MAX_BODY_BYTES} bytes"),
        ));
    }
    let sub: WebhookBody = match serde_json::from_slice(body) {
        Ok(sub) => sub,
        Err(e) => {
            return Ok(WebResponse::error(
                400,
                "parsing_exception",
                format!("subscription body: {e} (expected {{\"url\",\"secret\"}})"),
            ));
        }
    };
    if sub.secret.is_empty() {
        return Ok(WebResponse::bad_request("[secret] must not be empty"));
    }
    if let Err(refused) = check_webhook_url(&sub.url, env.config.allow_private_webhooks) {
        return Ok(WebResponse::bad_request(refused));
    }
    let store = env.store;
    if store.query(id).await?.is_none() {
        return Err(not_found(id));
    }
    let existing = store.subscriptions(id).await?;
    if existing.iter().any(|s| s.url == sub.url) {
        return Ok(WebResponse::error(
            409,
            "resource_already_exists_exception",
            "this URL is already subscribed to the query",
        ));
    }
    let limit = env.config.max_webhooks_per_query;
    if existing.len() >= limit {
        return Ok(WebResponse::bad_request(format!(
            "a query has at most {limit} webhooks (max_webhooks_per_query)"
        )));
    }
    store.subscribe(id, &Subscription { url: sub.url.clone(), secret: sub.secret }).await?;
    store.add_refs(id, 1).await?;
    store.touch(id, env.clock.now_ms()).await?;
    Ok(WebResponse::json(201, json!({"id": id, "url": sub.url, "subscribed": true})))
}

/// `DELETE /v1/queries/{id}/subscriptions?url=<url>`: the webhook of `url` gets no more
/// deliveries, and its reference on the query is dropped.
pub async fn unsubscribe(
    env: &Env<'_>,
    id: &str,
    url: Option<&str>,
) -> Result<WebResponse, ActionError> {
    let Some(url) = url else {
        return Ok(WebResponse::bad_request("[url] query parameter is required"));
    };
    let store = env.store;
    if store.query(id).await?.is_none() {
        return Err(not_found(id));
    }
    if !store.unsubscribe(id, url).await? {
        return Ok(WebResponse::error(
            404,
            "resource_not_found_exception",
            format!("query [{id}] has no webhook for this URL"),
        ));
    }
    store.add_refs(id, -1).await?;
    store.touch(id, env.clock.now_ms()).await?;
    Ok(WebResponse::json(200, json!({"id": id, "url": url, "subscribed": false})))
}
