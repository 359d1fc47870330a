//! The example's screens, rendered with ratatui's `TestBackend` over the
//! real engine and reference server, driven through the same function the
//! key handler calls ([`on_key`]). Every wait is a bounded poll of the
//! rendered screen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use serde_json::json;
use sync_example_tui::{App, EngineEvents, Session, SessionConfig, on_key, render};
use sync_facade::SyncOperation;

/// How long a condition may take to show on screen.
const WAIT: Duration = Duration::from_secs(10);
/// How often the screen is looked at meanwhile.
const POLL: Duration = Duration::from_millis(50);

/// One running example: session, engine reports, model and a test screen.
struct Screen {
    session: Session,
    events: EngineEvents,
    app: App,
    terminal: Terminal<TestBackend>,
}

impl Screen {
    /// Starts the example and waits for the server's seeded tasks and for
    /// the engine to find the server online.
    async fn start() -> Self {
        let (session, events) = Session::start(SessionConfig::default()).await.unwrap();
        let app = App::new(session.server().url());
        let terminal = Terminal::new(TestBackend::new(120, 16)).unwrap();
        let mut screen = Self {
            session,
            events,
            app,
            terminal,
        };
        screen
            .wait_for("the seeded tasks, synced, online", |text| {
                task_line(text, "Renew the parking permit").is_some_and(|line| line.contains("[synced"))
                    && text.contains("● online")
            })
            .await;
        screen
    }

    /// Takes in the engine's reports so far and renders; the screen's text,
    /// one line per row.
    fn draw(&mut self) -> String {
        while let Some(event) = self.events.try_next() {
            self.app.apply(event);
        }
        let app = &self.app;
        self.terminal.draw(|frame| render(app, frame)).unwrap();
        let buffer = self.terminal.backend().buffer();
        let width = usize::from(buffer.area.width);
        buffer
            .content()
            .chunks(width)
            .map(|row| row.iter().map(|cell| cell.symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls the screen until `condition` holds, for up to [`WAIT`];
    /// fails showing the last screen otherwise.
    async fn wait_for(&mut self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = self.draw();
            if condition(&text) {
                return text;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("the screen never showed {what} within {WAIT:?}; it shows:\n{text}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Presses `code` as the terminal loop would.
    async fn press(&mut self, code: KeyCode) {
        on_key(&mut self.app, &mut self.session, KeyEvent::from(code)).await;
    }

    /// Types `text` and Enter.
    async fn type_line(&mut self, text: &str) {
        for character in text.chars() {
            self.press(KeyCode::Char(character)).await;
        }
        self.press(KeyCode::Enter).await;
    }

    /// Adds a task by its keys: `a`, the title, Enter.
    async fn add_task(&mut self, title: &str) {
        self.press(KeyCode::Char('a')).await;
        self.type_line(title).await;
    }

    /// Selects the task titled `title` with the arrow keys.
    async fn select(&mut self, title: &str) {
        let index = self
            .app
            .rows()
            .iter()
            .position(|row| row.title == title)
            .unwrap_or_else(|| panic!("no task {title:?} in {:?}", self.app.rows()));
        for _ in 0..self.app.rows().len() {
            self.press(KeyCode::Up).await;
        }
        for _ in 0..index {
            self.press(KeyCode::Down).await;
        }
        assert_eq!(self.app.rows()[index].title, title);
    }

    /// Takes the server down (`s`) and waits for the engine to notice.
    async fn take_server_down(&mut self) {
        self.press(KeyCode::Char('s')).await;
        self.wait_for("the server down and the engine offline", |text| {
            text.contains("server: down") && text.contains("○ offline")
        })
        .await;
    }

    /// Quits (`q`) and closes the engine and the server.
    async fn quit(mut self) {
        self.press(KeyCode::Char('q')).await;
        assert!(self.app.should_quit());
        self.session.close().await;
    }
}

/// The list line of the task whose title starts with `title` (its
/// checkbox comes right before it, which the message line lacks).
fn task_line<'a>(text: &'a str, title: &str) -> Option<&'a str> {
    let needle = format!("] {title}");
    text.lines().find(|line| line.contains(&needle))
}

/// Whether the task titled `title` is listed with `badge`.
fn shows_badge(text: &str, title: &str, badge: &str) -> bool {
    task_line(text, title).is_some_and(|line| line.contains(&format!("[{badge}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_while_the_server_is_down_shows_pending() {
    let mut screen = Screen::start().await;
    screen.take_server_down().await;

    screen.add_task("Fix the gate").await;
    // The record and its queue item reach the screen through two streams:
    // the badge is checked once both have.
    let text = screen
        .wait_for("the new task, pending", |text| {
            shows_badge(text, "Fix the gate", "pending") && text.contains("queue: 1 waiting")
        })
        .await;
    assert!(text.contains("○ offline"), "{text}");
    screen.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bringing_the_server_up_shows_synced() {
    let mut screen = Screen::start().await;
    screen.take_server_down().await;
    screen.add_task("Order filters").await;
    screen
        .wait_for("the task pending", |text| {
            shows_badge(text, "Order filters", "pending")
        })
        .await;

    screen.press(KeyCode::Char('s')).await;
    screen
        .wait_for("the task synced, the queue empty, online", |text| {
            shows_badge(text, "Order filters", "synced")
                && text.contains("queue: 0 waiting")
                && text.contains("● online")
                && text.contains("server: up at")
        })
        .await;
    let on_server = screen.session.server().snapshot();
    assert!(
        on_server["tasks"]
            .values()
            .any(|task| task["title"] == "Order filters"),
        "{on_server:?}"
    );
    screen.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_by_another_user_arrives_on_screen() {
    let mut screen = Screen::start().await;
    screen.select("Call the plumber").await;

    screen.press(KeyCode::Char('o')).await;
    assert!(
        screen.app.message().contains("Sam renamed t2"),
        "{}",
        screen.app.message()
    );
    let text = screen
        .wait_for("the other user's title, pulled", |text| {
            shows_badge(text, "Call the plumber (Sam's edit 1)", "synced")
        })
        .await;
    let plumber_rows = text
        .lines()
        .filter(|line| task_line(line, "Call the plumber").is_some())
        .count();
    assert_eq!(plumber_rows, 1, "the old title is gone:\n{text}");
    screen.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_task_removes_it() {
    let mut screen = Screen::start().await;
    screen.select("Water the plants").await;

    screen.press(KeyCode::Char('d')).await;
    let text = screen
        .wait_for("the task gone and the delete sent", |text| {
            task_line(text, "Water the plants").is_none() && text.contains("queue: 0 waiting")
        })
        .await;
    assert!(text.contains("Tasks (2)"), "{text}");
    // The list and the queue reach the screen through two streams: the
    // list may show the task gone before the queue shows its delete, so
    // "0 waiting" above does not prove the delete was sent. Wait for it.
    assert!(
        screen.session.engine().wait_until_drained(WAIT).await.unwrap(),
        "the delete was sent within {WAIT:?}"
    );
    assert!(
        !screen.session.server().snapshot()["tasks"].contains_key("t1"),
        "the delete reached the server"
    );
    screen.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_counter_and_connectivity_follow_the_server() {
    let mut screen = Screen::start().await;
    assert!(screen.draw().contains("queue: 0 waiting"));

    screen.take_server_down().await;
    screen.add_task("Sweep the yard").await;
    screen.select("Call the plumber").await;
    screen.press(KeyCode::Char('e')).await;
    screen.press(KeyCode::Backspace).await;
    screen.type_line("r, twice").await;
    screen
        .wait_for("two changes waiting, offline", |text| {
            text.contains("queue: 2 waiting")
                && text.contains("○ offline")
                && shows_badge(text, "Call the plumber, twice", "pending")
                && shows_badge(text, "Sweep the yard", "pending")
        })
        .await;

    screen.press(KeyCode::Char('s')).await;
    screen
        .wait_for("nothing waiting, online", |text| {
            text.contains("queue: 0 waiting")
                && text.contains("● online")
                && shows_badge(text, "Call the plumber, twice", "synced")
        })
        .await;
    screen.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_edit_while_the_server_is_down() {
    let mut screen = Screen::start().await;
    screen.select("Renew the parking permit").await;
    screen.take_server_down().await;

    screen.press(KeyCode::Char('o')).await;
    assert!(
        screen.app.message().contains("cannot reach the server"),
        "{}",
        screen.app.message()
    );
    screen.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_server_refuses_is_parked_until_retried() {
    let mut screen = Screen::start().await;
    // The server now wants a bearer token the app does not send: a 401 is
    // a permanent error, so the change is parked rather than retried.
    screen.session.server().require_bearer(Some("not-ours".into()));
    screen.add_task("Paint the fence").await;
    screen
        .wait_for("the task parked, still counted as waiting", |text| {
            shows_badge(text, "Paint the fence", "parked") && text.contains("queue: 1 waiting")
        })
        .await;

    screen.session.server().require_bearer(None);
    screen.select("Paint the fence").await;
    screen.press(KeyCode::Char('r')).await;
    screen
        .wait_for("the task synced after the retry", |text| {
            shows_badge(text, "Paint the fence", "synced") && text.contains("queue: 0 waiting")
        })
        .await;
    screen.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarding_a_parked_rename_puts_the_servers_title_back() {
    let mut screen = Screen::start().await;
    // The server refuses every change from now on (401): the rename parks.
    screen.session.server().require_bearer(Some("not-ours".into()));
    screen.select("Call the plumber").await;
    screen.press(KeyCode::Char('e')).await;
    screen.type_line(" today").await;
    screen
        .wait_for("the rename parked and waiting", |text| {
            shows_badge(text, "Call the plumber today", "parked") && text.contains("queue: 1 waiting")
        })
        .await;

    screen.press(KeyCode::Char('x')).await;
    assert!(
        screen.app.message().contains("back to the server's copy"),
        "{}",
        screen.app.message()
    );
    // The server still refuses everything, pulls included: the title can
    // only come back from the discard.
    let text = screen
        .wait_for("the server's title back, nothing waiting", |text| {
            task_line(text, "Call the plumber today").is_none()
                && shows_badge(text, "Call the plumber", "synced")
                && text.contains("queue: 0 waiting")
        })
        .await;
    assert!(text.contains("Tasks (3)"), "{text}");
    screen.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarding_a_parked_create_removes_the_task() {
    let mut screen = Screen::start().await;
    screen.session.server().require_bearer(Some("not-ours".into()));
    screen.add_task("Paint the fence").await;
    screen
        .wait_for("the new task parked and waiting", |text| {
            shows_badge(text, "Paint the fence", "parked") && text.contains("queue: 1 waiting")
        })
        .await;

    screen.select("Paint the fence").await;
    screen.press(KeyCode::Char('x')).await;
    assert!(
        screen.app.message().contains("removed, the server never had it"),
        "{}",
        screen.app.message()
    );
    let text = screen
        .wait_for("the task gone, nothing waiting", |text| {
            task_line(text, "Paint the fence").is_none() && text.contains("queue: 0 waiting")
        })
        .await;
    assert!(text.contains("Tasks (3)"), "{text}");

    // Nothing left to discard for it.
    screen.select("Water the plants").await;
    screen.press(KeyCode::Char('x')).await;
    assert!(
        screen.app.message().contains("nothing to discard"),
        "{}",
        screen.app.message()
    );
    screen.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_does_not_read_is_counted_not_dropped() {
    let mut screen = Screen::start().await;
    // Saved untyped, with a shape `Task` does not read (`done` a string).
    screen
        .session
        .engine()
        .save(
            "tasks",
            "t-odd",
            json!({"id": "t-odd", "title": "Odd one", "done": "maybe"}),
            SyncOperation::Create,
        )
        .await
        .unwrap();
    let text = screen
        .wait_for("the unreadable task counted", |text| {
            text.contains("1 task could not be read: t-odd")
        })
        .await;
    assert!(!text.contains("Odd one"), "{text}");
    assert!(text.contains("Tasks (3)"), "{text}");
    assert!(
        shows_badge(&text, "Water the plants", "synced"),
        "the readable tasks stay listed:\n{text}"
    );
    screen.quit().await;
}
