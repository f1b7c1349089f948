use crate::output::Io;
use std::path::Path;

use accord_model::{DocKind, HistoryEntry};
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
    Ok(match format {
        ExportFormat::Html => ws.export_html(doc)?,
        _ => ws.export_markdown(doc)?,
    })
}

/// Unix seconds at the start of `date` (YYYY-MM-DD), UTC.
fn start_of_day(date: &str) -> Result<i64> {
    accord_workspace::day_start(date)
        .ok_or_else(|| anyhow::anyhow!("{date:?} is not a date: use YYYY-MM-DD"))
}
