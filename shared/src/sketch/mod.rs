//! Bounded mergeable sketches for approximate aggregations.
pub mod hll;
pub mod tdigest;

/// The sketches' tests' random numbers.
#[cfg(test)]
pub(crate) mod test_rng {
    /// Tiny deterministic PRNG (SplitMix64) so the tests need no `rand`.
    pub(crate) struct TestRng(u64);

    impl TestRng {
        pub(crate) fn seed_from_u64(seed: u64) -> Self {
            Self(seed)
        }

        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// Uniform in `[0, 1)`.
        pub(crate) fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Uniform in `0..n` (`0` when `n == 0`).
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            if n == 0 { 0 } else { self.next_u64() % n }
        }

        pub(crate) fn chance(&mut self, p: f64) -> bool {
            self.unit() < p
        }
    }
}
