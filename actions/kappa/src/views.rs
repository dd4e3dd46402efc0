//! Named views: re-analysis without downtime.
//!
//! A view names a query. `PUT` with a new definition registers the new query (replayed from
//! the start of the log) as *pending* while subscribers keep receiving the current one; once
//! the pending query has caught up, the view switches: subscribers get a snapshot of the new
//! query (with its id) and the old query is released. The view holds one reference on each of
//! its queries, so they are never reclaimed as idle; its subscribers follow the view, not a
//! query, and take no reference of their own. Definitions are kept in `<data-dir>/views.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kappa_actions::query;
use kappa_core::Topic;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};

use kappa_push::error::ApiError;

use crate::scheduler::Core;

/// A view's stored definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    /// The query subscribers receive.
    pub id: String,
    /// The query replacing it once caught up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
}

struct Entry {
    def: ViewDef,
    tx: watch::Sender<String>,
}

/// The views of a server.
pub struct Views {
    path: Option<PathBuf>,
    views: Mutex<BTreeMap<String, Entry>>,
}

impl Views {
    /// Load the views kept in `path` (none when absent).
    pub fn load(path: Option<PathBuf>) -> Result<Views, String> {
        let mut views = BTreeMap::new();
        if let Some(p) = &path
            && p.exists()
        {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let defs: BTreeMap<String, ViewDef> =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            for (name, def) in defs {
                let (tx, _) = watch::channel(def.id.clone());
                views.insert(name, Entry { def, tx });
            }
        }
        Ok(Views { path, views: Mutex::new(views) })
    }

    fn save(&self, views: &BTreeMap<String, Entry>) -> Result<(), ApiError> {
        let Some(path) = &self.path else { return Ok(()) };
        let defs: BTreeMap<&String, &ViewDef> = views.iter().map(|(k, v)| (k, &v.def)).collect();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&defs).map_err(ApiError::internal)?;
        std::fs::write(&tmp, text).map_err(ApiError::internal)?;
        std::fs::rename(&tmp, path).map_err(ApiError::internal)
    }

    /// The current query of a view and a receiver of its switches.
    pub async fn follow(&self, name: &str) -> Option<watch::Receiver<String>> {
        self.views.lock().await.get(name).map(|e| e.tx.subscribe())
    }

    /// A view's definition.
    pub async fn get(&self, name: &str) -> Option<ViewDef> {
        self.views.lock().await.get(name).map(|e| e.def.clone())
    }
}

fn links(name: &str) -> Value {
    json!({"self": format!("/v1/views/{name}"), "events": format!("/v1/views/{name}/events"), "ws": format!("/v1/views/{name}/ws")})
}

/// `PUT /v1/views/{name}`: define or redefine a view.
pub async fn put(
    core: &Core,
    views: &Views,
    name: &str,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    if Topic::new(name).is_err() {
        return Err(ApiError::bad_request(format!(
            "invalid view name [{name}]: view names follow topic names: 1 to 249 of [A-Za-z0-9._-], not . or .."
        )));
    }
    let env = core.env();
    let created = query::create(&env, body).await?;
    let id = created.body["id"].as_str().unwrap_or_default().to_string();
    let store = &*core.store;
    let mut defs = views.views.lock().await;
    let answer = match defs.get_mut(name) {
        None => {
            store.add_refs(&id, 1).await?;
            let (tx, _) = watch::channel(id.clone());
            defs.insert(
                name.to_string(),
                Entry { def: ViewDef { id: id.clone(), pending: None }, tx },
            );
            (201, json!({"name": name, "id": id, "pending": null, "links": links(name)}))
        }
        Some(entry) => {
            let old_pending = entry.def.pending.take();
            if entry.def.id == id {
                // Back to the current definition: drop the replacement in progress.
                if let Some(p) = old_pending {
                    release(core, &p).await;
                }
                (200, json!({"name": name, "id": id, "pending": null, "links": links(name)}))
            } else if old_pending.as_deref() == Some(id.as_str()) {
                entry.def.pending = old_pending;
                (
                    202,
                    json!({"name": name, "id": entry.def.id, "pending": id, "links": links(name)}),
                )
            } else {
                if let Some(p) = old_pending {
                    release(core, &p).await;
                }
                store.add_refs(&id, 1).await?;
                entry.def.pending = Some(id.clone());
                (
                    202,
                    json!({"name": name, "id": entry.def.id, "pending": id, "links": links(name)}),
                )
            }
        }
    };
    views.save(&defs)?;
    drop(defs);
    // A pending query that is already caught up (an empty topic) switches at once.
    switch_ready(core, views).await;
    Ok(answer)
}

async fn release(core: &Core, id: &str) {
    if let Err(e) = query::unreference(&core.env(), id).await {
        tracing::debug!(query = %id, error = %e, "release of a view's query");
    }
}

/// Switch every view whose pending query has caught up.
pub async fn switch_ready(core: &Core, views: &Views) {
    let store = &*core.store;
    let mut defs = views.views.lock().await;
    let mut released = Vec::new();
    for (name, entry) in defs.iter_mut() {
        let Some(pending) = entry.def.pending.clone() else { continue };
        let ready = matches!(store.result(&pending).await, Ok(Some(r)) if r.caught_up);
        if ready {
            let old = std::mem::replace(&mut entry.def.id, pending.clone());
            entry.def.pending = None;
            entry.tx.send_replace(pending.clone());
            tracing::info!(view = %name, from = %old, to = %pending, "view switched");
            released.push(old);
        }
    }
    if released.is_empty() {
        return;
    }
    if let Err(e) = views.save(&defs) {
        tracing::warn!(error = ?e.body, "could not save views");
    }
    drop(defs);
    for old in released {
        release(core, &old).await;
    }
}

/// Check pending views periodically.
pub fn run(core: Arc<Core>, views: Arc<Views>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            switch_ready(&core, &views).await;
        }
    });
}
