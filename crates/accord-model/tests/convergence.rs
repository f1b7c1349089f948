//! Convergence: partner organisations editing the same agreement
//! concurrently, on their own replicas, end up with the same document
//! whatever order their changes meet in.
//!
//! Each case builds a partnership of two or three organisations (each with
//! its own key and Automerge actor, all members of the roster), creates one
//! agreement of a given kind and forks it into one replica per
//! organisation. Replicas then make random edits through the model's API
//! (character splices, whole-value `set`s, list adds and removes, scalar
//! fields, commits), interleaved with random pairwise exchanges: direct
//! `merge`, the `automerge::sync` protocol (with persisted, reconnected or
//! fresh sync states, messages encoded and decoded as on the wire), and
//! reloads from `save()`. Finally everyone exchanges with everyone in a
//! random order and the replicas must agree on heads, on the change set,
//! on what they show (`view()`), and on what their `save()` loads back as.
//! (Not on `save()` bytes: see `assert_converged`.) The initial snapshot
//! plus every change `commit` returned must rebuild the same document.
//!
//! Every edit is also checked locally against an oracle computed by the
//! test (the text after a splice, the stored form of a scalar, the list
//! after an add or remove), so a model bug that converges on a wrong answer
//! fails too. Model errors are only accepted where the test expects them
//! (a value the schema rejects, removing from an empty list); any other
//! error or panic fails the case.
//!
//! Cases per kind: `ACCORD_PROPTEST_CASES` (default 256: about 30 s of CPU for the
//! file, 16 s wall on an idle machine). Failures print
//! proptest's minimal input and are persisted as a regression seed.

use std::collections::{BTreeMap, BTreeSet};

use accord_identity::OrgSecret;
use accord_model::automerge::sync::{self, SyncDoc};
use accord_model::automerge::transaction::Transactable;
use accord_model::automerge::{
    AutoCommit, ChangeHash, ObjId, ObjType, Prop, ROOT, ReadDoc, ScalarValue, Value,
};
use accord_model::schema::{MILESTONE_STATUSES, Shape};
use accord_model::{
    Agreement, AgreementView, DocId, DocKind, ModelError, Role, Roster, RosterView, SectionContent,
    ValueType, load_document, new_document_actor,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// Most edits a replica makes in one case.
const MAX_EDITS_PER_REPLICA: usize = 30;

fn cases() -> u32 {
    std::env::var("ACCORD_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(256)
}

// ---------------------------------------------------------------------------
// Partnership fixture
// ---------------------------------------------------------------------------

const ORG_NAMES: [&str; 3] = ["Women's Centre", "CVS Wandsworth", "Food Bank"];

struct Partnership {
    kind: DocKind,
    orgs: Vec<OrgSecret>,
    roster: RosterView,
    replicas: Vec<Agreement>,
    /// `save()` of the agreement as created, before any fork edited it.
    snapshot: Vec<u8>,
    /// Every change `Agreement::commit` returned, in the order they were made.
    log: Vec<Vec<u8>>,
    now: i64,
}

fn actor_suffix(replica: usize, generation: u8) -> [u8; 8] {
    [replica as u8, generation, 0xac, 0xc0, 0x4d, 0, 0, 1]
}

impl Partnership {
    /// `org_seed` varies the organisations' keys (and so their actor ids,
    /// which decide ties between concurrent writes) from case to case.
    fn new(kind: DocKind, replicas: usize, org_seed: u8) -> Self {
        let orgs: Vec<OrgSecret> = (0..replicas)
            .map(|i| OrgSecret::from_seed([org_seed.wrapping_add(i as u8); 32]))
            .collect();
        let lead_actor = new_document_actor(&orgs[0], actor_suffix(0, 0xff));
        let (mut roster, _) = Roster::create(
            "Sharing Our Strengths",
            &orgs[0].public(),
            ORG_NAMES[0],
            [5; 16],
            lead_actor,
            1,
        )
        .unwrap();
        for (i, org) in orgs.iter().enumerate().skip(1) {
            roster
                .add_member(&org.public(), ORG_NAMES[i], Role::DecisionMaker, 1)
                .unwrap();
        }
        roster.commit("Members", 1).unwrap();
        let roster_view = roster.view();
        assert_eq!(roster_view.members.len(), replicas);

        let id = DocId::random([org_seed; 16]);
        let (mut first, _) = Agreement::create(
            id,
            kind,
            roster.id(),
            "Our agreement",
            new_document_actor(&orgs[0], actor_suffix(0, 0xfe)),
            &roster_view,
            2,
        )
        .unwrap();
        let snapshot = first.doc_mut().save();
        let replicas = orgs
            .iter()
            .enumerate()
            .map(|(i, org)| {
                let doc = first
                    .doc_mut()
                    .fork()
                    .with_actor(new_document_actor(org, actor_suffix(i, 0)));
                Agreement::from_doc(id, doc).unwrap()
            })
            .collect();
        Self {
            kind,
            orgs,
            roster: roster_view,
            replicas,
            snapshot,
            log: Vec::new(),
            now: 10,
        }
    }

    fn tick(&mut self) -> i64 {
        self.now += 1;
        self.now
    }

    /// Commits a replica's pending edits the way the app does, keeping the
    /// returned change for the persistence check.
    fn commit(&mut self, r: usize, message: &str) {
        let now = self.tick();
        let pending = self.replicas[r].doc().pending_ops();
        let change = self.replicas[r].commit(message, now);
        assert_eq!(
            change.is_some(),
            pending > 0,
            "commit returns a change exactly when there are pending edits ({pending} pending)"
        );
        if let Some(change) = change {
            assert_eq!(self.replicas[r].doc_mut().get_heads(), vec![change.hash]);
            self.log.push(change.bytes);
        }
    }
}

/// Two distinct replicas, mutably.
fn pair_mut<T>(items: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (left, right) = items.split_at_mut(b);
        (&mut left[a], &mut right[0])
    } else {
        let (left, right) = items.split_at_mut(a);
        (&mut right[0], &mut left[b])
    }
}

fn sorted_heads(doc: &mut AutoCommit) -> Vec<ChangeHash> {
    let mut heads = doc.get_heads();
    heads.sort();
    heads
}

fn change_hashes(doc: &mut AutoCommit) -> BTreeSet<ChangeHash> {
    doc.get_changes(&[]).iter().map(|c| c.hash()).collect()
}

/// `to` takes in everything `from` has.
fn merge_into(to: &mut Agreement, from: &mut Agreement) {
    to.doc_mut().merge(from.doc_mut()).expect("merge");
    for head in from.doc_mut().get_heads() {
        assert!(
            to.doc_mut().get_change_by_hash(&head).is_some(),
            "after merging, the receiver has the sender's head {head}"
        );
    }
}

/// Runs the sync protocol between two replicas until neither has anything
/// to send, passing every message through its wire encoding.
fn sync_pair(
    a: &mut AutoCommit,
    a_state: &mut sync::State,
    b: &mut AutoCommit,
    b_state: &mut sync::State,
) {
    fn wire(message: sync::Message) -> sync::Message {
        sync::Message::decode(&message.encode()).expect("sync message decodes")
    }
    for _ in 0..64 {
        let mut quiet = true;
        if let Some(message) = a.sync().generate_sync_message(a_state) {
            quiet = false;
            b.sync()
                .receive_sync_message(b_state, wire(message))
                .expect("receive sync message");
        }
        if let Some(message) = b.sync().generate_sync_message(b_state) {
            quiet = false;
            a.sync()
                .receive_sync_message(a_state, wire(message))
                .expect("receive sync message");
        }
        if quiet {
            assert_eq!(
                sorted_heads(a),
                sorted_heads(b),
                "a quiescent sync leaves both at the same heads"
            );
            return;
        }
    }
    panic!("sync did not become quiescent within 64 rounds");
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// What the test expects a scalar write to do.
#[derive(Clone, Debug)]
enum Expect {
    /// Stored in this canonical form.
    Store(String),
    /// The field is cleared.
    Clear,
    /// Refused with `ModelError::BadValue`, changing nothing.
    Reject,
}

/// A value to write into a field.
#[derive(Clone, Debug)]
enum Val {
    Text(String),
    Scalar {
        raw: String,
        expect: Expect,
    },
    /// A member, named by key or by name, or `None` to clear the owner.
    Owner(Option<(Index, bool)>),
}

#[derive(Clone, Debug)]
enum Op {
    /// Raw character splice at a valid position of some text field.
    Splice {
        field: Index,
        by_id: bool,
        pos: Index,
        delete: usize,
        insert: String,
    },
    /// `set` a text field to an edited version of its current value
    /// (keep a prefix and a suffix, replace the middle).
    SetText {
        field: Index,
        by_id: bool,
        prefix: Index,
        suffix: Index,
        middle: String,
    },
    AddItem {
        list: &'static str,
        values: Vec<(&'static str, Val)>,
    },
    Remove {
        list: &'static str,
        item: Index,
        by_id: bool,
    },
    /// `set` a scalar field: `item` is ignored for group fields.
    SetScalar {
        section: &'static str,
        field: &'static str,
        item: Index,
        by_id: bool,
        value: Val,
    },
}

#[derive(Clone, Copy, Debug)]
enum SyncMode {
    /// Keep the sync states from the pair's last session.
    Persisted,
    /// Reconnect: the states round-trip through `State::encode`/`decode`.
    Reconnect,
    /// Start from empty sync states.
    Fresh,
}

#[derive(Clone, Debug)]
enum Step {
    Edit {
        replica: Index,
        op: Op,
    },
    Commit {
        replica: Index,
    },
    Merge {
        to: Index,
        from: Index,
    },
    Sync {
        a: Index,
        b: Index,
        mode: SyncMode,
    },
    /// Save, load back with `load_document` and carry on.
    Reload {
        replica: Index,
    },
}

#[derive(Clone, Debug)]
struct Scenario {
    replicas: usize,
    org_seed: u8,
    steps: Vec<Step>,
    /// Sort keys ordering the final all-pairs exchange, and whether each
    /// exchange uses sync (true) or merge.
    finale: Vec<(u32, bool)>,
}

/// Text drawn from ASCII, Latin accents (precomposed and combining),
/// CJK, emoji (including a ZWJ sequence and a flag), and line breaks.
fn text_strategy(max: usize) -> impl Strategy<Value = String> {
    let pieces = vec![
        "a",
        "b",
        "z",
        " ",
        "\n",
        ".",
        "é",
        "e\u{301}",
        "ß",
        "中",
        "文",
        "😀",
        "👩\u{200d}👩\u{200d}👧",
        "🇬🇧",
        "Ω",
        "\u{200b}",
        "—",
        "\t",
    ];
    prop::collection::vec(prop::sample::select(pieces), 0..=max).prop_map(|parts| parts.concat())
}

fn date_strategy() -> impl Strategy<Value = Val> {
    let valid =
        (2020u32..2040, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"));
    let edge_valid = prop::sample::select(vec![
        "2028-02-29",
        "2000-02-29",
        "2027-12-31",
        "2027-04-30",
        "2027-01-31",
    ]);
    let invalid = prop::sample::select(vec![
        "2027-02-29",
        "1900-02-29",
        "2027-04-31",
        "2027-13-01",
        "2027-00-10",
        "2027-01-00",
        "31/03/2027",
        "2027-3-1",
        "soon",
        "2027-03-31T00:00",
    ]);
    prop_oneof![
        6 => valid.prop_map(|d| Val::Scalar { expect: Expect::Store(d.clone()), raw: d }),
        2 => edge_valid.prop_map(|d| Val::Scalar { raw: format!(" {d} "), expect: Expect::Store(d.to_owned()) }),
        2 => invalid.prop_map(|d| Val::Scalar { raw: d.to_owned(), expect: Expect::Reject }),
        1 => prop::sample::select(vec!["", "  "]).prop_map(|d| Val::Scalar { raw: d.to_owned(), expect: Expect::Clear }),
    ]
}

fn status_strategy() -> impl Strategy<Value = Val> {
    let valid =
        (prop::sample::select(MILESTONE_STATUSES.to_vec()), 0..3u8).prop_map(|(status, style)| {
            let raw = match style {
                0 => status.to_owned(),
                1 => status.to_uppercase(),
                _ => format!(" {status}\n"),
            };
            Val::Scalar {
                raw,
                expect: Expect::Store(status.to_owned()),
            }
        });
    // A status cannot be cleared: empty is not one of the choices.
    let invalid = prop::sample::select(vec!["finished", "", "in progress", "plan"]).prop_map(|s| {
        Val::Scalar {
            raw: s.to_owned(),
            expect: Expect::Reject,
        }
    });
    prop_oneof![5 => valid, 1 => invalid]
}

fn days_strategy() -> impl Strategy<Value = Val> {
    let valid = (0u32..400, 0..3u8).prop_map(|(n, style)| {
        let raw = match style {
            0 => n.to_string(),
            1 => format!(" {n} "),
            _ => format!("0{n}"),
        };
        Val::Scalar {
            raw,
            expect: Expect::Store(n.to_string()),
        }
    });
    let invalid =
        prop::sample::select(vec!["two weeks", "-1", "", "4294967296", "1.5"]).prop_map(|s| {
            Val::Scalar {
                raw: s.to_owned(),
                expect: Expect::Reject,
            }
        });
    prop_oneof![5 => valid, 1 => invalid]
}

fn owner_strategy() -> impl Strategy<Value = Val> {
    prop_oneof![
        4 => (any::<Index>(), any::<bool>()).prop_map(|m| Val::Owner(Some(m))),
        1 => Just(Val::Owner(None)),
    ]
}

fn value_strategy(ty: ValueType) -> BoxedStrategy<Val> {
    match ty {
        ValueType::Text => text_strategy(8).prop_map(Val::Text).boxed(),
        ValueType::Date => date_strategy().boxed(),
        ValueType::Days => days_strategy().boxed(),
        ValueType::Org => owner_strategy().boxed(),
        ValueType::Choice(_) => status_strategy().boxed(),
    }
}

fn rejected(val: &Val) -> bool {
    matches!(
        val,
        Val::Scalar {
            expect: Expect::Reject,
            ..
        }
    )
}

fn op_strategy(kind: DocKind) -> BoxedStrategy<Op> {
    let splice = (
        any::<Index>(),
        any::<bool>(),
        any::<Index>(),
        0usize..6,
        text_strategy(6),
    )
        .prop_map(|(field, by_id, pos, delete, insert)| Op::Splice {
            field,
            by_id,
            pos,
            delete,
            insert,
        });
    let set_text = (
        any::<Index>(),
        any::<bool>(),
        any::<Index>(),
        any::<Index>(),
        text_strategy(5),
    )
        .prop_map(|(field, by_id, prefix, suffix, middle)| Op::SetText {
            field,
            by_id,
            prefix,
            suffix,
            middle,
        });

    let lists: Vec<_> = kind
        .schema()
        .iter()
        .filter(|s| matches!(s.shape, Shape::List(_)))
        .collect();
    let add = prop::sample::select(lists.clone())
        .prop_flat_map(|section| {
            let fields: Vec<_> = section
                .fields()
                .iter()
                .map(|f| {
                    prop::option::of(value_strategy(f.ty)).prop_map(move |v| v.map(|v| (f.key, v)))
                })
                .collect();
            // Rejected values are left to `add_item_with_a_rejected_value_adds_nothing`.
            (Just(section.key), fields).prop_map(|(list, values)| Op::AddItem {
                list,
                values: values
                    .into_iter()
                    .flatten()
                    .filter(|(_, v)| !rejected(v))
                    .collect(),
            })
        })
        .boxed();
    let remove = (
        prop::sample::select(lists.iter().map(|s| s.key).collect::<Vec<_>>()),
        any::<Index>(),
        any::<bool>(),
    )
        .prop_map(|(list, item, by_id)| Op::Remove { list, item, by_id });

    let scalars: Vec<(&'static str, &'static str, ValueType)> = kind
        .schema()
        .iter()
        .filter(|s| matches!(s.shape, Shape::List(_) | Shape::Group(_)))
        .flat_map(|s| {
            s.fields()
                .iter()
                .filter(|f| f.ty != ValueType::Text)
                .map(move |f| (s.key, f.key, f.ty))
        })
        .collect();

    let mut weighted: Vec<(u32, BoxedStrategy<Op>)> = vec![
        (8, splice.boxed()),
        (3, set_text.boxed()),
        (2, add),
        (2, remove.boxed()),
    ];
    if !scalars.is_empty() {
        let set_scalar = prop::sample::select(scalars)
            .prop_flat_map(|(section, field, ty)| {
                (value_strategy(ty), any::<Index>(), any::<bool>()).prop_map(
                    move |(value, item, by_id)| Op::SetScalar {
                        section,
                        field,
                        item,
                        by_id,
                        value,
                    },
                )
            })
            .boxed();
        weighted.push((4, set_scalar));
    }
    proptest::strategy::Union::new_weighted(weighted).boxed()
}

fn step_strategy(kind: DocKind) -> impl Strategy<Value = Step> {
    let mode = prop_oneof![
        3 => Just(SyncMode::Persisted),
        1 => Just(SyncMode::Reconnect),
        1 => Just(SyncMode::Fresh),
    ];
    prop_oneof![
        60 => (any::<Index>(), op_strategy(kind)).prop_map(|(replica, op)| Step::Edit { replica, op }),
        10 => any::<Index>().prop_map(|replica| Step::Commit { replica }),
        8 => (any::<Index>(), any::<Index>()).prop_map(|(to, from)| Step::Merge { to, from }),
        8 => (any::<Index>(), any::<Index>(), mode).prop_map(|(a, b, mode)| Step::Sync { a, b, mode }),
        2 => any::<Index>().prop_map(|replica| Step::Reload { replica }),
    ]
}

fn scenario(kind: DocKind) -> impl Strategy<Value = Scenario> {
    (
        2usize..=3,
        any::<u8>(),
        prop::collection::vec(step_strategy(kind), 0..=80),
        prop::collection::vec((any::<u32>(), any::<bool>()), 6),
    )
        .prop_map(|(replicas, org_seed, steps, finale)| Scenario {
            replicas,
            org_seed,
            steps,
            finale,
        })
}

/// `other` names a replica other than `this`.
fn other(this: usize, pick: &Index, replicas: usize) -> usize {
    (this + 1 + pick.index(replicas - 1)) % replicas
}

// ---------------------------------------------------------------------------
// Applying operations, with local oracles
// ---------------------------------------------------------------------------

// While a replica has uncommitted edits the harness reads it through
// Automerge directly, never through `Agreement::view`: `view` calls
// `get_heads`, which closes the open transaction as an anonymous change
// (no message, no time) that `Agreement::commit` then never returns.

fn raw_child(doc: &AutoCommit, parent: &ObjId, prop: impl Into<Prop>) -> Option<(ObjType, ObjId)> {
    match doc.get(parent, prop).expect("read") {
        Some((Value::Object(ty), obj)) => Some((ty, obj)),
        _ => None,
    }
}

fn raw_list(doc: &AutoCommit, list: &str) -> ObjId {
    match raw_child(doc, &ROOT, list) {
        Some((ObjType::List, obj)) => obj,
        other => panic!("{list} is not a list: {other:?}"),
    }
}

/// Item ids of a list, in order, read straight from Automerge.
fn raw_list_ids(doc: &AutoCommit, list: &str) -> Vec<String> {
    let obj = raw_list(doc, list);
    (0..doc.length(&obj))
        .map(|i| match raw_child(doc, &obj, i) {
            Some((ObjType::Map, item)) => raw_value(doc, &item, "id"),
            other => panic!("{list}[{i}] is not an item: {other:?}"),
        })
        .collect()
}

/// A field as stored: text, string or integer, or "" when absent.
fn raw_value(doc: &AutoCommit, obj: &ObjId, key: &str) -> String {
    match doc.get(obj, key).expect("read") {
        None => String::new(),
        Some((Value::Object(ObjType::Text), text)) => doc.text(&text).unwrap(),
        Some((Value::Scalar(v), _)) => match v.as_ref() {
            ScalarValue::Str(s) => s.to_string(),
            ScalarValue::Int(n) => n.to_string(),
            other => panic!("{key} holds an unexpected scalar {other:?}"),
        },
        Some(other) => panic!("{key} holds an unexpected value {other:?}"),
    }
}

/// A scalar field of a group (`item_id` None) or a list item.
fn raw_field(doc: &AutoCommit, section: &str, item_id: Option<&str>, field: &str) -> String {
    let obj = match item_id {
        None => raw_child(doc, &ROOT, section).expect("group").1,
        Some(id) => {
            let list = raw_list(doc, section);
            let index = raw_list_ids(doc, section)
                .iter()
                .position(|i| i == id)
                .expect("item is there");
            raw_child(doc, &list, index).expect("item").1
        }
    };
    raw_value(doc, &obj, field)
}

/// Every text field a replica currently has, as the paths people type,
/// from the schema and the document. List items are named by position or
/// by id; per-organisation entries by the organisation's key.
fn text_paths(doc: &AutoCommit, kind: DocKind, by_id: bool) -> Vec<String> {
    let mut paths = Vec::new();
    for section in kind.schema() {
        let text_fields = || section.fields().iter().filter(|f| f.ty == ValueType::Text);
        match &section.shape {
            Shape::Text => paths.push(section.key.to_owned()),
            Shape::Group(_) => {
                paths.extend(text_fields().map(|f| format!("{}.{}", section.key, f.key)))
            }
            Shape::List(_) => {
                for (i, id) in raw_list_ids(doc, section.key).into_iter().enumerate() {
                    let name = if by_id { id } else { (i + 1).to_string() };
                    paths
                        .extend(text_fields().map(|f| format!("{}.{name}.{}", section.key, f.key)));
                }
            }
            Shape::PerOrg(_) => {
                let map = raw_child(doc, &ROOT, section.key)
                    .expect("per-organisation map")
                    .1;
                for org in doc.keys(&map) {
                    paths.extend(text_fields().map(|f| format!("{}.{org}.{}", section.key, f.key)));
                }
            }
            Shape::Parties => {}
        }
    }
    paths
}

fn list_ids(view: &AgreementView, list: &str) -> Vec<String> {
    match view.section(list).map(|s| &s.content) {
        Some(SectionContent::List(items)) => items.iter().map(|i| i.id.clone()).collect(),
        other => panic!("{list} is not a list section: {other:?}"),
    }
}

/// The stored value of a scalar field as the view shows it.
fn field_value(view: &AgreementView, section: &str, item_id: Option<&str>, field: &str) -> String {
    let fields = match (&view.section(section).expect("section").content, item_id) {
        (SectionContent::Group(fields), None) => fields,
        (SectionContent::List(items), Some(id)) => {
            &items
                .iter()
                .find(|i| i.id == id)
                .expect("item is still there")
                .fields
        }
        (content, _) => panic!("unexpected content for {section}: {content:?}"),
    };
    fields
        .iter()
        .find(|f| f.key == field)
        .expect("field")
        .value
        .clone()
}

fn char_splice(text: &str, pos: usize, delete: usize, insert: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out: String = chars[..pos].iter().collect();
    out.push_str(insert);
    out.extend(&chars[pos + delete..]);
    out
}

/// Model state tracked across replicas: which item ids were ever added and
/// which were removed, for the final list oracle.
#[derive(Default)]
struct Ledger {
    added: BTreeMap<String, BTreeSet<String>>,
    removed: BTreeMap<String, BTreeSet<String>>,
}

impl Partnership {
    fn owner_value(&self, choice: &Option<(Index, bool)>) -> (String, Expect) {
        match choice {
            None => (String::new(), Expect::Clear),
            Some((member, by_name)) => {
                let member = &self.roster.members[member.index(self.roster.members.len())];
                let raw = if *by_name {
                    member.name.clone()
                } else {
                    member.key.to_hex()
                };
                (raw, Expect::Store(member.key.to_hex()))
            }
        }
    }

    fn resolve(&self, val: &Val) -> (String, Expect) {
        match val {
            Val::Text(text) => (text.clone(), Expect::Store(text.clone())),
            Val::Scalar { raw, expect } => (raw.clone(), expect.clone()),
            Val::Owner(choice) => self.owner_value(choice),
        }
    }

    fn apply(&mut self, r: usize, op: &Op, ledger: &mut Ledger) {
        let roster = self.roster.clone();
        let kind = self.kind;
        let a = &mut self.replicas[r];
        match op {
            Op::Splice {
                field,
                by_id,
                pos,
                delete,
                insert,
            } => {
                let paths = text_paths(a.doc(), kind, *by_id);
                let path = &paths[field.index(paths.len())];
                let obj = a
                    .text_obj(path, &roster)
                    .unwrap_or_else(|e| panic!("text_obj({path}): {e}"));
                let old = a.doc().text(&obj).unwrap();
                let len = old.chars().count();
                let pos = pos.index(len + 1);
                let delete = (*delete).min(len - pos);
                a.splice_text(&obj, pos, delete as isize, insert)
                    .unwrap_or_else(|e| {
                        panic!("splice {path} at {pos} (-{delete}) in {len} chars: {e}")
                    });
                let expected = char_splice(&old, pos, delete, insert);
                assert_eq!(
                    a.doc().text(&obj).unwrap(),
                    expected,
                    "{path} after splicing"
                );
                let obj_again = a.text_obj(path, &roster).unwrap();
                assert_eq!(obj_again, obj, "text_obj names the same object each time");
            }
            Op::SetText {
                field,
                by_id,
                prefix,
                suffix,
                middle,
            } => {
                let paths = text_paths(a.doc(), kind, *by_id);
                let path = &paths[field.index(paths.len())];
                let obj = a.text_obj(path, &roster).unwrap();
                let old: Vec<char> = a.doc().text(&obj).unwrap().chars().collect();
                let keep_front = prefix.index(old.len() + 1);
                let keep_back = suffix.index(old.len() - keep_front + 1);
                let mut new: String = old[..keep_front].iter().collect();
                new.push_str(middle);
                new.extend(&old[old.len() - keep_back..]);
                a.set(path, &new, &roster)
                    .unwrap_or_else(|e| panic!("set {path}: {e}"));
                assert_eq!(
                    a.doc().text(&obj).unwrap(),
                    new,
                    "{path} after set (same text object, edited in place)"
                );
            }
            Op::AddItem { list, values } => {
                let before = raw_list_ids(a.doc(), list);
                let resolved: Vec<(String, String, Expect)> = values
                    .iter()
                    .map(|(key, val)| {
                        let (raw, expect) = self.resolve(val);
                        ((*key).to_owned(), raw, expect)
                    })
                    .collect();
                let a = &mut self.replicas[r];
                let pairs: Vec<(String, String)> = resolved
                    .iter()
                    .map(|(k, v, _)| (k.clone(), v.clone()))
                    .collect();
                let id = a
                    .add_item(list, &pairs, &roster)
                    .unwrap_or_else(|e| panic!("add to {list} {pairs:?}: {e}"));
                let mut expected_ids = before;
                expected_ids.push(id.clone());
                assert_eq!(
                    raw_list_ids(a.doc(), list),
                    expected_ids,
                    "{list} after adding"
                );
                assert!(
                    id.parse::<usize>().is_err(),
                    "item id {id:?} must not read as a position"
                );
                // Each field appears at most once (one value per schema field).
                for (key, _, expect) in &resolved {
                    let shown = raw_field(a.doc(), list, Some(&id), key);
                    match expect {
                        Expect::Store(v) => assert_eq!(&shown, v, "{list}.{id}.{key}"),
                        Expect::Clear => assert_eq!(shown, "", "{list}.{id}.{key}"),
                        Expect::Reject => unreachable!(),
                    }
                }
                assert!(
                    ledger
                        .added
                        .entry((*list).to_owned())
                        .or_default()
                        .insert(id),
                    "item ids are unique"
                );
            }
            Op::Remove { list, item, by_id } => {
                let ids = raw_list_ids(a.doc(), list);
                if ids.is_empty() {
                    let pending = a.doc().pending_ops();
                    let err = a
                        .remove_item(&format!("{list}.1"))
                        .expect_err("nothing to remove");
                    assert!(matches!(err, ModelError::NoSuchItem { .. }), "{err}");
                    assert_eq!(
                        a.doc().pending_ops(),
                        pending,
                        "a refused remove changes nothing"
                    );
                    return;
                }
                let i = item.index(ids.len());
                let path = if *by_id {
                    format!("{list}.{}", ids[i])
                } else {
                    format!("{list}.{}", i + 1)
                };
                a.remove_item(&path)
                    .unwrap_or_else(|e| panic!("remove {path}: {e}"));
                let mut expected = ids.clone();
                let gone = expected.remove(i);
                assert_eq!(
                    raw_list_ids(a.doc(), list),
                    expected,
                    "{list} after removing {path}"
                );
                ledger
                    .removed
                    .entry((*list).to_owned())
                    .or_default()
                    .insert(gone);
            }
            Op::SetScalar {
                section,
                field,
                item,
                by_id,
                value,
            } => {
                let shape = &kind.section(section).unwrap().shape;
                let (path, item_id) = match shape {
                    Shape::Group(_) => (format!("{section}.{field}"), None),
                    _ => {
                        let ids = raw_list_ids(a.doc(), section);
                        if ids.is_empty() {
                            return;
                        }
                        let i = item.index(ids.len());
                        let name = if *by_id {
                            ids[i].clone()
                        } else {
                            (i + 1).to_string()
                        };
                        (format!("{section}.{name}.{field}"), Some(ids[i].clone()))
                    }
                };
                let old = raw_field(a.doc(), section, item_id.as_deref(), field);
                let pending = a.doc().pending_ops();
                let (raw, expect) = self.resolve(value);
                let a = &mut self.replicas[r];
                let result = a.set(&path, &raw, &roster);
                let shown = raw_field(a.doc(), section, item_id.as_deref(), field);
                match expect {
                    Expect::Store(v) => {
                        result.unwrap_or_else(|e| panic!("set {path} = {raw:?}: {e}"));
                        assert_eq!(shown, v, "{path} after set {raw:?}");
                    }
                    Expect::Clear => {
                        result.unwrap_or_else(|e| panic!("clear {path} with {raw:?}: {e}"));
                        assert_eq!(shown, "", "{path} after clearing");
                    }
                    Expect::Reject => {
                        let err = result.expect_err(&format!("{path} = {raw:?} must be refused"));
                        assert!(
                            matches!(err, ModelError::BadValue { .. }),
                            "{path} = {raw:?}: {err}"
                        );
                        assert_eq!(shown, old, "a refused value leaves {path} as it was");
                        assert_eq!(
                            a.doc().pending_ops(),
                            pending,
                            "a refused value writes nothing"
                        );
                    }
                }
            }
        }
    }

    fn run(&mut self, scenario: &Scenario) {
        let n = self.replicas.len();
        let mut ledger = Ledger::default();
        let mut edits = vec![0usize; n];
        let mut states: BTreeMap<(usize, usize), sync::State> = BTreeMap::new();
        let mut generation = vec![0u8; n];

        for step in &scenario.steps {
            match step {
                Step::Edit { replica, op } => {
                    let r = replica.index(n);
                    if edits[r] == MAX_EDITS_PER_REPLICA {
                        continue;
                    }
                    edits[r] += 1;
                    self.apply(r, op, &mut ledger);
                }
                Step::Commit { replica } => self.commit(replica.index(n), "Edited"),
                Step::Merge { to, from } => {
                    let to = to.index(n);
                    let from = other(to, from, n);
                    // Every edit ends in a commit in the app; commit first so
                    // the change log stays complete.
                    self.commit(to, "Edited before merging");
                    self.commit(from, "Edited before merging");
                    let (to, from) = pair_mut(&mut self.replicas, to, from);
                    merge_into(to, from);
                }
                Step::Sync { a, b, mode } => {
                    let a = a.index(n);
                    let b = other(a, b, n);
                    self.commit(a, "Edited before syncing");
                    self.commit(b, "Edited before syncing");
                    let mut a_state = states.remove(&(a, b)).unwrap_or_default();
                    let mut b_state = states.remove(&(b, a)).unwrap_or_default();
                    match mode {
                        SyncMode::Persisted => {}
                        SyncMode::Reconnect => {
                            a_state = sync::State::decode(&a_state.encode()).unwrap();
                            b_state = sync::State::decode(&b_state.encode()).unwrap();
                        }
                        SyncMode::Fresh => {
                            a_state = sync::State::new();
                            b_state = sync::State::new();
                        }
                    }
                    let (ra, rb) = pair_mut(&mut self.replicas, a, b);
                    sync_pair(ra.doc_mut(), &mut a_state, rb.doc_mut(), &mut b_state);
                    states.insert((a, b), a_state);
                    states.insert((b, a), b_state);
                }
                Step::Reload { replica } => {
                    let r = replica.index(n);
                    self.commit(r, "Edited before saving");
                    let id = self.replicas[r].id();
                    let before = self.replicas[r].view(&self.roster);
                    let bytes = self.replicas[r].doc_mut().save();
                    // A new process: a fresh actor suffix, as the app would use.
                    generation[r] += 1;
                    let actor = new_document_actor(&self.orgs[r], actor_suffix(r, generation[r]));
                    let doc = load_document(&bytes, &[], actor).expect("load saved agreement");
                    self.replicas[r] =
                        Agreement::from_doc(id, doc).expect("saved agreement reads back");
                    let after = self.replicas[r].view(&self.roster);
                    assert_eq!(after, before, "reloading changes nothing");
                }
            }
        }

        // Everyone exchanges with everyone, in a random order.
        for r in 0..n {
            self.commit(r, "Last edits");
        }
        let mut pairs: Vec<(u32, bool, usize, usize)> = (0..n)
            .flat_map(|a| (0..n).filter(move |b| *b != a).map(move |b| (a, b)))
            .zip(&scenario.finale)
            .map(|((a, b), (key, use_sync))| (*key, *use_sync, a, b))
            .collect();
        pairs.sort();
        for (_, use_sync, to, from) in pairs {
            let (to, from) = pair_mut(&mut self.replicas, to, from);
            if use_sync {
                let (mut s1, mut s2) = (sync::State::new(), sync::State::new());
                sync_pair(to.doc_mut(), &mut s1, from.doc_mut(), &mut s2);
            } else {
                merge_into(to, from);
            }
        }
        self.assert_converged(&ledger);
    }

    fn assert_converged(&mut self, ledger: &Ledger) {
        let roster = self.roster.clone();
        let heads: Vec<Vec<ChangeHash>> = self
            .replicas
            .iter_mut()
            .map(|a| sorted_heads(a.doc_mut()))
            .collect();
        let views: Vec<AgreementView> = self.replicas.iter_mut().map(|a| a.view(&roster)).collect();
        let saves: Vec<Vec<u8>> = self
            .replicas
            .iter_mut()
            .map(|a| a.doc_mut().save())
            .collect();
        for r in 1..self.replicas.len() {
            assert_eq!(
                heads[r], heads[0],
                "replica {r} has the same heads as replica 0"
            );
            assert_eq!(
                views[r].title, views[0].title,
                "replica {r} shows the same title"
            );
            assert_eq!(
                views[r].sections, views[0].sections,
                "replica {r} shows the same content"
            );
            assert_eq!(views[r], views[0], "replica {r} shows the same view");
            // Automerge 0.12's `save` is NOT byte-identical across converged
            // replicas: it writes the change metadata in the order the replica
            // applied the changes (a topological order whose ties between
            // concurrent changes follow arrival order), so the bytes, and the
            // checksum in the header, differ with merge order. What must agree
            // is the change set, and what any replica's save loads back as.
            let mut loaded = AutoCommit::load(&saves[r]).expect("save loads");
            assert_eq!(
                sorted_heads(&mut loaded),
                heads[0],
                "replica {r}'s save has the same heads"
            );
            assert_eq!(
                change_hashes(&mut loaded),
                change_hashes(self.replicas[0].doc_mut()),
                "replica {r}'s save has the same changes"
            );
            let loaded = Agreement::from_doc(views[0].id, loaded).unwrap();
            assert_eq!(
                loaded.view(&roster),
                views[0],
                "replica {r}'s save shows the same agreement"
            );
        }
        for (r, (replica, saved)) in self.replicas.iter_mut().zip(&saves).enumerate() {
            let again = replica.doc_mut().save();
            assert!(
                &again == saved,
                "saving replica {r} twice gives the same bytes"
            );
            assert_eq!(replica.doc().pending_ops(), 0, "nothing left uncommitted");
        }

        // What was added and never removed is there; nothing else is.
        let view = &views[0];
        for section in view.sections.iter() {
            if let SectionContent::List(items) = &section.content {
                let shown: Vec<&String> = items.iter().map(|i| &i.id).collect();
                let unique: BTreeSet<&String> = shown.iter().copied().collect();
                assert_eq!(
                    unique.len(),
                    shown.len(),
                    "{}: item ids are unique: {shown:?}",
                    section.key
                );
                let added = ledger.added.get(section.key).cloned().unwrap_or_default();
                let removed = ledger.removed.get(section.key).cloned().unwrap_or_default();
                for id in &added {
                    assert_eq!(
                        unique.contains(id),
                        !removed.contains(id),
                        "{}: item {id} is shown exactly when no one removed it",
                        section.key
                    );
                }
                for id in &unique {
                    assert!(
                        added.contains(*id) || !removed.contains(*id),
                        "{}: removed item {id} came back",
                        section.key
                    );
                }
            }
        }

        // The snapshot plus every committed change rebuilds the same document
        // (what the store persists), and so does loading a save.
        let actor = new_document_actor(&self.orgs[0], actor_suffix(0, 0xee));
        let mut rebuilt =
            load_document(&self.snapshot, &self.log, actor.clone()).expect("snapshot + log loads");
        assert_eq!(
            sorted_heads(&mut rebuilt),
            heads[0],
            "snapshot + log has every change"
        );
        let rebuilt = Agreement::from_doc(view.id, rebuilt).unwrap();
        assert_eq!(
            &rebuilt.view(&roster),
            view,
            "snapshot + log shows the same agreement"
        );
        let mut loaded =
            Agreement::from_doc(view.id, load_document(&saves[0], &[], actor).unwrap()).unwrap();
        assert_eq!(
            &loaded.view(&roster),
            view,
            "a saved agreement loads back the same"
        );
        assert!(
            loaded.doc_mut().save() == saves[0],
            "saving a loaded agreement gives the same bytes"
        );
    }
}

fn check_convergence(kind: DocKind, scenario: &Scenario) {
    let mut partnership = Partnership::new(kind, scenario.replicas, scenario.org_seed);
    partnership.run(scenario);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mou_replicas_converge(scenario in scenario(DocKind::Mou)) {
        check_convergence(DocKind::Mou, &scenario);
    }

    #[test]
    fn values_replicas_converge(scenario in scenario(DocKind::Values)) {
        check_convergence(DocKind::Values, &scenario);
    }

    #[test]
    fn dispute_replicas_converge(scenario in scenario(DocKind::Dispute)) {
        check_convergence(DocKind::Dispute, &scenario);
    }
}

// ---------------------------------------------------------------------------
// Known tricky cases, deterministically
// ---------------------------------------------------------------------------

fn converge_all(p: &mut Partnership, order: &[(usize, usize)]) {
    for r in 0..p.replicas.len() {
        p.commit(r, "Edited");
    }
    for &(to, from) in order {
        let (to, from) = pair_mut(&mut p.replicas, to, from);
        merge_into(to, from);
    }
}

/// Every order in which three replicas can pull from each other once.
fn three_way_orders() -> Vec<Vec<(usize, usize)>> {
    vec![
        vec![(0, 1), (0, 2), (1, 0), (2, 0)],
        vec![(2, 1), (2, 0), (1, 2), (0, 2)],
        vec![(1, 2), (1, 0), (0, 1), (2, 1)],
    ]
}

#[test]
fn concurrent_removes_of_an_item_one_partner_is_editing() {
    for order in three_way_orders() {
        let mut p = Partnership::new(DocKind::Mou, 3, 40);
        let roster = p.roster.clone();
        let view = p.replicas[0].view(&roster);
        let ids = list_ids(&view, "milestones");
        assert_eq!(ids.len(), 2, "the template has two milestones");
        let (doomed, kept) = (ids[0].clone(), ids[1].clone());

        // Two partners remove the same milestone, one by position, one by id...
        p.replicas[0].remove_item("milestones.1").unwrap();
        p.replicas[1]
            .remove_item(&format!("milestones.{doomed}"))
            .unwrap();
        // ...while the third edits it: a splice, a whole-text set and scalars.
        let c = &mut p.replicas[2];
        let title = c
            .text_obj(&format!("milestones.{doomed}.title"), &roster)
            .unwrap();
        c.splice_text(&title, 0, 0, "Urgent: ").unwrap();
        c.set(&format!("milestones.{doomed}.status"), "at-risk", &roster)
            .unwrap();
        c.set(&format!("milestones.{doomed}.due"), "2027-06-30", &roster)
            .unwrap();
        c.set(&format!("milestones.{doomed}.owner"), ORG_NAMES[2], &roster)
            .unwrap();
        c.set(&format!("milestones.{kept}.status"), "in-progress", &roster)
            .unwrap();
        // One of the removers also edits the other milestone.
        p.replicas[1]
            .set("milestones.1.due", "2027-09-01", &roster)
            .unwrap();

        converge_all(&mut p, &order);
        p.assert_converged(&Ledger::default());

        let view = p.replicas[0].view(&roster);
        assert_eq!(
            list_ids(&view, "milestones"),
            vec![kept.clone()],
            "order {order:?}"
        );
        assert_eq!(
            field_value(&view, "milestones", Some(&kept), "status"),
            "in-progress"
        );
        assert_eq!(
            field_value(&view, "milestones", Some(&kept), "due"),
            "2027-09-01"
        );
        assert!(
            !format!("{view:?}").contains("Urgent"),
            "edits to a removed item do not resurface"
        );

        // The removed item is gone for good: naming it is an error, not a panic
        // and not a silent resurrection.
        for r in 0..3 {
            let a = &mut p.replicas[r];
            let err = a
                .set(&format!("milestones.{doomed}.status"), "done", &roster)
                .unwrap_err();
            assert!(matches!(err, ModelError::NoSuchItem { .. }), "{err}");
            let err = a.remove_item(&format!("milestones.{doomed}")).unwrap_err();
            assert!(matches!(err, ModelError::NoSuchItem { .. }), "{err}");
            assert_eq!(a.doc().pending_ops(), 0);
        }
    }
}

#[test]
fn a_partner_keeps_editing_an_item_it_has_not_yet_seen_removed() {
    // Two replicas: one removes a step; the other, not yet knowing, edits it
    // twice, merging in between. Its later edits go to an item that is
    // already deleted on the merged replica, and must not fail or revive it.
    let mut p = Partnership::new(DocKind::Dispute, 2, 7);
    let roster = p.roster.clone();
    let ids = list_ids(&p.replicas[0].view(&roster), "steps");
    let doomed = ids[1].clone();
    let what = format!("steps.{doomed}.what");
    let days = format!("steps.{doomed}.days");

    let obj = p.replicas[1].text_obj(&what, &roster).unwrap();
    p.replicas[1].splice_text(&obj, 0, 3, "Our").unwrap();
    p.replicas[1].set(&days, "21", &roster).unwrap();
    p.commit(1, "Edited");
    p.replicas[0]
        .remove_item(&format!("steps.{doomed}"))
        .unwrap();
    p.commit(0, "Removed");
    // Replica 1 edits again, concurrently with the removal it has not seen.
    p.replicas[1].splice_text(&obj, 0, 0, "✍️ ").unwrap();
    p.commit(1, "Edited again");
    converge_all(&mut p, &[(0, 1), (1, 0)]);
    p.assert_converged(&Ledger::default());
    let view = p.replicas[1].view(&roster);
    assert_eq!(
        list_ids(&view, "steps"),
        vec![ids[0].clone(), ids[2].clone()]
    );

    // The stale handle now points into a deleted object: Automerge refuses
    // or accepts the write, but it must not panic and must not show up.
    // (Automerge 0.12 accepts the write into the deleted object.)
    match p.replicas[1].splice_text(&obj, 0, 0, "ghost") {
        Ok(()) | Err(ModelError::Automerge(_)) => {}
        Err(other) => panic!("unexpected error writing through a stale handle: {other}"),
    }
    p.commit(1, "Ghost edit");
    converge_all(&mut p, &[(0, 1), (1, 0)]);
    p.assert_converged(&Ledger::default());
    assert!(!format!("{:?}", p.replicas[0].view(&roster)).contains("ghost"));
}

#[test]
fn concurrent_inserts_at_the_same_text_position_both_survive_in_one_order() {
    let inserts = [
        "CVS: we meet monthly. ",
        "Centre: réunions 每月 👩\u{200d}👩\u{200d}👧. ",
    ];
    let mut results = BTreeSet::new();
    for order in three_way_orders() {
        let mut p = Partnership::new(DocKind::Mou, 3, 90);
        let roster = p.roster.clone();
        // A shared starting text everyone has.
        p.replicas[0]
            .set("communication", "Partners meet.", &roster)
            .unwrap();
        assert!(raw_list_ids(p.replicas[0].doc(), "objectives").is_empty());
        let objective = p.replicas[0]
            .add_item(
                "objectives",
                &[("text".into(), "Reach 500 families".into())],
                &roster,
            )
            .unwrap();
        p.commit(0, "Base");
        for r in 1..3 {
            let (to, from) = pair_mut(&mut p.replicas, r, 0);
            merge_into(to, from);
        }

        // Two organisations insert at the same position of the same texts
        // (a top-level section and a list item's field), concurrently.
        for (r, insert) in inserts.iter().enumerate() {
            let a = &mut p.replicas[r];
            let text = a.text_obj("communication", &roster).unwrap();
            a.splice_text(&text, 8, 0, insert).unwrap();
            let item = a
                .text_obj(&format!("objectives.{objective}.text"), &roster)
                .unwrap();
            a.splice_text(&item, 0, 0, insert).unwrap();
        }
        // The third replica edits elsewhere in the same text.
        let c = &mut p.replicas[2];
        let text = c.text_obj("communication", &roster).unwrap();
        c.splice_text(&text, 14, 0, " Often.").unwrap();

        converge_all(&mut p, &order);
        p.assert_converged(&Ledger::default());

        let view = p.replicas[0].view(&roster);
        let communication = match &view.section("communication").unwrap().content {
            SectionContent::Text(t) => t.clone(),
            other => panic!("{other:?}"),
        };
        let objective_text = field_value(&view, "objectives", Some(&objective), "text");
        // Both inserts survive whole (not interleaved), next to each other,
        // at the position they were made.
        let (first, second) = if communication.starts_with(&format!("Partners{}", inserts[0])) {
            (inserts[0], inserts[1])
        } else {
            (inserts[1], inserts[0])
        };
        assert_eq!(
            communication,
            format!("Partners{first}{second} meet. Often."),
            "order {order:?}"
        );
        assert_eq!(
            objective_text,
            format!("{first}{second}Reach 500 families"),
            "order {order:?}"
        );
        results.insert(communication);
    }
    // The same keys and actors in every run: every merge order gives the same text.
    assert_eq!(results.len(), 1, "{results:?}");
}

#[test]
fn add_item_with_a_rejected_value_adds_nothing() {
    let mut p = Partnership::new(DocKind::Mou, 2, 3);
    let roster = p.roster.clone();
    let before = p.replicas[0].view(&roster);
    let values = [
        ("title".to_owned(), "Launch".to_owned()),
        ("due".to_owned(), "2027-02-30".to_owned()),
    ];
    let err = p.replicas[0]
        .add_item("milestones", &values, &roster)
        .unwrap_err();
    assert!(matches!(err, ModelError::BadValue { .. }), "{err}");
    let after = p.replicas[0].view(&roster);
    assert_eq!(
        list_ids(&after, "milestones"),
        list_ids(&before, "milestones"),
        "a refused add leaves the list as it was"
    );
    assert_eq!(
        p.replicas[0].doc().pending_ops(),
        0,
        "a refused add leaves nothing to commit"
    );
}

#[test]
fn reading_the_view_between_an_edit_and_its_commit_keeps_the_change_for_commit() {
    // Reading must not commit pending edits as an anonymous change, or the
    // following `commit` would return `None` and the edit would never be
    // persisted or sent.
    let mut p = Partnership::new(DocKind::Values, 2, 11);
    let roster = p.roster.clone();
    p.replicas[0]
        .set("statement", "We listen first.", &roster)
        .unwrap();
    let _ = p.replicas[0].view(&roster);
    let change = p.replicas[0].commit("Edited the statement", 20);
    assert!(
        change.is_some(),
        "commit still returns the edit made before view()"
    );
}

#[test]
fn first_edits_for_a_member_who_joined_later_both_survive() {
    // The MOU is created while the partnership has two members; a third
    // joins afterwards, so the MOU has no `roles`/`commitments` entry for it.
    let orgs: Vec<OrgSecret> = (0..3u8)
        .map(|i| OrgSecret::from_seed([60 + i; 32]))
        .collect();
    let (mut roster, _) = Roster::create(
        "Sharing Our Strengths",
        &orgs[0].public(),
        ORG_NAMES[0],
        [5; 16],
        new_document_actor(&orgs[0], [9; 8]),
        1,
    )
    .unwrap();
    roster
        .add_member(&orgs[1].public(), ORG_NAMES[1], Role::DecisionMaker, 1)
        .unwrap();
    let id = DocId::random([61; 16]);
    let (mut mou, _) = Agreement::create(
        id,
        DocKind::Mou,
        roster.id(),
        "MOU",
        new_document_actor(&orgs[0], [8; 8]),
        &roster.view(),
        2,
    )
    .unwrap();
    roster
        .add_member(&orgs[2].public(), ORG_NAMES[2], Role::DecisionMaker, 3)
        .unwrap();
    let view = roster.view();
    let newcomer = orgs[2].public().to_hex();
    // Whoever adds the member creates its entries once, before anyone edits
    // them (the workspace does this in `add_member`); concurrent first
    // creations of one map key would keep only one partner's map.
    mou.ensure_org_entries(&orgs[2].public()).unwrap();
    mou.commit("Entries for the newcomer", 3).unwrap();

    let mut replicas: Vec<Agreement> = (0..2)
        .map(|i| {
            let doc = mou
                .doc_mut()
                .fork()
                .with_actor(new_document_actor(&orgs[i], actor_suffix(i, 0)));
            Agreement::from_doc(id, doc).unwrap()
        })
        .collect();
    // Two partners concurrently fill in different fields of the newcomer's
    // commitments.
    replicas[0]
        .set(
            &format!("commitments.{newcomer}.time"),
            "Two days a month",
            &view,
        )
        .unwrap();
    replicas[0].commit("Time", 4).unwrap();
    replicas[1]
        .set(&format!("commitments.{newcomer}.money"), "£500", &view)
        .unwrap();
    replicas[1].commit("Money", 4).unwrap();
    let (a, b) = pair_mut(&mut replicas, 0, 1);
    merge_into(a, b);
    merge_into(b, a);

    let shown = replicas[0].view(&view);
    assert_eq!(shown, replicas[1].view(&view), "replicas converge");
    let SectionContent::PerOrg(entries) = &shown.section("commitments").unwrap().content else {
        panic!("commitments is per organisation");
    };
    let entry = entries.iter().find(|e| e.org == orgs[2].public()).unwrap();
    let value = |key: &str| {
        entry
            .fields
            .iter()
            .find(|f| f.key == key)
            .unwrap()
            .value
            .clone()
    };
    assert_eq!(
        value("time"),
        "Two days a month",
        "the first partner's edit survives"
    );
    assert_eq!(value("money"), "£500", "the second partner's edit survives");
}
