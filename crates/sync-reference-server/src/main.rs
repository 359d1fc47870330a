//! `sync-reference-server`: serves the reference REST API on `127.0.0.1`
//! until Ctrl-C.
//!
//! ```text
//! sync-reference-server [--port N] [--data FILE] [--prefix /api]
//!                       [--bearer TOKEN] [--lose-responses P [--fault-seed N]]
//! ```
#![deny(missing_docs)]

use std::io::Write;
use std::process::ExitCode;

use http::Method;
use sync_reference_server::{Fault, FaultPlan, ReferenceServer, ServerConfig};

const USAGE: &str = "\
usage: sync-reference-server [--port N] [--data FILE] [--prefix /api]
                             [--bearer TOKEN] [--lose-responses P [--fault-seed N]]

  --port N            listen on 127.0.0.1:N (default 3000; 0 picks a free port)
  --data FILE         load the collections from FILE and write every change to it
  --prefix PATH       serve every route under PATH, such as /api
  --bearer TOKEN      require `Authorization: Bearer TOKEN` on collections (else 401)
  --lose-responses P  apply each write, then drop its answer with probability P (0 to 1)
  --fault-seed N      the seed of those draws (default 0): the same seed, the same losses
  --help              show this text";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Serve(Box<ServerConfig>),
    Help,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut config = ServerConfig::new().with_port(3000);
    let mut seed = None;
    let mut lose = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // Both `--port 3000` and `--port=3000`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--port" => {
                let text = value()?;
                config.port = text
                    .parse()
                    .map_err(|_| format!("--port: {text:?} is not a port number (0 to 65535)"))?;
            }
            "--data" => config.data_file = Some(value()?.into()),
            "--prefix" => config.prefix = value()?,
            "--bearer" => config.bearer_token = Some(value()?),
            "--fault-seed" => {
                let text = value()?;
                seed = Some(
                    text.parse::<u64>()
                        .map_err(|_| format!("--fault-seed: {text:?} is not a whole number"))?,
                );
            }
            "--lose-responses" => {
                let text = value()?;
                let probability = text
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=1.0).contains(p))
                    .ok_or_else(|| format!("--lose-responses: {text:?} is not a probability (0 to 1)"))?;
                lose = Some(probability);
            }
            "--help" | "-h" => return Ok(Command::Help),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match (lose, seed) {
        (Some(probability), seed) => {
            let plan = FaultPlan::seeded(seed.unwrap_or(0))
                .only_methods(&[Method::POST, Method::PUT, Method::DELETE])
                .with_random(Fault::LoseResponse, probability);
            config.faults = Some(plan);
        }
        (None, Some(_)) => return Err("--fault-seed needs --lose-responses".to_owned()),
        (None, None) => {}
    }
    Ok(Command::Serve(Box::new(config)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Serve(config)) => *config,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("sync-reference-server: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let data_file = config.data_file.clone();
    let faults = config.faults.as_ref().map(|plan| {
        format!(
            "\nfault mode: seed {}, losing answers to writes at random",
            plan.seed()
        )
    });
    let auth = config
        .bearer_token
        .as_ref()
        .map(|_| "\nbearer token required on collections");
    let server = match ReferenceServer::start(config).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("sync-reference-server: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The first line names the URL: scripts and tests read it (with
    // `--port 0` it is the only way to learn the port).
    let storage = match &data_file {
        Some(path) => format!("data file: {}", path.display()),
        None => "data in memory only (use --data FILE to keep it)".to_owned(),
    };
    let banner = format!(
        "sync-reference-server listening on {}\n{storage}{}{}\nCtrl-C to stop\n",
        server.base_url(),
        faults.unwrap_or_default(),
        auth.unwrap_or_default(),
    );
    // Not `println!`: a reader that stopped listening (a closed pipe) must
    // not bring the server down.
    let mut stdout = std::io::stdout();
    let _ignored = stdout.write_all(banner.as_bytes()).and_then(|()| stdout.flush());
    let signal = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    match signal {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sync-reference-server: cannot wait for Ctrl-C: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Command, Fault, FaultPlan, Method, ServerConfig, parse_args};

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|arg| (*arg).to_owned()))
    }

    #[test]
    fn defaults_to_port_3000_in_memory() {
        assert_eq!(
            parse(&[]),
            Ok(Command::Serve(Box::new(ServerConfig::new().with_port(3000))))
        );
    }

    #[test]
    fn reads_every_flag_in_both_forms() {
        let expected = ServerConfig::new()
            .with_port(0)
            .with_data_file("db.json")
            .with_prefix("/api");
        assert_eq!(
            parse(&["--port", "0", "--data", "db.json", "--prefix", "/api"]),
            Ok(Command::Serve(Box::new(expected.clone())))
        );
        assert_eq!(
            parse(&["--port=0", "--data=db.json", "--prefix=/api"]),
            Ok(Command::Serve(Box::new(expected)))
        );
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn reads_the_fault_and_auth_flags() {
        let Ok(Command::Serve(config)) =
            parse(&["--bearer", "tok", "--lose-responses=0.25", "--fault-seed", "9"])
        else {
            panic!("not parsed");
        };
        assert_eq!(config.bearer_token.as_deref(), Some("tok"));
        let expected = FaultPlan::seeded(9)
            .only_methods(&[Method::POST, Method::PUT, Method::DELETE])
            .with_random(Fault::LoseResponse, 0.25);
        assert_eq!(config.faults, Some(expected));
        assert!(parse(&["--fault-seed", "9"]).is_err());
        assert!(parse(&["--lose-responses", "1.5"]).is_err());
        assert!(parse(&["--lose-responses", "NaN"]).is_err());
    }

    #[test]
    fn refuses_bad_arguments() {
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--port", "70000"]).is_err());
        assert!(parse(&["--port", "x"]).is_err());
        assert!(parse(&["--verbose"]).is_err());
        assert!(parse(&["3000"]).is_err());
    }
}
