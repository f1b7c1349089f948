//! Plain, read-only pictures of an agreement for rendering and JSON.

use accord_identity::OrgKey;
use serde_json::{Map, Value as Json, json};

use crate::schema::ValueType;
use crate::{DocId, DocKind, Member};

/// One value as people see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldView {
    pub key: &'static str,
    pub label: &'static str,
    pub ty: ValueType,
    /// The stored form: text, an ISO date, a number, a key in hex; empty when unset.
    pub value: String,
}

/// One item of a list section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemView {
    pub id: String,
    pub fields: Vec<FieldView>,
}

/// One organisation's entry in a per-organisation section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryView {
    pub org: OrgKey,
    pub name: String,
    pub fields: Vec<FieldView>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionContent {
    Text(String),
    Group(Vec<FieldView>),
    List(Vec<ItemView>),
    PerOrg(Vec<EntryView>),
    Parties(Vec<Member>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionView {
    pub key: &'static str,
    pub label: &'static str,
    pub prompt: &'static str,
    pub content: SectionContent,
}

/// An agreement read at one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreementView {
    pub id: DocId,
    pub kind: DocKind,
    pub title: String,
    /// The version this view shows, as Automerge change hashes in hex.
    pub heads: Vec<String>,
    /// Every section except the title, in schema order.
    pub sections: Vec<SectionView>,
}

impl AgreementView {
    pub fn section(&self, key: &str) -> Option<&SectionView> {
        self.sections.iter().find(|s| s.key == key)
    }

    /// A stable JSON form for scripts: `{id, kind, title, heads, fields: {section: ...}}`.
    pub fn to_json(&self) -> Json {
        let mut fields = Map::new();
        for section in &self.sections {
            fields.insert(section.key.to_owned(), content_json(&section.content));
        }
        json!({
            "id": self.id.to_string(),
            "kind": self.kind.as_str(),
            "title": self.title,
            "heads": self.heads,
            "fields": fields,
        })
    }
}

fn content_json(content: &SectionContent) -> Json {
    match content {
        SectionContent::Text(text) => Json::String(text.clone()),
        SectionContent::Group(fields) => fields_json(fields),
        SectionContent::List(items) => Json::Array(
            items
                .iter()
                .map(|item| {
                    let mut obj = Map::new();
                    obj.insert("id".into(), Json::String(item.id.clone()));
                    if let Json::Object(rest) = fields_json(&item.fields) {
                        obj.extend(rest);
                    }
                    Json::Object(obj)
                })
                .collect(),
        ),
        SectionContent::PerOrg(entries) => Json::Array(
            entries
                .iter()
                .map(|entry| {
                    let mut obj = Map::new();
                    obj.insert("org".into(), Json::String(entry.org.to_hex()));
                    obj.insert("name".into(), Json::String(entry.name.clone()));
                    if let Json::Object(rest) = fields_json(&entry.fields) {
                        obj.extend(rest);
                    }
                    Json::Object(obj)
                })
                .collect(),
        ),
        SectionContent::Parties(members) => serde_json::to_value(members).unwrap_or(Json::Null),
    }
}

fn fields_json(fields: &[FieldView]) -> Json {
    let mut obj = Map::new();
    for f in fields {
        let value = match f.ty {
            ValueType::Days => f.value.parse::<u64>().map(Json::from).unwrap_or(Json::Null),
            _ if f.value.is_empty() && f.ty != ValueType::Text => Json::Null,
            _ => Json::String(f.value.clone()),
        };
        obj.insert(f.key.to_owned(), value);
    }
    Json::Object(obj)
}
