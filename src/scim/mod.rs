//! The SCIM 2.0 front end (RFC 7643/7644) under `/scim/v2`. Reads are answered from the directory's
//! snapshot; writes go through the directory's write API (backend first, then the snapshot), so a
//! SCIM write is visible over LDAP at once and vice versa.

mod bulk;
pub mod error;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod schema;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::backend::BackendError;
use crate::config::{ScimConfig, ScimScope};
use crate::directory::{Actor, Directory, Snapshot};
use crate::model::{GroupChanges, NewGroup, NewUser};
pub use error::ScimError;
use filter::{AttrRef, Limits};
use resource::{GroupFields, UserFields};
use schema::{Kind, LIST_URN, ResourceDef};
pub use state::StateStore;

pub const CONTENT_TYPE: &str = "application/scim+json";

/// A JSON response with the SCIM media type.
pub fn scim_json(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))], body).into_response()
}

pub struct ScimState {
    pub dir: Arc<Directory>,
    pub cfg: ScimConfig,
    pub store: StateStore,
    /// sha256 of each configured token, compared in constant time.
    tokens: Vec<([u8; 32], String, ScimScope)>,
    /// Serialises SCIM writes so a read-modify-write (PATCH, PUT) sees no interleaved change.
    write_lock: tokio::sync::Mutex<()>,
}

impl ScimState {
    pub fn new(dir: Arc<Directory>, cfg: ScimConfig) -> Result<ScimState, state::StateError> {
        let store = StateStore::open(cfg.state_path.as_deref())?;
        if cfg.state_path.is_none() {
            tracing::warn!("scim.state_path is not set: externalId values are kept in memory only");
        }
        let tokens = cfg
            .tokens
            .iter()
            .map(|t| (Sha256::digest(t.token.expose().as_bytes()).into(), t.name.clone(), t.scope))
            .collect();
        Ok(ScimState { dir, cfg, store, tokens, write_lock: tokio::sync::Mutex::new(()) })
    }

    fn def(&self, kind: Kind) -> ResourceDef {
        match kind {
            Kind::User => ResourceDef::user(&self.dir.capabilities()),
            Kind::Group => ResourceDef::group(),
        }
    }

    fn limits(&self) -> Limits {
        Limits { max_len: self.cfg.max_filter_length, max_depth: self.cfg.max_filter_depth }
    }

    fn base(&self, headers: &HeaderMap) -> String {
        if let Some(u) = &self.cfg.public_url {
            return u.trim_end_matches('/').to_string();
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        format!("http://{host}/scim/v2")
    }
}

/// The authenticated client of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub scope: ScimScope,
    pub source: String,
}

impl Principal {
    fn actor(&self) -> Actor {
        Actor { who: format!("scim:{}", self.name), source: self.source.clone(), frontend: "scim" }
    }
}

type St = State<Arc<ScimState>>;

pub fn router(state: Arc<ScimState>) -> Router {
    let discovery = |h: MethodRouter<Arc<ScimState>>| {
        h.post(method_not_allowed).put(method_not_allowed).patch(method_not_allowed).delete(method_not_allowed)
    };
    let api = Router::new()
        .route("/Users", get(list_users).post(create_users))
        .route("/Users/.search", post(search_users))
        .route("/Users/{id}", get(get_user).put(put_user).patch(patch_user).delete(delete_user))
        .route("/Groups", get(list_groups).post(create_groups))
        .route("/Groups/.search", post(search_groups))
        .route("/Groups/{id}", get(get_group).put(put_group).patch(patch_group).delete(delete_group))
        .route("/.search", post(search_root))
        .route("/Bulk", post(bulk::handle))
        .route("/Me", get(me).post(me).put(me).patch(me).delete(me))
        .route("/ServiceProviderConfig", discovery(get(service_provider_config)))
        .route("/ResourceTypes", discovery(get(resource_types)))
        .route("/ResourceTypes/{id}", discovery(get(resource_type)))
        .route("/Schemas", discovery(get(schemas)))
        .route("/Schemas/{id}", discovery(get(schema_by_id)))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state);
    Router::new().nest("/scim/v2", api)
}

async fn not_found() -> ScimError {
    ScimError::not_found("no such SCIM endpoint")
}
async fn method_not_allowed() -> Response {
    let mut r =
        ScimError::new(StatusCode::METHOD_NOT_ALLOWED, None, "discovery endpoints are read-only").into_response();
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
    r
}
async fn me() -> ScimError {
    ScimError::not_implemented("/Me is not supported: tokens belong to provisioning clients, not to users")
}

/// Bearer-token check (constant time over every configured token) and read/write scope.
async fn auth(State(s): St, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(presented) = presented else {
        return ScimError::new(StatusCode::UNAUTHORIZED, None, "a bearer token is required").into_response();
    };
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found: Option<(String, ScimScope)> = None;
    for (d, name, scope) in &s.tokens {
        if bool::from(d.ct_eq(&digest)) {
            found = Some((name.clone(), *scope));
        }
    }
    let Some((name, scope)) = found else {
        tracing::info!(target: "idgate::audit", event = "scim_auth", outcome = "invalid token");
        return ScimError::new(StatusCode::UNAUTHORIZED, None, "invalid bearer token").into_response();
    };
    let is_search = req.uri().path().ends_with("/.search");
    let writes = match *req.method() {
        Method::GET | Method::HEAD => false,
        Method::POST => !is_search,
        _ => true,
    };
    if writes && scope == ScimScope::Read {
        return ScimError::new(StatusCode::FORBIDDEN, None, format!("token {name:?} may only read")).into_response();
    }
    let source =
        req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_else(|| "-".into());
    req.extensions_mut().insert(Principal { name, scope, source });
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let result = if resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED { "ok" } else { "error" };
    metrics::counter!("idgate_requests_total", "frontend" => "scim", "operation" => method, "result" => result)
        .increment(1);
    metrics::histogram!("idgate_request_seconds", "frontend" => "scim").record(started.elapsed().as_secs_f64());
    resp
}

fn principal(req_ext: &axum::http::Extensions) -> Principal {
    req_ext.get::<Principal>().cloned().unwrap_or(Principal {
        name: "unknown".into(),
        scope: ScimScope::Read,
        source: "-".into(),
    })
}

/// Reads a JSON body within the size limit, accepting `application/scim+json` and `application/json`.
async fn read_json(s: &ScimState, headers: &HeaderMap, body: Body) -> Result<Value, ScimError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|c| c.to_str().ok())
        && !ct.to_ascii_lowercase().contains("json")
    {
        return Err(ScimError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            format!("content type {ct:?} is not accepted; send application/scim+json"),
        ));
    }
    let bytes: Bytes = axum::body::to_bytes(body, s.cfg.max_body_bytes).await.map_err(|_| {
        ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("request body larger than {} bytes", s.cfg.max_body_bytes),
        )
    })?;
    parse_json(&bytes)
}

fn parse_json(bytes: &[u8]) -> Result<Value, ScimError> {
    serde_json::from_slice(bytes).map_err(|e| ScimError::invalid_syntax(format!("malformed JSON: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Replies shared by the HTTP handlers and /Bulk

/// A handler's outcome, before it becomes an HTTP response or a Bulk operation result.
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

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut r = match &self.body {
            Some(b) => scim_json(self.status, b),
            None => self.status.into_response(),
        };
        if let Some(e) = self.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
            r.headers_mut().insert(header::ETAG, e);
        }
        if self.status == StatusCode::CREATED
            && let Some(l) = self.location.and_then(|l| HeaderValue::from_str(&l).ok())
        {
            r.headers_mut().insert(header::LOCATION, l);
        }
        r
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
    fn from_raw(raw: Option<&str>) -> Result<Query, ScimError> {
        let mut q = Query::default();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            q.set(&k, Value::String(v.into_owned()))?;
        }
        Ok(q)
    }

    fn from_search(body: &Value) -> Result<Query, ScimError> {
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
}

fn resource_json(s: &ScimState, snap: &Snapshot, kind: Kind, idx: usize, def: &ResourceDef, base: &str) -> Value {
    match kind {
        Kind::User => resource::user_json(snap, idx, def, base, &s.store),
        Kind::Group => resource::group_json(snap, idx, base, &s.store),
    }
}

/// Candidate indexes for a filter: the snapshot's indexes for `userName`/`id`/`externalId`/
/// `emails`/`displayName` equality, everything otherwise. Candidates are still checked in full.
fn candidates(s: &ScimState, snap: &Snapshot, kind: Kind, f: Option<&filter::Filter>) -> Vec<usize> {
    let all = match kind {
        Kind::User => snap.users().len(),
        Kind::Group => snap.groups().len(),
    };
    let Some((key, v)) = f.and_then(filter::indexed_eq) else { return (0..all).collect() };
    let ext_ids = |k: Kind| -> Vec<usize> {
        s.store
            .ids_with(k.store_key(), v)
            .iter()
            .filter_map(|id| match k {
                Kind::User => snap.user_index(id),
                Kind::Group => snap.group_index(id),
            })
            .collect()
    };
    match (kind, key.as_str()) {
        (Kind::User, "username") => snap.user_index_by_login(v).into_iter().collect(),
        (Kind::User, "id") => snap.user_index(v).into_iter().collect(),
        (Kind::User, "emails" | "emails.value") => snap.user_indexes_by_email(v).to_vec(),
        (Kind::Group, "displayname") => snap.group_index_by_name(v).into_iter().collect(),
        (Kind::Group, "id") => resource::backend_id(kind, v).and_then(|b| snap.group_index(b)).into_iter().collect(),
        (k, "externalid") => ext_ids(k),
        _ => (0..all).collect(),
    }
}

fn matching(s: &ScimState, kind: Kind, q: &Query, base: &str) -> Result<Vec<Value>, ScimError> {
    let snap = s.dir.snapshot()?;
    let def = s.def(kind);
    let f = q.filter.as_deref().map(|t| filter::parse_filter(t, s.limits())).transpose()?;
    if let Some(f) = &f {
        filter::validate(f, &def)?;
    }
    let mut out = Vec::new();
    for idx in candidates(s, &snap, kind, f.as_ref()) {
        let v = resource_json(s, &snap, kind, idx, &def, base);
        if f.as_ref().is_none_or(|f| filter::matches(f, &def, &v)) {
            out.push(v);
        }
    }
    if let Some(sort_by) = &q.sort_by {
        let r = filter::split_attr(sort_by)
            .ok_or_else(|| ScimError::invalid_value(format!("sortBy: invalid attribute {sort_by:?}")))?;
        let key = |v: &Value| filter::sort_key(&def, v, &r);
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
    let resources: Vec<Value> = found
        .into_iter()
        .skip(start - 1)
        .take(count)
        .map(|(v, def)| resource::project(v, &def, &q.attributes, &q.excluded))
        .collect();
    Ok(json!({
        "schemas": [LIST_URN],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    }))
}

pub fn list(s: &ScimState, kinds: &[Kind], q: &Query, base: &str) -> Result<Reply, ScimError> {
    let mut found = Vec::new();
    for &k in kinds {
        let def = s.def(k);
        found.extend(matching(s, k, q, base)?.into_iter().map(|v| (v, def.clone())));
    }
    Ok(Reply { status: StatusCode::OK, body: Some(page(s, q, found)?), location: None, etag: None })
}

fn current(s: &ScimState, kind: Kind, id: &str, base: &str) -> Result<(Arc<Snapshot>, usize, Value), ScimError> {
    let snap = s.dir.snapshot()?;
    let idx = resource::backend_id(kind, id)
        .and_then(|b| match kind {
            Kind::User => snap.user_index(b),
            Kind::Group => snap.group_index(b),
        })
        .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", kind.name())))?;
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
    r.body = r.body.map(|b| resource::project(b, &def, &q.attributes, &q.excluded));
    Ok(r)
}

/// Why a partly applied write failed: which steps the backend had already done.
fn partial(e: impl Into<ScimError>, done: &[String]) -> ScimError {
    let mut e = e.into();
    if !done.is_empty() {
        e.detail = format!("{}; already applied before the failure: {}", e.detail, done.join(", "));
    }
    e
}

fn unsupported(s: &ScimState, what: &str) -> ScimError {
    BackendError::Unsupported { backend: s.dir.backend().kind(), what: what.to_string() }.into()
}

fn store_err(e: state::StateError) -> ScimError {
    ScimError::new(StatusCode::INTERNAL_SERVER_ERROR, None, e.to_string())
}

pub async fn create(s: &ScimState, p: &Principal, kind: Kind, body: &Value, base: &str) -> Result<Reply, ScimError> {
    let _w = s.write_lock.lock().await;
    let actor = p.actor();
    let id = match kind {
        Kind::User => {
            let (f, password) = resource::user_fields(body, &s.def(kind))?;
            let new = NewUser {
                login: f.login,
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
            };
            let u = s.dir.create_user(&actor, new).await?;
            s.store.set(kind.store_key(), &u.id, f.external_id.as_deref()).map_err(store_err)?;
            let shown = f.display_name.filter(|d| *d != u.full_name());
            s.store.set(resource::DISPLAY_NAME_NS, &u.id, shown.as_deref()).map_err(store_err)?;
            u.id.clone()
        }
        Kind::Group => {
            let f = resource::group_fields(body)?;
            check_members(s, &f.members)?;
            let g =
                s.dir.create_group(&actor, NewGroup { name: f.name, description: None, members: f.members }).await?;
            s.store.set(kind.store_key(), &g.id, f.external_id.as_deref()).map_err(store_err)?;
            g.id.clone()
        }
    };
    let (_, _, v) = current(s, kind, &resource::scim_id(kind, &id), base)?;
    Ok(Reply::resource(StatusCode::CREATED, v))
}

fn check_members(s: &ScimState, ids: &[String]) -> Result<(), ScimError> {
    let snap = s.dir.snapshot()?;
    for id in ids {
        if snap.user_index(id).is_none() {
            return Err(ScimError::invalid_value(format!("member {id:?} is not an existing user id")));
        }
    }
    Ok(())
}

/// How a write was asked for: a full replacement (PUT) or a PatchOp.
pub enum Change<'a> {
    Replace(&'a Value),
    Patch(&'a Value),
}

/// PUT and PATCH: compute the target state on a copy, validate all of it, then apply it.
pub async fn modify(
    s: &ScimState,
    p: &Principal,
    kind: Kind,
    id: &str,
    change: Change<'_>,
    headers: Option<&HeaderMap>,
    base: &str,
) -> Result<Reply, ScimError> {
    let _w = s.write_lock.lock().await;
    let (snap, idx, cur) = current(s, kind, id, base)?;
    check_if_match(headers, &cur)?;
    let def = s.def(kind);
    let scim_id = id;
    let id = match kind {
        Kind::User => snap.user(idx).id.clone(),
        Kind::Group => snap.group(idx).id.clone(),
    };
    let id = id.as_str();
    let target = match change {
        Change::Replace(body) => body.clone(),
        Change::Patch(body) => {
            let ops = patch::parse(body)?;
            let mut doc = cur.clone();
            patch::apply(&mut doc, &ops, &def, s.limits())?;
            doc
        }
    };
    let actor = p.actor();
    let caps = s.dir.capabilities();
    let mut done: Vec<String> = Vec::new();
    match kind {
        Kind::User => {
            let old = UserFields::of(snap.user(idx), &s.store);
            let (mut new, password) = resource::user_fields(&target, &def)?;
            if new.active.is_none() {
                new.active = old.active;
            }
            let changes = new.changes_from(&old, caps.employee_number);
            let mut full_name = snap.user(idx).full_name();
            if !changes.is_empty() {
                let u = s.dir.update_user(&actor, id, changes).await?;
                full_name = u.full_name();
                done.push("user attributes updated".into());
            }
            if let Some(pw) = password {
                s.dir.set_password(&actor, id, &pw).await.map_err(|e| partial(e, &done))?;
                done.push("password set".into());
            }
            if new.external_id != old.external_id {
                s.store
                    .set(kind.store_key(), id, new.external_id.as_deref())
                    .map_err(|e| partial(store_err(e), &done))?;
            }
            // The displayName follows the name unless a client set (or removed) it.
            let stored = s.store.get(resource::DISPLAY_NAME_NS, id);
            let shown = match new.display_name {
                _ if new.display_name == old.display_name && stored.is_none() => None,
                Some(d) if d == full_name => None,
                Some(d) => Some(d),
                None => Some(String::new()),
            };
            s.store.set(resource::DISPLAY_NAME_NS, id, shown.as_deref()).map_err(|e| partial(store_err(e), &done))?;
        }
        Kind::Group => {
            let g = snap.group(idx);
            let old_members: Vec<String> = snap.members_of(idx).iter().map(|&u| snap.user(u).id.clone()).collect();
            let new = resource::group_fields(&target)?;
            let old = GroupFields {
                name: g.name.clone(),
                members: old_members,
                external_id: s.store.get(kind.store_key(), id),
            };
            let add: Vec<&String> = new.members.iter().filter(|m| !old.members.contains(m)).collect();
            let remove: Vec<&String> = old.members.iter().filter(|m| !new.members.contains(m)).collect();
            let rename = new.name != old.name;
            // Everything is checked before the first backend call.
            check_members(s, &add.iter().map(|m| m.to_string()).collect::<Vec<_>>())?;
            if rename && !caps.group_update {
                return Err(unsupported(s, "renaming groups"));
            }
            if !add.is_empty() && !caps.member_add {
                return Err(unsupported(s, "adding group members"));
            }
            if !remove.is_empty() && !caps.member_remove {
                return Err(unsupported(s, "removing group members"));
            }
            if rename {
                if let Some(other) = snap.group_by_name(&new.name)
                    && other.id != id
                {
                    return Err(BackendError::Conflict(format!("group {} already exists", new.name)).into());
                }
                s.dir
                    .update_group(&actor, id, GroupChanges { name: Some(new.name.clone()), description: None })
                    .await?;
                done.push(format!("renamed to {:?}", new.name));
            }
            for m in remove {
                s.dir.remove_member(&actor, id, m).await.map_err(|e| partial(e, &done))?;
                done.push(format!("removed member {m}"));
            }
            for m in add {
                s.dir.add_member(&actor, id, m).await.map_err(|e| partial(e, &done))?;
                done.push(format!("added member {m}"));
            }
            if new.external_id != old.external_id {
                s.store
                    .set(kind.store_key(), id, new.external_id.as_deref())
                    .map_err(|e| partial(store_err(e), &done))?;
            }
        }
    }
    let (_, _, v) = current(s, kind, scim_id, base)?;
    Ok(Reply::resource(StatusCode::OK, v))
}

pub async fn remove(
    s: &ScimState,
    p: &Principal,
    kind: Kind,
    id: &str,
    headers: Option<&HeaderMap>,
    base: &str,
) -> Result<Reply, ScimError> {
    let _w = s.write_lock.lock().await;
    let (snap, idx, cur) = current(s, kind, id, base)?;
    check_if_match(headers, &cur)?;
    let id = match kind {
        Kind::User => snap.user(idx).id.clone(),
        Kind::Group => snap.group(idx).id.clone(),
    };
    let id = id.as_str();
    match kind {
        Kind::User => s.dir.delete_user(&p.actor(), id).await?,
        Kind::Group => s.dir.delete_group(&p.actor(), id).await?,
    }
    s.store.set(kind.store_key(), id, None).map_err(store_err)?;
    if kind == Kind::User {
        s.store.set(resource::DISPLAY_NAME_NS, id, None).map_err(store_err)?;
    }
    Ok(Reply { status: StatusCode::NO_CONTENT, body: None, location: None, etag: None })
}

// ---------------------------------------------------------------------------------------------
// HTTP handlers

fn respond(r: Result<Reply, ScimError>) -> Response {
    match r {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn do_list(s: &ScimState, kinds: &[Kind], raw: Option<String>, headers: &HeaderMap) -> Response {
    respond(Query::from_raw(raw.as_deref()).and_then(|q| list(s, kinds, &q, &s.base(headers))))
}

async fn do_search(s: &ScimState, kinds: &[Kind], headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let b = read_json(s, &headers, body).await?;
        let q = Query::from_search(&b)?;
        list(s, kinds, &q, &s.base(&headers))
    }
    .await;
    respond(r)
}

async fn list_users(State(s): St, RawQuery(q): RawQuery, h: HeaderMap) -> Response {
    do_list(&s, &[Kind::User], q, &h).await
}
async fn list_groups(State(s): St, RawQuery(q): RawQuery, h: HeaderMap) -> Response {
    do_list(&s, &[Kind::Group], q, &h).await
}
async fn search_users(State(s): St, h: HeaderMap, body: Body) -> Response {
    do_search(&s, &[Kind::User], h, body).await
}
async fn search_groups(State(s): St, h: HeaderMap, body: Body) -> Response {
    do_search(&s, &[Kind::Group], h, body).await
}
async fn search_root(State(s): St, h: HeaderMap, body: Body) -> Response {
    do_search(&s, &[Kind::User, Kind::Group], h, body).await
}

async fn do_get(s: &ScimState, kind: Kind, id: &str, raw: Option<String>, h: &HeaderMap) -> Response {
    respond(Query::from_raw(raw.as_deref()).and_then(|q| get_one(s, kind, id, &q, h, &s.base(h))))
}
async fn get_user(State(s): St, Path(id): Path<String>, RawQuery(q): RawQuery, h: HeaderMap) -> Response {
    do_get(&s, Kind::User, &id, q, &h).await
}
async fn get_group(State(s): St, Path(id): Path<String>, RawQuery(q): RawQuery, h: HeaderMap) -> Response {
    do_get(&s, Kind::Group, &id, q, &h).await
}

async fn do_create(s: &ScimState, kind: Kind, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let p = principal(&parts.extensions);
    let r = async {
        let b = read_json(s, &parts.headers, body).await?;
        create(s, &p, kind, &b, &s.base(&parts.headers)).await
    }
    .await;
    respond(r)
}
async fn create_users(State(s): St, req: Request) -> Response {
    do_create(&s, Kind::User, req).await
}
async fn create_groups(State(s): St, req: Request) -> Response {
    do_create(&s, Kind::Group, req).await
}

async fn do_modify(s: &ScimState, kind: Kind, id: &str, is_patch: bool, raw: Option<String>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let p = principal(&parts.extensions);
    let r = async {
        let q = Query::from_raw(raw.as_deref())?;
        let b = read_json(s, &parts.headers, body).await?;
        let change = if is_patch { Change::Patch(&b) } else { Change::Replace(&b) };
        let mut reply = modify(s, &p, kind, id, change, Some(&parts.headers), &s.base(&parts.headers)).await?;
        if is_patch && kind == Kind::Group && s.cfg.group_patch_no_content {
            reply.status = StatusCode::NO_CONTENT;
            reply.body = None;
        }
        let def = s.def(kind);
        reply.body = reply.body.map(|b| resource::project(b, &def, &q.attributes, &q.excluded));
        Ok(reply)
    }
    .await;
    respond(r)
}
async fn put_user(State(s): St, Path(id): Path<String>, RawQuery(q): RawQuery, req: Request) -> Response {
    do_modify(&s, Kind::User, &id, false, q, req).await
}
async fn patch_user(State(s): St, Path(id): Path<String>, RawQuery(q): RawQuery, req: Request) -> Response {
    do_modify(&s, Kind::User, &id, true, q, req).await
}
async fn put_group(State(s): St, Path(id): Path<String>, RawQuery(q): RawQuery, req: Request) -> Response {
    do_modify(&s, Kind::Group, &id, false, q, req).await
}
async fn patch_group(State(s): St, Path(id): Path<String>, RawQuery(q): RawQuery, req: Request) -> Response {
    do_modify(&s, Kind::Group, &id, true, q, req).await
}

async fn do_delete(s: &ScimState, kind: Kind, id: &str, req: Request) -> Response {
    let p = principal(req.extensions());
    respond(remove(s, &p, kind, id, Some(req.headers()), &s.base(req.headers())).await)
}
async fn delete_user(State(s): St, Path(id): Path<String>, req: Request) -> Response {
    do_delete(&s, Kind::User, &id, req).await
}
async fn delete_group(State(s): St, Path(id): Path<String>, req: Request) -> Response {
    do_delete(&s, Kind::Group, &id, req).await
}

// ---------------------------------------------------------------------------------------------
// Discovery

async fn service_provider_config(State(s): St, h: HeaderMap) -> Response {
    let base = s.base(&h);
    let caps = s.dir.capabilities();
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": true},
            "bulk": {"supported": true, "maxOperations": s.cfg.bulk_max_operations, "maxPayloadSize": s.cfg.max_body_bytes},
            "filter": {"supported": true, "maxResults": s.cfg.max_results},
            "changePassword": {"supported": caps.password_set},
            "sort": {"supported": true},
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "A static bearer token from the gateway's configuration",
                "primary": true,
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
        }),
    )
}

fn list_of(items: Vec<Value>) -> Value {
    json!({"schemas": [LIST_URN], "totalResults": items.len(), "startIndex": 1, "itemsPerPage": items.len(), "Resources": items})
}

fn all_defs(s: &ScimState) -> [ResourceDef; 2] {
    [s.def(Kind::User), s.def(Kind::Group)]
}

async fn resource_types(State(s): St, h: HeaderMap) -> Response {
    let base = s.base(&h);
    scim_json(StatusCode::OK, &list_of(all_defs(&s).iter().map(|d| d.resource_type_json(&base)).collect()))
}

async fn resource_type(State(s): St, Path(id): Path<String>, h: HeaderMap) -> Response {
    let base = s.base(&h);
    match all_defs(&s).iter().find(|d| d.kind.name().eq_ignore_ascii_case(&id)) {
        Some(d) => scim_json(StatusCode::OK, &d.resource_type_json(&base)),
        None => ScimError::not_found(format!("no resource type {id:?}")).into_response(),
    }
}

fn all_schemas(s: &ScimState, base: &str) -> Vec<Value> {
    all_defs(s).iter().flat_map(|d| d.schema_json(base)).collect()
}

async fn schemas(State(s): St, h: HeaderMap) -> Response {
    scim_json(StatusCode::OK, &list_of(all_schemas(&s, &s.base(&h))))
}

async fn schema_by_id(State(s): St, Path(id): Path<String>, h: HeaderMap) -> Response {
    match all_schemas(&s, &s.base(&h))
        .into_iter()
        .find(|v| v["id"].as_str().is_some_and(|i| i.eq_ignore_ascii_case(&id)))
    {
        Some(v) => scim_json(StatusCode::OK, &v),
        None => ScimError::not_found(format!("no schema {id:?}")).into_response(),
    }
}
