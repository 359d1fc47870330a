//! `cargo xtask bench peers`: the engine with a no-op adapter against
//! apalis 1.0 (apalis-sqlite) and effectum 0.7 doing the same
//! enqueue-and-drain work with a no-op handler, at equal concurrency.
//!
//! The peers live in their own workspaces (`benches/peers/*`: their SQLite
//! bindings clash with ours), so the xtask builds and runs them first and
//! hands their JSON lines over in a file (`--peers-file`); a run without
//! that file (the smoke run, or `cargo run -p sync-bench` by hand) measures
//! the engine only and says so.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sync_store_sqlite::SqliteStore;

use crate::common::{NoopAdapter, engine, fill, timed_drain};
use crate::report::{Report, Row, Target, num};

/// One peer measurement, as printed by a peer binary.
struct PeerResult {
    peer: String,
    concurrency: usize,
    jobs: usize,
    enqueue_s: f64,
    drain_s: f64,
}

fn read_peers(path: &Path) -> Result<Vec<PeerResult>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("peer line {line:?}: {e}"))?;
            let number = |key: &str| value.get(key).and_then(serde_json::Value::as_f64);
            match (
                value.get("peer").and_then(serde_json::Value::as_str),
                number("concurrency"),
                number("jobs"),
                number("enqueue_s"),
                number("drain_s"),
            ) {
                (Some(peer), Some(concurrency), Some(jobs), Some(enqueue_s), Some(drain_s)) => {
                    Ok(PeerResult {
                        peer: peer.to_owned(),
                        concurrency: concurrency as usize,
                        jobs: jobs as usize,
                        enqueue_s,
                        drain_s,
                    })
                }
                _ => Err(format!("peer line {line:?} lacks a field")),
            }
        })
        .collect()
}

/// Enqueue and drain seconds of the engine for `jobs` creates.
async fn ours(dir: &Path, jobs: usize, concurrency: usize) -> Result<(f64, f64), String> {
    let path = dir.join(format!("peers-{concurrency}.db"));
    let store = Arc::new(SqliteStore::open(&path).await.map_err(|e| e.to_string())?);
    let started = Instant::now();
    fill(&store, jobs, 200).await?;
    let enqueue = started.elapsed().as_secs_f64();
    let adapter = Arc::new(NoopAdapter::default());
    let engine = engine(store, Arc::clone(&adapter) as _, concurrency).await?;
    let drain = timed_drain(&engine, jobs).await?;
    engine.close().await;
    if adapter.calls() != jobs as u64 {
        return Err(format!(
            "the engine sent {} requests for {jobs} jobs",
            adapter.calls()
        ));
    }
    Ok((enqueue, drain))
}

pub(crate) async fn run(report: &mut Report, smoke: bool, peers_file: Option<&Path>) -> Result<(), String> {
    let peers = match peers_file {
        Some(path) => read_peers(path)?,
        None => Vec::new(),
    };
    let jobs = peers
        .first()
        .map_or(if smoke { 200 } else { 5_000 }, |peer| peer.jobs);
    eprintln!("peer benchmarks ({jobs} jobs enqueued then drained, no-op handlers)");
    if peers.is_empty() {
        report.fact(
            "peers: apalis-sqlite and effectum were not run (smoke run, or no --peers-file; \
             `cargo xtask bench peers` runs them); the engine's figures alone follow"
                .to_owned(),
        );
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    for concurrency in [1, 16] {
        let (enqueue, drain) = ours(dir.path(), jobs, concurrency).await?;
        let rate = jobs as f64 / drain;
        let mut facts = vec![format!(
            "peers, concurrency {concurrency}: engine enqueues {} items/s (batches of up to 10 000), drains {} items/s",
            num(jobs as f64 / enqueue),
            num(rate)
        )];
        for peer in peers.iter().filter(|peer| peer.concurrency == concurrency) {
            if peer.jobs != jobs {
                return Err(format!("{} ran {} jobs, the engine {jobs}", peer.peer, peer.jobs));
            }
            report.row(Row {
                scenario: format!("peers: drain, concurrency {concurrency}"),
                sizes: format!("{jobs} jobs, no-op handler / adapter"),
                engine: rate,
                baseline_name: peer.peer.clone(),
                baseline: jobs as f64 / peer.drain_s,
                unit: "items/s",
                target: Some(Target::RatioAtLeast(1.0)),
            });
            facts.push(format!(
                "{} enqueues {} jobs/s (one bulk insert)",
                peer.peer,
                num(jobs as f64 / peer.enqueue_s)
            ));
        }
        report.fact(facts.join("; "));
    }
    Ok(())
}
