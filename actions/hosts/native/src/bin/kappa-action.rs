//! `exec` of every Kappa native action: set up the adapters once per container, then serve
//! activations with the handler named by the action (`.../query`, `process`, `push`, `status`,
//! `tick`).
//!
//! Run with: the ActionLoop proxy (`scripts/actionloop.sh`), or by hand:
//! `echo '{"value":{},"deadline":"9999999999999","action_name":"/ns/kappa/tick"}' | KAFKA_BROKERS=.. REDIS_URL=.. kappa-action`
//! Test with: `cargo test -p kappa-runtime`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kappa_actions::group;
use kappa_actions::push::{self, PushEvent};
use kappa_actions::warm::WarmStates;
use kappa_actions::web::WebResponse;
use kappa_actions::{ActionError, Env, query, status, tick};
use kappa_core::QueryId;
use kappa_core::ports::{Chain, HttpClient, Timer};
use kappa_log_kafka::{KafkaLog, KafkaLogConfig};
use kappa_runtime::chain::OpenWhiskChain;
use kappa_runtime::clock::{SystemClock, TokioTimer};
use kappa_runtime::deployment::{Deployment, settings_from, strip_settings};
use kappa_runtime::http::ReqwestHttp;
use kappa_runtime::runner::{self, Activation, error_result};
use kappa_state_redis::{RedisStore, RedisStoreConfig};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

struct Adapters {
    deployment: Deployment,
    log: KafkaLog,
    store: RedisStore,
    http: Arc<ReqwestHttp>,
    /// Kept between this container's activations.
    warm: WarmStates,
}

fn main() -> anyhow::Result<()> {
    runner::init_logging();
    let env: HashMap<String, String> = std::env::vars().collect();
    let adapters: Arc<OnceCell<Adapters>> = Arc::new(OnceCell::new());
    runner::serve(move |activation| {
        // Settings come from the environment (init parameters) or, as wskdeploy passes package
        // inputs, from the activation's parameters; the first activation sets the container up.
        let deployment = Deployment::from_map(&settings_from(&env, &activation.value));
        let adapters = adapters.clone();
        async move {
            let deployment = match deployment {
                Ok(d) => d,
                Err(e) => return json!({"error": e.to_string()}),
            };
            let adapters = match adapters.get_or_try_init(|| connect(deployment)).await {
                Ok(a) => a,
                Err(e) => return error_result(&e),
            };
            handle(adapters, activation).await
        }
    })?;
    Ok(())
}

async fn connect(deployment: Deployment) -> Result<Adapters, ActionError> {
    let log = KafkaLog::connect(KafkaLogConfig {
        brokers: deployment.kafka_brokers.clone(),
        extra: Vec::new(),
    })?;
    let store = RedisStore::connect(&deployment.redis_url, RedisStoreConfig::default()).await?;
    let http = Arc::new(ReqwestHttp::new(Duration::from_secs(10))?);
    let warm = WarmStates::new(deployment.config.warm_state_bytes);
    Ok(Adapters { deployment, log, store, http, warm })
}

/// The action's name without namespace and package: `/guest/kappa/process` → `process`.
fn short_name(action_name: &str) -> &str {
    action_name.rsplit('/').next().unwrap_or(action_name)
}

async fn handle(a: &Adapters, activation: Activation) -> Value {
    let timer: Arc<dyn Timer> = Arc::new(TokioTimer);
    let http: Arc<dyn HttpClient> = a.http.clone();
    // The chain authenticates with this activation's key (`provide-api-key`).
    let chain = OpenWhiskChain::new(
        &a.deployment.api_host,
        activation.api_key.as_deref().unwrap_or(""),
        a.deployment.link,
        a.deployment.config.link_actions(),
        http,
        timer,
    );
    let env = Env {
        log: &a.log,
        store: &a.store,
        chain: &chain as &dyn Chain,
        http: &*a.http,
        clock: &SystemClock,
        timer: &TokioTimer,
        config: &a.deployment.config,
        warm: &a.warm,
    };
    let ctx = activation.context();
    let name = short_name(&activation.action_name).to_string();
    let result = match name.as_str() {
        "process" => group::process_event(&env, &ctx, strip_settings(&activation.value)).await,
        "push" => match serde_json::from_value::<PushEvent>(strip_settings(&activation.value)) {
            Ok(event) => {
                push::push(&env, event).await.map(|o| serde_json::to_value(o).unwrap_or_default())
            }
            Err(e) => Err(ActionError::BadEvent(e.to_string())),
        },
        "tick" => {
            // A Kafka feed event names its topic; an alarm checks everything.
            let topic = activation
                .value
                .pointer("/messages/0/topic")
                .and_then(Value::as_str)
                .map(str::to_string);
            tick::tick(&env, topic.as_deref())
                .await
                .map(|o| serde_json::to_value(o).unwrap_or_default())
        }
        "query" | "status" | "api" => return web(&env, a, &activation).await.to_openwhisk(),
        other => Err(ActionError::BadEvent(format!("unknown action [{other}]"))),
    };
    match result {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(action = %name, activation = %ctx.activation_id, error = %e, retryable = e.is_retryable(), "activation failed");
            error_result(&e)
        }
    }
}

/// Web routes: `POST /v1/queries`, `GET|DELETE /v1/queries/{id}`.
async fn web(env: &Env<'_>, a: &Adapters, activation: &Activation) -> WebResponse {
    if !a.deployment.authorized(activation.header("authorization")) {
        return WebResponse::json(
            401,
            json!({"error": {"type": "security_exception", "reason": "missing or invalid API key"}, "status": 401}),
        );
    }
    let path = activation.path().trim_end_matches('/');
    let id = path.rsplit('/').next().and_then(QueryId::parse);
    let outcome = match (activation.method().unwrap_or("get"), id) {
        ("post", _) => query::create(env, &activation.body()).await,
        ("get", Some(id)) => status::status(env, &id).await,
        ("delete", Some(id)) => query::release(env, &id).await,
        (method, _) => Ok(WebResponse::json(
            405,
            json!({"error": {"type": "method_not_allowed", "reason": format!("{method} {path} is not a route")}, "status": 405}),
        )),
    };
    outcome.unwrap_or_else(WebResponse::from)
}
