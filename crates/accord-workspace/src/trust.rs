//! Comments, sign-offs, sign-off status and membership removal: the parts
//! of the workspace that write an organisation's own notes document.

use accord_identity::OrgKey;
use accord_model::{Comment, DocId, Notes, PartnershipId, Role, RosterView, SignOff};
use accord_store::DocInfo;

use crate::persist::{self, LogCounters, Tx};
use crate::workspace::Workspace;
use crate::{WorkspaceError, random_bytes, unix_now};

/// A comment as shown: who wrote it and whether it is resolved.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CommentView {
    #[serde(flatten)]
    pub comment: Comment,
    pub author_name: String,
    /// The organisation that resolved it, if it is resolved.
    pub resolved_by: Option<String>,
}

/// Where one member stands on the current version of an agreement.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignOffState {
    /// Signed exactly the current version.
    Current,
    /// Signed an earlier version; the text has changed since.
    Earlier,
    /// Has not signed any version.
    NotSigned,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct MemberStatus {
    pub name: String,
    pub key: OrgKey,
    pub role: Role,
    pub state: SignOffState,
    /// Their latest valid sign-off of this agreement.
    pub signoff: Option<SignOff>,
}

impl Workspace {
    /// Removes a member from the partnership (decision makers only).
    pub fn remove_member(
        &self,
        partnership: &str,
        member: &str,
    ) -> Result<RosterView, WorkspaceError> {
        let key = self.partnership(partnership)?.resolve_member(member)?.key;
        self.edit_roster(
            partnership,
            "remove members",
            &format!("Removed {}", key.fingerprint()),
            |roster| roster.remove_member(&key),
        )
    }

    /// Comments on `field` of an agreement (decision makers and consultees).
    pub fn comment(
        &self,
        selector: &str,
        field: &str,
        text: &str,
        quote: Option<&str>,
    ) -> Result<Comment, WorkspaceError> {
        let doc = self.document(selector)?;
        let roster = self.load_roster(doc.partnership)?.0.view();
        self.require_role(&roster, "comment", &[Role::DecisionMaker, Role::Consultee])?;
        accord_model::parse_path(doc.kind, field)?;
        let id = data_encoding::BASE32_DNSSEC.encode(&random_bytes::<8>()?);
        let comment = Comment {
            id,
            author: self.whoami().key,
            doc: doc.id,
            field: field.to_owned(),
            quote: quote.map(str::to_owned).filter(|q| !q.trim().is_empty()),
            text: text.trim().to_owned(),
            created: unix_now(),
        };
        self.write_notes(doc.partnership, &roster, "Commented", |notes| {
            notes.add_comment(&comment)
        })?;
        Ok(comment)
    }

    /// Marks a comment resolved (its author or a decision maker).
    pub fn resolve_comment(&self, selector: &str, comment_id: &str) -> Result<(), WorkspaceError> {
        let doc = self.document(selector)?;
        let roster = self.load_roster(doc.partnership)?.0.view();
        let me = self.whoami().key;
        let comment = self
            .comments(selector)?
            .into_iter()
            .find(|c| c.comment.id.eq_ignore_ascii_case(comment_id.trim()))
            .ok_or_else(|| WorkspaceError::NoSuchComment(comment_id.to_owned()))?;
        if comment.comment.author != me {
            self.require_decision_maker(&roster, "resolve other organisations' comments")?;
        }
        self.write_notes(doc.partnership, &roster, "Resolved a comment", |notes| {
            notes.resolve(&comment.comment.id, unix_now())
        })
    }

    /// Every comment on an agreement, oldest first.
    pub fn comments(&self, selector: &str) -> Result<Vec<CommentView>, WorkspaceError> {
        let doc = self.document(selector)?;
        let roster = self.display_roster(doc.partnership)?;
        let all = self.all_notes(doc.partnership, &roster)?;
        let mut resolutions = std::collections::BTreeMap::new();
        for notes in &all {
            let resolver = notes.owner();
            let may_resolve_any = roster
                .member(&resolver)
                .is_some_and(|m| m.role == Role::DecisionMaker);
            for (id, _) in notes.resolutions() {
                resolutions
                    .entry(id)
                    .or_insert_with(Vec::new)
                    .push((resolver, may_resolve_any));
            }
        }
        let mut out: Vec<CommentView> = all
            .iter()
            .flat_map(|n| n.comments())
            .filter(|c| c.doc == doc.id)
            .map(|c| {
                let resolved_by = resolutions.get(&c.id).and_then(|by| {
                    by.iter()
                        .find(|(who, any)| *any || *who == c.author)
                        .map(|(who, _)| roster.display_name(who))
                });
                CommentView {
                    author_name: roster.display_name(&c.author),
                    comment: c,
                    resolved_by,
                }
            })
            .collect();
        out.sort_by_key(|c| (c.comment.created, c.comment.id.clone()));
        Ok(out)
    }

    /// Signs the current version of an agreement (decision makers only).
    pub fn sign(&self, selector: &str, statement: &str) -> Result<SignOff, WorkspaceError> {
        let doc = self.document(selector)?;
        let roster = self.load_roster(doc.partnership)?.0.view();
        self.require_decision_maker(&roster, "sign off agreements")?;
        let (mut agreement, _) = self.load_agreement(doc.id)?;
        let heads = agreement.doc_mut().get_heads();
        let signoff = SignOff::sign(
            self.replica().secret(),
            doc.partnership,
            doc.id,
            &heads,
            statement.trim(),
            unix_now(),
        );
        self.write_notes(doc.partnership, &roster, "Signed off", |notes| {
            notes.add_signoff(&signoff)
        })?;
        Ok(signoff)
    }

    /// Each member's sign-off state for the current version of an agreement.
    pub fn status(&self, selector: &str) -> Result<Vec<MemberStatus>, WorkspaceError> {
        let doc = self.document(selector)?;
        let roster = self.load_roster(doc.partnership)?.0.view();
        let (mut agreement, _) = self.load_agreement(doc.id)?;
        let mut current = agreement.doc_mut().get_heads();
        current.sort();
        let signoffs = self.signoffs(doc.partnership, doc.id, &roster)?;
        Ok(roster
            .members
            .iter()
            .map(|m| {
                let latest = signoffs
                    .iter()
                    .filter(|s| s.org == m.key)
                    .max_by_key(|s| s.at)
                    .cloned();
                let state = match &latest {
                    Some(s) if s.heads == current => SignOffState::Current,
                    Some(_) => SignOffState::Earlier,
                    None => SignOffState::NotSigned,
                };
                MemberStatus {
                    name: m.name.clone(),
                    key: m.key,
                    role: m.role,
                    state,
                    signoff: latest,
                }
            })
            .collect())
    }

    /// Valid sign-offs of `doc`: signature checks out and the signer is a
    /// decision maker of the partnership.
    pub fn signoffs(
        &self,
        p: PartnershipId,
        doc: DocId,
        roster: &RosterView,
    ) -> Result<Vec<SignOff>, WorkspaceError> {
        Ok(self
            .all_notes(p, roster)?
            .iter()
            .flat_map(|n| n.signoffs())
            .filter(|s| s.doc == doc && s.partnership == p && s.verify())
            .filter(|s| {
                roster
                    .member(&s.org)
                    .is_some_and(|m| m.role == Role::DecisionMaker)
            })
            .collect())
    }

    fn require_role(
        &self,
        roster: &RosterView,
        action: &str,
        allowed: &[Role],
    ) -> Result<(), WorkspaceError> {
        match roster.member(&self.whoami().key) {
            Some(m) if allowed.contains(&m.role) => Ok(()),
            Some(m) => Err(WorkspaceError::NotEntitled {
                action: action.to_owned(),
                role: m.role.to_string(),
                partnership: roster.name.clone(),
            }),
            None => Err(WorkspaceError::NotAMember(roster.name.clone())),
        }
    }

    /// Every member's notes document that this replica holds.
    fn all_notes(
        &self,
        p: PartnershipId,
        roster: &RosterView,
    ) -> Result<Vec<Notes>, WorkspaceError> {
        let mut out = Vec::new();
        for member in &roster.members {
            let id = Notes::doc_id(p, &member.key);
            if let Some((_, doc, _)) = persist::load(self.replica(), id, self.actor.clone())?
                && let Ok(notes) = Notes::from_doc(p, &member.key, doc, &roster.heads)
            {
                out.push(notes);
            }
        }
        Ok(out)
    }

    /// Applies `edit` to this organisation's notes (creating them if need
    /// be) and commits, claiming the current roster version.
    fn write_notes<F>(
        &self,
        p: PartnershipId,
        roster: &RosterView,
        message: &str,
        edit: F,
    ) -> Result<(), WorkspaceError>
    where
        F: FnOnce(&mut Notes) -> Result<(), accord_model::ModelError>,
    {
        let me = self.whoami();
        let id = Notes::doc_id(p, &me.key);
        let existing = persist::load(self.replica(), id, self.actor.clone())?;
        let is_new = existing.is_none();
        let (mut notes, mut counters) = match existing {
            Some((_, doc, counters)) => {
                (Notes::from_doc(p, &me.key, doc, &roster.heads)?, counters)
            }
            None => (
                Notes::create(p, &me.key, self.actor.clone(), &roster.heads)?,
                LogCounters::default(),
            ),
        };
        edit(&mut notes)?;
        let Some(change) = notes.commit(message, unix_now()) else {
            return Ok(());
        };
        let mut tx = Tx::default();
        if is_new {
            // Created by this edit: stored whole, in the same transaction.
            let info = DocInfo {
                partnership: *p.as_bytes(),
                kind: "notes".to_owned(),
                title: format!("Notes of {}", me.name),
            };
            persist::put_new(&mut tx, id, info, notes.doc_mut());
        } else {
            counters.record(&mut tx, id, notes.doc_mut(), change, self.policy);
        }
        self.finish(tx)
    }
}
