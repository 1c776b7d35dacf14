//! Model ↔ SCIM JSON: the representation of users and groups, the writable fields read back from a
//! client's JSON (with the tolerance real clients need), and attribute projection.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::error::ScimError;
use super::filter::{AttrRef, get_ci, split_attr};
use super::schema::{ENTERPRISE_URN, Kind, Mutability, ResourceDef, Returned};
use crate::config::{AttributeSyntax, CustomAttribute, MemberOf};
use crate::directory::{Attached, Directory, Snapshot};
use crate::model::{User, UserChanges};

/// SCIM ids must be unique across resource types (RFC 7643 §3.1), but backends number users and
/// groups separately: users keep the backend id, groups get a `g` prefix.
pub fn scim_id(kind: Kind, backend_id: &str) -> String {
    match kind {
        Kind::User => backend_id.to_string(),
        Kind::Group => format!("g{backend_id}"),
    }
}

/// The backend id behind a SCIM id, if it is one of ours.
pub fn backend_id(kind: Kind, scim_id: &str) -> Option<&str> {
    match kind {
        Kind::User => Some(scim_id),
        Kind::Group => scim_id.strip_prefix('g'),
    }
}

fn rfc3339(unix: Option<i64>) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix.unwrap_or(0)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Weak ETag of a representation (content-derived, so stable across restarts).
fn version_of(v: &Value) -> String {
    let h = Sha256::digest(serde_json::to_vec(v).unwrap_or_default());
    format!("W/\"{}\"", hex::encode(&h[..8]))
}

fn finish(mut v: Value, kind: Kind, base: &str, id: &str, created: Option<i64>, modified: Option<i64>) -> Value {
    let version = version_of(&v);
    v["meta"] = json!({
        "resourceType": kind.name(),
        "created": rfc3339(created.or(modified)),
        "lastModified": rfc3339(modified.or(created)),
        "location": format!("{base}/{}/{id}", kind.endpoint()),
        "version": version,
    });
    v
}

fn locale_out(l: &str) -> String {
    l.replace('_', "-")
}
fn locale_in(l: &str) -> String {
    l.replace('-', "_")
}

/// The user's display name as SCIM shows it: the one a client set, else the full name; `None`
/// when a client removed it.
fn display_name(u: &User, attached: &Attached) -> Option<String> {
    match &attached.display_name {
        Some(d) if d.is_empty() => None,
        Some(d) => Some(d.clone()),
        None => Some(u.full_name()),
    }
}

fn rfc3339_of(unix: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).ok()?;
    t.format(&time::format_description::well_known::Rfc3339).ok()
}

/// A canonical custom value (core text) as SCIM JSON: integers as numbers, booleans as booleans,
/// dates as xsd:dateTime. A value the backend holds in another form is shown as the text it is.
fn custom_json(syntax: AttributeSyntax, v: &str) -> Value {
    match syntax {
        AttributeSyntax::String => json!(v),
        AttributeSyntax::Integer => v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n)),
        AttributeSyntax::Boolean => match v {
            "true" => json!(true),
            "false" => json!(false),
            other => json!(other),
        },
        AttributeSyntax::Date => v.parse::<i64>().ok().and_then(rfc3339_of).map_or_else(|| json!(v), |d| json!(d)),
    }
}

/// The custom extension's object for a user: each configured attribute it has a value of.
fn custom_object(u: &User, custom: &[CustomAttribute]) -> Map<String, Value> {
    let mut out = Map::new();
    for a in custom {
        let Some(values) = u.custom.get(&a.field).filter(|v| !v.is_empty()) else { continue };
        let mut items = values.iter().map(|v| custom_json(a.syntax, v));
        let v = if a.multi { Value::Array(items.collect()) } else { items.next().unwrap_or(Value::Null) };
        out.insert(a.scim_name().to_string(), v);
    }
    out
}

/// The manager as the enterprise extension shows it, when it is a user of the snapshot.
fn manager_json(snap: &Snapshot, u: &User, base: &str, dir: &Directory) -> Option<Value> {
    let mi = snap.user_index(u.manager.as_deref()?)?;
    let m = snap.user(mi);
    let id = scim_id(Kind::User, &m.id);
    let mut v = json!({"value": id, "$ref": format!("{base}/Users/{id}")});
    if let Some(d) = display_name(m, &dir.attached_user(m)) {
        v["displayName"] = json!(d);
    }
    Some(v)
}

fn group_ref(snap: &Snapshot, gi: usize, base: &str, ty: &str) -> Value {
    let g = snap.group(gi);
    let id = scim_id(Kind::Group, &g.id);
    json!({"value": id, "display": g.name, "$ref": format!("{base}/Groups/{id}"), "type": ty})
}

pub fn user_json(snap: &Snapshot, idx: usize, def: &ResourceDef, base: &str, dir: &Directory) -> Value {
    let u = snap.user(idx);
    let attached = dir.attached_user(u);
    let user_name = attached.user_name.clone().unwrap_or_else(|| u.login.clone());
    let mut v = json!({"schemas": [def.kind.urn()], "id": u.id, "userName": user_name});
    if let Some(x) = &attached.external_id {
        v["externalId"] = json!(x);
    }
    let mut name = Map::new();
    if !u.first_name.is_empty() {
        name.insert("givenName".into(), json!(u.first_name));
    }
    if !u.last_name.is_empty() {
        name.insert("familyName".into(), json!(u.last_name));
    }
    if !name.is_empty() {
        v["name"] = Value::Object(name);
    }
    if let Some(d) = display_name(u, &attached) {
        v["displayName"] = json!(d);
    }
    if let Some(t) = u.title.as_deref().filter(|t| !t.is_empty()) {
        v["title"] = json!(t);
    }
    if let Some(l) = u.locale.as_deref().filter(|t| !t.is_empty()) {
        v["locale"] = json!(locale_out(l));
    }
    v["active"] = json!(u.active);
    if !u.email.is_empty() {
        v["emails"] = json!([{"value": u.email, "type": "work"}]);
    }
    let mut phones = Vec::new();
    if let Some(p) = u.phone.as_deref().filter(|p| !p.is_empty()) {
        phones.push(json!({"value": p, "type": "work"}));
    }
    if let Some(p) = u.mobile.as_deref().filter(|p| !p.is_empty()) {
        phones.push(json!({"value": p, "type": "mobile"}));
    }
    if !phones.is_empty() {
        v["phoneNumbers"] = Value::Array(phones);
    }
    let direct = snap.groups_of(idx);
    let mut groups: Vec<Value> = direct.iter().map(|&gi| group_ref(snap, gi, base, "direct")).collect();
    if dir.member_of() == MemberOf::Transitive && snap.has_nesting() {
        let indirect = snap.groups_of_transitive(idx).into_iter().filter(|gi| !direct.contains(gi));
        groups.extend(indirect.map(|gi| group_ref(snap, gi, base, "indirect")));
    }
    if !groups.is_empty() {
        v["groups"] = Value::Array(groups);
    }
    let mut schemas = vec![json!(def.kind.urn())];
    let mut enterprise = Map::new();
    if def.attr(Some(ENTERPRISE_URN), "employeeNumber").is_some()
        && let Some(n) = u.employee_number.as_deref().filter(|n| !n.is_empty())
    {
        enterprise.insert("employeeNumber".into(), json!(n));
    }
    if def.attr(Some(ENTERPRISE_URN), "manager").is_some()
        && let Some(m) = manager_json(snap, u, base, dir)
    {
        enterprise.insert("manager".into(), m);
    }
    if !enterprise.is_empty() {
        schemas.push(json!(ENTERPRISE_URN));
        v[ENTERPRISE_URN] = Value::Object(enterprise);
    }
    if let Some(urn) = def.custom_urn {
        let custom = custom_object(u, &def.custom);
        if !custom.is_empty() {
            schemas.push(json!(urn));
            v[urn] = Value::Object(custom);
        }
    }
    v["schemas"] = Value::Array(schemas);
    finish(v, Kind::User, base, &u.id, u.created, u.modified)
}

pub fn group_json(snap: &Snapshot, idx: usize, base: &str, dir: &Directory) -> Value {
    let g = snap.group(idx);
    let id = scim_id(Kind::Group, &g.id);
    let mut v = json!({"schemas": [Kind::Group.urn()], "id": id, "displayName": g.name});
    if let Some(x) = dir.group_external_id(g) {
        v["externalId"] = json!(x);
    }
    let mut members: Vec<Value> = snap
        .members_of(idx)
        .into_iter()
        .map(|ui| {
            let u = snap.user(ui);
            json!({"value": u.id, "display": dir.user_name(u), "$ref": format!("{base}/Users/{}", u.id), "type": "User"})
        })
        .collect();
    members.extend(snap.child_groups_of(idx).into_iter().map(|ci| group_ref(snap, ci, base, "Group")));
    v["members"] = Value::Array(members);
    finish(v, Kind::Group, base, &id, g.created, g.modified)
}

// ---------------------------------------------------------------------------------------------
// Reading a client's JSON

/// The user fields SCIM can write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFields {
    /// The `userName`: the login, or the name a client gave when the backend keeps another login.
    pub login: String,
    pub given: String,
    pub family: String,
    pub email: String,
    pub phone: Option<String>,
    pub mobile: Option<String>,
    pub title: Option<String>,
    pub locale: Option<String>,
    pub employee_number: Option<String>,
    pub active: Option<bool>,
    pub external_id: Option<String>,
    /// Kept by the gateway when it differs from the name.
    pub display_name: Option<String>,
    /// The manager's SCIM id.
    pub manager: Option<String>,
    /// Custom attribute values by backend field, in the core's canonical text.
    pub custom: BTreeMap<String, Vec<String>>,
    /// The extensions whose attributes the client stated (their object is in the body): a PUT
    /// that leaves an extension out does not clear what it holds (RFC 7644 §3.5.1 lets a
    /// server treat omitted attributes as not asserted).
    pub asserted: BTreeSet<String>,
}

impl UserFields {
    /// The fields as SCIM shows them now. A manager that is not in the snapshot is not shown, so
    /// it is not in the fields either: an edit leaves it alone unless it names another.
    pub fn of(snap: &Snapshot, u: &User, attached: &Attached, def: &ResourceDef) -> UserFields {
        UserFields {
            login: attached.user_name.clone().unwrap_or_else(|| u.login.clone()),
            given: u.first_name.clone(),
            family: u.last_name.clone(),
            email: u.email.clone(),
            phone: u.phone.clone().filter(|s| !s.is_empty()),
            mobile: u.mobile.clone().filter(|s| !s.is_empty()),
            title: u.title.clone().filter(|s| !s.is_empty()),
            locale: u.locale.clone().filter(|s| !s.is_empty()),
            employee_number: u.employee_number.clone().filter(|s| !s.is_empty()),
            active: Some(u.active),
            external_id: attached.external_id.clone(),
            display_name: display_name(u, attached),
            manager: u.manager.clone().filter(|m| snap.user_index(m).is_some()).map(|m| scim_id(Kind::User, &m)),
            custom: def
                .custom
                .iter()
                .filter_map(|a| Some((a.field.clone(), u.custom.get(&a.field).filter(|v| !v.is_empty())?.clone())))
                .collect(),
            asserted: def.extensions.iter().map(|e| e.urn.to_string()).collect(),
        }
    }

    /// What must change in the backend to go from `old` to `self` (externalId, the display name
    /// and the userName are not backend fields: the caller passes them on).
    pub fn changes_from(&self, old: &UserFields, def: &ResourceDef) -> UserChanges {
        fn opt(new: &Option<String>, old: &Option<String>) -> Option<Option<String>> {
            (new != old).then(|| new.clone())
        }
        let enterprise = self.asserted.contains(ENTERPRISE_URN);
        let has = |name: &str| enterprise && def.attr(Some(ENTERPRISE_URN), name).is_some();
        let mut custom = BTreeMap::new();
        if let Some(urn) = def.custom_urn.filter(|u| self.asserted.contains(*u)) {
            for a in def.custom.iter() {
                let writable =
                    def.attr(Some(urn), a.scim_name()).is_some_and(|d| d.mutability == Mutability::ReadWrite);
                let (new, was) = (self.custom.get(&a.field), old.custom.get(&a.field));
                if writable && new != was {
                    custom.insert(a.field.clone(), new.cloned());
                }
            }
        }
        UserChanges {
            first_name: (self.given != old.given).then(|| self.given.clone()),
            last_name: (self.family != old.family).then(|| self.family.clone()),
            email: (self.email != old.email).then(|| self.email.clone()),
            phone: opt(&self.phone, &old.phone),
            mobile: opt(&self.mobile, &old.mobile),
            title: opt(&self.title, &old.title),
            locale: opt(&self.locale, &old.locale),
            employee_number: if has("employeeNumber") {
                opt(&self.employee_number, &old.employee_number)
            } else {
                None
            },
            active: self.active.filter(|a| Some(*a) != old.active),
            admin: None,
            // SCIM ids of users are backend ids (`scim_id`).
            manager: if has("manager") { opt(&self.manager, &old.manager) } else { None },
            custom,
            ..Default::default()
        }
    }
}

/// True for values a client sends to mean "nothing": null, "", [], {} (recursively).
pub fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.iter().all(is_empty_value),
        Value::Object(o) => o.values().all(is_empty_value),
        _ => false,
    }
}

fn opt_string(name: &str, v: &Value) -> Result<Option<String>, ScimError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ScimError::invalid_value(format!("{name} must be a string"))),
    }
}

/// A boolean, also from the strings "True"/"False" that some clients send.
pub fn boolean(name: &str, v: &Value) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::invalid_value(format!("{name} must be a boolean"))),
    }
}

pub fn unsupported_attr(name: &str) -> ScimError {
    ScimError::invalid_value(format!(
        "attribute {name} cannot be stored by the configured backend (it is not in /Schemas); only empty values are accepted"
    ))
}

fn array<'a>(name: &str, v: &'a Value) -> Result<Vec<&'a Value>, ScimError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => Ok(a.iter().filter(|x| !x.is_null()).collect()),
        Value::Object(_) => Ok(vec![v]),
        _ => Err(ScimError::invalid_value(format!("{name} must be an array"))),
    }
}

/// Reads the writable user fields (and a password) from a full user representation. Read-only
/// attributes are ignored (RFC 7644 §3.5.1); attributes the backend cannot store are accepted only
/// when empty.
pub fn user_fields(v: &Value, def: &ResourceDef) -> Result<(UserFields, Option<String>), ScimError> {
    let obj = v.as_object().ok_or_else(|| ScimError::invalid_syntax("a User must be a JSON object"))?;
    let mut f = UserFields::default();
    let mut login = None;
    let mut password = None;
    let mut preferred_language = None;
    for (k, val) in obj {
        let key = k.to_ascii_lowercase();
        match key.as_str() {
            "schemas" | "meta" | "id" | "groups" => {}
            "displayname" => f.display_name = opt_string("displayName", val)?,
            "username" => login = opt_string("userName", val)?,
            "externalid" => f.external_id = opt_string("externalId", val)?,
            "name" => match val {
                Value::Null => {}
                Value::Object(n) => {
                    for (nk, nv) in n {
                        match nk.to_ascii_lowercase().as_str() {
                            "givenname" => f.given = opt_string("name.givenName", nv)?.unwrap_or_default(),
                            "familyname" => f.family = opt_string("name.familyName", nv)?.unwrap_or_default(),
                            "formatted" => {}
                            _ if is_empty_value(nv) => {}
                            _ => return Err(unsupported_attr(&format!("name.{nk}"))),
                        }
                    }
                }
                _ => return Err(ScimError::invalid_value("name must be an object")),
            },
            "title" => f.title = opt_string("title", val)?,
            "locale" => f.locale = opt_string("locale", val)?.map(|l| locale_in(&l)),
            "preferredlanguage" => preferred_language = opt_string("preferredLanguage", val)?.map(|l| locale_in(&l)),
            "active" => f.active = if val.is_null() { None } else { Some(boolean("active", val)?) },
            "password" => password = opt_string("password", val)?,
            "emails" => {
                let items = array("emails", val)?;
                let mut chosen: Option<String> = None;
                let mut distinct = std::collections::BTreeSet::new();
                for e in &items {
                    let value = match e {
                        Value::String(s) => Some(s.clone()),
                        Value::Object(_) => opt_string("emails.value", get_ci(e, "value").unwrap_or(&Value::Null))?,
                        _ => return Err(ScimError::invalid_value("emails must hold objects")),
                    };
                    let Some(value) = value else { continue };
                    distinct.insert(value.to_lowercase());
                    let primary = get_ci(e, "primary").map(|p| boolean("emails.primary", p)).transpose()?;
                    if chosen.is_none() || primary == Some(true) {
                        chosen = Some(value);
                    }
                }
                if distinct.len() > 1 {
                    return Err(ScimError::invalid_value("emails: the backend stores a single (work) address"));
                }
                f.email = chosen.unwrap_or_default();
            }
            "phonenumbers" => {
                for e in array("phoneNumbers", val)? {
                    let value = opt_string("phoneNumbers.value", get_ci(e, "value").unwrap_or(&Value::Null))?;
                    let Some(value) = value else { continue };
                    let ty = get_ci(e, "type").and_then(Value::as_str).unwrap_or("work").to_ascii_lowercase();
                    let slot = match ty.as_str() {
                        "mobile" => &mut f.mobile,
                        "work" if f.phone.is_none() => &mut f.phone,
                        _ if f.phone.is_none() => &mut f.phone,
                        _ if f.mobile.is_none() => &mut f.mobile,
                        _ => {
                            return Err(ScimError::invalid_value(
                                "phoneNumbers: the backend stores one work and one mobile number",
                            ));
                        }
                    };
                    if slot.is_some() {
                        return Err(ScimError::invalid_value(format!("phoneNumbers: more than one {ty} number")));
                    }
                    *slot = Some(value);
                }
            }
            _ if key == ENTERPRISE_URN.to_ascii_lowercase() => match val {
                Value::Null => {}
                Value::Object(ext) => {
                    f.asserted.insert(ENTERPRISE_URN.to_string());
                    for (ek, ev) in ext {
                        if ek.eq_ignore_ascii_case("schemas") || ek.eq_ignore_ascii_case("meta") {
                            continue;
                        }
                        let known = def.attr(Some(ENTERPRISE_URN), ek).is_some();
                        if known && ek.eq_ignore_ascii_case("employeeNumber") {
                            f.employee_number = opt_string("employeeNumber", ev)?;
                        } else if known && ek.eq_ignore_ascii_case("manager") {
                            f.manager = manager_id(ev)?;
                        } else if !is_empty_value(&normalise_manager(ek, ev)) {
                            return Err(unsupported_attr(ek));
                        }
                    }
                }
                _ => return Err(ScimError::invalid_value(format!("{ENTERPRISE_URN} must be an object"))),
            },
            _ if def.custom_urn.is_some_and(|u| u.eq_ignore_ascii_case(k)) => match val {
                Value::Null => {}
                Value::Object(ext) => {
                    f.asserted.insert(def.custom_urn.unwrap_or_default().to_string());
                    for (ek, ev) in ext {
                        if ek.eq_ignore_ascii_case("schemas") || ek.eq_ignore_ascii_case("meta") {
                            continue;
                        }
                        let Some(a) = def.custom_attr(ek) else {
                            if is_empty_value(ev) {
                                continue;
                            }
                            return Err(unsupported_attr(&format!("{k}:{ek}")));
                        };
                        let values = custom_values(a, ev)?;
                        if !values.is_empty() {
                            f.custom.insert(a.field.clone(), values);
                        }
                    }
                }
                _ => return Err(ScimError::invalid_value(format!("{k} must be an object"))),
            },
            _ if is_empty_value(val) => {}
            _ => return Err(unsupported_attr(k)),
        }
    }
    if f.locale.is_none() {
        f.locale = preferred_language;
    }
    f.login = login.ok_or_else(|| ScimError::invalid_value("userName is required"))?;
    Ok((f, password))
}

/// Entra sends the manager as a bare id string; it means `{"value": id}`.
pub fn normalise_manager(key: &str, v: &Value) -> Value {
    match v {
        Value::String(s) if key.eq_ignore_ascii_case("manager") => json!({"value": s}),
        v => v.clone(),
    }
}

/// The manager's id from `manager`: `{"value": id}`, or Entra's bare id; empty means none.
fn manager_id(v: &Value) -> Result<Option<String>, ScimError> {
    match normalise_manager("manager", v) {
        Value::Null => Ok(None),
        m @ Value::Object(_) => match get_ci(&m, "value") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(ScimError::invalid_value("manager.value must be a string (the manager's id)")),
        },
        _ => Err(ScimError::invalid_value("manager must be an object with a value (the manager's id)")),
    }
}

/// A custom attribute's SCIM value as the core's canonical text (which the core then checks):
/// strings as they are, integers in decimal, booleans `true`/`false`, dateTimes as Unix seconds.
pub fn custom_values(a: &CustomAttribute, v: &Value) -> Result<Vec<String>, ScimError> {
    let name = a.scim_name();
    let items: Vec<&Value> = match v {
        Value::Array(items) => items.iter().filter(|x| !is_empty_value(x)).collect(),
        v if is_empty_value(v) => Vec::new(),
        v => vec![v],
    };
    if !a.multi && items.len() > 1 {
        return Err(ScimError::invalid_value(format!("{name} takes a single value, not {}", items.len())));
    }
    items
        .into_iter()
        .map(|x| match (a.syntax, x) {
            (AttributeSyntax::String, Value::String(s)) => Ok(s.clone()),
            (AttributeSyntax::String, _) => Err(ScimError::invalid_value(format!("{name} must be a string"))),
            (AttributeSyntax::Integer, Value::Number(n)) if n.is_i64() => Ok(n.to_string()),
            // Checked by the core, which names the attribute and the value.
            (AttributeSyntax::Integer, Value::String(s)) => Ok(s.clone()),
            (AttributeSyntax::Integer, _) => {
                Err(ScimError::invalid_value(format!("{name} must be an integer (a 64-bit whole number)")))
            }
            (AttributeSyntax::Boolean, x) => boolean(name, x).map(|b| b.to_string()),
            (AttributeSyntax::Date, Value::String(s)) => {
                time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
                    .map(|t| t.unix_timestamp().to_string())
                    .map_err(|_| {
                        ScimError::invalid_value(format!(
                            "{name} must be an xsd:dateTime such as 2024-05-01T09:30:00Z, not {s:?}"
                        ))
                    })
            }
            (AttributeSyntax::Date, _) => Err(ScimError::invalid_value(format!("{name} must be a dateTime string"))),
        })
        .collect()
}

/// The writable group fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupFields {
    pub name: String,
    /// Members as the client named them: SCIM id and, when given, `type` (`User` or `Group`).
    pub members: Vec<(String, Option<MemberType>)>,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberType {
    User,
    Group,
}

/// A group's members split into backend user ids and backend group ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl GroupFields {
    /// Splits the members by kind. Without a `type`, a value is a user when a user has that id,
    /// else a group when it is a group's SCIM id; the core refuses ids that are neither.
    pub fn resolve(&self, snap: &Snapshot) -> Result<Members, ScimError> {
        let mut out = Members::default();
        for (id, ty) in &self.members {
            let group = || backend_id(Kind::Group, id).filter(|b| snap.group_index(b).is_some());
            let as_group = match ty {
                Some(MemberType::Group) => Some(group().ok_or_else(|| {
                    ScimError::invalid_value(format!("members: {id:?} (type Group) is not an existing group"))
                })?),
                Some(MemberType::User) => None,
                None if snap.user_index(id).is_some() => None,
                None => group(),
            };
            match as_group {
                Some(b) => out.groups.push(b.to_string()),
                None => out.users.push(id.clone()),
            }
        }
        Ok(out)
    }
}

pub fn group_fields(v: &Value) -> Result<GroupFields, ScimError> {
    let obj = v.as_object().ok_or_else(|| ScimError::invalid_syntax("a Group must be a JSON object"))?;
    let mut f = GroupFields::default();
    let mut name = None;
    for (k, val) in obj {
        match k.to_ascii_lowercase().as_str() {
            "schemas" | "meta" | "id" => {}
            "displayname" => name = opt_string("displayName", val)?,
            "externalid" => f.external_id = opt_string("externalId", val)?,
            "members" => {
                for m in array("members", val)? {
                    let id = match m {
                        Value::String(s) => s.clone(),
                        Value::Object(_) => match get_ci(m, "value") {
                            Some(Value::String(s)) if !s.is_empty() => s.clone(),
                            Some(Value::Number(n)) => n.to_string(),
                            _ => {
                                return Err(ScimError::invalid_value(
                                    "members: each member needs a value (a user or group id)",
                                ));
                            }
                        },
                        _ => return Err(ScimError::invalid_value("members must hold objects")),
                    };
                    let ty = match get_ci(m, "type") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(t)) if t.is_empty() => None,
                        Some(Value::String(t)) if t.eq_ignore_ascii_case("user") => Some(MemberType::User),
                        Some(Value::String(t)) if t.eq_ignore_ascii_case("group") => Some(MemberType::Group),
                        Some(t) => {
                            return Err(ScimError::invalid_value(format!(
                                "members: type must be \"User\" or \"Group\", not {t}"
                            )));
                        }
                    };
                    if !f.members.iter().any(|(m, _)| *m == id) {
                        f.members.push((id, ty));
                    }
                }
            }
            _ if is_empty_value(val) => {}
            _ => return Err(unsupported_attr(k)),
        }
    }
    f.name = name.ok_or_else(|| ScimError::invalid_value("displayName is required"))?;
    Ok(f)
}

// ---------------------------------------------------------------------------------------------
// Projection

/// Parses an `attributes` / `excludedAttributes` list.
pub fn parse_attr_list(s: &str) -> Result<Vec<AttrRef>, ScimError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        out.push(split_attr(part).ok_or_else(|| ScimError::invalid_value(format!("invalid attribute name {part:?}")))?);
    }
    Ok(out)
}

/// Where an attribute lives in the JSON: (its extension's URN, canonical key). A whole
/// extension (`attributes=urn:…:User`) is the top-level key named by its URN.
fn locate(r: &AttrRef, def: &ResourceDef) -> Option<(Option<&'static str>, String)> {
    if let Some(u) = &r.urn
        && r.sub.is_none()
        && let Some(e) = def.extension(&format!("{u}:{}", r.name))
    {
        return Some((None, e.urn.to_string()));
    }
    let d = r.def(def)?;
    Some((r.extension(def), d.name.to_string()))
}

/// Applies `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5) honouring `returned`.
pub fn project(v: Value, def: &ResourceDef, attrs: &[AttrRef], excluded: &[AttrRef]) -> Value {
    let Value::Object(mut obj) = v else { return v };
    if !attrs.is_empty() {
        let mut out = Map::new();
        for k in ["schemas", "id"] {
            if let Some(x) = obj.get(k) {
                out.insert(k.into(), x.clone());
            }
        }
        for r in attrs {
            let Some((ext, key)) = locate(r, def) else { continue };
            let src = match ext {
                Some(urn) => obj.get(urn).and_then(|e| e.get(&key)),
                None => obj.get(&key),
            };
            let Some(val) = src else { continue };
            let val = match &r.sub {
                None => val.clone(),
                Some(sub) => match val {
                    Value::Array(a) => {
                        // Several sub-attributes of one multi-valued attribute merge element by element.
                        let prev = out.get(&key).and_then(Value::as_array).cloned().unwrap_or_default();
                        let name = canonical_sub(def, r, sub);
                        Value::Array(
                            a.iter()
                                .enumerate()
                                .map(|(i, e)| {
                                    let mut o = prev.get(i).and_then(Value::as_object).cloned().unwrap_or_default();
                                    if let Some(x) = get_ci(e, sub) {
                                        o.insert(name.clone(), x.clone());
                                    }
                                    Value::Object(o)
                                })
                                .collect(),
                        )
                    }
                    Value::Object(_) => match get_ci(val, sub) {
                        Some(x) => merge_sub(out.get(&key), &canonical_sub(def, r, sub), x),
                        None => continue,
                    },
                    _ => continue,
                },
            };
            match ext {
                Some(urn) => {
                    let e = out.entry(urn.to_string()).or_insert_with(|| json!({}));
                    e[key] = val;
                }
                None => {
                    out.insert(key, val);
                }
            }
        }
        obj = out;
    }
    for r in excluded {
        let Some((ext, key)) = locate(r, def) else { continue };
        let always = r.def(def).is_some_and(|d| d.returned == Returned::Always);
        if always || key == "schemas" {
            continue;
        }
        match (&r.sub, ext) {
            (None, None) => {
                obj.remove(&key);
            }
            (None, Some(urn)) => {
                if let Some(Value::Object(e)) = obj.get_mut(urn) {
                    e.remove(&key);
                }
            }
            (Some(sub), None) => match obj.get_mut(&key) {
                Some(Value::Object(o)) => {
                    o.retain(|k, _| !k.eq_ignore_ascii_case(sub));
                }
                Some(Value::Array(a)) => a.iter_mut().for_each(|e| {
                    if let Value::Object(o) = e {
                        o.retain(|k, _| !k.eq_ignore_ascii_case(sub))
                    }
                }),
                _ => {}
            },
            (Some(_), Some(_)) => {}
        }
    }
    // Sub-attributes returned only on request, in the core schema and the extensions.
    let containers = std::iter::once((None, &def.core)).chain(def.extensions.iter().map(|e| (Some(e.urn), &e.attrs)));
    for (urn, list) in containers {
        for a in list {
            for sub in a.sub.iter().filter(|s| s.returned == Returned::Request) {
                let asked = attrs.iter().any(|r| {
                    r.name.eq_ignore_ascii_case(a.name)
                        && r.sub.as_deref().is_none_or(|s| s.eq_ignore_ascii_case(sub.name))
                });
                if asked {
                    continue;
                }
                let holder = match urn {
                    Some(u) => obj.get_mut(u).and_then(|e| e.get_mut(a.name)),
                    None => obj.get_mut(a.name),
                };
                match holder {
                    Some(Value::Array(items)) => items.iter_mut().for_each(|e| {
                        if let Value::Object(o) = e {
                            o.remove(sub.name);
                        }
                    }),
                    Some(Value::Object(o)) => {
                        o.remove(sub.name);
                    }
                    _ => {}
                }
            }
        }
    }
    // Never return write-only attributes.
    let never: Vec<String> = def
        .core
        .iter()
        .filter(|a| a.returned == Returned::Never || a.mutability == Mutability::WriteOnly)
        .map(|a| a.name.to_string())
        .collect();
    obj.retain(|k, _| !never.contains(k));
    for e in &def.extensions {
        if obj.get(e.urn).is_some_and(|x| x.as_object().is_some_and(|o| o.is_empty())) {
            obj.remove(e.urn);
        }
    }
    Value::Object(obj)
}

fn canonical_sub(def: &ResourceDef, r: &AttrRef, sub: &str) -> String {
    r.def(def).and_then(|d| d.sub_attr(sub).map(|s| s.name.to_string())).unwrap_or_else(|| sub.to_string())
}

fn merge_sub(existing: Option<&Value>, sub: &str, x: &Value) -> Value {
    let mut o = existing.and_then(Value::as_object).cloned().unwrap_or_default();
    o.insert(sub.to_string(), x.clone());
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Capabilities;

    fn def() -> ResourceDef {
        ResourceDef::user(&Capabilities::ALL)
    }

    #[test]
    fn entra_create_body_is_accepted() {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_URN, "urn:example:unknown"],
            "externalId": "0a21f0f2", "userName": "Test_User_1", "active": "True",
            "emails": [{"primary": true, "type": "work", "value": "t@x"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "g f", "familyName": "f", "givenName": "g"},
            "roles": [],
        });
        let (f, pw) = user_fields(&body, &def()).unwrap();
        assert_eq!(f.login, "Test_User_1");
        assert_eq!(f.active, Some(true));
        assert_eq!(f.email, "t@x");
        assert_eq!(f.external_id.as_deref(), Some("0a21f0f2"));
        assert!(pw.is_none());
    }

    #[test]
    fn refusals_name_the_attribute() {
        let e = user_fields(&json!({"userName": "a", "roles": [{"value": "x"}]}), &def()).unwrap_err();
        assert!(e.detail.contains("roles"), "{}", e.detail);
        let mut caps = Capabilities::ALL;
        caps.manager = false;
        let no_manager = ResourceDef::user(&caps);
        let e = user_fields(&json!({"userName": "a", ENTERPRISE_URN: {"manager": "12"}}), &no_manager).unwrap_err();
        assert!(e.detail.contains("manager"), "{}", e.detail);
        user_fields(&json!({"userName": "a", ENTERPRISE_URN: {"manager": ""}}), &no_manager).unwrap();
        // Where the backend keeps managers: Entra's bare id and the object form alike.
        let (f, _) = user_fields(&json!({"userName": "a", ENTERPRISE_URN: {"manager": "12"}}), &def()).unwrap();
        assert_eq!(f.manager.as_deref(), Some("12"));
        let (f, _) =
            user_fields(&json!({"userName": "a", ENTERPRISE_URN: {"manager": {"value": "7"}}}), &def()).unwrap();
        assert_eq!(f.manager.as_deref(), Some("7"));
        let e = user_fields(&json!({"userName": "a", ENTERPRISE_URN: {"manager": [1]}}), &def()).unwrap_err();
        assert!(e.detail.contains("manager"), "{}", e.detail);
        let e = user_fields(&json!({"userName": 3}), &def()).unwrap_err();
        assert!(e.detail.contains("userName"));
        let e = user_fields(&json!({"active": true}), &def()).unwrap_err();
        assert!(e.detail.contains("userName is required"));
        let e = user_fields(&json!({"userName": "a", "active": "maybe"}), &def()).unwrap_err();
        assert!(e.detail.contains("active"));
        let e = group_fields(&json!({"displayName": "g", "members": [{"display": "x"}]})).unwrap_err();
        assert!(e.detail.contains("members"));
    }

    #[test]
    fn custom_values_by_syntax() {
        let attr = |syntax, multi| CustomAttribute {
            name: "x".into(),
            field: "x".into(),
            scim_name: None,
            syntax,
            multi,
            separator: ",".into(),
            writable: true,
            indexed: true,
        };
        let ok = |a: &CustomAttribute, v: Value| custom_values(a, &v).unwrap();
        let int = attr(AttributeSyntax::Integer, false);
        assert_eq!(ok(&int, json!(42)), ["42"]);
        assert_eq!(ok(&int, json!("42")), ["42"], "the core checks strings");
        assert!(custom_values(&int, &json!(1.5)).is_err());
        assert!(custom_values(&int, &json!(true)).is_err());
        let b = attr(AttributeSyntax::Boolean, false);
        assert_eq!(ok(&b, json!("True")), ["true"]);
        assert!(custom_values(&b, &json!("maybe")).is_err());
        let d = attr(AttributeSyntax::Date, false);
        assert_eq!(ok(&d, json!("2024-05-01T00:00:00Z")), ["1714521600"]);
        assert_eq!(custom_json(AttributeSyntax::Date, "1714521600"), json!("2024-05-01T00:00:00Z"));
        assert!(custom_values(&d, &json!("yesterday")).unwrap_err().detail.contains("dateTime"));
        let st = attr(AttributeSyntax::String, false);
        assert!(custom_values(&st, &json!(["a", "b"])).unwrap_err().detail.contains("single"));
        assert!(custom_values(&st, &json!({"a": 1})).is_err());
        assert!(ok(&st, json!("")).is_empty());
        assert_eq!(ok(&attr(AttributeSyntax::String, true), json!(["a", "b"])), ["a", "b"]);
    }

    #[test]
    fn projection() {
        let v = json!({"schemas": ["s"], "id": "1", "userName": "a", "title": "t",
                       "name": {"givenName": "g", "familyName": "f"}, "meta": {"version": "v"},
                       ENTERPRISE_URN: {"employeeNumber": "9"}});
        let p = project(v.clone(), &def(), &parse_attr_list("USERNAME,name.givenName").unwrap(), &[]);
        assert_eq!(p, json!({"schemas": ["s"], "id": "1", "userName": "a", "name": {"givenName": "g"}}));
        let p = project(v.clone(), &def(), &[], &parse_attr_list("title,id,employeeNumber,meta").unwrap());
        assert!(p.get("title").is_none() && p.get("meta").is_none());
        assert_eq!(p["id"], "1", "id is always returned");
        assert!(p.get(ENTERPRISE_URN).is_none());
        let p = project(v, &def(), &parse_attr_list(&format!("{ENTERPRISE_URN}:employeeNumber")).unwrap(), &[]);
        assert_eq!(p[ENTERPRISE_URN]["employeeNumber"], "9");
    }
}
