//! Folding time per query, metered across the invocations this process runs.
//!
//! One invocation rarely folds long: a live query folds a few records per batch. Judged per
//! invocation, a query costing milliseconds a record would never be measured for long enough
//! (the budget waits for [`MIN_MEASURED_FOLD_MS`] of folding, so that a short hiccup of the
//! clock is not mistaken for a costly query) and would take a core for ever. So each chunk's
//! folding time is charged to its query here, in a window that closes once it holds
//! [`MIN_MEASURED_FOLD_MS`]; the window's records and time are then judged and a new window
//! starts. A warm container or `kappa dev` keeps the meter across invocations; a cold one
//! starts empty, which only makes the judgement later.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use kappa_core::limits::MIN_MEASURED_FOLD_MS;

/// Queries metered at most; past it the meter starts over (the judgement comes later for
/// some, nothing worse).
const MAX_METERED: usize = 4096;

/// Folding time and records of one query's open window.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Time spent folding, ms.
    pub fold_ms: i64,
    /// Records folded.
    pub records: u64,
}

static METER: LazyLock<Mutex<HashMap<String, Window>>> = LazyLock::new(Mutex::default);

/// [`charge`], then judge the window, once there is one, against `plan`'s CPU budget.
pub fn judge(
    query: &str,
    plan: &kappa_core::Plan,
    fold_ms: i64,
    records: u64,
) -> Result<(), kappa_core::QueryError> {
    match charge(query, fold_ms, records) {
        Some(window) => plan.limits().check_fold_cost(window.fold_ms, window.records),
        None => Ok(()),
    }
}

/// Charge `fold_ms` spent folding `records` to `query`. Returns the window to judge once it
/// holds [`MIN_MEASURED_FOLD_MS`] of folding (a new window starts then), `None` before.
pub fn charge(query: &str, fold_ms: i64, records: u64) -> Option<Window> {
    let mut meter = METER.lock().unwrap_or_else(|e| e.into_inner());
    if meter.len() >= MAX_METERED && !meter.contains_key(query) {
        meter.clear();
    }
    // Looked up before inserting: a group charges thousands of members per chunk.
    if !meter.contains_key(query) {
        meter.insert(query.to_string(), Window::default());
    }
    let window = meter.get_mut(query)?;
    window.fold_ms += fold_ms.max(0);
    window.records += records;
    if window.fold_ms < MIN_MEASURED_FOLD_MS {
        return None;
    }
    Some(std::mem::take(window))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_charges_add_up_to_a_window_that_is_judged_once() {
        let query = "q_cost_test_small_charges";
        for _ in 0..9 {
            assert_eq!(charge(query, 100, 20), None, "under a second of folding");
        }
        let window = charge(query, 150, 20).expect("a full window");
        assert_eq!(window, Window { fold_ms: 1_050, records: 200 });
        assert_eq!(charge(query, 10, 1), None, "a new window started");
        assert_eq!(charge("q_cost_test_other", 10, 1), None, "queries are metered apart");
    }
}
