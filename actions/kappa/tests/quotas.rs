//! Limits that keep one API key, or one client, from taking the whole server: queries and
//! push streams per key, and the number of topics of the embedded log.

mod common;

use common::{Backend, start, tweet, unique};
use serde_json::{Value, json};

/// A request with `key` as the bearer key; (status, JSON body).
async fn call(
    srv: &common::Srv,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut rb = srv.http.request(method, srv.url(path)).bearer_auth(key);
    if let Some(b) = body {
        rb = rb.json(b);
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn terms(topic: &str, size: u64) -> Value {
    json!({"topic": topic, "size": 0, "aggs": {"t": {"terms": {"field": "lang", "size": size}}}})
}

#[tokio::test]
async fn a_key_holds_at_most_max_queries_per_key() {
    let srv = start(Backend::Embedded, |c| {
        c.api_keys = vec!["key-one".into(), "key-two".into()];
        c.max_queries_per_key = 2;
    })
    .await;
    let topic = unique("quota");
    srv.ingest(&topic, &[tweet(1)]).await;
    let post = |key: &'static str, size: u64| {
        let body = terms(&topic, size);
        let srv = &srv;
        async move { call(srv, key, reqwest::Method::POST, "/v1/queries", Some(&body)).await }
    };
    let (s1, first) = post("key-one", 1).await;
    let (s2, _) = post("key-one", 2).await;
    assert_eq!((s1, s2), (201, 201));
    let (s, refused) = post("key-one", 3).await;
    assert_eq!(s, 429, "{refused}");
    assert_eq!(refused["error"]["type"], "es_rejected_execution_exception");
    assert!(refused["error"]["reason"].as_str().unwrap_or("").contains("max_queries_per_key 2"));
    // Sharing one it holds is not a new query; another key has its own quota.
    assert_eq!(post("key-one", 1).await.0, 200);
    assert_eq!(post("key-two", 3).await.0, 201);
    // After a DELETE the key may register another.
    let id = first["id"].as_str().expect("id");
    let (s, _) =
        call(&srv, "key-one", reqwest::Method::DELETE, &format!("/v1/queries/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(post("key-one", 4).await.0, 201);
}

#[tokio::test]
async fn a_key_holds_at_most_max_streams_per_key() {
    let srv = start(Backend::Embedded, |c| {
        c.api_keys = vec!["key-one".into(), "key-two".into()];
        c.max_streams_per_key = 2;
    })
    .await;
    let topic = unique("streams");
    srv.ingest(&topic, &[tweet(1)]).await;
    let id = srv.query(&terms(&topic, 5)).await;
    let open = |key: &'static str| {
        let url = srv.url(&format!("/v1/queries/{id}/events"));
        let http = srv.http.clone();
        async move { http.get(url).bearer_auth(key).send().await.expect("request") }
    };
    let first = open("key-one").await;
    let second = open("key-one").await;
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    let third = open("key-one").await;
    assert_eq!(third.status().as_u16(), 429);
    let body: Value = third.json().await.expect("json");
    assert!(body["error"]["reason"].as_str().unwrap_or("").contains("max_streams_per_key 2"));
    // Websockets count too, and another key is not limited by this one's streams.
    let request = srv.ws_url(&format!("/v1/queries/{id}/ws?access_token=key-one"));
    let refused = tokio_tungstenite::connect_async(request.as_str()).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 429),
        "{refused:?}"
    );
    assert_eq!(open("key-two").await.status().as_u16(), 200);
    // A closed stream gives its place back (once the server notices the connection is gone).
    drop(first);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let again = open("key-one").await;
        if again.status().as_u16() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the closed stream's place came back");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(second);
}

#[tokio::test]
async fn new_topics_past_max_topics_are_refused_and_leave_nothing_behind() {
    let srv = start(Backend::Embedded, |c| c.max_topics = 2).await;
    let (a, b, c) = (unique("ta"), unique("tb"), unique("tc"));
    srv.ingest(&a, &[tweet(1)]).await;
    srv.ingest(&b, &[tweet(2)]).await;
    let line = serde_json::to_vec(&tweet(3)).expect("json");
    let (s, v) = srv
        .send(reqwest::Method::POST, &format!("/v1/topics/{c}/records"), Some(line.clone()))
        .await;
    assert_eq!((s, v["error"]["type"].as_str()), (400, Some("illegal_argument_exception")), "{v}");
    assert!(v["error"]["reason"].as_str().unwrap_or("").contains("max_topics"), "{v}");
    // Nothing of it exists: a query on it is a 404, and no directory was made.
    let (s, v) = srv.post("/v1/queries", &terms(&c, 5)).await;
    assert_eq!((s, v["error"]["type"].as_str()), (404, Some("index_not_found_exception")), "{v}");
    assert!(!srv.data_dir().join("log").join(&c).exists());
    // Existing topics still take records.
    let (s, v) =
        srv.send(reqwest::Method::POST, &format!("/v1/topics/{a}/records"), Some(line)).await;
    assert_eq!(s, 200, "{v}");
}
