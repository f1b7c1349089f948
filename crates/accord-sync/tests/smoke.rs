//! Two engines and an in-memory "network": the basics end to end.

use std::collections::{BTreeMap, VecDeque};

use accord_identity::{OrgKey, OrgSecret};
use accord_model::trust::Attestation;
use accord_model::{Agreement, DocId, DocKind, Role, Roster, new_document_actor};
use accord_sync::{ConnId, Engine, EngineConfig, Event, Input, Outputs, PeerRole, StorageWrite};
use automerge::AutoCommit;

#[derive(Default)]
struct Store {
    docs: BTreeMap<DocId, (Vec<u8>, Vec<Vec<u8>>)>,
}

struct Node {
    secret: OrgSecret,
    /// Stored attestations per document (encoded).
    attestations: BTreeMap<DocId, Vec<Vec<u8>>>,
    engine: Engine,
    store: Store,
    events: Vec<Event>,
}

impl Node {
    fn new(secret: OrgSecret, role: PeerRole) -> Self {
        let config = EngineConfig {
            role,
            ..EngineConfig::default()
        };
        Self {
            secret: OrgSecret::from_seed(secret.seed()),
            attestations: BTreeMap::new(),
            engine: Engine::new(secret, config),
            store: Store::default(),
            events: Vec::new(),
        }
    }

    fn doc(&self, id: DocId) -> Option<AutoCommit> {
        let (snapshot, log) = self.store.docs.get(&id)?;
        let mut doc = AutoCommit::load(snapshot).ok()?;
        for entry in log {
            doc.load_incremental(entry).ok()?;
        }
        Some(doc)
    }

    /// Applies writes, returns frames to deliver; feeds loads back.
    fn run(&mut self, mut out: Outputs, now: u64) -> Vec<(ConnId, Vec<u8>)> {
        let mut frames = Vec::new();
        loop {
            for write in out.writes.drain(..) {
                match write {
                    StorageWrite::NewDocument { doc, snapshot, .. } => {
                        self.store.docs.insert(doc, (snapshot, Vec::new()));
                    }
                    StorageWrite::Append { doc, changes, .. } => {
                        self.store.docs.get_mut(&doc).unwrap().1.push(changes)
                    }
                    StorageWrite::Attestations { doc, put, .. } => self
                        .attestations
                        .entry(doc)
                        .or_default()
                        .extend(put.into_iter().map(|(_, a)| a)),
                    StorageWrite::SyncState { .. } | StorageWrite::Refusal { .. } => {}
                }
            }
            frames.append(&mut out.send);
            self.events.append(&mut out.events);
            let Some(doc) = out.load.pop() else { break };
            let (snapshot, log) = self.store.docs.get(&doc).cloned().unwrap();
            let more = self.engine.handle(
                Input::Loaded {
                    doc,
                    snapshot,
                    log,
                    sync_states: vec![],
                    attestations: self.attestations.get(&doc).cloned().unwrap_or_default(),
                },
                now,
            );
            out.load.extend(more.load);
            out.writes.extend(more.writes);
            out.send.extend(more.send);
            out.events.extend(more.events);
            out.close.extend(more.close);
        }
        frames
    }

    /// Stores a locally made document and tells the engine.
    fn add_local(
        &mut self,
        id: DocId,
        p: accord_model::PartnershipId,
        kind: &str,
        doc: &mut AutoCommit,
    ) {
        self.store.docs.insert(id, (doc.save(), Vec::new()));
        let attestation = Attestation::sign(&self.secret, id, &doc.get_heads());
        self.attestations.insert(id, vec![attestation.to_bytes()]);
        let out = self.engine.handle(
            Input::Known {
                doc: id,
                partnership: p,
                kind: kind.into(),
                heads: doc.get_heads(),
            },
            0,
        );
        assert!(self.run(out, 0).is_empty());
    }
}

/// Delivers frames between two nodes until nothing is left.
fn pump(a: &mut Node, b: &mut Node, ca: ConnId, cb: ConnId, mut queue: VecDeque<(bool, Vec<u8>)>) {
    let mut steps = 0;
    while let Some((to_b, bytes)) = queue.pop_front() {
        steps += 1;
        assert!(steps < 10_000, "no quiescence");
        let (node, conn) = if to_b { (&mut *b, cb) } else { (&mut *a, ca) };
        let out = node.engine.handle(Input::Received { conn, bytes }, 0);
        for (_, frame) in node.run(out, 0) {
            queue.push_back((!to_b, frame));
        }
    }
}

fn connect(a: &mut Node, b: &mut Node) -> (ConnId, ConnId) {
    let (ca, out_a) = a.engine.connect(true, None, [1; 32], 0);
    let (cb, out_b) = b.engine.connect(false, None, [2; 32], 0);
    let mut queue = VecDeque::new();
    for (_, f) in a.run(out_a, 0) {
        queue.push_back((true, f));
    }
    for (_, f) in b.run(out_b, 0) {
        queue.push_back((false, f));
    }
    pump(a, b, ca, cb, queue);
    (ca, cb)
}

fn purpose(doc: &AutoCommit) -> String {
    use automerge::ReadDoc;
    let (_, text) = doc.get(automerge::ROOT, "purpose").unwrap().unwrap();
    doc.text(&text).unwrap()
}

#[test]
fn a_member_receives_the_partnership_and_a_non_member_is_refused() {
    let (sa, sb, sc) = (
        OrgSecret::from_seed([1; 32]),
        OrgSecret::from_seed([2; 32]),
        OrgSecret::from_seed([3; 32]),
    );
    let (ka, kb): (OrgKey, OrgKey) = (sa.public(), sb.public());
    let actor = new_document_actor(&sa, [0; 8]);
    let (mut roster, _) = Roster::create("P", &ka, "A", [5; 16], actor.clone(), 1).unwrap();
    roster.add_member(&kb, "B", Role::DecisionMaker, 1).unwrap();
    let doc_id = DocId::random([9; 16]);
    let (mut mou, _) = Agreement::create(
        doc_id,
        DocKind::Mou,
        roster.id(),
        "MOU",
        actor,
        &roster.view(),
        1,
    )
    .unwrap();
    mou.set("purpose", "hello", &roster.view()).unwrap();
    mou.commit("x", 2);
    roster.add_document(doc_id, DocKind::Mou, "MOU").unwrap();
    roster.commit("y", 2);
    let p = roster.id();

    let mut a = Node::new(sa, PeerRole::Node);
    a.add_local(p.roster_doc(), p, "roster", roster.doc_mut());
    a.add_local(doc_id, p, "mou", mou.doc_mut());

    let mut b = Node::new(sb, PeerRole::Node);
    let out = b.engine.handle(Input::Want { partnership: p }, 0);
    b.run(out, 0);
    connect(&mut a, &mut b);
    let got = b.doc(doc_id).expect("B received the MOU");
    assert_eq!(purpose(&got), "hello");
    assert!(
        b.events.iter().any(|e| matches!(e, Event::InSync { .. })),
        "{:?}",
        b.events
    );
    assert!(
        a.events.iter().any(|e| matches!(e, Event::InSync { .. })),
        "{:?}",
        a.events
    );

    let mut c = Node::new(sc, PeerRole::Node);
    let out = c.engine.handle(Input::Want { partnership: p }, 0);
    c.run(out, 0);
    connect(&mut c, &mut a);
    assert!(c.doc(doc_id).is_none(), "a non-member gets nothing");
    assert!(
        c.events.iter().any(|e| matches!(
            e,
            Event::PeerError {
                code: accord_sync::ErrorCode::NotAMember,
                ..
            }
        )),
        "{:?}",
        c.events
    );
}
