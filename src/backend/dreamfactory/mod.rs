//! DreamFactory backend: the System API (`/api/v2/system/{user,admin,role,app}`) with the gateway
//! logged in as a system administrator, and `/api/v2/user/session` (or the admin session) to check
//! end users' passwords.
//!
//! Ids. DreamFactory keeps users and administrators in one table, but only `/system/user` sees
//! non-admins and only `/system/admin` sees admins, and neither shows the flag (contract §5.1,
//! quirk 4). The gateway id therefore carries the endpoint: `u<id>` for users, `a<id>` for admins.
//! Every call on an id then goes to the one endpoint that holds the row, without probing both, and
//! the id stays truthful: the flag cannot change without a delete and re-create, which makes a new
//! row id anyway. Groups are roles; their ids are the role ids.
//!
//! Groups. DreamFactory has no groups; the closest thing is a role assignment per app (one role
//! per user per app, contract §5.3). The configured app's assignments are the memberships.

mod client;
mod wire;

use std::collections::HashSet;
use std::sync::RwLock;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::backend::{Backend, BackendError, BackendResult, Capabilities, ProbeReport};
use crate::config::{DreamFactoryConfig, DreamFactoryLogin};
use crate::model::{Group, GroupChanges, NewGroup, NewUser, User, UserChanges};

use client::{Client, Reply, Retry, map_error};
use wire::{WireAssignment, WireRole, WireUser, format_date};

const KIND: &str = "dreamfactory";
const ASSIGNMENTS_BY_USER: &str = "user_to_app_to_role_by_user_id";
const ASSIGNMENTS_BY_ROLE: &str = "user_to_app_to_role_by_role_id";
/// Characters that the filter parser could read as syntax inside a quoted value (contract §9);
/// logins containing one are looked up by a client-side scan instead.
const FILTER_UNSAFE: &[char] = &['\'', '"', '(', ')', '=', '<', '>', '!', '&', '|'];

/// What DreamFactory's System API allows (contract §5, §6).
const CAPABILITIES: Capabilities = Capabilities {
    user_create: true,
    user_update: true,
    user_delete: true,
    user_rename: true,
    group_create: true,
    group_update: true,
    group_delete: true,
    member_add: true,
    member_remove: true,
    password_set: true,
    password_check: true,
    // `is_sys_admin` is neither readable nor writable: admin-ness is which endpoint holds the row.
    admin_flag_write: false,
    // No column for it (lookup keys could hold one, but nothing in DreamFactory would honour it).
    external_id: false,
    // No employee number, title, mobile or locale columns on the user table.
    employee_number: false,
    // `last_modified_date` is a real column and filters accept it.
    incremental_sync: true,
    manager: false,
    nested_groups: false,
    custom_fields: false,
};

/// The two user endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    User,
    Admin,
}

impl Endpoint {
    fn segment(self) -> &'static str {
        match self {
            Endpoint::User => "user",
            Endpoint::Admin => "admin",
        }
    }
    fn prefix(self) -> char {
        match self {
            Endpoint::User => 'u',
            Endpoint::Admin => 'a',
        }
    }
    fn of(admin: bool) -> Endpoint {
        if admin { Endpoint::Admin } else { Endpoint::User }
    }
    fn id(self, n: u64) -> String {
        format!("{}{n}", self.prefix())
    }
}

/// `u7` → (User, 7); anything else names no row.
fn parse_user_id(id: &str) -> Option<(Endpoint, u64)> {
    let ep = match id.chars().next()? {
        'u' => Endpoint::User,
        'a' => Endpoint::Admin,
        _ => return None,
    };
    let n: u64 = id.get(1..)?.parse().ok()?;
    (n > 0 && id[1..].chars().all(|c| c.is_ascii_digit())).then_some((ep, n))
}

fn parse_role_id(id: &str) -> Option<u64> {
    id.chars().all(|c| c.is_ascii_digit()).then(|| id.parse().ok()).flatten().filter(|n| *n > 0)
}

/// A DreamFactory instance reached through its System API as one administrator.
pub struct DreamFactoryBackend {
    client: Client,
    instance: String,
    app_id: u64,
    login: DreamFactoryLogin,
    page_size: u32,
    caps: RwLock<Capabilities>,
    /// The administrator the gateway logs in as (`admin_email`).
    admin_email: String,
    /// That account's login as this backend reports logins: the e-mail, or (with
    /// `login_attribute = "username"`) its `username`, learnt when its row is first read.
    own: RwLock<Option<String>>,
    /// The configured custom attributes (`[[directory.attributes]]`): which fields to publish, in
    /// which syntax.
    attributes: Vec<crate::config::CustomAttribute>,
}

impl DreamFactoryBackend {
    /// The custom attributes this backend publishes.
    pub fn with_attributes(mut self, attributes: &[crate::config::CustomAttribute]) -> Self {
        self.attributes = attributes.to_vec();
        self
    }

    /// Builds the backend; no network call happens until the first request or `probe`.
    pub fn new(cfg: &DreamFactoryConfig) -> Result<DreamFactoryBackend, BackendError> {
        if cfg.admin_email.trim().is_empty() {
            return Err(BackendError::Invalid("admin_email must not be empty".into()));
        }
        Ok(DreamFactoryBackend {
            attributes: Vec::new(),
            client: Client::new(cfg)?,
            instance: cfg.url.trim_end_matches('/').to_string(),
            app_id: cfg.app_id,
            login: cfg.login_attribute,
            page_size: cfg.page_size.max(1),
            caps: RwLock::new(CAPABILITIES),
            admin_email: cfg.admin_email.trim().to_string(),
            own: RwLock::new(match cfg.login_attribute {
                DreamFactoryLogin::Email => Some(cfg.admin_email.trim().to_string()),
                DreamFactoryLogin::Username => None,
            }),
        })
    }

    fn caps(&self) -> Capabilities {
        match self.caps.read() {
            Ok(c) => *c,
            Err(p) => *p.into_inner(),
        }
    }

    fn set_caps(&self, c: Capabilities) {
        match self.caps.write() {
            Ok(mut g) => *g = c,
            Err(p) => *p.into_inner() = c,
        }
    }

    fn login_field(&self) -> &'static str {
        match self.login {
            DreamFactoryLogin::Email => "email",
            DreamFactoryLogin::Username => "username",
        }
    }

    async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> BackendResult<Reply> {
        let reply = self.client.call(Method::GET, segments, query, None, Retry::Safe).await?;
        ok_or_error(reply)
    }

    async fn write(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> BackendResult<Reply> {
        let reply = self.client.call(method, segments, query, body, Retry::Never).await?;
        ok_or_error(reply)
    }

    /// Pages with `limit`/`offset` in id order; the first page asks for the total.
    async fn list_all(&self, segments: &[&str], extra: &[(&str, String)]) -> BackendResult<Vec<Value>> {
        let mut out = Vec::new();
        let mut total: Option<u64> = None;
        loop {
            let mut query: Vec<(&str, String)> = vec![
                ("limit", self.page_size.to_string()),
                ("offset", out.len().to_string()),
                ("order", "id ASC".into()),
            ];
            if total.is_none() {
                query.push(("include_count", "true".into()));
            }
            query.extend(extra.iter().cloned());
            let body = self.get(segments, &query).await?.json()?;
            if total.is_none() {
                total = body.pointer("/meta/count").and_then(Value::as_u64);
            }
            let items = match body.get("resource") {
                Some(Value::Array(items)) => items.clone(),
                _ => return Err(BackendError::Protocol("a list answer without a resource array".into())),
            };
            let n = items.len();
            out.extend(items);
            let done = n == 0 || n < self.page_size as usize || total.is_some_and(|t| out.len() as u64 >= t);
            if done {
                return Ok(out);
            }
        }
    }

    fn to_user(&self, ep: Endpoint, value: Value) -> BackendResult<User> {
        let wire: WireUser = serde_json::from_value(value)
            .map_err(|e| BackendError::Protocol(format!("unreadable user record: {e}")))?;
        let id = wire.id.ok_or_else(|| BackendError::Protocol("a user record without an id".into()))?;
        let user = wire.into_user(ep.id(id), ep == Endpoint::Admin, self.login);
        // The gateway's own account is an administrator found by the e-mail it logs in with
        // (DreamFactory's admin login matches the e-mail whatever the login attribute).
        if ep == Endpoint::Admin && user.email.eq_ignore_ascii_case(&self.admin_email) {
            self.note_own_login(&user.login);
        }
        Ok(user)
    }

    fn note_own_login(&self, login: &str) {
        let mut g = match self.own.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if g.as_deref() != Some(login) {
            *g = Some(login.to_string());
        }
    }

    async fn list_endpoint(&self, ep: Endpoint, filter: Option<String>) -> BackendResult<Vec<User>> {
        let extra: Vec<(&str, String)> = filter.into_iter().map(|f| ("filter", f)).collect();
        let items = self.list_all(&["system", ep.segment()], &extra).await?;
        items.into_iter().map(|v| self.to_user(ep, v)).collect()
    }

    async fn list_both(&self, filter: Option<String>) -> BackendResult<Vec<User>> {
        let (mut users, admins) = tokio::try_join!(
            self.list_endpoint(Endpoint::User, filter.clone()),
            self.list_endpoint(Endpoint::Admin, filter)
        )?;
        users.extend(admins);
        Ok(users)
    }

    async fn fetch_user(&self, ep: Endpoint, n: u64) -> BackendResult<User> {
        let value = self.get(&["system", ep.segment(), &n.to_string()], &[]).await?.json()?;
        self.to_user(ep, value)
    }

    /// The user's assignment rows (all apps).
    async fn assignments(&self, ep: Endpoint, n: u64) -> BackendResult<Vec<WireAssignment>> {
        let value = self
            .get(
                &["system", ep.segment(), &n.to_string()],
                &[("fields", "id".into()), ("related", ASSIGNMENTS_BY_USER.into())],
            )
            .await?
            .json()?;
        let wire: WireUser = serde_json::from_value(value)
            .map_err(|e| BackendError::Protocol(format!("unreadable user record: {e}")))?;
        Ok(wire.user_to_app_to_role_by_user_id)
    }

    /// Ids of every administrator row, to tell `a<id>` from `u<id>` in role memberships.
    async fn admin_ids(&self) -> BackendResult<HashSet<u64>> {
        let items = self.list_all(&["system", "admin"], &[("fields", "id".into())]).await?;
        Ok(items.iter().filter_map(|v| v.get("id").and_then(Value::as_u64)).collect())
    }

    fn to_group(&self, role: WireRole, admins: &HashSet<u64>) -> Option<Group> {
        let id = role.id?;
        let mut members: Vec<String> = role
            .user_to_app_to_role_by_role_id
            .iter()
            .filter(|a| a.app_id == Some(self.app_id))
            .filter_map(|a| a.user_id)
            .map(|u| Endpoint::of(admins.contains(&u)).id(u))
            .collect();
        members.sort();
        members.dedup();
        Some(Group {
            id: id.to_string(),
            name: role.name.unwrap_or_default(),
            description: role.description.filter(|d| !d.trim().is_empty()),
            members,
            created: role.created_date.as_deref().and_then(wire::parse_date),
            modified: role.last_modified_date.as_deref().and_then(wire::parse_date),
            ..Default::default()
        })
    }

    async fn fetch_group(&self, n: u64) -> BackendResult<Option<Group>> {
        let reply = self
            .client
            .call(
                Method::GET,
                &["system", "role", &n.to_string()],
                &[("related", ASSIGNMENTS_BY_ROLE.into())],
                None,
                Retry::Safe,
            )
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let role: WireRole = serde_json::from_value(ok_or_error(reply)?.json()?)
            .map_err(|e| BackendError::Protocol(format!("unreadable role record: {e}")))?;
        let admins =
            if role.user_to_app_to_role_by_role_id.is_empty() { HashSet::new() } else { self.admin_ids().await? };
        Ok(self.to_group(role, &admins))
    }

    /// Login and email columns from the model: with `email` as the login attribute both must agree.
    fn login_columns(
        &self,
        login: Option<&str>,
        email: Option<&str>,
        body: &mut Map<String, Value>,
    ) -> BackendResult<()> {
        match self.login {
            DreamFactoryLogin::Email => {
                let chosen = match (login.filter(|l| !l.is_empty()), email.filter(|e| !e.is_empty())) {
                    (Some(l), Some(e)) if !l.eq_ignore_ascii_case(e) => {
                        return Err(BackendError::Invalid(format!(
                            "the login is the e-mail address on this DreamFactory instance; login {l:?} and e-mail {e:?} differ"
                        )));
                    }
                    (_, Some(e)) => Some(e),
                    (Some(l), None) => Some(l),
                    (None, None) => None,
                };
                if let Some(e) = chosen {
                    body.insert("email".into(), json!(e));
                }
            }
            DreamFactoryLogin::Username => {
                if let Some(l) = login {
                    body.insert("username".into(), json!(l));
                }
                if let Some(e) = email {
                    body.insert("email".into(), json!(e));
                }
            }
        }
        Ok(())
    }

    async fn write_user(&self, ep: Endpoint, n: u64, body: &Value) -> BackendResult<User> {
        let reply = self
            .write(Method::PATCH, &["system", ep.segment(), &n.to_string()], &[("fields", "*".into())], Some(body))
            .await?;
        self.to_user(ep, reply.json()?)
    }
}

fn ok_or_error(reply: Reply) -> BackendResult<Reply> {
    if reply.status.is_success() { Ok(reply) } else { Err(map_error(&reply)) }
}

fn no_user(id: &str) -> BackendError {
    BackendError::NotFound(format!("no DreamFactory user with id {id:?} (ids are u<n> or a<n>)"))
}

fn no_role(id: &str) -> BackendError {
    BackendError::NotFound(format!("no DreamFactory role with id {id:?}"))
}

/// Fields the user table has no column for (contract §5.1).
fn refuse_unstored(fields: [(&str, bool); 4]) -> BackendResult<()> {
    for (name, given) in fields {
        if given {
            return Err(BackendError::Unsupported {
                backend: KIND,
                what: format!("storing {name} (DreamFactory users have no such field)"),
            });
        }
    }
    Ok(())
}

fn given(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.trim().is_empty())
}

fn given_change(v: &Option<Option<String>>) -> bool {
    matches!(v, Some(Some(s)) if !s.trim().is_empty())
}

fn full_name(first: &str, last: &str) -> String {
    format!("{} {}", first.trim(), last.trim()).trim().to_string()
}

/// Keeps the variant but says that the user exists now, so callers do not retry the create.
fn after_create(id: &str, step: &str, e: BackendError) -> BackendError {
    let ctx = |m: String| format!("user {id} was created, but {step} failed: {m}");
    match e {
        BackendError::NotFound(m) => BackendError::NotFound(ctx(m)),
        BackendError::Conflict(m) => BackendError::Conflict(ctx(m)),
        BackendError::Unsupported { backend, what } => BackendError::Unsupported { backend, what: ctx(what) },
        BackendError::Invalid(m) => BackendError::Invalid(ctx(m)),
        BackendError::Forbidden(m) => BackendError::Forbidden(ctx(m)),
        BackendError::Auth(m) => BackendError::Auth(ctx(m)),
        BackendError::Unavailable(m) => BackendError::Unavailable(ctx(m)),
        BackendError::Timeout(m) => BackendError::Timeout(ctx(m)),
        BackendError::Protocol(m) => BackendError::Protocol(ctx(m)),
    }
}

fn first_record(reply: Reply) -> BackendResult<Value> {
    let mut body = reply.json()?;
    match body.get_mut("resource").and_then(Value::as_array_mut).and_then(|a| (!a.is_empty()).then(|| a.remove(0))) {
        Some(v) => Ok(v),
        None => Err(BackendError::Protocol("a create answer without the created record".into())),
    }
}

#[async_trait]
impl Backend for DreamFactoryBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn instance(&self) -> String {
        self.instance.clone()
    }

    fn capabilities(&self) -> Capabilities {
        self.caps()
    }

    /// The administrator the gateway logs in as; hidden like every backend's own account.
    fn own_login(&self) -> Option<String> {
        match self.own.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    async fn probe(&self) -> BackendResult<ProbeReport> {
        let mut notes = Vec::new();
        // A fresh login checks the credentials for real (not a cached session).
        self.client.login().await?;
        notes.push("administrator login accepted (session token obtained)".into());
        if self.login == DreamFactoryLogin::Username {
            // Learn the gateway's own login (its `username`) before the first refresh publishes it.
            let filter = format!("email='{}'", self.admin_email);
            if !self.admin_email.contains(FILTER_UNSAFE) {
                self.list_endpoint(Endpoint::Admin, Some(filter)).await?;
            } else {
                self.list_endpoint(Endpoint::Admin, None).await?;
            }
        }
        if let Some(own) = self.own_login() {
            notes.push(format!("the gateway's own account {own} is never published"));
        }
        let mut caps = CAPABILITIES;
        for (segment, what) in [("user", "users"), ("admin", "administrators"), ("role", "roles")] {
            let body = self
                .get(
                    &["system", segment],
                    &[("limit", "1".into()), ("fields", "id".into()), ("include_count", "true".into())],
                )
                .await?
                .json()?;
            let count = body.pointer("/meta/count").and_then(Value::as_u64);
            notes.push(match count {
                Some(n) => format!("{n} {what} readable"),
                None => format!("{what} readable"),
            });
        }
        let app =
            self.client.call(Method::GET, &["system", "app", &self.app_id.to_string()], &[], None, Retry::Safe).await?;
        if app.status == StatusCode::NOT_FOUND {
            notes.push(format!(
                "app {} does not exist: role assignments (group memberships) cannot be written; check app_id",
                self.app_id
            ));
            caps.member_add = false;
            caps.member_remove = false;
        } else {
            let app = ok_or_error(app)?.json()?;
            let name = app.get("name").and_then(Value::as_str).unwrap_or("?");
            notes.push(format!("groups are the role assignments of app {} ({name})", self.app_id));
        }
        notes.push("the System API does not report DreamFactory's version".into());
        notes.push("DreamFactory 7.1+ refuses passwords shorter than 16 characters; earlier versions 6".into());
        self.set_caps(caps);
        Ok(ProbeReport { backend: KIND, version: None, notes, capabilities: caps })
    }

    async fn list_users(&self) -> BackendResult<Vec<User>> {
        self.list_both(None).await
    }

    async fn list_users_changed_since(&self, since: i64) -> BackendResult<Vec<User>> {
        let when =
            format_date(since).ok_or_else(|| BackendError::Invalid(format!("timestamp {since} is out of range")))?;
        self.list_both(Some(format!("last_modified_date>='{when}'"))).await
    }

    async fn get_user(&self, id: &str) -> BackendResult<Option<User>> {
        let Some((ep, n)) = parse_user_id(id) else {
            return Ok(None);
        };
        match self.fetch_user(ep, n).await {
            Ok(u) => Ok(Some(u)),
            Err(BackendError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn find_user_by_login(&self, login: &str) -> BackendResult<Option<User>> {
        if login.trim().is_empty() {
            return Ok(None);
        }
        let same = |u: &User| u.login.eq_ignore_ascii_case(login);
        if login.contains(FILTER_UNSAFE) {
            // The filter parser only strips the outer quotes; such a value cannot be sent safely.
            return Ok(self.list_users().await?.into_iter().find(same));
        }
        let filter = format!("{}='{login}'", self.login_field());
        for ep in [Endpoint::User, Endpoint::Admin] {
            let found = self.list_endpoint(ep, Some(filter.clone())).await?;
            if let Some(u) = found.into_iter().find(same) {
                return Ok(Some(u));
            }
        }
        Ok(None)
    }

    async fn list_groups(&self) -> BackendResult<Vec<Group>> {
        let related = [("related", ASSIGNMENTS_BY_ROLE.to_string())];
        let (roles, admins) = tokio::try_join!(self.list_all(&["system", "role"], &related), self.admin_ids())?;
        let mut out = Vec::new();
        for v in roles {
            let role: WireRole = serde_json::from_value(v)
                .map_err(|e| BackendError::Protocol(format!("unreadable role record: {e}")))?;
            out.extend(self.to_group(role, &admins));
        }
        Ok(out)
    }

    async fn get_group(&self, id: &str) -> BackendResult<Option<Group>> {
        let Some(n) = parse_role_id(id) else {
            return Ok(None);
        };
        self.fetch_group(n).await
    }

    async fn create_user(&self, user: &NewUser) -> BackendResult<User> {
        refuse_unstored([
            ("a mobile number", given(&user.mobile)),
            ("a title", given(&user.title)),
            ("an employee number", given(&user.employee_number)),
            ("a locale", given(&user.locale)),
        ])?;
        let ep = Endpoint::of(user.admin);
        let mut rec = Map::new();
        self.login_columns(Some(&user.login), Some(&user.email), &mut rec)?;
        rec.insert("first_name".into(), json!(user.first_name));
        rec.insert("last_name".into(), json!(user.last_name));
        let name = full_name(&user.first_name, &user.last_name);
        rec.insert("name".into(), json!(if name.is_empty() { user.login.clone() } else { name }));
        if let Some(p) = &user.phone {
            rec.insert("phone".into(), json!(p));
        }
        if let Some(p) = &user.password {
            rec.insert("password".into(), json!(p));
        }
        // A create drops falsy values (quirk 2): `is_active: false` would be ignored, so users are
        // created active and disabled afterwards.
        rec.insert("is_active".into(), json!(true));
        let body = json!({"resource": [Value::Object(rec)]});
        let reply = self.write(Method::POST, &["system", ep.segment()], &[("fields", "*".into())], Some(&body)).await?;
        let created = self.to_user(ep, first_record(reply)?)?;
        if user.active {
            return Ok(created);
        }
        let n = parse_user_id(&created.id).map(|(_, n)| n).unwrap_or_default();
        self.write_user(ep, n, &json!({"is_active": false}))
            .await
            .map_err(|e| after_create(&created.id, "disabling it", e))
    }

    async fn update_user(&self, id: &str, changes: &UserChanges) -> BackendResult<User> {
        let Some((ep, n)) = parse_user_id(id) else {
            return Err(no_user(id));
        };
        if let Some(admin) = changes.admin
            && admin != (ep == Endpoint::Admin)
        {
            return Err(BackendError::Unsupported {
                backend: KIND,
                what: format!(
                    "{} (DreamFactory decides admin rights by the endpoint that created the account; \
                     it would take deleting and re-creating the user, with a new id)",
                    if admin { "promoting a user to administrator" } else { "demoting an administrator" }
                ),
            });
        }
        refuse_unstored([
            ("a mobile number", given_change(&changes.mobile)),
            ("a title", given_change(&changes.title)),
            ("an employee number", given_change(&changes.employee_number)),
            ("a locale", given_change(&changes.locale)),
        ])?;
        let mut body = Map::new();
        self.login_columns(changes.login.as_deref(), changes.email.as_deref(), &mut body)?;
        if changes.first_name.is_some() || changes.last_name.is_some() {
            let current = self.fetch_user(ep, n).await?;
            let first = changes.first_name.clone().unwrap_or(current.first_name);
            let last = changes.last_name.clone().unwrap_or(current.last_name);
            body.insert("first_name".into(), json!(first));
            body.insert("last_name".into(), json!(last));
            let name = full_name(&first, &last);
            if !name.is_empty() {
                body.insert("name".into(), json!(name));
            }
        }
        if let Some(p) = &changes.phone {
            body.insert("phone".into(), p.as_ref().map_or(Value::Null, |s| json!(s)));
        }
        if let Some(a) = changes.active {
            body.insert("is_active".into(), json!(a));
        }
        if body.is_empty() {
            return self.fetch_user(ep, n).await;
        }
        // PUT and PATCH are the same partial update here (quirk 1); PATCH says so.
        self.write_user(ep, n, &Value::Object(body)).await
    }

    async fn delete_user(&self, id: &str) -> BackendResult<()> {
        let Some((ep, n)) = parse_user_id(id) else {
            return Err(no_user(id));
        };
        self.write(Method::DELETE, &["system", ep.segment(), &n.to_string()], &[], None).await.map(|_| ())
    }

    async fn set_password(&self, id: &str, password: &str) -> BackendResult<()> {
        let Some((ep, n)) = parse_user_id(id) else {
            return Err(no_user(id));
        };
        self.write(Method::PATCH, &["system", ep.segment(), &n.to_string()], &[], Some(&json!({"password": password})))
            .await
            .map(|_| ())
    }

    async fn check_password(&self, user: &User, password: &str) -> BackendResult<bool> {
        if user.login.is_empty() || password.is_empty() {
            return Ok(false);
        }
        let admin = parse_user_id(&user.id).map_or(user.admin, |(ep, _)| ep == Endpoint::Admin);
        // Admins can only log in on the admin session, everyone else only on the user session.
        let segments: &[&str] = if admin { &["system", "admin", "session"] } else { &["user", "session"] };
        let body = json!({self.login_field(): user.login, "password": password, "remember_me": false});
        let reply = self.client.call_as(Method::POST, segments, Some(&body), None).await?;
        match reply.status.as_u16() {
            200 => {
                let token =
                    reply.json().ok().and_then(|v| v.get("session_token").and_then(Value::as_str).map(String::from));
                match token {
                    Some(t) => match self.client.call_as(Method::DELETE, segments, None, Some(&t)).await {
                        Ok(r) if r.status.is_success() => {}
                        Ok(r) => {
                            tracing::warn!(status = r.status.as_u16(), "could not end the session of a password check")
                        }
                        Err(e) => tracing::warn!(error = %e, "could not end the session of a password check"),
                    },
                    None => tracing::warn!("a password check answered without a session token"),
                }
                Ok(true)
            }
            // 401: wrong password, inactive, or the wrong kind of account; 400: missing field;
            // 403: user not active. None of them is the gateway's credentials.
            400 | 401 | 403 => Ok(false),
            _ => Err(map_error(&reply)),
        }
    }

    async fn create_group(&self, group: &NewGroup) -> BackendResult<Group> {
        let mut rec = Map::new();
        rec.insert("name".into(), json!(group.name));
        if let Some(d) = &group.description {
            rec.insert("description".into(), json!(d));
        }
        // Roles are created inactive by default, and holders of an inactive role get 403s.
        rec.insert("is_active".into(), json!(true));
        let body = json!({"resource": [Value::Object(rec)]});
        let reply = self.write(Method::POST, &["system", "role"], &[("fields", "id".into())], Some(&body)).await?;
        let id = first_record(reply)?
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| BackendError::Protocol("a role create answered without an id".into()))?
            .to_string();
        for m in &group.members {
            self.add_member(&id, m).await.map_err(|e| {
                BackendError::Protocol(format!("role {id} was created, but adding member {m} failed: {e}"))
            })?;
        }
        self.get_group(&id)
            .await?
            .ok_or_else(|| BackendError::Protocol(format!("role {id} was created but cannot be read back")))
    }

    async fn update_group(&self, id: &str, changes: &GroupChanges) -> BackendResult<Group> {
        let Some(n) = parse_role_id(id) else {
            return Err(no_role(id));
        };
        let mut body = Map::new();
        if let Some(name) = &changes.name {
            body.insert("name".into(), json!(name));
        }
        if let Some(d) = &changes.description {
            body.insert("description".into(), d.as_ref().map_or(Value::Null, |s| json!(s)));
        }
        if !body.is_empty() {
            self.write(Method::PATCH, &["system", "role", &n.to_string()], &[], Some(&Value::Object(body))).await?;
        }
        self.fetch_group(n).await?.ok_or_else(|| no_role(id))
    }

    async fn delete_group(&self, id: &str) -> BackendResult<()> {
        let Some(n) = parse_role_id(id) else {
            return Err(no_role(id));
        };
        // Assignments go with the role (foreign-key cascade).
        self.write(Method::DELETE, &["system", "role", &n.to_string()], &[], None).await.map(|_| ())
    }

    async fn add_member(&self, group_id: &str, user_id: &str) -> BackendResult<()> {
        let Some(role) = parse_role_id(group_id) else {
            return Err(no_role(group_id));
        };
        let Some((ep, n)) = parse_user_id(user_id) else {
            return Err(no_user(user_id));
        };
        if ep == Endpoint::Admin {
            return Err(BackendError::Invalid(
                "administrators cannot be given roles here: any role assignment turns a DreamFactory \
                 administrator into a restricted admin governed by that role"
                    .into(),
            ));
        }
        if self.fetch_group(role).await?.is_none() {
            return Err(no_role(group_id));
        }
        let rows = self.assignments(ep, n).await?;
        if let Some(row) = rows.iter().find(|a| a.app_id == Some(self.app_id)) {
            if row.role_id == Some(role) {
                return Ok(());
            }
            return Err(BackendError::Conflict(format!(
                "user {user_id} already holds role {} in app {}; DreamFactory allows one role per user per app, \
                 so remove that membership first",
                row.role_id.map(|r| r.to_string()).unwrap_or_else(|| "?".into()),
                self.app_id
            )));
        }
        let body = json!({ASSIGNMENTS_BY_USER: [{"user_id": n, "app_id": self.app_id, "role_id": role}]});
        self.write(
            Method::PATCH,
            &["system", ep.segment(), &n.to_string()],
            &[("related", ASSIGNMENTS_BY_USER.into())],
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> BackendResult<()> {
        let Some(role) = parse_role_id(group_id) else {
            return Err(no_role(group_id));
        };
        let Some((ep, n)) = parse_user_id(user_id) else {
            return Err(no_user(user_id));
        };
        let rows = self.assignments(ep, n).await?;
        let Some(row) = rows.iter().find(|a| a.app_id == Some(self.app_id) && a.role_id == Some(role)) else {
            // Not a member: nothing to remove.
            return Ok(());
        };
        let Some(row_id) = row.id else {
            return Err(BackendError::Protocol("an assignment row without an id".into()));
        };
        // The row with its id and `user_id: null` removes it (contract §5.3).
        let body =
            json!({ASSIGNMENTS_BY_USER: [{"id": row_id, "user_id": null, "app_id": self.app_id, "role_id": role}]});
        self.write(
            Method::PATCH,
            &["system", ep.segment(), &n.to_string()],
            &[("related", ASSIGNMENTS_BY_USER.into())],
            Some(&body),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_carry_the_endpoint() {
        assert_eq!(parse_user_id("u7"), Some((Endpoint::User, 7)));
        assert_eq!(parse_user_id("a1"), Some((Endpoint::Admin, 1)));
        for bad in ["7", "u", "u0", "x7", "u-1", "u+7", "a1.0", ""] {
            assert_eq!(parse_user_id(bad), None, "{bad}");
        }
        assert_eq!(Endpoint::Admin.id(3), "a3");
        assert_eq!(parse_role_id("3"), Some(3));
        assert_eq!(parse_role_id("0"), None);
        assert_eq!(parse_role_id("+3"), None);
    }

    #[test]
    fn unstored_fields_are_refused() {
        assert!(refuse_unstored([("a title", false), ("x", false), ("y", false), ("z", false)]).is_ok());
        let e = refuse_unstored([("a title", true), ("x", false), ("y", false), ("z", false)]).unwrap_err();
        assert!(matches!(e, BackendError::Unsupported { .. }), "{e}");
    }
}
