//! The engine driver: one thread that owns the sync engine and the
//! replica's sync writes, and does exactly what the engine's outputs say,
//! in the order that makes acknowledgements mean "on disk": writes
//! committed first, then frames sent. The exception is frames to peers that
//! never gave us a change (`Outputs::before_writes`): our heads are no
//! receipt to them, so a relay forwards to its subscribers while it commits.
//!
//! It is a plain thread (not a tokio task) because redb commits block on
//! fsync; connection tasks talk to it through a channel, and it hands
//! their frames back through the [`courier`](crate::courier).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use accord_identity::OrgKey;
use accord_model::{DocId, PartnershipId};
use accord_store::{DocInfo, Replica, WriteBatch};
use accord_sync::{ConnId, Engine, Event, Input, Outputs, StorageWrite};
use accord_workspace::{Committed, Workspace};

use crate::courier::{Courier, Delivery};
use crate::metrics::Metrics;
use crate::sync_states::HeldSyncStates;
use automerge::ChangeHash;
use tokio::sync::{broadcast, mpsc as tokio_mpsc, oneshot};

/// Most commands handled before held sync messages are applied.
const MAX_BATCH: usize = 512;
/// How often `/metrics`' sync lag is recomputed.
const LAG_REFRESH_MS: u64 = 1_000;

/// The engine is ticked at least this often while idle (handshake
/// deadlines, unloading idle documents); held sync messages get a tick at
/// their own deadline.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Frames waiting to go out on one connection. Bounded: a peer that does
/// not read is disconnected rather than allowed to grow our memory.
pub const OUTBOX_FRAMES: usize = 256;

/// What a connection task hears from the driver.
#[derive(Debug)]
pub enum Outbound {
    Frame(Vec<u8>),
    Close,
}

/// What the driver is asked to do.
pub enum Command {
    Connect {
        dialed: bool,
        expect: Option<OrgKey>,
        url: Option<String>,
        outbox: tokio_mpsc::Sender<Outbound>,
        reply: oneshot::Sender<ConnId>,
    },
    Received {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Disconnected {
        conn: ConnId,
    },
    /// The courier found the connection's outbox full: its peer does not
    /// read, and it is disconnected rather than allowed to grow our memory.
    Stalled {
        conn: ConnId,
    },
    Committed(Vec<Committed>),
    Want(PartnershipId),
    Tick,
    Shutdown,
}

/// What the node tells the application (the CLI, the web page, tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    pub conn: ConnId,
    /// The URL we dialed, for outbound connections.
    pub url: Option<String>,
    pub event: Event,
}

/// A handle for sending commands to the driver thread.
#[derive(Clone)]
pub struct DriverHandle {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<NodeEvent>,
    metrics: Arc<Metrics>,
}

impl DriverHandle {
    pub fn send(&self, command: Command) {
        // A send fails only after shutdown, when nobody needs the answer.
        let _ = self.tx.send(command);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// The node's counters, for `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Registers a connection and returns its id.
    pub async fn connect(
        &self,
        dialed: bool,
        expect: Option<OrgKey>,
        url: Option<String>,
        outbox: tokio_mpsc::Sender<Outbound>,
    ) -> Option<ConnId> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Connect {
            dialed,
            expect,
            url,
            outbox,
            reply,
        });
        answer.await.ok()
    }
}

struct Connection {
    outbox: tokio_mpsc::Sender<Outbound>,
    url: Option<String>,
}

/// The state owned by the driver thread.
pub struct Driver {
    engine: Engine,
    courier: Courier,
    replica: Arc<Replica>,
    workspace: Option<Arc<Workspace>>,
    conns: BTreeMap<ConnId, Connection>,
    /// Sync states waiting for their own commit (see [`crate::sync_states`]).
    held_states: HeldSyncStates,
    events: broadcast::Sender<NodeEvent>,
    started: Instant,
    /// Engine time of the last sync lag refresh.
    lag_refreshed_at: u64,
    metrics: Arc<Metrics>,
}

impl Driver {
    /// Starts the driver thread, and its courier on `runtime`. `workspace`
    /// is the organisation's (for pinning peers on first contact); a relay
    /// has none.
    pub fn spawn(
        runtime: &tokio::runtime::Handle,
        engine: Engine,
        replica: Arc<Replica>,
        workspace: Option<Arc<Workspace>>,
        wanted: Vec<PartnershipId>,
    ) -> std::io::Result<(DriverHandle, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel();
        let (events, _) = broadcast::channel(1024);
        let metrics = Arc::new(Metrics::default());
        let courier = Courier::spawn(runtime, tx.clone());
        let handle = DriverHandle {
            tx,
            events: events.clone(),
            metrics: Arc::clone(&metrics),
        };
        let mut driver = Driver {
            engine,
            courier,
            replica,
            workspace,
            conns: BTreeMap::new(),
            held_states: HeldSyncStates::default(),
            events,
            started: Instant::now(),
            lag_refreshed_at: 0,
            metrics,
        };
        let thread = std::thread::Builder::new()
            .name("accord-engine".into())
            .spawn(move || {
                driver.announce_documents(wanted);
                driver.run(rx);
            })?;
        Ok((handle, thread))
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Updates `/metrics`' sync lag about once a second (the engine's scan
    /// visits every connection's documents, so not after every command).
    fn refresh_sync_lag(&mut self) {
        let now = self.now();
        if now.saturating_sub(self.lag_refreshed_at) < LAG_REFRESH_MS {
            return;
        }
        self.lag_refreshed_at = now;
        self.metrics.set_sync_lag(self.engine.sync_lag(now));
    }

    fn run(&mut self, rx: mpsc::Receiver<Command>) {
        loop {
            let command = match rx.recv_timeout(self.until_tick()) {
                Ok(command) => command,
                Err(mpsc::RecvTimeoutError::Timeout) => Command::Tick,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            if matches!(command, Command::Shutdown) {
                break;
            }
            self.on_command(command);
            // Take everything else already waiting, then apply the sync
            // messages among them together (see `EngineConfig::coalesce`;
            // with a window, those whose window has passed).
            let mut stop = false;
            for _ in 0..MAX_BATCH {
                match rx.try_recv() {
                    Ok(Command::Shutdown) => {
                        stop = true;
                        break;
                    }
                    Ok(command) => self.on_command(command),
                    Err(_) => break,
                }
            }
            self.step(Input::Flush);
            if self.held_states.due(Instant::now()) {
                self.save_held_states();
            }
            self.metrics.set_open(self.conns.len());
            self.refresh_sync_lag();
            if stop {
                break;
            }
        }
        self.save_held_states();
        for conn in std::mem::take(&mut self.conns).into_values() {
            self.courier.add(Delivery::Close(conn.outbox));
        }
        self.courier.ship();
        tracing::info!("sync engine stopped");
    }

    /// How long to wait for a command before ticking the engine: until its
    /// next deadline (held sync messages whose coalescing window passes
    /// then; see `Engine::next_deadline`), and at most [`IDLE_TICK`]. A
    /// command arriving first is followed by `Flush`, which applies what
    /// is due just as well, so a held change is never stranded.
    fn until_tick(&self) -> Duration {
        let engine = match self.engine.next_deadline() {
            Some(at) => Duration::from_millis(at.saturating_sub(self.now())).min(IDLE_TICK),
            None => IDLE_TICK,
        };
        let states = self
            .held_states
            .deadline()
            .map(|at| at.saturating_duration_since(Instant::now()));
        states.map_or(engine, |states| states.min(engine))
    }

    /// Tells the engine about every stored document and joined partnership.
    fn announce_documents(&mut self, wanted: Vec<PartnershipId>) {
        let index = match self.replica.document_index() {
            Ok(index) => index,
            Err(e) => {
                tracing::error!(error = %e, "could not read the document index; nothing will sync");
                return;
            }
        };
        for entry in index {
            let input = Input::Known {
                doc: DocId::from_bytes(entry.id),
                partnership: PartnershipId::from_bytes(entry.info.partnership),
                kind: entry.info.kind,
                heads: entry.heads.into_iter().map(ChangeHash).collect(),
            };
            self.step(input);
        }
        for partnership in wanted {
            self.step(Input::Want { partnership });
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Connect {
                dialed,
                expect,
                url,
                outbox,
                reply,
            } => {
                let Some(nonce) = random_nonce() else {
                    tracing::error!(
                        "no randomness from the operating system; refusing the connection"
                    );
                    return;
                };
                self.metrics.connection_opened();
                let (id, out) = self.engine.connect(dialed, expect, nonce, self.now());
                self.conns.insert(id, Connection { outbox, url });
                let _ = reply.send(id);
                self.execute(out);
            }
            Command::Received { conn, bytes } => {
                self.metrics.frame_in(bytes.len());
                self.step(Input::Received { conn, bytes });
            }
            Command::Disconnected { conn } => {
                // The engine's events still name this connection's URL.
                self.step(Input::Disconnected { conn });
                self.conns.remove(&conn);
            }
            Command::Stalled { conn } => {
                if self.conns.contains_key(&conn) {
                    self.metrics.slow_peer_disconnected();
                    self.close(conn);
                    self.step(Input::Disconnected { conn });
                }
                // Nothing more is sent to it, so the courier may forget it.
                self.courier.add(Delivery::Forget(conn));
                self.courier.ship();
            }
            Command::Committed(committed) => {
                for c in committed {
                    self.on_committed(c);
                }
            }
            Command::Want(partnership) => self.step(Input::Want { partnership }),
            Command::Tick => self.step(Input::Tick),
            Command::Shutdown => {}
        }
    }

    fn on_committed(&mut self, committed: Committed) {
        match committed {
            Committed::NewDocument {
                doc,
                partnership,
                kind,
                heads,
                ..
            } => {
                self.step(Input::Known {
                    doc,
                    partnership,
                    kind,
                    heads,
                });
            }
            Committed::Change {
                doc,
                change,
                heads,
                attestation,
            } => {
                self.step(Input::LocalChange {
                    doc,
                    change,
                    attestation,
                });
                // The new heads also reach the engine when the document is
                // not in memory, so it still offers the change to peers.
                let Some((partnership, kind)) = self.engine.document(doc) else {
                    return;
                };
                self.step(Input::Known {
                    doc,
                    partnership,
                    kind,
                    heads,
                });
            }
        }
    }

    fn step(&mut self, input: Input) {
        let out = self.engine.handle(input, self.now());
        self.execute(out);
    }

    /// Does what the engine said: sends what need not wait (see
    /// `Outputs::before_writes`), writes, then sends the rest, then closes,
    /// then loads. Frames and closes go to the courier in two parcels, the
    /// first shipped before the writes and the second after them.
    fn execute(&mut self, mut out: Outputs) {
        loop {
            let early = out.before_writes.min(out.send.len());
            if early > 0 && !out.writes.is_empty() {
                tracing::debug!(frames = early, "sending ahead of the writes");
            }
            for (conn, bytes) in out.send.drain(..early).collect::<Vec<_>>() {
                self.deliver(conn, bytes);
            }
            self.courier.ship();
            if !self.write(std::mem::take(&mut out.writes)) {
                // Nothing may be acknowledged after a failed write: drop
                // this round's frames and close the connections involved.
                for (conn, _) in out.send.drain(..) {
                    self.close(conn);
                }
            }
            for (conn, bytes) in out.send.drain(..) {
                self.deliver(conn, bytes);
            }
            // Events first: they name connections that the closes forget.
            for event in out.events.drain(..) {
                self.publish(event);
            }
            for conn in out.close.drain(..) {
                self.close(conn);
            }
            self.courier.ship();
            let Some(doc) = out.load.pop() else { break };
            let more = self.load(doc);
            out.writes.extend(more.writes);
            // `send` is empty here, so the load's early frames stay first.
            out.send = more.send;
            out.before_writes = more.before_writes;
            out.close.extend(more.close);
            out.events.extend(more.events);
            out.load.extend(more.load);
        }
    }

    /// Commits `writes`, all or none, but for sync states: those wait in
    /// `held_states` for a commit of their own (see [`crate::sync_states`]).
    fn write(&mut self, writes: Vec<StorageWrite>) -> bool {
        let mut batch = WriteBatch::default();
        let mut count = 0;
        let now = Instant::now();
        for write in writes {
            match write {
                StorageWrite::SyncState { doc, peer, state } => {
                    self.held_states.hold(doc, peer, state, now);
                }
                write => {
                    count += 1;
                    add_write(&mut batch, write);
                }
            }
        }
        if batch.is_empty() {
            return true;
        }
        let started = Instant::now();
        match self.replica.commit(batch) {
            Ok(()) => {
                tracing::debug!(
                    writes = count,
                    took_us = started.elapsed().as_micros() as u64,
                    "committed"
                );
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "could not store changes received from peers");
                self.metrics.storage_failed();
                false
            }
        }
    }

    /// Commits the held sync states. Failing loses only a cache: logged, not retried.
    fn save_held_states(&mut self) {
        let held = self.held_states.len();
        let Some(batch) = self.held_states.take() else {
            return;
        };
        match self.replica.commit(batch) {
            Ok(()) => tracing::debug!(states = held, "sync states saved"),
            Err(e) => {
                tracing::warn!(error = %e, states = held, "could not save peers' sync states; the next reconnect to them may exchange more");
            }
        }
    }

    /// Queues a frame for the courier (see [`Self::execute`] for when it
    /// ships), counting it now: `/metrics` then agrees with the events the
    /// driver publishes after the call.
    fn deliver(&mut self, conn: ConnId, bytes: Vec<u8>) {
        if let Some(c) = self.conns.get(&conn) {
            self.metrics.frame_out(bytes.len());
            let outbox = c.outbox.clone();
            self.courier.add(Delivery::Frame(conn, outbox, bytes));
        }
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            self.courier.add(Delivery::Close(c.outbox));
        }
    }

    fn publish(&mut self, event: Event) {
        self.metrics.observe(&event);
        let conn = match &event {
            Event::Authenticated { conn, .. }
            | Event::InSync { conn, .. }
            | Event::Refused { conn, .. }
            | Event::PeerError { conn, .. }
            | Event::ChangesRefused { conn, .. }
            | Event::RefusedByPeer { conn, .. }
            | Event::Closed { conn } => Some(*conn),
            Event::DocumentUpdated { .. } => None,
        };
        let url = conn
            .and_then(|c| self.conns.get(&c))
            .and_then(|c| c.url.clone());
        if let (Event::Authenticated { peer, .. }, Some(url), Some(ws)) =
            (&event, &url, &self.workspace)
            && let Err(e) = ws.pin_peer(url, *peer)
        {
            tracing::warn!(error = %e, "could not remember the peer's key");
        }
        let _ = self.events.send(NodeEvent {
            conn: conn.unwrap_or(ConnId(0)),
            url,
            event,
        });
    }

    /// Loads a document for the engine, compacting a long change log first
    /// (documents that only ever receive changes would otherwise never be).
    fn load(&mut self, doc: DocId) -> Outputs {
        let mut stored = match self.replica.load_document(doc.as_bytes()) {
            Ok(Some(stored)) => stored,
            Ok(None) => {
                return self.engine.handle(
                    Input::LoadFailed {
                        doc,
                        reason: "not stored".into(),
                    },
                    self.now(),
                );
            }
            Err(e) => {
                return self.engine.handle(
                    Input::LoadFailed {
                        doc,
                        reason: e.to_string(),
                    },
                    self.now(),
                );
            }
        };
        let peers: Vec<OrgKey> = self
            .engine
            .connected_peers()
            .into_iter()
            .map(|(_, p, _)| p)
            .collect();
        let sync_states = peers
            .into_iter()
            .filter_map(|peer| {
                if let Some(held) = self.held_states.get(doc, peer) {
                    return Some((peer, held.to_vec()));
                }
                let state = self
                    .replica
                    .sync_state(doc.as_bytes(), peer.as_bytes())
                    .ok()??;
                Some((peer, state))
            })
            .collect();
        let attestations = std::mem::take(&mut stored.attestations);
        let (snapshot, log) = compact_if_long(&self.replica, doc, stored);
        self.engine.handle(
            Input::Loaded {
                doc,
                snapshot,
                log,
                sync_states,
                attestations,
            },
            self.now(),
        )
    }
}

/// Folds a long log into the snapshot; on any problem, keeps what is stored.
fn compact_if_long(
    replica: &Replica,
    doc: DocId,
    stored: accord_store::StoredDocument,
) -> (Vec<u8>, Vec<Vec<u8>>) {
    let long = stored.log_changes >= 256.max(stored.snapshot_changes);
    if !long {
        return (stored.snapshot, stored.changes);
    }
    let Ok(mut loaded) = accord_model::load_document(
        &stored.snapshot,
        &stored.changes,
        automerge::ActorId::random(),
    ) else {
        return (stored.snapshot, stored.changes);
    };
    let snapshot = loaded.save();
    let mut batch = WriteBatch::default();
    let total = stored.snapshot_changes + stored.log_changes;
    batch.compact(*doc.as_bytes(), snapshot.clone(), total, stored.next_seq);
    match replica.commit(batch) {
        Ok(()) => (snapshot, Vec::new()),
        Err(_) => (stored.snapshot, stored.changes),
    }
}

fn add_write(batch: &mut WriteBatch, write: StorageWrite) {
    match write {
        StorageWrite::NewDocument {
            doc,
            partnership,
            kind,
            snapshot,
            heads,
        } => {
            let info = DocInfo {
                partnership: *partnership.as_bytes(),
                kind,
                title: String::new(),
            };
            batch.put_document(*doc.as_bytes(), info, snapshot, 1);
            batch.set_heads(*doc.as_bytes(), heads.iter().map(|h| h.0).collect());
        }
        StorageWrite::Append {
            doc,
            changes,
            count,
            heads,
        } => {
            batch.append_changes(*doc.as_bytes(), changes, count);
            batch.set_heads(*doc.as_bytes(), heads.iter().map(|h| h.0).collect());
        }
        StorageWrite::SyncState { doc, peer, state } => {
            crate::sync_states::add_sync_state(batch, doc, peer, state);
        }
        StorageWrite::Attestations { doc, put, delete } => {
            for key in delete {
                batch.delete_attestation(*doc.as_bytes(), key);
            }
            for (key, record) in put {
                if let Err(e) = batch.put_attestation(*doc.as_bytes(), key, record) {
                    tracing::warn!(error = %e, %doc, "not keeping an oversized attestation");
                }
            }
        }
        StorageWrite::Refusal {
            doc,
            change,
            author,
            peer,
            reason,
        } => {
            let record = accord_model::trust::RefusalRecord {
                author,
                peer,
                reason,
                at: accord_workspace::unix_now(),
            };
            if let Err(e) = batch.put_refusal(*doc.as_bytes(), change, record.to_bytes()) {
                tracing::warn!(error = %e, %doc, "could not record a refusal");
            }
        }
    }
}

/// A fresh handshake nonce; `None` if the OS has no randomness to give.
fn random_nonce() -> Option<[u8; 32]> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).ok()?;
    Some(nonce)
}
