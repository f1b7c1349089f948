use std::path::Path;
use std::sync::Arc;

use accord_identity::{Fingerprint, OrgKey, OrgSecret};
use accord_model::automerge::{ActorId, ChangeHash};
use accord_model::{
    Agreement, AgreementView, DocId, DocKind, HistoryEntry, ModelError, PartnershipId, Role,
    Roster, RosterView, history, new_document_actor,
};
use accord_store::{DocInfo, Replica};

use crate::live::LiveDocument;
use crate::persist::{self, CommitListener, CompactionPolicy, LogCounters, Tx};
use crate::resolve::{Miss, resolve};
use crate::{WorkspaceError, random_bytes, unix_now};

const ROSTER_KIND: &str = "roster";

/// The organisation that owns this replica, as shown to people.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OrgInfo {
    #[serde(rename = "org")]
    pub name: String,
    pub key: OrgKey,
    #[serde(serialize_with = "display")]
    pub fingerprint: Fingerprint,
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// An agreement as listed: where it lives and what it is called.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DocumentRef {
    pub id: DocId,
    pub kind: DocKind,
    pub title: String,
    pub partnership: PartnershipId,
    pub partnership_name: String,
}

/// One organisation's replica, opened for reading and writing.
pub struct Workspace {
    replica: Arc<Replica>,
    /// Fresh per process: the org key plus a random suffix.
    pub(crate) actor: ActorId,
    pub(crate) policy: CompactionPolicy,
    listener: std::sync::RwLock<Option<CommitListener>>,
}

impl Workspace {
    /// Creates the replica and the organisation's key in `dir`.
    pub fn init(dir: &Path, org_name: &str) -> Result<Self, WorkspaceError> {
        let replica = Replica::create(dir, org_name.trim(), random_bytes()?, unix_now())?;
        Self::with_replica(replica)
    }

    pub fn open(dir: &Path) -> Result<Self, WorkspaceError> {
        Self::with_replica(Replica::open(dir)?)
    }

    pub(crate) fn with_replica(replica: Replica) -> Result<Self, WorkspaceError> {
        let actor = new_document_actor(replica.secret(), random_bytes()?);
        Ok(Self {
            replica: Arc::new(replica),
            actor,
            policy: CompactionPolicy::default(),
            listener: std::sync::RwLock::new(None),
        })
    }

    pub fn with_compaction_policy(mut self, policy: CompactionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Calls `listener` after every durable write with what was committed
    /// (the node uses this to push local edits to partners).
    pub fn set_commit_listener(&self, listener: CommitListener) {
        if let Ok(mut slot) = self.listener.write() {
            *slot = Some(listener);
        }
    }

    /// Commits durably, then tells the listener.
    pub(crate) fn finish(&self, mut tx: Tx) -> Result<(), WorkspaceError> {
        tx.seal(self.replica.secret());
        self.replica.commit(tx.batch)?;
        let listener = self.listener.read().ok().and_then(|l| l.clone());
        if let Some(listener) = listener
            && !tx.committed.is_empty()
        {
            listener(&tx.committed);
        }
        Ok(())
    }

    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    pub fn whoami(&self) -> OrgInfo {
        let key = self.replica.secret().public();
        OrgInfo {
            name: self.replica.org_name().to_owned(),
            key,
            fingerprint: key.fingerprint(),
        }
    }

    /// Starts a partnership with this organisation as lead partner.
    pub fn create_partnership(&self, name: &str) -> Result<RosterView, WorkspaceError> {
        let me = self.whoami();
        let (mut roster, _) = Roster::create(
            name.trim(),
            &me.key,
            &me.name,
            random_bytes()?,
            self.actor.clone(),
            unix_now(),
        )?;
        let view = roster.view();
        let mut batch = Tx::default();
        persist::put_new(
            &mut batch,
            view.id.roster_doc(),
            roster_info(&view),
            roster.doc_mut(),
        );
        self.finish(batch)?;
        Ok(view)
    }

    pub fn partnerships(&self) -> Result<Vec<RosterView>, WorkspaceError> {
        let mut out = Vec::new();
        for (key, info) in self.replica.documents()? {
            if info.kind == ROSTER_KIND {
                out.push(self.load_roster(PartnershipId::from_bytes(key))?.0.view());
            }
        }
        out.sort_by_key(|a| a.name.to_lowercase());
        Ok(out)
    }

    pub fn partnership(&self, selector: &str) -> Result<RosterView, WorkspaceError> {
        resolve(
            selector,
            self.partnerships()?,
            |r| r.id.to_string(),
            |r| r.name.clone(),
        )
        .map_err(|miss| match miss {
            Miss::None => WorkspaceError::NoSuchPartnership(selector.to_owned()),
            Miss::Many(candidates) => WorkspaceError::AmbiguousPartnership {
                selector: selector.to_owned(),
                candidates,
            },
        })
    }

    /// Adds a member, and creates its entries in every per-organisation
    /// section of the partnership's agreements in the same transaction, so
    /// partners' first edits of those entries never race to create them.
    pub fn add_member(
        &self,
        partnership: &str,
        name: &str,
        key: OrgKey,
        role: Role,
    ) -> Result<RosterView, WorkspaceError> {
        let pid = self.partnership(partnership)?.id;
        let (mut roster, mut counters) = self.load_roster(pid)?;
        self.require_decision_maker(&roster.view(), "add members")?;
        let now = unix_now();
        roster.add_member(&key, name.trim(), role, now)?;
        let mut batch = Tx::default();
        if let Some(change) = roster.commit(&format!("Added {name:?} as {role}"), now) {
            counters.record(
                &mut batch,
                pid.roster_doc(),
                roster.doc_mut(),
                change,
                self.policy,
            );
        }
        let view = roster.view();
        for entry in &view.documents {
            let (agreement, mut counters) = self.load_agreement(entry.id)?;
            let mut agreement = agreement.under_roster(&view.heads);
            agreement.ensure_org_entries(&key)?;
            if let Some(change) = agreement.commit(&format!("Added entries for {name:?}"), now) {
                counters.record(
                    &mut batch,
                    entry.id,
                    agreement.doc_mut(),
                    change,
                    self.policy,
                );
            }
        }
        self.finish(batch)?;
        Ok(view)
    }

    pub fn set_role(
        &self,
        partnership: &str,
        member: &str,
        role: Role,
    ) -> Result<RosterView, WorkspaceError> {
        let key = self.partnership(partnership)?.resolve_member(member)?.key;
        self.edit_roster(
            partnership,
            "change roles",
            &format!("Set role of {} to {role}", key.fingerprint()),
            |roster| roster.set_role(&key, role),
        )
    }

    /// Creates an agreement from its template and lists it in the roster, in one transaction.
    pub fn create_document(
        &self,
        partnership: &str,
        kind: DocKind,
        title: &str,
    ) -> Result<DocumentRef, WorkspaceError> {
        let id = DocId::random(random_bytes()?);
        let pid = self.partnership(partnership)?.id;
        let (mut roster, mut counters) = self.load_roster(pid)?;
        let view = roster.view();
        self.require_decision_maker(&view, "create agreements")?;
        let now = unix_now();
        let (mut agreement, _) =
            Agreement::create(id, kind, pid, title.trim(), self.actor.clone(), &view, now)?;
        roster.add_document(id, kind, &agreement.title())?;
        let mut batch = Tx::default();
        let info = DocInfo {
            partnership: *pid.as_bytes(),
            kind: kind.as_str().to_owned(),
            title: agreement.title(),
        };
        persist::put_new(&mut batch, id, info, agreement.doc_mut());
        if let Some(change) = roster.commit(
            &format!("Listed {} {:?}", kind.label(), agreement.title()),
            now,
        ) {
            counters.record(
                &mut batch,
                pid.roster_doc(),
                roster.doc_mut(),
                change,
                self.policy,
            );
        }
        self.finish(batch)?;
        Ok(DocumentRef {
            id,
            kind,
            title: agreement.title(),
            partnership: pid,
            partnership_name: view.name,
        })
    }

    /// Agreements of one partnership, or of all of them.
    pub fn documents(&self, partnership: Option<&str>) -> Result<Vec<DocumentRef>, WorkspaceError> {
        let rosters = match partnership {
            Some(selector) => vec![self.partnership(selector)?],
            None => self.partnerships()?,
        };
        Ok(rosters
            .into_iter()
            .flat_map(|r| {
                let name = r.name.clone();
                r.documents.into_iter().map(move |d| DocumentRef {
                    id: d.id,
                    kind: d.kind,
                    title: d.title,
                    partnership: r.id,
                    partnership_name: name.clone(),
                })
            })
            .collect())
    }

    pub fn document(&self, selector: &str) -> Result<DocumentRef, WorkspaceError> {
        resolve(
            selector,
            self.documents(None)?,
            |d| d.id.to_string(),
            |d| d.title.clone(),
        )
        .map_err(|miss| match miss {
            Miss::None => WorkspaceError::NoSuchDocument(selector.to_owned()),
            Miss::Many(candidates) => WorkspaceError::AmbiguousDocument {
                selector: selector.to_owned(),
                candidates,
            },
        })
    }

    /// Reads an agreement at its current version, with its roster.
    pub fn view(&self, selector: &str) -> Result<(AgreementView, RosterView), WorkspaceError> {
        let doc = self.document(selector)?;
        let roster = self.display_roster(doc.partnership)?;
        let (agreement, _) = self.load_agreement(doc.id)?;
        Ok((agreement.view(&roster), roster))
    }

    /// Reads an agreement as it was at `base` (a version someone started
    /// editing from), with the current roster.
    pub fn view_at(
        &self,
        selector: &str,
        base: &[ChangeHash],
    ) -> Result<(AgreementView, RosterView), WorkspaceError> {
        let doc = self.document(selector)?;
        let roster = self.load_roster(doc.partnership)?.0.view();
        let (mut agreement, _) = self.load_agreement(doc.id)?;
        let old = agreement
            .doc_mut()
            .fork_at(base)
            .map_err(ModelError::from)?;
        let old = Agreement::from_doc(doc.id, old)?;
        Ok((old.view(&roster), roster))
    }

    /// Applies `edit` to an agreement and makes the result durable. Returns
    /// the new change's hash, or `None` when the edit changed nothing.
    pub fn edit<F>(
        &self,
        selector: &str,
        message: &str,
        edit: F,
    ) -> Result<Option<String>, WorkspaceError>
    where
        F: FnOnce(&mut Agreement, &RosterView) -> Result<(), ModelError>,
    {
        self.edit_at(selector, None, message, edit)
    }

    /// Like [`edit`](Self::edit), but applies the edit to the version `base`
    /// (the one a person started editing from, e.g. in `doc edit`), then
    /// merges it into the current version. Changes that arrived meanwhile
    /// are kept instead of being overwritten by the person's older copy.
    pub fn edit_at<F>(
        &self,
        selector: &str,
        base: Option<&[ChangeHash]>,
        message: &str,
        edit: F,
    ) -> Result<Option<String>, WorkspaceError>
    where
        F: FnOnce(&mut Agreement, &RosterView) -> Result<(), ModelError>,
    {
        let doc = self.document(selector)?;
        let (mut roster, mut roster_counters) = self.load_roster(doc.partnership)?;
        let view = roster.view();
        self.require_decision_maker(&view, "edit agreements")?;
        let (agreement, mut counters) = self.load_agreement(doc.id)?;
        let mut agreement = agreement.under_roster(&view.heads);
        let now = unix_now();
        let change = match base {
            None => {
                edit(&mut agreement, &view)?;
                agreement.commit(message, now)
            }
            Some(base) => {
                // A fresh actor: this process's actor may already have
                // changes after `base`, and sequence numbers must not repeat.
                let actor = new_document_actor(self.replica.secret(), random_bytes()?);
                let forked = agreement
                    .doc_mut()
                    .fork_at(base)
                    .map_err(ModelError::from)?
                    .with_actor(actor);
                let mut fork = Agreement::from_doc(doc.id, forked)?.under_roster(&view.heads);
                edit(&mut fork, &view)?;
                let change = fork.commit(message, now);
                if let Some(change) = &change {
                    agreement
                        .doc_mut()
                        .load_incremental(&change.bytes)
                        .map_err(ModelError::from)?;
                }
                change
            }
        };
        let Some(change) = change else {
            return Ok(None);
        };
        let hash = change.hash.to_string();
        let mut batch = Tx::default();
        counters.record(&mut batch, doc.id, agreement.doc_mut(), change, self.policy);
        let title = agreement.title();
        if title != doc.title {
            roster.set_document_title(doc.id, &title)?;
            if let Some(change) =
                roster.commit(&format!("Renamed {:?} to {title:?}", doc.title), now)
            {
                roster_counters.record(
                    &mut batch,
                    doc.partnership.roster_doc(),
                    roster.doc_mut(),
                    change,
                    self.policy,
                );
            }
            let info = DocInfo {
                partnership: *doc.partnership.as_bytes(),
                kind: doc.kind.as_str().to_owned(),
                title,
            };
            batch.set_info(*doc.id.as_bytes(), info);
        }
        self.finish(batch)?;
        Ok(Some(hash))
    }

    /// Every change of an agreement, oldest first, with what it changed.
    pub fn history(
        &self,
        selector: &str,
    ) -> Result<(DocumentRef, RosterView, Vec<HistoryEntry>), WorkspaceError> {
        let doc = self.document(selector)?;
        let roster = self.display_roster(doc.partnership)?;
        let (mut agreement, _) = self.load_agreement(doc.id)?;
        let attestations = self.attestations(doc.id)?;
        let entries = history(agreement.doc_mut(), &attestations);
        Ok((doc, roster, entries))
    }

    /// The standard Automerge binary of an agreement: loadable by any Automerge.
    pub fn export_automerge(&self, selector: &str) -> Result<Vec<u8>, WorkspaceError> {
        let doc = self.document(selector)?;
        Ok(self.load_agreement(doc.id)?.0.doc_mut().save())
    }

    /// Opens an agreement for a long editing session (the node, benchmarks).
    pub fn open_live(&self, selector: &str) -> Result<LiveDocument, WorkspaceError> {
        let doc = self.document(selector)?;
        let roster = self.load_roster(doc.partnership)?.0.view();
        self.require_decision_maker(&roster, "edit agreements")?;
        let (agreement, counters) = self.load_agreement(doc.id)?;
        Ok(LiveDocument::new(
            self.replica.commit_queue(),
            OrgSecret::from_seed(self.replica.secret().seed()),
            agreement.under_roster(&roster.heads),
            roster,
            counters,
            self.policy,
        ))
    }

    pub(crate) fn edit_roster<F>(
        &self,
        partnership: &str,
        action: &str,
        message: &str,
        edit: F,
    ) -> Result<RosterView, WorkspaceError>
    where
        F: FnOnce(&mut Roster) -> Result<(), ModelError>,
    {
        let pid = self.partnership(partnership)?.id;
        let (mut roster, mut counters) = self.load_roster(pid)?;
        self.require_decision_maker(&roster.view(), action)?;
        edit(&mut roster)?;
        if let Some(change) = roster.commit(message, unix_now()) {
            let mut batch = Tx::default();
            counters.record(
                &mut batch,
                pid.roster_doc(),
                roster.doc_mut(),
                change,
                self.policy,
            );
            self.finish(batch)?;
        }
        Ok(roster.view())
    }

    pub(crate) fn require_decision_maker(
        &self,
        roster: &RosterView,
        action: &str,
    ) -> Result<(), WorkspaceError> {
        let me = self.replica.secret().public();
        match roster.member(&me) {
            Some(m) if m.role == Role::DecisionMaker => Ok(()),
            Some(m) => Err(WorkspaceError::NotEntitled {
                action: action.to_owned(),
                role: m.role.to_string(),
                partnership: roster.name.clone(),
            }),
            None => Err(WorkspaceError::NotAMember(roster.name.clone())),
        }
    }

    pub(crate) fn load_roster(
        &self,
        id: PartnershipId,
    ) -> Result<(Roster, LogCounters), WorkspaceError> {
        let (_, doc, counters) = persist::load(&self.replica, id.roster_doc(), self.actor.clone())?
            .ok_or_else(|| WorkspaceError::NoSuchPartnership(id.to_string()))?;
        Ok((Roster::from_doc(id, doc)?, counters))
    }

    /// The roster of `id` for showing who did what: with the names of
    /// former members (see [`Roster::display_view`]).
    pub(crate) fn display_roster(&self, id: PartnershipId) -> Result<RosterView, WorkspaceError> {
        Ok(self.load_roster(id)?.0.display_view())
    }

    pub(crate) fn load_agreement(
        &self,
        id: DocId,
    ) -> Result<(Agreement, LogCounters), WorkspaceError> {
        let (_, doc, counters) = persist::load(&self.replica, id, self.actor.clone())?
            .ok_or_else(|| WorkspaceError::NoSuchDocument(id.to_string()))?;
        Ok((Agreement::from_doc(id, doc)?, counters))
    }
}

fn roster_info(view: &RosterView) -> DocInfo {
    DocInfo {
        partnership: *view.id.as_bytes(),
        kind: ROSTER_KIND.to_owned(),
        title: view.name.clone(),
    }
}
