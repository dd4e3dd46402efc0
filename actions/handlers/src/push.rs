//! The push action: deliver a new result version to webhooks and the push gateway.
//!
//! Webhook bodies are signed (`X-Kappa-Signature: sha256=<hex HMAC-SHA256 of the body>`), and
//! URLs to loopback, private and link-local addresses are refused unless the deployment allows
//! them: a query's subscriber must not be able to make the platform call its internal network.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use kappa_core::ports::{HttpRequest, Subscription};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::env::Env;
use crate::error::ActionError;
use crate::result::snapshot_message;

/// The event: a query whose result reached `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushEvent {
    /// Query id.
    pub query: String,
    /// The version to deliver.
    pub version: u64,
}

/// What was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PushOutput {
    /// Webhook deliveries that succeeded.
    pub delivered: usize,
    /// Webhook deliveries that failed after every attempt.
    pub failed: usize,
    /// Whether the gateway accepted the message.
    pub gateway: bool,
}

/// `sha256=<hex>` of the body under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| {
        Hmac::<Sha256>::new_from_slice(b"").expect("HMAC takes any key length")
    });
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Refuse webhook URLs that are not http(s) or that point at loopback, private, link-local or
/// unspecified addresses (unless `allow_private`).
pub fn check_webhook_url(url: &str, allow_private: bool) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("webhook url must be http(s): [{url}]"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(format!("webhook url has no host: [{url}]"));
    }
    if allow_private {
        return Ok(());
    }
    let lower = host.to_ascii_lowercase();
    if lower == "localhost"
        || lower.ends_with(".localhost")
        || lower.ends_with(".local")
        || lower.ends_with(".internal")
    {
        return Err(format!(
            "webhook host [{host}] is a local name; private targets are not allowed"
        ));
    }
    if let Ok(ip) = host.parse::<IpAddr>()
        && is_private(ip)
    {
        return Err(format!(
            "webhook address [{host}] is loopback, private or link-local; private targets are not allowed"
        ));
    }
    Ok(())
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// Deliver the message(s) of `event.version`.
pub async fn push(env: &Env<'_>, event: PushEvent) -> Result<PushOutput, ActionError> {
    let subscriptions = env.store.subscriptions(&event.query).await?;
    if subscriptions.is_empty() && env.config.gateway_url.is_none() {
        // Nobody to deliver to (the usual case in `kappa dev`): skip reading the ring.
        return Ok(PushOutput::default());
    }
    let messages = env.store.messages_since(&event.query, event.version.saturating_sub(1)).await?;
    let message = match messages.and_then(|m| {
        m.into_iter().find(|m| m.get("version").and_then(Value::as_u64) == Some(event.version))
    }) {
        Some(m) => m,
        // The delta is gone from the ring: subscribers get a snapshot instead of a gap.
        None => match env.store.result(&event.query).await? {
            Some(r) => snapshot_message(&event.query, &r),
            None => return Err(ActionError::NotFound { what: "query", name: event.query }),
        },
    };
    let body = serde_json::to_vec(&message).unwrap_or_default();
    let mut out = PushOutput::default();
    for sub in subscriptions {
        if deliver(env, &sub, &body).await {
            out.delivered += 1;
        } else {
            out.failed += 1;
        }
    }
    if let Some(url) = &env.config.gateway_url {
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(token) = &env.config.gateway_token {
            headers.push(("authorization".to_string(), format!("Bearer {token}")));
        }
        let request =
            HttpRequest { method: "POST".into(), url: url.clone(), headers, body: body.clone() };
        out.gateway =
            matches!(env.http.send(request).await, Ok(r) if (200..300).contains(&r.status));
    }
    Ok(out)
}

/// One webhook delivery with retries and exponential backoff; 4xx answers other than 408/429
/// are final.
async fn deliver(env: &Env<'_>, sub: &Subscription, body: &[u8]) -> bool {
    if let Err(reason) = check_webhook_url(&sub.url, env.config.allow_private_webhooks) {
        tracing::warn!(%reason, "webhook refused");
        return false;
    }
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("x-kappa-signature".to_string(), signature(&sub.secret, body)),
    ];
    let mut backoff = 200u64;
    for attempt in 1..=env.config.webhook_attempts.max(1) {
        let request = HttpRequest {
            method: "POST".into(),
            url: sub.url.clone(),
            headers: headers.clone(),
            body: body.to_vec(),
        };
        match env.http.send(request).await {
            Ok(r) if (200..300).contains(&r.status) => return true,
            Ok(r) if (400..500).contains(&r.status) && r.status != 408 && r.status != 429 => {
                tracing::warn!(status = r.status, attempt, "webhook rejected the delivery");
                return false;
            }
            Ok(r) => tracing::warn!(status = r.status, attempt, "webhook delivery failed"),
            Err(e) => tracing::warn!(error = %e, attempt, "webhook delivery failed"),
        }
        if attempt < env.config.webhook_attempts {
            env.timer.sleep(backoff).await;
            backoff = (backoff * 4).min(10_000);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_loopback_webhooks_are_refused_unless_allowed() {
        for bad in [
            "http://127.0.0.1/x",
            "http://localhost:8080/",
            "https://10.1.2.3/",
            "http://192.168.0.1",
            "http://[::1]:80/",
            "http://169.254.169.254/latest",
            "http://[fd00::1]/",
            "ftp://example.com",
            "http://user@172.16.0.1/",
        ] {
            assert!(check_webhook_url(bad, false).is_err(), "{bad} accepted");
        }
        assert!(check_webhook_url("https://hooks.example.com/kappa?x=1", false).is_ok());
        assert!(check_webhook_url("http://127.0.0.1:9000/hook", true).is_ok());
    }

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
