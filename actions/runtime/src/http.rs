//! Outgoing HTTP with reqwest and bundled TLS roots.

use std::time::Duration;

use async_trait::async_trait;
use kappa_core::ports::{HttpClient, HttpRequest, HttpResponse, PortError, PortResult};

/// An [`HttpClient`] over reqwest.
#[derive(Debug, Clone)]
pub struct ReqwestHttp {
    client: reqwest::Client,
}

impl ReqwestHttp {
    /// A client with a per-request timeout.
    pub fn new(timeout: Duration) -> PortResult<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| PortError::permanent("http", e.to_string()))?;
        Ok(ReqwestHttp { client })
    }
}

#[async_trait]
impl HttpClient for ReqwestHttp {
    async fn send(&self, request: HttpRequest) -> PortResult<HttpResponse> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|e| PortError::permanent("http", e.to_string()))?;
        let mut builder = self.client.request(method, &request.url).body(request.body);
        for (k, v) in &request.headers {
            builder = builder.header(k, v);
        }
        // Errors name the host only: URLs may carry credentials.
        let host = request
            .url
            .split('/')
            .nth(2)
            .unwrap_or("")
            .rsplit('@')
            .next()
            .unwrap_or("")
            .to_string();
        let response = builder
            .send()
            .await
            .map_err(|e| PortError::transient("http", format!("{host}: {}", e.without_url())))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| PortError::transient("http", format!("{host}: {}", e.without_url())))?
            .to_vec();
        Ok(HttpResponse { status, body })
    }
}
