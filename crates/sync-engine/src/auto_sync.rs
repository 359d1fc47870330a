//! The auto-sync loop: runs when the monitor reports the network, when a
//! poll finds it, when a retry timer falls due, and when a pull is due
//! (`pull_interval`). Runs started by connectivity coming back, and runs
//! with a pull due, pull after they push.
//!
//! The loop keeps listening to the monitor while a run it started is
//! going: connectivity coming back then ends that run's retry waits (a
//! full pass follows), as it does for any other run. Its belief about the
//! network is the engine's [`crate::link::Link`], which every probe
//! updates: after a failed probe, retry timers are ignored and the next
//! probe waits out the link's backoff, so a link that drops without a
//! monitor event never makes the loop spin.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio_stream::StreamExt;

use crate::error::SyncError;
use crate::manager::{RunPull, RunResult, SyncManager};
use crate::pull::pull_due_in;
use crate::sends::{CatchPanic, Panicked};

/// After a failed run, the first wait before the next (a full disk would
/// otherwise fail every run at once, forever); it doubles up to
/// [`MAX_COOLDOWN`].
const FIRST_COOLDOWN: Duration = Duration::from_secs(1);
const MAX_COOLDOWN: Duration = Duration::from_secs(60);

/// What woke the loop.
enum Wake {
    /// The monitor reported a transition (`None`: its stream ended).
    Monitor(Option<bool>),
    /// The run this loop started ended.
    RunEnded(Result<crate::manager::SyncReport, SyncError>),
    /// A pass ended somewhere: timers may have moved.
    TimersChanged,
    /// The wait ran out: `due` when a retry timer fell due (else a poll or
    /// a probe after the offline backoff, or a pull due).
    Slept { due: bool },
}

pub(crate) async fn auto_sync_loop(manager: SyncManager, stop: Arc<AtomicBool>) {
    let shared = Arc::clone(manager.shared());
    let mut changes = shared.monitor.changes();
    let poll = shared.options.connectivity_check_interval;
    let longest_wait = shared.policy.longest_wait();
    let mut cooldown: Option<Duration> = None;
    // The run this loop started and waits for.
    let mut running: Option<RunResult> = None;
    loop {
        let timers_changed = shared.timers_changed.notified();
        tokio::pin!(timers_changed);
        timers_changed.as_mut().enable();
        let offline = shared.link.believed_offline();
        // A clock moved back: a run now rebases the timers it pushed away.
        let (now, moved_back) = shared.observe_clock();
        // Retry timers matter only while the network is believed there and
        // no run of this loop is going (timers are capped as a safety net;
        // a clock moved back is caught above).
        let timer = if offline || cooldown.is_some() || running.is_some() {
            None
        } else if moved_back {
            Some(Duration::ZERO)
        } else {
            match shared.store.next_attempt_time().await {
                Ok(Some(at)) => Some(at.saturating_duration_since(now).min(longest_wait)),
                _ => None,
            }
        };
        // While a run of this loop goes, only its end, the monitor and
        // timer changes matter: nothing would happen on waking. Otherwise,
        // while offline, the next probe waits out the link's backoff (with
        // or without polling, so a missed transition is found again).
        // A pull falls due only while the network is believed there.
        let pull_in = if offline || cooldown.is_some() || running.is_some() {
            None
        } else {
            pull_due_in(&shared)
        };
        let wait = if running.is_some() {
            None
        } else {
            let poll_in = match (poll, shared.link.next_probe_in()) {
                (Some(poll), Some(backoff)) => Some(poll.min(backoff)),
                (None, Some(backoff)) => Some(backoff),
                (poll, None) => poll,
            };
            [poll_in, timer, cooldown, pull_in].into_iter().flatten().min()
        };
        let wake = tokio::select! {
            change = CatchPanic::new(changes.next()) => Wake::Monitor(change.unwrap_or_else(|Panicked| {
                tracing::error!("the connectivity monitor's change stream panicked: polling only");
                None
            })),
            result = async {
                match running.as_mut() {
                    Some(run) => run.await,
                    None => std::future::pending().await,
                }
            } => Wake::RunEnded(result.unwrap_or(Err(SyncError::Interrupted))),
            () = &mut timers_changed => Wake::TimersChanged,
            () = async {
                match wait {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => std::future::pending().await,
                }
            } => Wake::Slept { due: timer.is_some() && timer == wait },
        };
        // `Some(full)`: start a run, re-arming failed items when `full`.
        let mut pull = false;
        let start = match wake {
            Wake::Monitor(Some(true)) => {
                let came_back = shared.link.believed_offline();
                shared.link.mark_online();
                if running.is_none() {
                    pull = true;
                    Some(true)
                } else {
                    if came_back {
                        // End the run's retry waits: a full pass follows.
                        let _request = manager.request_full_pass();
                    }
                    None
                }
            }
            Wake::Monitor(Some(false)) => {
                shared.link.mark_offline();
                None
            }
            Wake::Monitor(None) => {
                // The monitor ended (or its stream panicked): keep polling
                // only.
                changes = Box::pin(tokio_stream::pending());
                None
            }
            Wake::RunEnded(result) => {
                running = None;
                match result {
                    Ok(_) => cooldown = None,
                    Err(_) if shared.closed.load(std::sync::atomic::Ordering::SeqCst) => return,
                    Err(SyncError::Closed) => return,
                    Err(error) => {
                        tracing::warn!(%error, "auto-sync run failed");
                        let next = cooldown.map_or(FIRST_COOLDOWN, |previous| previous * 2);
                        cooldown = Some(next.min(MAX_COOLDOWN));
                    }
                }
                None
            }
            Wake::TimersChanged => None,
            Wake::Slept { due } => {
                // After a failed run, the next one is a full pass.
                let cooled = cooldown.is_some();
                // A fresh "online" is reused; while offline, this is the
                // probe the backoff allowed. A run that finds a pull due
                // pulls (a run after a reconnection always does).
                let came_back = shared.link.believed_offline();
                let online = running.is_none() && shared.is_online(false).await;
                pull = online && (came_back || pull_due_in(&shared) == Some(Duration::ZERO));
                online.then_some(!due || cooled || pull)
            }
        };
        if let Some(full) = start {
            let pull = if pull { RunPull::AfterPush } else { RunPull::No };
            match manager.spawn_run(full, Some(Arc::clone(&stop)), pull) {
                Ok(run) => running = Some(run),
                Err(_) => return, // Closed.
            }
        }
    }
}
