//! `cargo xtask bench`: builds and runs the peer benchmarks (their own
//! workspaces under `benches/peers/`, target dir `target/peers`) when the
//! run includes them, then runs `sync-bench`, handing the peers' JSON lines
//! over in a file. A smoke run never builds the peers.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::{cargo, run, workspace_root};

/// Jobs each peer (and the engine beside it) enqueues and drains.
const PEER_JOBS: usize = 5_000;

/// The peer workspaces, by folder under `benches/peers/`.
const PEERS: [&str; 2] = ["apalis", "effectum"];

pub(crate) fn bench(args: &[String]) -> Result<(), String> {
    let smoke = args.iter().any(|arg| arg == "--smoke");
    let scenarios: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let mut command = cargo();
    command.args(["run", "--quiet", "--package", "sync-bench"]);
    if !smoke {
        command.arg("--release");
    }
    command.arg("--").args(args);
    if !smoke && (scenarios.is_empty() || scenarios.contains(&"peers")) {
        let results = peers()?;
        command.arg("--peers-file").arg(results);
    }
    run("sync-bench", &mut command)
}

/// Builds every peer, then runs each; returns the file of their results.
fn peers() -> Result<PathBuf, String> {
    let root = workspace_root();
    let target = root.join("target").join("peers");
    for peer in PEERS {
        let manifest = root.join("benches").join("peers").join(peer).join("Cargo.toml");
        run(
            &format!("build peer benchmark {peer} (release, target/peers)"),
            cargo()
                .args(["build", "--quiet", "--release", "--manifest-path"])
                .arg(&manifest)
                .arg("--target-dir")
                .arg(&target),
        )?;
    }
    let mut results = String::new();
    for peer in PEERS {
        let exe = target
            .join("release")
            .join(format!("peer-{peer}{}", std::env::consts::EXE_SUFFIX));
        eprintln!("\n==> peer benchmark {peer} ({PEER_JOBS} jobs, concurrency 1 and 16)");
        let output = Command::new(&exe)
            .args(["--jobs", &PEER_JOBS.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .map_err(|error| format!("peer {peer}: could not start {}: {error}", exe.display()))?;
        if !output.status.success() {
            return Err(format!("peer {peer} failed ({})", output.status));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        eprint!("{stdout}");
        results.push_str(&stdout);
    }
    let file = target.join("results.jsonl");
    std::fs::write(&file, results).map_err(|error| format!("writing {}: {error}", file.display()))?;
    Ok(file)
}
