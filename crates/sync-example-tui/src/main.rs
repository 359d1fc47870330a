//! `tasks-tui`: `cargo run -p sync-example-tui`. The thin terminal loop
//! around [`sync_example_tui`]: set the terminal up, draw, feed engine
//! reports and key presses to the app, and on the way out close the
//! engine and restore the terminal (also on error or panic).

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event, KeyEvent};
use sync_example_tui::{App, EngineEvents, Session, SessionConfig, on_key, render};
use tokio::sync::mpsc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let (mut session, mut events) = Session::start(SessionConfig::default()).await?;
    let outcome = run(&mut session, &mut events).await;
    // The terminal is restored by now; the engine closes whatever happened.
    session.close().await;
    outcome
}

/// The UI loop, with the terminal in raw mode and the alternate screen
/// for exactly as long as it runs.
async fn run(session: &mut Session, events: &mut EngineEvents) -> Result<(), Box<dyn Error>> {
    let mut terminal = ratatui::try_init()?;
    let outcome = ui_loop(&mut terminal, session, events).await;
    ratatui::try_restore()?;
    outcome
}

async fn ui_loop(
    terminal: &mut DefaultTerminal,
    session: &mut Session,
    events: &mut EngineEvents,
) -> Result<(), Box<dyn Error>> {
    let mut app = App::new(session.server().url());
    let mut keys = KeyReader::spawn();
    let outcome = loop {
        if let Err(error) = terminal.draw(|frame| render(&app, frame)) {
            break Err(error.into());
        }
        tokio::select! {
            Some(event) = events.next() => {
                app.apply(event);
                while let Some(event) = events.try_next() {
                    app.apply(event);
                }
            }
            key = keys.next() => match key {
                Some(Ok(Some(key))) => on_key(&mut app, session, key).await,
                Some(Ok(None)) => {} // resized: drawn again at the top of the loop
                Some(Err(error)) => break Err(error.into()),
                None => break Ok(()),
            },
        }
        if app.should_quit() {
            break Ok(());
        }
    };
    keys.stop();
    outcome
}

/// Reads key presses on a thread of its own (crossterm's reads block);
/// `None` stands for a resize, which only needs a redraw.
struct KeyReader {
    receiver: mpsc::Receiver<std::io::Result<Option<KeyEvent>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl KeyReader {
    fn spawn() -> Self {
        let (sender, receiver) = mpsc::channel(64);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                let read = match event::poll(Duration::from_millis(100)) {
                    Ok(false) => continue,
                    Ok(true) => event::read(),
                    Err(error) => Err(error),
                };
                let key = match read {
                    Ok(Event::Key(key)) => Ok(Some(key)),
                    Ok(Event::Resize(..)) => Ok(None),
                    Ok(_) => continue,
                    Err(error) => Err(error),
                };
                let failed = key.is_err();
                if sender.blocking_send(key).is_err() || failed {
                    return;
                }
            }
        });
        Self {
            receiver,
            stop,
            thread: Some(thread),
        }
    }

    async fn next(&mut self) -> Option<std::io::Result<Option<KeyEvent>>> {
        self.receiver.recv().await
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.receiver.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
