/// Everything that can go wrong reading or editing a partnership document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("{text:?} is not a valid {what}")]
    BadId { what: &'static str, text: String },
    #[error("unknown document kind {0:?}: use mou, values or dispute")]
    UnknownKind(String),
    #[error("{kind} documents have no field {path:?}; fields: {known}")]
    UnknownField {
        kind: String,
        path: String,
        known: String,
    },
    #[error("{value:?} is not valid for {field}: expected {expected}")]
    BadValue {
        field: String,
        value: String,
        expected: String,
    },
    #[error("{path:?} is {what}; {hint}")]
    WrongShape {
        path: String,
        what: &'static str,
        hint: String,
    },
    #[error("{list} has no item {item} (it has {len} items; items are numbered from 1)")]
    NoSuchItem {
        list: String,
        item: String,
        len: usize,
    },
    #[error(
        "no member of this partnership matches {0:?}: use a name, a fingerprint or a public key"
    )]
    UnknownMember(String),
    #[error("{selector:?} matches several members: {candidates}; be more specific")]
    AmbiguousMember {
        selector: String,
        candidates: String,
    },
    #[error("{0} is already a member of this partnership")]
    AlreadyMember(String),
    #[error(
        "a partnership needs at least one decision maker: make another member a decision maker first"
    )]
    LastDecisionMaker,
    #[error("the document is not an Accord {expected}: {detail}")]
    Malformed {
        expected: &'static str,
        detail: String,
    },
    #[error("the Markdown could not be read back: {0}")]
    Markdown(String),
    #[error("Automerge refused the operation: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}
