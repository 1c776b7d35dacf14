//! Dolibarr backend (REST API of Dolibarr 22; group writes and membership removal need 23+).
//!
//! The contract this follows was recorded against a live Dolibarr 22.0.4; the comments name its
//! quirks where the code works around them.

mod client;
mod extra;
mod wire;

use std::collections::{BTreeMap, HashSet};
use std::sync::RwLock;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt, stream};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::backend::{Backend, BackendError, BackendResult, Capabilities, ProbeReport};
use crate::config::DolibarrConfig;
use crate::model::{Group, GroupChanges, NewGroup, NewUser, User, UserChanges};

use client::{Client, Op, Reply, Retry, map_error, strip_tags};
use wire::{StatusBody, WireGroup, WireUser, real_id};

const KIND: &str = "dolibarr";
/// Group details are fetched one by one (the list omits members); this many at a time.
const GROUP_FETCH_CONCURRENCY: usize = 4;
/// Characters Dolibarr refuses in logins by default (`MAIN_LOGIN_BADCHARUNAUTHORIZED`).
const LOGIN_BAD_CHARS: &[char] = &[',', '@', '<', '>', '"', '\''];

/// What Dolibarr 22 can do through its API (contract §1, §8).
const V22_CAPABILITIES: Capabilities = Capabilities {
    user_create: true,
    user_update: true,
    user_delete: true,
    user_rename: true,
    group_create: false,
    group_update: false,
    group_delete: false,
    member_add: true,
    member_remove: false,
    password_set: true,
    password_check: true,
    // The API can set admin=1 but never reset it to 0.
    admin_flag_write: false,
    // ref_ext is accepted and silently dropped.
    external_id: false,
    employee_number: true,
    incremental_sync: true,
    // fk_user, stored without any existence check (contract §12.3).
    manager: true,
    nested_groups: false,
    // User extra fields through `array_options` (contract §12.2).
    custom_fields: true,
};

/// The install-time superadmin lives in entity 0 (contract §12.5); the filter sees the database
/// column, unlike the JSON, where admins of entity 1 are reported as entity 0 too.
const DEFAULT_SYSTEM_FILTER: &str = "(t.entity:=:0)";

/// Facts learnt by `probe`.
#[derive(Debug, Clone, Copy)]
struct Detected {
    caps: Capabilities,
    /// Group POST/PUT/DELETE and membership removal exist (Dolibarr 23+).
    v23_groups: bool,
    /// Server local time minus UTC, in seconds; `t.tms` filters are written in local time.
    utc_offset: i64,
}

/// A Dolibarr installation reached through its REST API with one service key.
pub struct DolibarrBackend {
    client: Client,
    instance: String,
    page_size: u32,
    detected: RwLock<Detected>,
    /// The configured custom attributes (`[[directory.attributes]]`): which fields to publish, in
    /// which syntax.
    attributes: Vec<crate::config::CustomAttribute>,
    /// `sqlfilters` selecting the system accounts; `None`: there are none.
    system_filter: Option<String>,
    /// Ids the filter selected at the last full list; `None` until it ran once.
    system_ids: RwLock<Option<HashSet<String>>>,
    /// Login of the key's owner, learnt by `probe` from `GET /users/info`.
    own: RwLock<Option<String>>,
}

impl DolibarrBackend {
    /// The custom attributes this backend publishes.
    pub fn with_attributes(mut self, attributes: &[crate::config::CustomAttribute]) -> Self {
        self.attributes = attributes.to_vec();
        self
    }

    /// Builds the backend; no network call happens until the first request or `probe`.
    pub fn new(cfg: &DolibarrConfig) -> Result<DolibarrBackend, BackendError> {
        let client = Client::new(cfg)?;
        let system_filter = match cfg.system_filter.as_deref().map(str::trim) {
            None => Some(DEFAULT_SYSTEM_FILTER.to_string()),
            Some("") => None,
            Some(f) => Some(f.to_string()),
        };
        Ok(DolibarrBackend {
            attributes: Vec::new(),
            system_filter,
            system_ids: RwLock::new(None),
            own: RwLock::new(None),
            client,
            instance: cfg.url.trim_end_matches('/').to_string(),
            page_size: cfg.page_size.max(1),
            detected: RwLock::new(Detected { caps: V22_CAPABILITIES, v23_groups: false, utc_offset: 0 }),
        })
    }

    fn detected(&self) -> Detected {
        match self.detected.read() {
            Ok(d) => *d,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn set_detected(&self, d: Detected) {
        match self.detected.write() {
            Ok(mut g) => *g = d,
            Err(poisoned) => *poisoned.into_inner() = d,
        }
    }

    fn needs_v23(&self, what: &str) -> BackendResult<()> {
        if self.detected().v23_groups { Ok(()) } else { Err(v22_missing(what)) }
    }

    /// A read that answers 2xx, else the mapped error.
    async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> BackendResult<Reply> {
        let reply = self.client.call(Method::GET, segments, query, None, Retry::Safe).await?;
        ok_or_error(Op::Read, reply)
    }

    async fn write(&self, method: Method, segments: &[&str], body: Option<&Value>) -> BackendResult<Reply> {
        let reply = self.client.call(method, segments, &[], body, Retry::Never).await?;
        ok_or_error(Op::Write, reply)
    }

    /// Pages through a list route until a page is shorter than the page size (no totals exist).
    async fn list_all(&self, segments: &[&str], extra: &[(&str, String)]) -> BackendResult<Vec<Value>> {
        let mut out = Vec::new();
        let mut page = 0u32;
        loop {
            let mut query: Vec<(&str, String)> = vec![
                ("limit", self.page_size.to_string()),
                ("page", page.to_string()),
                ("sortfield", "t.rowid".into()),
                ("sortorder", "ASC".into()),
            ];
            query.extend(extra.iter().cloned());
            let items = match self.get(segments, &query).await?.json()? {
                Value::Array(items) => items,
                other => {
                    return Err(BackendError::Protocol(format!("expected a list, got {}", kind_of(&other))));
                }
            };
            let n = items.len();
            out.extend(items);
            if n < self.page_size as usize {
                return Ok(out);
            }
            page += 1;
        }
    }

    async fn list_users_filtered(&self, extra: &[(&str, String)]) -> BackendResult<Vec<User>> {
        let items = self.list_all(&["users"], extra).await?;
        let system = self.system_ids().await?;
        Ok(items.into_iter().filter_map(|v| self.model_user(v, &system)).collect())
    }

    /// The model user of a wire object: extra fields as configured, the system flag from `system`.
    /// `None` for the specimen, objects without a real id and unreadable objects.
    fn model_user(&self, value: Value, system: &HashSet<String>) -> Option<User> {
        let mut wire: WireUser = serde_json::from_value(value).ok()?;
        let options = std::mem::take(&mut wire.array_options);
        let mut u = wire.into_user()?;
        u.custom = extra::read(&self.attributes, &options);
        u.system = system.contains(&u.id);
        Some(u)
    }

    /// One user object answered by Dolibarr, which must be a real user.
    async fn user_from(&self, value: Value) -> BackendResult<User> {
        let system = self.system_ids().await?;
        if !value.is_object() {
            return Err(BackendError::Protocol(format!("expected a user object, got {}", kind_of(&value))));
        }
        self.model_user(value, &system).ok_or_else(|| {
            BackendError::Protocol("Dolibarr returned an unreadable user or one without a real id".into())
        })
    }

    async fn fetch_user(&self, id: &str) -> BackendResult<User> {
        let value = self.get(&["users", id], &[]).await?.json()?;
        self.user_from(value).await
    }

    /// Remembers the login of the key's owner (a `GET /users/info` answer): the gateway's own
    /// account, never published, never bindable.
    fn learn_own(&self, info: &Value) -> Option<String> {
        let own = info.get("login").and_then(wire::str_of).filter(|l| !l.is_empty());
        match self.own.write() {
            Ok(mut g) => g.clone_from(&own),
            Err(poisoned) => poisoned.into_inner().clone_from(&own),
        }
        own
    }

    /// Learns the own account if `probe` could not (the backend was down at start), before a
    /// full list could publish it.
    async fn ensure_own(&self) -> BackendResult<()> {
        if self.own_login().is_none() {
            let info = self.get(&["users", "info"], &[]).await?.json()?;
            self.learn_own(&info);
        }
        Ok(())
    }

    /// Asks Dolibarr which users the system filter selects (ids only) and remembers them.
    async fn refresh_system_ids(&self) -> BackendResult<HashSet<String>> {
        let Some(filter) = &self.system_filter else {
            return Ok(HashSet::new());
        };
        let query = [("sqlfilters", filter.clone()), ("properties", "id".to_string())];
        let items = self.list_all(&["users"], &query).await.map_err(|e| {
            with_context(e, |m| format!("the system-account filter {filter} (dolibarr system_filter) failed: {m}"))
        })?;
        let ids: HashSet<String> = items
            .iter()
            .filter_map(|u| u.get("id").and_then(wire::str_of))
            .filter(|id| real_id(Some(id)).is_some())
            .collect();
        match self.system_ids.write() {
            Ok(mut g) => *g = Some(ids.clone()),
            Err(poisoned) => *poisoned.into_inner() = Some(ids.clone()),
        }
        Ok(ids)
    }

    /// The system ids of the last full list; fetched now if there was none yet, so that no read
    /// publishes a system account as a person.
    async fn system_ids(&self) -> BackendResult<HashSet<String>> {
        let known = match self.system_ids.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        match known {
            Some(ids) => Ok(ids),
            None => self.refresh_system_ids().await,
        }
    }

    /// The `fk_user` and `array_options` members of a user write.
    fn profile_extras(
        &self,
        body: &mut Map<String, Value>,
        manager: Option<Option<&str>>,
        custom: &BTreeMap<String, Option<Vec<String>>>,
    ) -> BackendResult<()> {
        match manager {
            None => {}
            // null clears it (so do 0, "", "0" and -1: contract §12.3).
            Some(None) => {
                body.insert("fk_user".into(), Value::Null);
            }
            Some(Some(m)) => {
                let n = numeric_id(m)
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| BackendError::Invalid(format!("manager {m:?} is not a Dolibarr user id")))?;
                body.insert("fk_user".into(), json!(n));
            }
        }
        if !custom.is_empty() {
            body.insert("array_options".into(), Value::Object(extra::write(&self.attributes, custom)?));
        }
        Ok(())
    }

    async fn fetch_group(&self, id: &str) -> BackendResult<Option<Group>> {
        let reply = self
            .client
            .call(Method::GET, &["users", "groups", id], &[("load_members", "1".into())], None, Retry::Safe)
            .await?;
        // Dolibarr 22 answers 200 with `"id": null` for unknown ids (quirk 8); 23 may answer 404.
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let value = ok_or_error(Op::Read, reply)?.json()?;
        let wire: WireGroup = serde_json::from_value(value)
            .map_err(|e| BackendError::Protocol(format!("unreadable group object: {e}")))?;
        Ok(wire.into_group())
    }

    /// Sends a user create/update body built from the model.
    fn user_body(
        login: Option<&str>,
        first: Option<&str>,
        last: Option<&str>,
        email: Option<&str>,
        optional: [(&str, Option<Option<&str>>); 5],
    ) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                m.insert(k.to_string(), Value::String(v.to_string()));
            }
        };
        put("login", login);
        put("firstname", first);
        put("lastname", last);
        put("email", email);
        for (key, v) in optional {
            if let Some(v) = v {
                m.insert(key.to_string(), Value::String(v.unwrap_or("").to_string()));
            }
        }
        m
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn ok_or_error(op: Op, reply: Reply) -> BackendResult<Reply> {
    if reply.status.is_success() { Ok(reply) } else { Err(map_error(op, &reply)) }
}

/// A bare 500 on a PUT carrying extra fields: Dolibarr gives no reason (contract §12.2: a value
/// its column cannot take); a failing blocking webhook answers the same (§12.1).
fn extra_fields_refused(e: BackendError) -> BackendError {
    match e {
        BackendError::Unavailable(m) if m == "Internal Server Error" || m == "HTTP 500" => {
            BackendError::Invalid(format!(
                "Dolibarr refused the update without saying why (HTTP 500, nothing stored): most likely an extra-field \
             value its column cannot hold (too long for the field, or out of range); a failing blocking webhook \
             answers the same ({m})"
            ))
        }
        other => other,
    }
}

/// Keeps the variant, rewrites the message.
fn with_context(e: BackendError, ctx: impl Fn(String) -> String) -> BackendError {
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

/// A positive integer id, as Dolibarr routes expect; anything else cannot name a row.
fn numeric_id(id: &str) -> Option<&str> {
    real_id(Some(id))
}

fn v22_missing(what: &str) -> BackendError {
    BackendError::Unsupported {
        backend: KIND,
        what: format!("{what} (Dolibarr 22 has no API for it; needs Dolibarr 23+)"),
    }
}

/// Dolibarr's default password policy (`USER_PASSWORD_GENERATED` standard rules).
const MIN_PASSWORD_LENGTH: usize = 12;

/// Dolibarr strips HTML from every string before hashing a password (quirk 5), so such a password
/// would silently become a different one.
fn check_password_text(password: &str) -> BackendResult<()> {
    if strip_tags(password) != password {
        return Err(BackendError::Invalid(
            "passwords containing HTML tags are refused: Dolibarr would strip the tags before storing it".into(),
        ));
    }
    Ok(())
}

/// Keeps the variant but says that the user exists now, so callers do not retry the create.
fn after_create(id: &str, step: &str, e: BackendError) -> BackendError {
    with_context(e, |m| format!("user {id} was created, but {step} failed: {m}"))
}

/// `YYYY-MM-DD HH:MM:SS` in the server's local time, for `t.tms` filters.
fn server_datetime(unix: i64, utc_offset: i64) -> BackendResult<String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(unix.saturating_add(utc_offset))
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .ok_or_else(|| BackendError::Invalid(format!("timestamp {unix} is out of range")))
}

/// Server offset from `date_tz` (local wall clock) and `timestamp_now_utc`, rounded to 15 minutes.
fn utc_offset_of(date_tz: &str, now_utc: i64) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let local = time::PrimitiveDateTime::parse(date_tz.trim(), &fmt).ok()?.assume_utc().unix_timestamp();
    let raw = local - now_utc;
    Some(((raw as f64) / 900.0).round() as i64 * 900)
}

fn major_version(v: &str) -> Option<u32> {
    v.split('.').next()?.trim().parse().ok()
}

#[async_trait]
impl Backend for DolibarrBackend {
    fn refused_login_chars(&self) -> &'static [char] {
        LOGIN_BAD_CHARS
    }

    fn own_login(&self) -> Option<String> {
        match self.own.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

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
        let status: StatusBody = serde_json::from_value(self.get(&["status"], &[]).await?.json()?)
            .map_err(|e| BackendError::Protocol(format!("unreadable /status answer: {e}")))?;
        let version = status.success.dolibarr_version.clone();
        let mut detected = self.detected();
        match (status.success.date_tz.as_deref(), status.success.timestamp_now_utc) {
            (Some(tz), Some(now)) => match utc_offset_of(tz, now) {
                Some(off) => {
                    detected.utc_offset = off;
                    notes.push(format!("server clock is UTC{:+}:{:02}", off / 3600, (off.abs() % 3600) / 60));
                }
                None => notes.push("cannot read the server's local time; assuming UTC for delta sync".into()),
            },
            _ => notes.push("server did not report its time zone; assuming UTC for delta sync".into()),
        }

        // Version says whether v23 routes should exist; a harmless call confirms it: v23 refuses
        // group id 0 with 400, v22 answers 200 with an all-null group.
        let major = version.as_deref().and_then(major_version);
        let mut v23 = false;
        if major.is_some_and(|m| m >= 23) {
            let reply = self.client.call(Method::GET, &["users", "groups", "0"], &[], None, Retry::Safe).await?;
            v23 = reply.status == StatusCode::BAD_REQUEST;
            if !v23 {
                notes.push(format!(
                    "version {} but group routes look like 22 (GET /users/groups/0 gave {}); group writes disabled",
                    version.as_deref().unwrap_or("?"),
                    reply.status.as_u16()
                ));
            }
        }
        detected.v23_groups = v23;
        let mut caps = V22_CAPABILITIES;
        if v23 {
            caps.group_create = true;
            caps.group_update = true;
            caps.group_delete = true;
            caps.member_remove = true;
            notes.push("Dolibarr 23+ group management detected".into());
        } else {
            notes.push("Dolibarr 22: groups cannot be created, changed or deleted, members cannot be removed".into());
        }

        // Read access, checked for real.
        for (segments, what) in [(&["users"][..], "users"), (&["users", "groups"][..], "groups")] {
            match self.get(segments, &[("limit", "1".into())]).await {
                Ok(_) => {}
                Err(BackendError::Forbidden(m)) => {
                    notes.push(format!("the key cannot read {what} (permission 251 missing): {m}"));
                }
                Err(e) => return Err(e),
            }
        }
        // Write permissions, read from the key owner's own rights (no side effects).
        let info = self.get(&["users", "info"], &[("includepermissions", "1".into())]).await?.json()?;
        match self.learn_own(&info) {
            Some(l) => notes.push(format!("the API key belongs to {l}; that account is hidden")),
            None => notes.push("GET /users/info named no login: the key's own account cannot be hidden".into()),
        }
        let admin = info.get("admin").and_then(wire::int_of) == Some(1);
        if admin {
            notes.push("the key belongs to an admin user: all permissions".into());
        } else {
            let right = |k: &str| info.pointer(&format!("/rights/user/user/{k}")).and_then(wire::int_of) == Some(1);
            let (write, pass, delete) = (right("creer"), right("password"), right("supprimer"));
            if !write {
                notes.push("permission 253 (create/modify users, setGroup) missing".into());
                caps.user_create = false;
                caps.user_update = false;
                caps.user_rename = false;
                caps.member_add = false;
                caps.group_create = false;
                caps.group_update = false;
                caps.group_delete = false;
                caps.member_remove = false;
            }
            if !pass {
                notes.push("permission 255 (set other users' passwords) missing".into());
                caps.password_set = false;
            }
            if !delete {
                notes.push("permission 256 (delete users) missing".into());
                caps.user_delete = false;
            }
        }
        detected.caps = caps;
        self.set_detected(detected);
        // A filter Dolibarr refuses would make every full read fail: say so now.
        match (&self.system_filter, self.refresh_system_ids().await) {
            (None, _) => notes.push("system_filter is empty: no account is a system account".into()),
            (Some(f), Ok(ids)) => notes.push(format!("system_filter {f} selects {} account(s)", ids.len())),
            (Some(_), Err(e)) => notes.push(e.to_string()),
        }
        Ok(ProbeReport { backend: KIND, version, notes, capabilities: caps })
    }

    async fn list_users(&self) -> BackendResult<Vec<User>> {
        // Each full list also refreshes which accounts are system ones (one cheap id-only call).
        self.ensure_own().await?;
        self.refresh_system_ids().await?;
        self.list_users_filtered(&[]).await
    }

    async fn list_users_changed_since(&self, since: i64) -> BackendResult<Vec<User>> {
        let when = server_datetime(since, self.detected().utc_offset)?;
        self.list_users_filtered(&[("sqlfilters", format!("(t.tms:>=:'{when}')"))]).await
    }

    async fn get_user(&self, id: &str) -> BackendResult<Option<User>> {
        // Id 0 would return the specimen user, non-numeric ids a 400.
        let Some(id) = numeric_id(id) else {
            return Ok(None);
        };
        match self.fetch_user(id).await {
            Ok(u) => Ok(Some(u)),
            Err(BackendError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn find_user_by_login(&self, login: &str) -> BackendResult<Option<User>> {
        if login.is_empty() || login.contains(LOGIN_BAD_CHARS) {
            return Ok(None);
        }
        let value = match self.get(&["users", "login", login], &[]).await {
            Ok(r) => r.json()?,
            Err(BackendError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let system = self.system_ids().await?;
        Ok(self.model_user(value, &system))
    }

    async fn list_groups(&self) -> BackendResult<Vec<Group>> {
        let items = self.list_all(&["users", "groups"], &[]).await?;
        let ids: Vec<String> = items
            .iter()
            .filter_map(|g| g.get("id").and_then(wire::str_of))
            .filter(|id| real_id(Some(id)).is_some())
            .collect();
        let groups: Vec<Option<Group>> = stream::iter(ids)
            .map(|id| async move { self.fetch_group(&id).await })
            .buffered(GROUP_FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        // A group deleted between the list and its fetch is simply gone.
        Ok(groups.into_iter().flatten().collect())
    }

    async fn get_group(&self, id: &str) -> BackendResult<Option<Group>> {
        let Some(id) = numeric_id(id) else {
            return Ok(None);
        };
        self.fetch_group(id).await
    }

    async fn create_user(&self, user: &NewUser) -> BackendResult<User> {
        if let Some(p) = &user.password {
            check_password_text(p)?;
        }
        if user.login.contains(LOGIN_BAD_CHARS) {
            return Err(BackendError::Invalid(format!(
                "login {:?} contains a character Dolibarr refuses (, @ < > \" ')",
                user.login
            )));
        }
        let mut body = Self::user_body(
            Some(&user.login),
            Some(&user.first_name),
            Some(&user.last_name),
            Some(&user.email),
            [
                ("office_phone", user.phone.as_deref().map(Some)),
                ("user_mobile", user.mobile.as_deref().map(Some)),
                ("job", user.title.as_deref().map(Some)),
                ("ref_employee", user.employee_number.as_deref().map(Some)),
                ("lang", user.locale.as_deref().map(Some)),
            ],
        );
        body.insert("admin".into(), json!(i32::from(user.admin)));
        // POST was recorded without fk_user and array_options: they go in the follow-up PUT,
        // whose handling of both is recorded (contract §12.2, §12.3).
        let mut follow_up = Map::new();
        let custom: BTreeMap<String, Option<Vec<String>>> =
            user.custom.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        self.profile_extras(&mut follow_up, user.manager.as_deref().map(Some), &custom)?;
        if let Some(p) = &user.password {
            // The key must be `pass`; `password` is silently ignored (quirk 3).
            body.insert("pass".into(), json!(p));
        }
        let reply = self.write(Method::POST, &["users"], Some(&Value::Object(body))).await?;
        let created = reply.json()?;
        let id = wire::int_of(&created)
            .filter(|n| *n > 0)
            .ok_or_else(|| BackendError::Protocol(format!("create answered {} instead of an id", kind_of(&created))))?
            .to_string();
        // statut is ignored on create: users are born enabled (quirk 3).
        if !user.active {
            follow_up.insert("statut".into(), json!(0));
        }
        if !follow_up.is_empty() {
            let step = if user.active { "setting its manager and extra fields" } else { "disabling it" };
            let carries_extras = follow_up.contains_key("array_options");
            self.write(Method::PUT, &["users", &id], Some(&Value::Object(follow_up)))
                .await
                .map_err(|e| if carries_extras { extra_fields_refused(e) } else { e })
                .map_err(|e| after_create(&id, step, e))?;
        }
        self.fetch_user(&id).await.map_err(|e| after_create(&id, "reading it back", e))
    }

    async fn update_user(&self, id: &str, changes: &UserChanges) -> BackendResult<User> {
        let Some(id) = numeric_id(id) else {
            return Err(BackendError::NotFound(format!("no Dolibarr user with id {id:?}")));
        };
        if changes.is_empty() {
            return self.fetch_user(id).await;
        }
        if let Some(login) = &changes.login
            && login.contains(LOGIN_BAD_CHARS)
        {
            return Err(BackendError::Invalid(format!("login {login:?} contains a character Dolibarr refuses")));
        }
        let mut body = Self::user_body(
            changes.login.as_deref(),
            changes.first_name.as_deref(),
            changes.last_name.as_deref(),
            changes.email.as_deref(),
            [
                ("office_phone", changes.phone.as_ref().map(Option::as_deref)),
                ("user_mobile", changes.mobile.as_ref().map(Option::as_deref)),
                ("job", changes.title.as_ref().map(Option::as_deref)),
                ("ref_employee", changes.employee_number.as_ref().map(Option::as_deref)),
                ("lang", changes.locale.as_ref().map(Option::as_deref)),
            ],
        );
        if let Some(a) = changes.active {
            body.insert("statut".into(), json!(i32::from(a)));
        }
        if let Some(a) = changes.admin {
            body.insert("admin".into(), json!(i32::from(a)));
        }
        self.profile_extras(&mut body, changes.manager.as_ref().map(Option::as_deref), &changes.custom)?;
        let carries_extras = body.contains_key("array_options");
        let result = self.write(Method::PUT, &["users", id], Some(&Value::Object(body))).await;
        match result {
            // The PUT answer is the stored state (contract §12.2).
            Ok(reply) => self.user_from(reply.json()?).await,
            // Dolibarr refuses to reset the admin flag through the API at all (quirk 14).
            Err(BackendError::Forbidden(m)) if changes.admin == Some(false) && m.contains("admin status") => {
                Err(BackendError::Unsupported {
                    backend: KIND,
                    what: format!("removing admin rights (Dolibarr's API cannot reset the admin flag: {m})"),
                })
            }
            Err(e) if carries_extras => Err(extra_fields_refused(e)),
            Err(e) => Err(e),
        }
    }

    async fn delete_user(&self, id: &str) -> BackendResult<()> {
        let Some(id) = numeric_id(id) else {
            return Err(BackendError::NotFound(format!("no Dolibarr user with id {id:?}")));
        };
        self.write(Method::DELETE, &["users", id], None).await.map(|_| ())
    }

    async fn set_password(&self, id: &str, password: &str) -> BackendResult<()> {
        check_password_text(password)?;
        let Some(id) = numeric_id(id) else {
            return Err(BackendError::NotFound(format!("no Dolibarr user with id {id:?}")));
        };
        // PUT `pass`: the setPassword route is off by default and never returns the password.
        self.write(Method::PUT, &["users", id], Some(&json!({"pass": password}))).await.map(|_| ())
    }

    fn validate_password(&self, password: &str) -> BackendResult<()> {
        if password.chars().count() < MIN_PASSWORD_LENGTH {
            return Err(BackendError::Invalid(format!(
                "Dolibarr requires passwords of at least {MIN_PASSWORD_LENGTH} characters"
            )));
        }
        check_password_text(password)
    }

    fn unsupported(&self, what: &str) -> BackendError {
        let caps = self.detected().caps;
        if !caps.group_create || !caps.member_remove {
            v22_missing(what)
        } else {
            BackendError::Unsupported { backend: KIND, what: what.to_string() }
        }
    }

    async fn check_password(&self, user: &User, password: &str) -> BackendResult<bool> {
        if user.login.is_empty() || password.is_empty() {
            return Ok(false);
        }
        // POST only: a GET would put the password in the query string (WAF, access logs).
        let reply = self
            .client
            .call_anonymous(Method::POST, &["login"], Some(&json!({"login": user.login, "password": password})))
            .await?;
        match reply.status.as_u16() {
            200 => Ok(true),
            403 => {
                let body: Option<Value> = serde_json::from_slice(&reply.body).ok();
                let (message, _) = body.as_ref().map(client::error_texts).unwrap_or_default();
                // The password was right; the user merely has no API token (contract §3.2).
                Ok(message.contains("No API token set"))
            }
            400 => Ok(false),
            _ => Err(map_error(Op::Read, &reply)),
        }
    }

    async fn create_group(&self, group: &NewGroup) -> BackendResult<Group> {
        self.needs_v23("creating groups")?;
        // Route from Dolibarr 23 (PR #35903): POST /users/groups, answers the new id.
        let mut body = json!({"name": group.name, "nom": group.name});
        if let Some(d) = &group.description {
            body["note"] = json!(d);
        }
        let reply = self.write(Method::POST, &["users", "groups"], Some(&body)).await?;
        let created = reply.json()?;
        let id = wire::int_of(&created)
            .filter(|n| *n > 0)
            .ok_or_else(|| BackendError::Protocol(format!("group create answered {}", kind_of(&created))))?
            .to_string();
        for m in &group.members {
            self.add_member(&id, m).await.map_err(|e| after_create_group(&id, e))?;
        }
        self.fetch_group(&id)
            .await
            .map_err(|e| after_create_group(&id, e))?
            .ok_or_else(|| BackendError::Protocol(format!("group {id} was created but cannot be read back")))
    }

    async fn update_group(&self, id: &str, changes: &GroupChanges) -> BackendResult<Group> {
        self.needs_v23("changing groups")?;
        let Some(id) = numeric_id(id) else {
            return Err(BackendError::NotFound(format!("no Dolibarr group with id {id:?}")));
        };
        let mut body = Map::new();
        if let Some(n) = &changes.name {
            body.insert("name".into(), json!(n));
            body.insert("nom".into(), json!(n));
        }
        if let Some(d) = &changes.description {
            body.insert("note".into(), json!(d.clone().unwrap_or_default()));
        }
        if !body.is_empty() {
            // Route from Dolibarr 23 (PR #35903): PUT /users/groups/{id}.
            self.write(Method::PUT, &["users", "groups", id], Some(&Value::Object(body))).await?;
        }
        self.fetch_group(id).await?.ok_or_else(|| BackendError::NotFound(format!("group {id}")))
    }

    async fn delete_group(&self, id: &str) -> BackendResult<()> {
        self.needs_v23("deleting groups")?;
        let Some(id) = numeric_id(id) else {
            return Err(BackendError::NotFound(format!("no Dolibarr group with id {id:?}")));
        };
        // Route from Dolibarr 23 (PR #35903): DELETE /users/groups/{id}.
        self.write(Method::DELETE, &["users", "groups", id], None).await.map(|_| ())
    }

    async fn add_member(&self, group_id: &str, user_id: &str) -> BackendResult<()> {
        let (Some(g), Some(u)) = (numeric_id(group_id), numeric_id(user_id)) else {
            return Err(BackendError::NotFound(format!("user {user_id:?} or group {group_id:?}")));
        };
        // A state change behind a GET (quirk 7): never retried, never cached.
        let reply = self.client.call(Method::GET, &["users", u, "setGroup", g], &[], None, Retry::Never).await?;
        match reply.status.as_u16() {
            200..=299 => Ok(()),
            // Unknown group: the insert breaks a foreign key and Dolibarr answers 500.
            500 => Err(BackendError::NotFound(format!("group {g}"))),
            _ => Err(map_error(Op::Write, &reply)),
        }
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> BackendResult<()> {
        self.needs_v23("removing group members")?;
        let (Some(g), Some(u)) = (numeric_id(group_id), numeric_id(user_id)) else {
            return Err(BackendError::NotFound(format!("user {user_id:?} or group {group_id:?}")));
        };
        // Dolibarr 23 (PR #35453). The exact route could not be confirmed against the source;
        // DELETE on the setGroup path is the assumed form.
        self.write(Method::DELETE, &["users", u, "setGroup", g], None).await.map(|_| ())
    }
}

fn after_create_group(id: &str, e: BackendError) -> BackendError {
    match e {
        BackendError::NotFound(m) => {
            BackendError::NotFound(format!("group {id} was created, but adding members failed: {m}"))
        }
        other => BackendError::Protocol(format!("group {id} was created, but a follow-up failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_local_datetime() {
        assert_eq!(server_datetime(1795410768, 0).unwrap(), "2026-11-23 05:12:48");
        assert_eq!(server_datetime(1795410768, 3600).unwrap(), "2026-11-23 06:12:48");
    }

    #[test]
    fn offset_from_status() {
        assert_eq!(utc_offset_of("2026-11-23 05:12:48", 1795410768), Some(0));
        assert_eq!(utc_offset_of("2026-11-23 06:12:49", 1795410768), Some(3600));
        assert_eq!(utc_offset_of("garbage", 1), None);
    }

    #[test]
    fn html_passwords_refused() {
        assert!(check_password_text("Jdoe<b>Secret</b>-3").is_err());
        assert!(check_password_text("plain-Secret-1").is_ok());
    }

    #[test]
    fn versions() {
        assert_eq!(major_version("22.0.4"), Some(22));
        assert_eq!(major_version("23.0.0-beta"), Some(23));
    }
}
