//! The acceptance rules. Every replica runs the same rules over the same
//! hashed data, so honest replicas agree on every change.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use accord_identity::OrgKey;
use automerge::{AutoCommit, Change, ChangeHash, ChangeMetadata};

use super::hashed::{ChangeHashMap, ChangeHashSet};
use super::{Attestation, claim};
use crate::{PartnershipId, Role, Roster, RosterView};

/// What the rules need to know about one change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub hash: ChangeHash,
    pub deps: Vec<ChangeHash>,
    /// The organisation its actor id names, if it names one.
    pub org: Option<OrgKey>,
    /// The roster version it claims to have been made under.
    pub claim: Option<Vec<ChangeHash>>,
}

impl Candidate {
    pub fn of_change(change: &Change) -> Self {
        Self {
            hash: change.hash(),
            deps: change.deps().to_vec(),
            org: OrgKey::from_actor_bytes(change.actor_id().to_bytes()),
            claim: claim::parse(change.message()),
        }
    }

    pub fn of_meta(meta: &ChangeMetadata<'_>) -> Self {
        Self::with_claim(meta, claim::parse(meta.message.as_deref()))
    }

    /// Candidates for a run of changes, such as a whole document's. Runs of
    /// changes carry the same claim line (a writer's roster rarely
    /// changes), so each distinct line is parsed once.
    pub fn of_metas(metas: &[ChangeMetadata<'_>]) -> Vec<Self> {
        let mut out = Vec::with_capacity(metas.len());
        let mut last: Option<(&str, Option<Vec<ChangeHash>>)> = None;
        for meta in metas {
            let message = meta.message.as_deref();
            let claim = match (&last, message) {
                (Some((seen, claim)), Some(now)) if *seen == now => claim.clone(),
                _ => {
                    let claim = claim::parse(message);
                    last = message.map(|m| (m, claim.clone()));
                    claim
                }
            };
            out.push(Self::with_claim(meta, claim));
        }
        out
    }

    fn with_claim(meta: &ChangeMetadata<'_>, claim: Option<Vec<ChangeHash>>) -> Self {
        Self {
            hash: meta.hash,
            deps: meta.deps.clone(),
            org: OrgKey::from_actor_bytes(meta.actor.to_bytes()),
            claim,
        }
    }
}

/// Who may write a kind of document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The roster: decision makers, judged on the roster the change builds on.
    Roster,
    /// Agreement text: decision makers, judged on the roster version claimed.
    Agreement,
    /// One organisation's notes (comments, sign-offs): that organisation
    /// alone, while a decision maker or consultee.
    Notes { owner: OrgKey },
}

/// Why a change was refused. Shown to the sender and recorded for audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its actor id names no organisation.
    NoOrganisation,
    /// No valid signature of its organisation covers it.
    Unattested,
    /// Its organisation was not a member of the partnership at the roster version that decides.
    NotAMember,
    /// Its organisation's role at that version does not allow this change.
    NotEntitled(Role),
    /// It writes to another organisation's notes.
    NotOwner,
    /// It names no roster version.
    NoRosterClaim,
    /// It claims a roster version older than one its own history has already seen.
    StaleRoster,
    /// It depends on a refused change.
    DependsOnRefused,
    /// A roster change that does not keep a valid roster created by the partnership's creator.
    InvalidRoster,
}

impl Refusal {
    /// A short stable name, for logs, counters and the audit.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoOrganisation => "no-organisation",
            Refusal::Unattested => "unattested",
            Refusal::NotAMember => "not-a-member",
            Refusal::NotEntitled(_) => "not-entitled",
            Refusal::NotOwner => "not-owner",
            Refusal::NoRosterClaim => "no-roster-claim",
            Refusal::StaleRoster => "stale-roster",
            Refusal::DependsOnRefused => "depends-on-refused",
            Refusal::InvalidRoster => "invalid-roster",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoOrganisation => f.write_str("its author is not an organisation key"),
            Refusal::Unattested => {
                f.write_str("it carries no valid signature of the organisation that made it")
            }
            Refusal::NotAMember => {
                f.write_str("its organisation was not a member of the partnership")
            }
            Refusal::NotEntitled(role) => write!(f, "a {role} may not make this change"),
            Refusal::NotOwner => f.write_str("it writes another organisation's notes"),
            Refusal::NoRosterClaim => f.write_str("it does not say which roster it was made under"),
            Refusal::StaleRoster => {
                f.write_str("it claims an older roster than the changes it builds on")
            }
            Refusal::DependsOnRefused => f.write_str("it builds on a refused change"),
            Refusal::InvalidRoster => {
                f.write_str("it would leave a roster not created by the partnership's creator")
            }
        }
    }
}

/// A claimed roster version this replica does not hold yet: decide later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownRoster;

/// The outcome for one batch of changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub accepted: ChangeHashSet,
    pub refused: Vec<(ChangeHash, Option<OrgKey>, Refusal)>,
    /// Changes whose dependencies this replica does not hold: neither
    /// accepted nor refused; they are judged when they come again.
    pub waiting: BTreeSet<ChangeHash>,
}

impl Verdict {
    pub fn all_accepted(&self) -> bool {
        self.refused.is_empty()
    }
}

/// The roster of one partnership, readable at any version it holds.
pub struct RosterHistory {
    id: PartnershipId,
    doc: AutoCommit,
    views: ChangeHashMap<Vec<ChangeHash>, Option<RosterView>>,
}

impl RosterHistory {
    pub fn new(id: PartnershipId, doc: AutoCommit) -> Self {
        Self {
            id,
            doc,
            views: ChangeHashMap::default(),
        }
    }

    /// The roster as it was at `heads`, or `None` if it was not a valid roster then.
    pub fn view_at(&mut self, heads: &[ChangeHash]) -> Result<Option<&RosterView>, UnknownRoster> {
        // Claims are written sorted; only a hand-made one needs a sorted copy.
        // (Asked once per change judged, so the usual case must not allocate.)
        if heads.is_sorted() {
            return self.view_at_sorted(heads);
        }
        let mut key = heads.to_vec();
        key.sort();
        self.view_at_sorted(&key)
    }

    fn view_at_sorted(&mut self, key: &[ChangeHash]) -> Result<Option<&RosterView>, UnknownRoster> {
        if !self.views.contains_key(key) {
            let view = self.read_at(key)?;
            self.views.insert(key.to_vec(), view);
        }
        Ok(self.views.get(key).and_then(Option::as_ref))
    }

    fn read_at(&mut self, heads: &[ChangeHash]) -> Result<Option<RosterView>, UnknownRoster> {
        if heads
            .iter()
            .any(|h| self.doc.get_change_by_hash(h).is_none())
        {
            return Err(UnknownRoster);
        }
        let forked = self.doc.fork_at(heads).map_err(|_| UnknownRoster)?;
        Ok(Roster::from_doc(self.id, forked).ok().map(|r| r.view()))
    }

    pub fn role_at(
        &mut self,
        heads: &[ChangeHash],
        org: &OrgKey,
    ) -> Result<Option<Role>, UnknownRoster> {
        Ok(self
            .view_at(heads)?
            .and_then(|v| v.member(org))
            .map(|m| m.role))
    }

    /// Whether roster version `newer` includes every change of `older`.
    pub fn includes(
        &mut self,
        newer: &[ChangeHash],
        older: &[ChangeHash],
    ) -> Result<bool, UnknownRoster> {
        if older.iter().all(|h| newer.contains(h)) {
            return Ok(true);
        }
        if newer
            .iter()
            .any(|h| self.doc.get_change_by_hash(h).is_none())
        {
            return Err(UnknownRoster);
        }
        let past = self.doc.fork_at(newer).map_err(|_| UnknownRoster)?;
        let mut past = past;
        Ok(older.iter().all(|h| past.get_change_by_hash(h).is_some()))
    }
}

/// A batch of candidates with each dependency resolved, once, to its place
/// in the batch. Judging a whole document (hundreds of thousands of
/// changes) used to look every dependency up in four hash maps and sets
/// (covering, ordering, waiting, refusals), and those lookups, each a cache
/// miss, were most of its cost.
struct Batch<'a> {
    candidates: &'a [Candidate],
    /// Each hash's place: its last, when a change comes twice (a message
    /// and the changes held from an earlier one can overlap). Copies of a
    /// change share their place's verdict, as they share its hash.
    index: ChangeHashMap<ChangeHash, usize>,
    /// Each candidate's place in `index`: itself, or its last copy.
    canon: Vec<usize>,
    /// Where each candidate's dependencies start in `deps` (one more entry
    /// than candidates, for the end of the last).
    starts: Vec<usize>,
    /// Each dependency's place in the batch, in the order of
    /// `Candidate::deps`; [`OUTSIDE`] for one that is not a candidate.
    deps: Vec<usize>,
}

/// A dependency that is not in the batch.
const OUTSIDE: usize = usize::MAX;

impl<'a> Batch<'a> {
    fn new(candidates: &'a [Candidate]) -> Self {
        let index: ChangeHashMap<ChangeHash, usize> = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| (c.hash, i))
            .collect();
        let mut starts = Vec::with_capacity(candidates.len() + 1);
        let mut deps = Vec::with_capacity(candidates.len());
        for c in candidates {
            starts.push(deps.len());
            deps.extend(
                c.deps
                    .iter()
                    .map(|d| index.get(d).copied().unwrap_or(OUTSIDE)),
            );
        }
        starts.push(deps.len());
        let canon = candidates.iter().map(|c| index[&c.hash]).collect();
        Self {
            candidates,
            index,
            canon,
            starts,
            deps,
        }
    }

    fn len(&self) -> usize {
        self.candidates.len()
    }

    /// The places of candidate `i`'s dependencies, parallel to its `deps`.
    fn deps_of(&self, i: usize) -> &[usize] {
        &self.deps[self.starts[i]..self.starts[i + 1]]
    }

    fn contains(&self, hash: &ChangeHash) -> bool {
        self.index.contains_key(hash)
    }

    /// Which candidates an attestation by their own organisation covers,
    /// by place: an attestation vouches for its heads and, through the hash
    /// chain, for everything they depend on. The walk stops at changes
    /// outside the batch (the changes not yet applied).
    fn covered(&self, attestations: &[Attestation]) -> Vec<bool> {
        let walked = self.walk_attested(attestations);
        self.canon.iter().map(|&i| walked[i]).collect()
    }

    /// [`Batch::covered`] for the places the walk reaches (last copies).
    fn walk_attested(&self, attestations: &[Attestation]) -> Vec<bool> {
        let mut by_org: BTreeMap<OrgKey, Vec<usize>> = BTreeMap::new();
        for a in attestations {
            let heads = a.heads.iter().filter_map(|h| self.index.get(h).copied());
            by_org.entry(a.org).or_default().extend(heads);
        }
        let mut out = vec![false; self.len()];
        // The walk of the n-th organisation marks what it has seen with n.
        let mut seen = vec![0u32; self.len()];
        for (walk, (org, mut stack)) in (1u32..).zip(by_org) {
            while let Some(i) = stack.pop() {
                if seen[i] == walk {
                    continue;
                }
                seen[i] = walk;
                if self.candidates[i].org == Some(org) {
                    out[i] = true;
                }
                stack.extend(self.deps_of(i).iter().filter(|&&j| j != OUTSIDE));
            }
        }
        out
    }

    /// The candidates' places, each after those of its dependencies that
    /// are also candidates.
    fn causal_order(&self) -> Vec<usize> {
        // A whole document's changes, and most messages', come in causal
        // order already: then the walk below would give them as they are.
        let ordered =
            (0..self.len()).all(|i| self.deps_of(i).iter().all(|&j| j == OUTSIDE || j < i));
        if ordered {
            return (0..self.len()).collect();
        }
        let mut placed = vec![false; self.len()];
        let mut out = Vec::with_capacity(self.len());
        for start in 0..self.len() {
            let mut stack = vec![(start, false)];
            while let Some((i, expanded)) = stack.pop() {
                if placed[i] {
                    continue;
                }
                if expanded {
                    placed[i] = true;
                    out.push(i);
                    continue;
                }
                stack.push((i, true));
                for &j in self.deps_of(i) {
                    if j != OUTSIDE && !placed[j] {
                        stack.push((j, false));
                    }
                }
            }
        }
        out
    }
}

/// Which candidates an attestation by their own organisation covers: an
/// attestation vouches for its heads and, through the hash chain, for
/// everything they depend on. `candidates` are the changes not yet applied;
/// the walk stops at changes outside them.
pub fn covered(candidates: &[Candidate], attestations: &[Attestation]) -> ChangeHashSet {
    Batch::new(candidates)
        .covered(attestations)
        .iter()
        .zip(candidates)
        .filter(|(covered, _)| **covered)
        .map(|(_, c)| c.hash)
        .collect()
}

/// Organisations with an attestation that names a change neither the batch
/// nor the document holds yet. A sync message can carry a change without
/// the later one its author's attestation names (the sender's Bloom filter
/// test said we held it: a false positive, which Automerge repairs on the
/// next round by asking for the missing head), so an uncovered change of
/// theirs may be covered once that change arrives.
fn orgs_awaiting_heads(
    batch: &Batch<'_>,
    attested: &[bool],
    attestations: &[Attestation],
    known: &mut dyn FnMut(&ChangeHash) -> bool,
) -> BTreeSet<OrgKey> {
    // The usual case, every change covered, needs no look further.
    if attested.iter().all(|&a| a) {
        return BTreeSet::new();
    }
    attestations
        .iter()
        .filter(|a| a.heads.iter().any(|h| !batch.contains(h) && !known(h)))
        .map(|a| a.org)
        .collect()
}

/// Whether `c` is not covered yet but its organisation has signed heads we
/// still lack: it waits (unapplied, bounded like any change waiting for its
/// dependencies) instead of being refused. Only the organisation's own valid
/// signature can make a change wait, and nothing is applied until covered.
fn awaits_its_attestation(c: &Candidate, attested: bool, awaiting: &BTreeSet<OrgKey>) -> bool {
    !attested && c.org.is_some_and(|org| awaiting.contains(&org))
}

/// Judges a batch of agreement or notes changes (`rule` must not be
/// [`Rule::Roster`]). `attestations` must already be signature-checked and
/// for this document. `applied` tells whether a change is already in the
/// document (`Some`) and, if so, its claim, for the check that a claim never
/// goes backwards.
///
/// Returns `Err(UnknownRoster)` when a claim names a roster version this
/// replica does not have yet: nothing is decided, try again later.
pub fn verify_batch(
    rule: Rule,
    candidates: &[Candidate],
    attestations: &[Attestation],
    roster: &mut RosterHistory,
    applied: &mut dyn FnMut(&ChangeHash) -> Option<Option<Vec<ChangeHash>>>,
) -> Result<Verdict, UnknownRoster> {
    let batch = Batch::new(candidates);
    let attested = batch.covered(attestations);
    let awaiting = orgs_awaiting_heads(&batch, &attested, attestations, &mut |h| {
        applied(h).is_some()
    });
    let mut verdict = Verdict::default();
    // By place in `batch.index`, so that copies of a change count together.
    let (mut waiting, mut refused) = (vec![false; batch.len()], vec![false; batch.len()]);
    for i in batch.causal_order() {
        let c = &candidates[i];
        let deps = batch.deps_of(i);
        let waits = c.deps.iter().zip(deps).any(|(d, &j)| match j {
            OUTSIDE => applied(d).is_none(),
            j => waiting[j],
        });
        if waits || awaits_its_attestation(c, attested[i], &awaiting) {
            waiting[batch.canon[i]] = true;
            verdict.waiting.insert(c.hash);
            continue;
        }
        let outcome = if deps.iter().any(|&j| j != OUTSIDE && refused[j]) {
            Err(Refusal::DependsOnRefused)
        } else {
            let mut dep_claims = c.deps.iter().zip(deps).map(|(d, &j)| match j {
                OUTSIDE => applied(d).flatten().map(Cow::Owned),
                j => candidates[j].claim.as_deref().map(Cow::Borrowed),
            });
            judge(rule, c, attested[i], roster, &mut dep_claims)?
        };
        match outcome {
            Ok(()) => {
                verdict.accepted.insert(c.hash);
            }
            Err(reason) => {
                refused[batch.canon[i]] = true;
                verdict.refused.push((c.hash, c.org, reason));
            }
        }
    }
    Ok(verdict)
}

/// The roster versions a change's dependencies claim, in the order of its
/// `deps` (`None` for one that claims none): borrowed for changes in the
/// batch (nearly all of them when a document arrives whole), owned for
/// applied ones.
type DepClaims<'a, 'b> = dyn Iterator<Item = Option<Cow<'a, [ChangeHash]>>> + 'b;

fn judge<'a>(
    rule: Rule,
    c: &Candidate,
    attested: bool,
    roster: &mut RosterHistory,
    dep_claims: &mut DepClaims<'a, '_>,
) -> Result<Result<(), Refusal>, UnknownRoster> {
    let Some(org) = c.org else {
        return Ok(Err(Refusal::NoOrganisation));
    };
    if !attested {
        return Ok(Err(Refusal::Unattested));
    }
    if let Rule::Notes { owner } = rule
        && owner != org
    {
        return Ok(Err(Refusal::NotOwner));
    }
    let Some(claim) = &c.claim else {
        return Ok(Err(Refusal::NoRosterClaim));
    };
    for older in dep_claims.flatten() {
        if !roster.includes(claim, &older)? {
            return Ok(Err(Refusal::StaleRoster));
        }
    }
    Ok(match (rule, roster.role_at(claim, &org)?) {
        (_, None) => Err(Refusal::NotAMember),
        (_, Some(Role::DecisionMaker)) | (Rule::Notes { .. }, Some(Role::Consultee)) => Ok(()),
        (_, Some(role)) => Err(Refusal::NotEntitled(role)),
    })
}

/// Judges a batch of roster changes against `current` (the roster as this
/// replica holds it; empty for a partnership not yet held). Each change is
/// judged on the roster it depends on, so the batch is applied to a copy
/// one change at a time. The first change of a roster must be its
/// creator's, and must create a roster whose id matches the creator's key.
pub fn verify_roster_batch(
    id: PartnershipId,
    current: &AutoCommit,
    changes: &[Change],
    attestations: &[Attestation],
) -> Verdict {
    let candidates: Vec<Candidate> = changes.iter().map(Candidate::of_change).collect();
    let batch = Batch::new(&candidates);
    let attested = batch.covered(attestations);
    let mut scratch = current.clone();
    let awaiting = orgs_awaiting_heads(&batch, &attested, attestations, &mut |h| {
        scratch.get_change_by_hash(h).is_some()
    });
    let mut verdict = Verdict::default();
    let mut refused = ChangeHashSet::default();
    for i in batch.causal_order() {
        let c = &candidates[i];
        if c.deps
            .iter()
            .any(|d| scratch.get_change_by_hash(d).is_none() && !refused.contains(d))
            || awaits_its_attestation(c, attested[i], &awaiting)
        {
            verdict.waiting.insert(c.hash);
            continue;
        }
        let outcome = if c.deps.iter().any(|d| refused.contains(d)) {
            Err(Refusal::DependsOnRefused)
        } else {
            judge_roster_change(id, &mut scratch, c, attested[i], &changes[batch.canon[i]])
        };
        match outcome {
            Ok(()) => {
                verdict.accepted.insert(c.hash);
            }
            Err(reason) => {
                refused.insert(c.hash);
                verdict.refused.push((c.hash, c.org, reason));
            }
        }
    }
    verdict
}

fn judge_roster_change(
    id: PartnershipId,
    scratch: &mut AutoCommit,
    c: &Candidate,
    attested: bool,
    change: &Change,
) -> Result<(), Refusal> {
    let org = c.org.ok_or(Refusal::NoOrganisation)?;
    if !attested {
        return Err(Refusal::Unattested);
    }
    {
        let before = scratch
            .fork_at(&c.deps)
            .map_err(|_| Refusal::InvalidRoster)?;
        let was_valid = Roster::from_doc(id, before).ok().map(|r| r.view());
        match was_valid {
            // The first change: only the creator, and only a valid roster.
            None => {}
            Some(view) => match view.member(&org).map(|m| m.role) {
                None => return Err(Refusal::NotAMember),
                Some(Role::DecisionMaker) => {}
                Some(role) => return Err(Refusal::NotEntitled(role)),
            },
        }
    }
    let mut next = scratch.clone();
    let applied = catch_unwind(AssertUnwindSafe(|| {
        next.load_incremental(change.raw_bytes())
    }));
    if !matches!(applied, Ok(Ok(_))) {
        return Err(Refusal::InvalidRoster);
    }
    {
        let after = next
            .fork_at(&[c.hash])
            .map_err(|_| Refusal::InvalidRoster)?;
        let roster = Roster::from_doc(id, after).map_err(|_| Refusal::InvalidRoster)?;
        if c.deps.is_empty() && roster.creator().ok() != Some(org) {
            return Err(Refusal::InvalidRoster);
        }
    }
    *scratch = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use accord_identity::OrgSecret;
    use automerge::transaction::{CommitOptions, Transactable};
    use automerge::{ActorId, AutoCommit, ROOT};

    use super::*;

    #[test]
    fn candidates_of_a_run_parse_each_claim_line_as_one_at_a_time_would() {
        let org = OrgSecret::from_seed([3; 32]);
        let mut doc = AutoCommit::new().with_actor(ActorId::from(
            crate::new_document_actor(&org, [0; 8]).to_bytes(),
        ));
        let first = vec![ChangeHash([1; 32])];
        let second = vec![ChangeHash([2; 32]), ChangeHash([3; 32])];
        let messages = [
            claim::with_claim("a", &first),
            claim::with_claim("a", &first),
            "no claim".to_owned(),
            claim::with_claim("b", &second),
            claim::with_claim("a", &first),
        ];
        for (i, message) in messages.iter().enumerate() {
            doc.put(ROOT, "n", i as i64).unwrap();
            doc.commit_with(CommitOptions::default().with_message(message.clone()));
        }
        doc.put(ROOT, "n", -1).unwrap();
        doc.commit();
        let metas = doc.get_changes_meta(&[]);
        let one_by_one: Vec<Candidate> = metas.iter().map(Candidate::of_meta).collect();
        assert_eq!(Candidate::of_metas(&metas), one_by_one);
        let claims: Vec<Option<Vec<ChangeHash>>> =
            one_by_one.into_iter().map(|c| c.claim).collect();
        assert_eq!(
            claims,
            vec![
                Some(first.clone()),
                Some(first.clone()),
                None,
                Some(second),
                Some(first),
                None
            ]
        );
    }

    #[test]
    fn a_roster_version_is_found_whatever_the_order_of_its_heads() {
        let org = OrgSecret::from_seed([4; 32]);
        let (roster, _) = crate::Roster::create(
            "P",
            &org.public(),
            "Org",
            [9; 16],
            crate::new_document_actor(&org, [0; 8]),
            1,
        )
        .unwrap();
        let id = roster.id();
        // Two concurrent changes, so the version has two heads.
        let mut doc = roster.doc().clone();
        let mut other = doc.fork().with_actor(ActorId::from(&[1u8; 16][..]));
        doc.put(ROOT, "x", 1).unwrap();
        other.put(ROOT, "y", 2).unwrap();
        doc.merge(&mut other).unwrap();
        let heads = doc.get_heads();
        assert_eq!(heads.len(), 2);
        let mut history = RosterHistory::new(id, doc);
        let mut reversed = heads.clone();
        reversed.reverse();
        let a = history.view_at(&heads).unwrap().map(|v| v.name.clone());
        let b = history.view_at(&reversed).unwrap().map(|v| v.name.clone());
        assert_eq!(a, Some("P".to_owned()));
        assert_eq!(a, b);
        assert_eq!(
            history.view_at(&[ChangeHash([7; 32])]).err(),
            Some(UnknownRoster)
        );
    }
}
