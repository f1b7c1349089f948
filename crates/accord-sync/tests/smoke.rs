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
    /// Each round of outputs run: whether it appended changes, its
    /// `before_writes`, and the connection of each frame, in order.
    rounds: Vec<(bool, usize, Vec<ConnId>)>,
    /// Every frame sent, with the index of its round in `rounds`.
    sent: Vec<(usize, ConnId, Vec<u8>)>,
}

impl Node {
    fn new(secret: OrgSecret, role: PeerRole) -> Self {
        let config = EngineConfig {
            role,
            ..EngineConfig::default()
        };
        Self::with_config(secret, config)
    }

    /// A node whose engine holds received sync messages until `Flush`, as
    /// `accord serve` and `accord relay` run it (a relay has no window).
    fn coalescing(secret: OrgSecret, role: PeerRole) -> Self {
        let config = EngineConfig {
            role,
            coalesce: true,
            ..EngineConfig::default()
        };
        Self::with_config(secret, config)
    }

    fn with_config(secret: OrgSecret, config: EngineConfig) -> Self {
        Self {
            secret: OrgSecret::from_seed(secret.seed()),
            attestations: BTreeMap::new(),
            engine: Engine::new(secret, config),
            store: Store::default(),
            events: Vec::new(),
            rounds: Vec::new(),
            sent: Vec::new(),
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
            let appends = out
                .writes
                .iter()
                .any(|w| matches!(w, StorageWrite::Append { .. }));
            let conns = out.send.iter().map(|(c, _)| *c).collect();
            self.rounds.push((appends, out.before_writes, conns));
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
            let round = self.rounds.len() - 1;
            for (conn, frame) in &out.send {
                self.sent.push((round, *conn, frame.clone()));
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
            out.before_writes = more.before_writes;
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

/// Delivers frames between two nodes until nothing is left (`ca` is a's
/// connection to b, `cb` b's to a). Returns the frames either sent on
/// other connections, to deliver elsewhere: (sender is b, connection, frame).
fn pump(
    a: &mut Node,
    b: &mut Node,
    ca: ConnId,
    cb: ConnId,
    mut queue: VecDeque<(bool, Vec<u8>)>,
) -> Vec<(bool, ConnId, Vec<u8>)> {
    let mut elsewhere = Vec::new();
    let mut steps = 0;
    while let Some((to_b, bytes)) = queue.pop_front() {
        steps += 1;
        assert!(steps < 10_000, "no quiescence");
        let (node, conn) = if to_b { (&mut *b, cb) } else { (&mut *a, ca) };
        let out = node.engine.handle(Input::Received { conn, bytes }, 0);
        for (on, frame) in node.run(out, 0) {
            if on == conn {
                queue.push_back((!to_b, frame));
            } else {
                elsewhere.push((to_b, on, frame));
            }
        }
    }
    elsewhere
}

/// Frames a node sent, queued for `pump` to deliver to its `b`.
fn to_b(frames: Vec<(ConnId, Vec<u8>)>) -> VecDeque<(bool, Vec<u8>)> {
    frames.into_iter().map(|(_, f)| (true, f)).collect()
}

/// Of the frames `pump` returned, those its `b` node sent on `conn`.
fn sent_by_b_on(
    elsewhere: Vec<(bool, ConnId, Vec<u8>)>,
    conn: ConnId,
) -> impl Iterator<Item = Vec<u8>> {
    elsewhere
        .into_iter()
        .filter(move |(by_b, on, _)| *by_b && *on == conn)
        .map(|(_, _, f)| f)
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

// ---- trust: verification before apply ----------------------------------------

use accord_model::automerge::transaction::CommitOptions;
use accord_model::trust::claim;
use accord_model::{Comment, Notes};
use automerge::ReadDoc;

/// A partnership of A (creator, decision maker) and M (in `m_role`), with
/// one MOU; A holds everything, M has synced it.
struct Trust {
    a: Node,
    m: Node,
    sa: OrgSecret,
    sm: OrgSecret,
    p: accord_model::PartnershipId,
    mou: DocId,
}

/// `text` typed at the start of `doc`'s purpose on `node`'s stored copy by
/// `actor`, committed with a claim on `node`'s roster heads, as the
/// workspace does: the change's hash, bytes, and the document's new heads.
fn type_into(
    node: &Node,
    p: accord_model::PartnershipId,
    doc: DocId,
    actor: automerge::ActorId,
    text: &str,
) -> (automerge::ChangeHash, Vec<u8>, Vec<automerge::ChangeHash>) {
    let roster_heads = node.doc(p.roster_doc()).unwrap().get_heads();
    let mut d = node.doc(doc).unwrap().with_actor(actor);
    let (_, purpose) = d.get(automerge::ROOT, "purpose").unwrap().unwrap();
    {
        use automerge::transaction::Transactable;
        d.splice_text(&purpose, 0, 0, text).unwrap();
    }
    let hash = d
        .commit_with(CommitOptions::default().with_message(claim::with_claim("", &roster_heads)))
        .unwrap();
    let change = d.get_change_by_hash(&hash).unwrap().raw_bytes().to_vec();
    (hash, change, d.get_heads())
}

impl Node {
    /// Stores a local change and `signer`'s attestation of `heads`, then
    /// hands both to the engine, as the workspace does.
    fn local_change(
        &mut self,
        doc: DocId,
        change: Vec<u8>,
        signer: &OrgSecret,
        heads: Vec<automerge::ChangeHash>,
    ) -> Outputs {
        self.store
            .docs
            .get_mut(&doc)
            .unwrap()
            .1
            .push(change.clone());
        let attestation = Attestation::sign(signer, doc, &heads);
        self.attestations
            .entry(doc)
            .or_default()
            .push(attestation.to_bytes());
        let input = Input::LocalChange {
            doc,
            change,
            attestation: attestation.to_bytes(),
        };
        self.engine.handle(input, 0)
    }
}

/// A's node holding a new partnership (A creator, M with `m_role`) and its
/// MOU: the node, the partnership and the MOU.
fn creator_with_mou(
    sa: &OrgSecret,
    sm: &OrgSecret,
    m_role: Role,
    roster_seed: u8,
    mou_seed: u8,
) -> (Node, accord_model::PartnershipId, DocId) {
    creator_with_members(sa, &[(sm, "M", m_role)], roster_seed, mou_seed)
}

/// A's node holding a roster listing A and `members`, and an MOU.
fn creator_with_members(
    sa: &OrgSecret,
    members: &[(&OrgSecret, &str, Role)],
    roster_seed: u8,
    mou_seed: u8,
) -> (Node, accord_model::PartnershipId, DocId) {
    let actor = new_document_actor(sa, [0; 8]);
    let (mut roster, _) =
        Roster::create("P", &sa.public(), "A", [roster_seed; 16], actor.clone(), 1).unwrap();
    for (secret, name, role) in members {
        roster.add_member(&secret.public(), name, *role, 1).unwrap();
    }
    let mou = DocId::random([mou_seed; 16]);
    roster.add_document(mou, DocKind::Mou, "MOU").unwrap();
    roster.commit("setup", 1);
    let (mut agreement, _) = Agreement::create(
        mou,
        DocKind::Mou,
        roster.id(),
        "MOU",
        actor,
        &roster.view(),
        1,
    )
    .unwrap();
    let p = roster.id();
    let mut a = Node::new(OrgSecret::from_seed(sa.seed()), PeerRole::Node);
    a.add_local(p.roster_doc(), p, "roster", roster.doc_mut());
    a.add_local(mou, p, "mou", agreement.doc_mut());
    (a, p, mou)
}

/// M's node, wanting partnership `p` (as after `accord join`).
fn joiner(sm: &OrgSecret, p: accord_model::PartnershipId) -> Node {
    let mut m = Node::new(OrgSecret::from_seed(sm.seed()), PeerRole::Node);
    let out = m.engine.handle(Input::Want { partnership: p }, 0);
    m.run(out, 0);
    m
}

/// A (creator, writer) and M (decision maker) in one partnership with an
/// MOU, both connected to a relay; M joined through the relay.
struct RelayWorld {
    a: Node,
    m: Node,
    relay: Node,
    sa: OrgSecret,
    sm: OrgSecret,
    p: accord_model::PartnershipId,
    mou: DocId,
    /// (A's side, the relay's side) of each connection.
    a_link: (ConnId, ConnId),
    m_link: (ConnId, ConnId),
}

fn relay_world(seeds: [u8; 3], roster_seed: u8, mou_seed: u8) -> RelayWorld {
    let (sa, sm, sr) = (
        OrgSecret::from_seed([seeds[0]; 32]),
        OrgSecret::from_seed([seeds[1]; 32]),
        OrgSecret::from_seed([seeds[2]; 32]),
    );
    let (mut a, p, mou) = creator_with_mou(&sa, &sm, Role::DecisionMaker, roster_seed, mou_seed);
    let mut relay = Node::new(sr, PeerRole::Relay);
    let a_link = connect(&mut a, &mut relay);
    let mut m = joiner(&sm, p);
    let m_link = connect(&mut m, &mut relay);
    RelayWorld {
        a,
        m,
        relay,
        sa,
        sm,
        p,
        mou,
        a_link,
        m_link,
    }
}

/// A (creator, decision maker) and M (decision maker) connected directly,
/// M holding the MOU.
struct Pair {
    a: Node,
    m: Node,
    sa: OrgSecret,
    p: accord_model::PartnershipId,
    mou: DocId,
    /// A's side and M's side of the connection.
    ca: ConnId,
    cm: ConnId,
}

fn pair(seeds: [u8; 2]) -> Pair {
    let (sa, sm) = (
        OrgSecret::from_seed([seeds[0]; 32]),
        OrgSecret::from_seed([seeds[1]; 32]),
    );
    let (mut a, p, mou) = creator_with_mou(&sa, &sm, Role::DecisionMaker, 9, 7);
    let mut m = joiner(&sm, p);
    let (ca, cm) = connect(&mut a, &mut m);
    Pair {
        a,
        m,
        sa,
        p,
        mou,
        ca,
        cm,
    }
}

fn trust_setup(m_role: Role) -> Trust {
    let (sa, sm) = (
        OrgSecret::from_seed([11; 32]),
        OrgSecret::from_seed([12; 32]),
    );
    let (mut a, p, mou) = creator_with_mou(&sa, &sm, m_role, 6, 8);
    let mut m = joiner(&sm, p);
    connect(&mut m, &mut a);
    assert!(m.doc(mou).is_some(), "M received the MOU");
    Trust {
        a,
        m,
        sa,
        sm,
        p,
        mou,
    }
}

impl Trust {
    /// M writes `text` into the MOU's purpose as `author` (actor key), signs
    /// the result with `signer`, stores it on M's side and syncs with A.
    fn m_edits(
        &mut self,
        author: &OrgSecret,
        signer: &OrgSecret,
        text: &str,
    ) -> automerge::ChangeHash {
        let actor = new_document_actor(author, [9; 8]);
        let (hash, change, heads) = type_into(&self.m, self.p, self.mou, actor, text);
        self.m_local(self.mou, change, signer, heads);
        hash
    }

    fn m_local(
        &mut self,
        doc: DocId,
        change: Vec<u8>,
        signer: &OrgSecret,
        heads: Vec<automerge::ChangeHash>,
    ) {
        let out = self.m.local_change(doc, change, signer, heads);
        self.deliver(out, true);
    }

    /// Runs M's outputs and delivers frames both ways until quiet.
    fn deliver(&mut self, out: Outputs, from_m: bool) {
        let frames = if from_m {
            self.m.run(out, 0)
        } else {
            self.a.run(out, 0)
        };
        let ids = (ConnId(1), ConnId(1));
        let queue = frames.into_iter().map(|(_, f)| (from_m, f)).collect();
        // M dialled (connect(m, a)): M's connection and A's are both the first.
        pump(&mut self.m, &mut self.a, ids.0, ids.1, queue);
    }

    fn a_purpose(&self) -> String {
        purpose(&self.a.doc(self.mou).unwrap())
    }

    fn a_refusals(&self) -> Vec<String> {
        self.a
            .events
            .iter()
            .filter_map(|e| match e {
                Event::ChangesRefused { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_decision_makers_signed_edit_is_accepted() {
    let mut t = trust_setup(Role::DecisionMaker);
    let sm = OrgSecret::from_seed(t.sm.seed());
    t.m_edits(&sm, &sm, "Agreed: ");
    assert!(t.a_purpose().starts_with("Agreed: "), "{:?}", t.a_purpose());
    assert!(t.a_refusals().is_empty(), "{:?}", t.a_refusals());
}

#[test]
fn a_forged_change_is_refused_and_so_is_everything_built_on_it() {
    let mut t = trust_setup(Role::DecisionMaker);
    let (sa, sm) = (
        OrgSecret::from_seed(t.sa.seed()),
        OrgSecret::from_seed(t.sm.seed()),
    );
    // M writes in A's name (A's key in the actor id) but can only sign as M.
    t.m_edits(&sa, &sm, "Forged by M as A. ");
    assert!(!t.a_purpose().contains("Forged"), "{:?}", t.a_purpose());
    let refusals = t.a_refusals();
    assert!(
        refusals.iter().any(|r| r.contains("no valid signature")),
        "{refusals:?}"
    );
    assert!(
        t.m.events
            .iter()
            .any(|e| matches!(e, Event::RefusedByPeer { .. })),
        "the sender is told"
    );
    // M's honest follow-up builds on the forged change: refused too.
    t.m_edits(&sm, &sm, "Honest but built on a forgery. ");
    assert!(!t.a_purpose().contains("Honest"), "{:?}", t.a_purpose());
    let stored: Vec<u8> = t.a.store.docs[&t.mou].1.concat();
    assert!(
        !String::from_utf8_lossy(&stored).contains("Forged"),
        "nothing refused is stored"
    );
}

#[test]
fn a_change_with_a_tampered_attestation_is_refused() {
    let mut t = trust_setup(Role::DecisionMaker);
    let sm = OrgSecret::from_seed(t.sm.seed());
    let other = OrgSecret::from_seed([99; 32]);
    t.m_edits(&sm, &other, "Signed by a stranger. ");
    assert!(!t.a_purpose().contains("stranger"));
    assert!(!t.a_refusals().is_empty());
}

#[test]
fn a_consultee_cannot_change_agreement_text_but_can_comment() {
    let mut t = trust_setup(Role::Consultee);
    let sm = OrgSecret::from_seed(t.sm.seed());
    t.m_edits(&sm, &sm, "Consultee rewrite. ");
    assert!(!t.a_purpose().contains("Consultee"));
    assert!(
        t.a_refusals()
            .iter()
            .any(|r| r.contains("consultee may not")),
        "{:?}",
        t.a_refusals()
    );

    // A comment in M's own notes is accepted.
    let roster_heads = t.m.doc(t.p.roster_doc()).unwrap().get_heads();
    let actor = new_document_actor(&sm, [3; 8]);
    let mut notes = Notes::create(t.p, &sm.public(), actor, &roster_heads).unwrap();
    notes
        .add_comment(&Comment {
            id: "c1".into(),
            author: sm.public(),
            doc: t.mou,
            field: "purpose".into(),
            quote: None,
            text: "Could we name the outcomes?".into(),
            created: 5,
        })
        .unwrap();
    notes.commit("comment", 5);
    let id = notes.id();
    let heads = notes.doc_mut().get_heads();
    t.m.store
        .docs
        .insert(id, (notes.doc_mut().save(), Vec::new()));
    let attestation = Attestation::sign(&sm, id, &heads);
    t.m.attestations.insert(id, vec![attestation.to_bytes()]);
    let out = t.m.engine.handle(
        Input::Known {
            doc: id,
            partnership: t.p,
            kind: "notes".into(),
            heads,
        },
        0,
    );
    t.deliver(out, true);
    let held = t.a.doc(id).expect("A received M's notes");
    let notes = Notes::from_doc(t.p, &sm.public(), held, &[]).unwrap();
    assert_eq!(notes.comments().len(), 1);
}

#[test]
fn an_informed_party_cannot_comment_or_edit() {
    let mut t = trust_setup(Role::Informed);
    let sm = OrgSecret::from_seed(t.sm.seed());
    t.m_edits(&sm, &sm, "Informed edit. ");
    assert!(!t.a_purpose().contains("Informed"));
    assert!(!t.a_refusals().is_empty());
}

#[test]
fn a_removed_members_later_change_is_refused() {
    let mut t = trust_setup(Role::DecisionMaker);
    let (sa, sm) = (
        OrgSecret::from_seed(t.sa.seed()),
        OrgSecret::from_seed(t.sm.seed()),
    );
    // A removes M; M receives the new roster before its next edit.
    let mut roster = Roster::from_doc(
        t.p,
        t.a.doc(t.p.roster_doc())
            .unwrap()
            .with_actor(new_document_actor(&sa, [4; 8])),
    )
    .unwrap();
    roster.remove_member(&sm.public()).unwrap();
    let change = roster.commit("removed M", 3).unwrap();
    t.a.store
        .docs
        .get_mut(&t.p.roster_doc())
        .unwrap()
        .1
        .push(change.bytes.clone());
    let heads = roster.doc_mut().get_heads();
    let attestation = Attestation::sign(&sa, t.p.roster_doc(), &heads);
    t.a.attestations
        .entry(t.p.roster_doc())
        .or_default()
        .push(attestation.to_bytes());
    let out = t.a.engine.handle(
        Input::LocalChange {
            doc: t.p.roster_doc(),
            change: change.bytes,
            attestation: attestation.to_bytes(),
        },
        0,
    );
    // Deliver to M through the still-open connection (A revokes M at once,
    // so M learns of the removal only if it already has it: give it directly).
    t.deliver(out, false);
    let removal = t.a.store.docs[&t.p.roster_doc()].1.last().cloned().unwrap();
    t.m.store
        .docs
        .get_mut(&t.p.roster_doc())
        .unwrap()
        .1
        .push(removal);
    // M edits under the roster without it: A refuses (M is no longer shared
    // anything, so reconnecting is refused too).
    let before = t.a_purpose();
    t.m_edits(&sm, &sm, "After removal. ");
    assert_eq!(t.a_purpose(), before);
}

#[test]
fn the_relay_refuses_a_forged_change_and_never_forwards_it() {
    let RelayWorld {
        mut a,
        mut m,
        mut relay,
        sa,
        sm,
        p,
        mou,
        m_link: (cm, cr),
        ..
    } = relay_world([21, 22, 23], 7, 5);
    assert!(relay.doc(mou).is_some(), "the relay hosts the partnership");
    // M writes in A's name; it can only sign as M.
    let actor = new_document_actor(&sa, [9; 8]);
    let (_, change, heads) = type_into(&m, p, mou, actor, "Forged. ");
    let out = m.local_change(mou, change, &sm, heads);
    let queue = to_b(m.run(out, 0));
    pump(&mut m, &mut relay, cm, cr, queue);

    assert!(!purpose(&relay.doc(mou).unwrap()).contains("Forged"));
    assert!(
        relay
            .events
            .iter()
            .any(|e| matches!(e, Event::ChangesRefused { .. })),
        "{:?}",
        relay.events
    );
    // A reconnects to the relay: the forgery is not forwarded.
    connect(&mut a, &mut relay);
    assert!(!purpose(&a.doc(mou).unwrap()).contains("Forged"));
}

/// A relay forwards a change to members that gave it no change in the
/// same round while it stores the change (`Outputs::before_writes`), but
/// tells the writer its heads, which the writer reads as a receipt, only
/// after the writes. A member whose own changes were stored in an earlier
/// round is not held back: those are durable already.
#[test]
fn a_relay_forwards_before_its_writes_but_acknowledges_the_writer_after() {
    let RelayWorld {
        mut a,
        mut m,
        mut relay,
        sa,
        sm,
        p,
        mou,
        a_link: (a_to_relay, relay_to_a),
        m_link: (m_to_relay, relay_to_m),
    } = relay_world([31, 32, 33], 8, 6);
    assert!(m.doc(mou).is_some(), "M holds the MOU");

    // M gives the relay a change first (A is not told of it yet).
    let (_, change, heads) = type_into(&m, p, mou, new_document_actor(&sm, [2; 8]), "From M. ");
    let out = m.local_change(mou, change, &sm, heads);
    let queue = to_b(m.run(out, 0));
    let elsewhere = pump(&mut m, &mut relay, m_to_relay, relay_to_m, queue);
    let to_a = sent_by_b_on(elsewhere, relay_to_a)
        .map(|f| (false, f))
        .collect();
    let elsewhere = pump(&mut a, &mut relay, a_to_relay, relay_to_a, to_a);
    let rest = sent_by_b_on(elsewhere, relay_to_m)
        .map(|f| (true, f))
        .collect();
    pump(&mut m, &mut relay, m_to_relay, relay_to_m, rest);
    assert!(purpose(&a.doc(mou).unwrap()).contains("From M."));

    // A types and hands the change to its engine, as the workspace does.
    let actor = new_document_actor(&sa, [3; 8]);
    let (_, change, heads) = type_into(&a, p, mou, actor, "Live. ");
    let out = a.local_change(mou, change, &sa, heads);
    let queue = to_b(a.run(out, 0));
    relay.rounds.clear();
    pump(&mut a, &mut relay, a_to_relay, relay_to_a, queue);
    assert!(purpose(&relay.doc(mou).unwrap()).contains("Live."));

    let (_, before_writes, conns) = relay
        .rounds
        .iter()
        .find(|(appends, _, _)| *appends)
        .expect("the relay stored A's change");
    let (early, late) = conns.split_at(*before_writes);
    assert!(
        !early.is_empty() && early.iter().all(|c| *c == relay_to_m),
        "M, whose change went in an earlier round, is sent A's at once: {conns:?}"
    );
    assert!(
        late.contains(&relay_to_a),
        "A's receipt (the relay's heads) waits for the writes: {conns:?}"
    );
    assert!(!late.contains(&relay_to_m));
}

/// A peer that holds what a local change builds on is sent the change by
/// the call that hands it to the engine, before the engine's own copy of
/// the (possibly large) document applies it; the next keystroke follows
/// the same way, and both sides end with the same heads. (The first
/// keystroke loads the document, which the engine had never needed.)
#[test]
fn a_local_change_goes_to_a_caught_up_peer_ahead_of_the_engines_copy() {
    let Pair {
        mut a,
        mut m,
        sa,
        p,
        mou,
        ca,
        cm,
    } = pair([41, 42]);
    assert!(m.doc(mou).is_some(), "M holds the MOU");

    let actor = new_document_actor(&sa, [4; 8]);
    let mut typed = Vec::new();
    for (i, text) in ["Zero. ", "One. ", "Two. "].into_iter().enumerate() {
        let (hash, change, heads) = type_into(&a, p, mou, actor.clone(), text);
        let out = a.local_change(mou, change.clone(), &sa, heads);
        if i > 0 {
            let sent = sync_messages(out.send.iter().map(|(_, f)| f));
            assert_eq!(sent.len(), 1, "one sync message for {text:?}");
            assert_eq!(sent[0].heads, vec![hash]);
            assert_eq!(
                sent[0].changes.iter().collect::<Vec<_>>(),
                vec![&change[..]]
            );
            assert!(
                a.engine.next_deadline().is_some(),
                "the engine's copy is still to apply it"
            );
        }
        let mut queue = to_b(a.run(out, 0));
        if i == 1 {
            // Another keystroke before M answers, and before A's copy has
            // applied the one before: it builds on that one, and goes ahead too.
            typed.push(hash);
            let (hash, change, heads) = type_into(&a, p, mou, actor.clone(), "One and a half. ");
            let out = a.local_change(mou, change, &sa, heads);
            assert_eq!(
                sync_messages(out.send.iter().map(|(_, f)| f)).len(),
                1,
                "sent ahead again"
            );
            queue.extend(to_b(a.run(out, 0)));
            typed.push(hash);
        } else {
            typed.push(hash);
        }
        pump(&mut a, &mut m, ca, cm, queue);
        let out = a.engine.handle(Input::Flush, 0);
        let rest = to_b(a.run(out, 0));
        pump(&mut a, &mut m, ca, cm, rest);
    }

    let text = purpose(&m.doc(mou).unwrap());
    for typed_text in ["Zero.", "One.", "One and a half.", "Two."] {
        assert!(text.contains(typed_text), "{text:?}");
    }
    assert_eq!(
        m.doc(mou).unwrap().get_heads(),
        vec![*typed.last().unwrap()]
    );
    let ahead = a
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::InSync { stats, .. } => Some(stats.changes_sent_ahead),
            _ => None,
        })
        .expect("A saw M in sync again");
    assert_eq!(
        ahead, 3,
        "the keystrokes after the first went ahead of A's copy"
    );
}

/// A group of local changes (as `LiveDocument` hands over a burst of
/// typing, or an editor what it did since its last group) goes ahead too,
/// without the changes in it that the engine already holds.
#[test]
fn a_group_of_local_changes_goes_ahead_without_what_the_engine_holds() {
    let Pair {
        mut a,
        mut m,
        sa,
        p,
        mou,
        ca,
        cm,
    } = pair([43, 44]);
    let actor = new_document_actor(&sa, [5; 8]);
    // A first keystroke: A's engine loads the document for it.
    let (first, change, heads) = type_into(&a, p, mou, actor.clone(), "Zero. ");
    let out = a.local_change(mou, change.clone(), &sa, heads);
    let queue = to_b(a.run(out, 0));
    pump(&mut a, &mut m, ca, cm, queue);
    assert_eq!(m.doc(mou).unwrap().get_heads(), vec![first]);

    // Three more in one group, after the one both already hold.
    let roster_heads = a.doc(p.roster_doc()).unwrap().get_heads();
    let mut d = a.doc(mou).unwrap().with_actor(actor);
    let (_, text) = d.get(automerge::ROOT, "purpose").unwrap().unwrap();
    let mut group = change;
    let mut made = Vec::new();
    for word in ["One. ", "Two. ", "Three. "] {
        use automerge::transaction::Transactable;
        d.splice_text(&text, 0, 0, word).unwrap();
        let message = claim::with_claim("", &roster_heads);
        let hash = d
            .commit_with(CommitOptions::default().with_message(message))
            .unwrap();
        group.extend_from_slice(d.get_change_by_hash(&hash).unwrap().raw_bytes());
        made.push(hash);
    }
    let out = a.local_change(mou, group, &sa, d.get_heads());
    let sent = sync_messages(out.send.iter().map(|(_, f)| f));
    assert_eq!(sent.len(), 1, "one sync message for the group");
    assert_eq!(sent[0].heads, vec![made[2]]);
    assert_eq!(sent[0].changes.len(), 3, "only the three M lacks");
    assert!(
        a.engine.next_deadline().is_some(),
        "the engine's copy is still to apply them"
    );
    let queue = to_b(a.run(out, 0));
    pump(&mut a, &mut m, ca, cm, queue);
    let out = a.engine.handle(Input::Flush, 0);
    let rest = to_b(a.run(out, 0));
    pump(&mut a, &mut m, ca, cm, rest);

    assert_eq!(purpose(&m.doc(mou).unwrap()), purpose(&d));
    assert_eq!(m.doc(mou).unwrap().get_heads(), vec![made[2]]);
    assert_eq!(a.engine.next_deadline(), None, "A's copy has caught up");
}

/// The sync messages among `frames`, decoded.
fn sync_messages<'a>(
    frames: impl IntoIterator<Item = &'a Vec<u8>>,
) -> Vec<automerge::sync::Message> {
    frames
        .into_iter()
        .filter_map(|f| match accord_sync::wire::Frame::decode(f) {
            Ok(accord_sync::wire::Frame::Sync { message, .. }) => {
                Some(automerge::sync::Message::decode(&message).unwrap())
            }
            _ => None,
        })
        .collect()
}

/// A relay sends a member who holds what a received change builds on the
/// change as it arrived (judged, applied and stored first), without
/// asking Automerge to find and encode it again for each member; the
/// member ends with the writer's heads.
#[test]
fn a_relay_forwards_received_changes_to_a_caught_up_member_as_they_arrived() {
    let RelayWorld {
        mut a,
        mut m,
        mut relay,
        sa,
        p,
        mou,
        a_link: (a_to_relay, relay_to_a),
        m_link: (m_to_relay, relay_to_m),
        ..
    } = relay_world([51, 52, 53], 10, 11);
    let actor = new_document_actor(&sa, [5; 8]);
    let mut forwarded_to_m = Vec::new();
    for text in ["First. ", "Second. "] {
        let (hash, change, heads) = type_into(&a, p, mou, actor.clone(), text);
        let out = a.local_change(mou, change.clone(), &sa, heads);
        let queue = to_b(a.run(out, 0));
        // A to the relay; what the relay sends M is delivered afterwards.
        let elsewhere = pump(&mut a, &mut relay, a_to_relay, relay_to_a, queue);
        let to_m: Vec<Vec<u8>> = sent_by_b_on(elsewhere, relay_to_m).collect();
        let carried = sync_messages(&to_m);
        forwarded_to_m.push(
            carried
                .iter()
                .any(|msg| msg.changes.iter().any(|c| c == &change[..]) && msg.heads == vec![hash]),
        );
        let queue = to_m.into_iter().map(|f| (true, f)).collect();
        pump(&mut relay, &mut m, relay_to_m, m_to_relay, queue);
        assert_eq!(
            m.doc(mou).unwrap().get_heads(),
            vec![hash],
            "M holds {text:?}"
        );
    }
    assert!(
        forwarded_to_m.iter().all(|f| *f),
        "M was sent each change as typed"
    );
    let forwarded = relay
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::InSync { conn, stats, .. } if *conn == relay_to_m => {
                Some(stats.changes_forwarded)
            }
            _ => None,
        })
        .expect("the relay saw M in sync");
    assert!(
        forwarded >= 1,
        "at least the second change was forwarded as it arrived"
    );
}

/// Delivers `frames` (sent by `relay`) and everything they cause between
/// the relay and its `members` (each with its connection id and the
/// relay's), flushing the coalescing relay after each frame it receives,
/// until nothing is left.
fn settle_relay(
    relay: &mut Node,
    members: &mut [(&mut Node, ConnId, ConnId)],
    frames: Vec<(ConnId, Vec<u8>)>,
) {
    let mut to_members: VecDeque<(ConnId, Vec<u8>)> = frames.into();
    for _ in 0..10_000 {
        let Some((on, bytes)) = to_members.pop_front() else {
            let out = relay.engine.handle(Input::Flush, 0);
            to_members.extend(relay.run(out, 0));
            if to_members.is_empty() {
                return;
            }
            continue;
        };
        let Some((member, theirs, _)) = members.iter_mut().find(|(_, _, r)| *r == on) else {
            continue;
        };
        let out = member.engine.handle(
            Input::Received {
                conn: *theirs,
                bytes,
            },
            0,
        );
        for (_, bytes) in member.run(out, 0) {
            let out = relay.engine.handle(Input::Received { conn: on, bytes }, 0);
            to_members.extend(relay.run(out, 0));
            let out = relay.engine.handle(Input::Flush, 0);
            to_members.extend(relay.run(out, 0));
        }
    }
    panic!("no quiescence");
}

/// Connects `member` to a coalescing `relay` and settles everything
/// between the relay and `others` too.
fn connect_to_relay(
    member: &mut Node,
    relay: &mut Node,
    others: &mut [(&mut Node, ConnId, ConnId)],
) -> (ConnId, ConnId) {
    let (cm, out_m) = member.engine.connect(true, None, [1; 32], 0);
    let (cr, out_r) = relay.engine.connect(false, None, [2; 32], 0);
    let mut first = Vec::new();
    for (_, bytes) in member.run(out_m, 0) {
        first.push((cr, bytes));
    }
    let mut to_members: Vec<(ConnId, Vec<u8>)> = relay.run(out_r, 0);
    for (_, bytes) in first {
        let out = relay.engine.handle(Input::Received { conn: cr, bytes }, 0);
        to_members.extend(relay.run(out, 0));
    }
    let mut members: Vec<(&mut Node, ConnId, ConnId)> = vec![(member, cm, cr)];
    for (n, a, b) in others.iter_mut() {
        members.push((&mut **n, *a, *b));
    }
    settle_relay(relay, &mut members, to_members);
    (cm, cr)
}

/// A relay that holds received messages until `Flush` (as `accord relay`
/// runs) forwards a change to a caught-up member in the call that judges
/// it, before its own copy applies or stores it: the forward names the
/// relay's heads before the change (those are durable) and comes with the
/// writer's attestation, so the member can judge the change at once. The
/// relay applies and stores the change at its next input, and everyone
/// ends with the writer's heads.
#[test]
fn a_relay_forwards_a_judged_change_before_its_own_copy_applies_it() {
    let (sa, sm) = (
        OrgSecret::from_seed([61; 32]),
        OrgSecret::from_seed([62; 32]),
    );
    let (mut a, p, mou) = creator_with_mou(&sa, &sm, Role::DecisionMaker, 12, 13);
    let mut m = joiner(&sm, p);
    let mut relay = Node::coalescing(OrgSecret::from_seed([63; 32]), PeerRole::Relay);
    let (a_to_relay, relay_to_a) = connect_to_relay(&mut a, &mut relay, &mut []);
    let (m_to_relay, relay_to_m) =
        connect_to_relay(&mut m, &mut relay, &mut [(&mut a, a_to_relay, relay_to_a)]);
    assert!(m.doc(mou).is_some(), "M cloned the MOU through the relay");
    let actor = new_document_actor(&sa, [7; 8]);
    let mut members = [
        (&mut a, a_to_relay, relay_to_a),
        (&mut m, m_to_relay, relay_to_m),
    ];
    let (held_before, hash, change) =
        warm_then_type(&mut relay, &mut members, &sa, mou, (actor, "Ahead. "));
    let [(a, ..), (m, ..)] = members;

    let (round, forward) = relay
        .sent
        .iter()
        .filter(|(_, conn, _)| *conn == relay_to_m)
        .find_map(|(round, _, frame)| {
            let msg = sync_messages([frame]).pop()?;
            let carries = msg.changes.iter().any(|c| c == &change[..]);
            carries.then_some((*round, msg))
        })
        .expect("the relay forwarded A's change to M");
    assert!(
        relay.rounds[..=round]
            .iter()
            .all(|(appends, _, _)| !appends),
        "the forward left before the relay stored the change"
    );
    assert!(
        relay.rounds[round + 1..]
            .iter()
            .any(|(appends, _, _)| *appends),
        "the relay stored it at a later input"
    );
    assert_eq!(
        forward.heads, held_before,
        "the forward names the relay's durable heads"
    );
    let attested_first = relay
        .sent
        .iter()
        .any(|(r, conn, frame)| *r <= round && *conn == relay_to_m && attests(frame, hash));
    assert!(attested_first, "A's attestation of the change went with it");
    for node in [&relay, &*m, &*a] {
        assert_eq!(node.doc(mou).unwrap().get_heads(), vec![hash]);
    }
    let forwarded = relay.events.iter().any(|e| {
        matches!(e, Event::InSync { conn, stats, .. }
            if *conn == relay_to_m && stats.changes_forwarded >= 1)
    });
    assert!(forwarded, "the relay counted the forward");
}

/// Whether `frame` is an `Attest` frame with an attestation of exactly `hash`.
fn attests(frame: &[u8], hash: automerge::ChangeHash) -> bool {
    matches!(accord_sync::wire::Frame::decode(frame),
        Ok(accord_sync::wire::Frame::Attest { attestations, .. })
            if attestations.iter().any(|a| Attestation::from_bytes(a)
                .is_ok_and(|a| a.heads == vec![hash])))
}

/// [`type_through_relay`] twice: a first edit finds the MOU unloaded on the
/// relay (it came as a snapshot and settled), so a warm-up edit goes
/// first and the returned edit is the one that matters.
fn warm_then_type(
    relay: &mut Node,
    members: &mut [(&mut Node, ConnId, ConnId)],
    sa: &OrgSecret,
    mou: DocId,
    (actor, text): (automerge::ActorId, &str),
) -> (Vec<automerge::ChangeHash>, automerge::ChangeHash, Vec<u8>) {
    type_through_relay(relay, members, sa, mou, (actor.clone(), "Warm. "));
    type_through_relay(relay, members, sa, mou, (actor, text))
}

/// `members[0]` (A, whose secret is `sa`) types `text` into `mou` with
/// `actor`; the relay receives A's frames and flushes, as `accord relay`
/// does, and everything settles. Returns the relay's heads before, the
/// change's hash and the change. `relay.rounds` and `relay.sent` hold
/// only what this edit caused.
fn type_through_relay(
    relay: &mut Node,
    members: &mut [(&mut Node, ConnId, ConnId)],
    sa: &OrgSecret,
    mou: DocId,
    (actor, text): (automerge::ActorId, &str),
) -> (Vec<automerge::ChangeHash>, automerge::ChangeHash, Vec<u8>) {
    let (a, _, relay_to_a) = &mut members[0];
    let relay_to_a = *relay_to_a;
    let p = a.engine.document(mou).unwrap().0;
    let held_before = relay.doc(mou).unwrap().get_heads();
    let (hash, change, heads) = type_into(a, p, mou, actor, text);
    let out = a.local_change(mou, change.clone(), sa, heads);
    let from_a = a.run(out, 0);
    relay.rounds.clear();
    relay.sent.clear();
    let mut to_members = Vec::new();
    for (_, bytes) in from_a {
        let input = Input::Received {
            conn: relay_to_a,
            bytes,
        };
        let out = relay.engine.handle(input, 0);
        to_members.extend(relay.run(out, 0));
    }
    let out = relay.engine.handle(Input::Flush, 0);
    to_members.extend(relay.run(out, 0));
    settle_relay(relay, members, to_members);
    (held_before, hash, change)
}

/// A relay forwarding a change to several members sends each its copy of
/// the writer's attestation just before the change: each connection then
/// finds both queued at once and writes them together, where attestations
/// to every member first and changes after made a connection that woke
/// early write the attestation alone and the change in a second write.
#[test]
fn a_relay_forward_sends_each_member_its_attestation_just_before_the_change() {
    let (sa, sm, sn) = (
        OrgSecret::from_seed([64; 32]),
        OrgSecret::from_seed([65; 32]),
        OrgSecret::from_seed([66; 32]),
    );
    let decision = Role::DecisionMaker;
    let (mut a, p, mou) =
        creator_with_members(&sa, &[(&sm, "M", decision), (&sn, "N", decision)], 14, 15);
    let (mut m, mut n) = (joiner(&sm, p), joiner(&sn, p));
    let mut relay = Node::coalescing(OrgSecret::from_seed([67; 32]), PeerRole::Relay);
    let a_link = connect_to_relay(&mut a, &mut relay, &mut []);
    let m_link = connect_to_relay(&mut m, &mut relay, &mut [(&mut a, a_link.0, a_link.1)]);
    let n_link = connect_to_relay(
        &mut n,
        &mut relay,
        &mut [(&mut a, a_link.0, a_link.1), (&mut m, m_link.0, m_link.1)],
    );
    let mut members = [
        (&mut a, a_link.0, a_link.1),
        (&mut m, m_link.0, m_link.1),
        (&mut n, n_link.0, n_link.1),
    ];
    let actor = new_document_actor(&sa, [8; 8]);
    let (_, hash, change) = warm_then_type(&mut relay, &mut members, &sa, mou, (actor, "Both. "));

    for member in [m_link.1, n_link.1] {
        let forward = relay
            .sent
            .iter()
            .position(|(_, conn, frame)| {
                *conn == member
                    && sync_messages([frame])
                        .pop()
                        .is_some_and(|msg| msg.changes.iter().any(|c| c == &change[..]))
            })
            .expect("the relay forwarded A's change to each member");
        let (round, conn, frame) = &relay.sent[forward.checked_sub(1).expect("a frame before")];
        assert_eq!(
            (*round, *conn),
            (relay.sent[forward].0, member),
            "the frame just before the forward went to the same member in the same round"
        );
        assert!(attests(frame, hash), "it is A's attestation of the change");
    }
    for node in [&relay, &*members[1].0, &*members[2].0] {
        assert_eq!(node.doc(mou).unwrap().get_heads(), vec![hash]);
    }
}

/// A relay remembers which attestations it sent each member, so as not to
/// send them again. A partner typing for weeks sends one per keystroke:
/// remembering every one grew each connection by a key per keystroke.
/// Only those the document still holds are remembered.
#[test]
fn a_relay_remembers_only_the_attestations_a_document_still_holds() {
    let (sa, sm) = (
        OrgSecret::from_seed([68; 32]),
        OrgSecret::from_seed([69; 32]),
    );
    let (mut a, p, mou) = creator_with_members(&sa, &[(&sm, "M", Role::DecisionMaker)], 16, 17);
    let mut m = joiner(&sm, p);
    let mut relay = Node::coalescing(OrgSecret::from_seed([70; 32]), PeerRole::Relay);
    let a_link = connect_to_relay(&mut a, &mut relay, &mut []);
    let m_link = connect_to_relay(&mut m, &mut relay, &mut [(&mut a, a_link.0, a_link.1)]);
    let mut members = [(&mut a, a_link.0, a_link.1), (&mut m, m_link.0, m_link.1)];
    let actor = new_document_actor(&sa, [9; 8]);
    const EDITS: usize = 30;
    let mut last = None;
    for n in 0..EDITS {
        let text = format!("Edit {n}. ");
        let (_, hash, _) =
            type_through_relay(&mut relay, &mut members, &sa, mou, (actor.clone(), &text));
        last = Some(hash);
    }
    let last = last.unwrap();
    assert_eq!(
        members[1].0.doc(mou).unwrap().get_heads(),
        vec![last],
        "M has every edit"
    );
    let remembered = relay.engine.attestations_remembered(m_link.1);
    assert!(
        remembered <= 3,
        "after {EDITS} attested edits the relay remembers {remembered} attestations sent to M"
    );
}
