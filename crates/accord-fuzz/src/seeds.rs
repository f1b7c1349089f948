//! Seed inputs for every target, made from real frames, real changes and a
//! real replica file: a recorded conversation between engine A and a real
//! engine B gives the handshake and sync seeds.

use std::collections::BTreeMap;

use accord_model::DocId;
use accord_sync::wire::{DocEntry, ErrorCode, Frame};
use accord_sync::{ConnId, Engine, EngineConfig, Input, Outputs, StorageWrite};
use automerge::AutoCommit;

use crate::handshake::{encode as encode_records, setup as setup_from};
use crate::harness::{Harness, Setup};
use crate::partnership::{NONCE_B, Partnership};
use crate::replica_file::base_replica;

/// The seeds of the target named `target` (empty for an unknown name).
pub fn for_target(target: &str) -> Vec<Vec<u8>> {
    match target {
        "wire_frame" => wire_frame_seeds(),
        "handshake" => handshake_seeds(),
        "sync_message" => sync_message_seeds(),
        "replica_file" => replica_file_seeds(),
        "attestation" => attestation_seeds(),
        _ => Vec::new(),
    }
}

fn wire_frame_seeds() -> Vec<Vec<u8>> {
    let mut frames = vec![
        Frame::Summary {
            partnerships: vec![([4; 16], Some([5; 32])), ([6; 16], None)],
        },
        Frame::Documents {
            partnership: [7; 16],
            docs: vec![DocEntry {
                id: [8; 16],
                kind: "mou".into(),
                heads: vec![[9; 32]],
            }],
        },
        Frame::SyncPart {
            doc: [10; 16],
            total: 20,
            offset: 10,
            bytes: vec![11; 10],
        },
        Frame::Error {
            code: ErrorCode::NotAMember,
            message: "not a member of any partnership held here".into(),
        },
        Frame::SummaryDone,
    ]
    .into_iter()
    .map(|frame| frame.encode())
    .collect::<Vec<_>>();
    for setup in [0, 1] {
        frames.extend(conversation(setup_from(setup), true));
    }
    frames
}

fn handshake_seeds() -> Vec<Vec<u8>> {
    let fixture = Partnership::get();
    let mut seeds = Vec::new();
    for flags in 0..8u8 {
        let messages = conversation(setup_from(flags), flags & 4 != 0);
        let records: Vec<(u8, Vec<u8>)> = messages.into_iter().map(|m| (1, m)).collect();
        seeds.push(encode_records(flags, &records));
    }
    let [hello, proof] = fixture.b_handshake(false);
    let late = [(0, hello.encode()), (255, proof.encode())];
    seeds.push(encode_records(0, &late));
    let early = [(0, fixture.b_summary().encode())];
    seeds.push(encode_records(0, &early));
    seeds
}

fn sync_message_seeds() -> Vec<Vec<u8>> {
    let fixture = Partnership::get();
    let mut seeds = Vec::new();
    for message in b_sync_messages() {
        for mode in [0u8, 2] {
            seeds.push([&[mode][..], &message].concat());
        }
    }
    for change in &fixture.b_changes {
        seeds.push([&[1u8][..], change].concat());
    }
    seeds.push([&[3u8][..], &fixture.b_changes.concat()].concat());
    let mut whole = AutoCommit::load(&fixture.mou_snapshot).expect("the fixture loads");
    whole
        .load_incremental(&fixture.b_changes.concat())
        .expect("B's changes load");
    seeds.push([&[1u8][..], &whole.save()].concat());
    seeds
}

/// B's genuine attestations, and damaged copies: truncated, a flipped
/// signature byte, a flipped head.
fn attestation_seeds() -> Vec<Vec<u8>> {
    let genuine = &Partnership::get().b_attestations;
    let mut seeds = genuine.clone();
    if let Some(last) = genuine.last() {
        seeds.push(last[..last.len() / 2].to_vec());
        let mut flipped = last.clone();
        let end = flipped.len() - 1;
        flipped[end] ^= 0x01;
        seeds.push(flipped);
        let mut head = last.clone();
        head[last.len() / 2] ^= 0x80;
        seeds.push(head);
    }
    seeds.push(Vec::new());
    seeds
}

fn replica_file_seeds() -> Vec<Vec<u8>> {
    let len = base_replica().len() as u32;
    let patch = |offset: u32, byte: u8| [&offset.to_le_bytes()[..], &[byte]].concat();
    let truncate = |to: u32| [&u32::MAX.to_le_bytes()[..], &to.to_le_bytes()].concat();
    vec![
        vec![0],
        [&[0u8][..], &patch(12, 0x40)].concat(),
        [&[0u8][..], &patch(len / 2, 0xff), &patch(len / 3, 0x01)].concat(),
        [&[0u8][..], &truncate(len / 2)].concat(),
        [&[0u8][..], &truncate(4096)].concat(),
        vec![1],
        [&[1u8][..], b"redb\x1a\x0a\xa9\x0d\x0a"].concat(),
        [&[1u8][..], &[0u8; 512]].concat(),
    ]
}

/// The sync messages B sends A while catching A up on B's edits.
fn b_sync_messages() -> Vec<Vec<u8>> {
    conversation(Setup::default(), true)
        .into_iter()
        .filter_map(|bytes| match Frame::decode(&bytes) {
            Ok(Frame::Sync { message, .. }) => Some(message),
            _ => None,
        })
        .collect()
}

/// Every message a real engine B sends to A over a whole session, B
/// holding the partnership with its own edits (`b_edits`) or joining it.
pub fn conversation(setup: Setup, b_edits: bool) -> Vec<Vec<u8>> {
    let mut a = Harness::new(setup);
    let mut b = PeerB::new(b_edits);
    let (_, out) = b.engine.connect(!setup.a_dials, None, NONCE_B, 0);
    let mut to_a = b.run(out);
    let mut recorded = Vec::new();
    let mut read_from_a = 0;
    for _ in 0..1000 {
        for bytes in to_a.drain(..) {
            recorded.push(bytes.clone());
            a.receive(bytes);
            a.flush();
        }
        let from_a: Vec<Vec<u8>> = a.sent[read_from_a..].to_vec();
        read_from_a = a.sent.len();
        if from_a.is_empty() {
            break;
        }
        for bytes in from_a {
            let out = b.receive(bytes);
            to_a.extend(b.run(out));
        }
    }
    recorded
}

/// A plain engine B with an in-memory store, just enough to talk to A.
struct PeerB {
    engine: Engine,
    store: BTreeMap<DocId, (Vec<u8>, Vec<Vec<u8>>)>,
    attestations: BTreeMap<DocId, Vec<Vec<u8>>>,
    conn: ConnId,
}

impl PeerB {
    fn new(with_edits: bool) -> PeerB {
        let fixture = Partnership::get();
        let secret = accord_identity::OrgSecret::from_seed(fixture.secret_b.seed());
        let mut peer = PeerB {
            engine: Engine::new(secret, EngineConfig::default()),
            store: BTreeMap::new(),
            attestations: BTreeMap::new(),
            conn: ConnId(0),
        };
        if with_edits {
            let mut mou = AutoCommit::load(&fixture.mou_snapshot).expect("the fixture loads");
            mou.load_incremental(&fixture.b_changes.concat())
                .expect("B's changes load");
            let before = AutoCommit::load(&fixture.mou_snapshot)
                .expect("the fixture loads")
                .get_heads();
            peer.attestations.insert(
                fixture.mou,
                vec![
                    fixture.a_attests(fixture.mou, &before),
                    fixture.b_attestations.last().cloned().unwrap_or_default(),
                ],
            );
            peer.add(fixture.id.roster_doc(), "roster", fixture.roster.clone());
            peer.add(fixture.mou, "mou", mou.save());
        } else {
            let out = peer.engine.handle(
                Input::Want {
                    partnership: fixture.id,
                },
                0,
            );
            peer.run(out);
        }
        peer
    }

    fn add(&mut self, doc: DocId, kind: &str, snapshot: Vec<u8>) {
        let heads = AutoCommit::load(&snapshot).expect("loads").get_heads();
        self.store.insert(doc, (snapshot, Vec::new()));
        self.attestations
            .entry(doc)
            .or_insert_with(|| vec![Partnership::get().a_attests(doc, &heads)]);
        let input = Input::Known {
            doc,
            partnership: Partnership::get().id,
            kind: kind.into(),
            heads,
        };
        let out = self.engine.handle(input, 0);
        self.run(out);
    }

    fn receive(&mut self, bytes: Vec<u8>) -> Outputs {
        let conn = self.conn;
        let out = self.engine.handle(Input::Received { conn, bytes }, 0);
        let mut flushed = self.engine.handle(Input::Flush, 0);
        let mut all = out;
        all.writes.append(&mut flushed.writes);
        all.send.append(&mut flushed.send);
        all.load.append(&mut flushed.load);
        all
    }

    /// Stores writes and answers loads; returns the frames to deliver to A.
    fn run(&mut self, mut out: Outputs) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        loop {
            for write in out.writes.drain(..) {
                match write {
                    StorageWrite::NewDocument { doc, snapshot, .. } => {
                        self.store.insert(doc, (snapshot, Vec::new()));
                    }
                    StorageWrite::Append { doc, changes, .. } => {
                        if let Some(stored) = self.store.get_mut(&doc) {
                            stored.1.push(changes);
                        }
                    }
                    StorageWrite::Attestations { doc, put, .. } => self
                        .attestations
                        .entry(doc)
                        .or_default()
                        .extend(put.into_iter().map(|(_, a)| a)),
                    StorageWrite::SyncState { .. } | StorageWrite::Refusal { .. } => {}
                }
            }
            for (conn, bytes) in out.send.drain(..) {
                self.conn = conn;
                frames.push(bytes);
            }
            let Some(doc) = out.load.pop() else { break };
            let input = match self.store.get(&doc).cloned() {
                Some((snapshot, log)) => Input::Loaded {
                    doc,
                    snapshot,
                    log,
                    sync_states: Vec::new(),
                    attestations: self.attestations.get(&doc).cloned().unwrap_or_default(),
                },
                None => Input::LoadFailed {
                    doc,
                    reason: "not stored".into(),
                },
            };
            let more = self.engine.handle(input, 0);
            out.writes.extend(more.writes);
            out.send.extend(more.send);
            out.load.extend(more.load);
        }
        frames
    }
}
