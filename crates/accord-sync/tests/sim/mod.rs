//! A deterministic whole-system simulation of Accord sync.
//!
//! Nodes (organisations) and an optional relay each run a real [`Engine`]
//! over an in-memory store that applies [`StorageWrite`]s the way a real
//! replica would. A simulated network with a virtual clock carries frames:
//! each connection is an ordered stream (never reordered or dropped within
//! itself; loss is modelled as the connection dying), while latency makes
//! frames of different connections interleave in any order. Everything
//! random comes from one seeded [`Rng`], so a seed replays exactly.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

use accord_identity::{OrgKey, OrgSecret};
use accord_model::trust::Attestation;
use accord_model::{
    Agreement, AgreementView, DocId, DocKind, PartnershipId, Role, Roster, RosterView,
    new_document_actor,
};
use accord_sync::wire::{Frame, MAX_FRAME};
use accord_sync::{ConnId, Engine, EngineConfig, Event, Input, Outputs, PeerRole, StorageWrite};
use automerge::{ActorId, AutoCommit, ChangeHash, ReadDoc};
use sha2::{Digest, Sha256};

// ---- randomness -----------------------------------------------------------

/// SplitMix64: small, fast, and the same on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    pub fn below_usize(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.below_usize(items.len())])
        }
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below_usize(i + 1);
            items.swap(i, j);
        }
    }

    pub fn word(&mut self) -> String {
        const WORDS: &[&str] = &[
            "partner",
            "trust",
            "funding",
            "youth",
            "café",
            "meeting",
            "review",
            "share",
            "équipe",
            "volunteer",
            "report",
            "budget",
            "🤝",
            "agree",
            "plan",
            "care",
        ];
        WORDS[self.below_usize(WORDS.len())].to_owned()
    }

    pub fn sentence(&mut self) -> String {
        let n = self.range(1, 8);
        (0..n).map(|_| self.word()).collect::<Vec<_>>().join(" ")
    }
}

// ---- storage --------------------------------------------------------------

/// One stored document: a snapshot plus a log of change chunks, as the replica keeps it.
#[derive(Clone, Debug)]
pub struct StoredDoc {
    pub partnership: PartnershipId,
    pub kind: String,
    pub snapshot: Vec<u8>,
    pub log: Vec<Vec<u8>>,
    /// Heads as the last write recorded them.
    pub heads: Vec<ChangeHash>,
    /// Attestations by id (encoded), as the replica's table keeps them.
    pub attestations: BTreeMap<[u8; 32], Vec<u8>>,
}

/// Log entries a stored document may collect before it is compacted.
pub const COMPACT_AFTER: usize = 16;

/// The durable part of a node: survives crashes.
#[derive(Default, Debug)]
pub struct Store {
    pub docs: BTreeMap<DocId, StoredDoc>,
    pub sync_states: BTreeMap<(DocId, OrgKey), Vec<u8>>,
    /// Changes refused, with the reason code.
    pub refusals: Vec<(DocId, String)>,
    /// Reload each document after an engine write and compare its heads with the write's.
    pub verify_writes: bool,
}

pub fn sorted(heads: &[ChangeHash]) -> Vec<ChangeHash> {
    let mut h = heads.to_vec();
    h.sort();
    h
}

impl Store {
    /// Applies one engine write exactly as a replica would; an impossible write is an error.
    pub fn apply(&mut self, write: StorageWrite) -> Result<(), String> {
        match write {
            StorageWrite::NewDocument {
                doc,
                partnership,
                kind,
                snapshot,
                heads,
            } => {
                if self.docs.contains_key(&doc) {
                    return Err(format!("NewDocument for {doc}, which is already stored"));
                }
                self.docs.insert(
                    doc,
                    StoredDoc {
                        partnership,
                        kind,
                        snapshot,
                        log: Vec::new(),
                        heads: heads.clone(),
                        attestations: BTreeMap::new(),
                    },
                );
                self.check(doc, &heads)
            }
            StorageWrite::Append {
                doc,
                changes,
                count,
                heads,
            } => {
                let Some(stored) = self.docs.get_mut(&doc) else {
                    return Err(format!("Append to {doc}, which is not stored"));
                };
                if count == 0 || changes.is_empty() {
                    return Err(format!("empty Append to {doc}"));
                }
                stored.log.push(changes);
                stored.heads = heads.clone();
                self.compact(doc);
                self.check(doc, &heads)
            }
            StorageWrite::SyncState { doc, peer, state } => {
                self.sync_states.insert((doc, peer), state);
                Ok(())
            }
            StorageWrite::Attestations { doc, put, delete } => {
                let Some(stored) = self.docs.get_mut(&doc) else {
                    return Err(format!("Attestations for {doc}, which is not stored"));
                };
                for key in delete {
                    stored.attestations.remove(&key);
                }
                stored.attestations.extend(put);
                Ok(())
            }
            StorageWrite::Refusal { doc, reason, .. } => {
                // Every organisation here is honest: a refusal is a bug.
                self.refusals.push((doc, reason.clone()));
                Err(format!("an honest change to {doc} was refused: {reason}"))
            }
        }
    }

    /// Folds a long log into a fresh snapshot, as the replica's compaction does.
    pub fn compact(&mut self, doc: DocId) {
        let Some(stored) = self.docs.get(&doc) else {
            return;
        };
        if stored.log.len() < COMPACT_AFTER {
            return;
        }
        let Some(mut d) = self.load(doc) else {
            return;
        };
        let stored = self.docs.get_mut(&doc).expect("checked");
        stored.snapshot = d.save();
        stored.log.clear();
    }

    fn check(&self, doc: DocId, heads: &[ChangeHash]) -> Result<(), String> {
        if !self.verify_writes {
            return Ok(());
        }
        let Some(mut d) = self.load(doc) else {
            return Err(format!("{doc} does not load after a write"));
        };
        if sorted(&d.get_heads()) != sorted(heads) {
            return Err(format!(
                "write for {doc} claims heads {heads:?} but the stored document has {:?}",
                d.get_heads()
            ));
        }
        Ok(())
    }

    pub fn load(&self, doc: DocId) -> Option<AutoCommit> {
        let stored = self.docs.get(&doc)?;
        let mut d = AutoCommit::load(&stored.snapshot).ok()?;
        // One call for the whole log: each `load_incremental` call costs time in the document's size.
        if !stored.log.is_empty() {
            d.load_incremental(&stored.log.concat()).ok()?;
        }
        Some(d)
    }

    /// The answer to a load request: content plus every sync state saved for it.
    pub fn loaded(&self, doc: DocId) -> Input {
        match self.docs.get(&doc) {
            Some(stored) => Input::Loaded {
                doc,
                snapshot: stored.snapshot.clone(),
                log: stored.log.clone(),
                sync_states: self
                    .sync_states
                    .range(
                        (doc, OrgKey::from_bytes([0; 32]))..=(doc, OrgKey::from_bytes([0xff; 32])),
                    )
                    .map(|((_, peer), state)| (*peer, state.clone()))
                    .collect(),
                attestations: stored.attestations.values().cloned().collect(),
            },
            None => Input::LoadFailed {
                doc,
                reason: "not in the replica".into(),
            },
        }
    }

    pub fn docs_of(&self, p: PartnershipId) -> Vec<DocId> {
        self.docs
            .iter()
            .filter(|(_, s)| s.partnership == p)
            .map(|(d, _)| *d)
            .collect()
    }

    pub fn partnership_of(&self, doc: DocId) -> Option<PartnershipId> {
        self.docs.get(&doc).map(|s| s.partnership)
    }

    pub fn roster(&self, p: PartnershipId) -> Option<Roster> {
        Roster::from_doc(p, self.load(p.roster_doc())?).ok()
    }
}

// ---- nodes ------------------------------------------------------------------

pub struct SimNode {
    pub name: String,
    pub seed: [u8; 32],
    pub key: OrgKey,
    pub role: PeerRole,
    /// `None` while crashed.
    pub engine: Option<Engine>,
    pub store: Store,
    /// Partnerships this organisation joined by invitation (durable configuration).
    pub joined: BTreeSet<PartnershipId>,
    /// Bumped on every restart; part of the actor suffix of local edits.
    pub incarnation: u32,
    /// How far this organisation's clock is from true (simulated) time:
    /// hours or years either way in skewed worlds. Its engine and its
    /// commits see only its own clock.
    pub clock_skew_ms: i64,
    /// The engine's `keep_loaded_ms` (applied at start and restart).
    pub keep_loaded_ms: u64,
    /// The engine's coalescing window (`coalesce` with
    /// `coalesce_window_ms`), or `None` to apply every message at once.
    pub coalesce_window_ms: Option<u64>,
    /// Documents the engine asked the store to load.
    pub loads: u64,
    pub conns: BTreeMap<ConnId, usize>,
    /// Every event, with the link its connection belonged to.
    pub events: Vec<(Option<usize>, Event)>,
}

impl SimNode {
    pub fn secret(&self) -> OrgSecret {
        OrgSecret::from_seed(self.seed)
    }

    fn config(&self) -> EngineConfig {
        EngineConfig {
            role: self.role,
            allowed_creators: None,
            keep_loaded_ms: self.keep_loaded_ms,
            coalesce: self.coalesce_window_ms.is_some(),
            coalesce_window_ms: self.coalesce_window_ms.unwrap_or(0),
            ..EngineConfig::default()
        }
    }

    /// The actor for local edits in this incarnation.
    pub fn actor(&self, index: usize) -> ActorId {
        let mut suffix = [0u8; 8];
        suffix[..4].copy_from_slice(&(index as u32).to_be_bytes());
        suffix[4..].copy_from_slice(&self.incarnation.to_be_bytes());
        new_document_actor(&self.secret(), suffix)
    }

    pub fn alive(&self) -> bool {
        self.engine.is_some()
    }

    pub fn in_sync_on(&self, link: usize) -> bool {
        self.events
            .iter()
            .any(|(l, e)| *l == Some(link) && matches!(e, Event::InSync { .. }))
    }

    pub fn events_on(&self, link: usize) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|(l, _)| *l == Some(link))
            .map(|(_, e)| e)
            .collect()
    }
}

// ---- network ----------------------------------------------------------------

#[derive(Debug)]
pub enum End {
    Engine {
        node: usize,
        conn: ConnId,
        open: bool,
    },
    /// Played by a test: frames addressed to it are collected.
    External { inbox: Vec<Vec<u8>>, open: bool },
}

impl End {
    fn open(&self) -> bool {
        match self {
            End::Engine { open, .. } | End::External { open, .. } => *open,
        }
    }

    fn set_closed(&mut self) {
        match self {
            End::Engine { open, .. } | End::External { open, .. } => *open = false,
        }
    }

    pub fn node(&self) -> Option<usize> {
        match self {
            End::Engine { node, .. } => Some(*node),
            End::External { .. } => None,
        }
    }
}

#[derive(Debug)]
enum Payload {
    Bytes(Vec<u8>),
    /// The sender closed its end after everything before this.
    Closed,
}

#[derive(Debug)]
struct Msg {
    at: u64,
    seq: u64,
    payload: Payload,
}

#[derive(Debug)]
pub struct Link {
    pub ends: [End; 2],
    /// `queues[i]`: in flight towards `ends[i]`, in order.
    queues: [VecDeque<Msg>; 2],
    last_at: [u64; 2],
    pub latency: u64,
    /// Whether each frame gets a random extra delay of up to half the latency.
    pub jitter: bool,
    /// Frames delivered to `ends[i]`, decoded (or `None` for bytes that are not a frame).
    pub delivered: [Vec<Option<Frame>>; 2],
    /// Opened during the final, healed phase.
    pub healed: bool,
}

impl Link {
    pub fn closed(&self) -> bool {
        !self.ends[0].open() && !self.ends[1].open()
    }

    /// Frames delivered in both directions.
    pub fn all_delivered(&self) -> impl Iterator<Item = &Option<Frame>> {
        self.delivered[0].iter().chain(self.delivered[1].iter())
    }
}

/// A short description of an input for reports.
pub fn describe(input: &Input) -> String {
    match input {
        // Cheap (this runs for every input): the frame's variant index, not the decoded frame.
        Input::Received { conn, bytes } => format!(
            "Received {{ conn: {conn:?}, frame variant {:?}, {} bytes }}",
            bytes.get(2),
            bytes.len()
        ),
        Input::Loaded { doc, log, .. } => format!("Loaded {{ {doc}, {} log entries }}", log.len()),
        Input::LocalChange { doc, change, .. } => {
            format!("LocalChange {{ {doc}, {} bytes }}", change.len())
        }
        other => format!("{other:?}"),
    }
}

pub fn frame_kind(frame: &Option<Frame>) -> &'static str {
    match frame {
        Some(Frame::Hello { .. }) => "Hello",
        Some(Frame::Proof { .. }) => "Proof",
        Some(Frame::Summary { .. }) => "Summary",
        Some(Frame::Documents { .. }) => "Documents",
        Some(Frame::Sync { .. }) => "Sync",
        Some(Frame::SyncPart { .. }) => "SyncPart",
        Some(Frame::Error { .. }) => "Error",
        Some(Frame::SummaryDone) => "SummaryDone",
        Some(Frame::Attest { .. }) => "Attest",
        Some(Frame::Refused { .. }) => "Refused",
        None => "garbage",
    }
}

/// True time at the simulation's start (2026-01-01), so that skewed
/// clocks can run years behind without going below zero.
pub const EPOCH_MS: i64 = 1_767_225_600_000;

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub frames: u64,
    pub bytes: u64,
    pub edits: u64,
    pub connects: u64,
    pub kills: u64,
    pub crashes: u64,
    pub relay_crashes: u64,
    pub partitions: u64,
    pub refused: u64,
    pub stale_lists: u64,
    pub panics: u64,
    /// Worlds whose organisations' clocks disagreed.
    pub skewed_worlds: u64,
    /// The largest disagreement between two clocks of one world, in hours.
    pub widest_skew_hours: u64,
    /// The longest simulated time from the final heal to quiescence.
    pub slowest_heal_ms: u64,
    /// Local changes sent before the sender's engine applied them
    /// (`ConnStats::changes_sent_ahead`, as last reported per connection).
    pub sent_ahead: u64,
    /// Received changes forwarded as they arrived (`ConnStats::changes_forwarded`).
    pub forwarded: u64,
    /// Of those, forwarded before the forwarding engine's copy applied them
    /// (`ConnStats::changes_forwarded_ahead`).
    pub forwarded_ahead: u64,
}

pub struct Sim {
    pub rng: Rng,
    pub now: u64,
    pub nodes: Vec<SimNode>,
    pub links: Vec<Link>,
    /// Links with something in flight.
    active: BTreeSet<usize>,
    seq: u64,
    /// Partition group per node: nodes in different groups cannot talk.
    pub groups: Vec<u8>,
    trace: Sha256,
    /// Broken invariants, reported together at the end.
    pub violations: Vec<String>,
    pub stats: Stats,
    /// The last `changes_sent_ahead`, `changes_forwarded` and
    /// `changes_forwarded_ahead` each (node, connection) reported.
    ahead_by_conn: BTreeMap<(usize, ConnId), (u64, u64, u64)>,
    /// Whether links keep every delivered frame (tests counting frames).
    pub record_frames: bool,
    pub max_steps: u64,
    /// Engine panics: (message, where and on what).
    pub panics: Vec<(String, String)>,
    /// When set, every new connection gets exactly this latency and no jitter.
    pub fixed_latency: Option<u64>,
    /// Organisations that are members of nothing: sending them a document
    /// list or document content is a violation.
    pub outsiders: BTreeSet<usize>,
    /// Print every delivered frame and event (`ACCORD_SIM_TRACE=1`).
    pub print_trace: bool,
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            now: 0,
            nodes: Vec::new(),
            links: Vec::new(),
            active: BTreeSet::new(),
            seq: 0,
            groups: Vec::new(),
            trace: Sha256::new(),
            violations: Vec::new(),
            stats: Stats::default(),
            ahead_by_conn: BTreeMap::new(),
            record_frames: true,
            max_steps: 200_000,
            panics: Vec::new(),
            fixed_latency: None,
            outsiders: BTreeSet::new(),
            print_trace: std::env::var_os("ACCORD_SIM_TRACE").is_some(),
        }
    }

    pub fn add_node(&mut self, name: &str, seed: [u8; 32], role: PeerRole) -> usize {
        let secret = OrgSecret::from_seed(seed);
        let mut node = SimNode {
            name: name.to_owned(),
            seed,
            key: secret.public(),
            role,
            engine: None,
            store: Store {
                verify_writes: true,
                ..Store::default()
            },
            joined: BTreeSet::new(),
            incarnation: 0,
            clock_skew_ms: 0,
            // Half the nodes unload documents as soon as they settle, so
            // the reload paths stay exercised; the others keep them warm.
            keep_loaded_ms: if seed[0].is_multiple_of(2) { 0 } else { 2_000 },
            // A quarter of the nodes apply received changes at once, a
            // quarter hold them until `Flush` (sent after each delivery, as
            // the node's driver does after draining its queue), the others
            // for a short or a node-sized window, so every path stays
            // exercised (ticks come at the engines' deadlines).
            coalesce_window_ms: match seed[1] % 4 {
                0 => None,
                1 => Some(0),
                2 => Some(250),
                _ => Some(40),
            },
            loads: 0,
            conns: BTreeMap::new(),
            events: Vec::new(),
        };
        if self.print_trace {
            eprintln!(
                "{name}: coalescing window {:?} ms, keep loaded {} ms",
                node.coalesce_window_ms, node.keep_loaded_ms
            );
        }
        node.engine = Some(Engine::new(secret, node.config()));
        self.nodes.push(node);
        self.groups.push(0);
        self.nodes.len() - 1
    }

    /// Node `n`'s clock in milliseconds: simulated time counted from
    /// [`EPOCH_MS`], plus the node's skew.
    pub fn clock(&self, n: usize) -> u64 {
        let ms = EPOCH_MS + self.now as i64 + self.nodes[n].clock_skew_ms;
        u64::try_from(ms).expect("skews stay within decades of the epoch")
    }

    /// Node `n`'s clock in seconds, as it stamps its commits.
    pub fn wall_seconds(&self, n: usize) -> i64 {
        (self.clock(n) / 1000) as i64
    }

    pub fn key(&self, n: usize) -> OrgKey {
        self.nodes[n].key
    }

    /// The whole trace so far (every delivered frame, in order) plus every store's heads.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = self.trace.clone();
        for node in &self.nodes {
            for (doc, stored) in &node.store.docs {
                h.update(doc.as_bytes());
                for head in sorted(&stored.heads) {
                    h.update(head.0);
                }
            }
        }
        h.update(self.now.to_le_bytes());
        h.finalize().into()
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < 50 {
            self.violations.push(format!("t={} {what}", self.now));
        }
    }

    // ---- driving one engine --------------------------------------------------

    /// Feeds one input to node `n` and carries out everything it asks for.
    pub fn input(&mut self, n: usize, input: Input) {
        if let Some(out) = self.handle(n, input) {
            self.absorb(n, out);
        }
    }

    /// One call into an engine. An engine that panics takes its process
    /// down: the node crashes (its store survives) and the panic is recorded.
    fn handle(&mut self, n: usize, input: Input) -> Option<Outputs> {
        let now = self.clock(n);
        let engine = self.nodes[n].engine.as_mut()?;
        let what = describe(&input);
        match catch_unwind(AssertUnwindSafe(|| engine.handle(input, now))) {
            Ok(out) => Some(out),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let record = format!(
                    "t={} {} panicked on {what}: {message}",
                    self.now, self.nodes[n].name
                );
                self.panics.push((message, record));
                self.crash(n);
                None
            }
        }
    }

    /// Carries out an engine's outputs in the documented order: writes,
    /// then frames and closes, then loads (answered at once, from the store).
    fn absorb(&mut self, n: usize, out: Outputs) {
        let mut pending = VecDeque::from([out]);
        while let Some(out) = pending.pop_front() {
            for write in out.writes {
                if let Err(e) = self.nodes[n].store.apply(write) {
                    let name = self.nodes[n].name.clone();
                    self.violation(format!("{name}: {e}"));
                }
            }
            for (conn, bytes) in out.send {
                self.route(n, conn, bytes);
            }
            for event in out.events {
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
                if matches!(event, Event::Refused { .. }) {
                    self.stats.refused += 1;
                }
                if let Event::InSync { conn, stats, .. } = &event {
                    let seen = self.ahead_by_conn.entry((n, *conn)).or_default();
                    self.stats.sent_ahead += stats.changes_sent_ahead.saturating_sub(seen.0);
                    self.stats.forwarded += stats.changes_forwarded.saturating_sub(seen.1);
                    self.stats.forwarded_ahead +=
                        stats.changes_forwarded_ahead.saturating_sub(seen.2);
                    *seen = (
                        stats.changes_sent_ahead,
                        stats.changes_forwarded,
                        stats.changes_forwarded_ahead,
                    );
                }
                let link = conn.and_then(|c| self.nodes[n].conns.get(&c).copied());
                if self.print_trace {
                    eprintln!(
                        "t={} {} event on link {link:?}: {event:?}",
                        self.now, self.nodes[n].name
                    );
                }
                self.nodes[n].events.push((link, event));
            }
            for conn in out.close {
                self.close_from(n, conn);
            }
            for doc in out.load {
                self.nodes[n].loads += 1;
                let input = self.nodes[n].store.loaded(doc);
                if let Some(more) = self.handle(n, input) {
                    pending.push_back(more);
                }
            }
        }
    }

    /// Checks an outgoing frame and puts it on its connection.
    fn route(&mut self, n: usize, conn: ConnId, bytes: Vec<u8>) {
        if bytes.len() > MAX_FRAME {
            self.violation(format!(
                "{} sent a frame of {} bytes",
                self.nodes[n].name,
                bytes.len()
            ));
        }
        let frame = match Frame::decode(&bytes) {
            Ok(frame) => {
                self.check_durable(n, &frame);
                Some(frame)
            }
            Err(e) => {
                self.violation(format!(
                    "{} sent an undecodable frame: {e}",
                    self.nodes[n].name
                ));
                None
            }
        };
        let Some(&link) = self.nodes[n].conns.get(&conn) else {
            self.violation(format!(
                "{} sent on unknown connection {conn:?}",
                self.nodes[n].name
            ));
            return;
        };
        let side = self.side_of(link, n);
        if let Some(to) = self.links[link].ends[1 - side].node()
            && self.outsiders.contains(&to)
            && matches!(
                frame,
                Some(Frame::Documents { .. } | Frame::Sync { .. } | Frame::SyncPart { .. })
            )
        {
            let (from, to) = (self.nodes[n].name.clone(), self.nodes[to].name.clone());
            self.violation(format!(
                "{from} sent a {} frame to {to}, which is not a member",
                frame_kind(&frame)
            ));
        }
        self.enqueue(link, 1 - side, Payload::Bytes(bytes));
    }

    /// Writes before sends: every head a frame advertises must already be in the store.
    fn check_durable(&mut self, n: usize, frame: &Frame) {
        let advertised: Vec<(DocId, Vec<ChangeHash>)> = match frame {
            Frame::Documents { docs, .. } => docs
                .iter()
                .map(|d| {
                    (
                        DocId::from_bytes(d.id),
                        d.heads.iter().map(|h| ChangeHash(*h)).collect(),
                    )
                })
                .collect(),
            Frame::Sync { doc, message } => match automerge::sync::Message::decode(message) {
                Ok(m) => vec![(DocId::from_bytes(*doc), m.heads)],
                Err(e) => {
                    self.violation(format!("undecodable sync message: {e}"));
                    return;
                }
            },
            _ => return,
        };
        for (doc, heads) in advertised {
            if heads.is_empty() {
                continue;
            }
            let store = &self.nodes[n].store;
            let Some(stored) = store.docs.get(&doc) else {
                let name = self.nodes[n].name.clone();
                self.violation(format!(
                    "{name} advertised heads of {doc}, which it has not stored"
                ));
                continue;
            };
            if sorted(&stored.heads) == sorted(&heads) {
                continue;
            }
            if matches!(frame, Frame::Documents { .. }) {
                self.stats.stale_lists += 1;
            }
            let durable = store
                .load(doc)
                .map(|d| heads.iter().all(|h| d.get_change_by_hash(h).is_some()))
                .unwrap_or(false);
            if !durable {
                let name = self.nodes[n].name.clone();
                self.violation(format!(
                    "{name} advertised heads of {doc} that are not durable"
                ));
            }
        }
    }

    fn side_of(&self, link: usize, n: usize) -> usize {
        match &self.links[link].ends[0] {
            End::Engine { node, .. } if *node == n => 0,
            _ => 1,
        }
    }

    fn enqueue(&mut self, link: usize, to: usize, payload: Payload) {
        let l = &mut self.links[link];
        if !l.ends[to].open() {
            return; // the receiver has gone: bytes to it are lost with the connection
        }
        let jitter = if !l.jitter {
            0
        } else {
            self.rng.below(l.latency / 2 + 1)
        };
        let at = (self.now + l.latency + jitter).max(l.last_at[to]);
        l.last_at[to] = at;
        self.seq += 1;
        l.queues[to].push_back(Msg {
            at,
            seq: self.seq,
            payload,
        });
        self.active.insert(link);
    }

    /// Node `n`'s engine closed `conn`: whatever it sent first still arrives, then the close.
    fn close_from(&mut self, n: usize, conn: ConnId) {
        let Some(link) = self.nodes[n].conns.remove(&conn) else {
            return;
        };
        let side = self.side_of(link, n);
        self.links[link].ends[side].set_closed();
        self.links[link].queues[side].clear();
        self.enqueue(link, 1 - side, Payload::Closed);
    }

    // ---- connections ----------------------------------------------------------

    pub fn can_talk(&self, a: usize, b: usize) -> bool {
        self.groups[a] == self.groups[b] && self.nodes[a].alive() && self.nodes[b].alive()
    }

    /// `a` dials `b`. `expect`: `a` pins `b`'s key.
    pub fn connect(&mut self, a: usize, b: usize, expect: bool) -> Option<usize> {
        if a == b || !self.can_talk(a, b) {
            return None;
        }
        self.stats.connects += 1;
        let link = self.links.len();
        let latency = self.fixed_latency.unwrap_or_else(|| self.rng.range(1, 120));
        let (na, nb) = (self.rng.bytes(), self.rng.bytes());
        let expected = expect.then(|| self.key(b));
        let (now_a, now_b) = (self.clock(a), self.clock(b));
        let (ca, out_a) = self.nodes[a]
            .engine
            .as_mut()
            .expect("alive")
            .connect(true, expected, na, now_a);
        let (cb, out_b) = self.nodes[b]
            .engine
            .as_mut()
            .expect("alive")
            .connect(false, None, nb, now_b);
        self.links.push(Link {
            ends: [
                End::Engine {
                    node: a,
                    conn: ca,
                    open: true,
                },
                End::Engine {
                    node: b,
                    conn: cb,
                    open: true,
                },
            ],
            queues: Default::default(),
            last_at: [0; 2],
            latency,
            jitter: self.fixed_latency.is_none(),
            delivered: Default::default(),
            healed: false,
        });
        self.nodes[a].conns.insert(ca, link);
        self.nodes[b].conns.insert(cb, link);
        self.absorb(a, out_a);
        self.absorb(b, out_b);
        Some(link)
    }

    /// A connection to node `n` whose other side is played by the test.
    /// The engine end is `ends[0]`, the external end `ends[1]`.
    pub fn connect_external(&mut self, n: usize, engine_dialed: bool) -> usize {
        let link = self.links.len();
        let nonce = self.rng.bytes();
        let now = self.clock(n);
        let (conn, out) =
            self.nodes[n]
                .engine
                .as_mut()
                .expect("alive")
                .connect(engine_dialed, None, nonce, now);
        self.links.push(Link {
            ends: [
                End::Engine {
                    node: n,
                    conn,
                    open: true,
                },
                End::External {
                    inbox: Vec::new(),
                    open: true,
                },
            ],
            queues: Default::default(),
            last_at: [0; 2],
            latency: 5,
            jitter: false,
            delivered: Default::default(),
            healed: false,
        });
        self.nodes[n].conns.insert(conn, link);
        self.absorb(n, out);
        link
    }

    /// Puts raw bytes on a link towards `ends[to]`, as if its peer had sent them.
    pub fn inject(&mut self, link: usize, to: usize, bytes: Vec<u8>) {
        self.enqueue(link, to, Payload::Bytes(bytes));
    }

    /// Frames an external end has received so far.
    pub fn external_inbox(&self, link: usize) -> Vec<Option<Frame>> {
        match &self.links[link].ends[1] {
            End::External { inbox, .. } => inbox.iter().map(|b| Frame::decode(b).ok()).collect(),
            End::Engine { .. } => panic!("not an external link"),
        }
    }

    pub fn is_open(&self, link: usize, side: usize) -> bool {
        self.links[link].ends[side].open()
    }

    /// The connection dies: nothing more is delivered, both ends hear of it.
    pub fn kill(&mut self, link: usize) {
        self.stats.kills += 1;
        let l = &mut self.links[link];
        l.queues = Default::default();
        self.active.remove(&link);
        for side in 0..2 {
            let end = &mut self.links[link].ends[side];
            if !end.open() {
                continue;
            }
            end.set_closed();
            if let End::Engine { node, conn, .. } = *end {
                self.input(node, Input::Disconnected { conn });
                self.nodes[node].conns.remove(&conn);
            }
        }
    }

    pub fn open_links(&self) -> Vec<usize> {
        (0..self.links.len())
            .filter(|l| self.links[*l].ends.iter().any(End::open))
            .collect()
    }

    pub fn links_of(&self, n: usize) -> Vec<usize> {
        self.nodes[n].conns.values().copied().collect()
    }

    /// Splits the nodes into two groups; connections across die.
    pub fn partition(&mut self) {
        self.stats.partitions += 1;
        for g in 0..self.groups.len() {
            self.groups[g] = self.rng.below(2) as u8;
        }
        for link in self.open_links() {
            let nodes: Vec<usize> = self.links[link].ends.iter().filter_map(End::node).collect();
            if let [a, b] = nodes[..]
                && self.groups[a] != self.groups[b]
            {
                self.kill(link);
            }
        }
    }

    pub fn heal(&mut self) {
        self.groups.iter_mut().for_each(|g| *g = 0);
    }

    /// The process dies: memory is lost, the store is kept, its connections die.
    pub fn crash(&mut self, n: usize) {
        if self.nodes[n].engine.take().is_none() {
            return;
        }
        for link in self.links_of(n) {
            self.kill(link);
        }
        self.nodes[n].conns.clear();
    }

    /// A fresh engine from durable state alone: every stored document as
    /// `Known` (heads from loading it), every joined partnership as `Want`.
    pub fn restart(&mut self, n: usize) {
        if self.nodes[n].alive() {
            return;
        }
        let node = &mut self.nodes[n];
        node.incarnation += 1;
        node.engine = Some(Engine::new(node.secret(), node.config()));
        let mut known: Vec<Input> = node
            .store
            .docs
            .iter()
            .map(|(doc, s)| {
                let mut d = node.store.load(*doc).expect("a stored document loads");
                Input::Known {
                    doc: *doc,
                    partnership: s.partnership,
                    kind: s.kind.clone(),
                    heads: d.get_heads(),
                }
            })
            .collect();
        let wants: Vec<PartnershipId> = node.joined.iter().copied().collect();
        self.rng.shuffle(&mut known);
        for input in known {
            self.input(n, input);
        }
        for partnership in wants {
            self.input(n, Input::Want { partnership });
        }
    }

    // ---- time -------------------------------------------------------------------

    fn next_msg(&self) -> Option<(u64, u64, usize, usize)> {
        let mut best: Option<(u64, u64, usize, usize)> = None;
        for &link in &self.active {
            for to in 0..2 {
                if let Some(m) = self.links[link].queues[to].front() {
                    let cand = (m.at, m.seq, link, to);
                    if best.is_none_or(|b| (cand.0, cand.1) < (b.0, b.1)) {
                        best = Some(cand);
                    }
                }
            }
        }
        best
    }

    /// Delivers the next message in flight (or ticks an engine whose
    /// deadline comes first); false when there is nothing left to do.
    pub fn step(&mut self) -> bool {
        self.step_until(u64::MAX)
    }

    /// The earliest engine deadline (see `Engine::next_deadline`), in
    /// simulated time (never before now), and whose it is.
    fn next_deadline(&self) -> Option<(u64, usize)> {
        let mut best: Option<(u64, usize)> = None;
        for (n, node) in self.nodes.iter().enumerate() {
            let Some(deadline) = node.engine.as_ref().and_then(Engine::next_deadline) else {
                continue;
            };
            let at = deadline as i64 - EPOCH_MS - node.clock_skew_ms;
            let at = u64::try_from(at).unwrap_or(0).max(self.now);
            if best.is_none_or(|b| at < b.0) {
                best = Some((at, n));
            }
        }
        best
    }

    /// Ticks the engine whose deadline comes before the next message (and
    /// by `limit`), as a runtime's timer would; false when there is none.
    fn tick_due(&mut self, limit: u64) -> bool {
        let Some((at, n)) = self.next_deadline() else {
            return false;
        };
        let next_msg = self.next_msg().map_or(u64::MAX, |m| m.0);
        if at > limit || at > next_msg {
            return false;
        }
        self.now = at;
        if self.print_trace {
            eprintln!("t={at} tick {} (deadline)", self.nodes[n].name);
        }
        self.trace.update(b"tick");
        self.trace.update((n as u64).to_le_bytes());
        self.trace.update(self.now.to_le_bytes());
        self.input(n, Input::Tick);
        true
    }

    /// Delivers the next message in flight, or ticks the engine whose
    /// deadline comes first; false when there is neither (by `limit`).
    fn step_until(&mut self, limit: u64) -> bool {
        if self.tick_due(limit) {
            return true;
        }
        let Some((at, _, link, to)) = self.next_msg() else {
            return false;
        };
        if at > limit {
            return false;
        }
        let msg = self.links[link].queues[to]
            .pop_front()
            .expect("front exists");
        if self.links[link].queues.iter().all(VecDeque::is_empty) {
            self.active.remove(&link);
        }
        self.now = self.now.max(at);
        match msg.payload {
            Payload::Bytes(bytes) => {
                self.stats.frames += 1;
                self.stats.bytes += bytes.len() as u64;
                self.trace.update((link as u64).to_le_bytes());
                self.trace.update([to as u8]);
                self.trace.update(self.now.to_le_bytes());
                self.trace.update((bytes.len() as u64).to_le_bytes());
                self.trace.update(&bytes);
                if self.record_frames {
                    let frame = Frame::decode(&bytes).ok();
                    self.links[link].delivered[to].push(frame);
                }
                if self.print_trace {
                    let name = |end: &End| match end.node() {
                        Some(n) => self.nodes[n].name.clone(),
                        None => "external".to_owned(),
                    };
                    let l = &self.links[link];
                    eprintln!(
                        "t={} link {link}: {} -> {}: {:?}",
                        self.now,
                        name(&l.ends[1 - to]),
                        name(&l.ends[to]),
                        Frame::decode(&bytes).map(|f| match f {
                            Frame::Sync { doc, message } => format!(
                                "Sync {} ({} bytes; changes/heads/need/have {:?})",
                                DocId::from_bytes(doc),
                                message.len(),
                                automerge::sync::Message::decode(&message).map(|m| (
                                    m.changes.len(),
                                    m.heads.len(),
                                    m.need.len(),
                                    m.have.len()
                                ))
                            ),
                            other => format!("{other:.300?}"),
                        })
                    );
                }
                match &mut self.links[link].ends[to] {
                    End::Engine { node, conn, open } => {
                        if *open {
                            let (node, conn) = (*node, *conn);
                            self.input(node, Input::Received { conn, bytes });
                            if self.nodes[node].coalesce_window_ms == Some(0) {
                                self.input(node, Input::Flush);
                            }
                        }
                    }
                    End::External { inbox, open } => {
                        if *open {
                            inbox.push(bytes);
                        }
                    }
                }
            }
            Payload::Closed => {
                self.trace.update(b"closed");
                self.trace.update((link as u64).to_le_bytes());
                let end = &mut self.links[link].ends[to];
                if end.open() {
                    end.set_closed();
                    if let End::Engine { node, conn, .. } = *end {
                        self.input(node, Input::Disconnected { conn });
                        self.nodes[node].conns.remove(&conn);
                    }
                }
            }
        }
        true
    }

    /// Delivers up to `n` messages.
    pub fn deliver(&mut self, n: u64) {
        for _ in 0..n {
            if !self.step() {
                break;
            }
        }
    }

    /// Lets `ms` pass: delivers what arrives meanwhile, then ticks every engine.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now + ms;
        while self.step_until(target) {}
        self.now = target;
        for n in 0..self.nodes.len() {
            self.input(n, Input::Tick);
        }
    }

    /// Delivers messages (and ticks engines at their deadlines) until
    /// nothing is in flight or held.
    pub fn run_until_quiescent(&mut self) {
        let mut steps = 0u64;
        while self.step() {
            steps += 1;
            assert!(
                steps < self.max_steps,
                "no quiescence after {steps} deliveries"
            );
        }
    }

    // ---- local activity -----------------------------------------------------

    /// Stores a document made locally and tells the engine.
    pub fn add_local(
        &mut self,
        n: usize,
        doc: DocId,
        p: PartnershipId,
        kind: &str,
        d: &mut AutoCommit,
    ) {
        let heads = d.get_heads();
        let attestation = Attestation::sign(&self.nodes[n].secret(), doc, &heads);
        self.nodes[n].store.docs.insert(
            doc,
            StoredDoc {
                partnership: p,
                kind: kind.to_owned(),
                snapshot: d.save(),
                log: Vec::new(),
                heads: heads.clone(),
                attestations: [(attestation.id(), attestation.to_bytes())].into(),
            },
        );
        self.input(
            n,
            Input::Known {
                doc,
                partnership: p,
                kind: kind.to_owned(),
                heads,
            },
        );
    }

    /// A local change, durable first, then given to the engine.
    pub fn commit_local(&mut self, n: usize, doc: DocId, change: Vec<u8>, heads: Vec<ChangeHash>) {
        let attestation = Attestation::sign(&self.nodes[n].secret(), doc, &heads);
        let me = self.nodes[n].key;
        let store = &mut self.nodes[n].store;
        let stored = store.docs.get_mut(&doc).expect("stored");
        stored.log.push(change.clone());
        stored.heads = heads.clone();
        // The new attestation covers the whole document as stored here.
        stored
            .attestations
            .retain(|_, bytes| Attestation::from_bytes(bytes).map_or(true, |a| a.org != me));
        stored
            .attestations
            .insert(attestation.id(), attestation.to_bytes());
        let (p, kind) = (stored.partnership, stored.kind.clone());
        store.compact(doc);
        self.stats.edits += 1;
        self.input(
            n,
            Input::LocalChange {
                doc,
                change,
                attestation: attestation.to_bytes(),
            },
        );
        self.input(
            n,
            Input::Known {
                doc,
                partnership: p,
                kind,
                heads,
            },
        );
    }

    /// Loads an agreement from node `n`'s store with this incarnation's actor.
    pub fn load_agreement(&self, n: usize, doc: DocId) -> Option<Agreement> {
        let d = self.nodes[n]
            .store
            .load(doc)?
            .with_actor(self.nodes[n].actor(n));
        let p = self.nodes[n].store.docs.get(&doc)?.partnership;
        let roster_heads = self.nodes[n].store.load(p.roster_doc())?.get_heads();
        Agreement::from_doc(doc, d)
            .ok()
            .map(|a| a.under_roster(&roster_heads))
    }

    pub fn load_roster(&self, n: usize, p: PartnershipId) -> Option<Roster> {
        let d = self.nodes[n]
            .store
            .load(p.roster_doc())?
            .with_actor(self.nodes[n].actor(n));
        Roster::from_doc(p, d).ok()
    }

    /// Node `creator` starts a partnership with `members` as decision makers
    /// and `agreements` agreements, and registers everything locally.
    pub fn create_partnership(
        &mut self,
        creator: usize,
        members: &[usize],
        agreements: usize,
    ) -> (PartnershipId, Vec<DocId>) {
        let actor = self.nodes[creator].actor(creator);
        let nonce = self.rng.bytes();
        let key = self.key(creator);
        let (mut roster, _) = Roster::create(
            "Sim partnership",
            &key,
            &self.nodes[creator].name,
            nonce,
            actor.clone(),
            1,
        )
        .expect("roster");
        for &m in members {
            if m != creator {
                let name = self.nodes[m].name.clone();
                roster
                    .add_member(&self.key(m), &name, Role::DecisionMaker, 1)
                    .expect("member");
            }
        }
        let p = roster.id();
        let mut made = Vec::new();
        for i in 0..agreements {
            let kind = [DocKind::Mou, DocKind::Values, DocKind::Dispute][i % 3];
            let id = DocId::random(self.rng.bytes());
            let title = format!("Agreement {i}");
            let (mut agreement, _) =
                Agreement::create(id, kind, p, &title, actor.clone(), &roster.view(), 1)
                    .expect("agreement");
            roster.add_document(id, kind, &title).expect("catalogue");
            made.push((id, kind, agreement.doc_mut().clone()));
        }
        roster.commit("members and agreements", 2);
        self.add_local(creator, p.roster_doc(), p, "roster", roster.doc_mut());
        let mut ids = Vec::new();
        for (id, kind, mut d) in made {
            self.add_local(creator, id, p, kind.as_str(), &mut d);
            ids.push(id);
        }
        (p, ids)
    }

    /// A member holding the roster adds a new agreement: the document first, then the catalogue entry.
    pub fn add_agreement(&mut self, n: usize, p: PartnershipId) -> Option<DocId> {
        let mut roster = self.load_roster(n, p)?;
        let actor = self.nodes[n].actor(n);
        let kind = [DocKind::Mou, DocKind::Values, DocKind::Dispute][self.rng.below_usize(3)];
        let id = DocId::random(self.rng.bytes());
        let title = format!("Added by {}", self.nodes[n].name);
        let (mut agreement, _) = Agreement::create(
            id,
            kind,
            p,
            &title,
            actor,
            &roster.view(),
            self.wall_seconds(n),
        )
        .ok()?;
        self.add_local(n, id, p, kind.as_str(), agreement.doc_mut());
        roster.add_document(id, kind, &title).ok()?;
        let change = roster.commit("catalogue", self.wall_seconds(n))?;
        let heads = roster.doc_mut().get_heads();
        self.commit_local(n, p.roster_doc(), change.bytes, heads);
        Some(id)
    }

    /// Node `n` adds organisation `who` to the roster of `p` as a decision maker.
    pub fn admit(&mut self, n: usize, p: PartnershipId, who: usize) -> bool {
        let Some(mut roster) = self.load_roster(n, p) else {
            return false;
        };
        let name = self.nodes[who].name.clone();
        if roster
            .add_member(
                &self.key(who),
                &name,
                Role::DecisionMaker,
                self.wall_seconds(n),
            )
            .is_err()
        {
            return false;
        }
        let Some(change) = roster.commit("admitted", self.wall_seconds(n)) else {
            return false;
        };
        let heads = roster.doc_mut().get_heads();
        if self.print_trace {
            eprintln!("t={} {} admits {name}", self.now, self.nodes[n].name);
        }
        self.commit_local(n, p.roster_doc(), change.bytes, heads);
        true
    }

    /// One random edit by node `n` to one of its stored documents of `p`.
    pub fn random_edit(&mut self, n: usize, p: PartnershipId) -> bool {
        let docs = self.nodes[n].store.docs_of(p);
        let Some(doc) = self.rng.pick(&docs) else {
            return false;
        };
        if doc == p.roster_doc() {
            if self.rng.chance(30) && std::env::var_os("ACCORD_SIM_NO_NEW_AGREEMENTS").is_none() {
                return self.add_agreement(n, p).is_some();
            }
            let Some(mut roster) = self.load_roster(n, p) else {
                return false;
            };
            let entries = roster.view().documents;
            let Some(entry) = entries.get(self.rng.below_usize(entries.len().max(1))) else {
                return false;
            };
            let title = format!("{} {}", self.rng.word(), self.rng.word());
            roster.set_document_title(entry.id, &title).expect("title");
            let Some(change) = roster.commit("title", self.wall_seconds(n)) else {
                return false;
            };
            let heads = roster.doc_mut().get_heads();
            self.commit_local(n, doc, change.bytes, heads);
            return true;
        }
        self.random_edit_of(n, doc)
    }

    /// A typist: two to six edits of one agreement on node `n`, each handed
    /// to the engine before any frame is delivered (so each builds on one
    /// the engine may not have applied yet, see `send_ahead`); or, half the
    /// time, handed over as one group, as `LiveDocument` does.
    pub fn typing_burst(&mut self, n: usize, p: PartnershipId) {
        let docs: Vec<DocId> = self.nodes[n]
            .store
            .docs_of(p)
            .into_iter()
            .filter(|d| *d != p.roster_doc())
            .collect();
        let Some(doc) = self.rng.pick(&docs) else {
            return;
        };
        let edits = 2 + self.rng.below_usize(5);
        if self.rng.chance(50) {
            self.grouped_edits(n, doc, edits);
            return;
        }
        for _ in 0..edits {
            self.random_edit_of(n, doc);
        }
    }

    /// `count` random edits of agreement `doc` on node `n`, each its own
    /// change, handed to the engine as one group. Sometimes the group
    /// starts with a change the node already holds, as an editor's group
    /// does when it merged others' changes since its last one.
    fn grouped_edits(&mut self, n: usize, doc: DocId, count: usize) {
        let Some(p) = self.nodes[n].store.partnership_of(doc) else {
            return;
        };
        let Some(roster) = self.load_roster(n, p).map(|r| r.view()) else {
            return;
        };
        let Some(mut agreement) = self.load_agreement(n, doc) else {
            return;
        };
        let mut group = Vec::new();
        if self.rng.chance(50)
            && let Some(held) = self.nodes[n]
                .store
                .docs
                .get(&doc)
                .and_then(|s| s.log.last())
        {
            group.extend_from_slice(held);
        }
        let mut made = false;
        for _ in 0..count {
            let choice = self.rng.below(5);
            apply_random_edit(&mut self.rng, &mut agreement, &roster, choice);
            if let Some(change) = agreement.commit("edit", self.wall_seconds(n)) {
                group.extend_from_slice(&change.bytes);
                made = true;
            }
        }
        if made {
            let heads = agreement.doc_mut().get_heads();
            self.commit_local(n, doc, group, heads);
        }
    }

    /// A random edit of agreement `doc` on node `n`; false if it made no change.
    pub fn random_edit_of(&mut self, n: usize, doc: DocId) -> bool {
        let Some(p) = self.nodes[n].store.partnership_of(doc) else {
            return false;
        };
        let Some(roster) = self.load_roster(n, p).map(|r| r.view()) else {
            return false;
        };
        let Some(mut agreement) = self.load_agreement(n, doc) else {
            return false;
        };
        let choice = self.rng.below(5);
        apply_random_edit(&mut self.rng, &mut agreement, &roster, choice);
        let Some(change) = agreement.commit("edit", self.wall_seconds(n)) else {
            return false;
        };
        let heads = agreement.doc_mut().get_heads();
        self.commit_local(n, doc, change.bytes, heads);
        true
    }
}

pub fn text_sections(kind: DocKind) -> &'static [&'static str] {
    match kind {
        DocKind::Mou => &["title", "purpose", "communication", "variation"],
        DocKind::Values => &["title", "statement"],
        DocKind::Dispute => &["title", "purpose", "escalation"],
    }
}

pub fn list_sections(kind: DocKind) -> &'static [(&'static str, &'static [&'static str])] {
    match kind {
        DocKind::Mou => &[("objectives", &["text"])],
        DocKind::Values => &[
            ("values", &["name", "description"]),
            ("ground_rules", &["text"]),
        ],
        DocKind::Dispute => &[("steps", &["title", "what", "who"])],
    }
}

fn list_len(agreement: &Agreement, roster: &RosterView, list: &str) -> usize {
    match agreement.view(roster).section(list).map(|s| &s.content) {
        Some(accord_model::SectionContent::List(items)) => items.len(),
        _ => 0,
    }
}

/// Text splices, whole-field sets, list inserts, removals and item edits.
pub fn apply_random_edit(rng: &mut Rng, a: &mut Agreement, roster: &RosterView, choice: u64) {
    let kind = a.kind();
    let (list, fields) = list_sections(kind)[rng.below_usize(list_sections(kind).len())];
    match choice {
        0 => {
            let section = rng.pick(text_sections(kind)).expect("sections");
            let value = rng.sentence();
            a.set(section, &value, roster).expect("set");
        }
        1 => {
            let section = rng.pick(text_sections(kind)).expect("sections");
            let obj = a.text_obj(section, roster).expect("text");
            let len = a.doc().text(&obj).expect("text").chars().count();
            let pos = rng.below_usize(len + 1);
            let delete = if rng.chance(40) {
                rng.below_usize((len - pos).min(6) + 1)
            } else {
                0
            };
            let insert = if rng.chance(80) {
                format!("{} ", rng.word())
            } else {
                String::new()
            };
            a.splice_text(&obj, pos, delete as isize, &insert)
                .expect("splice");
        }
        2 => {
            let field = rng.pick(fields).expect("fields");
            a.add_item(list, &[(field.to_owned(), rng.sentence())], roster)
                .expect("add item");
        }
        3 => {
            let len = list_len(a, roster, list);
            if len > 0 {
                let i = rng.below_usize(len) + 1;
                a.remove_item(&format!("{list}.{i}")).expect("remove");
            }
        }
        _ => {
            let len = list_len(a, roster, list);
            if len > 0 {
                let i = rng.below_usize(len) + 1;
                let field = rng.pick(fields).expect("fields");
                let value = rng.sentence();
                a.set(&format!("{list}.{i}.{field}"), &value, roster)
                    .expect("item field");
            }
        }
    }
}

/// What a node's store says about a partnership: per document, its heads and its content.
#[derive(Debug, PartialEq, Eq)]
pub enum Content {
    Roster {
        name: String,
        members: Vec<(OrgKey, Role)>,
        documents: Vec<(DocId, DocKind, String)>,
    },
    Agreement(Box<AgreementView>),
}

pub fn contents(store: &Store, p: PartnershipId) -> BTreeMap<DocId, (Vec<ChangeHash>, Content)> {
    let roster_view = store.roster(p).map(|r| r.view());
    let mut out = BTreeMap::new();
    for doc in store.docs_of(p) {
        let mut d = store.load(doc).expect("stored documents load");
        let heads = sorted(&d.get_heads());
        let content = if doc == p.roster_doc() {
            let view = Roster::from_doc(p, d).expect("a valid roster").view();
            Content::Roster {
                name: view.name,
                members: view.members.iter().map(|m| (m.key, m.role)).collect(),
                documents: view
                    .documents
                    .iter()
                    .map(|e| (e.id, e.kind, e.title.clone()))
                    .collect(),
            }
        } else {
            let roster = roster_view
                .as_ref()
                .expect("an agreement without its roster");
            let mut view = Agreement::from_doc(doc, d)
                .expect("an agreement")
                .view(roster);
            view.heads.sort();
            Content::Agreement(Box::new(view))
        };
        out.insert(doc, (heads, content));
    }
    out
}
