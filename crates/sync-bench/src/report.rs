//! The table of results: engine figure, baseline figure, ratio, target;
//! plain facts under it; and the curves behind a plot.

use std::fmt::Write;

/// What a row must reach to pass.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    /// engine / baseline at least this (rates: higher is better).
    RatioAtLeast(f64),
    /// engine / baseline at most this (times, counts: lower is better).
    RatioAtMost(f64),
    /// The engine figure itself under this, in the row's unit.
    ValueBelow(f64),
    /// The engine figure itself at least this, in the row's unit.
    ValueAtLeast(f64),
    /// The engine figure exactly the baseline (counts).
    Exactly,
}

/// One comparison.
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) sizes: String,
    pub(crate) engine: f64,
    pub(crate) baseline_name: String,
    pub(crate) baseline: f64,
    pub(crate) unit: &'static str,
    /// What the row must reach, when there is a target.
    pub(crate) target: Option<Target>,
}

/// A number with as many decimals as its size deserves.
pub(crate) fn num(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
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
        match self.target {
            None => true,
            Some(Target::RatioAtLeast(target)) => self.ratio() >= target,
            Some(Target::RatioAtMost(target)) => self.ratio() <= target,
            Some(Target::ValueBelow(target)) => self.engine < target,
            Some(Target::ValueAtLeast(target)) => self.engine >= target,
            Some(Target::Exactly) => self.engine == self.baseline,
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            None => String::new(),
            Some(Target::RatioAtLeast(target)) => format!("≥ {target}"),
            Some(Target::RatioAtMost(target)) => format!("≤ {target}"),
            Some(Target::ValueBelow(target)) => format!("engine < {} {}", num(target), self.unit),
            Some(Target::ValueAtLeast(target)) => format!("engine ≥ {} {}", num(target), self.unit),
            Some(Target::Exactly) => "= baseline".to_owned(),
        }
    }
}

/// One curve of a plot: a figure against a size.
pub(crate) struct Curve {
    pub(crate) name: String,
    /// (size, figure) points, in increasing size.
    pub(crate) points: Vec<(f64, f64)>,
}

/// All rows of a run, plus plain facts (counts) printed under the table,
/// each under the scenario that made it.
#[derive(Default)]
pub(crate) struct Report {
    rows: Vec<(&'static str, Row)>,
    facts: Vec<(&'static str, String)>,
    pub(crate) curves: Vec<Curve>,
    /// The scenario running: the rows and facts to come are its.
    scenario: &'static str,
}

impl Report {
    /// The rows and facts to come are `scenario`'s.
    pub(crate) fn start(&mut self, scenario: &'static str) {
        self.scenario = scenario;
    }

    pub(crate) fn row(&mut self, row: Row) {
        eprintln!(
            "  {} [{}]: {} vs {} {} {} -> {:.2}",
            row.scenario,
            row.sizes,
            num(row.engine),
            row.baseline_name,
            num(row.baseline),
            row.unit,
            row.ratio()
        );
        self.rows.push((self.scenario, row));
    }

    pub(crate) fn fact(&mut self, fact: String) {
        eprintln!("  {fact}");
        self.facts.push((self.scenario, fact));
    }

    pub(crate) fn all_met(&self) -> bool {
        self.rows.iter().all(|(_, row)| row.met())
    }

    /// Whether `scenario` made any row.
    pub(crate) fn has(&self, scenario: &str) -> bool {
        self.rows.iter().any(|(name, _)| *name == scenario)
    }

    /// The rows whose target was missed, by scenario.
    pub(crate) fn missed(&self) -> Vec<&str> {
        self.rows
            .iter()
            .filter(|(_, row)| !row.met())
            .map(|(_, row)| row.scenario.as_str())
            .collect()
    }

    pub(crate) fn render(&self, smoke: bool) -> String {
        let mut out = String::new();
        if smoke {
            out.push_str("(smoke run: tiny sizes, debug build; ratios are not meaningful)\n\n");
        }
        out.push_str(&self.render_only(smoke, |_| true));
        out
    }

    /// The table and facts of the scenarios `keep` accepts.
    pub(crate) fn render_only(&self, smoke: bool, keep: impl Fn(&str) -> bool) -> String {
        let mut out = String::new();
        out.push_str(
            "| scenario | sizes | engine | baseline | ratio | target |\n|---|---|---|---|---|---|\n",
        );
        for (_, row) in self.rows.iter().filter(|(scenario, _)| keep(scenario)) {
            let target = match row.target {
                Some(_) if smoke => format!("{} (not judged in a smoke run)", row.target_text()),
                Some(_) if row.met() => format!("{} ✓", row.target_text()),
                Some(_) => format!("{} ✗ MISSED", row.target_text()),
                None => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} {} | {}: {} {} | {:.2} | {} |",
                row.scenario,
                row.sizes,
                num(row.engine),
                row.unit,
                row.baseline_name,
                num(row.baseline),
                row.unit,
                row.ratio(),
                target
            );
        }
        let facts: Vec<&String> = self
            .facts
            .iter()
            .filter(|(scenario, _)| keep(scenario))
            .map(|(_, fact)| fact)
            .collect();
        if !facts.is_empty() {
            out.push('\n');
            for fact in facts {
                let _ = writeln!(out, "- {fact}");
            }
        }
        out
    }
}
