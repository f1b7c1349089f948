//! `relay-load`: many authenticated connections across many documents, each
//! editing steadily, against the real relay over loopback websockets.
//!
//! `connections / docs` organisations per partnership (one MOU each), every
//! one of them a writer at `rate` edits per second for `duration`, starts
//! staggered. Reported: edit → durable acknowledgement (the relay's sync
//! frame naming the edit's change among its heads; the relay sends it only
//! after committing the change to redb), fan-out to the other members, the
//! relay's memory per connection, and, after the relay has stopped, whether
//! its replica holds every acknowledged edit.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use serde::Serialize;

use crate::relay_client::{ClientMode, Edits, Group, group};
use crate::relay_run::{Durability, Figures, check_durable, drive, figures};
use crate::servers::{ChildServer, Memory, RelayHost, create_relay_replica};

#[derive(Clone, Copy, Debug, Serialize)]
pub struct LoadConfig {
    pub connections: usize,
    pub docs: usize,
    /// Edits per second per connection.
    pub rate: f64,
    pub duration: Duration,
    /// Most edits per connection (the CI smoke bounds its run by count).
    pub max_edits: Option<usize>,
    /// How long to wait after the edits for the last acknowledgements.
    pub settle: Duration,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub config: LoadConfig,
    pub figures: Figures,
    pub durability: Durability,
    pub relay_before: Memory,
    pub relay_connected: Memory,
    pub relay_settled: Memory,
    /// (RSS with every client connected − RSS before) / connections.
    pub kib_per_connection: f64,
    pub complete: bool,
    pub connect_secs: f64,
    pub edit_secs: f64,
    /// CPU seconds used during the edits by the relay and by the clients.
    pub relay_cpu_secs: f64,
    pub clients_cpu_secs: f64,
}

/// The partnerships of a load run: `docs` of them, `connections / docs` members each.
pub fn groups(config: &LoadConfig) -> Result<Vec<Arc<Group>>> {
    ensure!(
        config.docs > 0 && config.connections.is_multiple_of(config.docs),
        "--connections must be a multiple of --docs"
    );
    let members = config.connections / config.docs;
    ensure!(members >= 2, "each document needs at least two connections");
    (0..config.docs)
        .map(|d| Ok(Arc::new(group(d, d * members..(d + 1) * members)?)))
        .collect()
}

/// Every organisation's edit plan: the same rate, first edits spread over one interval.
fn plan(config: &LoadConfig, org: usize) -> Edits {
    let interval = Duration::from_secs_f64(1.0 / config.rate);
    let spread = (org as f64 * 0.618_033_988_75).fract();
    Edits {
        interval,
        offset: interval.mul_f64(spread),
        count: config.max_edits.unwrap_or(usize::MAX),
        duration: config.duration,
    }
}

/// Runs the load against `relay`, whose replica is in `data`, and stops it.
pub async fn load(relay: RelayHost, data: &Path, config: LoadConfig) -> Result<LoadReport> {
    let groups = groups(&config)?;
    let before = relay.memory()?;
    let outcome = drive(
        &relay,
        &groups,
        |org| Some(plan(&config, org)),
        config.settle,
        ClientMode {
            // Each client applies what it receives at once, as when these
            // figures were first taken (see `relay-fanout --subscriber-window`).
            window_ms: 0,
            warmup: 0,
            hold_for_fanout: false,
        },
    )
    .await;
    relay.stop().await?;
    let outcome = outcome?;
    let docs: Vec<_> = groups.iter().map(|g| g.doc).collect();
    let durability = check_durable(data, &docs, &outcome.logs)?;
    let grown = outcome.connected.rss_kib.saturating_sub(before.rss_kib);
    Ok(LoadReport {
        config,
        figures: figures(&outcome.logs),
        durability,
        relay_before: before,
        relay_connected: outcome.connected,
        relay_settled: outcome.settled,
        kib_per_connection: grown as f64 / config.connections as f64,
        complete: outcome.complete,
        connect_secs: outcome.connect_time.as_secs_f64(),
        edit_secs: outcome.elapsed.as_secs_f64(),
        relay_cpu_secs: outcome.relay_cpu.as_secs_f64(),
        clients_cpu_secs: outcome.clients_cpu.as_secs_f64(),
    })
}

/// `accord-bench relay-load`: the relay in a child process.
pub fn run(config: LoadConfig, json: Option<&Path>) -> Result<()> {
    crate::relay_fanout::check_fd_limit(2 * config.connections + 64)?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("relay");
    create_relay_replica(&data)?;
    let relay = RelayHost::Child(ChildServer::relay(&data, config.connections + 64)?);
    let runtime = crate::relay_run::client_runtime()?;
    eprintln!(
        "relay-load: {} connections, {} documents, {} edits/s each for {:?}",
        config.connections, config.docs, config.rate, config.duration
    );
    let report = runtime.block_on(load(relay, &data, config))?;
    print(&report);
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn print(r: &LoadReport) {
    let f = &r.figures;
    let d = &r.durability;
    let ms = |us: f64| us / 1_000.0;
    println!(
        "connected {} clients in {:.1} s; edits for {:.1} s (settled: {})",
        r.config.connections, r.connect_secs, r.edit_secs, r.complete
    );
    println!(
        "edits committed {}, acknowledged {}, receipts {}",
        f.committed, f.acked, f.received
    );
    if !f.refusals.is_empty() {
        println!(
            "REFUSED {} time(s), first: {}",
            f.refusals.len(),
            f.refusals[0]
        );
    }
    println!(
        "CPU during the edits: relay {:.1} s, clients {:.1} s ({:.1} s of wall time)",
        r.relay_cpu_secs, r.clients_cpu_secs, r.edit_secs
    );
    println!(
        "edit -> durable ack      p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        ms(f.ack.p50_us),
        ms(f.ack.p99_us),
        ms(f.ack.max_us)
    );
    for (name, l) in [
        ("fan-out, frame read  ", &f.fanout_arrival),
        ("fan-out, applied     ", &f.fanout_applied),
    ] {
        println!(
            "{name}   p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            ms(l.p50_us),
            ms(l.p99_us),
            ms(l.max_us)
        );
    }
    println!(
        "relay RSS: {} KiB before, {} KiB connected, {} KiB at the end (peak {} KiB); {:.1} KiB per connection",
        r.relay_before.rss_kib,
        r.relay_connected.rss_kib,
        r.relay_settled.rss_kib,
        r.relay_settled.hwm_kib,
        r.kib_per_connection
    );
    println!(
        "durability: {} acknowledged, {} stored in the relay's replica, {} lost, {} never acknowledged",
        d.acknowledged, d.stored, d.lost, d.unacknowledged
    );
}
