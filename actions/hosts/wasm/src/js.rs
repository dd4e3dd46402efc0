//! The ports over the JavaScript I/O primitives of `js/io.js`, and the exported entry point.
//!
//! Values cross the boundary as JSON text (parameters, results), one framed buffer per Kafka
//! fetch ([`crate::frame`]), and command arrays / replies for Redis (bulk strings as bytes).

use std::sync::Arc;

use async_trait::async_trait;
use js_sys::{Array, Reflect, Uint8Array};
use kappa_actions::openwhisk::{Invocation, OpenWhiskChain, Settings, dispatch};
use kappa_actions::warm::WarmStates;
use kappa_actions::{Context, Env};
use kappa_core::Topic;
use kappa_core::ports::{
    Batch, Clock, HttpClient, HttpRequest, HttpResponse, LogReader, LogWriter, MAX_RESPONSE_BYTES,
    NewRecord, PortError, PortResult, ReadRequest, Timer, Watermarks,
};
use serde_json::Value;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use kappa_state_redis::{Arg, CallError, RedisCall, RedisStore, RedisStoreConfig, Reply};

/// Decoded states kept between the activations of this (warm) container; sized by the first.
static WARM: std::sync::OnceLock<WarmStates> = std::sync::OnceLock::new();

#[wasm_bindgen]
extern "C" {
    /// The I/O object `js/io.js` builds once per container (connections are reused).
    pub type Io;

    #[wasm_bindgen(method, catch)]
    async fn partitions(this: &Io, topic: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    async fn watermarks(this: &Io, topic: &str, partition: u32) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    async fn fetch(
        this: &Io,
        topic: &str,
        partition: u32,
        from: &str,
        max_bytes: u32,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = createTopic)]
    async fn create_topic(this: &Io, topic: &str, partitions: u32) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    async fn produce(
        this: &Io,
        topic: &str,
        partition: u32,
        frames: Uint8Array,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    async fn redis(this: &Io, args: Array) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = redisPipeline)]
    async fn redis_pipeline(this: &Io, commands: Array) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    async fn http(
        this: &Io,
        method: &str,
        url: &str,
        headers: Array,
        body: Uint8Array,
        public_only: bool,
        max_bytes: u32,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method)]
    async fn sleep(this: &Io, ms: f64);
}

thread_local! {
    /// The container's I/O object. The ports must be `Send + Sync` and a JS value is neither,
    /// so the adapters are empty structs that take it from here (one thread in a wasm module).
    static IO: std::cell::RefCell<JsValue> = const { std::cell::RefCell::new(JsValue::UNDEFINED) };
}

/// Use `io` for the ports of this call and the next ones.
pub(crate) fn use_io(io: JsValue) {
    crate::zones::install();
    IO.with(|c| *c.borrow_mut() = io);
}

fn io() -> Io {
    IO.with(|c| c.borrow().clone()).unchecked_into()
}

/// `{"error": message}`, as a JavaScript object.
fn error_json(message: &str) -> JsValue {
    to_js(&serde_json::json!({ "error": message }))
}

fn to_js(value: &Value) -> JsValue {
    js_sys::JSON::parse(&value.to_string()).unwrap_or(JsValue::NULL)
}

/// Run one activation: `params` are the action's parameters and `env` the relevant part of
/// `process.env` (`__OW_*` and the settings); answers the result object (failures as
/// `{"error"}`).
#[wasm_bindgen]
pub async fn run(params: JsValue, env: JsValue, io: JsValue) -> JsValue {
    use_io(io);
    let params = from_js(&params);
    let env = from_js(&env);
    let env_var = |k: &str| env.get(k).and_then(Value::as_str).map(str::to_string);
    let result = match Settings::read(env_var, params.as_object().unwrap_or(&Default::default())) {
        Err(e) => return error_json(&e.to_string()),
        Ok(settings) => {
            let context = Context {
                activation_id: env_var("__OW_ACTIVATION_ID").unwrap_or_default(),
                // A local run has no deadline: a minute from now.
                deadline_ms: env_var("__OW_DEADLINE")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(js_sys::Date::now() as i64 + 60_000),
            };
            let action = env_var("__OW_ACTION_NAME").unwrap_or_default();
            let invocation = Invocation::new(&action, params, context, env_var("__OW_API_KEY"));
            let log = JsLog;
            // The native actions' Redis design and defaults, over the JavaScript client.
            let store = match RedisStore::new(JsRedis, RedisStoreConfig::default()) {
                Ok(store) => store,
                Err(e) => return error_json(&e.to_string()),
            };
            // The chain authenticates with this activation's key (`provide-api-key`).
            let chain = OpenWhiskChain::new(
                &settings.api_host,
                invocation.api_key.as_deref().unwrap_or(""),
                settings.link,
                settings.config.link_actions(),
                Arc::new(JsHttp),
                Arc::new(JsTimer),
            );
            let env = Env {
                log: &log,
                writer: &log,
                store: &store,
                chain: &chain,
                http: &JsHttp,
                clock: &JsClock,
                timer: &JsTimer,
                config: &settings.config,
                warm: WARM.get_or_init(|| WarmStates::new(settings.config.warm_state_bytes)),
            };
            dispatch(&env, &invocation, &settings).await
        }
    };
    to_js(&result)
}

fn from_js(v: &JsValue) -> Value {
    js_sys::JSON::stringify(v)
        .ok()
        .and_then(|s| s.as_string())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null)
}

/// The message of a thrown JS error, and whether `io.js` marked it transient.
fn js_error(e: &JsValue) -> (String, bool) {
    let message = Reflect::get(e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "unknown JavaScript error".into());
    let transient =
        Reflect::get(e, &"transient".into()).ok().and_then(|t| t.as_bool()).unwrap_or(false);
    (message, transient)
}

fn port_error(backend: &'static str, what: &str, e: &JsValue) -> PortError {
    let (message, transient) = js_error(e);
    let message = format!("{what}: {message}");
    if transient {
        PortError::transient(backend, message)
    } else {
        PortError::permanent(backend, message)
    }
}

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

fn offset(v: &JsValue, what: &str) -> PortResult<i64> {
    v.as_string()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64().map(|f| f as i64))
        .ok_or_else(|| PortError::permanent("kafka", format!("{what} is not an offset")))
}

// ------------------------------------------------------------------------------------------
// Log

pub(crate) struct JsLog;

#[async_trait(?Send)]
impl LogReader for JsLog {
    async fn partitions(&self, topic: &str) -> PortResult<Option<u32>> {
        let n = io().partitions(topic).await.map_err(|e| port_error("kafka", "partitions", &e))?;
        Ok(n.as_f64().map(|n| n as u32))
    }

    async fn watermarks(&self, topic: &str, partition: u32) -> PortResult<Watermarks> {
        let w = io()
            .watermarks(topic, partition)
            .await
            .map_err(|e| port_error("kafka", "watermarks", &e))?;
        Ok(Watermarks {
            low: offset(&get(&w, "low"), "low")?,
            high: offset(&get(&w, "high"), "high")?,
        })
    }

    /// The semantics of `kappa-log-kafka` (and `MemoryLog`): start at the low watermark when
    /// `from` was deleted (counted as lost), stop at `end`, the head seen, `max_records`, or
    /// `max_bytes` (at least one record).
    async fn read(&self, topic: &str, partition: u32, request: ReadRequest) -> PortResult<Batch> {
        let mut from = request.from;
        // A fetch brings whole record batches up to this many bytes and the rest of the
        // response is dropped, so ask for about what `max_records` needs (1 KiB a record), not
        // for all of `max_bytes`: a read of 1000 small records should not decode the partition.
        let fetch_bytes = request
            .max_bytes
            .min(request.max_records.saturating_mul(1024))
            .clamp(256 << 10, 64 << 20) as u32;
        for _ in 0..3 {
            let r = io()
                .fetch(topic, partition, &from.to_string(), fetch_bytes)
                .await
                .map_err(|e| port_error("kafka", &format!("read {topic}/{partition}"), &e))?;
            let low = offset(&get(&r, "low"), "low")?;
            let high = offset(&get(&r, "high"), "high")?;
            if get(&r, "outOfRange").as_bool() == Some(true) || from < low {
                if from < low {
                    from = low;
                    continue;
                }
                let lost = (from - request.from).max(0) as u64;
                return Ok(Batch {
                    records: vec![],
                    next_offset: from,
                    high_watermark: high,
                    lost,
                });
            }
            let end = request.end.map_or(high, |e| e.min(high));
            let lost = (from - request.from).max(0) as u64;
            if from >= end || request.max_records == 0 {
                return Ok(Batch {
                    records: vec![],
                    next_offset: from,
                    high_watermark: high,
                    lost,
                });
            }
            let frame = Uint8Array::new(&get(&r, "frame")).to_vec();
            let fetched =
                crate::frame::decode(frame.into()).map_err(|e| PortError::permanent("kafka", e))?;
            let mut records = Vec::new();
            let mut bytes = 0usize;
            let mut next = from;
            let mut full = false;
            for rec in fetched {
                if rec.offset < next {
                    continue;
                }
                if rec.offset >= end {
                    // Everything before `end` was delivered: the rest are gaps.
                    next = end;
                    break;
                }
                if records.len() >= request.max_records
                    || (bytes >= request.max_bytes && !records.is_empty())
                {
                    full = true;
                    break;
                }
                bytes += rec.value.len();
                next = rec.offset + 1;
                records.push(rec);
            }
            if records.is_empty() && next < end && !full {
                return Err(PortError::transient(
                    "kafka",
                    format!("read {topic}/{partition}: no records at {from} below the head {end}"),
                ));
            }
            return Ok(Batch { records, next_offset: next, high_watermark: high, lost });
        }
        Err(PortError::transient(
            "kafka",
            format!("read {topic}/{partition}: retention moved during the read"),
        ))
    }
}

/// Ingest through the deployed `query` action: kafkajs's admin and producer (`js/io.js`).
#[async_trait(?Send)]
impl LogWriter for JsLog {
    async fn ensure_topic(&self, topic: &Topic, partitions: u32) -> PortResult<u32> {
        let n = io()
            .create_topic(topic, partitions)
            .await
            .map_err(|e| port_error("kafka", "create topic", &e))?;
        n.as_f64()
            .map(|n| n as u32)
            .ok_or_else(|| PortError::permanent("kafka", "create topic: no partition count"))
    }

    /// One produce request for the partition's records (all or none).
    async fn append(&self, topic: &str, partition: u32, records: &[NewRecord]) -> PortResult<i64> {
        if records.is_empty() {
            // Nothing to produce: the offset the next record would get, as the native adapter.
            return Ok(self.watermarks(topic, partition).await?.high);
        }
        let frames = Uint8Array::from(crate::frame::encode_new(records).as_slice());
        let first = io()
            .produce(topic, partition, frames)
            .await
            .map_err(|e| port_error("kafka", &format!("append {topic}/{partition}"), &e))?;
        offset(&first, "first offset")
    }
}

// ------------------------------------------------------------------------------------------
// Redis

pub(crate) struct JsRedis;

fn reply(v: &JsValue) -> Reply {
    if v.is_null() || v.is_undefined() {
        Reply::Nil
    } else if let Some(n) = v.as_f64() {
        Reply::Int(n as i64)
    } else if let Some(s) = v.as_string() {
        Reply::Bytes(s.into_bytes())
    } else if Array::is_array(v) {
        Reply::Array(Array::from(v).iter().map(|x| reply(&x)).collect())
    } else if v.is_instance_of::<Uint8Array>() {
        Reply::Bytes(Uint8Array::new(v).to_vec())
    } else {
        Reply::Nil
    }
}

/// A command as the JavaScript client takes it: strings, and bytes as `Uint8Array`.
fn js_command(args: &[Arg]) -> Array {
    args.iter()
        .map(|a| match a {
            Arg::Str(s) => JsValue::from_str(s),
            Arg::Bytes(b) => Uint8Array::from(b.as_slice()).into(),
        })
        .collect()
}

fn call_error(e: &JsValue) -> CallError {
    let (message, transient) = js_error(e);
    CallError { message, transient }
}

#[async_trait(?Send)]
impl RedisCall for JsRedis {
    async fn call(&self, args: Vec<Arg>) -> Result<Reply, CallError> {
        io().redis(js_command(&args)).await.map(|v| reply(&v)).map_err(|e| call_error(&e))
    }

    async fn pipeline(&self, commands: Vec<Vec<Arg>>) -> Result<Vec<Reply>, CallError> {
        let commands: Array = commands.iter().map(|args| JsValue::from(js_command(args))).collect();
        let replies = io().redis_pipeline(commands).await.map_err(|e| call_error(&e))?;
        Ok(Array::from(&replies).iter().map(|v| reply(&v)).collect())
    }
}

// ------------------------------------------------------------------------------------------
// HTTP, clock, timer, chain

struct JsHttp;

/// `ports::is_public_address` for `js/io.js`'s resolver: the one address policy of webhooks.
#[wasm_bindgen(js_name = isPublicAddress)]
pub fn is_public_address_js(ip: &str) -> bool {
    ip.parse().is_ok_and(kappa_core::ports::is_public_address)
}

#[async_trait(?Send)]
impl HttpClient for JsHttp {
    async fn send(&self, request: HttpRequest) -> PortResult<HttpResponse> {
        if request.public_only {
            // The registration-time check again (the one parser and policy); names are then
            // resolved by `js/io.js` through [`is_public_address_js`], like the native client.
            if let Err(reason) = kappa_actions::push::check_webhook_url(&request.url, false) {
                return Err(PortError::permanent("http", format!("{reason}; refused")));
            }
        }
        let headers = Array::new();
        for (k, v) in &request.headers {
            headers.push(&Array::of2(&JsValue::from_str(k), &JsValue::from_str(v)));
        }
        let r = io()
            .http(
                &request.method,
                &request.url,
                headers,
                Uint8Array::from(request.body.as_slice()),
                request.public_only,
                MAX_RESPONSE_BYTES as u32,
            )
            .await
            .map_err(|e| port_error("http", "request", &e))?;
        Ok(HttpResponse {
            status: get(&r, "status").as_f64().unwrap_or(0.0) as u16,
            body: Uint8Array::new(&get(&r, "body")).to_vec(),
        })
    }
}

struct JsClock;

impl Clock for JsClock {
    fn now_ms(&self) -> i64 {
        js_sys::Date::now() as i64
    }
}

struct JsTimer;

#[async_trait(?Send)]
impl Timer for JsTimer {
    async fn sleep(&self, ms: u64) {
        io().sleep(ms as f64).await;
    }
}
