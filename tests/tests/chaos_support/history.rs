//! The server's history, read from the reference server's request log
//! (every applied write carries its change stamp and the record it left):
//! what each record was as of any change-feed cursor, and what a device
//! learned of it. For the scenarios that pull.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;
use sync_reference_server::RequestRecord;

/// One applied write to a record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Write {
    /// The change stamp it took in its collection's feed.
    pub(crate) stamp: u64,
    /// The record it left; `None`: it deleted it.
    pub(crate) record: Option<Value>,
    /// Whether the device made it (rather than another writer).
    pub(crate) by_device: bool,
    /// Whether it was a create (`POST`).
    pub(crate) create: bool,
}

/// One record's writes, and the latest state the device learned of it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordHistory {
    /// In stamp order.
    pub(crate) writes: Vec<Write>,
    /// The stamp as of which the answer to the device's last request to
    /// the record told its state: the stamp its write took, the stamp the
    /// write that first took its key took (a replayed answer), or the
    /// collection's last stamp when it was answered (a read, a write
    /// refused). The engine acts on the last answer of an attempt: a read
    /// followed by a write whose answer is replayed ends with the replayed
    /// state. Feed pages are not counted: the pull cursor says how far
    /// they went.
    pub(crate) device_learned: u64,
    /// Every request to the record, for failure reports: who sent it,
    /// method, status, the stamp it took or was answered at.
    pub(crate) trail: Vec<String>,
}

impl RecordHistory {
    /// The record as of `stamp`: left by its last write at or before it
    /// (`None`: absent, deleted or not created yet).
    pub(crate) fn state_at(&self, stamp: u64) -> Option<&Value> {
        self.writes
            .iter()
            .rev()
            .find(|write| write.stamp <= stamp)
            .and_then(|write| write.record.as_ref())
    }

    /// The last write, if any.
    pub(crate) fn last(&self) -> Option<&Write> {
        self.writes.last()
    }

    /// Whether the record was written after `stamp`.
    pub(crate) fn written_after(&self, stamp: u64) -> bool {
        self.last().is_some_and(|write| write.stamp > stamp)
    }

    /// The first stamp in `from..=to` as of which the record was `state`.
    pub(crate) fn first_stamp_of(&self, state: Option<&Value>, from: u64, to: u64) -> Option<u64> {
        if from > to {
            return None;
        }
        if self.state_at(from) == state {
            return Some(from);
        }
        self.writes
            .iter()
            .filter(|write| write.stamp > from && write.stamp <= to)
            .find(|write| write.record.as_ref() == state)
            .map(|write| write.stamp)
    }
}

/// Every record's history, by collection and id.
#[derive(Debug, Default)]
pub(crate) struct History {
    records: BTreeMap<(String, String), RecordHistory>,
    empty: RecordHistory,
}

impl History {
    /// Reads the request log, in the order the server handled it (under
    /// one lock, so a read's place among the writes is exact).
    /// `by_device` tells the device's requests from another writer's; the
    /// other writer must read no record through HTTP (its reads would be
    /// taken for the device's).
    pub(crate) fn from_log(log: &[RequestRecord], by_device: impl Fn(&RequestRecord) -> bool) -> Self {
        let mut history = Self::default();
        let mut last_stamp: HashMap<&str, u64> = HashMap::new();
        // Idempotency key → the stamp its write took.
        let mut key_stamps: HashMap<&str, u64> = HashMap::new();
        for entry in log {
            let Some(id) = entry.id.clone() else {
                // A list or a feed page.
                continue;
            };
            let device = by_device(entry);
            let record = history.records.entry((entry.collection.clone(), id)).or_default();
            let now = last_stamp.get(entry.collection.as_str()).copied().unwrap_or(0);
            // As of which stamp the answer tells the record's state.
            let (as_of, what) = if entry.applied {
                let stamp = entry.change.expect("an applied write has a change stamp");
                last_stamp.insert(&entry.collection, stamp);
                if let Some(key) = entry.idempotency_key.as_deref() {
                    key_stamps.insert(key, stamp);
                }
                record.writes.push(Write {
                    stamp,
                    record: entry.record.clone(),
                    by_device: device,
                    create: entry.method == "POST",
                });
                (stamp, "took")
            } else if entry.replayed {
                // The answer of the write that first took the key.
                let key = entry.idempotency_key.as_deref().unwrap_or_default();
                (key_stamps.get(key).copied().unwrap_or(now), "replayed, as of")
            } else {
                // A read, or a write refused: its answer tells the state as
                // of now (a 404 to a repeated delete is taken as done, a 409
                // to a create is sent again as an update, a 412 is followed
                // by a read).
                (now, "at")
            };
            if device {
                record.device_learned = as_of;
            }
            record.trail.push(format!(
                "{} {} {} {what} {as_of}",
                if device { "device" } else { "other" },
                entry.method,
                entry.status.as_u16()
            ));
        }
        history
    }

    /// The history of one record (empty if never written nor read).
    pub(crate) fn record(&self, collection: &str, id: &str) -> &RecordHistory {
        self.records
            .get(&(collection.to_owned(), id.to_owned()))
            .unwrap_or(&self.empty)
    }

    /// The ids of `collection` the log names.
    pub(crate) fn ids(&self, collection: &str) -> BTreeSet<String> {
        self.records
            .keys()
            .filter(|(name, _)| name == collection)
            .map(|(_, id)| id.clone())
            .collect()
    }
}
