//! The engine: connections, documents, and the rules between them.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use accord_identity::{OrgKey, OrgSecret};
use accord_model::{DocId, PartnershipId};
use automerge::ChangeHash;
use automerge::sync::{
    BloomFilter, Capability, ChunkList, Have, Message, MessageFlags, MessageVersion, State, SyncDoc,
};

use accord_model::trust::{Attestation, RosterHistory};

use crate::handshake::Session;
use crate::provenance::{self, NotYet};
use crate::registry::{DocSlot, Membership, Residency, digest};
use crate::wire::{DocEntry, ErrorCode, Frame, MAX_TEXT, PeerRole, Reassembly, sync_frames};

mod send_ahead;
use send_ahead::SentAhead;

/// Most bytes of sync messages held per document while waiting for a roster version.
const MAX_PARKED_BYTES: usize = 16 * 1024 * 1024;

/// Changes a message added to a document: their count, and the changes
/// themselves when they go to the log (a whole new document goes as a snapshot).
#[derive(Default)]
struct NewChanges {
    count: u64,
    changes: Vec<automerge::Change>,
    /// The saved document as the peer sent it, when it became the whole of
    /// a new document here: stored as is, so the receiver never saves again
    /// what it has just loaded.
    snapshot: Option<Vec<u8>>,
}

/// Whether a received sync message waits to be applied with others.
enum Holding {
    /// Apply it now (nothing of its document is held).
    No,
    /// Hold it until its document's window passes (or `Flush`).
    Window,
    /// Hold it behind the document's held messages, and apply them all now.
    Now,
}

/// What receiving one sync message came to.
enum Receipt {
    /// Not received now (parked, waiting for a load, or stale).
    Skipped,
    /// Received; the sender may be owed an answer.
    Received,
    /// Received, and its changes already offered back to the sender.
    Answered,
}

/// Why messages held for one document are not applied together.
enum Fallback {
    /// Nothing was applied: take them one at a time (which judges precisely).
    OneByOne,
    /// Applying failed part-way: reload the document first.
    Reload,
}

/// Most bytes of received sync messages held for one document before they
/// are applied regardless of the coalescing window (or of `Input::Flush`):
/// a fast sender cannot grow our memory, and a large burst is applied as
/// soon as it is worth one call.
const MAX_HELD_BYTES: usize = 1024 * 1024;

/// Received sync messages for one document, held to be applied together
/// (see `EngineConfig::coalesce`).
#[derive(Default)]
struct Held {
    /// When the oldest of them arrived (engine time, ms).
    since: u64,
    bytes: usize,
    messages: Vec<(ConnId, Vec<u8>)>,
    /// Their changes were judged and forwarded ahead of our copy (see
    /// `forward_ahead`): they are due at once, and are not forwarded again.
    ahead: bool,
}

/// The changes of held `messages` as one group of change chunks (empty if
/// none carries any), with the connections whose messages carried some;
/// `None` if a message does not decode, or is a whole document (which
/// cannot be merged with other messages' changes into one message, and
/// judging it here would only load it twice).
fn held_changes(messages: &[(ConnId, Vec<u8>)]) -> Option<(Vec<u8>, BTreeSet<ConnId>)> {
    let mut group = Vec::new();
    let mut givers = BTreeSet::new();
    for (id, bytes) in messages {
        let message = crate::message::decode(bytes).ok()?;
        if provenance::is_document(&message) {
            return None;
        }
        if !message.changes.is_empty() {
            givers.insert(*id);
        }
        for chunk in message.changes.iter() {
            group.extend_from_slice(chunk);
        }
    }
    Some((group, givers))
}

/// Most refused changes remembered per document.
const MAX_REFUSED: usize = 10_000;

fn remember_refused(slot: &mut DocSlot, refused: BTreeMap<ChangeHash, Vec<ChangeHash>>) {
    for (h, deps) in refused {
        if slot.refused.len() >= MAX_REFUSED {
            break;
        }
        slot.refused.insert(h, deps);
    }
}

/// A connection, named by the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How this engine presents itself in the handshake.
    pub role: PeerRole,
    /// Relay only: fingerprints (or fingerprint prefixes) of organisations
    /// allowed to create partnerships here; `None` lets anyone.
    pub allowed_creators: Option<Vec<String>>,
    /// A connection that has not authenticated within this many milliseconds is closed.
    pub handshake_timeout_ms: u64,
    /// Hold received sync messages until `Input::Flush`, then apply each
    /// document's changes in one call. Applying to a large document costs
    /// about the same for one change as for a hundred, so a runtime that
    /// drains its queue before flushing keeps up with fast typists.
    pub coalesce: bool,
    /// With `coalesce`: hold a document's received changes until the
    /// oldest held message is this many milliseconds old, then apply them
    /// in one call and answer each connection once (on `Tick` or `Flush`,
    /// whichever comes first after the window; see
    /// [`Engine::next_deadline`]). 0 applies them at the next `Flush`.
    ///
    /// Why a window: an Automerge apply on a large document costs about
    /// the same for one change as for a hundred (~35 ms on a 260k-change
    /// document), and so does the answer. A person typing ten keys a
    /// second sends ten messages a second, far too slowly for a queue to
    /// form, so without a window each keystroke costs a whole apply and
    /// answer (over half a core). A window of `W` ms caps the applies at
    /// `1000 / W` a second per document whatever the typing speed, and
    /// delays each change by at most `W`. Messages without changes (pure
    /// negotiation) are not held unless others are (order is kept), nor
    /// are whole documents or rosters, so round trips are not slowed.
    pub coalesce_window_ms: u64,
    /// How long a document stays in memory after its last conversation
    /// settled. Loading a large document costs as much as a second, so
    /// unloading it at once made a receiver reload it for every keystroke
    /// of a live session; idle documents are unloaded on `Tick` after this.
    pub keep_loaded_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            role: PeerRole::Node,
            allowed_creators: None,
            handshake_timeout_ms: 10_000,
            coalesce: false,
            coalesce_window_ms: 0,
            keep_loaded_ms: 60_000,
        }
    }
}

/// Everything that can happen to the engine.
#[derive(Debug)]
pub enum Input {
    /// Bytes of one whole transport message from a connection.
    Received { conn: ConnId, bytes: Vec<u8> },
    /// The transport closed.
    Disconnected { conn: ConnId },
    /// A document the replica holds (at start-up, or when created locally).
    Known {
        doc: DocId,
        partnership: PartnershipId,
        kind: String,
        heads: Vec<ChangeHash>,
    },
    /// The stored content of a document the engine asked to load.
    Loaded {
        doc: DocId,
        snapshot: Vec<u8>,
        log: Vec<Vec<u8>>,
        sync_states: Vec<(OrgKey, Vec<u8>)>,
        /// The document's stored attestations (encoded).
        attestations: Vec<Vec<u8>>,
    },
    /// The replica could not load a document.
    LoadFailed { doc: DocId, reason: String },
    /// A local change, already durable in the replica, with this
    /// organisation's attestation of the document's new heads (encoded).
    LocalChange {
        doc: DocId,
        change: Vec<u8>,
        attestation: Vec<u8>,
    },
    /// We joined a partnership whose roster we do not hold yet.
    Want { partnership: PartnershipId },
    /// Time passed: handshake deadlines, idle documents, and held sync
    /// messages whose coalescing window has passed (see [`Engine::next_deadline`]).
    Tick,
    /// Apply the held sync messages that are due: all of them without a
    /// coalescing window, else those whose window has passed (with `coalesce`).
    Flush,
}

/// A write the runtime must make durable before sending this round's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageWrite {
    /// A document first received from a peer.
    NewDocument {
        doc: DocId,
        partnership: PartnershipId,
        kind: String,
        snapshot: Vec<u8>,
        heads: Vec<ChangeHash>,
    },
    /// New changes received for a stored document (concatenated raw change chunks).
    Append {
        doc: DocId,
        changes: Vec<u8>,
        count: u64,
        heads: Vec<ChangeHash>,
    },
    /// Where sync with a peer got to, so a reconnect starts from there.
    SyncState {
        doc: DocId,
        peer: OrgKey,
        state: Vec<u8>,
    },
    /// Attestations to store (id, encoded) and superseded ones to drop;
    /// always after the write that stored the changes they cover.
    Attestations {
        doc: DocId,
        put: Vec<([u8; 32], Vec<u8>)>,
        delete: Vec<[u8; 32]>,
    },
    /// A change this replica refused, for the audit.
    Refusal {
        doc: DocId,
        change: [u8; 32],
        author: Option<OrgKey>,
        peer: OrgKey,
        reason: String,
    },
}

/// What the application hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer proved its key.
    Authenticated {
        conn: ConnId,
        peer: OrgKey,
        role: PeerRole,
    },
    /// Changes from a peer were applied to a document.
    DocumentUpdated {
        doc: DocId,
        partnership: PartnershipId,
        peer: OrgKey,
        changes: u64,
    },
    /// Everything we share with this peer has identical heads on both sides.
    InSync {
        conn: ConnId,
        peer: OrgKey,
        stats: ConnStats,
    },
    /// Changes from a peer failed verification and were dropped; the
    /// connection carries on.
    ChangesRefused {
        conn: ConnId,
        doc: DocId,
        peer: OrgKey,
        changes: u64,
        reason: String,
    },
    /// The peer refused changes we sent it.
    RefusedByPeer {
        conn: ConnId,
        doc: DocId,
        changes: u32,
        reason: String,
    },
    /// We closed the connection, and told the peer why.
    Refused {
        conn: ConnId,
        code: ErrorCode,
        message: String,
    },
    /// The peer closed the connection, and told us why.
    PeerError {
        conn: ConnId,
        code: ErrorCode,
        message: String,
    },
    /// The connection is gone (after any `Refused` or `PeerError`).
    Closed { conn: ConnId },
}

/// What one connection has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnStats {
    pub changes_received: u64,
    /// Changes carried by the sync messages we sent (a whole-document
    /// message counts as one).
    pub changes_sent: u64,
    /// Of those, local changes sent before our own copy applied them
    /// (see `send_ahead`).
    pub changes_sent_ahead: u64,
    /// Of those, received changes forwarded as they arrived (see `forward`).
    pub changes_forwarded: u64,
    /// Of those, forwarded before our own copy applied them (see
    /// `forward_ahead`).
    pub changes_forwarded_ahead: u64,
    pub documents_updated: u64,
    pub frames_sent: u64,
    pub bytes_sent: u64,
}

/// How far behind the authenticated peers are (see [`Engine::sync_lag`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncLag {
    /// Authenticated connections whose peer and we do not hold the same
    /// heads of every shared document, as far as we know.
    pub peers_behind: usize,
    /// The longest any of them has been so, in milliseconds.
    pub longest_ms: u64,
}

/// The engine's answer to one input: plain data describing the IO to do.
#[derive(Debug, Default)]
pub struct Outputs {
    pub writes: Vec<StorageWrite>,
    /// Frames to send once `writes` are durable, except the first
    /// `before_writes` of them, which may go while the writes are committed.
    pub send: Vec<(ConnId, Vec<u8>)>,
    /// How many leading frames of `send` go to peers that gave us no
    /// change in this round. Our heads are a receipt only to a peer whose
    /// changes they include, and changes of earlier rounds are already
    /// durable, so these peers cannot mistake a frame for a promise that
    /// something is stored; a relay forwards to them without waiting for
    /// its disk. Per connection, frames keep their order: all of a
    /// connection's frames are either early or not.
    pub before_writes: usize,
    pub close: Vec<ConnId>,
    pub load: Vec<DocId>,
    pub events: Vec<Event>,
}

#[derive(Debug)]
enum Phase {
    AwaitHello,
    AwaitProof {
        session: Session,
        peer: OrgKey,
        role: PeerRole,
    },
    Ready {
        peer: OrgKey,
        role: PeerRole,
    },
}

#[derive(Debug)]
struct Conn {
    dialed: bool,
    expect: Option<OrgKey>,
    nonce: [u8; 32],
    opened_at: u64,
    phase: Phase,
    summary_received: bool,
    /// The peer has answered our summary (see `Frame::SummaryDone`).
    summary_answered: bool,
    /// Partnerships both sides may exchange on this connection.
    shared: BTreeSet<PartnershipId>,
    /// Partnerships whose document list we sent and whose list we await.
    awaiting_lists: BTreeSet<PartnershipId>,
    lists_sent: BTreeSet<PartnershipId>,
    their_lists: BTreeMap<PartnershipId, Vec<DocEntry>>,
    /// Documents being synced on this connection; `None` until first used.
    docs: BTreeMap<DocId, Option<State>>,
    /// Attestations already sent on this connection, by document; only
    /// those the document still holds or is offered are remembered (see
    /// `send_attestation_frames`), so a connection that lives for weeks of
    /// typing does not grow by one key per keystroke.
    attested: BTreeMap<DocId, BTreeSet<[u8; 32]>>,
    /// Documents we sent whole (see `Engine::send_snapshot`) whose receipt
    /// the peer has not yet shown by naming heads in a sync message.
    snapshots: BTreeSet<DocId>,
    /// Snapshots the peer sent for documents we could not place yet (see
    /// `Engine::hold_early`), and the attestations sent ahead of them.
    early: BTreeMap<DocId, Vec<u8>>,
    early_attestations: BTreeMap<DocId, Vec<serde_bytes::ByteBuf>>,
    reassembly: Option<Reassembly>,
    /// Documents the peer refused while holding none of them, with our
    /// heads when it did: see [`Engine::refused_as_is`].
    refused_whole: BTreeMap<DocId, Vec<ChangeHash>>,
    /// Per document, the heads our last change sent ahead of our copy left
    /// the peer with (see `send_ahead`).
    told_ahead: BTreeMap<DocId, Vec<ChangeHash>>,
    in_sync: bool,
    /// Since when (engine time) the peer has been behind, as last seen by
    /// [`Engine::sync_lag`]; `None` while it holds what we hold.
    behind_since: Option<u64>,
    stats: ConnStats,
}

impl Conn {
    fn peer(&self) -> Option<(OrgKey, PeerRole)> {
        match self.phase {
            Phase::Ready { peer, role } => Some((peer, role)),
            _ => None,
        }
    }

    /// A relay we chose to dial holds whatever we share with it.
    fn is_trusted_relay(&self) -> bool {
        self.dialed
            && matches!(
                self.phase,
                Phase::Ready {
                    role: PeerRole::Relay,
                    ..
                }
            )
    }
}

/// The sync engine of one replica (a partner's node or a relay).
pub struct Engine {
    secret: OrgSecret,
    config: EngineConfig,
    docs: BTreeMap<DocId, DocSlot>,
    partnerships: BTreeMap<PartnershipId, Membership>,
    wanted: BTreeSet<PartnershipId>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    now: u64,
    out: Outputs,
    /// Received sync messages per document, waiting for `Input::Flush` or
    /// for their coalescing window to pass.
    inbound: BTreeMap<DocId, Held>,
    /// Each partnership's roster, readable at past versions, for judging
    /// changes; dropped whenever the roster changes.
    rosters: BTreeMap<PartnershipId, RosterHistory>,
    /// Local changes sent to peers before being applied here, per
    /// document; applied before the next input is handled.
    ahead: BTreeMap<DocId, SentAhead>,
    /// Connections just sent a document's received changes by `forward`,
    /// which `push_to_peers` then leaves alone; emptied after every input.
    forwarded: BTreeMap<DocId, BTreeSet<ConnId>>,
    /// Connections that gave us changes in this input: they may read our
    /// heads as a receipt for this round's writes, so their frames wait
    /// for them (see [`Outputs::before_writes`]). Changes given in earlier
    /// rounds are already durable. (Attestations alone do not count: peers
    /// offer them with change-less messages too.) Emptied after every input.
    gave_changes: BTreeSet<ConnId>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("org", &self.secret.public())
            .field("docs", &self.docs.len())
            .field("conns", &self.conns.len())
            .finish()
    }
}

type Result<T = ()> = std::result::Result<T, (ErrorCode, String)>;

/// Changes newly applied to a document, and its heads after them.
type Applied = (Vec<automerge::Change>, Vec<ChangeHash>);

fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T> {
    Err((code, message.into()))
}

impl Engine {
    pub fn new(secret: OrgSecret, config: EngineConfig) -> Self {
        Self {
            secret,
            config,
            docs: BTreeMap::new(),
            partnerships: BTreeMap::new(),
            wanted: BTreeSet::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            now: 0,
            out: Outputs::default(),
            inbound: BTreeMap::new(),
            ahead: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            gave_changes: BTreeSet::new(),
            rosters: BTreeMap::new(),
        }
    }

    pub fn org(&self) -> OrgKey {
        self.secret.public()
    }

    /// Opens a connection and returns the frames to send first. `dialed`:
    /// we initiated it; `expect`: the key the peer must prove (a pinned
    /// relay or peer); `nonce`: fresh randomness for the handshake.
    pub fn connect(
        &mut self,
        dialed: bool,
        expect: Option<OrgKey>,
        nonce: [u8; 32],
        now: u64,
    ) -> (ConnId, Outputs) {
        self.now = now;
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let conn = Conn {
            dialed,
            expect,
            nonce,
            opened_at: now,
            phase: Phase::AwaitHello,
            summary_received: false,
            summary_answered: false,
            shared: BTreeSet::new(),
            awaiting_lists: BTreeSet::new(),
            lists_sent: BTreeSet::new(),
            their_lists: BTreeMap::new(),
            docs: BTreeMap::new(),
            attested: BTreeMap::new(),
            snapshots: BTreeSet::new(),
            early: BTreeMap::new(),
            early_attestations: BTreeMap::new(),
            reassembly: None,
            refused_whole: BTreeMap::new(),
            told_ahead: BTreeMap::new(),
            in_sync: false,
            behind_since: Some(now),
            stats: ConnStats::default(),
        };
        self.conns.insert(id, conn);
        let hello = Frame::Hello {
            org: *self.org().as_bytes(),
            nonce,
            role: self.config.role,
        };
        self.send(id, &hello);
        (id, std::mem::take(&mut self.out))
    }

    /// Handles one input; see the crate docs for what to do with the outputs.
    pub fn handle(&mut self, input: Input, now: u64) -> Outputs {
        self.now = now;
        if let Input::LocalChange {
            doc,
            change,
            attestation,
        } = &input
        {
            self.note_local_attestation(*doc, attestation);
            if self.send_ahead(*doc, change) {
                return std::mem::take(&mut self.out);
            }
        }
        self.catch_up_ahead();
        match input {
            Input::Received { conn, bytes } => self.on_bytes(conn, &bytes),
            Input::Disconnected { conn } => self.drop_conn(conn),
            Input::Known {
                doc,
                partnership,
                kind,
                heads,
            } => self.on_known(doc, partnership, kind, heads),
            Input::Loaded {
                doc,
                snapshot,
                log,
                sync_states,
                attestations,
            } => self.on_loaded(doc, &snapshot, &log, sync_states, &attestations),
            Input::LoadFailed { doc, reason } => self.on_load_failed(doc, &reason),
            Input::LocalChange { doc, change, .. } => self.on_local_change(doc, &change),
            Input::Want { partnership } => self.on_want(partnership),
            Input::Tick => self.on_tick(),
            Input::Flush => self.flush_due(),
        }
        self.forwarded.clear();
        self.order_sends_for_durability();
        self.gave_changes.clear();
        std::mem::take(&mut self.out)
    }

    /// When the engine next has work to do without further input: the
    /// earliest time (engine ms, as passed to `handle`) at which held sync
    /// messages become due. The runtime sends `Input::Tick` then (or
    /// later), so a held change is never stranded; `None` while nothing
    /// is held. Handshake deadlines and idle unloading need no precise
    /// tick and are not included.
    pub fn next_deadline(&self) -> Option<u64> {
        if !self.ahead.is_empty() {
            return Some(self.now);
        }
        self.inbound
            .values()
            .map(|held| {
                if held.ahead {
                    self.now
                } else {
                    held.since.saturating_add(self.config.coalesce_window_ms)
                }
            })
            .min()
    }

    /// Moves the frames that need not wait for this round's writes (see
    /// [`Outputs::before_writes`]) to the front of `send`.
    fn order_sends_for_durability(&mut self) {
        let waits = |id: &ConnId| !self.conns.contains_key(id) || self.gave_changes.contains(id);
        let (mut early, late): (Vec<_>, Vec<_>) = std::mem::take(&mut self.out.send)
            .into_iter()
            .partition(|(id, _)| !waits(id));
        self.out.before_writes = early.len();
        early.extend(late);
        self.out.send = early;
    }

    /// How many attestation keys the engine remembers having sent on
    /// `conn`: what a long-lived connection costs in memory beyond its
    /// sync states (tests check that it stays bounded).
    pub fn attestations_remembered(&self, conn: ConnId) -> usize {
        self.conns
            .get(&conn)
            .map_or(0, |c| c.attested.values().map(BTreeSet::len).sum())
    }

    /// Organisations currently connected and authenticated.
    pub fn connected_peers(&self) -> Vec<(ConnId, OrgKey, PeerRole)> {
        self.conns
            .iter()
            .filter_map(|(id, c)| c.peer().map(|(p, r)| (*id, p, r)))
            .collect()
    }

    /// How far behind the authenticated peers are now, for `/metrics`.
    ///
    /// A peer is behind while a shared document's heads, as its last sync
    /// message told us, differ from ours (in either direction), or while the
    /// connection's first exchange is still running. Changes one side refused
    /// do not count: they will never be held by both. The clock starts when
    /// a call first sees the peer behind, so call it regularly (the node does
    /// about once a second); it reads state and never loads a document.
    pub fn sync_lag(&mut self, now: u64) -> SyncLag {
        let behind: Vec<(ConnId, bool)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer().is_some())
            .map(|(id, c)| (*id, self.conn_behind(c)))
            .collect();
        let mut lag = SyncLag::default();
        for (id, is_behind) in behind {
            let conn = self.conn(id);
            conn.behind_since = match (is_behind, conn.behind_since) {
                (false, _) => None,
                (true, Some(since)) => Some(since),
                (true, None) => Some(now),
            };
            if let Some(since) = conn.behind_since {
                lag.peers_behind += 1;
                lag.longest_ms = lag.longest_ms.max(now.saturating_sub(since));
            }
        }
        lag
    }

    fn conn_behind(&self, conn: &Conn) -> bool {
        if !conn.summary_received
            || !conn.summary_answered
            || !conn.awaiting_lists.is_empty()
            || conn.reassembly.is_some()
        {
            return true;
        }
        conn.docs.iter().any(|(doc, state)| {
            let Some(slot) = self.docs.get(doc) else {
                return false;
            };
            match state.as_ref().and_then(|s| s.their_heads.as_ref()) {
                Some(theirs) => !same_heads(theirs, &slot.heads) && slot.refused.is_empty(),
                None => true,
            }
        })
    }

    /// The partnership and kind of a document the engine knows.
    pub fn document(&self, doc: DocId) -> Option<(PartnershipId, String)> {
        self.docs.get(&doc).map(|s| (s.partnership, s.kind.clone()))
    }

    /// Whether the replica holds (or wants) any partnership at all.
    pub fn partnership_count(&self) -> usize {
        self.partnerships.len()
    }

    // ---- inputs -------------------------------------------------------

    fn on_bytes(&mut self, conn: ConnId, bytes: &[u8]) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let result = match Frame::decode(bytes) {
            Ok(frame) => self.on_frame(conn, frame),
            Err(e @ crate::wire::WireError::TooLarge(_)) => {
                refuse(ErrorCode::TooLarge, e.to_string())
            }
            Err(e @ crate::wire::WireError::Version(_)) => {
                refuse(ErrorCode::Version, e.to_string())
            }
            Err(e) => refuse(ErrorCode::Protocol, e.to_string()),
        };
        if let Err((code, message)) = result {
            self.fail(conn, code, message);
        }
    }

    fn on_frame(&mut self, id: ConnId, frame: Frame) -> Result {
        let conn = self.conns.get(&id).expect("checked by caller");
        tracing::trace!(conn = id.0, phase = ?conn.phase, frame = frame.name(), "frame");
        match (&conn.phase, frame) {
            (_, Frame::Error { code, message }) => {
                let message: String = message.chars().take(MAX_TEXT).collect();
                tracing::warn!(conn = id.0, ?code, %message, "peer closed the connection with an error");
                self.out.events.push(Event::PeerError {
                    conn: id,
                    code,
                    message,
                });
                self.close(id);
                Ok(())
            }
            (Phase::AwaitHello, Frame::Hello { org, nonce, role }) => {
                self.on_hello(id, OrgKey::from_bytes(org), nonce, role)
            }
            (Phase::AwaitProof { .. }, Frame::Proof { signature }) => self.on_proof(id, &signature),
            (Phase::Ready { .. }, Frame::Summary { partnerships }) => {
                self.on_summary(id, partnerships)
            }
            (Phase::Ready { .. }, Frame::SummaryDone) => {
                self.conn(id).summary_answered = true;
                self.check_in_sync(id);
                Ok(())
            }
            (Phase::Ready { .. }, Frame::Documents { partnership, docs }) => {
                self.on_documents(id, PartnershipId::from_bytes(partnership), docs);
                Ok(())
            }
            (Phase::Ready { .. }, Frame::Sync { doc, message }) => {
                self.on_sync(id, DocId::from_bytes(doc), message)
            }
            (Phase::Ready { .. }, Frame::Attest { doc, attestations }) => {
                self.on_attest(id, DocId::from_bytes(doc), attestations)
            }
            (
                Phase::Ready { .. },
                Frame::Refused {
                    doc,
                    changes,
                    reason,
                    hashes,
                },
            ) => {
                let reason: String = reason.chars().take(MAX_TEXT).collect();
                let doc = DocId::from_bytes(doc);
                self.peer_refused(doc, &hashes);
                self.note_refused_whole(id, doc);
                // A peer that refused part of a snapshot may still hold
                // nothing: its next message speaks for after the snapshot.
                self.conn(id).snapshots.remove(&doc);
                tracing::warn!(conn = id.0, %doc, changes, %reason, "the peer refused changes we sent");
                self.out.events.push(Event::RefusedByPeer {
                    conn: id,
                    doc,
                    changes,
                    reason,
                });
                Ok(())
            }
            (
                Phase::Ready { .. },
                Frame::SyncPart {
                    doc,
                    total,
                    offset,
                    bytes,
                },
            ) => {
                let conn = self.conns.get_mut(&id).expect("checked");
                match Reassembly::push(&mut conn.reassembly, doc, total, offset, bytes) {
                    Ok(Some((doc, message))) => self.on_sync(id, DocId::from_bytes(doc), message),
                    Ok(None) => Ok(()),
                    Err(e) => refuse(ErrorCode::Protocol, e.to_string()),
                }
            }
            (Phase::Ready { .. }, Frame::Hello { .. } | Frame::Proof { .. }) => {
                refuse(ErrorCode::Protocol, "handshake frame after authentication")
            }
            (_, _) => refuse(ErrorCode::Authentication, "data before authentication"),
        }
    }

    fn on_hello(
        &mut self,
        id: ConnId,
        peer: OrgKey,
        peer_nonce: [u8; 32],
        role: PeerRole,
    ) -> Result {
        let me = self.org();
        let conn = self.conns.get_mut(&id).expect("checked");
        if let Some(expected) = conn.expect
            && expected != peer
        {
            return refuse(
                ErrorCode::Authentication,
                format!(
                    "expected organisation {} but the peer claims {}",
                    expected.fingerprint(),
                    peer.fingerprint()
                ),
            );
        }
        if peer == me {
            return refuse(
                ErrorCode::Authentication,
                "the peer claims to be this organisation",
            );
        }
        let session = if conn.dialed {
            Session {
                dialer: me,
                listener: peer,
                dialer_nonce: conn.nonce,
                listener_nonce: peer_nonce,
            }
        } else {
            Session {
                dialer: peer,
                listener: me,
                dialer_nonce: peer_nonce,
                listener_nonce: conn.nonce,
            }
        };
        let proof = session.prove(&self.secret, conn.dialed);
        conn.phase = Phase::AwaitProof {
            session,
            peer,
            role,
        };
        self.send(
            id,
            &Frame::Proof {
                signature: proof.to_vec(),
            },
        );
        Ok(())
    }

    fn on_proof(&mut self, id: ConnId, signature: &[u8]) -> Result {
        let conn = self.conns.get_mut(&id).expect("checked");
        let Phase::AwaitProof {
            session,
            peer,
            role,
        } = &conn.phase
        else {
            return Ok(());
        };
        let (peer, role) = (*peer, *role);
        if !session.check(signature, conn.dialed) {
            return refuse(
                ErrorCode::Authentication,
                format!(
                    "authentication failed: the peer could not prove it holds the key of organisation {}",
                    peer.fingerprint()
                ),
            );
        }
        conn.phase = Phase::Ready { peer, role };
        tracing::info!(conn = id.0, peer = %peer.fingerprint(), ?role, "peer authenticated");
        self.out.events.push(Event::Authenticated {
            conn: id,
            peer,
            role,
        });
        self.send_summary(id);
        Ok(())
    }

    fn on_summary(&mut self, id: ConnId, entries: Vec<([u8; 16], Option<[u8; 32]>)>) -> Result {
        let peer = self.peer_of(id);
        for (p, their_digest) in entries {
            let p = PartnershipId::from_bytes(p);
            if self.partnerships.contains_key(&p) {
                if !self.may_share(id, p) {
                    continue;
                }
                self.conn(id).shared.insert(p);
                if their_digest != Some(self.digest(p)) {
                    self.send_list(id, p);
                }
            } else if their_digest.is_some() && (self.wanted.contains(&p) || self.may_create(peer))
            {
                self.conn(id).shared.insert(p);
                self.send_list(id, p);
            }
        }
        self.conn(id).summary_received = true;
        let member_anywhere = self.partnerships.values().any(|m| m.is_member(&peer));
        // Admission is the listener's decision; a dialer hears it as an error
        // frame. A listener still waiting for a roster it joined cannot judge
        // membership yet, so it keeps the connection (sharing nothing).
        let waiting_for_roster = !self.wanted.is_empty();
        let conn = self.conn(id);
        if !conn.dialed && conn.shared.is_empty() && !member_anywhere && !waiting_for_roster {
            return refuse(
                ErrorCode::NotAMember,
                format!(
                    "organisation {} is not a member of any partnership held here",
                    peer.fingerprint()
                ),
            );
        }
        self.send(id, &Frame::SummaryDone);
        self.check_in_sync(id);
        Ok(())
    }

    fn on_documents(&mut self, id: ConnId, p: PartnershipId, docs: Vec<DocEntry>) {
        let peer = self.peer_of(id);
        let allowed = self.conn(id).shared.contains(&p)
            || (self.partnerships.contains_key(&p) && self.may_share(id, p))
            || self.wanted.contains(&p);
        if !allowed {
            tracing::debug!(conn = id.0, peer = %peer.fingerprint(), partnership = %p, "ignoring a document list we may not share");
            return;
        }
        let conn = self.conn(id);
        conn.shared.insert(p);
        conn.awaiting_lists.remove(&p);
        // Merge: a later list may name just one new document.
        let list = conn.their_lists.entry(p).or_default();
        for entry in docs {
            match list.iter_mut().find(|e| e.id == entry.id) {
                Some(existing) => *existing = entry,
                None => list.push(entry),
            }
        }
        if !self.conn(id).lists_sent.contains(&p) {
            self.send_list(id, p);
            self.conn(id).awaiting_lists.remove(&p);
        }
        self.start_syncs(id, p);
        self.check_in_sync(id);
    }

    fn on_sync(&mut self, id: ConnId, doc: DocId, message: Vec<u8>) -> Result {
        if !self.conn(id).docs.contains_key(&doc) {
            let shared = self.docs.get(&doc).is_some_and(|slot| {
                let p = slot.partnership;
                self.conns.get(&id).is_some_and(|c| c.shared.contains(&p)) && self.listed(p, doc)
            });
            if !shared {
                return self.hold_early(id, doc, message);
            }
            self.conn(id).docs.insert(doc, None);
        }
        if self.conn(id).snapshots.contains(&doc) {
            let decoded = crate::message::decode(&message)
                .map_err(|e| (ErrorCode::Protocol, format!("malformed sync message: {e}")))?;
            if self.sent_before_our_snapshot(id, doc, &decoded)
                || self.settle_snapshot_answer(id, doc, &decoded)
            {
                return Ok(());
            }
        }
        let Some(slot) = self.docs.get_mut(&doc) else {
            return Ok(());
        };
        if slot.doc_mut().is_none() {
            slot.inbox.push((id, message));
            self.request_load(doc);
            return Ok(());
        }
        // Rosters are small and decide membership: never held back.
        let is_roster = doc == slot.partnership.roster_doc();
        if !self.config.coalesce || is_roster {
            return self.apply_message(id, doc, message);
        }
        match self.holding(doc, &message) {
            Holding::No => self.apply_message(id, doc, message),
            Holding::Window => {
                self.hold(id, doc, message, false);
                Ok(())
            }
            Holding::Now => {
                self.hold(id, doc, message, true);
                Ok(())
            }
        }
    }

    /// Whether a received sync message for `doc` waits with the others
    /// (see `EngineConfig::coalesce_window_ms`).
    fn holding(&self, doc: DocId, message: &[u8]) -> Holding {
        if self.config.coalesce_window_ms == 0 {
            return Holding::Window;
        }
        let behind_others = self.inbound.contains_key(&doc);
        let Ok(decoded) = crate::message::decode(message) else {
            // Applied at once, it fails its sender (after any held ones).
            return if behind_others {
                Holding::Now
            } else {
                Holding::No
            };
        };
        if provenance::is_document(&decoded) {
            // A whole document cannot be coalesced, and its sender waits on it.
            return if behind_others {
                Holding::Now
            } else {
                Holding::No
            };
        }
        if behind_others || !decoded.changes.is_empty() {
            Holding::Window
        } else {
            Holding::No
        }
    }

    /// Holds a message; applies the document's held messages at once when
    /// `now` or when they exceed [`MAX_HELD_BYTES`]. Failures close only
    /// the connections concerned.
    fn hold(&mut self, id: ConnId, doc: DocId, message: Vec<u8>, now: bool) {
        let since = self.now;
        let held = self.inbound.entry(doc).or_insert_with(|| Held {
            since,
            ..Held::default()
        });
        held.bytes += message.len();
        held.messages.push((id, message));
        if now || held.bytes > MAX_HELD_BYTES {
            let held = self.inbound.remove(&doc).unwrap_or_default();
            self.apply_held(doc, held);
        }
    }

    /// A sync message for a document we cannot place yet: typically a
    /// snapshot that overtook the roster which catalogues its document. A
    /// snapshot is kept (bounded) until the document is placed, because its
    /// sender waits for our answer to it; anything else is dropped, as
    /// Automerge's negotiation recovers from that by itself.
    fn hold_early(&mut self, id: ConnId, doc: DocId, message: Vec<u8>) -> Result {
        let whole = crate::message::decode(&message).is_ok_and(|m| provenance::is_document(&m));
        let conn = self.conn(id);
        if !whole || conn.shared.is_empty() {
            tracing::debug!(conn = id.0, doc = %doc, "ignoring sync for a document we do not share");
            return Ok(());
        }
        let held: usize = conn.early.values().map(Vec::len).sum();
        if held + message.len() > MAX_PARKED_BYTES {
            return refuse(
                ErrorCode::TooLarge,
                "too many documents arrived before the roster that lists them; reconnect to carry on",
            );
        }
        tracing::debug!(conn = id.0, %doc, "holding a snapshot until its document is listed");
        conn.early.insert(doc, message);
        Ok(())
    }

    /// Starts syncing `doc` on `id` from a snapshot the peer sent before we
    /// could place it, if there is one (our answer is the first thing the
    /// peer hears from us about the document).
    fn start_from_early(&mut self, id: ConnId, doc: DocId) -> bool {
        let conn = self.conn(id);
        let attestations = conn.early_attestations.remove(&doc);
        let message = conn.early.remove(&doc);
        let started = message.is_some();
        if started {
            conn.docs.insert(doc, None);
            conn.in_sync = false;
        }
        let mut result = Ok(());
        if let Some(list) = attestations {
            result = self.on_attest(id, doc, list);
        }
        if let Some(message) = message
            && result.is_ok()
        {
            result = self.on_sync(id, doc, message);
        }
        if let Err((code, text)) = result {
            self.fail(id, code, text);
            return true;
        }
        started
    }

    /// Applies the held messages that are due: all of them without a
    /// window, else those of documents whose oldest message has waited
    /// the whole window.
    fn flush_due(&mut self) {
        let window = self.config.coalesce_window_ms;
        let now = self.now;
        let due: Vec<DocId> = self
            .inbound
            .iter()
            .filter(|(_, held)| {
                window == 0 || held.ahead || held.since.saturating_add(window) <= now
            })
            .map(|(doc, _)| *doc)
            .collect();
        for doc in due {
            if let Some(held) = self.inbound.remove(&doc) {
                self.apply_held(doc, held);
            }
        }
    }

    /// Applies one document's held messages: one Automerge apply for all
    /// their changes, then each message's negotiation part in order, then
    /// one answer per connection (an answer costs about as much as an
    /// apply on a large document).
    ///
    /// First, unless that was done already, their changes are judged and
    /// forwarded to the peers caught up to our heads, and the messages are
    /// held again, due at once: the frames leave with this input's
    /// outputs, and our copy applies the changes at the next input (the
    /// runtime ticks at `next_deadline`, which is now).
    fn apply_held(&mut self, doc: DocId, held: Held) {
        let messages: Vec<(ConnId, Vec<u8>)> = held
            .messages
            .into_iter()
            .filter(|(c, _)| self.conns.contains_key(c))
            .collect();
        if messages.is_empty() {
            return;
        }
        // Decoded once for both: most held messages (a relay's subscribers'
        // answers) carry no changes, and that is all either needs to see.
        let decoded = held_changes(&messages);
        let group = decoded.as_ref().map(|(group, _)| group.as_slice());
        if !held.ahead && self.forward_ahead(doc, &messages, group) {
            let held = Held {
                since: self.now,
                bytes: messages.iter().map(|(_, m)| m.len()).sum(),
                messages,
                ahead: true,
            };
            self.inbound.insert(doc, held);
            return;
        }
        let recorded = match self.preapply_held(doc, &messages, decoded) {
            Some(recorded) => recorded,
            None => {
                for (id, message) in messages {
                    if self.conns.contains_key(&id)
                        && let Err((code, text)) = self.apply_message(id, doc, message)
                    {
                        self.fail(id, code, text);
                    }
                }
                return;
            }
        };
        let mut senders = BTreeSet::new();
        for (id, message) in messages {
            if !self.conns.contains_key(&id) {
                continue;
            }
            match self.receive_message(id, doc, message, true) {
                Ok(Receipt::Skipped) => {}
                Ok(_) => {
                    senders.insert(id);
                }
                Err((code, text)) => self.fail(id, code, text),
            }
        }
        let answered = if recorded {
            self.push_to_peers(doc)
        } else {
            Vec::new()
        };
        for id in senders {
            if !self.conns.contains_key(&id) {
                continue;
            }
            if !answered.contains(&id) {
                self.pump(id, doc);
            }
            self.check_in_sync(id);
        }
    }

    /// Applies the changes of several held messages together and records
    /// them. `Some(recorded)` when the messages are then to be received for
    /// their negotiation only; `None` to apply them one at a time.
    /// `decoded` is `held_changes` of `messages`.
    fn preapply_held(
        &mut self,
        doc: DocId,
        messages: &[(ConnId, Vec<u8>)],
        decoded: Option<(Vec<u8>, BTreeSet<ConnId>)>,
    ) -> Option<bool> {
        match self.preapply(doc, decoded) {
            Ok(Some((changes, heads))) => {
                let (first, _) = messages[0];
                let peer = self.peer_of(first);
                let new = NewChanges {
                    count: changes.len() as u64,
                    changes,
                    snapshot: None,
                };
                let senders = messages.iter().map(|(c, _)| *c).collect();
                if let Err((code, text)) =
                    self.record_changes(first, &senders, doc, peer, &new, heads)
                {
                    self.fail(first, code, text);
                }
                Some(true)
            }
            Ok(None) => Some(false),
            Err(Fallback::OneByOne) => None,
            Err(Fallback::Reload) => {
                self.reload_after_failed_preapply(doc);
                None
            }
        }
    }

    /// Applying held messages together failed part-way: reload the
    /// document (a never-stored one starts empty again) so that each
    /// message is applied on its own, failing only its sender.
    fn reload_after_failed_preapply(&mut self, doc: DocId) {
        let stored = self.docs.get(&doc).is_some_and(|s| s.stored);
        let Some(slot) = self.docs.get_mut(&doc) else {
            return;
        };
        if stored {
            slot.unload();
            self.request_load(doc);
        } else {
            slot.residency = Residency::Loaded(Box::default());
        }
    }

    /// Applies the changes of held messages (`decoded`, their
    /// `held_changes`) to `doc` in one call. The messages are then received
    /// as usual: their changes are already present, so Automerge only
    /// updates the sync states. Returns the changes that were new, with the
    /// resulting heads.
    fn preapply(
        &mut self,
        doc: DocId,
        decoded: Option<(Vec<u8>, BTreeSet<ConnId>)>,
    ) -> std::result::Result<Option<Applied>, Fallback> {
        // Judging replaces the changes waiting for their dependencies with
        // what still waits after this judgement. Judging the combined batch
        // and then falling back would lose them (the sender never resends a
        // change it sent on this connection): the sync then stalled forever,
        // found by the relay's kill -9 loop. Waiting changes take the precise path.
        if self.docs.get(&doc).is_some_and(|s| !s.pending.is_empty()) {
            return Err(Fallback::OneByOne);
        }
        let (changes, givers) = decoded.ok_or(Fallback::OneByOne)?;
        self.gave_changes.extend(givers);
        // Judge them together; anything short of "all accepted" falls back
        // to one message at a time, which refuses precisely. Changes
        // forwarded ahead are judged again: a roster change applied since
        // (rosters are never held) may refuse them now, and then they are
        // not stored.
        if !self.all_accepted(doc, &changes) {
            return Err(Fallback::OneByOne);
        }
        let Some(d) = self.docs.get_mut(&doc).and_then(DocSlot::doc_mut) else {
            return Err(Fallback::OneByOne);
        };
        let before = d.get_heads();
        match catch_unwind(AssertUnwindSafe(|| d.load_incremental(&changes))) {
            Ok(Ok(_)) => {}
            _ => return Err(Fallback::Reload),
        }
        let after = d.get_heads();
        if after == before {
            return Ok(None);
        }
        Ok(Some((d.get_changes(&before), after)))
    }

    /// Whether every one of `changes` (concatenated change chunks of
    /// `doc`) is accepted, judged together. Anything less leaves the
    /// document's waiting changes as they were: judging them together may
    /// have set later messages' changes aside as waiting (for one an
    /// earlier message brings, or one it gets refused), and one message at
    /// a time judges each afresh, in order.
    fn all_accepted(&mut self, doc: DocId, changes: &[u8]) -> bool {
        let combined = Message {
            heads: Vec::new(),
            need: Vec::new(),
            have: Vec::new(),
            changes: changes.to_vec().into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        let pending = self.docs.get(&doc).map(|s| s.pending.clone());
        match self.screen(doc, &combined) {
            Ok(Ok(screened)) if screened.refused.is_empty() && screened.keep.is_none() => true,
            _ => {
                if let (Some(slot), Some(pending)) = (self.docs.get_mut(&doc), pending) {
                    slot.pending = pending;
                }
                false
            }
        }
    }

    fn on_known(
        &mut self,
        doc: DocId,
        partnership: PartnershipId,
        kind: String,
        heads: Vec<ChangeHash>,
    ) {
        match self.docs.get_mut(&doc) {
            Some(slot) => slot.heads = heads,
            None => {
                self.docs
                    .insert(doc, DocSlot::unloaded(partnership, kind, heads));
            }
        }
        self.wanted.remove(&partnership);
        if doc == partnership.roster_doc() {
            // Membership is needed for every decision, so rosters are always loaded.
            self.request_load(doc);
        } else {
            self.push_to_peers(doc);
        }
    }

    fn on_loaded(
        &mut self,
        doc: DocId,
        snapshot: &[u8],
        log: &[Vec<u8>],
        states: Vec<(OrgKey, Vec<u8>)>,
        attestations: &[Vec<u8>],
    ) {
        let Some(slot) = self.docs.get_mut(&doc) else {
            return;
        };
        // Stored attestations were verified before they were stored.
        slot.attestations.held = attestations
            .iter()
            .filter_map(|bytes| Attestation::from_bytes(bytes).ok())
            .map(|a| (a.id(), a))
            .collect();
        if self.snapshot_only(doc, log) {
            // The stored snapshot is the whole document and every connection
            // waiting for it wants exactly that: send those bytes as they
            // are, and never parse the document (its peers' answers are
            // settled without it too, see `settle_snapshot_answer`).
            let Some(slot) = self.docs.get_mut(&doc) else {
                return;
            };
            slot.unload();
            let heads = slot.heads.clone();
            for id in std::mem::take(&mut slot.waiting) {
                self.send_whole(id, doc, heads.clone(), snapshot.to_vec());
            }
            return;
        }
        let Some(slot) = self.docs.get_mut(&doc) else {
            return;
        };
        // Strict: a damaged stored change is an error, not a silent loss.
        let loaded = catch_unwind(|| accord_model::load_stored(snapshot, log));
        let mut loaded = match loaded {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return self.on_load_failed(doc, &e.to_string()),
            Err(_) => return self.on_load_failed(doc, "loading it panicked"),
        };
        slot.heads = loaded.get_heads();
        slot.saved_states = states
            .into_iter()
            .filter_map(|(peer, bytes)| State::decode(&bytes).ok().map(|s| (peer, (None, s))))
            .collect();
        slot.residency = Residency::Loaded(Box::new(loaded));
        let inbox = std::mem::take(&mut slot.inbox);
        let waiting = std::mem::take(&mut slot.waiting);
        let partnership = slot.partnership;
        if doc == partnership.roster_doc() {
            self.rosters.remove(&partnership);
            self.refresh_membership(partnership);
        }
        for (conn, message) in inbox {
            if self.conns.contains_key(&conn)
                && let Err((code, message)) = self.apply_message(conn, doc, message)
            {
                self.fail(conn, code, message);
            }
        }
        for conn in waiting {
            self.pump(conn, doc);
        }
    }

    /// Whether a document just read from the replica is wanted only to be
    /// sent whole: nothing to apply to it, every waiting connection's peer
    /// lacks it, and its stored form is one snapshot (no log to fold in).
    fn snapshot_only(&self, doc: DocId, log: &[Vec<u8>]) -> bool {
        let Some(slot) = self.docs.get(&doc) else {
            return false;
        };
        log.is_empty()
            && doc != slot.partnership.roster_doc()
            && slot.inbox.is_empty()
            && !self.inbound.contains_key(&doc)
            && !slot.waiting.is_empty()
            && slot.waiting.iter().all(|id| self.peer_lacks(*id, doc))
    }

    fn on_load_failed(&mut self, doc: DocId, reason: &str) {
        tracing::error!(doc = %doc, %reason, "could not load a document; it will not sync until repaired");
        if let Some(slot) = self.docs.get_mut(&doc) {
            slot.residency = Residency::Broken;
            slot.inbox.clear();
            slot.waiting.clear();
        }
    }

    /// Holds this organisation's attestation of a local change, to offer
    /// before the change.
    fn note_local_attestation(&mut self, doc: DocId, attestation: &[u8]) {
        let Some(slot) = self.docs.get_mut(&doc) else {
            return;
        };
        match Attestation::from_bytes(attestation) {
            Ok(a) if a.doc == doc => slot.attestations.local(a),
            _ => tracing::warn!(%doc, "a local change came without a valid attestation"),
        }
    }

    fn on_local_change(&mut self, doc: DocId, change: &[u8]) {
        let Some(slot) = self.docs.get_mut(&doc) else {
            return;
        };
        let Some(d) = slot.doc_mut() else {
            // Not in memory: the replica already holds the change, so offering
            // the document loads it (with the change) for each peer.
            self.push_to_peers(doc);
            return;
        };
        if d.load_incremental(change).is_err() {
            slot.unload();
            self.push_to_peers(doc);
            return;
        }
        slot.heads = d.get_heads();
        let p = slot.partnership;
        if doc == p.roster_doc() {
            self.roster_changed(p);
        }
        self.push_to_peers(doc);
    }

    fn on_want(&mut self, partnership: PartnershipId) {
        if self.partnerships.contains_key(&partnership) {
            return;
        }
        self.wanted.insert(partnership);
        let ready: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer().is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            self.send_summary(id);
        }
    }

    fn on_tick(&mut self) {
        self.flush_due();
        let loaded: Vec<DocId> = self
            .docs
            .iter()
            .filter(|(_, slot)| matches!(slot.residency, Residency::Loaded(_)))
            .map(|(doc, _)| *doc)
            .collect();
        for doc in loaded {
            self.unload_if_unused(doc);
        }
        let deadline = self.config.handshake_timeout_ms;
        let late: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer().is_none() && self.now.saturating_sub(c.opened_at) > deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.fail(
                id,
                ErrorCode::Timeout,
                "the handshake took too long".to_owned(),
            );
        }
    }

    // ---- documents ------------------------------------------------------

    /// Applies one sync message from a peer. A message that cannot be
    /// applied drops the in-memory copy (it is reloaded from the replica,
    /// which only ever received whole, applied changes) and fails the connection.
    fn apply_message(&mut self, id: ConnId, doc: DocId, bytes: Vec<u8>) -> Result {
        match self.receive_message(id, doc, bytes, false)? {
            Receipt::Skipped => {}
            Receipt::Received => {
                self.pump(id, doc);
                self.check_in_sync(id);
            }
            // Asking Automerge again would cost as much and say nothing.
            Receipt::Answered => self.check_in_sync(id),
        }
        Ok(())
    }

    /// [`Engine::apply_message`] without necessarily answering the sender.
    /// `preapplied`: its changes were applied with the rest of its batch
    /// (see `preapply`), and only its negotiation is left to receive.
    fn receive_message(
        &mut self,
        id: ConnId,
        doc: DocId,
        bytes: Vec<u8>,
        preapplied: bool,
    ) -> Result<Receipt> {
        let peer = self.peer_of(id);
        let message = crate::message::decode(&bytes)
            .map_err(|e| (ErrorCode::Protocol, format!("malformed sync message: {e}")))?;
        if !message.changes.is_empty() {
            self.gave_changes.insert(id);
        }
        if self.sent_before_our_snapshot(id, doc, &message) {
            return Ok(Receipt::Skipped);
        }
        let Some(slot) = self.docs.get_mut(&doc) else {
            return Ok(Receipt::Skipped);
        };
        if slot.doc_mut().is_none() {
            // Dropped earlier in this round: apply after reloading.
            slot.inbox.push((id, bytes));
            self.request_load(doc);
            return Ok(Receipt::Skipped);
        }
        if slot.parked.iter().any(|(c, _)| *c == id) {
            // Keep this peer's messages for the document in order.
            return self.park(id, doc, bytes).map(|()| Receipt::Skipped);
        }
        let mut message = message;
        // Automerge would parse and look up every change again, at about
        // the cost of applying them.
        let stripped = preapplied && !message.changes.is_empty();
        if stripped {
            message.changes = ChunkList::empty();
        }
        let whole_document = provenance::is_document(&message);
        if whole_document && self.holds_all(doc, &message.heads) {
            // Another connection brought the same document first: a saved
            // document holds nothing beyond the history of its heads, so
            // there is nothing to judge, load or apply.
            message.changes = ChunkList::empty();
        }
        tracing::debug!(conn = id.0, %doc, heads = ?message.heads, need = ?message.need, changes = message.changes.len(), "sync message in");
        let screened = match self.screen(doc, &message) {
            Err(NotYet::Roster) => return self.park(id, doc, bytes).map(|()| Receipt::Skipped),
            Ok(Err(e)) => return refuse(ErrorCode::Protocol, e),
            Ok(Ok(screened)) => screened,
        };
        if !screened.refused.is_empty() {
            self.explain_refusal(doc, &message, &screened.refused);
            self.report_refusals(id, doc, peer, &screened.refused);
            if let Some(slot) = self.docs.get_mut(&doc) {
                remember_refused(slot, screened.refused_deps);
            }
        }
        if let Some(keep) = screened.keep {
            message.changes = keep.into();
        }
        if let Some(slot) = self.docs.get(&doc)
            && !slot.refused.is_empty()
        {
            message.heads = provenance::without_refused(&message.heads, &slot.refused);
        }
        let mut state = self.take_state(id, doc, peer);
        let Some(slot) = self.docs.get_mut(&doc) else {
            return Ok(Receipt::Skipped);
        };
        let Some(d) = slot.doc_mut() else {
            return Ok(Receipt::Skipped);
        };
        let before = d.get_heads();
        let mut installed = None;
        if let Some((document, count)) = screened.document
            && before.is_empty()
        {
            // We held nothing and all of it was accepted: the document decoded
            // for judging becomes ours, and its bytes our stored snapshot.
            let saved: Vec<u8> = message.changes.iter().flatten().copied().collect();
            *d = *document;
            message.changes = ChunkList::empty();
            installed = Some((count, saved));
        }
        // Seeing heads equal to ours, Automerge takes it that we have told
        // the peer our heads. We may not have: what we last sent may name
        // older heads and still be on its way (a snapshot, or a message sent
        // before a third peer brought us the rest). Arriving after this
        // message, it would leave the peer sure we lack what it holds; it
        // then sends us changes we have, which Automerge never answers, and
        // the peer never sees us in sync. So we tell it our heads.
        let last_told = state.last_sent_heads.clone();
        let names_heads = !message.heads.is_empty();
        let applied = catch_unwind(AssertUnwindSafe(|| {
            crate::negotiation::receive(d, &mut state, message)
        }));
        if names_heads {
            state.last_sent_heads = last_told;
        }
        if stripped {
            // Seeing no changes and heads equal to ours, Automerge would take
            // it that the peer knows our heads, and never tell the peer we
            // now hold its changes.
            state.have_responded = false;
        }
        if whole_document {
            // The sender of a whole document waits to hear our heads, even
            // when Automerge, seeing them equal to the message's, would not
            // answer (it takes an applied message without changes as one
            // it has already answered).
            state.have_responded = false;
        }
        let after = d.get_heads();
        let new_changes = if after == before {
            NewChanges::default()
        } else if let Some((count, saved)) = installed {
            NewChanges {
                count,
                changes: Vec::new(),
                snapshot: Some(saved),
            }
        } else if before.is_empty() {
            // A whole document: only its size is needed (it is stored as a snapshot).
            NewChanges {
                count: d.get_changes_meta(&[]).len() as u64,
                ..NewChanges::default()
            }
        } else {
            let changes = d.get_changes(&before);
            NewChanges {
                count: changes.len() as u64,
                changes,
                snapshot: None,
            }
        };
        if !matches!(applied, Ok(Ok(()))) {
            if let Some(slot) = self.docs.get_mut(&doc) {
                slot.unload();
            }
            return refuse(
                ErrorCode::BadDocument,
                format!("document {doc} could not apply the peer's changes"),
            );
        }
        self.conn(id).docs.insert(doc, Some(state));
        if new_changes.count > 0 {
            let senders = BTreeSet::from([id]);
            self.record_changes(id, &senders, doc, peer, &new_changes, after)?;
            if self.push_to_peers(doc).contains(&id) {
                return Ok(Receipt::Answered);
            }
        }
        Ok(Receipt::Received)
    }

    /// Whether `message` was sent before the peer received the snapshot of
    /// `doc` we sent it, and so says nothing we need. Our snapshot and the
    /// peer's first message (which, holding nothing, names no heads) cross
    /// on the wire; taken at its word, that message would make Automerge
    /// think the peer lost everything and send the whole document again.
    /// The peer answers every snapshot with its heads, so the first message
    /// naming heads (or a refusal) ends the wait.
    fn sent_before_our_snapshot(&mut self, id: ConnId, doc: DocId, message: &Message) -> bool {
        let conn = self.conn(id);
        if !conn.snapshots.contains(&doc) {
            return false;
        }
        if message.heads.is_empty() {
            tracing::trace!(conn = id.0, %doc, "skipping a message sent before our snapshot arrived");
            return true;
        }
        conn.snapshots.remove(&doc);
        false
    }

    /// Takes the peer's answer to our snapshot without Automerge when it
    /// says exactly "I hold your heads and nothing else": the sync state is
    /// then what receiving it would make it, and the document (which a
    /// relay or a node sending from its replica never parsed) stays unloaded.
    /// Anything else goes through Automerge as usual.
    fn settle_snapshot_answer(&mut self, id: ConnId, doc: DocId, message: &Message) -> bool {
        let Some(slot) = self.docs.get(&doc) else {
            return false;
        };
        let ours = slot.heads.clone();
        // Our snapshot must have named these heads too: if ours moved on
        // since, the peer still takes us to hold only the snapshot's, and
        // Automerge's path tells it better (see `receive_message`).
        let told_ours = self
            .conns
            .get(&id)
            .and_then(|c| c.docs.get(&doc))
            .and_then(Option::as_ref)
            .is_some_and(|state| same_heads(&state.last_sent_heads, &ours));
        let nothing_more = told_ours
            && message.changes.is_empty()
            && message.need.is_empty()
            && same_heads(&message.heads, &ours)
            && message
                .have
                .iter()
                .all(|h| same_heads(&h.last_sync, &ours) && h.bloom.to_bytes().is_empty());
        if !nothing_more {
            return false;
        }
        let their_capabilities = message.flags.map(|flags| {
            let mut caps = vec![Capability::MessageV2];
            if flags.contains(MessageFlags::SUPPORTS_SYNC_RESET) {
                caps.push(Capability::SyncReset);
            }
            caps
        });
        let state = State {
            shared_heads: message.heads.clone(),
            last_sent_heads: message.heads.clone(),
            their_heads: Some(message.heads.clone()),
            their_need: Some(Vec::new()),
            their_have: Some(message.have.clone()),
            have_responded: true,
            peer_read_only: message
                .flags
                .is_some_and(|f| f.contains(MessageFlags::READ_ONLY)),
            their_capabilities,
            ..State::new()
        };
        self.conn(id).docs.insert(doc, Some(state));
        self.check_in_sync(id);
        true
    }

    /// Whether we hold every one of `heads` (and so everything they depend on).
    fn holds_all(&mut self, doc: DocId, heads: &[ChangeHash]) -> bool {
        let Some(d) = self.docs.get_mut(&doc).and_then(DocSlot::doc_mut) else {
            return false;
        };
        !heads.is_empty() && heads.iter().all(|h| d.get_change_meta_by_hash(h).is_some())
    }

    /// Persists and announces changes received from `peer`; the caller
    /// then forwards them (`push_to_peers`), once the messages that brought
    /// them have been received.
    fn record_changes(
        &mut self,
        id: ConnId,
        senders: &BTreeSet<ConnId>,
        doc: DocId,
        peer: OrgKey,
        new: &NewChanges,
        heads: Vec<ChangeHash>,
    ) -> Result {
        let Some(slot) = self.docs.get_mut(&doc) else {
            return Ok(());
        };
        let p = slot.partnership;
        let is_roster = doc == p.roster_doc();
        if is_roster {
            let Some(d) = slot.doc_mut() else {
                return Ok(());
            };
            let valid = Membership::from_roster(p, d);
            let creator_ok = match (&valid, self.partnerships.contains_key(&p)) {
                (None, _) => false,
                (Some(m), false) => {
                    self.wanted.contains(&p) || self.may_create_as(peer, &m.creator)
                }
                (Some(_), true) => true,
            };
            if !creator_ok {
                self.reset_document(id, doc);
                return refuse(
                    ErrorCode::BadDocument,
                    format!(
                        "the roster of partnership {p} is not valid or not created by the sender"
                    ),
                );
            }
        }
        let Some(slot) = self.docs.get_mut(&doc) else {
            return Ok(());
        };
        let before = std::mem::replace(&mut slot.heads, heads.clone());
        let appended = slot.stored && !new.changes.is_empty();
        let write = if appended {
            let bytes: Vec<u8> = new
                .changes
                .iter()
                .flat_map(|c| c.raw_bytes().iter().copied())
                .collect();
            StorageWrite::Append {
                doc,
                changes: bytes,
                count: new.count,
                heads,
            }
        } else {
            slot.stored = true;
            let snapshot = match &new.snapshot {
                Some(saved) => saved.clone(),
                None => slot.doc_mut().map(|d| d.save()).unwrap_or_default(),
            };
            StorageWrite::NewDocument {
                doc,
                partnership: p,
                kind: slot.kind.clone(),
                snapshot,
                heads,
            }
        };
        self.out.writes.push(write);
        self.settle_attestations(doc);
        let count = new.count;
        let stats = &mut self.conn(id).stats;
        stats.changes_received += count;
        stats.documents_updated += 1;
        self.out.events.push(Event::DocumentUpdated {
            doc,
            partnership: p,
            peer,
            changes: count,
        });
        if is_roster {
            self.wanted.remove(&p);
            self.roster_changed(p);
        } else if appended {
            let forwarded = self.forward(doc, &before, &new.changes, senders);
            self.forwarded.entry(doc).or_default().extend(forwarded);
        }
        Ok(())
    }

    /// Stores the offered attestations that now cover held changes.
    fn settle_attestations(&mut self, doc: DocId) {
        self.check_attestations(doc);
        let Some(slot) = self.docs.get_mut(&doc) else {
            return;
        };
        let Residency::Loaded(d) = &mut slot.residency else {
            return;
        };
        let (added, dropped) = slot.attestations.settle(d);
        if added.is_empty() && dropped.is_empty() {
            return;
        }
        self.out.writes.push(StorageWrite::Attestations {
            doc,
            put: added.iter().map(|a| (a.id(), a.to_bytes())).collect(),
            delete: dropped,
        });
    }

    /// Judges a message's changes for `doc` (see [`provenance`]).
    fn screen(
        &mut self,
        doc: DocId,
        message: &Message,
    ) -> std::result::Result<std::result::Result<provenance::Screened, String>, NotYet> {
        let Some(slot) = self.docs.get(&doc) else {
            return Ok(Ok(provenance::Screened::default()));
        };
        let p = slot.partnership;
        let owner = self
            .partnerships
            .get(&p)
            .and_then(|m| m.notes.get(&doc).copied());
        let Some(rule) = provenance::rule_for(&slot.kind, owner) else {
            return Ok(Err(format!(
                "document {doc} is not one this partnership lists"
            )));
        };
        if rule != accord_model::trust::Rule::Roster && !self.rosters.contains_key(&p) {
            let roster = self
                .docs
                .get_mut(&p.roster_doc())
                .and_then(DocSlot::doc_mut)
                .map(|d| RosterHistory::new(p, d.clone()));
            match roster {
                Some(roster) => {
                    self.rosters.insert(p, roster);
                }
                None => return Err(NotYet::Roster),
            }
        }
        self.check_attestations(doc);
        let Some(slot) = self.docs.get_mut(&doc) else {
            return Ok(Ok(provenance::Screened::default()));
        };
        let attestations = slot.attestations.all();
        let known_refused = slot.refused.clone();
        let Residency::Loaded(current) = &mut slot.residency else {
            return Ok(Ok(provenance::Screened::default()));
        };
        let known = provenance::Known {
            attestations: &attestations,
            pending: &mut slot.pending,
            refused: &known_refused,
        };
        provenance::screen(p, rule, current, message, known, self.rosters.get_mut(&p))
    }

    /// Holds a message that names a roster version we lack, until the roster changes.
    fn park(&mut self, id: ConnId, doc: DocId, bytes: Vec<u8>) -> Result {
        let Some(slot) = self.docs.get_mut(&doc) else {
            return Ok(());
        };
        let held: usize = slot.parked.iter().map(|(_, b)| b.len()).sum();
        if held + bytes.len() > MAX_PARKED_BYTES {
            return refuse(
                ErrorCode::TooLarge,
                format!(
                    "too many changes for document {doc} wait for a roster version we do not have"
                ),
            );
        }
        tracing::debug!(conn = id.0, %doc, "holding changes until their roster version arrives");
        slot.parked.push((id, bytes));
        Ok(())
    }

    /// The roster changed: re-read membership, and judge the messages that waited for it.
    fn roster_changed(&mut self, p: PartnershipId) {
        self.rosters.remove(&p);
        self.refresh_membership(p);
        let docs: Vec<DocId> = self
            .docs
            .iter()
            .filter(|(_, s)| s.partnership == p && !s.parked.is_empty())
            .map(|(d, _)| *d)
            .collect();
        for doc in docs {
            let parked = self
                .docs
                .get_mut(&doc)
                .map(|s| std::mem::take(&mut s.parked))
                .unwrap_or_default();
            for (id, bytes) in parked {
                if !self.conns.contains_key(&id) {
                    continue;
                }
                if let Err((code, text)) = self.apply_message(id, doc, bytes) {
                    self.fail(id, code, text);
                }
            }
        }
    }

    /// What a refusal was judged on, for `ACCORD_LOG=debug`: the message's
    /// changes, the attestations known, our heads.
    fn explain_refusal(
        &mut self,
        doc: DocId,
        message: &Message,
        refused: &[(ChangeHash, Option<OrgKey>, accord_model::trust::Refusal)],
    ) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let Some(slot) = self.docs.get_mut(&doc) else {
            return;
        };
        let attestations: Vec<String> = slot
            .attestations
            .all()
            .iter()
            .map(|a| format!("{}:{:?}", a.org.fingerprint(), a.heads))
            .collect();
        let pending: Vec<ChangeHash> = slot.pending.iter().map(|c| c.hash()).collect();
        let ours = slot.doc_mut().map(|d| d.get_heads()).unwrap_or_default();
        let changes: Vec<String> = crate::provenance::change_summaries(message);
        let refused: Vec<ChangeHash> = refused.iter().map(|(h, _, _)| *h).collect();
        tracing::debug!(%doc, ?refused, ?changes, ?pending, ?attestations, ?ours, "judged and refused");
    }

    /// Records, logs and reports refused changes; the sender hears why.
    fn report_refusals(
        &mut self,
        id: ConnId,
        doc: DocId,
        peer: OrgKey,
        refused: &[(ChangeHash, Option<OrgKey>, accord_model::trust::Refusal)],
    ) {
        let first = &refused[0].2;
        let reason = format!(
            "{} change(s) to document {doc} refused: {first}",
            refused.len()
        );
        tracing::warn!(conn = id.0, peer = %peer.fingerprint(), %doc, refused = refused.len(), code = first.code(), "refused changes");
        for (hash, author, why) in refused {
            self.out.writes.push(StorageWrite::Refusal {
                doc,
                change: hash.0,
                author: *author,
                peer,
                reason: why.code().to_owned(),
            });
        }
        self.out.events.push(Event::ChangesRefused {
            conn: id,
            doc,
            peer,
            changes: refused.len() as u64,
            reason: reason.clone(),
        });
        self.send(
            id,
            &Frame::Refused {
                doc: *doc.as_bytes(),
                changes: refused.len() as u32,
                reason: reason.chars().take(MAX_TEXT).collect(),
                hashes: refused
                    .iter()
                    .take(crate::wire::MAX_LIST)
                    .map(|(h, _, _)| h.0)
                    .collect(),
            },
        );
    }

    fn on_attest(&mut self, id: ConnId, doc: DocId, list: Vec<serde_bytes::ByteBuf>) -> Result {
        if list.len() > provenance::MAX_OFFERED {
            return refuse(ErrorCode::TooLarge, "too many attestations in one frame");
        }
        tracing::debug!(conn = id.0, %doc, count = list.len(), "attestations in");
        let placed = self.docs.get(&doc).is_some_and(|slot| {
            self.conns
                .get(&id)
                .is_some_and(|c| c.shared.contains(&slot.partnership))
        });
        if !placed {
            // They come first, for a snapshot that may also arrive before we
            // can place its document (see `hold_early`): keep them with it.
            let conn = self.conn(id);
            let held: usize = conn.early_attestations.values().map(Vec::len).sum();
            if !conn.shared.is_empty() && held + list.len() <= 4 * provenance::MAX_OFFERED {
                conn.early_attestations.entry(doc).or_default().extend(list);
            }
            return Ok(());
        }
        let Some(slot) = self.docs.get_mut(&doc) else {
            return Ok(());
        };
        for bytes in list {
            let attestation = Attestation::from_bytes(&bytes)
                .map_err(|e| (ErrorCode::Protocol, e.to_string()))?;
            if let Err(e) = slot.attestations.offer(doc, attestation, id) {
                self.invalid_attestation(id, doc, &e);
                return Ok(());
            }
        }
        Ok(())
    }

    /// Checks the signatures of the attestations offered for `doc` since
    /// they were last needed (see `Attestations::check_offered`).
    fn check_attestations(&mut self, doc: DocId) {
        let Some(slot) = self.docs.get_mut(&doc) else {
            return;
        };
        for (id, e) in slot.attestations.check_offered() {
            self.invalid_attestation(id, doc, &e);
        }
    }

    /// An attestation that is not valid is its sender's doing: it is
    /// dropped, logged and reported, and the connection carries on.
    fn invalid_attestation(&mut self, id: ConnId, doc: DocId, error: &str) {
        tracing::warn!(conn = id.0, %doc, %error, "ignoring an invalid attestation");
        let Some((peer, _)) = self.conns.get(&id).and_then(Conn::peer) else {
            return;
        };
        self.out.events.push(Event::ChangesRefused {
            conn: id,
            doc,
            peer,
            changes: 0,
            reason: format!("invalid attestation: {error}"),
        });
    }

    /// Throws away refused content of `doc` (brought by `culprit`): a stored
    /// document is reloaded from the replica, one never stored starts empty
    /// again, and every other connection syncing it starts afresh.
    fn reset_document(&mut self, culprit: ConnId, doc: DocId) {
        let Some(slot) = self.docs.get_mut(&doc) else {
            return;
        };
        if slot.stored {
            slot.unload();
        } else {
            *slot = DocSlot::empty(slot.partnership, slot.kind.clone());
        }
        let others: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(c, conn)| **c != culprit && conn.docs.contains_key(&doc))
            .map(|(c, _)| *c)
            .collect();
        if let Some(conn) = self.conns.get_mut(&culprit) {
            conn.docs.remove(&doc);
            conn.snapshots.remove(&doc);
        }
        for id in others {
            let conn = self.conn(id);
            conn.docs.insert(doc, Some(State::new()));
            conn.snapshots.remove(&doc);
            self.pump(id, doc);
        }
    }

    /// Sends a sync message for `doc` on `id` if Automerge has something to say.
    fn pump(&mut self, id: ConnId, doc: DocId) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let Some((peer, _)) = conn.peer() else { return };
        // Until the peer answers our snapshot there is nothing to add: its
        // answer (our heads, or more) decides what comes next.
        if !conn.docs.contains_key(&doc) || conn.snapshots.contains(&doc) {
            return;
        }
        let Some(slot) = self.docs.get_mut(&doc) else {
            return;
        };
        if slot.doc_mut().is_none() {
            slot.waiting.insert(id);
            self.request_load(doc);
            return;
        }
        if self.peer_lacks(id, doc) {
            self.send_snapshot(id, doc);
            return;
        }
        let mut state = self.take_state(id, doc, peer);
        if self.refused_as_is(id, doc, &state) {
            tracing::debug!(conn = id.0, %doc, "not resending a document the peer refused whole");
            self.conn(id).docs.insert(doc, Some(state));
            return;
        }
        let Some(slot) = self.docs.get_mut(&doc) else {
            return;
        };
        let waiting_for = missing_deps_of_pending(slot);
        let Some(d) = slot.doc_mut() else {
            return;
        };
        let mut message = d.sync().generate_sync_message(&mut state);
        if let Some(m) = message.as_mut() {
            // Changes waiting in `pending` are invisible to Automerge, which
            // would ask for them again rather than for what they wait on
            // (and the peer, having sent them, would never send them again).
            // (Automerge encodes hash lists sorted.)
            if !waiting_for.is_empty() {
                m.need.extend(waiting_for);
                m.need.sort();
                m.need.dedup();
            }
        }
        self.conn(id).docs.insert(doc, Some(state));
        if let Some(message) = message {
            if !message.changes.is_empty() {
                self.send_attestations(id, doc);
            }
            self.conn(id).stats.changes_sent += message.changes.len() as u64;
            tracing::debug!(conn = id.0, %doc, heads = ?message.heads, need = ?message.need, changes = message.changes.len(), "sync message out");
            for frame in sync_frames(*doc.as_bytes(), message.encode()) {
                self.send(id, &frame);
            }
        }
    }

    /// When a peer that holds none of `doc` refuses what we sent of it,
    /// remembers our heads then (see [`Engine::refused_as_is`]).
    fn note_refused_whole(&mut self, id: ConnId, doc: DocId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(Some(state)) = conn.docs.get(&doc) else {
            return;
        };
        // (Automerge forgets what it sent when the peer says it holds
        // nothing: a refusal repeated after that is of what we last sent.)
        if state.their_heads.as_ref().is_none_or(Vec::is_empty) && !state.last_sent_heads.is_empty()
        {
            let sent = state.last_sent_heads.clone();
            conn.refused_whole.insert(doc, sent);
        }
    }

    /// Whether the peer still holds none of `doc` and refused it when it
    /// was as it is now. Automerge answers empty heads ("I lost my data")
    /// by sending the whole document again, so without this a peer that
    /// can accept none of it (or a hostile one that says so) would have
    /// us send it for every message: once our heads move on, it is
    /// offered again.
    fn refused_as_is(&self, id: ConnId, doc: DocId, state: &State) -> bool {
        let (Some(conn), Some(slot)) = (self.conns.get(&id), self.docs.get(&doc)) else {
            return false;
        };
        state.their_heads.as_ref().is_some_and(Vec::is_empty)
            && conn
                .refused_whole
                .get(&doc)
                .is_some_and(|heads| same_heads(heads, &slot.heads))
    }

    /// Whether sync of `doc` on this connection has not started and the
    /// peer's document list says it holds none of it. Such a peer gets a
    /// snapshot: Automerge's own first messages would carry a Bloom filter
    /// over every change (twice), several times the size of the document.
    fn peer_lacks(&self, id: ConnId, doc: DocId) -> bool {
        let (Some(conn), Some(slot)) = (self.conns.get(&id), self.docs.get(&doc)) else {
            return false;
        };
        if !matches!(conn.docs.get(&doc), Some(None)) || !slot.stored || slot.heads.is_empty() {
            return false;
        }
        conn.their_lists.get(&slot.partnership).is_some_and(|list| {
            list.iter()
                .find(|e| e.id == *doc.as_bytes())
                .is_none_or(|e| e.heads.is_empty())
        })
    }

    /// Sends `doc` whole, as one Automerge sync message: the saved document,
    /// our heads, and a `have` that says we hold those heads and nothing
    /// since (an empty Bloom filter), so the peer sends back only what it
    /// holds beyond them. It is an ordinary sync message to the peer: its
    /// attestations travel first and it is judged before it is applied.
    /// The peer answers with its heads; until then, see
    /// `sent_before_our_snapshot`.
    fn send_snapshot(&mut self, id: ConnId, doc: DocId) {
        let Some((heads, saved)) = self.docs.get_mut(&doc).and_then(DocSlot::saved) else {
            return;
        };
        self.send_whole(id, doc, heads, saved.to_vec());
    }

    /// Sends `saved` (a saved document whose heads are `heads`) as a snapshot.
    fn send_whole(&mut self, id: ConnId, doc: DocId, mut heads: Vec<ChangeHash>, saved: Vec<u8>) {
        if !self.conns.contains_key(&id) {
            return;
        }
        // Automerge encodes hash lists sorted (and the replica's may not be).
        heads.sort();
        let message = Message {
            heads: heads.clone(),
            need: Vec::new(),
            have: vec![Have {
                last_sync: heads.clone(),
                bloom: BloomFilter::default(),
            }],
            changes: saved.into(),
            flags: Some(our_flags()),
            version: MessageVersion::V2,
        };
        // Nothing is known of the peer yet (`shared_heads` stays empty until
        // it confirms); we have spoken and wait for its answer.
        let state = State {
            last_sent_heads: heads,
            have_responded: true,
            in_flight: true,
            ..State::new()
        };
        self.send_attestations(id, doc);
        let conn = self.conn(id);
        conn.docs.insert(doc, Some(state));
        conn.snapshots.insert(doc);
        conn.stats.changes_sent += 1;
        tracing::debug!(conn = id.0, %doc, "sending a snapshot to a peer that holds none of the document");
        for frame in sync_frames(*doc.as_bytes(), message.encode()) {
            self.send(id, &frame);
        }
    }

    /// Sends the peer the attestations of `doc` it has not had from us, so
    /// they arrive before the changes they cover.
    fn send_attestations(&mut self, id: ConnId, doc: DocId) {
        self.send_attestations_with(id, doc, &[], &mut AttestFrames::default());
    }

    /// Sends the document's attestations this connection has not been sent,
    /// and those of `offered` (offered to us, not yet held), encoding each
    /// set of them once for every connection `built` serves.
    fn send_attestations_with(
        &mut self,
        id: ConnId,
        doc: DocId,
        offered: &[[u8; 32]],
        built: &mut AttestFrames,
    ) {
        let (Some(slot), Some(conn)) = (self.docs.get(&doc), self.conns.get(&id)) else {
            return;
        };
        let mut fresh = unsent(conn, doc, slot.attestations.held.keys());
        if !offered.is_empty() {
            fresh.extend(unsent(conn, doc, offered.iter()));
            fresh.sort_unstable();
            fresh.dedup();
        }
        self.send_attestation_frames(id, doc, fresh, built);
    }

    /// Sends the peer on `id` the attestations `fresh` of `doc` (held or
    /// offered, none sent to it yet); `built` caches the frames by the set
    /// of keys sent.
    fn send_attestation_frames(
        &mut self,
        id: ConnId,
        doc: DocId,
        fresh: Vec<[u8; 32]>,
        built: &mut AttestFrames,
    ) {
        let Some(slot) = self.docs.get(&doc) else {
            return;
        };
        if fresh.is_empty() {
            return;
        }
        let frames = built
            .entry(fresh.clone())
            .or_insert_with(|| attest_frames(doc, slot, &fresh))
            .clone();
        for bytes in frames {
            self.send_encoded(id, bytes);
        }
        let (Some(slot), Some(conn)) = (self.docs.get(&doc), self.conns.get_mut(&id)) else {
            return;
        };
        let sent = conn.attested.entry(doc).or_default();
        sent.extend(fresh);
        // A key the document no longer holds or is offered (superseded by a
        // newer attestation of the same organisation) is never sent again
        // unless a peer offers it anew, and then sending it twice is harmless.
        let kept = &slot.attestations;
        sent.retain(|key| kept.held.contains_key(key) || kept.offered.contains_key(key));
    }

    /// The connection's sync state for `doc`, starting from the state saved
    /// for this peer when there is one.
    ///
    /// A state this connection released (see `release_settled`) resumes
    /// whole. Any other is taken as persisted, what the peer was last known
    /// to hold: what we said on another connection (`last_sent_heads`,
    /// `sent_hashes`, ...) was never said on this one. Taken whole, it made
    /// a second connection to the same peer (a reconnect racing the old
    /// one's close) stay silent, sure the peer already had our heads.
    fn take_state(&mut self, id: ConnId, doc: DocId, peer: OrgKey) -> State {
        if let Some(Some(state)) = self.conn(id).docs.get_mut(&doc).map(Option::take) {
            return state;
        }
        if let Some(state) = self.resume_released(id, doc, peer) {
            return state;
        }
        match self.docs.get(&doc).and_then(|s| s.saved_states.get(&peer)) {
            Some((_, state)) => State::decode(&state.encode()).unwrap_or_default(),
            None => State::default(),
        }
    }

    /// Takes back the sync state this connection released for `doc` (see
    /// `released_state`), moved rather than copied: a relay does this for
    /// every subscriber on every edit. What stays behind for any other
    /// connection to `peer` is what is persisted of it (the shared heads),
    /// all that such a connection was ever given (see `take_state`).
    fn resume_released(&mut self, id: ConnId, doc: DocId, peer: OrgKey) -> Option<State> {
        let (released_by, state) = self.docs.get_mut(&doc)?.saved_states.get_mut(&peer)?;
        if *released_by != Some(id) {
            return None;
        }
        let mut persisted = State::new();
        persisted.shared_heads.clone_from(&state.shared_heads);
        *released_by = None;
        Some(std::mem::replace(state, persisted))
    }

    /// The sync state for `doc` this connection left in memory when its
    /// conversation with `peer` settled (see `release_settled`): only the
    /// connection that released it may carry on from it whole.
    fn released_state(&self, id: ConnId, doc: DocId, peer: OrgKey) -> Option<&State> {
        match self.docs.get(&doc)?.saved_states.get(&peer)? {
            (Some(released_by), state) if *released_by == id => Some(state),
            _ => None,
        }
    }

    /// Offers a changed document to every connection that may have it;
    /// returns the connections offered it.
    fn push_to_peers(&mut self, doc: DocId) -> Vec<ConnId> {
        let Some(p) = self.docs.get(&doc).map(|s| s.partnership) else {
            return Vec::new();
        };
        if !self.listed(p, doc) {
            return Vec::new();
        }
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.shared.contains(&p))
            .map(|(id, _)| *id)
            .collect();
        let forwarded = self.forwarded.remove(&doc).unwrap_or_default();
        for &id in &ids {
            if forwarded.contains(&id) {
                continue;
            }
            if !self.conn(id).docs.contains_key(&doc) {
                self.announce(id, p, doc);
                if self.start_from_early(id, doc) {
                    continue;
                }
                self.conn(id).docs.insert(doc, None);
            }
            self.conn(id).in_sync = false;
            self.pump(id, doc);
        }
        ids
    }

    /// Tells a peer that `doc` exists, unless its list already named it: a
    /// peer creates a document only from a `Documents` entry, never from a
    /// bare sync message.
    fn announce(&mut self, id: ConnId, p: PartnershipId, doc: DocId) {
        let known = self
            .conn(id)
            .their_lists
            .get(&p)
            .is_some_and(|list| list.iter().any(|e| e.id == *doc.as_bytes()));
        let Some(slot) = self.docs.get(&doc) else {
            return;
        };
        if known || !slot.stored {
            return;
        }
        let entry = DocEntry {
            id: *doc.as_bytes(),
            kind: slot.kind.clone(),
            heads: slot.heads.iter().map(|h| h.0).collect(),
        };
        self.send(
            id,
            &Frame::Documents {
                partnership: *p.as_bytes(),
                docs: vec![entry],
            },
        );
    }

    /// Starts syncing every document of `p` that differs between us and the peer's list.
    fn start_syncs(&mut self, id: ConnId, p: PartnershipId) {
        let theirs: BTreeMap<DocId, DocEntry> = self
            .conn(id)
            .their_lists
            .get(&p)
            .map(|list| {
                list.iter()
                    .map(|e| (DocId::from_bytes(e.id), e.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut candidates: BTreeSet<DocId> = self
            .docs
            .iter()
            .filter(|(_, s)| s.partnership == p)
            .map(|(d, _)| *d)
            .collect();
        candidates.extend(theirs.keys().copied());
        for doc in candidates {
            if self.conn(id).docs.contains_key(&doc) || !self.listed(p, doc) {
                continue;
            }
            let their_heads: Option<Vec<ChangeHash>> = theirs
                .get(&doc)
                .map(|e| e.heads.iter().map(|h| ChangeHash(*h)).collect());
            // A snapshot the peer sent early waits for our answer even
            // when we hold the same heads by now.
            let early = self.conn(id).early.contains_key(&doc);
            match self.docs.get(&doc) {
                Some(slot)
                    if !early
                        && their_heads
                            .as_ref()
                            .is_some_and(|h| same_heads(h, &slot.heads)) =>
                {
                    continue;
                }
                // A placeholder another peer is still filling: offered once stored.
                Some(slot) if !early && !slot.stored && their_heads.is_none() => continue,
                Some(_) => {}
                None => {
                    let Some(entry) = theirs.get(&doc) else {
                        continue;
                    };
                    self.docs.insert(doc, DocSlot::empty(p, entry.kind.clone()));
                }
            }
            if !theirs.contains_key(&doc) {
                self.announce(id, p, doc);
            }
            if self.start_from_early(id, doc) {
                continue;
            }
            self.conn(id).docs.insert(doc, None);
            self.pump(id, doc);
        }
    }

    fn refresh_membership(&mut self, p: PartnershipId) {
        let Some(d) = self
            .docs
            .get_mut(&p.roster_doc())
            .and_then(DocSlot::doc_mut)
        else {
            return;
        };
        let Some(membership) = Membership::from_roster(p, d) else {
            tracing::warn!(partnership = %p, "the roster is not valid; keeping the previous membership");
            return;
        };
        self.partnerships.insert(p, membership);
        self.wanted.remove(&p);
        // Newly catalogued documents, or newly admitted members, may now sync.
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            if self.conn(id).peer().is_none() {
                continue;
            }
            if self.conn(id).shared.contains(&p) {
                if !self.may_share(id, p) {
                    self.revoke(id, p);
                    continue;
                }
                self.start_syncs(id, p);
            } else if self.may_share(id, p) && self.conn(id).summary_received {
                self.conn(id).shared.insert(p);
                self.send_list(id, p);
            }
        }
    }

    /// A member removed from the roster stops receiving the partnership at once.
    fn revoke(&mut self, id: ConnId, p: PartnershipId) {
        let docs: Vec<DocId> = self
            .docs
            .iter()
            .filter(|(_, s)| s.partnership == p)
            .map(|(d, _)| *d)
            .collect();
        let conn = self.conn(id);
        conn.shared.remove(&p);
        for doc in docs {
            conn.docs.remove(&doc);
            conn.snapshots.remove(&doc);
        }
    }

    // ---- rules ------------------------------------------------------------

    /// Whether this connection's peer may read and write partnership `p`.
    fn may_share(&self, id: ConnId, p: PartnershipId) -> bool {
        let Some(conn) = self.conns.get(&id) else {
            return false;
        };
        let Some((peer, _)) = conn.peer() else {
            return false;
        };
        match self.partnerships.get(&p) {
            Some(m) => {
                m.is_member(&peer)
                    || (conn.is_trusted_relay() && self.config.role == PeerRole::Node)
            }
            None => self.wanted.contains(&p),
        }
    }

    /// Whether `peer` may bring a partnership this relay does not host yet.
    fn may_create(&self, peer: OrgKey) -> bool {
        self.config.role == PeerRole::Relay
            && self.config.allowed_creators.as_ref().is_none_or(|allowed| {
                allowed
                    .iter()
                    .any(|fp| peer.fingerprint().matches_prefix(fp))
            })
    }

    /// A new partnership is accepted only from its creator (the id proves who that is).
    fn may_create_as(&self, peer: OrgKey, creator: &OrgKey) -> bool {
        self.may_create(peer) && &peer == creator
    }

    /// Whether `doc` belongs to `p` by the roster: the roster itself, a
    /// catalogued agreement, or a member's notes.
    fn listed(&self, p: PartnershipId, doc: DocId) -> bool {
        doc == p.roster_doc()
            || self
                .partnerships
                .get(&p)
                .is_some_and(|m| m.catalogue.contains(&doc) || m.notes.contains_key(&doc))
    }

    fn digest(&self, p: PartnershipId) -> [u8; 32] {
        digest(
            self.docs
                .iter()
                .filter(|(_, s)| s.partnership == p && s.stored),
        )
    }

    // ---- sending ------------------------------------------------------------

    fn send_summary(&mut self, id: ConnId) {
        let held: Vec<PartnershipId> = self
            .partnerships
            .keys()
            .copied()
            .filter(|p| self.may_share(id, *p))
            .collect();
        let mut partnerships: Vec<([u8; 16], Option<[u8; 32]>)> = held
            .iter()
            .map(|p| (*p.as_bytes(), Some(self.digest(*p))))
            .collect();
        // Partnerships we wait for are asked of peers we chose to dial (the
        // inviter or the relay), never told to whoever dials us.
        if self.conns.get(&id).is_some_and(|c| c.dialed) {
            partnerships.extend(self.wanted.iter().map(|p| (*p.as_bytes(), None)));
        }
        self.send(id, &Frame::Summary { partnerships });
    }

    fn send_list(&mut self, id: ConnId, p: PartnershipId) {
        let docs: Vec<DocEntry> = self
            .docs
            .iter()
            .filter(|(d, s)| s.partnership == p && s.stored && self.listed(p, **d))
            .map(|(d, s)| DocEntry {
                id: *d.as_bytes(),
                kind: s.kind.clone(),
                heads: s.heads.iter().map(|h| h.0).collect(),
            })
            .collect();
        let conn = self.conn(id);
        conn.lists_sent.insert(p);
        if !conn.their_lists.contains_key(&p) {
            conn.awaiting_lists.insert(p);
        }
        self.send(
            id,
            &Frame::Documents {
                partnership: *p.as_bytes(),
                docs,
            },
        );
    }

    fn send(&mut self, id: ConnId, frame: &Frame) {
        self.send_encoded(id, frame.encode());
    }

    /// Sends a frame encoded once for many connections.
    fn send_encoded(&mut self, id: ConnId, bytes: Vec<u8>) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.stats.frames_sent += 1;
            conn.stats.bytes_sent += bytes.len() as u64;
        }
        self.out.send.push((id, bytes));
    }

    /// Reports in-sync once every shared document has identical heads on both sides.
    fn check_in_sync(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let Some((peer, _)) = conn.peer() else { return };
        if conn.in_sync
            || !conn.summary_received
            || !conn.summary_answered
            || !conn.awaiting_lists.is_empty()
            || conn.reassembly.is_some()
        {
            return;
        }
        let mut pending: Vec<(DocId, Vec<ChangeHash>)> = Vec::new();
        let settled = conn.docs.iter().all(|(doc, state)| {
            let Some(slot) = self.docs.get(doc) else {
                return true;
            };
            match state.as_ref().and_then(|s| s.their_heads.as_ref()) {
                Some(h) if same_heads(h, &slot.heads) => true,
                Some(h) if !slot.refused.is_empty() => {
                    pending.push((*doc, h.clone()));
                    true
                }
                _ => false,
            }
        });
        // Heads that differ only by changes one side refused are settled too.
        let settled = settled
            && pending
                .into_iter()
                .all(|(doc, theirs)| self.differs_only_by_refused(doc, &theirs));
        if !settled {
            return;
        }
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let states: Vec<(DocId, Vec<u8>)> = conn
            .docs
            .iter()
            .filter_map(|(d, s)| s.as_ref().map(|s| (*d, s.encode())))
            .collect();
        for (doc, state) in states {
            self.out
                .writes
                .push(StorageWrite::SyncState { doc, peer, state });
        }
        let conn = self.conn(id);
        conn.in_sync = true;
        let stats = conn.stats.clone();
        self.out.events.push(Event::InSync {
            conn: id,
            peer,
            stats,
        });
        self.release_settled(id, peer);
    }

    /// Whether everything we hold beyond `theirs` is refused, and we hold all of `theirs`.
    fn differs_only_by_refused(&mut self, doc: DocId, theirs: &[ChangeHash]) -> bool {
        let Some(slot) = self.docs.get_mut(&doc) else {
            return true;
        };
        let refused = slot.refused.clone();
        let Some(d) = slot.doc_mut() else {
            return false;
        };
        theirs
            .iter()
            .all(|h| d.get_change_meta_by_hash(h).is_some())
            && d.get_changes_meta(theirs)
                .iter()
                .all(|m| refused.contains_key(&m.hash))
    }

    /// A peer refused some of our changes: remember which, so we stop
    /// waiting for it to hold them.
    fn peer_refused(&mut self, doc: DocId, hashes: &[[u8; 32]]) {
        let Some(slot) = self.docs.get_mut(&doc) else {
            return;
        };
        let Some(d) = slot.doc_mut() else {
            return;
        };
        let known: BTreeMap<ChangeHash, Vec<ChangeHash>> = hashes
            .iter()
            .filter_map(|h| {
                let h = ChangeHash(*h);
                d.get_change_meta_by_hash(&h).map(|m| (h, m.deps.clone()))
            })
            .collect();
        remember_refused(slot, known);
    }

    /// Once a connection is in sync, its per-document states are saved (in
    /// the replica, and in memory for loaded documents) and dropped from the
    /// connection, and documents no connection is syncing are unloaded: a
    /// long-lived connection (a relay's) holds no document in memory while
    /// nothing changes. The next change reloads what it needs.
    fn release_settled(&mut self, id: ConnId, peer: OrgKey) {
        let settled = std::mem::take(&mut self.conn(id).docs);
        self.conn(id).snapshots.clear();
        let docs: Vec<DocId> = settled.keys().copied().collect();
        for (doc, state) in settled {
            if let (Some(slot), Some(state)) = (self.docs.get_mut(&doc), state) {
                // The peer's list is from before this sync: what it holds now
                // is what it last told us (else the next change would go as a
                // snapshot again, see `peer_lacks`).
                if let Some(heads) = state.their_heads.as_ref().filter(|h| !h.is_empty())
                    && let Some(list) = self
                        .conns
                        .get_mut(&id)
                        .and_then(|c| c.their_lists.get_mut(&slot.partnership))
                {
                    let heads = heads.iter().map(|h| h.0).collect();
                    match list.iter_mut().find(|e| e.id == *doc.as_bytes()) {
                        Some(entry) => entry.heads = heads,
                        None => list.push(DocEntry {
                            id: *doc.as_bytes(),
                            kind: slot.kind.clone(),
                            heads,
                        }),
                    }
                }
                slot.saved_states.insert(peer, (Some(id), state));
            }
        }
        let now = self.now;
        for doc in docs {
            if let Some(slot) = self.docs.get_mut(&doc) {
                slot.settled_at = now;
            }
            self.unload_if_unused(doc);
        }
    }

    fn unload_if_unused(&mut self, doc: DocId) {
        let in_use = self.conns.values().any(|c| c.docs.contains_key(&doc));
        let Some(slot) = self.docs.get_mut(&doc) else {
            return;
        };
        let idle =
            slot.inbox.is_empty() && slot.waiting.is_empty() && !self.inbound.contains_key(&doc);
        let is_roster = doc == slot.partnership.roster_doc();
        let warm = self.now.saturating_sub(slot.settled_at) < self.config.keep_loaded_ms;
        if in_use
            || !idle
            || warm
            || is_roster
            || !slot.stored
            || !matches!(slot.residency, Residency::Loaded(_))
        {
            return;
        }
        slot.unload();
        slot.saved_states.clear();
    }

    fn request_load(&mut self, doc: DocId) {
        if let Some(slot) = self.docs.get_mut(&doc)
            && matches!(slot.residency, Residency::Unloaded)
        {
            slot.residency = Residency::Loading;
            self.out.load.push(doc);
        }
    }

    // ---- closing --------------------------------------------------------------

    /// Tells the peer why, then closes: the error stays with this connection.
    fn fail(&mut self, id: ConnId, code: ErrorCode, message: String) {
        tracing::warn!(conn = id.0, ?code, %message, "closing connection");
        let message: String = message.chars().take(MAX_TEXT).collect();
        self.send(
            id,
            &Frame::Error {
                code,
                message: message.clone(),
            },
        );
        self.out.events.push(Event::Refused {
            conn: id,
            code,
            message,
        });
        self.close(id);
    }

    fn close(&mut self, id: ConnId) {
        self.out.close.push(id);
        self.drop_conn(id);
    }

    fn drop_conn(&mut self, id: ConnId) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        self.out.events.push(Event::Closed { conn: id });
        let Some((peer, _)) = conn.peer() else { return };
        for (doc, state) in conn.docs {
            if let Some(state) = state.filter(|s| !s.shared_heads.is_empty()) {
                self.out.writes.push(StorageWrite::SyncState {
                    doc,
                    peer,
                    state: state.encode(),
                });
            }
        }
    }

    fn conn(&mut self, id: ConnId) -> &mut Conn {
        self.conns.get_mut(&id).expect("connection exists")
    }

    fn peer_of(&self, id: ConnId) -> OrgKey {
        self.conns
            .get(&id)
            .and_then(Conn::peer)
            .map(|(p, _)| p)
            .expect("connection is authenticated")
    }
}

/// The dependencies of changes waiting in `slot.pending` that we hold
/// neither in the document nor among the waiting changes.
fn missing_deps_of_pending(slot: &mut DocSlot) -> Vec<ChangeHash> {
    if slot.pending.is_empty() {
        return Vec::new();
    }
    let waiting: BTreeSet<ChangeHash> = slot.pending.iter().map(|c| c.hash()).collect();
    let deps: BTreeSet<ChangeHash> = slot
        .pending
        .iter()
        .flat_map(|c| c.deps().to_vec())
        .filter(|h| !waiting.contains(h))
        .collect();
    let Some(d) = slot.doc_mut() else {
        return Vec::new();
    };
    deps.into_iter()
        .filter(|h| d.get_change_meta_by_hash(h).is_none())
        .collect()
}

/// Encoded `Attest` frames by the attestations they carry (see
/// `send_attestations_with`).
type AttestFrames = BTreeMap<Vec<[u8; 32]>, Vec<Vec<u8>>>;

/// Of the attestation `keys` of `doc`, those not yet sent on `conn`.
fn unsent<'k>(conn: &Conn, doc: DocId, keys: impl Iterator<Item = &'k [u8; 32]>) -> Vec<[u8; 32]> {
    let sent = conn.attested.get(&doc);
    keys.filter(|key| !sent.is_some_and(|s| s.contains(*key)))
        .copied()
        .collect()
}

/// The `Attest` frames offering the attestations `keys` of `doc`.
fn attest_frames(doc: DocId, slot: &DocSlot, keys: &[[u8; 32]]) -> Vec<Vec<u8>> {
    keys.chunks(provenance::MAX_OFFERED)
        .map(|batch| {
            Frame::Attest {
                doc: *doc.as_bytes(),
                attestations: batch
                    .iter()
                    .filter_map(|key| {
                        let a = &slot.attestations;
                        a.held.get(key).or_else(|| a.offered.get(key))
                    })
                    .map(|a| serde_bytes::ByteBuf::from(a.to_bytes()))
                    .collect(),
            }
            .encode()
        })
        .collect()
}

/// The flags of the sync messages we build ourselves: what Automerge's own
/// messages say of us (we understand `SyncReset`).
fn our_flags() -> MessageFlags {
    let mut flags = MessageFlags::new();
    flags.set(MessageFlags::SUPPORTS_SYNC_RESET);
    flags
}

fn same_heads(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    // Nearly always one head each, in the same order: no copies then.
    if a.len() != b.len() {
        return false;
    }
    if a == b {
        return true;
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}
