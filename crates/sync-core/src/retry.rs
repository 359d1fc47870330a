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

    /// The longest any failure makes an item wait: the backoff after the
    /// last attempt of a pass (jitter at its most) or a capped
    /// `Retry-After`, whichever is longer. A timer further ahead than this
    /// can only come from a wall clock moved back since it was set (see
    /// [`timer_is_beyond_any_rule`]).
    #[must_use]
    pub fn longest_wait(&self) -> Duration {
        let attempt = self.max_retries();
        let backoff = match self.backoff {
            Backoff::Linear => self.base_delay.saturating_mul(attempt),
            Backoff::ExponentialJitter { cap } => {
                let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
                self.base_delay.saturating_mul(factor).min(cap)
            }
        };
        backoff.max(self.max_retry_after)
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

/// Whether a timer set for `at` lies further ahead of `now` than any rule
/// of `policy` could have put it: the wall clock moved back since it was
/// set. Such a timer is due now (a `Retry-After` is then held to the
/// policy's cap from now), so a clock change never holds an item longer
/// than [`RetryPolicy::longest_wait`].
#[must_use]
pub fn timer_is_beyond_any_rule(at: Timestamp, now: Timestamp, policy: &RetryPolicy) -> bool {
    at > now.saturating_add(policy.longest_wait())
}

/// The item with its timers brought back within `latest`, or `None` when
/// nothing changes: the rule of [`crate::SyncStore::rebase_timers`]. An item in
/// flight is left alone (its attempt sets its timers when it reports).
#[must_use]
pub fn rebase_timers(
    item: &crate::SyncQueueItem,
    now: Timestamp,
    latest: Timestamp,
) -> Option<crate::SyncQueueItem> {
    if item.in_flight.is_some() {
        return None;
    }
    let next_beyond = item.next_attempt_at.is_some_and(|at| at > latest);
    let not_before_beyond = item.not_before.is_some_and(|at| at > latest);
    if !next_beyond && !not_before_beyond {
        return None;
    }
    let mut item = item.clone();
    if not_before_beyond {
        item.not_before = Some(latest);
    }
    if next_beyond {
        // Never earlier than `not_before` (the item's invariant).
        item.next_attempt_at = Some(item.not_before.map_or(now, |at| at.max(now)));
    }
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_000_000);

    fn at(ms: i64) -> Option<Timestamp> {
        Some(Timestamp::from_millis(NOW.as_millis() + ms))
    }

    #[test]
    fn the_longest_wait_bounds_every_schedule_and_flags_a_clock_moved_back() {
        let linear = RetryPolicy::new(3, Duration::from_secs(2), Backoff::Linear)
            .unwrap()
            .with_max_retry_after(Duration::from_secs(5));
        assert_eq!(linear.longest_wait(), Duration::from_secs(6));
        let jitter = RetryPolicy::new(
            4,
            Duration::from_secs(1),
            Backoff::ExponentialJitter {
                cap: Duration::from_secs(60),
            },
        )
        .unwrap()
        .with_max_retry_after(Duration::from_secs(1));
        assert_eq!(jitter.longest_wait(), Duration::from_secs(8));
        for policy in [&linear, &jitter] {
            for attempt in 1..policy.max_retries() {
                for random in [0, 7, u64::MAX / 3, u64::MAX] {
                    let schedule = policy.after_failure(attempt, ErrorKind::Transient, None, NOW, random);
                    let at = schedule.next_attempt_at.unwrap();
                    assert!(!timer_is_beyond_any_rule(at, NOW, policy), "{attempt} {random}");
                }
            }
            let throttled =
                policy.after_failure(1, ErrorKind::Transient, Some(Duration::from_secs(86_400)), NOW, 0);
            assert!(!timer_is_beyond_any_rule(
                throttled.not_before.unwrap(),
                NOW,
                policy
            ));
        }
        // A timer set before the clock moved back a day.
        let moved_back = Timestamp::from_millis(NOW.as_millis() - 86_400_000);
        assert!(timer_is_beyond_any_rule(NOW, moved_back, &linear));
        assert!(!timer_is_beyond_any_rule(NOW, NOW, &linear));
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
