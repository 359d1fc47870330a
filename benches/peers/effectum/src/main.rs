//! Peer benchmark: effectum 0.7. Enqueues `--jobs` jobs (one `add_jobs`
//! call), then drains them with a no-op handler at each `--concurrency`, on
//! a fresh database file each time. Prints one JSON line per concurrency on
//! stdout:
//! `{"peer":"effectum 0.7","concurrency":1,"jobs":N,"enqueue_s":..,"drain_s":..}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use effectum::{Job, JobRunner, Queue, RunningJob, Worker};
use tokio::sync::Notify;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Counts finished jobs and wakes the timer when all are done.
#[derive(Debug)]
struct Done {
    count: AtomicUsize,
    target: usize,
    notify: Notify,
}

async fn noop(_job: RunningJob, done: Arc<Done>) -> Result<(), String> {
    if done.count.fetch_add(1, Ordering::AcqRel) + 1 == done.target {
        done.notify.notify_one();
    }
    Ok(())
}

fn payload(index: usize) -> serde_json::Value {
    serde_json::json!({ "id": index.to_string(), "title": format!("task {index}"), "notes": "n".repeat(150) })
}

async fn run(dir: &std::path::Path, jobs: usize, concurrency: u16) -> Result<(f64, f64), Error> {
    let path = dir.join(format!("effectum-{concurrency}.db"));
    let queue = Queue::new(&path).await?;
    let batch = (0..jobs)
        .map(|index| Job::builder("noop").json_payload(&payload(index)).map(|b| b.build()))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    queue.add_jobs(batch).await?;
    let enqueue = started.elapsed().as_secs_f64();
    let done = Arc::new(Done {
        count: AtomicUsize::new(0),
        target: jobs,
        notify: Notify::new(),
    });
    let started = Instant::now();
    let worker = Worker::builder(&queue, Arc::clone(&done))
        .jobs([JobRunner::builder("noop", noop).build()])
        .max_concurrency(concurrency)
        .build()
        .await?;
    // A safety limit: a stuck peer must not hang the whole benchmark.
    let finished = tokio::time::timeout(Duration::from_secs(600), done.notify.notified()).await;
    let drain = started.elapsed().as_secs_f64();
    worker.unregister(Some(Duration::from_secs(10))).await?;
    queue.close(Duration::from_secs(10)).await?;
    if finished.is_err() {
        return Err("effectum did not drain within 600 s".into());
    }
    Ok((enqueue, drain))
}

fn arguments() -> Result<(usize, Vec<u16>), Error> {
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
    let dir = std::env::temp_dir().join(format!("peer-effectum-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for c in concurrency {
        let result = run(&dir, jobs, c).await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("effectum-{c}.db{suffix}")));
        }
        let (enqueue, drain) = result?;
        println!(
            "{}",
            serde_json::json!({
                "peer": "effectum 0.7", "concurrency": c, "jobs": jobs,
                "enqueue_s": enqueue, "drain_s": drain,
            })
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
