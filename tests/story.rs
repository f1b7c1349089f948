//! The Foundation story, end to end: an organisation creates its replica,
//! starts a partnership, writes its three agreements, edits them with
//! `set`, `add`, `remove` and `edit`, reads their history, exports them,
//! and everything survives a restart (every command is a new process).

use crate::support::{Org, script};

fn partnership_with_mou() -> (Org, String) {
    let lead = Org::init("Women's Centre Wandsworth");
    lead.ok(&["partnership", "new", "Sharing Our Strengths"]);
    let doc = lead.ok(&[
        "doc",
        "new",
        "Sharing",
        "--kind",
        "mou",
        "--title",
        "Memorandum of Understanding",
    ]);
    (lead, doc.trim().to_owned())
}

#[test]
fn whoami_json_is_stable_for_scripts() {
    let org = Org::init("Women's Centre Wandsworth");
    let me = org.json(&["whoami", "--json"]);
    assert_eq!(me["org"], "Women's Centre Wandsworth");
    assert_eq!(me["key"].as_str().unwrap().len(), 64);
    assert_eq!(me["fingerprint"].as_str().unwrap().len(), 19);
    let text = org.ok(&["whoami"]);
    assert!(text.contains(me["fingerprint"].as_str().unwrap()));
    assert!(
        !text.contains("secret"),
        "whoami must never print the secret key"
    );
}

#[test]
fn key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let org = Org::init("Women's Centre Wandsworth");
    let mode = std::fs::metadata(org.data.join("org.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn partnership_roster_lists_lead_members_and_documents() {
    let (lead, doc_id) = partnership_with_mou();
    let partner = Org::init("CVS Wandsworth");
    lead.add_member("Sharing", "CVS Wandsworth", &partner, "consultee");
    let roster = lead.json(&["partnership", "show", "sharing our", "--json"]);
    let members = roster["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["name"], "Women's Centre Wandsworth");
    assert_eq!(members[0]["lead"], true);
    assert_eq!(members[0]["role"], "decision-maker");
    assert_eq!(members[1]["role"], "consultee");
    assert_eq!(roster["documents"][0]["id"], doc_id.as_str());
    assert_eq!(roster["documents"][0]["kind"], "mou");

    lead.ok(&[
        "member",
        "set-role",
        "Sharing",
        "CVS",
        "--role",
        "decision-maker",
    ]);
    let roster = lead.json(&["partnership", "show", "Sharing", "--json"]);
    assert_eq!(roster["members"][1]["role"], "decision-maker");
    let listed = lead.json(&["partnership", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[test]
fn agreements_start_from_their_templates() {
    let (lead, _) = partnership_with_mou();
    lead.ok(&[
        "doc",
        "new",
        "Sharing",
        "--kind",
        "values",
        "--title",
        "Shared values",
    ]);
    lead.ok(&[
        "doc",
        "new",
        "Sharing",
        "--kind",
        "dispute",
        "--title",
        "Dispute process",
    ]);
    let values = lead.doc("Shared values");
    let rules: Vec<&str> = values["fields"]["ground_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert!(
        rules
            .iter()
            .any(|r| r.contains("Treat all partners equally")),
        "{rules:?}"
    );
    let dispute = lead.doc("Dispute");
    let steps = dispute["fields"]["steps"].as_array().unwrap();
    assert!(steps.len() >= 3);
    assert!(steps.iter().all(|s| s["days"].as_u64().unwrap() > 0));
    let mou_md = lead.ok(&["doc", "show", "Memorandum"]);
    assert!(mou_md.contains("Purpose and aims"));
    assert!(
        mou_md.contains("What does each partner hope to achieve"),
        "prompts guide empty sections:\n{mou_md}"
    );
    let docs = lead.json(&["doc", "list", "--json"]);
    assert_eq!(docs.as_array().unwrap().len(), 3);
}

#[test]
fn set_add_remove_edit_and_they_survive_restarts() {
    let (lead, _) = partnership_with_mou();
    lead.ok(&[
        "doc",
        "set",
        "Memorandum",
        "purpose",
        "To support women into work.",
    ]);
    lead.ok(&[
        "doc",
        "add",
        "Memorandum",
        "objectives",
        "text=Place 40 women in volunteering roles",
    ]);
    lead.ok(&[
        "doc",
        "add",
        "Memorandum",
        "objectives",
        "text=Run 10 workshops",
    ]);
    lead.ok(&["doc", "set", "Memorandum", "milestones.1.due", "2027-03-31"]);
    lead.ok(&[
        "doc",
        "set",
        "Memorandum",
        "milestones.1.status",
        "in-progress",
    ]);
    lead.ok(&["doc", "set", "Memorandum", "term.start", "2027-01-01"]);
    lead.ok(&[
        "doc",
        "set",
        "Memorandum",
        "roles.Women",
        "Runs the advice sessions.",
    ]);
    lead.ok(&[
        "doc",
        "set",
        "Memorandum",
        "commitments.Women.money",
        "£2,000",
    ]);
    lead.ok(&["doc", "remove", "Memorandum", "objectives.2"]);

    let mou = lead.doc("Memorandum");
    let fields = &mou["fields"];
    assert_eq!(fields["purpose"], "To support women into work.");
    assert_eq!(fields["objectives"].as_array().unwrap().len(), 1);
    assert_eq!(
        fields["objectives"][0]["text"],
        "Place 40 women in volunteering roles"
    );
    assert_eq!(fields["milestones"][0]["due"], "2027-03-31");
    assert_eq!(fields["milestones"][0]["status"], "in-progress");
    assert_eq!(fields["term"]["start"], "2027-01-01");
    assert_eq!(
        fields["roles"][0]["responsibilities"],
        "Runs the advice sessions."
    );
    assert_eq!(fields["commitments"][0]["money"], "£2,000");

    // Invalid values are refused with a hint, and change nothing.
    let (_, err) = lead.fails(&[
        "doc",
        "set",
        "Memorandum",
        "milestones.1.due",
        "next spring",
    ]);
    assert!(err.contains("2027-03-31"), "{err}");
    let (_, err) = lead.fails(&["doc", "set", "Memorandum", "purpse", "x"]);
    assert!(
        err.contains("purpose"),
        "unknown fields list the real ones: {err}"
    );
    assert_eq!(lead.doc("Memorandum")["heads"], mou["heads"]);

    // Setting the same value again is not a change.
    let out = lead.ok(&[
        "doc",
        "set",
        "Memorandum",
        "purpose",
        "To support women into work.",
    ]);
    assert!(out.contains("Nothing changed"), "{out}");
}

#[test]
fn doc_edit_applies_only_what_the_person_changed() {
    let (lead, _) = partnership_with_mou();
    lead.ok(&[
        "doc",
        "set",
        "Memorandum",
        "purpose",
        "We work together. We share what we learn.",
    ]);
    lead.ok(&[
        "doc",
        "set",
        "Memorandum",
        "communication",
        "Monthly meetings.",
    ]);
    let before = lead.doc("Memorandum");
    lead.edit_with_sed(
        "Memorandum",
        "s/We share what we learn./We share what we learn, openly./",
    );
    let after = lead.doc("Memorandum");
    assert_eq!(
        after["fields"]["purpose"],
        "We work together. We share what we learn, openly."
    );
    assert_eq!(
        after["fields"]["communication"],
        before["fields"]["communication"]
    );
    assert_eq!(
        after["fields"]["milestones"],
        before["fields"]["milestones"]
    );
    assert_ne!(after["heads"], before["heads"]);

    // Leaving the editor without changes changes nothing.
    let noop = script(lead.data.parent().unwrap(), "noop.sh", "true");
    let out = lead
        .command(&["doc", "edit", "Memorandum"])
        .env("EDITOR", &noop)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("No changes"));
    assert_eq!(lead.doc("Memorandum")["heads"], after["heads"]);
}

#[test]
fn history_names_the_organisation_and_what_changed() {
    let (lead, _) = partnership_with_mou();
    lead.ok(&["doc", "set", "Memorandum", "purpose", "Hello"]);
    lead.ok(&["doc", "add", "Memorandum", "objectives", "text=One"]);
    let history = lead.json(&["history", "Memorandum", "--json"]);
    let entries = history.as_array().unwrap();
    assert_eq!(entries.len(), 3, "create, set, add: {history}");
    for entry in entries {
        assert_eq!(entry["org_name"], "Women's Centre Wandsworth");
        assert_eq!(entry["org"].as_str().unwrap(), lead.key());
    }
    let purpose = entries[1]["fields"].as_array().unwrap();
    assert_eq!(purpose[0]["field"], "purpose");
    assert_eq!(purpose[0]["chars_added"], 5);
    assert_eq!(entries[2]["fields"][0]["items_added"], 1);
    let text = lead.ok(&["history", "Memorandum"]);
    assert!(text.contains("Purpose and aims: +5 -0 chars"), "{text}");
}

#[test]
fn export_markdown_html_and_standard_automerge() {
    let (lead, _) = partnership_with_mou();
    lead.ok(&[
        "doc",
        "set",
        "Memorandum",
        "purpose",
        "To support <women> into work.",
    ]);
    let md = lead.ok(&["export", "Memorandum", "--format", "md"]);
    assert!(md.starts_with("# Memorandum of Understanding"), "{md}");
    assert!(md.contains("To support <women> into work."));
    let html = lead.ok(&["export", "Memorandum", "--format", "html"]);
    assert!(html.contains("&lt;women&gt;") && !html.contains("<women>"));

    let file = lead.data.parent().unwrap().join("mou.automerge");
    lead.ok(&[
        "export",
        "Memorandum",
        "--format",
        "automerge",
        "--output",
        file.to_str().unwrap(),
    ]);
    let doc = automerge::AutoCommit::load(&std::fs::read(&file).unwrap())
        .expect("standard automerge file");
    use automerge::ReadDoc;
    let (_, purpose) = doc.get(automerge::ROOT, "purpose").unwrap().unwrap();
    assert_eq!(doc.text(&purpose).unwrap(), "To support <women> into work.");
    let (code, err) = lead.fails(&["export", "Memorandum", "--format", "automerge"]);
    assert_eq!(code, 1);
    assert!(err.contains("--output"));
}

#[test]
fn names_and_ids_resolve_and_ambiguity_lists_candidates() {
    let (lead, doc_id) = partnership_with_mou();
    lead.ok(&[
        "doc",
        "new",
        "Sharing",
        "--kind",
        "values",
        "--title",
        "Memo of values",
    ]);
    let (_, err) = lead.fails(&["doc", "show", "mem"]);
    assert!(
        err.contains("Memorandum of Understanding") && err.contains("Memo of values"),
        "{err}"
    );
    assert!(
        lead.ok(&["doc", "show", &doc_id[..8]])
            .contains("Memorandum")
    );
    assert!(
        lead.ok(&["doc", "show", "memorandum of"])
            .contains("Memorandum")
    );
    let (_, err) = lead.fails(&["doc", "show", "nothing like this"]);
    assert!(err.contains("accord doc list"), "{err}");
}

#[test]
fn only_decision_makers_change_agreements_and_roster() {
    let (lead, _) = partnership_with_mou();
    let partner = Org::init("CVS Wandsworth");
    lead.add_member("Sharing", "CVS Wandsworth", &partner, "consultee");
    // The last decision maker cannot step down: nobody could change the roster again.
    let (_, err) = lead.fails(&[
        "member", "set-role", "Sharing", "Women", "--role", "informed",
    ]);
    assert!(err.contains("at least one decision maker"), "{err}");
    lead.ok(&[
        "member",
        "set-role",
        "Sharing",
        "CVS",
        "--role",
        "decision-maker",
    ]);
    lead.ok(&[
        "member", "set-role", "Sharing", "Women", "--role", "informed",
    ]);
    let (_, err) = lead.fails(&["doc", "set", "Memorandum", "purpose", "x"]);
    assert!(err.contains("only decision makers"), "{err}");
    let (_, err) = lead.fails(&[
        "member",
        "set-role",
        "Sharing",
        "Women",
        "--role",
        "decision-maker",
    ]);
    assert!(err.contains("only decision makers"), "{err}");
}
