//! A fake server that assigns ids itself (auto-increment per entity), for
//! the engine's tests of server-assigned ids: it checks, as each request
//! arrives, that no temporary id reaches it (outside the lookup), that a
//! task names a project it holds, and that no temporary id makes two
//! records; it can lose answers after applying, replay idempotency keys,
//! keep the temporary id unique, and serve its records as a pull.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};
use sync_core::{
    ApiError, CreatedLookup, EntityName, ErrorKind, JsonObject, OperationId, PullAnswer, PullPage,
    PullRequest, PullSource, PulledChange, RecordId, ServerCopy, SyncApiAdapter, WriteAnswer, WriteKind,
    WriteRequest,
};

/// How the fake server answers a create.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Answer {
    /// The record with its id.
    Record,
    /// The record without an id field.
    NoId,
    /// The record with a fractional id.
    BadId,
}

#[derive(Default)]
pub(crate) struct ServerState {
    /// `(entity, id)` → record; ids count from 1 per entity.
    records: BTreeMap<(String, u64), JsonObject>,
    next: HashMap<String, u64>,
    /// The temporary id each record was created under (what a server
    /// keeping a `client_ref` field knows).
    created_under: HashMap<String, (String, u64)>,
    /// Idempotency keys of creates, and the id each made.
    keys: HashMap<String, u64>,
    log: Vec<String>,
    lose_next_answer: bool,
    /// The lost answer is reported as surely not applied (a link that
    /// lies), so the retry posts again.
    quietly: bool,
}

/// A server that assigns ids itself (auto-increment), checking that no
/// temporary id ever reaches it and that tasks arrive after their project.
#[derive(Clone)]
pub(crate) struct AssigningServer {
    state: Arc<Mutex<ServerState>>,
    lookup: bool,
    replay: bool,
    answer: Answer,
    /// Whether a second create under one temporary id is refused (409), as
    /// a unique constraint on `client_ref` would.
    pub(crate) unique_ref: bool,
    pub(crate) violations: Arc<Mutex<Vec<String>>>,
}

impl AssigningServer {
    pub(crate) fn new(lookup: bool, replay: bool, answer: Answer) -> Self {
        Self {
            state: Arc::default(),
            lookup,
            replay,
            answer,
            unique_ref: lookup,
            violations: Arc::default(),
        }
    }

    pub(crate) fn lose_next_answer(&self) {
        self.state.lock().unwrap().lose_next_answer = true;
    }

    pub(crate) fn lose_next_answer_quietly(&self) {
        let mut state = self.state.lock().unwrap();
        state.lose_next_answer = true;
        state.quietly = true;
    }

    pub(crate) fn records(&self, entity: &str) -> Vec<(u64, Value)> {
        let state = self.state.lock().unwrap();
        state
            .records
            .iter()
            .filter(|((name, _), _)| name == entity)
            .map(|((_, id), data)| (*id, Value::Object(data.clone())))
            .collect()
    }

    pub(crate) fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    fn check(&self, entity: &str, data: &JsonObject) {
        let mut violations = self.violations.lock().unwrap();
        for (field, value) in data {
            if value
                .as_str()
                .is_some_and(|text| text.parse::<RecordId>().is_ok_and(|id| id.is_temporary()))
            {
                violations.push(format!("{entity}.{field} carried a temporary id"));
            }
        }
        if entity == "tasks"
            && let Some(project) = data.get("project_id")
        {
            let state = self.state.lock().unwrap();
            let known = project
                .as_u64()
                .is_some_and(|id| state.records.contains_key(&("projects".to_owned(), id)));
            if !known {
                violations.push(format!("a task arrived naming project {project}, unknown"));
            }
        }
    }

    fn id_of(&self, id: &RecordId) -> Result<u64, ApiError> {
        if id.is_temporary() {
            self.violations
                .lock()
                .unwrap()
                .push("a temporary id in a request's path".to_owned());
        }
        id.as_str().parse().map_err(|_| {
            ApiError::new(ErrorKind::NotFound, "HTTP 404: not an id of this server").with_status(404)
        })
    }
}

fn unused() -> ApiError {
    ApiError::new(ErrorKind::Permanent, "the engine calls write")
}

#[async_trait]
impl SyncApiAdapter for AssigningServer {
    async fn create(
        &self,
        _: &EntityName,
        _: &RecordId,
        _: &JsonObject,
        _: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        Err(unused())
    }
    async fn update(
        &self,
        _: &EntityName,
        _: &RecordId,
        _: &JsonObject,
        _: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        Err(unused())
    }
    async fn delete(&self, _: &EntityName, _: &RecordId, _: &OperationId) -> Result<(), ApiError> {
        Err(unused())
    }
    async fn fetch_remote(&self, _: &EntityName, _: &RecordId) -> Result<Option<JsonObject>, ApiError> {
        Err(unused())
    }

    async fn write(&self, request: WriteRequest<'_>) -> Result<WriteAnswer, ApiError> {
        let entity = request.entity.as_str().to_owned();
        let mut body = request.data.clone();
        let result = match request.kind {
            WriteKind::Create => {
                assert!(
                    request.id.is_temporary(),
                    "this server only takes creates it names"
                );
                if body.get("id").and_then(Value::as_str) == Some(request.id.as_str()) {
                    body.remove("id");
                }
                self.check(&entity, &body);
                let mut state = self.state.lock().unwrap();
                // The temporary id is a unique field here (`client_ref`).
                if self.unique_ref && state.created_under.contains_key(request.id.as_str()) {
                    state.log.push(format!("POST {entity} (exists)"));
                    return Err(ApiError::new(ErrorKind::AlreadyExists, "HTTP 409").with_status(409));
                }
                let replayed = self
                    .replay
                    .then(|| state.keys.get(request.operation_id.as_str()).copied())
                    .flatten();
                let id = match replayed {
                    Some(id) => id,
                    None => {
                        let next = state.next.entry(entity.clone()).or_insert(0);
                        *next += 1;
                        let id = *next;
                        state.keys.insert(request.operation_id.as_str().to_owned(), id);
                        if state.created_under.contains_key(request.id.as_str()) {
                            self.violations
                                .lock()
                                .unwrap()
                                .push(format!("{entity}: a second record for one temporary id"));
                        }
                        state
                            .created_under
                            .insert(request.id.as_str().to_owned(), (entity.clone(), id));
                        let mut stored = body.clone();
                        stored.insert("id".into(), json!(id));
                        state.records.insert((entity.clone(), id), stored);
                        id
                    }
                };
                state.log.push(format!("POST {entity}"));
                let mut record = state
                    .records
                    .get(&(entity.clone(), id))
                    .cloned()
                    .unwrap_or_default();
                match self.answer {
                    Answer::Record => {}
                    Answer::NoId => {
                        record.remove("id");
                    }
                    Answer::BadId => {
                        record.insert("id".into(), json!(1.5));
                    }
                }
                let assigned_id = record.get("id").cloned();
                Ok(WriteAnswer {
                    record: Some(record),
                    version: None,
                    assigned_id,
                })
            }
            WriteKind::Update => {
                self.check(&entity, &body);
                let id = self.id_of(request.id)?;
                let mut state = self.state.lock().unwrap();
                state.log.push(format!("PUT {entity}/{id}"));
                match state.records.get_mut(&(entity.clone(), id)) {
                    Some(stored) => {
                        body.insert("id".into(), json!(id));
                        *stored = body.clone();
                        Ok(WriteAnswer {
                            record: Some(body),
                            version: None,
                            assigned_id: None,
                        })
                    }
                    None => Err(ApiError::new(ErrorKind::NotFound, "HTTP 404").with_status(404)),
                }
            }
            WriteKind::Delete => {
                let id = self.id_of(request.id)?;
                let mut state = self.state.lock().unwrap();
                state.log.push(format!("DELETE {entity}/{id}"));
                state.records.remove(&(entity, id));
                Ok(WriteAnswer::default())
            }
            _ => Err(unused()),
        };
        let mut state = self.state.lock().unwrap();
        if result.is_ok() && std::mem::take(&mut state.lose_next_answer) {
            let quietly = std::mem::take(&mut state.quietly);
            return Err(
                ApiError::new(ErrorKind::Transient, "the connection dropped before the answer")
                    .with_possibly_applied(!quietly),
            );
        }
        result
    }

    async fn fetch_copy(&self, entity: &EntityName, id: &RecordId) -> Result<Option<ServerCopy>, ApiError> {
        let id = self.id_of(id)?;
        let state = self.state.lock().unwrap();
        Ok(state
            .records
            .get(&(entity.as_str().to_owned(), id))
            .map(|data| ServerCopy {
                data: data.clone(),
                version: None,
            }))
    }

    async fn find_created(
        &self,
        entity: &EntityName,
        temporary: &RecordId,
        _: &OperationId,
    ) -> Result<CreatedLookup, ApiError> {
        if !self.lookup {
            return Ok(CreatedLookup::Unsupported);
        }
        let mut state = self.state.lock().unwrap();
        state.log.push(format!("GET {entity}?client_ref"));
        let found = state
            .created_under
            .get(temporary.as_str())
            .filter(|(name, _)| name == entity.as_str())
            .and_then(|(name, id)| {
                state
                    .records
                    .get(&(name.clone(), *id))
                    .map(|data| (*id, data.clone()))
            });
        Ok(match found {
            Some((id, data)) => CreatedLookup::Found {
                id: json!(id),
                copy: ServerCopy { data, version: None },
            },
            None => CreatedLookup::Absent,
        })
    }
}

/// The server's records of an entity as one full listing.
#[async_trait]
impl PullSource for AssigningServer {
    async fn pull(&self, request: PullRequest<'_>) -> Result<PullAnswer, ApiError> {
        let state = self.state.lock().unwrap();
        let changes = state
            .records
            .iter()
            .filter(|((name, _), _)| name == request.entity.as_str())
            .map(|((_, id), data)| PulledChange::Upsert {
                id: RecordId::from(*id),
                data: data.clone(),
                version: None,
            })
            .collect();
        Ok(PullAnswer::Page(PullPage {
            changes,
            cursor: None,
            more: false,
            listing: true,
        }))
    }
}
