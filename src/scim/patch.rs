//! PATCH (RFC 7644 §3.5.2) applied to a copy of the resource's JSON. Every operation is applied to
//! the copy first, so a request with one bad operation changes nothing; the caller then derives the
//! backend changes from the difference. Real-client shapes are normalised here: capitalised ops,
//! path-less values with dotted or URN keys, `remove` with a value list, bare-string manager.

use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::filter::{AttrRef, Filter, Limits, Op as FOp, element_matches, get_ci, parse_path, split_attr};
use super::resource::{boolean, is_empty_value, normalise_manager, unsupported_attr};
use super::schema::{AttrDef, Mutability, ResourceDef, Ty};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone)]
pub struct PatchOp {
    pub op: OpKind,
    pub path: Option<String>,
    pub value: Option<Value>,
}

/// The member ids a PatchOp explicitly removes: `remove` with `members[value eq "<id>"]`, or with
/// path `members` and a value listing them (Entra's form). The directory removes these in the
/// backend even when its cache does not list them.
pub fn member_removals(ops: &[PatchOp], limits: Limits) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for op in ops.iter().filter(|o| matches!(o.op, OpKind::Remove)) {
        let Some(path) = op.path.as_deref().and_then(|p| parse_path(p, limits).ok()) else { continue };
        if !path.attr.name.eq_ignore_ascii_case("members") || path.attr.sub.is_some() {
            continue;
        }
        match &path.filter {
            Some(f) => {
                if let Some((key, v)) = super::filter::indexed_eq(f)
                    && key == "value"
                {
                    out.insert(v.to_string());
                }
            }
            None => {
                let listed = op.value.as_ref().and_then(Value::as_array).into_iter().flatten();
                out.extend(listed.filter_map(|m| get_ci(m, "value")).filter_map(Value::as_str).map(String::from));
            }
        }
    }
    out
}

/// Reads a PatchOp message.
pub fn parse(body: &Value) -> Result<Vec<PatchOp>, ScimError> {
    let ops = get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("a PatchOp needs an Operations array"))?;
    if ops.is_empty() {
        return Err(ScimError::invalid_syntax("Operations is empty"));
    }
    ops.iter()
        .enumerate()
        .map(|(i, o)| {
            let op = match get_ci(o, "op").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
                Some("add") => OpKind::Add,
                Some("remove") => OpKind::Remove,
                Some("replace") => OpKind::Replace,
                other => {
                    return Err(ScimError::invalid_syntax(format!(
                        "operation {}: op must be add, remove or replace, not {other:?}",
                        i + 1
                    )));
                }
            };
            let path = match get_ci(o, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(ScimError::bad_request("invalidPath", "path must be a string")),
            };
            let value = get_ci(o, "value").cloned();
            if op != OpKind::Remove && value.is_none() {
                return Err(ScimError::invalid_syntax(format!("operation {}: {op:?} needs a value", i + 1)));
            }
            Ok(PatchOp { op, path, value })
        })
        .collect()
}

/// Applies all operations to `doc` (a full resource representation).
pub fn apply(doc: &mut Value, ops: &[PatchOp], def: &ResourceDef, limits: Limits) -> Result<(), ScimError> {
    for (i, op) in ops.iter().enumerate() {
        apply_one(doc, op, def, limits).map_err(|mut e| {
            e.detail = format!("operation {}: {}", i + 1, e.detail);
            e
        })?;
    }
    Ok(())
}

fn apply_one(doc: &mut Value, op: &PatchOp, def: &ResourceDef, limits: Limits) -> Result<(), ScimError> {
    match &op.path {
        // A whole extension as the target: its attributes, as in a path-less operation.
        Some(p) if def.extension(p.trim()).is_some() => match (op.op, &op.value) {
            (OpKind::Remove, _) => {
                let ext = def.extension(p.trim()).map(|e| e.attrs.clone()).unwrap_or_default();
                // Each writable attribute is removed; a read-only one stays (and is refused when set).
                let urn = p.trim();
                for a in ext.iter().filter(|a| a.mutability != Mutability::ReadOnly) {
                    let r = AttrRef { urn: Some(urn.to_string()), name: a.name.to_string(), sub: None };
                    apply_attr(doc, OpKind::Remove, &r, None, None, def, true)?;
                }
                Ok(())
            }
            (_, Some(v)) => {
                let wrapped = PatchOp { op: op.op, path: None, value: Some(json!({ p.trim(): v })) };
                apply_one(doc, &wrapped, def, limits)
            }
            (_, None) => Err(ScimError::invalid_syntax("a value is needed")),
        },
        Some(p) => {
            let pp = parse_path(p, limits)?;
            apply_attr(doc, op.op, &pp.attr, pp.filter.as_ref(), op.value.as_ref(), def, true)
        }
        None => {
            if op.op == OpKind::Remove {
                return Err(ScimError::bad_request("noTarget", "remove needs a path"));
            }
            let Some(Value::Object(obj)) = &op.value else {
                return Err(ScimError::invalid_syntax("an operation without a path needs an object value"));
            };
            for (k, v) in obj {
                if k.eq_ignore_ascii_case("schemas") || k.eq_ignore_ascii_case("meta") {
                    continue;
                }
                if def.extension(k).is_some() || k.eq_ignore_ascii_case(def.kind.urn()) {
                    match v {
                        Value::Object(inner) => {
                            for (ik, iv) in inner {
                                if ik.eq_ignore_ascii_case("schemas") || ik.eq_ignore_ascii_case("meta") {
                                    continue;
                                }
                                let r = split_attr(ik)
                                    .ok_or_else(|| ScimError::bad_request("invalidPath", format!("bad key {ik:?}")))?;
                                let r = AttrRef { urn: Some(k.clone()), ..r };
                                apply_attr(doc, op.op, &r, None, Some(iv), def, false)?;
                            }
                        }
                        v if is_empty_value(v) => {}
                        _ => return Err(ScimError::invalid_value(format!("{k} must be an object"))),
                    }
                    continue;
                }
                let r = split_attr(k).ok_or_else(|| ScimError::bad_request("invalidPath", format!("bad key {k:?}")))?;
                apply_attr(doc, op.op, &r, None, Some(v), def, false)?;
            }
            Ok(())
        }
    }
}

/// Converts a value to an attribute's type, accepting the string booleans real clients send.
fn coerce(a: &AttrDef, v: &Value, name: &str) -> Result<Value, ScimError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if a.multi && a.ty != Ty::Complex {
        // A multi-valued simple attribute: each value converted alone.
        let one = AttrDef { multi: false, ..a.clone() };
        let items: Vec<&Value> = match v {
            Value::Array(items) => items.iter().filter(|x| !x.is_null()).collect(),
            other => vec![other],
        };
        return Ok(Value::Array(items.into_iter().map(|e| coerce(&one, e, name)).collect::<Result<_, _>>()?));
    }
    match a.ty {
        Ty::Boolean => Ok(Value::Bool(boolean(name, v)?)),
        // Integers also arrive as strings; the text is checked when the resource is read back.
        Ty::Integer => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v.clone()),
            Value::String(_) => Ok(v.clone()),
            _ => Err(ScimError::invalid_value(format!("{name} must be an integer"))),
        },
        Ty::Complex => {
            let one = |e: &Value| -> Result<Value, ScimError> {
                match e {
                    Value::Object(o) => {
                        let mut out = Map::new();
                        for (k, x) in o {
                            match a.sub_attr(k) {
                                Some(s) => {
                                    out.insert(s.name.to_string(), coerce(s, x, &format!("{name}.{k}"))?);
                                }
                                None if is_empty_value(x) => {}
                                None => return Err(unsupported_attr(&format!("{name}.{k}"))),
                            }
                        }
                        Ok(Value::Object(out))
                    }
                    // A bare value means the `value` sub-attribute.
                    Value::String(_) | Value::Number(_) if a.sub_attr("value").is_some() => Ok(json!({"value": e})),
                    _ => Err(ScimError::invalid_value(format!("{name} must be an object"))),
                }
            };
            if a.multi {
                match v {
                    Value::Array(items) => {
                        Ok(Value::Array(items.iter().filter(|x| !x.is_null()).map(one).collect::<Result<_, _>>()?))
                    }
                    other => Ok(Value::Array(vec![one(other)?])),
                }
            } else {
                one(v)
            }
        }
        _ => match v {
            Value::String(_) => Ok(v.clone()),
            _ => Err(ScimError::invalid_value(format!("{name} must be a string"))),
        },
    }
}

fn same_member(a: &Value, b: &Value) -> bool {
    match (get_ci(a, "value"), get_ci(b, "value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[allow(clippy::too_many_arguments)]
fn apply_attr(
    doc: &mut Value,
    op: OpKind,
    r: &AttrRef,
    filter: Option<&Filter>,
    value: Option<&Value>,
    def: &ResourceDef,
    explicit_path: bool,
) -> Result<(), ScimError> {
    let name = r.display();
    let Some(a) = r.def(def) else {
        // Not advertised: the backend cannot store it. Removing it, or setting it empty, is harmless.
        let v = value.map(|v| normalise_manager(&r.name, v)).unwrap_or(Value::Null);
        if op == OpKind::Remove || is_empty_value(&v) {
            return Ok(());
        }
        return Err(unsupported_attr(&name));
    };
    let target = match &r.sub {
        Some(s) => Some(
            a.sub_attr(s)
                .cloned()
                .ok_or_else(|| ScimError::bad_request("invalidPath", format!("{name}: no such sub-attribute")))?,
        ),
        None => None,
    };
    let read_only = a.mutability == Mutability::ReadOnly
        || target.as_ref().is_some_and(|t| t.mutability == Mutability::ReadOnly)
        || a.name == "id";
    let ext = r.extension(def);
    let container = match ext {
        Some(urn) => {
            let o = doc.as_object_mut().ok_or_else(|| ScimError::invalid_syntax("resource is not an object"))?;
            let e = o.entry(urn.to_string()).or_insert_with(|| json!({}));
            if !e.is_object() {
                *e = json!({});
            }
            e
        }
        None => &mut *doc,
    };
    let obj = container.as_object_mut().ok_or_else(|| ScimError::invalid_syntax("resource is not an object"))?;
    if read_only {
        // Okta repeats `id` in path-less replaces: a read-only value equal to the current one
        // changes nothing. Server-managed values (meta, groups) echoed back in a path-less
        // (whole-resource) update are ignored; a different `id` never is.
        let current = obj.get(a.name).map(|c| match &r.sub {
            Some(s) => get_ci(c, s).cloned().unwrap_or(Value::Null),
            None => c.clone(),
        });
        if (!explicit_path && a.name != "id") || op == OpKind::Remove && current.is_none() || current.as_ref() == value
        {
            return Ok(());
        }
        return Err(ScimError::mutability(format!("{name} is read-only")));
    }
    let key = a.name.to_string();
    match filter {
        None => match (&r.sub, a.multi) {
            (Some(sub), false) => {
                let t = target.as_ref().ok_or_else(|| ScimError::bad_request("invalidPath", name.clone()))?;
                let entry = obj.entry(key.clone()).or_insert_with(|| json!({}));
                if !entry.is_object() {
                    *entry = json!({});
                }
                let sub_key = t.name.to_string();
                match (op, value) {
                    (OpKind::Remove, _) | (_, Some(Value::Null)) | (_, None) => {
                        if let Some(o) = entry.as_object_mut() {
                            o.retain(|k, _| !k.eq_ignore_ascii_case(sub));
                        }
                    }
                    (_, Some(v)) => {
                        entry[sub_key] = coerce(t, v, &name)?;
                    }
                }
            }
            (Some(sub), true) => {
                let t = target.as_ref().ok_or_else(|| ScimError::bad_request("invalidPath", name.clone()))?;
                let items = obj.entry(key.clone()).or_insert_with(|| json!([]));
                let Value::Array(items) = items else { return Err(ScimError::invalid_value(name)) };
                match (op, value) {
                    (OpKind::Remove, _) | (_, None) => items.iter_mut().for_each(|e| {
                        if let Value::Object(o) = e {
                            o.retain(|k, _| !k.eq_ignore_ascii_case(sub))
                        }
                    }),
                    (_, Some(v)) => {
                        let v = coerce(t, v, &name)?;
                        if items.is_empty() {
                            items.push(json!({ t.name: v }));
                        } else {
                            items.iter_mut().for_each(|e| e[t.name] = v.clone());
                        }
                    }
                }
            }
            (None, false) => match (op, value) {
                (OpKind::Remove, _) | (_, None) | (_, Some(Value::Null)) => {
                    obj.remove(&key);
                }
                (_, Some(v)) => {
                    let v = coerce(&a, v, &name)?;
                    match (obj.get_mut(&key), v) {
                        (Some(Value::Object(cur)), Value::Object(new)) => {
                            for (k, x) in new {
                                if x.is_null() {
                                    cur.remove(&k);
                                } else {
                                    cur.insert(k, x);
                                }
                            }
                        }
                        (_, v) => {
                            obj.insert(key.clone(), v);
                        }
                    }
                }
            },
            (None, true) => {
                let new = match value {
                    Some(v) => match coerce(&a, v, &name)? {
                        Value::Array(x) => x,
                        _ => Vec::new(),
                    },
                    None => Vec::new(),
                };
                let items = obj.entry(key.clone()).or_insert_with(|| json!([]));
                if !items.is_array() {
                    *items = json!([]);
                }
                let Value::Array(items) = items else { return Ok(()) };
                match op {
                    OpKind::Add => {
                        for n in new {
                            if !items.iter().any(|e| same_member(e, &n)) {
                                items.push(n);
                            }
                        }
                    }
                    OpKind::Replace => *items = new,
                    // With a value list (Entra, authentik): remove only those; without: remove all.
                    OpKind::Remove if value.is_some_and(|v| !v.is_null()) => {
                        items.retain(|e| !new.iter().any(|n| same_member(e, n)))
                    }
                    OpKind::Remove => items.clear(),
                }
            }
        },
        Some(f) => {
            if !a.multi || a.ty != Ty::Complex {
                return Err(ScimError::bad_request(
                    "invalidPath",
                    format!("{name}: a filter needs a multi-valued attribute"),
                ));
            }
            let items = obj.entry(key.clone()).or_insert_with(|| json!([]));
            if !items.is_array() {
                *items = json!([]);
            }
            let Value::Array(items) = items else { return Ok(()) };
            let hits: Vec<usize> = (0..items.len()).filter(|&i| element_matches(f, &a, &items[i])).collect();
            match op {
                OpKind::Remove => match &r.sub {
                    Some(sub) => hits.iter().for_each(|&i| {
                        if let Value::Object(o) = &mut items[i] {
                            o.retain(|k, _| !k.eq_ignore_ascii_case(sub))
                        }
                    }),
                    None => {
                        let mut i = 0;
                        items.retain(|_| {
                            let keep = !hits.contains(&i);
                            i += 1;
                            keep
                        });
                    }
                },
                OpKind::Add | OpKind::Replace => {
                    let v = value.ok_or_else(|| ScimError::invalid_syntax(format!("{name}: a value is needed")))?;
                    let (sub_key, new) = match &target {
                        Some(t) => (Some(t.name), coerce(t, v, &name)?),
                        None => {
                            let one = AttrDef { multi: false, ..a.clone() };
                            (None, coerce(&one, v, &name)?)
                        }
                    };
                    if hits.is_empty() {
                        // `emails[type eq "work"].value` on a user without one: create the element.
                        let Filter::Compare(fr, FOp::Eq, lit) = f else {
                            return Err(ScimError::bad_request(
                                "noTarget",
                                format!("{name}: no value matches the filter"),
                            ));
                        };
                        let mut e = Map::new();
                        e.insert(a.sub_attr(&fr.name).map_or(fr.name.clone(), |s| s.name.to_string()), lit.clone());
                        match (sub_key, new) {
                            (Some(k), n) => {
                                e.insert(k.to_string(), n);
                            }
                            (None, Value::Object(o)) => e.extend(o),
                            (None, _) => return Err(ScimError::invalid_value(format!("{name} must be an object"))),
                        }
                        items.push(Value::Object(e));
                    } else {
                        for &i in &hits {
                            match (sub_key, &new) {
                                (Some(k), n) => items[i][k] = n.clone(),
                                (None, Value::Object(o)) => {
                                    if let Value::Object(cur) = &mut items[i] {
                                        cur.extend(o.clone());
                                    }
                                }
                                (None, _) => return Err(ScimError::invalid_value(format!("{name} must be an object"))),
                            }
                        }
                    }
                }
            }
        }
    }
    // Tidy: an emptied attribute is unassigned.
    if let Some(v) = obj.get(&key)
        && is_empty_value(v)
        && !v.is_boolean()
    {
        obj.remove(&key);
    }
    if let Some(urn) = ext
        && let Some(o) = doc.as_object_mut()
        && o.get(urn).is_some_and(|e| e.as_object().is_some_and(|m| m.is_empty()))
    {
        o.remove(urn);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Capabilities;
    use crate::scim::schema::ENTERPRISE_URN;

    const L: Limits = Limits { max_len: 4096, max_depth: 8 };

    fn user() -> Value {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "5", "userName": "jdoe",
               "name": {"givenName": "J", "familyName": "Doe", "formatted": "J Doe"}, "displayName": "J Doe",
               "active": true, "emails": [{"value": "j@x", "type": "work", "primary": true}]})
    }

    fn run(doc: &mut Value, def: &ResourceDef, body: Value) -> Result<(), ScimError> {
        apply(doc, &parse(&body)?, def, L)
    }

    fn ops(v: Value) -> Value {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": v})
    }

    #[test]
    fn entra_shapes() {
        let def = ResourceDef::user(&Capabilities::ALL);
        let mut d = user();
        run(
            &mut d,
            &def,
            ops(json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@x"},
                {"op": "Replace", "path": "name.familyName", "value": "Roe"},
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "77"},
            ])),
        )
        .unwrap();
        assert_eq!(d["emails"][0]["value"], "new@x");
        assert_eq!(d["name"]["familyName"], "Roe");
        assert_eq!(d["active"], false);
        assert_eq!(d[ENTERPRISE_URN]["employeeNumber"], "77");
        run(
            &mut d,
            &def,
            ops(json!([{"op": "replace", "value": {"displayName": "ignored", "name.givenName": "Jo",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "78", "active": true}}])),
        )
        .unwrap();
        assert_eq!(d["name"]["givenName"], "Jo");
        assert_eq!(d[ENTERPRISE_URN]["employeeNumber"], "78");
        assert_eq!(d["active"], true);
        // bare-string manager (Entra): it means {"value": id}; an empty one clears it
        let manager = format!("{ENTERPRISE_URN}:manager");
        run(&mut d, &def, ops(json!([{"op": "Add", "path": manager, "value": "9"}]))).unwrap();
        assert_eq!(d[ENTERPRISE_URN]["manager"], json!({"value": "9"}));
        run(&mut d, &def, ops(json!([{"op": "Replace", "path": manager, "value": ""}]))).unwrap();
        assert!(d[ENTERPRISE_URN]["manager"]["value"].as_str().is_none_or(str::is_empty), "{d}");
        run(
            &mut d,
            &def,
            ops(json!([{"op": "Add", "path": manager, "value": "9"}, {"op": "remove", "path": manager}])),
        )
        .unwrap();
        assert!(d[ENTERPRISE_URN].get("manager").is_none());
        // A backend without managers: empty accepted, a value refused naming the attribute
        let mut caps = Capabilities::ALL;
        caps.manager = false;
        let no_manager = ResourceDef::user(&caps);
        run(&mut d, &no_manager, ops(json!([{"op": "Add", "path": manager, "value": ""}]))).unwrap();
        let e = run(&mut d, &no_manager, ops(json!([{"op": "Add", "path": manager, "value": "9"}]))).unwrap_err();
        assert!(e.detail.contains("manager"), "{}", e.detail);
        let e = run(&mut d, &def, ops(json!([{"op": "Add", "path": "nickName", "value": "Babs"}]))).unwrap_err();
        assert!(e.detail.contains("nickName"));
        run(&mut d, &def, ops(json!([{"op": "Add", "path": "roles", "value": []}]))).unwrap();
    }

    #[test]
    fn atomic_on_error() {
        let def = ResourceDef::user(&Capabilities::ALL);
        let orig = user();
        let mut d = orig.clone();
        let body = ops(
            json!([{"op": "replace", "path": "title", "value": "x"}, {"op": "replace", "path": "active", "value": "perhaps"}]),
        );
        // The caller applies to a copy; the error tells which operation failed.
        let e = run(&mut d, &def, body).unwrap_err();
        assert!(e.detail.starts_with("operation 2"), "{}", e.detail);
        assert_eq!(e.scim_type, Some("invalidValue"));
    }

    #[test]
    fn group_members() {
        let def = ResourceDef::group(&Capabilities::ALL);
        let mut g = json!({"id": "1", "displayName": "g", "members": [{"value": "1"}, {"value": "2"}, {"value": "3"}]});
        run(&mut g, &def, ops(json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "2"}]}])))
            .unwrap();
        assert_eq!(g["members"], json!([{"value": "1"}, {"value": "3"}]), "only the listed member removed");
        run(
            &mut g,
            &def,
            ops(json!([
                {"op": "remove", "path": "members[value eq \"1\"]"},
                {"op": "add", "path": "members", "value": [{"value": "4", "display": "d"}, {"value": "3"}]},
            ])),
        )
        .unwrap();
        let ids: Vec<&str> = g["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
        assert_eq!(ids, ["3", "4"]);
        run(&mut g, &def, ops(json!([{"op": "replace", "value": {"id": "1", "displayName": "renamed"}}]))).unwrap();
        assert_eq!(g["displayName"], "renamed");
        let e = run(&mut g, &def, ops(json!([{"op": "replace", "path": "id", "value": "2"}]))).unwrap_err();
        assert_eq!(e.scim_type, Some("mutability"));
        let e = run(&mut g, &def, ops(json!([{"op": "replace", "value": {"id": "2"}}]))).unwrap_err();
        assert_eq!(e.scim_type, Some("mutability"), "a different id in a path-less replace");
        assert_eq!(g["id"], "1");
        run(&mut g, &def, ops(json!([{"op": "replace", "path": "members", "value": [{"value": "9"}]}]))).unwrap();
        assert_eq!(g["members"], json!([{"value": "9"}]));
        run(&mut g, &def, ops(json!([{"op": "remove", "path": "members"}]))).unwrap();
        assert!(g.get("members").is_none());
        let e = run(&mut g, &def, ops(json!([{"op": "remove"}]))).unwrap_err();
        assert_eq!(e.scim_type, Some("noTarget"));
        let e = run(&mut g, &def, ops(json!([{"op": "frobnicate", "path": "x"}]))).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidSyntax"));
    }
}
