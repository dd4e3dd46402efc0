//! The status action (`GET /v1/queries/{id}`): the current result and progress.

use kappa_core::ports::StateStore;
use serde_json::json;

use crate::env::Env;
use crate::error::ActionError;
use crate::web::WebResponse;

/// The query's answer in api.md's shape.
pub async fn status(env: &Env<'_>, id: &str) -> Result<WebResponse, ActionError> {
    read_status(env.store, env.clock.now_ms(), id).await
}

/// [`status`] from the store alone (the push gateway has no log): a read counts as a use of
/// the query at `now_ms`.
pub async fn read_status(
    store: &dyn StateStore,
    now_ms: i64,
    id: &str,
) -> Result<WebResponse, ActionError> {
    if store.query(id).await?.is_none() {
        return Err(ActionError::NotFound { what: "query", name: id.to_string() });
    }
    store.touch(id, now_ms).await?;
    let r = store
        .result(id)
        .await?
        .ok_or_else(|| ActionError::NotFound { what: "query", name: id.to_string() })?;
    let mut body = json!({"id": id, "version": r.version, "caught_up": r.caught_up, "progress": r.progress, "result": r.result});
    if let Some(e) = r.error {
        body["error"] = e;
    }
    Ok(WebResponse::json(200, body))
}
