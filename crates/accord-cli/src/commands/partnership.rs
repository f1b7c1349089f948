use crate::output::Io;
use accord_model::{Role, RosterView};
use accord_workspace::Workspace;
use anyhow::{Context, Result};

use crate::output;

pub fn create(io: &mut Io<'_>, ws: &Workspace, name: &str, json: bool) -> Result<()> {
    if name.trim().is_empty() {
        anyhow::bail!("the partnership name is empty");
    }
    let roster = ws.create_partnership(name)?;
    if json {
        return output::json(io, &roster);
    }
    writeln!(io.out, "{}", roster.id)?;
    writeln!(
        io.err,
        "Started {:?}; you are its lead partner and a decision maker.",
        roster.name
    )?;
    writeln!(
        io.err,
        "Next: accord doc new {:?} --kind mou --title \"Our MOU\"",
        roster.name
    )?;
    Ok(())
}

pub fn list(io: &mut Io<'_>, ws: &Workspace, json: bool) -> Result<()> {
    let rosters = ws.partnerships()?;
    if json {
        return output::json(io, &rosters);
    }
    if rosters.is_empty() {
        writeln!(
            io.out,
            "No partnerships yet. Start one with: accord partnership new \"Name\""
        )?;
    }
    for r in rosters {
        writeln!(
            io.out,
            "{}  {}  ({} members, {} agreements)",
            r.id,
            r.name,
            r.members.len(),
            r.documents.len()
        )?;
    }
    Ok(())
}

pub fn show(io: &mut Io<'_>, ws: &Workspace, selector: &str, json: bool) -> Result<()> {
    let roster = ws.partnership(selector)?;
    if json {
        return output::json(io, &roster);
    }
    print_roster(io, &roster)?;
    Ok(())
}

pub fn add_member(
    io: &mut Io<'_>,
    ws: &Workspace,
    partnership: &str,
    name: &str,
    key: &str,
    role: &str,
    json: bool,
) -> Result<()> {
    let key = key
        .parse()
        .context("the --key is not a public key: ask the organisation to run `accord whoami`")?;
    let role: Role = role.parse()?;
    let roster = ws.add_member(partnership, name, key, role)?;
    if json {
        return output::json(io, &roster);
    }
    writeln!(io.out, "Added {name} as {role} of {}.", roster.name)?;
    Ok(())
}

pub fn set_role(
    io: &mut Io<'_>,
    ws: &Workspace,
    partnership: &str,
    member: &str,
    role: &str,
    json: bool,
) -> Result<()> {
    let role: Role = role.parse()?;
    let roster = ws.set_role(partnership, member, role)?;
    if json {
        return output::json(io, &roster);
    }
    let who = roster
        .resolve_member(member)
        .map(|m| m.name.clone())
        .unwrap_or_else(|_| member.to_owned());
    writeln!(io.out, "{who} is now a {role} of {}.", roster.name)?;
    Ok(())
}

fn print_roster(io: &mut Io<'_>, roster: &RosterView) -> Result<()> {
    writeln!(io.out, "{}  ({})", roster.name, roster.id)?;
    writeln!(io.out)?;
    writeln!(io.out, "Members:")?;
    for m in &roster.members {
        let lead = if m.lead { ", lead partner" } else { "" };
        writeln!(
            io.out,
            "  {}  [{}]  {}{lead}",
            m.name, m.fingerprint, m.role
        )?;
    }
    writeln!(io.out)?;
    if roster.documents.is_empty() {
        writeln!(
            io.out,
            "No agreements yet. Create one with: accord doc new {:?} --kind mou --title \"Our MOU\"",
            roster.name
        )?;
        return Ok(());
    }
    writeln!(io.out, "Agreements:")?;
    for d in &roster.documents {
        writeln!(io.out, "  {}  {:<8} {}", d.id, d.kind.as_str(), d.title)?;
    }
    Ok(())
}
