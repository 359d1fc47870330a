//! Property test: random interleavings of local saves, attempts, lost
//! responses, failures, releases, crashes, writes by another client on the
//! server and pulls, against a simulated server, always converge once
//! pushes and pulls drain: server and device agree, no duplicate create,
//! no update of a record the server lacks (unless another client removed
//! it), a pull never touches the document of a record with a pending
//! change, and a record whose last change was saved on this device after
//! it had pulled every change of another client holds that change (no
//! local change saved after the last pull is lost).
//!
//! The simulated server honours idempotency keys (a replayed key has no
//! effect), as the reference server does. A change feed lists its records
//! changed after a cursor; pulls run only when no attempt is in flight, as
//! in the engine (pulls follow a run's pushes under its run lock).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::json;
use sync_core::attempt::{
    AttemptOutcome, SendPlan, begin_attempt, finish_attempt, rearm_for_pass, recover_interrupted, retry_now,
};
use sync_core::coalesce::{DocumentWrite, QueueWrite, SaveContext, plan_save};
use sync_core::pull::{PulledChange, plan_pulled};
use sync_core::{
    AttemptTicket, ErrorKind, JsonObject, LocalChange, OperationId, SyncOperation, SyncQueueItem, SyncStatus,
    Timestamp,
};

const KEYS: u8 = 3;

#[derive(Debug, Clone)]
enum Step {
    /// The app saves a change; `choice` picks an operation that fits the
    /// local state (create or delete when absent, any when present).
    Save { key: u8, choice: u8 },
    /// The engine claims the record's item, if it is ready.
    Begin { key: u8 },
    /// An attempt in flight ends.
    Finish { slot: usize, how: Ending },
    /// The server receives an in-flight request now; its response comes later.
    Arrive { slot: usize },
    /// A new sync pass starts.
    NewPass,
    /// The process dies: each request in flight reached the server or not.
    Crash { reached: Vec<bool> },
    /// Items in flight are recovered while their attempts are still alive
    /// (a misbehaving second engine): each request reached the server or
    /// not, and the attempts may still report outcomes later.
    Recover { reached: Vec<bool> },
    /// A zombie attempt (given up on by a recovery) reports its outcome.
    Zombie { slot: usize, how: Ending },
    /// The app clears synced items.
    ClearSynced,
    /// Another client writes the record on the server (deletes it when
    /// `delete`).
    ServerWrite { key: u8, delete: bool },
    /// The device pulls the changes after its cursor.
    Pull,
}

#[derive(Debug, Clone, Copy)]
enum Ending {
    Success {
        echo: bool,
    },
    LostResponse,
    TransientNotApplied,
    /// A transient failure after the pass's last allowed attempt: the item
    /// waits for the next pass.
    TransientPassExhausted,
    Offline,
    Permanent,
    Conflict,
    ReleasedBeforeSending,
    ReleasedAfterSending,
}

fn step() -> impl Strategy<Value = Step> {
    let ending = prop_oneof![
        any::<bool>().prop_map(|echo| Ending::Success { echo }),
        Just(Ending::LostResponse),
        Just(Ending::TransientNotApplied),
        Just(Ending::TransientPassExhausted),
        Just(Ending::Offline),
        Just(Ending::Permanent),
        Just(Ending::Conflict),
        Just(Ending::ReleasedBeforeSending),
        Just(Ending::ReleasedAfterSending),
    ];
    prop_oneof![
        4 => (0..KEYS, 0..3u8).prop_map(|(key, choice)| Step::Save { key, choice }),
        4 => (0..KEYS).prop_map(|key| Step::Begin { key }),
        4 => (0..4usize, ending.clone()).prop_map(|(slot, how)| Step::Finish { slot, how }),
        1 => (0..4usize).prop_map(|slot| Step::Arrive { slot }),
        1 => Just(Step::NewPass),
        1 => proptest::collection::vec(any::<bool>(), 4).prop_map(|reached| Step::Crash { reached }),
        1 => proptest::collection::vec(any::<bool>(), 4).prop_map(|reached| Step::Recover { reached }),
        1 => (0..4usize, ending).prop_map(|(slot, how)| Step::Zombie { slot, how }),
        1 => Just(Step::ClearSynced),
        2 => (0..KEYS, any::<bool>()).prop_map(|(key, delete)| Step::ServerWrite { key, delete }),
        2 => Just(Step::Pull),
    ]
}

struct InFlight {
    ticket: AttemptTicket,
    /// Whether the server has already received (and applied) the request.
    arrived: bool,
}

#[derive(Default)]
struct Server {
    records: BTreeMap<u8, JsonObject>,
    applied_keys: BTreeSet<OperationId>,
    /// The newest change counter this device wrote per record: its writes
    /// must never go back to an older local change.
    newest: BTreeMap<u8, u64>,
    violations: Vec<String>,
    /// Records whose last change on the server was another client's: a
    /// create meeting one is the engine's "already exists" (sent as an
    /// update), an update missing one its checked re-create.
    foreign: BTreeSet<u8>,
    /// The change feed: the stamp of each record's latest change.
    stamps: BTreeMap<u8, u64>,
    stamp: u64,
}

fn counter(payload: &JsonObject) -> u64 {
    payload
        .get("v")
        .and_then(serde_json::Value::as_u64)
        .expect("payloads carry a counter")
}

impl Server {
    /// Applies one request the way an idempotency-honouring REST server does.
    fn receive(&mut self, key: u8, ticket: &AttemptTicket) {
        if !self.applied_keys.insert(ticket.operation_id.clone()) {
            return; // A replay: already applied once.
        }
        let exists = self.records.contains_key(&key);
        let foreign = self.foreign.remove(&key);
        self.touch(key);
        match ticket.plan {
            SendPlan::Create if exists && !foreign => {
                self.violations.push(format!("duplicate create of record {key}"));
            }
            SendPlan::Update if !exists && !foreign => {
                self.violations.push(format!("update of missing record {key}"));
            }
            SendPlan::Create | SendPlan::Update | SendPlan::CreateIfAbsent => {
                let written = counter(&ticket.payload);
                let newest = self.newest.entry(key).or_default();
                if written < *newest {
                    self.violations.push(format!(
                        "record {key} went back from change {newest} to {written}"
                    ));
                }
                *newest = written.max(*newest);
                self.records.insert(key, ticket.payload.clone());
            }
            SendPlan::Delete if !exists && !foreign => self.violations.push(format!(
                "a delete of record {key} not known to be on the server was sent unchecked"
            )),
            SendPlan::Delete | SendPlan::RepeatDelete => {
                self.records.remove(&key);
            }
        }
    }
}

impl Server {
    /// A record changed: it goes to the end of the change feed.
    fn touch(&mut self, key: u8) {
        self.stamp += 1;
        self.stamps.insert(key, self.stamp);
    }

    /// Another client's write.
    fn foreign_write(&mut self, key: u8, data: Option<JsonObject>) {
        self.touch(key);
        self.foreign.insert(key);
        match data {
            Some(data) => self.records.insert(key, data),
            None => self.records.remove(&key),
        };
    }

    /// The changes after `cursor`, in feed order, and the next cursor.
    fn changes_after(&self, cursor: u64) -> (Vec<PulledChange>, u64) {
        let mut changed: Vec<(u64, u8)> = self
            .stamps
            .iter()
            .filter(|(_, stamp)| **stamp > cursor)
            .map(|(key, stamp)| (*stamp, *key))
            .collect();
        changed.sort_unstable();
        let changes = changed
            .iter()
            .map(|(_, key)| {
                let id = sync_core::RecordId::from(u64::from(*key));
                match self.records.get(key) {
                    Some(data) => PulledChange::Upsert {
                        id,
                        data: data.clone(),
                        version: None,
                    },
                    None => PulledChange::Tombstone { id },
                }
            })
            .collect();
        (changes, self.stamp)
    }
}

/// Who made a record's latest change, for the "no local change lost" check.
#[derive(Debug, Clone, PartialEq)]
enum LastChange {
    /// This device saved this document (`None`: deleted).
    Local(Option<JsonObject>),
    /// Another client, on the server.
    Server,
}

struct World {
    now: i64,
    queue: BTreeMap<u8, SyncQueueItem>,
    documents: BTreeMap<u8, JsonObject>,
    in_flight: Vec<InFlight>,
    /// Attempts given up on by a recovery while still alive.
    zombies: Vec<InFlight>,
    server: Server,
    counter: u64,
    /// The device's pull cursor.
    cursor: u64,
    last_change: BTreeMap<u8, LastChange>,
    /// Records another client wrote since the device's last pull.
    unseen: BTreeSet<u8>,
}

impl World {
    fn new() -> Self {
        Self {
            now: 1_000,
            queue: BTreeMap::new(),
            documents: BTreeMap::new(),
            in_flight: Vec::new(),
            zombies: Vec::new(),
            server: Server::default(),
            counter: 0,
            cursor: 0,
            last_change: BTreeMap::new(),
            unseen: BTreeSet::new(),
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now)
    }

    fn key_of(ticket: &AttemptTicket) -> u8 {
        ticket.key.id.as_str().parse().expect("ids are small numbers")
    }

    fn apply_queue(&mut self, key: u8, write: QueueWrite) {
        match write {
            QueueWrite::Put(item) => {
                assert!(
                    item.last_error.is_some()
                        || (item.last_error_kind, item.last_error_http_status) == (None, None),
                    "the error's kind and HTTP status outlived the error: {item:?}"
                );
                self.queue.insert(key, item);
            }
            QueueWrite::Remove => {
                self.queue.remove(&key);
            }
            QueueWrite::Keep => {}
        }
    }

    fn apply_document(&mut self, key: u8, write: DocumentWrite) {
        match write {
            DocumentWrite::Upsert(data) => {
                self.documents.insert(key, data);
            }
            DocumentWrite::Remove => {
                self.documents.remove(&key);
            }
        }
    }

    fn save(&mut self, key: u8, choice: u8) {
        let exists = self.documents.contains_key(&key);
        let operation = match (exists, choice) {
            (false, 0 | 1) => SyncOperation::Create,
            (false, _) | (true, 2) => SyncOperation::Delete,
            (true, 0) => SyncOperation::Create,
            (true, _) => SyncOperation::Update,
        };
        self.counter += 1;
        let change = LocalChange::new("tasks", key.to_string(), json!({ "v": self.counter }), operation)
            .expect("valid change");
        let plan = plan_save(self.queue.get(&key), exists, change, SaveContext::at(self.now()));
        // A change with nothing to send (a create deleted before it was
        // sent) never meets the server: a record another client made with
        // the same id meanwhile is not this device's to remove. A change
        // saved before the device saw another client's write is concurrent
        // with it: either may win.
        let sends = matches!(plan.queue, QueueWrite::Put(_));
        self.apply_queue(key, plan.queue);
        self.apply_document(key, plan.document);
        if sends && !self.unseen.contains(&key) {
            self.last_change
                .insert(key, LastChange::Local(self.documents.get(&key).cloned()));
        } else {
            self.last_change.remove(&key);
        }
    }

    fn server_write(&mut self, key: u8, delete: bool) {
        self.counter += 1;
        let data = (!delete).then(|| {
            json!({ "v": self.counter, "by": "another client" })
                .as_object()
                .cloned()
                .expect("an object")
        });
        self.server.foreign_write(key, data);
        self.last_change.insert(key, LastChange::Server);
        self.unseen.insert(key);
    }

    /// Pulls every change after the cursor, as one page applied at once.
    /// Only between runs: no attempt is in flight.
    fn pull(&mut self) {
        if !self.in_flight.is_empty() {
            return;
        }
        let (changes, cursor) = self.server.changes_after(self.cursor);
        let now = self.now();
        for change in &changes {
            let key: u8 = change.id().as_str().parse().expect("ids are small numbers");
            let exists = self.documents.contains_key(&key);
            let pending = self
                .queue
                .get(&key)
                .is_some_and(|item| item.status != SyncStatus::Synced);
            let plan = plan_pulled(self.queue.get(&key), exists, change, None, now);
            assert!(
                !pending || plan.document.is_none(),
                "a pull overwrote record {key}'s pending change"
            );
            self.apply_queue(key, plan.queue);
            if let Some(document) = plan.document {
                self.apply_document(key, document);
            }
        }
        self.cursor = cursor;
        self.unseen.clear();
    }

    fn begin(&mut self, key: u8) {
        let now = self.now();
        let Some((claimed, ticket)) = self.queue.get(&key).and_then(|item| begin_attempt(item, now)) else {
            return;
        };
        assert!(
            self.in_flight.iter().all(|f| f.ticket.key != ticket.key),
            "two attempts in flight for record {key}"
        );
        self.queue.insert(key, claimed);
        self.in_flight.push(InFlight {
            ticket,
            arrived: false,
        });
    }

    fn arrive(&mut self, slot: usize) {
        if self.in_flight.is_empty() {
            return;
        }
        let slot = slot % self.in_flight.len();
        let flight = &mut self.in_flight[slot];
        if !flight.arrived {
            flight.arrived = true;
            let key = Self::key_of(&flight.ticket);
            self.server.receive(key, &flight.ticket);
        }
    }

    fn finish(&mut self, slot: usize, how: Ending) {
        if self.in_flight.is_empty() {
            return;
        }
        let flight = self.in_flight.remove(slot % self.in_flight.len());
        self.report(flight, how);
    }

    /// A zombie reports: its request already reached the server or never
    /// will, so only the outcome arrives, and it must change nothing.
    fn zombie(&mut self, slot: usize, how: Ending) {
        if self.zombies.is_empty() {
            return;
        }
        let mut flight = self.zombies.remove(slot % self.zombies.len());
        flight.arrived = true;
        let key = Self::key_of(&flight.ticket);
        let before = self.queue.get(&key).cloned();
        self.report(flight, how);
        assert_eq!(
            self.queue.get(&key),
            before.as_ref(),
            "a zombie's outcome changed record {key}"
        );
    }

    fn report(&mut self, flight: InFlight, how: Ending) {
        let key = Self::key_of(&flight.ticket);
        let deliver = |server: &mut Server| {
            if !flight.arrived {
                server.receive(key, &flight.ticket);
            }
        };
        let retry_at = Some(Timestamp::from_millis(self.now + 500));
        let failed = |kind, possibly_applied: bool| AttemptOutcome::Failed {
            kind,
            message: format!("{kind:?}"),
            http_status: match kind {
                ErrorKind::Conflict => Some(409),
                ErrorKind::Permanent => Some(422),
                _ => None,
            },
            possibly_applied,
            next_attempt_at: if kind == ErrorKind::Permanent {
                None
            } else {
                retry_at
            },
            not_before: None,
        };
        let outcome = match how {
            Ending::Success { echo } => {
                deliver(&mut self.server);
                AttemptOutcome::Applied {
                    replace_local_with: echo.then(|| self.server.records.get(&key).cloned()).flatten(),
                    server_version: None,
                }
            }
            Ending::LostResponse => {
                deliver(&mut self.server);
                failed(ErrorKind::Transient, true)
            }
            // The request may have arrived already (`Arrive`): the error
            // classification must then say "possibly applied", as a real
            // adapter's does for anything but refused connections and 4xx.
            Ending::TransientNotApplied => failed(ErrorKind::Transient, true),
            Ending::TransientPassExhausted => AttemptOutcome::Failed {
                kind: ErrorKind::Transient,
                message: "HTTP 503".into(),
                http_status: Some(503),
                possibly_applied: true,
                next_attempt_at: None,
                not_before: Some(Timestamp::from_millis(self.now + 1_500)),
            },
            Ending::Conflict => failed(ErrorKind::Conflict, true),
            Ending::Offline if !flight.arrived => failed(ErrorKind::Offline, false),
            Ending::Permanent if !flight.arrived => failed(ErrorKind::Permanent, false),
            Ending::ReleasedBeforeSending if !flight.arrived => AttemptOutcome::Released {
                possibly_applied: false,
            },
            Ending::Offline
            | Ending::Permanent
            | Ending::ReleasedBeforeSending
            | Ending::ReleasedAfterSending => {
                deliver(&mut self.server);
                AttemptOutcome::Released {
                    possibly_applied: true,
                }
            }
        };
        let plan = finish_attempt(self.queue.get(&key), &flight.ticket, &outcome, self.now());
        self.apply_queue(key, plan.queue);
        if let Some(document) = plan.document {
            self.apply_document(key, document);
        }
    }

    fn new_pass(&mut self) {
        let now = self.now();
        for item in self.queue.values_mut() {
            if let Some(rearmed) = rearm_for_pass(item, now) {
                *item = rearmed;
            }
        }
    }

    fn crash(&mut self, reached: &[bool]) {
        self.zombies.clear();
        self.give_up_in_flight(reached);
    }

    fn recover(&mut self, reached: &[bool]) {
        let alive = self.give_up_in_flight(reached);
        self.zombies.extend(alive);
    }

    /// Every attempt in flight either reached the server or never will; then
    /// items in flight are recovered. Returns the abandoned attempts.
    fn give_up_in_flight(&mut self, reached: &[bool]) -> Vec<InFlight> {
        let mut abandoned = std::mem::take(&mut self.in_flight);
        for (index, flight) in abandoned.iter_mut().enumerate() {
            if !flight.arrived && reached.get(index).copied().unwrap_or(false) {
                self.server.receive(Self::key_of(&flight.ticket), &flight.ticket);
            }
            flight.arrived = true;
        }
        let now = self.now();
        for item in self.queue.values_mut() {
            if let Some(recovered) = recover_interrupted(item, now) {
                *item = recovered;
            }
        }
        abandoned
    }

    fn clear_synced(&mut self) {
        self.queue
            .retain(|_, item| item.status != SyncStatus::Synced || item.is_in_flight());
    }

    fn run(&mut self, step: &Step) {
        self.now += 1_000;
        match step {
            Step::Save { key, choice } => self.save(*key, *choice),
            Step::Begin { key } => self.begin(*key),
            Step::Finish { slot, how } => self.finish(*slot, *how),
            Step::Arrive { slot } => self.arrive(*slot),
            Step::NewPass => self.new_pass(),
            Step::Crash { reached } => self.crash(reached),
            Step::Recover { reached } => self.recover(reached),
            Step::Zombie { slot, how } => self.zombie(*slot, *how),
            Step::ClearSynced => self.clear_synced(),
            Step::ServerWrite { key, delete } => self.server_write(*key, *delete),
            Step::Pull => self.pull(),
        }
        for item in self.queue.values() {
            let out = self.in_flight.iter().find(|f| f.ticket.key == item.key());
            assert_eq!(
                item.in_flight,
                out.map(|f| f.ticket.attempt),
                "in-flight mark of {} disagrees",
                item.key()
            );
        }
    }

    /// Lets every attempt succeed until nothing is left to send, using only
    /// new passes and the clock. Only items parked by a permanent error may
    /// need the app's explicit retry; anything else needing it is stuck.
    fn drain(&mut self) {
        for _ in 0..20 {
            while !self.in_flight.is_empty() {
                self.finish(0, Ending::Success { echo: false });
            }
            self.now += 1_000;
            let now = self.now();
            for item in self.queue.values_mut() {
                if let Some(rearmed) = rearm_for_pass(item, now) {
                    *item = rearmed;
                }
                if item.is_parked() {
                    *item = retry_now(item, now).expect("a parked item can be retried");
                }
            }
            for key in 0..KEYS {
                self.begin(key);
            }
            let stuck: Vec<&SyncQueueItem> = self
                .queue
                .values()
                .filter(|item| {
                    item.status != SyncStatus::Synced
                        && !item.is_in_flight()
                        && item.next_attempt_at.is_none()
                })
                .collect();
            assert!(stuck.is_empty(), "items that no pass will ever send: {stuck:#?}");
            if self.in_flight.is_empty() && self.queue.values().all(|item| item.status == SyncStatus::Synced)
            {
                // Pushes drained: the last pull brings the echoes and
                // whatever another client wrote after them.
                self.pull();
                if self.queue.values().all(|item| item.status == SyncStatus::Synced) {
                    return;
                }
            }
        }
        panic!("queue did not drain: {:#?}", self.queue);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4096,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_history_converges_to_the_last_local_state(steps in proptest::collection::vec(step(), 1..60)) {
        let mut world = World::new();
        for step in &steps {
            world.run(step);
        }
        world.drain();
        prop_assert!(world.server.violations.is_empty(), "violations: {:?}", world.server.violations);
        for key in 0..KEYS {
            prop_assert_eq!(
                world.server.records.get(&key),
                world.documents.get(&key),
                "record {} differs between server and local", key
            );
            if let Some(LastChange::Local(saved)) = world.last_change.get(&key) {
                prop_assert_eq!(
                    world.documents.get(&key),
                    saved.as_ref(),
                    "record {} lost the change saved last on this device", key
                );
            }
        }
    }
}
