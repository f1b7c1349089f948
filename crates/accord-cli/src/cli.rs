//! The command-line grammar. Every command and flag carries help written
//! for someone using Accord for the first time.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "accord",
    version,
    about = "Keep your partnership's agreements (MOU, shared values, dispute process) with your partners, offline-first.",
    long_about = "Accord keeps the agreements that hold a partnership together: the Memorandum of Understanding, \
the shared values and ground rules, and the dispute-resolution process. Each organisation keeps a full copy \
on its own machine; every change is recorded with the organisation that made it.\n\n\
Start with `accord init --org \"Your organisation\"`, then `accord partnership new \"Name\"` and \
`accord doc new PARTNERSHIP --kind mou --title \"Our MOU\"`.",
    after_help = "Data folder: --data DIR, else $ACCORD_DATA, else your platform's data folder (e.g. ~/.local/share/accord)."
)]
pub struct Cli {
    /// The folder holding this organisation's replica.
    #[arg(long, global = true, env = "ACCORD_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create this organisation's replica and signing key (once per organisation).
    Init {
        /// Your organisation's name, as partners will see it.
        #[arg(long, value_name = "NAME")]
        org: String,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Show this organisation's name, public key and fingerprint (give the key to partners).
    Whoami(JsonFlag),
    /// Start, list and inspect partnerships.
    #[command(subcommand)]
    Partnership(PartnershipCommand),
    /// Add members to a partnership or change their role (decision makers only).
    #[command(subcommand)]
    Member(MemberCommand),
    /// Create, read and edit agreements.
    #[command(subcommand)]
    Doc(DocCommand),
    /// Every change to an agreement: when, which organisation, and what changed.
    History {
        /// The agreement: its id, or the start of its title.
        doc: String,
        /// Only changes by this organisation (name or fingerprint).
        #[arg(long, value_name = "ORG")]
        org: Option<String>,
        /// Only changes made on or after this day (YYYY-MM-DD, by the writer's clock).
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Comment on a field of an agreement (decision makers and consultees).
    Comment {
        /// The agreement: its id, or the start of its title.
        doc: String,
        /// The field, as in `accord doc show` (e.g. purpose, milestones.2).
        field: String,
        /// What you want to say.
        text: String,
        /// The words you are commenting on, if only part of the text.
        #[arg(long)]
        quote: Option<String>,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// List an agreement's comments, or resolve one.
    Comments {
        /// The agreement: its id, or the start of its title.
        doc: String,
        /// Mark this comment (its id) resolved.
        #[arg(long, value_name = "ID")]
        resolve: Option<String>,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// The text of a field with each span attributed to the organisation that wrote it.
    Blame {
        /// The agreement: its id, or the start of its title.
        doc: String,
        /// A text field, e.g. purpose or roles.ORG.
        field: String,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Word-level differences between two versions of an agreement.
    ///
    /// A version is `current`, a history position (3 = after the third
    /// change), a date (2026-11-01) or a member who signed (its latest sign-off).
    Diff {
        /// The agreement: its id, or the start of its title.
        doc: String,
        /// The older version (default: the first change).
        from: Option<String>,
        /// The newer version (default: current).
        to: Option<String>,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Per organisation: changes, documents touched, last activity, sign-offs, refusals.
    Audit {
        /// The partnership: its id, or the start of its name.
        partnership: String,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Check an exported Markdown copy against this replica's record.
    Verify {
        /// The exported file (from `accord export DOC --format md`).
        file: PathBuf,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Sign off the current version of an agreement for your organisation.
    Sign {
        /// The agreement: its id, or the start of its title.
        doc: String,
        #[arg(long, default_value = "We agree to this version.")]
        statement: String,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Who has signed the current version of an agreement.
    Status {
        /// The agreement: its id, or the start of its title.
        doc: String,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Write an agreement out as Markdown, HTML, or the standard Automerge file.
    Export {
        /// The agreement: its id, or the start of its title.
        doc: String,
        #[arg(long, value_enum, default_value = "md")]
        format: ExportFormat,
        /// Write to this file instead of standard output (required for automerge).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Run this organisation's node and its web page: sync live with partners and
    /// relays until Ctrl-C.
    ///
    /// Prints the address of the page (with a secret token: keep it to yourself).
    /// On first run without --org, the page asks for the organisation's name.
    /// While it runs, other `accord` commands on the same data folder go through it.
    Serve {
        /// Where partners can reach this node (127.0.0.1 keeps it to this machine).
        /// The web page is served only on a loopback address.
        #[arg(long, default_value = "127.0.0.1:7420")]
        listen: SocketAddr,
        /// On first run, create this organisation's replica with this name (like `accord init`).
        #[arg(long, value_name = "NAME")]
        org: Option<String>,
        /// Open the page in your web browser.
        #[arg(long)]
        open: bool,
    },
    /// Run a relay: it keeps partnerships for their members, so a partner who was
    /// offline catches up from it. Uses its own data folder and key.
    Relay {
        /// Where members connect.
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: SocketAddr,
        /// Only these organisations (fingerprints) may start partnerships here; repeat for more.
        #[arg(long = "allow-org", value_name = "FINGERPRINT")]
        allow_org: Vec<String>,
    },
    /// The peers and relays this replica syncs with.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// Sync once with the given (or configured) peers and relays, then stop.
    Sync {
        /// ws://HOST:PORT URLs; default: every configured peer.
        urls: Vec<String>,
        /// Give up on a peer after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Make an invite code for a member already added with `member add`.
    Invite {
        /// The partnership: its id, or the start of its name.
        partnership: String,
        /// The invited member: its name, fingerprint or key.
        #[arg(long)]
        member: String,
        /// The relay (or your node's address) the new member should sync with.
        #[arg(long, value_name = "URL")]
        relay: Option<String>,
        /// The relay's public key, so the new member can check it (`accord relay` prints it).
        #[arg(long, value_name = "KEY")]
        relay_key: Option<String>,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Accept an invite code: the next `accord sync` or `accord serve` fetches the partnership.
    Join {
        /// The whole code, starting with accord-invite:
        code: String,
    },
    /// Check this replica and, if it is damaged, rebuild it from what is intact
    /// and from your partners or relays.
    ///
    /// Checks every page of the replica file, loads every document and checks
    /// its signatures, and reads every setting. If all is well it says so and
    /// changes nothing. Otherwise it moves the damaged file aside (to
    /// replica.redb.damaged-TIME: nothing is deleted), creates a fresh replica
    /// with the same key, copies into it everything that is intact, syncs once
    /// with your configured peers and relays to fetch the rest, and reports what
    /// was salvaged, fetched again, and is still missing. Exits non-zero while
    /// something is missing. Stop `accord serve` first: repair needs the replica
    /// to itself.
    Repair {
        /// Your organisation's name, needed only when the damaged file no longer
        /// holds it (and no intact partnership roster names you).
        #[arg(long, value_name = "NAME")]
        org: Option<String>,
        /// Give up on a peer after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Build a sample partnership in a temporary folder and show each step (nothing is kept).
    Walkthrough,
    /// Tools for Accord's own tests.
    #[command(subcommand, hide = true)]
    Debug(DebugCommand),
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Appends `count` items to a list, one durable edit each, printing each
    /// item's number on stdout only after it is on disk. The crash tests kill
    /// this at random moments and check that every printed item survived.
    AckLoop {
        doc: String,
        #[arg(long, default_value = "objectives")]
        list: String,
        #[arg(long, default_value = "text")]
        field: String,
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value_t = 1000)]
        count: u32,
    },
    /// Like `ack-loop`, but each item is also pushed to the configured peers
    /// (a connection per item, as `accord sync` does) and its number printed only once every
    /// peer has acknowledged holding it. The relay's kill -9 loop kills the
    /// relay under this and checks that the relay kept every printed item.
    PushLoop {
        doc: String,
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value_t = 1000)]
        count: u32,
        /// Give up on a peer after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// Add a peer or relay (its key is learned and pinned on first contact unless given).
    Add {
        /// ws://HOST:PORT (or wss://...).
        url: String,
        /// The organisation key it must prove.
        #[arg(long)]
        key: Option<String>,
    },
    /// List configured peers and relays.
    List(JsonFlag),
    /// Stop syncing with a peer or relay.
    Remove { url: String },
}

#[derive(Debug, Subcommand)]
pub enum PartnershipCommand {
    /// Start a partnership; your organisation becomes its lead partner and a decision maker.
    New {
        /// The partnership's name, e.g. "Sharing Our Strengths".
        name: String,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// List the partnerships this replica holds.
    List(JsonFlag),
    /// Show a partnership's members, roles, lead partner and agreements.
    Show {
        /// The partnership: its id, or the start of its name.
        partnership: String,
        #[command(flatten)]
        output: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add an organisation to a partnership.
    Add {
        /// The partnership: its id, or the start of its name.
        partnership: String,
        /// The organisation's name.
        #[arg(long)]
        name: String,
        /// The organisation's public key (they get it from `accord whoami`).
        #[arg(long)]
        key: String,
        /// decision-maker (edits and signs), consultee (reads and comments) or informed (reads).
        #[arg(long, default_value = "consultee")]
        role: String,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Remove an organisation from a partnership. Its past work stays in
    /// the history; its later changes are refused by every partner.
    Remove {
        /// The partnership: its id, or the start of its name.
        partnership: String,
        /// The member: its name, fingerprint or public key.
        member: String,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Change a member's role.
    SetRole {
        /// The partnership: its id, or the start of its name.
        partnership: String,
        /// The member: its name, fingerprint or public key.
        member: String,
        /// decision-maker, consultee or informed.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        output: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum DocCommand {
    /// Create an agreement from its template.
    New {
        /// The partnership: its id, or the start of its name.
        partnership: String,
        /// mou (Memorandum of Understanding), values (shared values and ground rules) or dispute (dispute-resolution process).
        #[arg(long)]
        kind: String,
        /// The agreement's title.
        #[arg(long)]
        title: String,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// List agreements, of one partnership or of all.
    List {
        /// The partnership: its id, or the start of its name.
        partnership: Option<String>,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Show an agreement.
    Show {
        /// The agreement: its id, or the start of its title.
        doc: String,
        #[arg(long, value_enum, default_value = "md")]
        format: ShowFormat,
    },
    /// Set one field, e.g. `purpose "..."`, `term.start 2027-01-01`, `milestones.2.due 2027-03-31`, `roles.CVS "..."`.
    Set {
        /// The agreement: its id, or the start of its title.
        doc: String,
        /// The field's path (items count from 1; organisations by name).
        field: String,
        /// The new value (use "" to clear a date).
        value: String,
    },
    /// Append an item to a list, e.g. `values name=Respect description="..."`.
    Add {
        /// The agreement: its id, or the start of its title.
        doc: String,
        /// objectives, milestones, values, ground_rules or steps.
        list: String,
        /// FIELD=VALUE pairs for the new item.
        values: Vec<String>,
    },
    /// Remove a list item, e.g. `milestones.2`.
    Remove {
        /// The agreement: its id, or the start of its title.
        doc: String,
        /// LIST.N (items count from 1) or LIST.ID.
        item: String,
    },
    /// Edit the whole agreement as Markdown in $VISUAL or $EDITOR.
    Edit {
        /// The agreement: its id, or the start of its title.
        doc: String,
    },
    /// The editable Markdown and its version, as JSON (how `doc edit` works
    /// through a running node).
    #[command(hide = true)]
    Editable { doc: String },
    /// Applies an edited Markdown file made from version BASE.
    #[command(hide = true)]
    ApplyMarkdown {
        doc: String,
        #[arg(long, num_args = 0..)]
        base: Vec<String>,
        #[arg(long)]
        text: String,
    },
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print machine-readable JSON (stable for scripts).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShowFormat {
    Md,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ExportFormat {
    Md,
    Html,
    Automerge,
}
