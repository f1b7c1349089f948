//! Comments, sign-off, status and member removal.

use accord_workspace::{SignOffState, Workspace};
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
