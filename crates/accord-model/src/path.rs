//! Field paths as people type them: `purpose`, `term.start`,
//! `milestones.2.due` (items count from 1, or use an item's id),
//! `roles.cvs` and `commitments.cvs.money` (a member's name, fingerprint or key).

use crate::ModelError;
use crate::schema::{DocKind, Field, Section, Shape};

/// Which list item a path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemRef {
    /// Position counted from 1, as shown to people.
    Position(usize),
    /// The item's stable id, which survives concurrent inserts.
    Id(String),
}

/// What a path points at, checked against the document kind's schema.
#[derive(Clone, Debug)]
pub enum Target {
    /// A whole text section.
    Text(&'static Section),
    /// A field of a fixed group, e.g. `term.start`.
    GroupField(&'static Section, &'static Field),
    /// A list, e.g. `milestones` (for `add`).
    List(&'static Section),
    /// A list item, optionally one of its fields.
    Item(&'static Section, ItemRef, Option<&'static Field>),
    /// A member organisation's entry in a per-organisation section.
    OrgField(&'static Section, String, &'static Field),
}

/// Parses `path` for documents of `kind`.
pub fn parse_path(kind: DocKind, path: &str) -> Result<Target, ModelError> {
    let parts: Vec<&str> = path.trim().split('.').collect();
    let unknown = || ModelError::UnknownField {
        kind: kind.as_str().to_owned(),
        path: path.to_owned(),
        known: known_paths(kind),
    };
    let section = kind.section(parts[0]).ok_or_else(unknown)?;
    let field = |key: &str| section.field(key).ok_or_else(unknown);
    match (&section.shape, &parts[1..]) {
        (Shape::Text, []) => Ok(Target::Text(section)),
        (Shape::Group(_), [key]) => Ok(Target::GroupField(section, field(key)?)),
        (Shape::List(_), []) => Ok(Target::List(section)),
        (Shape::List(_), [item]) => Ok(Target::Item(section, item_ref(item), None)),
        (Shape::List(_), [item, key]) => {
            Ok(Target::Item(section, item_ref(item), Some(field(key)?)))
        }
        (Shape::PerOrg(fields), [org]) if fields.len() == 1 => {
            Ok(Target::OrgField(section, (*org).to_owned(), &fields[0]))
        }
        (Shape::PerOrg(_), [org, key]) => {
            Ok(Target::OrgField(section, (*org).to_owned(), field(key)?))
        }
        (Shape::Parties, _) => Err(ModelError::WrongShape {
            path: path.to_owned(),
            what: "read from the roster",
            hint: "change members with `accord member add` or `accord member set-role`".into(),
        }),
        _ => Err(unknown()),
    }
}

fn item_ref(text: &str) -> ItemRef {
    match text.parse::<usize>() {
        Ok(n) if text.len() < 6 => ItemRef::Position(n),
        _ => ItemRef::Id(text.to_owned()),
    }
}

/// Every path shape of a kind, for error messages and `--help`.
pub fn known_paths(kind: DocKind) -> String {
    kind.schema()
        .iter()
        .flat_map(|s| -> Vec<String> {
            match &s.shape {
                Shape::Text => vec![s.key.to_owned()],
                Shape::Group(fields) => fields
                    .iter()
                    .map(|f| format!("{}.{}", s.key, f.key))
                    .collect(),
                Shape::List(fields) => fields
                    .iter()
                    .map(|f| format!("{}.N.{}", s.key, f.key))
                    .collect(),
                Shape::PerOrg(fields) => fields
                    .iter()
                    .map(|f| format!("{}.ORG.{}", s.key, f.key))
                    .collect(),
                Shape::Parties => vec![],
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_against_the_schema() {
        assert!(
            matches!(parse_path(DocKind::Mou, "purpose"), Ok(Target::Text(s)) if s.key == "purpose")
        );
        assert!(
            matches!(parse_path(DocKind::Mou, "term.start"), Ok(Target::GroupField(_, f)) if f.key == "start")
        );
        assert!(matches!(
            parse_path(DocKind::Mou, "milestones.2.due"),
            Ok(Target::Item(_, ItemRef::Position(2), Some(f))) if f.key == "due"
        ));
        assert!(matches!(
            parse_path(DocKind::Mou, "milestones.k3j9ab2x.status"),
            Ok(Target::Item(_, ItemRef::Id(id), Some(_))) if id == "k3j9ab2x"
        ));
        assert!(
            matches!(parse_path(DocKind::Mou, "roles.cvs"), Ok(Target::OrgField(_, o, f)) if o == "cvs" && f.key == "responsibilities")
        );
        assert!(
            matches!(parse_path(DocKind::Mou, "commitments.cvs.money"), Ok(Target::OrgField(_, _, f)) if f.key == "money")
        );
        assert!(matches!(
            parse_path(DocKind::Values, "values"),
            Ok(Target::List(_))
        ));
    }

    #[test]
    fn unknown_paths_list_what_exists() {
        let err = parse_path(DocKind::Dispute, "purpse")
            .unwrap_err()
            .to_string();
        assert!(err.contains("steps.N.days"), "{err}");
        assert!(parse_path(DocKind::Mou, "term.middle").is_err());
        assert!(parse_path(DocKind::Mou, "purpose.x").is_err());
        assert!(parse_path(DocKind::Mou, "parties").is_err());
    }
}
