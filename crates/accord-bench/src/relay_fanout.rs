//! `relay-fanout`: one writer, N subscribers of one document, through the
//! real relay (persistence and verification on), against a bare
//! tokio-tungstenite broadcast of the same number of messages of the same
//! size, at the same rate, measured in the same run.
//!
//! Latency is from the publisher's send to each subscriber reading the
//! frame off its socket, for both (ours: the writer's engine's frames
//! carrying the edit written to its socket; the writer's own engine work
//! before that is a client cost, reported apart as "from commit"); for ours,
//! also to the subscriber's engine having verified and applied the change.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::relay_client::{ClientLog, ClientMode, EDIT_ID_BASE, Edits, group};
use crate::relay_run::{Figures, Outcome, drive, figures};
use crate::servers::{ChildServer, Memory, RelayHost, create_relay_replica, start_relay};
use crate::stats::{Latency, nanos};

/// What the issue asks: p99 at most this many times a bare broadcast's.
const MAX_RATIO: f64 = 1.5;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct FanoutConfig {
    pub edits: usize,
    /// Edits per second by the writer.
    pub rate: f64,
    /// Leading edits reported apart as `cold`, not in the steady-state figures.
    pub warmup: usize,
    /// Each subscriber's coalescing window (see `relay_client::ClientMode::window_ms`).
    pub subscriber_window_ms: u64,
    /// See `relay_client::Fanout`.
    pub hold_for_fanout: bool,
}

#[derive(Debug, Serialize)]
pub struct FanoutRow {
    pub subscribers: usize,
    /// Steady state: every edit after the warm-up.
    pub ours: Figures,
    /// The warm-up edits alone (frame read), cold caches included.
    pub cold: Latency,
    pub bare: Latency,
    /// Bytes each subscriber received per edit (the bare payload size).
    pub bytes_per_edit: usize,
    pub relay_connected: Memory,
    pub relay_settled: Memory,
    pub complete: bool,
    /// Ours p99 (writer's send → frame read, as bare is timed) / bare p99.
    pub ratio_p99: f64,
    /// Times a subscriber held its engine work for a fan-out (see
    /// `relay_client::Fanout`); 0 with `--inline-engines`.
    pub fanout_holds: u64,
    /// Whether every subscriber had the warm-up edits before the first
    /// timed edit left (see `relay_client::ClientMode::warmup`).
    pub warm_before_timed: bool,
}

/// Fails early, with the fix, when this process may not open `needed` files.
pub fn check_fd_limit(needed: usize) -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok())
        .context("no open-files limit in /proc/self/limits")?;
    if soft < needed {
        bail!(
            "this run needs about {needed} open files but the limit is {soft}: raise it with `ulimit -n {needed}`"
        );
    }
    Ok(())
}

pub fn run(subscribers: &[usize], config: FanoutConfig, json: Option<&Path>) -> Result<()> {
    let most = subscribers.iter().copied().max().unwrap_or(0);
    check_fd_limit(2 * most + 64)?;
    let runtime = crate::relay_run::client_runtime()?;
    let mut rows = Vec::new();
    for &n in subscribers {
        eprintln!(
            "relay-fanout: {n} subscribers, {} edits at {}/s",
            config.edits, config.rate
        );
        let ours = runtime.block_on(ours(n, config, RelayPlace::Child))?;
        let payload = ours.bytes_per_edit.max(16);
        let bare = runtime.block_on(bare(n, config, payload))?;
        let row = FanoutRow {
            subscribers: n,
            ratio_p99: ours.figures.fanout_from_send.p99_us / bare.p99_us,
            ours: ours.figures,
            cold: ours.cold,
            bare,
            bytes_per_edit: payload,
            relay_connected: ours.connected,
            relay_settled: ours.settled,
            complete: ours.complete,
            fanout_holds: ours.holds,
            warm_before_timed: ours.warm_before_timed,
        };
        print_row(&row);
        rows.push(row);
    }
    print_table(&rows);
    if let Some(path) = json {
        let out = serde_json::json!({ "config": config, "rows": rows });
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Where the relay runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RelayPlace {
    /// A child process (the benchmark): its CPU and memory are its own.
    Child,
    /// This process (the CI smoke).
    #[cfg_attr(not(test), allow(dead_code))]
    InProcess,
}

/// Our side of one subscriber count, and the payload the bare run must match.
pub(crate) struct Ours {
    pub(crate) figures: Figures,
    cold: Latency,
    pub(crate) complete: bool,
    /// Bytes each subscriber received per edit.
    bytes_per_edit: usize,
    connected: Memory,
    settled: Memory,
    /// Times a subscriber held its engine work for a fan-out.
    pub(crate) holds: u64,
    /// Whether every subscriber had the warm-up edits before the writer's
    /// first timed edit left (see `ClientMode::warmup`).
    pub(crate) warm_before_timed: bool,
}

/// Through the relay: org 0 creates the partnership and writes, orgs 1..=n subscribe.
pub(crate) async fn ours(n: usize, config: FanoutConfig, place: RelayPlace) -> Result<Ours> {
    let group = Arc::new(group(0, 0..n + 1)?);
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("relay");
    create_relay_replica(&data)?;
    let max_connections = (n + 64).max(1024);
    let relay = match place {
        RelayPlace::Child => RelayHost::Child(ChildServer::relay(&data, max_connections)?),
        RelayPlace::InProcess => RelayHost::InProcess(start_relay(&data, max_connections).await?),
    };
    let edits = Edits {
        interval: Duration::from_secs_f64(1.0 / config.rate),
        offset: Duration::ZERO,
        count: config.edits,
        duration: Duration::MAX,
    };
    let plan = |org: usize| (org == 0).then_some(edits);
    let outcome = drive(
        &relay,
        &[group],
        plan,
        Duration::from_secs(60),
        ClientMode {
            window_ms: config.subscriber_window_ms,
            warmup: config.warmup,
            hold_for_fanout: config.hold_for_fanout,
        },
    )
    .await;
    relay.stop().await?;
    let mut outcome = outcome?;
    let timed = timed_sends(&outcome, config.warmup);
    let traffic = steady_traffic(&outcome, n, &timed);
    let warm_before_timed = warm_before_timed(&outcome, config.warmup, &timed);
    print_clients(config, &outcome, &traffic, warm_before_timed);
    let cold = take_warmup(&mut outcome.logs, config.warmup);
    Ok(Ours {
        cold,
        figures: figures(&outcome.logs),
        complete: outcome.complete,
        bytes_per_edit: traffic.bytes_per_edit,
        warm_before_timed,
        connected: outcome.connected,
        settled: outcome.settled,
        holds: outcome.fanout_holds,
    })
}

/// Removes the writer's first `warmup` edits from the subscribers' logs and
/// returns their arrival latencies. Edit ids count from 1 after the writer's
/// base (see `relay_client::EDIT_ID_BASE`).
fn take_warmup(logs: &mut [ClientLog], warmup: usize) -> Latency {
    let is_warmup = |id: u64| id % EDIT_ID_BASE <= warmup as u64;
    let commits: std::collections::HashMap<u64, Instant> =
        logs.iter().flat_map(|l| l.commits.clone()).collect();
    let mut cold = Vec::new();
    for log in logs.iter_mut() {
        log.received.retain(|(id, at, _)| {
            if !is_warmup(*id) {
                return true;
            }
            if let Some(c) = commits.get(id) {
                cold.push(nanos(at.duration_since(*c)));
            }
            false
        });
    }
    Latency::of(&mut cold)
}

/// What a subscriber read per edit once warm.
struct Traffic {
    bytes_per_edit: usize,
    frames_per_edit: f64,
}

/// What the subscribers read from the writer's send of its first edit past
/// the warm-up to the end, per subscriber and per edit in that span. The
/// warm-up's initial sync (the MOU, and with 1,000 members a roster of
/// about 80 KB) is left out: it is not an edit's cost, and the bare
/// baseline sends each of its messages at this size.
fn steady_traffic(outcome: &Outcome, n: usize, timed_sends: &[Instant]) -> Traffic {
    let Some(since) = timed_sends.iter().min().copied() else {
        return Traffic {
            bytes_per_edit: 0,
            frames_per_edit: 0.0,
        };
    };
    let reads: Vec<usize> = outcome
        .logs
        .iter()
        .filter(|l| l.org != 0)
        .flat_map(|l| &l.reads)
        .filter(|(at, _)| *at >= since)
        .map(|(_, len)| *len)
        .collect();
    let per = (n * timed_sends.len()).max(1);
    Traffic {
        bytes_per_edit: reads.iter().sum::<usize>() / per,
        frames_per_edit: reads.len() as f64 / per as f64,
    }
}

/// When the writer sent each edit past the warm-up.
fn timed_sends(outcome: &Outcome, warmup: usize) -> Vec<Instant> {
    outcome
        .logs
        .iter()
        .filter(|l| l.org == 0)
        .flat_map(|l| &l.sent)
        .filter(|(id, _)| id % EDIT_ID_BASE > warmup as u64)
        .map(|(_, at)| *at)
        .collect()
}

/// Whether every subscriber had applied every warm-up edit before the
/// writer sent its first edit past them (see `ClientMode::warmup`).
fn warm_before_timed(outcome: &Outcome, warmup: usize, timed_sends: &[Instant]) -> bool {
    let Some(first) = timed_sends.iter().min().copied() else {
        return true;
    };
    outcome.logs.iter().filter(|l| l.org != 0).all(|l| {
        let warm: Vec<Instant> = l
            .received
            .iter()
            .filter(|(id, _, _)| id % EDIT_ID_BASE <= warmup as u64)
            .map(|(_, _, applied)| *applied)
            .collect();
        warm.len() == warmup && warm.iter().all(|applied| *applied <= first)
    })
}

/// What the clients did and cost: the context needed to read the latencies.
fn print_clients(config: FanoutConfig, outcome: &Outcome, traffic: &Traffic, warm: bool) {
    let per_client = |f: fn(&ClientLog) -> usize| {
        outcome.logs.iter().map(f).sum::<usize>() as f64 / outcome.logs.len() as f64
    };
    eprintln!(
        "  per client: {:.1} MOU loads, {:.1} roster loads; every subscriber warm before the first timed edit: {warm}; per subscriber per edit past the warm-up: {:.2} frames, {} B; edits {:.1} s, CPU relay {:.1} s, clients {:.1} s",
        per_client(|l| l.mou_loads),
        per_client(|l| l.roster_loads),
        traffic.frames_per_edit,
        traffic.bytes_per_edit,
        outcome.elapsed.as_secs_f64(),
        outcome.relay_cpu.as_secs_f64(),
        outcome.clients_cpu.as_secs_f64()
    );
    if config.hold_for_fanout {
        eprintln!(
            "  subscribers held their engine work {} times while an edit was fanned out; fan-outs abandoned before every read: {}",
            outcome.fanout_holds, outcome.fanouts_abandoned
        );
    }
}

/// The baseline: a bare broadcast server, one publisher, `n` subscribers.
async fn bare(n: usize, config: FanoutConfig, payload: usize) -> Result<Latency> {
    let server = ChildServer::bare()?;
    let url = format!("ws://{}", server.addr);
    let (stop_tx, stop) = watch::channel(false);
    let dialing = Arc::new(Semaphore::new(64));
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
    let mut subs = JoinSet::new();
    for _ in 0..n {
        let permit = Arc::clone(&dialing).acquire_owned().await?;
        let (url, ready, stop) = (url.clone(), ready_tx.clone(), stop.clone());
        subs.spawn(async move {
            let mut ws = subscribe(&url).await?;
            drop(permit);
            let _ = ready.send(());
            receive(&mut ws, config.edits, stop).await
        });
    }
    for _ in 0..n {
        ready.recv().await.context("a bare subscriber failed")?;
    }
    let sent = publish(&url, config, payload).await?;
    let results = tokio::time::timeout(Duration::from_secs(60), collect(&mut subs)).await;
    let _ = stop_tx.send(true);
    let received = match results {
        Ok(received) => received?,
        Err(_) => bail!("the bare subscribers did not receive every message within 60 s"),
    };
    tokio::task::spawn_blocking(move || server.stop()).await??;
    let mut latencies: Vec<u64> = received
        .into_iter()
        .flatten()
        .filter(|(id, _)| *id >= config.warmup)
        .filter_map(|(id, at)| sent.get(id).map(|s| nanos(at.duration_since(*s))))
        .collect();
    Ok(Latency::of(&mut latencies))
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe(url: &str) -> Result<Socket> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.send(Message::Text("sub".into())).await?;
    match ws.next().await {
        Some(Ok(Message::Text(ok))) if ok.as_str() == "ok" => Ok(ws),
        other => bail!("the bare server did not subscribe us: {other:?}"),
    }
}

/// Reads `count` messages; each starts with its index (8 bytes, big-endian).
async fn receive(
    ws: &mut Socket,
    count: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<(usize, Instant)>> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let message = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => break,
        };
        let Some(Ok(Message::Binary(bytes))) = message else {
            bail!("the bare server closed or sent something else");
        };
        let at = Instant::now();
        let index: [u8; 8] = bytes.get(..8).context("a short message")?.try_into()?;
        got.push((u64::from_be_bytes(index) as usize, at));
    }
    Ok(got)
}

/// Sends `config.edits` messages of `payload` bytes at `config.rate`; returns when each was sent.
async fn publish(url: &str, config: FanoutConfig, payload: usize) -> Result<Vec<Instant>> {
    // Without Nagle's algorithm, as our clients dial.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    ws.send(Message::Text("pub".into())).await?;
    let mut timer = tokio::time::interval(Duration::from_secs_f64(1.0 / config.rate));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = Vec::with_capacity(config.edits);
    for i in 0..config.edits {
        timer.tick().await;
        let mut bytes = vec![0x5a; payload];
        bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
        sent.push(Instant::now());
        ws.send(Message::Binary(bytes.into())).await?;
    }
    let _ = ws.close(None).await;
    Ok(sent)
}

async fn collect(
    subs: &mut JoinSet<Result<Vec<(usize, Instant)>>>,
) -> Result<Vec<Vec<(usize, Instant)>>> {
    let mut all = Vec::new();
    while let Some(joined) = subs.join_next().await {
        all.push(joined??);
    }
    Ok(all)
}

fn ms(us: f64) -> f64 {
    us / 1_000.0
}

fn print_row(r: &FanoutRow) {
    eprintln!(
        "  {} subscribers: ours from send p50 {:.2} / p99 {:.2} ms; from commit p50 {:.2} / p99 {:.2} ms (applied p99 {:.2} ms; warm-up edits from commit p99 {:.2} ms), bare p50 {:.2} / p99 {:.2} ms, {} B per edit, writer ack p99 {:.2} ms, relay RSS {} KiB connected, settled: {}, refused: {}",
        r.subscribers,
        ms(r.ours.fanout_from_send.p50_us),
        ms(r.ours.fanout_from_send.p99_us),
        ms(r.ours.fanout_arrival.p50_us),
        ms(r.ours.fanout_arrival.p99_us),
        ms(r.ours.fanout_applied.p99_us),
        ms(r.cold.p99_us),
        ms(r.bare.p50_us),
        ms(r.bare.p99_us),
        r.bytes_per_edit,
        ms(r.ours.ack.p99_us),
        r.relay_connected.rss_kib,
        r.complete,
        r.ours.refusals.len()
    );
}

fn print_table(rows: &[FanoutRow]) {
    println!();
    println!(
        "| subscribers | ours p50 | ours p99 | ours max | from commit p99 | applied p99 | bare p50 | bare p99 | p50 ratio | p99 ratio | target | result |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let a = &r.ours.fanout_from_send;
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2}x | {:.2}x | <= {MAX_RATIO}x (p99) | {} |",
            r.subscribers,
            ms(a.p50_us),
            ms(a.p99_us),
            ms(a.max_us),
            ms(r.ours.fanout_arrival.p99_us),
            ms(r.ours.fanout_applied.p99_us),
            ms(r.bare.p50_us),
            ms(r.bare.p99_us),
            a.p50_us / r.bare.p50_us,
            r.ratio_p99,
            if r.ratio_p99 <= MAX_RATIO && r.complete {
                "PASS"
            } else {
                "FAIL"
            }
        );
    }
}
