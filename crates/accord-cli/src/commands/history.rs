use crate::output::Io;
use std::path::Path;

use accord_model::markdown::{self, RenderOptions};
use accord_model::{DocKind, HistoryEntry, RosterView};
use accord_workspace::Workspace;
use anyhow::{Result, bail};

use crate::cli::ExportFormat;
use crate::output;

#[derive(serde::Serialize)]
struct HistoryLine<'a> {
    #[serde(flatten)]
    entry: &'a HistoryEntry,
    org_name: Option<String>,
    summary: String,
}

pub fn history(
    io: &mut Io<'_>,
    ws: &Workspace,
    doc: &str,
    org: Option<&str>,
    since: Option<&str>,
    json: bool,
) -> Result<()> {
    let (doc, roster, entries) = ws.history(doc)?;
    let only = match org {
        Some(org) => Some(roster.resolve_member(org)?.key),
        None => None,
    };
    let since = match since {
        Some(date) => Some(start_of_day(date)?),
        None => None,
    };
    let lines: Vec<HistoryLine> = entries
        .iter()
        .filter(|e| only.is_none() || e.org == only)
        .filter(|e| since.is_none_or(|t| e.time >= t))
        .map(|entry| HistoryLine {
            entry,
            org_name: entry.org.map(|k| roster.display_name(&k)),
            summary: summary(doc.kind, entry),
        })
        .collect();
    if json {
        return output::json(io, &lines);
    }
    writeln!(
        io.out,
        "History of {:?} ({} changes, oldest first)",
        doc.title,
        lines.len()
    )?;
    for line in lines {
        let who = line
            .org_name
            .unwrap_or_else(|| "unknown organisation".to_owned());
        let mark = if line.entry.verified {
            ""
        } else {
            "  [UNVERIFIED: no valid signature of this organisation covers it]"
        };
        writeln!(
            io.out,
            "{}  {}  {}{mark}",
            output::time(line.entry.time),
            who,
            line.summary
        )?;
    }
    Ok(())
}

/// "Purpose and aims +12 -0 chars; Milestones: 1 item added".
fn summary(kind: DocKind, entry: &HistoryEntry) -> String {
    let parts: Vec<String> = entry
        .fields
        .iter()
        .map(|f| {
            let label = kind
                .section(&f.field)
                .map(|s| s.label)
                .unwrap_or(f.field.as_str());
            format!("{label}: {}", f.describe())
        })
        .collect();
    if parts.is_empty() {
        entry
            .message
            .clone()
            .unwrap_or_else(|| "(no visible change)".to_owned())
    } else {
        parts.join("; ")
    }
}

pub fn export(
    io: &mut Io<'_>,
    ws: &Workspace,
    doc: &str,
    format: ExportFormat,
    output_file: Option<&Path>,
) -> Result<()> {
    let bytes = match format {
        ExportFormat::Automerge => ws.export_automerge(doc)?,
        ExportFormat::Md | ExportFormat::Html => render(ws, doc, format)?.into_bytes(),
    };
    match output_file {
        Some(path) => {
            std::fs::write(path, &bytes)?;
            writeln!(io.err, "Wrote {} bytes to {}", bytes.len(), path.display())?;
            Ok(())
        }
        None if format == ExportFormat::Automerge => {
            bail!("the automerge format is binary: pass --output FILE")
        }
        None => output::text(io, &String::from_utf8_lossy(&bytes)),
    }
}

fn render(ws: &Workspace, doc: &str, format: ExportFormat) -> Result<String> {
    let (view, roster): (_, RosterView) = ws.view(doc)?;
    let options = RenderOptions {
        prompts: false,
        editable: false,
    };
    let status = ws.status(doc)?;
    Ok(match format {
        ExportFormat::Html => {
            let mut html = markdown::render_html(&view, &roster, &options);
            let extra = signoff_html(&status) + &comments_html(&ws.comments(doc)?);
            match html.rfind("</body>") {
                Some(at) => html.insert_str(at, &extra),
                None => html.push_str(&extra),
            }
            html
        }
        _ => {
            let mut md = markdown::render(&view, &roster, &options);
            md.push_str(&signoff_markdown(&status));
            md.push_str(&crate::commands::trust::comments_markdown(
                &ws.comments(doc)?,
            ));
            md.push_str(&ws.export_record(doc)?);
            md
        }
    })
}

/// The human-readable sign-off block of an export.
fn signoff_markdown(status: &[accord_workspace::MemberStatus]) -> String {
    let mut out = format!("\n{}\n\n", accord_workspace::SIGNOFF_HEADING);
    let signed: Vec<_> = status
        .iter()
        .filter_map(|m| m.signoff.as_ref().map(|s| (m, s)))
        .collect();
    if signed.is_empty() {
        out.push_str("No organisation has signed this agreement yet.\n\n");
    }
    for (m, s) in signed {
        let which = match m.state {
            accord_workspace::SignOffState::Current => "this version",
            _ => "an earlier version",
        };
        out.push_str(&format!(
            "- **{}** (fingerprint {}) signed {which} on {}: \"{}\"\n",
            m.name,
            m.key.fingerprint(),
            output::time(s.at),
            s.statement
        ));
    }
    out.push('\n');
    out
}

fn signoff_html(status: &[accord_workspace::MemberStatus]) -> String {
    let escape = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut out = String::from("<section class=\"signoff\"><h2>Sign-off</h2><ul>");
    for m in status {
        let line = match (&m.state, &m.signoff) {
            (accord_workspace::SignOffState::Current, Some(s)) => {
                format!(
                    "signed this version on {}: \"{}\"",
                    output::time(s.at),
                    escape(&s.statement)
                )
            }
            (_, Some(s)) => format!("signed an earlier version on {}", output::time(s.at)),
            _ => "has not signed".to_owned(),
        };
        out.push_str(&format!(
            "<li><strong>{}</strong> ({}) {line}</li>",
            escape(&m.name),
            m.key.fingerprint()
        ));
    }
    out.push_str("</ul></section>\n");
    out
}

/// Unix seconds at the start of `date` (YYYY-MM-DD), UTC.
fn start_of_day(date: &str) -> Result<i64> {
    accord_workspace::day_start(date)
        .ok_or_else(|| anyhow::anyhow!("{date:?} is not a date: use YYYY-MM-DD"))
}

fn comments_html(comments: &[accord_workspace::CommentView]) -> String {
    if comments.is_empty() {
        return String::new();
    }
    let escape = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut out = String::from("<section class=\"comments\"><h2>Comments</h2><ul>");
    for c in comments {
        let state = c
            .resolved_by
            .as_ref()
            .map(|by| format!(" (resolved by {})", escape(by)))
            .unwrap_or_default();
        out.push_str(&format!(
            "<li><strong>{}</strong> on <code>{}</code>{state}: {}</li>",
            escape(&c.author_name),
            escape(&c.comment.field),
            escape(&c.comment.text)
        ));
    }
    out.push_str("</ul></section>\n");
    out
}
