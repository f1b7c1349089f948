//! One module per command family; each function does one command.

mod docs;
mod history;
mod partnership;
mod setup;
mod walkthrough;

use std::path::{Path, PathBuf};

use accord_workspace::Workspace;
use anyhow::Result;

use crate::cli::{Cli, Command, DebugCommand, DocCommand, MemberCommand, PartnershipCommand};
use crate::data_dir;

pub fn run(cli: Cli) -> Result<()> {
    let data = data_dir::resolve(cli.data)?;
    match cli.command {
        Command::Init { org, output } => setup::init(&data, &org, output.json),
        Command::Whoami(output) => setup::whoami(&open(&data)?, output.json),
        Command::Partnership(command) => partnership_command(&data, command),
        Command::Member(command) => member_command(&data, command),
        Command::Doc(command) => doc_command(&data, command),
        Command::History { doc, output } => history::history(&open(&data)?, &doc, output.json),
        Command::Export {
            doc,
            format,
            output,
        } => history::export(&open(&data)?, &doc, format, output.as_deref()),
        Command::Walkthrough => walkthrough::run(),
        Command::Debug(DebugCommand::AckLoop {
            doc,
            list,
            field,
            prefix,
            count,
        }) => docs::ack_loop(&open(&data)?, &doc, &list, &field, &prefix, count),
    }
}

fn partnership_command(data: &Path, command: PartnershipCommand) -> Result<()> {
    let ws = open(data)?;
    match command {
        PartnershipCommand::New { name, output } => partnership::create(&ws, &name, output.json),
        PartnershipCommand::List(output) => partnership::list(&ws, output.json),
        PartnershipCommand::Show {
            partnership,
            output,
        } => partnership::show(&ws, &partnership, output.json),
    }
}

fn member_command(data: &Path, command: MemberCommand) -> Result<()> {
    let ws = open(data)?;
    match command {
        MemberCommand::Add {
            partnership,
            name,
            key,
            role,
            output,
        } => partnership::add_member(&ws, &partnership, &name, &key, &role, output.json),
        MemberCommand::SetRole {
            partnership,
            member,
            role,
            output,
        } => partnership::set_role(&ws, &partnership, &member, &role, output.json),
    }
}

fn doc_command(data: &Path, command: DocCommand) -> Result<()> {
    let ws = open(data)?;
    match command {
        DocCommand::New {
            partnership,
            kind,
            title,
            output,
        } => docs::create(&ws, &partnership, &kind, &title, output.json),
        DocCommand::List {
            partnership,
            output,
        } => docs::list(&ws, partnership.as_deref(), output.json),
        DocCommand::Show { doc, format } => docs::show(&ws, &doc, format),
        DocCommand::Set { doc, field, value } => docs::set(&ws, &doc, &field, &value),
        DocCommand::Add { doc, list, values } => docs::add(&ws, &doc, &list, &values),
        DocCommand::Remove { doc, item } => docs::remove(&ws, &doc, &item),
        DocCommand::Edit { doc } => docs::edit(&ws, &doc),
    }
}

fn open(data: &Path) -> Result<Workspace> {
    Ok(Workspace::open(data)?)
}

/// For messages: the folder as the user would type it.
pub(crate) fn shown(path: &Path) -> String {
    PathBuf::from(path).display().to_string()
}
