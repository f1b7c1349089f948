use std::sync::Arc;

use super::*;
use crate::{StoreError, WriteBatch};

fn with_document(dir: &Path, editor: &mut Editor) -> Arc<Replica> {
    let replica = new_replica(dir);
    let mut batch = WriteBatch::new();
    batch.put_document(DOC, info("Queued"), editor.doc.save(), 1);
    replica.commit(batch).unwrap();
    Arc::new(replica)
}

fn append(editor: &mut Editor, s: &str) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.append_changes(DOC, editor.type_text(s), 1);
    batch
}

#[test]
fn many_submits_then_flush_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut editor = Editor::new();
    let replica = with_document(dir.path(), &mut editor);
    let queue = replica.commit_queue();
    let mut last = None;
    for i in 0..500 {
        let ticket = queue.submit(append(&mut editor, &format!("{i} ")));
        assert!(
            last.is_none_or(|prev| ticket > prev),
            "tickets must increase"
        );
        last = Some(ticket);
    }
    queue.flush().unwrap();
    assert_eq!(queue.durable_ticket(), 500);
    drop(queue);
    drop(replica);

    let replica = Replica::open(dir.path()).unwrap();
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(stored.changes.len(), 500);
    assert_eq!(rebuild(&stored), (editor.text(), editor.heads()));
}

#[test]
fn compaction_in_the_middle_deletes_exactly_the_earlier_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut editor = Editor::new();
    let replica = with_document(dir.path(), &mut editor);
    let queue = replica.commit_queue();
    for s in ["a", "b", "c"] {
        queue.submit(append(&mut editor, s));
    }
    let mut compact = WriteBatch::new();
    compact.compact(DOC, editor.doc.save(), 4, 4);
    queue.submit(compact);
    for s in ["d", "e"] {
        queue.submit(append(&mut editor, s));
    }
    queue.close().unwrap();

    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(stored.changes.len(), 2);
    assert_eq!(stored.snapshot_changes, 4);
    assert_eq!(rebuild(&stored), ("abcde".into(), editor.heads()));
}

#[test]
fn wait_returns_once_the_ticket_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut editor = Editor::new();
    let replica = with_document(dir.path(), &mut editor);
    let queue = replica.commit_queue();
    let ticket = queue.submit(append(&mut editor, "saved"));
    queue.wait(ticket).unwrap();
    assert!(queue.durable_ticket() >= ticket.get());
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(rebuild(&stored).0, "saved");
}

#[test]
fn dropping_the_queue_drains_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut editor = Editor::new();
    let replica = with_document(dir.path(), &mut editor);
    let queue = replica.commit_queue();
    for s in ["x", "y", "z"] {
        queue.submit(append(&mut editor, s));
    }
    drop(queue);
    drop(replica);
    let replica = Replica::open(dir.path()).unwrap();
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(rebuild(&stored).0, "xyz");
}

#[test]
fn a_failed_commit_fails_its_tickets_and_all_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut editor = Editor::new();
    let replica = with_document(dir.path(), &mut editor);
    let queue = replica.commit_queue();
    let good = queue.submit(append(&mut editor, "kept"));
    queue.wait(good).unwrap();

    let mut bad = WriteBatch::new();
    bad.append_changes([7; 16], vec![1, 2, 3], 1);
    let bad = queue.submit(bad);
    let later = queue.submit(append(&mut editor, "never"));

    let err = queue.wait(bad).unwrap_err();
    assert!(matches!(err, StoreError::CommitFailed(_)), "{err:?}");
    assert!(err.to_string().contains("not in this replica"), "{err}");
    assert!(queue.wait(later).is_err());
    assert!(queue.wait(queue.submit(WriteBatch::new())).is_err());
    assert!(queue.wait(good).is_ok());
    assert!(queue.flush().is_err());
    assert!(queue.close().is_err());

    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(rebuild(&stored).0, "kept");
}

#[test]
fn submit_stays_bounded_and_everything_lands() {
    let dir = tempfile::tempdir().unwrap();
    let mut editor = Editor::new();
    let replica = with_document(dir.path(), &mut editor);
    let queue = replica.commit_queue();
    // 80 MiB in total: more than the pending bound, so some submits must wait.
    for _ in 0..80 {
        let mut batch = WriteBatch::new();
        batch.put_setting("blob", vec![0x5A; 1024 * 1024]);
        queue.submit(batch);
    }
    queue.close().unwrap();
    assert_eq!(
        replica.get_setting("blob").unwrap().map(|v| v.len()),
        Some(1024 * 1024)
    );
}

#[test]
fn the_queue_can_be_shared_between_threads() {
    let dir = tempfile::tempdir().unwrap();
    let mut editor = Editor::new();
    let replica = with_document(dir.path(), &mut editor);
    let queue = Arc::new(replica.commit_queue());
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                for i in 0..25 {
                    let mut batch = WriteBatch::new();
                    batch.put_setting(&format!("k{t}-{i}"), vec![t]);
                    queue.wait(queue.submit(batch)).unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(queue.durable_ticket(), 100);
    assert_eq!(replica.get_setting("k3-24").unwrap(), Some(vec![3]));
}

#[test]
fn next_ticket_names_the_next_submit() {
    let dir = tempfile::tempdir().unwrap();
    let mut editor = Editor::new();
    let replica = with_document(dir.path(), &mut editor);
    let queue = replica.commit_queue();
    for s in ["a", "b", "c"] {
        let expected = queue.next_ticket();
        assert_eq!(queue.submit(append(&mut editor, s)), expected);
    }
    // Submits after the writer went idle still wake it.
    queue.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let ticket = queue.submit(append(&mut editor, "d"));
    queue.wait(ticket).unwrap();
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(rebuild(&stored).0, "abcd");
}
