//! The status action (`GET /v1/queries/{id}`): the current result and progress.

use serde_json::json;

use crate::env::Env;
use crate::error::ActionError;
use crate::web::WebResponse;

/// The query's answer in api.md's shape.
pub async fn status(env: &Env<'_>, id: &str) -> Result<WebResponse, ActionError> {
    if env.store.query(id).await?.is_none() {
        return Err(ActionError::NotFound { what: "query", name: id.to_string() });
    }
    env.store.touch(id, env.clock.now_ms()).await?;
    let r = env
        .store
        .result(id)
        .await?
        .ok_or_else(|| ActionError::NotFound { what: "query", name: id.to_string() })?;
    let mut body = json!({"id": id, "version": r.version, "caught_up": r.caught_up, "progress": r.progress, "result": r.result});
    if let Some(e) = r.error {
        body["error"] = e;
    }
    Ok(WebResponse::json(200, body))
}
