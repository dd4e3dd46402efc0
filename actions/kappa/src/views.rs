//! Named views in `kappa dev`. The definitions, `PUT`, `GET` and the switch are
//! `kappa_actions::views`' (kept in the state store, exactly as in a deployment); this module
//! adds what only a server holding streams needs: per followed view, a watch of the query its
//! subscribers receive, so that a switch moves the open streams to the new query.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kappa_actions::ActionError;
use kappa_actions::views as view;
use kappa_actions::web::WebResponse;
use kappa_core::ports::ViewDef;
use tokio::sync::{Mutex, watch};

use crate::scheduler::Core;

/// The followed views of a server.
#[derive(Default)]
pub struct Views {
    watched: Mutex<HashMap<String, watch::Sender<String>>>,
}

impl Views {
    /// The current query of a view and a receiver of its switches (None: no such view).
    pub async fn follow(
        &self,
        core: &Core,
        name: &str,
    ) -> Result<Option<watch::Receiver<String>>, ActionError> {
        let Some(id) = view::current(&core.env(), name).await? else { return Ok(None) };
        let mut watched = self.watched.lock().await;
        let sender =
            watched.entry(name.to_string()).or_insert_with(|| watch::channel(id.clone()).0);
        sender.send_if_modified(|current| std::mem::replace(current, id.clone()) != id);
        Ok(Some(sender.subscribe()))
    }

    /// Move each followed view's streams to the query it names now; forget views nobody
    /// follows any more.
    async fn refresh(&self, core: &Core) -> Result<(), ActionError> {
        let mut watched = self.watched.lock().await;
        watched.retain(|_, sender| sender.receiver_count() > 0);
        if watched.is_empty() {
            return Ok(());
        }
        for (name, def) in core.store.views().await? {
            if let Some(sender) = watched.get(&name) {
                sender.send_if_modified(|current| {
                    std::mem::replace(current, def.id.clone()) != def.id
                });
            }
        }
        Ok(())
    }
}

/// `PUT /v1/views/{name}`: [`kappa_actions::views::put`], then the followers learn of an
/// immediate switch.
pub async fn put(
    core: &Core,
    views: &Views,
    name: &str,
    body: &[u8],
) -> Result<WebResponse, ActionError> {
    let answer = view::put(&core.env(), name, body).await?;
    views.refresh(core).await?;
    Ok(answer)
}

/// Definitions a `kappa dev` before views lived in the store kept in `<data-dir>/views.json`:
/// moved into the store once (the file is renamed `views.json.imported`). Their queries'
/// references are in the store already.
pub async fn import(core: &Core, path: &Path) -> Result<usize, String> {
    if !path.exists() {
        return Ok(0);
    }
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    let defs: BTreeMap<String, ViewDef> =
        serde_json::from_str(&text).map_err(|e| format!("{shown}: {e}"))?;
    for (name, def) in &defs {
        core.store
            .compare_and_set_view(name, None, def)
            .await
            .map_err(|e| format!("view {name}: {e}"))?;
    }
    std::fs::rename(path, path.with_extension("json.imported"))
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(defs.len())
}

/// Switch views whose pending query caught up, and move their streams, every 200 ms.
pub fn run(core: Arc<Core>, views: Arc<Views>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let switched = view::switch_ready(&core.env()).await;
            if let Err(e) = switched.and(views.refresh(&core).await) {
                tracing::warn!(error = %e, "view switch");
            }
        }
    });
}
