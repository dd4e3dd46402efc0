//! The one dispatch of both hosts: an activation of `/ns/kappa/<action>` runs that action's
//! handler; the web actions route by method and path; failures become `{"error": ...}` results
//! that say whether a retry makes sense. A host only reads its activation into an
//! [`Invocation`], its settings into [`Settings`], builds the ports, and calls [`dispatch`].

use kappa_core::QueryId;
use serde_json::{Value, json};

use super::invocation::Invocation;
use super::settings::Settings;
use crate::env::Env;
use crate::error::ActionError;
use crate::push::{self, PushEvent};
use crate::web::WebResponse;
use crate::{group, ingest, query, status, subscriptions, tick, views};

/// The actions of the package, by short name (the manifests' actions; their test checks it).
pub const ACTIONS: [&str; 5] = ["query", "status", "process", "push", "tick"];

/// `{"error": {...}}`: the result of a failed activation, with whether a retry makes sense.
pub fn error_result(e: &ActionError) -> Value {
    json!({"error": {"message": e.to_string(), "retryable": e.is_retryable(), "status": e.status(), "body": e.to_json()}})
}

fn to_value<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// Run one activation with the handler its action names.
pub async fn dispatch(env: &Env<'_>, invocation: &Invocation, settings: &Settings) -> Value {
    let result = match invocation.action.as_str() {
        "process" => group::process_event(env, &invocation.context, invocation.event()).await,
        "push" => match serde_json::from_value::<PushEvent>(invocation.event()) {
            Ok(event) => push::push(env, event).await.map(to_value),
            Err(e) => Err(ActionError::BadEvent(e.to_string())),
        },
        "tick" => {
            // A Kafka feed event names its topic; an alarm checks everything.
            let topic = invocation.params.get("messages").and_then(|m| m.pointer("/0/topic"));
            tick::tick(env, topic.and_then(Value::as_str)).await.map(to_value)
        }
        "query" | "status" => return web(env, invocation, settings).await.to_openwhisk(),
        other => Err(ActionError::BadEvent(format!("unknown action [{other}]"))),
    };
    result.unwrap_or_else(|e| {
        tracing::warn!(action = %invocation.action, activation = %invocation.context.activation_id,
            error = %e, retryable = e.is_retryable(), "activation failed");
        error_result(&e)
    })
}

/// A web request's route: the path's segments after its first `v1` (the API's base path, as
/// the API gateway or the web action's own URL passes it), e.g. `["queries", "q_…",
/// "subscriptions"]`; later ones are names (a view may be called `v1`). A path without `v1` is
/// a plain web action's: a bare `/{id}`.
fn route(path: &str) -> (bool, Vec<&str>) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.iter().position(|s| *s == "v1") {
        Some(v1) => (true, segments[v1 + 1..].to_vec()),
        None => (false, segments),
    }
}

/// 404 for a path no route serves, 405 for a method a route does not serve (as `kappa dev`).
fn no_route(method: &str, path: &str) -> WebResponse {
    WebResponse::error(
        404,
        "resource_not_found_exception",
        format!("no handler found for uri [{path}] and method [{}]", method.to_uppercase()),
    )
}

fn no_method(method: &str, path: &str) -> WebResponse {
    WebResponse::error(
        405,
        "method_not_allowed_exception",
        format!("method [{}] is not allowed for uri [{path}]", method.to_uppercase()),
    )
}

/// The web routes: `POST /v1/queries`, `GET|DELETE /v1/queries/{id}` (or a plain web
/// action's `/{id}`), `POST|DELETE /v1/queries/{id}/subscriptions`,
/// `POST /v1/topics/{topic}/records`, `PUT|GET /v1/views/{name}`: every route of api.md but
/// the push streams (the gateway's).
async fn web(env: &Env<'_>, invocation: &Invocation, settings: &Settings) -> WebResponse {
    if !settings.authorized(invocation.header("authorization")) {
        return WebResponse::error(401, "security_exception", "missing or invalid API key");
    }
    let (method, path) = (invocation.method(), invocation.path());
    let (versioned, segments) = route(path);
    let outcome = match (method, segments.as_slice()) {
        ("post", [] | ["queries"]) => query::create(env, &invocation.body()).await,
        (_, [] | ["queries"]) => Ok(no_method(method, path)),
        (_, ["queries", id] | ["queries", id, "subscriptions"]) if QueryId::parse(id).is_none() => {
            Err(ActionError::NotFound { what: "query", name: id.to_string() })
        }
        ("get", ["queries", id]) => status::status(env, id).await,
        ("delete", ["queries", id]) => query::release(env, id).await,
        ("get", [id]) if !versioned => status::status(env, id).await,
        ("delete", [id]) if !versioned => query::release(env, id).await,
        (_, ["queries", _]) => Ok(no_method(method, path)),
        ("post", ["queries", id, "subscriptions"]) => {
            subscriptions::subscribe(env, id, &invocation.body()).await
        }
        ("delete", ["queries", id, "subscriptions"]) => {
            let url = invocation.query_param("url");
            subscriptions::unsubscribe(env, id, url.as_deref()).await
        }
        (_, ["queries", _, "subscriptions"]) => Ok(no_method(method, path)),
        ("post", ["topics", topic, "records"]) => {
            let key = invocation.query_param("key");
            ingest::ingest(env, topic, key.as_deref(), &invocation.body()).await
        }
        (_, ["topics", _, "records"]) => Ok(no_method(method, path)),
        ("put", ["views", name]) => views::put(env, name, &invocation.body()).await,
        ("get", ["views", name]) => views::get(env, name).await,
        (_, ["views", _]) => Ok(no_method(method, path)),
        _ => Ok(no_route(method, path)),
    };
    outcome.unwrap_or_else(WebResponse::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_read_after_the_api_base_path() {
        assert_eq!(
            route("/v1/queries/q_1/subscriptions"),
            (true, vec!["queries", "q_1", "subscriptions"])
        );
        assert_eq!(route("/v1/views/v1"), (true, vec!["views", "v1"]), "a view named v1");
        assert_eq!(route("/q_1"), (false, vec!["q_1"]));
        assert_eq!(route(""), (false, vec![]));
    }
}
