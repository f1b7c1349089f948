use accord_model::{Role, RosterView};
use accord_workspace::Workspace;
use anyhow::{Context, Result};

use crate::output;

pub fn create(ws: &Workspace, name: &str, json: bool) -> Result<()> {
    if name.trim().is_empty() {
        anyhow::bail!("the partnership name is empty");
    }
    let roster = ws.create_partnership(name)?;
    if json {
        return output::json(&roster);
    }
    println!("{}", roster.id);
    eprintln!(
        "Started {:?}; you are its lead partner and a decision maker.",
        roster.name
    );
    eprintln!(
        "Next: accord doc new {:?} --kind mou --title \"Our MOU\"",
        roster.name
    );
    Ok(())
}

pub fn list(ws: &Workspace, json: bool) -> Result<()> {
    let rosters = ws.partnerships()?;
    if json {
        return output::json(&rosters);
    }
    if rosters.is_empty() {
        println!("No partnerships yet. Start one with: accord partnership new \"Name\"");
    }
    for r in rosters {
        println!(
            "{}  {}  ({} members, {} agreements)",
            r.id,
            r.name,
            r.members.len(),
            r.documents.len()
        );
    }
    Ok(())
}

pub fn show(ws: &Workspace, selector: &str, json: bool) -> Result<()> {
    let roster = ws.partnership(selector)?;
    if json {
        return output::json(&roster);
    }
    print_roster(&roster);
    Ok(())
}

pub fn add_member(
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
        return output::json(&roster);
    }
    println!("Added {name} as {role} of {}.", roster.name);
    Ok(())
}

pub fn set_role(
    ws: &Workspace,
    partnership: &str,
    member: &str,
    role: &str,
    json: bool,
) -> Result<()> {
    let role: Role = role.parse()?;
    let roster = ws.set_role(partnership, member, role)?;
    if json {
        return output::json(&roster);
    }
    let who = roster
        .resolve_member(member)
        .map(|m| m.name.clone())
        .unwrap_or_else(|_| member.to_owned());
    println!("{who} is now a {role} of {}.", roster.name);
    Ok(())
}

fn print_roster(roster: &RosterView) {
    println!("{}  ({})", roster.name, roster.id);
    println!();
    println!("Members:");
    for m in &roster.members {
        let lead = if m.lead { ", lead partner" } else { "" };
        println!("  {}  [{}]  {}{lead}", m.name, m.fingerprint, m.role);
    }
    println!();
    if roster.documents.is_empty() {
        println!(
            "No agreements yet. Create one with: accord doc new {:?} --kind mou --title \"Our MOU\"",
            roster.name
        );
        return;
    }
    println!("Agreements:");
    for d in &roster.documents {
        println!("  {}  {:<8} {}", d.id, d.kind.as_str(), d.title);
    }
}
