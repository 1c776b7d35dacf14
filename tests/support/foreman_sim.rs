//! An in-process Foreman API v2 simulator (users, user groups, auth sources) following the contract
//! derived from Foreman 3.13: the `{"user": ...}` wrappers, 415 without a JSON content type,
//! scoped_search filters, the paging envelope, validation errors, raw DELETE answers, Basic-auth
//! logins with the per-address lock-out, plus controls to inject outages, failures and slowness.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::server::SimServer;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

pub const ADMIN_PASSWORD: &str = "Admin-Password-01";
pub const JDOE_PASSWORD: &str = "Jane-Password-01";
pub const BWAYNE_PASSWORD: &str = "Bruce-Password-01";
pub const CKENT_PASSWORD: &str = "Clark-Password-01";
pub const VERSION: &str = "3.13.0";
/// Foreman's `failed_login_attempts_limit` and its window.
pub const LOGIN_LIMIT: usize = 30;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(300);

const SEEDED: &str = "2025-03-01 10:15:30 UTC";
const VIEWER_ROLE: u64 = 5;

/// Permissions a non-admin account can be given (`set_permissions`).
pub const ALL_PERMISSIONS: &[&str] = &[
    "view_users",
    "create_users",
    "edit_users",
    "destroy_users",
    "view_usergroups",
    "create_usergroups",
    "edit_usergroups",
    "destroy_usergroups",
    "view_authenticators",
    "create_authenticators",
    "edit_authenticators",
];

#[derive(Debug, Clone)]
pub struct SimUser {
    pub id: u64,
    pub login: String,
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub mail: Option<String>,
    pub description: Option<String>,
    pub admin: bool,
    pub disabled: bool,
    pub mail_enabled: bool,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub password: Option<String>,
    pub auth_source_id: u64,
    pub last_login_on: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// foreman_admin / foreman_api_admin: never listed, never authenticate.
    pub hidden: bool,
    pub permissions: BTreeSet<String>,
}

/// Ids of the groups `ForemanSim::seed_nesting` adds.
#[derive(Debug, Clone, Copy)]
pub struct Nesting {
    pub company: u64,
    pub engineering: u64,
    pub backend: u64,
    pub ring_a: u64,
    pub ring_b: u64,
}

#[derive(Debug, Clone)]
pub struct SimGroup {
    pub id: u64,
    pub name: String,
    pub admin: bool,
    pub users: BTreeSet<u64>,
    /// Groups nested inside this one.
    pub children: BTreeSet<u64>,
    pub roles: BTreeSet<u64>,
    pub created_at: String,
    pub updated_at: String,
}

struct State {
    users: BTreeMap<u64, SimUser>,
    groups: BTreeMap<u64, SimGroup>,
    ldap_sources: BTreeMap<u64, Value>,
    next_user: u64,
    next_group: u64,
    next_source: u64,
    failed_logins: VecDeque<Instant>,
    login_limit: usize,
    login_window: Duration,
    total_failed_logins: u64,
    delay: Duration,
    fail_next: Vec<u16>,
    fail_route: Vec<(String, u16)>,
    counts: HashMap<String, u64>,
    bodies: HashMap<String, Value>,
    stopped: bool,
}

fn stamp(t: time::OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.format(&fmt).unwrap_or_default()
}

fn now_stamp() -> String {
    stamp(time::OffsetDateTime::now_utc())
}

/// `2025-03-01 10:15:30 UTC` → `2025-03-01T10:15:30.000Z` (raw records).
fn iso(s: &str) -> String {
    let s = s.trim_end_matches(" UTC");
    format!("{}.000Z", s.replacen(' ', "T", 1))
}

impl SimUser {
    fn new(id: u64, login: &str, first: &str, last: &str, mail: Option<&str>, password: Option<&str>) -> SimUser {
        let opt = |s: &str| if s.is_empty() { None } else { Some(s.to_string()) };
        SimUser {
            id,
            login: login.into(),
            firstname: opt(first),
            lastname: opt(last),
            mail: mail.map(String::from),
            description: None,
            admin: false,
            disabled: false,
            mail_enabled: true,
            locale: None,
            timezone: None,
            password: password.map(String::from),
            auth_source_id: 1,
            last_login_on: None,
            created_at: SEEDED.into(),
            updated_at: SEEDED.into(),
            hidden: false,
            permissions: BTreeSet::new(),
        }
    }
    fn can(&self, perm: &str) -> bool {
        self.admin || self.permissions.contains(perm)
    }
}

impl State {
    fn seed() -> State {
        let mut st = State {
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            ldap_sources: BTreeMap::new(),
            next_user: 15,
            next_group: 14,
            next_source: 4,
            failed_logins: VecDeque::new(),
            login_limit: LOGIN_LIMIT,
            login_window: LOGIN_WINDOW,
            total_failed_logins: 0,
            delay: Duration::ZERO,
            fail_next: Vec::new(),
            fail_route: Vec::new(),
            counts: HashMap::new(),
            bodies: HashMap::new(),
            stopped: false,
        };
        let mut add = |u: SimUser| {
            st.users.insert(u.id, u);
        };
        let mut hidden = SimUser::new(1, "foreman_admin", "Admin", "User", None, Some("hidden-1"));
        hidden.hidden = true;
        hidden.admin = true;
        hidden.auth_source_id = 2;
        add(hidden.clone());
        hidden.id = 2;
        hidden.login = "foreman_api_admin".into();
        add(hidden);
        add(SimUser::new(3, "reader", "Reed", "Er", Some("reader@corp.test"), Some("Reader-Password-01")));
        let mut admin = SimUser::new(4, "admin", "Admin", "Istrator", Some("admin@example.com"), Some(ADMIN_PASSWORD));
        admin.admin = true;
        add(admin);
        let mut jdoe = SimUser::new(5, "jdoe", "Jane", "Doe", Some("jane.doe@example.com"), Some(JDOE_PASSWORD));
        jdoe.description = Some("Provisioned by the identity gateway".into());
        jdoe.last_login_on = Some("2025-03-02 08:00:00 UTC".into());
        add(jdoe);
        add(SimUser::new(6, "mmouse", "Minnie", "Mouse", Some("minnie@corp.test"), Some("Minnie-Password-01")));
        add(SimUser::new(7, "pparker", "Peter", "Parker", Some("peter@corp.test"), Some("Peter-Password-01")));
        let mut asmith =
            SimUser::new(8, "asmith", "Alice", "Smith", Some("alice.smith@example.com"), Some("Alice-Password-01"));
        asmith.description = Some("Provisioned by the identity gateway".into());
        add(asmith);
        let mut bwayne =
            SimUser::new(9, "bwayne", "Bruce", "Wayne", Some("bruce.wayne@example.com"), Some(BWAYNE_PASSWORD));
        bwayne.disabled = true;
        add(bwayne);
        let mut ckent =
            SimUser::new(10, "ckent", "Clark", "Kent", Some("clark.kent@example.com"), Some(CKENT_PASSWORD));
        ckent.last_login_on = Some("2025-02-27 16:41:09 UTC".into());
        add(ckent);
        add(SimUser::new(11, "nomail", "No", "Mail", None, Some("Nomail-Password-01")));
        add(SimUser::new(12, "dprince", "Diana", "Prince", Some("diana@corp.test"), Some("Diana-Password-01")));
        add(SimUser::new(13, "bbanner", "Bruce", "Banner", Some("bruce@corp.test"), Some("Banner-Password-01")));
        add(SimUser::new(14, "tstark", "Tony", "Stark", Some("tony@corp.test"), Some("Tony-Password-01")));
        let group = |id: u64, name: &str, users: &[u64]| SimGroup {
            id,
            name: name.into(),
            admin: false,
            users: users.iter().copied().collect(),
            children: BTreeSet::new(),
            roles: [VIEWER_ROLE].into(),
            created_at: SEEDED.into(),
            updated_at: SEEDED.into(),
        };
        st.groups.insert(12, group(12, "ops", &[5]));
        let mut platform = group(13, "platform", &[]);
        platform.roles.clear();
        st.groups.insert(13, platform);
        st
    }

    fn visible_users(&self) -> impl Iterator<Item = &SimUser> {
        self.users.values().filter(|u| !u.hidden)
    }

    fn user_by_login_ci(&self, login: &str) -> Option<&SimUser> {
        self.users.values().find(|u| u.login.eq_ignore_ascii_case(login))
    }

    /// Groups containing `user`, directly or through nested groups.
    fn cached_groups(&self, user: u64) -> BTreeSet<u64> {
        let mut out: BTreeSet<u64> = self.groups.values().filter(|g| g.users.contains(&user)).map(|g| g.id).collect();
        loop {
            let parents: BTreeSet<u64> = self
                .groups
                .values()
                .filter(|g| !out.contains(&g.id) && g.children.iter().any(|c| out.contains(c)))
                .map(|g| g.id)
                .collect();
            if parents.is_empty() {
                return out;
            }
            out.extend(parents);
        }
    }

    fn effective_admin(&self, u: &SimUser) -> bool {
        u.admin || self.cached_groups(u.id).iter().any(|g| self.groups.get(g).is_some_and(|g| g.admin))
    }

    fn record_failed_login(&mut self) {
        self.failed_logins.push_back(Instant::now());
        self.total_failed_logins += 1;
    }

    fn locked_out(&mut self) -> bool {
        let window = self.login_window;
        while self.failed_logins.front().is_some_and(|t| t.elapsed() > window) {
            self.failed_logins.pop_front();
        }
        self.failed_logins.len() >= self.login_limit
    }
}

// ---------- JSON renderings ----------

fn role_json(id: u64) -> Value {
    match id {
        VIEWER_ROLE => {
            json!({"name": "Viewer", "id": VIEWER_ROLE, "description": "Read-only access", "origin": "foreman"})
        }
        other => json!({"name": format!("Role {other}"), "id": other, "description": null, "origin": "foreman"}),
    }
}

fn group_ref(g: &SimGroup, with_roles: bool) -> Value {
    let mut v = json!({"name": g.name, "id": g.id, "created_at": g.created_at, "updated_at": g.updated_at});
    if with_roles {
        v["roles"] = Value::Array(g.roles.iter().map(|r| role_json(*r)).collect());
    }
    v
}

fn user_main(st: &State, u: &SimUser) -> Map<String, Value> {
    let json = json!({
        "firstname": u.firstname, "lastname": u.lastname, "mail": u.mail, "mail_enabled": u.mail_enabled,
        "admin": u.admin, "auth_source_id": u.auth_source_id, "disabled": u.disabled,
        "auth_source_name": if u.auth_source_id == 1 { "Internal" } else { "Hidden" },
        "timezone": u.timezone, "locale": u.locale, "last_login_on": u.last_login_on,
        "created_at": u.created_at, "updated_at": u.updated_at, "id": u.id, "login": u.login,
        "description": u.description, "ssh_keys": [], "default_location": null,
        "locations": [{"id": 2, "name": "Default Location"}], "default_organization": null,
        "organizations": [{"id": 1, "name": "Default Organization"}], "effective_admin": st.effective_admin(u),
    });
    json.as_object().cloned().unwrap_or_default()
}

fn user_show(st: &State, u: &SimUser) -> Value {
    let mut m = user_main(st, u);
    m.insert(
        "locations".into(),
        json!([{"id": 2, "name": "Default Location", "title": "Default Location", "description": null}]),
    );
    m.insert(
        "organizations".into(),
        json!([{"id": 1, "name": "Default Organization", "title": "Default Organization", "description": null}]),
    );
    let cached: Vec<Value> =
        st.cached_groups(u.id).iter().filter_map(|g| st.groups.get(g)).map(|g| group_ref(g, true)).collect();
    let direct: Vec<Value> =
        st.groups.values().filter(|g| g.users.contains(&u.id)).map(|g| group_ref(g, true)).collect();
    m.insert("cached_usergroups".into(), Value::Array(cached));
    m.insert("usergroups".into(), Value::Array(direct));
    m.insert("auth_source_internal".into(), json!({"id": 1, "type": "AuthSourceInternal", "name": "Internal"}));
    m.insert("mail_notifications".into(), json!([]));
    m.insert("roles".into(), json!([]));
    Value::Object(m)
}

fn user_raw(u: &SimUser) -> Value {
    let name = format!("{} {}", u.firstname.clone().unwrap_or_default(), u.lastname.clone().unwrap_or_default());
    json!({
        "id": u.id, "login": u.login, "firstname": u.firstname, "lastname": u.lastname, "mail": u.mail,
        "admin": u.admin, "last_login_on": u.last_login_on.as_deref().map(iso), "auth_source_id": u.auth_source_id,
        "created_at": iso(&u.created_at), "updated_at": iso(&u.updated_at),
        "password_hash": "$2a$10$abcdefghijklmnopqrstuuN7Q0v1x3Zp5rKc8HnE2tYw4sLm6Gd9",
        "password_salt": "$2a$10$abcdefghijklmnopqrstuu", "locale": u.locale, "avatar_hash": null,
        "default_organization_id": null, "default_location_id": null, "lower_login": u.login.to_lowercase(),
        "mail_enabled": u.mail_enabled, "timezone": u.timezone, "description": u.description,
        "disabled": u.disabled, "password": null, "name": name.trim(),
    })
}

fn group_main(g: &SimGroup) -> Value {
    json!({"admin": g.admin, "created_at": g.created_at, "updated_at": g.updated_at, "name": g.name, "id": g.id})
}

/// Users in Foreman's default order (firstname).
fn by_firstname(mut users: Vec<&SimUser>) -> Vec<&SimUser> {
    users.sort_by(|a, b| (a.firstname.is_none(), &a.firstname, a.id).cmp(&(b.firstname.is_none(), &b.firstname, b.id)));
    users
}

fn group_show(st: &State, g: &SimGroup) -> Value {
    let mut v = group_main(g);
    let members = by_firstname(g.users.iter().filter_map(|id| st.users.get(id)).collect());
    v["users"] = Value::Array(
        members.iter().map(|u| json!({"id": u.id, "login": u.login, "description": u.description})).collect(),
    );
    v["usergroups"] =
        Value::Array(g.children.iter().filter_map(|c| st.groups.get(c)).map(|c| group_ref(c, false)).collect());
    v["external_usergroups"] = json!([]);
    v["roles"] = Value::Array(g.roles.iter().map(|r| role_json(*r)).collect());
    v
}

fn group_raw(g: &SimGroup) -> Value {
    json!({"id": g.id, "name": g.name, "created_at": iso(&g.created_at), "updated_at": iso(&g.updated_at), "admin": g.admin})
}

// ---------- scoped_search ----------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Op(String),
    Open,
    Close,
    Comma,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' {
            let mut v = String::new();
            i += 1;
            while i < cs.len() && cs[i] != '"' {
                if cs[i] == '\\' && i + 1 < cs.len() {
                    i += 1;
                }
                v.push(cs[i]);
                i += 1;
            }
            i += 1;
            out.push(Tok::Quoted(v));
        } else if c == '(' {
            out.push(Tok::Open);
            i += 1;
        } else if c == ')' {
            out.push(Tok::Close);
            i += 1;
        } else if c == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else if "=!~<>^&|".contains(c) {
            let two: String = cs[i..(i + 2).min(cs.len())].iter().collect();
            let op = if ["==", "!=", "<>", "!~", ">=", "<=", "!^", "&&", "||"].contains(&two.as_str()) {
                two
            } else {
                c.to_string()
            };
            i += op.chars().count();
            out.push(Tok::Op(op));
        } else {
            let mut v = String::new();
            while i < cs.len() && !cs[i].is_whitespace() && !"\"(),=!~<>^&|".contains(cs[i]) {
                v.push(cs[i]);
                i += 1;
            }
            out.push(Tok::Word(v));
        }
    }
    Ok(out)
}

#[derive(Debug)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(String, String, Vec<String>),
    Set(String, bool),
    Bare(String),
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn is_word(&self, w: &[&str]) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if w.contains(&x.to_lowercase().as_str()))
            || matches!(self.peek(), Some(Tok::Op(x)) if w.contains(&x.as_str()))
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.and()?];
        while self.is_word(&["or", "|", "||"]) {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::Or(parts) })
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.unary()?];
        loop {
            if self.is_word(&["and", "&", "&&"]) {
                self.pos += 1;
            } else if self.peek().is_none() || self.is_word(&["or", "|", "||"]) || self.peek() == Some(&Tok::Close) {
                break;
            }
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::And(parts) })
    }
    fn value(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => Ok(w),
            other => Err(format!("value expected, got {other:?}")),
        }
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.is_word(&["not", "!", "-"]) {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let e = self.or()?;
            if self.next() != Some(Tok::Close) {
                return Err("missing )".into());
            }
            return Ok(e);
        }
        if self.is_word(&["set?", "has"]) || self.is_word(&["null?"]) {
            let null = self.is_word(&["null?"]);
            self.pos += 1;
            return Ok(Expr::Set(self.value()?, !null));
        }
        let first = self.value()?;
        if let Some(Tok::Op(op)) = self.peek().cloned()
            && !["&", "&&", "|", "||", "!"].contains(&op.as_str())
        {
            self.pos += 1;
            if op == "^" || op == "!^" {
                if self.next() != Some(Tok::Open) {
                    return Err("( expected after ^".into());
                }
                let mut vals = vec![self.value()?];
                while self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                    vals.push(self.value()?);
                }
                if self.next() != Some(Tok::Close) {
                    return Err("missing )".into());
                }
                return Ok(Expr::Cmp(first, op, vals));
            }
            return Ok(Expr::Cmp(first, op, vec![self.value()?]));
        }
        Ok(Expr::Bare(first))
    }
}

const USER_FIELDS: &[&str] = &[
    "id",
    "login",
    "firstname",
    "lastname",
    "mail",
    "description",
    "admin",
    "disabled",
    "last_login_on",
    "role",
    "role_id",
    "usergroup",
    "auth_source",
    "auth_source_type",
    "location",
    "location_id",
    "organization",
    "organization_id",
];
const GROUP_FIELDS: &[&str] = &["id", "name", "role", "role_id"];

fn check_fields(e: &Expr, allowed: &[&str]) -> Result<(), String> {
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter().try_for_each(|x| check_fields(x, allowed)),
        Expr::Not(x) => check_fields(x, allowed),
        Expr::Cmp(f, _, _) | Expr::Set(f, _) => {
            if allowed.contains(&f.to_lowercase().as_str()) {
                Ok(())
            } else {
                Err(f.clone())
            }
        }
        Expr::Bare(_) => Ok(()),
    }
}

/// ILIKE: `%`/`*` are wildcards when present, otherwise a contains match.
fn ilike(hay: &str, pat: &str) -> bool {
    let hay = hay.to_lowercase();
    let pat = pat.to_lowercase();
    if !pat.contains('%') && !pat.contains('*') {
        return hay.contains(&pat);
    }
    let parts: Vec<&str> = pat.split(['%', '*']).collect();
    let mut rest = hay.as_str();
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
    }
    rest.is_empty()
}

fn cmp_one(v: &str, op: &str, want: &str, is_bool: bool) -> bool {
    let norm = |s: &str| match s.to_lowercase().as_str() {
        "true" | "t" | "1" | "yes" => "true".to_string(),
        "false" | "f" | "0" | "no" => "false".to_string(),
        other => other.to_string(),
    };
    let (v, want) = if is_bool { (norm(v), norm(want)) } else { (v.to_string(), want.to_string()) };
    let num = |a: &str, b: &str| Some((a.parse::<f64>().ok()?, b.parse::<f64>().ok()?));
    let ord = match num(&v, &want) {
        Some((a, b)) => a.partial_cmp(&b),
        None => Some(v.as_str().cmp(want.as_str())),
    };
    match op {
        "=" | "==" => v == want,
        "!=" | "<>" => v != want,
        "~" => ilike(&v, &want),
        "!~" => !ilike(&v, &want),
        ">" => ord == Some(std::cmp::Ordering::Greater),
        "<" => ord == Some(std::cmp::Ordering::Less),
        ">=" => ord.is_some_and(|o| o != std::cmp::Ordering::Less),
        "<=" => ord.is_some_and(|o| o != std::cmp::Ordering::Greater),
        _ => false,
    }
}

/// Evaluates against a record given as field → values (multi-valued for memberships).
fn eval(e: &Expr, fields: &dyn Fn(&str) -> (Vec<String>, bool), bare: &[&str]) -> bool {
    match e {
        Expr::And(v) => v.iter().all(|x| eval(x, fields, bare)),
        Expr::Or(v) => v.iter().any(|x| eval(x, fields, bare)),
        Expr::Not(x) => !eval(x, fields, bare),
        Expr::Set(f, set) => fields(&f.to_lowercase()).0.is_empty() != *set,
        Expr::Bare(term) => bare.iter().any(|f| fields(f).0.iter().any(|v| ilike(v, term))),
        Expr::Cmp(f, op, wants) => {
            let (vals, is_bool) = fields(&f.to_lowercase());
            match op.as_str() {
                "^" => vals.iter().any(|v| wants.iter().any(|w| cmp_one(v, "=", w, is_bool))),
                "!^" => !vals.is_empty() && !vals.iter().any(|v| wants.iter().any(|w| cmp_one(v, "=", w, is_bool))),
                _ => vals.iter().any(|v| cmp_one(v, op, &wants[0], is_bool)),
            }
        }
    }
}

fn user_fields(st: &State, u: &SimUser, f: &str) -> (Vec<String>, bool) {
    let o = |v: &Option<String>| v.iter().cloned().collect::<Vec<_>>();
    match f {
        "id" => (vec![u.id.to_string()], false),
        "login" => (vec![u.login.clone()], false),
        "firstname" => (o(&u.firstname), false),
        "lastname" => (o(&u.lastname), false),
        "mail" => (o(&u.mail), false),
        "description" => (o(&u.description), false),
        "admin" => (vec![st.effective_admin(u).to_string()], true),
        "disabled" => (vec![u.disabled.to_string()], true),
        "last_login_on" => (o(&u.last_login_on), false),
        "usergroup" => {
            (st.cached_groups(u.id).iter().filter_map(|g| st.groups.get(g)).map(|g| g.name.clone()).collect(), false)
        }
        "auth_source" => (vec!["Internal".into()], false),
        "auth_source_type" => (vec!["AuthSourceInternal".into()], false),
        "location" => (vec!["Default Location".into()], false),
        "location_id" => (vec!["2".into()], false),
        "organization" => (vec!["Default Organization".into()], false),
        "organization_id" => (vec!["1".into()], false),
        _ => (Vec::new(), false),
    }
}

fn group_fields(g: &SimGroup, f: &str) -> (Vec<String>, bool) {
    match f {
        "id" => (vec![g.id.to_string()], false),
        "name" => (vec![g.name.clone()], false),
        "role" => (g.roles.iter().map(|r| role_json(*r)["name"].as_str().unwrap_or("").to_string()).collect(), false),
        "role_id" => (g.roles.iter().map(|r| r.to_string()).collect(), false),
        _ => (Vec::new(), false),
    }
}

// ---------- server ----------

/// A running simulator. Dropping it stops the server.
pub struct ForemanSim {
    state: Arc<Mutex<State>>,
    server: SimServer,
}

impl ForemanSim {
    /// Starts a simulator on 127.0.0.1 with an ephemeral port, seeded with the contract's examples.
    pub async fn start() -> ForemanSim {
        let state = Arc::new(Mutex::new(State::seed()));
        let app_state = state.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = app_state.clone();
            async move { handle(state, method, uri, headers, body).await }
        });
        ForemanSim { state, server: SimServer::start(app).await }
    }

    /// Root URL (what goes in `ForemanConfig::url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Simulates an outage: the port stops accepting connections.
    pub fn stop(&self) {
        self.st().stopped = true;
        self.server.stop();
    }

    /// Ends an outage, on the same port.
    pub async fn restart(&self) {
        self.server.restart().await;
        self.st().stopped = false;
    }

    /// The next `n` requests (any route) fail with `status` and a Foreman-style error body.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.st().fail_next.extend(std::iter::repeat_n(status, n));
    }
    /// The next request for `route` (a pattern as in `count`) fails with `status`.
    pub fn fail_route(&self, route: &str, status: u16) {
        self.st().fail_route.push((route.to_string(), status));
    }
    pub fn clear_failures(&self) {
        let mut st = self.st();
        st.fail_next.clear();
        st.fail_route.clear();
    }
    /// Adds a delay before every answer.
    pub fn set_delay(&self, d: Duration) {
        self.st().delay = d;
    }
    /// Changes the lock-out rule (default: 30 failures within 5 minutes).
    pub fn set_login_limit(&self, limit: usize, window: Duration) {
        let mut st = self.st();
        st.login_limit = limit;
        st.login_window = window;
    }
    /// Failed logins seen since the start (or the last `reset_counts`).
    pub fn failed_logins(&self) -> u64 {
        self.st().total_failed_logins
    }

    /// Requests seen for a route pattern such as `GET /users/{id}` or `PUT /usergroups/{id}`.
    pub fn count(&self, route: &str) -> u64 {
        self.st().counts.get(route).copied().unwrap_or(0)
    }
    pub fn total_requests(&self) -> u64 {
        self.st().counts.values().sum()
    }
    pub fn reset_counts(&self) {
        let mut st = self.st();
        st.counts.clear();
        st.total_failed_logins = 0;
    }
    /// The JSON body of the last request for a route pattern.
    pub fn last_body(&self, route: &str) -> Option<Value> {
        self.st().bodies.get(route).cloned()
    }

    /// Adds an internal user as if created in Foreman's UI; returns its id.
    pub fn add_user(&self, login: &str, first: &str, last: &str, mail: Option<&str>, password: Option<&str>) -> u64 {
        let mut st = self.st();
        let id = st.next_user;
        st.next_user += 1;
        let mut u = SimUser::new(id, login, first, last, mail, password);
        u.created_at = now_stamp();
        u.updated_at = u.created_at.clone();
        st.users.insert(id, u);
        id
    }
    /// Changes a user directly (and bumps `updated_at`).
    pub fn modify_user(&self, id: u64, f: impl FnOnce(&mut SimUser)) {
        if let Some(u) = self.st().users.get_mut(&id) {
            f(u);
            u.updated_at = now_stamp();
        }
    }
    pub fn user(&self, id: u64) -> Option<SimUser> {
        self.st().users.get(&id).cloned()
    }
    pub fn disable_user(&self, id: u64) {
        self.modify_user(id, |u| u.disabled = true);
    }
    pub fn set_permissions(&self, id: u64, perms: &[&str]) {
        self.modify_user(id, |u| u.permissions = perms.iter().map(|p| p.to_string()).collect());
    }
    pub fn user_id(&self, login: &str) -> Option<u64> {
        self.st().users.values().find(|u| u.login == login).map(|u| u.id)
    }
    pub fn delete_user(&self, id: u64) {
        let mut st = self.st();
        st.users.remove(&id);
        for g in st.groups.values_mut() {
            g.users.remove(&id);
        }
    }
    pub fn set_next_user_id(&self, id: u64) {
        self.st().next_user = id;
    }
    pub fn set_next_group_id(&self, id: u64) {
        self.st().next_group = id;
    }
    pub fn add_group(&self, name: &str, members: &[u64]) -> u64 {
        let mut st = self.st();
        let id = st.next_group;
        st.next_group += 1;
        let at = now_stamp();
        st.groups.insert(
            id,
            SimGroup {
                id,
                name: name.into(),
                admin: false,
                users: members.iter().copied().collect(),
                children: BTreeSet::new(),
                roles: BTreeSet::new(),
                created_at: at.clone(),
                updated_at: at,
            },
        );
        id
    }
    pub fn modify_group(&self, id: u64, f: impl FnOnce(&mut SimGroup)) {
        if let Some(g) = self.st().groups.get_mut(&id) {
            f(g);
            g.updated_at = now_stamp();
        }
    }
    pub fn group(&self, id: u64) -> Option<SimGroup> {
        self.st().groups.get(&id).cloned()
    }
    pub fn group_members(&self, id: u64) -> Option<Vec<u64>> {
        self.st().groups.get(&id).map(|g| g.users.iter().copied().collect())
    }
    /// The groups nested directly inside group `id`.
    pub fn group_children(&self, id: u64) -> Option<Vec<u64>> {
        self.st().groups.get(&id).map(|g| g.children.iter().copied().collect())
    }
    /// Adds nested groups as data already in Foreman (no validation, like rows written before
    /// the cycle check or by hand): three levels `company` ⊃ `engineering` ⊃ `backend`, and the
    /// cycle `ring-a` ⊃ `ring-b` ⊃ `ring-a`. Members: company mmouse (6) and the hidden
    /// foreman_admin (1); engineering pparker (7); backend jdoe (5) and dprince (12); ring-a
    /// bbanner (13); ring-b tstark (14).
    pub fn seed_nesting(&self) -> Nesting {
        let company = self.add_group("company", &[6, 1]);
        let engineering = self.add_group("engineering", &[7]);
        let backend = self.add_group("backend", &[5, 12]);
        let ring_a = self.add_group("ring-a", &[13]);
        let ring_b = self.add_group("ring-b", &[14]);
        let nest = |parent: u64, child: u64| {
            self.modify_group(parent, |g| {
                g.children.insert(child);
            })
        };
        nest(company, engineering);
        nest(engineering, backend);
        nest(ring_a, ring_b);
        nest(ring_b, ring_a);
        Nesting { company, engineering, backend, ring_a, ring_b }
    }
    pub fn delete_group(&self, id: u64) {
        let mut st = self.st();
        st.groups.remove(&id);
        for g in st.groups.values_mut() {
            g.children.remove(&id);
        }
    }
    /// Registers an LDAP auth source as if created earlier; returns its id.
    pub fn add_ldap_source(&self, name: &str) -> u64 {
        let mut st = self.st();
        let id = st.next_source;
        st.next_source += 1;
        st.ldap_sources.insert(id, json!({"id": id, "type": "AuthSourceLdap", "name": name}));
        id
    }
}

fn route_pattern(method: &Method, segs: &[&str]) -> String {
    let mut p = format!("{} ", method.as_str());
    if segs.is_empty() {
        p.push('/');
    }
    for (i, s) in segs.iter().enumerate() {
        p.push('/');
        let param = i == 1 || (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit()));
        p.push_str(if param { "{id}" } else { s });
    }
    p
}

fn reply(status: u16, body: Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json; charset=utf-8"));
    h.insert("foreman_version", header::HeaderValue::from_static(VERSION));
    h.insert("foreman_api_version", header::HeaderValue::from_static("2"));
    r
}

fn err(status: u16, message: &str) -> Response {
    reply(status, json!({"error": {"message": message}}))
}

fn denied(perm: &str) -> Response {
    reply(
        403,
        json!({"error": {"message": "Access denied", "details": format!("Missing one of the required permissions: {perm}"), "missing_permissions": [perm]}}),
    )
}

fn not_found(resource: &str, id: &str) -> Response {
    err(404, &format!("Resource {resource} not found by id '{id}'"))
}

fn humanize(key: &str) -> String {
    let s = key.replace('_', " ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn invalid(id: Option<u64>, errors: &[(&str, String)]) -> Response {
    let mut map = Map::new();
    let mut full = Vec::new();
    for (k, m) in errors {
        if let Some(a) = map.entry(k.to_string()).or_insert_with(|| json!([])).as_array_mut() {
            a.push(json!(m));
        }
        full.push(if *k == "base" { m.clone() } else { format!("{} {m}", humanize(k)) });
    }
    reply(422, json!({"error": {"id": id, "errors": map, "full_messages": full}}))
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64_lite::decode;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = String::from_utf8(decode(b64.trim())?).ok()?;
    let (l, p) = raw.split_once(':')?;
    Some((l.to_string(), p.to_string()))
}

/// A small base64 decoder, to keep the simulator free of extra dependencies.
mod base64_lite {
    pub fn decode(s: &str) -> Option<Vec<u8>> {
        let val = |c: u8| -> Option<u32> {
            Some(match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            } as u32)
        };
        let bytes: Vec<u8> = s.bytes().filter(|b| *b != b'=').collect();
        let mut out = Vec::new();
        for chunk in bytes.chunks(4) {
            let mut n = 0u32;
            for (i, b) in chunk.iter().enumerate() {
                n |= val(*b)? << (18 - 6 * i);
            }
            let take = match chunk.len() {
                4 => 3,
                3 => 2,
                2 => 1,
                _ => return None,
            };
            for i in 0..take {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        Some(out)
    }
}

async fn handle(state: Arc<Mutex<State>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path();
    let rest = path.strip_prefix("/api/v2").or_else(|| path.strip_prefix("/api")).unwrap_or(path);
    let segs: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect();
    let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let pattern = route_pattern(&method, &seg_refs);
    let delay = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        *st.counts.entry(pattern.clone()).or_default() += 1;
        st.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    if !st.fail_next.is_empty() {
        let s = st.fail_next.remove(0);
        return err(s, "Injected failure");
    }
    if let Some(i) = st.fail_route.iter().position(|(r, _)| *r == pattern) {
        let (_, s) = st.fail_route.remove(i);
        return err(s, "Injected failure");
    }

    // Every Basic-authenticated request is a login (contract §3).
    if st.locked_out() {
        return err(401, "Too many tries, please try again in a few minutes.");
    }
    let Some((login, password)) = basic_credentials(&headers) else {
        st.record_failed_login();
        return err(401, "Unable to authenticate user ");
    };
    let caller = st.user_by_login_ci(&login).filter(|u| !u.hidden).cloned();
    let Some(caller) = caller.filter(|u| u.password.as_deref() == Some(password.as_str())) else {
        st.record_failed_login();
        return err(401, &format!("Unable to authenticate user {login}"));
    };
    if caller.disabled {
        st.record_failed_login();
        return err(401, "User account is disabled, please contact your administrator");
    }
    if let Some(u) = st.users.get_mut(&caller.id) {
        u.last_login_on = Some(now_stamp());
    }

    let mut json_body = Value::Null;
    if method == Method::POST || method == Method::PUT {
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.to_ascii_lowercase().starts_with("application/json") {
            return err(
                415,
                &format!(
                    "Media type in 'Content-Type: {ct}' is unsupported in API v2 for POST and PUT requests. Please use 'Content-Type: application/json'."
                ),
            );
        }
        if !body.is_empty() {
            match serde_json::from_slice::<Value>(&body) {
                Ok(v) => json_body = v,
                Err(e) => {
                    return reply(
                        400,
                        json!({"status": 400, "error": format!("There was a problem in the JSON you submitted: {e}")}),
                    );
                }
            }
        }
        st.bodies.insert(pattern.clone(), json_body.clone());
    }
    route(&mut st, &method, &seg_refs, &query, &json_body, &caller)
}

fn route(
    st: &mut State,
    method: &Method,
    segs: &[&str],
    query: &HashMap<String, String>,
    body: &Value,
    caller: &SimUser,
) -> Response {
    match (method.as_str(), segs) {
        ("GET", ["status"]) => reply(200, json!({"result": "ok", "status": 200, "version": VERSION, "api_version": 2})),
        ("GET", ["current_user"]) => {
            let u = st.users.get(&caller.id).cloned().unwrap_or_else(|| caller.clone());
            reply(200, user_show(st, &u))
        }
        ("GET", ["users"]) => {
            if !caller.can("view_users") {
                return denied("view_users");
            }
            index_users(st, query)
        }
        ("GET", ["users", id]) => {
            if !caller.can("view_users") {
                return denied("view_users");
            }
            match find_user(st, id) {
                Some(u) => reply(200, user_show(st, &u)),
                None => not_found("user", id),
            }
        }
        ("POST", ["users"]) => {
            if !caller.can("create_users") {
                return denied("create_users");
            }
            create_user(st, body.get("user").unwrap_or(body), caller)
        }
        ("PUT", ["users", id]) => {
            if !caller.can("edit_users") && find_user(st, id).is_none_or(|u| u.id != caller.id) {
                return denied("edit_users");
            }
            match find_user(st, id) {
                Some(u) => update_user(st, u.id, body.get("user").unwrap_or(body), caller),
                None => not_found("user", id),
            }
        }
        ("DELETE", ["users", id]) => {
            if !caller.can("destroy_users") {
                return denied("destroy_users");
            }
            let Some(u) = find_user(st, id) else { return not_found("user", id) };
            if u.id == caller.id {
                return reply(
                    403,
                    json!({"error": {"message": "Access denied", "details": "You are trying to delete your own account", "missing_permissions": null}}),
                );
            }
            if u.admin && st.visible_users().filter(|x| x.admin).count() <= 1 {
                return invalid(Some(u.id), &[("admin", "cannot be removed from the last admin account".into())]);
            }
            st.users.remove(&u.id);
            for g in st.groups.values_mut() {
                g.users.remove(&u.id);
            }
            reply(200, user_raw(&u))
        }
        ("GET", ["usergroups"]) => {
            if !caller.can("view_usergroups") {
                return denied("view_usergroups");
            }
            index_groups(st, query)
        }
        ("GET", ["usergroups", id]) => {
            if !caller.can("view_usergroups") {
                return denied("view_usergroups");
            }
            match find_group(st, id) {
                Some(g) => reply(200, group_show(st, &g)),
                None => not_found("usergroup", id),
            }
        }
        ("POST", ["usergroups"]) => {
            if !caller.can("create_usergroups") {
                return denied("create_usergroups");
            }
            save_group(st, None, body.get("usergroup").unwrap_or(body), caller)
        }
        ("PUT", ["usergroups", id]) => {
            if !caller.can("edit_usergroups") {
                return denied("edit_usergroups");
            }
            match find_group(st, id) {
                Some(g) => save_group(st, Some(g.id), body.get("usergroup").unwrap_or(body), caller),
                None => not_found("usergroup", id),
            }
        }
        ("DELETE", ["usergroups", id]) => {
            if !caller.can("destroy_usergroups") {
                return denied("destroy_usergroups");
            }
            let Some(g) = find_group(st, id) else { return not_found("usergroup", id) };
            st.groups.remove(&g.id);
            for other in st.groups.values_mut() {
                other.children.remove(&g.id);
            }
            reply(200, group_raw(&g))
        }
        ("GET", ["auth_source_internals"]) => {
            if !caller.can("view_authenticators") {
                return denied("view_authenticators");
            }
            let row = json!({"created_at": "2025-01-10 09:00:00 UTC", "updated_at": "2025-01-10 09:00:00 UTC", "id": 1, "name": "Internal"});
            reply(
                200,
                json!({"total": 1, "subtotal": 1, "page": 1, "per_page": 20, "search": null,
                       "sort": {"by": null, "order": null}, "results": [row]}),
            )
        }
        ("POST", ["auth_source_ldaps"]) => {
            if !caller.can("create_authenticators") {
                return denied("create_authenticators");
            }
            create_ldap_source(st, body.get("auth_source_ldap").unwrap_or(body))
        }
        ("PUT", ["auth_source_ldaps", id, "test"]) => {
            if !caller.can("edit_authenticators") {
                return denied("edit_authenticators");
            }
            let src = id.parse::<u64>().ok().and_then(|n| st.ldap_sources.get(&n)).cloned();
            match src {
                Some(s) => reply(
                    200,
                    json!({"id": s["id"], "type": "AuthSourceLdap", "name": s["name"], "success": true,
                           "message": "Test connection to LDAP server was successful."}),
                ),
                None => not_found("auth_source_ldap", id),
            }
        }
        _ => err(404, "Route not found"),
    }
}

/// `:id` may be a numeric id, `<id>-<login>` or the exact login; all-digit values are ids.
fn find_user(st: &State, id: &str) -> Option<SimUser> {
    let numeric = id.split_once('-').map(|(n, _)| n).unwrap_or(id);
    if !numeric.is_empty() && numeric.chars().all(|c| c.is_ascii_digit()) {
        return numeric.parse().ok().and_then(|n| st.users.get(&n)).filter(|u| !u.hidden).cloned();
    }
    st.visible_users().find(|u| u.login == id).cloned()
}

fn find_group(st: &State, id: &str) -> Option<SimGroup> {
    let numeric = id.split_once('-').map(|(n, _)| n).unwrap_or(id);
    if !numeric.is_empty() && numeric.chars().all(|c| c.is_ascii_digit()) {
        return numeric.parse().ok().and_then(|n| st.groups.get(&n)).cloned();
    }
    st.groups.values().find(|g| g.name == id).cloned()
}

/// Parses `search`, `order`, `page`, `per_page`; returns the envelope's fixed part or an error.
struct Listing {
    search: Option<String>,
    expr: Option<Expr>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    page: usize,
    per_page: Option<usize>,
}

fn listing(query: &HashMap<String, String>, fields: &[&str]) -> Result<Listing, Box<Response>> {
    let search = query.get("search").cloned().filter(|s| !s.trim().is_empty());
    let expr = match &search {
        Some(s) => {
            let toks = tokenize(s).map_err(|e| Box::new(err(400, &e)))?;
            let mut p = Parser { toks, pos: 0 };
            let e = p.or().map_err(|e| {
                Box::new(reply(400, json!({"error": {"message": format!("Invalid search query: {e}"), "class": "ScopedSearch::QueryNotSupported"}})))
            })?;
            check_fields(&e, fields).map_err(|f| {
                Box::new(reply(
                    400,
                    json!({"error": {"message": format!("Field '{f}' not recognized for searching!"), "class": "ScopedSearch::QueryNotSupported"}}),
                ))
            })?;
            Some(e)
        }
        None => None,
    };
    let (mut sort_by, mut sort_order) = (None, None);
    if let Some(o) = query.get("order").filter(|o| !o.trim().is_empty()) {
        let mut parts = o.split_whitespace();
        let by = parts.next().unwrap_or("").to_string();
        if !fields.contains(&by.as_str()) {
            return Err(Box::new(reply(
                400,
                json!({"error": {"message": format!("the field '{by}' in the order statement is not valid field for search"), "class": "ScopedSearch::QueryNotSupported"}}),
            )));
        }
        sort_order = Some(parts.next().map(|d| d.to_uppercase()).unwrap_or_else(|| "ASC".into()));
        sort_by = Some(by);
    }
    let page = query.get("page").and_then(|p| p.parse::<usize>().ok()).filter(|p| *p > 0).unwrap_or(1);
    let per_page = match query.get("per_page").map(String::as_str) {
        Some("all") => None,
        Some(n) => Some(n.parse::<usize>().ok().filter(|n| *n > 0).unwrap_or(20)),
        None => Some(20),
    };
    Ok(Listing { search, expr, sort_by, sort_order, page, per_page })
}

fn envelope(l: &Listing, total: usize, matched: Vec<Value>) -> Response {
    let subtotal = matched.len();
    let per_page = l.per_page.unwrap_or(total);
    let results: Vec<Value> = match l.per_page {
        None => matched,
        Some(n) => matched.into_iter().skip((l.page - 1).saturating_mul(n)).take(n).collect(),
    };
    reply(
        200,
        json!({"total": total, "subtotal": subtotal, "page": if l.per_page.is_none() { 1 } else { l.page },
               "per_page": per_page, "search": l.search, "sort": {"by": l.sort_by, "order": l.sort_order},
               "results": results}),
    )
}

fn sort_values<T>(items: &mut [T], key: impl Fn(&T) -> (Vec<String>, bool), desc: bool) {
    items.sort_by(|a, b| {
        let (ka, kb) = (key(a).0, key(b).0);
        let o = match (ka.first().and_then(|x| x.parse::<f64>().ok()), kb.first().and_then(|x| x.parse::<f64>().ok())) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
            _ => (ka.is_empty(), ka).cmp(&(kb.is_empty(), kb)),
        };
        if desc { o.reverse() } else { o }
    });
}

fn index_users(st: &State, query: &HashMap<String, String>) -> Response {
    let l = match listing(query, USER_FIELDS) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let total = st.visible_users().count();
    let mut users: Vec<&SimUser> = by_firstname(st.visible_users().collect());
    if let Some(e) = &l.expr {
        users.retain(|u| eval(e, &|f| user_fields(st, u, f), &["login", "firstname", "lastname", "mail"]));
    }
    if let Some(by) = &l.sort_by {
        sort_values(&mut users, |u| user_fields(st, u, by), l.sort_order.as_deref() == Some("DESC"));
    }
    let rows = users.iter().map(|u| Value::Object(user_main(st, u))).collect();
    envelope(&l, total, rows)
}

fn index_groups(st: &State, query: &HashMap<String, String>) -> Response {
    let l = match listing(query, GROUP_FIELDS) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let total = st.groups.len();
    let mut groups: Vec<&SimGroup> = st.groups.values().collect();
    groups.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    if let Some(e) = &l.expr {
        groups.retain(|g| eval(e, &|f| group_fields(g, f), &["name"]));
    }
    if let Some(by) = &l.sort_by {
        sort_values(&mut groups, |g| group_fields(g, by), l.sort_order.as_deref() == Some("DESC"));
    }
    let rows = groups.iter().map(|g| group_main(g)).collect();
    envelope(&l, total, rows)
}

fn str_field(v: &Value, k: &str) -> Option<Option<String>> {
    match v.get(k) {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s.is_empty() => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(other) => Some(Some(other.to_string())),
    }
}

fn bool_field(v: &Value, k: &str) -> Option<bool> {
    match v.get(k)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(matches!(s.as_str(), "true" | "1" | "t")),
        Value::Number(n) => Some(n.as_i64() == Some(1)),
        _ => None,
    }
}

fn valid_login(l: &str) -> bool {
    !l.is_empty() && l.chars().count() <= 100 && l.chars().all(|c| c.is_alphanumeric() || "_-@.\\$#+".contains(c))
}

fn valid_name_part(n: &str) -> bool {
    n.chars().all(|c| c.is_alphanumeric() || " '_-.()<>;=,".contains(c))
}

/// Time zone names the simulator accepts (Foreman accepts every Rails zone name).
pub const TIME_ZONES: &[&str] = &["UTC", "Europe/Paris", "Europe/Berlin", "America/New_York", "Asia/Tokyo"];

/// Applies `user[...]` attributes to `u`, collecting validation errors as Foreman would.
fn apply_user_attrs(
    st: &State,
    u: &mut SimUser,
    attrs: &Value,
    caller: &SimUser,
    creating: bool,
) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    if let Some(l) = str_field(attrs, "login") {
        u.login = l.unwrap_or_default();
    }
    for (k, slot) in [("firstname", &mut u.firstname), ("lastname", &mut u.lastname)] {
        if let Some(v) = str_field(attrs, k) {
            *slot = v;
        }
    }
    if let Some(v) = str_field(attrs, "mail") {
        u.mail = v;
    }
    if let Some(v) = str_field(attrs, "description") {
        u.description = v;
    }
    if let Some(v) = str_field(attrs, "locale") {
        u.locale = v;
    }
    if let Some(v) = str_field(attrs, "timezone") {
        // Foreman accepts blank or one of the zone names Rails knows (a few here).
        if v.as_deref().is_some_and(|z| !z.is_empty() && !TIME_ZONES.contains(&z)) {
            errors.push(("timezone", "is not included in the list".to_string()));
        }
        u.timezone = v;
    }
    if let Some(v) = bool_field(attrs, "mail_enabled") {
        u.mail_enabled = v;
    }
    if let Some(d) = bool_field(attrs, "disabled") {
        if d && !creating && u.id == caller.id {
            errors.push(("disabled", "It is not possible to disable yourself".to_string()));
        } else {
            u.disabled = d;
        }
    }
    // Only admins may change the flag; from others it is silently dropped.
    if let Some(a) = bool_field(attrs, "admin")
        && caller.admin
    {
        u.admin = a;
    }
    if let Some(id) = attrs.get("auth_source_id").and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())) {
        u.auth_source_id = id;
    }
    let password = str_field(attrs, "password").flatten();
    if let Some(p) = &password {
        if let Some(c) = str_field(attrs, "password_confirmation").flatten()
            && c != *p
        {
            errors.push(("password_confirmation", "doesn't match Password".to_string()));
        }
        if !creating && u.id == caller.id && str_field(attrs, "current_password").flatten() != caller.password {
            errors.push(("current_password", "Incorrect password".to_string()));
        }
        u.password = Some(p.clone());
    }

    if u.login.is_empty() {
        errors.push(("login", "can't be blank".into()));
    } else if !valid_login(&u.login) || u.login == "current_user" {
        errors.push(("login", "is invalid".into()));
    } else if st.users.values().any(|o| o.id != u.id && o.login.eq_ignore_ascii_case(&u.login)) {
        errors.push(("login", "already exists".into()));
    }
    if st.groups.values().any(|g| g.name == u.login) {
        errors.push(("base", "A user group already exists with this name".into()));
    }
    for (k, v) in [("firstname", &u.firstname), ("lastname", &u.lastname)] {
        if let Some(v) = v {
            if v.chars().count() > 50 {
                errors.push((k, "is too long (maximum is 50 characters)".into()));
            } else if !valid_name_part(v) {
                errors.push((k, "is invalid".into()));
            }
        }
    }
    match &u.mail {
        Some(m) if !m.contains('@') || m.len() > 254 => errors.push(("mail", "is invalid".into())),
        None if !creating && u.mail_enabled => errors.push(("mail", "can't be blank".into())),
        _ => {}
    }
    if creating && u.auth_source_id == 1 && u.password.is_none() {
        errors.push(("password_hash", "can't be blank".into()));
    }
    errors
}

fn create_user(st: &mut State, attrs: &Value, caller: &SimUser) -> Response {
    let id = st.next_user;
    let mut u = SimUser::new(id, "", "", "", None, None);
    u.created_at = now_stamp();
    u.updated_at = u.created_at.clone();
    let errors = apply_user_attrs(st, &mut u, attrs, caller, true);
    if !errors.is_empty() {
        return invalid(None, &errors);
    }
    st.next_user += 1;
    st.users.insert(id, u.clone());
    reply(201, user_show(st, &u))
}

fn update_user(st: &mut State, id: u64, attrs: &Value, caller: &SimUser) -> Response {
    let Some(mut u) = st.users.get(&id).cloned() else { return not_found("user", &id.to_string()) };
    let was_admin = u.admin;
    let errors = apply_user_attrs(st, &mut u, attrs, caller, false);
    let mut errors = errors;
    if was_admin && !u.admin && st.visible_users().filter(|x| x.admin).count() <= 1 {
        errors.push(("admin", "cannot be removed from the last admin account".into()));
    }
    if !errors.is_empty() {
        return invalid(Some(id), &errors);
    }
    u.updated_at = now_stamp();
    st.users.insert(id, u.clone());
    reply(200, user_show(st, &u))
}

fn ids_of(v: &Value, k: &str) -> Option<Vec<u64>> {
    v.get(k)?.as_array().map(|a| a.iter().filter_map(|x| x.as_u64().or_else(|| x.as_str()?.parse().ok())).collect())
}

/// Whether the nesting graph has a cycle through two or more groups (a group listing itself is
/// Foreman's separate "reflexive" check).
pub fn has_cycle(edges: &BTreeMap<u64, BTreeSet<u64>>) -> bool {
    // Colours of a depth-first walk: on the current path, or finished.
    fn visit(n: u64, edges: &BTreeMap<u64, BTreeSet<u64>>, path: &mut BTreeSet<u64>, done: &mut BTreeSet<u64>) -> bool {
        if done.contains(&n) {
            return false;
        }
        path.insert(n);
        for &c in edges.get(&n).into_iter().flatten() {
            if c == n {
                continue;
            }
            if path.contains(&c) || visit(c, edges, path, done) {
                return true;
            }
        }
        path.remove(&n);
        done.insert(n);
        false
    }
    let mut done = BTreeSet::new();
    edges.keys().any(|&n| visit(n, edges, &mut BTreeSet::new(), &mut done))
}

/// Create (`id` = None) or update a usergroup.
fn save_group(st: &mut State, id: Option<u64>, attrs: &Value, caller: &SimUser) -> Response {
    let shown_id = id.map(|i| i.to_string()).unwrap_or_default();
    let at = now_stamp();
    let mut g = match id.and_then(|i| st.groups.get(&i).cloned()) {
        Some(g) => g,
        None => SimGroup {
            id: st.next_group,
            name: String::new(),
            admin: false,
            users: BTreeSet::new(),
            children: BTreeSet::new(),
            roles: BTreeSet::new(),
            created_at: at.clone(),
            updated_at: at.clone(),
        },
    };
    let mut errors: Vec<(&str, String)> = Vec::new();
    if let Some(n) = str_field(attrs, "name") {
        g.name = n.unwrap_or_default();
    }
    if let Some(a) = bool_field(attrs, "admin")
        && a != g.admin
    {
        if caller.admin {
            g.admin = a;
        } else {
            errors.push(("admin", "admin flag can only be modified by admins".into()));
        }
    }
    // Unknown ids: RecordNotFound, reported against the usergroup (quirk 9).
    if let Some(ids) = ids_of(attrs, "user_ids") {
        if ids.iter().any(|i| !st.users.contains_key(i)) {
            return not_found("usergroup", &shown_id);
        }
        g.users = ids.into_iter().collect();
    }
    if let Some(names) = attrs.get("user_names").and_then(Value::as_array) {
        let mut set = BTreeSet::new();
        for n in names.iter().filter_map(Value::as_str) {
            match st.users.values().find(|u| u.login == n) {
                Some(u) => set.insert(u.id),
                None => {
                    return err(
                        500,
                        "Internal Server Error: the server was unable to finish the request. This may be caused by unavailability of some required service, incorrect API call or a server-side bug. There may be more information in the server's logs.",
                    );
                }
            };
        }
        g.users = set;
    }
    if let Some(ids) = ids_of(attrs, "usergroup_ids") {
        if ids.iter().any(|i| !st.groups.contains_key(i)) {
            return not_found("usergroup", &shown_id);
        }
        g.children = ids.into_iter().collect();
    }
    if let Some(names) = attrs.get("usergroup_names").and_then(Value::as_array) {
        let mut set = BTreeSet::new();
        for n in names.iter().filter_map(Value::as_str) {
            match st.groups.values().find(|x| x.name == n) {
                Some(x) => set.insert(x.id),
                None => return not_found("usergroup", &shown_id),
            };
        }
        g.children = set;
    }
    if let Some(ids) = ids_of(attrs, "role_ids") {
        g.roles = ids.into_iter().collect();
    }
    if g.name.is_empty() {
        errors.push(("name", "can't be blank".into()));
    } else if st.groups.values().any(|o| o.id != g.id && o.name == g.name) {
        errors.push(("name", "has already been taken".into()));
    } else if st.users.values().any(|u| u.login.eq_ignore_ascii_case(&g.name)) {
        errors.push(("name", "is already used by a user account".into()));
    }
    // Foreman validates every new nesting row against the whole nesting graph (its
    // `EnsureNoCycle`): a cycle anywhere, even an old one elsewhere, refuses any new nesting;
    // removing nestings is always allowed. Then a group nesting itself is refused.
    let before = id.and_then(|i| st.groups.get(&i)).map(|o| o.children.clone()).unwrap_or_default();
    let added: Vec<u64> = g.children.difference(&before).copied().collect();
    if !added.is_empty() {
        let mut edges: BTreeMap<u64, BTreeSet<u64>> = st.groups.values().map(|x| (x.id, x.children.clone())).collect();
        edges.insert(g.id, g.children.clone());
        if has_cycle(&edges) {
            return invalid(id, &[("base", "Adding would cause a cycle!".into())]);
        }
        if added.contains(&g.id) {
            return invalid(id, &[("base", "cannot contain itself as member".into())]);
        }
    }
    if !errors.is_empty() {
        return invalid(id, &errors);
    }
    g.updated_at = at;
    if id.is_none() {
        st.next_group += 1;
    }
    st.groups.insert(g.id, g.clone());
    reply(if id.is_none() { 201 } else { 200 }, group_show(st, &g))
}

fn create_ldap_source(st: &mut State, attrs: &Value) -> Response {
    let name = attrs.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    let host = attrs.get("host").and_then(Value::as_str).unwrap_or("").to_string();
    let mut errors = Vec::new();
    if name.is_empty() {
        errors.push(("name", "can't be blank".to_string()));
    }
    if host.is_empty() {
        errors.push(("host", "can't be blank".to_string()));
    }
    if !errors.is_empty() {
        return invalid(None, &errors);
    }
    let id = st.next_source;
    st.next_source += 1;
    let get = |k: &str, d: Value| attrs.get(k).cloned().unwrap_or(d);
    let tls = get("tls", json!(false));
    let at = now_stamp();
    let src = json!({
        "id": id, "type": "AuthSourceLdap", "name": name, "host": host,
        "port": get("port", if tls == json!(true) { json!(636) } else { json!(389) }),
        "account": get("account", Value::Null), "base_dn": get("base_dn", Value::Null),
        "ldap_filter": get("ldap_filter", Value::Null), "attr_login": get("attr_login", json!("uid")),
        "attr_firstname": get("attr_firstname", json!("givenName")), "attr_lastname": get("attr_lastname", json!("sn")),
        "attr_mail": get("attr_mail", json!("mail")), "attr_photo": get("attr_photo", json!("jpegPhoto")),
        "onthefly_register": get("onthefly_register", json!(false)), "usergroup_sync": get("usergroup_sync", json!(true)),
        "tls": tls, "server_type": get("server_type", Value::Null), "groups_base": get("groups_base", Value::Null),
        "use_netgroups": get("use_netgroups", json!(false)), "created_at": at, "updated_at": at,
        "locations": [{"id": 2, "name": "Default Location", "title": "Default Location", "description": null}],
        "organizations": [{"id": 1, "name": "Default Organization", "title": "Default Organization", "description": null}],
        "external_usergroups": [],
    });
    st.ldap_sources.insert(id, src.clone());
    reply(201, src)
}
