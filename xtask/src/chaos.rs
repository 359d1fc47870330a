//! `cargo xtask chaos [--kills N] [--seed S]`: the reliability suite at a
//! chosen strength, and its report in `docs/reliability.md`.
//!
//! The suite's tests (`tests/tests/{kill,kill_pull,kill_assigned,faults,cancellation,bad_input,security,real_servers,postgrest_shape}.rs`)
//! run in CI too, with 50 kills and a fresh seed each run; here they run
//! with the given number of kills and one seed for every scenario, and
//! each scenario appends a JSON line with its figures to a report file
//! (`SYNC_CHAOS_REPORT`), which this task turns into the table.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::{cargo, run, workspace_root};

/// The test files of the suite.
const SUITE: [&str; 9] = [
    "kill",
    "kill_pull",
    "kill_assigned",
    "faults",
    "cancellation",
    "bad_input",
    "security",
    "real_servers",
    "postgrest_shape",
];

/// How the real-server scenarios' report lines begin.
const REAL_SERVER: &str = "real server: ";

/// The share of write answers the real-server scenarios' proxy loses.
const REAL_LOSS: u64 = 30;

/// The kills of a run when `--kills` is not given: as in CI.
const DEFAULT_KILLS: u64 = 50;

/// Runs the suite and writes the report.
pub(crate) fn chaos(args: &[String]) -> Result<(), String> {
    let options = Options::parse(args)?;
    let report_file = std::env::temp_dir().join(format!(
        "sync-chaos-{}-{}.jsonl",
        std::process::id(),
        options.seed
    ));
    // A stale file of an earlier run with the same name would add its lines.
    let _removed = std::fs::remove_file(&report_file);
    eprintln!(
        "chaos: seed {} (replay with --seed {0}), {} kills",
        options.seed, options.kills
    );
    let mut command = cargo();
    command.args(["test", "--package", "sync-e2e-tests"]);
    for test in SUITE {
        command.args(["--test", test]);
    }
    command
        .args(["--", "--test-threads", "2"])
        .env("SYNC_CHAOS_SEED", options.seed.to_string())
        .env("SYNC_CHAOS_KILLS", options.kills.to_string())
        .env("SYNC_CHAOS_REPORT", &report_file);
    run("reliability suite", &mut command)?;
    let lines = std::fs::read_to_string(&report_file).map_err(|error| {
        format!(
            "cannot read the suite's report {}: {error}",
            report_file.display()
        )
    })?;
    let _removed = std::fs::remove_file(&report_file);
    let scenarios = parse_lines(&lines)?;
    let markdown = render(&options, &scenarios, &today());
    print!("{markdown}");
    let path = workspace_root().join("docs").join("reliability.md");
    write(&path, &markdown)
}

#[derive(Debug)]
struct Options {
    kills: u64,
    seed: u64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            kills: DEFAULT_KILLS,
            seed: fresh_seed(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> Result<u64, String> {
                args.next()
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| format!("{name} needs a number, as in `cargo xtask chaos {name} 200`"))
            };
            match arg.as_str() {
                "--kills" => options.kills = number("--kills")?,
                "--seed" => options.seed = number("--seed")?,
                other => {
                    return Err(format!(
                        "chaos: unknown argument {other:?}; use --kills N and --seed S"
                    ));
                }
            }
        }
        if options.kills == 0 {
            return Err("chaos: --kills must be at least 1".to_owned());
        }
        Ok(options)
    }
}

/// A seed from the clock: every run explores new schedules; the report
/// and the failure messages print it for replay.
fn fresh_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    u64::from(nanos) % 1_000_000_007
}

/// One scenario's figures, summed over its report lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct Figures {
    runs: u64,
    kills: u64,
    operations: u64,
    faults: u64,
    requests: u64,
    bad_inputs: u64,
    lost: u64,
    duplicated: u64,
    /// Writes that took effect again under their key, with the same
    /// payload (possible only on a server that ignores the keys).
    repeated_writes: u64,
    /// Records whose server copy ended older than the local one (delayed
    /// apply: a held write landed after a newer one).
    older_state: u64,
    /// Public calls cut short at random points.
    cancelled: u64,
    /// Rounds of the cancellation scenario (20 saves, a cut-short
    /// `sync_now` and two whole ones each).
    rounds: u64,
    /// Items left unsynced after a scenario that only counts them.
    stuck: u64,
    /// Records differing between a third-party server and the device.
    mismatches: u64,
    /// Requests a clean create took on a third-party server (the most
    /// seen).
    requests_per_create: u64,
    /// Probes while the API was down without a monitor event, and for how
    /// long it was down.
    offline_probes: u64,
    offline_ms: u64,
    /// The longest time from the API's return to a drained queue.
    drained_after_ms: u64,
}

fn parse_lines(lines: &str) -> Result<BTreeMap<String, Figures>, String> {
    let mut scenarios: BTreeMap<String, Figures> = BTreeMap::new();
    for line in lines.lines().filter(|line| !line.trim().is_empty()) {
        let value: Value =
            serde_json::from_str(line).map_err(|error| format!("a bad report line {line:?}: {error}"))?;
        let name = value["scenario"]
            .as_str()
            .ok_or_else(|| format!("a report line without a scenario: {line}"))?;
        // Scenarios run per fault report as "fault <name>": one row for all.
        let row = if name.starts_with("fault ") {
            "each fault alone"
        } else {
            name
        };
        let figures = scenarios.entry(row.to_owned()).or_default();
        let number = |field: &str| value[field].as_u64().unwrap_or(0);
        figures.runs += 1;
        figures.kills += number("kills");
        // The cancellation scenarios count public calls as steps.
        figures.operations += number("operations") + number("steps");
        figures.faults += number("faults");
        figures.requests += number("requests");
        figures.bad_inputs += number("cases");
        figures.lost += number("lost");
        figures.duplicated += number("duplicated");
        figures.repeated_writes += number("repeated_writes");
        figures.older_state += number("older_state");
        figures.cancelled += number("cancelled") + number("dropped");
        figures.rounds += number("rounds");
        figures.stuck += number("stuck");
        figures.mismatches += number("mismatches");
        figures.requests_per_create = figures.requests_per_create.max(number("requests_per_create"));
        figures.offline_probes += number("offline_probes");
        figures.offline_ms += number("offline_ms");
        figures.drained_after_ms = figures.drained_after_ms.max(number("drained_after_ms"));
    }
    if scenarios.is_empty() {
        return Err("the suite reported no scenario: were the tests filtered out?".to_owned());
    }
    Ok(scenarios)
}

fn render(options: &Options, scenarios: &BTreeMap<String, Figures>, date: &str) -> String {
    let total = |field: fn(&Figures) -> u64| scenarios.values().map(field).sum::<u64>();
    let mut out = String::new();
    out.push_str("# Reliability report\n\n");
    out.push_str(
        "Written by `cargo xtask chaos` (the suite of issues 6, 11, 12, 13 and 14: \
         `tests/tests/{kill,kill_pull,kill_assigned,faults,cancellation,bad_input,security,real_servers,postgrest_shape}.rs`).\n\
         CI runs the same tests on every change, with 50 kills and a fresh seed.\n\n",
    );
    out.push_str(&format!(
        "- date: {date}; seed: {} (replay: `cargo xtask chaos --kills {} --seed {0}`)\n",
        options.seed, options.kills
    ));
    out.push_str(&format!(
        "- kills survived: {}\n- operations checked: {}\n- faults injected: {}\n- bad inputs tried: {}\n\
         - public calls cut short at random points: {} (and {} rounds of cancelled `sync_now`)\n\
         - **lost: {}, duplicated: {}**; items left stuck: {}\n\
         - changes applied again with the same payload, on servers that ignore `Idempotency-Key`: {}\n\
         - records left with an older server state, or brought back after their delete, by writes applied \
         after the client gave up: {}\n\n",
        total(|f| f.kills),
        total(|f| f.operations),
        total(|f| f.faults),
        total(|f| f.bad_inputs),
        total(|f| f.cancelled),
        total(|f| f.rounds),
        total(|f| f.lost),
        total(|f| f.duplicated),
        total(|f| f.stuck),
        total(|f| f.repeated_writes),
        total(|f| f.older_state),
    ));
    out.push_str(
        "| scenario | runs | kills | operations | faults injected | requests | bad inputs | lost | duplicated \
         | applied again | older server state |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (name, f) in scenarios {
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            f.runs,
            f.kills,
            f.operations,
            f.faults,
            f.requests,
            f.bad_inputs,
            f.lost,
            f.duplicated,
            f.repeated_writes,
            f.older_state
        ));
    }
    out.push_str(
        "\nLost and duplicated are checked, not counted: each scenario compares the server with the local \
         records and with the script's model, and reads the reference server's request log for every create \
         that took effect twice for a record, every create sent for a record the server already held (which \
         the server masks, by a replay or a `409`: only the log shows that the engine did not check first), \
         and, where the server honours the keys, every idempotency key that took effect twice; a scenario \
         with a loss or a duplicate fails, and then this report is not written.\n",
    );
    out.push_str(
        "\n**Keys ignored.** The rows marked \"keys ignored\" run against a server that ignores \
         `Idempotency-Key`, as json-server and most real APIs do, so no replay masks a duplicate: the engine \
         alone prevents it. Ids are set by the client, and a create whose outcome is unknown (a lost answer, \
         a timeout, a kill mid-request) is checked with a `GET` before anything is sent again, then sent as \
         an update if the record is there: no record is created twice. A retried update (or the update a \
         check chose after a create) may take effect a second time with the same payload; that leaves the \
         same data, so it is counted in \"applied again\", not failed on.\n",
    );
    let delayed: Vec<&Figures> = scenarios
        .iter()
        .filter(|(name, _)| name.starts_with("delayed apply"))
        .map(|(_, f)| f)
        .collect();
    if !delayed.is_empty() {
        let held: u64 = delayed.iter().map(|f| f.faults).sum();
        let older: u64 = delayed.iter().map(|f| f.older_state).sum();
        out.push_str(&format!(
            "\n**Writes applied after the client gave up** (\"delayed apply\": the server holds a write past \
             the adapter's request timeout, then applies it anyway). What the engine promises there, and the \
             scenario asserts: no create is duplicated (the retry checks first, and the held create that \
             lands on the record the retry made is refused with `409`, or replayed when keys are honoured); \
             no held update or delete lands on a newer state (the reference server gives ETags, so each \
             carries `If-Match` with the version it was written against and a late one is refused with \
             `412`); every item ends `synced`, nothing is stuck, nothing saved is lost locally, and the \
             server holds only states the app saved. What it cannot promise: a create held until after the \
             record's delete brings the record back (a create has no version to be conditional on); the \
             engine has recorded the delete `synced` by then and cannot tell. A server that honours \
             `Idempotency-Key` refuses most of them (the retry stored the key). This run: {held} writes \
             held, {older} records left with an older server state or brought back after their delete \
             (measured, not failed on).\n",
        ));
    }
    let cut: Vec<String> = scenarios
        .iter()
        .filter(|(_, f)| f.cancelled > 0)
        .map(|(name, f)| format!("{} in \"{name}\"", f.cancelled))
        .collect();
    if !cut.is_empty() || total(|f| f.rounds) > 0 {
        out.push_str(&format!(
            "\n**Calls cut short.** Public calls were dropped after 50 µs to 3 ms, as an app's timeout or a \
             UI \"cancel\" drops them: {} (\"mixed faults\": saves and `sync_now` under every fault; \
             \"public calls dropped\": every public async call, `close` included), and \"cancelled \
             sync_now\" cut `sync_now` short in {} rounds, with the real SQLite store. Afterwards nothing was \
             stuck `syncing` ({} items left), the server equalled the local state, and nothing was created \
             twice.\n",
            if cut.is_empty() {
                "none".to_owned()
            } else {
                cut.join(", ")
            },
            total(|f| f.rounds),
            total(|f| f.stuck),
        ));
    }
    let real: Vec<(&String, &Figures)> = scenarios
        .iter()
        .filter(|(name, _)| name.starts_with(REAL_SERVER))
        .collect();
    if !real.is_empty() {
        out.push_str(&format!(
            "\n**Third-party servers** (`tests/tests/real_servers.rs`, installed from their registries by \
             `tests/servers/<name>/setup`). Each run saves a script of mixed creates, updates and deletes over \
             three entities through the facade with the server's preset request shape, through a proxy that \
             loses {REAL_LOSS} % of the answers to writes after the server applied them, with a SIGKILL half way \
             and a restart on the same database. Then the server's records are compared with the device's, \
             field by field, and one more create is sent with no answer lost.\n\n\
             | server | runs | operations | kills | requests | answers lost | duplicates | records differing | \
             requests for a clean create |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        ));
        for (name, f) in real {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                name.trim_start_matches(REAL_SERVER),
                f.runs,
                f.operations,
                f.kills,
                f.requests,
                f.faults,
                f.duplicated,
                f.mismatches,
                f.requests_per_create
            ));
        }
    }
    if let Some(deaf) = scenarios.get("missed monitor transitions") {
        let seconds = deaf.offline_ms as f64 / 1000.0;
        out.push_str(&format!(
            "\n**A monitor that misses transitions.** With auto-sync on and a monitor whose change stream \
             never reports anything, the API went down for {seconds:.1} s and came back: {} probes meanwhile \
             ({:.1} a second; they back off from 1 s, up to `connectivity_check_interval`), and the queue \
             drained {} ms after the API was back (polls every 500 ms; while offline a probe first waits out \
             the backoff, 1 s here).\n",
            deaf.offline_probes,
            if seconds > 0.0 {
                deaf.offline_probes as f64 / seconds
            } else {
                0.0
            },
            deaf.drained_after_ms,
        ));
    }
    out
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    eprintln!("chaos: wrote {}", path.display());
    Ok(())
}

/// Today's date (UTC) as `YYYY-MM-DD`, from the system clock.
pub(crate) fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() / 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_follow_the_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_782), (2026, 11, 25));
    }

    #[test]
    fn report_lines_are_summed_per_scenario() {
        let lines = r#"{"scenario":"kill","seed":1,"kills":50,"operations":550,"lost":0,"duplicated":0}
{"scenario":"fault LoseResponse","seed":1,"operations":40,"faults":20,"lost":0,"duplicated":0}
{"scenario":"fault Delay(2s)","seed":1,"operations":16,"faults":8,"lost":0,"duplicated":0}
{"scenario":"bad input","seed":1,"cases":31}
{"scenario":"kill, keys ignored","seed":1,"kills":50,"operations":550,"repeated_writes":12,"lost":0,"duplicated":0}
{"scenario":"delayed apply, keys ignored","seed":1,"operations":200,"faults":30,"repeated_writes":3,"older_state":4,"lost":0,"duplicated":0}
{"scenario":"cancelled sync_now","seed":1,"rounds":200,"stuck":0}
{"scenario":"public calls dropped","seed":1,"steps":400,"dropped":90,"stuck":0}
{"scenario":"missed monitor transitions","seed":1,"operations":90,"offline_probes":4,"offline_ms":4000,"drained_after_ms":1010,"lost":0,"duplicated":0}
{"scenario":"real server: PocketBase","operations":300,"kills":1,"requests":540,"faults":110,"lost":0,"duplicated":0,"mismatches":0,"requests_per_create":1}
"#;
        let scenarios = parse_lines(lines).unwrap();
        assert_eq!(scenarios["kill"].kills, 50);
        assert_eq!(scenarios["each fault alone"].runs, 2);
        assert_eq!(scenarios["each fault alone"].faults, 28);
        assert_eq!(scenarios["bad input"].bad_inputs, 31);
        let text = render(&Options { kills: 50, seed: 1 }, &scenarios, "2026-11-25");
        assert!(text.contains("- bad inputs tried: 31\n"), "{text}");
        assert!(text.contains("**lost: 0, duplicated: 0**"), "{text}");
        assert!(text.contains("| each fault alone | 2 | 0 | 56 | 28 |"), "{text}");
        assert!(text.contains("- kills survived: 101\n"), "{text}");
        assert!(
            text.contains("| delayed apply, keys ignored | 1 | 0 | 200 | 30 | 0 | 0 | 0 | 0 | 3 | 4 |"),
            "{text}"
        );
        assert!(
            text.contains("same payload, on servers that ignore `Idempotency-Key`: 15\n"),
            "{text}"
        );
        assert!(
            text.contains("brought back after their delete, by writes applied after the client gave up: 4\n"),
            "{text}"
        );
        assert!(text.contains("30 writes held, 4 records left"), "{text}");
        assert!(text.contains("is refused with `412`"), "{text}");
        assert!(text.contains("4 probes meanwhile (1.0 a second"), "{text}");
        assert!(
            text.contains("| PocketBase | 1 | 300 | 1 | 540 | 110 | 0 | 0 | 1 |"),
            "{text}"
        );
        assert!(
            text.contains("(and 200 rounds of cancelled `sync_now`)"),
            "{text}"
        );
    }

    #[test]
    fn arguments_are_checked() {
        let args = |list: &[&str]| list.iter().map(|arg| (*arg).to_owned()).collect::<Vec<_>>();
        let options = Options::parse(&args(&["--kills", "200", "--seed", "7"])).unwrap();
        assert_eq!((options.kills, options.seed), (200, 7));
        assert!(Options::parse(&args(&["--kills"])).is_err());
        assert!(Options::parse(&args(&["--kills", "0"])).is_err());
        assert!(Options::parse(&args(&["--fast"])).is_err());
        assert!(parse_lines("").is_err());
        assert!(parse_lines("not json").is_err());
    }
}
