//! Engine A on one connection, driven the way `accord-node`'s driver does
//! (writes, then frames, then loads), with the invariants every target
//! checks after every input.
//!
//! The invariants are the engine's promises to a hostile peer:
//! - every frame A sends decodes and fits in [`MAX_FRAME`];
//! - only B's key ever authenticates (no one else holds a valid proof), and only once;
//! - no document frame leaves A before the peer authenticated;
//! - nothing is sent on a connection after A reported it closed;
//! - everything A asks to persist loads back into a document whose heads
//!   are the heads A reported (the replica only receives whole, applied changes).

use std::collections::BTreeMap;

use accord_model::DocId;
use accord_sync::wire::{Frame, MAX_FRAME};
use accord_sync::{ConnId, Engine, EngineConfig, Event, Input, Outputs, PeerRole, StorageWrite};
use automerge::{AutoCommit, ChangeHash};

use crate::partnership::{NONCE_A, Partnership};

/// Most bytes A may send in answer to one input; far above any honest
/// answer for the fixture, far below what an amplification bug would send.
const MAX_ANSWER_BYTES: usize = 8 * MAX_FRAME;

/// How A is set up for one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Setup {
    /// A dialed the connection (else A is the listener).
    pub a_dials: bool,
    /// A pins B's key (as for a configured peer).
    pub expect_b: bool,
    /// Hold sync messages until `Flush` (the node runs with this on).
    pub coalesce: bool,
}

#[derive(Debug, Default)]
struct Stored {
    snapshot: Vec<u8>,
    log: Vec<Vec<u8>>,
    heads: Vec<ChangeHash>,
    attestations: Vec<Vec<u8>>,
}

/// Engine A with an in-memory replica and one connection.
pub struct Harness {
    engine: Engine,
    store: BTreeMap<DocId, Stored>,
    conn: ConnId,
    now: u64,
    authenticated: bool,
    closed: bool,
    /// Every frame A sent on the connection, in order.
    pub sent: Vec<Vec<u8>>,
}

impl Harness {
    /// A holding the fixture partnership, with a fresh connection whose
    /// `Hello` has been sent.
    pub fn new(setup: Setup) -> Harness {
        let fixture = Partnership::get();
        let config = EngineConfig {
            role: PeerRole::Node,
            coalesce: setup.coalesce,
            ..EngineConfig::default()
        };
        let mut harness = Harness {
            engine: Engine::new(
                accord_identity::OrgSecret::from_seed(fixture.secret_a.seed()),
                config,
            ),
            store: BTreeMap::new(),
            conn: ConnId(0),
            now: 0,
            authenticated: false,
            closed: false,
            sent: Vec::new(),
        };
        let roster = fixture.id.roster_doc();
        harness.add(roster, "roster", &fixture.roster);
        harness.add(fixture.mou, "mou", &fixture.mou_snapshot);
        let expect = setup.expect_b.then(|| fixture.key_b());
        let (conn, out) = harness.engine.connect(setup.a_dials, expect, NONCE_A, 0);
        harness.conn = conn;
        harness.run(out);
        harness
    }

    fn add(&mut self, doc: DocId, kind: &str, snapshot: &[u8]) {
        let heads = AutoCommit::load(snapshot)
            .expect("fixture documents load")
            .get_heads();
        self.store.insert(
            doc,
            Stored {
                snapshot: snapshot.to_vec(),
                log: Vec::new(),
                heads: heads.clone(),
                attestations: vec![Partnership::get().a_attests(doc, &heads)],
            },
        );
        let input = Input::Known {
            doc,
            partnership: Partnership::get().id,
            kind: kind.to_owned(),
            heads,
        };
        self.step(input);
    }

    /// Delivers one transport message from the peer.
    pub fn receive(&mut self, bytes: Vec<u8>) {
        let conn = self.conn;
        self.step(Input::Received { conn, bytes });
    }

    /// Lets `ms` milliseconds pass and ticks the engine (handshake deadlines).
    pub fn advance(&mut self, ms: u64) {
        self.now = self.now.saturating_add(ms);
        self.step(Input::Tick);
    }

    /// Applies held sync messages, as the driver does after draining its queue.
    pub fn flush(&mut self) {
        self.step(Input::Flush);
    }

    /// The peer went away.
    pub fn disconnect(&mut self) {
        let conn = self.conn;
        self.step(Input::Disconnected { conn });
    }

    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    pub fn closed(&self) -> bool {
        self.closed
    }

    fn step(&mut self, input: Input) {
        let out = self.engine.handle(input, self.now);
        self.run(out);
    }

    /// Does what the engine said, checking every invariant on the way.
    fn run(&mut self, mut out: Outputs) {
        let mut answered = 0usize;
        loop {
            for write in out.writes.drain(..) {
                self.persist(write);
            }
            // An output carries the `Authenticated` event with the frames
            // it allows, and the `Closed` event with the frames before it.
            for event in &out.events {
                self.observe_authenticated(event);
            }
            for (conn, bytes) in out.send.drain(..) {
                answered += bytes.len();
                self.check_sent(conn, &bytes);
                self.sent.push(bytes);
            }
            if out
                .events
                .drain(..)
                .any(|e| matches!(e, Event::Closed { .. }))
            {
                self.closed = true;
            }
            let Some(doc) = out.load.pop() else { break };
            let more = self.load(doc);
            out.writes.extend(more.writes);
            out.send.extend(more.send);
            out.events.extend(more.events);
            out.load.extend(more.load);
        }
        assert!(
            answered <= MAX_ANSWER_BYTES,
            "A answered one input with {answered} bytes"
        );
    }

    fn check_sent(&self, conn: ConnId, bytes: &[u8]) {
        assert_eq!(
            conn, self.conn,
            "a frame for a connection that does not exist"
        );
        assert!(!self.closed, "a frame was sent after the connection closed");
        assert!(
            bytes.len() <= MAX_FRAME,
            "A sent a {}-byte frame",
            bytes.len()
        );
        let frame = Frame::decode(bytes).expect("A's own frames decode");
        let document_frame = matches!(
            frame,
            Frame::Summary { .. }
                | Frame::Documents { .. }
                | Frame::Sync { .. }
                | Frame::SyncPart { .. }
        );
        assert!(
            !document_frame || self.authenticated,
            "A sent {} before the peer authenticated",
            frame.name()
        );
    }

    fn observe_authenticated(&mut self, event: &Event) {
        if let Event::Authenticated { peer, .. } = event {
            assert_eq!(
                *peer,
                Partnership::get().key_b(),
                "a forged key authenticated"
            );
            assert!(!self.authenticated, "authenticated twice");
            self.authenticated = true;
        }
    }

    fn persist(&mut self, write: StorageWrite) {
        match write {
            StorageWrite::NewDocument {
                doc,
                snapshot,
                heads,
                ..
            } => {
                let stored = Stored {
                    snapshot,
                    log: Vec::new(),
                    heads,
                    attestations: Vec::new(),
                };
                self.store.insert(doc, stored);
            }
            StorageWrite::Append {
                doc,
                changes,
                heads,
                ..
            } => {
                let stored = self
                    .store
                    .get_mut(&doc)
                    .expect("appends name stored documents");
                stored.log.push(changes);
                stored.heads = heads;
            }
            StorageWrite::Attestations { doc, put, .. } => {
                let stored = self
                    .store
                    .get_mut(&doc)
                    .expect("attestations follow their document");
                stored.attestations.extend(put.into_iter().map(|(_, a)| a));
            }
            StorageWrite::SyncState { .. } | StorageWrite::Refusal { .. } => {}
        }
    }

    fn load(&mut self, doc: DocId) -> Outputs {
        let input = match self.store.get(&doc) {
            Some(stored) => Input::Loaded {
                doc,
                snapshot: stored.snapshot.clone(),
                log: stored.log.clone(),
                sync_states: Vec::new(),
                attestations: stored.attestations.clone(),
            },
            None => Input::LoadFailed {
                doc,
                reason: "not stored".into(),
            },
        };
        self.engine.handle(input, self.now)
    }

    /// Every stored document loads, and to the heads A reported for it.
    pub fn check_store(&self) {
        for (doc, stored) in &self.store {
            let mut loaded = AutoCommit::load(&stored.snapshot).expect("stored snapshots load");
            if !stored.log.is_empty() {
                loaded
                    .load_incremental(&stored.log.concat())
                    .expect("stored changes load");
            }
            let mut heads = loaded.get_heads();
            let mut reported = stored.heads.clone();
            heads.sort();
            reported.sort();
            assert_eq!(
                heads, reported,
                "document {doc}: stored heads differ from reported"
            );
        }
    }

    /// How many changes the stored MOU log holds (entries, not changes).
    pub fn mou_log_entries(&self) -> usize {
        self.store
            .get(&Partnership::get().mou)
            .map_or(0, |s| s.log.len())
    }
}
