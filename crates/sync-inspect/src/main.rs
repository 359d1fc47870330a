//! `offline-sync`: inspect and repair an offline sync database.
//!
//! Read-only commands open the file read-only (no lock, no migration, no
//! file created), so they work on a copy and beside a running app. Writing
//! commands open the store itself, taking its lock, and refuse while an app
//! holds the file.
//!
//! Exit codes: 0 done; 1 the file was refused or could not be read; 2 bad
//! usage; 3 the file is in use by an app (writing commands); 4 the record
//! or item asked for is not there, or has nothing to retry.
#![deny(missing_docs)]

mod cli;
mod failure;
mod json;
mod read;
mod table;
mod text;
mod write;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};
use crate::failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("offline-sync: error: could not start ({error})");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(&cli.command));
    match result {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(output.as_bytes()).and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                // A closed pipe (`| head`) is not an error worth a message.
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("offline-sync: error: could not write the output ({error})");
                    ExitCode::from(1)
                }
            }
        }
        Err(failure) => {
            eprintln!("offline-sync: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Runs one command; returns what to print (the export prints as it goes
/// and returns nothing).
async fn run(command: &Command) -> Result<String, Failure> {
    let common = command.common();
    let json = common.json;
    let file = &common.file;
    match command {
        Command::Status { .. } => read::status(file, json).await,
        Command::Queue {
            failed,
            parked,
            entity,
            ..
        } => read::queue(file, json, *failed, *parked, entity.clone()).await,
        Command::Show { entity, id, .. } => read::show(file, json, entity, id).await,
        Command::Export { with_payloads, .. } => read::export(file, *with_payloads).await,
        Command::Retry {
            entity,
            id,
            all_failed,
            ..
        } => match (entity, id) {
            (Some(entity), Some(id)) if !*all_failed => write::retry_one(file, json, entity, id).await,
            _ => write::retry_all(file, json).await,
        },
        Command::Discard {
            entity, id, revert, ..
        } => write::discard(file, json, entity, id, *revert).await,
    }
}
