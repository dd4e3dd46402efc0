//! IANA time zones from the JavaScript engine's `Intl` (Node.js ships ICU with the tz database),
//! installed as the core's zone source: the module then carries no copy of the database.
//!
//! `Intl` tells the local wall-clock time of an instant in a zone; the offset is the difference.
//! The core remembers the answers as spans of constant offset ([`ProbedZone`]), so records cost a
//! map lookup and each new span a few hundred calls here.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use js_sys::{Array, Object, Reflect};
use kappa_core::date::{ProbedZone, ZoneRules, ZoneSource, install_zone_source};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = Intl, js_name = DateTimeFormat)]
    type DateTimeFormat;

    /// Throws a `RangeError` for a time zone the engine does not know.
    #[wasm_bindgen(constructor, catch, js_namespace = Intl, js_class = "DateTimeFormat")]
    fn new(locale: &str, options: &Object) -> Result<DateTimeFormat, JsValue>;

    #[wasm_bindgen(method, js_name = formatToParts)]
    fn format_to_parts(this: &DateTimeFormat, epoch_ms: f64) -> Array;

    #[wasm_bindgen(method, js_name = resolvedOptions)]
    fn resolved_options(this: &DateTimeFormat) -> Object;
}

thread_local! {
    /// One formatter per zone name (building one costs far more than using it). A JS value is
    /// neither `Send` nor `Sync`, so it stays here (one thread in a wasm module) and the zone
    /// rules hold only the name.
    static FORMATTERS: RefCell<HashMap<String, DateTimeFormat>> = RefCell::new(HashMap::new());
    /// One zone per name for the container's life, so the spans a zone has learnt serve every
    /// later query and activation (a new span costs a few hundred `Intl` calls).
    static ZONES: RefCell<HashMap<String, Arc<dyn ZoneRules>>> = RefCell::new(HashMap::new());
}

/// The earliest and latest instants asked of `Intl` (years 1 to 9999, which it prints without
/// eras or signs); before and after, the offset at the bound holds.
const FIRST_MS: i64 = -62_135_596_800_000;
const LAST_MS: i64 = 253_402_300_799_000;

/// Install `Intl` as the source of time zones (once; later calls change nothing).
pub(crate) fn install() {
    install_zone_source(Box::new(IntlZones));
}

struct IntlZones;

impl ZoneSource for IntlZones {
    fn zone(&self, name: &str) -> Option<Arc<dyn ZoneRules>> {
        if let Some(zone) = ZONES.with(|zones| zones.borrow().get(name).cloned()) {
            return Some(zone);
        }
        if !formatter_exists(name) {
            return None;
        }
        let owned = name.to_string();
        let zone: Arc<dyn ZoneRules> =
            Arc::new(ProbedZone::new(move |utc_ms| offset_seconds(&owned, utc_ms)));
        ZONES.with(|zones| zones.borrow_mut().insert(name.to_string(), zone.clone()));
        Some(zone)
    }
}

/// Whether `Intl` knows the zone `name` (and a formatter for it is ready).
fn formatter_exists(name: &str) -> bool {
    // Offsets (`+01:00`, `UTC+1`) and `Z`/`UTC` never get here: the core parses them first.
    FORMATTERS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.contains_key(name) {
            return true;
        }
        let options = Object::new();
        let set = |key: &str, value: &str| {
            let _ = Reflect::set(&options, &key.into(), &value.into());
        };
        set("timeZone", name);
        set("hourCycle", "h23");
        for field in ["year", "month", "day", "hour", "minute", "second"] {
            set(field, "numeric");
        }
        let Ok(formatter) = DateTimeFormat::new("en-US", &options) else { return false };
        // `Intl` matches names case-insensitively, Java's `ZoneId` (and the native build) does
        // not: a canonical name in another case is refused as there. (A link in another case,
        // `us/eastern`, resolves to its target and cannot be told apart; it is accepted.)
        let resolved = Reflect::get(&formatter.resolved_options(), &"timeZone".into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default();
        if resolved != name && resolved.eq_ignore_ascii_case(name) {
            return false;
        }
        cache.insert(name.to_string(), formatter);
        true
    })
}

/// The offset of zone `name` at `utc_ms`, in seconds: its local time then, minus UTC.
fn offset_seconds(name: &str, utc_ms: i64) -> i32 {
    let at = utc_ms.clamp(FIRST_MS, LAST_MS);
    let whole_second = at.div_euclid(1000) * 1000;
    FORMATTERS.with(|cache| {
        let cache = cache.borrow();
        let Some(formatter) = cache.get(name) else { return 0 };
        let mut fields = [0u32; 6];
        for part in formatter.format_to_parts(whole_second as f64).iter() {
            let text =
                |key: &str| Reflect::get(&part, &key.into()).ok().and_then(|v| v.as_string());
            let slot = match text("type").as_deref() {
                Some("year") => 0,
                Some("month") => 1,
                Some("day") => 2,
                Some("hour") => 3,
                Some("minute") => 4,
                Some("second") => 5,
                _ => continue,
            };
            fields[slot] = text("value").and_then(|v| v.parse().ok()).unwrap_or(0);
        }
        let [year, month, day, hour, minute, second] = fields;
        let local = chrono::NaiveDate::from_ymd_opt(year as i32, month, day)
            .and_then(|date| date.and_hms_opt(hour, minute, second));
        local.map_or(0, |local| {
            let local_ms = local.and_utc().timestamp_millis();
            i32::try_from((local_ms - whole_second) / 1000).unwrap_or(0)
        })
    })
}
