//! [`Session`]: the reference server, the engine over it (through
//! `sync-facade` only) and another user's client, with one function per
//! thing the keys ask for; [`Session::perform`] carries out an
//! [`Action`] and reports the outcome on the [`App`]'s message line.

use std::time::Duration;

use serde_json::json;
use sync_facade::prelude::*;
use sync_facade::{OpenError, StoreErrorKind};
use sync_reference_server::{ReferenceServer, ServerConfig};
use tempfile::TempDir;

use crate::app::{Action, App, TASKS};
use crate::events::EngineEvents;
use crate::other_user::{OTHER_USER_NAME, OtherUser, OtherUserError};
use crate::task::Task;

/// Why something the user asked for could not be done.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The reference server could not start, come back or take the seed.
    #[error("reference server: {0}")]
    Server(#[from] sync_reference_server::Error),
    /// The engine could not be opened.
    #[error("opening the engine: {0}")]
    Open(#[from] OpenError),
    /// The engine refused a call.
    #[error("engine: {0}")]
    Sync(#[from] SyncError),
    /// The local data directory could not be made.
    #[error("data directory: {0}")]
    DataDir(#[from] std::io::Error),
    /// Another user's edit did not reach the server.
    #[error("another user's edit: {0}")]
    OtherUser(#[from] OtherUserError),
    /// The task is not in the local store.
    #[error("no task {0} here")]
    NoSuchTask(String),
}

/// Timings and first data of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How often auto-sync pulls the server's changes.
    pub pull_interval: Duration,
    /// How often auto-sync probes the server's `/health`, and how long a
    /// confirmed "online" is trusted.
    pub connectivity_check_interval: Duration,
    /// Titles of the tasks the server holds at start (ids `t1`, `t2`, …),
    /// pulled down by the engine's first run.
    pub seed_titles: Vec<String>,
}

impl Default for SessionConfig {
    /// Pulls every 2 s, probes every 300 ms, three tasks on the server.
    fn default() -> Self {
        Self {
            pull_interval: Duration::from_secs(2),
            connectivity_check_interval: Duration::from_millis(300),
            seed_titles: ["Water the plants", "Call the plumber", "Renew the parking permit"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// The running example: a reference server on loopback, an engine with
/// its SQLite file in a temporary directory and auto-sync on, and another
/// user's HTTP client.
#[derive(Debug)]
pub struct Session {
    engine: OfflineSyncEngine,
    tasks: Collection<Task>,
    server: ReferenceServer,
    other_user: OtherUser,
    _data_dir: TempDir,
}

impl Session {
    /// Starts the server (seeded with `config.seed_titles`), opens the
    /// engine over it pulling `tasks` by change feed, starts auto-sync,
    /// and starts watching the engine.
    ///
    /// # Errors
    /// [`SessionError`] naming the part that failed to start.
    pub async fn start(config: SessionConfig) -> Result<(Self, EngineEvents), SessionError> {
        let server = ReferenceServer::start(ServerConfig::new()).await?;
        let seed =
            config.seed_titles.iter().enumerate().map(
                |(index, title)| json!({"id": format!("t{}", index + 1), "title": title, "done": false}),
            );
        server.seed(TASKS, seed)?;
        let data_dir = tempfile::tempdir()?;
        let options = OfflineSyncOptions::default()
            .retry_base_delay(Duration::from_millis(500))
            .connectivity_check_interval(Some(config.connectivity_check_interval))
            .connectivity_probe_min_interval_while_online(config.connectivity_check_interval)
            .pull_interval(Some(config.pull_interval))
            .close_timeout(Duration::from_secs(3));
        let engine = OfflineSync::builder(data_dir.path(), server.url())
            .probe_api_health("/health")
            .pull(TASKS, PullStrategy::change_feed())
            .options(options)
            .build()
            .await?;
        let watched = engine
            .collection::<Task>(TASKS)
            .and_then(|tasks| Ok((tasks, EngineEvents::watch(&engine)?)));
        let (tasks, events) = match watched {
            Ok(watched) => watched,
            Err(error) => {
                engine.close().await;
                return Err(error.into());
            }
        };
        engine.sync_manager().start_auto_sync();
        let session = Self {
            other_user: OtherUser::new(server.addr()),
            tasks,
            engine,
            server,
            _data_dir: data_dir,
        };
        Ok((session, events))
    }

    /// The engine.
    #[must_use]
    pub fn engine(&self) -> &OfflineSyncEngine {
        &self.engine
    }

    /// The tasks, as a typed collection over the engine.
    #[must_use]
    pub fn tasks(&self) -> &Collection<Task> {
        &self.tasks
    }

    /// The reference server.
    #[must_use]
    pub fn server(&self) -> &ReferenceServer {
        &self.server
    }

    /// Carries out `action` and puts its outcome on `app`'s message line
    /// (and, for the server switch, the server indicator).
    pub async fn perform(&mut self, action: Action, app: &mut App) {
        let message = match action {
            Action::AddTask { title } => self.add_task(&title).await.map(|id| {
                app.select(id);
                format!("Saved \"{title}\" locally; it syncs when the server is reachable.")
            }),
            Action::RenameTask { id, title } => self
                .rename_task(&id, &title)
                .await
                .map(|()| format!("Renamed {id} to \"{title}\" locally.")),
            Action::ToggleDone { id } => self
                .toggle_done(&id)
                .await
                .map(|done| format!("Marked {id} {}.", if done { "done" } else { "not done" })),
            Action::DeleteTask { id } => self
                .delete_task(&id)
                .await
                .map(|()| format!("Deleted {id} locally; the delete syncs like any change.")),
            Action::ToggleServer => self.toggle_server().await.map(|up| {
                app.set_server_up(up);
                if up {
                    "Server back up: the queue drains.".to_owned()
                } else {
                    "Server down: connections are refused; saves wait in the queue.".to_owned()
                }
            }),
            Action::EditOnServer { id } => self.edit_on_server(&id).await.map(|title| {
                format!(
                    "{OTHER_USER_NAME} renamed {id} on the server to \"{title}\"; the next pull brings it."
                )
            }),
            Action::Retry { id } => self.retry(&id).await.map(|retried| {
                if retried {
                    format!("Retrying {id}.")
                } else {
                    format!("{id} has no failed change to retry.")
                }
            }),
            Action::Discard { id } => match self.discard(&id).await {
                Ok(outcome) => Ok(match outcome {
                    DiscardOutcome::Reverted => {
                        format!("Discarded {id}'s change: back to the server's copy.")
                    }
                    DiscardOutcome::Removed => {
                        format!("Discarded {id}'s change: removed, the server never had it.")
                    }
                    DiscardOutcome::Dropped => {
                        format!(
                            "Discarded {id}'s change; the server's copy is not known, so the task stays as saved."
                        )
                    }
                    DiscardOutcome::NothingQueued => {
                        format!("{id} has no change waiting: nothing to discard.")
                    }
                    _ => format!("Discarded {id}'s change ({outcome})."),
                }),
                Err(SessionError::Sync(SyncError::Store(error)))
                    if error.kind() == StoreErrorKind::InFlight =>
                {
                    Ok(format!(
                        "{id}'s change is being sent right now; discard it once it reports back."
                    ))
                }
                Err(error) => Err(error),
            },
            Action::Quit => {
                app.request_quit();
                Ok("Closing the engine…".to_owned())
            }
        };
        app.set_message(message.unwrap_or_else(|error| format!("Could not do that: {error}")));
    }

    /// Saves a new task locally (a create in the queue); returns its id.
    ///
    /// # Errors
    /// [`SessionError::Sync`] if the engine refuses the save.
    pub async fn add_task(&self, title: &str) -> Result<String, SessionError> {
        let simple = uuid::Uuid::new_v4().simple().to_string();
        let task = Task {
            id: format!("t-{}", &simple[..8]),
            title: title.to_owned(),
            done: false,
        };
        self.tasks.create(&task).await?;
        Ok(task.id)
    }

    /// Saves task `id` with a new title (an update in the queue).
    ///
    /// # Errors
    /// [`SessionError::NoSuchTask`], or [`SessionError::Sync`].
    pub async fn rename_task(&self, id: &str, title: &str) -> Result<(), SessionError> {
        self.update_task(id, |task| title.clone_into(&mut task.title))
            .await
            .map(|_| ())
    }

    /// Flips task `id`'s `done`; returns the new value.
    ///
    /// # Errors
    /// [`SessionError::NoSuchTask`], or [`SessionError::Sync`].
    pub async fn toggle_done(&self, id: &str) -> Result<bool, SessionError> {
        let task = self.update_task(id, |task| task.done = !task.done).await?;
        Ok(task.done)
    }

    /// Reads task `id`, changes it and saves it (the id stays, so the
    /// engine queues an update).
    async fn update_task(&self, id: &str, change: impl FnOnce(&mut Task)) -> Result<Task, SessionError> {
        let mut task = self
            .tasks
            .get(id)
            .await?
            .ok_or_else(|| SessionError::NoSuchTask(id.to_owned()))?;
        change(&mut task);
        self.tasks.save(&task).await?;
        Ok(task)
    }

    /// Deletes task `id` locally (a delete in the queue).
    ///
    /// # Errors
    /// [`SessionError::Sync`] if the engine refuses the save.
    pub async fn delete_task(&self, id: &str) -> Result<(), SessionError> {
        self.tasks.delete(id).await?;
        Ok(())
    }

    /// Gives up task `id`'s waiting change (pending, failed or parked) and
    /// puts the task back as the server last confirmed it, or removes it
    /// for a create the server never had; the outcome says which.
    ///
    /// # Errors
    /// [`SessionError::Sync`]: [`SyncError::Store`] of kind
    /// [`StoreErrorKind::InFlight`] while the change is being sent
    /// (nothing changed; try once it reports back).
    pub async fn discard(&self, id: &str) -> Result<DiscardOutcome, SessionError> {
        Ok(self.engine.discard(TASKS, id, true).await?)
    }

    /// Takes the server down when it is up, brings it back (same port,
    /// same data) when it is down; returns whether it is up now.
    ///
    /// # Errors
    /// [`SessionError::Server`] if the port could not be bound again (the
    /// server stays down; try again).
    pub async fn toggle_server(&self) -> Result<bool, SessionError> {
        if self.server.is_online() {
            self.server.stop().await;
            Ok(false)
        } else {
            self.server.resume().await?;
            Ok(true)
        }
    }

    /// Another user renames task `id` on the server over HTTP (not through
    /// the engine); returns the title they gave it. The engine's next pull
    /// brings it down, unless a local change of the task waits to be sent.
    ///
    /// # Errors
    /// [`SessionError::OtherUser`]: the server is down or lacks the task.
    pub async fn edit_on_server(&mut self, id: &str) -> Result<String, SessionError> {
        Ok(self.other_user.retitle(id).await?)
    }

    /// Makes task `id`'s failed or parked change eligible now; returns
    /// whether it had failed.
    ///
    /// # Errors
    /// [`SessionError::Sync`].
    pub async fn retry(&self, id: &str) -> Result<bool, SessionError> {
        Ok(self.engine.retry(TASKS, id).await?)
    }

    /// Closes the engine (letting a run in progress record its outcomes)
    /// and shuts the server down.
    pub async fn close(self) {
        self.engine.close().await;
        self.server.shutdown().await;
    }
}
