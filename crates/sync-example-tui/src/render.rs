//! [`render`]: draws an [`App`] into a frame, and nothing else (no I/O,
//! no state), so a test backend shows exactly what a terminal would.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};

use crate::app::{App, InputPurpose, Mode, TaskRow};
use crate::badge::Badge;

/// The keys, as the bottom line lists them.
pub const KEY_HELP: &str = "a add  e edit  space done  d delete  s server down/up  o another user edits  r retry  x discard change  ↑↓ select  q quit";

/// Draws the whole screen: the status bar (connectivity, queue counter,
/// server), the task list with a badge per task, a line counting the
/// stored tasks that could not be read (only when there are some), the
/// input or message line, and the keys.
pub fn render(app: &App, frame: &mut Frame<'_>) {
    let unreadable_height = u16::from(!app.unreadable().is_empty());
    let [status_area, list_area, unreadable_area, input_area, help_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(unreadable_height),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(status_line(app)), status_area);
    render_tasks(app, frame, list_area);
    if let Some(line) = unreadable_line(app) {
        frame.render_widget(
            Paragraph::new(line).style(Style::default().fg(Color::Red)),
            unreadable_area,
        );
    }
    frame.render_widget(Paragraph::new(input_line(app)), input_area);
    frame.render_widget(
        Paragraph::new(KEY_HELP).style(Style::default().fg(Color::DarkGray)),
        help_area,
    );
}

/// Connectivity as the engine sees it, the queue counter and the server
/// switch.
fn status_line(app: &App) -> Line<'static> {
    let connectivity = match app.online() {
        Some(true) => Span::styled("● online", Style::default().fg(Color::Green)),
        Some(false) => Span::styled("○ offline", Style::default().fg(Color::Red)),
        None => Span::styled("… checking", Style::default().fg(Color::Yellow)),
    };
    let waiting = app.waiting_changes();
    let queue = Span::styled(
        format!("queue: {waiting} waiting"),
        if waiting == 0 {
            Style::default()
        } else {
            Style::default().fg(Color::Yellow)
        },
    );
    let server = if app.server_up() {
        Span::raw(format!("server: up at {}", app.server_url()))
    } else {
        Span::styled("server: down", Style::default().fg(Color::Red))
    };
    Line::from(vec![
        Span::styled("tasks-tui ", Style::default().add_modifier(Modifier::BOLD)),
        connectivity,
        Span::raw("  │  "),
        queue,
        Span::raw("  │  "),
        server,
    ])
}

fn render_tasks(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let rows = app.rows();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" Tasks ({}) ", rows.len()));
    if rows.is_empty() {
        frame.render_widget(
            Paragraph::new("No tasks yet: press a to add one.").block(block),
            area,
        );
        return;
    }
    let items: Vec<ListItem<'static>> = rows.iter().map(task_line).map(ListItem::new).collect();
    let list = List::new(items)
        .block(block)
        .highlight_symbol("> ")
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(app.selected_index());
    frame.render_stateful_widget(list, area, &mut state);
}

/// "1 task could not be read: id (why)", when stored tasks do not read
/// as [`crate::Task`].
fn unreadable_line(app: &App) -> Option<String> {
    let unreadable = app.unreadable();
    let first = unreadable.first()?;
    let count = unreadable.len();
    let tasks = if count == 1 { "task" } else { "tasks" };
    let others = if count > 1 {
        format!(" and {} more", count - 1)
    } else {
        String::new()
    };
    Some(format!(
        "{count} {tasks} could not be read: {} ({}){others}",
        first.id.as_str(),
        first.error
    ))
}

/// One task: its badge, whether it is done, and its title.
fn task_line(row: &TaskRow) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("[{:<7}]", row.badge.label()), badge_style(row.badge)),
        Span::raw(if row.done { " [x] " } else { " [ ] " }),
        Span::raw(row.title.clone()),
    ])
}

fn badge_style(badge: Badge) -> Style {
    let color = match badge {
        Badge::Pending => Color::Yellow,
        Badge::Syncing => Color::Cyan,
        Badge::Synced => Color::Green,
        Badge::Failed => Color::Red,
        Badge::Parked => Color::Magenta,
    };
    Style::default().fg(color)
}

/// The text being typed, or else the last message.
fn input_line(app: &App) -> Line<'static> {
    match app.mode() {
        Mode::Typing { purpose, text } => {
            let prompt = match purpose {
                InputPurpose::NewTask => "New task: ",
                InputPurpose::Rename { .. } => "New title: ",
            };
            Line::from(vec![
                Span::styled(prompt, Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(format!("{text}▏")),
                Span::styled(
                    "  (Enter saves, Esc cancels)",
                    Style::default().fg(Color::DarkGray),
                ),
            ])
        }
        Mode::Browsing => Line::from(app.message().to_owned()),
    }
}
