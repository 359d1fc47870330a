//! [`SyncManager`]: sync runs on demand, in the background after saves,
//! and automatically ([`crate::auto_sync`]); [`BackgroundSyncScheduler`]
//! for an app's background job.
//!
//! A run is a task of the engine, not of its caller: it claims items, and
//! a claim must end in a recorded outcome. So a caller that stops waiting
//! (a timeout around `sync_now`) stops only its wait; the run finishes and
//! records what it sent.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sync_core::PullCounts;
use tokio::sync::oneshot;

use crate::error::SyncError;
use crate::pass::Pass;
use crate::pull::pull_all;
use crate::shared::{AutoSyncTask, Shared, lock};

/// What one sync run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Items the server accepted.
    pub sent: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Items still waiting afterwards (pending or failed).
    pub still_pending: u64,
    /// Whether the run stopped (or never started) because the network was
    /// unreachable.
    pub offline: bool,
    /// What the run's pulls brought down: documents upserted and deleted,
    /// changes kept off records with a pending local change (skipped), and
    /// pending changes the resolver merged an incoming copy into.
    pub pulled: PullCounts,
    /// Entities whose pull failed in this run (after its retries); the
    /// next run tries again from the last page applied.
    pub pull_failed: u64,
}

/// What a run is asked to do besides pushing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunPull {
    /// Push only (a run started by a save).
    No,
    /// Push, then pull.
    AfterPush,
    /// Pull only ([`SyncManager::pull_now`]).
    Only,
}

/// A run's report, once it ends.
pub(crate) type RunResult = oneshot::Receiver<Result<SyncReport, SyncError>>;

/// Runs sync passes: on demand, and automatically when connectivity is
/// confirmed.
#[derive(Clone)]
pub struct SyncManager {
    shared: Arc<Shared>,
}

impl fmt::Debug for SyncManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncManager").finish_non_exhaustive()
    }
}

impl SyncManager {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Runs a sync now and returns its report: pushes the queue, then pulls
    /// every declared entity. Calls that overlap share one run; a call
    /// made while a run is in progress makes sure one more pass follows
    /// (and ends that run's retry waits early). Failed items get another
    /// attempt now.
    ///
    /// Cancel safety: cancel-safe. The run is a task of the engine:
    /// dropping this future stops the waiting, while the run goes on and
    /// records the outcome of every item it claimed (`close` lets it
    /// finish its requests, for up to `close_timeout`).
    ///
    /// # Errors
    /// [`SyncError::Closed`] after close; [`SyncError::Interrupted`] if the
    /// engine was dropped or closed mid-run; [`SyncError::Store`] if the
    /// store fails.
    pub async fn sync_now(&self) -> Result<SyncReport, SyncError> {
        self.spawn_run(true, None, RunPull::AfterPush)?
            .await
            .map_err(|_| self.interrupted())?
    }

    /// Pulls every declared entity now (nothing is pushed) and returns
    /// the report: what came down, and whether the network was reachable.
    /// A pull waits for a sync run in progress to end. Pending local
    /// changes are never overwritten.
    ///
    /// Cancel safety: cancel-safe. The pull is a task of the engine:
    /// dropping this future stops the waiting; every page is applied with
    /// its cursor in one transaction, so a pull stopped anywhere (close, a
    /// crash) resumes at the next page.
    ///
    /// # Errors
    /// [`SyncError::Closed`] after close; [`SyncError::Interrupted`] if the
    /// engine was dropped or closed mid-pull; [`SyncError::Store`] if the
    /// store fails. A server that fails or answers badly is not an error
    /// here: it is counted in [`SyncReport::pull_failed`].
    pub async fn pull_now(&self) -> Result<SyncReport, SyncError> {
        self.spawn_run(false, None, RunPull::Only)?
            .await
            .map_err(|_| self.interrupted())?
    }

    fn interrupted(&self) -> SyncError {
        if self.shared.closed.load(Ordering::SeqCst) {
            SyncError::Closed
        } else {
            SyncError::Interrupted
        }
    }

    /// Starts a run in a task of the engine. `full` re-arms failed items
    /// and ends retry waits; a run for newly saved items does neither, so
    /// saving often never defeats the backoff of failing items. `stop`
    /// ends the run's first pass early (auto-sync stopped).
    pub(crate) fn spawn_run(
        &self,
        full: bool,
        stop: Option<Arc<AtomicBool>>,
        pull: RunPull,
    ) -> Result<RunResult, SyncError> {
        let shared = &self.shared;
        shared.ensure_open()?;
        // Registered now, not when the task first runs: a run in progress
        // sees the request at once.
        let request = if pull == RunPull::Only {
            0
        } else if full {
            self.request_full_pass()
        } else {
            shared.work.notify_waiters();
            0
        };
        let (report, result) = oneshot::channel();
        let manager = self.clone();
        shared.spawn(async move {
            let result = match pull {
                RunPull::Only => manager.pull_run(stop).await,
                _ => manager.run(request, stop, pull == RunPull::AfterPush).await,
            };
            // Nobody waits for the report (a background run, or a caller
            // that stopped waiting): a failure goes to the log instead.
            if let Err(Err(error)) = report.send(result)
                && !matches!(error, SyncError::Closed)
            {
                tracing::warn!(%error, "sync run failed");
            }
        })?;
        Ok(result)
    }

    /// A run: passes until no full pass is asked for any more. `request`
    /// is the number of the full pass this run was asked for (0: a run
    /// for newly saved items).
    async fn run(
        &self,
        request: u64,
        mut stop: Option<Arc<AtomicBool>>,
        pull: bool,
    ) -> Result<SyncReport, SyncError> {
        let shared = &self.shared;
        let _running = shared.run_lock.lock().await;
        shared.ensure_open()?;
        let full = request > 0;
        if full && shared.full_served.load(Ordering::SeqCst) >= request {
            // A full pass that started after this request, and succeeded,
            // served it (a failed one did not: this run tries itself). That
            // pass may belong to a run that does not pull (one started by
            // a save): the pull asked for still happens.
            let mut report = *lock(&shared.last_report);
            if pull && !report.offline && !shared.pull.is_empty() {
                report.pulled = PullCounts::default();
                report.pull_failed = 0;
                self.pull_into(&mut report, stop.as_deref()).await?;
            }
            return Ok(report);
        }
        if !full {
            shared.background_pending.store(false, Ordering::SeqCst);
        }
        // The run's report adds up its passes; what is left and whether
        // the network was reachable come from the last one.
        let mut total = SyncReport::default();
        let mut rearm = full || shared.full_pass_pending();
        loop {
            // A full pass serves every request made before it starts.
            let serving = shared.full_requested.load(Ordering::SeqCst);
            if rearm {
                shared.full_claimed.fetch_max(serving, Ordering::SeqCst);
            }
            let report = Pass::new(shared, rearm, stop.as_deref()).run().await;
            shared.timers_changed.notify_waiters();
            let report = report?;
            if rearm {
                shared.full_served.fetch_max(serving, Ordering::SeqCst);
            }
            total.sent += report.sent;
            total.failed += report.failed;
            total.still_pending = report.still_pending;
            total.offline = report.offline;
            *lock(&shared.last_report) = total;
            if shared.closed.load(Ordering::SeqCst) || !shared.full_pass_pending() {
                break;
            }
            rearm = true;
            // The next pass serves a `sync_now` or a reconnection, not the
            // auto-sync that was stopped.
            stop = None;
        }
        // Pushed first: the server holds this device's writes when their
        // echo comes down.
        if pull && !total.offline && !shared.pull.is_empty() && !shared.closed.load(Ordering::SeqCst) {
            self.pull_into(&mut total, stop.as_deref()).await?;
            *lock(&shared.last_report) = total;
        }
        Ok(total)
    }

    /// A run that only pulls ([`Self::pull_now`]).
    async fn pull_run(&self, stop: Option<Arc<AtomicBool>>) -> Result<SyncReport, SyncError> {
        let shared = &self.shared;
        let _running = shared.run_lock.lock().await;
        shared.ensure_open()?;
        let mut report = SyncReport::default();
        if shared.pull.is_empty() {
            return Ok(report);
        }
        if !shared.is_online(true).await {
            report.offline = true;
            return Ok(report);
        }
        self.pull_into(&mut report, stop.as_deref()).await?;
        Ok(report)
    }

    /// Pulls every declared entity; adds what it did to `report`.
    async fn pull_into(&self, report: &mut SyncReport, stop: Option<&AtomicBool>) -> Result<(), SyncError> {
        let shared = &self.shared;
        let stopping =
            || shared.closed.load(Ordering::SeqCst) || stop.is_some_and(|stop| stop.load(Ordering::SeqCst));
        let outcome = pull_all(shared, &stopping).await?;
        report.pulled.add(outcome.counts);
        report.pull_failed += outcome.failed;
        report.offline |= outcome.offline;
        Ok(())
    }

    /// Asks for a full pass (it ends retry waits of a pass in progress),
    /// without waiting for it; returns the request's number.
    pub(crate) fn request_full_pass(&self) -> u64 {
        let request = self.shared.full_requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.wake.notify_waiters();
        request
    }

    pub(crate) fn request_in_background(&self) {
        let shared = &self.shared;
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        // A pass waiting out a timer picks the new items up at once.
        shared.work.notify_waiters();
        if shared.background_pending.swap(true, Ordering::SeqCst) {
            return; // A background run is already on its way.
        }
        // Its report goes to the log if it fails (nobody waits for it).
        drop(self.spawn_run(false, None, RunPull::No));
    }

    /// Starts auto-sync: a full run whenever the monitor reports online and
    /// on every `connectivity_check_interval` poll that finds the network,
    /// and a run when a retry timer falls due. While offline, probes back
    /// off (from 1 s, doubling up to `connectivity_check_interval`).
    /// Idempotent.
    pub fn start_auto_sync(&self) {
        let mut slot = lock(&self.shared.auto_sync);
        if slot.as_ref().is_some_and(|auto| !auto.task.is_finished())
            || self.shared.closed.load(Ordering::SeqCst)
        {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(crate::auto_sync::auto_sync_loop(self.clone(), Arc::clone(&stop)));
        *slot = Some(AutoSyncTask { task, stop });
    }

    /// Stops auto-sync. A run it had started stops claiming; the requests
    /// that run has out finish and their outcomes are recorded.
    pub fn stop_auto_sync(&self) {
        if let Some(auto_sync) = lock(&self.shared.auto_sync).take() {
            auto_sync.stop();
        }
    }
}

/// Runs one sync pass for a background job (cron, a systemd timer, a
/// mobile background task) and reports what it did.
#[derive(Debug, Clone)]
pub struct BackgroundSyncScheduler {
    manager: SyncManager,
}

impl BackgroundSyncScheduler {
    /// A scheduler for `engine`'s sync manager.
    #[must_use]
    pub fn new(manager: SyncManager) -> Self {
        Self { manager }
    }

    /// Runs one sync and returns its report.
    ///
    /// Cancel safety: as [`SyncManager::sync_now`] (a background job's
    /// deadline may drop it; what the run claimed is still recorded).
    ///
    /// # Errors
    /// As [`SyncManager::sync_now`].
    pub async fn execute(&self) -> Result<SyncReport, SyncError> {
        self.manager.sync_now().await
    }
}
