//! Webhook delivery: every endpoint of a query gets each delta at the same time, so a slow or
//! failing endpoint delays no other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::executor::block_on;
use kappa_actions::push::{PushEvent, push};
use kappa_actions::{ActionConfig, Env, query};
use kappa_core::Topic;
use kappa_core::ports::{
    HttpClient, HttpRequest, HttpResponse, InstantTimer, LogWriter, ManualClock, MemoryChain,
    MemoryLog, MemoryStore, NewRecord, PortResult, StateStore, Subscription, YieldNow,
};
use serde_json::json;

/// The slow endpoint answers only once the fast one has been sent to (or gives up with a 503
/// after many turns): with one delivery after the other it can never see the fast one.
#[derive(Default)]
struct SlowAndFast {
    fast_sent: AtomicBool,
}

#[async_trait::async_trait]
impl HttpClient for SlowAndFast {
    async fn send(&self, request: HttpRequest) -> PortResult<HttpResponse> {
        if request.url.contains("fast") {
            self.fast_sent.store(true, Ordering::SeqCst);
            return Ok(HttpResponse { status: 200, body: vec![] });
        }
        for _ in 0..1_000 {
            if self.fast_sent.load(Ordering::SeqCst) {
                return Ok(HttpResponse { status: 200, body: vec![] });
            }
            YieldNow::default().await;
        }
        Ok(HttpResponse { status: 503, body: vec![] })
    }
}

#[test]
fn a_slow_endpoint_delays_no_other() {
    let clock = Arc::new(ManualClock::new(1_782_000_000_000));
    let (log, store, chain) = (MemoryLog::default(), MemoryStore::new(64), MemoryChain::default());
    let http = SlowAndFast::default();
    let timer = InstantTimer { clock: Some(clock.clone()) };
    let config = ActionConfig { webhook_attempts: 1, ..ActionConfig::default() };
    let warm = kappa_actions::warm::WarmStates::new(config.warm_state_bytes);
    let env = Env {
        log: &log,
        writer: &log,
        store: &store,
        chain: &chain,
        http: &http,
        clock: &*clock,
        timer: &timer,
        config: &config,
        warm: &warm,
    };
    let out = block_on(async {
        log.ensure_topic(&Topic::new("t").expect("a valid name"), 1).await.expect("topic");
        let record = NewRecord { key: None, value: br#"{"a":1}"#.to_vec(), timestamp: 0 };
        log.append("t", 0, &[record]).await.expect("append");
        let body = json!({"topic": "t"}).to_string();
        let created = query::create(&env, body.as_bytes()).await.expect("created");
        let id = created.body["id"].as_str().expect("id").to_string();
        // The slow endpoint was subscribed first.
        for url in ["https://slow.example.com/h", "https://fast.example.com/h"] {
            let sub = Subscription { url: url.into(), secret: "s".into() };
            store.subscribe(&id, &sub).await.expect("subscribed");
        }
        push(&env, PushEvent { query: id, version: 0 }).await.expect("pushed")
    });
    assert_eq!((out.delivered, out.failed), (2, 0), "{out:?}");
}
