//! An agreement document: typed edits and reads over Automerge.
//!
//! Layout: `accord: {schema, kind, id, partnership}` plus one root key per
//! schema section. Text sections and text fields are Automerge `Text`;
//! lists hold maps with a stable `id`; per-organisation sections map a
//! member's key (hex) to a map of fields.

use accord_identity::OrgKey;
use automerge::{
    ActorId, AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value,
    transaction::Transactable,
};
use sha2::{Digest, Sha256};

use crate::document::{CommittedChange, commit};
use crate::path::{ItemRef, Target, parse_path};
use crate::roster::{RosterView, SCHEMA_VERSION, scalar_str};
use crate::schema::{DocKind, Field, Section, Shape, ValueType, check_scalar};
use crate::view::{AgreementView, EntryView, FieldView, ItemView, SectionContent, SectionView};
use crate::{DocId, ModelError, PartnershipId, template};

/// One agreement (an MOU, shared values, or a dispute process).
#[derive(Debug)]
pub struct Agreement {
    id: DocId,
    kind: DocKind,
    doc: AutoCommit,
    /// The roster version edits are made under; every commit claims it
    /// (see [`crate::trust::claim`]), and partners judge the change by it.
    roster_heads: Vec<ChangeHash>,
}

impl Agreement {
    /// A new agreement pre-filled from its kind's template.
    pub fn create(
        id: DocId,
        kind: DocKind,
        partnership: PartnershipId,
        title: &str,
        actor: ActorId,
        roster: &RosterView,
        now: i64,
    ) -> Result<(Self, CommittedChange), ModelError> {
        let mut doc = AutoCommit::new().with_actor(actor);
        let meta = doc.put_object(ROOT, "accord", ObjType::Map)?;
        doc.put(&meta, "schema", SCHEMA_VERSION)?;
        doc.put(&meta, "kind", kind.as_str())?;
        doc.put(&meta, "id", id.to_string())?;
        doc.put(&meta, "partnership", partnership.to_string())?;
        let mut agreement = Self {
            id,
            kind,
            doc,
            roster_heads: roster.heads.clone(),
        };
        agreement.create_sections()?;
        agreement.set("title", title, roster)?;
        template::fill(&mut agreement, roster)?;
        let change = agreement
            .commit(&format!("Created {} {title:?}", kind.label()), now)
            .ok_or_else(|| malformed("creating it produced no change".into()))?;
        Ok((agreement, change))
    }

    /// Wraps a loaded document after checking what kind of agreement it is.
    pub fn from_doc(id: DocId, doc: AutoCommit) -> Result<Self, ModelError> {
        let meta = match doc.get(ROOT, "accord")? {
            Some((Value::Object(ObjType::Map), meta)) => meta,
            _ => return Err(malformed("it has no accord metadata".into())),
        };
        let kind =
            scalar_str(&doc, &meta, "kind").ok_or_else(|| malformed("it has no kind".into()))?;
        let kind: DocKind = kind.parse()?;
        Ok(Self {
            id,
            kind,
            doc,
            roster_heads: Vec::new(),
        })
    }

    /// Makes later commits claim roster version `heads` (the roster the
    /// editor's permissions were checked against).
    pub fn under_roster(mut self, heads: &[ChangeHash]) -> Self {
        self.roster_heads = heads.to_vec();
        self
    }

    /// The commit message carrying this agreement's roster claim.
    pub fn claimed_message(&self, message: &str) -> String {
        crate::trust::claim::with_claim(message, &self.roster_heads)
    }

    pub fn id(&self) -> DocId {
        self.id
    }

    pub fn kind(&self) -> DocKind {
        self.kind
    }

    pub fn doc(&self) -> &AutoCommit {
        &self.doc
    }

    pub fn doc_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    pub fn title(&self) -> String {
        self.text_at(&ROOT, "title")
    }

    pub fn commit(&mut self, message: &str, now: i64) -> Option<CommittedChange> {
        let message = self.claimed_message(message);
        commit(&mut self.doc, &message, now)
    }

    /// Sets a field to `value`. Text is changed with the smallest character
    /// splices that turn the old text into the new, so partners' concurrent
    /// edits elsewhere in the same text still merge.
    pub fn set(&mut self, path: &str, value: &str, roster: &RosterView) -> Result<(), ModelError> {
        match parse_path(self.kind, path)? {
            Target::Text(section) => self.put_text(&ROOT, section.key, value),
            Target::GroupField(section, field) => {
                let group = self.map_at(&ROOT, section.key)?;
                self.put_field(&group, field, value, roster)
            }
            Target::Item(section, item, field) => {
                let field = single_field(section, field, path)?;
                let obj = self.item_obj(section, &item)?;
                self.put_field(&obj, field, value, roster)
            }
            Target::OrgField(section, org, field) => {
                let member = roster.resolve_member(&org)?.key;
                let entry = self.org_entry(section, &member)?;
                self.put_field(&entry, field, value, roster)
            }
            Target::List(section) => Err(ModelError::WrongShape {
                path: path.to_owned(),
                what: "a list",
                hint: format!(
                    "add an item with `accord doc add DOC {} FIELD=VALUE ...`",
                    section.key
                ),
            }),
        }
    }

    /// Appends an item to a list section and returns its stable id.
    pub fn add_item(
        &mut self,
        list: &str,
        values: &[(String, String)],
        roster: &RosterView,
    ) -> Result<String, ModelError> {
        let section = match parse_path(self.kind, list)? {
            Target::List(section) => section,
            _ => return Err(not_a_list(list)),
        };
        // Check every value before inserting, so a refused value adds nothing.
        for (key, value) in values {
            let field = section.field(key).ok_or_else(|| ModelError::UnknownField {
                kind: self.kind.as_str().into(),
                path: format!("{list}.{key}"),
                known: section
                    .fields()
                    .iter()
                    .map(|f| f.key)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            check_value(field, value, roster)?;
        }
        let list_obj = self.seq_at(section.key)?;
        let len = self.doc.length(&list_obj);
        let item = self.doc.insert_object(&list_obj, len, ObjType::Map)?;
        let id = short_item_id(&item);
        self.doc.put(&item, "id", id.as_str())?;
        for field in section.fields().iter().filter(|f| f.ty == ValueType::Text) {
            self.doc.put_object(&item, field.key, ObjType::Text)?;
        }
        for (key, value) in values {
            let field = section.field(key).ok_or_else(|| not_a_list(list))?;
            self.put_field(&item, field, value, roster)?;
        }
        Ok(id)
    }

    /// Removes one list item, named as `LIST.N` or `LIST.ID`.
    pub fn remove_item(&mut self, path: &str) -> Result<(), ModelError> {
        let (section, item) = match parse_path(self.kind, path)? {
            Target::Item(section, item, None) => (section, item),
            _ => {
                return Err(ModelError::WrongShape {
                    path: path.to_owned(),
                    what: "not a list item",
                    hint: "name an item as LIST.N, e.g. milestones.2".into(),
                });
            }
        };
        let list = self.seq_at(section.key)?;
        let index = self.item_index(section, &list, &item)?;
        self.doc.delete(&list, index)?;
        Ok(())
    }

    /// The Automerge object of a text field, for live character splices.
    pub fn text_obj(&mut self, path: &str, roster: &RosterView) -> Result<ObjId, ModelError> {
        let (parent, key) = match parse_path(self.kind, path)? {
            Target::Text(section) => (ROOT, section.key),
            Target::GroupField(section, field) => (self.map_at(&ROOT, section.key)?, field.key),
            Target::Item(section, item, field) => {
                let field = single_field(section, field, path)?;
                (self.item_obj(section, &item)?, field.key)
            }
            Target::OrgField(section, org, field) => {
                let member = roster.resolve_member(&org)?.key;
                (self.org_entry(section, &member)?, field.key)
            }
            Target::List(_) => return Err(not_a_list(path)),
        };
        self.ensure_text(&parent, key)
    }

    /// Splices text at a character position (Unicode code points).
    pub fn splice_text(
        &mut self,
        text: &ObjId,
        pos: usize,
        delete: isize,
        insert: &str,
    ) -> Result<(), ModelError> {
        self.doc.splice_text(text, pos, delete, insert)?;
        Ok(())
    }

    /// Reads the whole agreement at its current version.
    /// Reads the whole agreement. `heads` names the last committed version;
    /// reading never commits pending edits (Automerge's `get_heads` would).
    pub fn view(&self, roster: &RosterView) -> AgreementView {
        let heads = self
            .doc
            .base_heads()
            .iter()
            .map(|h| h.to_string())
            .collect();
        let sections = self
            .kind
            .schema()
            .iter()
            .filter(|s| s.key != "title")
            .map(|section| SectionView {
                key: section.key,
                label: section.label,
                prompt: section.prompt,
                content: self.section_content(section, roster),
            })
            .collect();
        AgreementView {
            id: self.id,
            kind: self.kind,
            title: self.title(),
            heads,
            sections,
        }
    }

    fn create_sections(&mut self) -> Result<(), ModelError> {
        for section in self.kind.schema() {
            match &section.shape {
                Shape::Text => {
                    self.doc.put_object(ROOT, section.key, ObjType::Text)?;
                }
                Shape::Group(fields) => {
                    let group = self.doc.put_object(ROOT, section.key, ObjType::Map)?;
                    for field in fields.iter().filter(|f| f.ty == ValueType::Text) {
                        self.doc.put_object(&group, field.key, ObjType::Text)?;
                    }
                }
                Shape::List(_) => {
                    self.doc.put_object(ROOT, section.key, ObjType::List)?;
                }
                Shape::PerOrg(_) => {
                    self.doc.put_object(ROOT, section.key, ObjType::Map)?;
                }
                Shape::Parties => {}
            }
        }
        Ok(())
    }

    /// Creates a member's entry in every per-organisation section, so the
    /// first edits by two partners do not race to create it (concurrent
    /// creations of one map key keep only one of the maps). Called once, by
    /// whoever creates the agreement or adds the member.
    pub fn ensure_org_entries(&mut self, org: &OrgKey) -> Result<(), ModelError> {
        for section in self
            .kind
            .schema()
            .iter()
            .filter(|s| matches!(s.shape, Shape::PerOrg(_)))
        {
            self.org_entry(section, org)?;
        }
        Ok(())
    }

    fn put_field(
        &mut self,
        obj: &ObjId,
        field: &Field,
        value: &str,
        roster: &RosterView,
    ) -> Result<(), ModelError> {
        match field.ty {
            ValueType::Text => self.put_text(obj, field.key, value),
            ValueType::Days => {
                let days: i64 = check_scalar(field, value)?.parse().unwrap_or_default();
                self.doc.put(obj, field.key, days)?;
                Ok(())
            }
            ValueType::Org if value.trim().is_empty() => Ok(self.doc.delete(obj, field.key)?),
            ValueType::Org => {
                let member = roster.resolve_member(value)?;
                self.doc.put(obj, field.key, member.key.to_hex())?;
                Ok(())
            }
            ValueType::Date | ValueType::Choice(_) => {
                let canonical = check_scalar(field, value)?;
                if canonical.is_empty() {
                    self.doc.delete(obj, field.key)?;
                } else if scalar_str(&self.doc, obj, field.key).as_deref()
                    != Some(canonical.as_str())
                {
                    self.doc.put(obj, field.key, canonical)?;
                }
                Ok(())
            }
        }
    }

    fn put_text(&mut self, parent: &ObjId, key: &str, value: &str) -> Result<(), ModelError> {
        let text = self.ensure_text(parent, key)?;
        let old = self.doc.text(&text)?;
        for (pos, delete, insert) in crate::text_diff::splices(&old, value) {
            self.doc.splice_text(&text, pos, delete as isize, &insert)?;
        }
        Ok(())
    }

    fn ensure_text(&mut self, parent: &ObjId, key: &str) -> Result<ObjId, ModelError> {
        match self.doc.get(parent, key)? {
            Some((Value::Object(ObjType::Text), obj)) => Ok(obj),
            _ => Ok(self.doc.put_object(parent, key, ObjType::Text)?),
        }
    }

    fn map_at(&mut self, parent: &ObjId, key: &str) -> Result<ObjId, ModelError> {
        match self.doc.get(parent, key)? {
            Some((Value::Object(ObjType::Map), obj)) => Ok(obj),
            _ => Ok(self.doc.put_object(parent, key, ObjType::Map)?),
        }
    }

    fn seq_at(&mut self, key: &str) -> Result<ObjId, ModelError> {
        match self.doc.get(ROOT, key)? {
            Some((Value::Object(ObjType::List), obj)) => Ok(obj),
            _ => Ok(self.doc.put_object(ROOT, key, ObjType::List)?),
        }
    }

    fn org_entry(&mut self, section: &Section, org: &OrgKey) -> Result<ObjId, ModelError> {
        let map = self.map_at(&ROOT, section.key)?;
        if let Some((Value::Object(ObjType::Map), entry)) = self.doc.get(&map, org.to_hex())? {
            return Ok(entry);
        }
        let entry = self.doc.put_object(&map, org.to_hex(), ObjType::Map)?;
        for field in section.fields().iter().filter(|f| f.ty == ValueType::Text) {
            self.doc.put_object(&entry, field.key, ObjType::Text)?;
        }
        Ok(entry)
    }

    fn item_obj(&mut self, section: &Section, item: &ItemRef) -> Result<ObjId, ModelError> {
        let list = self.seq_at(section.key)?;
        let index = self.item_index(section, &list, item)?;
        match self.doc.get(&list, index)? {
            Some((Value::Object(ObjType::Map), obj)) => Ok(obj),
            _ => Err(malformed(format!(
                "{}.{} is not an item",
                section.key,
                index + 1
            ))),
        }
    }

    fn item_index(
        &self,
        section: &Section,
        list: &ObjId,
        item: &ItemRef,
    ) -> Result<usize, ModelError> {
        let len = self.doc.length(list);
        let missing = |shown: String| ModelError::NoSuchItem {
            list: section.key.to_owned(),
            item: shown,
            len,
        };
        match item {
            ItemRef::Position(n) if (1..=len).contains(n) => Ok(n - 1),
            ItemRef::Position(n) => Err(missing(n.to_string())),
            ItemRef::Id(id) => (0..len)
                .find(|i| {
                    matches!(self.doc.get(list, *i), Ok(Some((Value::Object(ObjType::Map), obj)))
                        if scalar_str(&self.doc, &obj, "id").as_deref() == Some(id.as_str()))
                })
                .ok_or_else(|| missing(id.clone())),
        }
    }

    fn section_content(&self, section: &Section, roster: &RosterView) -> SectionContent {
        match &section.shape {
            Shape::Text => SectionContent::Text(self.text_at(&ROOT, section.key)),
            Shape::Group(fields) => {
                let obj = self.existing(&ROOT, section.key);
                SectionContent::Group(self.read_fields(obj.as_ref(), fields))
            }
            Shape::List(fields) => SectionContent::List(self.read_items(section.key, fields)),
            Shape::PerOrg(fields) => {
                SectionContent::PerOrg(self.read_entries(section.key, fields, roster))
            }
            Shape::Parties => SectionContent::Parties(roster.members.clone()),
        }
    }

    fn read_items(&self, key: &str, fields: &[Field]) -> Vec<ItemView> {
        let Some(list) = self.existing(&ROOT, key) else {
            return Vec::new();
        };
        (0..self.doc.length(&list))
            .filter_map(|i| match self.doc.get(&list, i) {
                Ok(Some((Value::Object(ObjType::Map), obj))) => Some(ItemView {
                    id: scalar_str(&self.doc, &obj, "id").unwrap_or_default(),
                    fields: self.read_fields(Some(&obj), fields),
                }),
                _ => None,
            })
            .collect()
    }

    /// Entries for current members first (in roster order), then any
    /// former members whose entries are still in the document.
    fn read_entries(&self, key: &str, fields: &[Field], roster: &RosterView) -> Vec<EntryView> {
        let Some(map) = self.existing(&ROOT, key) else {
            return Vec::new();
        };
        let mut orgs: Vec<OrgKey> = roster.members.iter().map(|m| m.key).collect();
        for stored in self.doc.keys(&map).filter_map(|k| k.parse::<OrgKey>().ok()) {
            if !orgs.contains(&stored) {
                orgs.push(stored);
            }
        }
        orgs.into_iter()
            .map(|org| EntryView {
                org,
                name: roster.display_name(&org),
                fields: self.read_fields(self.existing(&map, &org.to_hex()).as_ref(), fields),
            })
            .collect()
    }

    fn read_fields(&self, obj: Option<&ObjId>, fields: &[Field]) -> Vec<FieldView> {
        fields
            .iter()
            .map(|field| FieldView {
                key: field.key,
                label: field.label,
                ty: field.ty,
                value: obj
                    .map(|o| self.scalar_or_text(o, field))
                    .unwrap_or_default(),
            })
            .collect()
    }

    fn scalar_or_text(&self, obj: &ObjId, field: &Field) -> String {
        match self.doc.get(obj, field.key) {
            Ok(Some((Value::Object(ObjType::Text), text))) => {
                self.doc.text(&text).unwrap_or_default()
            }
            Ok(Some((Value::Scalar(v), _))) => match v.as_ref() {
                ScalarValue::Str(s) => s.to_string(),
                ScalarValue::Int(n) => n.to_string(),
                ScalarValue::Uint(n) => n.to_string(),
                _ => String::new(),
            },
            _ => String::new(),
        }
    }

    fn text_at(&self, parent: &ObjId, key: &str) -> String {
        match self.doc.get(parent, key) {
            Ok(Some((Value::Object(ObjType::Text), text))) => {
                self.doc.text(&text).unwrap_or_default()
            }
            _ => String::new(),
        }
    }

    fn existing(&self, parent: &ObjId, key: &str) -> Option<ObjId> {
        match self.doc.get(parent, key) {
            Ok(Some((Value::Object(_), obj))) => Some(obj),
            _ => None,
        }
    }
}

/// Items are addressed by a short id derived from their Automerge object
/// id, which is unique across replicas without any shared counter.
fn short_item_id(obj: &ObjId) -> String {
    let digest = Sha256::digest(obj.to_string().as_bytes());
    let id = data_encoding::BASE32_DNSSEC.encode(&digest[..5]);
    // An id that looks like a small number would be read as a position.
    if id.chars().all(|c| c.is_ascii_digit()) {
        format!("i{}", &id[1..])
    } else {
        id
    }
}

fn single_field(
    section: &'static Section,
    field: Option<&'static Field>,
    path: &str,
) -> Result<&'static Field, ModelError> {
    match (field, section.fields()) {
        (Some(field), _) => Ok(field),
        (None, [only]) => Ok(only),
        (None, fields) => Err(ModelError::WrongShape {
            path: path.to_owned(),
            what: "an item with several fields",
            hint: format!(
                "name one of them: {}",
                fields
                    .iter()
                    .map(|f| format!("{path}.{}", f.key))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Whether `value` would be accepted by `put_field`, without writing anything.
fn check_value(field: &Field, value: &str, roster: &RosterView) -> Result<(), ModelError> {
    match field.ty {
        ValueType::Org if !value.trim().is_empty() => roster.resolve_member(value).map(|_| ()),
        _ => check_scalar(field, value).map(|_| ()),
    }
}

fn not_a_list(path: &str) -> ModelError {
    ModelError::WrongShape {
        path: path.to_owned(),
        what: "not a list",
        hint: "lists are objectives, milestones, values, ground_rules and steps".into(),
    }
}

fn malformed(detail: String) -> ModelError {
    ModelError::Malformed {
        expected: "agreement",
        detail,
    }
}
