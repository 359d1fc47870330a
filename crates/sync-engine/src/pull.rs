//! Pulls: the server's changes coming down, page by page.
//!
//! For each declared entity, a pull asks its [`PullSource`] for the page
//! after the stored cursor, lets the app's resolver merge incoming copies
//! into pending changes, and hands the page to the store, which applies
//! it in one transaction with the new cursor (the decisions are
//! sync-core's `plan_pulled` and `plan_page`). So a pull stopped at any
//! moment (a crash, close, a dropped caller) loses nothing: the next one
//! starts from the last page applied.
//!
//! While a page is applied, the next one is already being fetched (when
//! the page said more remain): the network and the store work at once. A
//! page fetched that way is used only if the stored cursor after the
//! apply is the one it was asked with; otherwise it is dropped.
//!
//! Pulls run under the engine's run lock, after the run's pushes, so the
//! server already holds this device's writes when their echo comes back,
//! and no attempt is in flight while a page is applied.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sync_core::pull::{PagePlan, PreparedMerge, PullBatch, plan_page, restart_listing};
use sync_core::{
    ApiError, AttemptId, EntityName, ErrorKind, JsonObject, PullAnswer, PullCounts, PullCursor, PullPage,
    PullRequest, PullSource, PulledChange, RecordId, StoreErrorKind, Timestamp,
};

use crate::error::SyncError;
use crate::sends::CatchPanic;
use crate::shared::{Shared, lock};

/// Loads from scratch one pull may start for an entity (after "cursor
/// expired" answers) before it gives up until the next run.
const MAX_RELOADS: u32 = 3;

/// The entities pulled, each with its source.
#[derive(Clone, Default)]
pub(crate) struct PullSetup {
    pub(crate) sources: Vec<(EntityName, Arc<dyn PullSource>)>,
}

impl PullSetup {
    pub(crate) fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

/// Where a pull stands, for a progress bar on a long initial load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PullProgress {
    /// The entity being pulled (the last one pulled once done).
    pub entity: Option<EntityName>,
    /// Pages of this entity applied so far in this pull.
    pub pages: u64,
    /// Changes of this entity applied so far in this pull.
    pub records: u64,
    /// Whether a pull is going.
    pub running: bool,
}

/// What pulling every entity did.
#[derive(Debug, Default)]
pub(crate) struct PullOutcome {
    pub(crate) counts: PullCounts,
    /// Entities whose pull failed (after its retries in this run).
    pub(crate) failed: u64,
    /// The network was found unreachable: the pull stopped.
    pub(crate) offline: bool,
}

/// Why one entity's pull stopped early.
enum Stop {
    /// The server could not be reached: no other entity is tried.
    Offline,
    /// The server's answer was refused, or it kept failing.
    Failed,
    /// The engine is closing, or the auto-sync that started it stopped.
    Stopping,
}

/// Pulls every declared entity, in declaration order. `stopping` tells
/// when to stop between pages.
pub(crate) async fn pull_all(
    shared: &Shared,
    stopping: &(dyn Fn() -> bool + Sync),
) -> Result<PullOutcome, SyncError> {
    let mut outcome = PullOutcome::default();
    *lock(&shared.last_pull) = Some(tokio::time::Instant::now());
    for (entity, source) in &shared.pull.sources {
        let mut puller = EntityPull {
            shared,
            entity,
            source: source.as_ref(),
            stopping,
            progress: PullProgress {
                entity: Some(entity.clone()),
                running: true,
                ..PullProgress::default()
            },
        };
        shared.pull_progress.send_replace(puller.progress.clone());
        let (counts, stop) = puller.run().await?;
        outcome.counts.add(counts);
        match stop {
            None => {}
            Some(Stop::Offline) => {
                outcome.offline = true;
                break;
            }
            Some(Stop::Failed) => outcome.failed += 1,
            Some(Stop::Stopping) => break,
        }
    }
    shared
        .pull_progress
        .send_modify(|progress| progress.running = false);
    Ok(outcome)
}

struct EntityPull<'a> {
    shared: &'a Shared,
    entity: &'a EntityName,
    source: &'a dyn PullSource,
    stopping: &'a (dyn Fn() -> bool + Sync),
    progress: PullProgress,
}

impl EntityPull<'_> {
    /// Pulls pages until the server has no more; a store failure other
    /// than a refused page ends the run.
    async fn run(&mut self) -> Result<(PullCounts, Option<Stop>), SyncError> {
        let shared = self.shared;
        let mut counts = PullCounts::default();
        // Failures in a row, for the backoff.
        let mut failures = 0u32;
        // Re-loads started by this pull: a server that keeps expiring the
        // cursors of its own load would loop forever.
        let mut reloads = 0u32;
        // The next page, fetched while the last one was applied, with the
        // cursor it was asked with.
        let mut prefetched: Option<(Option<PullCursor>, Result<PullAnswer, ApiError>)> = None;
        loop {
            if (self.stopping)() {
                return Ok((counts, Some(Stop::Stopping)));
            }
            let state = shared.store.pull_state(self.entity).await?;
            let answer = match prefetched.take() {
                Some((cursor, answer)) if cursor == state.cursor => answer,
                _ => self.fetch(state.cursor.as_ref()).await,
            };
            let failure = match answer {
                Ok(PullAnswer::CursorExpired) if state.cursor.is_none() => ApiError::new(
                    ErrorKind::Permanent,
                    "the server answered \"cursor expired\" to a pull without a cursor: it must answer 410 only to a cursor it no longer knows",
                ),
                Ok(PullAnswer::CursorExpired) if reloads >= MAX_RELOADS => ApiError::new(
                    ErrorKind::Permanent,
                    "the server expired the cursors of a load from scratch again and again: a cursor it issues during a load must stay valid while it forgets no deletion (docs/server-contract.md)",
                ),
                Ok(PullAnswer::CursorExpired) => {
                    reloads += 1;
                    tracing::warn!(entity = %self.entity, "the server no longer knows the pull cursor: loading everything again");
                    let now = shared.clock.now();
                    let batch = PullBatch {
                        entity: self.entity.clone(),
                        plan: sync_core::pull::PagePlan {
                            after: restart_listing(&state, now),
                            mark: None,
                            sweep: None,
                        },
                        expected: state,
                        changes: Vec::new(),
                        merges: Vec::new(),
                    };
                    shared.store.apply_pull(batch, now).await?;
                    continue;
                }
                Ok(PullAnswer::Page(page)) => {
                    let more = page.more;
                    let changes = page.changes.len() as u64;
                    let now = shared.clock.now();
                    let plan = plan_page(&state, &page, now);
                    let applied = if more {
                        let next = plan.after.cursor.clone();
                        // The request goes out first, so it is on the
                        // wire while the page is applied.
                        let (answer, applied) =
                            tokio::join!(self.fetch(next.as_ref()), self.apply(state, plan, page, now));
                        prefetched = Some((next, answer));
                        applied
                    } else {
                        self.apply(state, plan, page, now).await
                    };
                    match applied {
                        Ok(applied) => {
                            if shared.events.listened() {
                                shared.events.send(crate::events::SyncEvent::Pulled {
                                    entity: self.entity.clone(),
                                    counts: applied,
                                });
                            }
                            counts.add(applied);
                            failures = 0;
                            self.progress.pages += 1;
                            self.progress.records += changes;
                            shared.pull_progress.send_replace(self.progress.clone());
                            if more {
                                continue;
                            }
                            return Ok((counts, None));
                        }
                        // The store refused the page (a document over its
                        // size limit): the server's answer is at fault.
                        Err(error) if error.kind() == StoreErrorKind::Invalid => ApiError::new(
                            ErrorKind::Permanent,
                            format!("a pulled page was refused: {error}"),
                        ),
                        Err(error) => return Err(error.into()),
                    }
                }
                Ok(_) => ApiError::new(
                    ErrorKind::Permanent,
                    "the pull source gave an answer this engine does not know",
                ),
                Err(error) => error,
            };
            if failure.kind() == ErrorKind::Offline {
                shared.link.mark_offline();
                return Ok((counts, Some(Stop::Offline)));
            }
            failures += 1;
            // Kind and status only: the message may quote the server's answer.
            tracing::warn!(
                entity = %self.entity,
                kind = %failure.kind(),
                status = failure.status(),
                failures,
                "pull failed"
            );
            tracing::debug!(entity = %self.entity, "the failed pull: {failure}");
            // As for a push: a refused answer is not retried in this run,
            // a transient failure is, with backoff, up to `max_retries`
            // tries (the next run starts over).
            let schedule = shared.policy.after_failure(
                failures,
                failure.kind(),
                failure.retry_after(),
                shared.clock.now(),
                AttemptId::generate().as_u64(),
            );
            let Some(at) = schedule.next_attempt_at else {
                return Ok((counts, Some(Stop::Failed)));
            };
            let delay = at.saturating_duration_since(shared.clock.now());
            if !self.wait(delay).await {
                return Ok((counts, Some(Stop::Stopping)));
            }
        }
    }

    /// One request for the page after `cursor`, within `attempt_timeout`.
    async fn fetch(&self, cursor: Option<&PullCursor>) -> Result<PullAnswer, ApiError> {
        let request = PullRequest {
            entity: self.entity,
            cursor,
            limit: self.shared.options.pull_page_size,
        };
        let timeout = self.shared.options.attempt_timeout;
        match tokio::time::timeout(timeout, CatchPanic::new(self.source.pull(request))).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ApiError::new(ErrorKind::Transient, "the pull source panicked")),
            Err(_) => Err(ApiError::new(
                ErrorKind::Transient,
                format!("the pull took longer than attempt_timeout ({timeout:?})"),
            )),
        }
    }

    /// Merges incoming copies into pending changes (when the app set a
    /// resolver), then applies the page with its state (`plan`, made at
    /// `now`) in one store transaction.
    async fn apply(
        &self,
        state: sync_core::PullState,
        plan: PagePlan,
        page: PullPage,
        now: Timestamp,
    ) -> Result<PullCounts, sync_core::StoreError> {
        let shared = self.shared;
        let merges = match &shared.resolver {
            Some(_) => self.merges(&page).await?,
            None => Vec::new(),
        };
        let batch = PullBatch {
            entity: self.entity.clone(),
            expected: state,
            plan,
            changes: page.changes,
            merges,
        };
        shared.store.apply_pull(batch, now).await
    }

    /// The resolver's merge of each incoming copy that meets a pending
    /// change. A resolver that fails (or panics, or overruns
    /// `attempt_timeout`) merges nothing: the pending change stays whole
    /// and meets the server's copy again when it is sent.
    async fn merges(&self, page: &PullPage) -> Result<Vec<PreparedMerge>, sync_core::StoreError> {
        let Some(resolver) = &self.shared.resolver else {
            return Ok(Vec::new());
        };
        let mut incoming: HashMap<&RecordId, &JsonObject> = HashMap::new();
        for change in &page.changes {
            if let PulledChange::Upsert { id, data, .. } = change {
                incoming.insert(id, data);
            }
        }
        if incoming.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<RecordId> = incoming.keys().map(|id| (*id).clone()).collect();
        let pending = self.shared.store.pending_changes(self.entity, &ids).await?;
        let mut merges = Vec::with_capacity(pending.len());
        for change in pending {
            let Some(remote) = incoming.get(&change.id) else {
                continue;
            };
            let base = change.base.as_ref().map(|copy| &copy.data);
            let resolving = CatchPanic::new(resolver.resolve_three_way(&change.payload, remote, base));
            match tokio::time::timeout(self.shared.options.attempt_timeout, resolving).await {
                Ok(Ok(Ok(document))) => merges.push(PreparedMerge {
                    id: change.id,
                    item_version: change.item_version,
                    document,
                }),
                _ => {
                    tracing::warn!(
                        entity = %self.entity,
                        "the resolver could not merge a pulled copy into a pending change: the change stays as saved"
                    );
                    tracing::debug!(entity = %self.entity, id = %change.id, "the record the resolver did not merge");
                }
            }
        }
        Ok(merges)
    }

    /// Waits `delay` before the next try; `false` when the engine is
    /// closing meanwhile.
    async fn wait(&self, delay: Duration) -> bool {
        let mut shutdown = self.shared.shutdown.subscribe();
        if *shutdown.borrow() || (self.stopping)() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => !(self.stopping)(),
            _ = shutdown.changed() => false,
        }
    }
}

/// Whether a pull is due: the last one started `pull_interval` ago or
/// more, or none ran yet; `None` when no entity is pulled or periodic
/// pulls are off.
pub(crate) fn pull_due_in(shared: &Shared) -> Option<Duration> {
    if shared.pull.is_empty() {
        return None;
    }
    let interval = shared.options.pull_interval?;
    Some(match *lock(&shared.last_pull) {
        None => Duration::ZERO,
        Some(last) => interval.saturating_sub(last.elapsed()),
    })
}
