//! Peer benchmark: apalis 1.0 on apalis-sqlite. Enqueues `--jobs` jobs
//! (one bulk push), then drains them with a no-op handler at each
//! `--concurrency`, on a fresh database file each time. Prints one JSON line
//! per concurrency on stdout:
//! `{"peer":"apalis-sqlite 1.0","concurrency":1,"jobs":N,"enqueue_s":..,"drain_s":..}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_sqlite::{SqliteConnectOptions, SqlitePool, SqliteStorage};
use tokio::sync::Notify;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Counts finished jobs and wakes the timer when all are done.
struct Done {
    count: AtomicUsize,
    target: usize,
    notify: Notify,
}

async fn noop(_job: serde_json::Value, done: Data<Arc<Done>>) -> Result<(), BoxDynError> {
    if done.count.fetch_add(1, Ordering::AcqRel) + 1 == done.target {
        done.notify.notify_one();
    }
    Ok(())
}

fn payload(index: usize) -> serde_json::Value {
    serde_json::json!({ "id": index.to_string(), "title": format!("task {index}"), "notes": "n".repeat(150) })
}

async fn run(dir: &std::path::Path, jobs: usize, concurrency: usize) -> Result<(f64, f64), Error> {
    let path = dir.join(format!("apalis-{concurrency}.db"));
    let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await?;
    SqliteStorage::setup(&pool).await?;
    let mut backend = SqliteStorage::new(&pool);
    let started = Instant::now();
    backend
        .push_bulk((0..jobs).map(payload).collect())
        .await
        .map_err(|e| format!("push: {e}"))?;
    let enqueue = started.elapsed().as_secs_f64();
    let done = Arc::new(Done {
        count: AtomicUsize::new(0),
        target: jobs,
        notify: Notify::new(),
    });
    let worker = WorkerBuilder::new(format!("peer-{concurrency}"))
        .backend(backend)
        .data(Arc::clone(&done))
        .concurrency(concurrency)
        .build(noop);
    let started = Instant::now();
    let waiter = Arc::clone(&done);
    let signal = async move {
        waiter.notify.notified().await;
        Ok::<(), std::io::Error>(())
    };
    let handle = tokio::spawn(worker.run_until(signal));
    // A safety limit: a stuck peer must not hang the whole benchmark.
    let finished = tokio::time::timeout(Duration::from_secs(600), handle).await;
    let drain = started.elapsed().as_secs_f64();
    match finished {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => return Err(format!("worker: {error}").into()),
        Ok(Err(error)) => return Err(format!("worker task: {error}").into()),
        Err(_) => return Err("apalis did not drain within 600 s".into()),
    }
    let processed = done.count.load(Ordering::Acquire);
    if processed < jobs {
        return Err(format!("apalis ran {processed} of {jobs} jobs").into());
    }
    pool.close().await;
    Ok((enqueue, drain))
}

fn arguments() -> Result<(usize, Vec<usize>), Error> {
    let (mut jobs, mut concurrency) = (2_000, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--jobs" => jobs = value.parse()?,
            "--concurrency" => concurrency.push(value.parse()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if concurrency.is_empty() {
        concurrency = vec![1, 16];
    }
    Ok((jobs, concurrency))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let (jobs, concurrency) = arguments()?;
    let dir = std::env::temp_dir().join(format!("peer-apalis-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for c in concurrency {
        let result = run(&dir, jobs, c).await;
        let _ = std::fs::remove_file(dir.join(format!("apalis-{c}.db")));
        let (enqueue, drain) = result?;
        println!(
            "{}",
            serde_json::json!({
                "peer": "apalis-sqlite 1.0", "concurrency": c, "jobs": jobs,
                "enqueue_s": enqueue, "drain_s": drain,
            })
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
