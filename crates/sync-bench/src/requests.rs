//! `cargo xtask bench requests`: requests per synced operation, counted at
//! the reference server (the project's REST server) by method, for fresh
//! creates, updates and deletes of synced records, with and without a
//! conflict resolver, and for a create whose earlier attempt was
//! interrupted. The reference engine sends a GET before every POST.

use std::fmt::Write;
use std::sync::Arc;

use http::Method;
use serde_json::json;
use sync_core::{ConflictResolver, LastWriteWins, SyncOperation, SyncStore, Timestamp};
use sync_engine::{OfflineSyncEngine, OfflineSyncOptions};
use sync_net::HttpSyncApiAdapter;
use sync_reference_server::{ReferenceServer, ServerConfig};
use sync_store_sqlite::SqliteStore;

use crate::common::Online;
use crate::report::{Report, Row, Target};

/// A resolver for a case, or none (the default: local wins).
type Resolver = Option<Arc<dyn ConflictResolver>>;

/// Requests the server saw for one case, by method.
#[derive(Default)]
struct Counts {
    get: usize,
    post: usize,
    put: usize,
    delete: usize,
}

impl Counts {
    fn total(&self) -> usize {
        self.get + self.post + self.put + self.delete
    }

    fn describe(&self, operations: usize) -> String {
        let mut out = String::new();
        for (name, count) in [
            ("GET", self.get),
            ("POST", self.post),
            ("PUT", self.put),
            ("DELETE", self.delete),
        ] {
            if count > 0 {
                let _ = write!(
                    out,
                    "{}{} {name}",
                    if out.is_empty() { "" } else { " + " },
                    per(count, operations)
                );
            }
        }
        if out.is_empty() { "nothing".to_owned() } else { out }
    }
}

fn per(count: usize, operations: usize) -> String {
    crate::report::num(count as f64 / operations.max(1) as f64)
}

/// Runs one `sync_now` and counts the requests it made to `entity`.
async fn sync_counting(
    server: &ReferenceServer,
    engine: &OfflineSyncEngine,
    entity: &str,
    expected: usize,
) -> Result<Counts, String> {
    server.clear_request_log();
    let report = engine
        .sync_manager()
        .sync_now()
        .await
        .map_err(|e| format!("sync_now: {e}"))?;
    if report.sent != expected as u64 || report.still_pending != 0 {
        return Err(format!(
            "{entity}: the sync sent {} of {expected} ({} left, {} failed)",
            report.sent, report.still_pending, report.failed
        ));
    }
    let mut counts = Counts::default();
    for request in server.request_log() {
        if request.collection != entity {
            continue;
        }
        match request.method {
            Method::GET => counts.get += 1,
            Method::POST => counts.post += 1,
            Method::PUT => counts.put += 1,
            Method::DELETE => counts.delete += 1,
            _ => {}
        }
    }
    Ok(counts)
}

async fn build(
    server: &ReferenceServer,
    store: Arc<dyn SyncStore>,
    resolver: Resolver,
) -> Result<OfflineSyncEngine, String> {
    let adapter = HttpSyncApiAdapter::builder(server.base_url())
        .build()
        .map_err(|e| e.to_string())?;
    let mut options = OfflineSyncOptions::default();
    options.sync_after_save = false;
    options.connectivity_check_interval = None;
    let mut builder = OfflineSyncEngine::builder(store, Arc::new(adapter), Arc::new(Online)).options(options);
    if let Some(resolver) = resolver {
        builder = builder.conflict_resolver_arc(resolver);
    }
    builder.build().await.map_err(|e| e.to_string())
}

fn document(entity: &str, n: usize, version: u32) -> serde_json::Value {
    json!({
        "id": n.to_string(),
        "title": format!("{entity} {n} v{version}"),
        "updatedAt": format!("2025-01-01T00:00:{:02}Z", version.min(59)),
    })
}

/// Requests for creates, then updates, then deletes of the same records.
async fn lifecycle(
    server: &ReferenceServer,
    dir: &std::path::Path,
    entity: &str,
    resolver: Resolver,
    count: usize,
) -> Result<[Counts; 3], String> {
    let store = SqliteStore::open(dir.join(format!("{entity}.db")))
        .await
        .map_err(|e| e.to_string())?;
    let engine = build(server, Arc::new(store), resolver).await?;
    let mut counts: [Counts; 3] = Default::default();
    for (step, operation) in [
        SyncOperation::Create,
        SyncOperation::Update,
        SyncOperation::Delete,
    ]
    .into_iter()
    .enumerate()
    {
        for n in 0..count {
            engine
                .save(
                    entity,
                    &n.to_string(),
                    document(entity, n, step as u32 + 1),
                    operation,
                )
                .await
                .map_err(|e| format!("save: {e}"))?;
        }
        counts[step] = sync_counting(server, &engine, entity, count).await?;
    }
    engine.close().await;
    Ok(counts)
}

/// Requests for creates whose first attempt was claimed and never
/// reported (a killed process): each may have reached the server.
async fn interrupted_creates(
    server: &ReferenceServer,
    dir: &std::path::Path,
    entity: &str,
    count: usize,
) -> Result<Counts, String> {
    let path = dir.join(format!("{entity}.db"));
    let store = SqliteStore::open(&path).await.map_err(|e| e.to_string())?;
    let changes = (0..count)
        .map(|n| {
            sync_core::LocalChange::new(
                entity,
                n.to_string(),
                document(entity, n, 1),
                SyncOperation::Create,
            )
            .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    store
        .save_batch(changes, Timestamp::now())
        .await
        .map_err(|e| e.to_string())?;
    let claimed = store
        .claim_ready(Timestamp::now(), count)
        .await
        .map_err(|e| e.to_string())?;
    if claimed.len() != count {
        return Err(format!("claimed {} of {count}", claimed.len()));
    }
    // The process "dies" here: the claims are never reported.
    store.close().await;
    drop(store);
    let store = SqliteStore::open(&path).await.map_err(|e| e.to_string())?;
    let engine = build(server, Arc::new(store), None).await?;
    let counts = sync_counting(server, &engine, entity, count).await?;
    engine.close().await;
    Ok(counts)
}

pub(crate) async fn run(report: &mut Report, smoke: bool) -> Result<(), String> {
    let count = if smoke { 10 } else { 200 };
    eprintln!("request benchmarks ({count} records per case, counted at the reference server)");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let server = ReferenceServer::start(ServerConfig::new())
        .await
        .map_err(|e| format!("reference server: {e}"))?;
    let lww: Arc<dyn ConflictResolver> = Arc::new(LastWriteWins::new("updatedAt"));
    let cases: [(&str, &str, Resolver); 2] = [
        ("tasks_default", "default resolver (none: local wins)", None),
        ("tasks_lww", "LastWriteWins(updatedAt)", Some(lww)),
    ];
    for (entity, resolver_name, resolver) in cases {
        let with_resolver = resolver.is_some();
        let [creates, updates, deletes] = lifecycle(&server, dir.path(), entity, resolver, count).await?;
        let sizes = format!("{count} records, {resolver_name}");
        report.row(Row {
            scenario: "requests: fresh create".into(),
            sizes: sizes.clone(),
            engine: creates.total() as f64 / count as f64,
            baseline_name: "reference engine (GET + POST)".into(),
            baseline: 2.0,
            unit: "requests/op",
            target: Some(Target::RatioAtMost(0.5)),
        });
        // No reference figure is stated for updates and deletes. Without a
        // resolver the baseline is the least any engine can send (one
        // write); with one, an engine without conditional writes must
        // fetch the server's copy before every update for the resolver,
        // while conditional writes (If-Match with the version of the copy
        // last confirmed) fetch only when the server refuses with 412.
        report.row(Row {
            scenario: "requests: update of a synced record".into(),
            sizes: sizes.clone(),
            engine: updates.total() as f64 / count as f64,
            baseline_name: if with_resolver {
                "without conditional writes (GET for the resolver + PUT)".into()
            } else {
                "least possible (PUT)".into()
            },
            baseline: if with_resolver { 2.0 } else { 1.0 },
            unit: "requests/op",
            target: Some(Target::RatioAtMost(if with_resolver { 0.5 } else { 1.0 })),
        });
        report.row(Row {
            scenario: "requests: delete of a synced record".into(),
            sizes: sizes.clone(),
            engine: deletes.total() as f64 / count as f64,
            baseline_name: "least possible (DELETE)".into(),
            baseline: 1.0,
            unit: "requests/op",
            target: Some(Target::RatioAtMost(1.0)),
        });
        report.fact(format!(
            "requests per operation with {resolver_name}: create {}, update {}, delete {}",
            creates.describe(count),
            updates.describe(count),
            deletes.describe(count)
        ));
    }
    let interrupted = interrupted_creates(&server, dir.path(), "tasks_interrupted", count).await?;
    report.row(Row {
        scenario: "requests: create after an interrupted attempt".into(),
        sizes: format!("{count} records, claimed then the process stopped"),
        engine: interrupted.total() as f64 / count as f64,
        baseline_name: "reference engine (GET + POST)".into(),
        baseline: 2.0,
        unit: "requests/op",
        target: Some(Target::RatioAtMost(1.0)),
    });
    report.fact(format!(
        "requests per create after an interrupted attempt: {} (the check is kept only where an earlier \
         attempt may have been applied)",
        interrupted.describe(count)
    ));
    server.shutdown().await;
    Ok(())
}
