//! [`Shared`]: the state every part of one engine holds (handles, sync
//! managers, runs, auto-sync, watch streams).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use sync_core::{
    Clock, ConflictResolver, ConnectivityMonitor, RetryPolicy, SyncApiAdapter, SyncStore, Timestamp,
};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinSet;

use crate::error::SyncError;
use crate::lease::StoreLease;
use crate::link::Link;
use crate::manager::SyncReport;
use crate::options::OfflineSyncOptions;
use crate::pull::{PullProgress, PullSetup};

pub(crate) struct Shared {
    pub(crate) store: Arc<dyn SyncStore>,
    pub(crate) adapter: Arc<dyn SyncApiAdapter>,
    pub(crate) monitor: Arc<dyn ConnectivityMonitor>,
    pub(crate) resolver: Option<Arc<dyn ConflictResolver>>,
    pub(crate) policy: RetryPolicy,
    pub(crate) options: OfflineSyncOptions,
    pub(crate) clock: Arc<dyn Clock>,
    /// The entities pulled, each with its source.
    pub(crate) pull: PullSetup,
    /// Where the pull going (or the last one) stands.
    pub(crate) pull_progress: tokio::sync::watch::Sender<PullProgress>,
    /// Attempt and pull events for the app's subscribers.
    pub(crate) events: crate::events::EventBus,
    /// Declared references: parents reach the server first.
    pub(crate) references: sync_core::depends::References,
    /// When the last pull started, for `pull_interval`.
    pub(crate) last_pull: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// What the engine believes about the network.
    pub(crate) link: Link,
    /// Held by the one sync run in progress.
    pub(crate) run_lock: Mutex<()>,
    /// Full passes asked for so far (`sync_now`, connectivity regained):
    /// each request takes the next number.
    pub(crate) full_requested: AtomicU64,
    /// The latest request number a full pass has started to serve.
    pub(crate) full_claimed: AtomicU64,
    /// The latest request number a full pass has served without an error:
    /// a caller whose number is at most this was served.
    pub(crate) full_served: AtomicU64,
    /// Ends a pass waiting out a retry timer, so a full pass follows
    /// (`sync_now`, connectivity regained, close).
    pub(crate) wake: Notify,
    /// New items were saved: a pass waiting out a timer claims again.
    pub(crate) work: Notify,
    /// A pass ended: auto-sync recomputes when to look again.
    pub(crate) timers_changed: Notify,
    /// A background run is requested and not started yet.
    pub(crate) background_pending: AtomicBool,
    /// Set when a pass starts and cleared when it ends having recorded
    /// every item it claimed. Still set when the next pass starts, a pass
    /// was stopped half-way (its task aborted, a store failure), and items
    /// it claimed may still be marked in flight: no send of this engine
    /// owns them any more (passes run one at a time, under `run_lock`),
    /// so the next pass reclaims them.
    pub(crate) claims_unsettled: AtomicBool,
    /// The latest wall time this engine has seen (milliseconds), to notice
    /// a clock moved back.
    pub(crate) latest_now: AtomicI64,
    /// The clock was seen moving back and timers are not rebased yet.
    pub(crate) clock_moved_back: AtomicBool,
    /// Set once on close or drop; watch streams end on it.
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    pub(crate) last_report: std::sync::Mutex<SyncReport>,
    pub(crate) closed: AtomicBool,
    /// Runs and background work, owned by the engine rather than by the
    /// caller's future: a run that claimed items finishes and records
    /// them even when the caller stops waiting.
    pub(crate) tasks: std::sync::Mutex<JoinSet<()>>,
    /// The auto-sync loop and the stop flag of the runs it starts.
    pub(crate) auto_sync: std::sync::Mutex<Option<AutoSyncTask>>,
    /// Set when `close` has finished closing.
    pub(crate) closing: tokio::sync::OnceCell<()>,
    /// This engine's claim on its store, given back on close (once no run
    /// is going) or when nothing of the engine is left, sync managers and
    /// background tasks included.
    pub(crate) lease: std::sync::Mutex<Option<StoreLease>>,
}

/// The auto-sync loop's task, and the flag that stops the runs it starts.
pub(crate) struct AutoSyncTask {
    pub(crate) task: tokio::task::JoinHandle<()>,
    pub(crate) stop: Arc<AtomicBool>,
}

impl AutoSyncTask {
    /// Stops the loop, and asks the run it started to stop after the
    /// requests already out (their outcomes are recorded).
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

impl Shared {
    pub(crate) fn ensure_open(&self) -> Result<(), SyncError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(SyncError::Closed)
        } else {
            Ok(())
        }
    }

    /// The wall time now; notes whether the clock moved back since the
    /// latest time this engine saw (kept until timers are rebased), and
    /// returns whether a rebase is due.
    pub(crate) fn observe_clock(&self) -> (Timestamp, bool) {
        let now = self.clock.now();
        let latest = self.latest_now.fetch_max(now.as_millis(), Ordering::SeqCst);
        if now.as_millis() < latest {
            self.clock_moved_back.store(true, Ordering::SeqCst);
        }
        (now, self.clock_moved_back.load(Ordering::SeqCst))
    }

    /// Whether a full pass was asked for that no full pass has started to
    /// serve yet.
    pub(crate) fn full_pass_pending(&self) -> bool {
        self.full_requested.load(Ordering::SeqCst) > self.full_claimed.load(Ordering::SeqCst)
    }

    /// Brings back timers a clock moved back put out of reach (see
    /// [`sync_core::retry::rebase_timers`]).
    pub(crate) async fn rebase_timers(&self, now: Timestamp) -> Result<(), SyncError> {
        // The clock reads `now` from here on: later reads compare with it,
        // not with the time before the jump.
        self.latest_now.store(now.as_millis(), Ordering::SeqCst);
        self.clock_moved_back.store(false, Ordering::SeqCst);
        let rebased = match self.store.rebase_timers(now, self.policy).await {
            Ok(rebased) => rebased,
            Err(error) => {
                // Still to do.
                self.clock_moved_back.store(true, Ordering::SeqCst);
                return Err(error.into());
            }
        };
        if rebased > 0 {
            tracing::warn!(
                rebased,
                "the clock moved back: retry timers beyond any retry rule are due again"
            );
        }
        Ok(())
    }

    /// Whether the network is reachable (see [`Link::is_online`]).
    pub(crate) async fn is_online(&self, force: bool) -> bool {
        self.link.is_online(self.monitor.as_ref(), force).await
    }

    /// Items left to send: pending, syncing or failed.
    pub(crate) async fn pending(&self) -> Result<u64, SyncError> {
        let counts = self.store.counts().await?;
        Ok(counts.pending + counts.failed + counts.syncing)
    }

    /// Runs `future` as a task of the engine: it finishes even if the
    /// caller stops waiting, and close waits for it (within its timeout).
    ///
    /// # Errors
    /// [`SyncError::Closed`] once closing began: checked under the lock
    /// `close` takes the tasks with, so no task escapes it.
    pub(crate) fn spawn(
        &self,
        future: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), SyncError> {
        let mut tasks = lock(&self.tasks);
        self.ensure_open()?;
        // Finished tasks are reaped so the set does not grow.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(future);
        Ok(())
    }
}

pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values stay valid if a holder panicked.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
