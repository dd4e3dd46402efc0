//! The API of api.md through real HTTP, websocket and SSE clients, against `kappa dev` on
//! 127.0.0.1:0 (embedded log and store; with `KAFKA_BROKERS` and `REDIS_URL`, also against
//! real Kafka and Redis).

mod common;

use std::time::Duration;

use common::{
    Backend, Follower, Srv, SseClient, oracle, sample_query, start, tweet, unique, ws_connect,
    ws_next,
};
use futures_util::SinkExt;
use kappa_core::patch;
use kappa_push::quota::Caller;
use kappa_push::stream::{Target, subscribe};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn check_ingest_query_oracle(srv: &Srv) {
    let topic = unique("tweets");
    let docs: Vec<Value> = (0..400).map(tweet).collect();
    let answer = srv.ingest(&topic, &docs[..250]).await;
    assert_eq!(answer["count"], 250);
    assert_eq!(answer["topic"], topic.as_str());
    let parts = answer["partitions"].as_object().expect("partitions");
    let written: i64 = parts
        .values()
        .map(|p| {
            p["last_offset"].as_i64().unwrap_or(0) - p["first_offset"].as_i64().unwrap_or(0) + 1
        })
        .sum();
    assert_eq!(written, 250);
    // Keyed ingest as a JSON array.
    let arr = serde_json::to_vec(&docs[250..]).expect("json");
    let (s, v) = srv
        .send(reqwest::Method::POST, &format!("/v1/topics/{topic}/records?key=user.id"), Some(arr))
        .await;
    assert_eq!((s, v["count"].as_u64()), (200, Some(150)), "{v}");
    let body = sample_query(&topic);
    let id = srv.query(&body).await;
    let got = srv.caught_up(&id, 400).await;
    assert_eq!(got["progress"]["processed"], 400);
    assert_eq!(got["progress"]["lag"], 0);
    assert_eq!(got["result"]["hits"]["total"]["relation"], "eq");
    let expected = oracle(&*srv.running.server.core.log, &body).await;
    assert_eq!(got["result"], expected, "GET equals one clean pass");
    // Shared: the same query, keys in another order.
    let mut same = json!({"size": 3, "sort": [{"retweet_count": "desc"}]});
    same["aggs"] = body["aggs"].clone();
    same["query"] = body["query"].clone();
    same["topic"] = json!(topic);
    let (s, v) = srv.post("/v1/queries", &same).await;
    assert_eq!(
        (s, v["shared"].as_bool(), v["id"].as_str()),
        (200, Some(true), Some(id.as_str())),
        "{v}"
    );
    assert_eq!(v["links"]["ws"], format!("/v1/queries/{id}/ws"));
}

async fn check_errors(srv: &Srv) {
    let (s, v) = srv.get("/healthz").await;
    assert_eq!((s, &v["status"]), (200, &json!("ok")));
    let topic = unique("errs");
    // Invalid line: 400 naming it, nothing written.
    let (s, v) = srv
        .send(
            reqwest::Method::POST,
            &format!("/v1/topics/{topic}/records"),
            Some(b"{\"a\":1}\n{\"a\":2}\n{oops\n".to_vec()),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["status"], 400);
    assert_eq!(v["error"]["line"], 3);
    assert!(v["error"]["reason"].as_str().unwrap_or("").contains("line 3"), "{v}");
    // Nothing was written: the topic does not even exist.
    let (s, v) = srv.post("/v1/queries", &json!({"topic": topic})).await;
    assert_eq!((s, v["error"]["type"].as_str()), (404, Some("index_not_found_exception")), "{v}");
    // 400 with the path of the bad key.
    srv.ingest(&topic, &[json!({"a": 1})]).await;
    let (s, v) = srv
        .post(
            "/v1/queries",
            &json!({"topic": topic, "aggs": {"tags": {"terms": {"field": "a", "sizee": 3}}}}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["type"], "parsing_exception");
    assert_eq!(v["error"]["path"], "aggs.tags.terms");
    assert_eq!(v["status"], 400);
    let (s, v) = srv.send(reqwest::Method::POST, "/v1/queries", Some(b"{not json".to_vec())).await;
    assert_eq!((s, v["status"].as_u64()), (400, Some(400)), "{v}");
    // Unknown ids.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/queries/q_0000"),
        (reqwest::Method::DELETE, "/v1/queries/q_0000"),
        (reqwest::Method::GET, "/v1/queries/q_0000/events"),
        (reqwest::Method::GET, "/v1/views/nope"),
        (reqwest::Method::GET, "/v1/nothing"),
    ] {
        let (s, v) = srv.send(method.clone(), path, None).await;
        assert_eq!(
            (s, v["error"]["type"].as_str()),
            (404, Some("resource_not_found_exception")),
            "{method} {path}: {v}"
        );
    }
    let (s, v) = srv
        .post(
            "/v1/queries/q_0000/subscriptions",
            &json!({"url": "https://example.com/h", "secret": "s"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (404, Some("resource_not_found_exception")),
        "{v}"
    );
    // A path that does not decode to UTF-8 gets the same JSON errors as everything else.
    let (s, v) = srv.get("/v1/queries/q_%FF%FE").await;
    assert_eq!((s, v["error"]["type"].as_str()), (400, Some("illegal_argument_exception")), "{v}");
    // A view name must be a topic name: `..` (sent as is; HTTP clients normalise dot segments).
    let addr = srv.url("").trim_start_matches("http://").trim_end_matches('/').to_string();
    let body = json!({"topic": topic}).to_string();
    let headers = [("host", addr.as_str()), ("content-type", "application/json")];
    let answer = raw_request(srv, "PUT", "/v1/views/..", &headers, &body).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "PUT /v1/views/..: {answer}");
    assert!(answer.contains("invalid view name"), "{answer}");
    // 413: query body over 64 KiB.
    let big = json!({"topic": topic, "query": {"match": {"a": "x".repeat(70 * 1024)}}});
    let (s, v) = srv.post("/v1/queries", &big).await;
    assert_eq!((s, v["status"].as_u64()), (413, Some(413)), "{v}");
    // Bad websocket/SSE parameters.
    let id = srv.query(&json!({"topic": topic})).await;
    let (s, v) = srv.get(&format!("/v1/queries/{id}/ws?since=abc")).await;
    assert_eq!(s, 400, "{v}");
    // DELETE releases.
    let (s, v) = srv.send(reqwest::Method::DELETE, &format!("/v1/queries/{id}"), None).await;
    assert_eq!((s, v["acknowledged"].as_bool()), (200, Some(true)), "{v}");
    let (s, _) = srv.get(&format!("/v1/queries/{id}")).await;
    assert_eq!(s, 404);
    // Webhook URLs to private addresses are refused by default; bad bodies are 400.
    let id = srv.query(&json!({"topic": topic})).await;
    let (s, v) = srv
        .post(
            &format!("/v1/queries/{id}/subscriptions"),
            &json!({"url": "http://127.0.0.1:9/h", "secret": "s"}),
        )
        .await;
    assert_eq!((s, v["error"]["type"].as_str()), (400, Some("illegal_argument_exception")), "{v}");
    let (s, v) = srv
        .post(
            &format!("/v1/queries/{id}/subscriptions"),
            &json!({"url": "https://example.com/h", "secret": "s", "x": 1}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    // Invalid topic and view names.
    let (s, v) = srv
        .send(reqwest::Method::POST, "/v1/topics/bad%20name/records", Some(b"{}".to_vec()))
        .await;
    assert_eq!(s, 400, "{v}");
}

async fn check_stream(srv: &Srv) {
    let topic = unique("live");
    srv.ingest(&topic, &(0..60).map(tweet).collect::<Vec<_>>()).await;
    let body = sample_query(&topic);
    let id = srv.query(&body).await;
    let mut ws = ws_connect(srv, &format!("/v1/queries/{id}/ws")).await;
    let mut sse = SseClient::open(srv, &format!("/v1/queries/{id}/events"), None).await;
    let mut f = Follower::default();
    let first = ws_next(&mut ws).await;
    assert_eq!(first["type"], "snapshot", "{first}");
    f.apply(&first);
    let mut g = Follower::default();
    let (eid, first) = sse.next().await;
    assert_eq!(first["type"], "snapshot");
    assert_eq!(eid, first["version"].as_u64(), "SSE event ids are versions");
    g.apply(&first);
    for round in 0..6u64 {
        let docs: Vec<Value> = (0..15).map(|i| tweet(1000 + round * 100 + i)).collect();
        srv.ingest(&topic, &docs).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let total = 60 + 6 * 15;
    let fin = srv.caught_up(&id, total).await;
    let v = fin["version"].as_u64().expect("version");
    while f.version < Some(v) {
        let m = ws_next(&mut ws).await;
        f.apply(&m);
    }
    while g.version < Some(v) {
        let (eid, m) = sse.next().await;
        assert_eq!(eid, m["version"].as_u64());
        g.apply(&m);
    }
    assert_eq!(f.result, fin["result"], "websocket deltas applied give GET's result");
    assert_eq!(g.result, fin["result"], "SSE deltas applied give GET's result");
    assert_eq!(fin["result"], oracle(&*srv.running.server.core.log, &body).await);
    assert!(v >= 2, "several versions were published");
    // Resume by ?since and Last-Event-ID: the held deltas after V, no snapshot.
    let since = v - 1;
    let mut ws2 = ws_connect(srv, &format!("/v1/queries/{id}/ws?since={since}")).await;
    let m = ws_next(&mut ws2).await;
    assert_eq!(
        (m["type"].as_str(), m["from"].as_u64(), m["version"].as_u64()),
        (Some("delta"), Some(since), Some(v)),
        "{m}"
    );
    let mut sse2 = SseClient::open(srv, &format!("/v1/queries/{id}/events"), Some(since)).await;
    let (eid, m) = sse2.next().await;
    assert_eq!(
        (eid, m["type"].as_str(), m["from"].as_u64()),
        (Some(v), Some("delta"), Some(since)),
        "{m}"
    );
    // A version not held (from the future) gets a fresh snapshot.
    let mut ws3 = ws_connect(srv, &format!("/v1/queries/{id}/ws?since={}", v + 1000)).await;
    let m = ws_next(&mut ws3).await;
    assert_eq!((m["type"].as_str(), m["version"].as_u64()), (Some("snapshot"), Some(v)));
    let _ = ws.send(Message::Close(None)).await;

    // A websocket subscriber holds a reference on its query while open, and gives it back when
    // the client closes (so the query can be reclaimed once idle), with nothing sent to it.
    let store = srv.running.server.core.store.clone();
    let refs = || {
        let (store, id) = (store.clone(), id.clone());
        async move { store.add_refs(&id, 0).await.expect("refs") }
    };
    let settle = |want: i64| async move {
        for _ in 0..100 {
            if refs().await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("references stayed at {}, expected {want}", refs().await);
    };
    let mut one = ws_connect(srv, &format!("/v1/queries/{id}/ws")).await;
    assert_eq!(ws_next(&mut one).await["type"], "snapshot");
    let open = refs().await;
    let mut two = ws_connect(srv, &format!("/v1/queries/{id}/ws")).await;
    assert_eq!(ws_next(&mut two).await["type"], "snapshot");
    settle(open + 1).await;
    two.send(Message::Close(None)).await.expect("close");
    settle(open).await;
    drop(one);
}

async fn check_views(srv: &Srv) {
    let topic = unique("views");
    srv.ingest(&topic, &(0..200).map(tweet).collect::<Vec<_>>()).await;
    let a =
        json!({"topic": topic, "aggs": {"tags": {"terms": {"field": "entities.hashtags.text"}}}});
    let (s, v) = srv
        .send(reqwest::Method::PUT, "/v1/views/dash", Some(serde_json::to_vec(&a).expect("json")))
        .await;
    assert_eq!(s, 201, "{v}");
    let id_a = v["id"].as_str().expect("id").to_string();
    srv.caught_up(&id_a, 200).await;
    let mut ws = ws_connect(srv, "/v1/views/dash/ws").await;
    let mut f = Follower::default();
    let m = ws_next(&mut ws).await;
    f.apply(&m);
    assert_eq!(f.id.as_deref(), Some(id_a.as_str()));
    let mut sse = SseClient::open(srv, "/v1/views/dash/events", None).await;
    let mut g = Follower::default();
    g.apply(&sse.next().await.1);
    // Redefine: the old stream goes on until the new query caught up, then a snapshot of it.
    let b = json!({"topic": topic, "aggs": {"users": {"terms": {"field": "user.screen_name"}}}});
    let (s, v) = srv
        .send(reqwest::Method::PUT, "/v1/views/dash", Some(serde_json::to_vec(&b).expect("json")))
        .await;
    assert_eq!(s, 202, "{v}");
    let id_b = v["pending"].as_str().expect("pending").to_string();
    assert_ne!(id_a, id_b);
    while f.id.as_deref() != Some(id_b.as_str()) {
        let m = ws_next(&mut ws).await;
        if m["id"] == id_b.as_str() {
            assert_eq!(m["type"], "snapshot", "the new query starts with a snapshot: {m}");
            assert_eq!(m["caught_up"], true);
        }
        f.apply(&m);
    }
    while g.id.as_deref() != Some(id_b.as_str()) {
        g.apply(&sse.next().await.1);
    }
    let fin = srv.caught_up(&id_b, 200).await;
    assert_eq!(f.result, fin["result"]);
    let (s, v) = srv.get("/v1/views/dash").await;
    assert_eq!((s, v["id"].as_str()), (200, Some(id_b.as_str())), "{v}");
    // The old query was released.
    let mut gone = false;
    for _ in 0..100 {
        if srv.get(&format!("/v1/queries/{id_a}")).await.0 == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the old query is released");
    // The view keeps following live records.
    srv.ingest(&topic, &[tweet(5000)]).await;
    let fin = srv.caught_up(&id_b, 201).await;
    while f.version < fin["version"].as_u64() {
        f.apply(&ws_next(&mut ws).await);
    }
    assert_eq!(f.result, fin["result"]);
}

async fn check_webhooks(srv: &Srv) {
    use axum::routing::post;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Option<String>, Vec<u8>)>();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let sig = headers
                    .get("x-kappa-signature")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let _ = tx.send((sig, body.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let topic = unique("hooks");
    srv.ingest(&topic, &(0..20).map(tweet).collect::<Vec<_>>()).await;
    let id = srv.query(&sample_query(&topic)).await;
    let before = srv.caught_up(&id, 20).await;
    let url = format!("http://{addr}/hook");
    let (s, v) = srv
        .post(&format!("/v1/queries/{id}/subscriptions"), &json!({"url": url, "secret": "s3cret"}))
        .await;
    assert_eq!(s, 201, "{v}");
    // Each URL once per query, and at most max_webhooks_per_query (16) of them: one ingest
    // never fans out into thousands of POSTs.
    let (s, v) = srv
        .post(&format!("/v1/queries/{id}/subscriptions"), &json!({"url": url, "secret": "again"}))
        .await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (409, Some("resource_already_exists_exception")),
        "{v}"
    );
    for k in 1..16 {
        let other = format!("http://{addr}/hook?n={k}");
        let (s, v) = srv
            .post(&format!("/v1/queries/{id}/subscriptions"), &json!({"url": other, "secret": "x"}))
            .await;
        assert_eq!(s, 201, "{k}: {v}");
    }
    let (s, v) = srv
        .post(
            &format!("/v1/queries/{id}/subscriptions"),
            &json!({"url": format!("http://{addr}/hook?n=16"), "secret": "x"}),
        )
        .await;
    assert_eq!((s, v["error"]["type"].as_str()), (400, Some("illegal_argument_exception")), "{v}");
    srv.ingest(&topic, &(100..110).map(tweet).collect::<Vec<_>>()).await;
    let fin = srv.caught_up(&id, 30).await;
    let mut result = before["result"].clone();
    let mut version = before["version"].as_u64().expect("v");
    while version < fin["version"].as_u64().expect("v") {
        let (sig, body) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("delivery in time")
            .expect("open");
        if sig.as_deref() == Some(kappa_actions::push::signature("x", &body).as_str()) {
            continue; // one of the other subscriptions of the same endpoint
        }
        assert_eq!(
            sig.as_deref(),
            Some(kappa_actions::push::signature("s3cret", &body).as_str()),
            "signed"
        );
        let m: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(m["type"], "delta");
        // A push of a version from before the subscription may still have been in flight
        // when it was registered (the scheduler runs push jobs as workers free up): an older
        // delta can arrive first. Every version from the subscription on must follow in order.
        if m["from"].as_u64().is_some_and(|from| from < before["version"].as_u64().unwrap_or(0)) {
            continue;
        }
        assert_eq!(m["from"].as_u64(), Some(version));
        patch::apply(&mut result, &m["patch"]).expect("applies");
        version += 1;
    }
    assert_eq!(result, fin["result"]);

    // A subscription can be removed: no more deliveries to it, the others go on.
    let hooks = format!("/v1/queries/{id}/subscriptions");
    let (s, v) = srv.send(reqwest::Method::DELETE, &hooks, None).await;
    assert_eq!((s, v["error"]["type"].as_str()), (400, Some("illegal_argument_exception")), "{v}");
    let encoded: String = form_urlencoded::byte_serialize(url.as_bytes()).collect();
    let delete = format!("{hooks}?url={encoded}");
    let (s, v) = srv.send(reqwest::Method::DELETE, &delete, None).await;
    assert_eq!((s, &v), (200, &json!({"id": id, "url": url, "subscribed": false})));
    let (s, v) = srv.send(reqwest::Method::DELETE, &delete, None).await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (404, Some("resource_not_found_exception")),
        "{v}"
    );
    while rx.try_recv().is_ok() {}
    srv.ingest(&topic, &(200..205).map(tweet).collect::<Vec<_>>()).await;
    srv.caught_up(&id, 35).await;
    let mut others = 0;
    while let Ok(Some((sig, body))) = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await
    {
        assert_ne!(
            sig.as_deref(),
            Some(kappa_actions::push::signature("s3cret", &body).as_str()),
            "no delivery to a removed subscription"
        );
        others += 1;
    }
    assert!(others >= 15, "the other subscriptions still get deliveries ({others})");
    // The URL may subscribe again.
    let (s, v) = srv.post(&hooks, &json!({"url": url, "secret": "back"})).await;
    assert_eq!(s, 201, "{v}");
}

async fn check_backpressure(srv: &Srv) {
    let topic = unique("bp");
    srv.ingest(&topic, &[tweet(0)]).await;
    let body = json!({"topic": topic, "size": 2, "sort": [{"retweet_count": "desc"}], "aggs": {"n": {"terms": {"field": "n", "size": 20}}}});
    let id = srv.query(&body).await;
    srv.caught_up(&id, 1).await;
    // A subscriber that never reads (buffer of `subscriber_buffer` messages), and a reader.
    let mut stalled =
        subscribe(&srv.running.server.streams, Caller(None), Target::Query(id.clone()), None)
            .await
            .expect("subscribes");
    let mut ws = ws_connect(srv, &format!("/v1/queries/{id}/ws")).await;
    let mut f = Follower::default();
    f.apply(&ws_next(&mut ws).await);
    let rounds = 40u64;
    for i in 0..rounds {
        srv.ingest(&topic, &[tweet(i * 13 + 1)]).await;
        // The reader keeps up with every version while the other one is stuck.
        let fin = srv.caught_up(&id, i + 2).await;
        let v = fin["version"].as_u64().expect("v");
        let t0 = tokio::time::Instant::now();
        while f.version < Some(v) {
            f.apply(&ws_next(&mut ws).await);
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "a stalled subscriber delays no one");
    }
    let fin = srv.caught_up(&id, rounds + 1).await;
    assert_eq!(f.result, fin["result"]);
    // The stalled one now reads: a bounded backlog, then a snapshot instead of the rest.
    let mut s = Follower::default();
    let mut n = 0;
    while s.version < fin["version"].as_u64() {
        let m = tokio::time::timeout(Duration::from_secs(10), stalled.recv())
            .await
            .expect("in time")
            .expect("open");
        s.apply(&serde_json::from_str(m.text()).expect("a message is JSON"));
        n += 1;
    }
    assert!(s.snapshots >= 2, "the subscriber that fell behind got a fresh snapshot");
    assert!(n <= srv.running.server.config.subscriber_buffer + 4, "backlog bounded: {n}");
    assert_eq!(s.result, fin["result"]);
}

async fn check_auth() {
    // The third key is base64, as generated keys often are: `+`, `/` and `=` must be
    // percent-encoded in a URL, and the server decodes them.
    let srv =
        start(Backend::Embedded, |c| c.api_keys = vec!["k1".into(), "k2".into(), "a+b/c==".into()])
            .await;
    let http = reqwest::Client::new();
    let r = http.get(srv.url("/healthz")).send().await.expect("ok");
    assert_eq!(r.status().as_u16(), 200, "healthz needs no key");
    for path in ["/v1/queries/q_1", "/v1/views/x", "/v1/queries/q_1/events", "/"] {
        let r = http.get(srv.url(path)).send().await.expect("ok");
        assert_eq!(r.status().as_u16(), 401, "{path}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(
            (v["status"].as_u64(), v["error"]["type"].as_str()),
            (Some(401), Some("security_exception"))
        );
        let r = http.get(srv.url(path)).bearer_auth("wrong").send().await.expect("ok");
        assert_eq!(r.status().as_u16(), 401, "{path}");
    }
    let r = http.post(srv.url("/v1/topics/t/records")).body("{}").send().await.expect("ok");
    assert_eq!(r.status().as_u16(), 401);
    let r = http.get(srv.url("/v1/queries/q_1")).bearer_auth("k2").send().await.expect("ok");
    assert_eq!(r.status().as_u16(), 404, "a valid key passes");
    // The websocket needs the key too; a browser, which cannot set headers on a websocket or
    // an EventSource, passes it as `?access_token=` (on stream routes only).
    let err = tokio_tungstenite::connect_async(srv.ws_url("/v1/queries/q_1/ws")).await;
    assert!(err.is_err());
    let err =
        tokio_tungstenite::connect_async(srv.ws_url("/v1/queries/q_1/ws?access_token=k3")).await;
    assert!(err.is_err(), "a wrong token");
    let r = http.get(srv.url("/v1/queries/q_1?access_token=k1")).send().await.expect("ok");
    assert_eq!(r.status().as_u16(), 401, "only stream routes take a token in the URL");
    // The authenticated client works end to end.
    srv.ingest("t", &[json!({"a": 1})]).await;
    let id = srv.query(&json!({"topic": "t"})).await;
    srv.caught_up(&id, 1).await;
    let mut ws =
        common::ws_open(&srv.ws_url(&format!("/v1/queries/{id}/ws?access_token=k2")), None).await;
    assert_eq!(ws_next(&mut ws).await["type"], "snapshot");
    let mut sse = SseClient::open_url(
        &srv.url(&format!("/v1/queries/{id}/events?access_token=k1")),
        None,
        None,
    )
    .await;
    assert_eq!(sse.next().await.1["type"], "snapshot");
    let mut ws = common::ws_open(
        &srv.ws_url(&format!("/v1/queries/{id}/ws?client=demo&access_token=a%2Bb%2Fc%3D%3D")),
        None,
    )
    .await;
    assert_eq!(ws_next(&mut ws).await["type"], "snapshot", "a percent-encoded token");
}

async fn check_ingest_limit() {
    let srv = start(Backend::Embedded, |c| c.ingest_limit = 4096).await;
    let body: Vec<u8> = (0..200)
        .flat_map(|i| format!("{{\"i\":{i},\"pad\":\"xxxxxxxxxxxxxxxx\"}}\n").into_bytes())
        .collect();
    assert!(body.len() > 4096);
    let (s, v) = srv.send(reqwest::Method::POST, "/v1/topics/t/records", Some(body)).await;
    assert_eq!((s, v["status"].as_u64()), (413, Some(413)), "{v}");
    let (s, _) =
        srv.send(reqwest::Method::POST, "/v1/topics/t/records", Some(b"{\"i\":1}".to_vec())).await;
    assert_eq!(s, 200);
}

/// One raw HTTP/1.1 request (`Host`, `Origin` and the path exactly as given); the whole answer.
async fn raw_request(
    srv: &Srv,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let addr = srv.url("").trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.expect("connects");
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()));
    tokio::io::AsyncWriteExt::write_all(&mut tcp, request.as_bytes()).await.expect("sent");
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut answer).await.expect("answered");
    answer
}

/// [`raw_request`]'s status.
async fn raw_status(
    srv: &Srv,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> u16 {
    let answer = raw_request(srv, method, path, headers, body).await;
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

async fn check_keyless_is_loopback_only() {
    let srv = embedded().await;
    let addr = srv.url("").trim_start_matches("http://").trim_end_matches('/').to_string();
    let port = addr.rsplit(':').next().unwrap_or("0").to_string();
    let ndjson = r#"{"evil":1}"#;
    // A page elsewhere posting through the browser (text/plain needs no preflight), or a name
    // of the attacker's DNS-rebound to 127.0.0.1: refused, nothing written.
    for headers in [
        vec![
            ("host", addr.as_str()),
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
        ],
        vec![("host", "evil.example"), ("content-type", "text/plain")],
        vec![("host", addr.as_str()), ("origin", "null")],
    ] {
        let s = raw_status(&srv, "POST", "/v1/topics/t/records", &headers, ndjson).await;
        assert_eq!(s, 403, "{headers:?}");
    }
    let s = raw_status(
        &srv,
        "GET",
        "/v1/queries/q_1/ws",
        &[
            ("host", &addr),
            ("origin", "https://evil.example"),
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        "",
    )
    .await;
    assert_eq!(s, 403, "a foreign page's websocket");
    let (status, v) = srv.post("/v1/queries", &json!({"topic": "t"})).await;
    assert_eq!(
        (status, v["error"]["type"].as_str()),
        (404, Some("index_not_found_exception")),
        "nothing was written: {v}"
    );
    // This machine's names and pages are served; /healthz always.
    for host in [addr.clone(), format!("localhost:{port}"), format!("[::1]:{port}")] {
        let origin = format!("http://localhost:{port}");
        let s =
            raw_status(&srv, "GET", "/v1/queries/q_1", &[("host", &host), ("origin", &origin)], "")
                .await;
        assert_eq!(s, 404, "{host}");
    }
    let s = raw_status(
        &srv,
        "POST",
        "/v1/topics/t/records",
        &[("host", &addr), ("origin", "http://127.0.0.1:1")],
        ndjson,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(raw_status(&srv, "GET", "/healthz", &[("host", "evil.example")], "").await, 200);
}

#[test]
fn without_keys_only_this_machine_may_call() {
    rt().block_on(check_keyless_is_loopback_only());
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn embedded() -> Srv {
    start(Backend::Embedded, |c| c.action.allow_private_webhooks = false).await
}

#[test]
fn ingest_then_query_equals_one_clean_pass_and_ids_are_shared() {
    rt().block_on(async { check_ingest_query_oracle(&embedded().await).await });
}

#[test]
fn every_error_of_the_contract() {
    rt().block_on(async { check_errors(&embedded().await).await });
}

#[test]
fn ingest_over_the_limit_is_413() {
    rt().block_on(check_ingest_limit());
}

#[test]
fn keys_are_required_everywhere_but_healthz() {
    rt().block_on(check_auth());
}

#[test]
fn websocket_and_sse_snapshot_then_consecutive_deltas_and_resume() {
    rt().block_on(async { check_stream(&embedded().await).await });
}

#[test]
fn views_switch_after_the_new_query_caught_up() {
    rt().block_on(async { check_views(&embedded().await).await });
}

#[test]
fn webhooks_are_signed_and_carry_every_delta() {
    rt().block_on(async {
        let srv = start(Backend::Embedded, |c| c.action.allow_private_webhooks = true).await;
        check_webhooks(&srv).await;
    });
}

#[test]
fn a_subscriber_that_never_reads_delays_no_one() {
    rt().block_on(async {
        let srv = start(Backend::Embedded, |c| c.subscriber_buffer = 4).await;
        check_backpressure(&srv).await;
    });
}

#[test]
fn the_api_suite_against_real_kafka_and_redis() {
    if common::real_backends().is_none() {
        eprintln!(
            "skipped: set KAFKA_BROKERS and REDIS_URL to run the API suite against real Kafka and Redis"
        );
        return;
    }
    rt().block_on(async {
        let srv = start(Backend::Real, |_| {}).await;
        check_ingest_query_oracle(&srv).await;
        check_errors(&srv).await;
        check_stream(&srv).await;
        check_views(&srv).await;
        let hooks = start(Backend::Real, |c| c.action.allow_private_webhooks = true).await;
        check_webhooks(&hooks).await;
        let bp = start(Backend::Real, |c| c.subscriber_buffer = 4).await;
        check_backpressure(&bp).await;
    });
}
