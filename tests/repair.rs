//! `accord repair` end to end: a real relay on 127.0.0.1, an organisation
//! whose replica file is damaged on disk while its node is stopped, and the
//! real binary rebuilding it from what is intact and from the relay.

use std::path::Path;

use serde_json::Value;

use crate::support::Org;
use crate::sync::{Relay, doc_ids, serve, sync_ok};

/// Text set only in the MOU's last change: found in the file to damage it.
const MARKER: &str = "Zebra quartz marker sentence for the repair test.";
/// `--timeout` for the resync, so a failure cannot hang the test.
const TIMEOUT: &str = "20";

/// Flips a byte inside every copy of `needle` in the file; returns how many.
fn damage_every(path: &Path, needle: &[u8]) -> usize {
    let mut bytes = std::fs::read(path).expect("read the replica");
    let mut hits = 0;
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(needle.len()).position(|w| w == needle) {
        bytes[at + found + needle.len() / 2] ^= 0x20;
        hits += 1;
        at += found + needle.len();
    }
    std::fs::write(path, bytes).expect("write the replica");
    hits
}

/// Every agreement as `doc show --format json` prints it (content and heads).
fn documents(org: &Org) -> Vec<Value> {
    doc_ids(org).iter().map(|id| org.doc(id)).collect()
}

fn ids(notes: &Value) -> Vec<&str> {
    notes
        .as_array()
        .expect("a list")
        .iter()
        .map(|n| n["id"].as_str().expect("an id"))
        .collect()
}

#[test]
fn repair_rebuilds_a_damaged_replica_from_the_relay() {
    let relay_home = Org::empty();
    let relay = Relay::start(&relay_home, 0);
    let a = Org::init("Alpha Trust");
    a.ok(&["partnership", "new", "Sharing Our Strengths"]);
    let mou = a.new_doc("Sharing", "mou", "MOU");
    a.new_doc("Sharing", "values", "Values");
    a.ok(&["doc", "set", &mou, "purpose", MARKER]);
    a.ok(&["peer", "add", &relay.url, "--key", &relay.key]);
    sync_ok(&a, "A", &[]);
    let before = documents(&a);

    assert!(damage_every(&a.replica_file(), MARKER.as_bytes()) > 0);
    let (code, stderr) = a.fails(&["doc", "show", &mou]);
    assert!(stderr.contains("accord repair"), "exit {code}: {stderr}");

    let out = a.run(&["repair", "--json", "--timeout", TIMEOUT]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "repair failed: {stderr}");
    assert!(
        stderr.contains("moved the damaged file"),
        "progress: {stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["healthy"], false);
    assert_eq!(ids(&report["lost"]), vec![mou.as_str()], "{report:#}");
    assert_eq!(ids(&report["missing"]), Vec::<&str>::new(), "{report:#}");
    assert_eq!(report["refetched"], serde_json::json!([mou]), "{report:#}");
    assert_eq!(
        report["salvaged_documents"], 2,
        "roster and values: {report:#}"
    );
    assert_eq!(report["synced"][0]["ok"], true, "{report:#}");

    // The same documents, content and heads, as before the damage; and
    // nothing left to exchange with the relay.
    assert_eq!(documents(&a), before);
    assert!(!sync_ok(&a, "A", &[]).moved_anything());

    let again = a.ok(&["repair"]);
    assert!(
        again.starts_with("The replica is healthy: 3 documents checked."),
        "{again}"
    );
}

#[test]
fn repair_refuses_while_the_node_runs() {
    let a = Org::init("Alpha Trust");
    let (_node, _url) = serve(&a, "A's node");
    let (code, stderr) = a.fails(&["repair"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("stop `accord serve`"), "{stderr}");
}
