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

/// Compiling it is the test: each built-in resolver is passed as the trait
/// object the engine holds (`dyn ConflictResolver`, `Send + Sync` and
/// `'static` for `Arc` and spawned sends). A resolver that were not object
/// safe, not a `ConflictResolver`, or not thread-safe would not compile.
#[allow(dead_code)] // Compiling it is the test.
fn built_in_resolvers_are_trait_objects() {
    fn as_engine_holds_it(_: &(dyn ConflictResolver + Send + Sync + 'static)) {}
    as_engine_holds_it(&sync_core::LocalWins);
    as_engine_holds_it(&sync_core::RemoteWins);
    as_engine_holds_it(&LastWriteWins::default());
}
