//! The chain over OpenWhisk's REST API: each link is a non-blocking action invocation (or a
//! trigger fire), authenticated with the activation's API key.
//!
//! A 429 (namespace rate limits) is retried with backoff within the activation's time; if it
//! persists the link is reported as a transient error and dropped — never lost for good, because
//! the alarm-driven tick re-fires every segment that is behind its head.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use kappa_core::ports::{
    Chain, HttpClient, HttpRequest, Link, LinkActions, PortError, PortResult, Timer,
};

use super::settings::LinkKind;

/// The OpenWhisk REST chain.
pub struct OpenWhiskChain {
    api_host: String,
    auth: String,
    kind: LinkKind,
    actions: LinkActions,
    http: Arc<dyn HttpClient>,
    timer: Arc<dyn Timer>,
    attempts: u32,
}

impl OpenWhiskChain {
    /// A chain on `api_host` (e.g. `https://openwhisk.example.com`) with an API key `uuid:key`.
    pub fn new(
        api_host: &str,
        api_key: &str,
        kind: LinkKind,
        actions: LinkActions,
        http: Arc<dyn HttpClient>,
        timer: Arc<dyn Timer>,
    ) -> Self {
        let host = if api_host.starts_with("http") {
            api_host.trim_end_matches('/').to_string()
        } else {
            format!("https://{}", api_host.trim_end_matches('/'))
        };
        let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(api_key));
        OpenWhiskChain { api_host: host, auth, kind, actions, http, timer, attempts: 5 }
    }

    fn url(&self, action: &str) -> String {
        // `kappa/process` is package `kappa`, action `process`, in the key's namespace.
        match self.kind {
            LinkKind::Invoke => {
                format!("{}/api/v1/namespaces/_/actions/{action}?blocking=false", self.api_host)
            }
            LinkKind::Trigger => format!(
                "{}/api/v1/namespaces/_/triggers/{}",
                self.api_host,
                action.replace('/', "-")
            ),
        }
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl Chain for OpenWhiskChain {
    async fn fire(&self, link: Link) -> PortResult<()> {
        let action = self.actions.of(&link);
        let body = serde_json::to_vec(&link.params()).unwrap_or_default();
        let mut backoff = 250;
        for attempt in 1..=self.attempts {
            let request = HttpRequest {
                public_only: false,
                method: "POST".into(),
                url: self.url(action),
                headers: vec![
                    ("authorization".into(), self.auth.clone()),
                    ("content-type".into(), "application/json".into()),
                ],
                body: body.clone(),
            };
            match self.http.send(request).await {
                Ok(r) if r.status == 202 || r.status == 200 => return Ok(()),
                Ok(r) if r.status == 204 => {
                    return Err(PortError::permanent(
                        "openwhisk",
                        format!("trigger for {action} has no active rule"),
                    ));
                }
                Ok(r) if r.status == 429 || r.status >= 500 => {
                    tracing::warn!(
                        status = r.status,
                        attempt,
                        action,
                        "chain link refused; backing off"
                    );
                }
                Ok(r) => {
                    return Err(PortError::permanent(
                        "openwhisk",
                        format!("firing {action} answered {}", r.status),
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, action, "chain link failed; backing off")
                }
            }
            if attempt < self.attempts {
                self.timer.sleep(backoff).await;
                backoff = (backoff * 2).min(8_000);
            }
        }
        Err(PortError::transient(
            "openwhisk",
            format!(
                "link to {action} not accepted after {} attempts; the tick will resume it",
                self.attempts
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::ports::{InstantTimer, MemoryHttp, ProcessEvent, PushEvent, Segment};

    fn actions() -> LinkActions {
        LinkActions { process: "kappa/process".into(), push: "kappa/push".into() }
    }

    fn chain(api_host: &str, kind: LinkKind, http: &Arc<MemoryHttp>) -> OpenWhiskChain {
        OpenWhiskChain::new(
            api_host,
            "u:k",
            kind,
            actions(),
            http.clone(),
            Arc::new(InstantTimer::default()),
        )
    }

    fn process_link() -> Link {
        let segment = Segment { partition: 0, start: 0, end: None };
        Link::Process(ProcessEvent { query: "q_1".into(), segment })
    }

    #[test]
    fn a_rate_limited_link_is_retried_then_accepted() {
        let http = Arc::new(MemoryHttp::default());
        http.script([Ok(429), Ok(429), Ok(202)]);
        let chain = chain("ow.example.com", LinkKind::Invoke, &http);
        pollster::block_on(chain.fire(process_link())).expect("accepted");
        let sent = http.sent();
        assert_eq!(sent.len(), 3);
        assert_eq!(
            sent[0].url,
            "https://ow.example.com/api/v1/namespaces/_/actions/kappa/process?blocking=false"
        );
        assert_eq!(
            sent[0].headers[0].1,
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("u:k"))
        );
        assert_eq!(
            String::from_utf8_lossy(&sent[0].body),
            r#"{"query":"q_1","segment":{"partition":0,"start":0,"end":null}}"#
        );
    }

    #[test]
    fn a_push_link_invokes_the_push_action_with_its_event() {
        let http = Arc::new(MemoryHttp::default());
        http.script([Ok(202)]);
        let chain = chain("ow.example.com", LinkKind::Trigger, &http);
        let link = Link::Push(PushEvent { query: "q_1".into(), version: 3 });
        pollster::block_on(chain.fire(link)).expect("accepted");
        let sent = http.sent();
        assert_eq!(sent[0].url, "https://ow.example.com/api/v1/namespaces/_/triggers/kappa-push");
        assert_eq!(String::from_utf8_lossy(&sent[0].body), r#"{"query":"q_1","version":3}"#);
    }

    #[test]
    fn a_link_refused_every_time_is_a_transient_error() {
        let http = Arc::new(MemoryHttp::default());
        http.script((0..5).map(|_| Ok(429)));
        let chain = chain("http://127.0.0.1:3233", LinkKind::Trigger, &http);
        let e = pollster::block_on(chain.fire(process_link())).expect_err("dropped");
        assert!(e.is_retryable());
        assert_eq!(
            http.sent()[0].url,
            "http://127.0.0.1:3233/api/v1/namespaces/_/triggers/kappa-process"
        );
    }
}
