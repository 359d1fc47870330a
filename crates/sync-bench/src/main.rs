//! Benchmarks, run through `cargo xtask bench`: each scenario measures the
//! engine and its baselines in the same run and prints ratios, because
//! absolute times on a shared machine are noise and side-by-side ratios are
//! not.
#![deny(missing_docs)]

use std::process::ExitCode;

mod engine;
mod net;
mod report;
mod store;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = args.iter().any(|arg| arg == "--smoke");
    let scenarios: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let all = scenarios.is_empty();
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
    const KNOWN: [&str; 3] = ["store", "net", "engine"];
    if let Some(unknown) = scenarios.iter().find(|s| !KNOWN.contains(s)) {
        eprintln!(
            "sync-bench: unknown scenario {unknown:?}; known: {}",
            KNOWN.join(", ")
        );
        return ExitCode::FAILURE;
    }
    let mut report = report::Report::default();
    if (all || scenarios.contains(&"store"))
        && let Err(error) = runtime.block_on(store::run(&mut report, smoke))
    {
        eprintln!("sync-bench store: {error}");
        return ExitCode::FAILURE;
    }
    if (all || scenarios.contains(&"net"))
        && let Err(error) = runtime.block_on(net::run(&mut report, smoke))
    {
        eprintln!("sync-bench net: {error}");
        return ExitCode::FAILURE;
    }
    if (all || scenarios.contains(&"engine"))
        && let Err(error) = runtime.block_on(engine::run(&mut report, smoke))
    {
        eprintln!("sync-bench engine: {error}");
        return ExitCode::FAILURE;
    }
    print!("{}", report.render(smoke));
    if smoke || report.all_met() {
        ExitCode::SUCCESS
    } else {
        eprintln!("sync-bench: some targets were missed (see the table)");
        ExitCode::FAILURE
    }
}
