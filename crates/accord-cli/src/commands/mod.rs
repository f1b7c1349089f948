//! One module per command family; each function does one command.
//!
//! Commands that need the replica run against a [`Ctx`]: normally a
//! workspace opened by this process, or, while `accord serve` holds the
//! replica, the node's own workspace (the command is sent over the
//! control socket and runs inside the node).

mod docs;
mod history;
mod net;
mod partnership;
mod repair;
mod serve;
mod setup;
mod trust;
mod walkthrough;

use std::path::Path;
use std::sync::Arc;

use accord_node::NodeHandle;
use accord_store::StoreError;
use accord_workspace::{Workspace, WorkspaceError};
use anyhow::Result;

use crate::cli::{
    Cli, Command, DebugCommand, DocCommand, MemberCommand, PartnershipCommand, PeerCommand,
};
use crate::data_dir;
use crate::output::Io;

/// What a command runs against.
pub struct Ctx {
    pub ws: Arc<Workspace>,
    /// Set when running inside `accord serve`: syncs use the live node.
    pub node: Option<NodeHandle>,
}

/// The command's exit code was decided elsewhere (by the running node).
#[derive(Debug, thiserror::Error)]
#[error("exit {0}")]
pub struct Forwarded(pub u8);

/// Runs a command from the terminal.
pub fn run(cli: Cli, io: &mut Io<'_>) -> Result<()> {
    let explicit_data = cli.data.is_some();
    let data = data_dir::resolve(cli.data)?;
    match cli.command {
        Command::Init { org, output } => setup::init(io, &data, &org, output.json),
        Command::Walkthrough => walkthrough::run(),
        Command::Repair {
            org,
            timeout,
            output,
        } => repair::repair(io, &data, org, timeout, output.json),
        Command::Serve { listen, org, open } => {
            serve::serve(io, &data, listen, org.as_deref(), open)
        }
        Command::Relay { listen, allow_org } => {
            let relay_data = if explicit_data {
                data
            } else {
                data.join("relay")
            };
            net::relay(io, &relay_data, listen, allow_org)
        }
        command => {
            let ctx = match Workspace::open(&data) {
                Ok(ws) => Ctx {
                    ws: Arc::new(ws),
                    node: None,
                },
                Err(in_use @ WorkspaceError::Store(StoreError::InUse { .. })) => {
                    return forward(io, &data, &command, in_use);
                }
                Err(e) => return Err(e.into()),
            };
            dispatch(&ctx, command, io)
        }
    }
}

/// Runs a command inside the node that holds the replica. When no node
/// answers (another command holds it), reports `in_use` as it is.
fn forward(io: &mut Io<'_>, data: &Path, command: &Command, in_use: WorkspaceError) -> Result<()> {
    // `doc edit` runs the person's editor here, and the node does the rest.
    if let Command::Doc(DocCommand::Edit { doc }) = command {
        return match docs::edit_through_node(io, data, doc)? {
            true => Ok(()),
            false => Err(in_use.into()),
        };
    }
    if matches!(command, Command::Debug(_)) {
        return Err(in_use.into());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(reply) = accord_node::control::call(data, args) else {
        return Err(in_use.into());
    };
    io.out.write_all(reply.stdout.as_bytes())?;
    io.err.write_all(reply.stderr.as_bytes())?;
    if reply.code == 0 {
        Ok(())
    } else {
        Err(Forwarded(reply.code).into())
    }
}

/// Runs any replica command against `ctx`.
pub fn dispatch(ctx: &Ctx, command: Command, io: &mut Io<'_>) -> Result<()> {
    let ws = &ctx.ws;
    match command {
        Command::Whoami(output) => setup::whoami(io, ws, output.json),
        Command::Partnership(command) => partnership_command(io, ws, command),
        Command::Member(command) => member_command(io, ws, command),
        Command::Doc(command) => doc_command(io, ws, command),
        Command::History {
            doc,
            org,
            since,
            output,
        } => history::history(io, ws, &doc, org.as_deref(), since.as_deref(), output.json),
        Command::Comment {
            doc,
            field,
            text,
            quote,
            output,
        } => trust::comment(io, ws, &doc, &field, &text, quote.as_deref(), output.json),
        Command::Comments {
            doc,
            resolve,
            output,
        } => trust::comments(io, ws, &doc, resolve.as_deref(), output.json),
        Command::Sign {
            doc,
            statement,
            output,
        } => trust::sign(io, ws, &doc, &statement, output.json),
        Command::Status { doc, output } => trust::status(io, ws, &doc, output.json),
        Command::Blame { doc, field, output } => trust::blame(io, ws, &doc, &field, output.json),
        Command::Diff {
            doc,
            from,
            to,
            output,
        } => trust::diff(io, ws, &doc, from.as_deref(), to.as_deref(), output.json),
        Command::Audit {
            partnership,
            output,
        } => trust::audit(io, ws, &partnership, output.json),
        Command::Verify { file, output } => trust::verify(io, ws, &file, output.json),
        Command::Export {
            doc,
            format,
            output,
        } => history::export(io, ws, &doc, format, output.as_deref()),
        Command::Peer(command) => peer_command(io, ctx, command),
        Command::Sync {
            urls,
            timeout,
            output,
        } => net::sync(io, ctx, &urls, timeout, output.json),
        Command::Invite {
            partnership,
            member,
            relay,
            relay_key,
            output,
        } => net::invite(
            io,
            ws,
            &partnership,
            &member,
            relay.as_deref(),
            relay_key.as_deref(),
            output.json,
        ),
        Command::Join { code } => net::join(io, ctx, &code),
        Command::Debug(DebugCommand::AckLoop {
            doc,
            list,
            field,
            prefix,
            count,
        }) => docs::ack_loop(io, ws, &doc, &list, &field, &prefix, count),
        Command::Debug(DebugCommand::PushLoop {
            doc,
            prefix,
            count,
            timeout,
        }) => net::push_loop(io, ctx, &doc, &prefix, count, timeout),
        Command::Init { .. }
        | Command::Repair { .. }
        | Command::Walkthrough
        | Command::Serve { .. }
        | Command::Relay { .. } => {
            anyhow::bail!("this command cannot run inside a running node")
        }
    }
}

fn partnership_command(io: &mut Io<'_>, ws: &Workspace, command: PartnershipCommand) -> Result<()> {
    match command {
        PartnershipCommand::New { name, output } => partnership::create(io, ws, &name, output.json),
        PartnershipCommand::List(output) => partnership::list(io, ws, output.json),
        PartnershipCommand::Show {
            partnership,
            output,
        } => partnership::show(io, ws, &partnership, output.json),
    }
}

fn member_command(io: &mut Io<'_>, ws: &Workspace, command: MemberCommand) -> Result<()> {
    match command {
        MemberCommand::Add {
            partnership,
            name,
            key,
            role,
            output,
        } => partnership::add_member(io, ws, &partnership, &name, &key, &role, output.json),
        MemberCommand::Remove {
            partnership,
            member,
            output,
        } => trust::remove_member(io, ws, &partnership, &member, output.json),
        MemberCommand::SetRole {
            partnership,
            member,
            role,
            output,
        } => partnership::set_role(io, ws, &partnership, &member, &role, output.json),
    }
}

fn doc_command(io: &mut Io<'_>, ws: &Workspace, command: DocCommand) -> Result<()> {
    match command {
        DocCommand::New {
            partnership,
            kind,
            title,
            output,
        } => docs::create(io, ws, &partnership, &kind, &title, output.json),
        DocCommand::List {
            partnership,
            output,
        } => docs::list(io, ws, partnership.as_deref(), output.json),
        DocCommand::Show { doc, format } => docs::show(io, ws, &doc, format),
        DocCommand::Set { doc, field, value } => docs::set(io, ws, &doc, &field, &value),
        DocCommand::Add { doc, list, values } => docs::add(io, ws, &doc, &list, &values),
        DocCommand::Remove { doc, item } => docs::remove(io, ws, &doc, &item),
        DocCommand::Edit { doc } => docs::edit(io, ws, &doc),
        DocCommand::Editable { doc } => docs::editable(io, ws, &doc),
        DocCommand::ApplyMarkdown { doc, base, text } => {
            docs::apply_markdown(io, ws, &doc, &base, &text)
        }
    }
}

fn peer_command(io: &mut Io<'_>, ctx: &Ctx, command: PeerCommand) -> Result<()> {
    match command {
        PeerCommand::Add { url, key } => net::peer_add(io, ctx, &url, key.as_deref()),
        PeerCommand::List(output) => net::peer_list(io, &ctx.ws, output.json),
        PeerCommand::Remove { url } => net::peer_remove(io, &ctx.ws, &url),
    }
}

/// For messages: the folder as the user would type it.
pub(crate) fn shown(path: &Path) -> String {
    path.display().to_string()
}
