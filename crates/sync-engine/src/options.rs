//! [`OfflineSyncOptions`]: retries, auto-sync and concurrency.

use std::time::Duration;

use sync_core::{Backoff, RetryPolicy, ValidationError};

/// How the engine syncs; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OfflineSyncOptions {
    /// Attempts per item per sync pass. Default 3.
    pub max_retries: u32,
    /// The backoff base: attempt × base by default. Default 2 s.
    pub retry_base_delay: Duration,
    /// How the delay grows. Default [`Backoff::Linear`].
    pub backoff: Backoff,
    /// Start a sync pass in the background after every save. Default `true`.
    pub sync_after_save: bool,
    /// While auto-sync runs, also probe connectivity this often (the
    /// monitor's change stream alone can miss transitions). While offline,
    /// probes back off from 1 s, doubling up to this interval. `None`
    /// relies on the stream only (while offline, runs still probe, backing
    /// off up to 30 s). Default 30 s.
    pub connectivity_check_interval: Option<Duration>,
    /// While online, full probes are not repeated more often than this; a
    /// fresher "online" is reused before each request. Default 5 s.
    pub connectivity_probe_min_interval_while_online: Duration,
    /// Items of different records sent at once. Default 1, which keeps the
    /// reference's strict queue order.
    pub concurrency: usize,
    /// The longest one attempt may take, its requests and the conflict
    /// resolver included. An attempt still going then fails as a transient,
    /// possibly applied error (so a hung adapter or resolver can never hang
    /// `sync_now` or `close`). Default 60 s.
    pub attempt_timeout: Duration,
    /// The longest a connectivity probe may take; a probe still going then
    /// counts as offline. Default 30 s.
    pub connectivity_probe_timeout: Duration,
    /// How long `close` lets a run finish the requests it has out and
    /// record their outcomes before it stops the run (whose items are then
    /// recovered, as possibly applied, by the next engine over the store).
    /// Default 10 s.
    pub close_timeout: Duration,
}

impl Default for OfflineSyncOptions {
    fn default() -> Self {
        Self {
            max_retries: 3,
            retry_base_delay: Duration::from_secs(2),
            backoff: Backoff::Linear,
            sync_after_save: true,
            connectivity_check_interval: Some(Duration::from_secs(30)),
            connectivity_probe_min_interval_while_online: Duration::from_secs(5),
            concurrency: 1,
            attempt_timeout: Duration::from_secs(60),
            connectivity_probe_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(10),
        }
    }
}

impl OfflineSyncOptions {
    /// The retry policy these options describe.
    ///
    /// # Errors
    /// [`ValidationError::ZeroMaxRetries`] when `max_retries` is 0.
    pub fn retry_policy(&self) -> Result<RetryPolicy, ValidationError> {
        RetryPolicy::new(self.max_retries, self.retry_base_delay, self.backoff)
    }
}
