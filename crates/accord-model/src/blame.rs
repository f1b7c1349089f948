//! Who wrote which words: each character of a text attributed to the
//! organisation whose change inserted it.

use accord_identity::OrgKey;
use automerge::{AutoCommit, ObjId, ReadDoc, ScalarValueRef, ValueRef};

/// A run of consecutive characters inserted by one organisation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BlameSpan {
    /// `None` when the inserting actor id names no organisation.
    pub org: Option<OrgKey>,
    pub text: String,
}

/// The text object `obj` of `doc`, split into spans by inserting organisation.
pub fn blame_text(doc: &AutoCommit, obj: &ObjId) -> Vec<BlameSpan> {
    let mut spans: Vec<BlameSpan> = Vec::new();
    for item in doc.list_range(obj, ..) {
        let ch = match &item.value {
            ValueRef::Scalar(ScalarValueRef::Str(s)) => s.to_string(),
            _ => continue,
        };
        let org = match item.id() {
            automerge::ObjId::Id(_, actor, _) => OrgKey::from_actor_bytes(actor.to_bytes()),
            automerge::ObjId::Root => None,
        };
        match spans.last_mut() {
            Some(last) if last.org == org => last.text.push_str(&ch),
            _ => spans.push(BlameSpan { org, text: ch }),
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_identity::OrgSecret;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ObjType, ROOT};

    fn actor(n: u8) -> ActorId {
        ActorId::from(OrgSecret::from_seed([n; 32]).actor_bytes([0; 8]))
    }

    #[test]
    fn concurrent_edits_are_attributed_to_their_writers() {
        let mut a = AutoCommit::new().with_actor(actor(1));
        let text = a.put_object(ROOT, "purpose", ObjType::Text).unwrap();
        a.splice_text(&text, 0, 0, "Shared aims.").unwrap();
        a.commit();
        let mut b = a.fork().with_actor(actor(2));
        let mut c = a.fork().with_actor(actor(3));
        b.splice_text(&text, 0, 0, "B: ").unwrap();
        c.splice_text(&text, 12, 0, " C adds this.").unwrap();
        a.merge(&mut b).unwrap();
        a.merge(&mut c).unwrap();
        let spans = blame_text(&a, &text);
        let who = |n: u8| Some(OrgSecret::from_seed([n; 32]).public());
        assert_eq!(
            spans,
            vec![
                BlameSpan {
                    org: who(2),
                    text: "B: ".into()
                },
                BlameSpan {
                    org: who(1),
                    text: "Shared aims.".into()
                },
                BlameSpan {
                    org: who(3),
                    text: " C adds this.".into()
                },
            ]
        );
    }
}
