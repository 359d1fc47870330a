//! The single writer: one connection, one task, every write in order.
//!
//! SQLite allows one writer at a time, so all writes go through this task.
//! Saves that wait in its queue together are committed in one transaction
//! (group commit): concurrent savers share the commit's cost. Events are
//! sent only after a commit succeeds, so watchers never see a write that
//! was rolled back.

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, SqliteConnection};
use sync_core::attempt::{
    begin_attempt, finish_attempt, rearm_for_pass, recover_interrupted, retry_now, retry_one,
};
use sync_core::coalesce::{QueueWrite, SaveContext, plan_save};
use sync_core::pull::{PullBatch, PullCounts};
use sync_core::{
    AttemptTicket, DiscardOutcome, FinishResult, FinishedAttempt, LocalChange, RecordKey, SavedChange,
    StoreError, StoreErrorKind, StoreEvent, SyncQueueItem, Timestamp,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::changes::Changes;
use crate::diagnostics::Diagnostics;
use crate::error::map_sqlx;
use crate::queries;
use crate::rows::{self, CHUNK};

/// Runs `$work` in a `BEGIN IMMEDIATE` transaction: commit and publish its
/// events on success, roll back on failure.
macro_rules! transaction {
    ($writer:ident, $work:expr) => {
        match $writer.begin().await {
            Ok(()) => {
                let work = $work.await;
                $writer.end(work).await
            }
            Err(error) => Err(error),
        }
    };
}

/// The most changes committed in one group transaction.
const MAX_GROUP_CHANGES: usize = 4096;

/// A request to the writer, with where to send the answer.
pub(crate) enum Command {
    Save {
        changes: Vec<LocalChange>,
        now: Timestamp,
        reply: oneshot::Sender<Result<Vec<SavedChange>, StoreError>>,
    },
    Claim {
        now: Timestamp,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<AttemptTicket>, StoreError>>,
    },
    Finish {
        finished: Vec<FinishedAttempt>,
        now: Timestamp,
        reply: oneshot::Sender<Result<Vec<FinishResult>, StoreError>>,
    },
    Rewrite {
        rewrite: Rewrite,
        now: Timestamp,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    ClearSynced {
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Diagnostics {
        reply: oneshot::Sender<Result<Diagnostics, StoreError>>,
    },
    ApplyPull {
        batch: PullBatch,
        now: Timestamp,
        reply: oneshot::Sender<Result<PullCounts, StoreError>>,
    },
    Discard {
        key: RecordKey,
        revert: bool,
        now: Timestamp,
        reply: oneshot::Sender<Result<DiscardOutcome, StoreError>>,
    },
}

/// Item-by-item rewrites decided by sync-core.
pub(crate) enum Rewrite {
    RecoverInterrupted,
    /// Timers a clock moved back put out of reach come back (see
    /// `SyncStore::rebase_timers`).
    RebaseTimers(sync_core::RetryPolicy),
    RearmFailed,
    RetryFailed,
    RetryOne(RecordKey),
}

/// Counts the SQL statements the store executes, for benchmarks.
#[derive(Debug, Default)]
pub(crate) struct Statements(AtomicU64);

impl Statements {
    pub(crate) fn add(&self, count: u64) {
        self.0.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The writer task's state.
pub(crate) struct Writer {
    pub(crate) connection: SqliteConnection,
    pub(crate) events: broadcast::Sender<StoreEvent>,
    pub(crate) statements: Arc<Statements>,
    /// A rollback failed, so a transaction may still be open.
    pub(crate) open_transaction: bool,
    /// Held for the writer's life: no other process writes this database.
    pub(crate) _lock: File,
}

impl Writer {
    /// Serves commands until every sender is gone, then closes the connection.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut next: Option<Command> = None;
        loop {
            let command = match next.take() {
                Some(command) => command,
                None => match commands.recv().await {
                    Some(command) => command,
                    None => break,
                },
            };
            let Command::Save { changes, now, reply } = command else {
                self.serve(command).await;
                continue;
            };
            // Group commit: let savers that were just woken by the previous
            // commit submit first (one yield costs nothing when nobody else
            // is runnable), then take every save waiting.
            tokio::task::yield_now().await;
            let mut group = vec![(changes, now, reply)];
            let mut size = group[0].0.len();
            while size < MAX_GROUP_CHANGES {
                match commands.try_recv() {
                    Ok(Command::Save { changes, now, reply }) => {
                        size += changes.len();
                        group.push((changes, now, reply));
                    }
                    Ok(other) => {
                        next = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.save_group(group).await;
        }
        // Nothing is held any more: closing cannot hang.
        let _ = self.connection.close().await;
    }

    async fn serve(&mut self, command: Command) {
        match command {
            Command::Save { changes, now, reply } => self.save_group(vec![(changes, now, reply)]).await,
            Command::Claim { now, limit, reply } => {
                let _ = reply.send(transaction!(self, self.claim(now, limit)));
            }
            Command::Finish { finished, now, reply } => {
                let _ = reply.send(transaction!(self, self.finish(&finished, now)));
            }
            Command::Rewrite { rewrite, now, reply } => {
                let _ = reply.send(transaction!(self, self.rewrite(&rewrite, now)));
            }
            Command::ClearSynced { reply } => {
                let _ = reply.send(transaction!(self, self.clear_synced()));
            }
            Command::Diagnostics { reply } => {
                let _ = reply.send(self.diagnostics().await);
            }
            Command::ApplyPull { batch, now, reply } => {
                let _ = reply.send(self.apply_pull(&batch, now).await);
            }
            Command::Discard {
                key,
                revert,
                now,
                reply,
            } => {
                let _ = reply.send(transaction!(self, self.discard(&key, revert, now)));
            }
        }
    }

    /// Commits a group of saves together; if the group fails, each save is
    /// retried alone so one failure cannot fail the others.
    async fn save_group(&mut self, group: Vec<(Vec<LocalChange>, Timestamp, SavedReply)>) {
        if group.len() > 1 {
            let all: Vec<(&[LocalChange], Timestamp)> = group
                .iter()
                .map(|(changes, now, _)| (changes.as_slice(), *now))
                .collect();
            let result = transaction!(self, self.save(&all));
            drop(all);
            match result {
                Ok(mut saved) => {
                    for (changes, _, reply) in group.into_iter().rev() {
                        let tail = saved.split_off(saved.len().saturating_sub(changes.len()));
                        let _ = reply.send(Ok(tail));
                    }
                    return;
                }
                // A full database may still take the smaller saves alone.
                Err(error) if error.kind() == StoreErrorKind::Full => {}
                // Anything else (busy, I/O, an unclear commit) would fail
                // again, or could apply twice: every member gets the error.
                Err(error) => {
                    let kind = error.kind();
                    let message = error.to_string();
                    for (_, _, reply) in group {
                        let _ = reply.send(Err(StoreError::new(kind, message.clone())));
                    }
                    return;
                }
            }
        }
        for (changes, now, reply) in group {
            let batch = [(changes.as_slice(), now)];
            let _ = reply.send(transaction!(self, self.save(&batch)));
        }
    }

    pub(crate) async fn begin(&mut self) -> Result<(), StoreError> {
        if self.open_transaction {
            // A rollback failed earlier: end that transaction first, or no
            // write could ever start again.
            self.rollback().await;
        }
        self.statements.add(1);
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut self.connection)
            .await
            .map(drop)
            .map_err(|error| map_sqlx(error, "starting a write"))
    }

    /// Commits and then publishes the work's events, or rolls back.
    pub(crate) async fn end<T>(&mut self, work: WorkResult<T>) -> Result<T, StoreError> {
        self.statements.add(1);
        match work {
            Ok((value, events)) => {
                if let Err(error) = sqlx::raw_sql("COMMIT").execute(&mut self.connection).await {
                    self.rollback().await;
                    return Err(map_sqlx(error, "committing a write"));
                }
                for event in events {
                    // No subscriber is not an error.
                    let _ = self.events.send(event);
                }
                Ok(value)
            }
            Err(error) => {
                self.rollback().await;
                Err(error)
            }
        }
    }

    /// Rolls back; remembers a failure so the next write retries it.
    async fn rollback(&mut self) {
        self.statements.add(1);
        let result = sqlx::raw_sql("ROLLBACK").execute(&mut self.connection).await;
        // "no transaction is active" means there is nothing left to end.
        self.open_transaction = match result {
            Ok(_) => false,
            Err(error) => !error.to_string().contains("no transaction is active"),
        };
    }

    pub(crate) async fn load(
        &mut self,
        changes: &mut Changes,
        keys: &[&RecordKey],
        with_documents: bool,
    ) -> Result<(), StoreError> {
        self.statements.add(keys.len().div_ceil(CHUNK) as u64);
        changes.states = rows::load_keys(&mut self.connection, keys, with_documents).await?;
        Ok(())
    }

    async fn save(&mut self, batches: &[(&[LocalChange], Timestamp)]) -> WorkResult<Vec<SavedChange>> {
        // Changes that still name renamed temporary ids land on the
        // server's ids (read in this transaction, so no rename slips in
        // between).
        let temporary: Vec<_> = batches
            .iter()
            .flat_map(|(changes, _)| changes.iter())
            .flat_map(sync_core::rename::temporary_ids_in)
            .collect();
        if !temporary.is_empty() {
            let aliases = crate::renames::load_aliases(&mut self.connection, &temporary).await?;
            if !aliases.is_empty() {
                let resolved: Vec<(Vec<LocalChange>, Timestamp)> = batches
                    .iter()
                    .map(|(changes, now)| {
                        let changes = changes
                            .iter()
                            .map(|change| sync_core::rename::apply_aliases(change.clone(), &aliases))
                            .collect();
                        (changes, *now)
                    })
                    .collect();
                let views: Vec<(&[LocalChange], Timestamp)> = resolved
                    .iter()
                    .map(|(changes, now)| (changes.as_slice(), *now))
                    .collect();
                return self.save_resolved(&views).await;
            }
        }
        self.save_resolved(batches).await
    }

    async fn save_resolved(
        &mut self,
        batches: &[(&[LocalChange], Timestamp)],
    ) -> WorkResult<Vec<SavedChange>> {
        let mut seen = HashSet::new();
        let keys: Vec<&RecordKey> = batches
            .iter()
            .flat_map(|(changes, _)| changes.iter().map(|change| &change.key))
            .filter(|key| seen.insert(*key))
            .collect();
        let mut changes = Changes::default();
        self.load(&mut changes, &keys, true).await?;
        let mut saved = Vec::new();
        for (batch, now) in batches {
            for change in batch.iter() {
                let key = &change.key;
                let state = changes.state(key);
                let plan = plan_save(
                    state.item.as_ref(),
                    state.document_created_at.is_some(),
                    change.clone(),
                    SaveContext::at(*now),
                );
                changes.queue(key, plan.queue);
                let record = changes.document(key, plan.document, *now);
                saved.push(SavedChange {
                    item: changes.state(key).item.clone(),
                    record,
                });
            }
        }
        changes.write(&mut self.connection, &self.statements).await?;
        Ok((saved, changes.events))
    }

    async fn claim(&mut self, now: Timestamp, limit: usize) -> WorkResult<Vec<AttemptTicket>> {
        self.statements.add(1);
        let rows = sqlx::query(queries::CLAIM_READY)
            .bind(now.as_millis())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut self.connection)
            .await
            .map_err(|error| map_sqlx(error, "finding ready queue items"))?;
        let mut changes = Changes::default();
        changes.metadata_only = true;
        let mut tickets = Vec::with_capacity(rows.len());
        for row in &rows {
            let item = rows::item_from_row(row)?;
            if let Some((claimed, ticket)) = begin_attempt(&item, now) {
                changes.queue(&ticket.key, QueueWrite::Put(claimed));
                tickets.push(ticket);
            }
        }
        changes.write(&mut self.connection, &self.statements).await?;
        // The base of each attempt: what the server last confirmed.
        if !tickets.is_empty() {
            let keys: Vec<&RecordKey> = tickets.iter().map(|ticket| &ticket.key).collect();
            self.statements.add(keys.len().div_ceil(CHUNK) as u64);
            let mut copies = rows::load_copies(&mut self.connection, &keys).await?;
            for ticket in &mut tickets {
                ticket.base = copies.remove(&ticket.key);
            }
        }
        Ok((tickets, changes.events))
    }

    async fn finish(
        &mut self,
        finished: &[FinishedAttempt],
        now: Timestamp,
    ) -> WorkResult<Vec<FinishResult>> {
        let renames = |one: &FinishedAttempt| one.outcome.assigned().is_some();
        if !finished.iter().any(renames) {
            return self.finish_plain(finished, now).await;
        }
        // A rename moves rows and rewrites others: each outcome is applied
        // in turn, in this one transaction, so each sees the last.
        let mut results = Vec::with_capacity(finished.len());
        let mut events = Vec::new();
        for one in finished {
            let (mut result, mut more) = if renames(one) {
                self.finish_renamed(one, now).await?
            } else {
                self.finish_plain(std::slice::from_ref(one), now).await?
            };
            results.append(&mut result);
            events.append(&mut more);
        }
        Ok((results, events))
    }

    pub(crate) async fn finish_plain(
        &mut self,
        finished: &[FinishedAttempt],
        now: Timestamp,
    ) -> WorkResult<Vec<FinishResult>> {
        let mut seen = HashSet::new();
        let keys: Vec<&RecordKey> = finished
            .iter()
            .map(|f| &f.ticket.key)
            .filter(|key| seen.insert(*key))
            .collect();
        let mut changes = Changes::default();
        self.load(&mut changes, &keys, true).await?;
        changes.metadata_only = true;
        let mut results = Vec::with_capacity(finished.len());
        for FinishedAttempt { ticket, outcome } in finished {
            let plan = finish_attempt(changes.state(&ticket.key).item.as_ref(), ticket, outcome, now);
            changes.queue(&ticket.key, plan.queue);
            if let Some(document) = plan.document {
                changes.document(&ticket.key, document, now);
            }
            changes.copy(&ticket.key, plan.copy);
            results.push(if plan.stale {
                FinishResult::Stale
            } else {
                FinishResult::Current
            });
        }
        changes.write(&mut self.connection, &self.statements).await?;
        Ok((results, changes.events))
    }

    async fn rewrite(&mut self, rewrite: &Rewrite, now: Timestamp) -> WorkResult<u64> {
        let decide = |item: &SyncQueueItem| match rewrite {
            Rewrite::RecoverInterrupted => recover_interrupted(item, now),
            Rewrite::RearmFailed => rearm_for_pass(item, now),
            Rewrite::RetryFailed => retry_now(item, now),
            Rewrite::RetryOne(_) => retry_one(item, now),
            Rewrite::RebaseTimers(policy) => sync_core::retry::rebase_timers(item, now, policy),
        };
        let (query, bound) = match rewrite {
            Rewrite::RecoverInterrupted => (queries::PAGE_IN_FLIGHT, None),
            Rewrite::RearmFailed | Rewrite::RetryFailed => (queries::PAGE_FAILED, None),
            // Candidates through an index: normally none.
            Rewrite::RebaseTimers(policy) => (
                queries::PAGE_TIMERS_BEYOND,
                Some(sync_core::retry::rebase_candidates_after(now, policy).as_millis()),
            ),
            Rewrite::RetryOne(key) => {
                let mut changes = Changes::default();
                self.load(&mut changes, &[key], false).await?;
                let Some(item) = changes.state(key).item.as_ref().and_then(decide) else {
                    return Ok((0, Vec::new()));
                };
                changes.queue(key, QueueWrite::Put(item));
                changes.write(&mut self.connection, &self.statements).await?;
                return Ok((1, changes.events));
            }
        };
        // Page through the matching items so no single read loads them all;
        // the rewrite is one transaction, and its events are published
        // after the commit.
        let mut events = Vec::new();
        let mut count = 0;
        let mut after_seq = 0;
        loop {
            self.statements.add(1);
            let page = rows::items_page(&mut self.connection, query, after_seq, CHUNK, bound).await?;
            let Some((last_seq, _)) = page.last() else { break };
            after_seq = *last_seq;
            let mut changes = Changes::default();
            for (_, item) in &page {
                if let Some(updated) = decide(item) {
                    // An attempt cut off may have applied: what the server
                    // holds is no longer known, so its copy is forgotten.
                    if matches!(rewrite, Rewrite::RecoverInterrupted) {
                        changes.copies.insert(item.key(), None);
                    }
                    changes.queue(&item.key(), QueueWrite::Put(updated));
                    count += 1;
                }
            }
            changes.write(&mut self.connection, &self.statements).await?;
            events.append(&mut changes.events);
        }
        Ok((count, events))
    }

    async fn clear_synced(&mut self) -> WorkResult<u64> {
        self.statements.add(1);
        let removed = sqlx::query(queries::CLEAR_SYNCED)
            .execute(&mut self.connection)
            .await
            .map_err(|error| map_sqlx(error, "clearing synced items"))?
            .rows_affected();
        let events = if removed > 0 {
            vec![StoreEvent::SyncedCleared]
        } else {
            Vec::new()
        };
        Ok((removed, events))
    }
}

type SavedReply = oneshot::Sender<Result<Vec<SavedChange>, StoreError>>;
pub(crate) type WorkResult<T> = Result<(T, Vec<StoreEvent>), StoreError>;
