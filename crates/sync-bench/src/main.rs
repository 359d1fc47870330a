//! Benchmarks, run through `cargo xtask bench`: each scenario measures the
//! engine and its baselines in the same run and prints ratios, because
//! absolute times on a shared machine are noise and side-by-side ratios are
//! not.
//!
//! `sync-bench [SCENARIO...] [--smoke] [--peers-file PATH]`; with no
//! scenario, all run, and a full (non-smoke) run of all rewrites
//! `docs/benchmarks.md`. A non-smoke run of chosen scenarios that include
//! `pull` rewrites only that file's section on pulls.
#![deny(missing_docs)]

use std::path::PathBuf;
use std::process::ExitCode;

mod common;
mod doc;
mod engine;
mod growth;
mod memory;
mod net;
mod peers;
mod pull;
mod pull_parts;
mod report;
mod requests;
mod startup;
mod store;
mod wan;

/// Every scenario, in the order a full run takes them.
const KNOWN: [&str; 10] = [
    "store", "net", "engine", "requests", "growth", "memory", "startup", "pull", "wan", "peers",
];

struct Args {
    smoke: bool,
    peers_file: Option<PathBuf>,
    scenarios: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        smoke: false,
        peers_file: None,
        scenarios: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => parsed.smoke = true,
            "--peers-file" => {
                parsed.peers_file = Some(args.next().ok_or("--peers-file needs a path")?.into());
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag:?}")),
            scenario if KNOWN.contains(&scenario) => parsed.scenarios.push(scenario.to_owned()),
            unknown => {
                return Err(format!(
                    "unknown scenario {unknown:?}; known: {}",
                    KNOWN.join(", ")
                ));
            }
        }
    }
    Ok(parsed)
}

async fn scenario(name: &str, report: &mut report::Report, args: &Args) -> Result<(), String> {
    let smoke = args.smoke;
    match name {
        "store" => store::run(report, smoke).await,
        "net" => net::run(report, smoke).await,
        "engine" => engine::run(report, smoke).await,
        "requests" => requests::run(report, smoke).await,
        "growth" => growth::run(report, smoke).await,
        "memory" => memory::run(report, smoke).await,
        "startup" => startup::run(report, smoke).await,
        "pull" => pull::run(report, smoke).await,
        "wan" => wan::run(report, smoke).await,
        "peers" => peers::run(report, smoke, args.peers_file.as_deref()).await,
        other => Err(format!("unknown scenario {other:?}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sync-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The memory and pull scenarios' child processes.
    let child = match args.first().map(String::as_str) {
        Some(memory::CHILD) => Some((memory::CHILD, runtime.block_on(memory::child(&args[1..])))),
        Some(pull::CHILD) => Some((pull::CHILD, runtime.block_on(pull::child(&args[1..])))),
        _ => None,
    };
    if let Some((name, result)) = child {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("sync-bench {name}: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse(&args) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("sync-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let all = args.scenarios.is_empty();
    let mut report = report::Report::default();
    for name in KNOWN {
        if !all && !args.scenarios.iter().any(|s| s == name) {
            continue;
        }
        report.start(name);
        if let Err(error) = runtime.block_on(scenario(name, &mut report, &args)) {
            eprintln!("sync-bench {name}: {error}");
            return ExitCode::FAILURE;
        }
    }
    print!("{}", report.render(args.smoke));
    if !args.smoke {
        let written = if all {
            Some(doc::write(&report))
        } else if report.has("pull") {
            Some(doc::write_pull_section(&report))
        } else {
            None
        };
        match written {
            Some(Ok(path)) => eprintln!("sync-bench: wrote {}", path.display()),
            Some(Err(error)) => {
                eprintln!("sync-bench: {error}");
                return ExitCode::FAILURE;
            }
            None => {}
        }
    }
    if args.smoke || report.all_met() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "sync-bench: some targets were missed (see the table): {}",
            report.missed().join("; ")
        );
        ExitCode::FAILURE
    }
}
