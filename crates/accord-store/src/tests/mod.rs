//! Tests of the replica as a whole: real files in temporary folders, real Automerge changes.

mod corruption;
mod documents;
mod lifecycle;
mod queue;
mod sync_index;

use std::path::Path;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc};

use crate::{DocInfo, DocKey, Replica, StoredDocument};

const SEED: [u8; 32] = [42; 32];
const DOC: DocKey = [1; 16];

fn new_replica(dir: &Path) -> Replica {
    Replica::create(dir, "Acme Co-op", SEED, 1_700_000_000).unwrap()
}

fn info(title: &str) -> DocInfo {
    DocInfo {
        partnership: [9; 16],
        kind: "agreement".into(),
        title: title.into(),
    }
}

/// An Automerge document with one text object, to generate real changes.
struct Editor {
    doc: AutoCommit,
    text: ObjId,
}

impl Editor {
    fn new() -> Editor {
        let mut doc = AutoCommit::new();
        let text = doc.put_object(ROOT, "body", ObjType::Text).unwrap();
        doc.commit();
        Editor { doc, text }
    }

    /// Types `s` at the end and returns the raw change it made.
    fn type_text(&mut self, s: &str) -> Vec<u8> {
        let len = self.doc.length(&self.text);
        self.doc.splice_text(&self.text, len, 0, s).unwrap();
        self.doc.commit();
        self.doc
            .get_last_local_change()
            .unwrap()
            .raw_bytes()
            .to_vec()
    }

    fn text(&self) -> String {
        self.doc.text(&self.text).unwrap()
    }

    fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }
}

/// Rebuilds a document the way the workspace will: snapshot, then each log entry.
fn rebuild(stored: &StoredDocument) -> (String, Vec<ChangeHash>) {
    let mut doc = AutoCommit::load(&stored.snapshot).unwrap();
    for entry in &stored.changes {
        doc.load_incremental(entry).unwrap();
    }
    let (_, text) = doc.get(ROOT, "body").unwrap().unwrap();
    (doc.text(&text).unwrap(), doc.get_heads())
}
