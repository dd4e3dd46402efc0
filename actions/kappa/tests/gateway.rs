//! `kappa-gateway` against real Redis (and `kappa dev` on real Kafka and Redis computing the
//! queries and running the push action): deltas posted to one gateway instance reach the
//! websocket and SSE subscribers of every instance through Redis pub/sub; the feed and the
//! subscriber routes are authenticated with separate secrets; bad feed bodies are refused.

mod common;

use std::time::Duration;

use common::{Backend, Follower, SseClient, start, tweet, unique, ws_next, ws_open};
use kappa_gateway::{self as gateway, GatewayConfig, RunningGateway};
use serde_json::{Value, json};

const PUSH_TOKEN: &str = "push-secret";
const SUBSCRIBER_KEY: &str = "subscriber-key";

async fn gateway(prefix: &str, push_limit: usize) -> RunningGateway {
    let (_, redis_url) = common::real_backends().expect("real backends");
    gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        redis_url,
        redis_prefix: prefix.to_string(),
        push_tokens: vec![PUSH_TOKEN.into()],
        api_keys: vec![SUBSCRIBER_KEY.into()],
        subscriber_buffer: 64,
        push_limit,
        ..GatewayConfig::default()
    })
    .await
    .expect("gateway starts")
}

async fn post(url: &str, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut rb = reqwest::Client::new().post(url).body(body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(url: &str, key: Option<&str>) -> (u16, Value) {
    let mut rb = reqwest::Client::new().get(url);
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Read messages until the follower holds `version`.
async fn follow_ws_to(ws: &mut common::Ws, follower: &mut Follower, version: u64) {
    while follower.version != Some(version) {
        let m = ws_next(ws).await;
        follower.apply(&m);
    }
}

async fn follow_sse_to(sse: &mut SseClient, follower: &mut Follower, version: u64) {
    while follower.version != Some(version) {
        let (event_id, m) = sse.next().await;
        assert_eq!(event_id, m["version"].as_u64(), "SSE ids are versions");
        follower.apply(&m);
    }
}

async fn check_gateway() {
    let prefix = unique("kappa-gw");
    let a = gateway(&prefix, 16 << 20).await;
    let b = gateway(&prefix, 4096).await;
    let (url_a, url_b) = (format!("http://{}", a.addr), format!("http://{}", b.addr));
    let feed_a = format!("{url_a}/v1/internal/deltas");
    let feed_b = format!("{url_b}/v1/internal/deltas");

    // `kappa dev` on the same Redis computes the queries; its push action feeds instance A only.
    let feed = feed_a.clone();
    let dev = start(Backend::Real, move |c| {
        c.redis_prefix = prefix.clone();
        c.action.gateway_url = Some(feed);
        c.action.gateway_token = Some(PUSH_TOKEN.into());
    })
    .await;
    let topic = unique("gw");
    let first: Vec<Value> = (0..40).map(tweet).collect();
    dev.ingest(&topic, &first).await;
    let body = json!({"topic": topic,
                      "aggs": {"tags": {"terms": {"field": "entities.hashtags.text", "size": 10}},
                               "users": {"cardinality": {"field": "user.screen_name"}}},
                      "size": 2, "sort": [{"retweet_count": "desc"}]});
    let id = dev.query(&body).await;
    let caught_up = dev.caught_up(&id, 40).await;

    // Both instances serve the result from Redis, to subscribers with a key only.
    let (s, v) = get(&format!("{url_b}/v1/queries/{id}"), Some(SUBSCRIBER_KEY)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"], caught_up["result"]);
    let (s, v) = get(&format!("{url_a}/v1/queries/{id}"), None).await;
    assert_eq!((s, v["error"]["type"].as_str()), (401, Some("security_exception")), "{v}");
    let (s, _) = get(&format!("{url_a}/v1/queries/{id}"), Some(PUSH_TOKEN)).await;
    assert_eq!(s, 401, "the push token is not a subscriber key");
    let (s, v) = get(&format!("{url_a}/v1/queries/q_unknown"), Some(SUBSCRIBER_KEY)).await;
    assert_eq!((s, v["error"]["type"].as_str()), (404, Some("resource_not_found_exception")));
    let (s, _) = get(&format!("{url_a}/healthz"), None).await;
    assert_eq!(s, 200, "healthz is open");
    let ws_url = format!("ws://{}/v1/queries/{id}/ws", b.addr);
    assert!(tokio_tungstenite::connect_async(ws_url.as_str()).await.is_err(), "ws needs a key");

    // Subscribers on instance B (websocket) and A (SSE): a snapshot first.
    let mut on_b = ws_open(&ws_url, Some(SUBSCRIBER_KEY)).await;
    let mut follower_b = Follower::default();
    follower_b.apply(&ws_next(&mut on_b).await);
    assert_eq!(follower_b.result, caught_up["result"]);
    let mut on_a =
        SseClient::open_url(&format!("{url_a}/v1/queries/{id}/events"), Some(SUBSCRIBER_KEY), None)
            .await;
    let mut follower_a = Follower::default();
    let (_, m) = on_a.next().await;
    follower_a.apply(&m);

    // Live records: the push action posts each version to A; B learns of it through Redis.
    for round in 0..3u64 {
        let docs: Vec<Value> = (0..20).map(|i| tweet(1000 + round * 20 + i)).collect();
        dev.ingest(&topic, &docs).await;
    }
    let fin = dev.caught_up(&id, 100).await;
    let version = fin["version"].as_u64().expect("version");
    follow_ws_to(&mut on_b, &mut follower_b, version).await;
    follow_sse_to(&mut on_a, &mut follower_a, version).await;
    assert_eq!(follower_b.result, fin["result"], "deltas on B rebuild the result");
    assert_eq!(follower_a.result, fin["result"], "deltas on A rebuild the result");
    assert!(follower_b.snapshots == 1 && follower_a.snapshots == 1, "no snapshot after the first");

    // Resume from an older version: the deltas after it (the ring holds them).
    let since = version.saturating_sub(2).max(1);
    let mut resumed = ws_open(&format!("{ws_url}?since={since}"), Some(SUBSCRIBER_KEY)).await;
    let m = ws_next(&mut resumed).await;
    assert_eq!((m["type"].as_str(), m["from"].as_u64()), (Some("delta"), Some(since)), "{m}");

    // The feed: every instance follows the wake-ups (A and B are both subscribed).
    let message = json!({"type": "progress", "id": id, "version": version}).to_string();
    let (s, v) = post(&feed_b, Some(PUSH_TOKEN), message.clone().into_bytes()).await;
    assert_eq!((s, v["instances"].as_i64()), (202, Some(2)), "{v}");
    // ... and refuses what is not from the push action or not a message.
    let (s, v) = post(&feed_a, None, message.clone().into_bytes()).await;
    assert_eq!((s, v["error"]["type"].as_str()), (401, Some("security_exception")), "{v}");
    let (s, _) = post(&feed_a, Some(SUBSCRIBER_KEY), message.clone().into_bytes()).await;
    assert_eq!(s, 401, "a subscriber key cannot feed");
    let (s, v) = post(&feed_a, Some(PUSH_TOKEN), b"{\"version\":1}".to_vec()).await;
    assert_eq!((s, v["status"].as_u64()), (400, Some(400)), "{v}");
    let (s, v) = post(&feed_a, Some(PUSH_TOKEN), b"not json".to_vec()).await;
    assert_eq!((s, v["error"]["type"].as_str()), (400, Some("parsing_exception")), "{v}");
    let big = json!({"type": "snapshot", "id": id, "version": version, "result": "x".repeat(5000)});
    let (s, v) = post(&feed_b, Some(PUSH_TOKEN), big.to_string().into_bytes()).await;
    assert_eq!((s, v["error"]["type"].as_str()), (413, Some("content_too_long_exception")), "{v}");
    // A wake-up with nothing new sends nothing: the next message on B is the next version.
    dev.ingest(&topic, &[tweet(5000)]).await;
    let fin = dev.caught_up(&id, 101).await;
    follow_ws_to(&mut on_b, &mut follower_b, fin["version"].as_u64().expect("v")).await;
    assert_eq!(follower_b.result, fin["result"]);

    drop((on_a, on_b, resumed));
    a.stop().await;
    b.stop().await;
    dev.running.stop().await;
}

#[test]
fn deltas_posted_to_one_instance_reach_the_subscribers_of_every_instance() {
    if common::real_backends().is_none() {
        eprintln!("skipped: set KAFKA_BROKERS and REDIS_URL to test the push gateway");
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(120), check_gateway())
                .await
                .expect("the gateway test finishes in time");
        });
}

/// Run `scripts/redis.sh restart` for the server on `url`'s port.
fn restart_redis(url: &str) {
    let port = url.rsplit(':').next().and_then(|p| p.split('/').next()).unwrap_or("16379");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/redis.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .arg("restart")
        .env("REDIS_PORT", port)
        .status()
        .expect("run scripts/redis.sh restart");
    assert!(status.success(), "scripts/redis.sh restart failed");
}

async fn check_resubscribes_after_a_redis_restart() {
    let (_, redis_url) = common::real_backends().expect("real backends");
    let gw = gateway(&unique("kappa-gw-restart"), 1 << 20).await;
    let feed = format!("http://{}/v1/internal/deltas", gw.addr);
    let wake = br#"{"type":"progress","id":"q_restart","version":1}"#.to_vec();
    // A wake-up posted until one instance (this one) hears it: the gateway subscribes in the
    // background once started (a CI run posted within that moment and saw 0 instances).
    let heard_by_one = || async {
        let mut last = (0, Value::Null);
        for _ in 0..100 {
            last = post(&feed, Some(PUSH_TOKEN), wake.clone()).await;
            if last.0 == 202 && last.1["instances"].as_i64() == Some(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last
    };
    let first = heard_by_one().await;
    assert_eq!((first.0, first.1["instances"].as_i64()), (202, Some(1)), "{first:?}");
    restart_redis(&redis_url);
    // The pub/sub connection died with the server: the gateway subscribes again by itself.
    let last = heard_by_one().await;
    assert_eq!((last.0, last.1["instances"].as_i64()), (202, Some(1)), "{last:?}");
    gw.stop().await;
}

#[test]
fn a_gateway_follows_wake_ups_again_after_a_redis_restart() {
    if common::real_backends().is_none() {
        eprintln!("skipped: set KAFKA_BROKERS and REDIS_URL to test the push gateway");
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(check_resubscribes_after_a_redis_restart());
}
