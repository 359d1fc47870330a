//! [`Badge`]: the sync state shown next to each task.

use sync_facade::{SyncQueueItem, SyncStatus};

/// Where a task's last local change stands, as the list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Badge {
    /// Saved locally, waiting to be sent (the server is down, or the
    /// next run has not started yet).
    Pending,
    /// A request carrying it is out.
    Syncing,
    /// The server has it (or it came from the server and was never
    /// changed here).
    Synced,
    /// The last attempt failed; the engine retries it on its own.
    Failed,
    /// Failed for good (a permanent error): it waits for a new edit or a
    /// retry (the `r` key), never for a timer.
    Parked,
}

impl Badge {
    /// The badge of a record whose queue item is `item` (`None`: nothing
    /// waits to be sent, so the record is as the server has it).
    #[must_use]
    pub fn of(item: Option<&SyncQueueItem>) -> Self {
        match item {
            None => Self::Synced,
            Some(item) => Self::from_status(item.status, item.is_parked()),
        }
    }

    /// The badge of a queue status; `parked` tells a parked failure
    /// ([`SyncQueueItem::is_parked`]) from one the engine retries.
    #[must_use]
    pub fn from_status(status: SyncStatus, parked: bool) -> Self {
        match status {
            SyncStatus::Pending => Self::Pending,
            SyncStatus::Syncing => Self::Syncing,
            SyncStatus::Synced => Self::Synced,
            SyncStatus::Failed if parked => Self::Parked,
            SyncStatus::Failed => Self::Failed,
        }
    }

    /// The word shown on screen.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Syncing => "syncing",
            Self::Synced => "synced",
            Self::Failed => "failed",
            Self::Parked => "parked",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_own_label_and_parked_is_a_failure_that_waits() {
        let labels: Vec<&str> = [
            Badge::from_status(SyncStatus::Pending, false),
            Badge::from_status(SyncStatus::Syncing, false),
            Badge::from_status(SyncStatus::Synced, false),
            Badge::from_status(SyncStatus::Failed, false),
            Badge::from_status(SyncStatus::Failed, true),
        ]
        .into_iter()
        .map(Badge::label)
        .collect();
        assert_eq!(labels, ["pending", "syncing", "synced", "failed", "parked"]);
        assert_eq!(Badge::of(None), Badge::Synced);
    }
}
