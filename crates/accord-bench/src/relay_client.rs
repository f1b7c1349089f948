//! The load generator's clients for the relay benchmarks.
//!
//! Each client is one organisation: a real `accord_sync::Engine` (role
//! node, verification on, as `accord serve` runs it) with its own in-memory
//! store (`sync_net::Store`), driven over its own tokio-tungstenite
//! websocket to the relay. That is the cheapest client that still does the
//! whole protocol: the ed25519 handshake per organisation, attestations
//! signed per edit, every received change verified before it is applied.
//! (`accord-node`'s `Node` would add a thread and a redb file per client.)
//!
//! Every partnership ([`Group`]) has one MOU; its roster lists exactly the
//! organisations that connect for it, all decision makers. An edit is one
//! character typed into the MOU's `purpose`, one Automerge change whose
//! commit time carries the edit's id, so any receiver can tell which edit
//! a change is without shared state.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accord_identity::{OrgKey, OrgSecret};
use accord_model::automerge::{AutoCommit, Change, ChangeHash, ObjId, sync::Message};
use accord_model::{Agreement, DocId, DocKind, Role, Roster, new_document_actor};
use accord_sync::wire::Frame;
use accord_sync::{ConnId, Event, Input, PeerRole, StorageWrite};
use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::sync_net::{Peer, Store, Stored, doc_id, new_mou, purpose_obj};

/// Commit times at or above this are edit ids: `(org + 1) * EDIT_ID_BASE + n`.
pub const EDIT_ID_BASE: u64 = 1_000_000;

pub fn edit_id(org: usize, n: usize) -> u64 {
    (org as u64 + 1) * EDIT_ID_BASE + n as u64
}

fn org_of(edit: u64) -> usize {
    (edit / EDIT_ID_BASE - 1) as usize
}

/// The key seed of organisation number `org`.
pub fn org_seed(org: usize) -> [u8; 32] {
    let mut seed = [0x6c; 32];
    seed[..8].copy_from_slice(&(org as u64).to_be_bytes());
    seed
}

/// One partnership with one MOU, as its creator (`members[0]`) stores them.
#[derive(Debug)]
pub struct Group {
    pub doc: DocId,
    pub members: Vec<usize>,
    pub roster_heads: Vec<ChangeHash>,
    /// The roster and the MOU, with the creator's attestations.
    pub stored: BTreeMap<DocId, Stored>,
}

/// Partnership number `index`, whose members are the organisations `orgs`.
pub fn group(index: usize, orgs: Range<usize>) -> Result<Group> {
    let creator = OrgSecret::from_seed(org_seed(orgs.start));
    let actor = new_document_actor(&creator, [0; 8]);
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&(index as u64).to_be_bytes());
    let name = format!("Load {index}");
    let (mut roster, _) = Roster::create(&name, &creator.public(), "Org 0", nonce, actor, 1)?;
    for org in orgs.clone().skip(1) {
        let key = OrgSecret::from_seed(org_seed(org)).public();
        roster.add_member(&key, &format!("Org {org}"), Role::DecisionMaker, 1)?;
    }
    let doc = doc_id(index as u32);
    roster.add_document(doc, DocKind::Mou, "MOU")?;
    roster.commit("members and the MOU", 2);
    let partnership = roster.id();
    let mut mou = new_mou(&roster, doc, org_seed(orgs.start), 0)?;
    let mut roster_doc = roster.doc().clone();
    let mut store = Store {
        signer: Some(org_seed(orgs.start)),
        ..Store::default()
    };
    store.put(doc, partnership, "mou", mou.doc_mut());
    store.put(
        partnership.roster_doc(),
        partnership,
        "roster",
        &mut roster_doc,
    );
    Ok(Group {
        doc,
        members: orgs.collect(),
        roster_heads: roster_doc.get_heads(),
        stored: store.docs,
    })
}

/// How a client edits once the run starts: one edit every `interval`
/// (the first after `offset`) until it has made `count` or `duration` has passed.
#[derive(Clone, Copy, Debug)]
pub struct Edits {
    pub interval: Duration,
    pub offset: Duration,
    pub count: usize,
    pub duration: Duration,
}

/// Live totals over all clients, for deciding when a run has settled.
#[derive(Debug, Default)]
pub struct Counts {
    pub committed: AtomicU64,
    pub acked: AtomicU64,
    pub received: AtomicU64,
    /// Receipts owed: for each edit, one per other member of its partnership.
    pub expected: AtomicU64,
    pub writers_done: AtomicU64,
    /// Fan-outs (see [`Fanout`]) ended before every receiver had read the
    /// edit: held for [`FANOUT_HOLD_LIMIT`], or overtaken by the next edit.
    pub fanouts_abandoned: AtomicU64,
    /// Times a subscriber started holding its engine work for a fan-out.
    pub fanout_holds: AtomicU64,
}

impl Counts {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// How long a subscriber holds its engine work back for the other
/// receivers of an edit (see [`Fanout`]). Far above a fan-out's few
/// milliseconds; reached only if a receiver never gets the edit ahead.
pub const FANOUT_HOLD_LIMIT: Duration = Duration::from_secs(2);

/// How long the writer waits for every other member to receive its
/// warm-up edits: at 1,000 members the initial sync took the clients' one
/// thread about 40 s.
const WARMUP_WAIT_LIMIT: Duration = Duration::from_secs(300);

/// How the clients of one run work.
#[derive(Clone, Copy, Debug)]
pub struct ClientMode {
    /// Each client's coalescing window (`EngineConfig::coalesce_window_ms`):
    /// a node's (`accord_node::NODE_COALESCE_WINDOW_MS`) holds received
    /// changes that long before applying them; 0 applies each at once.
    pub window_ms: u64,
    /// The writer's first edits, which find the document cold on the relay
    /// and on every subscriber (the initial sync of the MOU and, at 1,000
    /// members, of an 80 KB roster). The writer makes its next edit only
    /// once every other member has received these, so the timed edits never
    /// queue behind the initial sync: at 1,000 subscribers it took the
    /// clients' one thread up to 40 s, and timed edits sent meanwhile
    /// measured that backlog, not the relay.
    pub warmup: usize,
    /// Subscribers hold their engine work while one of the writer's edits
    /// after the warm-up is being fanned out (see [`Fanout`]). The warm-up
    /// edits are not held: some subscribers get them only after an
    /// exchange with the relay that holding would stall.
    pub hold_for_fanout: bool,
}

/// The edit being fanned out: sent by the writer, not yet read off the
/// socket by every receiver.
///
/// Every client shares one thread, so a subscriber's engine work on a frame
/// (an attestation's signature check, a change held for its window) delays
/// the reads of every subscriber whose frames the relay writes after it.
/// The relay sends a change's attestation just before the change, and at
/// 100 subscribers each one's check of the attestation ran before the
/// next subscriber read the change: about 2 ms per edit, counted in the
/// late subscribers' latency. The bench's own parsing of each change (to
/// tell which edit it is) did the same. The bare broadcast's subscribers
/// do no such work, and real subscribers each have their own machine. With
/// [`ClientMode::hold_for_fanout`], subscribers queue what they read while
/// an edit is being fanned out, and their engines handle it, in order,
/// once every receiver has read a change: reads are timed without the
/// other subscribers' work, and every frame is still verified and applied.
#[derive(Debug)]
pub struct Fanout {
    flight: Mutex<Option<Flight>>,
    /// Bumped whenever a fan-out ends.
    ended: watch::Sender<u64>,
}

#[derive(Debug)]
struct Flight {
    edit: u64,
    /// Receivers that have yet to read a change since the edit was sent.
    unread: u64,
}

impl Fanout {
    pub fn new() -> Fanout {
        Fanout {
            flight: Mutex::new(None),
            ended: watch::channel(0).0,
        }
    }

    fn flight(&self) -> std::sync::MutexGuard<'_, Option<Flight>> {
        self.flight.lock().expect("the fan-out book")
    }

    /// The writer is sending `edit` to `receivers` subscribers. Edits come
    /// half a second apart and are fanned out in milliseconds, so one that
    /// is still in flight is abandoned (and counted by the caller).
    fn sent(&self, edit: u64, receivers: u64) -> bool {
        self.flight()
            .replace(Flight {
                edit,
                unread: receivers,
            })
            .is_some()
    }

    /// A receiver read a frame carrying changes; `counted` is the edit it
    /// last counted towards, so that each receiver counts once per edit.
    fn read_changes(&self, counted: &mut Option<u64>) {
        let mut flight = self.flight();
        let Some(f) = flight.as_mut() else { return };
        if *counted == Some(f.edit) {
            return;
        }
        *counted = Some(f.edit);
        f.unread = f.unread.saturating_sub(1);
        if f.unread == 0 {
            *flight = None;
            self.ended.send_modify(|n| *n += 1);
        }
    }

    fn busy(&self) -> bool {
        self.flight().is_some()
    }

    /// Ends the fan-out in progress (see [`FANOUT_HOLD_LIMIT`]).
    fn abandon(&self) {
        *self.flight() = None;
        self.ended.send_modify(|n| *n += 1);
    }
}

impl Default for Fanout {
    fn default() -> Fanout {
        Fanout::new()
    }
}

/// What every client of one run shares.
#[derive(Debug)]
pub struct Run {
    pub url: String,
    pub relay: OrgKey,
    pub epoch: Instant,
    pub ready: mpsc::UnboundedSender<usize>,
    pub start: watch::Receiver<bool>,
    pub stop: watch::Receiver<bool>,
    pub counts: Counts,
    pub mode: ClientMode,
    pub fanout: Fanout,
}

/// What one client saw, for the figures computed after the run.
#[derive(Debug, Default)]
pub struct ClientLog {
    pub org: usize,
    /// Each edit made, with the instant its change was committed locally.
    pub commits: Vec<(u64, Instant)>,
    /// Each edit made, with the instant the writer's engine's frames carrying
    /// it were written to the socket (what the bare baseline times from).
    pub sent: Vec<(u64, Instant)>,
    /// Each edit acknowledged, with the instant the relay's frame arrived.
    pub acks: Vec<(u64, Instant)>,
    /// Each edit of another member received: when the frame carrying it was
    /// read from the socket, and when the engine had verified and applied it.
    pub received: Vec<(u64, Instant, Instant)>,
    /// Each websocket message received after the run started: when it was
    /// read and its size. The fan-out counts only those read after its
    /// first timed edit was sent, so the initial sync of a large roster is
    /// not charged to the edits (nor to the bare payload sized from them).
    pub reads: Vec<(Instant, usize)>,
    /// Why changes were refused, by this client's engine or by the relay.
    pub refusals: Vec<String>,
    /// Times the client's engine loaded the MOU and the roster from its
    /// store (it unloads a document once in sync, as the relay does).
    pub mou_loads: usize,
    pub roster_loads: usize,
}

/// The writing side of a client: its own copy of the MOU, which never
/// merges others' changes (so its changes form one chain), and its edits
/// not yet acknowledged, oldest first.
struct Writer {
    agreement: Agreement,
    text: ObjId,
    plan: Edits,
    made: usize,
    unacked: VecDeque<(ChangeHash, u64)>,
    /// When it made its last warm-up edit and began waiting for every
    /// other member to receive the warm-up (see [`ClientMode::warmup`]).
    warming_since: Option<Instant>,
}

struct Client {
    org: usize,
    peer: Peer,
    conn: ConnId,
    doc: DocId,
    members: u64,
    run: Arc<Run>,
    writer: Option<Writer>,
    /// Held until the first in-sync, to bound how many clients handshake at once.
    dialing: Option<OwnedSemaphorePermit>,
    ready: bool,
    started: Option<Instant>,
    /// When each edit's change was read from the socket, until applied
    /// (with a window, the apply comes later, on a tick).
    arrivals: BTreeMap<u64, Instant>,
    /// Frames read but not yet handed to the engine, with when each was
    /// read: held while an edit is being fanned out (see [`Fanout`]).
    queued: VecDeque<(Vec<u8>, Instant)>,
    /// Since when `queued` has been held.
    holding_since: Option<Instant>,
    /// The last edit this client's reads counted towards in the fan-out.
    counted: Option<u64>,
    log: ClientLog,
}

impl Client {
    fn new(org: usize, group: &Group, edits: Option<Edits>, run: Arc<Run>) -> Result<Client> {
        let window_ms = run.mode.window_ms;
        let mut peer = Peer::new(org_seed(org), PeerRole::Node, window_ms > 0);
        peer.coalesce_window_ms = window_ms;
        peer.store.docs = group.stored.clone();
        peer.restart();
        let writer = edits.map(|plan| writer(org, group, plan)).transpose()?;
        Ok(Client {
            org,
            peer,
            conn: ConnId(0),
            doc: group.doc,
            members: group.members.len() as u64,
            run,
            writer,
            dialing: None,
            ready: false,
            started: None,
            arrivals: BTreeMap::new(),
            queued: VecDeque::new(),
            holding_since: None,
            counted: None,
            log: ClientLog {
                org,
                ..ClientLog::default()
            },
        })
    }

    fn now(&self) -> u64 {
        self.run.epoch.elapsed().as_millis() as u64
    }

    /// Opens the engine's side of the connection; returns the frames to send.
    fn connect(&mut self) -> Result<Vec<Vec<u8>>> {
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let now = self.now();
        let (conn, out) = self
            .peer
            .engine
            .connect(true, Some(self.run.relay), nonce, now);
        self.conn = conn;
        self.execute(out, None)
    }

    /// Queues a frame read off the socket at `arrival` for the engine; with
    /// [`ClientMode::hold_for_fanout`], tells the fan-out whether it
    /// carries changes (which edits they are is worked out later).
    fn read(&mut self, bytes: Vec<u8>, arrival: Instant) {
        if self.started.is_some() {
            self.log.reads.push((arrival, bytes.len()));
        }
        if self.receives_fanout() && carries_changes(&bytes) {
            self.run.fanout.read_changes(&mut self.counted);
        }
        self.queued.push_back((bytes, arrival));
    }

    /// Whether this client is one of the receivers a fan-out waits for:
    /// with [`ClientMode::hold_for_fanout`], every member but the writer.
    fn receives_fanout(&self) -> bool {
        self.run.mode.hold_for_fanout && self.writer.is_none()
    }

    /// Whether the queued frames wait for an edit's fan-out to end (see [`Fanout`]).
    fn holding(&mut self) -> bool {
        if self.receives_fanout() && !self.queued.is_empty() && self.run.fanout.busy() {
            if self.holding_since.is_none() {
                self.holding_since = Some(Instant::now());
                Counts::add(&self.run.counts.fanout_holds, 1);
            }
            return true;
        }
        self.holding_since = None;
        false
    }

    /// When to stop holding whatever happens.
    fn hold_limit(&self) -> Option<tokio::time::Instant> {
        self.holding_since
            .map(|since| (since + FANOUT_HOLD_LIMIT).into())
    }

    /// Stops holding at the limit, and counts it.
    fn stop_holding(&mut self) {
        self.holding_since = None;
        self.run.fanout.abandon();
        Counts::add(&self.run.counts.fanouts_abandoned, 1);
    }

    /// Hands every queued frame to the engine, in order; returns the frames to send.
    fn receive_queued(&mut self) -> Result<Vec<Vec<u8>>> {
        let mut frames = Vec::new();
        while let Some((bytes, arrival)) = self.queued.pop_front() {
            frames.extend(self.receive(bytes, arrival)?);
        }
        Ok(frames)
    }

    fn receive(&mut self, bytes: Vec<u8>, arrival: Instant) -> Result<Vec<Vec<u8>>> {
        if let Some(message) = sync_message(&bytes) {
            self.note_acks(&message, arrival);
            self.note_arrivals(&message, arrival);
        }
        let input = Input::Received {
            conn: self.conn,
            bytes,
        };
        let out = self.peer.engine.handle(input, self.now());
        let mut frames = self.execute(out, Some(arrival))?;
        if self.run.mode.window_ms > 0 {
            // As the node's driver does after each batch of commands.
            let out = self.peer.engine.handle(Input::Flush, self.now());
            frames.extend(self.execute(out, Some(arrival))?);
        }
        Ok(frames)
    }

    /// Time passed: applies what the engine held whose window has passed.
    fn tick(&mut self) -> Result<Vec<Vec<u8>>> {
        let out = self.peer.engine.handle(Input::Tick, self.now());
        self.execute(out, None)
    }

    /// When the engine next has held changes to apply.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        let at = self.peer.engine.next_deadline()?;
        Some((self.run.epoch + Duration::from_millis(at)).into())
    }

    /// Remembers when each edit in a sync message arrived, for when it is applied.
    fn note_arrivals(&mut self, message: &Message, arrival: Instant) {
        for chunk in message.changes.iter() {
            for id in edit_ids(chunk).unwrap_or_default() {
                self.arrivals.entry(id).or_insert(arrival);
            }
        }
    }

    /// Acknowledges every edit up to the newest of ours that the relay's
    /// sync message names among its heads: the relay sends a frame only
    /// after the writes of that round are committed, so heads it advertises
    /// are durable in its replica.
    fn note_acks(&mut self, message: &Message, arrival: Instant) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        let newest = writer
            .unacked
            .iter()
            .rposition(|(hash, _)| message.heads.contains(hash));
        let Some(newest) = newest else { return };
        for (_, id) in writer.unacked.drain(..=newest) {
            self.log.acks.push((id, arrival));
            Counts::add(&self.run.counts.acked, 1);
        }
    }

    /// Makes the next edit, as the workspace would: commit, store durably
    /// with a fresh attestation, then hand the change to the engine.
    fn edit(&mut self) -> Result<(u64, Vec<Vec<u8>>)> {
        let writer = self.writer.as_mut().context("not a writer")?;
        writer.made += 1;
        let id = edit_id(self.org, writer.made);
        writer.agreement.splice_text(&writer.text, 0, 0, "x")?;
        let change = writer
            .agreement
            .commit("", id as i64)
            .context("an edit made no change")?;
        let heads = writer.agreement.doc_mut().get_heads();
        let attestation = self
            .peer
            .store
            .append_local(self.doc, change.bytes.clone(), &heads);
        writer.unacked.push_back((change.hash, id));
        self.log.commits.push((id, Instant::now()));
        Counts::add(&self.run.counts.committed, 1);
        Counts::add(&self.run.counts.expected, self.members - 1);
        let input = Input::LocalChange {
            doc: self.doc,
            change: change.bytes,
            attestation,
        };
        let out = self.peer.engine.handle(input, self.now());
        Ok((id, self.execute(out, None)?))
    }

    /// With [`ClientMode::hold_for_fanout`], tells the subscribers that
    /// edit `id` is about to be sent.
    fn start_fanout(&self, id: u64) {
        if !self.run.mode.hold_for_fanout {
            return;
        }
        let warmup = self.run.mode.warmup as u64;
        if id % EDIT_ID_BASE > warmup && self.run.fanout.sent(id, self.members - 1) {
            Counts::add(&self.run.counts.fanouts_abandoned, 1);
        }
    }

    /// Whether the writer has made its warm-up edits and waits for every
    /// other member to receive them (see [`ClientMode::warmup`]).
    fn warming_up(&mut self) -> Result<bool> {
        let warmup = self.run.mode.warmup;
        let owed = warmup as u64 * (self.members - 1);
        let Some(writer) = self.writer.as_mut() else {
            return Ok(false);
        };
        if warmup == 0 || writer.made != warmup || Counts::get(&self.run.counts.received) >= owed {
            return Ok(false);
        }
        let since = *writer.warming_since.get_or_insert_with(Instant::now);
        anyhow::ensure!(
            since.elapsed() < WARMUP_WAIT_LIMIT,
            "the warm-up edits did not reach every subscriber within {WARMUP_WAIT_LIMIT:?}"
        );
        Ok(true)
    }

    /// Whether the writer still has edits to make (and says so once it has not).
    fn editing(&mut self) -> bool {
        let (Some(writer), Some(started)) = (&self.writer, self.started) else {
            return false;
        };
        writer.made < writer.plan.count && started.elapsed() < writer.plan.duration
    }

    fn execute(
        &mut self,
        out: accord_sync::Outputs,
        arrival: Option<Instant>,
    ) -> Result<Vec<Vec<u8>>> {
        let mut ids = Vec::new();
        let mut events = Vec::new();
        let mut malformed = None;
        let frames = self.peer.run_observed(
            out,
            |write| {
                if let StorageWrite::Append { changes, .. } = write {
                    match edit_ids(changes) {
                        Ok(found) => ids.extend(found),
                        Err(e) => malformed = Some(e),
                    }
                }
            },
            |event| events.push(event),
        );
        if let Some(e) = malformed {
            return Err(e);
        }
        self.record_received(ids, arrival);
        for event in events {
            self.on_event(event)?;
        }
        Ok(frames.into_iter().map(|(_, bytes)| bytes).collect())
    }

    fn record_received(&mut self, ids: Vec<u64>, arrival: Option<Instant>) {
        let applied = Instant::now();
        for id in ids.into_iter().filter(|id| org_of(*id) != self.org) {
            let arrived = self.arrivals.remove(&id).or(arrival).unwrap_or(applied);
            self.log.received.push((id, arrived, applied));
            Counts::add(&self.run.counts.received, 1);
        }
    }

    fn on_event(&mut self, event: Event) -> Result<()> {
        match event {
            Event::InSync { .. } if !self.ready => {
                self.ready = true;
                self.dialing = None;
                let _ = self.run.ready.send(self.org);
            }
            Event::Refused { message, .. } | Event::PeerError { message, .. } => {
                bail!("org {}: the connection failed: {message}", self.org)
            }
            // Kept and reported rather than fatal: the run's other figures
            // still mean something, and the refused edit shows as undelivered.
            Event::ChangesRefused { reason, .. } | Event::RefusedByPeer { reason, .. } => {
                eprintln!("org {}: changes refused: {reason}", self.org);
                self.log.refusals.push(reason);
            }
            _ => {}
        }
        Ok(())
    }
}

fn writer(org: usize, group: &Group, plan: Edits) -> Result<Writer> {
    let stored = group.stored.get(&group.doc).context("the MOU")?;
    let actor = new_document_actor(&OrgSecret::from_seed(org_seed(org)), [1; 8]);
    let doc = AutoCommit::load(&stored.snapshot)?.with_actor(actor);
    let text = purpose_obj(&doc)?;
    let agreement = Agreement::from_doc(group.doc, doc)?.under_roster(&group.roster_heads);
    Ok(Writer {
        agreement,
        text,
        plan,
        made: 0,
        unacked: VecDeque::new(),
        warming_since: None,
    })
}

/// Whether `bytes` is a sync frame whose message carries changes.
fn carries_changes(bytes: &[u8]) -> bool {
    sync_message(bytes).is_some_and(|m| !m.changes.is_empty())
}

/// The sync message a frame carries, if it is a whole `Sync` frame.
fn sync_message(bytes: &[u8]) -> Option<Message> {
    let Ok(Frame::Sync { message, .. }) = Frame::decode(bytes) else {
        return None;
    };
    Message::decode(&message).ok()
}

/// The edit ids among concatenated raw change chunks (a `StorageWrite::Append`).
pub fn edit_ids(mut chunks: &[u8]) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    while !chunks.is_empty() {
        let len = chunk_len(chunks)?;
        let (chunk, rest) = chunks.split_at(len);
        chunks = rest;
        let change = Change::from_bytes(chunk.to_vec())?;
        if let Ok(id) = u64::try_from(change.timestamp())
            && id >= EDIT_ID_BASE
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Length of the Automerge chunk at the start of `bytes`: magic (4 bytes),
/// checksum (4), type (1), then the body's length as unsigned LEB128.
fn chunk_len(bytes: &[u8]) -> Result<usize> {
    const HEADER: usize = 9;
    anyhow::ensure!(
        bytes.len() > HEADER && bytes[..4] == [0x85, 0x6f, 0x4a, 0x83],
        "not an Automerge chunk"
    );
    let mut body = 0usize;
    for (i, byte) in bytes[HEADER..].iter().take(10).enumerate() {
        body |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let total = HEADER + i + 1 + body;
            anyhow::ensure!(total <= bytes.len(), "a truncated chunk");
            return Ok(total);
        }
    }
    bail!("a chunk length that does not end")
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send_all(ws: &mut Socket, frames: Vec<Vec<u8>>) -> Result<()> {
    for frame in frames {
        ws.feed(WsMessage::Binary(frame.into())).await?;
    }
    ws.flush().await?;
    Ok(())
}

/// Next tick of the edit timer, or never when there is none.
async fn next_tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// One client, from dialing the relay until the run's `stop`. `dialing` is
/// released once the client is first in sync with the relay.
pub async fn run_client(
    org: usize,
    group: Arc<Group>,
    edits: Option<Edits>,
    run: Arc<Run>,
    dialing: OwnedSemaphorePermit,
) -> Result<ClientLog> {
    let mut client = Client::new(org, &group, edits, Arc::clone(&run))?;
    client.dialing = Some(dialing);
    let config = accord_node::link::client_config();
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(run.url.as_str(), Some(config), true)
            .await
            .with_context(|| format!("org {org} could not reach the relay"))?;
    let hello = client.connect()?;
    send_all(&mut ws, hello).await?;
    let mut start = run.start.clone();
    let mut stop = run.stop.clone();
    let mut timer = None;
    let mut fanned_out = run.fanout.ended.subscribe();
    loop {
        let holding = client.holding();
        tokio::select! {
            message = ws.next() => {
                match message {
                    Some(Ok(WsMessage::Binary(bytes))) => client.read(bytes.to_vec(), Instant::now()),
                    Some(Ok(WsMessage::Close(_))) | None => bail!("org {org}: the relay closed the connection"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => bail!("org {org}: the connection broke: {e}"),
                };
                if client.holding() {
                    continue;
                }
                // Every client shares one thread: let the others read
                // (and time) what reached their sockets before this
                // one's engine works, or each arrival would include
                // the engine work of every client polled before it.
                tokio::task::yield_now().await;
                let frames = client.receive_queued()?;
                send_all(&mut ws, frames).await?;
            }
            changed = fanned_out.changed(), if holding => {
                changed?;
                if !client.holding() {
                    let frames = client.receive_queued()?;
                    send_all(&mut ws, frames).await?;
                }
            }
            () = until(client.hold_limit()), if holding => {
                client.stop_holding();
                let frames = client.receive_queued()?;
                send_all(&mut ws, frames).await?;
            }
            () = until(client.deadline()), if !holding => {
                let frames = client.tick()?;
                send_all(&mut ws, frames).await?;
            }
            () = next_tick(&mut timer) => {
                if client.warming_up()? {
                    // The next tick asks again.
                    continue;
                }
                if client.editing() {
                    let (id, frames) = client.edit()?;
                    client.start_fanout(id);
                    // Timed before the send, as the bare publisher is: the
                    // relay may be reading the frame before `flush` returns.
                    client.log.sent.push((id, Instant::now()));
                    send_all(&mut ws, frames).await?;
                } else {
                    timer = None;
                    Counts::add(&run.counts.writers_done, 1);
                }
            }
            changed = start.changed(), if client.started.is_none() => {
                changed?;
                client.started = Some(Instant::now());
                timer = client.writer.as_ref().map(|w| edit_timer(&w.plan));
            }
            _ = stop.changed() => break,
        }
    }
    let _ = ws.close(None).await;
    let roster_loads = client.peer.loads.len() - client.peer.agreement_loads();
    client.log.roster_loads = roster_loads;
    client.log.mou_loads = client.peer.agreement_loads();
    Ok(client.log)
}

/// Waits until `at`, or forever without one.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn edit_timer(plan: &Edits) -> tokio::time::Interval {
    let first = tokio::time::Instant::now() + plan.offset;
    let mut timer = tokio::time::interval_at(first, plan.interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}
