//! Short human texts for a terminal: sizes, ages, an item's state.

use std::time::Duration;

use sync_core::{SyncQueueItem, SyncStatus, Timestamp};

/// `1.5 MiB`, `12.0 KiB`, `512 B`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    // Display only: the rounding of a u64 to f64 does not matter here.
    #[allow(clippy::cast_precision_loss)]
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `3d 4h`, `2h 05m`, `4m 10s`, `12s`.
pub(crate) fn age(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (days, hours, minutes, seconds) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m {seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

/// How long ago `then` was, as of `now`.
pub(crate) fn ago(then: Timestamp, now: Timestamp) -> String {
    format!("{} ago", age(now.saturating_duration_since(then)))
}

/// The status, with what the bare status hides: parked, or in flight.
pub(crate) fn state(item: &SyncQueueItem) -> String {
    if item.is_parked() {
        "failed (parked)".to_owned()
    } else if item.in_flight.is_some() {
        format!("{} (in flight)", item.status)
    } else {
        item.status.to_string()
    }
}

/// When the item is next tried: a time, or why there is none.
pub(crate) fn next_attempt(item: &SyncQueueItem) -> String {
    if item.is_parked() {
        return "parked: retry or new change".to_owned();
    }
    match (item.status, item.in_flight, item.next_attempt_at) {
        (SyncStatus::Synced, _, _) => "-".to_owned(),
        (_, Some(_), _) => "attempt out".to_owned(),
        (_, None, Some(at)) => {
            let at = item.not_before.map_or(at, |not_before| at.max(not_before));
            at.to_string()
        }
        (_, None, None) => "next sync pass".to_owned(),
    }
}

/// The last error with its kind and HTTP status, or `-`.
pub(crate) fn last_error(item: &SyncQueueItem) -> String {
    match &item.last_error {
        None => "-".to_owned(),
        Some(message) => {
            let kind = item
                .last_error_kind
                .map_or_else(String::new, |kind| kind.to_string());
            let status = item
                .last_error_http_status
                .map_or_else(String::new, |status| format!(" {status}"));
            if kind.is_empty() && status.is_empty() {
                message.clone()
            } else {
                format!("[{kind}{status}] {message}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(4096), "4.0 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(age(Duration::from_secs(12)), "12s");
        assert_eq!(age(Duration::from_secs(250)), "4m 10s");
        assert_eq!(age(Duration::from_secs(7500)), "2h 05m");
        assert_eq!(age(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d 4h");
    }
}
