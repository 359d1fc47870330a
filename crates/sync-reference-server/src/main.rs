//! `sync-reference-server`: serves the reference REST API on `127.0.0.1`
//! until Ctrl-C.
//!
//! ```text
//! sync-reference-server [--port N] [--data FILE] [--prefix /api]
//!                       [--dialect rest|postgrest]
//!                       [--bearer TOKEN] [--ignore-idempotency-keys] [--assign-ids]
//!                       [--stamp-field FIELD] [--soft-delete FIELD]
//!                       [--tombstone-retention N]
//!                       [--lose-responses P] [--delayed-apply P [--apply-delay MS]]
//!                       [--fault-seed N]
//! ```
#![deny(missing_docs)]

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use http::Method;
use sync_reference_server::{Dialect, Fault, FaultPlan, IdempotencyMode, ReferenceServer, ServerConfig};

const USAGE: &str = "\
usage: sync-reference-server [--port N] [--data FILE] [--prefix /api]
                             [--dialect rest|postgrest]
                             [--bearer TOKEN] [--ignore-idempotency-keys] [--assign-ids]
                             [--stamp-field FIELD] [--soft-delete FIELD]
                             [--tombstone-retention N]
                             [--lose-responses P] [--delayed-apply P [--apply-delay MS]]
                             [--fault-seed N]

  --port N                   listen on 127.0.0.1:N (default 3000; 0 picks a free port)
  --data FILE                load the collections from FILE and write every change to it
  --prefix PATH              serve every route under PATH, such as /api
  --dialect NAME             the API's shape: rest (default; /{collection}/{id}, objects,
                             PATCH as a JSON Merge Patch) or postgrest (/{collection}?id=eq.{id},
                             arrays with Prefer: return=representation, PATCH sets columns)
  --bearer TOKEN             require `Authorization: Bearer TOKEN` on collections (else 401)
  --ignore-idempotency-keys  apply every write as new, as json-server does: no replay for a
                             repeated Idempotency-Key, 409 for a repeated create of an id
  --assign-ids               the server assigns ids, as an auto-increment key does: POST
                             /{collection} stores the record under the collection's next
                             integer (1, 2, ...; never reused, kept in --data FILE) as
                             \"id\": 17; a POST body with an \"id\" gets 400
  --stamp-field FIELD        set FIELD on every create, update, patch and soft delete to a
                             strictly growing integer (milliseconds since the Unix epoch)
  --soft-delete FIELD        DELETE sets FIELD to true and keeps the record: GET answers 404,
                             lists still show it, a POST of its id brings it back
  --tombstone-retention N    keep deletions for the change feed N change stamps back (default:
                             until POST /_admin/{collection}/purge-tombstones); an older
                             since= then answers 410
  --lose-responses P         apply each write, then drop its answer with probability P (0 to 1)
  --delayed-apply P          hold each write with probability P (0 to 1) for --apply-delay,
                             then apply it even if the client hung up meanwhile
  --apply-delay MS           how long --delayed-apply holds a write (default 5000)
  --fault-seed N             the seed of those draws (default 0): the same seed, the same faults
  --help                     show this text

Faults touch writes only (POST, PUT, PATCH, DELETE); with both fault flags, one draw
per request picks at most one, losses first.";

/// The methods the fault flags touch: the writes.
const WRITES: [Method; 4] = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

/// How long `--delayed-apply` holds a write unless `--apply-delay` says.
const DEFAULT_APPLY_DELAY: Duration = Duration::from_secs(5);

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Serve {
        config: Box<ServerConfig>,
        /// The banner's lines on the modes asked for, each after a newline.
        notes: String,
    },
    Help,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut config = ServerConfig::new().with_port(3000);
    let mut seed = None;
    let mut lose = None;
    let mut delayed = None;
    let mut apply_delay = None;
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
            "--dialect" => {
                let text = value()?;
                config.dialect = Dialect::from_name(&text)
                    .ok_or_else(|| format!("--dialect: {text:?} is not rest or postgrest"))?;
            }
            "--bearer" => config.bearer_token = Some(value()?),
            "--stamp-field" => config.stamp_field = Some(value()?),
            "--soft-delete" => config.soft_delete_field = Some(value()?),
            "--tombstone-retention" => {
                let text = value()?;
                config.tombstone_retention = Some(text.parse::<u64>().map_err(|_| {
                    format!("--tombstone-retention: {text:?} is not a whole number of stamps")
                })?);
            }
            "--fault-seed" => {
                let text = value()?;
                seed = Some(
                    text.parse::<u64>()
                        .map_err(|_| format!("--fault-seed: {text:?} is not a whole number"))?,
                );
            }
            "--lose-responses" => lose = Some(probability(&flag, &value()?)?),
            "--delayed-apply" => delayed = Some(probability(&flag, &value()?)?),
            "--apply-delay" => {
                let text = value()?;
                let millis = text
                    .parse::<u64>()
                    .map_err(|_| format!("--apply-delay: {text:?} is not a whole number of milliseconds"))?;
                apply_delay = Some(Duration::from_millis(millis));
            }
            "--ignore-idempotency-keys" => {
                if inline.is_some() {
                    return Err(format!("{flag} takes no value"));
                }
                config.idempotency = IdempotencyMode::Ignore;
            }
            "--assign-ids" => {
                if inline.is_some() {
                    return Err(format!("{flag} takes no value"));
                }
                config.assigned_ids = true;
            }
            "--help" | "-h" => return Ok(Command::Help),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if apply_delay.is_some() && delayed.is_none() {
        return Err("--apply-delay needs --delayed-apply".to_owned());
    }
    if lose.is_none() && delayed.is_none() {
        if seed.is_some() {
            return Err("--fault-seed needs --lose-responses or --delayed-apply".to_owned());
        }
        let notes = describe(&config, None, None);
        return Ok(Command::Serve {
            config: Box::new(config),
            notes,
        });
    }
    let mut plan = FaultPlan::seeded(seed.unwrap_or(0)).only_methods(&WRITES);
    if let Some(probability) = lose {
        plan = plan.with_random(Fault::LoseResponse, probability);
    }
    let delayed = delayed.map(|probability| (probability, apply_delay.unwrap_or(DEFAULT_APPLY_DELAY)));
    if let Some((probability, delay)) = delayed {
        plan = plan.with_random(Fault::DelayedApply(delay), probability);
    }
    config.faults = Some(plan);
    let notes = describe(&config, lose, delayed);
    Ok(Command::Serve {
        config: Box::new(config),
        notes,
    })
}

/// A probability flag's value, `0` to `1`.
fn probability(flag: &str, text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| format!("{flag}: {text:?} is not a probability (0 to 1)"))
}

/// The banner's lines about the dialect, the fault plan, the bearer check,
/// the idempotency mode, the ids and the pull settings.
fn describe(config: &ServerConfig, lose: Option<f64>, delayed: Option<(f64, Duration)>) -> String {
    let mut lines = String::new();
    if config.dialect == Dialect::PostgRest {
        lines.push_str("\nPostgREST dialect: rows at /{collection}?id=eq.{id}");
    }
    if let Some(plan) = &config.faults {
        let mut faults = Vec::new();
        if let Some(p) = lose {
            faults.push(format!("losing answers to writes with probability {p}"));
        }
        if let Some((p, delay)) = delayed {
            faults.push(format!(
                "applying writes {} ms late with probability {p}",
                delay.as_millis()
            ));
        }
        lines.push_str(&format!(
            "\nfault mode: seed {}, {}",
            plan.seed(),
            faults.join(", ")
        ));
    }
    if config.bearer_token.is_some() {
        lines.push_str("\nbearer token required on collections");
    }
    if config.idempotency == IdempotencyMode::Ignore {
        lines.push_str("\nidempotency keys ignored: every write is applied as new");
    }
    if config.assigned_ids {
        lines.push_str("\nids assigned by the server: POST bodies must not carry an id");
    }
    if let Some(field) = &config.stamp_field {
        lines.push_str(&format!("\nstamp field: {field} set on every write"));
    }
    if let Some(field) = &config.soft_delete_field {
        lines.push_str(&format!("\nsoft deletes: {field} set to true, records kept"));
    }
    if let Some(stamps) = config.tombstone_retention {
        lines.push_str(&format!(
            "\ndeletions kept {stamps} change stamps back in the change feed"
        ));
    }
    lines
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (config, notes) = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Serve { config, notes }) => (*config, notes),
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
        "sync-reference-server listening on {}\n{storage}{notes}\nCtrl-C to stop\n",
        server.base_url(),
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
    use super::{
        Command, DEFAULT_APPLY_DELAY, Dialect, Duration, Fault, FaultPlan, IdempotencyMode, Method,
        ServerConfig, parse_args,
    };

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|arg| (*arg).to_owned()))
    }

    /// The configuration `args` ask for, and the banner's notes.
    fn serve(args: &[&str]) -> (ServerConfig, String) {
        match parse(args) {
            Ok(Command::Serve { config, notes }) => (*config, notes),
            other => panic!("{args:?} not parsed as a server: {other:?}"),
        }
    }

    fn writes() -> FaultPlan {
        FaultPlan::seeded(0).only_methods(&[Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
    }

    #[test]
    fn defaults_to_port_3000_in_memory() {
        assert_eq!(serve(&[]), (ServerConfig::new().with_port(3000), String::new()));
    }

    #[test]
    fn reads_every_flag_in_both_forms() {
        let expected = ServerConfig::new()
            .with_port(0)
            .with_data_file("db.json")
            .with_prefix("/api");
        assert_eq!(
            serve(&["--port", "0", "--data", "db.json", "--prefix", "/api"]).0,
            expected
        );
        assert_eq!(
            serve(&["--port=0", "--data=db.json", "--prefix=/api"]).0,
            expected
        );
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn reads_the_fault_and_auth_flags() {
        let (config, notes) = serve(&["--bearer", "tok", "--lose-responses=0.25", "--fault-seed", "9"]);
        assert_eq!(config.bearer_token.as_deref(), Some("tok"));
        assert!(notes.contains("seed 9, losing answers"), "{notes}");
        assert!(notes.contains("bearer token required"), "{notes}");
        let expected = FaultPlan::seeded(9)
            .only_methods(&[Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .with_random(Fault::LoseResponse, 0.25);
        assert_eq!(config.faults, Some(expected));
        assert!(parse(&["--fault-seed", "9"]).is_err());
        assert!(parse(&["--lose-responses", "1.5"]).is_err());
        assert!(parse(&["--lose-responses", "NaN"]).is_err());
    }

    #[test]
    fn reads_the_idempotency_flag() {
        let (config, notes) = serve(&["--ignore-idempotency-keys"]);
        assert_eq!(config.idempotency, IdempotencyMode::Ignore);
        assert_eq!(config.faults, None);
        assert!(notes.contains("idempotency keys ignored"), "{notes}");
        assert_eq!(serve(&[]).0.idempotency, IdempotencyMode::Replay);
        assert!(parse(&["--ignore-idempotency-keys=yes"]).is_err());
    }

    #[test]
    fn reads_the_assigned_ids_flag() {
        let (config, notes) = serve(&["--assign-ids"]);
        assert_eq!(
            config,
            ServerConfig::new().with_port(3000).with_assigned_ids(true)
        );
        assert!(notes.contains("ids assigned by the server"), "{notes}");
        assert!(!serve(&[]).0.assigned_ids);
        assert!(parse(&["--assign-ids=yes"]).is_err());
    }

    #[test]
    fn reads_the_dialect_flag() {
        assert_eq!(serve(&[]).0.dialect, Dialect::Rest);
        let (config, notes) = serve(&["--dialect", "postgrest"]);
        assert_eq!(config.dialect, Dialect::PostgRest);
        assert!(notes.contains("PostgREST dialect"), "{notes}");
        assert_eq!(serve(&["--dialect=PostgREST"]).0.dialect, Dialect::PostgRest);
        assert_eq!(serve(&["--dialect=rest"]), serve(&[]));
        assert!(parse(&["--dialect", "graphql"]).is_err());
        assert!(parse(&["--dialect"]).is_err());
    }

    #[test]
    fn reads_the_delayed_apply_flags() {
        let (config, notes) = serve(&["--delayed-apply", "0.5", "--apply-delay=250"]);
        let expected = writes().with_random(Fault::DelayedApply(Duration::from_millis(250)), 0.5);
        assert_eq!(config.faults, Some(expected));
        assert!(
            notes.contains("applying writes 250 ms late with probability 0.5"),
            "{notes}"
        );

        let (config, _) = serve(&["--delayed-apply", "1"]);
        assert_eq!(
            config.faults,
            Some(writes().with_random(Fault::DelayedApply(DEFAULT_APPLY_DELAY), 1.0))
        );

        // With both faults, one draw: losses first.
        let (config, _) = serve(&["--fault-seed=0", "--delayed-apply=0.1", "--lose-responses=0.2"]);
        let expected = writes()
            .with_random(Fault::LoseResponse, 0.2)
            .with_random(Fault::DelayedApply(DEFAULT_APPLY_DELAY), 0.1);
        assert_eq!(config.faults, Some(expected));

        assert!(
            parse(&["--apply-delay", "100"]).is_err(),
            "a delay without the fault"
        );
        assert!(parse(&["--delayed-apply", "2"]).is_err());
        assert!(parse(&["--delayed-apply", "0.5", "--apply-delay", "-1"]).is_err());
        assert!(parse(&["--fault-seed", "3", "--delayed-apply", "0.5"]).is_ok());
    }

    #[test]
    fn reads_the_pull_flags() {
        let (config, notes) = serve(&[
            "--stamp-field",
            "updated_at",
            "--soft-delete=deleted",
            "--tombstone-retention",
            "500",
        ]);
        let expected = ServerConfig::new()
            .with_port(3000)
            .with_stamp_field("updated_at")
            .with_soft_delete("deleted")
            .with_tombstone_retention(500);
        assert_eq!(config, expected);
        assert!(notes.contains("stamp field: updated_at"), "{notes}");
        assert!(notes.contains("soft deletes: deleted"), "{notes}");
        assert!(notes.contains("500 change stamps back"), "{notes}");
        assert!(parse(&["--tombstone-retention", "-1"]).is_err());
        assert!(parse(&["--stamp-field"]).is_err());
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
