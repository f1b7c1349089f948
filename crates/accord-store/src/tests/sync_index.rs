//! What the sync engine relies on: heads without loading, compaction that
//! never loses a concurrent append, and per-peer sync state.

use automerge::ChangeHash;

use super::*;
use crate::{IndexEntry, MAX_HEADS, MAX_SYNC_STATE_BYTES, StoreError, WriteBatch};

const PEER: [u8; 32] = [0xB0; 32];

fn raw_heads(editor: &mut Editor) -> Vec<[u8; 32]> {
    editor.heads().iter().map(|h: &ChangeHash| h.0).collect()
}

/// Stores `editor`'s document with its heads, as the workspace does.
fn put_with_heads(replica: &Replica, id: DocKey, editor: &mut Editor) {
    let mut batch = WriteBatch::new();
    batch.put_document(id, info("Synced"), editor.doc.save(), 1);
    batch.set_heads(id, raw_heads(editor));
    replica.commit(batch).unwrap();
}

fn commit_append(replica: &Replica, editor: &mut Editor, s: &str) {
    let mut batch = WriteBatch::new();
    batch.append_changes(DOC, editor.type_text(s), 1);
    batch.set_heads(DOC, raw_heads(editor));
    replica.commit(batch).unwrap();
}

fn compact(replica: &Replica, editor: &mut Editor, expected_next_seq: u64) {
    let mut batch = WriteBatch::new();
    batch.compact(DOC, editor.doc.save(), 9, expected_next_seq);
    replica.commit(batch).unwrap();
}

#[test]
fn compaction_is_skipped_when_another_writer_appended_since_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut editor = Editor::new();
    put_with_heads(&replica, DOC, &mut editor);
    commit_append(&replica, &mut editor, "mine ");
    let loaded = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(loaded.next_seq, 2);

    // Another writer (its own actor) appends a change the compactor lacks.
    let mut other = Editor {
        doc: editor.doc.fork(),
        text: editor.text.clone(),
    };
    commit_append(&replica, &mut other, "theirs");
    compact(&replica, &mut editor, loaded.next_seq);

    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(stored.changes.len(), 2, "log untouched");
    assert_eq!(stored.snapshot, loaded.snapshot, "snapshot untouched");
    assert_eq!(rebuild(&stored), ("mine theirs".into(), other.heads()));

    // With the current value (and a snapshot that has both) it compacts.
    editor.doc.merge(&mut other.doc).unwrap();
    compact(&replica, &mut editor, stored.next_seq);
    let compacted = replica.load_document(&DOC).unwrap().unwrap();
    assert!(compacted.changes.is_empty());
    assert_eq!((compacted.snapshot_changes, compacted.next_seq), (9, 3));
    assert_eq!(rebuild(&compacted), ("mine theirs".into(), other.heads()));
}

#[test]
fn a_compactor_counts_its_own_appends() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut editor = Editor::new();
    put_with_heads(&replica, DOC, &mut editor);
    let next_seq = replica.load_document(&DOC).unwrap().unwrap().next_seq;
    for word in ["a", "b"] {
        commit_append(&replica, &mut editor, word);
    }
    compact(&replica, &mut editor, next_seq + 2);
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert!(stored.changes.is_empty());
    assert_eq!(rebuild(&stored), ("ab".into(), editor.heads()));
}

#[test]
fn heads_follow_set_heads_and_survive_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut editor = Editor::new();
    let mut batch = WriteBatch::new();
    batch.put_document(DOC, info("Synced"), editor.doc.save(), 1);
    replica.commit(batch).unwrap();
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert!(stored.heads.is_empty(), "unknown until set");

    commit_append(&replica, &mut editor, "x");
    let heads = raw_heads(&mut editor);
    assert_eq!(replica.load_document(&DOC).unwrap().unwrap().heads, heads);
    compact(&replica, &mut editor, 2);
    drop(replica);

    let replica = Replica::open(dir.path()).unwrap();
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert!(stored.changes.is_empty());
    assert_eq!(stored.heads, heads);

    // Replacing the document forgets heads that may no longer be true.
    let mut batch = WriteBatch::new();
    batch.put_document(DOC, info("Replaced"), AutoCommit::new().save(), 0);
    replica.commit(batch).unwrap();
    assert!(
        replica
            .load_document(&DOC)
            .unwrap()
            .unwrap()
            .heads
            .is_empty()
    );
}

#[test]
fn the_index_lists_every_document_with_heads_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut editors: Vec<(DocKey, Editor)> = [[5; 16], [1; 16], [3; 16]]
        .into_iter()
        .map(|id| (id, Editor::new()))
        .collect();
    for (id, editor) in &mut editors {
        editor.type_text(&format!("doc {}", id[0]));
        put_with_heads(&replica, *id, editor);
    }
    editors.sort_by_key(|(id, _)| *id);
    let expected: Vec<IndexEntry> = editors
        .iter_mut()
        .map(|(id, editor)| IndexEntry {
            id: *id,
            info: info("Synced"),
            heads: raw_heads(editor),
        })
        .collect();
    assert_eq!(replica.document_index().unwrap(), expected);
    assert!(
        new_replica(tempfile::tempdir().unwrap().path())
            .document_index()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn too_many_heads_are_stored_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    put_with_heads(&replica, DOC, &mut Editor::new());
    let mut batch = WriteBatch::new();
    batch.set_heads(DOC, vec![[7; 32]; MAX_HEADS + 1]);
    replica.commit(batch).unwrap();
    assert!(replica.document_index().unwrap()[0].heads.is_empty());

    let mut batch = WriteBatch::new();
    batch.set_heads(DOC, vec![[7; 32]; MAX_HEADS]);
    replica.commit(batch).unwrap();
    assert_eq!(replica.document_index().unwrap()[0].heads.len(), MAX_HEADS);
}

#[test]
fn set_heads_on_an_unknown_document_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut batch = WriteBatch::new();
    batch.set_heads([3; 16], vec![[1; 32]]);
    let err = replica.commit(batch).unwrap_err();
    assert!(matches!(err, StoreError::UnknownDocument { .. }), "{err:?}");
}

#[test]
fn sync_states_are_kept_per_document_and_peer() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    put_with_heads(&replica, DOC, &mut Editor::new());
    put_with_heads(&replica, [2; 16], &mut Editor::new());
    assert_eq!(replica.sync_state(&DOC, &PEER).unwrap(), None);

    let mut batch = WriteBatch::new();
    batch.put_sync_state(DOC, PEER, b"first".to_vec()).unwrap();
    batch
        .put_sync_state(DOC, [0xC0; 32], b"other peer".to_vec())
        .unwrap();
    batch
        .put_sync_state([2; 16], PEER, b"other doc".to_vec())
        .unwrap();
    batch.put_sync_state(DOC, PEER, b"latest".to_vec()).unwrap();
    replica.commit(batch).unwrap();
    drop(replica);

    let replica = Replica::open(dir.path()).unwrap();
    let state = |doc: DocKey, peer: [u8; 32]| replica.sync_state(&doc, &peer).unwrap();
    assert_eq!(state(DOC, PEER).as_deref(), Some(&b"latest"[..]));
    assert_eq!(state(DOC, [0xC0; 32]).as_deref(), Some(&b"other peer"[..]));
    assert_eq!(state([2; 16], PEER).as_deref(), Some(&b"other doc"[..]));
    assert_eq!(state([2; 16], [0xC0; 32]), None);
}

#[test]
fn an_oversized_sync_state_is_refused_before_it_joins_the_batch() {
    let mut batch = WriteBatch::new();
    let err = batch
        .put_sync_state(DOC, PEER, vec![0; MAX_SYNC_STATE_BYTES + 1])
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
    assert!(batch.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    put_with_heads(&replica, DOC, &mut Editor::new());
    let largest = vec![0xEE; MAX_SYNC_STATE_BYTES];
    batch.put_sync_state(DOC, PEER, largest.clone()).unwrap();
    replica.commit(batch).unwrap();
    assert_eq!(replica.sync_state(&DOC, &PEER).unwrap(), Some(largest));
}

#[test]
fn a_sync_state_for_an_unknown_document_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut batch = WriteBatch::new();
    batch.put_sync_state(DOC, PEER, b"s".to_vec()).unwrap();
    let err = replica.commit(batch).unwrap_err();
    assert!(matches!(err, StoreError::UnknownDocument { .. }), "{err:?}");
    assert_eq!(replica.sync_state(&DOC, &PEER).unwrap(), None);
}

#[test]
fn a_replica_without_the_sync_table_reads_no_state() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_replica(dir.path()));
    {
        let db = redb::Database::open(dir.path().join("replica.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(crate::tables::SYNC_STATES).unwrap());
        txn.commit().unwrap();
    }
    let replica = Replica::open(dir.path()).unwrap();
    assert_eq!(replica.sync_state(&DOC, &PEER).unwrap(), None);
}

#[test]
fn only_a_batch_of_sync_states_alone_skips_the_fsync() {
    let mut states = WriteBatch::new();
    states.put_sync_state(DOC, PEER, b"s".to_vec()).unwrap();
    assert!(!states.is_durable_data(), "sync states are a cache");

    let mut mixed = WriteBatch::new();
    mixed.put_sync_state(DOC, PEER, b"s".to_vec()).unwrap();
    mixed.append_changes(DOC, vec![1, 2, 3], 1);
    assert!(
        mixed.is_durable_data(),
        "a change in the batch makes it data"
    );

    let mut heads = WriteBatch::new();
    heads.set_heads(DOC, vec![[7; 32]]);
    assert!(heads.is_durable_data());
}

#[test]
fn a_sync_state_committed_without_fsync_survives_a_later_durable_commit_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut editor = Editor::new();
    put_with_heads(&replica, DOC, &mut editor);
    let mut batch = WriteBatch::new();
    batch.put_sync_state(DOC, PEER, b"lazy".to_vec()).unwrap();
    replica.commit(batch).unwrap();
    assert_eq!(
        replica.sync_state(&DOC, &PEER).unwrap().as_deref(),
        Some(&b"lazy"[..])
    );
    commit_append(&replica, &mut editor, "after");
    drop(replica);

    let replica = Replica::open(dir.path()).unwrap();
    assert_eq!(
        replica.sync_state(&DOC, &PEER).unwrap().as_deref(),
        Some(&b"lazy"[..])
    );
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(stored.changes.len(), 1, "the durable append is there too");
}
