//! [`Link`]: what the engine believes about the network, and when it may
//! probe again.
//!
//! Probing costs a request (four HTTPS requests with some monitors), so it
//! is rationed both ways: a recent "online" is reused for a while, and
//! after a failed probe the next one waits, the wait doubling up to a cap.
//! Without the second rule a link that dropped without a monitor event
//! made every run, and auto-sync's timers, probe back to back.

use std::sync::Mutex;
use std::time::Duration;

use sync_core::ConnectivityMonitor;
use tokio::time::Instant;

use crate::sends::{CatchPanic, Panicked};
use crate::shared::lock;

/// The first wait after a failed probe; it doubles after each further
/// failure, up to the cap given to [`Link::new`].
const FIRST_OFFLINE_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
enum Belief {
    /// Nothing probed yet.
    Unknown,
    /// Confirmed reachable at this instant.
    Online(Instant),
    /// A probe failed at `since`; the next may run after `backoff`.
    Offline { since: Instant, backoff: Duration },
}

/// The engine's belief about the network, shared by runs and auto-sync.
#[derive(Debug)]
pub(crate) struct Link {
    belief: Mutex<Belief>,
    /// A confirmation younger than this is reused without probing.
    reuse_online_for: Duration,
    /// The longest wait between probes while offline.
    max_offline_backoff: Duration,
    /// A probe taking longer than this counts as offline.
    probe_timeout: Duration,
}

impl Link {
    pub(crate) fn new(
        reuse_online_for: Duration,
        max_offline_backoff: Duration,
        probe_timeout: Duration,
    ) -> Self {
        Self {
            belief: Mutex::new(Belief::Unknown),
            reuse_online_for,
            max_offline_backoff: max_offline_backoff.max(FIRST_OFFLINE_BACKOFF),
            probe_timeout,
        }
    }

    /// Whether the network is reachable. Without `force`, a fresh "online"
    /// is reused, and while offline no probe runs before the backoff
    /// ends (the answer is then "offline"); `force` always probes.
    pub(crate) async fn is_online(&self, monitor: &dyn ConnectivityMonitor, force: bool) -> bool {
        if !force {
            match *lock(&self.belief) {
                Belief::Online(at) if at.elapsed() < self.reuse_online_for => return true,
                Belief::Offline { since, backoff } if since.elapsed() < backoff => return false,
                _ => {}
            }
        }
        self.probe(monitor).await
    }

    /// Probes now, bounded by the probe timeout (a monitor is app code and
    /// may hang or panic: either counts as offline), and records the answer.
    pub(crate) async fn probe(&self, monitor: &dyn ConnectivityMonitor) -> bool {
        let probe = CatchPanic::new(monitor.is_connected());
        let online = match tokio::time::timeout(self.probe_timeout, probe).await {
            Ok(Ok(online)) => online,
            Ok(Err(Panicked)) => {
                tracing::error!("the connectivity monitor panicked: counted as offline");
                false
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.probe_timeout, "connectivity probe timed out: counted as offline");
                false
            }
        };
        if online {
            self.mark_online();
        } else {
            self.mark_offline();
        }
        online
    }

    /// The monitor reported the network (or a probe found it).
    pub(crate) fn mark_online(&self) {
        *lock(&self.belief) = Belief::Online(Instant::now());
    }

    /// The monitor reported no network (or a probe failed): the next probe
    /// waits, longer after each failure in a row.
    pub(crate) fn mark_offline(&self) {
        let mut belief = lock(&self.belief);
        let backoff = match *belief {
            Belief::Offline { backoff, .. } => (backoff * 2).min(self.max_offline_backoff),
            _ => FIRST_OFFLINE_BACKOFF,
        };
        *belief = Belief::Offline {
            since: Instant::now(),
            backoff,
        };
    }

    /// Whether the last word was "offline".
    pub(crate) fn believed_offline(&self) -> bool {
        matches!(*lock(&self.belief), Belief::Offline { .. })
    }

    /// While offline, how long until the next probe may run.
    pub(crate) fn next_probe_in(&self) -> Option<Duration> {
        match *lock(&self.belief) {
            Belief::Offline { since, backoff } => Some(backoff.saturating_sub(since.elapsed())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use async_trait::async_trait;
    use sync_core::BoxStream;

    use super::*;

    #[derive(Default)]
    struct Counting {
        online: AtomicBool,
        probes: AtomicUsize,
    }

    #[async_trait]
    impl ConnectivityMonitor for Counting {
        async fn is_connected(&self) -> bool {
            self.probes.fetch_add(1, Ordering::SeqCst);
            self.online.load(Ordering::SeqCst)
        }
        fn changes(&self) -> BoxStream<bool> {
            Box::pin(tokio_stream::pending())
        }
    }

    struct Panicking;

    #[async_trait]
    impl ConnectivityMonitor for Panicking {
        async fn is_connected(&self) -> bool {
            #[allow(clippy::panic)] // The panic under test.
            if true {
                panic!("a bug in the app's monitor");
            }
            true
        }
        fn changes(&self) -> BoxStream<bool> {
            Box::pin(tokio_stream::pending())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_probe_counts_as_offline() {
        let link = Link::new(
            Duration::from_secs(5),
            Duration::from_secs(8),
            Duration::from_secs(1),
        );
        assert!(!link.is_online(&Panicking, true).await);
        assert!(link.believed_offline());
    }

    #[tokio::test(start_paused = true)]
    async fn probes_back_off_while_offline_up_to_the_cap() {
        let monitor = Counting::default();
        let link = Link::new(
            Duration::from_secs(5),
            Duration::from_secs(8),
            Duration::from_secs(1),
        );
        assert!(!link.is_online(&monitor, false).await);
        // Asked again and again within a second: no probe runs.
        for _ in 0..100 {
            assert!(!link.is_online(&monitor, false).await);
        }
        assert_eq!(monitor.probes.load(Ordering::SeqCst), 1);
        let mut waits = Vec::new();
        for _ in 0..5 {
            let wait = link.next_probe_in().unwrap();
            waits.push(wait.as_secs());
            tokio::time::sleep(wait).await;
            assert!(!link.is_online(&monitor, false).await);
        }
        assert_eq!(waits, [1, 2, 4, 8, 8]);
        assert_eq!(monitor.probes.load(Ordering::SeqCst), 6);
        // A forced probe runs at once, and finding the link ends the backoff.
        monitor.online.store(true, Ordering::SeqCst);
        assert!(link.is_online(&monitor, true).await);
        assert_eq!(link.next_probe_in(), None);
        assert!(link.is_online(&monitor, false).await);
        assert_eq!(monitor.probes.load(Ordering::SeqCst), 7);
    }
}
