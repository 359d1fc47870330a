//! Fakes of the network seams for engine tests: an in-memory server behind
//! [`FakeAdapter`] with scriptable failures, and a switchable
//! [`FakeMonitor`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use sync_core::{
    ApiError, BoxStream, ConnectivityMonitor, EntityName, ErrorKind, JsonObject, OperationId, RecordId,
    RecordKey, SyncApiAdapter,
};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;

/// One request the fake server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRequest {
    /// `POST`, `PUT`, `DELETE` or `GET`.
    pub method: &'static str,
    /// The record.
    pub key: RecordKey,
    /// The idempotency key, for writes.
    pub operation_id: Option<OperationId>,
}

/// What the next matching request does instead of succeeding.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Fail with this error without applying anything.
    Fail(ErrorKind, Option<u16>),
    /// Apply the request, then fail as if the response was lost.
    LoseResponse,
    /// Refuse with 429 and `Retry-After`, applying nothing.
    Throttle(std::time::Duration),
}

#[derive(Debug, Default)]
struct State {
    latency: std::time::Duration,
    /// A field the server adds to every record it stores (like a server
    /// timestamp), so tests can see the server's answer reach the client.
    stamp: Option<(String, serde_json::Value)>,
    records: BTreeMap<RecordKey, JsonObject>,
    requests: Vec<FakeRequest>,
    faults: VecDeque<(Option<RecordKey>, Fault)>,
    applied_keys: Vec<OperationId>,
}

/// An in-memory REST server behind the adapter trait: creates, updates,
/// deletes and fetches apply to a map, every request is recorded, and
/// scripted faults fail chosen requests.
#[derive(Debug, Clone, Default)]
pub struct FakeAdapter {
    state: Arc<Mutex<State>>,
}

impl FakeAdapter {
    /// An empty server.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in a test thread poisons the lock; the data is still fine.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fails the next request (for `key`, or any record) with `fault`.
    pub fn fail_next(&self, key: Option<RecordKey>, fault: Fault) {
        self.lock().faults.push_back((key, fault));
    }

    /// Makes every request take `latency` (in tokio time) before it is
    /// handled.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.lock().latency = latency;
    }

    async fn delay(&self) {
        let latency = self.lock().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// Adds `field: value` to every record the server stores from now on.
    pub fn stamp_records(&self, field: &str, value: serde_json::Value) {
        self.lock().stamp = Some((field.to_owned(), value));
    }

    /// Puts a record on the server directly.
    pub fn insert(&self, key: RecordKey, data: JsonObject) {
        self.lock().records.insert(key, data);
    }

    /// Removes a record from the server, as another client would.
    pub fn remove(&self, key: &RecordKey) {
        self.lock().records.remove(key);
    }

    /// The server's records.
    #[must_use]
    pub fn records(&self) -> BTreeMap<RecordKey, JsonObject> {
        self.lock().records.clone()
    }

    /// Every request received, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.lock().requests.clone()
    }

    /// Requests received for one record, as `"METHOD"` strings.
    #[must_use]
    pub fn methods_for(&self, key: &RecordKey) -> Vec<&'static str> {
        self.lock()
            .requests
            .iter()
            .filter(|r| &r.key == key)
            .map(|r| r.method)
            .collect()
    }

    fn take_fault(state: &mut State, key: &RecordKey) -> Option<Fault> {
        let position = state
            .faults
            .iter()
            .position(|(target, _)| target.as_ref().is_none_or(|t| t == key))?;
        state.faults.remove(position).map(|(_, fault)| fault)
    }

    fn handle(
        &self,
        method: &'static str,
        key: RecordKey,
        operation_id: Option<&OperationId>,
        apply: impl FnOnce(
            &mut BTreeMap<RecordKey, JsonObject>,
            &dyn Fn(&JsonObject) -> JsonObject,
        ) -> Result<Option<JsonObject>, ApiError>,
    ) -> Result<Option<JsonObject>, ApiError> {
        let mut state = self.lock();
        state.requests.push(FakeRequest {
            method,
            key: key.clone(),
            operation_id: operation_id.cloned(),
        });
        let fault = Self::take_fault(&mut state, &key);
        if let Some(Fault::Throttle(delay)) = &fault {
            return Err(ApiError::new(ErrorKind::Transient, "scripted 429")
                .with_status(429)
                .with_retry_after(*delay)
                .with_possibly_applied(false)
                .with_request(method));
        }
        if let Some(Fault::Fail(kind, status)) = &fault {
            let mut error = ApiError::new(*kind, format!("scripted {kind} failure")).with_request(method);
            if let Some(status) = status {
                error = error.with_status(*status);
            }
            return Err(error);
        }
        let replay = operation_id.is_some_and(|id| state.applied_keys.contains(id));
        let result = if replay {
            Ok(state.records.get(&key).cloned())
        } else {
            let stamp = state.stamp.clone();
            let stamped = move |data: &JsonObject| {
                let mut data = data.clone();
                if let Some((field, value)) = &stamp {
                    data.insert(field.clone(), value.clone());
                }
                data
            };
            let result = apply(&mut state.records, &stamped);
            if result.is_ok()
                && let Some(id) = operation_id
            {
                state.applied_keys.push(id.clone());
            }
            result
        };
        if matches!(fault, Some(Fault::LoseResponse)) {
            return Err(ApiError::new(ErrorKind::Transient, "scripted lost response").with_request(method));
        }
        result
    }
}

fn key(entity: &EntityName, id: &RecordId) -> RecordKey {
    RecordKey::new(entity.clone(), id.clone())
}

#[async_trait]
impl SyncApiAdapter for FakeAdapter {
    async fn create(
        &self,
        entity: &EntityName,
        id: &RecordId,
        data: &JsonObject,
        operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        self.delay().await;
        let record = key(entity, id);
        self.handle("POST", record.clone(), Some(operation_id), |records, stamped| {
            if records.contains_key(&record) {
                return Err(ApiError::new(ErrorKind::AlreadyExists, "duplicate id").with_status(409));
            }
            let stored = stamped(data);
            records.insert(record, stored.clone());
            Ok(Some(stored))
        })
    }

    async fn update(
        &self,
        entity: &EntityName,
        id: &RecordId,
        data: &JsonObject,
        operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        self.delay().await;
        let record = key(entity, id);
        self.handle("PUT", record.clone(), Some(operation_id), |records, stamped| {
            if !records.contains_key(&record) {
                return Err(ApiError::new(ErrorKind::NotFound, "no such record").with_status(404));
            }
            let stored = stamped(data);
            records.insert(record, stored.clone());
            Ok(Some(stored))
        })
    }

    async fn delete(
        &self,
        entity: &EntityName,
        id: &RecordId,
        operation_id: &OperationId,
    ) -> Result<(), ApiError> {
        self.delay().await;
        let record = key(entity, id);
        self.handle(
            "DELETE",
            record.clone(),
            Some(operation_id),
            |records, _| match records.remove(&record) {
                Some(_) => Ok(None),
                None => Err(ApiError::new(ErrorKind::NotFound, "no such record").with_status(404)),
            },
        )
        .map(drop)
    }

    async fn fetch_remote(&self, entity: &EntityName, id: &RecordId) -> Result<Option<JsonObject>, ApiError> {
        self.delay().await;
        let record = key(entity, id);
        self.handle("GET", record.clone(), None, |records, _| {
            Ok(records.get(&record).cloned())
        })
    }
}

/// A connectivity monitor switched by the test.
#[derive(Debug, Clone)]
pub struct FakeMonitor {
    online: Arc<watch::Sender<bool>>,
    probes: Arc<std::sync::atomic::AtomicUsize>,
    offline_after: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeMonitor {
    /// A monitor reporting `online`.
    #[must_use]
    pub fn new(online: bool) -> Self {
        Self {
            online: Arc::new(watch::channel(online).0),
            probes: Arc::default(),
            offline_after: Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX)),
        }
    }

    /// Reports offline from the `probes`-th probe on (counting from now):
    /// the link drops at an exact point of a sync run.
    pub fn go_offline_after(&self, probes: usize) {
        let done = self.probes.load(std::sync::atomic::Ordering::SeqCst);
        self.offline_after
            .store(done + probes, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many times `is_connected` was called.
    #[must_use]
    pub fn probes(&self) -> usize {
        self.probes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Switches the reported state; change streams see it.
    pub fn set_online(&self, online: bool) {
        self.online.send_replace(online);
    }
}

#[async_trait]
impl ConnectivityMonitor for FakeMonitor {
    async fn is_connected(&self) -> bool {
        let done = self.probes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if done >= self.offline_after.load(std::sync::atomic::Ordering::SeqCst) {
            self.set_online(false);
        }
        *self.online.borrow()
    }

    fn changes(&self) -> BoxStream<bool> {
        let mut last = None;
        Box::pin(WatchStream::new(self.online.subscribe()).filter(move |online| {
            let changed = last != Some(*online);
            last = Some(*online);
            changed
        }))
    }
}
