//! Provenance, roles and sign-off through real processes and a relay.

use crate::support::Org;
use crate::sync::{Relay, purpose, sync_ok};

struct Three {
    _relay: Relay,
    _relay_home: Org,
    a: Org,
    b: Org,
    c: Org,
    mou: String,
}

/// A (lead, decision maker) and C (decision maker) with B as a consultee,
/// all holding the partnership's MOU through the relay.
fn three() -> Three {
    let relay_home = Org::empty();
    let relay = Relay::start(&relay_home, 0);
    let a = Org::init("Alpha Trust");
    let b = Org::init("Beta Centre");
    let c = Org::init("Gamma CVS");
    a.ok(&["partnership", "new", "Tenants Together"]);
    let mou = a.new_doc("Tenants", "mou", "MOU");
    a.ok(&["doc", "set", &mou, "purpose", "We support tenants."]);
    a.add_member("Tenants", "Beta Centre", &b, "consultee");
    a.add_member("Tenants", "Gamma CVS", &c, "decision-maker");
    a.ok(&["peer", "add", &relay.url, "--key", &relay.key]);
    let (ib, ic) = (a.invite("Tenants", "Beta"), a.invite("Tenants", "Gamma"));
    sync_ok(&a, "A", &[]);
    for (org, code, who) in [(&b, &ib, "B"), (&c, &ic, "C")] {
        org.ok(&["join", code]);
        sync_ok(org, who, &[]);
    }
    Three {
        _relay: relay,
        _relay_home: relay_home,
        a,
        b,
        c,
        mou,
    }
}

fn sync_all(t: &Three) {
    for _ in 0..2 {
        for (org, who) in [(&t.a, "A"), (&t.b, "B"), (&t.c, "C")] {
            sync_ok(org, who, &[]);
        }
    }
}

fn state_of(org: &Org, doc: &str, member: &str) -> String {
    let status = org.json(&["status", doc, "--json"]);
    status
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == member))
        .map(|r| r["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("{member} not in {status}"))
}

#[test]
fn roles_comments_signoff_blame_history_and_verified_exports() {
    let t = three();
    // A consultee cannot change agreement text, locally or anywhere.
    let (code, err) =
        t.b.fails(&["doc", "set", &t.mou, "purpose", "Rewritten by B."]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("only decision makers"), "{err}");

    // ...but can comment, and everyone sees it.
    t.b.ok(&[
        "comment",
        &t.mou,
        "purpose",
        "Which tenants?",
        "--quote",
        "tenants",
    ]);
    sync_all(&t);
    let comments = t.a.json(&["comments", &t.mou, "--json"]);
    let comment = &comments[0];
    assert_eq!(comment["author_name"], "Beta Centre", "{comments}");
    assert_eq!(comment["text"], "Which tenants?");
    let id = comment["id"].as_str().unwrap().to_owned();
    t.a.ok(&["comments", &t.mou, "--resolve", &id]);
    sync_all(&t);
    let comments = t.b.json(&["comments", &t.mou, "--json"]);
    assert_eq!(comments[0]["resolved_by"], "Alpha Trust", "{comments}");
    let shown = t.c.ok(&["doc", "show", &t.mou]);
    assert!(shown.contains("## Comments"), "{shown}");
    assert!(shown.contains("Which tenants?"), "{shown}");

    // Sign-off: A signs; C sees it; C edits; the status moves to "earlier".
    t.a.ok(&["sign", &t.mou, "--statement", "Alpha agrees."]);
    sync_all(&t);
    assert_eq!(state_of(&t.c, &t.mou, "Alpha Trust"), "current");
    assert_eq!(state_of(&t.c, &t.mou, "Gamma CVS"), "not-signed");
    t.c.ok(&[
        "doc",
        "set",
        &t.mou,
        "purpose",
        "We support private tenants.",
    ]);
    sync_all(&t);
    assert_eq!(state_of(&t.a, &t.mou, "Alpha Trust"), "earlier");
    let diff = t.a.json(&["diff", &t.mou, "Alpha", "current", "--json"]);
    assert!(diff.to_string().contains("private "), "{diff}");

    // Three organisations edit the same text concurrently (B promoted first).
    t.a.ok(&[
        "member",
        "set-role",
        "Tenants",
        "Beta",
        "--role",
        "decision-maker",
    ]);
    sync_all(&t);
    let now = purpose(&t.a, &t.mou);
    assert_eq!(now, "We support private tenants.");
    t.a.ok(&[
        "doc",
        "set",
        &t.mou,
        "purpose",
        "A: We support private tenants.",
    ]);
    t.b.ok(&[
        "doc",
        "set",
        &t.mou,
        "purpose",
        "We support private tenants. B adds.",
    ]);
    t.c.ok(&[
        "doc",
        "set",
        &t.mou,
        "purpose",
        "We support private renting tenants.",
    ]);
    sync_all(&t);
    let merged = purpose(&t.a, &t.mou);
    assert_eq!(merged, purpose(&t.b, &t.mou));
    assert_eq!(merged, purpose(&t.c, &t.mou));
    let blame = t.c.json(&["blame", &t.mou, "purpose", "--json"]);
    let by = |org: &str| -> String {
        blame
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["org_name"] == org)
            .map(|s| s["text"].as_str().unwrap())
            .collect()
    };
    assert!(by("Alpha Trust").contains("A: "), "{blame}");
    assert!(by("Beta Centre").contains(" B adds."), "{blame}");
    assert!(by("Gamma CVS").contains("renting "), "{blame}");

    // history --org lists exactly that organisation's changes, all verified.
    let all = t.a.json(&["history", &t.mou, "--json"]);
    let all = all.as_array().unwrap();
    assert!(all.iter().all(|e| e["verified"] == true), "{all:?}");
    let c_key = t.c.key();
    let mine = t.a.json(&["history", &t.mou, "--org", "Gamma", "--json"]);
    let mine = mine.as_array().unwrap();
    let expected = all.iter().filter(|e| e["org"] == c_key.as_str()).count();
    assert_eq!(mine.len(), expected);
    assert!(expected >= 2, "C made at least two changes: {all:?}");
    assert!(mine.iter().all(|e| e["org"] == c_key.as_str()));
    let since_long_ago =
        t.a.json(&["history", &t.mou, "--since", "2000-01-01", "--json"]);
    assert_eq!(since_long_ago.as_array().unwrap().len(), all.len());
    let since_future =
        t.a.json(&["history", &t.mou, "--since", "2999-01-01", "--json"]);
    assert!(since_future.as_array().unwrap().is_empty());

    // Everyone signs the same version; an export verifies; a tampered one does not.
    for org in [&t.a, &t.b, &t.c] {
        sync_all(&t);
        org.ok(&["sign", &t.mou]);
    }
    sync_all(&t);
    for who in ["Alpha Trust", "Beta Centre", "Gamma CVS"] {
        assert_eq!(state_of(&t.b, &t.mou, who), "current", "{who}");
    }
    let file = t.a.data.parent().unwrap().join("mou.md");
    t.a.ok(&[
        "export",
        &t.mou,
        "--format",
        "md",
        "--output",
        file.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("## Sign-off"), "{text}");
    let check = t.c.json(&["verify", file.to_str().unwrap(), "--json"]);
    assert_eq!(check["text_matches"], true, "{check}");
    let tampered = text.replacen("private", "public", 1);
    std::fs::write(&file, tampered).unwrap();
    let (code, out) = t.c.fails(&["verify", file.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(out.contains("does not match"), "{out}");

    let audit = t.a.json(&["audit", "Tenants", "--json"]);
    let rows = audit.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{audit}");
    assert!(
        rows.iter().all(|r| r["signoffs"].as_u64().unwrap() >= 1),
        "{audit}"
    );
}

#[test]
fn a_removed_member_is_no_longer_served() {
    let t = three();
    // Work C did while a member stays attributed to it, by name.
    t.c.ok(&["doc", "set", &t.mou, "purpose", "C while a member."]);
    sync_ok(&t.c, "C", &[]);
    sync_ok(&t.a, "A", &[]);
    t.a.ok(&["member", "remove", "Tenants", "Gamma"]);
    sync_ok(&t.a, "A", &[]);
    let audit = t.a.json(&["audit", "Tenants", "--json"]);
    let names: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| row["name"].as_str())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.contains("Gamma") && n.ends_with("(former member)")),
        "{audit}"
    );
    // C's later edit is made under a roster version it does not yet have
    // the removal in; but the relay no longer serves C at all.
    t.c.ok(&["doc", "set", &t.mou, "purpose", "C after removal."]);
    let out = t.c.run(&["sync", "--json", "--timeout", "20"]);
    assert!(!out.status.success(), "C must be refused");
    sync_ok(&t.a, "A", &[]);
    assert_ne!(purpose(&t.a, &t.mou), "C after removal.");
}
