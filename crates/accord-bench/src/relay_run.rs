//! One run of clients against a relay: connect every partnership's creator
//! (the relay accepts a partnership only from its creator), then every
//! other member, wait until all are in sync, start the edits, wait until
//! every edit is acknowledged and received (or a deadline passes), stop.
//! Then the figures, from the clients' logs, and the check that the
//! relay's replica holds every acknowledged edit.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord_model::DocId;
use accord_store::Replica;
use anyhow::{Context, Result, bail};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::relay_client::{
    ClientLog, ClientMode, Counts, EDIT_ID_BASE, Edits, Fanout, Group, Run, run_client,
};
use crate::servers::{Memory, RelayHost, cpu_of, relay_key};
use crate::stats::{Latency, nanos};

/// Clients handshaking with the relay at once while connecting.
const DIALING: usize = 64;
/// How long connecting every client may take.
const CONNECT_DEADLINE: Duration = Duration::from_secs(300);

/// The load generator's runtime: one worker thread, so that on a small
/// machine the server under test (a child process) keeps a core of its own,
/// the relay and the bare baseline alike.
pub fn client_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    pub logs: Vec<ClientLog>,
    /// The relay's memory with every client connected and in sync, before any edit.
    pub connected: Memory,
    /// The relay's memory when the run settled.
    pub settled: Memory,
    /// Whether every edit was acknowledged and received before the deadline.
    pub complete: bool,
    /// From the start signal until the run settled.
    pub elapsed: Duration,
    pub connect_time: Duration,
    /// CPU time used during the edits by the relay and by this process (the
    /// clients), to tell whose work the latency waited on.
    pub relay_cpu: Duration,
    pub clients_cpu: Duration,
    /// Fan-outs ended before every receiver read the edit (see
    /// `relay_client::Counts::fanouts_abandoned`).
    pub fanouts_abandoned: u64,
    /// Times a subscriber held its engine work for a fan-out.
    pub fanout_holds: u64,
}

/// Runs `groups`' members against the relay; `edits(org)` says whether and
/// how an organisation edits. `settle` bounds the wait after the edits.
pub async fn drive(
    relay: &RelayHost,
    groups: &[Arc<Group>],
    edits: impl Fn(usize) -> Option<Edits>,
    settle: Duration,
    mode: ClientMode,
) -> Result<Outcome> {
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    let (start_tx, start) = watch::channel(false);
    let (stop_tx, stop) = watch::channel(false);
    let run = Arc::new(Run {
        url: format!("ws://{}/sync", relay.addr()?),
        relay: relay_key(),
        epoch: Instant::now(),
        ready: ready_tx,
        start,
        stop,
        counts: Counts::default(),
        mode,
        fanout: Fanout::new(),
    });
    let dialing = Arc::new(Semaphore::new(DIALING));
    let mut clients = JoinSet::new();
    let began = Instant::now();
    // Creators first: the relay hosts a partnership once its creator has sent it.
    for round in [true, false] {
        let mut expected = 0;
        for group in groups {
            let members = group.members.iter().enumerate();
            let orgs = members
                .filter(|(i, _)| (*i == 0) == round)
                .map(|(_, org)| *org);
            for org in orgs {
                let permit = Arc::clone(&dialing).acquire_owned().await?;
                let task = run_client(org, Arc::clone(group), edits(org), Arc::clone(&run), permit);
                clients.spawn(task);
                expected += 1;
            }
        }
        wait_ready(&mut ready, &mut clients, expected).await?;
    }
    let connect_time = began.elapsed();
    let writers = groups
        .iter()
        .flat_map(|g| g.members.iter())
        .filter(|org| edits(**org).is_some())
        .count() as u64;
    let connected = relay.memory()?;
    let cpu_before = (relay.cpu()?, cpu_of("self")?);
    let started = Instant::now();
    start_tx.send(true)?;
    let complete = wait_settled(&run.counts, writers, &mut clients, settle).await?;
    let elapsed = started.elapsed();
    let settled = relay.memory()?;
    let relay_cpu = relay.cpu()?.saturating_sub(cpu_before.0);
    let clients_cpu = cpu_of("self")?.saturating_sub(cpu_before.1);
    stop_tx.send(true)?;
    let mut logs = Vec::new();
    while let Some(joined) = clients.join_next().await {
        logs.push(joined??);
    }
    Ok(Outcome {
        logs,
        connected,
        settled,
        complete,
        elapsed,
        connect_time,
        relay_cpu,
        clients_cpu,
        fanouts_abandoned: Counts::get(&run.counts.fanouts_abandoned),
        fanout_holds: Counts::get(&run.counts.fanout_holds),
    })
}

/// Waits for `expected` clients to report in sync; a client that fails meanwhile fails the run.
async fn wait_ready(
    ready: &mut mpsc::UnboundedReceiver<usize>,
    clients: &mut JoinSet<Result<ClientLog>>,
    expected: usize,
) -> Result<()> {
    let deadline = tokio::time::sleep(CONNECT_DEADLINE);
    tokio::pin!(deadline);
    let mut count = 0;
    while count < expected {
        tokio::select! {
            org = ready.recv() => {
                org.context("every client stopped")?;
                count += 1;
            }
            Some(joined) = clients.join_next() => {
                joined??;
                bail!("a client stopped before the run started");
            }
            () = &mut deadline => bail!("only {count} of {expected} clients were in sync after {CONNECT_DEADLINE:?}"),
        }
    }
    Ok(())
}

/// Waits until every writer is done and every edit is acknowledged and
/// received, or `settle` after the writers are done. Returns whether the run completed.
async fn wait_settled(
    counts: &Counts,
    writers: u64,
    clients: &mut JoinSet<Result<ClientLog>>,
    settle: Duration,
) -> Result<bool> {
    let mut deadline = None;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = poll.tick() => {}
            Some(joined) = clients.join_next() => {
                joined??;
                bail!("a client stopped during the run");
            }
        }
        let done = Counts::get(&counts.writers_done) >= writers;
        let committed = Counts::get(&counts.committed);
        let settled = done
            && Counts::get(&counts.acked) == committed
            && Counts::get(&counts.received) == Counts::get(&counts.expected);
        if settled {
            return Ok(true);
        }
        if done {
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + settle);
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }
}

/// Latencies over every client's log.
#[derive(Debug, Default, serde::Serialize)]
pub struct Figures {
    pub committed: usize,
    pub acked: usize,
    pub received: usize,
    /// Changes refused by a client's engine or by the relay (each with its reason).
    pub refusals: Vec<String>,
    /// Edit committed by its writer → the relay's frame naming it arrived.
    pub ack: Latency,
    /// Edit committed → the frame carrying it read by another member.
    pub fanout_arrival: Latency,
    /// Edit committed → verified and applied by another member's engine.
    pub fanout_applied: Latency,
    /// The writer's frames written to its socket → another member reading
    /// the relay's frame carrying the change: the span a bare broadcast's
    /// latency covers (from its publisher's send to its subscriber's read).
    pub fanout_from_send: Latency,
}

pub fn figures(logs: &[ClientLog]) -> Figures {
    let commits: HashMap<u64, Instant> = logs.iter().flat_map(|l| l.commits.clone()).collect();
    let since = |id: u64, at: Instant| commits.get(&id).map(|c| nanos(at.duration_since(*c)));
    let mut ack: Vec<u64> = logs
        .iter()
        .flat_map(|l| l.acks.iter())
        .filter_map(|(id, at)| since(*id, *at))
        .collect();
    let received = || logs.iter().flat_map(|l| l.received.iter());
    let mut arrival: Vec<u64> = received().filter_map(|(id, a, _)| since(*id, *a)).collect();
    let mut applied: Vec<u64> = received().filter_map(|(id, _, a)| since(*id, *a)).collect();
    let sent: HashMap<u64, Instant> = logs.iter().flat_map(|l| l.sent.clone()).collect();
    let mut from_send: Vec<u64> = received()
        .filter_map(|(id, a, _)| sent.get(id).map(|s| nanos(a.saturating_duration_since(*s))))
        .collect();
    if std::env::var_os("ACCORD_BENCH_PER_EDIT").is_some() {
        print_per_edit(logs, &since);
    }
    Figures {
        committed: commits.len(),
        acked: ack.len(),
        received: applied.len(),
        refusals: logs.iter().flat_map(|l| l.refusals.clone()).collect(),
        ack: Latency::of(&mut ack),
        fanout_arrival: Latency::of(&mut arrival),
        fanout_applied: Latency::of(&mut applied),
        fanout_from_send: Latency::of(&mut from_send),
    }
}

/// Diagnostic (`ACCORD_BENCH_PER_EDIT=1`): each edit's arrival latency
/// across subscribers (min, median, max, in ms), to tell a few slow edits
/// from a tail spread over all of them.
fn print_per_edit(logs: &[ClientLog], since: &dyn Fn(u64, Instant) -> Option<u64>) {
    let mut by_edit: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for (id, at, _) in logs.iter().flat_map(|l| l.received.iter()) {
        if let Some(ns) = since(*id, *at) {
            by_edit.entry(*id).or_default().push(ns);
        }
    }
    for (id, mut ns) in by_edit {
        ns.sort_unstable();
        let ms = |v: u64| v as f64 / 1e6;
        eprintln!(
            "  edit {id}: min {:.1} med {:.1} max {:.1} ms over {}",
            ms(ns[0]),
            ms(ns[ns.len() / 2]),
            ms(ns[ns.len() - 1]),
            ns.len()
        );
    }
}

/// Every acknowledged edit, and how many of them the relay's replica lacks.
#[derive(Debug, Default, serde::Serialize)]
pub struct Durability {
    pub acknowledged: usize,
    pub stored: usize,
    pub lost: usize,
    /// Edits made but never acknowledged (the run did not settle).
    pub unacknowledged: usize,
}

/// Opens the relay's replica in `data` (after the relay stopped) and checks
/// that every edit acknowledged in `logs` is stored in its document.
pub fn check_durable(data: &Path, docs: &[DocId], logs: &[ClientLog]) -> Result<Durability> {
    let replica = Replica::open(data)?;
    let mut stored = BTreeSet::new();
    for doc in docs {
        let record = replica
            .load_document(doc.as_bytes())?
            .with_context(|| format!("the relay does not hold {doc}"))?;
        let mut loaded = accord_model::load_stored(&record.snapshot, &record.changes)?;
        let changes = loaded.get_changes(&[]);
        let ids = changes
            .iter()
            .filter_map(|c| u64::try_from(c.timestamp()).ok());
        stored.extend(ids.filter(|id| *id >= EDIT_ID_BASE));
    }
    let acked: Vec<u64> = logs
        .iter()
        .flat_map(|l| l.acks.iter().map(|(id, _)| *id))
        .collect();
    let committed: usize = logs.iter().map(|l| l.commits.len()).sum();
    Ok(Durability {
        acknowledged: acked.len(),
        stored: stored.len(),
        lost: acked.iter().filter(|id| !stored.contains(id)).count(),
        unacknowledged: committed - acked.len(),
    })
}
