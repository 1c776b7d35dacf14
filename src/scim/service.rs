//! The SCIM operations: a parsed request in, a `Reply` out, through the directory core. The HTTP
//! handlers and `/Bulk` both call these, so a Bulk operation gets the same checks as its request.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use super::ScimState;
use super::error::ScimError;
use super::filter::{self, AttrRef};
use super::patch;
use super::resource::{self, UserFields};
use super::schema::{ENTERPRISE_URN, Kind, LIST_URN, ResourceDef};
use crate::config::{AttributeSyntax, DeleteMode};
use crate::costly::{Budget, COSTLY_COST, Refused};
use crate::directory::{Caller, GroupEdit, GroupSpec, Snapshot, UserEdit, UserSpec};
use crate::model::{NewGroup, NewUser};

/// An operation's outcome, before it becomes an HTTP response or a Bulk operation result.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub location: Option<String>,
    pub etag: Option<String>,
}

impl Reply {
    fn resource(status: StatusCode, v: Value) -> Reply {
        let location = v["meta"]["location"].as_str().map(String::from);
        let etag = v["meta"]["version"].as_str().map(String::from);
        Reply { status, body: Some(v), location, etag }
    }
}

/// Query parameters of a list or get.
#[derive(Debug, Default, Clone)]
pub struct Query {
    filter: Option<String>,
    sort_by: Option<String>,
    descending: bool,
    start_index: Option<i64>,
    count: Option<i64>,
    attributes: Vec<AttrRef>,
    excluded: Vec<AttrRef>,
}

impl Query {
    pub(super) fn from_raw(raw: Option<&str>) -> Result<Query, ScimError> {
        let mut q = Query::default();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            q.set(&k, Value::String(v.into_owned()))?;
        }
        Ok(q)
    }

    pub(super) fn from_search(body: &Value) -> Result<Query, ScimError> {
        let mut q = Query::default();
        let obj = body.as_object().ok_or_else(|| ScimError::invalid_syntax("a SearchRequest must be an object"))?;
        for (k, v) in obj {
            if !k.eq_ignore_ascii_case("schemas") {
                q.set(k, v.clone())?;
            }
        }
        Ok(q)
    }

    fn set(&mut self, k: &str, v: Value) -> Result<(), ScimError> {
        let text = |v: &Value| -> Result<String, ScimError> {
            match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Array(a) => Ok(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")),
                _ => Err(ScimError::invalid_value(format!("{k} has the wrong type"))),
            }
        };
        let int = |v: &Value| -> Result<i64, ScimError> {
            text(v)?.trim().parse::<i64>().map_err(|_| ScimError::invalid_value(format!("{k} must be an integer")))
        };
        match k.to_ascii_lowercase().as_str() {
            "filter" => self.filter = Some(text(&v)?),
            "sortby" => self.sort_by = Some(text(&v)?),
            "sortorder" => self.descending = text(&v)?.eq_ignore_ascii_case("descending"),
            "startindex" => self.start_index = Some(int(&v)?),
            "count" => self.count = Some(int(&v)?),
            "attributes" => self.attributes = resource::parse_attr_list(&text(&v)?)?,
            "excludedattributes" => self.excluded = resource::parse_attr_list(&text(&v)?)?,
            _ => {}
        }
        Ok(())
    }

    /// `attributes` and `excludedAttributes` applied to a resource.
    pub(super) fn project(&self, v: Value, def: &ResourceDef) -> Value {
        resource::project(v, def, &self.attributes, &self.excluded)
    }
}

fn resource_json(s: &ScimState, snap: &Snapshot, kind: Kind, idx: usize, def: &ResourceDef, base: &str) -> Value {
    match kind {
        Kind::User => resource::user_json(snap, idx, def, base, &s.dir),
        Kind::Group => resource::group_json(snap, idx, base, &s.dir),
    }
}

/// Candidates for an equality on an extension attribute: the users whose manager, or whose
/// custom attribute, has the value, found from the model without building any JSON.
fn extension_candidates(snap: &Snapshot, def: &ResourceDef, f: &filter::Filter) -> Option<Vec<usize>> {
    let filter::Filter::Compare(r, filter::Op::Eq, lit) = f else { return None };
    let urn = r.extension(def)?;
    if urn == ENTERPRISE_URN && r.name.eq_ignore_ascii_case("manager") {
        if r.sub.as_deref().is_some_and(|s| !s.eq_ignore_ascii_case("value")) {
            return None;
        }
        let id = lit.as_str()?;
        return Some(snap.users().filter(|(_, u)| u.manager.as_deref() == Some(id)).map(|(i, _)| i).collect());
    }
    if Some(urn) != def.custom_urn || r.sub.is_some() {
        return None;
    }
    let a = def.custom_attr(&r.name)?;
    // The literal in the core's canonical text; one that cannot be a value matches nothing.
    let wanted = resource::custom_values(a, lit).ok().and_then(|v| v.into_iter().next());
    let wanted = wanted.and_then(|v| crate::directory::custom::canonical(a.syntax, v.trim()));
    let Some(wanted) = wanted else { return Some(Vec::new()) };
    // Strings compare case-insensitively (caseExact false), the rest exactly.
    let hit = |v: &String| match a.syntax {
        AttributeSyntax::String => v.to_lowercase() == wanted.to_lowercase(),
        _ => *v == wanted,
    };
    Some(
        snap.users()
            .filter(|(_, u)| u.custom.get(&a.field).is_some_and(|vs| vs.iter().any(hit)))
            .map(|(i, _)| i)
            .collect(),
    )
}

/// Candidate indexes for a filter: the snapshot's indexes for `userName`/`id`/`externalId`/
/// `emails`/`displayName` equality, the model for manager and custom attribute equality,
/// everything otherwise. Candidates are still checked in full.
fn candidates(s: &ScimState, snap: &Snapshot, kind: Kind, def: &ResourceDef, f: Option<&filter::Filter>) -> Vec<usize> {
    let all = || -> Vec<usize> {
        match kind {
            Kind::User => snap.users().map(|(i, _)| i).collect(),
            Kind::Group => snap.groups().map(|(i, _)| i).collect(),
        }
    };
    if kind == Kind::User
        && let Some(found) = f.and_then(|f| extension_candidates(snap, def, f))
    {
        return found;
    }
    let Some((key, v)) = f.and_then(filter::indexed_eq) else { return all() };
    match (kind, key.as_str()) {
        (Kind::User, "username") => {
            let mut found = s.dir.users_named(snap, v);
            found.sort_unstable();
            found
        }
        (Kind::User, "id") => snap.user_index(v).into_iter().collect(),
        (Kind::User, "emails" | "emails.value") => snap.user_indexes_by_email(v),
        (Kind::Group, "displayname") => snap.group_index_by_name(v).into_iter().collect(),
        (Kind::Group, "id") => resource::backend_id(kind, v).and_then(|b| snap.group_index(b)).into_iter().collect(),
        (k, "externalid") => {
            let mut ids = s.dir.with_external_id(snap, k == Kind::Group, v);
            ids.sort_unstable();
            ids
        }
        _ => all(),
    }
}

/// One resource type's share of a list: the resources the filter must look at.
struct Part {
    kind: Kind,
    def: ResourceDef,
    candidates: Vec<usize>,
}

/// A list settled on the request worker, owned so that it can run on the blocking pool.
struct ListJob {
    s: Arc<ScimState>,
    snap: Arc<Snapshot>,
    parts: Vec<Part>,
    filter: Option<filter::Prepared>,
    q: Query,
    base: String,
}

impl ListJob {
    fn new(s: &Arc<ScimState>, kinds: &[Kind], q: Query, base: String) -> Result<ListJob, ScimError> {
        let snap = s.dir.snapshot()?;
        let f = q.filter.as_deref().map(|t| filter::parse_filter(t, s.limits())).transpose()?;
        let mut parts = Vec::new();
        for &kind in kinds {
            let def = s.def(kind);
            if let Some(f) = &f {
                filter::validate(f, &def)?;
            }
            let candidates = candidates(s, &snap, kind, &def, f.as_ref());
            parts.push(Part { kind, def, candidates });
        }
        let filter = f.as_ref().map(filter::Prepared::new);
        Ok(ListJob { s: s.clone(), snap, parts, filter, q, base })
    }

    /// Work units: each candidate is built as JSON (one unit) and checked by the filter.
    fn cost(&self) -> u64 {
        let per = 1 + self.filter.as_ref().map_or(0, filter::Prepared::weight);
        let n: usize = self.parts.iter().map(|p| p.candidates.len()).sum();
        per.saturating_mul(n as u64)
    }

    fn run(self, budget: &Budget) -> Result<Reply, ScimError> {
        let mut found = Vec::new();
        for part in &self.parts {
            found.extend(self.matching(part, budget)?.into_iter().map(|v| (v, part.def.clone())));
        }
        Ok(Reply { status: StatusCode::OK, body: Some(page(&self.s, &self.q, found)?), location: None, etag: None })
    }

    fn matching(&self, part: &Part, budget: &Budget) -> Result<Vec<Value>, ScimError> {
        let (s, q, def) = (&self.s, &self.q, &part.def);
        let mut out = Vec::new();
        for &idx in &part.candidates {
            if budget.tick() {
                break;
            }
            let v = resource_json(s, &self.snap, part.kind, idx, def, &self.base);
            if self.filter.as_ref().is_none_or(|f| f.matches(def, &v, budget)) {
                out.push(v);
            }
        }
        if budget.ended().is_some() {
            // Only a shutdown that ran out of time, or a client that went away, ends a list.
            return Err(ScimError::new(StatusCode::SERVICE_UNAVAILABLE, None, "the server is shutting down"));
        }
        if let Some(sort_by) = &q.sort_by {
            let r = filter::split_attr(sort_by)
                .ok_or_else(|| ScimError::invalid_value(format!("sortBy: invalid attribute {sort_by:?}")))?;
            let key = |v: &Value| filter::sort_key(def, v, &r);
            // Stable: ties keep id order; resources without the attribute sort last.
            out.sort_by(|a, b| match (key(a), key(b)) {
                (Some(x), Some(y)) => {
                    if q.descending {
                        y.cmp(&x)
                    } else {
                        x.cmp(&y)
                    }
                }
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
        }
        Ok(out)
    }
}

fn page(s: &ScimState, q: &Query, found: Vec<(Value, ResourceDef)>) -> Result<Value, ScimError> {
    let max = s.cfg.max_results;
    let count = match q.count {
        Some(c) if c as i128 > max as i128 => {
            return Err(ScimError::bad_request("tooMany", format!("count {c} is above maxResults {max}")));
        }
        Some(c) => c.max(0) as usize,
        None => max,
    };
    let start = q.start_index.unwrap_or(1).max(1) as usize;
    let total = found.len();
    let resources: Vec<Value> =
        found.into_iter().skip(start - 1).take(count).map(|(v, def)| q.project(v, &def)).collect();
    Ok(json!({
        "schemas": [LIST_URN],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    }))
}

/// A list or search. A costly one (a large filter over many resources) runs on the blocking pool
/// under the server's costly-search limits, counted against `principal`.
pub async fn list(
    s: &Arc<ScimState>,
    principal: &str,
    kinds: &[Kind],
    q: Query,
    base: String,
) -> Result<Reply, ScimError> {
    let job = ListJob::new(s, kinds, q, base)?;
    let gate = s.dir.searches();
    if job.cost() <= COSTLY_COST {
        return job.run(&gate.budget(None));
    }
    gate.run(principal, None, move |budget| job.run(budget)).await.map_err(|e| match e {
        Refused::Failed => ScimError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "the search failed"),
        e => ScimError::new(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()),
    })?
}

fn current(s: &ScimState, kind: Kind, id: &str, base: &str) -> Result<(Arc<Snapshot>, usize, Value), ScimError> {
    let snap = s.dir.snapshot()?;
    let idx = resource::backend_id(kind, id)
        .and_then(|b| match kind {
            Kind::User => snap.user_index(b),
            Kind::Group => snap.group_index(b),
        })
        .ok_or_else(|| no_such(kind, id))?;
    let v = resource_json(s, &snap, kind, idx, &s.def(kind), base);
    Ok((snap, idx, v))
}

fn etag_matches(header: &str, version: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").trim_matches('"').to_string();
    header.split(',').any(|t| t.trim() == "*" || strip(t) == strip(version))
}

fn check_if_match(headers: Option<&HeaderMap>, v: &Value) -> Result<(), ScimError> {
    let Some(h) = headers.and_then(|h| h.get(header::IF_MATCH)).and_then(|h| h.to_str().ok()) else { return Ok(()) };
    let version = v["meta"]["version"].as_str().unwrap_or("");
    if etag_matches(h, version) {
        Ok(())
    } else {
        Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            format!("If-Match {h} does not match the current version {version}"),
        ))
    }
}

pub fn get_one(
    s: &ScimState,
    kind: Kind,
    id: &str,
    q: &Query,
    headers: &HeaderMap,
    base: &str,
) -> Result<Reply, ScimError> {
    let (_, _, v) = current(s, kind, id, base)?;
    let version = v["meta"]["version"].as_str().unwrap_or("").to_string();
    if let Some(h) = headers.get(header::IF_NONE_MATCH).and_then(|h| h.to_str().ok())
        && etag_matches(h, &version)
    {
        return Ok(Reply { status: StatusCode::NOT_MODIFIED, body: None, location: None, etag: Some(version) });
    }
    let def = s.def(kind);
    let mut r = Reply::resource(StatusCode::OK, v);
    r.body = r.body.map(|b| q.project(b, &def));
    Ok(r)
}

pub async fn create(s: &ScimState, c: &Caller, kind: Kind, body: &Value, base: &str) -> Result<Reply, ScimError> {
    let id = match kind {
        Kind::User => {
            let (f, password) = resource::user_fields(body, &s.def(kind))?;
            if let Some(m) = &f.manager {
                check_manager(&*s.dir.snapshot()?, m)?;
            }
            let new = NewUser {
                login: f.login.clone(),
                first_name: f.given,
                last_name: f.family,
                email: f.email,
                phone: f.phone,
                mobile: f.mobile,
                title: f.title,
                employee_number: f.employee_number,
                locale: f.locale,
                active: f.active.unwrap_or(true),
                admin: false,
                password,
                manager: f.manager,
                custom: f.custom,
            };
            // The core derives the login from the userName by the configured rule.
            let spec =
                UserSpec { new, external_id: f.external_id, display_name: f.display_name, user_name: Some(f.login) };
            s.dir.create_user(c, spec).await?.id.clone()
        }
        Kind::Group => {
            let f = resource::group_fields(body)?;
            let m = f.resolve(&*s.dir.snapshot()?)?;
            let new = NewGroup { name: f.name, description: None, members: m.users, member_groups: m.groups };
            s.dir.create_group(c, GroupSpec { new, external_id: f.external_id }).await?.id.clone()
        }
    };
    let (_, _, v) = current(s, kind, &resource::scim_id(kind, &id), base)?;
    Ok(Reply::resource(StatusCode::CREATED, v))
}

/// A manager must be a user; a group's id gets a clearer refusal than "not an existing user".
fn check_manager(snap: &Snapshot, id: &str) -> Result<(), ScimError> {
    if snap.user_index(id).is_none()
        && let Some(gi) = resource::backend_id(Kind::Group, id).and_then(|b| snap.group_index(b))
    {
        return Err(ScimError::invalid_value(format!(
            "manager {id:?} is the group {}, not a user: a manager's value is a user's id",
            snap.group(gi).name
        )));
    }
    Ok(())
}

fn no_such(kind: Kind, id: &str) -> ScimError {
    ScimError::not_found(format!("{} {id} not found", kind.name()))
}

/// A "not found" from the core names the resource by its SCIM id, as the client asked for it.
fn named(kind: Kind, id: &str, e: ScimError) -> ScimError {
    if e.status == StatusCode::NOT_FOUND { no_such(kind, id) } else { e }
}

/// How a write was asked for: a full replacement (PUT) or a PatchOp.
pub enum Change<'a> {
    Replace(&'a Value),
    Patch(&'a Value),
}

/// PUT and PATCH: the core runs `decide` under its lock for the resource, on the state current
/// then; the new representation is computed on a copy, translated to an edit, and the core applies
/// and checks it.
pub async fn modify(
    s: &ScimState,
    c: &Caller,
    kind: Kind,
    id: &str,
    change: Change<'_>,
    headers: Option<&HeaderMap>,
    base: &str,
) -> Result<Reply, ScimError> {
    let ops = match change {
        Change::Patch(body) => Some(patch::parse(body)?),
        Change::Replace(_) => None,
    };
    let def = s.def(kind);
    let backend = resource::backend_id(kind, id).ok_or_else(|| no_such(kind, id))?;
    let target = |snap: &Snapshot, idx: usize| -> Result<Value, ScimError> {
        let cur = resource_json(s, snap, kind, idx, &def, base);
        check_if_match(headers, &cur)?;
        match (&change, &ops) {
            (Change::Patch(_), Some(ops)) => {
                let mut doc = cur;
                patch::apply(&mut doc, ops, &def, s.limits())?;
                Ok(doc)
            }
            (Change::Replace(body), _) | (Change::Patch(body), None) => Ok((*body).clone()),
        }
    };
    match kind {
        Kind::User => {
            s.dir
                .edit_user(c, backend, |snap, idx| {
                    let doc = target(snap, idx)?;
                    let user = snap.user(idx);
                    let old = UserFields::of(snap, user, &s.dir.attached_user(user), &def);
                    let (mut new, password) = resource::user_fields(&doc, &def)?;
                    if new.active.is_none() {
                        new.active = old.active;
                    }
                    if ops.is_some() {
                        // A patched document is complete: an extension it lacks was emptied.
                        new.asserted = old.asserted.clone();
                    }
                    let changes = new.changes_from(&old, &def);
                    if let Some(Some(m)) = &changes.manager {
                        check_manager(snap, m)?;
                    }
                    Ok::<_, ScimError>(UserEdit {
                        changes,
                        password,
                        old_password: None,
                        external_id: (new.external_id != old.external_id).then(|| new.external_id.clone()),
                        display_name: (new.display_name != old.display_name).then(|| new.display_name.clone()),
                        // Only a changed name: the core derives the login from it.
                        user_name: (new.login != old.login).then(|| new.login.clone()),
                    })
                })
                .await
                .map_err(|e| named(kind, id, e))?;
        }
        Kind::Group => {
            s.dir
                .edit_group(c, backend, |snap, gi| {
                    let doc = target(snap, gi)?;
                    let new = resource::group_fields(&doc)?;
                    let members = new.resolve(snap)?;
                    let old_external = s.dir.group_external_id(snap.group(gi));
                    // Explicit removals are users the backend may list though the cache does not;
                    // groups' ids among them are handled through the member groups.
                    let mut removals =
                        ops.as_deref().map(|o| patch::member_removals(o, s.limits())).unwrap_or_default();
                    removals.retain(|id| {
                        snap.user_index(id).is_some()
                            || resource::backend_id(Kind::Group, id).and_then(|b| snap.group_index(b)).is_none()
                    });
                    // Asked for only where it can matter, so a backend without nesting is not
                    // asked to change member groups it cannot have.
                    let nesting = s.dir.capabilities().nested_groups || !members.groups.is_empty();
                    Ok::<_, ScimError>(GroupEdit {
                        name: Some(new.name),
                        description: None,
                        members: Some(members.users.into_iter().collect()),
                        member_groups: nesting.then(|| members.groups.into_iter().collect()),
                        external_id: (new.external_id != old_external).then_some(new.external_id),
                        removals,
                    })
                })
                .await
                .map_err(|e| named(kind, id, e))?;
        }
    }
    let (_, _, v) = current(s, kind, id, base)?;
    Ok(Reply::resource(StatusCode::OK, v))
}

pub async fn remove(
    s: &ScimState,
    c: &Caller,
    kind: Kind,
    id: &str,
    headers: Option<&HeaderMap>,
    base: &str,
) -> Result<Reply, ScimError> {
    let def = s.def(kind);
    let backend = resource::backend_id(kind, id).ok_or_else(|| no_such(kind, id))?;
    let check = |snap: &Snapshot, idx: usize| check_if_match(headers, &resource_json(s, snap, kind, idx, &def, base));
    let r = match kind {
        Kind::User => s.dir.delete_user(c, backend, DeleteMode::Delete, check).await,
        Kind::Group => s.dir.delete_group(c, backend, check).await,
    };
    r.map_err(|e| named(kind, id, e))?;
    Ok(Reply { status: StatusCode::NO_CONTENT, body: None, location: None, etag: None })
}
