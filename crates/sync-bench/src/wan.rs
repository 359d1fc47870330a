//! `cargo xtask bench wan`: a field device back online after a day, on a
//! slow link. The reference server answers every request 50 ms late; the
//! engine (as an app builds it, references declared) drains projects and
//! tasks that refer to them, at several concurrencies. Each drain is set
//! beside the physical limit of the same run: concurrency ÷ the round trip
//! a bare hyper client measures against the same server. Every task must
//! reach the server after its project (checked in the request log).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use sync_facade::{OfflineSync, OfflineSyncEngine, OfflineSyncOptions, RequestShape, SyncOperation};
use sync_reference_server::{Fault, FaultPlan, ReferenceServer, ServerConfig};

use crate::pull::err;
use crate::report::{Report, Row, Target};

/// Tasks per project.
const TASKS_PER_PROJECT: usize = 4;

/// The concurrency a new engine uses ([`OfflineSyncOptions::default`]),
/// whose row carries the target.
fn default_concurrency() -> usize {
    OfflineSyncOptions::default().concurrency
}

/// The scenario's sizes.
struct Sizes {
    /// Records drained per run (projects and their tasks).
    records: usize,
    /// The server's delay on every answer.
    delay: Duration,
    /// Sequential requests the round trip is measured over.
    probes: usize,
    concurrencies: &'static [usize],
}

impl Sizes {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                records: 100,
                delay: Duration::from_millis(5),
                probes: 10,
                concurrencies: &[1, 8],
            }
        } else {
            Self {
                records: 2_000,
                delay: Duration::from_millis(50),
                probes: 40,
                concurrencies: &[1, 4, 8, 16, 32],
            }
        }
    }
}

/// The mean round trip of `count` sequential POSTs of about 200 bytes
/// from a bare hyper client (keep-alive) to the server's `probe`
/// collection.
async fn round_trip(url: &str, count: usize) -> Result<Duration, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut total = Duration::ZERO;
    for n in 0..=count {
        let body = json!({"id": format!("probe-{n}"), "title": "probe", "notes": "n".repeat(150)});
        let request = Request::post(format!("{url}/probe"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(err("probe request"))?;
        let started = Instant::now();
        let response = client.request(request).await.map_err(err("probe"))?;
        let _ = response.into_body().collect().await.map_err(err("probe body"))?;
        // The first request opens the connection: not counted.
        if n > 0 {
            total += started.elapsed();
        }
    }
    Ok(total / u32::try_from(count.max(1)).unwrap_or(u32::MAX))
}

/// The engine as an app builds it: tasks refer to projects, syncs only
/// when asked.
async fn open(
    url: &str,
    dir: &std::path::Path,
    concurrency: usize,
    shape: RequestShape,
) -> Result<OfflineSyncEngine, String> {
    OfflineSync::builder(dir, url)
        .probe_api_health("/health")
        .shape(shape)
        .reference("tasks", "project_id", "projects")
        .options(
            OfflineSyncOptions::default()
                .sync_after_save(false)
                .connectivity_check_interval(None)
                .concurrency(concurrency),
        )
        .build()
        .await
        .map_err(err("opening the engine"))
}

/// Saves `records` projects and tasks (a project after two of its tasks,
/// as an app adding a project from a task's screen might), then times the
/// `sync_now` that drains them. Items per second.
async fn drain(url: &str, dir: &std::path::Path, records: usize, concurrency: usize) -> Result<f64, String> {
    let engine = open(url, dir, concurrency, RequestShape::rest()).await?;
    let projects = records / (TASKS_PER_PROJECT + 1);
    for p in 0..projects {
        for t in 0..TASKS_PER_PROJECT {
            let task = format!("c{concurrency}-t{p}-{t}");
            let project = format!("c{concurrency}-p{p}");
            engine
                .save(
                    "tasks",
                    &task,
                    json!({"id": task, "project_id": project, "notes": "n".repeat(150)}),
                    SyncOperation::Create,
                )
                .await
                .map_err(err("save"))?;
            if t == 1 {
                engine
                    .save(
                        "projects",
                        &project,
                        json!({"id": project, "notes": "n".repeat(150)}),
                        SyncOperation::Create,
                    )
                    .await
                    .map_err(err("save"))?;
            }
        }
    }
    let count = projects * (TASKS_PER_PROJECT + 1);
    let started = Instant::now();
    let report = engine.sync_manager().sync_now().await.map_err(err("sync_now"))?;
    let seconds = started.elapsed().as_secs_f64();
    engine.close().await;
    if report.sent != count as u64 || report.still_pending != 0 {
        return Err(format!(
            "the drain at concurrency {concurrency} sent {} of {count} ({} left)",
            report.sent, report.still_pending
        ));
    }
    Ok(count as f64 / seconds)
}

/// As [`drain`], with ids the server assigns: each project is created
/// under a temporary id (`create`), then its tasks naming it by that id;
/// the tasks wait for the project's rename and go with the server's id.
/// Items per second, and whether every task names a project the server
/// holds.
async fn drain_assigned(
    url: &str,
    dir: &std::path::Path,
    records: usize,
    concurrency: usize,
) -> Result<f64, String> {
    let engine = open(
        url,
        dir,
        concurrency,
        RequestShape::rest().local_id_field("client_ref"),
    )
    .await?;
    let projects = records / (TASKS_PER_PROJECT + 1);
    for _ in 0..projects {
        let project = engine
            .create("projects", json!({"notes": "n".repeat(150)}))
            .await
            .map_err(err("create"))?;
        for _ in 0..TASKS_PER_PROJECT {
            engine
                .create(
                    "tasks",
                    json!({"project_id": project.id.as_str(), "notes": "n".repeat(150)}),
                )
                .await
                .map_err(err("create"))?;
        }
    }
    let count = projects * (TASKS_PER_PROJECT + 1);
    let started = Instant::now();
    let mut sent = 0;
    // Tasks held for their project's rename go in a later pass of the
    // same drain: sync until nothing is left.
    loop {
        let report = engine.sync_manager().sync_now().await.map_err(err("sync_now"))?;
        sent += report.sent;
        if report.still_pending == 0 {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    engine.close().await;
    if sent != count as u64 {
        return Err(format!(
            "the drain with server-assigned ids sent {sent} of {count}"
        ));
    }
    Ok(count as f64 / seconds)
}

/// Every task applied after its project, in the server's request log.
fn parents_first(server: &ReferenceServer) -> Result<usize, String> {
    let mut projects: HashSet<String> = HashSet::new();
    let mut tasks = 0;
    for request in server.request_log() {
        if request.method != Method::POST || !request.applied {
            continue;
        }
        let Some(id) = request.id else { continue };
        match request.collection.as_str() {
            "projects" => {
                projects.insert(id);
            }
            "tasks" => {
                // c{concurrency}-t{p}-{t} refers to c{concurrency}-p{p}.
                let project = id
                    .rsplit_once('-')
                    .map(|(head, _)| head.replacen("-t", "-p", 1))
                    .unwrap_or_default();
                if !projects.contains(&project) {
                    return Err(format!("tasks/{id} reached the server before projects/{project}"));
                }
                tasks += 1;
            }
            _ => {}
        }
    }
    Ok(tasks)
}

pub(crate) async fn run(report: &mut Report, smoke: bool) -> Result<(), String> {
    let sizes = Sizes::new(smoke);
    eprintln!(
        "wan benchmarks ({} projects and tasks, every answer {} ms late)",
        sizes.records,
        sizes.delay.as_millis()
    );
    let faults = FaultPlan::seeded(1).with_random(Fault::Delay(sizes.delay), 1.0);
    let server = ReferenceServer::start(ServerConfig::new().with_faults(faults))
        .await
        .map_err(err("reference server"))?;
    let url = server.url();
    let dir = tempfile::tempdir().map_err(err("temporary directory"))?;
    let rtt = round_trip(&url, sizes.probes).await?;
    report.fact(format!(
        "wan: round trip of a bare hyper POST against the server answering {} ms late: {:.1} ms",
        sizes.delay.as_millis(),
        rtt.as_secs_f64() * 1e3
    ));
    for &concurrency in sizes.concurrencies {
        let engine_dir = dir.path().join(format!("c{concurrency}"));
        std::fs::create_dir_all(&engine_dir).map_err(err("engine directory"))?;
        let rate = drain(&url, &engine_dir, sizes.records, concurrency).await?;
        let limit = concurrency as f64 / rtt.as_secs_f64().max(1e-9);
        let default = concurrency == default_concurrency();
        report.row(Row {
            scenario: format!(
                "wan: drain, concurrency {concurrency}{}",
                if default { " (the default)" } else { "" }
            ),
            sizes: format!(
                "{} projects and tasks (4 per project, references declared), answers {} ms late",
                sizes.records,
                sizes.delay.as_millis()
            ),
            engine: rate,
            baseline_name: format!("physical limit: {concurrency} ÷ bare round trip"),
            baseline: limit,
            unit: "items/s",
            target: default.then_some(Target::RatioAtLeast(0.8)),
        });
    }
    let checked = parents_first(&server)?;
    report.fact(format!(
        "wan: every one of {checked} tasks reached the server after its project (request log)"
    ));
    server.shutdown().await;

    // The same drain with ids the server assigns.
    let faults = FaultPlan::seeded(2).with_random(Fault::Delay(sizes.delay), 1.0);
    let server = ReferenceServer::start(ServerConfig::new().with_assigned_ids(true).with_faults(faults))
        .await
        .map_err(err("reference server"))?;
    let url = server.url();
    let concurrency = default_concurrency();
    let engine_dir = dir.path().join("assigned");
    std::fs::create_dir_all(&engine_dir).map_err(err("engine directory"))?;
    let rate = drain_assigned(&url, &engine_dir, sizes.records, concurrency).await?;
    let limit = concurrency as f64 / rtt.as_secs_f64().max(1e-9);
    report.row(Row {
        scenario: format!("wan: drain with server-assigned ids, concurrency {concurrency} (the default)"),
        sizes: format!(
            "{} projects and tasks created under temporary ids, tasks naming their project's, answers {} ms late",
            sizes.records,
            sizes.delay.as_millis()
        ),
        engine: rate,
        baseline_name: format!("physical limit: {concurrency} ÷ bare round trip"),
        baseline: limit,
        unit: "items/s",
        target: None,
    });
    let projects = server.records("projects");
    let held: HashSet<String> = projects.iter().map(|project| project["id"].to_string()).collect();
    let tasks = server.records("tasks");
    if let Some(orphan) = tasks
        .iter()
        .find(|task| !held.contains(&task["project_id"].to_string()))
    {
        return Err(format!(
            "a task names a project the server does not hold: {orphan}"
        ));
    }
    report.fact(format!(
        "wan, server-assigned ids: {} projects and {} tasks on the server, one each, every task naming its project by the server's id",
        projects.len(),
        tasks.len()
    ));
    server.shutdown().await;
    Ok(())
}
