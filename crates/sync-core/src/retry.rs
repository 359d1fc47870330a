//! Retry policy as pure functions: how long to wait after a failure.
//!
//! The default is the reference's linear backoff: after the n-th failed
//! attempt of a sync pass, wait n × base (2 s, 4 s, ...), at most
//! `max_retries` attempts per pass, counting again from one in each pass.
//! A server's `Retry-After` overrides the computed delay.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::error::{ErrorKind, ValidationError};

/// How the delay grows with the attempt number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// attempt × base: the reference's behaviour.
    Linear,
    /// A random delay between zero and min(cap, base × 2^(attempt-1))
    /// ("full jitter"), so many clients do not retry in lockstep.
    ExponentialJitter {
        /// The largest delay ever chosen.
        cap: Duration,
    },
}

/// When a failed item should be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The next attempt's time; `None` waits for the next pass, or forever
    /// (until the app saves or retries) after a permanent error.
    pub next_attempt_at: Option<Timestamp>,
    /// The server's `Retry-After` as an absolute time: binding even for a
    /// new pass.
    pub not_before: Option<Timestamp>,
}

/// How often and how long to wait between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: NonZeroU32,
    base_delay: Duration,
    backoff: Backoff,
    max_retry_after: Duration,
}

/// The longest `Retry-After` honoured by default: one hour.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl Default for RetryPolicy {
    /// 3 attempts per pass, linear backoff with a 2 s base.
    fn default() -> Self {
        Self {
            max_retries: NonZeroU32::MIN.saturating_add(2),
            base_delay: Duration::from_secs(2),
            backoff: Backoff::Linear,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }
}

impl RetryPolicy {
    /// A policy of at most `max_retries` attempts per pass.
    ///
    /// # Errors
    /// [`ValidationError::ZeroMaxRetries`] when `max_retries` is 0.
    pub fn new(max_retries: u32, base_delay: Duration, backoff: Backoff) -> Result<Self, ValidationError> {
        let max_retries = NonZeroU32::new(max_retries).ok_or(ValidationError::ZeroMaxRetries)?;
        Ok(Self {
            max_retries,
            base_delay,
            backoff,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        })
    }

    /// Caps a server's `Retry-After`, so a misconfigured server (or a date
    /// far in the future) cannot stall an item for days. Default 1 hour.
    #[must_use]
    pub fn with_max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// The cap on a server's `Retry-After`.
    #[must_use]
    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// Attempts per item per pass. Default 3.
    #[must_use]
    pub fn max_retries(&self) -> u32 {
        self.max_retries.get()
    }

    /// The base of the backoff. Default 2 s.
    #[must_use]
    pub fn base_delay(&self) -> Duration {
        self.base_delay
    }

    /// The growth of the delay. Default [`Backoff::Linear`].
    #[must_use]
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The longest backoff any failure sets (jitter at its most), without
    /// a server's `Retry-After`.
    #[must_use]
    pub fn longest_backoff(&self) -> Duration {
        let attempt = self.max_retries();
        match self.backoff {
            Backoff::Linear => self.base_delay.saturating_mul(attempt),
            Backoff::ExponentialJitter { cap } => {
                let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
                self.base_delay.saturating_mul(factor).min(cap)
            }
        }
    }

    /// The longest any failure makes an item wait: the longest backoff or
    /// the cap on a server's `Retry-After`, whichever is longer.
    #[must_use]
    pub fn longest_wait(&self) -> Duration {
        self.longest_backoff().max(self.max_retry_after)
    }

    /// The delay after the `attempt`-th failure of a pass (1-based).
    ///
    /// `random` is any uniformly random number; only the jittered backoff
    /// uses it, so callers that want determinism pass a seeded value.
    #[must_use]
    pub fn backoff_delay(&self, attempt: u32, random: u64) -> Duration {
        let attempt = attempt.max(1);
        match self.backoff {
            Backoff::Linear => self.base_delay.saturating_mul(attempt),
            Backoff::ExponentialJitter { cap } => {
                let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
                let ceiling = self.base_delay.saturating_mul(factor).min(cap);
                let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
                Duration::from_millis(random % ceiling_ms.saturating_add(1))
            }
        }
    }

    /// Schedules the next attempt after the `attempts_in_pass`-th failure of
    /// this pass with an error of `kind`.
    ///
    /// - Permanent errors park the item: no automatic retry.
    /// - After `max_retries` attempts in this pass, the item waits for the
    ///   next pass (connectivity confirmed, `sync_now`, polling).
    /// - Otherwise it is retried after the backoff delay, or after the
    ///   server's `Retry-After` when one was given.
    #[must_use]
    pub fn after_failure(
        &self,
        attempts_in_pass: u32,
        kind: ErrorKind,
        retry_after: Option<Duration>,
        now: Timestamp,
        random: u64,
    ) -> RetrySchedule {
        let retry_after = retry_after.map(|delay| delay.min(self.max_retry_after));
        let not_before = retry_after.map(|delay| now.saturating_add(delay));
        if !kind.is_retryable() {
            return RetrySchedule {
                next_attempt_at: None,
                not_before: None,
            };
        }
        if attempts_in_pass >= self.max_retries() {
            return RetrySchedule {
                next_attempt_at: None,
                not_before,
            };
        }
        let delay = retry_after.unwrap_or_else(|| self.backoff_delay(attempts_in_pass, random));
        RetrySchedule {
            next_attempt_at: Some(now.saturating_add(delay)),
            not_before,
        }
    }
}

/// The item with its timers brought back within the policy's reach, or
/// `None` when nothing changes: the rule of
/// [`crate::SyncStore::rebase_timers`], for a wall clock moved back.
///
/// No rule sets a `not_before` further than the `Retry-After` cap from
/// now, nor a `next_attempt_at` further than the longest backoff past
/// `not_before` (or now): a timer beyond that was set before the clock
/// moved back. Such a `not_before` is held to the cap from `now`, and such
/// a `next_attempt_at` becomes due at `not_before` (or now). So a clock
/// change never holds an item longer than the longest backoff, or a
/// server's capped `Retry-After`. An item in flight is left alone (its
/// attempt sets its timers when it reports).
#[must_use]
pub fn rebase_timers(
    item: &crate::SyncQueueItem,
    now: Timestamp,
    policy: &RetryPolicy,
) -> Option<crate::SyncQueueItem> {
    if item.in_flight.is_some() {
        return None;
    }
    let not_before_cap = now.saturating_add(policy.max_retry_after());
    let not_before = item.not_before.map(|at| at.min(not_before_cap));
    let floor = not_before.map_or(now, |at| at.max(now));
    let next_attempt_at = item.next_attempt_at.map(|at| {
        if at > floor.saturating_add(policy.longest_backoff()) {
            floor
        } else {
            at
        }
    });
    if (not_before, next_attempt_at) == (item.not_before, item.next_attempt_at) {
        return None;
    }
    let mut item = item.clone();
    item.not_before = not_before;
    item.next_attempt_at = next_attempt_at;
    Some(item)
}

/// Every item [`rebase_timers`] may change has a `next_attempt_at` after
/// this time (stores select candidates with it, through an index).
#[must_use]
pub fn rebase_candidates_after(now: Timestamp, policy: &RetryPolicy) -> Timestamp {
    now.saturating_add(policy.longest_backoff().min(policy.max_retry_after()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_000_000);

    fn at(ms: i64) -> Option<Timestamp> {
        Some(Timestamp::from_millis(NOW.as_millis() + ms))
    }

    fn item_with_timers(
        next_attempt_at: Option<Timestamp>,
        not_before: Option<Timestamp>,
    ) -> crate::SyncQueueItem {
        use crate::coalesce::{QueueWrite, SaveContext, plan_save};
        let change =
            crate::LocalChange::new("tasks", "1", serde_json::json!({}), crate::SyncOperation::Create)
                .unwrap();
        let QueueWrite::Put(mut item) = plan_save(None, false, change, SaveContext::at(NOW)).queue else {
            unreachable!("a first save queues its change")
        };
        item.next_attempt_at = next_attempt_at;
        item.not_before = not_before;
        item
    }

    #[test]
    fn no_schedule_is_rebased_but_a_clock_moved_back_is() {
        let policy = RetryPolicy::new(3, Duration::from_secs(2), Backoff::Linear)
            .unwrap()
            .with_max_retry_after(Duration::from_secs(3600));
        assert_eq!(policy.longest_backoff(), Duration::from_secs(6));
        assert_eq!(policy.longest_wait(), Duration::from_secs(3600));
        // Every schedule the policy makes is left alone.
        for attempt in 1..=policy.max_retries() {
            for retry_after in [
                None,
                Some(Duration::from_secs(1800)),
                Some(Duration::from_secs(86_400)),
            ] {
                let schedule = policy.after_failure(attempt, ErrorKind::Transient, retry_after, NOW, 7);
                let item = item_with_timers(schedule.next_attempt_at, schedule.not_before);
                assert_eq!(
                    rebase_timers(&item, NOW, &policy),
                    None,
                    "{attempt} {retry_after:?}"
                );
            }
        }
        // The clock moved back 30 minutes: a saved item is due now, not in
        // 30 minutes; a Retry-After keeps its own wait, capped.
        let back = Timestamp::from_millis(NOW.as_millis() - 1_800_000);
        let saved = item_with_timers(Some(NOW), None);
        let rebased = rebase_timers(&saved, back, &policy).unwrap();
        assert_eq!(rebased.next_attempt_at, Some(back));
        let throttled = item_with_timers(at(3_600_000), at(3_600_000));
        let rebased = rebase_timers(&throttled, back, &policy).unwrap();
        let cap = back.saturating_add(Duration::from_secs(3600));
        assert_eq!(
            (rebased.next_attempt_at, rebased.not_before),
            (Some(cap), Some(cap))
        );
        // In flight: left alone.
        let mut flying = saved.clone();
        flying.in_flight = Some(crate::AttemptId::generate());
        assert_eq!(rebase_timers(&flying, back, &policy), None);
        // Candidates: everything the rule changed lies after the bound.
        let bound = rebase_candidates_after(back, &policy);
        assert!(saved.next_attempt_at.unwrap() > bound);
        assert!(throttled.next_attempt_at.unwrap() > bound);
    }

    #[test]
    fn default_is_the_reference_linear_backoff() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_retries(), 3);
        assert_eq!(policy.base_delay(), Duration::from_secs(2));
        assert_eq!(policy.backoff_delay(1, 0), Duration::from_secs(2));
        assert_eq!(policy.backoff_delay(2, 0), Duration::from_secs(4));
        assert_eq!(policy.backoff_delay(3, 99), Duration::from_secs(6));
    }

    #[test]
    fn attempts_per_pass_are_bounded_then_wait_for_the_next_pass() {
        let policy = RetryPolicy::default();
        let first = policy.after_failure(1, ErrorKind::Transient, None, NOW, 0);
        assert_eq!(first.next_attempt_at, at(2_000));
        let second = policy.after_failure(2, ErrorKind::Offline, None, NOW, 0);
        assert_eq!(second.next_attempt_at, at(4_000));
        let third = policy.after_failure(3, ErrorKind::Transient, None, NOW, 0);
        assert_eq!(
            third,
            RetrySchedule {
                next_attempt_at: None,
                not_before: None
            }
        );
    }

    #[test]
    fn permanent_errors_park_even_with_retry_after() {
        let policy = RetryPolicy::default();
        let parked = policy.after_failure(1, ErrorKind::Permanent, Some(Duration::from_secs(9)), NOW, 0);
        assert_eq!(
            parked,
            RetrySchedule {
                next_attempt_at: None,
                not_before: None
            }
        );
    }

    #[test]
    fn retry_after_overrides_the_computed_delay_and_outlives_the_pass() {
        let policy = RetryPolicy::default();
        let delayed = policy.after_failure(1, ErrorKind::Transient, Some(Duration::from_secs(30)), NOW, 0);
        assert_eq!(delayed.next_attempt_at, at(30_000));
        assert_eq!(delayed.not_before, at(30_000));
        let shorter = policy.after_failure(2, ErrorKind::Transient, Some(Duration::from_millis(10)), NOW, 0);
        assert_eq!(shorter.next_attempt_at, at(10));
        let exhausted = policy.after_failure(3, ErrorKind::Transient, Some(Duration::from_secs(5)), NOW, 0);
        assert_eq!(exhausted.next_attempt_at, None);
        assert_eq!(exhausted.not_before, at(5_000));
    }

    #[test]
    fn retry_after_is_capped() {
        let policy = RetryPolicy::default().with_max_retry_after(Duration::from_secs(60));
        assert_eq!(policy.max_retry_after(), Duration::from_secs(60));
        let capped = policy.after_failure(1, ErrorKind::Transient, Some(Duration::from_secs(86_400)), NOW, 0);
        assert_eq!(capped.next_attempt_at, at(60_000));
        assert_eq!(capped.not_before, at(60_000));
    }

    #[test]
    fn conflicts_are_retried() {
        let policy = RetryPolicy::default();
        assert!(
            policy
                .after_failure(1, ErrorKind::Conflict, None, NOW, 0)
                .next_attempt_at
                .is_some()
        );
    }

    #[test]
    fn exponential_jitter_stays_under_a_doubling_ceiling_and_the_cap() {
        let cap = Duration::from_secs(10);
        let policy =
            RetryPolicy::new(20, Duration::from_secs(1), Backoff::ExponentialJitter { cap }).unwrap();
        assert_eq!(
            policy.backoff_delay(3, u64::MAX),
            Duration::from_millis(u64::MAX % 4_001)
        );
        for attempt in 1..=20 {
            let ceiling = Duration::from_secs(1 << (attempt - 1).min(10)).min(cap);
            for random in [0, 1, 999, 123_456_789, u64::MAX] {
                let delay = policy.backoff_delay(attempt, random);
                assert!(delay <= ceiling, "attempt {attempt}: {delay:?} > {ceiling:?}");
            }
        }
        assert_eq!(policy.backoff_delay(40, 7), Duration::from_millis(7));
        assert_eq!(policy.backoff_delay(1, 0), Duration::ZERO);
    }

    #[test]
    fn zero_attempts_is_rejected() {
        assert_eq!(
            RetryPolicy::new(0, Duration::from_secs(1), Backoff::Linear),
            Err(ValidationError::ZeroMaxRetries)
        );
    }
}
