//! The push action: deliver a new result version to webhooks and the push gateway.
//!
//! Webhook bodies are signed (`X-Kappa-Signature: sha256=<hex HMAC-SHA256 of the body>`), and
//! URLs to loopback, private and link-local addresses are refused unless the deployment allows
//! them: a query's subscriber must not be able to make the platform call its internal network.

use hmac::{Hmac, Mac};
use kappa_core::Message;
use kappa_core::ports::{HttpRequest, Subscription};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::env::Env;
use crate::error::ActionError;

pub use kappa_core::ports::PushEvent;

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

/// Refuse webhook URLs that are not http(s), or whose host is a local name or a non-public
/// address (unless `allow_private`). The URL is parsed by the `url` crate, the parser the HTTP
/// client uses, so both see the same host: `127.1`, `0x7f000001`, `2130706433`, octal,
/// percent-encoded forms are normalised before they are checked, and a `\` before `@` is a path
/// separator for both. A host outside ASCII (full-width digits too) is refused: the parser runs
/// without IDNA's Unicode tables (see `idna_adapter` in Cargo.toml), so an international name
/// is written in its punycode form (`xn--...`). This is the early answer (a 400 at registration);
/// names are checked again where they are resolved: the HTTP adapter connects only to public
/// addresses of a webhook ([`HttpRequest::public_only`]).
pub fn check_webhook_url(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| match e {
        url::ParseError::IdnaError => format!(
            "webhook url has a host outside ASCII ({e}): write an international name in its \
             punycode form (xn--...)"
        ),
        e => format!("webhook url is not a URL ({e})"),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("webhook url must be http(s)".to_string());
    }
    let Some(host) = parsed.host() else {
        return Err("webhook url has no host".to_string());
    };
    if allow_private {
        return Ok(());
    }
    match host {
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost"
                || name.ends_with(".localhost")
                || name.ends_with(".local")
                || name.ends_with(".internal")
            {
                return Err(format!(
                    "webhook host [{name}] is a local name; private targets are not allowed"
                ));
            }
        }
        url::Host::Ipv4(ip) if !kappa_core::ports::is_public_address(ip.into()) => {
            return Err(format!(
                "webhook address [{ip}] is not a public address; private targets are not allowed"
            ));
        }
        url::Host::Ipv6(ip) if !kappa_core::ports::is_public_address(ip.into()) => {
            return Err(format!(
                "webhook address [{ip}] is not a public address; private targets are not allowed"
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Deliver the message(s) of `event.version`.
pub async fn push(env: &Env<'_>, event: PushEvent) -> Result<PushOutput, ActionError> {
    let subscriptions = env.store.subscriptions(&event.query).await?;
    if subscriptions.is_empty() && env.config.gateway_url.is_none() {
        // Nobody to deliver to (the usual case in `kappa dev`): skip reading the ring.
        return Ok(PushOutput::default());
    }
    let messages = env.store.messages_since(&event.query, event.version.saturating_sub(1)).await?;
    let message = match messages.and_then(|m| m.into_iter().find(|m| m.version() == event.version))
    {
        Some(m) => m,
        // The delta is gone from the ring: subscribers get a snapshot instead of a gap.
        None => match env.store.result(&event.query).await? {
            Some(r) => Message::snapshot(&event.query, &r),
            None => return Err(ActionError::NotFound { what: "query", name: event.query }),
        },
    };
    let body = serde_json::to_vec(&message).unwrap_or_default();
    let mut out = PushOutput::default();
    // Concurrently: a slow or failing endpoint (retried with backoff) delays no other.
    let delivered =
        futures_util::future::join_all(subscriptions.iter().map(|sub| deliver(env, sub, &body)))
            .await;
    for ok in delivered {
        if ok {
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
        let request = HttpRequest {
            public_only: false,
            method: "POST".into(),
            url: url.clone(),
            headers,
            body: body.clone(),
        };
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
            // A user's URL: the adapter connects only to public addresses, unless allowed.
            public_only: !env.config.allow_private_webhooks,
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
            // The spellings that got through a guard comparing host text (issue #17).
            "http://127.1:9/",
            "http://0/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://localhost./",
            "http://%31%32%37.0.0.1/",
            "http://\u{ff11}\u{ff12}\u{ff17}.0.0.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
            "http://[::127.0.0.1]/",
            "http://224.0.0.1/",
            "http://100.64.0.1/",
            "http://[ff02::1]/",
        ] {
            assert!(check_webhook_url(bad, false).is_err(), "{bad} accepted");
        }
        assert!(check_webhook_url("https://hooks.example.com/kappa?x=1", false).is_ok());
        assert!(check_webhook_url("https://93.184.215.14/hook", false).is_ok());
        // A `\` before `@` is a path separator to the client's parser too: the host that is
        // checked is the host that is connected to.
        let tricky = "http://example.com\\@127.0.0.1/";
        assert!(check_webhook_url(tricky, false).is_ok());
        let parsed = url::Url::parse(tricky).expect("a URL");
        assert_eq!(parsed.host_str(), Some("example.com"));
        assert!(
            check_webhook_url("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/", false).is_ok()
        );
        assert!(check_webhook_url("http://127.0.0.1:9000/hook", true).is_ok());
        // International names: refused with the way out, accepted in punycode.
        let e =
            check_webhook_url("https://bücher.example/hook", false).expect_err("non-ASCII host");
        assert!(e.contains("punycode"), "{e}");
        assert!(check_webhook_url("https://xn--bcher-kva.example/hook", false).is_ok());
        assert!(check_webhook_url("https://example.com/bücher", false).is_ok());
    }

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
