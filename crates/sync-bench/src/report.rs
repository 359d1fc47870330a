//! The table of results: engine figure, baseline figure, ratio, target.

use std::fmt::Write;

/// One comparison.
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) sizes: String,
    pub(crate) engine: f64,
    pub(crate) baseline_name: String,
    pub(crate) baseline: f64,
    pub(crate) unit: &'static str,
    /// The minimum ratio engine / baseline, when there is a target.
    pub(crate) target: Option<f64>,
}

impl Row {
    pub(crate) fn ratio(&self) -> f64 {
        if self.baseline == 0.0 {
            0.0
        } else {
            self.engine / self.baseline
        }
    }

    fn met(&self) -> bool {
        self.target.is_none_or(|target| self.ratio() >= target)
    }
}

/// All rows of a run, plus plain facts (counts) printed under the table.
#[derive(Default)]
pub(crate) struct Report {
    rows: Vec<Row>,
    facts: Vec<String>,
}

impl Report {
    pub(crate) fn row(&mut self, row: Row) {
        eprintln!(
            "  {} [{}]: {:.0} vs {} {:.0} {} -> {:.2}",
            row.scenario,
            row.sizes,
            row.engine,
            row.baseline_name,
            row.baseline,
            row.unit,
            row.ratio()
        );
        self.rows.push(row);
    }

    pub(crate) fn fact(&mut self, fact: String) {
        eprintln!("  {fact}");
        self.facts.push(fact);
    }

    pub(crate) fn all_met(&self) -> bool {
        self.rows.iter().all(Row::met)
    }

    pub(crate) fn render(&self, smoke: bool) -> String {
        let mut out = String::new();
        if smoke {
            out.push_str("(smoke run: tiny sizes, debug build; ratios are not meaningful)\n\n");
        }
        out.push_str(
            "| scenario | sizes | engine | baseline | ratio | target |\n|---|---|---|---|---|---|\n",
        );
        for row in &self.rows {
            let target = match row.target {
                Some(target) if smoke => format!("≥ {target} (not judged in a smoke run)"),
                Some(target) if row.met() => format!("≥ {target} ✓"),
                Some(target) => format!("≥ {target} ✗ MISSED"),
                None => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} {} | {}: {:.0} {} | {:.2} | {} |",
                row.scenario,
                row.sizes,
                row.engine,
                row.unit,
                row.baseline_name,
                row.baseline,
                row.unit,
                row.ratio(),
                target
            );
        }
        if !self.facts.is_empty() {
            out.push('\n');
            for fact in &self.facts {
                let _ = writeln!(out, "- {fact}");
            }
        }
        out
    }
}
