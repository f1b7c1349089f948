//! Reading everything that is still sound out of a (copy of a) replica:
//! each document loaded strictly by Automerge and described from its own
//! content, each attestation checked by its signature, each setting parsed
//! into its type. What fails is named, never guessed at.

use accord_identity::OrgKey;
use accord_model::automerge::{AutoCommit, ReadDoc, ScalarValue, Value};
use accord_model::trust::{Attestation, RefusalRecord};
use accord_model::{Agreement, DocId, Notes, PartnershipId, Roster, load_stored};
use accord_store::{DocInfo, DocKey, Replica, StoreError, WriteBatch};
use serde::Deserialize;

use super::{DocNote, ROSTER_KIND};
use crate::settings::{JOINED, PEERS, PeerConfig};

/// A document that loaded in full, with the records that verified.
pub(super) struct SoundDocument {
    pub id: DocKey,
    pub info: DocInfo,
    pub doc: AutoCommit,
    pub attestations: Vec<([u8; 32], Vec<u8>)>,
    pub refusals: Vec<([u8; 32], Vec<u8>)>,
}

/// Everything read from a replica: what is sound, and what is not.
#[derive(Default)]
pub(super) struct Contents {
    pub documents: Vec<SoundDocument>,
    /// Documents whose id is known but that could not be read in full.
    pub lost: Vec<DocNote>,
    pub peers: Vec<PeerConfig>,
    pub joined: Vec<PartnershipId>,
    /// Everything else found wrong (dropped records, unreadable settings, ...).
    pub problems: Vec<String>,
    /// Whether the whole list of documents was read (false when the file
    /// could not be opened at all, or its list was cut short).
    pub whole: bool,
}

impl Contents {
    /// Partnerships this replica took part in, as far as its records say.
    pub fn partnerships(&self) -> Vec<PartnershipId> {
        let mut all: Vec<PartnershipId> = self.joined.clone();
        let named = self.documents.iter().map(|d| d.info.partnership);
        let lost = self.lost.iter().filter_map(|n| n.partnership_id());
        for p in named.map(PartnershipId::from_bytes).chain(lost) {
            if !all.contains(&p) {
                all.push(p);
            }
        }
        all
    }

    /// This organisation's name as a salvaged roster lists it.
    pub fn own_name(&self, me: &OrgKey) -> Option<String> {
        self.documents
            .iter()
            .filter(|d| d.info.kind == ROSTER_KIND)
            .filter_map(|d| Roster::from_doc(PartnershipId::from_bytes(d.id), d.doc.clone()).ok())
            .find_map(|roster| roster.view().member(me).map(|m| m.name.clone()))
    }
}

/// Reads every document and setting of `replica`, reporting progress.
pub(super) fn read_contents(replica: &Replica, progress: &mut dyn FnMut(&str)) -> Contents {
    let mut contents = Contents::default();
    let scan = replica.scan_documents();
    contents.whole = scan.stopped.is_none();
    if let Some(err) = &scan.stopped {
        contents.problems.push(format!(
            "the list of documents could not be read to its end: {}",
            detail(err)
        ));
    }
    let total = scan.found.len();
    for (n, (id, record)) in scan.found.into_iter().enumerate() {
        if (n + 1) % 100 == 0 {
            progress(&format!("checked {} of {total} documents", n + 1));
        }
        match read_document(replica, id, record.as_ref().ok(), &mut contents.problems) {
            Ok(sound) => contents.documents.push(sound),
            Err(reason) => contents.lost.push(DocNote::new(id, record.ok(), reason)),
        }
    }
    read_settings(replica, &mut contents);
    contents
}

fn read_document(
    replica: &Replica,
    id: DocKey,
    record: Option<&DocInfo>,
    problems: &mut Vec<String>,
) -> Result<SoundDocument, String> {
    let stored = replica
        .load_document(&id)
        .map_err(|e| detail(&e))?
        .ok_or("its record vanished while it was read")?;
    let doc = load_stored(&stored.snapshot, &stored.changes)
        .map_err(|e| format!("Automerge could not load it: {e}"))?;
    let (info, doc) = describe(id, doc, record)?;
    let mut heads: Vec<[u8; 32]> = doc_heads(&doc);
    let mut recorded = stored.heads.clone();
    heads.sort();
    recorded.sort();
    if !recorded.is_empty() && recorded != heads {
        problems.push(format!(
            "document {}: its record names other heads than its content",
            DocId::from_bytes(id)
        ));
    }
    let attestations = sound_attestations(id, &stored.attestations, problems);
    let refusals = sound_refusals(replica, id, problems);
    Ok(SoundDocument {
        id,
        info,
        doc,
        attestations,
        refusals,
    })
}

fn doc_heads(doc: &AutoCommit) -> Vec<[u8; 32]> {
    let mut doc = doc.clone();
    doc.get_heads().into_iter().map(|h| h.0).collect()
}

/// What a document is, read from the document itself (its `accord` map),
/// not from its record, which redb does not checksum on a trusted file.
fn describe(
    id: DocKey,
    doc: AutoCommit,
    record: Option<&DocInfo>,
) -> Result<(DocInfo, AutoCommit), String> {
    let kind = meta_str(&doc, "kind").ok_or("it names no kind")?;
    let (partnership, title) = match kind.as_str() {
        ROSTER_KIND => {
            let roster = Roster::from_doc(PartnershipId::from_bytes(id), doc.clone())
                .map_err(|e| format!("it is not a valid roster: {e}"))?;
            (id, roster.view().name)
        }
        "notes" => (check_notes(id, &doc)?, String::new()),
        _ => check_agreement(id, &doc)?,
    };
    let title = match record {
        Some(r) if title.is_empty() && r.kind == kind && r.partnership == partnership => {
            r.title.clone()
        }
        _ => title,
    };
    let info = DocInfo {
        partnership,
        kind,
        title,
    };
    Ok((info, doc))
}

fn check_notes(id: DocKey, doc: &AutoCommit) -> Result<DocKey, String> {
    let partnership = meta_partnership(doc)?;
    let owner: OrgKey = meta_str(doc, "org")
        .and_then(|k| k.parse().ok())
        .ok_or("its owner is missing")?;
    if Notes::doc_id(partnership, &owner) != DocId::from_bytes(id) {
        return Err("its id does not match its owner".into());
    }
    Ok(*partnership.as_bytes())
}

fn check_agreement(id: DocKey, doc: &AutoCommit) -> Result<(DocKey, String), String> {
    let partnership = meta_partnership(doc)?;
    if meta_str(doc, "id") != Some(DocId::from_bytes(id).to_string()) {
        return Err("its id does not match the id it is stored under".into());
    }
    let agreement = Agreement::from_doc(DocId::from_bytes(id), doc.clone())
        .map_err(|e| format!("it is not a valid agreement: {e}"))?;
    Ok((*partnership.as_bytes(), agreement.title()))
}

fn meta_partnership(doc: &AutoCommit) -> Result<PartnershipId, String> {
    meta_str(doc, "partnership")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| "it names no partnership".into())
}

/// A string in the document's `accord` map.
fn meta_str(doc: &AutoCommit, key: &str) -> Option<String> {
    let (_, meta) = doc.get(accord_model::automerge::ROOT, "accord").ok()??;
    match doc.get(&meta, key).ok()?? {
        (Value::Scalar(v), _) => match v.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// Attestations that decode, name this document and verify; the rest are
/// dropped (partners hold their own copies).
fn sound_attestations(
    id: DocKey,
    records: &[Vec<u8>],
    problems: &mut Vec<String>,
) -> Vec<([u8; 32], Vec<u8>)> {
    let mut sound = Vec::new();
    for bytes in records {
        match Attestation::from_bytes(bytes) {
            Ok(a) if a.doc == DocId::from_bytes(id) && a.verify().is_ok() => {
                sound.push((a.id(), bytes.clone()));
            }
            _ => problems.push(format!(
                "document {}: an attestation failed its signature check and was dropped",
                DocId::from_bytes(id)
            )),
        }
    }
    sound
}

fn sound_refusals(
    replica: &Replica,
    id: DocKey,
    problems: &mut Vec<String>,
) -> Vec<([u8; 32], Vec<u8>)> {
    let records = match replica.refusals(&id) {
        Ok(records) => records,
        Err(e) => {
            problems.push(format!(
                "document {}: its record of refused changes is unreadable ({}) and was dropped",
                DocId::from_bytes(id),
                detail(&e)
            ));
            return Vec::new();
        }
    };
    let (sound, bad): (Vec<_>, Vec<_>) = records
        .into_iter()
        .partition(|(_, bytes)| RefusalRecord::from_bytes(bytes).is_some());
    if !bad.is_empty() {
        problems.push(format!(
            "document {}: {} damaged record(s) of refused changes were dropped",
            DocId::from_bytes(id),
            bad.len()
        ));
    }
    sound
}

fn read_settings(replica: &Replica, contents: &mut Contents) {
    contents.peers = read_setting(replica, PEERS, &mut contents.problems);
    contents.joined = read_setting(replica, JOINED, &mut contents.problems);
}

fn read_setting<T: for<'de> Deserialize<'de> + Default>(
    replica: &Replica,
    key: &str,
    problems: &mut Vec<String>,
) -> T {
    let parsed = match replica.get_setting(key) {
        Ok(None) => return T::default(),
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
        Err(e) => Err(detail(&e)),
    };
    parsed.unwrap_or_else(|why| {
        problems.push(format!(
            "the setting {key:?} is unreadable ({why}) and was dropped"
        ));
        T::default()
    })
}

/// Adds a sound document, with its records, to `batch`.
pub(super) fn put_sound(
    batch: &mut WriteBatch,
    sound: &mut SoundDocument,
) -> Result<(), StoreError> {
    let changes = sound.doc.get_changes(&[]).len() as u64;
    batch.put_document(sound.id, sound.info.clone(), sound.doc.save(), changes);
    batch.set_heads(sound.id, doc_heads(&sound.doc));
    for (key, bytes) in std::mem::take(&mut sound.attestations) {
        batch.put_attestation(sound.id, key, bytes)?;
    }
    for (key, bytes) in std::mem::take(&mut sound.refusals) {
        batch.put_refusal(sound.id, key, bytes)?;
    }
    Ok(())
}

/// A store error as a short reason: the detail of `Corrupt`, whose full
/// message would tell the person to run the repair they are running.
fn detail(err: &StoreError) -> String {
    match err {
        StoreError::Corrupt { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}
