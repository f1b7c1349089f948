//! The fixed partnership every engine target runs against: organisation A
//! (the engine under test) and member B (the peer whose bytes are fuzzed),
//! one roster and one MOU. Built once per process; everything in it is
//! deterministic (fixed seeds, nonces, actors and times) so a recorded
//! conversation stays valid as a seed.

use std::sync::OnceLock;

use accord_identity::{OrgKey, OrgSecret};
use accord_model::trust::Attestation;
use accord_model::{Agreement, DocId, DocKind, PartnershipId, Role, Roster, new_document_actor};
use accord_sync::{PeerRole, Session, wire::Frame};

/// A's handshake nonce in every target, so B's recorded proofs stay valid.
pub const NONCE_A: [u8; 32] = [0xA0; 32];
/// B's handshake nonce.
pub const NONCE_B: [u8; 32] = [0xB0; 32];

/// The documents and keys of the fixed partnership.
#[derive(Debug)]
pub struct Partnership {
    pub secret_a: OrgSecret,
    pub secret_b: OrgSecret,
    pub id: PartnershipId,
    pub mou: DocId,
    /// `Automerge::save` of the roster, as A stores it.
    pub roster: Vec<u8>,
    /// `Automerge::save` of the MOU, as A stores it.
    pub mou_snapshot: Vec<u8>,
    /// Raw changes B made to the MOU after A's snapshot (one chunk each).
    pub b_changes: Vec<Vec<u8>>,
    /// B's attestations of the MOU after each of `b_changes` (encoded),
    /// sent before B's sync messages so A can verify any prefix of them.
    pub b_attestations: Vec<Vec<u8>>,
}

impl Partnership {
    /// The process-wide fixture.
    pub fn get() -> &'static Partnership {
        static FIXTURE: OnceLock<Partnership> = OnceLock::new();
        FIXTURE.get_or_init(build)
    }

    /// A's attestation (encoded) of a fixture document at `heads`, as A stores it.
    pub fn a_attests(&self, doc: DocId, heads: &[automerge::ChangeHash]) -> Vec<u8> {
        Attestation::sign(&self.secret_a, doc, heads).to_bytes()
    }

    /// The frame B sends before its changes: its attestations of the MOU.
    pub fn b_attest_frame(&self) -> accord_sync::wire::Frame {
        accord_sync::wire::Frame::Attest {
            doc: *self.mou.as_bytes(),
            attestations: self
                .b_attestations
                .iter()
                .map(|a| serde_bytes::ByteBuf::from(a.clone()))
                .collect(),
        }
    }

    pub fn key_a(&self) -> OrgKey {
        self.secret_a.public()
    }

    pub fn key_b(&self) -> OrgKey {
        self.secret_b.public()
    }

    /// B's `Hello` and `Proof` for a connection on which A is the dialer
    /// (`a_dials`) or the listener: the valid start of any conversation.
    pub fn b_handshake(&self, a_dials: bool) -> [Frame; 2] {
        let (dialer, listener, dialer_nonce, listener_nonce) = if a_dials {
            (self.key_a(), self.key_b(), NONCE_A, NONCE_B)
        } else {
            (self.key_b(), self.key_a(), NONCE_B, NONCE_A)
        };
        let session = Session {
            dialer,
            listener,
            dialer_nonce,
            listener_nonce,
        };
        [
            Frame::Hello {
                org: *self.key_b().as_bytes(),
                nonce: NONCE_B,
                role: PeerRole::Node,
            },
            Frame::Proof {
                signature: session.prove(&self.secret_b, !a_dials).to_vec(),
            },
        ]
    }

    /// B's `Summary` claiming the partnership without holding it, which
    /// makes A share it on the connection.
    pub fn b_summary(&self) -> Frame {
        Frame::Summary {
            partnerships: vec![(*self.id.as_bytes(), None)],
        }
    }
}

fn build() -> Partnership {
    let secret_a = OrgSecret::from_seed([0x0A; 32]);
    let secret_b = OrgSecret::from_seed([0x0B; 32]);
    let actor_a = new_document_actor(&secret_a, [1; 8]);
    let (mut roster, _) = Roster::create(
        "Sharing Our Strengths",
        &secret_a.public(),
        "Women's Centre",
        [5; 16],
        actor_a.clone(),
        1,
    )
    .expect("the fixed roster is valid");
    roster
        .add_member(&secret_b.public(), "CVS", Role::DecisionMaker, 1)
        .expect("B can be added");
    let mou_id = DocId::random([9; 16]);
    let (mut mou, _) = Agreement::create(
        mou_id,
        DocKind::Mou,
        roster.id(),
        "Memorandum of Understanding",
        actor_a,
        &roster.view(),
        1,
    )
    .expect("the fixed MOU is valid");
    mou.set("purpose", "To support women into work.", &roster.view())
        .expect("purpose is a text field");
    mou.commit("purpose", 2);
    roster
        .add_document(mou_id, DocKind::Mou, "Memorandum of Understanding")
        .expect("the MOU can be catalogued");
    roster.commit("catalogue", 2);
    let mou_snapshot = mou.doc_mut().save();
    let b_changes = b_edits(&mut mou, &roster, &secret_b);
    let mut with_b = mou.doc_mut().clone();
    let b_attestations = b_changes
        .iter()
        .map(|change| {
            with_b.load_incremental(change).expect("B's changes load");
            Attestation::sign(&secret_b, mou_id, &with_b.get_heads()).to_bytes()
        })
        .collect();
    Partnership {
        b_attestations,
        id: roster.id(),
        mou: mou_id,
        roster: roster.doc_mut().save(),
        mou_snapshot,
        b_changes,
        secret_a,
        secret_b,
    }
}

/// A few edits by B on its own copy of the MOU, each one change.
fn b_edits(mou: &mut Agreement, roster: &Roster, secret_b: &OrgSecret) -> Vec<Vec<u8>> {
    let doc = mou
        .doc_mut()
        .fork()
        .with_actor(new_document_actor(secret_b, [2; 8]));
    let view = roster.view();
    let mut b = Agreement::from_doc(mou.id(), doc)
        .expect("a fork is an agreement")
        .under_roster(&view.heads);
    let edits = [
        ("purpose", "To support women in Wandsworth into work."),
        ("purpose", "To support 40 women in Wandsworth into work."),
    ];
    let mut changes = Vec::new();
    for (n, (path, value)) in edits.into_iter().enumerate() {
        b.set(path, value, &view).expect("purpose is a text field");
        if let Some(change) = b.commit("edit", 10 + n as i64) {
            changes.push(change.bytes);
        }
    }
    let values = [(
        "text".to_owned(),
        "Place 40 women in volunteering roles".to_owned(),
    )];
    let item = b.add_item("objectives", &values, &view);
    if item.is_ok()
        && let Some(change) = b.commit("objective", 20)
    {
        changes.push(change.bytes);
    }
    changes
}
