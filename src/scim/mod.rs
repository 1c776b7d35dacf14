//! The SCIM 2.0 front end (RFC 7643/7644) under `/scim/v2`. Reads are answered from the directory's
//! snapshot; writes go through the directory's write API (backend first, then the snapshot), so a
//! SCIM write is visible over LDAP at once and vice versa.

mod bulk;
pub mod error;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod schema;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Access, DeleteMode, Rights, ScimConfig, ScimScope};
use crate::directory::{Caller, Directory, GroupEdit, GroupSpec, Principal, Snapshot, UserEdit, UserSpec};
use crate::model::{NewGroup, NewUser};
pub use error::ScimError;
use filter::{AttrRef, Limits};
use resource::UserFields;
use schema::{Kind, LIST_URN, ResourceDef};

pub const CONTENT_TYPE: &str = "application/scim+json";

/// A JSON response with the SCIM media type.
pub fn scim_json(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))], body).into_response()
}

pub struct ScimState {
    pub dir: Arc<Directory>,
    pub cfg: ScimConfig,
    /// sha256 of each configured token, compared in constant time.
    tokens: Vec<([u8; 32], String, ScimScope)>,
}

impl ScimState {
    pub fn new(dir: Arc<Directory>, cfg: ScimConfig) -> ScimState {
        let tokens = cfg
            .tokens
            .iter()
            .map(|t| (Sha256::digest(t.token.expose().as_bytes()).into(), t.name.clone(), t.scope))
            .collect();
        ScimState { dir, cfg, tokens }
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

/// The authenticated client of a request, as the core sees it. Handlers take it as an extractor;
/// a route without the authentication layer fails loudly instead of running as nobody.
#[derive(Debug, Clone)]
pub struct Authed(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ScimError> {
        parts.extensions.get::<Caller>().cloned().map(Authed).ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "SCIM route reached without the authentication layer");
            ScimError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "the request was not authenticated")
        })
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
    let source =
        req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_else(|| "-".into());
    // What the token may do is decided by the core, like any other principal's rights.
    let rights = Rights::all(if scope == ScimScope::Write { Access::Write } else { Access::Read });
    let label = format!("scim:{name}");
    req.extensions_mut().insert(Caller {
        principal: Principal::Service { name, rights },
        label,
        source,
        frontend: "scim",
    });
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let result = if resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED { "ok" } else { "error" };
    metrics::counter!("idgate_requests_total", "frontend" => "scim", "operation" => method, "result" => result)
        .increment(1);
    metrics::histogram!("idgate_request_seconds", "frontend" => "scim").record(started.elapsed().as_secs_f64());
    resp
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
        Kind::User => resource::user_json(snap, idx, def, base, &s.dir),
        Kind::Group => resource::group_json(snap, idx, base, &s.dir),
    }
}

/// Candidate indexes for a filter: the snapshot's indexes for `userName`/`id`/`externalId`/
/// `emails`/`displayName` equality, everything otherwise. Candidates are still checked in full.
fn candidates(s: &ScimState, snap: &Snapshot, kind: Kind, f: Option<&filter::Filter>) -> Vec<usize> {
    let all = || -> Vec<usize> {
        match kind {
            Kind::User => snap.users().map(|(i, _)| i).collect(),
            Kind::Group => snap.groups().map(|(i, _)| i).collect(),
        }
    };
    let Some((key, v)) = f.and_then(filter::indexed_eq) else { return all() };
    match (kind, key.as_str()) {
        (Kind::User, "username") => snap.user_index_by_login(v).into_iter().collect(),
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
    r.body = r.body.map(|b| resource::project(b, &def, &q.attributes, &q.excluded));
    Ok(r)
}

pub async fn create(s: &ScimState, c: &Caller, kind: Kind, body: &Value, base: &str) -> Result<Reply, ScimError> {
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
            let spec = UserSpec { new, external_id: f.external_id, display_name: f.display_name };
            s.dir.create_user(c, spec).await?.id.clone()
        }
        Kind::Group => {
            let f = resource::group_fields(body)?;
            let new = NewGroup { name: f.name, description: None, members: f.members };
            s.dir.create_group(c, GroupSpec { new, external_id: f.external_id }).await?.id.clone()
        }
    };
    let (_, _, v) = current(s, kind, &resource::scim_id(kind, &id), base)?;
    Ok(Reply::resource(StatusCode::CREATED, v))
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
            let employee_number = s.dir.capabilities().employee_number;
            s.dir
                .edit_user(c, backend, |snap, idx| {
                    let doc = target(snap, idx)?;
                    let user = snap.user(idx);
                    let old = UserFields::of(user, &s.dir.attached_user(user));
                    let (mut new, password) = resource::user_fields(&doc, &def)?;
                    if new.active.is_none() {
                        new.active = old.active;
                    }
                    Ok::<_, ScimError>(UserEdit {
                        changes: new.changes_from(&old, employee_number),
                        password,
                        old_password: None,
                        external_id: (new.external_id != old.external_id).then(|| new.external_id.clone()),
                        display_name: (new.display_name != old.display_name).then(|| new.display_name.clone()),
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
                    let old_external = s.dir.group_external_id(snap.group(gi));
                    Ok::<_, ScimError>(GroupEdit {
                        name: Some(new.name),
                        description: None,
                        members: Some(new.members.into_iter().collect()),
                        external_id: (new.external_id != old_external).then_some(new.external_id),
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

async fn do_create(s: &ScimState, p: Caller, kind: Kind, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let r = async {
        let b = read_json(s, &parts.headers, body).await?;
        create(s, &p, kind, &b, &s.base(&parts.headers)).await
    }
    .await;
    respond(r)
}
async fn create_users(State(s): St, Authed(c): Authed, req: Request) -> Response {
    do_create(&s, c, Kind::User, req).await
}
async fn create_groups(State(s): St, Authed(c): Authed, req: Request) -> Response {
    do_create(&s, c, Kind::Group, req).await
}

async fn do_modify(
    s: &ScimState,
    p: Caller,
    kind: Kind,
    id: &str,
    is_patch: bool,
    raw: Option<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
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
async fn put_user(
    State(s): St,
    Authed(c): Authed,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    req: Request,
) -> Response {
    do_modify(&s, c, Kind::User, &id, false, q, req).await
}
async fn patch_user(
    State(s): St,
    Authed(c): Authed,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    req: Request,
) -> Response {
    do_modify(&s, c, Kind::User, &id, true, q, req).await
}
async fn put_group(
    State(s): St,
    Authed(c): Authed,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    req: Request,
) -> Response {
    do_modify(&s, c, Kind::Group, &id, false, q, req).await
}
async fn patch_group(
    State(s): St,
    Authed(c): Authed,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    req: Request,
) -> Response {
    do_modify(&s, c, Kind::Group, &id, true, q, req).await
}

async fn do_delete(s: &ScimState, p: Caller, kind: Kind, id: &str, req: Request) -> Response {
    respond(remove(s, &p, kind, id, Some(req.headers()), &s.base(req.headers())).await)
}
async fn delete_user(State(s): St, Authed(c): Authed, Path(id): Path<String>, req: Request) -> Response {
    do_delete(&s, c, Kind::User, &id, req).await
}
async fn delete_group(State(s): St, Authed(c): Authed, Path(id): Path<String>, req: Request) -> Response {
    do_delete(&s, c, Kind::Group, &id, req).await
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
