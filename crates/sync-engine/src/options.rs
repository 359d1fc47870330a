//! [`OfflineSyncOptions`]: retries, auto-sync and concurrency.

use std::time::Duration;

use sync_core::{Backoff, RetryPolicy, ValidationError};

/// How the engine syncs; every setting has a default.
///
/// Set them by chained methods (each names its default):
///
/// ```
/// use std::time::Duration;
/// use sync_engine::OfflineSyncOptions;
///
/// let options = OfflineSyncOptions::default()
///     .concurrency(4)
///     .retry_base_delay(Duration::from_millis(500))
///     .connectivity_check_interval(None);
/// assert_eq!(options.concurrency, 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OfflineSyncOptions {
    /// Attempts per item per sync pass. Default 3.
    pub max_retries: u32,
    /// The backoff base: attempt × base by default. Default 2 s.
    pub retry_base_delay: Duration,
    /// How the delay grows. Default [`Backoff::Linear`].
    pub backoff: Backoff,
    /// The longest server `Retry-After` honoured; a longer one (or a date
    /// far ahead) is cut to this. Default 1 hour.
    pub max_retry_after: Duration,
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
    /// Items of different records sent at once. Default 8: on a link with
    /// 50 ms of latency that drains about 7.6 times as fast as one at a time
    /// (0.96 of the physical limit, `cargo xtask bench wan`), while changes
    /// to one record stay in order and records declared as referring to
    /// each other (`reference`) reach the server parent first. Records
    /// without declared references may then arrive in any order: set 1 for
    /// the reference package's strict queue order across records.
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
    /// While auto-sync runs, pull the declared entities this often (a sync
    /// run also pulls when connectivity returns and on `sync_now`). `None`:
    /// only then. Default 60 s.
    pub pull_interval: Option<Duration>,
    /// The most changes asked for in one pull request (the server may
    /// send fewer). Default 500.
    pub pull_page_size: usize,
}

impl Default for OfflineSyncOptions {
    fn default() -> Self {
        Self {
            max_retries: 3,
            retry_base_delay: Duration::from_secs(2),
            backoff: Backoff::Linear,
            max_retry_after: sync_core::retry::DEFAULT_MAX_RETRY_AFTER,
            sync_after_save: true,
            connectivity_check_interval: Some(Duration::from_secs(30)),
            connectivity_probe_min_interval_while_online: Duration::from_secs(5),
            concurrency: 8,
            attempt_timeout: Duration::from_secs(60),
            connectivity_probe_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(10),
            pull_interval: Some(Duration::from_secs(60)),
            pull_page_size: 500,
        }
    }
}

impl OfflineSyncOptions {
    /// The retry policy these options describe.
    ///
    /// # Errors
    /// [`ValidationError::ZeroMaxRetries`] when `max_retries` is 0.
    pub fn retry_policy(&self) -> Result<RetryPolicy, ValidationError> {
        Ok(
            RetryPolicy::new(self.max_retries, self.retry_base_delay, self.backoff)?
                .with_max_retry_after(self.max_retry_after),
        )
    }

    /// Attempts per item per sync pass (at least 1: the engine refuses 0).
    /// Default 3.
    #[must_use]
    pub fn max_retries(mut self, attempts: u32) -> Self {
        self.max_retries = attempts;
        self
    }

    /// The backoff base. Default 2 s.
    #[must_use]
    pub fn retry_base_delay(mut self, delay: Duration) -> Self {
        self.retry_base_delay = delay;
        self
    }

    /// How the delay grows. Default [`Backoff::Linear`].
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest server `Retry-After` honoured. Default 1 hour.
    #[must_use]
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// Whether every save starts a sync run in the background. Default
    /// `true`.
    #[must_use]
    pub fn sync_after_save(mut self, enabled: bool) -> Self {
        self.sync_after_save = enabled;
        self
    }

    /// How often auto-sync probes connectivity besides the monitor's
    /// stream (`None`: the stream only; offline backoff up to 30 s still
    /// applies). Default 30 s.
    #[must_use]
    pub fn connectivity_check_interval(mut self, interval: Option<Duration>) -> Self {
        self.connectivity_check_interval = interval;
        self
    }

    /// How long a confirmed "online" is reused before probing again.
    /// Default 5 s.
    #[must_use]
    pub fn connectivity_probe_min_interval_while_online(mut self, interval: Duration) -> Self {
        self.connectivity_probe_min_interval_while_online = interval;
        self
    }

    /// Items of different records sent at once (at least 1: the engine
    /// refuses 0). Default 8 (see the field).
    #[must_use]
    pub fn concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests;
        self
    }

    /// The longest one attempt may take. Default 60 s.
    #[must_use]
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// The longest a connectivity probe may take. Default 30 s.
    #[must_use]
    pub fn connectivity_probe_timeout(mut self, timeout: Duration) -> Self {
        self.connectivity_probe_timeout = timeout;
        self
    }

    /// How long `close` lets a run finish its requests. Default 10 s.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// How often auto-sync pulls; `None`: only on `sync_now`, `pull_now`
    /// and when connectivity returns. Default 60 s.
    #[must_use]
    pub fn pull_interval(mut self, interval: Option<Duration>) -> Self {
        self.pull_interval = interval;
        self
    }

    /// The most changes asked for in one pull request. Default 500.
    #[must_use]
    pub fn pull_page_size(mut self, changes: usize) -> Self {
        self.pull_page_size = changes;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_a_chained_setter_that_sets_only_it() {
        let second = Duration::from_secs(1);
        let chained = OfflineSyncOptions::default()
            .max_retries(5)
            .retry_base_delay(second)
            .backoff(Backoff::ExponentialJitter { cap: second * 60 })
            .max_retry_after(second * 120)
            .sync_after_save(false)
            .connectivity_check_interval(None)
            .connectivity_probe_min_interval_while_online(second * 7)
            .concurrency(4)
            .attempt_timeout(second * 9)
            .connectivity_probe_timeout(second * 11)
            .close_timeout(second * 13)
            .pull_interval(None)
            .pull_page_size(17);
        let by_field = OfflineSyncOptions {
            max_retries: 5,
            retry_base_delay: second,
            backoff: Backoff::ExponentialJitter { cap: second * 60 },
            max_retry_after: second * 120,
            sync_after_save: false,
            connectivity_check_interval: None,
            connectivity_probe_min_interval_while_online: second * 7,
            concurrency: 4,
            attempt_timeout: second * 9,
            connectivity_probe_timeout: second * 11,
            close_timeout: second * 13,
            pull_interval: None,
            pull_page_size: 17,
        };
        assert_eq!(chained, by_field);
        // Every field moved away from its default: none was forgotten.
        let default = OfflineSyncOptions::default();
        let OfflineSyncOptions {
            max_retries,
            retry_base_delay,
            backoff,
            max_retry_after,
            sync_after_save,
            connectivity_check_interval,
            connectivity_probe_min_interval_while_online,
            concurrency,
            attempt_timeout,
            connectivity_probe_timeout,
            close_timeout,
            pull_interval,
            pull_page_size,
        } = &chained;
        assert_ne!(*pull_interval, default.pull_interval);
        assert_ne!(*pull_page_size, default.pull_page_size);
        assert_ne!(*max_retries, default.max_retries);
        assert_ne!(*retry_base_delay, default.retry_base_delay);
        assert_ne!(*backoff, default.backoff);
        assert_ne!(*max_retry_after, default.max_retry_after);
        assert_ne!(*sync_after_save, default.sync_after_save);
        assert_ne!(*connectivity_check_interval, default.connectivity_check_interval);
        assert_ne!(
            *connectivity_probe_min_interval_while_online,
            default.connectivity_probe_min_interval_while_online
        );
        assert_ne!(*concurrency, default.concurrency);
        assert_ne!(*attempt_timeout, default.attempt_timeout);
        assert_ne!(*connectivity_probe_timeout, default.connectivity_probe_timeout);
        assert_ne!(*close_timeout, default.close_timeout);
        // The Retry-After cap reaches the policy.
        assert_eq!(chained.retry_policy().unwrap().max_retry_after(), second * 120);
    }
}
