//! A standalone, printable HTML page with the same structure as the
//! printable Markdown. User text is escaped and shown as plain paragraphs
//! (not interpreted as Markdown), so nothing a partner types can inject
//! markup or fetch anything.

use std::fmt::Write as _;

use super::layout::{is_empty, shown_value, trim_blank_lines};
use crate::schema::ValueType;
use crate::view::{AgreementView, FieldView, ItemView, SectionContent, SectionView};
use crate::{Member, RosterView};

const STYLE: &str = "
body { font-family: Georgia, 'Times New Roman', serif; line-height: 1.5; color: #111; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.8rem; margin-bottom: 0.2rem; }
.kind { font-style: italic; color: #444; margin-top: 0; }
h2 { font-size: 1.3rem; border-bottom: 1px solid #999; padding-bottom: 0.2rem; margin-top: 2rem; }
h3 { font-size: 1.1rem; margin: 1.2rem 0 0.3rem; }
dt { font-weight: bold; }
dd { margin: 0 0 0.6rem 0; }
dd p:first-child { margin-top: 0; }
.prompt { font-style: italic; color: #555; }
footer { margin-top: 3rem; padding-top: 0.5rem; border-top: 1px solid #ccc; font-size: 0.8rem; color: #555; }
@page { margin: 2cm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 11pt; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  li, dd, .meta { break-inside: avoid; page-break-inside: avoid; }
}
";

pub(super) fn page(view: &AgreementView, roster: &RosterView, prompts: bool) -> String {
    let title = escape(trim_blank_lines(&view.title));
    let mut body = format!(
        "<h1>{title}</h1>\n<p class=\"kind\">{} · {}</p>\n",
        escape(view.kind.label()),
        escape(&roster.name)
    );
    for section in &view.sections {
        body.push_str(&section_html(section, roster, prompts));
    }
    let version: Vec<&str> = view
        .heads
        .iter()
        .map(|h| h.get(..12).unwrap_or(h))
        .collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n<footer>Agreement {} · version {}</footer>\n</body>\n</html>\n",
        view.id,
        escape(&version.join(", ")),
    )
}

fn section_html(section: &SectionView, roster: &RosterView, prompts: bool) -> String {
    let mut out = format!("<section>\n<h2>{}</h2>\n", escape(section.label));
    if is_empty(section) {
        if prompts {
            let _ = writeln!(out, "<p class=\"prompt\">{}</p>", escape(section.prompt));
        }
    } else {
        out.push_str(&content_html(&section.content, roster));
    }
    out.push_str("</section>\n");
    out
}

fn content_html(content: &SectionContent, roster: &RosterView) -> String {
    match content {
        SectionContent::Text(text) => text_html(text),
        SectionContent::Group(fields) => fields_html(fields, roster),
        SectionContent::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| item_html(i + 1, item, roster))
            .collect(),
        SectionContent::PerOrg(entries) => entries
            .iter()
            .filter(|e| e.fields.iter().any(|f| !f.value.trim().is_empty()))
            .map(|e| {
                format!(
                    "<h3>{}</h3>\n{}",
                    escape(&e.name),
                    fields_html(&e.fields, roster)
                )
            })
            .collect(),
        SectionContent::Parties(members) => {
            let items: String = members.iter().map(party_html).collect();
            format!("<ul>\n{items}</ul>\n")
        }
    }
}

fn party_html(member: &Member) -> String {
    let lead = if member.lead { " (lead partner)" } else { "" };
    format!(
        "<li><strong>{}</strong>, {}{lead}</li>\n",
        escape(&member.name),
        member.role
    )
}

/// `<h3>1. Title</h3>`, then text fields as a definition list and the
/// short values on one line, as in the Markdown.
fn item_html(position: usize, item: &ItemView, roster: &RosterView) -> String {
    let Some((first, rest)) = item.fields.split_first() else {
        return String::new();
    };
    let value = trim_blank_lines(&first.value);
    let (heading, more) = value.split_once('\n').unwrap_or((value, ""));
    let mut out = format!(
        "<h3>{position}. {}</h3>\n{}",
        escape(heading),
        text_html(more)
    );
    let (texts, scalars): (Vec<FieldView>, Vec<FieldView>) =
        rest.iter().cloned().partition(|f| f.ty == ValueType::Text);
    out.push_str(&fields_html(&texts, roster));
    let line: Vec<String> = scalars
        .iter()
        .filter(|f| !f.value.trim().is_empty())
        .map(|f| {
            format!(
                "<strong>{}:</strong> {}",
                escape(f.label),
                escape(&shown_value(f, roster))
            )
        })
        .collect();
    if !line.is_empty() {
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", line.join(" · "));
    }
    out
}

fn fields_html(fields: &[FieldView], roster: &RosterView) -> String {
    let rows: String = fields
        .iter()
        .filter(|f| !f.value.trim().is_empty())
        .map(|f| {
            format!(
                "<dt>{}</dt>\n<dd>{}</dd>\n",
                escape(f.label),
                text_html(&shown_value(f, roster))
            )
        })
        .collect();
    if rows.is_empty() {
        rows
    } else {
        format!("<dl>\n{rows}</dl>\n")
    }
}

/// Paragraphs at blank lines, line breaks kept.
fn text_html(text: &str) -> String {
    let mut out = String::new();
    let mut paragraph: Vec<&str> = Vec::new();
    for line in trim_blank_lines(text).split('\n').chain([""]) {
        if line.trim().is_empty() {
            if !paragraph.is_empty() {
                let lines: Vec<String> = paragraph.iter().map(|l| escape(l)).collect();
                let _ = writeln!(out, "<p>{}</p>", lines.join("<br>\n"));
                paragraph.clear();
            }
        } else {
            paragraph.push(line);
        }
    }
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
