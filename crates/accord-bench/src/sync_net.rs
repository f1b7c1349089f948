//! In-memory harness for the sync benchmarks: engines over an in-memory
//! store that applies `StorageWrite`s as the replica does, and a network
//! that delivers frames in waves (one wave = every frame in flight), so a
//! run can count bytes, frames, one-way trips and document loads.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use accord_identity::{OrgKey, OrgSecret};
use accord_model::automerge::{
    AutoCommit, ChangeHash, ObjId, ROOT, ReadDoc,
    sync::{Message, State, SyncDoc},
};
use accord_model::trust::Attestation;
use accord_model::{Agreement, DocId, DocKind, PartnershipId, Role, Roster, new_document_actor};
use accord_sync::{ConnId, Engine, EngineConfig, Event, Input, Outputs, PeerRole, StorageWrite};
use anyhow::{Context, Result, anyhow};

use crate::trace::Patch;

/// One stored document, as the replica keeps it: snapshot plus log.
#[derive(Clone, Debug)]
pub struct Stored {
    pub partnership: PartnershipId,
    pub kind: String,
    pub snapshot: Vec<u8>,
    pub log: Vec<Vec<u8>>,
    pub heads: Vec<ChangeHash>,
    /// Attestations by id (encoded).
    pub attestations: BTreeMap<[u8; 32], Vec<u8>>,
}

#[derive(Default, Debug)]
pub struct Store {
    /// The seed of the organisation that owns this store: it attests what `put` stores.
    pub signer: Option<[u8; 32]>,
    pub docs: BTreeMap<DocId, Stored>,
    pub sync_states: BTreeMap<(DocId, OrgKey), Vec<u8>>,
    /// When a received change was last appended (the receiver's durable point).
    pub appended_at: Option<Instant>,
}

impl Store {
    pub fn apply(&mut self, write: StorageWrite) {
        match write {
            StorageWrite::NewDocument {
                doc,
                partnership,
                kind,
                snapshot,
                heads,
            } => {
                self.docs.insert(
                    doc,
                    Stored {
                        partnership,
                        kind,
                        snapshot,
                        log: Vec::new(),
                        heads,
                        attestations: BTreeMap::new(),
                    },
                );
            }
            StorageWrite::Append {
                doc,
                changes,
                heads,
                ..
            } => {
                let stored = self
                    .docs
                    .get_mut(&doc)
                    .expect("append to a stored document");
                stored.log.push(changes);
                stored.heads = heads;
                self.appended_at = Some(Instant::now());
            }
            StorageWrite::SyncState { doc, peer, state } => {
                self.sync_states.insert((doc, peer), state);
            }
            StorageWrite::Attestations { doc, put, delete } => {
                if let Some(stored) = self.docs.get_mut(&doc) {
                    for key in delete {
                        stored.attestations.remove(&key);
                    }
                    stored.attestations.extend(put);
                }
            }
            StorageWrite::Refusal { doc, reason, .. } => {
                panic!("the benchmark's own change to {doc} was refused: {reason}");
            }
        }
    }

    pub fn load(&self, doc: DocId) -> Result<AutoCommit> {
        let stored = self.docs.get(&doc).context("document not stored")?;
        let mut d = AutoCommit::load(&stored.snapshot)?;
        if !stored.log.is_empty() {
            d.load_incremental(&stored.log.concat())?;
        }
        Ok(d)
    }

    fn loaded(&self, doc: DocId) -> Input {
        match self.docs.get(&doc) {
            Some(stored) => Input::Loaded {
                doc,
                snapshot: stored.snapshot.clone(),
                log: stored.log.clone(),
                sync_states: self
                    .sync_states
                    .iter()
                    .filter(|((d, _), _)| *d == doc)
                    .map(|((_, peer), s)| (*peer, s.clone()))
                    .collect(),
                attestations: stored.attestations.values().cloned().collect(),
            },
            None => Input::LoadFailed {
                doc,
                reason: "not stored".into(),
            },
        }
    }

    /// Puts a locally made document in the store (as `Workspace` would).
    pub fn put(&mut self, doc: DocId, partnership: PartnershipId, kind: &str, d: &mut AutoCommit) {
        let heads = d.get_heads();
        let attestations = self
            .signer
            .map(|seed| {
                let a = Attestation::sign(&OrgSecret::from_seed(seed), doc, &heads);
                [(a.id(), a.to_bytes())].into()
            })
            .unwrap_or_default();
        self.docs.insert(
            doc,
            Stored {
                partnership,
                kind: kind.to_owned(),
                snapshot: d.save(),
                log: Vec::new(),
                heads,
                attestations,
            },
        );
    }

    /// Stores a local change group of `doc` and returns its attestation (encoded).
    pub fn append_local(&mut self, doc: DocId, group: Vec<u8>, heads: &[ChangeHash]) -> Vec<u8> {
        let seed = self.signer.expect("a store with an owner");
        let a = Attestation::sign(&OrgSecret::from_seed(seed), doc, heads);
        if let Some(stored) = self.docs.get_mut(&doc) {
            stored.log.push(group);
            stored.heads = heads.to_vec();
            stored.attestations.insert(a.id(), a.to_bytes());
        }
        a.to_bytes()
    }
}

pub struct Peer {
    pub seed: [u8; 32],
    pub role: PeerRole,
    pub coalesce: bool,
    /// The engine's `coalesce_window_ms` (0 unless a benchmark sets it).
    pub coalesce_window_ms: u64,
    /// Where the engine's clock starts; `None` keeps it at 0 (benchmarks
    /// that never wait on engine time).
    pub epoch: Option<Instant>,
    pub engine: Engine,
    pub store: Store,
    /// Documents the engine asked to load (rosters included).
    pub loads: Vec<DocId>,
    /// Time spent inside the engine, in all, and in the longest single call.
    pub busy: Duration,
    pub longest_call: Duration,
    /// When the engine call that produced the last `Append` started.
    pub append_call_started: Option<Instant>,
    call_started: Option<Instant>,
    /// Time spent applying the engine's writes to the store.
    pub storing: Duration,
}

impl Peer {
    pub fn new(seed: [u8; 32], role: PeerRole, coalesce: bool) -> Self {
        Self {
            seed,
            role,
            coalesce,
            coalesce_window_ms: 0,
            epoch: None,
            engine: Engine::new(OrgSecret::from_seed(seed), config(role, coalesce, 0)),
            store: Store {
                signer: Some(seed),
                ..Store::default()
            },
            loads: Vec::new(),
            busy: Duration::ZERO,
            longest_call: Duration::ZERO,
            append_call_started: None,
            call_started: None,
            storing: Duration::ZERO,
        }
    }

    #[allow(dead_code)]
    pub fn key(&self) -> OrgKey {
        OrgSecret::from_seed(self.seed).public()
    }

    /// A fresh engine told about every stored document, as at start-up.
    pub fn restart(&mut self) {
        self.engine = Engine::new(
            OrgSecret::from_seed(self.seed),
            config(self.role, self.coalesce, self.coalesce_window_ms),
        );
        let known: Vec<Input> = self
            .store
            .docs
            .iter()
            .map(|(doc, s)| Input::Known {
                doc: *doc,
                partnership: s.partnership,
                kind: s.kind.clone(),
                heads: s.heads.clone(),
            })
            .collect();
        for input in known {
            let frames = self.handle(input);
            assert!(frames.is_empty());
        }
    }

    pub fn handle(&mut self, input: Input) -> Vec<(ConnId, Vec<u8>)> {
        let out = self.timed(input);
        self.run(out)
    }

    fn timed(&mut self, input: Input) -> Outputs {
        let start = Instant::now();
        self.call_started = Some(start);
        let out = self.engine.handle(input, self.now());
        let took = start.elapsed();
        self.busy += took;
        self.longest_call = self.longest_call.max(took);
        out
    }

    /// The engine's clock: milliseconds since `epoch`.
    pub fn now(&self) -> u64 {
        self.epoch
            .map_or(0, |epoch| epoch.elapsed().as_millis() as u64)
    }

    /// Does the outputs in the driver's order: writes, sends, loads.
    pub fn run(&mut self, out: Outputs) -> Vec<(ConnId, Vec<u8>)> {
        self.run_observed(out, |_| {}, |_| {})
    }

    /// [`Peer::run`], showing each write to `on_write` before it is stored
    /// and each event to `on_event` (the relay load generator reads the
    /// changes it receives and the engine's events through these).
    pub fn run_observed(
        &mut self,
        mut out: Outputs,
        mut on_write: impl FnMut(&StorageWrite),
        mut on_event: impl FnMut(Event),
    ) -> Vec<(ConnId, Vec<u8>)> {
        let mut frames = Vec::new();
        loop {
            for w in out.writes.drain(..) {
                if matches!(w, StorageWrite::Append { .. }) {
                    self.append_call_started = self.call_started;
                }
                on_write(&w);
                let start = Instant::now();
                self.store.apply(w);
                self.storing += start.elapsed();
            }
            frames.append(&mut out.send);
            out.events.drain(..).for_each(&mut on_event);
            let Some(doc) = out.load.pop() else { break };
            self.loads.push(doc);
            let input = self.store.loaded(doc);
            let more = self.timed(input);
            out.writes.extend(more.writes);
            out.send.extend(more.send);
            out.events.extend(more.events);
            out.load.extend(more.load);
        }
        frames
    }

    /// Loads excluding rosters.
    pub fn agreement_loads(&self) -> usize {
        self.loads
            .iter()
            .filter(|d| {
                self.store
                    .docs
                    .get(d)
                    .is_none_or(|s| s.partnership.roster_doc() != **d)
            })
            .count()
    }
}

fn config(role: PeerRole, coalesce: bool, coalesce_window_ms: u64) -> EngineConfig {
    EngineConfig {
        role,
        coalesce,
        coalesce_window_ms,
        ..EngineConfig::default()
    }
}

/// What a pump moved.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    pub bytes: u64,
    pub frames: u64,
    /// Waves of delivery: every frame in flight delivered at once, then
    /// what they caused. Two waves are one round trip.
    pub waves: u64,
}

impl Traffic {
    pub fn round_trips(&self) -> f64 {
        self.waves as f64 / 2.0
    }
}

/// Peers and links between them.
pub struct Net {
    pub peers: Vec<Peer>,
    links: Vec<[(usize, ConnId); 2]>,
    queue: Vec<(usize, ConnId, Vec<u8>)>,
    nonce: u8,
    pub traffic: Traffic,
    /// Sync messages that carried a whole document (snapshots, or
    /// Automerge's own whole-document replies), single-frame ones only.
    pub whole_documents: u64,
}

impl Net {
    pub fn new(peers: Vec<Peer>) -> Self {
        Self {
            peers,
            links: Vec::new(),
            queue: Vec::new(),
            nonce: 0,
            traffic: Traffic::default(),
            whole_documents: 0,
        }
    }

    fn enqueue(&mut self, from: usize, frames: Vec<(ConnId, Vec<u8>)>) {
        for (conn, bytes) in frames {
            let Some(link) = self.links.iter().find(|l| l.contains(&(from, conn))) else {
                continue;
            };
            let (to, to_conn) = if link[0] == (from, conn) {
                link[1]
            } else {
                link[0]
            };
            self.traffic.bytes += bytes.len() as u64;
            self.traffic.frames += 1;
            if carries_document(&bytes) {
                self.whole_documents += 1;
            }
            self.queue.push((to, to_conn, bytes));
        }
    }

    /// `dialer` dials `listener`; returns the link index. Frames are queued, not delivered.
    pub fn connect(&mut self, dialer: usize, listener: usize) -> usize {
        self.nonce = self.nonce.wrapping_add(2);
        let (ca, out_a) = self.peers[dialer]
            .engine
            .connect(true, None, [self.nonce; 32], 0);
        let (cb, out_b) =
            self.peers[listener]
                .engine
                .connect(false, None, [self.nonce.wrapping_add(1); 32], 0);
        self.links.push([(dialer, ca), (listener, cb)]);
        let fa = self.peers[dialer].run(out_a);
        let fb = self.peers[listener].run(out_b);
        self.enqueue(dialer, fa);
        self.enqueue(listener, fb);
        self.links.len() - 1
    }

    pub fn disconnect(&mut self, link: usize) {
        let ends = self.links[link];
        self.queue
            .retain(|(to, conn, _)| !ends.contains(&(*to, *conn)));
        for (peer, conn) in ends {
            let frames = self.peers[peer].handle(Input::Disconnected { conn });
            assert!(frames.is_empty());
        }
        self.links[link] = [(usize::MAX, ConnId(0)); 2];
    }

    /// A peer's own input (local change, want); the frames it causes are queued.
    pub fn input(&mut self, peer: usize, input: Input) {
        let frames = self.peers[peer].handle(input);
        self.enqueue(peer, frames);
    }

    /// Delivers waves until nothing is in flight. With `coalesce`, each peer
    /// that received frames in a wave gets one `Flush` after them, as the
    /// driver does after draining its queue.
    pub fn pump(&mut self) -> Traffic {
        let before = self.traffic;
        while !self.queue.is_empty() {
            assert!(self.traffic.waves - before.waves < 100_000, "no quiescence");
            self.wave();
        }
        Traffic {
            bytes: self.traffic.bytes - before.bytes,
            frames: self.traffic.frames - before.frames,
            waves: self.traffic.waves - before.waves,
        }
    }
}

impl Net {
    /// Delivers every frame in flight, then flushes each coalescing peer
    /// that received some, as the driver does after draining its queue.
    pub fn wave(&mut self) {
        self.traffic.waves += 1;
        let wave = std::mem::take(&mut self.queue);
        let mut touched = vec![false; self.peers.len()];
        for (to, conn, bytes) in wave {
            touched[to] = true;
            let frames = self.peers[to].handle(Input::Received { conn, bytes });
            self.enqueue(to, frames);
        }
        for (i, t) in touched.into_iter().enumerate() {
            if t && self.peers[i].coalesce {
                let frames = self.peers[i].handle(Input::Flush);
                self.enqueue(i, frames);
            }
        }
    }

    /// The frames in flight to `peer`.
    pub fn queued_to(&self, peer: usize) -> impl Iterator<Item = &[u8]> {
        self.queue
            .iter()
            .filter(move |(to, _, _)| *to == peer)
            .map(|(_, _, bytes)| bytes.as_slice())
    }

    /// Ticks every peer whose engine has work due, until none has.
    pub fn serve_deadlines(&mut self) {
        for _ in 0..1_000 {
            let due: Vec<usize> = (0..self.peers.len())
                .filter(|i| self.peers[*i].engine.next_deadline().is_some())
                .collect();
            if due.is_empty() {
                return;
            }
            for i in due {
                self.input(i, Input::Tick);
            }
            self.pump();
        }
    }
}

/// Whether a frame is a sync message carrying a whole saved document.
fn carries_document(frame: &[u8]) -> bool {
    let Ok(accord_sync::wire::Frame::Sync { message, .. }) =
        accord_sync::wire::Frame::decode(frame)
    else {
        return false;
    };
    let Ok(m) = Message::decode(&message) else {
        return false;
    };
    // An Automerge chunk: magic (4 bytes), checksum (4), type (0 = document).
    m.changes
        .iter()
        .next()
        .is_some_and(|c| c.len() > 8 && c[8] == 0)
}

// ---- documents -----------------------------------------------------------

pub const SEED_A: [u8; 32] = [1; 32];
pub const SEED_B: [u8; 32] = [2; 32];
pub const SEED_RELAY: [u8; 32] = [3; 32];

/// A partnership created by A with B as a second decision maker, and
/// `docs` MOUs catalogued (ids derived from their index).
pub fn roster_with(docs: &[DocId]) -> Result<Roster> {
    let sa = OrgSecret::from_seed(SEED_A);
    let kb = OrgSecret::from_seed(SEED_B).public();
    let actor = new_document_actor(&sa, [0; 8]);
    let (mut roster, _) = Roster::create("Bench", &sa.public(), "A", [5; 16], actor, 1)?;
    roster.add_member(&kb, "B", Role::DecisionMaker, 1)?;
    for (i, d) in docs.iter().enumerate() {
        roster.add_document(*d, DocKind::Mou, &format!("MOU {i}"))?;
    }
    roster.commit("catalogue", 2);
    Ok(roster)
}

pub fn doc_id(i: u32) -> DocId {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&i.to_be_bytes());
    b[15] = 0xac;
    DocId::random(b)
}

/// A new MOU written by the organisation of `seed` (actor suffix `suffix`).
pub fn new_mou(roster: &Roster, id: DocId, seed: [u8; 32], suffix: u8) -> Result<Agreement> {
    let actor = new_document_actor(&OrgSecret::from_seed(seed), [suffix; 8]);
    let (mou, _) = Agreement::create(
        id,
        DocKind::Mou,
        roster.id(),
        "MOU",
        actor,
        &roster.view(),
        1,
    )?;
    Ok(mou)
}

/// An MOU whose `purpose` holds the replayed trace, one change per patch.
pub fn trace_mou(roster: &Roster, id: DocId, patches: &[Patch]) -> Result<Agreement> {
    let mut mou = new_mou(roster, id, SEED_A, 0)?;
    let text = mou.text_obj("purpose", &roster.view())?;
    for (i, p) in patches.iter().enumerate() {
        mou.splice_text(&text, p.pos, p.del as isize, &p.ins)?;
        let options = accord_model::automerge::transaction::CommitOptions::default()
            .with_message(mou.claimed_message(""))
            .with_time(i as i64);
        mou.doc_mut().commit_with(options);
    }
    Ok(mou)
}

pub fn purpose_obj(doc: &AutoCommit) -> Result<ObjId> {
    let (_, obj) = doc
        .get(ROOT, "purpose")?
        .ok_or_else(|| anyhow!("no purpose field"))?;
    Ok(obj)
}

pub fn purpose_text(doc: &AutoCommit) -> Result<String> {
    Ok(doc.text(purpose_obj(doc)?)?)
}

// ---- raw Automerge sync ----------------------------------------------------

/// Raw `automerge::sync` between two documents until neither has anything
/// to say. Messages are encoded and decoded, as on a wire.
pub fn raw_sync(
    a: &mut AutoCommit,
    b: &mut AutoCommit,
    sa: &mut State,
    sb: &mut State,
) -> Result<Traffic> {
    let mut t = Traffic::default();
    loop {
        let mut moved = false;
        if let Some(m) = a.sync().generate_sync_message(sa) {
            let bytes = m.encode();
            t.bytes += bytes.len() as u64;
            t.frames += 1;
            b.sync()
                .receive_sync_message(sb, Message::decode(&bytes)?)?;
            moved = true;
        }
        if let Some(m) = b.sync().generate_sync_message(sb) {
            let bytes = m.encode();
            t.bytes += bytes.len() as u64;
            t.frames += 1;
            a.sync()
                .receive_sync_message(sa, Message::decode(&bytes)?)?;
            moved = true;
        }
        if !moved {
            return Ok(t);
        }
        t.waves += 2;
    }
}

/// Median with min and max, of plain numbers.
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (med, v[0], v[n - 1])
}

pub fn fmt_spread(values: &[f64], unit: &str) -> String {
    let (m, lo, hi) = spread(values);
    format!("{m:.2}{unit} ({lo:.2}–{hi:.2})")
}
