//! Foreman backend (API v2 `/api/users`, `/api/usergroups`; written against Foreman 3.13, whose
//! user API has been stable since 1.x).
//!
//! The contract this follows was derived from Foreman's source; the comments name its quirks
//! where the code works around them.

mod client;
mod wire;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt, stream};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::backend::{Backend, BackendError, BackendResult, Capabilities, ProbeReport};
use crate::config::{AttributeSyntax, CustomAttribute, ForemanConfig};
use crate::model::Custom;
use crate::model::canonical;
use crate::model::{Group, GroupChanges, NewGroup, NewUser, User, UserChanges};

use client::{Client, Reply, Retry, TOO_MANY_TRIES, map_error};
use wire::{Envelope, WireAuthSource, WireGroup, WireUser};

const KIND: &str = "foreman";
/// Group details are fetched one by one (the index omits members); this many at a time.
const GROUP_FETCH_CONCURRENCY: usize = 4;

/// What Foreman's API can do with an admin account (contract §5, §6).
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
    // Honoured only when the gateway's account is an admin; `probe` turns it off otherwise.
    admin_flag_write: true,
    // Foreman users have no field for an external id.
    external_id: false,
    // No employee number (nor phone, mobile or title) on Foreman users.
    employee_number: false,
    // Users are not searchable by `updated_at`: every refresh is a full one.
    incremental_sync: false,
    manager: false,
    // `usergroup_ids` nests groups; Foreman refuses cycles itself (contract §6.2).
    nested_groups: true,
    // Custom attributes are user columns; `description` and `timezone` can be written.
    custom_fields: true,
};

/// Facts learnt by `probe` (or on first need).
#[derive(Debug, Clone, Copy)]
struct Detected {
    caps: Capabilities,
    /// Id of the Internal auth source, which new users get (contract §5.3).
    internal_source: Option<u64>,
}

/// A budget of failed password checks: a token bucket that refills `capacity` tokens per
/// `window`. A check takes a token before calling Foreman and gives it back when the password was
/// right, so failures that reach Foreman never exceed `capacity` plus the refill.
struct FailureBudget {
    capacity: f64,
    per_sec: f64,
    state: Mutex<(f64, Instant)>,
}

impl FailureBudget {
    fn new(capacity: u32, window: Duration) -> FailureBudget {
        let capacity = f64::from(capacity.max(1));
        let per_sec = capacity / window.as_secs_f64().max(1.0);
        FailureBudget { capacity, per_sec, state: Mutex::new((capacity, Instant::now())) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut f64) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(g.1).as_secs_f64();
        g.0 = (g.0 + elapsed * self.per_sec).min(self.capacity);
        g.1 = now;
        f(&mut g.0)
    }

    fn take(&self) -> bool {
        self.with(|t| {
            if *t >= 1.0 {
                *t -= 1.0;
                true
            } else {
                false
            }
        })
    }

    fn refund(&self) {
        let cap = self.capacity;
        self.with(|t| *t = (*t + 1.0).min(cap));
    }

    fn drain(&self) {
        self.with(|t| *t = 0.0);
    }
}

/// A Foreman installation reached through its API v2 with one service account.
pub struct ForemanBackend {
    client: Client,
    instance: String,
    page_size: u32,
    detected: RwLock<Detected>,
    budget: FailureBudget,
    /// One lock per group: membership is a read-modify-write of the whole list (quirk 1).
    group_locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    /// The configured custom attributes (`[[directory.attributes]]`): which fields to publish, in
    /// which syntax.
    attributes: Vec<crate::config::CustomAttribute>,
}

/// What a usergroup's list holds: users (`user_ids`) or child groups (`usergroup_ids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberKind {
    User,
    Group,
}

impl MemberKind {
    fn key(self) -> &'static str {
        match self {
            MemberKind::User => "user_ids",
            MemberKind::Group => "usergroup_ids",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            MemberKind::User => "user",
            MemberKind::Group => "group",
        }
    }
    fn plural(self) -> &'static str {
        match self {
            MemberKind::User => "members",
            MemberKind::Group => "member groups",
        }
    }
    fn ids(self, g: &WireGroup) -> Vec<u64> {
        match self {
            MemberKind::User => g.member_ids(),
            MemberKind::Group => g.child_ids(),
        }
    }
}

/// Logins Foreman accepts: alphanumerics and `_ - @ . \ $ # +` (contract §5.1).
fn valid_login(login: &str) -> bool {
    !login.is_empty()
        && login.chars().count() <= 100
        && login.chars().all(|c| c.is_alphanumeric() || "_-@.\\$#+".contains(c))
}

/// A positive integer id; anything else would be read by Foreman as a login or name.
fn numeric_id(id: &str) -> Option<u64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok().filter(|n| *n > 0)
}

/// A double-quoted scoped_search value.
fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

fn ok_or_error(reply: Reply) -> BackendResult<Reply> {
    if reply.status.is_success() { Ok(reply) } else { Err(map_error(&reply)) }
}

/// Foreman user columns a custom attribute may write: plain text with no other meaning to the
/// gateway. Everything else a custom attribute names is read-only (`last_login_on`,
/// `auth_source_name`, `effective_admin`, `mail_enabled`, ...).
const WRITABLE_COLUMNS: &[&str] = &["description", "timezone"];

/// The configured custom attributes read from a user object's columns, in canonical text.
fn custom_from(attributes: &[CustomAttribute], raw: &Value) -> Custom {
    let mut out = Custom::new();
    for a in attributes {
        let mut texts: Vec<String> = Vec::new();
        let mut push = |v: &Value| match v {
            Value::String(s) if a.syntax == AttributeSyntax::Date => {
                texts.extend(wire::parse_time(s).map(|t| t.to_string()));
            }
            Value::String(s) if a.multi && !a.separator.is_empty() => {
                texts.extend(s.split(a.separator.as_str()).map(|p| p.trim().to_string()));
            }
            Value::String(s) => texts.push(s.trim().to_string()),
            Value::Number(n) => texts.push(n.to_string()),
            Value::Bool(b) => texts.push(b.to_string()),
            _ => {}
        };
        match raw.get(&a.field) {
            Some(Value::Array(items)) => items.iter().for_each(&mut push),
            Some(v) => push(v),
            None => {}
        }
        let values: Vec<String> = texts.iter().filter_map(|t| canonical(a.syntax, t)).collect();
        if !values.is_empty() {
            out.insert(a.field.clone(), values);
        }
    }
    out
}

/// The JSON value a custom attribute's canonical values are written as.
fn custom_value(a: &CustomAttribute, values: &[String]) -> BackendResult<Value> {
    if !WRITABLE_COLUMNS.contains(&a.field.as_str()) {
        return Err(unsupported(format!(
            "writing the Foreman user column {:?} (writable columns: {})",
            a.field,
            WRITABLE_COLUMNS.join(", ")
        )));
    }
    if values.is_empty() {
        return Ok(Value::Null);
    }
    if values.len() > 1 && !a.multi {
        return Err(BackendError::Invalid(format!("{} takes one value", a.name)));
    }
    Ok(json!(values.join(a.separator.as_str())))
}

fn group_from(value: Value) -> BackendResult<WireGroup> {
    serde_json::from_value(value).map_err(|e| BackendError::Protocol(format!("unreadable Foreman usergroup: {e}")))
}

fn unsupported(what: impl Into<String>) -> BackendError {
    BackendError::Unsupported { backend: KIND, what: what.into() }
}

/// Fields of the neutral model Foreman has no place for: a value for one is refused, not dropped.
fn refuse_unstorable(fields: [(&str, Option<&str>); 4]) -> BackendResult<()> {
    for (name, v) in fields {
        if v.is_some_and(|v| !v.trim().is_empty()) {
            return Err(unsupported(format!("storing a {name} (Foreman users have no such field)")));
        }
    }
    Ok(())
}

/// A password nobody knows, for users created without one (internal users must have one).
fn random_password() -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_";
    let mut rng = rand::rng();
    (0..40).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}

/// Keeps the variant but says the object exists now, so callers do not retry the create.
fn after_create(what: &str, e: BackendError) -> BackendError {
    let ctx = |m: String| format!("{what} was created, but {m}");
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

impl ForemanBackend {
    /// The custom attributes this backend publishes.
    pub fn with_attributes(mut self, attributes: &[crate::config::CustomAttribute]) -> Self {
        self.attributes = attributes.to_vec();
        self
    }

    /// Builds the backend; no network call happens until the first request or `probe`.
    pub fn new(cfg: &ForemanConfig) -> Result<ForemanBackend, BackendError> {
        let client = Client::new(cfg)?;
        Ok(ForemanBackend {
            attributes: Vec::new(),
            client,
            instance: cfg.url.trim_end_matches('/').to_string(),
            page_size: cfg.page_size.clamp(1, 1000),
            detected: RwLock::new(Detected { caps: CAPABILITIES, internal_source: None }),
            budget: FailureBudget::new(cfg.failed_check_burst, cfg.failed_check_window),
            group_locks: Mutex::new(HashMap::new()),
        })
    }

    /// A user object (index or show shape) with the configured custom attributes.
    fn to_user(&self, value: Value) -> BackendResult<User> {
        let custom = custom_from(&self.attributes, &value);
        let wire: WireUser = serde_json::from_value(value)
            .map_err(|e| BackendError::Protocol(format!("unreadable Foreman user object: {e}")))?;
        Ok(User { custom, ..wire.into_user() })
    }

    /// Custom attribute values to write, as `user[...]` keys.
    fn custom_columns(
        &self,
        changes: &std::collections::BTreeMap<String, Option<Vec<String>>>,
        u: &mut Map<String, Value>,
    ) -> BackendResult<()> {
        for (field, values) in changes {
            let a = self
                .attributes
                .iter()
                .find(|a| a.field == *field)
                .ok_or_else(|| BackendError::Invalid(format!("{field:?} is not a configured custom attribute")))?;
            u.insert(field.clone(), custom_value(a, values.as_deref().unwrap_or_default())?);
        }
        Ok(())
    }

    fn detected(&self) -> Detected {
        match self.detected.read() {
            Ok(d) => *d,
            Err(p) => *p.into_inner(),
        }
    }

    fn update_detected(&self, f: impl FnOnce(&mut Detected)) {
        match self.detected.write() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> BackendResult<Reply> {
        ok_or_error(self.client.call(Method::GET, segments, query, None, Retry::Safe).await?)
    }

    async fn write(&self, method: Method, segments: &[&str], body: Option<&Value>) -> BackendResult<Reply> {
        ok_or_error(self.client.call(method, segments, &[], body, Retry::Never).await?)
    }

    /// Pages through an index route (`per_page`/`page`, sorted by id) until `subtotal` is reached.
    async fn list_all(&self, resource: &str, search: Option<String>) -> BackendResult<Vec<Value>> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut page = 1u64;
        loop {
            let mut query: Vec<(&str, String)> =
                vec![("per_page", self.page_size.to_string()), ("page", page.to_string()), ("order", "id ASC".into())];
            if let Some(s) = &search {
                query.push(("search", s.clone()));
            }
            let env: Envelope = serde_json::from_value(self.get(&[resource], &query).await?.json()?)
                .map_err(|e| BackendError::Protocol(format!("unreadable Foreman list envelope: {e}")))?;
            let n = env.results.len();
            for item in env.results {
                // A record moving between pages during the walk must not appear twice.
                let id = item.get("id").and_then(Value::as_u64);
                if id.is_none_or(|id| seen.insert(id)) {
                    out.push(item);
                }
            }
            let subtotal = env.subtotal.unwrap_or(0);
            if n == 0 || page.saturating_mul(u64::from(self.page_size)) >= subtotal {
                return Ok(out);
            }
            page += 1;
        }
    }

    async fn fetch_user(&self, id: u64) -> BackendResult<Option<User>> {
        match self.get(&["users", &id.to_string()], &[]).await {
            Ok(r) => Ok(Some(self.to_user(r.json()?)?)),
            Err(BackendError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn fetch_group(&self, id: u64) -> BackendResult<Option<WireGroup>> {
        match self.get(&["usergroups", &id.to_string()], &[]).await {
            Ok(r) => Ok(Some(group_from(r.json()?)?)),
            Err(BackendError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether a user login equals `name`, ignoring case (logins and group names share one
    /// namespace, quirk 2). `~` is a case-insensitive contains; the exact match is made here.
    async fn login_exists(&self, name: &str, except: Option<u64>) -> BackendResult<bool> {
        if !valid_login(name) {
            return Ok(false);
        }
        let found = self.list_all("users", Some(format!("login ~ {}", quoted(name)))).await?;
        Ok(found.iter().any(|u| {
            u.get("login").and_then(Value::as_str).is_some_and(|l| l.eq_ignore_ascii_case(name))
                && u.get("id").and_then(Value::as_u64) != except
        }))
    }

    /// Whether a user group is named `name`, ignoring case.
    async fn group_name_exists(&self, name: &str, except: Option<u64>) -> BackendResult<bool> {
        let found = self.list_all("usergroups", Some(format!("name ~ {}", quoted(name)))).await?;
        Ok(found.iter().any(|g| {
            g.get("name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(name))
                && g.get("id").and_then(Value::as_u64) != except
        }))
    }

    /// The Internal auth source id, looked up once (at `probe`, or on the first create).
    async fn internal_source(&self) -> BackendResult<u64> {
        if let Some(id) = self.detected().internal_source {
            return Ok(id);
        }
        let items = self.list_all("auth_source_internals", None).await?;
        let sources: Vec<WireAuthSource> = items.into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect();
        let id = sources
            .iter()
            .find(|s| s.name.as_deref() == Some("Internal"))
            .or(sources.first())
            .map(|s| s.id)
            .ok_or_else(|| BackendError::Protocol("Foreman lists no Internal auth source".into()))?;
        self.update_detected(|d| d.internal_source = Some(id));
        Ok(id)
    }

    fn group_lock(&self, id: u64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.group_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(id).or_default().clone()
    }

    /// Adds or removes one member (a user, or a child group): under the group's lock, re-read the
    /// current list, change it, PUT the whole list back (quirk 1), and check that Foreman stored
    /// exactly that list.
    async fn change_member(&self, group_id: &str, member_id: &str, kind: MemberKind, add: bool) -> BackendResult<()> {
        let Some(g) = numeric_id(group_id) else {
            return Err(BackendError::NotFound(format!("no Foreman group with id {group_id:?}")));
        };
        let Some(m) = numeric_id(member_id) else {
            return Err(BackendError::NotFound(format!("no Foreman {} with id {member_id:?}", kind.noun())));
        };
        if kind == MemberKind::Group && m == g && add {
            return Err(BackendError::Invalid(format!("group {g} cannot contain itself")));
        }
        let lock = self.group_lock(g);
        let _held = lock.lock().await;
        let current = self.fetch_group(g).await?.ok_or_else(|| BackendError::NotFound(format!("group {g}")))?;
        let mut ids: BTreeSet<u64> = kind.ids(&current).into_iter().collect();
        if ids.contains(&m) == add {
            return Ok(());
        }
        if add {
            // An unknown id would give a 404 that names the group (quirk 9): check first.
            let exists = match kind {
                MemberKind::User => self.fetch_user(m).await?.is_some(),
                MemberKind::Group => self.fetch_group(m).await?.is_some(),
            };
            if !exists {
                return Err(BackendError::NotFound(format!("{} {m}", kind.noun())));
            }
            ids.insert(m);
        } else {
            ids.remove(&m);
        }
        let wanted: Vec<u64> = ids.iter().copied().collect();
        let body = json!({"usergroup": {kind.key(): wanted}});
        let reply = match self.write(Method::PUT, &["usergroups", &g.to_string()], Some(&body)).await {
            Ok(r) => r,
            // Foreman checks the whole nesting graph on every new nesting: an existing cycle
            // anywhere refuses them all (its `EnsureNoCycle`).
            Err(BackendError::Invalid(msg)) if kind == MemberKind::Group && msg.contains("cycle") => {
                return Err(BackendError::Invalid(format!(
                    "Foreman refused nesting group {m} in group {g}: {msg} (Foreman refuses any new nesting while \
                     its groups contain a cycle anywhere)"
                )));
            }
            Err(e) => return Err(e),
        };
        let stored: BTreeSet<u64> = kind.ids(&group_from(reply.json()?)?).into_iter().collect();
        if stored != ids {
            return Err(BackendError::Conflict(format!(
                "the {} of group {g} changed while they were being written; Foreman now lists {stored:?}",
                kind.plural()
            )));
        }
        Ok(())
    }

    fn check_admin_write(&self, wanted: bool) -> BackendResult<()> {
        if wanted && !self.detected().caps.admin_flag_write {
            return Err(BackendError::Forbidden(
                "the gateway's Foreman account is not an admin, and Foreman ignores the admin flag from non-admins"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for ForemanBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn instance(&self) -> String {
        self.instance.clone()
    }

    fn capabilities(&self) -> Capabilities {
        self.detected().caps
    }

    async fn probe(&self) -> BackendResult<ProbeReport> {
        let mut notes = Vec::new();
        // Version: `/api/status` says it; every answer also carries a `Foreman_version` header.
        let status = self.client.call(Method::GET, &["status"], &[], None, Retry::Safe).await?;
        let mut version = None;
        if status.status.is_success() {
            version = status.json().ok().and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_string));
        } else if status.status == StatusCode::UNAUTHORIZED {
            return Err(map_error(&status));
        }
        let version = version.or(status.version.clone());

        // Credentials, for real: a 401 here is a configuration problem, never a user's password.
        let me = self.get(&["current_user"], &[]).await?.json()?;
        let admin = me.get("admin").and_then(Value::as_bool).unwrap_or(false);
        let mut caps = CAPABILITIES;
        notes.push(format!("signed in to Foreman as {}", self.client.username()));
        if admin {
            notes.push("the gateway's account is an admin: all permissions, no taxonomy scoping".into());
        } else {
            caps.admin_flag_write = false;
            notes.push(
                "the gateway's account is not an admin: the admin flag cannot be written, and lists only show the \
                 users and groups of its organizations and locations"
                    .into(),
            );
        }
        for (resource, perm) in [("users", "view_users"), ("usergroups", "view_usergroups")] {
            match self.get(&[resource], &[("per_page", "1".into())]).await {
                Ok(_) => {}
                Err(BackendError::Forbidden(m)) => notes.push(format!("cannot read {resource} ({perm} missing): {m}")),
                Err(e) => return Err(e),
            }
        }
        match self.internal_source().await {
            Ok(id) => notes.push(format!("new users get the Internal auth source (id {id})")),
            Err(BackendError::Forbidden(m)) => {
                caps.user_create = false;
                notes.push(format!("cannot read auth sources (view_authenticators missing), no user creation: {m}"));
            }
            Err(e) => return Err(e),
        }
        notes.push("no modification-time search on users: every refresh is a full one".into());
        self.update_detected(|d| d.caps = caps);
        Ok(ProbeReport { backend: KIND, version, notes, capabilities: caps })
    }

    async fn list_users(&self) -> BackendResult<Vec<User>> {
        let items = self.list_all("users", None).await?;
        Ok(items.into_iter().filter_map(|v| self.to_user(v).ok()).collect())
    }

    async fn list_users_changed_since(&self, _since: i64) -> BackendResult<Vec<User>> {
        // `updated_at` is not among the users' scoped_search fields (contract §4.1).
        Err(unsupported("listing users by modification time (Foreman cannot search users by updated_at)"))
    }

    async fn get_user(&self, id: &str) -> BackendResult<Option<User>> {
        match numeric_id(id) {
            Some(n) => self.fetch_user(n).await,
            None => Ok(None),
        }
    }

    async fn find_user_by_login(&self, login: &str) -> BackendResult<Option<User>> {
        if !valid_login(login) {
            return Ok(None);
        }
        // Search, not show-by-login: show is case-sensitive and reads all-digit logins as ids.
        let found = self.list_all("users", Some(format!("login = {}", quoted(login)))).await?;
        let users: Vec<User> = found.into_iter().filter_map(|v| self.to_user(v).ok()).collect();
        Ok(users.into_iter().find(|u| u.login.eq_ignore_ascii_case(login)))
    }

    async fn list_groups(&self) -> BackendResult<Vec<Group>> {
        let items = self.list_all("usergroups", None).await?;
        let ids: Vec<u64> = items.iter().filter_map(|g| g.get("id").and_then(Value::as_u64)).collect();
        let groups: Vec<Option<WireGroup>> = stream::iter(ids)
            .map(|id| async move { self.fetch_group(id).await })
            .buffered(GROUP_FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        // A group deleted between the list and its fetch is simply gone.
        Ok(groups.into_iter().flatten().map(WireGroup::into_group).collect())
    }

    async fn get_group(&self, id: &str) -> BackendResult<Option<Group>> {
        match numeric_id(id) {
            Some(n) => Ok(self.fetch_group(n).await?.map(WireGroup::into_group)),
            None => Ok(None),
        }
    }

    async fn create_user(&self, user: &NewUser) -> BackendResult<User> {
        refuse_unstorable([
            ("phone number", user.phone.as_deref()),
            ("mobile number", user.mobile.as_deref()),
            ("title", user.title.as_deref()),
            ("employee number", user.employee_number.as_deref()),
        ])?;
        if !valid_login(&user.login) {
            return Err(BackendError::Invalid(format!(
                "login {:?} is not valid in Foreman (letters, digits and _ - @ . \\ $ # + only)",
                user.login
            )));
        }
        self.check_admin_write(user.admin)?;
        // Checked before any call: a column that cannot be written refuses the whole create.
        let mut extra = Map::new();
        let custom = user.custom.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        self.custom_columns(&custom, &mut extra)?;
        if self.group_name_exists(&user.login, None).await? {
            return Err(BackendError::Conflict(format!(
                "a Foreman user group is named {:?}; users and groups share one namespace",
                user.login
            )));
        }
        let source = self.internal_source().await?;
        let password = match &user.password {
            Some(p) if !p.is_empty() => p.clone(),
            // Internal users must have a password; one nobody knows keeps the account closed.
            _ => random_password(),
        };
        let mut u = Map::new();
        u.insert("login".into(), json!(user.login));
        u.insert("firstname".into(), json!(user.first_name));
        u.insert("lastname".into(), json!(user.last_name));
        if !user.email.is_empty() {
            u.insert("mail".into(), json!(user.email));
        }
        u.insert("auth_source_id".into(), json!(source));
        u.insert("password".into(), json!(password));
        u.insert("admin".into(), json!(user.admin));
        u.insert("disabled".into(), json!(!user.active));
        if let Some(l) = user.locale.as_deref().filter(|l| !l.is_empty()) {
            u.insert("locale".into(), json!(l));
        }
        // An empty value is simply not sent on create.
        u.extend(extra.into_iter().filter(|(_, v)| !v.is_null()));
        let reply = self.write(Method::POST, &["users"], Some(&json!({"user": u}))).await?;
        let created = self.to_user(reply.json()?)?;
        if created.admin != user.admin {
            return Err(after_create(
                &format!("user {}", created.id),
                BackendError::Forbidden("Foreman ignored the admin flag".into()),
            ));
        }
        Ok(created)
    }

    async fn update_user(&self, id: &str, changes: &UserChanges) -> BackendResult<User> {
        let Some(n) = numeric_id(id) else {
            return Err(BackendError::NotFound(format!("no Foreman user with id {id:?}")));
        };
        refuse_unstorable([
            ("phone number", changes.phone.as_ref().and_then(Option::as_deref)),
            ("mobile number", changes.mobile.as_ref().and_then(Option::as_deref)),
            ("title", changes.title.as_ref().and_then(Option::as_deref)),
            ("employee number", changes.employee_number.as_ref().and_then(Option::as_deref)),
        ])?;
        if changes.admin.is_some() {
            self.check_admin_write(true)?;
        }
        let mut extra = Map::new();
        self.custom_columns(&changes.custom, &mut extra)?;
        let current = self.fetch_user(n).await?.ok_or_else(|| BackendError::NotFound(format!("user {n}")))?;
        if changes.is_empty() {
            return Ok(current);
        }
        let mut u = Map::new();
        if let Some(login) = &changes.login
            && *login != current.login
        {
            if !valid_login(login) {
                return Err(BackendError::Invalid(format!("login {login:?} is not valid in Foreman")));
            }
            if self.group_name_exists(login, None).await? {
                return Err(BackendError::Conflict(format!(
                    "a Foreman user group is named {login:?}; users and groups share one namespace"
                )));
            }
            u.insert("login".into(), json!(login));
        }
        if let Some(v) = &changes.first_name {
            u.insert("firstname".into(), json!(v));
        }
        if let Some(v) = &changes.last_name {
            u.insert("lastname".into(), json!(v));
        }
        // Mail is validated on every update while mail_enabled (quirk 4): always send it. A user
        // without any mail gets mail_enabled=false, since nothing can be mailed to them anyway.
        let mail = changes.email.clone().unwrap_or_else(|| current.email.clone());
        if mail.is_empty() {
            u.insert("mail_enabled".into(), json!(false));
            if !current.email.is_empty() {
                // A clear must be sent: without `mail`, Foreman keeps the old address.
                u.insert("mail".into(), Value::Null);
            }
        } else {
            u.insert("mail".into(), json!(mail));
        }
        if let Some(l) = &changes.locale {
            u.insert("locale".into(), json!(l.clone().unwrap_or_default()));
        }
        if let Some(a) = changes.active {
            u.insert("disabled".into(), json!(!a));
        }
        if let Some(a) = changes.admin {
            u.insert("admin".into(), json!(a));
        }
        u.extend(extra);
        let reply = self.write(Method::PUT, &["users", &n.to_string()], Some(&json!({"user": u}))).await?;
        let updated = self.to_user(reply.json()?)?;
        if let Some(a) = changes.admin
            && updated.admin != a
        {
            return Err(BackendError::Forbidden(format!("Foreman did not change the admin flag of user {n}")));
        }
        Ok(updated)
    }

    async fn delete_user(&self, id: &str) -> BackendResult<()> {
        let Some(n) = numeric_id(id) else {
            return Err(BackendError::NotFound(format!("no Foreman user with id {id:?}")));
        };
        // The answer is the raw database row, hashes included (quirk 6): read only its id.
        let reply = self.write(Method::DELETE, &["users", &n.to_string()], None).await?;
        match reply.json().ok().and_then(|v| v.get("id").and_then(Value::as_u64)) {
            Some(deleted) if deleted == n => Ok(()),
            _ => Err(BackendError::Protocol(format!("Foreman's answer to deleting user {n} does not name it"))),
        }
    }

    async fn set_password(&self, id: &str, password: &str) -> BackendResult<()> {
        let Some(n) = numeric_id(id) else {
            return Err(BackendError::NotFound(format!("no Foreman user with id {id:?}")));
        };
        if password.is_empty() {
            return Err(BackendError::Invalid("empty password".into()));
        }
        let current = self.fetch_user(n).await?.ok_or_else(|| BackendError::NotFound(format!("user {n}")))?;
        let mut u = Map::new();
        u.insert("password".into(), json!(password));
        u.insert("password_confirmation".into(), json!(password));
        if current.email.is_empty() {
            u.insert("mail_enabled".into(), json!(false));
        } else {
            u.insert("mail".into(), json!(current.email));
        }
        self.write(Method::PUT, &["users", &n.to_string()], Some(&json!({"user": u}))).await.map(|_| ())
    }

    async fn check_password(&self, user: &User, password: &str) -> BackendResult<bool> {
        // A login Foreman cannot have (or one that breaks Basic auth, like `a:b`) needs no call.
        if !valid_login(&user.login) || password.is_empty() {
            return Ok(false);
        }
        // Every failure counts toward Foreman's per-address lock-out, which would lock the
        // gateway's own account out too (quirk 8): spend from a budget kept well below it.
        if !self.budget.take() {
            return Err(BackendError::Unavailable(
                "too many failed password checks recently; checks are paused for a few minutes so that Foreman does \
                 not lock out the gateway's address"
                    .into(),
            ));
        }
        let reply = match self.client.current_user_as(&user.login, password).await {
            Ok(r) => r,
            Err(e) => return Err(e),
        };
        match reply.status.as_u16() {
            200 => {
                self.budget.refund();
                let login = reply.json()?.get("login").and_then(Value::as_str).map(str::to_string);
                Ok(login.is_some_and(|l| l.eq_ignore_ascii_case(&user.login)))
            }
            401 => {
                let text =
                    serde_json::from_slice::<Value>(&reply.body).map(|v| client::error_text(&v)).unwrap_or_default();
                if text.contains(TOO_MANY_TRIES) {
                    self.budget.drain();
                    return Err(map_error(&reply));
                }
                // Wrong password, unknown login, or a disabled account.
                Ok(false)
            }
            _ => Err(map_error(&reply)),
        }
    }

    async fn create_group(&self, group: &NewGroup) -> BackendResult<Group> {
        if group.description.as_deref().is_some_and(|d| !d.trim().is_empty()) {
            return Err(unsupported("storing a group description (Foreman user groups have none)"));
        }
        if group.name.trim().is_empty() {
            return Err(BackendError::Invalid("a group needs a name".into()));
        }
        let mut ids = BTreeSet::new();
        for m in &group.members {
            ids.insert(numeric_id(m).ok_or_else(|| BackendError::NotFound(format!("user {m:?}")))?);
        }
        let mut children = BTreeSet::new();
        for c in &group.member_groups {
            children.insert(numeric_id(c).ok_or_else(|| BackendError::NotFound(format!("group {c:?}")))?);
        }
        if self.login_exists(&group.name, None).await? {
            return Err(BackendError::Conflict(format!(
                "a Foreman user has the login {:?}; users and groups share one namespace",
                group.name
            )));
        }
        for id in &ids {
            if self.fetch_user(*id).await?.is_none() {
                return Err(BackendError::NotFound(format!("user {id}")));
            }
        }
        for id in &children {
            if self.fetch_group(*id).await?.is_none() {
                return Err(BackendError::NotFound(format!("group {id}")));
            }
        }
        let wanted: Vec<u64> = ids.iter().copied().collect();
        let mut body = json!({"usergroup": {"name": group.name, "user_ids": wanted}});
        if !children.is_empty() {
            body["usergroup"]["usergroup_ids"] = json!(children.iter().copied().collect::<Vec<u64>>());
        }
        let reply = self.write(Method::POST, &["usergroups"], Some(&body)).await?;
        Ok(group_from(reply.json()?)?.into_group())
    }

    async fn update_group(&self, id: &str, changes: &GroupChanges) -> BackendResult<Group> {
        let Some(n) = numeric_id(id) else {
            return Err(BackendError::NotFound(format!("no Foreman group with id {id:?}")));
        };
        if changes.description.as_ref().and_then(Option::as_deref).is_some_and(|d| !d.trim().is_empty()) {
            return Err(unsupported("storing a group description (Foreman user groups have none)"));
        }
        let Some(name) = &changes.name else {
            return self
                .fetch_group(n)
                .await?
                .map(WireGroup::into_group)
                .ok_or_else(|| BackendError::NotFound(format!("group {n}")));
        };
        if self.login_exists(name, None).await? {
            return Err(BackendError::Conflict(format!(
                "a Foreman user has the login {name:?}; users and groups share one namespace"
            )));
        }
        let body = json!({"usergroup": {"name": name}});
        let reply = self.write(Method::PUT, &["usergroups", &n.to_string()], Some(&body)).await?;
        Ok(group_from(reply.json()?)?.into_group())
    }

    async fn delete_group(&self, id: &str) -> BackendResult<()> {
        let Some(n) = numeric_id(id) else {
            return Err(BackendError::NotFound(format!("no Foreman group with id {id:?}")));
        };
        let reply = self.write(Method::DELETE, &["usergroups", &n.to_string()], None).await?;
        match reply.json().ok().and_then(|v| v.get("id").and_then(Value::as_u64)) {
            Some(deleted) if deleted == n => Ok(()),
            _ => Err(BackendError::Protocol(format!("Foreman's answer to deleting group {n} does not name it"))),
        }
    }

    async fn add_member(&self, group_id: &str, user_id: &str) -> BackendResult<()> {
        self.change_member(group_id, user_id, MemberKind::User, true).await
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> BackendResult<()> {
        self.change_member(group_id, user_id, MemberKind::User, false).await
    }

    async fn add_member_group(&self, group_id: &str, child_id: &str) -> BackendResult<()> {
        self.change_member(group_id, child_id, MemberKind::Group, true).await
    }

    async fn remove_member_group(&self, group_id: &str, child_id: &str) -> BackendResult<()> {
        self.change_member(group_id, child_id, MemberKind::Group, false).await
    }

    /// The configured login: Foreman matches logins case-insensitively, as does the directory.
    fn own_login(&self) -> Option<String> {
        Some(self.client.username().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_and_ids() {
        assert!(valid_login("j.doe+ops@example.com"));
        assert!(valid_login("Jörg"));
        assert!(!valid_login("a b") && !valid_login("a:b") && !valid_login("") && !valid_login("a\"b"));
        assert_eq!(numeric_id("12"), Some(12));
        assert_eq!(numeric_id("0"), None);
        assert_eq!(numeric_id("12-jdoe"), None);
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn budget_refills_and_refunds() {
        let b = FailureBudget::new(2, Duration::from_secs(3600));
        assert!(b.take() && b.take());
        assert!(!b.take(), "exhausted");
        b.refund();
        assert!(b.take());
        b.drain();
        assert!(!b.take());
        let fast = FailureBudget::new(1, Duration::from_millis(1));
        assert!(fast.take());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(fast.take(), "refilled (window floors at one second)");
    }

    #[test]
    fn random_passwords_differ() {
        assert_ne!(random_password(), random_password());
        assert_eq!(random_password().len(), 40);
    }
}
