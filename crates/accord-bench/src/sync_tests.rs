//! Small runs of the sync benchmarks, so CI exercises their code paths.

use crate::sync_merge::{Concurrent, Txn, raw};
use crate::sync_reconnect::{reconnect, setup};
use crate::trace::{Patch, Trace, replay_plain};
use crate::{relay_keystrokes, sync_clone, sync_keystrokes};
use std::time::Duration;

fn patches(n: usize) -> Vec<Patch> {
    let mut out = Vec::new();
    let mut len = 0usize;
    for i in 0..n {
        let p = if i % 7 == 6 && len > 0 {
            Patch {
                pos: (i * 31) % len,
                del: 1,
                ins: String::new(),
            }
        } else {
            Patch {
                pos: (i * 17) % (len + 1),
                del: 0,
                ins: ["a", "é", "✓", " "][i % 4].to_owned(),
            }
        };
        len = len + p.ins.chars().count() - p.del;
        out.push(p);
    }
    out
}

fn trace(n: usize) -> Trace {
    let patches = patches(n);
    Trace {
        name: "synthetic".into(),
        end_content: replay_plain(&patches),
        txns: n,
        patches,
    }
}

#[test]
fn sync_clone_direct_relay_and_raw_reach_end_content() {
    let t = trace(300);
    let mut f = sync_clone::fixture(&t).unwrap();
    let d = sync_clone::direct(&f, &t.end_content).unwrap();
    let r = sync_clone::relay(&f, &t.end_content).unwrap();
    let raw = sync_clone::raw(&mut f, &t.end_content).unwrap();
    assert!(d.traffic.bytes > 0 && r.traffic.bytes > d.traffic.bytes && raw.traffic.bytes > 0);
}

#[test]
fn sync_keystrokes_reach_the_receiver_one_by_one_without_a_window() {
    let t = trace(300);
    let f = sync_clone::fixture(&t).unwrap();
    // run_once checks that A ends with B's text (and stored every keystroke).
    let run = sync_keystrokes::run_once(&f, 20, 0, Duration::ZERO).unwrap();
    assert_eq!(run.batch_sizes, vec![1; 20]);
    assert_eq!(run.raw_apply.len(), 20);
    assert!(run.receiver_busy > Duration::ZERO);
}

#[test]
fn sync_keystrokes_inside_a_window_are_applied_together() {
    let t = trace(300);
    let f = sync_clone::fixture(&t).unwrap();
    // Typed as fast as the engines go, well inside a 200 ms window (the
    // run waits for A's deadline on the real clock, once or twice).
    let run = sync_keystrokes::run_once(&f, 20, 200, Duration::ZERO).unwrap();
    assert_eq!(run.batch_sizes.iter().sum::<usize>(), 20);
    assert!(run.batch_sizes.len() < 20, "{:?}", run.batch_sizes);
    assert_eq!(run.raw_apply.len(), run.batch_sizes.len());
}

#[test]
fn sync_reconnect_costs_little_and_loads_only_changed_documents() {
    let t = trace(200);
    let mut s = setup(&t.patches, &t.end_content, 12).unwrap();
    let r = reconnect(&mut s.net);
    assert_eq!((r.loads_a, r.loads_b), (0, 0));
    assert!(r.traffic.bytes < 1_000, "{r:?}");
}

#[test]
fn sync_merge_raw_replays_a_tiny_concurrent_trace() {
    // Agent 0 types "ab", agent 1 (after "a") concurrently types "X" at 0, then agent 0 merges and types "!".
    let txn = |parents: Vec<usize>, agent, patches: Vec<(usize, usize, &str)>| Txn {
        parents,
        agent,
        patches: patches
            .into_iter()
            .map(|(p, d, s)| (p, d, s.to_owned()))
            .collect(),
    };
    let t = Concurrent {
        end_content: "Xab!".into(),
        txns: vec![
            txn(vec![], 0, vec![(0, 0, "a")]),
            txn(vec![0], 0, vec![(1, 0, "b")]),
            txn(vec![0], 1, vec![(0, 0, "X")]),
            txn(vec![1, 2], 0, vec![(3, 0, "!")]),
        ],
    };
    assert_eq!(raw(&t, false).unwrap().syncs, 3);
    raw(&t, true).unwrap();
}

/// Regression: a local change to a document the engine had released from
/// memory must still be pushed to connected peers.
#[test]
fn sync_merge_accord_replicas_converge() {
    let txn = |parents: Vec<usize>, agent, ins: &str, pos| Txn {
        parents,
        agent,
        patches: vec![(pos, 0, ins.to_owned())],
    };
    let t = Concurrent {
        end_content: "Xab!".into(),
        txns: vec![
            txn(vec![], 0, "a", 0),
            txn(vec![0], 0, "b", 1),
            txn(vec![0], 1, "X", 0),
            txn(vec![1, 2], 0, "!", 3),
        ],
    };
    crate::sync_merge::accord(&t).unwrap();
}

/// Regression: once the engines settled, a change goes to a peer that
/// started without the document as a change, not as the whole document
/// again (the peer's list from the handshake said it held nothing).
#[test]
fn sync_merge_sends_changes_not_the_document_at_each_merge_point() {
    let mut txns = Vec::new();
    // Agent 0 writes 200 characters, then the two agents take turns, each
    // turn built on the other's last: every turn is a merge point.
    for i in 0..200 {
        txns.push(Txn {
            parents: if i == 0 { vec![] } else { vec![i - 1] },
            agent: 0,
            patches: vec![(i, 0, "abcdefgh"[i % 8..i % 8 + 1].to_owned())],
        });
    }
    let mut text: String = (0..200).map(|i| &"abcdefgh"[i % 8..i % 8 + 1]).collect();
    for k in 0..20 {
        let i = txns.len();
        txns.push(Txn {
            parents: vec![i - 1],
            agent: (k + 1) % 2,
            patches: vec![(0, 0, "X".to_owned())],
        });
        text.insert(0, 'X');
    }
    let t = Concurrent {
        end_content: text,
        txns,
    };
    let out = crate::sync_merge::accord(&t).unwrap();
    assert!(out.syncs >= 20);
    // One: Automerge itself sends the whole document when the changes to
    // send are over a third of it (A's first 200 after the template). Before
    // the fix, A sent B a snapshot at every other merge point (11).
    assert_eq!(out.whole_documents, 1);
}

#[test]
fn relay_keystrokes_are_forwarded_before_the_relays_apply() {
    let t = trace(40);
    let f = sync_clone::fixture(&t).unwrap();
    let run = relay_keystrokes::run_once(&f, 10).unwrap();
    assert_eq!(run.raw_apply.len(), 10);
    assert_eq!(
        run.forwarded_at_once, 10,
        "every keystroke left in the call that judged it"
    );
    assert_eq!(
        run.applied_before_forward, 0,
        "the relay forwarded each before it applied and stored it"
    );
}
