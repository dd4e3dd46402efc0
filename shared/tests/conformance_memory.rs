//! The state store conformance suite against the reference implementation, [`MemoryStore`]:
//! the suite and the reference must agree before adapters are held to either.

use kappa_core::conformance::state_store_conformance;
use kappa_core::ports::MemoryStore;

#[test]
fn memory_store_conforms() {
    let store = MemoryStore::new(8);
    pollster::block_on(state_store_conformance(&store, "conf-", 8));
}

#[test]
fn memory_store_conforms_with_the_default_ring() {
    let store = MemoryStore::default();
    pollster::block_on(state_store_conformance(&store, "default-", 1024));
}
