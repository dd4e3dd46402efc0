//! `api::app` without a network: requests go straight into the router (in-memory backends).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use kappa::api::app;
use kappa::state::Server;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn call(router: &axum::Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_the_api_without_a_network() {
    let server = Server::in_memory(&kappa::DevConfig::default()).expect("server");
    let router = app(server);
    assert_eq!(call(&router, "GET", "/healthz", "").await.0, StatusCode::OK);
    let (s, v) = call(&router, "POST", "/v1/topics/t/records", "{\"a\":1}\n{\"a\":2}\n").await;
    assert_eq!((s, v["count"].clone()), (StatusCode::OK, json!(2)));
    let (s, v) =
        call(&router, "POST", "/v1/queries", r#"{"topic":"t","aggs":{"s":{"sum":{"field":"a"}}}}"#)
            .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    let mut result = Value::Null;
    for _ in 0..200 {
        let (s, v) = call(&router, "GET", &format!("/v1/queries/{id}"), "").await;
        assert_eq!(s, StatusCode::OK);
        if v["caught_up"] == true {
            result = v["result"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(result["aggregations"]["s"]["value"], json!(3.0));
    let (s, v) = call(&router, "PUT", "/v1/queries", "").await;
    assert_eq!((s.as_u16(), v["status"].as_u64()), (405, Some(405)));
}
