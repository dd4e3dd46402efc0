//! Compiled plans of the queries this process has run.
//!
//! A query record never changes once registered, so its plan (parsed, validated, compiled,
//! canonicalised for its id) is the same on every invocation: a warm container, or `kappa dev`
//! running every invocation in one process, compiles each query once instead of once per
//! batch (under live load that was a few percent of `kappa dev`'s CPU).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use kappa_core::ports::QueryRecord;
use kappa_core::{Limits, Plan, ScanGroup};

use crate::error::ActionError;

/// Plans kept at most; past it the cache starts over (a process serving more distinct queries
/// than this compiles some of them again, nothing worse).
const MAX_PLANS: usize = 1024;

/// The compiled plans, by query body, with the limits they were compiled under.
type Plans = HashMap<String, (Limits, Arc<Plan>)>;

static PLANS: LazyLock<Mutex<Plans>> = LazyLock::new(Mutex::default);

fn plans() -> MutexGuard<'static, Plans> {
    PLANS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The plan of `query` under `limits`, compiled on first use.
pub fn plan_of(query: &QueryRecord, limits: &Limits) -> Result<Arc<Plan>, ActionError> {
    if let Some((l, plan)) = plans().get(&query.body)
        && l == limits
    {
        return Ok(plan.clone());
    }
    // Compiled outside the lock; two callers racing on a new body both compile, one plan stays.
    let body =
        serde_json::from_str(&query.body).map_err(|e| ActionError::BadEvent(e.to_string()))?;
    let plan = Arc::new(Plan::parse(&body, limits)?);
    let mut plans = plans();
    if plans.len() >= MAX_PLANS {
        plans.clear();
    }
    plans.insert(query.body.clone(), (limits.clone(), plan.clone()));
    Ok(plan)
}

/// Scan groups kept at most (each a live group's or a convoy's member list).
const MAX_SCANS: usize = 64;

/// Built scan groups, by a hash of their members' plan ids, with those ids.
type Scans = HashMap<u64, (Vec<String>, Arc<ScanGroup>)>;

static SCANS: LazyLock<Mutex<Scans>> = LazyLock::new(Mutex::default);

/// The [`ScanGroup`] of `plans` (in this order), built on first use: a live group is woken
/// every few milliseconds with the same members, and building its multi-pattern pre-filter
/// each time cost more than scanning a wake-up's records.
pub fn scan_group_of(plans: &[&Plan]) -> Arc<ScanGroup> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for plan in plans {
        plan.id().hash(&mut hasher);
    }
    let key = hasher.finish();
    let same = |ids: &[String]| {
        ids.len() == plans.len() && ids.iter().zip(plans).all(|(id, p)| id == p.id())
    };
    let scans = SCANS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((ids, scan)) = scans.get(&key)
        && same(ids)
    {
        return scan.clone();
    }
    drop(scans);
    let scan = Arc::new(ScanGroup::new(plans));
    let mut scans = SCANS.lock().unwrap_or_else(|e| e.into_inner());
    if scans.len() >= MAX_SCANS {
        scans.clear();
    }
    let ids = plans.iter().map(|p| p.id().to_string()).collect();
    scans.insert(key, (ids, scan.clone()));
    scan
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::Topic;
    use kappa_core::ports::Segment;

    /// The tests share the process's cache, and one of them empties it.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn record(body: &str) -> QueryRecord {
        QueryRecord {
            id: "q_x".into(),
            body: body.into(),
            topic: Topic::new("t").expect("a valid name"),
            segments: vec![Segment { partition: 0, start: 0, end: None }],
            created_ms: 0,
        }
    }

    #[test]
    fn a_plan_is_compiled_once_per_body_and_limits() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let body = r#"{"topic":"t","aggs":{"n":{"sum":{"field":"plans-test"}}}}"#;
        let limits = Limits::default();
        let a = plan_of(&record(body), &limits).expect("valid");
        let b = plan_of(&record(body), &limits).expect("valid");
        assert!(Arc::ptr_eq(&a, &b), "the second call reuses the first plan");
        let tight = Limits { max_depth: 8, ..Limits::default() };
        let c = plan_of(&record(body), &tight).expect("valid");
        assert!(!Arc::ptr_eq(&a, &c), "other limits compile again");
        let other = r#"{"topic":"t","aggs":{"n":{"max":{"field":"plans-test"}}}}"#;
        assert_ne!(plan_of(&record(other), &limits).expect("valid").id(), a.id());
        assert!(plan_of(&record("{not json"), &limits).is_err(), "a bad body is an error");
    }

    #[test]
    fn a_scan_group_is_built_once_per_member_list() {
        let body = |f: &str| format!(r#"{{"topic":"t","query":{{"match":{{"{f}":"x"}}}}}}"#);
        let limits = Limits::default();
        let a = plan_of(&record(&body("scan-a")), &limits).expect("valid");
        let b = plan_of(&record(&body("scan-b")), &limits).expect("valid");
        let ab = scan_group_of(&[&a, &b]);
        assert!(Arc::ptr_eq(&ab, &scan_group_of(&[&a, &b])), "the same members: the same group");
        let ba = scan_group_of(&[&b, &a]);
        assert!(!Arc::ptr_eq(&ab, &ba), "another order is another group (members are slots)");
        assert_eq!(ba.len(), 2);
    }

    #[test]
    fn the_cache_is_bounded() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let body = |i: usize| {
            format!(r#"{{"topic":"bound-{i}","aggs":{{"n":{{"sum":{{"field":"n"}}}}}}}}"#)
        };
        let first = plan_of(&record(&body(0)), &Limits::default()).expect("valid");
        for i in 1..=MAX_PLANS {
            plan_of(&record(&body(i)), &Limits::default()).expect("valid");
            assert!(plans().len() <= MAX_PLANS, "never more than {MAX_PLANS} plans");
        }
        let again = plan_of(&record(&body(0)), &Limits::default()).expect("valid");
        assert!(!Arc::ptr_eq(&first, &again), "a plan dropped when the cache started over");
        assert_eq!(first.id(), again.id(), "and compiled again to the same plan");
    }
}
