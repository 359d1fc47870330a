//! Property test (issue 14): random interleavings of creates under
//! temporary ids, edits and re-pointed references through those ids,
//! deletes, syncs, answers lost after the server applied them, outcomes the
//! store could not record (a kill between the answer and the rename),
//! restarts and pulls, against a server that assigns ids itself, converge
//! once the queue drains:
//!
//! - no record is created twice, none is missing or left over;
//! - the server holds, under its own id, the last state saved for each
//!   record, with its references carrying the server's ids;
//! - no temporary id ever reaches the server (in a body or a path), and no
//!   task reaches it before the project it names (checked by the server as
//!   each request arrives);
//! - every temporary id resolves to the server's id.
//!
//! Time is tokio's paused clock, so held tasks and backoffs cost nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

#[path = "support/assigning.rs"]
mod assigning;

use std::sync::Arc;
use std::time::Duration;

use assigning::{Answer, AssigningServer};
use proptest::prelude::*;
use serde_json::{Value, json};
use sync_core::{PullSource, SyncOperation};
use sync_engine::{OfflineSyncEngine, OfflineSyncOptions, TokioClock};
use sync_testkit::{FakeMonitor, MemoryStore};

#[derive(Debug, Clone)]
enum Step {
    CreateProject,
    CreateTask {
        project: usize,
    },
    EditProject {
        project: usize,
    },
    EditTask {
        task: usize,
        project: usize,
    },
    DeleteTask {
        task: usize,
    },
    /// The next write is applied, and its answer lost.
    LoseNextAnswer,
    /// The next outcomes cannot be recorded, as if the app died between
    /// the server's answer and the rename.
    FailNextFinish,
    Sync,
    Pull,
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::CreateProject),
        4 => (0..8usize).prop_map(|project| Step::CreateTask { project }),
        2 => (0..8usize).prop_map(|project| Step::EditProject { project }),
        2 => (0..16usize, 0..8usize).prop_map(|(task, project)| Step::EditTask { task, project }),
        1 => (0..16usize).prop_map(|task| Step::DeleteTask { task }),
        2 => Just(Step::LoseNextAnswer),
        1 => Just(Step::FailNextFinish),
        3 => Just(Step::Sync),
        1 => Just(Step::Pull),
        1 => Just(Step::Restart),
    ]
}

/// What the app created and last saved, by temporary id.
#[derive(Debug, Default)]
struct Model {
    projects: Vec<(String, Value)>,
    /// Tasks: temporary id, last data, deleted.
    tasks: Vec<(String, Value, bool)>,
    edits: u64,
}

async fn open(store: &Arc<MemoryStore>, server: &AssigningServer, concurrency: usize) -> OfflineSyncEngine {
    let source: Arc<dyn PullSource> = Arc::new(server.clone());
    for _ in 0..100 {
        let built = OfflineSyncEngine::builder(
            Arc::clone(store) as Arc<dyn sync_core::SyncStore>,
            Arc::new(server.clone()),
            Arc::new(FakeMonitor::new(true)),
        )
        .options(
            OfflineSyncOptions::default()
                .sync_after_save(false)
                .connectivity_check_interval(None)
                .concurrency(concurrency),
        )
        .reference("tasks", "project_id", "projects")
        .pull("projects", Arc::clone(&source))
        .pull("tasks", Arc::clone(&source))
        .clock(Arc::new(TokioClock::new()))
        .build()
        .await;
        match built {
            Ok(engine) => return engine,
            // The engine dropped a moment ago still holds the store.
            Err(sync_engine::SyncError::StoreInUse) => tokio::task::yield_now().await,
            Err(error) => panic!("{error}"),
        }
    }
    panic!("the store stayed in use")
}

async fn run(steps: Vec<Step>, concurrency: usize) {
    let server = AssigningServer::new(true, false, Answer::Record);
    let mut server_unique_off = server.clone();
    server_unique_off.unique_ref = false;
    let server = server_unique_off;
    let store = Arc::new(MemoryStore::new());
    let mut engine = open(&store, &server, concurrency).await;
    let mut model = Model::default();
    for step in steps {
        match step {
            Step::CreateProject => {
                model.edits += 1;
                let data = json!({"name": format!("p{}", model.edits)});
                let created = engine.create("projects", data.clone()).await.unwrap();
                model.projects.push((created.id.to_string(), data));
            }
            Step::CreateTask { project } if !model.projects.is_empty() => {
                model.edits += 1;
                let parent = &model.projects[project % model.projects.len()].0;
                let data = json!({"title": format!("t{}", model.edits), "project_id": parent});
                let created = engine.create("tasks", data.clone()).await.unwrap();
                model.tasks.push((created.id.to_string(), data, false));
            }
            Step::EditProject { project } if !model.projects.is_empty() => {
                model.edits += 1;
                let index = project % model.projects.len();
                let data = json!({"name": format!("p{}", model.edits)});
                engine
                    .save(
                        "projects",
                        &model.projects[index].0,
                        data.clone(),
                        SyncOperation::Update,
                    )
                    .await
                    .unwrap();
                model.projects[index].1 = data;
            }
            Step::EditTask { task, project } if !model.tasks.is_empty() && !model.projects.is_empty() => {
                let index = task % model.tasks.len();
                if model.tasks[index].2 {
                    continue;
                }
                model.edits += 1;
                // Through the temporary ids the app was given, renamed or not.
                let parent = &model.projects[project % model.projects.len()].0;
                let data = json!({"title": format!("t{}", model.edits), "project_id": parent});
                engine
                    .save(
                        "tasks",
                        &model.tasks[index].0,
                        data.clone(),
                        SyncOperation::Update,
                    )
                    .await
                    .unwrap();
                model.tasks[index].1 = data;
            }
            Step::DeleteTask { task } if !model.tasks.is_empty() => {
                let index = task % model.tasks.len();
                if model.tasks[index].2 {
                    continue;
                }
                engine
                    .save("tasks", &model.tasks[index].0, json!({}), SyncOperation::Delete)
                    .await
                    .unwrap();
                model.tasks[index].2 = true;
            }
            Step::LoseNextAnswer => server.lose_next_answer(),
            Step::FailNextFinish => store.fail_next_finishes(1),
            Step::Sync => {
                // An outcome the store refused ends the run with that error;
                // the next run recovers the attempt, as after a kill.
                let run = tokio::time::timeout(Duration::from_secs(600), engine.sync_manager().sync_now())
                    .await
                    .expect("a sync hung");
                if let Err(error) = run {
                    assert!(matches!(error, sync_engine::SyncError::Store(_)), "{error}");
                }
            }
            Step::Pull => {
                tokio::time::timeout(Duration::from_secs(600), engine.sync_manager().pull_now())
                    .await
                    .expect("a pull hung")
                    .unwrap();
            }
            Step::Restart => {
                drop(engine);
                engine = open(&store, &server, concurrency).await;
            }
            _ => {}
        }
    }
    // Drain: no more faults.
    let mut drained = false;
    for _ in 0..20 {
        // A failure left armed by the script may still refuse one outcome.
        let run = tokio::time::timeout(Duration::from_secs(600), engine.sync_manager().sync_now())
            .await
            .expect("a sync hung");
        if let Err(error) = run {
            assert!(matches!(error, sync_engine::SyncError::Store(_)), "{error}");
        }
        if engine
            .wait_until_drained(Duration::from_millis(200))
            .await
            .unwrap()
        {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        drained,
        "the queue never drained: {:#?}",
        engine.queue().await.unwrap()
    );
    engine.sync_manager().pull_now().await.unwrap();

    let violations = server.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:?}");
    // Every temporary id resolves to a server id.
    let mut project_ids = std::collections::HashMap::new();
    for (temporary, _) in &model.projects {
        let id = engine.resolve_id("projects", temporary).await.unwrap();
        assert!(!id.is_temporary(), "projects/{temporary} was never renamed");
        project_ids.insert(temporary.clone(), id.as_str().parse::<u64>().unwrap());
    }
    // The server holds exactly the last state of each live record.
    let expected_projects: Vec<(u64, Value)> = {
        let mut rows: Vec<(u64, Value)> = model
            .projects
            .iter()
            .map(|(temporary, data)| (project_ids[temporary], data.clone()))
            .collect();
        rows.sort_by_key(|(id, _)| *id);
        rows
    };
    let strip = |rows: Vec<(u64, Value)>| -> Vec<(u64, Value)> {
        rows.into_iter()
            .map(|(id, mut data)| {
                data.as_object_mut().unwrap().remove("id");
                (id, data)
            })
            .collect()
    };
    assert_eq!(strip(server.records("projects")), expected_projects);
    let mut expected_tasks = Vec::new();
    for (temporary, data, deleted) in &model.tasks {
        if *deleted {
            continue;
        }
        let id = engine.resolve_id("tasks", temporary).await.unwrap();
        assert!(!id.is_temporary(), "tasks/{temporary} was never renamed");
        let mut data = data.clone();
        let parent = data["project_id"].as_str().unwrap().to_owned();
        data["project_id"] = json!(project_ids[&parent]);
        expected_tasks.push((id.as_str().parse::<u64>().unwrap(), data));
    }
    expected_tasks.sort_by_key(|(id, _)| *id);
    assert_eq!(strip(server.records("tasks")), expected_tasks);
    // And so does the device, under the server's ids.
    for (entity, expected) in [("projects", &expected_projects), ("tasks", &expected_tasks)] {
        let mut local: Vec<(u64, Value)> = engine
            .get_records(entity)
            .await
            .unwrap()
            .into_iter()
            .map(|record| {
                (
                    record.id.as_str().parse::<u64>().unwrap(),
                    Value::Object(record.data),
                )
            })
            .collect();
        local.sort_by_key(|(id, _)| *id);
        assert_eq!(&strip(local), expected, "{entity}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_interleaving_converges_with_one_record_per_create(
        steps in prop::collection::vec(step(), 1..40),
        concurrency in prop_oneof![Just(1usize), Just(4usize)],
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(run(steps, concurrency));
    }
}
