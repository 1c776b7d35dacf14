//! Model ↔ SCIM JSON: the representation of users and groups, the writable fields read back from a
//! client's JSON (with the tolerance real clients need), and attribute projection.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::error::ScimError;
use super::filter::{AttrRef, get_ci, split_attr};
use super::schema::{ENTERPRISE_URN, Kind, Mutability, ResourceDef, Returned};
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

pub fn user_json(snap: &Snapshot, idx: usize, def: &ResourceDef, base: &str, dir: &Directory) -> Value {
    let u = snap.user(idx);
    let attached = dir.attached_user(u);
    let mut v = json!({"schemas": [def.kind.urn()], "id": u.id, "userName": u.login});
    if let Some(x) = attached.external_id {
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
    match attached.display_name {
        // A client removed it.
        Some(d) if d.is_empty() => {}
        Some(d) => v["displayName"] = json!(d),
        None => v["displayName"] = json!(u.full_name()),
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
    let groups: Vec<Value> = snap
        .groups_of(idx)
        .into_iter()
        .map(|gi| {
            let g = snap.group(gi);
            let id = scim_id(Kind::Group, &g.id);
            json!({"value": id, "display": g.name, "$ref": format!("{base}/Groups/{id}"), "type": "direct"})
        })
        .collect();
    if !groups.is_empty() {
        v["groups"] = Value::Array(groups);
    }
    if def.extension.is_some()
        && let Some(n) = u.employee_number.as_deref().filter(|n| !n.is_empty())
    {
        v[ENTERPRISE_URN] = json!({"employeeNumber": n});
        v["schemas"] = json!([def.kind.urn(), ENTERPRISE_URN]);
    }
    finish(v, Kind::User, base, &u.id, u.created, u.modified)
}

pub fn group_json(snap: &Snapshot, idx: usize, base: &str, dir: &Directory) -> Value {
    let g = snap.group(idx);
    let id = scim_id(Kind::Group, &g.id);
    let mut v = json!({"schemas": [Kind::Group.urn()], "id": id, "displayName": g.name});
    if let Some(x) = dir.group_external_id(g) {
        v["externalId"] = json!(x);
    }
    let members: Vec<Value> = snap
        .members_of(idx)
        .into_iter()
        .map(|ui| {
            let u = snap.user(ui);
            json!({"value": u.id, "display": u.login, "$ref": format!("{base}/Users/{}", u.id), "type": "User"})
        })
        .collect();
    v["members"] = Value::Array(members);
    finish(v, Kind::Group, base, &id, g.created, g.modified)
}

// ---------------------------------------------------------------------------------------------
// Reading a client's JSON

/// The user fields SCIM can write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFields {
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
}

impl UserFields {
    pub fn of(u: &User, attached: &Attached) -> UserFields {
        UserFields {
            login: u.login.clone(),
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
            display_name: match &attached.display_name {
                Some(d) if d.is_empty() => None,
                Some(d) => Some(d.clone()),
                None => Some(u.full_name()),
            },
        }
    }

    /// What must change in the backend to go from `old` to `self` (externalId is not a backend field).
    pub fn changes_from(&self, old: &UserFields, employee_number: bool) -> UserChanges {
        fn opt(new: &Option<String>, old: &Option<String>) -> Option<Option<String>> {
            (new != old).then(|| new.clone())
        }
        UserChanges {
            login: (self.login != old.login).then(|| self.login.clone()),
            first_name: (self.given != old.given).then(|| self.given.clone()),
            last_name: (self.family != old.family).then(|| self.family.clone()),
            email: (self.email != old.email).then(|| self.email.clone()),
            phone: opt(&self.phone, &old.phone),
            mobile: opt(&self.mobile, &old.mobile),
            title: opt(&self.title, &old.title),
            locale: opt(&self.locale, &old.locale),
            employee_number: if employee_number { opt(&self.employee_number, &old.employee_number) } else { None },
            active: self.active.filter(|a| Some(*a) != old.active),
            admin: None,
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
                    for (ek, ev) in ext {
                        if ek.eq_ignore_ascii_case("schemas") || ek.eq_ignore_ascii_case("meta") {
                            continue;
                        }
                        if ek.eq_ignore_ascii_case("employeeNumber") && def.extension.is_some() {
                            f.employee_number = opt_string("employeeNumber", ev)?;
                        } else if !is_empty_value(&normalise_manager(ek, ev)) {
                            return Err(unsupported_attr(ek));
                        }
                    }
                }
                _ => return Err(ScimError::invalid_value(format!("{ENTERPRISE_URN} must be an object"))),
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

/// The writable group fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupFields {
    pub name: String,
    pub members: Vec<String>,
    pub external_id: Option<String>,
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
                                return Err(ScimError::invalid_value("members: each member needs a value (a user id)"));
                            }
                        },
                        _ => return Err(ScimError::invalid_value("members must hold objects")),
                    };
                    if !f.members.contains(&id) {
                        f.members.push(id);
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
        if part.eq_ignore_ascii_case(ENTERPRISE_URN) {
            out.push(AttrRef { urn: None, name: ENTERPRISE_URN.into(), sub: None });
            continue;
        }
        out.push(split_attr(part).ok_or_else(|| ScimError::invalid_value(format!("invalid attribute name {part:?}")))?);
    }
    Ok(out)
}

/// Where an attribute lives in the JSON: (extension?, canonical key).
fn locate(r: &AttrRef, def: &ResourceDef) -> Option<(bool, String)> {
    if r.name == ENTERPRISE_URN {
        return Some((false, ENTERPRISE_URN.into()));
    }
    let d = r.def(def)?;
    Some((r.is_extension(def), d.name.to_string()))
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
            let src = if ext { obj.get(ENTERPRISE_URN).and_then(|e| e.get(&key)) } else { obj.get(&key) };
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
            if ext {
                let e = out.entry(ENTERPRISE_URN.to_string()).or_insert_with(|| json!({}));
                e[key] = val;
            } else {
                out.insert(key, val);
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
            (None, false) => {
                obj.remove(&key);
            }
            (None, true) => {
                if let Some(Value::Object(e)) = obj.get_mut(ENTERPRISE_URN) {
                    e.remove(&key);
                }
            }
            (Some(sub), false) => match obj.get_mut(&key) {
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
            (Some(_), true) => {}
        }
    }
    // Sub-attributes returned only on request.
    for a in &def.core {
        for sub in a.sub.iter().filter(|s| s.returned == Returned::Request) {
            let asked = attrs.iter().any(|r| {
                r.name.eq_ignore_ascii_case(a.name) && r.sub.as_deref().is_none_or(|s| s.eq_ignore_ascii_case(sub.name))
            });
            if asked {
                continue;
            }
            if let Some(Value::Array(items)) = obj.get_mut(a.name) {
                for e in items.iter_mut() {
                    if let Value::Object(o) = e {
                        o.remove(sub.name);
                    }
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
    if obj.get(ENTERPRISE_URN).is_some_and(|e| e.as_object().is_some_and(|o| o.is_empty())) {
        obj.remove(ENTERPRISE_URN);
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
        let e = user_fields(&json!({"userName": "a", ENTERPRISE_URN: {"manager": "12"}}), &def()).unwrap_err();
        assert!(e.detail.contains("manager"), "{}", e.detail);
        user_fields(&json!({"userName": "a", ENTERPRISE_URN: {"manager": ""}}), &def()).unwrap();
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
