//! `accord`: the command line over an organisation's Accord replica.
//!
//! Thin by design: parse arguments, call the libraries, print. Errors
//! become one readable message and an exit code, never a backtrace.

mod cli;
mod commands;
mod data_dir;
mod errors;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// Exit code when Accord itself has a bug (a panic that nothing caught).
const EXIT_INTERNAL: u8 = 70;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(&cli.command);
    quiet_panics();
    let outcome = std::panic::catch_unwind(|| {
        let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
        let mut io = output::Io {
            out: &mut stdout,
            err: &mut stderr,
        };
        commands::run(cli, &mut io)
    });
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
        Err(error) if errors::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => ExitCode::from(errors::report(&error, &mut std::io::stderr())),
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

/// Logs go to stderr: the long-running node and relay say what they do;
/// one-shot commands stay quiet (their output already says what happened).
/// `ACCORD_LOG=debug` (or any tracing filter) for more.
fn init_logging(command: &cli::Command) {
    let default = match command {
        cli::Command::Serve { .. } | cli::Command::Relay { .. } => "info",
        _ => "error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ACCORD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
