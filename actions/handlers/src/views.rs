//! Named views: re-analysis without downtime, the same in `kappa dev` and a deployment.
//!
//! A view names a query. `PUT` with a new definition registers the new query (replayed from
//! the start of the log) as *pending* while subscribers keep receiving the current one; once
//! the pending query has caught up, [`switch_ready`] switches the view (run by `kappa dev`'s
//! view loop and by every tick of a deployment) and the old query is released. The view holds
//! one reference on each of its queries, so they are never reclaimed as idle. Definitions live
//! in the state store, changed only by compare-and-set, so concurrent `PUT`s and switches from
//! different containers never lose an update.

use kappa_core::Topic;
use kappa_core::ports::ViewDef;
use serde_json::{Value, json};

use crate::env::Env;
use crate::error::ActionError;
use crate::query;
use crate::status;
use crate::web::WebResponse;

fn links(name: &str) -> Value {
    json!({"self": format!("/v1/views/{name}"), "events": format!("/v1/views/{name}/events"), "ws": format!("/v1/views/{name}/ws")})
}

fn answer(status: u16, name: &str, def: &ViewDef) -> WebResponse {
    WebResponse::json(
        status,
        json!({"name": name, "id": def.id, "pending": def.pending, "links": links(name)}),
    )
}

fn not_found(name: &str) -> ActionError {
    ActionError::NotFound { what: "view", name: name.to_string() }
}

/// Drop the view's reference on a query it no longer names.
async fn release(env: &Env<'_>, id: &str) {
    if let Err(e) = query::unreference(env, id).await {
        tracing::debug!(query = %id, error = %e, "release of a view's query");
    }
}

/// `PUT /v1/views/{name}` with a query body: define a view (201), or redefine it (202 with the
/// new query pending; 200 when the definition is the current one again).
pub async fn put(env: &Env<'_>, name: &str, body: &[u8]) -> Result<WebResponse, ActionError> {
    if Topic::new(name).is_err() {
        return Ok(WebResponse::bad_request(format!(
            "invalid view name [{name}]: view names follow topic names: 1 to 249 of [A-Za-z0-9._-], not . or .."
        )));
    }
    let created = query::create(env, body).await?;
    let Some(id) = created.body["id"].as_str().map(str::to_string) else {
        return Ok(created);
    };
    // The reference is taken before the definition names the query, so a reclaim never sees it
    // unreferenced; a lost compare-and-set reads again, and the winning write decides whether
    // the view keeps this reference.
    env.store.add_refs(&id, 1).await?;
    let answer = loop {
        let current = env.store.view(name).await?;
        let (new, status, dropped) = match &current {
            None => (ViewDef { id: id.clone(), pending: None }, 201, None),
            // Back to the current definition: the replacement in progress is dropped.
            Some(def) if def.id == id => {
                (ViewDef { id: id.clone(), pending: None }, 200, def.pending.clone())
            }
            Some(def) if def.pending.as_deref() == Some(id.as_str()) => (def.clone(), 202, None),
            Some(def) => {
                let new = ViewDef { id: def.id.clone(), pending: Some(id.clone()) };
                (new, 202, def.pending.clone())
            }
        };
        if env.store.compare_and_set_view(name, current.as_ref(), &new).await? {
            // A definition already naming this query keeps the one reference it holds.
            if status == 200 || current.as_ref() == Some(&new) {
                release(env, &id).await;
            }
            if let Some(old) = dropped {
                release(env, &old).await;
            }
            break answer(status, name, &new);
        }
    };
    // A pending query that is already caught up (an empty topic) switches at once.
    switch_ready(env).await?;
    Ok(answer)
}

/// `GET /v1/views/{name}`: the current query's status, with the view's name and pending query.
pub async fn get(env: &Env<'_>, name: &str) -> Result<WebResponse, ActionError> {
    let def = env.store.view(name).await?.ok_or_else(|| not_found(name))?;
    let mut found = status::status(env, &def.id).await?;
    found.body["view"] = json!(name);
    found.body["pending"] = json!(def.pending);
    Ok(found)
}

/// The query a view's subscribers follow now.
pub async fn current(env: &Env<'_>, name: &str) -> Result<Option<String>, ActionError> {
    Ok(env.store.view(name).await?.map(|def| def.id))
}

/// Switch every view whose pending query has caught up; returns the views switched, with
/// the query each now names. The old query is released.
pub async fn switch_ready(env: &Env<'_>) -> Result<Vec<(String, String)>, ActionError> {
    let mut switched = Vec::new();
    for (name, def) in env.store.views().await? {
        let Some(pending) = def.pending.clone() else { continue };
        let ready = matches!(env.store.result(&pending).await?, Some(r) if r.caught_up);
        if !ready {
            continue;
        }
        let new = ViewDef { id: pending.clone(), pending: None };
        // Another container may switch it first: then it released the old query.
        if env.store.compare_and_set_view(&name, Some(&def), &new).await? {
            tracing::info!(view = %name, from = %def.id, to = %pending, "view switched");
            release(env, &def.id).await;
            switched.push((name, pending));
        }
    }
    Ok(switched)
}
