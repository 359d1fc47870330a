//! Pulls through the engine (issue 12): pages applied with their cursor,
//! pushes before pulls, pending local changes never overwritten, the
//! resolver's merge, an expired cursor's re-load with its sweep, bad pages
//! refused with nothing applied, retries, progress and watch streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use sync_core::{
    ApiError, EntityName, ErrorKind, JsonObject, MergeFields, OperationId, PullAnswer, PullCursor, PullPage,
    PullRequest, PullSource, PulledChange, RecordId, SyncApiAdapter, SyncOperation, SyncStatus, SyncStore,
};
use sync_engine::{OfflineSyncEngine, OfflineSyncOptions};
use sync_testkit::{FakeMonitor, MemoryStore};
use tokio_stream::StreamExt;

/// A server with a change feed: every write takes the next stamp, the
/// feed lists the latest change per record after a cursor.
#[derive(Default)]
struct Feed {
    state: Mutex<FeedState>,
    /// Failures to answer the next pulls with.
    failures: Mutex<VecDeque<ApiError>>,
    /// Pages to answer instead of the feed's own (bad input).
    scripted: Mutex<VecDeque<PullPage>>,
    /// The cursor of every pull, in order.
    pulls: Mutex<Vec<Option<String>>>,
    /// Every write request, in order.
    writes: Mutex<Vec<String>>,
    /// How long each write takes.
    write_delay: Mutex<Duration>,
    /// A store to read the stored cursor from as each pull arrives.
    watched: Mutex<Option<Arc<MemoryStore>>>,
    /// The stored cursor as each pull arrived, in order.
    stored_at_pull: Mutex<Vec<Option<String>>>,
}

#[derive(Default)]
struct FeedState {
    stamp: u64,
    records: BTreeMap<String, JsonObject>,
    /// Stamp → (id, document or tombstone): the latest change per record.
    log: BTreeMap<u64, (String, Option<JsonObject>)>,
    /// Cursors below this are forgotten (410).
    purged_below: u64,
}

impl Feed {
    /// A write by anyone (this device's pushes or another client).
    fn write(&self, id: &str, data: Option<Value>) {
        let mut state = self.state.lock().unwrap();
        state.stamp += 1;
        let stamp = state.stamp;
        state.log.retain(|_, (logged, _)| logged != id);
        let data = data.map(|data| data.as_object().unwrap().clone());
        match &data {
            Some(data) => state.records.insert(id.to_owned(), data.clone()),
            None => state.records.remove(id),
        };
        state.log.insert(stamp, (id.to_owned(), data));
    }

    /// Forgets tombstones and the cursors before now.
    fn purge(&self) {
        let mut state = self.state.lock().unwrap();
        state.log.retain(|_, (_, data)| data.is_some());
        state.purged_below = state.stamp;
    }

    fn record(&self, id: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .records
            .get(id)
            .cloned()
            .map(Value::Object)
    }

    fn pulls(&self) -> Vec<Option<String>> {
        self.pulls.lock().unwrap().clone()
    }
}

#[async_trait]
impl PullSource for Feed {
    async fn pull(&self, request: PullRequest<'_>) -> Result<PullAnswer, ApiError> {
        self.pulls
            .lock()
            .unwrap()
            .push(request.cursor.map(|cursor| cursor.as_str().to_owned()));
        let watched = self.watched.lock().unwrap().clone();
        if let Some(store) = watched {
            let state = store.pull_state(request.entity).await.unwrap();
            self.stored_at_pull
                .lock()
                .unwrap()
                .push(state.cursor.map(|cursor| cursor.as_str().to_owned()));
        }
        if let Some(failure) = self.failures.lock().unwrap().pop_front() {
            return Err(failure);
        }
        if let Some(page) = self.scripted.lock().unwrap().pop_front() {
            return Ok(PullAnswer::Page(page));
        }
        let since: u64 = request
            .cursor
            .map_or(0, |cursor| cursor.as_str().parse().unwrap());
        let state = self.state.lock().unwrap();
        if request.cursor.is_some() && since < state.purged_below {
            return Ok(PullAnswer::CursorExpired);
        }
        let after: Vec<_> = state.log.range(since + 1..).collect();
        let page: Vec<_> = after.iter().take(request.limit).collect();
        let changes = page
            .iter()
            .map(|(_, (id, data))| {
                let id = RecordId::new(id.as_str()).unwrap();
                match data {
                    Some(data) => PulledChange::Upsert {
                        id,
                        data: data.clone(),
                        version: None,
                    },
                    None => PulledChange::Tombstone { id },
                }
            })
            .collect();
        let last = page.last().map_or(state.stamp.max(since), |(stamp, _)| **stamp);
        Ok(PullAnswer::Page(PullPage {
            changes,
            cursor: Some(PullCursor::new(last.to_string()).unwrap()),
            more: after.len() > page.len(),
            listing: false,
        }))
    }
}

#[async_trait]
impl SyncApiAdapter for Feed {
    async fn create(
        &self,
        _entity: &EntityName,
        id: &RecordId,
        data: &JsonObject,
        _operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        self.writes.lock().unwrap().push(format!("POST {id}"));
        let delay = *self.write_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        self.write(id.as_str(), Some(Value::Object(data.clone())));
        Ok(None)
    }

    async fn update(
        &self,
        _entity: &EntityName,
        id: &RecordId,
        data: &JsonObject,
        _operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        self.writes.lock().unwrap().push(format!("PUT {id}"));
        self.write(id.as_str(), Some(Value::Object(data.clone())));
        Ok(None)
    }

    async fn delete(
        &self,
        _entity: &EntityName,
        id: &RecordId,
        _operation_id: &OperationId,
    ) -> Result<(), ApiError> {
        self.writes.lock().unwrap().push(format!("DELETE {id}"));
        self.write(id.as_str(), None);
        Ok(())
    }

    async fn fetch_remote(
        &self,
        _entity: &EntityName,
        id: &RecordId,
    ) -> Result<Option<JsonObject>, ApiError> {
        Ok(self.state.lock().unwrap().records.get(id.as_str()).cloned())
    }
}

fn options() -> OfflineSyncOptions {
    OfflineSyncOptions::default()
        .sync_after_save(false)
        .connectivity_check_interval(None)
        .retry_base_delay(Duration::from_millis(5))
        .pull_page_size(3)
}

async fn engine_over(feed: &Arc<Feed>, store: &Arc<MemoryStore>, merge: bool) -> OfflineSyncEngine {
    let builder = OfflineSyncEngine::builder(
        Arc::clone(store) as Arc<dyn SyncStore>,
        Arc::clone(feed) as Arc<dyn SyncApiAdapter>,
        Arc::new(FakeMonitor::new(true)),
    )
    .options(options())
    .pull("tasks", Arc::clone(feed) as Arc<dyn PullSource>);
    let builder = if merge {
        builder.conflict_resolver(MergeFields)
    } else {
        builder
    };
    builder.build().await.unwrap()
}

async fn setup() -> (Arc<Feed>, Arc<MemoryStore>, OfflineSyncEngine) {
    let feed = Arc::new(Feed::default());
    let store = Arc::new(MemoryStore::new());
    let engine = engine_over(&feed, &store, false).await;
    (feed, store, engine)
}

async fn local(engine: &OfflineSyncEngine, id: &str) -> Option<Value> {
    engine
        .get_record("tasks", id)
        .await
        .unwrap()
        .map(|record| Value::Object(record.data))
}

#[tokio::test]
async fn an_initial_load_arrives_page_by_page_with_its_cursor() {
    let (feed, store, engine) = setup().await;
    for n in 0..7 {
        feed.write(&format!("t{n}"), Some(json!({"n": n})));
    }
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(report.pulled.upserted, 7);
    assert_eq!(report.pull_failed, 0);
    assert_eq!(engine.get_records("tasks").await.unwrap().len(), 7);
    assert_eq!(local(&engine, "t3").await, Some(json!({"n": 3})));
    // Pages of 3: from nothing, then after stamps 3 and 6.
    assert_eq!(feed.pulls(), vec![None, Some("3".into()), Some("6".into())]);
    // A pulled record is a document with no queue item.
    assert!(engine.queue().await.unwrap().is_empty());
    let state = store
        .pull_state(&EntityName::new("tasks").unwrap())
        .await
        .unwrap();
    assert_eq!(state.cursor.unwrap().as_str(), "7");

    // Nothing new: one request.
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(report.pulled, Default::default());
    assert_eq!(feed.pulls().len(), 4);
    engine.close().await;
}

/// The next page is asked for while the last one is applied (not after):
/// the request for the page after stamp 3 arrives while the store still
/// holds the cursor before it. The prefetched page is used: one request
/// per page, none twice.
#[tokio::test]
async fn the_next_page_is_requested_while_the_last_one_is_applied() {
    let (feed, store, engine) = setup().await;
    *feed.watched.lock().unwrap() = Some(Arc::clone(&store));
    for n in 0..8 {
        feed.write(&format!("t{n}"), Some(json!({"n": n})));
    }
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(report.pulled.upserted, 8);
    assert_eq!(feed.pulls(), vec![None, Some("3".into()), Some("6".into())]);
    assert_eq!(
        *feed.stored_at_pull.lock().unwrap(),
        vec![None, None, Some("3".into())],
        "each next page was requested before the last one was applied"
    );
    engine.close().await;
}

/// A page the store refuses ends the entity's pull; the page fetched
/// meanwhile is dropped, and the next pull asks again from the stored
/// cursor.
#[tokio::test]
async fn a_page_fetched_during_a_refused_apply_is_dropped() {
    let feed = Arc::new(Feed::default());
    let store = Arc::new(MemoryStore::with_max_payload_bytes(64));
    let engine = engine_over(&feed, &store, false).await;
    feed.write("huge", Some(json!({"v": "x".repeat(200)})));
    for n in 0..4 {
        feed.write(&format!("t{n}"), Some(json!({"n": n})));
    }
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(report.pull_failed, 1);
    // The first page was refused; the second was fetched meanwhile.
    assert_eq!(feed.pulls(), vec![None, Some("3".into())]);
    assert_eq!(engine.get_records("tasks").await.unwrap().len(), 0);
    // Rewritten, "huge" moves to stamp 6: the pages now end at stamps 4 and 6.
    feed.write("huge", Some(json!({"v": "small"})));
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(report.pull_failed, 0);
    assert_eq!(&feed.pulls()[2..], &[None, Some("4".into())]);
    assert_eq!(engine.get_records("tasks").await.unwrap().len(), 5);
    engine.close().await;
}

#[tokio::test]
async fn deltas_bring_updates_and_tombstones() {
    let (feed, _store, engine) = setup().await;
    feed.write("a", Some(json!({"v": 1})));
    feed.write("b", Some(json!({"v": 1})));
    engine.sync_manager().pull_now().await.unwrap();
    feed.write("a", Some(json!({"v": 2})));
    feed.write("b", None);
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!((report.pulled.upserted, report.pulled.deleted), (1, 1));
    assert_eq!(local(&engine, "a").await, Some(json!({"v": 2})));
    assert_eq!(local(&engine, "b").await, None);
    engine.close().await;
}

#[tokio::test]
async fn sync_now_pushes_first_then_pulls_and_the_echo_changes_nothing() {
    let (feed, _store, engine) = setup().await;
    feed.write("theirs", Some(json!({"by": "them"})));
    engine
        .save("tasks", "mine", json!({"by": "me"}), SyncOperation::Create)
        .await
        .unwrap();
    let report = engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(report.sent, 1);
    // The pull came after the push: it saw both records.
    assert_eq!(report.pulled.upserted, 2);
    assert_eq!(feed.record("mine"), Some(json!({"by": "me"})));
    assert_eq!(local(&engine, "theirs").await, Some(json!({"by": "them"})));
    assert_eq!(local(&engine, "mine").await, Some(json!({"by": "me"})));
    let item = engine.queue_item("tasks", "mine").await.unwrap().unwrap();
    assert_eq!(item.status, SyncStatus::Synced);
    engine.close().await;
}

#[tokio::test]
async fn a_pending_local_change_is_never_overwritten() {
    let (feed, _store, engine) = setup().await;
    feed.write("r", Some(json!({"title": "old", "done": false})));
    engine.sync_manager().pull_now().await.unwrap();
    engine
        .save(
            "tasks",
            "r",
            json!({"title": "mine", "done": false}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    feed.write("r", Some(json!({"title": "old", "done": true})));
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(report.pulled.skipped, 1);
    assert_eq!(
        local(&engine, "r").await,
        Some(json!({"title": "mine", "done": false}))
    );
    let item = engine.queue_item("tasks", "r").await.unwrap().unwrap();
    assert_eq!(
        (item.operation, item.status),
        (SyncOperation::Update, SyncStatus::Pending)
    );

    // A new record created here meets one of the same id created there:
    // the pending create becomes an update, its document stays.
    engine
        .save("tasks", "both", json!({"from": "here"}), SyncOperation::Create)
        .await
        .unwrap();
    feed.write("both", Some(json!({"from": "there"})));
    engine.sync_manager().pull_now().await.unwrap();
    let item = engine.queue_item("tasks", "both").await.unwrap().unwrap();
    assert_eq!(item.operation, SyncOperation::Update);
    assert_eq!(local(&engine, "both").await, Some(json!({"from": "here"})));

    // A pending update meeting a tombstone re-creates the record.
    engine
        .save("tasks", "gone", json!({"keep": "me"}), SyncOperation::Create)
        .await
        .unwrap();
    engine.sync_manager().sync_now().await.unwrap();
    engine
        .save("tasks", "gone", json!({"keep": "me too"}), SyncOperation::Update)
        .await
        .unwrap();
    feed.write("gone", None);
    engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(local(&engine, "gone").await, Some(json!({"keep": "me too"})));
    let report = engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(report.failed, 0);
    assert_eq!(feed.record("gone"), Some(json!({"keep": "me too"})));
    assert_eq!(feed.record("r"), Some(json!({"title": "mine", "done": false})));
    engine.close().await;
}

#[tokio::test]
async fn the_resolver_merges_a_pulled_copy_into_a_pending_change() {
    let feed = Arc::new(Feed::default());
    let store = Arc::new(MemoryStore::new());
    let engine = engine_over(&feed, &store, true).await;
    engine
        .save(
            "tasks",
            "r",
            json!({"title": "t", "done": false, "notes": ""}),
            SyncOperation::Create,
        )
        .await
        .unwrap();
    engine.sync_manager().sync_now().await.unwrap();
    // This device edits the title; another client ticks it done.
    engine
        .save(
            "tasks",
            "r",
            json!({"title": "mine", "done": false, "notes": ""}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    feed.write("r", Some(json!({"title": "t", "done": true, "notes": ""})));
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(report.pulled.merged, 1);
    let both = json!({"title": "mine", "done": true, "notes": ""});
    assert_eq!(local(&engine, "r").await, Some(both.clone()));
    engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(feed.record("r"), Some(both));
    engine.close().await;
}

#[tokio::test]
async fn an_expired_cursor_reloads_everything_and_sweeps_what_the_server_lost() {
    let (feed, _store, engine) = setup().await;
    for id in ["a", "b", "c", "d"] {
        feed.write(id, Some(json!({"id": id})));
    }
    engine.sync_manager().pull_now().await.unwrap();
    // While the device is away: b deleted, its tombstone purged; a pending
    // local edit to c, whose server copy is deleted too.
    feed.write("b", None);
    feed.write("c", None);
    feed.write("e", Some(json!({"id": "e"})));
    feed.purge();
    engine
        .save(
            "tasks",
            "c",
            json!({"id": "c", "edited": true}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(report.pull_failed, 0);
    let ids: Vec<String> = engine
        .get_records("tasks")
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.id.to_string())
        .collect();
    let mut ids = ids;
    ids.sort();
    assert_eq!(ids, ["a", "c", "d", "e"], "b swept, the pending c kept");
    assert!(report.pulled.deleted >= 1);
    // The re-load started from nothing.
    assert!(feed.pulls().contains(&None));
    assert_eq!(feed.pulls().iter().filter(|cursor| cursor.is_none()).count(), 2);
    engine.close().await;
}

#[tokio::test]
async fn a_bad_page_is_refused_whole_and_the_next_pull_starts_where_it_was() {
    let (feed, store, engine) = setup().await;
    feed.write("a", Some(json!({"v": 1})));
    engine.sync_manager().pull_now().await.unwrap();
    let before = store
        .pull_state(&EntityName::new("tasks").unwrap())
        .await
        .unwrap();
    feed.failures
        .lock()
        .unwrap()
        .push_back(ApiError::new(ErrorKind::Permanent, "a change without an id"));
    feed.write("a", Some(json!({"v": 2})));
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(report.pull_failed, 1);
    assert_eq!(local(&engine, "a").await, Some(json!({"v": 1})));
    assert_eq!(
        store
            .pull_state(&EntityName::new("tasks").unwrap())
            .await
            .unwrap(),
        before
    );
    // A permanent failure is not retried in the same run.
    assert_eq!(feed.pulls().len(), 2);
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(report.pull_failed, 0);
    assert_eq!(local(&engine, "a").await, Some(json!({"v": 2})));
    engine.close().await;
}

#[tokio::test]
async fn a_document_over_the_stores_limit_fails_the_page_and_applies_none_of_it() {
    let feed = Arc::new(Feed::default());
    let store = Arc::new(MemoryStore::with_max_payload_bytes(64));
    let engine = engine_over(&feed, &store, false).await;
    feed.write("small", Some(json!({"v": 1})));
    feed.write("huge", Some(json!({"v": "x".repeat(200)})));
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(report.pull_failed, 1);
    assert_eq!(
        local(&engine, "small").await,
        None,
        "the page is applied whole or not at all"
    );
    engine.close().await;
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_in_the_same_run() {
    let (feed, _store, engine) = setup().await;
    feed.write("a", Some(json!({"v": 1})));
    for _ in 0..2 {
        feed.failures
            .lock()
            .unwrap()
            .push_back(ApiError::new(ErrorKind::Transient, "503").with_status(503));
    }
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(report.pull_failed, 0);
    assert_eq!(report.pulled.upserted, 1);
    assert_eq!(feed.pulls().len(), 3);

    // More failures than max_retries (3): the run gives up, reports it.
    for _ in 0..3 {
        feed.failures
            .lock()
            .unwrap()
            .push_back(ApiError::new(ErrorKind::Transient, "503").with_status(503));
    }
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert_eq!(report.pull_failed, 1);
    engine.close().await;
}

#[tokio::test]
async fn an_unreachable_server_makes_the_pull_report_offline() {
    let (feed, _store, engine) = setup().await;
    feed.failures
        .lock()
        .unwrap()
        .push_back(ApiError::new(ErrorKind::Offline, "connection refused"));
    let report = engine.sync_manager().pull_now().await.unwrap();
    assert!(report.offline);
    assert_eq!(report.pull_failed, 0);
    engine.close().await;
}

#[tokio::test]
async fn pulled_records_reach_watchers_and_progress_is_observable() {
    let (feed, _store, engine) = setup().await;
    let mut records = engine.watch_records("tasks").unwrap();
    assert_eq!(records.next().await.unwrap().len(), 0);
    let mut progress = engine.watch_pull_progress();
    assert!(!progress.next().await.unwrap().running);
    for n in 0..5 {
        feed.write(&format!("t{n}"), Some(json!({"n": n})));
    }
    engine.sync_manager().pull_now().await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let list = records.next().await.unwrap();
            if list.len() == 5 {
                return list;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(seen.len(), 5);
    let last = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let now = progress.next().await.unwrap();
            if !now.running && now.records == 5 {
                return now;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(last.pages, 2);
    assert_eq!(last.entity.unwrap().as_str(), "tasks");
    engine.close().await;
}

#[tokio::test]
async fn a_bad_pulled_entity_name_is_refused_at_build() {
    let feed = Arc::new(Feed::default());
    let result = OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()),
        Arc::clone(&feed) as Arc<dyn SyncApiAdapter>,
        Arc::new(FakeMonitor::new(true)),
    )
    .pull("", Arc::clone(&feed) as Arc<dyn PullSource>)
    .build()
    .await;
    assert!(matches!(result, Err(sync_engine::SyncError::Invalid(_))));
}

#[tokio::test]
async fn a_server_expiring_its_own_loads_fails_the_pull_instead_of_looping() {
    let (feed, _store, engine) = setup().await;
    for n in 0..7 {
        feed.write(&format!("t{n}"), Some(json!({"n": n})));
    }
    // Every cursor is older than what the server forgot, even the cursors
    // of the load from scratch that "cursor expired" starts.
    feed.state.lock().unwrap().purged_below = u64::MAX;
    let report = tokio::time::timeout(Duration::from_secs(10), engine.sync_manager().pull_now())
        .await
        .expect("the pull ends")
        .unwrap();
    assert_eq!(report.pull_failed, 1);
    // The first load, then three re-loads, each failing at its second page.
    assert_eq!(feed.pulls().iter().filter(|cursor| cursor.is_none()).count(), 4);
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_now_pulls_even_when_a_saves_background_run_served_its_push() {
    let feed = Arc::new(Feed::default());
    *feed.write_delay.lock().unwrap() = Duration::from_millis(200);
    let store = Arc::new(MemoryStore::new());
    let engine = OfflineSyncEngine::builder(
        Arc::clone(&store) as Arc<dyn SyncStore>,
        Arc::clone(&feed) as Arc<dyn SyncApiAdapter>,
        Arc::new(FakeMonitor::new(true)),
    )
    .options(options().sync_after_save(true))
    .pull("tasks", Arc::clone(&feed) as Arc<dyn PullSource>)
    .build()
    .await
    .unwrap();
    feed.write("theirs", Some(json!({"by": "them"})));
    // The save starts a background run, still sending when sync_now asks
    // for its full pass: that run serves the pass.
    engine
        .save("tasks", "mine", json!({"by": "me"}), SyncOperation::Create)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let report = engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(report.pull_failed, 0);
    assert_eq!(
        local(&engine, "theirs").await,
        Some(json!({"by": "them"})),
        "{report:?}"
    );
    engine.close().await;
}

/// An engine over `feed` with auto-sync running, pulling every `interval`.
async fn auto_syncing(
    feed: &Arc<Feed>,
    monitor: &Arc<FakeMonitor>,
    interval: Option<Duration>,
) -> OfflineSyncEngine {
    let engine = OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()) as Arc<dyn SyncStore>,
        Arc::clone(feed) as Arc<dyn SyncApiAdapter>,
        Arc::clone(monitor) as Arc<dyn sync_core::ConnectivityMonitor>,
    )
    .options(options().pull_interval(interval))
    .pull("tasks", Arc::clone(feed) as Arc<dyn PullSource>)
    .build()
    .await
    .unwrap();
    engine.sync_manager().start_auto_sync();
    engine
}

/// Waits (in paused time) until `id` holds `expected` locally, up to 5 s.
async fn arrives(engine: &OfflineSyncEngine, id: &str, expected: Value) {
    for _ in 0..50 {
        if local(engine, id).await.as_ref() == Some(&expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} never became {expected}: {:?}", local(engine, id).await);
}

/// Auto-sync pulls when it starts, then once every `pull_interval`, and
/// not in between.
#[tokio::test(start_paused = true)]
async fn auto_sync_pulls_at_start_and_every_pull_interval() {
    let feed = Arc::new(Feed::default());
    let monitor = Arc::new(FakeMonitor::new(true));
    feed.write("a", Some(json!({"v": 1})));
    let engine = auto_syncing(&feed, &monitor, Some(Duration::from_secs(60))).await;
    arrives(&engine, "a", json!({"v": 1})).await;
    let pulls = feed.pulls().len();
    feed.write("b", Some(json!({"v": 1})));
    tokio::time::sleep(Duration::from_secs(55)).await;
    assert_eq!(local(&engine, "b").await, None, "pulled before pull_interval");
    assert_eq!(feed.pulls().len(), pulls);
    tokio::time::sleep(Duration::from_secs(6)).await;
    arrives(&engine, "b", json!({"v": 1})).await;
    assert_eq!(feed.pulls().len(), pulls + 1, "one request: nothing more was new");
    // And again, a minute later.
    feed.write("b", Some(json!({"v": 2})));
    tokio::time::sleep(Duration::from_secs(61)).await;
    arrives(&engine, "b", json!({"v": 2})).await;
    engine.close().await;
}

/// Without periodic pulls, auto-sync pulls when connectivity comes back,
/// and not while the link stays up.
#[tokio::test(start_paused = true)]
async fn auto_sync_pulls_when_connectivity_comes_back() {
    let feed = Arc::new(Feed::default());
    let monitor = Arc::new(FakeMonitor::new(true));
    feed.write("a", Some(json!({"v": 1})));
    let engine = auto_syncing(&feed, &monitor, None).await;
    arrives(&engine, "a", json!({"v": 1})).await;
    feed.write("a", Some(json!({"v": 2})));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        local(&engine, "a").await,
        Some(json!({"v": 1})),
        "pulled with pull_interval off and no reconnection"
    );
    monitor.set_online(false);
    tokio::time::sleep(Duration::from_secs(30)).await;
    monitor.set_online(true);
    arrives(&engine, "a", json!({"v": 2})).await;
    engine.close().await;
}

/// Each page applied is an event with its counts, for a subscriber.
#[tokio::test]
async fn each_pulled_page_is_an_event() {
    let (feed, _store, engine) = setup().await;
    let mut events = engine.events();
    for n in 0..4 {
        feed.write(&format!("t{n}"), Some(json!({"n": n})));
    }
    engine.sync_manager().pull_now().await.unwrap();
    let mut upserted = Vec::new();
    while upserted.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
        {
            sync_engine::SyncEvent::Pulled { entity, counts } => {
                assert_eq!(entity.as_str(), "tasks");
                upserted.push(counts.upserted);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(upserted, [3, 1], "pages of 3");
    engine.close().await;
}
