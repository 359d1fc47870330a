//! [`Pass`]: one pass over the queue. It claims ready items in pages,
//! sends them, and records their outcomes; failed items are retried within
//! the pass as their timers fall due, up to `max_retries` attempts each.
//!
//! Every item a pass claims ends in a recorded outcome before the pass
//! returns `Ok`. A pass stopped half-way (its task aborted, a store
//! failure) leaves [`Shared::claims_unsettled`] set, and the next pass
//! reclaims what it left in flight: passes run one at a time, so no live
//! send owns those items any more.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sync_core::{
    ApiError, AttemptId, AttemptOutcome, AttemptTicket, ErrorKind, FinishResult, FinishedAttempt, RecordKey,
};
use tracing::Instrument;

use crate::error::SyncError;
use crate::events::{AttemptEvent, AttemptResult, SyncEvent};
use crate::manager::SyncReport;
use crate::order::{Gate, PageOrder, held};
use crate::send::{Sent, send};
use crate::sends::{CatchPanic, Panicked, Sends};
use crate::shared::{Shared, lock};

/// The smallest and largest pages a pass claims. A pass starts small and
/// doubles its page after each full one (a backlog is draining), because
/// every claim and every recording is a store round trip whose cost a
/// bigger page shares out; the cap bounds the items claimed but not yet
/// sent (each costs a check after a crash, or when saved to meanwhile).
pub(crate) const MIN_PAGE: usize = 4;
pub(crate) const MAX_PAGE: usize = 64;

/// What sending a page produced.
struct PageSent {
    /// Every outcome, to record.
    finished: Vec<FinishedAttempt>,
    /// Attempts that failed.
    failed: u64,
    /// The link was lost: the pass stops.
    offline: bool,
    /// A send panicked outside the attempt (its ticket was lost with it).
    lost_ticket: bool,
}

pub(crate) struct Pass<'a> {
    shared: &'a Shared,
    rearm: bool,
    /// Set when the auto-sync that started this pass was stopped.
    stop: Option<&'a AtomicBool>,
    /// Failed attempts per record in this pass (behind a lock because
    /// sending a page shares the pass with recording the previous one).
    attempts: Mutex<HashMap<RecordKey, u32>>,
    /// Whether a ticket was lost: the pass then leaves its claims for the
    /// next pass to reclaim.
    lost_ticket: bool,
    /// How long each attempt sent took, until its outcome is recorded.
    durations: Mutex<HashMap<AttemptId, Duration>>,
    /// The creates the last page applied (their outcomes are recorded
    /// while the next page goes out), for dependency order.
    applied_creates: Mutex<HashSet<RecordKey>>,
}

impl<'a> Pass<'a> {
    pub(crate) fn new(shared: &'a Shared, rearm: bool, stop: Option<&'a AtomicBool>) -> Self {
        Self {
            shared,
            rearm,
            stop,
            attempts: Mutex::new(HashMap::new()),
            lost_ticket: false,
            durations: Mutex::new(HashMap::new()),
            applied_creates: Mutex::new(HashSet::new()),
        }
    }

    /// Whether the pass should claim nothing more: the engine is closing,
    /// or the auto-sync that started it was stopped.
    fn stopping(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst) || self.stop.is_some_and(|stop| stop.load(Ordering::SeqCst))
    }

    pub(crate) async fn run(self) -> Result<SyncReport, SyncError> {
        let span = tracing::info_span!("sync_pass", rearm = self.rearm);
        self.run_unspanned().instrument(span).await
    }

    /// How many items the first claim of a pass takes: the free slots plus
    /// a small lookahead, so claimed-but-unsent items stay few when the app
    /// saves a handful of changes.
    fn first_page_size(&self) -> usize {
        (self.shared.options.concurrency * 4).clamp(MIN_PAGE, MAX_PAGE)
    }

    /// Before claiming: reclaims what a stopped pass left in flight,
    /// re-arms failed items for a full pass, and brings back timers a clock
    /// moved back has pushed out of reach (after re-arming, which may set
    /// a timer from a `Retry-After` the jump stretched).
    async fn prepare(&self) -> Result<(), SyncError> {
        let shared = self.shared;
        let (now, moved_back) = shared.observe_clock();
        if shared.claims_unsettled.load(Ordering::SeqCst) {
            let reclaimed = shared.store.recover_interrupted(now).await?;
            if reclaimed > 0 {
                tracing::warn!(reclaimed, "reclaimed items a stopped pass had left in flight");
            }
        }
        shared.claims_unsettled.store(true, Ordering::SeqCst);
        if self.rearm {
            shared.store.rearm_failed(now).await?;
        }
        if moved_back {
            shared.rebase_timers(now).await?;
        }
        Ok(())
    }

    async fn run_unspanned(mut self) -> Result<SyncReport, SyncError> {
        let shared = self.shared;
        let mut report = SyncReport::default();
        self.prepare().await?;
        if !shared.is_online(self.rearm).await {
            tracing::info!("offline: nothing sent");
            report.offline = true;
            report.still_pending = shared.pending().await?;
            shared.claims_unsettled.store(false, Ordering::SeqCst);
            return Ok(report);
        }
        // A pass waits for retry timers only this long; later ones are
        // picked up by auto-sync or the next run.
        let horizon = shared
            .policy
            .base_delay()
            .saturating_mul(shared.policy.max_retries().saturating_add(1));
        // Outcomes of the page last sent, recorded while the next page is
        // on the wire: the store's writes overlap the requests. Until
        // recorded, those items stay in flight, so nothing overtakes them.
        let mut unrecorded: Vec<FinishedAttempt> = Vec::new();
        let mut page = self.first_page_size();
        // The next page, claimed while the current one was on the wire
        // (only after a full page: a backlog is draining).
        let mut prefetched: Option<Vec<AttemptTicket>> = None;
        // The first store failure: the loop stops, and outcomes and a page
        // claimed ahead are still recorded below before it is returned.
        let mut failure: Option<SyncError> = None;
        while !self.stopping() {
            // Registered before looking, so no wakeup falls in between.
            let woken = shared.wake.notified();
            let new_work = shared.work.notified();
            tokio::pin!(woken, new_work);
            woken.as_mut().enable();
            new_work.as_mut().enable();
            let tickets = match prefetched.take() {
                Some(tickets) => tickets,
                None => match self.claim(page).await {
                    Ok(tickets) => tickets,
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                },
            };
            // A full page means a backlog is draining.
            let backlog = tickets.len() == page;
            page = if backlog {
                (page * 2).min(MAX_PAGE)
            } else {
                self.first_page_size()
            };
            if tickets.is_empty() {
                if !unrecorded.is_empty() {
                    // Failed items get their retry timers once recorded.
                    report.sent += self.record(std::mem::take(&mut unrecorded)).await?;
                    continue;
                }
                // The clock moved back while this pass ran: timers set
                // before may be out of reach; bring them back and look again.
                let (_, moved_back) = shared.observe_clock();
                if moved_back {
                    shared.rebase_timers(shared.clock.now()).await?;
                    continue;
                }
                let Some(at) = shared.store.next_attempt_time().await? else {
                    break;
                };
                let delay = at.saturating_duration_since(shared.clock.now());
                if delay > horizon || shared.full_pass_pending() {
                    break;
                }
                let ended = tokio::select! {
                    () = tokio::time::sleep(delay) => false,
                    () = &mut new_work => false,
                    // sync_now, connectivity or close: the next pass starts
                    // fresh, with retry waits ended.
                    () = &mut woken => true,
                };
                if ended {
                    break;
                }
                continue;
            }
            let previous = std::mem::take(&mut unrecorded);
            // The store's work (recording the last page, claiming the next)
            // overlaps this page's requests.
            let (sent, recorded, next) =
                tokio::join!(self.send_page(tickets), self.record(previous), async {
                    if backlog && !self.stopping() {
                        self.claim(page).await.map(Some)
                    } else {
                        Ok(None)
                    }
                });
            report.failed += sent.failed;
            self.lost_ticket |= sent.lost_ticket;
            unrecorded = sent.finished;
            match recorded {
                Ok(count) => report.sent += count,
                Err(error) => failure = Some(error),
            }
            match next {
                Ok(next) => prefetched = next,
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
            if failure.is_some() {
                break;
            }
            if sent.offline {
                report.offline = true;
                break;
            }
        }
        // A page claimed ahead and not sent goes back as it was.
        if let Some(tickets) = prefetched {
            unrecorded.extend(tickets.into_iter().map(|ticket| release(ticket, false)));
        }
        let recorded = self.record(unrecorded).await;
        if let Some(error) = failure {
            return Err(error);
        }
        report.sent += recorded?;
        // Every claim of this pass is recorded (unless a ticket was lost
        // in a panic): nothing for the next pass to reclaim.
        if !self.lost_ticket {
            shared.claims_unsettled.store(false, Ordering::SeqCst);
        }
        report.still_pending = shared.pending().await?;
        tracing::info!(
            sent = report.sent,
            failed = report.failed,
            still_pending = report.still_pending,
            "sync pass done"
        );
        Ok(report)
    }

    /// Claims up to `page` ready items.
    async fn claim(&self, page: usize) -> Result<Vec<AttemptTicket>, SyncError> {
        Ok(self
            .shared
            .store
            .claim_ready(self.shared.clock.now(), page)
            .await?)
    }

    /// Records outcomes in one store call; returns how many were applied
    /// to the version they were sent for.
    async fn record(&self, finished: Vec<FinishedAttempt>) -> Result<u64, SyncError> {
        if finished.is_empty() {
            return Ok(0);
        }
        let applied: Vec<bool> = finished
            .iter()
            .map(|f| {
                matches!(
                    f.outcome,
                    AttemptOutcome::Applied { .. } | AttemptOutcome::AppliedAs { .. }
                )
            })
            .collect();
        // The events of the attempts sent (not of tickets given back
        // unsent), built only for a listener.
        let events: Vec<_> = if self.shared.events.listened() {
            let mut durations = lock(&self.durations);
            finished
                .iter()
                .map(|f| {
                    // A held ticket sent nothing: its event has no duration.
                    let held = matches!(f.outcome, AttemptOutcome::Held { .. }).then_some(Duration::ZERO);
                    durations.remove(&f.ticket.attempt).or(held).map(|duration| {
                        (
                            f.ticket.key.clone(),
                            f.ticket.operation,
                            AttemptResult::of(&f.outcome),
                            duration,
                        )
                    })
                })
                .collect()
        } else {
            lock(&self.durations).clear();
            Vec::new()
        };
        let results = self
            .shared
            .store
            .finish_attempts(finished, self.shared.clock.now())
            .await?;
        for (event, result) in events.into_iter().zip(&results) {
            if let Some((key, operation, attempt, duration)) = event {
                self.shared.events.send(SyncEvent::Attempted(AttemptEvent {
                    key,
                    operation,
                    result: attempt,
                    duration,
                    current: *result == FinishResult::Current,
                }));
            }
        }
        Ok(applied
            .into_iter()
            .zip(results)
            .filter(|(applied, result)| *applied && *result == FinishResult::Current)
            .count() as u64)
    }

    /// Sends a page of tickets with bounded concurrency.
    async fn send_page(&self, tickets: Vec<AttemptTicket>) -> PageSent {
        let shared = self.shared;
        let concurrency = shared.options.concurrency;
        let mut running = Sends::for_concurrency(concurrency);
        let mut sent = PageSent {
            finished: Vec::with_capacity(tickets.len()),
            failed: 0,
            offline: false,
            lost_ticket: false,
        };
        let applied_before = std::mem::take(&mut *lock(&self.applied_creates));
        let mut order = PageOrder::new(shared, &tickets, applied_before);
        let mut queue: VecDeque<AttemptTicket> = tickets.into();
        // Tickets waiting for a page-mate's attempt to end.
        let mut waiting: VecDeque<AttemptTicket> = VecDeque::new();
        loop {
            while running.len() < concurrency && !sent.offline && !self.stopping() {
                let Some(ticket) = next_to_send(&mut order, &mut waiting, &mut queue, &mut sent).await else {
                    break;
                };
                // Before each remote call: is the link still there?
                if !shared.is_online(false).await {
                    sent.offline = true;
                    sent.finished.push(release(ticket, false));
                    break;
                }
                if shared.events.listened() {
                    shared.events.send(SyncEvent::Sending {
                        key: ticket.key.clone(),
                        operation: ticket.operation,
                    });
                }
                running.push(attempt(shared, ticket));
            }
            let Some(joined) = running.next().await else {
                break;
            };
            let Ok((ticket, result, duration)) = joined else {
                // Only the bookkeeping around an attempt can get here (the
                // attempt's own panics are caught with their ticket): the
                // next pass reclaims the item.
                tracing::error!("a send task panicked outside its attempt");
                sent.lost_ticket = true;
                continue;
            };
            let outcome = self.outcome(&ticket, result, &mut sent).await;
            // Kept for the outcome's event, when someone listens.
            if shared.events.listened() {
                lock(&self.durations).insert(ticket.attempt, duration);
            }
            order.ended(&ticket.key, ticket.operation, &outcome);
            sent.finished.push(FinishedAttempt { ticket, outcome });
        }
        // Tickets still waiting for a page-mate that can no longer end (its
        // attempt was lost, the link dropped, the pass is stopping) are held
        // or go back as they were, with those never started.
        let stopped = sent.offline || self.stopping();
        for ticket in waiting {
            let outcome = if stopped {
                AttemptOutcome::Released {
                    possibly_applied: false,
                }
            } else {
                order.held_here()
            };
            sent.finished.push(FinishedAttempt { ticket, outcome });
        }
        sent.finished
            .extend(queue.into_iter().map(|ticket| release(ticket, false)));
        *lock(&self.applied_creates) = order.into_applied();
        sent
    }

    /// The outcome to record for one attempt.
    async fn outcome(
        &self,
        ticket: &AttemptTicket,
        result: Result<Sent, Panicked>,
        sent: &mut PageSent,
    ) -> AttemptOutcome {
        let shared = self.shared;
        let error = match result {
            Ok(Sent::Applied(outcome)) => return outcome,
            Ok(Sent::NotFound) => return AttemptOutcome::NotFound,
            Ok(Sent::Failed(error)) => error,
            Err(Panicked) => {
                tracing::error!(entity = %ticket.key.entity, "the adapter or the conflict resolver panicked");
                ApiError::new(
                    ErrorKind::Permanent,
                    "the adapter or the conflict resolver panicked during this attempt (a bug in app code): \
                     the item is parked; fix the bug, then retry the item",
                )
                .with_possibly_applied(true)
            }
        };
        let may_be_offline = matches!(error.kind(), ErrorKind::Offline | ErrorKind::Transient);
        if may_be_offline && !shared.is_online(true).await {
            // The link dropped mid-request: no attempt used, no error
            // recorded.
            sent.offline = true;
            return AttemptOutcome::Released {
                possibly_applied: error.possibly_applied(),
            };
        }
        // Kind and status only: the message may quote the server's answer,
        // and record ids are personal data in many apps (debug level).
        tracing::warn!(
            kind = %error.kind(),
            status = error.status(),
            request = error.request(),
            "attempt failed"
        );
        tracing::debug!(entity = %ticket.key.entity, id = %ticket.key.id, "the failed attempt's record");
        let count = self.attempts_of(&ticket.key);
        let schedule = shared.policy.after_failure(
            count,
            error.kind(),
            error.retry_after(),
            shared.clock.now(),
            AttemptId::generate().as_u64(),
        );
        sent.failed += 1;
        AttemptOutcome::Failed {
            kind: error.kind(),
            message: error.to_string(),
            http_status: error.status(),
            possibly_applied: error.possibly_applied(),
            next_attempt_at: schedule.next_attempt_at,
            not_before: schedule.not_before,
        }
    }

    /// Counts one more failed attempt of `key` in this pass.
    fn attempts_of(&self, key: &RecordKey) -> u32 {
        let mut attempts = lock(&self.attempts);
        let count = attempts.entry(key.clone()).or_insert(0);
        *count += 1;
        *count
    }
}

/// The next ticket of the page to send: a waiting one whose page-mate
/// ended, else the next of the queue. Tickets that must wait for a
/// page-mate are set aside; those held by a record outside the page end
/// here with their hold.
async fn next_to_send(
    order: &mut PageOrder<'_>,
    waiting: &mut VecDeque<AttemptTicket>,
    queue: &mut VecDeque<AttemptTicket>,
    sent: &mut PageSent,
) -> Option<AttemptTicket> {
    let mut still_waiting = VecDeque::new();
    let mut found = None;
    while let Some(ticket) = waiting.pop_front() {
        match order.gate(&ticket).await {
            Gate::Go => {
                found = Some(ticket);
                break;
            }
            Gate::Wait => still_waiting.push_back(ticket),
            Gate::Hold(hold) => {
                let outcome = held(hold);
                order.ended(&ticket.key, ticket.operation, &outcome);
                sent.finished.push(FinishedAttempt { ticket, outcome });
            }
        }
    }
    still_waiting.append(waiting);
    *waiting = still_waiting;
    if found.is_some() {
        return found;
    }
    while let Some(ticket) = queue.pop_front() {
        match order.gate(&ticket).await {
            Gate::Go => return Some(ticket),
            Gate::Wait => waiting.push_back(ticket),
            Gate::Hold(hold) => {
                let outcome = held(hold);
                order.ended(&ticket.key, ticket.operation, &outcome);
                sent.finished.push(FinishedAttempt { ticket, outcome });
            }
        }
    }
    None
}

/// One attempt as a future the page can run: the requests of its plan,
/// bounded by `attempt_timeout`, with a panic caught along with its ticket.
fn attempt(
    shared: &Shared,
    ticket: AttemptTicket,
) -> impl std::future::Future<Output = (AttemptTicket, Result<Sent, Panicked>, Duration)> + Send + 'static {
    let adapter = Arc::clone(&shared.adapter);
    let resolver = shared.resolver.clone();
    let limit = shared.options.attempt_timeout;
    let referring = if ticket.key.id.is_temporary() {
        shared.references.referring_to(&ticket.key.entity)
    } else {
        Vec::new()
    };
    let span = tracing::info_span!(
        "sync_item",
        entity = %ticket.key.entity,
        operation = %ticket.operation,
        version = ticket.version,
    );
    async move {
        let started = tokio::time::Instant::now();
        let result = CatchPanic::new(async {
            match tokio::time::timeout(
                limit,
                send(adapter.as_ref(), resolver.as_deref(), &ticket, referring),
            )
            .await
            {
                Ok(sent) => sent,
                Err(_) => Sent::Failed(
                    ApiError::new(
                        ErrorKind::Transient,
                        format!(
                            "the attempt did not finish within {limit:?} (attempt_timeout): the server, the \
                             adapter or the conflict resolver hung; it is retried"
                        ),
                    )
                    .with_possibly_applied(true),
                ),
            }
        })
        .await;
        (ticket, result, started.elapsed())
    }
    .instrument(span)
}

fn release(ticket: AttemptTicket, possibly_applied: bool) -> FinishedAttempt {
    FinishedAttempt {
        ticket,
        outcome: AttemptOutcome::Released { possibly_applied },
    }
}
