//! Real time for the handlers (kept out of `kappa-core`, which takes time as an argument).

use async_trait::async_trait;
use kappa_core::ports::{Clock, Timer};

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods, reason = "the one place the actions read the wall clock")]
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// Tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioTimer;

#[async_trait]
impl Timer for TokioTimer {
    async fn sleep(&self, ms: u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }

    /// tokio's own yield: the task goes to the back of the queue and the worker polls its I/O
    /// driver first (a plain self-wake would be polled again at once, and sockets would wait
    /// for the driver's turn, every 61 polls).
    async fn yield_now(&self) {
        tokio::task::yield_now().await;
    }
}
