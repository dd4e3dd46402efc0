//! The terminal client: `kappa ingest` and `kappa query`.

use std::io::Write;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::StreamExt;
use kappa_core::ports::Progress;
use kappa_core::{Message, patch};
use serde_json::Value;

/// A client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Transport.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// The server answered an error.
    #[error("server answered {status}: {body}")]
    Api {
        /// Status.
        status: u16,
        /// Body.
        body: String,
    },
    /// Local file or output.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A message that cannot be applied.
    #[error("stream: {0}")]
    Stream(String),
}

/// Where and how to reach the server.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Base URL (`http://127.0.0.1:8080`).
    pub server: String,
    /// Bearer key.
    pub api_key: Option<String>,
}

impl Remote {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.trim_end_matches('/'))
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }
}

async fn check(r: reqwest::Response) -> Result<Value, ClientError> {
    let status = r.status().as_u16();
    let text = r.text().await?;
    if !(200..300).contains(&status) {
        return Err(ClientError::Api { status, body: text });
    }
    serde_json::from_str(&text).map_err(|e| ClientError::Stream(e.to_string()))
}

/// Split NDJSON into bodies of at most `max` bytes on line boundaries (a longer line is sent
/// alone and the server answers 413 for it).
pub fn chunks(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut end) = (0, 0);
    while end < data.len() {
        let line_end =
            data[end..].iter().position(|&b| b == b'\n').map_or(data.len(), |i| end + i + 1);
        if line_end - start > max && end > start {
            out.push(&data[start..end]);
            start = end;
        }
        end = line_end;
    }
    if end > start {
        out.push(&data[start..end]);
    }
    out
}

/// Send an NDJSON file to a topic, in bodies under the server's ingest limit; prints one line
/// per body and returns the number of records.
pub async fn ingest(
    remote: &Remote,
    file: &std::path::Path,
    topic: &str,
    key: Option<&str>,
    max_body: usize,
) -> Result<u64, ClientError> {
    let data = tokio::fs::read(file).await?;
    let client = reqwest::Client::new();
    let mut total = 0u64;
    let started = Instant::now();
    for body in chunks(&data, max_body) {
        let mut rb =
            client.post(remote.url(&format!("/v1/topics/{topic}/records"))).body(body.to_vec());
        if let Some(k) = key {
            rb = rb.query(&[("key", k)]);
        }
        let answer = check(remote.auth(rb).send().await?).await?;
        total += answer["count"].as_u64().unwrap_or(0);
        eprintln!("ingested {total} records into {topic}");
    }
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    eprintln!("done: {total} records in {secs:.1}s ({:.0} records/s)", total as f64 / secs);
    Ok(total)
}

/// Post a query; print its result once caught up, or with `follow` the result and then every
/// update (each delta applied with `kappa_core::patch::apply`). Progress goes to stderr while
/// replaying.
pub async fn query(
    remote: &Remote,
    body: Vec<u8>,
    follow: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), ClientError> {
    let client = reqwest::Client::new();
    let created = check(
        remote
            .auth(
                client
                    .post(remote.url("/v1/queries"))
                    .header("content-type", "application/json")
                    .body(body),
            )
            .send()
            .await?,
    )
    .await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    eprintln!("query {id}{}", if created["shared"] == true { " (shared)" } else { "" });
    let response = remote
        .auth(
            client
                .get(remote.url(&format!("/v1/queries/{id}/events")))
                .header("accept", "text/event-stream"),
        )
        .send()
        .await?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        return Err(ClientError::Api { status, body: response.text().await? });
    }
    let mut bytes = response.bytes_stream();
    let mut buf = Vec::new();
    let mut result: Option<Value> = None;
    let mut meter = Meter::default();
    while let Some(chunk) = bytes.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(end) = find_event_end(&buf) {
            let event: Vec<u8> = buf.drain(..end).collect();
            let Some(data) = event_data(&event) else { continue };
            let m: Message =
                serde_json::from_str(&data).map_err(|e| ClientError::Stream(e.to_string()))?;
            match &m {
                Message::Snapshot { result: r, .. } => {
                    if follow {
                        writeln!(out, "{}", serde_json::to_string_pretty(r).unwrap_or_default())?;
                    }
                    result = Some(Value::clone(r));
                }
                Message::Delta { patch: delta, .. } => {
                    let r = result
                        .as_mut()
                        .ok_or_else(|| ClientError::Stream("delta before snapshot".into()))?;
                    patch::apply(r, delta).map_err(|e| ClientError::Stream(e.to_string()))?;
                    if follow {
                        writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default())?;
                    }
                }
                Message::Error { error, .. } => return Err(ClientError::Stream(error.to_string())),
                Message::Progress { .. } => {}
            }
            let caught_up = m.caught_up().unwrap_or(false);
            meter.show(m.progress(), caught_up);
            if caught_up && !follow {
                if let Some(r) = &result {
                    writeln!(out, "{}", serde_json::to_string_pretty(r).unwrap_or_default())?;
                }
                return Ok(());
            }
        }
    }
    Ok(())
}

/// End of the first complete SSE event in `buf` (after its blank line).
fn find_event_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

/// The `data:` lines of an event, joined.
fn event_data(event: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(event);
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:").map(|d| d.strip_prefix(' ').unwrap_or(d)))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The replay progress line on stderr: records/s and lag.
#[derive(Default)]
struct Meter {
    last: Option<(Instant, u64)>,
    rate: f64,
    shown: Option<Instant>,
    done: bool,
}

impl Meter {
    fn show(&mut self, progress: Option<&Progress>, caught_up: bool) {
        let (processed, lag) = progress.map_or((0, 0), |p| (p.processed, p.lag));
        let now = Instant::now();
        if let Some((t, n)) = self.last {
            let dt = now.duration_since(t).as_secs_f64();
            if dt > 0.2 {
                self.rate = processed.saturating_sub(n) as f64 / dt;
                self.last = Some((now, processed));
            }
        } else {
            self.last = Some((now, processed));
        }
        if caught_up {
            if !self.done && self.shown.is_some() {
                eprintln!("\rcaught up: {processed} records                                   ");
            }
            self.done = true;
            return;
        }
        self.done = false;
        if self.shown.is_none_or(|t| now.duration_since(t) > Duration::from_millis(200)) {
            eprint!(
                "\rreplaying: {processed} records, {:.0} records/s, lag {lag}      ",
                self.rate
            );
            self.shown = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_on_lines_under_the_limit() {
        let data = b"aaaa\nbbbb\ncccc\ndd";
        let parts = chunks(data, 10);
        assert_eq!(parts.concat(), data.to_vec());
        assert!(parts.iter().all(|p| p.len() <= 10));
        assert_eq!(chunks(b"x\n", 100), vec![&b"x\n"[..]]);
    }

    #[test]
    fn sse_events_are_parsed() {
        let buf = b"id: 3\ndata: {\"a\":1}\n\n:keep\n";
        let end = find_event_end(buf).expect("event");
        assert_eq!(event_data(&buf[..end]).as_deref(), Some("{\"a\":1}"));
    }
}
