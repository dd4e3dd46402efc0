//! Outgoing HTTP with reqwest and bundled TLS roots.
//!
//! A request marked [`HttpRequest::public_only`] (a user's webhook) goes through a client whose
//! resolver keeps only public addresses ([`is_public_address`]), so the connection is made to
//! an address that was checked — a name that resolves (or is rebound) to loopback or a private
//! network is never connected to; the URL itself goes through the check webhooks get at
//! registration (`kappa_actions::push::check_webhook_url`, the client's own parser). No client follows redirects (a public URL answering 307 to
//! a private one would otherwise be delivered there), and answers are read up to a bound.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
pub use kappa_core::ports::MAX_RESPONSE_BYTES;
use kappa_core::ports::{
    HttpClient, HttpRequest, HttpResponse, PortError, PortResult, is_public_address,
};

/// An [`HttpClient`] over reqwest.
#[derive(Debug, Clone)]
pub struct ReqwestHttp {
    /// Operator-configured targets (the gateway, the OpenWhisk API).
    client: reqwest::Client,
    /// Users' targets: public addresses only.
    public: reqwest::Client,
}

/// Resolves a name to its public addresses only; none is an error.
struct PublicAddresses;

impl reqwest::dns::Resolve for PublicAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                .collect();
            let public: Vec<SocketAddr> =
                resolved.into_iter().filter(|a| is_public_address(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl ReqwestHttp {
    /// Clients with a per-request timeout.
    pub fn new(timeout: Duration) -> PortResult<Self> {
        let build = |b: reqwest::ClientBuilder| {
            b.timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| PortError::permanent("http", e.to_string()))
        };
        Ok(ReqwestHttp {
            client: build(reqwest::Client::builder())?,
            public: build(
                reqwest::Client::builder()
                    .dns_resolver(std::sync::Arc::new(PublicAddresses))
                    .no_proxy(),
            )?,
        })
    }
}

#[async_trait]
impl HttpClient for ReqwestHttp {
    async fn send(&self, request: HttpRequest) -> PortResult<HttpResponse> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|e| PortError::permanent("http", e.to_string()))?;
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| PortError::permanent("http", format!("not a URL: {e}")))?;
        // Errors name the host only: URLs may carry credentials.
        let host = url.host_str().unwrap_or("").to_string();
        let client = if request.public_only {
            // The registration-time check again (the one parser and policy): an address written
            // in the URL never reaches the resolver below.
            if let Err(reason) = kappa_actions::push::check_webhook_url(&request.url, false) {
                return Err(PortError::permanent("http", format!("{host}: {reason}; refused")));
            }
            &self.public
        } else {
            &self.client
        };
        let mut builder = client.request(method, url).body(request.body);
        for (k, v) in &request.headers {
            builder = builder.header(k, v);
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| PortError::transient("http", format!("{host}: {}", e.without_url())))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while body.len() < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_RESPONSE_BYTES - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(PortError::transient(
                        "http",
                        format!("{host}: {}", e.without_url()),
                    ));
                }
            }
        }
        Ok(HttpResponse { status, body })
    }
}
