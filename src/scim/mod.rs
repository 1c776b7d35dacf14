//! The SCIM 2.0 front end (RFC 7643/7644) under `/scim/v2`. Reads are answered from the directory's
//! snapshot; writes go through the directory's write API (backend first, then the snapshot), so a
//! SCIM write is visible over LDAP at once and vice versa.
//!
//! This file holds the HTTP side: state, router, authentication and extractors, and thin handlers
//! that call the operations in `service` (which `/Bulk` calls too).

mod bulk;
mod discovery;
pub mod error;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod schema;
pub mod service;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Access, Rights, ScimConfig, ScimScope};
use crate::directory::{Caller, Directory, Principal};
pub use error::ScimError;
use filter::Limits;
use schema::{Kind, ResourceDef};
use service::{Change, Query, Reply};

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
        let caps = self.dir.capabilities();
        match kind {
            Kind::User => ResourceDef::user_with(schema::UserSchemaInput {
                caps: &caps,
                custom: self.dir.custom_attributes().all(),
                custom_urn: &self.cfg.custom_schema,
            }),
            Kind::Group => ResourceDef::group(&caps),
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

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ScimError> {
        parts.extensions.get::<Caller>().cloned().map(Authed).ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "SCIM route reached without the authentication layer");
            ScimError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "the request was not authenticated")
        })
    }
}

/// A request's JSON body (`application/scim+json` or `application/json`) within
/// `max_body_bytes`. Extracted last, as axum requires of the body.
pub struct ScimBody(pub Value);

impl FromRequest<Arc<ScimState>> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(req: Request, s: &Arc<ScimState>) -> Result<Self, ScimError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|c| c.to_str().ok())
            && !ct.to_ascii_lowercase().contains("json")
        {
            return Err(ScimError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                format!("content type {ct:?} is not accepted; send application/scim+json"),
            ));
        }
        let max = s.cfg.max_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), max).await.map_err(|_| {
            ScimError::new(StatusCode::PAYLOAD_TOO_LARGE, None, format!("request body larger than {max} bytes"))
        })?;
        serde_json::from_slice(&bytes)
            .map(ScimBody)
            .map_err(|e| ScimError::invalid_syntax(format!("malformed JSON: {e}")))
    }
}

/// The query string's SCIM parameters. As an extractor it is rejected before a body is read.
impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ScimError> {
        Query::from_raw(parts.uri.query())
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

type St = State<Arc<ScimState>>;

pub fn router(state: Arc<ScimState>) -> Router {
    let read_only = |h: MethodRouter<Arc<ScimState>>| {
        use discovery::method_not_allowed as no;
        h.post(no).put(no).patch(no).delete(no)
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
        .route("/ServiceProviderConfig", read_only(get(discovery::service_provider_config)))
        .route("/ResourceTypes", read_only(get(discovery::resource_types)))
        .route("/ResourceTypes/{id}", read_only(get(discovery::resource_type)))
        .route("/Schemas", read_only(get(discovery::schemas)))
        .route("/Schemas/{id}", read_only(get(discovery::schema_by_id)))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state);
    Router::new().nest("/scim/v2", api)
}

async fn not_found() -> ScimError {
    ScimError::not_found("no such SCIM endpoint")
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

// ---------------------------------------------------------------------------------------------
// HTTP handlers

type Answer = Result<Reply, ScimError>;

async fn list_users(State(s): St, Authed(c): Authed, q: Query, h: HeaderMap) -> Answer {
    service::list(&s, &c.label, &[Kind::User], q, s.base(&h)).await
}
async fn list_groups(State(s): St, Authed(c): Authed, q: Query, h: HeaderMap) -> Answer {
    service::list(&s, &c.label, &[Kind::Group], q, s.base(&h)).await
}

async fn search(s: &Arc<ScimState>, c: &Caller, kinds: &[Kind], h: &HeaderMap, body: &Value) -> Answer {
    service::list(s, &c.label, kinds, Query::from_search(body)?, s.base(h)).await
}
async fn search_users(State(s): St, Authed(c): Authed, h: HeaderMap, ScimBody(b): ScimBody) -> Answer {
    search(&s, &c, &[Kind::User], &h, &b).await
}
async fn search_groups(State(s): St, Authed(c): Authed, h: HeaderMap, ScimBody(b): ScimBody) -> Answer {
    search(&s, &c, &[Kind::Group], &h, &b).await
}
async fn search_root(State(s): St, Authed(c): Authed, h: HeaderMap, ScimBody(b): ScimBody) -> Answer {
    search(&s, &c, &[Kind::User, Kind::Group], &h, &b).await
}

async fn get_user(State(s): St, Path(id): Path<String>, q: Query, h: HeaderMap) -> Answer {
    service::get_one(&s, Kind::User, &id, &q, &h, &s.base(&h))
}
async fn get_group(State(s): St, Path(id): Path<String>, q: Query, h: HeaderMap) -> Answer {
    service::get_one(&s, Kind::Group, &id, &q, &h, &s.base(&h))
}

async fn create_users(State(s): St, Authed(c): Authed, h: HeaderMap, ScimBody(b): ScimBody) -> Answer {
    service::create(&s, &c, Kind::User, &b, &s.base(&h)).await
}
async fn create_groups(State(s): St, Authed(c): Authed, h: HeaderMap, ScimBody(b): ScimBody) -> Answer {
    service::create(&s, &c, Kind::Group, &b, &s.base(&h)).await
}

/// PUT/PATCH over HTTP (unlike in Bulk) honour `attributes`/`excludedAttributes`, and a group
/// PATCH may answer 204 for clients configured to expect it.
async fn modify(s: &ScimState, c: &Caller, kind: Kind, id: &str, q: &Query, h: &HeaderMap, ch: Change<'_>) -> Answer {
    let is_patch = matches!(ch, Change::Patch(_));
    let mut reply = service::modify(s, c, kind, id, ch, Some(h), &s.base(h)).await?;
    if is_patch && kind == Kind::Group && s.cfg.group_patch_no_content {
        reply.status = StatusCode::NO_CONTENT;
        reply.body = None;
    }
    let def = s.def(kind);
    reply.body = reply.body.map(|b| q.project(b, &def));
    Ok(reply)
}
async fn put_user(
    State(s): St,
    Authed(c): Authed,
    Path(id): Path<String>,
    q: Query,
    h: HeaderMap,
    ScimBody(b): ScimBody,
) -> Answer {
    modify(&s, &c, Kind::User, &id, &q, &h, Change::Replace(&b)).await
}
async fn patch_user(
    State(s): St,
    Authed(c): Authed,
    Path(id): Path<String>,
    q: Query,
    h: HeaderMap,
    ScimBody(b): ScimBody,
) -> Answer {
    modify(&s, &c, Kind::User, &id, &q, &h, Change::Patch(&b)).await
}
async fn put_group(
    State(s): St,
    Authed(c): Authed,
    Path(id): Path<String>,
    q: Query,
    h: HeaderMap,
    ScimBody(b): ScimBody,
) -> Answer {
    modify(&s, &c, Kind::Group, &id, &q, &h, Change::Replace(&b)).await
}
async fn patch_group(
    State(s): St,
    Authed(c): Authed,
    Path(id): Path<String>,
    q: Query,
    h: HeaderMap,
    ScimBody(b): ScimBody,
) -> Answer {
    modify(&s, &c, Kind::Group, &id, &q, &h, Change::Patch(&b)).await
}

async fn delete_user(State(s): St, Authed(c): Authed, Path(id): Path<String>, h: HeaderMap) -> Answer {
    service::remove(&s, &c, Kind::User, &id, Some(&h), &s.base(&h)).await
}
async fn delete_group(State(s): St, Authed(c): Authed, Path(id): Path<String>, h: HeaderMap) -> Answer {
    service::remove(&s, &c, Kind::Group, &id, Some(&h), &s.base(&h)).await
}
