use crate::output::Io;
use std::io::Write;
use std::process::Command;

use accord_model::DocKind;
use accord_model::automerge::ChangeHash;
use accord_model::markdown::{self, RenderOptions};
use accord_workspace::Workspace;
use anyhow::{Context, Result, bail};

use crate::cli::ShowFormat;
use crate::output;

pub fn create(
    io: &mut Io<'_>,
    ws: &Workspace,
    partnership: &str,
    kind: &str,
    title: &str,
    json: bool,
) -> Result<()> {
    let kind: DocKind = kind.parse()?;
    if title.trim().is_empty() {
        bail!("the title is empty: pass --title \"...\"");
    }
    let doc = ws.create_document(partnership, kind, title)?;
    if json {
        return output::json(io, &doc);
    }
    writeln!(io.out, "{}", doc.id)?;
    writeln!(
        io.err,
        "Created {} {:?} in {} from the template.",
        kind.label(),
        doc.title,
        doc.partnership_name
    )?;
    writeln!(
        io.err,
        "Next: accord doc show {:?}   or   accord doc edit {:?}",
        doc.title, doc.title
    )?;
    Ok(())
}

pub fn list(io: &mut Io<'_>, ws: &Workspace, partnership: Option<&str>, json: bool) -> Result<()> {
    let docs = ws.documents(partnership)?;
    if json {
        return output::json(io, &docs);
    }
    if docs.is_empty() {
        writeln!(
            io.out,
            "No agreements yet. Create one with: accord doc new PARTNERSHIP --kind mou --title \"Our MOU\""
        )?;
    }
    for d in docs {
        writeln!(
            io.out,
            "{}  {:<8} {}  ({})",
            d.id,
            d.kind.as_str(),
            d.title,
            d.partnership_name
        )?;
    }
    Ok(())
}

pub fn show(io: &mut Io<'_>, ws: &Workspace, doc: &str, format: ShowFormat) -> Result<()> {
    let (view, roster) = ws.view(doc)?;
    match format {
        ShowFormat::Json => output::json(io, &view.to_json()),
        ShowFormat::Md => {
            let mut text = markdown::render(
                &view,
                &roster,
                &RenderOptions {
                    prompts: true,
                    editable: false,
                },
            );
            text.push_str(&accord_workspace::comments_markdown(&ws.comments(doc)?));
            output::text(io, &text)
        }
    }
}

pub fn set(io: &mut Io<'_>, ws: &Workspace, doc: &str, field: &str, value: &str) -> Result<()> {
    let message = format!("Set {field}");
    let change = ws.edit(doc, &message, |agreement, roster| {
        agreement.set(field, value, roster)
    })?;
    report(io, change, &format!("Set {field}."))
}

pub fn add(io: &mut Io<'_>, ws: &Workspace, doc: &str, list: &str, pairs: &[String]) -> Result<()> {
    let values = pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .with_context(|| format!("{pair:?} is not FIELD=VALUE, e.g. name=Respect"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut new_id = String::new();
    let change = ws.edit(
        doc,
        &format!("Added an item to {list}"),
        |agreement, roster| {
            new_id = agreement.add_item(list, &values, roster)?;
            Ok(())
        },
    )?;
    report(io, change, &format!("Added item {new_id} to {list}."))
}

pub fn remove(io: &mut Io<'_>, ws: &Workspace, doc: &str, item: &str) -> Result<()> {
    let change = ws.edit(doc, &format!("Removed {item}"), |agreement, _| {
        agreement.remove_item(item)
    })?;
    report(io, change, &format!("Removed {item}."))
}

/// Opens the Markdown rendering in the user's editor, then applies only
/// what they changed, as edits against the version they started from.
pub fn edit(io: &mut Io<'_>, ws: &Workspace, doc: &str) -> Result<()> {
    let (heads, original) = editable_markdown(ws, doc)?;
    let edited = run_editor(&original)?;
    apply_markdown(io, ws, doc, &heads, &edited)
}

/// The editable Markdown of `doc` and the version it shows.
pub fn editable_markdown(ws: &Workspace, doc: &str) -> Result<(Vec<String>, String)> {
    let (view, roster) = ws.view(doc)?;
    let markdown = markdown::render(
        &view,
        &roster,
        &RenderOptions {
            prompts: true,
            editable: true,
        },
    );
    Ok((view.heads, markdown))
}

pub fn editable(io: &mut Io<'_>, ws: &Workspace, doc: &str) -> Result<()> {
    let (heads, markdown) = editable_markdown(ws, doc)?;
    output::json(
        io,
        &serde_json::json!({ "heads": heads, "markdown": markdown }),
    )
}

/// Applies what changed between the Markdown of version `base` and `edited`.
pub fn apply_markdown(
    io: &mut Io<'_>,
    ws: &Workspace,
    doc: &str,
    base: &[String],
    edited: &str,
) -> Result<()> {
    let base: Vec<ChangeHash> = base
        .iter()
        .map(|h| h.parse())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            anyhow::anyhow!("the edited file names a version this replica does not know")
        })?;
    let (view, roster) = ws.view_at(doc, &base)?;
    let edits = markdown::parse_edit(&view, edited, &roster)?;
    if edits.is_empty() {
        writeln!(io.out, "No changes.")?;
        return Ok(());
    }
    let change = ws.edit_at(doc, Some(&base), "Edited in editor", |agreement, roster| {
        markdown::apply_edits(agreement, &edits, roster)
    })?;
    report(io, change, &format!("Applied {} change(s).", edits.len()))
}

/// `doc edit` while `accord serve` holds the replica: fetch the Markdown
/// from the node, edit it here, send the result back.
pub fn edit_through_node(io: &mut Io<'_>, data: &std::path::Path, doc: &str) -> Result<bool> {
    let Some(reply) =
        accord_node::control::call(data, vec!["doc".into(), "editable".into(), doc.into()])
    else {
        return Ok(false);
    };
    if reply.code != 0 {
        io.err.write_all(reply.stderr.as_bytes())?;
        return Err(super::Forwarded(reply.code).into());
    }
    let fetched: serde_json::Value = serde_json::from_str(&reply.stdout)?;
    let heads: Vec<String> = serde_json::from_value(fetched["heads"].clone())?;
    let original = fetched["markdown"].as_str().unwrap_or_default().to_owned();
    let edited = run_editor(&original)?;
    let mut args = vec![
        "doc".to_owned(),
        "apply-markdown".to_owned(),
        doc.to_owned(),
        "--text".to_owned(),
        edited,
    ];
    args.push("--base".to_owned());
    args.extend(heads);
    let Some(reply) = accord_node::control::call(data, args) else {
        anyhow::bail!("the running node stopped answering; your edit was not saved");
    };
    io.out.write_all(reply.stdout.as_bytes())?;
    io.err.write_all(reply.stderr.as_bytes())?;
    if reply.code == 0 {
        Ok(true)
    } else {
        Err(super::Forwarded(reply.code).into())
    }
}

fn run_editor(initial: &str) -> Result<String> {
    let mut file = tempfile::Builder::new()
        .prefix("accord-")
        .suffix(".md")
        .tempfile()?;
    file.write_all(initial.as_bytes())?;
    file.flush()?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_owned());
    let mut parts = editor.split_whitespace();
    let program = parts
        .next()
        .context("$EDITOR is empty: set it to your editor, e.g. EDITOR=nano")?;
    let status = Command::new(program)
        .args(parts)
        .arg(file.path())
        .status()
        .with_context(|| format!("could not start the editor {editor:?}: set $EDITOR to your editor, e.g. EDITOR=nano"))?;
    if !status.success() {
        bail!("the editor {editor:?} exited with {status}; nothing was changed");
    }
    Ok(std::fs::read_to_string(file.path())?)
}

fn report(io: &mut Io<'_>, change: Option<String>, done: &str) -> Result<()> {
    match change {
        Some(_) => writeln!(io.out, "{done} Saved.")?,
        None => writeln!(io.out, "Nothing changed: the document already says that.")?,
    }
    Ok(())
}

/// See `DebugCommand::AckLoop`: prints `N` only after edit N is durable.
pub fn ack_loop(
    io: &mut Io<'_>,
    ws: &Workspace,
    doc: &str,
    list: &str,
    field: &str,
    prefix: &str,
    count: u32,
) -> Result<()> {
    let out = &mut *io.out;
    for n in 1..=count {
        add_numbered_item(ws, doc, list, field, &format!("{prefix}-{n}"))?;
        writeln!(out, "{n}")?;
        out.flush()?;
    }
    Ok(())
}

/// One durable, signed edit adding an item whose `field` is `text` to `list`.
pub(super) fn add_numbered_item(
    ws: &Workspace,
    doc: &str,
    list: &str,
    field: &str,
    text: &str,
) -> Result<()> {
    let values = [(field.to_owned(), text.to_owned())];
    ws.edit(doc, "ack-loop", |agreement, roster| {
        agreement.add_item(list, &values, roster).map(|_| ())
    })?;
    Ok(())
}
