//! Markdown for people: the printable form and the editable form.

use super::layout::{
    Block, Marker, TITLE_HEAD, about_line, is_empty, item_head, label_head, layout, one_line,
    party_line, prompt_line, shown_value, trim_blank_lines, value_text,
};
use crate::RosterView;
use crate::schema::ValueType;
use crate::view::{AgreementView, EntryView, FieldView, ItemView, SectionContent, SectionView};

/// Shown at the top of the editable file. It sits in an HTML comment, so
/// it must never contain the comment's closing sequence.
const INSTRUCTIONS: &str = "<!--
How to edit this agreement (these notes are not saved):

- A field's value is everything from its accord:field marker line down to
  the next marker line. Blank lines around a value are ignored; inside it,
  your paragraphs, Markdown and spacing are kept exactly.
- Keep the label a field starts with (such as **Due:**, # or ### 2.) and
  write the value after it and on the lines below.
- Do not change, move or delete marker lines (the comments that start with
  accord:) except to remove or add items as described here.
- To remove an item, delete its whole block: from its accord:item marker
  down to the next accord:item, accord:new or accord:section marker.
- To add an item, fill in the fields under the list's accord:new marker.
  To add several, copy that block, marker included, once per item.
- Dates look like 2027-03-31 and organisations are written by member name.
  An empty value clears a field.
- A text line that would look like a marker gets a backslash in front;
  Accord removes it again when reading the file.
-->
";

/// The file `accord doc edit` opens: every value under its own marker.
pub(super) fn editable(view: &AgreementView, roster: &RosterView, prompts: bool) -> String {
    let mut out = String::from(INSTRUCTIONS);
    let mut after_item = false;
    for block in layout(view, roster) {
        // An item marker has nothing under it: keep its first field close.
        if !after_item {
            out.push('\n');
        }
        after_item = matches!(block.marker, Marker::Item { .. });
        out.push_str(&block.marker.line());
        out.push('\n');
        match &block.slot {
            Some(slot) => {
                out.push_str(&value_text(
                    slot.head.as_deref(),
                    &shown_value(&slot.field, roster),
                    true,
                ));
            }
            None => out.push_str(&structure_text(&block, prompts)),
        }
    }
    out
}

/// A heading, then any further fixed lines after a blank line.
fn structure_text(block: &Block, prompts: bool) -> String {
    let mut out = String::new();
    let guidance = block.guidance.iter().filter(|_| prompts);
    for (i, line) in block.lines.iter().chain(guidance).enumerate() {
        if i == 1 {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The printable document: no markers, empty fields left out.
pub(super) fn printable(view: &AgreementView, roster: &RosterView, prompts: bool) -> String {
    let mut paragraphs = vec![value_text(
        Some(TITLE_HEAD),
        trim_blank_lines(&view.title),
        false,
    )];
    paragraphs.push(format!("{}\n", about_line(view.kind, roster)));
    for section in &view.sections {
        paragraphs.push(format!("## {}\n", section.label));
        if is_empty(section) {
            paragraphs.extend(prompts.then(|| format!("{}\n", prompt_line(section.prompt))));
        } else {
            paragraphs.extend(section_paragraphs(section, roster));
        }
    }
    paragraphs.join("\n")
}

fn section_paragraphs(section: &SectionView, roster: &RosterView) -> Vec<String> {
    match &section.content {
        SectionContent::Text(text) => vec![value_text(None, trim_blank_lines(text), false)],
        SectionContent::Group(fields) => fields_paragraphs(fields, roster),
        SectionContent::List(items) => items
            .iter()
            .enumerate()
            .flat_map(|(i, item)| item_paragraphs(i + 1, item, roster))
            .collect(),
        SectionContent::PerOrg(entries) => entries
            .iter()
            .flat_map(|e| entry_paragraphs(e, roster))
            .collect(),
        SectionContent::Parties(members) => {
            vec![
                members
                    .iter()
                    .map(|m| format!("{}\n", party_line(m)))
                    .collect(),
            ]
        }
    }
}

/// `### 1. Title`, then text fields as labelled paragraphs and the short
/// values (owner, dates, status) together on one line.
fn item_paragraphs(position: usize, item: &ItemView, roster: &RosterView) -> Vec<String> {
    let Some((first, rest)) = item.fields.split_first() else {
        return Vec::new();
    };
    let mut out = vec![value_text(
        Some(&item_head(position)),
        trim_blank_lines(&first.value),
        false,
    )];
    let (texts, scalars): (Vec<&FieldView>, Vec<&FieldView>) =
        rest.iter().partition(|f| f.ty == ValueType::Text);
    out.extend(texts.into_iter().filter_map(|f| labelled(f, roster)));
    let line: Vec<String> = scalars
        .into_iter()
        .filter_map(|f| labelled(f, roster))
        .map(|s| s.trim_end().to_owned())
        .collect();
    if !line.is_empty() {
        out.push(format!("{}\n", line.join(" · ")));
    }
    out
}

fn entry_paragraphs(entry: &EntryView, roster: &RosterView) -> Vec<String> {
    let fields = fields_paragraphs(&entry.fields, roster);
    if fields.is_empty() {
        return fields;
    }
    let mut out = vec![format!("### {}\n", one_line(&entry.name))];
    out.extend(fields);
    out
}

fn fields_paragraphs(fields: &[FieldView], roster: &RosterView) -> Vec<String> {
    fields.iter().filter_map(|f| labelled(f, roster)).collect()
}

/// `**Label:** value`, or nothing for an empty field.
fn labelled(field: &FieldView, roster: &RosterView) -> Option<String> {
    let shown = shown_value(field, roster);
    let value = trim_blank_lines(&shown);
    (!value.is_empty()).then(|| value_text(Some(&label_head(field.label)), value, false))
}
