//! Comments, sign-off, status and member removal.

use std::path::Path;

use accord_workspace::{Piece, SignOffState, Workspace};
use anyhow::Result;

use crate::output::{self, Io};

pub fn remove_member(
    io: &mut Io<'_>,
    ws: &Workspace,
    partnership: &str,
    member: &str,
    json: bool,
) -> Result<()> {
    let name = ws
        .partnership(partnership)?
        .resolve_member(member)?
        .name
        .clone();
    let roster = ws.remove_member(partnership, member)?;
    if json {
        return output::json(io, &roster);
    }
    writeln!(
        io.out,
        "{name} is no longer a member of {}. Its past changes stay in the history; \
         partners will refuse its later changes once they have this roster.",
        roster.name
    )?;
    Ok(())
}

pub fn comment(
    io: &mut Io<'_>,
    ws: &Workspace,
    doc: &str,
    field: &str,
    text: &str,
    quote: Option<&str>,
    json: bool,
) -> Result<()> {
    let comment = ws.comment(doc, field, text, quote)?;
    if json {
        return output::json(io, &comment);
    }
    writeln!(
        io.out,
        "Comment {} added on {field}. Partners see it after the next sync.",
        comment.id
    )?;
    Ok(())
}

pub fn comments(
    io: &mut Io<'_>,
    ws: &Workspace,
    doc: &str,
    resolve: Option<&str>,
    json: bool,
) -> Result<()> {
    if let Some(id) = resolve {
        ws.resolve_comment(doc, id)?;
        if !json {
            writeln!(io.out, "Comment {id} resolved.")?;
            return Ok(());
        }
    }
    let comments = ws.comments(doc)?;
    if json {
        return output::json(io, &comments);
    }
    if comments.is_empty() {
        writeln!(io.out, "No comments yet.")?;
    }
    for c in comments {
        let state = match &c.resolved_by {
            Some(by) => format!("resolved by {by}"),
            None => "open".to_owned(),
        };
        writeln!(
            io.out,
            "[{}] {}  {} on {} ({state})",
            c.comment.id,
            output::time(c.comment.created),
            c.author_name,
            c.comment.field
        )?;
        if let Some(quote) = &c.comment.quote {
            writeln!(io.out, "    > {quote}")?;
        }
        writeln!(io.out, "    {}", c.comment.text)?;
    }
    Ok(())
}

pub fn sign(io: &mut Io<'_>, ws: &Workspace, doc: &str, statement: &str, json: bool) -> Result<()> {
    let signoff = ws.sign(doc, statement)?;
    if json {
        return output::json(io, &signoff);
    }
    writeln!(
        io.out,
        "Signed version {} for {} ({}): {:?}",
        short(&signoff.heads_text()),
        ws.whoami().name,
        signoff.org.fingerprint(),
        signoff.statement
    )?;
    Ok(())
}

pub fn status(io: &mut Io<'_>, ws: &Workspace, doc: &str, json: bool) -> Result<()> {
    let members = ws.status(doc)?;
    if json {
        return output::json(io, &members);
    }
    let deciders = members
        .iter()
        .filter(|m| m.role == accord_model::Role::DecisionMaker);
    let all_current = deciders.clone().all(|m| m.state == SignOffState::Current);
    for m in &members {
        let line = match (&m.state, &m.signoff) {
            (SignOffState::Current, Some(s)) => {
                format!("signed the current version {}", output::time(s.at))
            }
            (SignOffState::Earlier, Some(s)) => format!(
                "signed an earlier version {} (the text changed since: see `accord history`)",
                output::time(s.at)
            ),
            _ if m.role == accord_model::Role::DecisionMaker => "has not signed".to_owned(),
            _ => format!("{} (does not sign)", m.role),
        };
        writeln!(io.out, "{:<30} {line}", m.name)?;
    }
    if all_current {
        writeln!(
            io.out,
            "Every decision maker has signed this exact version."
        )?;
    } else {
        writeln!(
            io.out,
            "Not every decision maker has signed this version yet."
        )?;
    }
    Ok(())
}

fn short(heads: &str) -> String {
    heads
        .split(',')
        .map(|h| h.chars().take(12).collect::<String>())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn blame(io: &mut Io<'_>, ws: &Workspace, doc: &str, field: &str, json: bool) -> Result<()> {
    let spans = ws.blame(doc, field)?;
    if json {
        return output::json(io, &spans);
    }
    if spans.is_empty() {
        writeln!(io.out, "{field} is empty.")?;
    }
    for s in spans {
        writeln!(io.out, "[{}] {}", s.org_name, s.span.text)?;
    }
    Ok(())
}

pub fn diff(
    io: &mut Io<'_>,
    ws: &Workspace,
    doc: &str,
    from: Option<&str>,
    to: Option<&str>,
    json: bool,
) -> Result<()> {
    let diff = ws.diff(doc, from, to)?;
    if json {
        return output::json(io, &diff);
    }
    if diff.sections.is_empty() {
        writeln!(
            io.out,
            "No differences between {} and {}.",
            diff.from, diff.to
        )?;
        return Ok(());
    }
    writeln!(
        io.out,
        "Changes from {} to {} ([-removed-] {{+added+}}):",
        diff.from, diff.to
    )?;
    for section in diff.sections {
        writeln!(io.out)?;
        writeln!(io.out, "## {}", section.section)?;
        let mut line = String::new();
        for piece in section.pieces {
            match piece {
                Piece::Same(t) => line.push_str(&t),
                Piece::Added(t) => line.push_str(&format!("{{+{t}+}}")),
                Piece::Removed(t) => line.push_str(&format!("[-{t}-]")),
            }
        }
        writeln!(io.out, "{}", line.trim_end())?;
    }
    Ok(())
}

pub fn audit(io: &mut Io<'_>, ws: &Workspace, partnership: &str, json: bool) -> Result<()> {
    let rows = ws.audit(partnership)?;
    if json {
        return output::json(io, &rows);
    }
    for r in rows {
        let role = r.role.map_or("former member".to_owned(), |r| r.to_string());
        writeln!(io.out, "{} ({}, {})", r.name, r.key.fingerprint(), role)?;
        let last = r.last_activity.map_or("never".to_owned(), output::time);
        writeln!(
            io.out,
            "    {} changes ({} unverified), last activity {last}",
            r.changes, r.unverified_changes
        )?;
        if !r.documents_touched.is_empty() {
            writeln!(io.out, "    documents: {}", r.documents_touched.join(", "))?;
        }
        writeln!(
            io.out,
            "    {} sign-offs given, {} changes refused by this replica",
            r.signoffs, r.refusals
        )?;
    }
    Ok(())
}

pub fn verify(io: &mut Io<'_>, ws: &Workspace, file: &Path, json: bool) -> Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("could not read {}: {e}", file.display()))?;
    let check = ws.verify_export(&text)?;
    if json {
        output::json(io, &check)?;
    } else {
        writeln!(
            io.out,
            "{} at version {}",
            check.document,
            short(&check.version)
        )?;
        if check.text_matches {
            writeln!(
                io.out,
                "The text matches this replica's record of that version."
            )?;
        } else {
            writeln!(
                io.out,
                "The text DIFFERS from this replica's record of that version."
            )?;
        }
        for (who, ok) in &check.signoffs {
            let state = if *ok { "verified" } else { "NOT VALID" };
            writeln!(io.out, "Sign-off by {who}: {state}")?;
        }
    }
    if !check.text_matches || check.signoffs.iter().any(|(_, ok)| !ok) {
        anyhow::bail!("the copy does not match the record");
    }
    Ok(())
}
