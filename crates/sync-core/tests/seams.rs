//! The seams are usable as trait objects and their futures are `Send`, so
//! the engine can hold any implementation as `Arc<dyn Trait>` and spawn
//! work on a multi-threaded runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::sync::Arc;

use sync_core::{
    ConflictResolver, ConnectivityMonitor, EntityName, JsonObject, LastWriteWins, RecordId, SyncApiAdapter,
    SyncStore, Timestamp,
};

fn assert_send<T: Send>(_: &T) {}

#[allow(dead_code)] // Compiling it is the test.
fn seams_are_object_safe_with_send_futures(
    adapter: Arc<dyn SyncApiAdapter>,
    store: Arc<dyn SyncStore>,
    monitor: Arc<dyn ConnectivityMonitor>,
    resolver: Arc<dyn ConflictResolver>,
    entity: EntityName,
    id: RecordId,
    data: JsonObject,
) {
    assert_send(&adapter.fetch_remote(&entity, &id));
    assert_send(&store.queue());
    assert_send(&store.claim_ready(Timestamp::EPOCH, 1));
    assert_send(&monitor.is_connected());
    assert_send(&resolver.resolve(&data, &data));
    assert_send(&store.subscribe());
    assert_send(&monitor.changes());
}

#[test]
fn built_in_resolvers_are_trait_objects() {
    let resolvers: Vec<Arc<dyn ConflictResolver>> = vec![
        Arc::new(sync_core::LocalWins),
        Arc::new(sync_core::RemoteWins),
        Arc::new(LastWriteWins::default()),
    ];
    assert_eq!(resolvers.len(), 3);
}
