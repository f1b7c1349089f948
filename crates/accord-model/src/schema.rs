//! The shape of each kind of agreement, as data.
//!
//! Every operation (set, add, remove, render, parse, history summaries)
//! walks these tables instead of hand-writing code per kind, so adding a
//! section to an agreement is a one-line change here.

use std::fmt;
use std::str::FromStr;

use crate::ModelError;

/// The kinds of agreement a partnership keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocKind {
    /// Memorandum of Understanding.
    Mou,
    /// Shared values and ground rules.
    Values,
    /// Dispute-resolution process.
    Dispute,
}

impl DocKind {
    pub const ALL: [DocKind; 3] = [DocKind::Mou, DocKind::Values, DocKind::Dispute];

    /// The stable name used on the command line, in JSON and in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Mou => "mou",
            DocKind::Values => "values",
            DocKind::Dispute => "dispute",
        }
    }

    /// What people call this kind of document.
    pub fn label(self) -> &'static str {
        match self {
            DocKind::Mou => "Memorandum of Understanding",
            DocKind::Values => "Shared values and ground rules",
            DocKind::Dispute => "Dispute-resolution process",
        }
    }

    pub fn schema(self) -> &'static [Section] {
        match self {
            DocKind::Mou => MOU,
            DocKind::Values => VALUES,
            DocKind::Dispute => DISPUTE,
        }
    }

    pub fn section(self, key: &str) -> Option<&'static Section> {
        self.schema().iter().find(|s| s.key == key)
    }
}

impl fmt::Display for DocKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DocKind {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DocKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ModelError::UnknownKind(s.to_owned()))
    }
}

impl serde::Serialize for DocKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How a value is stored and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// Automerge `Text`: concurrent edits merge character by character.
    Text,
    /// An ISO date (`YYYY-MM-DD`) stored as a string; last writer wins.
    Date,
    /// A whole number of days.
    Days,
    /// A member organisation, stored as its public key in hex.
    Org,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
}

/// One named value inside a section, a group or a list item.
#[derive(Debug)]
pub struct Field {
    pub key: &'static str,
    pub label: &'static str,
    pub ty: ValueType,
}

/// How a section is laid out in the Automerge document.
#[derive(Debug)]
pub enum Shape {
    /// A `Text` object directly under the root.
    Text,
    /// A map with a fixed set of fields.
    Group(&'static [Field]),
    /// A list of maps, each with a stable `id` and these fields.
    List(&'static [Field]),
    /// A map from member organisation (public key hex) to a map of these fields.
    PerOrg(&'static [Field]),
    /// Not stored: the partnership's members, read from the roster.
    Parties,
}

/// A top-level part of an agreement.
#[derive(Debug)]
pub struct Section {
    pub key: &'static str,
    pub label: &'static str,
    /// The question good practice asks here, shown to people as guidance.
    pub prompt: &'static str,
    pub shape: Shape,
}

impl Section {
    /// The fields of a structured section (empty for text and parties).
    pub fn fields(&self) -> &'static [Field] {
        match self.shape {
            Shape::Group(f) | Shape::List(f) | Shape::PerOrg(f) => f,
            Shape::Text | Shape::Parties => &[],
        }
    }

    pub fn field(&self, key: &str) -> Option<&'static Field> {
        self.fields().iter().find(|f| f.key == key)
    }
}

/// Milestone states, in the order a milestone usually moves through them.
pub const MILESTONE_STATUSES: &[&str] = &["planned", "in-progress", "done", "at-risk", "cancelled"];

const fn text(key: &'static str, label: &'static str) -> Field {
    Field {
        key,
        label,
        ty: ValueType::Text,
    }
}

const fn typed(key: &'static str, label: &'static str, ty: ValueType) -> Field {
    Field { key, label, ty }
}

const TITLE: Section = Section {
    key: "title",
    label: "Title",
    prompt: "A short name partners will recognise.",
    shape: Shape::Text,
};

static MOU: &[Section] = &[
    TITLE,
    Section {
        key: "purpose",
        label: "Purpose and aims",
        prompt: "Why are we working together? What does each partner hope to achieve, and for whom?",
        shape: Shape::Text,
    },
    Section {
        key: "parties",
        label: "Parties",
        prompt: "The organisations in this partnership (from the roster).",
        shape: Shape::Parties,
    },
    Section {
        key: "objectives",
        label: "Objectives",
        prompt: "What specific, measurable things will the partnership deliver?",
        shape: Shape::List(&[text("text", "Objective")]),
    },
    Section {
        key: "roles",
        label: "Roles and responsibilities",
        prompt: "What is each organisation responsible for? Who leads on what?",
        shape: Shape::PerOrg(&[text("responsibilities", "Responsibilities")]),
    },
    Section {
        key: "commitments",
        label: "Commitments",
        prompt: "What time, people and money does each partner commit?",
        shape: Shape::PerOrg(&[
            text("time", "Time"),
            text("people", "People"),
            text("money", "Money"),
        ]),
    },
    Section {
        key: "milestones",
        label: "Milestones",
        prompt: "What will be done by when, and who owns it?",
        shape: Shape::List(&[
            text("title", "Milestone"),
            typed("owner", "Owner", ValueType::Org),
            typed("due", "Due", ValueType::Date),
            typed("status", "Status", ValueType::Choice(MILESTONE_STATUSES)),
        ]),
    },
    Section {
        key: "communication",
        label: "Communication plan",
        prompt: "How and how often will partners meet, share information and report progress?",
        shape: Shape::Text,
    },
    Section {
        key: "review",
        label: "Monitoring and review",
        prompt: "How will progress be monitored, and when will partners review this agreement?",
        shape: Shape::Group(&[
            text("how", "How progress is monitored"),
            typed("date", "Review date", ValueType::Date),
        ]),
    },
    Section {
        key: "term",
        label: "Term",
        prompt: "When does this agreement start and end?",
        shape: Shape::Group(&[
            typed("start", "Start", ValueType::Date),
            typed("end", "End", ValueType::Date),
        ]),
    },
    Section {
        key: "variation",
        label: "Varying this agreement",
        prompt: "How can this agreement be changed, and who must agree to a change?",
        shape: Shape::Text,
    },
];

static VALUES: &[Section] = &[
    TITLE,
    Section {
        key: "statement",
        label: "Statement",
        prompt: "In a few sentences: what do partners believe in, and how will they behave towards each other?",
        shape: Shape::Text,
    },
    Section {
        key: "values",
        label: "Values",
        prompt: "Which values do all partners share?",
        shape: Shape::List(&[
            text("name", "Value"),
            text("description", "What it means in practice"),
        ]),
    },
    Section {
        key: "ground_rules",
        label: "Ground rules",
        prompt: "How will partners behave in meetings and in their work together?",
        shape: Shape::List(&[text("text", "Ground rule")]),
    },
];

static DISPUTE: &[Section] = &[
    TITLE,
    Section {
        key: "purpose",
        label: "Purpose",
        prompt: "Why have a process, and what kinds of disagreement does it cover?",
        shape: Shape::Text,
    },
    Section {
        key: "steps",
        label: "Steps",
        prompt: "In order: what happens at each step, who is involved, and how long it may take.",
        shape: Shape::List(&[
            text("title", "Step"),
            text("what", "What happens"),
            text("who", "Who is involved"),
            typed("days", "Timescale (days)", ValueType::Days),
        ]),
    },
    Section {
        key: "escalation",
        label: "Escalation and external mediation",
        prompt: "If the steps do not resolve the dispute, who mediates, and who pays?",
        shape: Shape::Text,
    },
];

/// Checks a value typed by a person against its field type and returns the
/// canonical stored form.
pub fn check_scalar(field: &Field, raw: &str) -> Result<String, ModelError> {
    let value = raw.trim();
    let bad = |expected: &str| ModelError::BadValue {
        field: field.key.to_owned(),
        value: raw.to_owned(),
        expected: expected.to_owned(),
    };
    match field.ty {
        ValueType::Text | ValueType::Org => Ok(raw.to_owned()),
        ValueType::Date if value.is_empty() || is_iso_date(value) => Ok(value.to_owned()),
        ValueType::Date => Err(bad("a date like 2027-03-31")),
        ValueType::Days => value
            .parse::<u32>()
            .map(|d| d.to_string())
            .map_err(|_| bad("a whole number of days, like 14")),
        ValueType::Choice(options) => options
            .iter()
            .find(|o| o.eq_ignore_ascii_case(value))
            .map(|o| (*o).to_owned())
            .ok_or_else(|| bad(&format!("one of: {}", options.join(", ")))),
    }
}

/// `YYYY-MM-DD` with a real month and a day that exists in that month.
pub fn is_iso_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return false;
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return false;
    }
    let (Ok(year), Ok(month), Ok(day)) = (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>())
    else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days_in_month).contains(&day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_starts_with_a_title_and_has_unique_keys() {
        for kind in DocKind::ALL {
            let schema = kind.schema();
            assert_eq!(schema[0].key, "title");
            let mut keys: Vec<_> = schema.iter().map(|s| s.key).collect();
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), schema.len(), "{kind}");
        }
    }

    #[test]
    fn kinds_parse_case_insensitively() {
        assert_eq!("MOU".parse::<DocKind>().unwrap(), DocKind::Mou);
        assert!("contract".parse::<DocKind>().is_err());
    }

    #[test]
    fn dates_are_checked() {
        assert!(is_iso_date("2027-03-31"));
        assert!(is_iso_date("2028-02-29"));
        assert!(!is_iso_date("2027-02-29"));
        assert!(!is_iso_date("2027-13-01"));
        assert!(!is_iso_date("31/03/2027"));
    }

    #[test]
    fn scalars_are_canonicalised() {
        let milestones = DocKind::Mou.section("milestones").unwrap();
        let status = milestones.field("status").unwrap();
        assert_eq!(check_scalar(status, "Done").unwrap(), "done");
        assert!(check_scalar(status, "finished").is_err());
        let steps = DocKind::Dispute.section("steps").unwrap();
        assert_eq!(
            check_scalar(steps.field("days").unwrap(), " 14 ").unwrap(),
            "14"
        );
        assert!(check_scalar(steps.field("days").unwrap(), "two weeks").is_err());
    }
}
