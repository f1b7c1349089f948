use super::*;
use crate::{StoreError, WriteBatch};

/// Stores `editor`'s current state as a new document, then types `words` as log entries.
fn store_with_log(replica: &Replica, editor: &mut Editor, words: &[&str]) {
    let mut batch = WriteBatch::new();
    batch.put_document(DOC, info("Data sharing"), editor.doc.save(), 1);
    replica.commit(batch).unwrap();
    for word in words {
        let change = editor.type_text(word);
        let mut batch = WriteBatch::new();
        batch.append_changes(DOC, change, 1);
        replica.commit(batch).unwrap();
    }
}

#[test]
fn snapshot_plus_log_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut editor = Editor::new();
    store_with_log(&replica, &mut editor, &["Hello", ", ", "world"]);
    drop(replica);

    let replica = Replica::open(dir.path()).unwrap();
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(stored.info, info("Data sharing"));
    assert_eq!(stored.changes.len(), 3);
    assert_eq!(stored.log_changes, 3);
    let log_bytes: usize = stored.changes.iter().map(Vec::len).sum();
    assert_eq!(stored.log_bytes, log_bytes as u64);
    let (text, heads) = rebuild(&stored);
    assert_eq!(text, "Hello, world");
    assert_eq!(text, editor.text());
    assert_eq!(heads, editor.heads());
}

#[test]
fn one_entry_may_hold_several_changes() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut editor = Editor::new();
    store_with_log(&replica, &mut editor, &[]);
    let mut entry = editor.type_text("a");
    entry.extend(editor.type_text("b"));
    let mut batch = WriteBatch::new();
    batch.append_changes(DOC, entry, 2);
    replica.commit(batch).unwrap();

    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!((stored.changes.len(), stored.log_changes), (1, 2));
    assert_eq!(rebuild(&stored), (editor.text(), editor.heads()));
}

#[test]
fn compaction_keeps_content_and_empties_log() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut editor = Editor::new();
    store_with_log(&replica, &mut editor, &["one ", "two ", "three"]);

    let mut batch = WriteBatch::new();
    // Loaded with next_seq 1, then three appends.
    batch.compact(DOC, editor.doc.save(), 4, 4);
    replica.commit(batch).unwrap();
    drop(replica);

    let replica = Replica::open(dir.path()).unwrap();
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert!(stored.changes.is_empty());
    assert_eq!((stored.log_changes, stored.log_bytes), (0, 0));
    assert_eq!(stored.snapshot_changes, 4);
    assert_eq!(rebuild(&stored), ("one two three".into(), editor.heads()));
}

#[test]
fn compaction_in_a_batch_only_drops_earlier_appends() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut editor = Editor::new();
    store_with_log(&replica, &mut editor, &[]);

    let mut batch = WriteBatch::new();
    batch.append_changes(DOC, editor.type_text("a"), 1);
    batch.compact(DOC, editor.doc.save(), 2, 2);
    batch.append_changes(DOC, editor.type_text("b"), 1);
    replica.commit(batch).unwrap();

    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(stored.changes.len(), 1);
    assert_eq!(rebuild(&stored), ("ab".into(), editor.heads()));
}

#[test]
fn a_batch_touching_an_unknown_document_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut editor = Editor::new();

    let mut batch = WriteBatch::new();
    batch.put_document(DOC, info("New"), editor.doc.save(), 1);
    batch.put_setting("x", b"1".to_vec());
    batch.append_changes([2; 16], editor.type_text("lost"), 1);
    let err = replica.commit(batch).unwrap_err();
    assert!(matches!(err, StoreError::UnknownDocument { .. }), "{err:?}");
    assert!(err.to_string().contains(&"02".repeat(16)));

    assert!(replica.documents().unwrap().is_empty());
    assert_eq!(replica.load_document(&DOC).unwrap(), None);
    assert_eq!(replica.get_setting("x").unwrap(), None);
    for op in [set_info_batch(), compact_batch()] {
        assert!(matches!(
            replica.commit(op),
            Err(StoreError::UnknownDocument { .. })
        ));
    }
}

fn set_info_batch() -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.set_info([3; 16], info("x"));
    batch
}

fn compact_batch() -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.compact([3; 16], vec![], 0, 1);
    batch
}

#[test]
fn documents_are_listed_sorted_with_current_info() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut batch = WriteBatch::new();
    for id in [[5; 16], [1; 16], [3; 16]] {
        batch.put_document(id, info("untitled"), AutoCommit::new().save(), 0);
    }
    batch.set_info([3; 16], info("renamed"));
    assert!(!batch.is_empty());
    replica.commit(batch).unwrap();

    let listed = replica.documents().unwrap();
    let ids: Vec<DocKey> = listed.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![[1; 16], [3; 16], [5; 16]]);
    assert_eq!(listed[1].1.title, "renamed");
    assert!(WriteBatch::new().is_empty());
    replica.commit(WriteBatch::new()).unwrap();
}

#[test]
fn put_document_replaces_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let mut editor = Editor::new();
    store_with_log(&replica, &mut editor, &["x", "y"]);
    let mut batch = WriteBatch::new();
    batch.put_document(DOC, info("Replaced"), editor.doc.save(), 3);
    replica.commit(batch).unwrap();
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert!(stored.changes.is_empty());
    assert_eq!(stored.info.title, "Replaced");
    assert_eq!(rebuild(&stored).0, "xy");
}

#[test]
fn compact_file_shrinks_after_deleting_a_large_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = new_replica(dir.path());
    let mut editor = Editor::new();
    store_with_log(&replica, &mut editor, &[]);
    let mut batch = WriteBatch::new();
    for _ in 0..200 {
        batch.append_changes(DOC, vec![0xAB; 64 * 1024], 1);
    }
    replica.commit(batch).unwrap();
    let big = replica.file_size().unwrap();

    let mut batch = WriteBatch::new();
    batch.compact(DOC, editor.doc.save(), 1, 201);
    replica.commit(batch).unwrap();
    replica.compact_file().unwrap();
    let small = replica.file_size().unwrap();
    assert!(small < big / 2, "{small} should be well below {big}");
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(rebuild(&stored).1, editor.heads());
}

/// Pseudo-random bytes: incompressible, so redb stores them as they are.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn snapshots_of_every_size_round_trip_through_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let chunk = crate::tables::SNAPSHOT_CHUNK;
    // Largest first, so each smaller one must delete the chunks it no longer uses.
    for len in [5 * chunk + 17, 3 * chunk, chunk + 1, chunk, chunk - 1, 1, 0] {
        let snapshot = noise(len, len as u64);
        let mut batch = WriteBatch::new();
        batch.put_document(DOC, info("Big"), snapshot.clone(), 1);
        replica.commit(batch).unwrap();
        let stored = replica.load_document(&DOC).unwrap().unwrap();
        assert_eq!(stored.snapshot, snapshot, "put_document, {len} bytes");

        let compacted = noise(len, len as u64 + 1);
        let mut batch = WriteBatch::new();
        batch.compact(DOC, compacted.clone(), 1, stored.next_seq);
        replica.commit(batch).unwrap();
        let stored = replica.load_document(&DOC).unwrap().unwrap();
        assert_eq!(stored.snapshot, compacted, "compact, {len} bytes");
    }
}

#[test]
fn a_missing_snapshot_chunk_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    let chunk = crate::tables::SNAPSHOT_CHUNK;
    let mut batch = WriteBatch::new();
    batch.put_document(DOC, info("Big"), noise(3 * chunk, 7), 1);
    replica.commit(batch).unwrap();
    drop(replica);
    {
        let db = redb::Database::open(dir.path().join("replica.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(crate::tables::SNAPSHOTS)
            .unwrap()
            .remove((DOC, 1))
            .unwrap();
        txn.commit().unwrap();
    }
    let replica = Replica::open(dir.path()).unwrap();
    let err = replica.load_document(&DOC).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn a_large_snapshot_costs_little_more_than_its_size_after_compact_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = new_replica(dir.path());
    let len = 200 * 1024;
    for seed in 0..3 {
        let mut batch = WriteBatch::new();
        batch.put_document(DOC, info("Big"), noise(len, seed), 1);
        replica.commit(batch).unwrap();
    }
    replica.compact_file().unwrap();
    let size = replica.file_size().unwrap();
    // One unchunked 200 KiB value would occupy a 256 KiB run, then about twice that.
    assert!(
        size < 2 * len as u64,
        "{size} bytes for a {len}-byte snapshot"
    );
    assert_eq!(
        replica.load_document(&DOC).unwrap().unwrap().snapshot,
        noise(len, 2)
    );
}

#[test]
fn verify_reports_an_intact_replica_as_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = new_replica(dir.path());
    let mut editor = Editor::new();
    store_with_log(&replica, &mut editor, &["a", "b"]);
    assert!(replica.verify().unwrap());
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(rebuild(&stored).0, "ab");
}
