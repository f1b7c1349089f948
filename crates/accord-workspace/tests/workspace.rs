//! The workspace against a real replica in a temporary folder.

use accord_model::automerge::ChangeHash;
use accord_model::{DocKind, Role, SectionContent};
use accord_workspace::{CompactionPolicy, Workspace, WorkspaceError};

fn workspace() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::init(&dir.path().join("data"), "Women's Centre").unwrap();
    ws.create_partnership("Sharing Our Strengths").unwrap();
    ws.create_document("Sharing", DocKind::Mou, "MOU").unwrap();
    (dir, ws)
}

fn purpose(ws: &Workspace) -> String {
    let (view, _) = ws.view("MOU").unwrap();
    match &view.section("purpose").unwrap().content {
        SectionContent::Text(text) => text.clone(),
        other => panic!("purpose is {other:?}"),
    }
}

#[test]
fn edits_survive_reopening_and_compaction() {
    let (dir, ws) = workspace();
    let ws = ws.with_compaction_policy(CompactionPolicy { min_log_changes: 3 });
    for n in 0..20 {
        ws.edit("MOU", "typing", |a, r| {
            a.set("purpose", &format!("draft {n}"), r)
        })
        .unwrap();
    }
    let (before, _) = ws.view("MOU").unwrap();
    drop(ws);
    let ws = Workspace::open(&dir.path().join("data")).unwrap();
    let (after, _) = ws.view("MOU").unwrap();
    assert_eq!(after, before);
    assert_eq!(purpose(&ws), "draft 19");
    let stored = ws
        .replica()
        .load_document(after.id.as_bytes())
        .unwrap()
        .unwrap();
    assert!(
        stored.snapshot_changes > 1,
        "the log was folded into the snapshot"
    );
    assert!(stored.log_changes < stored.snapshot_changes, "{stored:?}");
}

#[test]
fn an_edit_from_an_older_version_keeps_changes_made_since() {
    let (_dir, ws) = workspace();
    ws.edit("MOU", "base", |a, r| {
        a.set("purpose", "We meet. We share.", r)
    })
    .unwrap();
    let (base_view, _) = ws.view("MOU").unwrap();
    let base: Vec<ChangeHash> = base_view.heads.iter().map(|h| h.parse().unwrap()).collect();
    // Someone else's change lands after the person opened their editor...
    ws.edit("MOU", "other", |a, r| {
        a.set("purpose", "We meet monthly. We share.", r)
    })
    .unwrap();
    // ...and the person's edit, made against the older text, merges with it.
    ws.edit_at("MOU", Some(&base), "mine", |a, r| {
        a.set("purpose", "We meet. We share openly.", r)
    })
    .unwrap();
    assert_eq!(purpose(&ws), "We meet monthly. We share openly.");
}

#[test]
fn renaming_an_agreement_updates_the_roster_catalogue() {
    let (_dir, ws) = workspace();
    ws.edit("MOU", "rename", |a, r| a.set("title", "MOU 2027", r))
        .unwrap();
    let listed = ws.documents(Some("Sharing")).unwrap();
    assert_eq!(listed[0].title, "MOU 2027");
    assert!(ws.document("mou 2027").is_ok());
}

#[test]
fn roles_gate_edits() {
    let (_dir, ws) = workspace();
    let me = ws.whoami().key;
    ws.set_role("Sharing", &me.to_hex(), Role::Consultee)
        .unwrap_err();
    let other = accord_identity::OrgSecret::from_seed([3; 32]).public();
    ws.add_member("Sharing", "CVS", other, Role::DecisionMaker)
        .unwrap();
    ws.set_role("Sharing", "Women", Role::Consultee).unwrap();
    let err = ws
        .edit("MOU", "x", |a, r| a.set("purpose", "x", r))
        .unwrap_err();
    assert!(matches!(err, WorkspaceError::NotEntitled { .. }), "{err}");
}

#[test]
fn live_typing_is_durable_after_flush() {
    let (dir, ws) = workspace();
    let mut live = ws.open_live("MOU").unwrap();
    let text = live.text_obj("purpose").unwrap();
    for (i, c) in "hello world".chars().enumerate() {
        live.splice(&text, i, 0, &c.to_string()).unwrap();
    }
    live.flush().unwrap();
    drop(live);
    drop(ws);
    let ws = Workspace::open(&dir.path().join("data")).unwrap();
    assert_eq!(purpose(&ws), "hello world");
}
