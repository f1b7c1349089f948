//! `accord`: the command line over an organisation's Accord replica.
//!
//! Thin by design: parse arguments, call the workspace library, print.
//! Errors become one readable message and an exit code, never a backtrace.

mod cli;
mod commands;
mod data_dir;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// Exit code for problems with the replica itself (missing, in use,
/// damaged, too new), so scripts can tell them from a bad argument.
const EXIT_REPLICA: u8 = 3;

/// Exit code when Accord itself has a bug (a panic that nothing caught).
const EXIT_INTERNAL: u8 = 70;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging();
    quiet_panics();
    let outcome = std::panic::catch_unwind(|| commands::run(cli));
    let Ok(outcome) = outcome else {
        eprintln!(
            "error: Accord hit an internal error and stopped; your data was not changed by this command."
        );
        eprintln!(
            "  Please report it, with the output of the command run again with ACCORD_LOG=debug."
        );
        return ExitCode::from(EXIT_INTERNAL);
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  because: {cause}");
            }
            ExitCode::from(exit_code(&error))
        }
    }
}

/// Panics are reported once, as a readable error, by `main`. The details
/// (including panics that the store catches from a damaged file) go to the
/// debug log instead of the terminal.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        tracing::debug!(%info, "panic");
    }));
}

/// Logs go to stderr, quiet by default; `ACCORD_LOG=debug` for more.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ACCORD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn exit_code(error: &anyhow::Error) -> u8 {
    use accord_store::StoreError as S;
    let store =
        error.chain().find_map(
            |e| match e.downcast_ref::<accord_workspace::WorkspaceError>() {
                Some(accord_workspace::WorkspaceError::Store(s)) => Some(s),
                _ => e.downcast_ref::<S>(),
            },
        );
    match store {
        Some(
            S::NotInitialised { .. }
            | S::InUse { .. }
            | S::NotAReplica { .. }
            | S::Corrupt { .. }
            | S::TooNew { .. },
        ) => EXIT_REPLICA,
        _ => 1,
    }
}

/// `accord doc show X | head` closing the pipe early is not an error.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
