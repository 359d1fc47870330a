//! A wall clock that follows tokio's time, so tests with paused time see
//! timestamps move exactly as far as their timers do.

use std::fmt;

use sync_core::{Clock, Timestamp};
use tokio::time::Instant;

/// The system time at creation plus tokio's elapsed time since.
pub struct TokioClock {
    start: Timestamp,
    started: Instant,
}

impl TokioClock {
    /// A clock starting at the current wall-clock time.
    #[must_use]
    pub fn new() -> Self {
        Self {
            start: Timestamp::now(),
            started: Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TokioClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioClock").field("start", &self.start).finish()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.start.saturating_add(self.started.elapsed())
    }
}
