//! The values of the stamp field: what the server writes into a record on
//! every create, update, patch and soft delete when
//! [`crate::ServerConfig::stamp_field`] is set.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, bumped past the last value handed
/// out, so that values only grow; or, while pinned, one fixed value for
/// every write (ties, for tests).
#[derive(Debug, Default)]
pub(crate) struct StampClock {
    last: u64,
    pinned: Option<u64>,
}

impl StampClock {
    /// The value for the next write.
    pub(crate) fn next(&mut self) -> u64 {
        let value = match self.pinned {
            Some(value) => value,
            None => now_millis().max(self.last.saturating_add(1)),
        };
        self.last = self.last.max(value);
        value
    }

    /// From now on every write gets `value` (`None`: the clock again,
    /// past every value handed out so far).
    pub(crate) fn pin(&mut self, value: Option<u64>) {
        self.pinned = value;
    }

    /// Makes the next values larger than `value` (one found in the data
    /// file at start).
    pub(crate) fn observe(&mut self, value: u64) {
        self.last = self.last.max(value);
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX / 2))
        // A clock before 1970: the bump alone keeps the values growing.
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::StampClock;

    #[test]
    fn values_grow_strictly_unless_pinned() {
        let mut clock = StampClock::default();
        let first = clock.next();
        let second = clock.next();
        assert!(second > first);
        clock.observe(u64::MAX / 4);
        assert_eq!(clock.next(), u64::MAX / 4 + 1);
        clock.pin(Some(7));
        assert_eq!((clock.next(), clock.next()), (7, 7));
        clock.pin(None);
        assert_eq!(clock.next(), u64::MAX / 4 + 2);
    }
}
