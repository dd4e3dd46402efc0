//! `exec` of every Kappa native action: set up the adapters once per container, then serve
//! activations with the one dispatch of `kappa_actions::openwhisk` (the handler named by the
//! action: `.../query`, `process`, `push`, `status`, `tick`).
//!
//! Run with: the ActionLoop proxy (`scripts/actionloop.sh`), or by hand:
//! `echo '{"value":{},"deadline":"9999999999999","action_name":"/ns/kappa/tick"}' | KAFKA_BROKERS=.. REDIS_URL=.. kappa-action`
//! Test with: `cargo test -p kappa-runtime`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kappa_actions::openwhisk::{OpenWhiskChain, Settings, dispatch, error_result};
use kappa_actions::warm::WarmStates;
use kappa_actions::{ActionError, Env};
use kappa_core::ports::{HttpClient, Timer};
use kappa_log_kafka::{KafkaLog, KafkaLogConfig};
use kappa_runtime::clock::{SystemClock, TokioTimer};
use kappa_runtime::http::ReqwestHttp;
use kappa_runtime::runner::{self, Activation};
use kappa_state_redis::{Connection, RedisStore, RedisStoreConfig};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// What a container keeps between its activations.
struct Adapters {
    settings: Settings,
    log: KafkaLog,
    store: RedisStore<Connection>,
    http: Arc<ReqwestHttp>,
    warm: WarmStates,
}

fn main() -> anyhow::Result<()> {
    runner::init_logging();
    let env: HashMap<String, String> = std::env::vars().collect();
    let adapters: Arc<OnceCell<Adapters>> = Arc::new(OnceCell::new());
    runner::serve(move |activation| {
        // The first activation sets the container up (wskdeploy passes package inputs as
        // parameters, so the settings may come with it).
        let settings = Settings::read(
            |k| env.get(k).cloned(),
            activation.value.as_object().unwrap_or(&Default::default()),
        );
        let adapters = adapters.clone();
        async move {
            let settings = match settings {
                Ok(s) => s,
                Err(e) => return json!({"error": e.to_string()}),
            };
            match adapters.get_or_try_init(|| connect(settings)).await {
                Ok(a) => handle(a, &activation).await,
                Err(e) => error_result(&e),
            }
        }
    })?;
    Ok(())
}

async fn connect(settings: Settings) -> Result<Adapters, ActionError> {
    let log = KafkaLog::connect(KafkaLogConfig {
        brokers: settings.kafka_brokers.clone(),
        extra: Vec::new(),
    })?;
    let store = RedisStore::connect(&settings.redis_url, RedisStoreConfig::default()).await?;
    let http = Arc::new(ReqwestHttp::new(Duration::from_secs(10))?);
    let warm = WarmStates::new(settings.config.warm_state_bytes);
    Ok(Adapters { settings, log, store, http, warm })
}

async fn handle(a: &Adapters, activation: &Activation) -> Value {
    let invocation = activation.invocation();
    let http: Arc<dyn HttpClient> = a.http.clone();
    let timer: Arc<dyn Timer> = Arc::new(TokioTimer);
    // The chain authenticates with this activation's key (`provide-api-key`).
    let chain = OpenWhiskChain::new(
        &a.settings.api_host,
        invocation.api_key.as_deref().unwrap_or(""),
        a.settings.link,
        a.settings.config.link_actions(),
        http,
        timer,
    );
    let env = Env {
        log: &a.log,
        writer: &a.log,
        store: &a.store,
        chain: &chain,
        http: &*a.http,
        clock: &SystemClock,
        timer: &TokioTimer,
        config: &a.settings.config,
        warm: &a.warm,
    };
    dispatch(&env, &invocation, &a.settings).await
}
