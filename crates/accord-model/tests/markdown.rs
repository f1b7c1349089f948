//! Rendering agreements as Markdown/HTML and reading edited Markdown back.

use accord_identity::OrgSecret;
use accord_model::markdown::{Edit, RenderOptions, apply_edits, parse_edit, render, render_html};
use accord_model::{
    Agreement, AgreementView, DocId, DocKind, ModelError, Role, Roster, RosterView, SectionContent,
    new_document_actor,
};
use proptest::prelude::*;

const EDITABLE: RenderOptions = RenderOptions {
    prompts: true,
    editable: true,
};

fn org(n: u8) -> OrgSecret {
    OrgSecret::from_seed([n; 32])
}

fn roster() -> RosterView {
    let lead = org(1);
    let actor = new_document_actor(&lead, [0; 8]);
    let (mut roster, _) = Roster::create(
        "Sharing Our Strengths",
        &lead.public(),
        "Women's Centre",
        [5; 16],
        actor,
        100,
    )
    .unwrap();
    roster
        .add_member(&org(2).public(), "CVS Wandsworth", Role::Consultee, 101)
        .unwrap();
    roster.view()
}

fn agreement(kind: DocKind, roster: &RosterView) -> Agreement {
    let actor = new_document_actor(&org(1), [1; 8]);
    let id = DocId::random([kind as u8 + 10; 16]);
    Agreement::create(id, kind, roster.id, "Our agreement", actor, roster, 200)
        .unwrap()
        .0
}

fn item_ids(view: &AgreementView, list: &str) -> Vec<String> {
    match &view.section(list).unwrap().content {
        SectionContent::List(items) => items.iter().map(|i| i.id.clone()).collect(),
        other => panic!("{list} is not a list: {other:?}"),
    }
}

fn hex(n: u8) -> String {
    org(n).public().to_hex()
}

/// Text that looks like Markdown structure and like our own markers.
const TRICKY: &str = "Première ligne, café ☕ and 🎉 emoji.\n\n# Not a heading of ours\n## Nor this\n\n<!-- accord:field purpose -->\n\\<!-- accord:end -->\n  <!--accord:item milestones x -->\n<!-- an ordinary comment -->\n**Due:** not a field\n### 1. not an item\n\n\n  indented last line";

/// Fills every kind of field with awkward content.
fn fill(agreement: &mut Agreement, roster: &RosterView) {
    let set = |a: &mut Agreement, path: &str, value: &str| a.set(path, value, roster).unwrap();
    match agreement.kind() {
        DocKind::Mou => {
            set(agreement, "purpose", TRICKY);
            set(
                agreement,
                "communication",
                "Monthly calls.\n\nA shared folder.",
            );
            set(
                agreement,
                "review.how",
                "Quarterly reports\nto every partner.",
            );
            set(agreement, "review.date", "2027-09-30");
            set(agreement, "term.start", "2027-01-01");
            set(
                agreement,
                &format!("roles.{}", hex(1)),
                "Leads on funding. Chairs meetings.",
            );
            set(
                agreement,
                &format!("commitments.{}.money", hex(2)),
                "£2,000 <b>in kind</b>",
            );
            let view = agreement.view(roster);
            let first = &item_ids(&view, "milestones")[0];
            set(
                agreement,
                &format!("milestones.{first}.owner"),
                "CVS Wandsworth",
            );
            set(agreement, &format!("milestones.{first}.due"), "2027-03-31");
            agreement
                .add_item(
                    "objectives",
                    &[("text".into(), format!("{TRICKY}\n"))],
                    roster,
                )
                .unwrap();
        }
        DocKind::Values => {
            set(
                agreement,
                "statement",
                "We work as equals.\n\n\tTabbed paragraph with trailing spaces  ",
            );
            let view = agreement.view(roster);
            let first = &item_ids(&view, "values")[0];
            set(agreement, &format!("values.{first}.description"), TRICKY);
        }
        DocKind::Dispute => {
            set(
                agreement,
                "title",
                "Disputes # and <!-- accord:end --> in a title",
            );
            let view = agreement.view(roster);
            let first = &item_ids(&view, "steps")[0];
            set(
                agreement,
                &format!("steps.{first}.title"),
                "Talk\n\nit through",
            );
            set(agreement, &format!("steps.{first}.who"), "");
        }
    }
}

fn filled(kind: DocKind, roster: &RosterView) -> Agreement {
    let mut a = agreement(kind, roster);
    fill(&mut a, roster);
    a
}

#[test]
fn unchanged_editable_markdown_reads_back_as_no_edits() {
    let roster = roster();
    for kind in DocKind::ALL {
        for prompts in [true, false] {
            for a in [agreement(kind, &roster), filled(kind, &roster)] {
                let view = a.view(&roster);
                let text = render(
                    &view,
                    &roster,
                    &RenderOptions {
                        prompts,
                        editable: true,
                    },
                );
                assert_eq!(
                    parse_edit(&view, &text, &roster).unwrap(),
                    vec![],
                    "{kind}:\n{text}"
                );
                let crlf = text.replace('\n', "\r\n");
                assert_eq!(
                    parse_edit(&view, &crlf, &roster).unwrap(),
                    vec![],
                    "{kind} with CRLF"
                );
                let stripped: String = text
                    .lines()
                    .map(|l| format!("{}\n", l.trim_end()))
                    .collect();
                assert_eq!(
                    parse_edit(&view, &stripped, &roster).unwrap(),
                    vec![],
                    "{kind}, trailing spaces stripped"
                );
            }
        }
    }
}

#[test]
fn tricky_text_round_trips_exactly_through_every_kind_of_field() {
    let roster = roster();
    let mut a = filled(DocKind::Mou, &roster);
    let view = a.view(&roster);
    let objective = item_ids(&view, "objectives")[0].clone();
    let milestone = item_ids(&view, "milestones")[0].clone();
    let paths = [
        "title".to_owned(),
        "purpose".to_owned(),
        "review.how".to_owned(),
        format!("objectives.{objective}.text"),
        format!("milestones.{milestone}.title"),
        format!("commitments.{}.people", hex(1)),
    ];
    let replacement = format!("\n\n{TRICKY}\n  second <!-- accord:end --> inline\n\n");
    for path in &paths {
        let mut b = Agreement::from_doc(a.id(), a.doc_mut().fork()).unwrap();
        b.set(path, &replacement, &roster).unwrap();
        let changed_text = render(&b.view(&roster), &roster, &EDITABLE);
        let edits = parse_edit(&view, &changed_text, &roster).unwrap();
        let expected = replacement.trim_matches('\n').to_owned();
        assert_eq!(
            edits,
            vec![Edit::Set {
                path: path.clone(),
                value: expected
            }],
            "{path}"
        );
    }
}

/// Every text section's current value, keyed by path, to compare before/after.
fn snapshot(view: &AgreementView) -> Vec<(String, String)> {
    view.sections
        .iter()
        .map(|s| (s.key.to_owned(), format!("{:?}", s.content)))
        .collect()
}

#[test]
fn changing_one_field_yields_one_set_and_changes_only_that_field() {
    let roster = roster();
    let mut a = filled(DocKind::Mou, &roster);
    let before = a.view(&roster);
    let text = render(&before, &roster, &EDITABLE);
    let edited = text.replace("**Start:** 2027-01-01", "**Start:** 2027-02-01");
    let edits = parse_edit(&before, &edited, &roster).unwrap();
    assert_eq!(
        edits,
        vec![Edit::Set {
            path: "term.start".into(),
            value: "2027-02-01".into()
        }]
    );
    apply_edits(&mut a, &edits, &roster).unwrap();
    let after = a.view(&roster);
    let (old, new) = (snapshot(&before), snapshot(&after));
    for (o, n) in old.iter().zip(&new) {
        if o.0 == "term" {
            assert!(
                n.1.contains("2027-02-01") && !n.1.contains("2027-01-01"),
                "{n:?}"
            );
        } else {
            assert_eq!(o, n);
        }
    }
    assert_eq!(a.title(), before.title);
}

#[test]
fn a_sentence_change_in_text_is_one_set_of_the_new_text() {
    let roster = roster();
    let mut a = filled(DocKind::Mou, &roster);
    let view = a.view(&roster);
    let edited = render(&view, &roster, &EDITABLE).replace("Monthly calls.", "Fortnightly calls.");
    let edits = parse_edit(&view, &edited, &roster).unwrap();
    let expected = "Fortnightly calls.\n\nA shared folder.";
    assert_eq!(
        edits,
        vec![Edit::Set {
            path: "communication".into(),
            value: expected.into()
        }]
    );
    apply_edits(&mut a, &edits, &roster).unwrap();
    let after = a.view(&roster);
    assert_eq!(
        after.section("communication").unwrap().content,
        SectionContent::Text(expected.into())
    );
    assert_eq!(after.section("purpose"), view.section("purpose"));
}

#[test]
fn scalars_are_checked_and_organisations_compare_by_name() {
    let roster = roster();
    let mut a = filled(DocKind::Mou, &roster);
    let view = a.view(&roster);
    let first = item_ids(&view, "milestones")[0].clone();
    let text = render(&view, &roster, &EDITABLE);
    assert!(text.contains("**Owner:** CVS Wandsworth"), "{text}");
    // Same organisation in another case, same status in capitals: no change.
    let same = text.replace("**Owner:** CVS Wandsworth", "**Owner:** cvs wandsworth");
    assert_eq!(parse_edit(&view, &same, &roster).unwrap(), vec![]);
    let moved = text.replace("**Owner:** CVS Wandsworth", "**Owner:** Women's");
    let edits = parse_edit(&view, &moved, &roster).unwrap();
    assert_eq!(
        edits,
        vec![Edit::Set {
            path: format!("milestones.{first}.owner"),
            value: hex(1)
        }]
    );
    apply_edits(&mut a, &edits, &roster).unwrap();
    assert!(format!("{:?}", a.view(&roster).section("milestones")).contains(&hex(1)));

    let bad_date = text.replace("**Due:** 2027-03-31", "**Due:** 31/03/2027");
    let err = parse_edit(&view, &bad_date, &roster)
        .unwrap_err()
        .to_string();
    assert!(err.contains("line ") && err.contains("2027-03-31"), "{err}");
    let nobody = text.replace("**Owner:** CVS Wandsworth", "**Owner:** Nobody Ltd");
    assert!(
        matches!(parse_edit(&view, &nobody, &roster), Err(ModelError::Markdown(m)) if m.contains("Nobody"))
    );
}

/// Cuts the block of one item out of an editable file.
fn without_item(text: &str, list: &str, id: &str) -> String {
    let start = text
        .find(&format!("<!-- accord:item {list} {id} -->"))
        .unwrap();
    let rest = &text[start + 1..];
    let end = ["<!-- accord:item ", "<!-- accord:new "]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .unwrap();
    format!("{}{}", &text[..start], &rest[end..])
}

#[test]
fn deleting_an_item_block_removes_that_item() {
    let roster = roster();
    let mut a = agreement(DocKind::Values, &roster);
    let view = a.view(&roster);
    let ids = item_ids(&view, "values");
    let text = render(&view, &roster, &EDITABLE);
    let edited = without_item(&text, "values", &ids[1]);
    let edits = parse_edit(&view, &edited, &roster).unwrap();
    assert_eq!(
        edits,
        vec![Edit::Remove {
            path: format!("values.{}", ids[1])
        }]
    );
    apply_edits(&mut a, &edits, &roster).unwrap();
    let after = a.view(&roster);
    let mut expected = ids.clone();
    expected.remove(1);
    assert_eq!(item_ids(&after, "values"), expected);
    assert_eq!(after.section("ground_rules"), view.section("ground_rules"));
}

#[test]
fn filling_in_template_blocks_adds_items() {
    let roster = roster();
    let mut a = agreement(DocKind::Mou, &roster);
    let view = a.view(&roster);
    let text = render(&view, &roster, &EDITABLE);
    let start = text.find("<!-- accord:new milestones -->").unwrap();
    let end = start + text[start..].find("<!-- accord:section ").unwrap();
    let template = &text[start..end];
    let fill = |title: &str, owner: &str, due: &str| {
        template
            .replace("**Milestone:**", &format!("**Milestone:** {title}"))
            .replace("**Owner:**", &format!("**Owner:** {owner}"))
            .replace("**Due:**", &format!("**Due:** {due}"))
            .replace("**Status:**", "**Status:** Planned")
    };
    let blocks = format!(
        "{}{}{template}",
        fill("Launch event", "CVS", "2027-06-30"),
        fill("Report", "", "")
    );
    let edited = format!("{}{blocks}{}", &text[..start], &text[end..]);
    let edits = parse_edit(&view, &edited, &roster).unwrap();
    let launch = Edit::Add {
        list: "milestones".into(),
        values: vec![
            ("title".into(), "Launch event".into()),
            ("owner".into(), hex(2)),
            ("due".into(), "2027-06-30".into()),
            ("status".into(), "planned".into()),
        ],
    };
    let report = Edit::Add {
        list: "milestones".into(),
        values: vec![
            ("title".into(), "Report".into()),
            ("status".into(), "planned".into()),
        ],
    };
    assert_eq!(edits, vec![launch, report]);
    apply_edits(&mut a, &edits, &roster).unwrap();
    let after = a.view(&roster);
    assert_eq!(item_ids(&after, "milestones").len(), 4);
    let milestones = format!("{:?}", after.section("milestones").unwrap());
    assert!(
        milestones.contains("Launch event") && milestones.contains("2027-06-30"),
        "{milestones}"
    );
}

#[test]
fn partners_editing_different_sentences_of_one_text_both_keep_their_edit() {
    let roster = roster();
    let mut a = agreement(DocKind::Mou, &roster);
    a.set(
        "purpose",
        "We share a building. We share volunteers. We share a goal.",
        &roster,
    )
    .unwrap();
    a.commit("purpose", 300);
    let actor = new_document_actor(&org(2), [9; 8]);
    let mut b = Agreement::from_doc(a.id(), a.doc_mut().fork().with_actor(actor)).unwrap();
    for (replica, from, to) in [
        (&mut a, "a building", "a big old building"),
        (&mut b, "a goal", "one clear goal"),
    ] {
        let view = replica.view(&roster);
        let edited = render(&view, &roster, &EDITABLE).replace(from, to);
        let edits = parse_edit(&view, &edited, &roster).unwrap();
        assert_eq!(edits.len(), 1);
        apply_edits(replica, &edits, &roster).unwrap();
        replica.commit("edit", 400);
    }
    a.doc_mut().merge(b.doc_mut()).unwrap();
    let merged = a.view(&roster);
    let expected = "We share a big old building. We share volunteers. We share one clear goal.";
    assert_eq!(
        merged.section("purpose").unwrap().content,
        SectionContent::Text(expected.into())
    );
}

fn assert_markdown_error(view: &AgreementView, text: &str, roster: &RosterView, what: &str) {
    match parse_edit(view, text, roster) {
        Err(ModelError::Markdown(message)) => {
            assert!(message.starts_with("line "), "{what}: {message}")
        }
        other => panic!("{what}: expected a Markdown error, got {other:?}"),
    }
}

#[test]
fn damaged_files_are_errors_that_name_a_line() {
    let roster = roster();
    let a = filled(DocKind::Mou, &roster);
    let view = a.view(&roster);
    let text = render(&view, &roster, &EDITABLE);
    let milestone = item_ids(&view, "milestones")[0].clone();
    let field_block = {
        let start = text.find("<!-- accord:field term.start -->").unwrap();
        let end = start + text[start..].find("<!-- accord:field term.end").unwrap();
        text[start..end].to_owned()
    };
    let cases = [
        (
            "random text",
            "Hello, this is not an agreement.\n# Heading\n".to_owned(),
        ),
        ("empty file", String::new()),
        (
            "truncated",
            text.chars().take(text.chars().count() / 2).collect(),
        ),
        ("missing end", text.replace("<!-- accord:end -->", "")),
        (
            "duplicated marker",
            text.replace(&field_block, &format!("{field_block}{field_block}")),
        ),
        (
            "unknown verb",
            text.replace(
                "<!-- accord:field term.end -->",
                "<!-- accord:feld term.end -->",
            ),
        ),
        (
            "unclosed marker",
            text.replace(
                "<!-- accord:field term.end -->",
                "<!-- accord:field term.end",
            ),
        ),
        (
            "unknown field",
            text.replace(
                "<!-- accord:field term.end -->",
                "<!-- accord:field term.middle -->",
            ),
        ),
        ("unknown item", text.replace(&milestone, "zzzzzzzz")),
        (
            "other agreement",
            text.replace(&view.id.to_string(), &DocId::random([1; 16]).to_string()),
        ),
        (
            "text outside fields",
            text.replace("## Term\n", "## Term\nA stray paragraph.\n"),
        ),
        (
            "label removed",
            text.replace("**Start:** 2027-01-01", "2027-01-01"),
        ),
        (
            "heading edited",
            text.replace("## Milestones", "## Our milestones"),
        ),
        (
            "marker moved",
            text.replace(&field_block, "").replace(
                "<!-- accord:end -->",
                &format!("{field_block}<!-- accord:end -->"),
            ),
        ),
        (
            "after end",
            format!("{text}<!-- accord:field purpose -->\nx\n"),
        ),
        (
            "two-line date",
            text.replace("**Start:** 2027-01-01", "**Start:** 2027-01-01\n2027-02-02"),
        ),
    ];
    for (what, edited) in &cases {
        assert_markdown_error(&view, edited, &roster, what);
    }
}

#[test]
fn printable_markdown_reads_like_a_document() {
    let roster = roster();
    let a = filled(DocKind::Mou, &roster);
    let view = a.view(&roster);
    let md = render(
        &view,
        &roster,
        &RenderOptions {
            prompts: true,
            editable: false,
        },
    );
    assert!(
        md.starts_with(
            "# Our agreement\n\n*Memorandum of Understanding · Sharing Our Strengths*\n"
        ),
        "{md}"
    );
    assert!(
        !md.contains("<!-- accord:section") && !md.contains("How to edit"),
        "{md}"
    );
    let order: Vec<usize> = [
        "## Purpose and aims",
        "## Parties",
        "## Objectives",
        "## Milestones",
        "## Term",
    ]
    .iter()
    .map(|h| md.find(h).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{md}");
    assert!(
        md.contains(
            "- **Women's Centre**, decision-maker (lead partner)\n- **CVS Wandsworth**, consultee\n"
        ),
        "{md}"
    );
    assert!(md.contains("### 1. All partners sign this agreement\n\n**Owner:** CVS Wandsworth · **Due:** 2027-03-31 · **Status:** planned\n"), "{md}");
    assert!(
        md.contains(
            "### Women's Centre\n\n**Responsibilities:** Leads on funding. Chairs meetings.\n"
        ),
        "{md}"
    );
    assert!(
        md.contains("**Start:** 2027-01-01\n") && !md.contains("**End:**"),
        "{md}"
    );

    let empty = agreement(DocKind::Mou, &roster).view(&roster);
    let guided = render(
        &empty,
        &roster,
        &RenderOptions {
            prompts: true,
            editable: false,
        },
    );
    assert!(
        guided.contains("## Purpose and aims\n\n*Why are we working together?"),
        "{guided}"
    );
    let plain = render(
        &empty,
        &roster,
        &RenderOptions {
            prompts: false,
            editable: false,
        },
    );
    assert!(!plain.contains("Why are we working together?"), "{plain}");
}

#[test]
fn editable_markdown_explains_itself_and_marks_every_field() {
    let roster = roster();
    let view = filled(DocKind::Mou, &roster).view(&roster);
    let text = render(&view, &roster, &EDITABLE);
    assert!(text.starts_with("<!--\nHow to edit"), "{text}");
    for marker in [
        "<!-- accord:field title -->\n# Our agreement\n".to_owned(),
        "<!-- accord:field purpose -->\n".to_owned(),
        format!(
            "<!-- accord:field commitments.{}.money -->\n**Money:** £2,000 <b>in kind</b>\n",
            hex(2)
        ),
        "<!-- accord:new milestones -->\n".to_owned(),
        "<!-- accord:end -->\n".to_owned(),
    ] {
        assert!(text.contains(&marker), "{marker} missing from:\n{text}");
    }
    assert!(
        text.contains("\n\\<!-- accord:field purpose -->\n\\\\<!-- accord:end -->\n"),
        "{text}"
    );
}

#[test]
fn html_is_standalone_and_escapes_user_text() {
    let roster = roster();
    let mut a = filled(DocKind::Mou, &roster);
    a.set(
        "purpose",
        "Hello <script>alert('x')</script> & bye\n\nSecond paragraph",
        &roster,
    )
    .unwrap();
    let view = a.view(&roster);
    let html = render_html(
        &view,
        &roster,
        &RenderOptions {
            prompts: true,
            editable: false,
        },
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("Hello &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; bye</p>\n<p>Second paragraph</p>"), "{html}");
    assert!(html.contains("&lt;b&gt;in kind&lt;/b&gt;"), "{html}");
    assert!(
        html.starts_with("<!DOCTYPE html>")
            && html.contains("<style>")
            && html.contains("@media print")
    );
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<link"));
    assert!(
        html.contains("<h3>1. All partners sign this agreement</h3>"),
        "{html}"
    );
    assert!(html.contains("(lead partner)"), "{html}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_input_never_panics(input in any::<String>()) {
        let roster = roster();
        let view = agreement(DocKind::Dispute, &roster).view(&roster);
        let _ = parse_edit(&view, &input, &roster);
    }

    #[test]
    fn damaged_rendered_files_never_panic(cut in 0usize..10_000, insert in ".{0,40}", lines in 0usize..5) {
        let roster = roster();
        let view = agreement(DocKind::Mou, &roster).view(&roster);
        let text = render(&view, &roster, &EDITABLE);
        let mut at = cut % text.len();
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let damaged = format!("{}{insert}{}", &text[..at], "\n".repeat(lines) + &text[at..]);
        let _ = parse_edit(&view, &damaged, &roster);
        let _ = parse_edit(&view, &text[..at], &roster);
    }

    #[test]
    fn any_text_value_round_trips(
        pieces in prop::collection::vec(
            prop::sample::select(vec![
                "word", " ", "\n", "\n\n", "\t", "#", "## ", "### 1.", "**Due:**", "<!--", "-->", "\\",
                "<!-- accord:field purpose -->", "<!-- accord:end -->", " <!--accord:x", "é", "🎉",
            ]),
            0..24,
        ),
        field in 0usize..3,
    ) {
        let roster = roster();
        let mut a = agreement(DocKind::Values, &roster);
        let view = a.view(&roster);
        let first = item_ids(&view, "values")[0].clone();
        let path = ["statement".to_owned(), format!("values.{first}.name"), format!("values.{first}.description")][field].clone();
        let value: String = pieces.concat();
        let mut b = Agreement::from_doc(a.id(), a.doc_mut().fork()).unwrap();
        b.set(&path, &value, &roster).unwrap();
        let edited = render(&b.view(&roster), &roster, &EDITABLE);
        let edits = parse_edit(&view, &edited, &roster).unwrap();
        let trimmed = trim_blank_lines(&value);
        let original = match &view.section("values").unwrap().content {
            _ if field == 0 => String::new(),
            SectionContent::List(items) => items[0].fields[field - 1].value.clone(),
            _ => unreachable!(),
        };
        if key(trimmed) == key(&original) {
            prop_assert_eq!(edits, vec![]);
        } else {
            prop_assert_eq!(edits, vec![Edit::Set { path, value: trimmed.to_owned() }]);
        }
    }
}

fn trim_blank_lines(text: &str) -> &str {
    let lines: Vec<&str> = text.split('\n').collect();
    let first = lines.iter().position(|l| !l.trim().is_empty());
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    match (first, last) {
        (Some(f), Some(l)) => {
            let start: usize = lines[..f].iter().map(|l| l.len() + 1).sum();
            let end: usize = lines[..=l].iter().map(|l| l.len() + 1).sum::<usize>() - 1;
            &text[start..end]
        }
        _ => "",
    }
}

fn key(text: &str) -> Vec<&str> {
    text.split('\n').map(str::trim_end).collect()
}

#[test]
fn names_with_line_breaks_still_read_back_unchanged() {
    let lead = org(1);
    let (mut r, _) = Roster::create(
        "Two\nLines",
        &lead.public(),
        "Women's\nCentre",
        [5; 16],
        new_document_actor(&lead, [0; 8]),
        1,
    )
    .unwrap();
    r.add_member(&org(2).public(), "CVS", Role::Informed, 2)
        .unwrap();
    let roster = r.view();
    let mut a = agreement(DocKind::Mou, &roster);
    let view = a.view(&roster);
    let first = item_ids(&view, "milestones")[0].clone();
    a.set(&format!("milestones.{first}.owner"), &hex(1), &roster)
        .unwrap();
    let view = a.view(&roster);
    let text = render(&view, &roster, &EDITABLE);
    assert_eq!(parse_edit(&view, &text, &roster).unwrap(), vec![]);
}

#[test]
fn a_failed_apply_leaves_nothing_half_done() {
    let roster = roster();
    let mut a = agreement(DocKind::Mou, &roster);
    a.commit("start", 1);
    let before = a.view(&roster);
    let edits = [
        Edit::Set {
            path: "purpose".into(),
            value: "Changed".into(),
        },
        Edit::Remove {
            path: "milestones.nosuchid".into(),
        },
    ];
    assert!(apply_edits(&mut a, &edits, &roster).is_err());
    assert_eq!(a.view(&roster).sections, before.sections);
}
