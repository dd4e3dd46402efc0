//! A minimal blocking HTTP/1.1 client for the OpenSearch node on loopback.
//!
//! The node is local and answers small JSON bodies, so one keep-alive connection with
//! `Content-Length` bodies is all the suite needs; pulling an async HTTP stack into a test
//! crate would cost more build time than the whole suite runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// The environment variable `scripts/opensearch.sh start` prints.
pub const URL_VAR: &str = "OPENSEARCH_URL";

/// A connection to one OpenSearch node.
pub struct OpenSearch {
    host_port: String,
    conn: Option<BufReader<TcpStream>>,
}

impl OpenSearch {
    /// The node named by `OPENSEARCH_URL` (`http://127.0.0.1:PORT`), or `None` when unset.
    pub fn from_env() -> Result<Option<OpenSearch>> {
        let Some(url) = std::env::var_os(URL_VAR) else { return Ok(None) };
        let url = url.to_string_lossy();
        let host_port = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("{URL_VAR}={url}: expected http://HOST:PORT"))?
            .trim_end_matches('/')
            .to_string();
        let mut node = OpenSearch { host_port, conn: None };
        node.request("GET", "/_cluster/health?wait_for_status=yellow&timeout=30s", None)
            .with_context(|| format!("OpenSearch at {url} does not answer"))?;
        Ok(Some(node))
    }

    /// Send a request; `Ok((status, body))` for any HTTP status.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Value)> {
        // A keep-alive connection the server closed in between is retried once, fresh.
        match self.try_request(method, path, body) {
            Ok(r) => Ok(r),
            Err(_) if self.conn.is_some() => {
                self.conn = None;
                self.try_request(method, path, body)
            }
            Err(e) => Err(e),
        }
    }

    /// A request that must succeed (2xx).
    pub fn ok(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<Value> {
        let (status, v) = self.request(method, path, body)?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: HTTP {status}: {v}");
        }
        Ok(v)
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Value)> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(&self.host_port)
                .with_context(|| format!("connect to {}", self.host_port))?;
            stream.set_read_timeout(Some(Duration::from_secs(60)))?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().expect("connected above");
        let body = body.unwrap_or("");
        let content_type =
            if path.contains("_bulk") { "application/x-ndjson" } else { "application/json" };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.host_port,
            body.len()
        );
        let stream = conn.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut line = String::new();
        conn.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.parse::<usize>()?);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let mut bytes = Vec::new();
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16)?;
                let mut chunk = vec![0; n + 2];
                conn.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                bytes.extend_from_slice(&chunk[..n]);
            }
        } else {
            let n = length.ok_or_else(|| anyhow!("response without Content-Length"))?;
            bytes.resize(n, 0);
            conn.read_exact(&mut bytes)?;
        }
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes)? };
        Ok((status, value))
    }
}
