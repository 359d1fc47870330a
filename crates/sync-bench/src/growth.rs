//! `cargo xtask bench growth`: the cost per synced item as the queue
//! grows. Drains 1 000, 10 000 and 100 000 queued creates through the
//! engine with a no-op adapter (so only the engine's own cost is left),
//! with no subscriber and with one `watch_queue` subscriber; the time per
//! item should stay flat (the reference re-reads the whole queue on every
//! change, which is O(N²) over a drain).

use std::sync::Arc;
use std::time::Duration;

use sync_store_sqlite::SqliteStore;
use tokio_stream::StreamExt;

use crate::common::{NoopAdapter, engine, filled_db, timed_drain};
use crate::report::{Curve, Report, Row, Target};

/// A drain longer than this is stopped and reported as a lower bound.
const LIMIT: Duration = Duration::from_secs(240);

/// One drain: microseconds per item (`None` when the drain hit
/// [`LIMIT`]), and what the subscriber received.
struct Drained {
    micros: Option<f64>,
    /// Values the `watch_queue` subscriber received during the drain.
    values: u64,
    seconds: f64,
}

async fn per_item(dir: &std::path::Path, count: usize, watch: bool) -> Result<Drained, String> {
    let path = filled_db(dir, &format!("growth-{count}-{watch}.db"), count, 200).await?;
    let store = SqliteStore::open(&path).await.map_err(|e| e.to_string())?;
    let adapter = Arc::new(NoopAdapter::default());
    let engine = engine(Arc::new(store), adapter, 1).await?;
    let watcher = if watch {
        let mut stream = engine.watch_queue();
        // The first value (one read of the whole queue) comes before the
        // timed drain.
        let first = stream.next().await.ok_or("watch_queue ended at once")?;
        if first.len() != count {
            return Err(format!(
                "watch_queue started with {} of {count} items",
                first.len()
            ));
        }
        Some(tokio::spawn(async move {
            let (mut values, mut items) = (0u64, 0u64);
            while let Some(queue) = stream.next().await {
                values += 1;
                items += queue.len() as u64;
            }
            (values, items)
        }))
    } else {
        None
    };
    let result = tokio::time::timeout(LIMIT, timed_drain(&engine, count)).await;
    engine.close().await;
    let mut values = 0;
    if let Some(watcher) = watcher {
        let (received, items) = watcher.await.map_err(|e| e.to_string())?;
        eprintln!("    watch_queue at {count}: {received} values, {items} items copied");
        values = received;
    }
    let _ = std::fs::remove_file(&path);
    let seconds = match result {
        Ok(seconds) => Some(seconds?),
        Err(_) => None,
    };
    Ok(Drained {
        micros: seconds.map(|seconds| seconds * 1e6 / count as f64),
        values,
        seconds: seconds.unwrap_or(LIMIT.as_secs_f64()),
    })
}

pub(crate) async fn run(report: &mut Report, smoke: bool) -> Result<(), String> {
    let sizes: [usize; 3] = if smoke {
        [100, 300, 1_000]
    } else {
        [1_000, 10_000, 100_000]
    };
    eprintln!("growth benchmarks (drains of {sizes:?} queued creates, no-op adapter)");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    for (watch, name) in [(false, "no subscriber"), (true, "1 watch_queue subscriber")] {
        let mut points = Vec::new();
        let mut intervals = Vec::new();
        for count in sizes {
            // Small drains are noisy (scheduling decides how many values the
            // subscriber gets): best of two; the largest runs once.
            let mut drained = per_item(dir.path(), count, watch).await?;
            if count <= 10_000 {
                let again = per_item(dir.path(), count, watch).await?;
                if again.micros.unwrap_or(f64::MAX) < drained.micros.unwrap_or(f64::MAX) {
                    drained = again;
                }
            }
            if watch {
                intervals.push(format!(
                    "{count}: {} values, one every {} ms",
                    drained.values,
                    crate::report::num(drained.seconds * 1e3 / drained.values.max(1) as f64)
                ));
            }
            match drained.micros {
                Some(micros) => points.push((count as f64, micros)),
                None => {
                    report.fact(format!(
                        "growth, {name}: the drain of {count} items took over {} s and was stopped \
                         (> {} µs per item)",
                        LIMIT.as_secs(),
                        crate::report::num(LIMIT.as_secs_f64() * 1e6 / count as f64)
                    ));
                    points.push((count as f64, LIMIT.as_secs_f64() * 1e6 / count as f64));
                    break;
                }
            }
        }
        // Flat means no size costs more per item than the smallest: the
        // worst larger size is judged, not only the largest.
        let Some(&(small_n, small)) = points.first() else {
            return Err("no growth point".into());
        };
        let Some(&(worst_n, worst)) = points.iter().skip(1).max_by(|a, b| a.1.total_cmp(&b.1)) else {
            return Err("a single growth point".into());
        };
        let largest_n = points.last().map_or(worst_n, |point| point.0);
        let sizes = if worst_n == largest_n {
            format!("drain of {} vs {} queued", worst_n as u64, small_n as u64)
        } else {
            format!(
                "worst size: drain of {} (largest: {}) vs {} queued",
                worst_n as u64, largest_n as u64, small_n as u64
            )
        };
        report.fact(format!(
            "growth, {name}: µs per item {}",
            points
                .iter()
                .map(|(n, us)| format!("{}: {}", *n as u64, crate::report::num(*us)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if watch {
            report.fact(format!(
                "growth: the watch_queue subscriber during each drain (bursts coalesce, each value is a \
                 copy of the whole queue): {}",
                intervals.join("; ")
            ));
        }
        report.row(Row {
            scenario: format!("growth: cost per item, {name}"),
            sizes,
            engine: worst,
            baseline_name: format!("same at {}", small_n as u64),
            baseline: small,
            unit: "µs/item",
            target: Some(Target::RatioAtMost(1.5)),
        });
        report.curves.push(Curve {
            name: name.to_owned(),
            points,
        });
    }
    Ok(())
}
