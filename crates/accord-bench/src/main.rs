//! `accord-bench`: Accord against raw Automerge on recorded editing traces.
//!
//! Every figure is a ratio against raw Automerge measured in the same run;
//! absolute times are context only (the benchmark machine is shared and noisy).

mod cold_open;
mod cpu;
mod persisted;
mod relay_client;
mod relay_fanout;
mod relay_keystrokes;
mod relay_load;
mod relay_run;
mod replay;
mod report;
mod servers;
mod splice_costs;
mod stats;
mod storage;
mod sync_clone;
mod sync_keystrokes;
mod sync_merge;
mod sync_net;
mod sync_reconnect;
mod trace;
mod trust_costs;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::report::Report;
use crate::trace::Trace;

#[derive(Parser, Debug)]
#[command(
    name = "accord-bench",
    about = "Accord vs raw Automerge on a recorded editing trace (run with --release)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Keystroke replay: raw Automerge in memory vs Accord's live document
    /// (one change per keystroke, group-committed durably), plus a naive
    /// one-fsync-per-keystroke variant for context.
    PersistedReplay(Common),
    /// Opening the compacted replica vs `AutoCommit::load` of the saved document.
    ColdOpen(Common),
    /// Replica file size after compaction vs `AutoCommit::save()` size.
    Storage(Common),
    /// All three, sharing one replica.
    All(Common),
    /// Diagnostic: Accord's per-keystroke work rebuilt step by step on plain
    /// Automerge, to show which step costs what (not part of `all`).
    SpliceCosts(Common),
    /// Sync: clone a trace-sized MOU to an empty peer (direct and via a relay) vs raw automerge sync.
    SyncClone(SyncArgs),
    /// Sync: reconnect of 1,000 synced documents (nothing / 10 changed) vs raw sync of the big one.
    SyncReconnect(SyncArgs),
    /// Sync: the concurrent trace replayed by two organisations syncing at merges vs raw fork/merge.
    SyncMerge(SyncArgs),
    /// Trust: signing every commit and verifying every received change vs the same without.
    TrustCosts(TrustArgs),
    /// Sync: B types into a trace-sized MOU one keystroke at a time while A receives, vs raw
    /// Automerge applying each keystroke's change.
    SyncKeystrokes(KeystrokeArgs),
    /// Relay: a writer types into a trace-sized MOU through a relay; the
    /// relay's engine time to forward each keystroke, vs raw Automerge
    /// applying it.
    RelayKeystrokes(RelayKeystrokeArgs),
    /// Relay: one writer and N subscribers of one document over loopback
    /// websockets, against a bare tokio-tungstenite broadcast in the same run.
    RelayFanout(FanoutArgs),
    /// Relay: many connections across many documents, each editing steadily;
    /// latency to durable acknowledgement, fan-out, memory per connection, losses.
    RelayLoad(LoadArgs),
    /// The relay the relay benchmarks measure, run in a child process.
    #[command(hide = true)]
    ServeRelay {
        data: PathBuf,
        #[arg(long, default_value_t = 1024)]
        max_connections: usize,
    },
    /// The bare broadcast server of `relay-fanout`, run in a child process.
    #[command(hide = true)]
    ServeBare,
}

#[derive(Args, Debug, Clone)]
pub struct KeystrokeArgs {
    /// A sequential trace: its final document is what B types into.
    trace: PathBuf,
    /// Keystrokes typed (600 is a minute at ten a second).
    #[arg(long, default_value_t = 600)]
    keystrokes: usize,
    /// Repetitions; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// A's coalescing window in ms (default: the node's).
    #[arg(long, default_value_t = accord_node::NODE_COALESCE_WINDOW_MS)]
    window: u64,
}

#[derive(Args, Debug, Clone)]
pub struct RelayKeystrokeArgs {
    /// A sequential trace: its final document is what the writer types into.
    trace: PathBuf,
    /// Keystrokes typed a round.
    #[arg(long, default_value_t = 200)]
    keystrokes: usize,
    /// Repetitions, each from a fresh relay.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Subscriber counts to measure, one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 100, 1000])]
    subscribers: Vec<usize>,
    /// Edits made by the writer in each run.
    #[arg(long, default_value_t = 200)]
    edits: usize,
    /// The writer's edits per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Leading edits (and bare messages) left out of the steady-state figures
    /// and reported on their own: the first edit after connecting finds the
    /// document cold on the relay and on every subscriber, and at 100
    /// subscribers takes longer (up to ~640 ms) than the 500 ms to the next
    /// edit, which then queues behind it.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Each subscriber's coalescing window in milliseconds, as `accord
    /// serve` runs a node: received changes are held this long and applied
    /// together. Arrival is timed when the frame is read, whatever the window;
    /// 0 applies each change as it arrives.
    #[arg(long, default_value_t = accord_node::NODE_COALESCE_WINDOW_MS)]
    subscriber_window: u64,
    /// Let each subscriber's engine handle a frame as soon as it is read,
    /// as runs before 2026-12-07 (seventh session) did. All clients share
    /// one thread, so every subscriber's engine work then delays the reads
    /// of the subscribers served after it. By default a subscriber that read
    /// an edit holds its engine work until every subscriber has read it.
    #[arg(long)]
    inline_engines: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Authenticated connections, each its own organisation and a writer.
    #[arg(long, default_value_t = 500)]
    connections: usize,
    /// Documents (one partnership each); connections are split evenly among them.
    #[arg(long, default_value_t = 50)]
    docs: usize,
    /// Edits per second per connection.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Seconds of editing.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Seconds to wait after the edits for the last acknowledgements and receipts.
    #[arg(long, default_value_t = 60)]
    settle: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct TrustArgs {
    /// A sequential trace.
    trace: PathBuf,
    /// Keystrokes replayed (the first N of the trace).
    #[arg(long, default_value_t = 10_000)]
    keystrokes: usize,
    /// Repetitions of each variant; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(Args, Debug, Clone)]
pub struct SyncArgs {
    /// The trace (sync-merge: a concurrent trace).
    trace: PathBuf,
    /// Repetitions of each variant (interleaved); medians are reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// sync-reconnect: number of documents in the partnership (incl. the trace one).
    #[arg(long, default_value_t = 1_000)]
    docs: usize,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// A sequential trace: gzip JSON `{endContent, txns: [{patches: [[pos, del, ins], ...]}]}`.
    trace: PathBuf,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Full replays of each variant (alternating order); the median total is used.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Cold-open measurements of each variant (interleaved); the median is used.
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Keystrokes measured for the naive one-fsync-per-keystroke variant.
    #[arg(long, default_value_t = 2_000)]
    naive_keystrokes: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cfg!(debug_assertions) {
        eprintln!("warning: accord-bench was built without --release; the numbers mean nothing");
    }
    match &cli.command {
        Command::SyncClone(a) => return sync_clone::run(&Trace::load(&a.trace)?, a.rounds),
        Command::SyncReconnect(a) => {
            return sync_reconnect::run(&Trace::load(&a.trace)?, a.docs, a.rounds);
        }
        Command::SyncMerge(a) => return sync_merge::run(&a.trace, a.rounds),
        Command::RelayFanout(a) => {
            let config = relay_fanout::FanoutConfig {
                edits: a.edits,
                rate: a.rate,
                warmup: a.warmup,
                subscriber_window_ms: a.subscriber_window,
                hold_for_fanout: !a.inline_engines,
            };
            return relay_fanout::run(&a.subscribers, config, a.json.as_deref());
        }
        Command::RelayLoad(a) => {
            let config = relay_load::LoadConfig {
                connections: a.connections,
                docs: a.docs,
                rate: a.rate,
                duration: std::time::Duration::from_secs(a.seconds),
                max_edits: None,
                settle: std::time::Duration::from_secs(a.settle),
            };
            return relay_load::run(config, a.json.as_deref());
        }
        Command::ServeRelay {
            data,
            max_connections,
        } => return servers::serve_relay(data, *max_connections),
        Command::ServeBare => return servers::serve_bare(),
        Command::TrustCosts(a) => {
            return trust_costs::run(&Trace::load(&a.trace)?, a.keystrokes, a.rounds);
        }
        Command::SyncKeystrokes(a) => {
            let trace = Trace::load(&a.trace)?;
            return sync_keystrokes::run(&trace, a.keystrokes, a.rounds, a.window);
        }
        Command::RelayKeystrokes(a) => {
            let trace = Trace::load(&a.trace)?;
            return relay_keystrokes::run(&trace, a.keystrokes, a.rounds);
        }
        _ => {}
    }
    let diagnose = matches!(cli.command, Command::SpliceCosts(_));
    let (common, which) = match cli.command {
        Command::PersistedReplay(c) => (c, [true, false, false]),
        Command::ColdOpen(c) => (c, [false, true, false]),
        Command::Storage(c) => (c, [false, false, true]),
        Command::All(c) => (c, [true, true, true]),
        Command::SpliceCosts(c) => (c, [false, false, false]),
        Command::SyncClone(_)
        | Command::SyncReconnect(_)
        | Command::SyncMerge(_)
        | Command::SyncKeystrokes(_)
        | Command::RelayKeystrokes(_)
        | Command::TrustCosts(_)
        | Command::RelayFanout(_)
        | Command::RelayLoad(_)
        | Command::ServeRelay { .. }
        | Command::ServeBare => {
            unreachable!("handled above")
        }
    };
    let trace = Trace::load(&common.trace)?;
    eprintln!(
        "trace {}: {} patches in {} txns, final text {} chars",
        trace.name,
        trace.patches.len(),
        trace.txns,
        trace.end_content.chars().count()
    );
    let replay_check = trace.text_after(trace.patches.len());
    anyhow::ensure!(
        replay_check == trace.end_content,
        "the trace does not replay to its endContent"
    );

    let mut report = Report::new(&trace);
    if diagnose {
        splice_costs::run(&trace, &common, &mut report)?;
    }
    let mut fixture = None;
    if which[0] {
        fixture = Some(persisted::run(&trace, &common, &mut report)?);
    }
    if which[1] || which[2] {
        let fixture = match fixture {
            Some(f) => f,
            None => persisted::build_fixture(&trace)?,
        };
        if which[1] {
            cold_open::run(&trace, &common, &fixture, &mut report)?;
        }
        if which[2] {
            storage::run(&fixture, &mut report)?;
        }
    }
    report.print();
    if let Some(path) = &common.json {
        report.write_json(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod relay_tests;
#[cfg(test)]
mod sync_tests;
#[cfg(test)]
mod tests;
