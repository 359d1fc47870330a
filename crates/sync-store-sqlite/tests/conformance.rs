//! The SQLite store passes the same conformance suite as the memory store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::sync::atomic::{AtomicUsize, Ordering};

use sync_store_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let counter = AtomicUsize::new(0);
    sync_testkit::conformance::run_all(|| async {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        SqliteStore::open(dir.path().join(format!("store-{n}.db")))
            .await
            .unwrap()
    })
    .await;
}
