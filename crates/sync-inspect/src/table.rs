//! Aligned plain-text tables and key-value blocks for a terminal.

use std::fmt::Write as _;

/// A table: a header row and rows of cells, printed with each column as
/// wide as its widest cell.
#[derive(Debug, Default)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|name| (*name).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra ones are dropped.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.header.len(), String::new());
        // One line per row: a cell never breaks the layout.
        let cells = cells.into_iter().map(|cell| one_line(&cell)).collect();
        self.rows.push(cells);
    }

    /// The table as text, each line ending in a newline, no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (column, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(column) {
                    *w = (*w).max(width(cell));
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column > 0 {
                    line.push_str("  ");
                }
                let pad = widths
                    .get(column)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(width(cell));
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

/// Key-value lines with the keys aligned.
pub(crate) fn pairs(pairs: &[(&str, String)]) -> String {
    let key_width = pairs.iter().map(|(key, _)| width(key)).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let pad = key_width - width(key);
        let _ = writeln!(out, "{key}:{}  {}", " ".repeat(pad), one_line(value));
    }
    out
}

/// Display width, counted in characters (ids and names are mostly ASCII).
fn width(text: &str) -> usize {
    text.chars().count()
}

/// Control characters (newlines, tabs, escapes) shown as spaces, so a
/// stored string can neither break a table nor drive the terminal.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let mut table = Table::new(&["A", "LONG HEADER"]);
        table.row(vec!["wide cell".into(), "x".into()]);
        table.row(vec!["y".into()]);
        assert_eq!(table.render(), "A          LONG HEADER\nwide cell  x\ny\n");
    }

    #[test]
    fn control_characters_cannot_break_a_line() {
        let mut table = Table::new(&["A"]);
        table.row(vec!["one\ntwo\u{1b}[2J".into()]);
        assert_eq!(table.render(), "A\none two [2J\n");
    }
}
