//! Verification before apply: the engine's gate between a peer's sync
//! message and a document.
//!
//! A sync message's changes are decoded and judged by the rules in
//! [`accord_model::trust`] before Automerge sees them. Accepted changes
//! go on to Automerge; refused ones (and everything built on them) are
//! dropped and reported; changes whose dependencies we lack wait for a
//! later message. The message's negotiation part (heads, bloom filters) is
//! kept, so the sync protocol carries on with what was accepted.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

use accord_identity::OrgKey;

use crate::engine::ConnId;
use accord_model::trust::{
    Attestation, Candidate, Refusal, RosterHistory, Rule, UnknownRoster, verify_batch,
    verify_roster_batch,
};
use accord_model::{DocId, PartnershipId};
use automerge::sync::Message;
use automerge::{AutoCommit, Change, ChangeHash};

/// Most attestations held for a document while waiting for their changes.
pub(crate) const MAX_OFFERED: usize = 1024;

const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_DOCUMENT: u8 = 0;
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED: u8 = 2;

/// The changes a message carries, as they arrived.
enum Source {
    Changes(Vec<Change>),
    /// A whole saved document (sent when we hold little or nothing).
    Document(Box<AutoCommit>),
}

/// What to do with one message.
#[derive(Default)]
pub(crate) struct Screened {
    pub refused: Vec<(ChangeHash, Option<OrgKey>, Refusal)>,
    /// The dependencies of each refused change, so heads that name it can
    /// be read as heads without it.
    pub refused_deps: BTreeMap<ChangeHash, Vec<ChangeHash>>,
    /// The accepted changes, when some were held back: replace the message's changes with these.
    pub keep: Option<Vec<u8>>,
    /// The message was one whole document and all of it was accepted: the
    /// document as decoded for judging, with its number of changes, so a
    /// receiver that holds nothing can take it as is instead of having
    /// Automerge load the same bytes a second time.
    pub document: Option<(Box<AutoCommit>, u64)>,
}

/// What this replica already knows about a document, for judging a message.
pub(crate) struct Known<'a> {
    /// Attestations held and offered.
    pub attestations: &'a [Attestation],
    /// Changes from earlier messages waiting for their dependencies.
    pub pending: &'a mut Vec<Change>,
    /// Changes refused earlier, with their dependencies.
    pub refused: &'a BTreeMap<ChangeHash, Vec<ChangeHash>>,
}

/// Why a message cannot be judged now.
pub(crate) enum NotYet {
    /// It names a roster version we do not hold yet.
    Roster,
}

/// Which rule a document follows.
pub(crate) fn rule_for(kind: &str, owner: Option<OrgKey>) -> Option<Rule> {
    match kind {
        "roster" => Some(Rule::Roster),
        "notes" => owner.map(|owner| Rule::Notes { owner }),
        _ => Some(Rule::Agreement),
    }
}

/// Judges `message` for `doc` (currently `current`). `roster` is the
/// partnership's roster history (absent while we hold no roster).
/// `pending` holds changes from earlier messages that waited for their
/// dependencies: they are judged again with this message's changes, and
/// whatever still waits goes back there.
pub(crate) fn screen(
    p: PartnershipId,
    rule: Rule,
    current: &mut AutoCommit,
    message: &Message,
    known: Known<'_>,
    roster: Option<&mut RosterHistory>,
) -> Result<Result<Screened, String>, NotYet> {
    let Known {
        attestations,
        pending,
        refused: known_refused,
    } = known;
    let source = match decode(message) {
        Ok(source) => source,
        Err(e) => return Ok(Err(e)),
    };
    let had_pending = !pending.is_empty();
    let mut source = match (source, had_pending) {
        (None, false) => return Ok(Ok(Screened::default())),
        (Some(source), false) => source,
        (source, true) => {
            let mut changes = match source {
                Some(Source::Changes(c)) => c,
                Some(Source::Document(mut d)) => d.get_changes(&[]),
                None => Vec::new(),
            };
            let mut seen: BTreeSet<ChangeHash> = changes.iter().map(Change::hash).collect();
            for c in pending.iter() {
                if seen.insert(c.hash()) {
                    changes.push(c.clone());
                }
            }
            Source::Changes(changes)
        }
    };
    let candidates = candidates(&mut source, current);
    if candidates.is_empty() {
        pending.clear();
        return Ok(Ok(Screened::default()));
    }
    let (built_on_refused, candidates) = split_built_on_refused(candidates, known_refused);
    let mut verdict = match rule {
        Rule::Roster => {
            let changes = match &mut source {
                Source::Changes(c) => c.clone(),
                Source::Document(d) => d.get_changes(&[]),
            };
            let fresh: Vec<Change> = changes
                .into_iter()
                .filter(|c| current.get_change_meta_by_hash(&c.hash()).is_none())
                .collect();
            verify_roster_batch(p, current, &fresh, attestations)
        }
        _ => {
            let Some(roster) = roster else {
                return Err(NotYet::Roster);
            };
            let mut applied = |h: &ChangeHash| {
                current
                    .get_change_meta_by_hash(h)
                    .map(|m| accord_model::trust::claim::parse(m.message.as_deref()))
            };
            verify_batch(rule, &candidates, attestations, roster, &mut applied)
                .map_err(|UnknownRoster| NotYet::Roster)?
        }
    };
    for c in &built_on_refused {
        verdict
            .refused
            .push((c.hash, c.org, Refusal::DependsOnRefused));
    }
    if verdict.refused.is_empty() && verdict.waiting.is_empty() && !had_pending {
        let document = match source {
            Source::Document(d) => Some((d, candidates.len() as u64)),
            Source::Changes(_) => None,
        };
        return Ok(Ok(Screened {
            document,
            ..Screened::default()
        }));
    }
    let refused_deps = candidates
        .iter()
        .chain(built_on_refused.iter())
        .filter(|c| verdict.refused.iter().any(|(h, _, _)| *h == c.hash))
        .map(|c| (c.hash, c.deps.clone()))
        .collect();
    if !verdict.waiting.is_empty() {
        tracing::debug!(waiting = ?verdict.waiting, "changes wait for their dependencies or attested heads");
    }
    let (keep, waiting) = split_accepted(source, &candidates, &verdict.accepted, &verdict.waiting);
    *pending = bounded(waiting);
    Ok(Ok(Screened {
        refused: verdict.refused,
        refused_deps,
        keep: Some(keep),
        document: None,
    }))
}

/// Separates the candidates that build (directly or not) on a change
/// refused earlier: they are refused without further judgement.
fn split_built_on_refused(
    candidates: Vec<Candidate>,
    known_refused: &BTreeMap<ChangeHash, Vec<ChangeHash>>,
) -> (Vec<Candidate>, Vec<Candidate>) {
    if known_refused.is_empty() {
        return (Vec::new(), candidates);
    }
    let mut tainted: BTreeSet<ChangeHash> = known_refused.keys().copied().collect();
    let mut rest = candidates;
    let mut out = Vec::new();
    loop {
        let (bad, good): (Vec<Candidate>, Vec<Candidate>) = rest
            .into_iter()
            .partition(|c| c.deps.iter().any(|d| tainted.contains(d)));
        rest = good;
        if bad.is_empty() {
            return (out, rest);
        }
        tainted.extend(bad.iter().map(|c| c.hash));
        out.extend(bad);
    }
}

/// Most bytes of changes kept waiting for their dependencies, per document.
const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;

fn bounded(mut changes: Vec<Change>) -> Vec<Change> {
    let mut total = 0;
    changes.retain(|c| {
        total += c.raw_bytes().len();
        total <= MAX_PENDING_BYTES
    });
    changes
}

/// `hash <- deps` for each change a message carries, for logs.
pub(crate) fn change_summaries(message: &Message) -> Vec<String> {
    match decode(message) {
        Ok(Some(Source::Changes(changes))) => changes
            .iter()
            .map(|c| format!("{} <- {:?}", c.hash(), c.deps()))
            .collect(),
        Ok(Some(Source::Document(_))) => vec!["a whole document".to_owned()],
        Ok(None) => Vec::new(),
        Err(e) => vec![e],
    }
}

/// The changes of the message, or `None` when it carries none.
fn decode(message: &Message) -> Result<Option<Source>, String> {
    let mut changes = Vec::new();
    let mut document = None;
    for chunk in message.changes.iter() {
        for (kind, bytes) in split_chunks(chunk)? {
            match kind {
                CHUNK_CHANGE | CHUNK_COMPRESSED => changes.push(
                    Change::from_bytes(bytes.to_vec())
                        .map_err(|e| format!("malformed change: {e}"))?,
                ),
                CHUNK_DOCUMENT if document.is_none() => {
                    let loaded = catch_unwind(AssertUnwindSafe(|| AutoCommit::load(bytes)));
                    match loaded {
                        Ok(Ok(doc)) => document = Some(Box::new(doc)),
                        _ => return Err("malformed document in a sync message".to_owned()),
                    }
                }
                other => return Err(format!("unsupported chunk type {other} in a sync message")),
            }
        }
    }
    match (document, changes.is_empty()) {
        (None, true) => Ok(None),
        (None, false) => Ok(Some(Source::Changes(changes))),
        (Some(doc), true) => Ok(Some(Source::Document(doc))),
        (Some(_), false) => Err("a sync message mixes a document with changes".to_owned()),
    }
}

/// The changes of `bytes`, concatenated change chunks (a local change
/// group); `None` if anything else is among them.
pub(crate) fn split_changes(bytes: &[u8]) -> Option<Vec<Change>> {
    split_chunks(bytes)
        .ok()?
        .into_iter()
        .map(|(kind, chunk)| match kind {
            CHUNK_CHANGE | CHUNK_COMPRESSED => Change::from_bytes(chunk.to_vec()).ok(),
            _ => None,
        })
        .collect()
}

/// Concatenated Automerge chunks, each with its type.
fn split_chunks(mut bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let mut chunks = Vec::new();
    while !bytes.is_empty() {
        let (kind, len) = chunk_header(bytes)?;
        let (chunk, rest) = bytes.split_at(len);
        chunks.push((kind, chunk));
        bytes = rest;
    }
    Ok(chunks)
}

/// Whether a message carries one whole saved document (a snapshot, or
/// Automerge's own whole-document reply) rather than individual changes.
/// Reads only the first chunk's header: cheap enough to ask before deciding
/// whether to decode the document at all.
pub(crate) fn is_document(message: &Message) -> bool {
    message
        .changes
        .iter()
        .next()
        .and_then(|chunk| chunk_header(chunk).ok())
        .is_some_and(|(kind, _)| kind == CHUNK_DOCUMENT)
}

/// Reads an Automerge chunk header: magic, checksum, type, LEB128 length.
/// Returns the type and the chunk's whole length (header included).
fn chunk_header(bytes: &[u8]) -> Result<(u8, usize), String> {
    let bad = || "malformed chunk in a sync message".to_owned();
    if bytes.len() < 9 || bytes[..4] != CHUNK_MAGIC {
        return Err(bad());
    }
    let kind = bytes[8];
    let mut len: u64 = 0;
    let mut shift = 0;
    let mut at = 9;
    loop {
        let b = *bytes.get(at).ok_or_else(bad)?;
        at += 1;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 56 {
            return Err(bad());
        }
    }
    let total = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(at))
        .filter(|&t| t <= bytes.len())
        .ok_or_else(bad)?;
    Ok((kind, total))
}

/// The candidates for judgement: the changes we do not hold yet.
fn candidates(source: &mut Source, current: &mut AutoCommit) -> Vec<Candidate> {
    let all: Vec<Candidate> = match source {
        Source::Changes(changes) => changes.iter().map(Candidate::of_change).collect(),
        Source::Document(doc) => Candidate::of_metas(&doc.get_changes_meta(&[])),
    };
    if current.get_heads().is_empty() {
        return all;
    }
    all.into_iter()
        .filter(|c| current.get_change_meta_by_hash(&c.hash).is_none())
        .collect()
}

/// The raw bytes of the accepted changes (in the candidates' order), and
/// the changes that wait for their dependencies.
fn split_accepted(
    source: Source,
    candidates: &[Candidate],
    accepted: &accord_model::trust::ChangeHashSet,
    waiting: &BTreeSet<ChangeHash>,
) -> (Vec<u8>, Vec<Change>) {
    let mut changes: HashMap<ChangeHash, Change> = match source {
        Source::Changes(changes) => changes.into_iter().map(|c| (c.hash(), c)).collect(),
        Source::Document(mut doc) => candidates
            .iter()
            .filter(|c| accepted.contains(&c.hash) || waiting.contains(&c.hash))
            .filter_map(|c| doc.get_change_by_hash(&c.hash).map(|ch| (c.hash, ch)))
            .collect(),
    };
    let mut out = Vec::new();
    let mut waits = Vec::new();
    for c in candidates {
        if accepted.contains(&c.hash) {
            if let Some(change) = changes.get(&c.hash) {
                out.extend_from_slice(change.raw_bytes());
            }
        } else if waiting.contains(&c.hash)
            && let Some(change) = changes.remove(&c.hash)
        {
            waits.push(change);
        }
    }
    (out, waits)
}

/// Inserts, first dropping the oldest entry if `map` holds [`MAX_OFFERED`].
fn bounded_insert<V>(map: &mut BTreeMap<[u8; 32], V>, id: [u8; 32], value: V) {
    if map.len() >= MAX_OFFERED
        && let Some(oldest) = map.keys().next().copied()
    {
        map.remove(&oldest);
    }
    map.insert(id, value);
}

/// A document's attestations as the engine holds them: stored ones, and
/// ones offered by peers that wait for their changes.
#[derive(Debug, Default)]
pub(crate) struct Attestations {
    pub held: BTreeMap<[u8; 32], Attestation>,
    pub offered: BTreeMap<[u8; 32], Attestation>,
    /// Offered, with the connection that offered each, and not yet
    /// checked: signatures are checked when the attestations are first
    /// needed (`check_offered`, before judging changes or settling), so a
    /// node holding a partner's keystrokes in its coalescing window, or a
    /// subscriber reading a relay's forward, does no ed25519 work on arrival.
    unverified: BTreeMap<[u8; 32], (ConnId, Attestation)>,
}

impl Attestations {
    pub fn all(&self) -> Vec<Attestation> {
        self.held
            .values()
            .chain(self.offered.values())
            .cloned()
            .collect()
    }

    /// Takes a peer's attestation for `doc`; its signature is checked by
    /// [`Attestations::check_offered`], before it is used.
    pub fn offer(
        &mut self,
        doc: DocId,
        attestation: Attestation,
        from: ConnId,
    ) -> Result<(), String> {
        if attestation.doc != doc {
            return Err("an attestation for another document".to_owned());
        }
        let id = attestation.id();
        if self.held.contains_key(&id)
            || self.offered.contains_key(&id)
            || self.unverified.contains_key(&id)
        {
            return Ok(());
        }
        bounded_insert(&mut self.unverified, id, (from, attestation));
        Ok(())
    }

    /// Checks the signatures of the attestations offered since the last
    /// call; keeps the valid ones and returns who offered each invalid one, and why.
    pub fn check_offered(&mut self) -> Vec<(ConnId, String)> {
        let mut invalid = Vec::new();
        for (id, (from, attestation)) in std::mem::take(&mut self.unverified) {
            match attestation.verify() {
                Ok(()) => bounded_insert(&mut self.offered, id, attestation),
                Err(e) => invalid.push((from, e.to_string())),
            }
        }
        invalid
    }

    /// Moves offered attestations whose heads `doc` now holds into `held`,
    /// dropping held ones of the same organisation that they supersede.
    /// Returns what to store and what to delete.
    ///
    /// They are taken oldest first (see [`height`]): a partner typing sends
    /// one attestation per keystroke, and a batch of them taken in id
    /// order made each earlier one look for a later one in its past,
    /// walking [`SUPERSEDE_WALK`] changes for nothing.
    pub fn settle(&mut self, doc: &mut AutoCommit) -> (Vec<Attestation>, Vec<[u8; 32]>) {
        let mut ready: Vec<([u8; 32], u64)> = Vec::new();
        for (id, a) in &self.offered {
            if a.heads
                .iter()
                .all(|h| doc.get_change_meta_by_hash(h).is_some())
            {
                ready.push((*id, height(doc, &a.heads)));
            }
        }
        ready.sort_by_key(|(_, height)| *height);
        let ready = ready.into_iter().map(|(id, _)| id);
        let mut added = Vec::new();
        let mut dropped = Vec::new();
        for id in ready {
            let Some(a) = self.offered.remove(&id) else {
                continue;
            };
            if self.held.contains_key(&id) {
                // Offered again while the document was unloaded (its held
                // attestations were not known yet): nothing to add. Taken
                // as new, it superseded itself, and it and every other
                // organisation's attestation settled before it were dropped.
                continue;
            }
            let superseded_now: Vec<[u8; 32]> = self
                .held
                .iter()
                .filter(|(_, old)| old.org == a.org && superseded(doc, &old.heads, &a.heads))
                .map(|(old_id, _)| *old_id)
                .collect();
            for old_id in superseded_now {
                self.held.remove(&old_id);
                // One added by this call was never stored: do not store it.
                match added.iter().position(|x: &Attestation| x.id() == old_id) {
                    Some(i) => {
                        added.remove(i);
                    }
                    None => dropped.push(old_id),
                }
            }
            self.held.insert(id, a.clone());
            added.push(a);
        }
        (added, dropped)
    }

    /// A local attestation covers the whole document as this replica holds
    /// it: it replaces every earlier attestation of the same organisation.
    pub fn local(&mut self, attestation: Attestation) {
        self.held.retain(|_, a| a.org != attestation.org);
        self.held.insert(attestation.id(), attestation);
    }
}

/// Whether every head of `old` is one of `new` or in its causal past,
/// found by a breadth-first walk back from `new` of at most
/// [`SUPERSEDE_WALK`] changes: enough for one organisation's successive
/// commit groups, the case that matters (their heads lie a few changes
/// back from the new ones; a depth-first walk could instead follow one
/// branch towards the root and give up). Anything less obvious is kept
/// (an extra attestation costs a little space).
fn superseded(doc: &mut AutoCommit, old: &[ChangeHash], new: &[ChangeHash]) -> bool {
    let mut missing: BTreeSet<ChangeHash> = old.iter().copied().collect();
    for h in new {
        missing.remove(h);
    }
    let mut seen: BTreeSet<ChangeHash> = BTreeSet::new();
    let mut queue: VecDeque<ChangeHash> = new.iter().copied().collect();
    while let Some(h) = queue.pop_front() {
        if seen.len() >= SUPERSEDE_WALK || missing.is_empty() {
            break;
        }
        if !seen.insert(h) {
            continue;
        }
        let Some(meta) = doc.get_change_meta_by_hash(&h) else {
            continue;
        };
        for dep in &meta.deps {
            missing.remove(dep);
            queue.push_back(*dep);
        }
    }
    missing.is_empty()
}

const SUPERSEDE_WALK: usize = 8192;

/// The highest start op of `heads`: a change's start op exceeds those of
/// its dependencies (unless they made no ops), so heads in the causal past
/// of others have a lower height.
fn height(doc: &mut AutoCommit, heads: &[ChangeHash]) -> u64 {
    heads
        .iter()
        .filter_map(|h| doc.get_change_meta_by_hash(h).map(|m| m.start_op))
        .max()
        .unwrap_or(0)
}

/// Reads `heads` as if the `refused` changes did not exist: each refused
/// head is replaced by its dependencies, recursively. Peers keep naming
/// changes we refused; without this, Automerge would ask for them forever.
pub(crate) fn without_refused(
    heads: &[ChangeHash],
    refused: &BTreeMap<ChangeHash, Vec<ChangeHash>>,
) -> Vec<ChangeHash> {
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut stack: Vec<ChangeHash> = heads.to_vec();
    while let Some(h) = stack.pop() {
        if !seen.insert(h) {
            continue;
        }
        match refused.get(&h) {
            Some(deps) => stack.extend(deps.iter().copied()),
            None => {
                out.insert(h);
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_identity::OrgSecret;
    use automerge::ROOT;
    use automerge::transaction::Transactable;

    /// Three organisations each made one change (in turn, on one document)
    /// and attested the heads it left.
    fn three_authors() -> (AutoCommit, Vec<Attestation>) {
        let doc = DocId::from_bytes([7; 16]);
        let mut d = AutoCommit::new();
        let mut attestations = Vec::new();
        for n in 1..=3u8 {
            d.set_actor(automerge::ActorId::from([n; 16]));
            d.put(ROOT, "by", u64::from(n)).expect("put");
            d.commit();
            let secret = OrgSecret::from_seed([n; 32]);
            attestations.push(Attestation::sign(&secret, doc, &d.get_heads()));
        }
        (d, attestations)
    }

    /// A restarted relay learns a document's stored attestations when it
    /// loads it; a peer's new connection may offer them all again first.
    /// Settled against themselves, each one superseded itself, and the
    /// superseded list (kept across the batch) dropped every attestation
    /// settled before the last: the relay then offered the document with
    /// one organisation's attestation, and peers refused the others' changes.
    #[test]
    fn attestations_offered_again_are_all_kept() {
        let (mut d, attestations) = three_authors();
        let mut a = Attestations::default();
        // Offered while the document was not loaded, then loaded from the store.
        for att in &attestations {
            offer_valid(&mut a, att);
        }
        a.held = attestations.iter().map(|x| (x.id(), x.clone())).collect();
        let (added, dropped) = a.settle(&mut d);
        assert!(added.is_empty(), "already stored");
        assert!(dropped.is_empty(), "nothing superseded");
        assert_eq!(a.held.len(), 3, "every organisation's attestation kept");
        assert!(a.offered.is_empty());
    }

    /// Offers `att` as a peer would, and checks it.
    fn offer_valid(a: &mut Attestations, att: &Attestation) {
        a.offer(att.doc, att.clone(), ConnId(1))
            .expect("for this document");
        assert!(a.check_offered().is_empty(), "a valid signature");
    }

    /// A forged attestation is taken without work on arrival, and refused,
    /// naming the connection that offered it, when first checked; valid
    /// ones offered with it are kept.
    #[test]
    fn a_forged_attestation_is_refused_when_checked_and_names_its_sender() {
        let (_, attestations) = three_authors();
        let mut forged = attestations[1].clone();
        forged.heads = attestations[2].heads.clone();
        let mut a = Attestations::default();
        a.offer(forged.doc, forged, ConnId(7))
            .expect("for this document");
        a.offer(attestations[0].doc, attestations[0].clone(), ConnId(8))
            .expect("for this document");
        assert!(a.offered.is_empty(), "nothing is used before it is checked");
        let invalid = a.check_offered();
        assert_eq!(invalid.len(), 1);
        assert_eq!(invalid[0].0, ConnId(7));
        assert_eq!(
            a.offered.keys().copied().collect::<Vec<_>>(),
            vec![attestations[0].id()]
        );
        assert!(a.check_offered().is_empty(), "each is checked once");
    }

    /// The first author (seed [1; 32]) commits another change to `d` and
    /// attests its new heads: an attestation that supersedes `earlier`.
    fn a_later_change_by_the_first(d: &mut AutoCommit, earlier: &Attestation) -> Attestation {
        d.set_actor(automerge::ActorId::from([1; 16]));
        d.put(ROOT, "by", 4u64).expect("put");
        d.commit();
        Attestation::sign(&OrgSecret::from_seed([1; 32]), earlier.doc, &d.get_heads())
    }

    /// A later attestation of the same organisation supersedes its earlier
    /// one; other organisations' stay.
    #[test]
    fn a_later_attestation_supersedes_only_its_own_organisation() {
        let (mut d, attestations) = three_authors();
        let mut a = Attestations {
            held: attestations.iter().map(|x| (x.id(), x.clone())).collect(),
            ..Attestations::default()
        };
        let later = a_later_change_by_the_first(&mut d, &attestations[0]);
        offer_valid(&mut a, &later);
        let (added, dropped) = a.settle(&mut d);
        assert_eq!(added.len(), 1);
        assert_eq!(dropped, vec![attestations[0].id()]);
        assert_eq!(a.held.len(), 3);
        assert!(a.held.contains_key(&later.id()));
    }

    /// Two attestations of one organisation settled together: the earlier
    /// is superseded by the later and never stored.
    #[test]
    fn one_superseded_within_a_batch_is_not_stored() {
        let (mut d, attestations) = three_authors();
        let mut a = Attestations::default();
        offer_valid(&mut a, &attestations[0]);
        let later = a_later_change_by_the_first(&mut d, &attestations[0]);
        offer_valid(&mut a, &later);
        let (added, dropped) = a.settle(&mut d);
        assert_eq!(
            added.iter().map(Attestation::id).collect::<Vec<_>>(),
            vec![later.id()]
        );
        assert!(dropped.is_empty());
        assert_eq!(a.held.len(), 1);
    }
}
