//! `accord_workspace::repair` against real replicas damaged on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use accord_model::{DocKind, SectionContent};
use accord_workspace::{
    PeerConfig, PeerSync, RepairOptions, RepairReport, Workspace, WorkspaceError, repair,
};

/// Text set in the damaged document only: found in the file to damage it.
const MARKER: &str = "Zebra quartz marker sentence for the repair test.";

/// A replica with two partnerships (one document each), a peer and a
/// joined-but-unreceived partnership; the MOU's last change holds `MARKER`.
fn populated(dir: &Path) -> Workspace {
    let ws = Workspace::init(dir, "Women's Centre").unwrap();
    ws.create_partnership("Sharing Our Strengths").unwrap();
    ws.create_document("Sharing", DocKind::Mou, "MOU").unwrap();
    ws.create_partnership("Winter Shelter").unwrap();
    ws.create_document("Winter", DocKind::Values, "Shelter values")
        .unwrap();
    ws.edit("MOU", "purpose", |a, r| a.set("purpose", MARKER, r))
        .unwrap();
    assert_eq!(purpose(&ws, "MOU"), MARKER);
    ws.add_peer("ws://127.0.0.1:9/sync", None).unwrap();
    // Later commits that do not touch the MOU's pages, so that both of
    // redb's commit slots reference the damaged page.
    ws.add_peer("ws://127.0.0.1:10/sync", None).unwrap();
    ws.remove_peer("ws://127.0.0.1:10/sync").unwrap();
    ws
}

fn purpose(ws: &Workspace, doc: &str) -> String {
    let (view, _) = ws.view(doc).unwrap();
    match &view.section("purpose").unwrap().content {
        SectionContent::Text(text) => text.clone(),
        other => panic!("purpose is {other:?}"),
    }
}

/// Flips a byte in every copy of `needle` in the file (redb keeps stale
/// copies in freed pages; damaging only one might miss the live one).
fn damage_every(path: &Path, needle: &[u8]) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let mut hits = 0;
    let mut at = 0;
    while let Some(found) = find(&bytes[at..], needle) {
        bytes[at + found + needle.len() / 2] ^= 0x20;
        hits += 1;
        at += found + needle.len();
    }
    std::fs::write(path, bytes).unwrap();
    hits
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Runs repair with no network: the resync reports every peer unreachable.
fn run(dir: &Path, options: &RepairOptions) -> (Result<RepairReport, WorkspaceError>, Vec<String>) {
    let mut lines = Vec::new();
    let mut progress = |line: &str| lines.push(line.to_owned());
    let mut resync = |_: &Arc<Workspace>, peers: &[PeerConfig]| {
        peers
            .iter()
            .map(|p| PeerSync {
                url: p.url.clone(),
                ok: false,
                detail: "unreachable in this test".into(),
            })
            .collect()
    };
    let report = repair(dir, options, &mut progress, &mut resync);
    (report, lines)
}

fn damaged_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("replica.redb.damaged-"))
        .collect()
}

#[test]
fn a_healthy_replica_is_reported_healthy_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    drop(populated(dir.path()));
    let before = std::fs::read(dir.path().join("replica.redb")).unwrap();

    let (report, progress) = run(dir.path(), &RepairOptions::default());
    let report = report.unwrap();

    assert!(report.healthy, "{report:#?}");
    assert!(report.complete());
    // Two rosters, two agreements.
    assert_eq!(report.documents_checked, 4);
    assert!(report.damage.is_empty() && report.moved_to.is_none());
    assert!(progress.iter().any(|l| l.starts_with("checking")));
    assert_eq!(
        std::fs::read(dir.path().join("replica.redb")).unwrap(),
        before
    );
    assert!(damaged_files(dir.path()).is_empty());
}

#[test]
fn a_damaged_document_is_moved_aside_and_everything_else_salvaged() {
    let dir = tempfile::tempdir().unwrap();
    let ws = populated(dir.path());
    let values_purpose_before = ws.view("Shelter").unwrap().0;
    let mou = ws.document("MOU").unwrap().id;
    drop(ws);
    let path = dir.path().join("replica.redb");
    assert!(
        damage_every(&path, MARKER.as_bytes()) > 0,
        "the marker is in the file"
    );
    let damaged = std::fs::read(&path).unwrap();

    let (report, _) = run(dir.path(), &RepairOptions::default());
    let report = report.unwrap();

    assert!(!report.healthy);
    assert!(!report.damage.is_empty(), "{report:#?}");
    // The damaged file is kept, byte for byte, beside the new replica.
    let moved = report.moved_to.clone().expect("moved aside");
    assert_eq!(damaged_files(dir.path()), vec![moved.clone()]);
    assert_eq!(std::fs::read(&moved).unwrap(), damaged);
    // Only the MOU is lost; both rosters and the other agreement are back.
    assert_eq!(report.salvaged_documents, 3, "{report:#?}");
    assert!(report.salvaged_attestations >= 3);
    let lost: Vec<&str> = report.lost.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(lost, vec![mou.to_string().as_str()]);
    // The peer is kept; its sync failed here, so the MOU is still missing.
    assert_eq!(report.salvaged_peers, 1);
    assert!(report.missing.iter().any(|m| m.id == mou.to_string()));
    assert!(!report.complete());
    assert!(
        report.next_steps.iter().any(|s| s.contains("accord sync")),
        "{:?}",
        report.next_steps
    );

    let ws = Workspace::open(dir.path()).unwrap();
    assert_eq!(ws.whoami().name, "Women's Centre");
    assert_eq!(ws.partnerships().unwrap().len(), 2);
    assert_eq!(ws.view("Shelter").unwrap().0, values_purpose_before);
    assert_eq!(
        ws.peers().unwrap(),
        vec![PeerConfig {
            url: "ws://127.0.0.1:9/sync".into(),
            key: None
        }]
    );
    // The roster still lists the MOU, which a later sync will fetch.
    assert!(matches!(
        ws.view("MOU"),
        Err(WorkspaceError::NoSuchDocument(_))
    ));
    drop(ws);

    // The rebuilt replica is whole as far as its own content goes.
    let (again, _) = run(dir.path(), &RepairOptions::default());
    assert!(again.unwrap().healthy);
}

#[test]
fn a_truncated_replica_is_rebuilt_empty_and_says_what_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    drop(populated(dir.path()));
    let path = dir.path().join("replica.redb");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();

    // Its name cannot be read from what is left, and no roster names it.
    let (report, _) = run(dir.path(), &RepairOptions::default());
    assert!(
        matches!(report, Err(WorkspaceError::RepairNeedsName)),
        "{report:?}"
    );
    assert!(damaged_files(dir.path()).is_empty(), "nothing moved yet");

    let options = RepairOptions {
        org_name: Some("Women's Centre".into()),
    };
    let report = run(dir.path(), &options).0.unwrap();
    assert!(!report.healthy && !report.complete(), "{report:#?}");
    assert!(report.partly_unknown);
    assert_eq!(damaged_files(dir.path()).len(), 1);
    let ws = Workspace::open(dir.path()).unwrap();
    assert_eq!(ws.whoami().name, "Women's Centre");
    assert!(ws.partnerships().unwrap().is_empty());
}

#[test]
fn a_damaged_replica_is_named_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    drop(populated(dir.path()));
    let path = dir.path().join("replica.redb");
    damage_every(&path, MARKER.as_bytes());

    let ws = Workspace::open(dir.path()).unwrap();
    let err = ws.view("MOU").map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("accord repair"), "{err}");
    // The other agreement still reads.
    assert!(ws.view("Shelter").is_ok());
}

#[test]
fn repair_refuses_while_the_replica_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let _ws = populated(dir.path());
    let (report, _) = run(dir.path(), &RepairOptions::default());
    assert!(
        matches!(
            report,
            Err(WorkspaceError::Store(
                accord_store::StoreError::InUse { .. }
            ))
        ),
        "{report:?}"
    );
}
