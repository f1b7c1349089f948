//! The acceptance rules, judged the way replicas judge them: the same
//! changes, in different batches and orders, get the same verdicts.

use std::collections::BTreeMap;

use accord_identity::OrgSecret;
use accord_model::automerge::{AutoCommit, Change, ChangeHash, ReadDoc, transaction::Transactable};
use accord_model::trust::{
    Attestation, Candidate, Refusal, RosterHistory, Rule, verify_batch, verify_roster_batch,
};
use accord_model::{Agreement, DocId, DocKind, Role, Roster, new_document_actor};
use proptest::prelude::*;

struct World {
    a: OrgSecret,
    m: OrgSecret,
    roster: Roster,
    /// Roster heads before and after A removes M.
    before: Vec<ChangeHash>,
    after: Vec<ChangeHash>,
    mou: DocId,
    base: AutoCommit,
}

fn world() -> World {
    let a = OrgSecret::from_seed([1; 32]);
    let m = OrgSecret::from_seed([2; 32]);
    let (mut roster, _) = Roster::create(
        "P",
        &a.public(),
        "A",
        [3; 16],
        new_document_actor(&a, [0; 8]),
        1,
    )
    .unwrap();
    roster
        .add_member(&m.public(), "M", Role::DecisionMaker, 1)
        .unwrap();
    roster.commit("M joins", 1);
    let before = roster.doc_mut().get_heads();
    let mou = DocId::from_bytes([4; 16]);
    let (mut agreement, _) = Agreement::create(
        mou,
        DocKind::Mou,
        roster.id(),
        "MOU",
        new_document_actor(&a, [0; 8]),
        &roster.view(),
        1,
    )
    .unwrap();
    roster.remove_member(&m.public()).unwrap();
    roster.commit("M removed", 2);
    let after = roster.doc_mut().get_heads();
    World {
        a,
        m,
        roster,
        before,
        after,
        mou,
        base: agreement.doc_mut().clone(),
    }
}

/// A change to the MOU's purpose by `who`, on top of `on`, claiming `claim`.
fn edit(on: &AutoCommit, who: &OrgSecret, n: u8, claim: &[ChangeHash]) -> (AutoCommit, Change) {
    let mut doc = on.clone().with_actor(new_document_actor(who, [n; 8]));
    let (_, text) = doc
        .get(accord_model::automerge::ROOT, "purpose")
        .unwrap()
        .unwrap();
    doc.splice_text(&text, 0, 0, &format!("edit {n}. "))
        .unwrap();
    let message = accord_model::trust::claim::with_claim("", claim);
    doc.commit_with(
        accord_model::automerge::transaction::CommitOptions::default().with_message(message),
    );
    let change = doc.get_last_local_change().unwrap();
    (doc, change)
}

struct Scenario {
    changes: Vec<Change>,
    attestations: Vec<Attestation>,
    expected: BTreeMap<ChangeHash, &'static str>,
}

fn scenario(w: &World) -> Scenario {
    let (_, concurrent) = edit(&w.base, &w.m, 1, &w.before);
    let (_, after_removal) = edit(&w.base, &w.m, 2, &w.after);
    let (a_doc, a_edit) = edit(&w.base, &w.a, 3, &w.after);
    let (_, backdated) = edit(&a_doc, &w.m, 4, &w.before);
    let sign = |who: &OrgSecret, c: &Change| Attestation::sign(who, w.mou, &[c.hash()]);
    let attestations = vec![
        sign(&w.m, &concurrent),
        sign(&w.m, &after_removal),
        sign(&w.a, &a_edit),
        sign(&w.m, &backdated),
    ];
    let expected = [
        (concurrent.hash(), "accepted"),
        (after_removal.hash(), Refusal::NotAMember.code()),
        (a_edit.hash(), "accepted"),
        (backdated.hash(), Refusal::StaleRoster.code()),
    ]
    .into();
    Scenario {
        changes: vec![concurrent, after_removal, a_edit, backdated],
        attestations,
        expected,
    }
}

/// Judges `candidates` as agreement changes for a replica holding `doc`.
fn verify_on(
    doc: &AutoCommit,
    candidates: &[Candidate],
    s: &Scenario,
    history: &mut RosterHistory,
) -> accord_model::trust::Verdict {
    let mut applied = |h: &ChangeHash| {
        let mut d = doc.clone();
        d.get_change_meta_by_hash(h)
            .map(|m| accord_model::trust::claim::parse(m.message.as_deref()))
    };
    verify_batch(
        Rule::Agreement,
        candidates,
        &s.attestations,
        history,
        &mut applied,
    )
    .expect("the roster is known")
}

/// Judges `order` split into batches at `cuts`, carrying waiting changes
/// forward, as a replica receiving them over several messages would.
fn judge(w: &World, s: &Scenario, order: &[usize], cuts: &[usize]) -> BTreeMap<ChangeHash, String> {
    let mut history = RosterHistory::new(w.roster.id(), w.roster.doc().clone());
    let mut doc = w.base.clone();
    let mut verdicts = BTreeMap::new();
    let mut waiting: Vec<Change> = Vec::new();
    let mut start = 0;
    let mut bounds: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < order.len())
        .collect();
    bounds.sort();
    bounds.push(order.len());
    for end in bounds {
        let mut batch: Vec<Change> = std::mem::take(&mut waiting);
        batch.extend(order[start..end].iter().map(|&i| s.changes[i].clone()));
        start = end;
        let candidates: Vec<Candidate> = batch.iter().map(Candidate::of_change).collect();
        let verdict = verify_on(&doc, &candidates, s, &mut history);
        for (h, _, why) in &verdict.refused {
            verdicts.insert(*h, why.code().to_owned());
        }
        for c in batch {
            if verdict.accepted.contains(&c.hash()) {
                doc.load_incremental(c.raw_bytes()).unwrap();
                verdicts.insert(c.hash(), "accepted".to_owned());
            } else if verdict.waiting.contains(&c.hash()) {
                waiting.push(c);
            }
        }
    }
    assert!(waiting.is_empty(), "everything was judged in the end");
    verdicts
}

#[test]
fn removal_backdating_and_concurrency_get_the_documented_verdicts() {
    let w = world();
    let s = scenario(&w);
    let verdicts = judge(&w, &s, &[0, 1, 2, 3], &[]);
    let expected: BTreeMap<ChangeHash, String> = s
        .expected
        .iter()
        .map(|(h, v)| (*h, v.to_string()))
        .collect();
    assert_eq!(verdicts, expected);
}

/// A change can come twice in one batch (a message overlapping the changes
/// held from an earlier one): every copy gets the change's one verdict, so
/// an accepted change is never also refused as unattested.
#[test]
fn a_change_that_comes_twice_in_a_batch_gets_one_verdict() {
    let w = world();
    let s = scenario(&w);
    let mut history = RosterHistory::new(w.roster.id(), w.roster.doc().clone());
    let candidates: Vec<Candidate> = [0, 1, 2, 3, 0, 2, 3]
        .iter()
        .map(|&i| Candidate::of_change(&s.changes[i]))
        .collect();
    let verdict = verify_on(&w.base, &candidates, &s, &mut history);
    assert!(verdict.waiting.is_empty());
    for (hash, expected) in &s.expected {
        let refusals: Vec<&str> = verdict
            .refused
            .iter()
            .filter(|(h, _, _)| h == hash)
            .map(|(_, _, why)| why.code())
            .collect();
        if *expected == "accepted" {
            assert!(verdict.accepted.contains(hash));
            assert_eq!(refusals, Vec::<&str>::new(), "{hash} was also refused");
        } else {
            assert!(!verdict.accepted.contains(hash));
            assert!(!refusals.is_empty() && refusals.iter().all(|r| r == expected));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("ACCORD_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]

    /// Every replica accepts and refuses the same changes, whatever order
    /// and batches they arrive in.
    #[test]
    fn verdicts_do_not_depend_on_arrival(order in Just(vec![0usize, 1, 2, 3]).prop_shuffle(), cuts in proptest::collection::vec(0usize..4, 0..3)) {
        let w = world();
        let s = scenario(&w);
        let verdicts = judge(&w, &s, &order, &cuts);
        let expected: BTreeMap<ChangeHash, String> =
            s.expected.iter().map(|(h, v)| (*h, v.to_string())).collect();
        prop_assert_eq!(verdicts, expected);
    }
}

#[test]
fn only_the_creator_starts_a_roster_and_only_decision_makers_change_it() {
    let a = OrgSecret::from_seed([1; 32]);
    let c = OrgSecret::from_seed([5; 32]);
    let (mut roster, created) = Roster::create(
        "P",
        &a.public(),
        "A",
        [3; 16],
        new_document_actor(&a, [0; 8]),
        1,
    )
    .unwrap();
    let id = roster.id();
    let created = Change::from_bytes(created.bytes).unwrap();
    // The creation itself, signed by the creator: accepted.
    let ok = verify_roster_batch(
        id,
        &AutoCommit::new(),
        std::slice::from_ref(&created),
        &[Attestation::sign(&a, id.roster_doc(), &[created.hash()])],
    );
    assert!(ok.all_accepted(), "{ok:?}");
    // The same creation signed by someone else: unattested.
    let forged = verify_roster_batch(
        id,
        &AutoCommit::new(),
        std::slice::from_ref(&created),
        &[Attestation::sign(&c, id.roster_doc(), &[created.hash()])],
    );
    assert_eq!(forged.refused[0].2, Refusal::Unattested);
    // A consultee adding itself as a decision maker: not entitled.
    roster
        .add_member(&c.public(), "C", Role::Consultee, 1)
        .unwrap();
    roster.commit("C joins", 1);
    let current = roster.doc().clone();
    let mut fork_of = current.clone();
    let mut as_c = Roster::from_doc(
        id,
        fork_of.fork().with_actor(new_document_actor(&c, [0; 8])),
    )
    .unwrap();
    as_c.set_role(&c.public(), Role::DecisionMaker).unwrap();
    let change = Change::from_bytes(as_c.commit("promote myself", 2).unwrap().bytes).unwrap();
    let verdict = verify_roster_batch(
        id,
        &current,
        std::slice::from_ref(&change),
        &[Attestation::sign(&c, id.roster_doc(), &[change.hash()])],
    );
    assert_eq!(verdict.refused[0].2, Refusal::NotEntitled(Role::Consultee));
}
