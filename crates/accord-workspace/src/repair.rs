//! `accord repair`: check a replica and, if it is damaged, rebuild it from
//! what is intact and from partners or relays.
//!
//! The order matters, and nothing is ever deleted:
//! 1. lock the folder (a running node keeps it: stop it first);
//! 2. read a copy of the file in memory, verify every page, load every
//!    document strictly and check its attestations, parse every setting;
//! 3. if all of that is sound, say so and stop: the file was not touched;
//! 4. otherwise move the damaged file aside, create an empty replica with
//!    the same key, write into it everything that was sound (documents are
//!    rewritten from their loaded content, so a damaged record cannot carry
//!    over), and ask for every partnership whose roster was lost;
//! 5. sync once with the configured peers and relays (the caller's
//!    machinery, see [`Resync`]), then report what came back and what is
//!    still missing.

mod salvage;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use accord_model::{DocId, Notes, PartnershipId, RosterView};
use accord_store::{DocInfo, DocKey, Repair, Replica, WriteBatch};
use serde::Serialize;

use crate::settings::{JOINED, PEERS, PeerConfig};
use crate::{Workspace, WorkspaceError, unix_now};
use salvage::{Contents, put_sound, read_contents};

const ROSTER_KIND: &str = "roster";

/// How to repair.
#[derive(Clone, Debug, Default)]
pub struct RepairOptions {
    /// The organisation's name, used only when the damaged file no longer
    /// holds it and no salvaged roster names this organisation.
    pub org_name: Option<String>,
}

/// One peer's result of the resync, as the caller's sync machinery reports it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerSync {
    pub url: String,
    pub ok: bool,
    /// What was fetched, or why the sync failed.
    pub detail: String,
}

/// Syncs the fresh workspace once with each peer (the node's `sync_once`,
/// as `accord sync` does). A parameter, so this crate needs no network.
pub type Resync<'a> = &'a mut dyn FnMut(&Arc<Workspace>, &[PeerConfig]) -> Vec<PeerSync>;

/// A document named in the report.
#[derive(Clone, Debug, Serialize)]
pub struct DocNote {
    pub id: String,
    /// Its kind and partnership as its record gave them, when readable.
    pub kind: Option<String>,
    pub partnership: Option<String>,
    pub reason: String,
}

/// What `accord repair` found and did.
#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    pub replica: PathBuf,
    /// Nothing was wrong; nothing was changed.
    pub healthy: bool,
    pub documents_checked: usize,
    /// What was found wrong.
    pub damage: Vec<String>,
    /// Where the damaged file was moved.
    pub moved_to: Option<PathBuf>,
    /// Documents copied from the damaged file into the new replica.
    pub salvaged_documents: usize,
    pub salvaged_attestations: usize,
    pub salvaged_peers: usize,
    /// Documents that could not be read from the damaged file.
    pub lost: Vec<DocNote>,
    /// The damaged file could not be read in full, so what it held, and so
    /// what may be missing, is not entirely known.
    pub partly_unknown: bool,
    /// Lost documents that the resync fetched again.
    pub refetched: Vec<String>,
    /// Documents and partnerships still missing after the resync.
    pub missing: Vec<DocNote>,
    pub synced: Vec<PeerSync>,
    /// What the person should do next, if anything.
    pub next_steps: Vec<String>,
}

impl RepairReport {
    /// Whether the replica is whole: healthy, or repaired with nothing
    /// known to be missing and nothing unknown.
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && !self.partly_unknown
    }
}

impl DocNote {
    fn new(id: DocKey, record: Option<DocInfo>, reason: String) -> DocNote {
        DocNote {
            id: DocId::from_bytes(id).to_string(),
            kind: record.as_ref().map(|r| r.kind.clone()),
            partnership: record.map(|r| PartnershipId::from_bytes(r.partnership).to_string()),
            reason,
        }
    }

    fn partnership_id(&self) -> Option<PartnershipId> {
        self.partnership.as_deref()?.parse().ok()
    }
}

/// Checks the replica in `dir` and repairs it if needed (see the module docs).
pub fn repair(
    dir: &Path,
    options: &RepairOptions,
    progress: &mut dyn FnMut(&str),
    resync: Resync<'_>,
) -> Result<RepairReport, WorkspaceError> {
    let session = Repair::begin(dir)?;
    let mut report = RepairReport {
        replica: session.db_path(),
        ..RepairReport::default()
    };
    progress(&format!("checking {}", report.replica.display()));
    let inspection = session.inspect()?;
    report.damage.extend(inspection.damage.clone());
    let contents = match &inspection.copy {
        Some(copy) => read_contents(copy, progress),
        None => Contents::default(),
    };
    report.documents_checked = contents.documents.len() + contents.lost.len();
    report.partly_unknown = !contents.whole;
    report.damage.extend(contents.problems.iter().cloned());
    if report.damage.is_empty() && contents.lost.is_empty() {
        report.healthy = true;
        return Ok(report);
    }
    if !inspection.verified && inspection.copy.is_some() {
        report.next_steps.push(
            "settings were read from pages that failed their checks: review them with `accord peer list`"
                .into(),
        );
    }
    let (name, created_at) = identity(inspection.copy.as_ref(), &contents, options, &session)?;
    drop(inspection);
    let (fresh, moved_to) = session.replace(&name, created_at, unix_now())?;
    progress(&format!(
        "moved the damaged file to {}",
        moved_to
            .as_deref()
            .map_or("(none)".into(), |p| p.display().to_string())
    ));
    report.moved_to = moved_to;
    rebuild(fresh, contents, report, progress, resync)
}

/// The name and creation time for the new replica: the damaged file's,
/// else `--org`, else this organisation's name in a salvaged roster.
fn identity(
    copy: Option<&Replica>,
    contents: &Contents,
    options: &RepairOptions,
    session: &Repair,
) -> Result<(String, i64), WorkspaceError> {
    if let Some(copy) = copy {
        return Ok((copy.org_name().to_owned(), copy.created_at()));
    }
    let me = session.public_key();
    options
        .org_name
        .clone()
        .or_else(|| contents.own_name(&me))
        .map(|name| (name, unix_now()))
        .ok_or(WorkspaceError::RepairNeedsName)
}

/// Writes what was sound into the fresh replica, resyncs, and reports.
fn rebuild(
    fresh: Replica,
    mut contents: Contents,
    mut report: RepairReport,
    progress: &mut dyn FnMut(&str),
    resync: Resync<'_>,
) -> Result<RepairReport, WorkspaceError> {
    let wanted = contents.partnerships();
    write_salvage(&fresh, &mut contents, &wanted, &mut report, progress)?;
    let ws = Arc::new(Workspace::with_replica(fresh)?);
    report.lost = std::mem::take(&mut contents.lost);
    if contents.peers.is_empty() {
        report.next_steps.push(
            "no peers or relays are configured: add one with `accord peer add URL --key KEY`, then run `accord sync` to fetch what is missing"
                .into(),
        );
    } else {
        for peer in &contents.peers {
            progress(&format!("syncing with {}", peer.url));
        }
        report.synced = resync(&ws, &contents.peers);
        for failed in report.synced.iter().filter(|s| !s.ok) {
            report.next_steps.push(format!(
                "{} could not be synced ({}): run `accord sync` once it is reachable",
                failed.url, failed.detail
            ));
        }
    }
    account(&ws, &wanted, &mut report)?;
    if report.partly_unknown {
        report.next_steps.push(
            "the damaged file could not be read in full, so a partnership it held may be unknown here: check `accord partnership list`, and for one that is missing ask a partner for a new invite (`accord join CODE`), then run `accord sync`"
                .into(),
        );
    }
    if let Some(moved) = &report.moved_to {
        report.next_steps.push(format!(
            "the damaged file is kept at {}: delete it once you are satisfied nothing else is needed from it",
            moved.display()
        ));
    }
    Ok(report)
}

/// Copies the sound documents and settings into `fresh`, and records every
/// partnership whose roster is not among them as joined, so that the next
/// sync (this one, or a later `accord sync`) asks partners for it.
fn write_salvage(
    fresh: &Replica,
    contents: &mut Contents,
    wanted: &[PartnershipId],
    report: &mut RepairReport,
    progress: &mut dyn FnMut(&str),
) -> Result<(), WorkspaceError> {
    let total = contents.documents.len();
    for (n, sound) in contents.documents.iter_mut().enumerate() {
        let mut batch = WriteBatch::new();
        report.salvaged_attestations += sound.attestations.len();
        put_sound(&mut batch, sound)?;
        fresh.commit(batch)?;
        if (n + 1) % 100 == 0 {
            progress(&format!("salvaged {} of {total} documents", n + 1));
        }
    }
    report.salvaged_documents = total;
    let held: Vec<DocKey> = contents.documents.iter().map(|d| d.id).collect();
    let mut joined = contents.joined.clone();
    for p in wanted {
        if !held.contains(p.as_bytes()) && !joined.contains(p) {
            joined.push(*p);
        }
    }
    let mut batch = WriteBatch::new();
    batch.put_setting(
        PEERS,
        serde_json::to_vec(&contents.peers).unwrap_or_default(),
    );
    batch.put_setting(JOINED, serde_json::to_vec(&joined).unwrap_or_default());
    fresh.commit(batch)?;
    report.salvaged_peers = contents.peers.len();
    progress(&format!("salvaged {total} documents"));
    Ok(())
}

/// Sorts the lost documents into fetched again and still missing, and adds
/// every partnership whose roster is still absent, and every document a
/// held roster lists but the replica lacks.
fn account(
    ws: &Workspace,
    wanted: &[PartnershipId],
    report: &mut RepairReport,
) -> Result<(), WorkspaceError> {
    let held: Vec<DocKey> = ws
        .replica()
        .documents()?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let rosters = ws.partnerships()?;
    let is_held = |id: &str| held.iter().any(|h| DocId::from_bytes(*h).to_string() == id);
    for lost in &report.lost {
        if is_held(&lost.id) {
            report.refetched.push(lost.id.clone());
        } else if expected(lost, &rosters) {
            report.missing.push(DocNote {
                reason: "lost here, and no partner or relay sent it".into(),
                ..lost.clone()
            });
        }
    }
    for p in wanted.iter().filter(|p| !held.contains(p.as_bytes())) {
        report.missing.push(DocNote {
            id: p.roster_doc().to_string(),
            kind: Some(ROSTER_KIND.into()),
            partnership: Some(p.to_string()),
            reason: "no partner or relay sent this partnership's roster".into(),
        });
    }
    for roster in &rosters {
        for entry in roster
            .documents
            .iter()
            .filter(|e| !held.contains(e.id.as_bytes()))
        {
            if report.missing.iter().all(|m| m.id != entry.id.to_string()) {
                report.missing.push(DocNote {
                    id: entry.id.to_string(),
                    kind: Some(entry.kind.as_str().into()),
                    partnership: Some(roster.id.to_string()),
                    reason: format!("the roster lists {:?} but no partner sent it", entry.title),
                });
            }
        }
    }
    if !report.missing.is_empty() {
        report.next_steps.push(
            "some documents are still missing: run `accord sync` when a partner or relay that holds them is reachable"
                .into(),
        );
    }
    Ok(())
}

/// Whether a lost document is one this replica should hold. A record whose
/// id was damaged names no real document: once its partnership's roster is
/// held, only the ids it lists (agreements, rosters, members' notes) count.
fn expected(lost: &DocNote, rosters: &[RosterView]) -> bool {
    let Some(roster) = lost
        .partnership_id()
        .and_then(|p| rosters.iter().find(|r| r.id == p))
    else {
        return true;
    };
    let id = |d: DocId| d.to_string() == lost.id;
    id(roster.id.roster_doc())
        || roster.documents.iter().any(|e| id(e.id))
        || roster
            .members
            .iter()
            .any(|m| id(Notes::doc_id(roster.id, &m.key)))
}
