//! `docs/benchmarks.md` and its plot, rewritten by a full run (never by a
//! smoke run or a run of chosen scenarios, but for the section on pulls,
//! which a run of chosen scenarios including `pull` rewrites alone).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::report::{Curve, Report, num};

/// The workspace's `docs` folder.
fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

const SCENARIOS: &str = "\
- **store**: local saves (one per transaction, one batch, 8 concurrent savers) against raw sqlx running \
the same SQL with the same pragmas, and rusqlite on the same libsqlite3-sys.
- **net**: sequential creates through the HTTP adapter against a bare hyper client.
- **engine**: a drain of queued creates through the real HTTP adapter to a loopback server against a \
bare hyper client sending the same POSTs over keep-alive; then the speed-up of concurrency.
- **requests**: requests per synced operation, counted by method at the reference server.
- **growth**: cost per synced item as the queue grows (no-op adapter, so only the engine's cost is \
left), without and with one `watch_queue` subscriber.
- **memory**: peak resident memory (`VmHWM`) of a child process draining 1 KiB items over HTTP, \
against the same child only opening the engine.
- **startup**: time from opening the engine on a full queue to its first request, against opening a \
bare sqlx pool and reading the oldest row.
- **peers**: apalis 1.0 (apalis-sqlite) and effectum 0.7 enqueuing and draining with a no-op handler \
(built and run from `benches/peers/` by the xtask) against the engine with a no-op adapter, at equal \
concurrency.
- **pull**: the server's changes pulled through the facade from the reference server's change feed: \
an initial load against raw sqlx inserting the same rows and a bare hyper client fetching the same \
pages, the peak memory of a child process pulling a million records, the cost per record with few or \
a million records local, and the requests per page (section \"Pulls\").
- **wan**: a slow link: the reference server answers every request 50 ms late; the engine, built \
through the facade with references declared, drains 2 000 projects and tasks at several \
concurrencies, each against the physical limit of the same run (concurrency ÷ the round trip of a \
bare hyper client against the same server); every task must reach the server after its project \
(request log).
";

/// The scenario whose rows have a section of their own.
const PULL: &str = "pull";

/// The heading of the section on pulls.
const PULL_HEADING: &str = "## Pulls\n";

/// Today, `YYYY-MM-DD`.
fn today() -> String {
    let date = sync_core::Timestamp::now().to_string();
    date.get(..10).unwrap_or(&date).to_owned()
}

/// The section on pulls, from its heading to its end.
fn pull_section(report: &Report) -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!(
        "{PULL_HEADING}\n\
         Measured on {}, on a machine with {cores} cores, by `cargo xtask bench pull` (which rewrites only \
         this section) or a full run. The engine \
         is the one an app builds (`OfflineSync::builder(dir, url).pull(\"tasks\", \
         PullStrategy::change_feed())`, `pull_page_size` as stated, default durability), timed around \
         `sync_manager().pull_now()`, against the reference server on loopback (seeded in memory). The \
         peak memory is a child process's `VmHWM` while pulling, the server in the parent; the cost per \
         record is a pull of new records on a database that pulled few or many before; requests are \
         counted in the server's request log and checked in smoke runs too.\n\n{}",
        today(),
        report.render_only(false, |scenario| scenario == PULL)
    )
}

/// Rewrites only the section on pulls of `docs/benchmarks.md`; the rest
/// of the file is kept as it was.
pub(crate) fn write_pull_section(report: &Report) -> Result<PathBuf, String> {
    let path = docs_dir().join("benchmarks.md");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let text = merge_pull_section(&text, &pull_section(report));
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// `text` with its section on pulls replaced by `section` (appended when
/// missing), and the scenario's line added to the list at the top when
/// missing.
fn merge_pull_section(text: &str, section: &str) -> String {
    let mut text = text.to_owned();
    if !text.contains("- **pull**:")
        && let Some(line) = SCENARIOS.lines().find(|line| line.starts_with("- **pull**:"))
        && let Some(at) = text.find("\n\n## Results")
    {
        text.insert_str(at, &format!("\n{line}"));
    }
    match text.find(&format!("\n{PULL_HEADING}")) {
        Some(at) => {
            let (before, rest) = text.split_at(at + 1);
            match rest[PULL_HEADING.len()..].find("\n## ") {
                // The next section follows after a blank line.
                Some(next) => format!("{before}{section}\n{}", &rest[PULL_HEADING.len() + next + 1..]),
                None => format!("{before}{section}"),
            }
        }
        None => format!("{}\n\n{section}", text.trim_end()),
    }
}

/// Writes `docs/benchmarks.md` and `docs/benchmarks-growth.svg`.
pub(crate) fn write(report: &Report) -> Result<PathBuf, String> {
    let dir = docs_dir();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let date = today();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Benchmarks\n\n\
         Generated by `cargo xtask bench` (a full run; `--smoke` never writes this file) on {date}, on a \
         machine with {cores} cores ({}/{}), shared with other work. Every figure stands beside a \
         baseline measured in the same run, and the ratio is what to read: absolute figures depend on \
         the machine.\n\n\
         Run one scenario with `cargo xtask bench <scenario>`.\n\n{SCENARIOS}\n## Results\n",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    out.push_str(&report.render_only(false, |scenario| scenario != PULL));
    if !report.curves.is_empty() {
        out.push_str(
            "\n## Cost per item against queue size\n\n\
             Time per synced item for drains of growing queues (no-op adapter). Flat means each change \
             costs the same whatever the queue holds.\n\n\
             ![time per item against queue size](benchmarks-growth.svg)\n\n",
        );
        out.push_str("| queued items |");
        for curve in &report.curves {
            let _ = write!(out, " {} (µs/item) |", curve.name);
        }
        out.push_str("\n|---|");
        for _ in &report.curves {
            out.push_str("---|");
        }
        out.push('\n');
        let sizes: Vec<f64> = report
            .curves
            .iter()
            .flat_map(|curve| curve.points.iter().map(|(n, _)| *n))
            .fold(Vec::new(), |mut sizes, n| {
                if !sizes.contains(&n) {
                    sizes.push(n);
                }
                sizes
            });
        for size in sizes {
            let _ = write!(out, "| {} |", size as u64);
            for curve in &report.curves {
                let value = curve
                    .points
                    .iter()
                    .find(|(n, _)| *n == size)
                    .map(|(_, v)| num(*v));
                let _ = write!(out, " {} |", value.unwrap_or_else(|| "-".to_owned()));
            }
            out.push('\n');
        }
        let svg = plot(&report.curves);
        std::fs::write(dir.join("benchmarks-growth.svg"), svg)
            .map_err(|e| format!("writing the plot: {e}"))?;
    }
    if report.has(PULL) {
        out.push('\n');
        out.push_str(&pull_section(report));
    }
    let path = dir.join("benchmarks.md");
    std::fs::write(&path, out).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// A line plot, by hand: x on a log scale (queue size), y linear from 0.
fn plot(curves: &[Curve]) -> String {
    const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let (width, height) = (640.0, 360.0);
    let (left, right, top, bottom) = (70.0, 20.0, 30.0, 60.0);
    let points = curves.iter().flat_map(|curve| curve.points.iter());
    let (min_x, max_x, max_y) = points.fold((f64::MAX, f64::MIN, 0f64), |(a, b, c), (x, y)| {
        (a.min(*x), b.max(*x), c.max(*y))
    });
    let (lx0, lx1) = (min_x.max(1.0).log10().floor(), max_x.max(10.0).log10().ceil());
    let span_x = (lx1 - lx0).max(1.0);
    let top_y = if max_y > 0.0 { max_y * 1.15 } else { 1.0 };
    let sx = |x: f64| left + (x.max(1.0).log10() - lx0) / span_x * (width - left - right);
    let sy = |y: f64| height - bottom - y / top_y * (height - top - bottom);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="18" text-anchor="middle" font-size="14">Time per synced item against queue size</text>"##,
        width / 2.0
    );
    // Axes, ticks and grid.
    let (x0, x1, y0, y1) = (left, width - right, height - bottom, top);
    let _ = writeln!(
        svg,
        r##"<path d="M{x0} {y1} V{y0} H{x1}" stroke="black" fill="none"/>"##
    );
    let mut decade = lx0;
    while decade <= lx1 {
        let x = sx(10f64.powf(decade));
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            y0 + 16.0,
            10f64.powf(decade) as u64
        );
        decade += 1.0;
    }
    for step in 0..=4 {
        let value = top_y * f64::from(step) / 4.0;
        let y = sy(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            num(value)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle">queued items (log scale)</text>
<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">µs per item</text>"##,
        (x0 + x1) / 2.0,
        height - 20.0,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0
    );
    for (index, curve) in curves.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let path: Vec<String> = curve
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"##,
            path.join(" ")
        );
        for (x, y) in &curve.points {
            let _ = writeln!(
                svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"##,
                sx(*x),
                sy(*y)
            );
        }
        let ly = top + 14.0 + 16.0 * index as f64;
        let _ = writeln!(
            svg,
            r##"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{}</text>"##,
            x0 + 12.0,
            x0 + 32.0,
            x0 + 38.0,
            ly + 4.0,
            escape(&curve.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::merge_pull_section;

    const TOP: &str = "# Benchmarks\n\n- **peers**: peers.\n\n## Results\n\n| table |\n";

    #[test]
    fn a_pull_section_is_appended_then_replaced_in_place() {
        let once = merge_pull_section(TOP, "## Pulls\n\nfirst\n");
        assert!(
            once.starts_with("# Benchmarks\n\n- **peers**: peers.\n- **pull**: "),
            "{once}"
        );
        assert!(once.ends_with("| table |\n\n## Pulls\n\nfirst\n"), "{once}");
        let twice = merge_pull_section(&once, "## Pulls\n\nsecond\n");
        assert_eq!(twice, once.replace("first", "second"));
        // A section after it is kept, a blank line between.
        let followed = format!("{once}\n## Later\n\nkept\n");
        assert_eq!(
            merge_pull_section(&followed, "## Pulls\n\nsecond\n"),
            followed.replace("first", "second")
        );
    }
}
