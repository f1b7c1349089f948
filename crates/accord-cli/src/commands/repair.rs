//! `accord repair`: the check and rebuild live in `accord_workspace::repair`;
//! this module gives it the sync machinery of `accord sync` and prints.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use accord_store::StoreError;
use accord_workspace::{
    DocNote, PeerConfig, PeerSync, RepairOptions, RepairReport, Workspace, WorkspaceError,
};
use anyhow::{Result, bail};

use super::net::sync_with_temporary_node;
use crate::output::{self, Io};

pub fn repair(
    io: &mut Io<'_>,
    data: &Path,
    org: Option<String>,
    timeout: u64,
    json: bool,
) -> Result<()> {
    let options = RepairOptions { org_name: org };
    let timeout = Duration::from_secs(timeout.max(1));
    let mut resync = |ws: &Arc<Workspace>, peers: &[PeerConfig]| resync(ws, peers, timeout);
    let report = {
        let err = &mut *io.err;
        let mut progress = |line: &str| {
            let _ = writeln!(err, "{line}");
        };
        accord_workspace::repair(data, &options, &mut progress, &mut resync)
            .map_err(explain_in_use)?
    };
    if json {
        output::json(io, &report)?;
    } else {
        print(io, &report)?;
    }
    if !report.missing.is_empty() {
        bail!(
            "{} document(s) or partnership(s) are still missing (see above)",
            report.missing.len()
        );
    }
    if !report.complete() {
        bail!(
            "the replica was rebuilt, but what the damaged file held is not entirely known (see above)"
        );
    }
    Ok(())
}

/// One `sync_once` per peer, as `accord sync` runs it, reported plainly.
fn resync(ws: &Arc<Workspace>, peers: &[PeerConfig], timeout: Duration) -> Vec<PeerSync> {
    match sync_with_temporary_node(ws, peers, timeout) {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|o| match o.result {
                Ok(r) => PeerSync {
                    url: o.url,
                    ok: true,
                    detail: format!(
                        "{} document(s) updated, {} change(s) received",
                        r.documents_updated, r.changes_received
                    ),
                },
                Err(e) => PeerSync {
                    url: o.url,
                    ok: false,
                    detail: e,
                },
            })
            .collect(),
        Err(e) => peers
            .iter()
            .map(|p| PeerSync {
                url: p.url.clone(),
                ok: false,
                detail: format!("the node could not start: {e}"),
            })
            .collect(),
    }
}

/// Repair needs the replica to itself; routing it through a running node
/// would mean replacing the file under the node's feet.
fn explain_in_use(err: WorkspaceError) -> anyhow::Error {
    let in_use = matches!(err, WorkspaceError::Store(StoreError::InUse { .. }));
    let err = anyhow::Error::new(err);
    if in_use {
        err.context(
            "cannot repair a replica that is in use: stop `accord serve` (or the command using this data folder), then run `accord repair` again",
        )
    } else {
        err
    }
}

fn print(io: &mut Io<'_>, report: &RepairReport) -> Result<()> {
    if report.healthy {
        writeln!(
            io.out,
            "The replica is healthy: {} documents checked.",
            report.documents_checked
        )?;
        return Ok(());
    }
    writeln!(io.out, "The replica was damaged:")?;
    for damage in &report.damage {
        writeln!(io.out, "  - {damage}")?;
    }
    if let Some(moved) = &report.moved_to {
        writeln!(io.out, "Moved the damaged file to {}.", moved.display())?;
    }
    writeln!(
        io.out,
        "Salvaged {} document(s) (with {} attestation(s)) and {} peer(s) into a fresh replica.",
        report.salvaged_documents, report.salvaged_attestations, report.salvaged_peers
    )?;
    print_notes(io, "Lost locally", &report.lost)?;
    for sync in &report.synced {
        let state = if sync.ok {
            "synced with"
        } else {
            "could not sync with"
        };
        writeln!(io.out, "{state} {}: {}", sync.url, sync.detail)?;
    }
    if !report.refetched.is_empty() {
        writeln!(
            io.out,
            "Fetched again from partners or relays: {} document(s).",
            report.refetched.len()
        )?;
    }
    print_notes(io, "Still missing", &report.missing)?;
    if report.partly_unknown {
        writeln!(
            io.out,
            "Part of the damaged file could not be read, so not everything it held is known to be back."
        )?;
    } else if report.missing.is_empty() {
        writeln!(io.out, "Nothing is missing: the replica is whole again.")?;
    }
    if !report.next_steps.is_empty() {
        writeln!(io.out, "Next:")?;
        for step in &report.next_steps {
            writeln!(io.out, "  - {step}")?;
        }
    }
    Ok(())
}

fn print_notes(io: &mut Io<'_>, heading: &str, notes: &[DocNote]) -> Result<()> {
    if notes.is_empty() {
        return Ok(());
    }
    writeln!(io.out, "{heading}: {} document(s):", notes.len())?;
    for note in notes {
        let kind = note.kind.as_deref().unwrap_or("unknown kind");
        writeln!(io.out, "  - {} ({kind}): {}", note.id, note.reason)?;
    }
    Ok(())
}
