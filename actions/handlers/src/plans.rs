//! Compiled plans of the queries this process has run.
//!
//! A query record never changes once registered, so its plan (parsed, validated, compiled,
//! canonicalised for its id) is the same on every invocation: a warm container, or `kappa dev`
//! running every invocation in one process, compiles each query once instead of once per
//! batch (under live load that was a few percent of `kappa dev`'s CPU).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kappa_core::ports::QueryRecord;
use kappa_core::{Limits, Plan};

use crate::error::ActionError;

/// Plans kept at most; past it the cache starts over (a process serving more distinct queries
/// than this compiles some of them again, nothing worse).
const MAX_PLANS: usize = 1024;

/// The compiled plans, by query body, with the limits they were compiled under.
type Plans = HashMap<String, (Limits, Arc<Plan>)>;

static PLANS: Mutex<Option<Plans>> = Mutex::new(None);

/// The plan of `query` under `limits`, compiled on first use.
pub fn plan_of(query: &QueryRecord, limits: &Limits) -> Result<Arc<Plan>, ActionError> {
    let lock = || PLANS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((l, plan)) = lock().get_or_insert_with(HashMap::new).get(&query.body)
        && l == limits
    {
        return Ok(plan.clone());
    }
    let body =
        serde_json::from_str(&query.body).map_err(|e| ActionError::BadEvent(e.to_string()))?;
    let plan = Arc::new(Plan::parse(&body, limits)?);
    let mut plans = lock();
    let plans = plans.get_or_insert_with(HashMap::new);
    if plans.len() >= MAX_PLANS {
        plans.clear();
    }
    plans.insert(query.body.clone(), (limits.clone(), plan.clone()));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::ports::Segment;

    fn record(body: &str) -> QueryRecord {
        QueryRecord {
            id: "q_x".into(),
            body: body.into(),
            topic: "t".into(),
            segments: vec![Segment { partition: 0, start: 0, end: None }],
            created_ms: 0,
        }
    }

    #[test]
    fn a_plan_is_compiled_once_per_body_and_limits() {
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
}
