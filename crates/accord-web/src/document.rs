//! An agreement as the page's editor needs it: every section with its
//! shape, every field with its type, its value and the path that edits it.
//!
//! The editor is drawn from this (which comes from the schema tables in
//! `accord-model`), so a section added to the schema appears on the page
//! with no change here or in the page's code.

use accord_identity::OrgKey;
use accord_model::schema::Field;
use accord_model::{
    AgreementView, DocKind, FieldView, Notes, Role, RosterView, SectionContent, SectionView,
    ValueType,
};
use serde_json::{Value as Json, json};

/// The document, its partnership, and what this organisation may do with it.
pub(crate) fn document_json(view: &AgreementView, roster: &RosterView, me: &OrgKey) -> Json {
    let role = roster.member(me).map(|m| m.role);
    json!({
        "id": view.id.to_string(),
        "kind": view.kind.as_str(),
        "kind_label": view.kind.label(),
        "title": view.title,
        "heads": view.heads,
        "partnership": partnership_json(roster),
        "role": role.map(Role::as_str),
        "editable": role == Some(Role::DecisionMaker),
        // Consultees comment on the text they cannot change.
        "commentable": matches!(role, Some(Role::DecisionMaker | Role::Consultee)),
        "sections": view.sections.iter().map(|s| section_json(view.kind, s)).collect::<Vec<_>>(),
    })
}

/// A partnership's name, id, roster document (whose change notices mean
/// the members or the catalogue changed) and members' notes documents
/// (whose change notices mean a comment or a sign-off arrived).
pub(crate) fn partnership_json(roster: &RosterView) -> Json {
    let notes: Vec<String> = roster
        .members
        .iter()
        .map(|m| Notes::doc_id(roster.id, &m.key).to_string())
        .collect();
    json!({
        "id": roster.id.to_string(),
        "name": roster.name,
        "roster_doc": roster.id.roster_doc().to_string(),
        "notes_docs": notes,
        "members": roster.members,
    })
}

fn section_json(kind: DocKind, section: &SectionView) -> Json {
    let key = section.key;
    let (shape, content) = match &section.content {
        SectionContent::Text(text) => ("text", json!({ "text": text, "path": key })),
        SectionContent::Group(fields) => ("group", json!({ "fields": fields_json(key, fields) })),
        SectionContent::List(items) => {
            let items: Vec<Json> = items
                .iter()
                .map(|item| {
                    let prefix = format!("{key}.{}", item.id);
                    json!({ "id": item.id, "path": prefix, "fields": fields_json(&prefix, &item.fields) })
                })
                .collect();
            let schema = kind.section(key).map(|s| s.fields()).unwrap_or(&[]);
            let new_item: Vec<Json> = schema.iter().map(field_schema).collect();
            ("list", json!({ "items": items, "new_item": new_item }))
        }
        SectionContent::PerOrg(entries) => {
            let entries: Vec<Json> = entries
                .iter()
                .map(|entry| {
                    let prefix = format!("{key}.{}", entry.org.to_hex());
                    json!({ "org": entry.org.to_hex(), "name": entry.name, "fields": fields_json(&prefix, &entry.fields) })
                })
                .collect();
            ("per_org", json!({ "entries": entries }))
        }
        SectionContent::Parties(members) => ("parties", json!({ "members": members })),
    };
    let mut out = json!({
        "key": key,
        "label": section.label,
        "prompt": section.prompt,
        "shape": shape,
    });
    if let (Some(out), Json::Object(content)) = (out.as_object_mut(), content) {
        out.extend(content);
    }
    out
}

fn fields_json(prefix: &str, fields: &[FieldView]) -> Vec<Json> {
    fields
        .iter()
        .map(|f| {
            let mut field = type_json(f.key, f.label, f.ty);
            if let Some(obj) = field.as_object_mut() {
                obj.insert("value".into(), Json::String(f.value.clone()));
                obj.insert("path".into(), Json::String(format!("{prefix}.{}", f.key)));
            }
            field
        })
        .collect()
}

fn field_schema(field: &Field) -> Json {
    type_json(field.key, field.label, field.ty)
}

fn type_json(key: &str, label: &str, ty: ValueType) -> Json {
    let (name, choices): (&str, &[&str]) = match ty {
        ValueType::Text => ("text", &[]),
        ValueType::Date => ("date", &[]),
        ValueType::Days => ("days", &[]),
        ValueType::Org => ("org", &[]),
        ValueType::Choice(choices) => ("choice", choices),
    };
    json!({ "key": key, "label": label, "type": name, "choices": choices })
}
