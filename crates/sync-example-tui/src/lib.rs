//! `tasks-tui`: an example app a person can touch. A terminal task list
//! over the offline sync engine (through `sync-facade` only) and the
//! reference server, both started in-process:
//!
//! - every task shows where its last change stands (pending, syncing,
//!   synced, failed, parked);
//! - `a`, `e`, space and `d` add, rename, tick and delete tasks: saved
//!   locally at once, sent when the server is reachable;
//! - `s` takes the server down and brings it back on the same port; the
//!   connectivity indicator and the queue counter follow;
//! - `o` has another user rename the selected task on the server over
//!   plain HTTP, and the engine's pull (every 2 s) brings it on screen;
//! - `r` retries a failed or parked change; `x` discards the selected
//!   task's waiting change and puts the task back as the server has it
//!   (or removes it, if the server never had it); `q` closes the engine
//!   and leaves.
//!
//! Tasks are a typed collection: [`Task`] derives serde's traits and
//! `engine.collection::<Task>("tasks")` creates, saves, deletes and
//! watches them, ids read from the `id` field. A stored document that does
//! not read as a [`Task`] is not dropped: the screen counts it ("1 task
//! could not be read").
//!
//! Run it with `cargo run -p sync-example-tui`. The pieces are testable
//! without a terminal: [`App`] is the model (engine reports and key
//! presses in, [`Action`]s out), [`render()`] draws it, [`Session`] carries
//! the actions out, and [`on_key`] is the one path from a key to its
//! effect, for the terminal loop and the tests alike.
#![deny(missing_docs)]

pub mod app;
pub mod badge;
pub mod events;
pub mod other_user;
pub mod render;
pub mod session;
pub mod task;

pub use app::{Action, App, EngineEvent, TaskRow};
pub use badge::Badge;
pub use events::EngineEvents;
pub use render::render;
pub use session::{Session, SessionConfig, SessionError};
pub use task::Task;

/// Takes in one key press: the [`App`] updates itself and names the
/// action the key asks for, which `session` carries out.
pub async fn on_key(app: &mut App, session: &mut Session, key: ratatui::crossterm::event::KeyEvent) {
    if let Some(action) = app.handle_key(key) {
        session.perform(action, app).await;
    }
}
