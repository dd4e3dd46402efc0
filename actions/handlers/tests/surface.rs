//! The one action surface of both hosts (`kappa_actions::openwhisk`): every action of the
//! package is dispatched, and the web routes answer as api.md says, through `dispatch` exactly
//! as the native binary and the WASM module call it.

use std::sync::Arc;

use futures::executor::block_on;
use kappa_actions::openwhisk::{ACTIONS, Invocation, Settings, dispatch};
use kappa_actions::warm::WarmStates;
use kappa_actions::{ActionConfig, Context, Env};
use kappa_core::Topic;
use kappa_core::ports::{
    InstantTimer, Link, LogWriter, ManualClock, MemoryChain, MemoryHttp, MemoryLog, MemoryStore,
};
use serde_json::{Map, Value, json};

const NOW: i64 = 1_782_000_000_000;

struct Host {
    log: MemoryLog,
    store: MemoryStore,
    chain: MemoryChain,
    http: MemoryHttp,
    clock: Arc<ManualClock>,
    timer: InstantTimer,
    config: ActionConfig,
    warm: WarmStates,
    settings: Settings,
}

impl Host {
    fn new(api_keys: &'static str) -> Host {
        let env = move |k: &str| match k {
            "KAFKA_BROKERS" => Some("k:9092".to_string()),
            "REDIS_URL" => Some("redis://r".to_string()),
            "KAPPA_API_KEYS" => Some(api_keys.to_string()),
            _ => None,
        };
        let settings = Settings::read(env, &Map::new()).expect("valid settings");
        let clock = Arc::new(ManualClock::new(NOW));
        let host = Host {
            log: MemoryLog::default(),
            store: MemoryStore::new(64),
            chain: MemoryChain::default(),
            http: MemoryHttp::default(),
            timer: InstantTimer { clock: Some(clock.clone()) },
            clock,
            config: ActionConfig { max_ingest_bytes: 1024, ..settings.config.clone() },
            warm: WarmStates::new(1 << 20),
            settings,
        };
        let topic = Topic::new("tweets").expect("a valid name");
        block_on(host.log.ensure_topic(&topic, 1)).expect("topic");
        host
    }

    fn run(&self, action: &str, params: Value) -> Value {
        let env = Env {
            log: &self.log,
            writer: &self.log,
            store: &self.store,
            chain: &self.chain,
            http: &self.http,
            clock: &*self.clock,
            timer: &self.timer,
            config: &self.config,
            warm: &self.warm,
        };
        let context = Context { activation_id: "a1".into(), deadline_ms: NOW + 60_000 };
        let invocation = Invocation::new(&format!("/guest/kappa/{action}"), params, context, None);
        block_on(dispatch(&env, &invocation, &self.settings))
    }

    /// Run the process links fired so far, and those they fire, as the platform would.
    fn run_links(&self) {
        loop {
            let links: Vec<_> =
                self.chain.take().into_iter().filter(|l| !matches!(l, Link::Push(_))).collect();
            if links.is_empty() {
                return;
            }
            for link in links {
                let out = self.run("process", link.params());
                assert!(out.get("error").is_none(), "{out}");
            }
        }
    }

    /// A raw-http web request to the `query` action: its status and body.
    fn web(&self, method: &str, path: &str, query: &str, body: &str, key: &str) -> (u64, Value) {
        let headers = if key.is_empty() {
            json!({})
        } else {
            json!({"authorization": format!("Bearer {key}")})
        };
        let out = self.run(
            "query",
            json!({"__ow_method": method, "__ow_path": path, "__ow_query": query,
                   "__ow_headers": headers, "__ow_body": body}),
        );
        (out["statusCode"].as_u64().expect("a web answer"), out["body"].clone())
    }
}

#[test]
fn every_action_of_the_package_is_dispatched() {
    let host = Host::new("");
    for action in ACTIONS {
        let out = host.run(action, json!({}));
        assert!(!out.to_string().contains("unknown action"), "{action}: {out}");
    }
    let out = host.run("nope", json!({}));
    assert!(out["error"]["message"].as_str().is_some_and(|m| m.contains("unknown action [nope]")));
    assert_eq!(out["error"]["retryable"], false);
}

#[test]
fn the_deployed_web_routes_answer_as_kappa_dev_does() {
    let host = Host::new("k1");
    let query = r#"{"topic":"tweets","aggs":{"langs":{"terms":{"field":"lang"}}}}"#;
    assert_eq!(host.web("post", "/v1/queries", "", query, "").0, 401, "a key is required");
    assert_eq!(host.web("post", "/v1/queries", "", query, "wrong").0, 401);
    let (status, created) = host.web("post", "/v1/queries", "", query, "k1");
    assert!(status == 200 || status == 201, "{status} {created}");
    let id = created["id"].as_str().expect("an id").to_string();
    let (status, body) = host.web("get", &format!("/v1/queries/{id}"), "", "", "k1");
    assert_eq!((status, body["id"].as_str()), (200, Some(id.as_str())));

    let subs = format!("/v1/queries/{id}/subscriptions");
    let hook = r#"{"url":"https://hooks.example.com/kappa","secret":"s"}"#;
    let (status, body) = host.web("post", &subs, "", hook, "k1");
    assert_eq!((status, &body["subscribed"]), (201, &json!(true)), "{body}");
    assert_eq!(host.web("post", &subs, "", hook, "k1").0, 409, "the same URL twice");
    let private = r#"{"url":"http://127.0.0.1:9/h","secret":"s"}"#;
    assert_eq!(host.web("post", &subs, "", private, "k1").0, 400, "loopback refused");
    assert_eq!(host.web("post", &subs, "", "{", "k1").0, 400);
    assert_eq!(host.web("delete", &subs, "", "", "k1").0, 400, "[url] is required");
    let url = "url=https%3A%2F%2Fhooks.example.com%2Fkappa";
    let (status, body) = host.web("delete", &subs, url, "", "k1");
    assert_eq!((status, &body["subscribed"]), (200, &json!(false)), "{body}");
    assert_eq!(host.web("delete", &subs, url, "", "k1").0, 404, "gone already");
    let unknown = "/v1/queries/q_0000000000000000000000000000000000000000/subscriptions";
    assert_eq!(host.web("post", unknown, "", hook, "k1").0, 404);

    assert_eq!(host.web("put", "/v1/nothing", "", "", "k1").0, 404, "no such route");
    assert_eq!(host.web("put", "/v1/queries", "", "", "k1").0, 405, "no such method");
    let (status, _) = host.web("delete", &format!("/v1/queries/{id}"), "", "", "k1");
    assert_eq!(status, 200);
}

#[test]
fn records_are_ingested_through_the_deployed_route_as_through_kappa_dev() {
    let host = Host::new("");
    let path = "/v1/topics/matches/records";
    let body = "{\"user\":{\"id\":7},\"lang\":\"en\"}\n\n{\"user\":{\"id\":7},\"lang\":\"fr\"}\n";
    let (status, answer) = host.web("post", path, "key=user.id", body, "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["topic"].as_str(), answer["count"].as_u64()), (Some("matches"), Some(2)));
    let partitions = answer["partitions"].as_object().expect("partitions");
    assert_eq!(partitions.len(), 1, "one key, one partition: {answer}");
    let topic = Topic::new("matches").expect("a valid name");
    assert_eq!(
        block_on(kappa_core::ports::LogReader::partitions(&host.log, &topic)).expect("read"),
        Some(4),
        "a new topic gets the configured partitions"
    );

    let (status, refused) = host.web("post", path, "", "{\"a\":1}\n{\"a\":\n", "");
    assert_eq!((status, &refused["error"]["line"]), (400, &json!(2)), "{refused}");
    let (status, _) = host.web("post", path, "", &"{\"a\":1}\n".repeat(200), "");
    assert_eq!(status, 413, "over max_ingest_bytes");
    assert_eq!(host.web("post", "/v1/topics/no%20such/records", "", "{}", "").0, 400);
    assert_eq!(host.web("get", path, "", "", "").0, 405);
}

#[test]
fn views_are_deployed_and_switch_on_a_tick_once_the_new_query_caught_up() {
    let host = Host::new("");
    let records =
        (0..3).map(|i| format!("{{\"lang\":\"en\",\"user\":\"u{i}\"}}")).collect::<Vec<_>>();
    assert_eq!(host.web("post", "/v1/topics/tweets/records", "", &records.join("\n"), "").0, 200);
    let a = r#"{"topic":"tweets","aggs":{"langs":{"terms":{"field":"lang"}}}}"#;
    let (status, created) = host.web("put", "/v1/views/desk", "", a, "");
    assert_eq!(status, 201, "{created}");
    let id_a = created["id"].as_str().expect("id").to_string();
    host.run_links();
    let (status, got) = host.web("get", "/v1/views/desk", "", "", "");
    assert_eq!(
        (status, got["id"].as_str(), &got["view"]),
        (200, Some(id_a.as_str()), &json!("desk"))
    );
    assert_eq!(got["result"]["aggregations"]["langs"]["buckets"][0]["doc_count"], 3, "{got}");

    // A new definition is pending until it has caught up; the tick then switches the view.
    let b = r#"{"topic":"tweets","aggs":{"users":{"terms":{"field":"user"}}}}"#;
    let (status, redefined) = host.web("put", "/v1/views/desk", "", b, "");
    assert_eq!((status, redefined["id"].as_str()), (202, Some(id_a.as_str())), "{redefined}");
    let id_b = redefined["pending"].as_str().expect("pending").to_string();
    assert_eq!(host.web("put", "/v1/views/desk", "", b, "").0, 202, "the same pending again");
    let tick = host.run("tick", json!({}));
    assert_eq!(tick["views_switched"], 0, "not caught up yet: {tick}");
    host.run_links();
    let tick = host.run("tick", json!({}));
    assert_eq!(tick["views_switched"], 1, "{tick}");
    let (_, got) = host.web("get", "/v1/views/desk", "", "", "");
    assert_eq!((got["id"].as_str(), &got["pending"]), (Some(id_b.as_str()), &Value::Null), "{got}");
    assert_eq!(
        host.web("get", &format!("/v1/queries/{id_a}"), "", "", "").0,
        404,
        "the old query is released"
    );
    assert_eq!(host.web("get", "/v1/views/nope", "", "", "").0, 404);
    assert_eq!(host.web("put", "/v1/views/..", "", a, "").0, 400);
    assert_eq!(host.web("delete", "/v1/views/desk", "", "", "").0, 405);
}
