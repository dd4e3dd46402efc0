//! A host-installed source of time zones (the WASM host installs JavaScript's `Intl`). Alone in
//! its own test binary: a source is installed once per process, for every test in it.

use std::sync::Arc;

use kappa_core::date::{ProbedZone, TimeZone, ZoneRules, ZoneSource, install_zone_source};

struct PlusThree;

impl ZoneSource for PlusThree {
    fn zone(&self, name: &str) -> Option<Arc<dyn ZoneRules>> {
        (name == "Test/Plus_Three").then(|| Arc::new(ProbedZone::new(|_| 3 * 3600)) as _)
    }
}

#[test]
fn an_installed_source_resolves_names_in_place_of_the_database() {
    assert!(TimeZone::parse("Europe/London").is_ok(), "the compiled-in database before");
    assert!(TimeZone::parse("Test/Plus_Three").is_err());
    assert!(install_zone_source(Box::new(PlusThree)));
    assert!(!install_zone_source(Box::new(PlusThree)), "once per process");
    let zone = TimeZone::parse("Test/Plus_Three").expect("from the source");
    assert_eq!(zone.offset_seconds_at(0), 3 * 3600);
    assert_eq!(zone.spec(), "Test/Plus_Three");
    let e = TimeZone::parse("Europe/London").expect_err("the source answers alone");
    assert!(e.0.contains("unknown time_zone [Europe/London]"), "{}", e.0);
}
