use accord_model::ModelError;
use accord_store::StoreError;

/// What went wrong, in terms a person can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkspaceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("no partnership matches {0:?}: see `accord partnership list`")]
    NoSuchPartnership(String),
    #[error(
        "{selector:?} matches several partnerships: {candidates}; use more of the name or the id"
    )]
    AmbiguousPartnership {
        selector: String,
        candidates: String,
    },
    #[error("no document matches {0:?}: see `accord doc list`")]
    NoSuchDocument(String),
    #[error(
        "{selector:?} matches several documents: {candidates}; use more of the title or the id"
    )]
    AmbiguousDocument {
        selector: String,
        candidates: String,
    },
    #[error("only decision makers can {action}; your organisation is a {role} in {partnership:?}")]
    NotEntitled {
        action: String,
        role: String,
        partnership: String,
    },
    #[error("your organisation is not a member of {0:?}")]
    NotAMember(String),
    #[error(
        "the stored document {id} is damaged: {detail}; run `accord repair` to rebuild the replica from what is intact and from your partners or relay"
    )]
    DamagedDocument { id: String, detail: String },
    #[error("{0:?} is not a websocket URL: use ws://HOST:PORT (or wss://)")]
    BadUrl(String),
    #[error("this is not a valid invite code: copy the whole line that starts with accord-invite:")]
    BadInvite,
    #[error(
        "this invite is for another organisation (fingerprint {fingerprint}); check `accord whoami` and ask for a new invite"
    )]
    InviteForSomeoneElse { fingerprint: String },
    #[error(
        "no such version {0}; use current, a history position, a date (YYYY-MM-DD) or a member who signed"
    )]
    NoSuchVersion(String),
    #[error(
        "this file is not an Accord export that can be checked: {0}; export it again with `accord export DOC --format md`"
    )]
    BadExport(String),
    #[error("no comment {0:?} on this document: see `accord comment list DOC`")]
    NoSuchComment(String),
    #[error(
        "the organisation's name could not be read from the damaged replica: run `accord repair --org NAME` with the name partners know you by"
    )]
    RepairNeedsName,
    #[error("could not get randomness from the operating system: {0}")]
    Randomness(String),
}
