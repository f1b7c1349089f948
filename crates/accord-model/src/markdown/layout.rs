//! What the renderer and the parser must agree on: the marker grammar, how
//! a value is laid out under its marker, and the order of blocks.
//!
//! Both sides build the same [`Block`] sequence from the view with
//! [`layout`], so a field can never be rendered one way and read another.

use accord_identity::OrgKey;

use crate::schema::{DocKind, ValueType};
use crate::view::{AgreementView, FieldView, SectionContent, SectionView};
use crate::{Member, RosterView};

/// One marker line: `<!-- accord:VERB ARGS -->`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Marker {
    /// Names the agreement the file edits; its block holds the kind line.
    About {
        kind: String,
        id: String,
    },
    Section(String),
    Item {
        list: String,
        id: String,
    },
    Org {
        section: String,
        org: String,
    },
    /// A template for a new list item; may be copied any number of times.
    New(String),
    Field(String),
    /// The last marker, so a file cut short is noticed.
    End,
}

impl Marker {
    pub(super) fn line(&self) -> String {
        let body = match self {
            Marker::About { kind, id } => format!("about {kind} {id}"),
            Marker::Section(key) => format!("section {key}"),
            Marker::Item { list, id } => format!("item {list} {id}"),
            Marker::Org { section, org } => format!("org {section} {org}"),
            Marker::New(list) => format!("new {list}"),
            Marker::Field(path) => format!("field {path}"),
            Marker::End => "end".to_owned(),
        };
        format!("<!-- accord:{body} -->")
    }

    /// The block a structural marker opens, which fields must sit in.
    pub(super) fn context(&self) -> Option<Owner> {
        match self {
            Marker::About { .. } => Some(Owner::About),
            Marker::Section(key) => Some(Owner::Section(key.clone())),
            Marker::Item { list, id } => Some(Owner::Item(list.clone(), id.clone())),
            Marker::Org { section, org } => Some(Owner::Org(section.clone(), org.clone())),
            Marker::New(list) => Some(Owner::New(list.clone())),
            Marker::End => Some(Owner::End),
            Marker::Field(_) => None,
        }
    }
}

/// Which structural block a field belongs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    /// Before any structural marker: only the title lives here.
    Top,
    About,
    Section(String),
    Item(String, String),
    Org(String, String),
    New(String),
    End,
}

/// Whether a line is a marker (well-formed or not). The parser treats every
/// such line as structure, and the renderer escapes value lines that match,
/// so this one predicate keeps the two in step.
pub(super) fn is_marker_like(line: &str) -> bool {
    line.trim()
        .strip_prefix("<!--")
        .is_some_and(|rest| rest.trim_start().starts_with("accord:"))
}

/// Reads a marker line; the error says what is wrong with it.
pub(super) fn parse_marker(line: &str) -> Result<Marker, String> {
    let text = line.trim();
    let inner = text
        .strip_prefix("<!--")
        .and_then(|rest| rest.strip_suffix("-->"))
        .and_then(|rest| rest.trim().strip_prefix("accord:"))
        .ok_or_else(|| format!("the marker {text:?} is damaged: a marker is a whole line like <!-- accord:field purpose -->"))?;
    let words: Vec<&str> = inner.split_whitespace().collect();
    let own = |s: &&str| (*s).to_owned();
    match words.as_slice() {
        ["about", kind, id] => Ok(Marker::About {
            kind: own(kind),
            id: own(id),
        }),
        ["section", key] => Ok(Marker::Section(own(key))),
        ["item", list, id] => Ok(Marker::Item {
            list: own(list),
            id: own(id),
        }),
        ["org", section, org] => Ok(Marker::Org {
            section: own(section),
            org: own(org),
        }),
        ["new", list] => Ok(Marker::New(own(list))),
        ["field", path] => Ok(Marker::Field(own(path))),
        ["end"] => Ok(Marker::End),
        _ => Err(format!(
            "{text:?} is not a marker Accord knows; restore the marker line as it was"
        )),
    }
}

/// Makes a value line that would read as a marker into text by adding a
/// backslash (which Markdown also shows as nothing). Lines already escaped
/// get one more, so [`unescape_line`] is its exact inverse.
pub(super) fn escape_line(line: &str) -> String {
    let body = line.trim_start();
    if is_marker_like(body.trim_start_matches('\\')) {
        let indent = &line[..line.len() - body.len()];
        format!("{indent}\\{body}")
    } else {
        line.to_owned()
    }
}

pub(super) fn unescape_line(line: &str) -> String {
    let body = line.trim_start();
    match body.strip_prefix('\\') {
        Some(rest) if is_marker_like(body.trim_start_matches('\\')) => {
            format!("{}{rest}", &line[..line.len() - body.len()])
        }
        _ => line.to_owned(),
    }
}

/// Drops whitespace-only lines around a value, keeping everything between
/// byte for byte: the layout puts blank lines around values, and editors
/// add or remove them freely.
pub(super) fn trim_blank_lines(text: &str) -> &str {
    let (mut start, mut end, mut pos) = (None, 0, 0);
    for piece in text.split_inclusive('\n') {
        let line = piece.strip_suffix('\n').unwrap_or(piece);
        if !line.trim().is_empty() {
            start.get_or_insert(pos);
            end = pos + line.len();
        }
        pos += piece.len();
    }
    start.map_or("", |s| &text[s..end])
}

/// Whether two texts are the same once blank lines around them, trailing
/// spaces on lines and Windows line endings are ignored, since editors
/// change those without the person meaning to.
pub(super) fn same_text(a: &str, b: &str) -> bool {
    fn key(s: &str) -> Vec<String> {
        let unix = s.replace("\r\n", "\n");
        trim_blank_lines(&unix)
            .split('\n')
            .map(|l| l.trim_end().to_owned())
            .collect()
    }
    key(a) == key(b)
}

/// Lays a value out under its head (if any): the first line follows the
/// head on the same line, the rest follow below, so single-line values read
/// as `**Due:** 2027-03-31` and paragraphs keep their shape.
pub(super) fn value_text(head: Option<&str>, value: &str, escape: bool) -> String {
    let mut lines = value.split('\n');
    let mut out = String::new();
    if let Some(head) = head {
        let first = lines.next().unwrap_or_default();
        out.push_str(head);
        if !first.is_empty() {
            out.push(' ');
            out.push_str(first);
        }
        out.push('\n');
    }
    for line in lines {
        out.push_str(&if escape {
            escape_line(line)
        } else {
            line.to_owned()
        });
        out.push('\n');
    }
    out
}

pub(super) const TITLE_HEAD: &str = "#";

pub(super) fn label_head(label: &str) -> String {
    format!("**{label}:**")
}

pub(super) fn item_head(position: usize) -> String {
    format!("### {position}.")
}

pub(super) fn about_line(kind: DocKind, roster: &RosterView) -> String {
    format!("*{} · {}*", kind.label(), one_line(&roster.name))
}

/// Names shown in headings and on one line. Names come from the roster,
/// where nothing stops a line break that would split a fixed line in two.
pub(super) fn one_line(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(super) fn prompt_line(prompt: &str) -> String {
    format!("*{prompt}*")
}

pub(super) fn party_line(member: &Member) -> String {
    let lead = if member.lead { " (lead partner)" } else { "" };
    format!("- **{}**, {}{lead}", one_line(&member.name), member.role)
}

/// What a person sees for a stored value: organisations by member name.
pub(super) fn shown_value(field: &FieldView, roster: &RosterView) -> String {
    match field.ty {
        ValueType::Org if !field.value.is_empty() => field.value.parse::<OrgKey>().map_or_else(
            |_| field.value.clone(),
            |key| one_line(&roster.display_name(&key)),
        ),
        _ => field.value.clone(),
    }
}

/// Whether a section has nothing filled in yet (so its prompt helps).
pub(super) fn is_empty(section: &SectionView) -> bool {
    let blank = |fields: &[FieldView]| fields.iter().all(|f| f.value.trim().is_empty());
    match &section.content {
        SectionContent::Text(text) => text.trim().is_empty(),
        SectionContent::Group(fields) => blank(fields),
        SectionContent::List(items) => items.is_empty(),
        SectionContent::PerOrg(entries) => entries.iter().all(|e| blank(&e.fields)),
        SectionContent::Parties(members) => members.is_empty(),
    }
}

/// One field of the editable file.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub path: String,
    pub owner: Owner,
    pub head: Option<String>,
    pub field: FieldView,
}

/// One marker and what follows it in the editable file.
#[derive(Clone, Debug)]
pub(super) struct Block {
    pub marker: Marker,
    /// Fixed lines under a structural marker; never part of a value.
    pub lines: Vec<String>,
    /// The section's prompt, shown as guidance when the section is empty.
    pub guidance: Option<String>,
    pub slot: Option<Slot>,
}

impl Block {
    fn structure(marker: Marker, lines: Vec<String>) -> Self {
        Self {
            marker,
            lines,
            guidance: None,
            slot: None,
        }
    }

    fn field(path: String, owner: Owner, head: Option<String>, field: FieldView) -> Self {
        let slot = Slot {
            path: path.clone(),
            owner,
            head,
            field,
        };
        Self {
            marker: Marker::Field(path),
            lines: Vec::new(),
            guidance: None,
            slot: Some(slot),
        }
    }
}

/// The editable file's blocks in order, for the renderer to print and the
/// parser to check against.
pub(super) fn layout(view: &AgreementView, roster: &RosterView) -> Vec<Block> {
    let title = FieldView {
        key: "title",
        label: "Title",
        ty: ValueType::Text,
        value: view.title.clone(),
    };
    let mut blocks = vec![
        Block::field("title".into(), Owner::Top, Some(TITLE_HEAD.into()), title),
        Block::structure(
            Marker::About {
                kind: view.kind.as_str().into(),
                id: view.id.to_string(),
            },
            vec![about_line(view.kind, roster)],
        ),
    ];
    for section in &view.sections {
        section_blocks(view.kind, section, &mut blocks);
    }
    blocks.push(Block::structure(Marker::End, Vec::new()));
    blocks
}

fn section_blocks(kind: DocKind, section: &SectionView, blocks: &mut Vec<Block>) {
    let key = section.key.to_owned();
    let mut lines = vec![format!("## {}", section.label)];
    if let SectionContent::Parties(members) = &section.content {
        lines.extend(members.iter().map(party_line));
    }
    let mut head = Block::structure(Marker::Section(key.clone()), lines);
    head.guidance = is_empty(section).then(|| prompt_line(section.prompt));
    blocks.push(head);
    let owner = Owner::Section(key.clone());
    match &section.content {
        SectionContent::Text(text) => {
            let field = FieldView {
                key: section.key,
                label: section.label,
                ty: ValueType::Text,
                value: text.clone(),
            };
            blocks.push(Block::field(key, owner, None, field));
        }
        SectionContent::Group(fields) => {
            labelled_fields(&key, &owner, fields, blocks);
        }
        SectionContent::List(items) => {
            for (i, item) in items.iter().enumerate() {
                let owner = Owner::Item(key.clone(), item.id.clone());
                blocks.push(Block::structure(
                    Marker::Item {
                        list: key.clone(),
                        id: item.id.clone(),
                    },
                    Vec::new(),
                ));
                let prefix = format!("{key}.{}", item.id);
                for (n, field) in item.fields.iter().enumerate() {
                    let head = if n == 0 {
                        item_head(i + 1)
                    } else {
                        label_head(field.label)
                    };
                    let path = format!("{prefix}.{}", field.key);
                    blocks.push(Block::field(path, owner.clone(), Some(head), field.clone()));
                }
            }
            new_item_blocks(kind, section, blocks);
        }
        SectionContent::PerOrg(entries) => {
            for entry in entries {
                let org = entry.org.to_hex();
                let marker = Marker::Org {
                    section: key.clone(),
                    org: org.clone(),
                };
                blocks.push(Block::structure(
                    marker,
                    vec![format!("### {}", one_line(&entry.name))],
                ));
                let owner = Owner::Org(key.clone(), org.clone());
                labelled_fields(&format!("{key}.{org}"), &owner, &entry.fields, blocks);
            }
        }
        SectionContent::Parties(_) => {}
    }
}

fn labelled_fields(prefix: &str, owner: &Owner, fields: &[FieldView], blocks: &mut Vec<Block>) {
    for field in fields {
        let path = format!("{prefix}.{}", field.key);
        blocks.push(Block::field(
            path,
            owner.clone(),
            Some(label_head(field.label)),
            field.clone(),
        ));
    }
}

/// The template block for adding an item: its fields are empty, and their
/// paths use `new` in place of an item id.
fn new_item_blocks(kind: DocKind, section: &SectionView, blocks: &mut Vec<Block>) {
    let Some(schema) = kind.section(section.key).map(|s| s.fields()) else {
        return;
    };
    let noun = schema.first().map_or("item", |f| f.label).to_lowercase();
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    let lines = vec![
        format!("### New {noun}"),
        format!(
            "*To add {article} {noun}, fill in the fields below. To add several, copy this block from its marker down.*"
        ),
    ];
    blocks.push(Block::structure(Marker::New(section.key.to_owned()), lines));
    let owner = Owner::New(section.key.to_owned());
    let empty: Vec<FieldView> = schema
        .iter()
        .map(|f| FieldView {
            key: f.key,
            label: f.label,
            ty: f.ty,
            value: String::new(),
        })
        .collect();
    labelled_fields(&format!("{}.new", section.key), &owner, &empty, blocks);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_reversible_and_hides_markers() {
        for line in [
            "<!-- accord:end -->",
            "  \\<!-- accord:x",
            "\\\\ <!--accord:y -->",
            "plain",
            "\\ text",
            "",
        ] {
            let escaped = escape_line(line);
            assert!(!is_marker_like(&escaped), "{escaped}");
            assert_eq!(unescape_line(&escaped), line);
        }
    }

    #[test]
    fn blank_lines_around_values_are_dropped() {
        assert_eq!(
            trim_blank_lines("\n  \nHello\n\n world \n\t\n"),
            "Hello\n\n world "
        );
        assert_eq!(trim_blank_lines(" \n "), "");
        assert!(same_text("a  \r\nb\n", "\na\nb"));
        assert!(!same_text("a b", "a  b"));
    }

    #[test]
    fn markers_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_marker("<!-- accord:field term.start -->"),
            Ok(Marker::Field("term.start".into()))
        );
        assert_eq!(parse_marker(&Marker::End.line()), Ok(Marker::End));
        assert!(parse_marker("<!-- accord:field a b -->").is_err());
        assert!(parse_marker("<!-- accord:field purpose").is_err());
        assert!(parse_marker("<!-- accord:bogus -->").is_err());
    }
}
