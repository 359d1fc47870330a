//! [`App`]: everything the screen shows, updated from the engine's watch
//! streams ([`EngineEvent`]) and from key presses ([`App::handle_key`],
//! which answers with the [`Action`] to carry out). No terminal, no engine:
//! the model alone, so it can be tested as it is.

use std::collections::HashMap;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use sync_facade::{SyncQueueItem, SyncStatus, TypedRecords, Unreadable};

use crate::badge::Badge;
use crate::task::Task;

/// The entity the example keeps its tasks in.
pub const TASKS: &str = "tasks";

/// What the engine's watch streams report.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// The local tasks, as the typed collection's
    /// [`sync_facade::Collection::watch`] gives them: the documents that
    /// read as [`Task`], and apart, those that do not.
    Tasks(TypedRecords<Task>),
    /// The whole queue, as [`sync_facade::OfflineSyncEngine::watch_queue`] gives it.
    Queue(Vec<SyncQueueItem>),
    /// Whether the API is reachable, from
    /// [`sync_facade::OfflineSyncEngine::watch_connectivity`].
    Connectivity(bool),
}

/// Something the user asked for, carried out by
/// [`crate::session::Session::perform`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Save a new task with this title.
    AddTask {
        /// The title typed.
        title: String,
    },
    /// Give a task a new title.
    RenameTask {
        /// The task.
        id: String,
        /// The title typed.
        title: String,
    },
    /// Mark a task done, or not done.
    ToggleDone {
        /// The task.
        id: String,
    },
    /// Delete a task.
    DeleteTask {
        /// The task.
        id: String,
    },
    /// Give up a task's waiting change and put the task back as the
    /// server has it (or remove it, for a create the server never had).
    Discard {
        /// The task.
        id: String,
    },
    /// Take the reference server down, or bring it back.
    ToggleServer,
    /// Change a task on the server as another user would.
    EditOnServer {
        /// The task.
        id: String,
    },
    /// Make a failed or parked task's change eligible now.
    Retry {
        /// The task.
        id: String,
    },
    /// Close the engine and leave.
    Quit,
}

/// What a line of text being typed is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPurpose {
    /// The title of a new task.
    NewTask,
    /// A new title for task `id`.
    Rename {
        /// The task.
        id: String,
    },
}

/// Whether keys move through the list or type text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Keys are commands.
    Browsing,
    /// Keys type `text`; Enter confirms, Esc cancels.
    Typing {
        /// What the text is for.
        purpose: InputPurpose,
        /// The text so far.
        text: String,
    },
}

/// One line of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    /// The record id.
    pub id: String,
    /// The task's title (empty when the document has none).
    pub title: String,
    /// Whether the task is done.
    pub done: bool,
    /// Where its last local change stands.
    pub badge: Badge,
}

/// The example's state: the tasks and the queue as the engine last
/// reported them, connectivity, the server switch, the selection, the
/// input line and the last message.
#[derive(Debug, Clone)]
pub struct App {
    /// In list order: where each task first appeared.
    tasks: Vec<Task>,
    unreadable: Vec<Unreadable>,
    queue: Vec<SyncQueueItem>,
    online: Option<bool>,
    server_up: bool,
    server_url: String,
    selected: Option<String>,
    mode: Mode,
    message: String,
    quit: bool,
}

impl App {
    /// An empty screen for the reference server at `server_url` (up).
    #[must_use]
    pub fn new(server_url: impl Into<String>) -> Self {
        Self {
            tasks: Vec::new(),
            unreadable: Vec::new(),
            queue: Vec::new(),
            online: None,
            server_up: true,
            server_url: server_url.into(),
            selected: None,
            mode: Mode::Browsing,
            message: String::from("Press a to add a task, s to take the server down."),
            quit: false,
        }
    }

    /// Takes in one report of the engine's.
    pub fn apply(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::Tasks(typed) => {
                let previous_index = self.selected_index();
                self.tasks = keep_order(std::mem::take(&mut self.tasks), typed.records);
                self.unreadable = typed.unreadable;
                let still_there = self
                    .selected
                    .as_deref()
                    .is_some_and(|id| self.tasks.iter().any(|task| task.id == id));
                if !still_there {
                    let index = previous_index
                        .unwrap_or(0)
                        .min(self.tasks.len().saturating_sub(1));
                    self.selected = self.tasks.get(index).map(|task| task.id.clone());
                }
            }
            EngineEvent::Queue(items) => self.queue = items,
            EngineEvent::Connectivity(online) => self.online = Some(online),
        }
    }

    /// The list, oldest task first, each with its badge.
    #[must_use]
    pub fn rows(&self) -> Vec<TaskRow> {
        let items: HashMap<&str, &SyncQueueItem> = self
            .queue
            .iter()
            .filter(|item| item.entity.as_str() == TASKS)
            .map(|item| (item.id.as_str(), item))
            .collect();
        self.tasks
            .iter()
            .map(|task| TaskRow {
                id: task.id.clone(),
                title: task.title.clone(),
                done: task.done,
                badge: Badge::of(items.get(task.id.as_str()).copied()),
            })
            .collect()
    }

    /// Task `id`, if it is in the list.
    #[must_use]
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|task| task.id == id)
    }

    /// The stored tasks that do not read as [`Task`] (saved with another
    /// shape): not in the list, but counted on screen.
    #[must_use]
    pub fn unreadable(&self) -> &[Unreadable] {
        &self.unreadable
    }

    /// How many changes wait to be sent: queue items of any entity that
    /// are not synced (pending, syncing, failed or parked).
    #[must_use]
    pub fn waiting_changes(&self) -> usize {
        self.queue
            .iter()
            .filter(|item| item.status != SyncStatus::Synced)
            .count()
    }

    /// Whether the engine finds the API reachable (`None`: not known yet).
    #[must_use]
    pub fn online(&self) -> Option<bool> {
        self.online
    }

    /// Whether the reference server is up, as the switch last left it.
    #[must_use]
    pub fn server_up(&self) -> bool {
        self.server_up
    }

    /// Records where the switch left the server.
    pub fn set_server_up(&mut self, up: bool) {
        self.server_up = up;
    }

    /// The reference server's URL.
    #[must_use]
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The selected task's id.
    #[must_use]
    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// The selected task's position in [`Self::rows`].
    #[must_use]
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected.as_deref()?;
        self.tasks.iter().position(|task| task.id == id)
    }

    /// Selects task `id` (shown once it is in the list).
    pub fn select(&mut self, id: impl Into<String>) {
        self.selected = Some(id.into());
    }

    /// Whether keys type text or are commands.
    #[must_use]
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The last message for the user.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Replaces the message line.
    pub fn set_message(&mut self, message: impl Into<String>) {
        self.message = message.into();
    }

    /// Whether the user asked to leave.
    #[must_use]
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Records that the user asked to leave.
    pub fn request_quit(&mut self) {
        self.quit = true;
    }

    /// Takes in one key press: moves the selection or edits the input line
    /// itself, and returns the [`Action`] the key asks for, if any.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Action::Quit);
        }
        match std::mem::replace(&mut self.mode, Mode::Browsing) {
            Mode::Browsing => self.browse(key.code),
            Mode::Typing { purpose, text } => self.type_key(key.code, purpose, text),
        }
    }

    fn browse(&mut self, code: KeyCode) -> Option<Action> {
        let selected = self.selected.clone().filter(|_| self.selected_index().is_some());
        match code {
            KeyCode::Char('q') | KeyCode::Esc => Some(Action::Quit),
            KeyCode::Char('a') => {
                self.mode = Mode::Typing {
                    purpose: InputPurpose::NewTask,
                    text: String::new(),
                };
                None
            }
            KeyCode::Char('e') | KeyCode::Enter => {
                let id = selected?;
                let text = self
                    .rows()
                    .into_iter()
                    .find(|row| row.id == id)
                    .map(|row| row.title)
                    .unwrap_or_default();
                self.mode = Mode::Typing {
                    purpose: InputPurpose::Rename { id },
                    text,
                };
                None
            }
            KeyCode::Char('d') | KeyCode::Delete => selected.map(|id| Action::DeleteTask { id }),
            KeyCode::Char(' ') => selected.map(|id| Action::ToggleDone { id }),
            KeyCode::Char('o') => selected.map(|id| Action::EditOnServer { id }),
            KeyCode::Char('r') => selected.map(|id| Action::Retry { id }),
            KeyCode::Char('x') => selected.map(|id| Action::Discard { id }),
            KeyCode::Char('s') => Some(Action::ToggleServer),
            KeyCode::Up | KeyCode::Char('k') => {
                self.move_selection(-1);
                None
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.move_selection(1);
                None
            }
            _ => None,
        }
    }

    fn type_key(&mut self, code: KeyCode, purpose: InputPurpose, mut text: String) -> Option<Action> {
        match code {
            KeyCode::Esc => None,
            KeyCode::Enter => {
                let title = text.trim().to_owned();
                if title.is_empty() {
                    return None;
                }
                Some(match purpose {
                    InputPurpose::NewTask => Action::AddTask { title },
                    InputPurpose::Rename { id } => Action::RenameTask { id, title },
                })
            }
            KeyCode::Backspace => {
                text.pop();
                self.mode = Mode::Typing { purpose, text };
                None
            }
            KeyCode::Char(character) => {
                text.push(character);
                self.mode = Mode::Typing { purpose, text };
                None
            }
            _ => {
                self.mode = Mode::Typing { purpose, text };
                None
            }
        }
    }

    fn move_selection(&mut self, step: isize) {
        if self.tasks.is_empty() {
            return;
        }
        let last = self.tasks.len() - 1;
        let index = match self.selected_index() {
            Some(index) => index.saturating_add_signed(step).min(last),
            None => 0,
        };
        self.selected = self.tasks.get(index).map(|task| task.id.clone());
    }
}

/// `latest` (the engine's list, most recently updated first) in a steady
/// order: tasks stay where they first appeared in `previous`, and tasks
/// new to the list go last, in id order among themselves.
fn keep_order(previous: Vec<Task>, latest: Vec<Task>) -> Vec<Task> {
    let mut latest: HashMap<String, Task> = latest.into_iter().map(|task| (task.id.clone(), task)).collect();
    let mut ordered: Vec<Task> = previous
        .into_iter()
        .filter_map(|task| latest.remove(&task.id))
        .collect();
    let mut new: Vec<Task> = latest.into_values().collect();
    new.sort_by(|a, b| a.id.cmp(&b.id));
    ordered.extend(new);
    ordered
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

    use super::*;

    fn press(app: &mut App, code: KeyCode) -> Option<Action> {
        app.handle_key(KeyEvent::from(code))
    }

    #[test]
    fn typing_a_title_and_enter_asks_to_add_it_and_esc_cancels() {
        let mut app = App::new("http://127.0.0.1:1");
        assert_eq!(press(&mut app, KeyCode::Char('a')), None);
        for character in "Buy milk".chars() {
            assert_eq!(press(&mut app, KeyCode::Char(character)), None);
        }
        press(&mut app, KeyCode::Backspace);
        assert_eq!(
            press(&mut app, KeyCode::Enter),
            Some(Action::AddTask {
                title: "Buy mil".into()
            })
        );
        assert_eq!(app.mode(), &Mode::Browsing);
        press(&mut app, KeyCode::Char('a'));
        press(&mut app, KeyCode::Char('x'));
        assert_eq!(press(&mut app, KeyCode::Esc), None);
        assert_eq!(app.mode(), &Mode::Browsing);
        assert_eq!(press(&mut app, KeyCode::Char('q')), Some(Action::Quit));
    }

    fn task(id: &str) -> Task {
        Task {
            id: id.into(),
            title: format!("Task {id}"),
            done: false,
        }
    }

    fn tasks(ids: &[&str]) -> EngineEvent {
        let mut typed = TypedRecords::default();
        typed.records = ids.iter().map(|id| task(id)).collect();
        EngineEvent::Tasks(typed)
    }

    #[test]
    fn tasks_keep_their_place_and_new_ones_go_last() {
        let mut app = App::new("http://127.0.0.1:1");
        // The engine lists the most recently updated first.
        app.apply(tasks(&["t2", "t1"]));
        app.apply(tasks(&["t1", "t-new", "t2"]));
        let ids: Vec<String> = app.rows().into_iter().map(|row| row.id).collect();
        assert_eq!(ids, ["t1", "t2", "t-new"]);
        assert_eq!(app.selected(), Some("t1"));
        assert_eq!(
            press(&mut app, KeyCode::Char('x')),
            Some(Action::Discard { id: "t1".into() })
        );
    }

    #[test]
    fn commands_on_a_task_need_one_selected() {
        let mut app = App::new("http://127.0.0.1:1");
        assert_eq!(press(&mut app, KeyCode::Char('d')), None);
        assert_eq!(press(&mut app, KeyCode::Char('x')), None);
        assert_eq!(press(&mut app, KeyCode::Char('s')), Some(Action::ToggleServer));
    }
}
