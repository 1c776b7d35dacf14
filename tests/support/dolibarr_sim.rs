//! An in-process Dolibarr REST simulator reproducing the recorded 22.0.4 contract (and the known
//! 23 differences), with controls to inject outages, failures and slowness.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::server::SimServer;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

/// Which Dolibarr major version to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V22,
    V23,
}

/// Key of the install-time superadmin (id 1, entity "0"), with which the §11 recordings were made.
pub const ADMIN_KEY: &str = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a1";
/// Key of `idgate` (id 10), the admin account the gateway uses (`DolibarrSim::admin_key`).
pub const GATEWAY_KEY: &str = "e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e010";
pub const GATEWAY_ID: u64 = 10;
pub const GATEWAY_LOGIN: &str = "idgate";
pub const GATEWAY_PASSWORD: &str = "Gateway-Secret-1";
pub const READER_KEY: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b7";
pub const NORIGHTS_KEY: &str = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c8";
pub const OPSADMIN_KEY: &str = "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d9";
pub const ADMIN_PASSWORD: &str = "Admin-Secret-1";
pub const JDOE_PASSWORD: &str = "Jdoe-Secret-1";
pub const READER_PASSWORD: &str = "Reader-Secret-1";
pub const NORIGHTS_PASSWORD: &str = "Norights-Secret-1";
pub const OPSADMIN_PASSWORD: &str = "Opsadmin-Secret-1";

/// Permission ids of the user module (contract §3.3).
pub const PERM_READ: u32 = 251;
pub const PERM_WRITE: u32 = 253;
pub const PERM_PASSWORD: u32 = 255;
pub const PERM_DELETE: u32 = 256;
pub const PERM_SELF: u32 = 342;

const USER_TEMPLATE: &str = include_str!("../fixtures/dolibarr/users-get-by-id.json");
const GROUP_TEMPLATE: &str = include_str!("../fixtures/dolibarr/groups-get-load-members.json");
/// Clock of the seeded data (the recording's).
const T0: i64 = 1795407473;

struct SimUser {
    obj: Map<String, Value>,
    pass: Option<String>,
    api_key: Option<String>,
    rights: BTreeSet<u32>,
    /// The user's `llx_user_extrafields` row (code -> column value); `None`: no row.
    extra: Option<BTreeMap<String, Value>>,
}

/// Types of user extra fields the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraType {
    Varchar,
    Int,
    Date,
    Boolean,
}

impl SimUser {
    fn id(&self) -> u64 {
        self.obj.get("id").and_then(Value::as_str).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
    fn s(&self, k: &str) -> String {
        match self.obj.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    }
    fn admin(&self) -> bool {
        self.s("admin") == "1"
    }
    fn active(&self) -> bool {
        self.s("statut") == "1"
    }
    fn can(&self, perm: u32) -> bool {
        self.admin() || self.rights.contains(&perm)
    }
}

struct SimGroup {
    id: u64,
    name: String,
    datec: i64,
    tms: i64,
    note: String,
    members: BTreeSet<u64>,
}

struct State {
    version: Version,
    users: BTreeMap<u64, SimUser>,
    groups: BTreeMap<u64, SimGroup>,
    next_user: u64,
    next_group: u64,
    login_delay: Duration,
    delay: Duration,
    fail_next: Vec<u16>,
    fail_route: Vec<(String, u16)>,
    counts: HashMap<String, u64>,
    allow_password_reset: bool,
    prod_mode: bool,
    utc_offset: i64,
    stopped: bool,
    key_counter: u64,
    /// Defined user extra fields, in definition order.
    extra_fields: Vec<(String, ExtraType)>,
}

/// A running simulator. Dropping it stops the server.
pub struct DolibarrSim {
    state: Arc<Mutex<State>>,
    server: SimServer,
}

fn user_template() -> Map<String, Value> {
    let v: Value = serde_json::from_str(USER_TEMPLATE).expect("user template fixture");
    let mut m = v["response"]["body"].as_object().cloned().expect("user object");
    for (k, blank) in [
        ("note_public", json!("")),
        ("gender", json!("")),
        ("email", json!("")),
        ("firstname", json!("")),
        ("lastname", json!("")),
        ("job", json!("")),
        ("office_phone", json!("")),
        ("user_mobile", json!("")),
        ("lang", Value::Null),
        ("ref_employee", json!("")),
    ] {
        m.insert(k.into(), blank);
    }
    m
}

fn group_template() -> (Map<String, Value>, Map<String, Value>) {
    let v: Value = serde_json::from_str(GROUP_TEMPLATE).expect("group template fixture");
    let mut g = v["response"]["body"].as_object().cloned().expect("group object");
    let member = g["members"]["2"].as_object().cloned().expect("member object");
    g.insert("members".into(), json!([]));
    (g, member)
}

fn local_datetime(unix: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(unix).map(|t| t.format(&fmt).unwrap_or_default()).unwrap_or_default()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `YYYY-MM-DD` of a Unix time (UTC).
fn unix_to_date(unix: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(unix).map(|t| t.format(&fmt).unwrap_or_default()).unwrap_or_default()
}

/// Midnight UTC of a `YYYY-MM-DD` date.
fn date_to_unix(d: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(d, &fmt).ok().map(|d| d.midnight().assume_utc().unix_timestamp())
}

/// `fk_user` as stored: any value that is not a positive number is NULL (contract §12.3).
fn supervisor(v: &Value) -> Value {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n > 0 => json!(n.to_string()),
        _ => Value::Null,
    }
}

/// Dolibarr's `alphanohtml` sanitizer, roughly: tags removed.
fn strip_html(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

impl State {
    fn seed(version: Version) -> State {
        let mut st = State {
            version,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            next_user: 1,
            next_group: 1,
            login_delay: Duration::from_millis(20),
            delay: Duration::ZERO,
            fail_next: Vec::new(),
            fail_route: Vec::new(),
            counts: HashMap::new(),
            allow_password_reset: false,
            prod_mode: false,
            utc_offset: 0,
            stopped: false,
            key_counter: 0,
            extra_fields: Vec::new(),
        };
        let admin = st.insert_user(
            json!({"login": "admin", "lastname": "SuperAdmin", "admin": "1", "entity": "0"}),
            Some(ADMIN_PASSWORD),
        );
        if let Some(u) = st.users.get_mut(&admin) {
            u.api_key = Some(ADMIN_KEY.into());
        }
        st.insert_user(
            json!({"login": "jdoe", "firstname": "John", "lastname": "Doe", "email": "jdoe@example.com",
                   "job": "Engineer", "gender": "man", "office_phone": "+33 1 00 00 00 01",
                   "user_mobile": "+33 6 00 00 00 01", "lang": "fr_FR", "ref_employee": "EMP-0001",
                   "note_public": "created by recorder"}),
            Some(JDOE_PASSWORD),
        );
        st.insert_user(
            json!({"login": "asmith", "firstname": "Alice", "lastname": "Smith", "email": "alice.smith@example.com"}),
            None,
        );
        st.insert_user(json!({"login": "minimal"}), None);
        st.next_user = 6; // id 5 was lost to a failed create
        st.insert_user(json!({"login": "borndisabled", "lastname": "Disabled"}), None);
        let reader = st.insert_user(
            json!({"login": "reader", "firstname": "Read", "lastname": "Only", "email": "reader@example.com"}),
            Some(READER_PASSWORD),
        );
        let norights = st.insert_user(
            json!({"login": "norights", "lastname": "NoRights", "email": "norights@example.com"}),
            Some(NORIGHTS_PASSWORD),
        );
        let ops =
            st.insert_user(json!({"login": "opsadmin", "lastname": "Ops", "admin": "1"}), Some(OPSADMIN_PASSWORD));
        if let Some(u) = st.users.get_mut(&reader) {
            u.api_key = Some(READER_KEY.into());
            u.rights = [PERM_READ, PERM_SELF].into();
        }
        if let Some(u) = st.users.get_mut(&norights) {
            u.api_key = Some(NORIGHTS_KEY.into());
            u.rights = [PERM_SELF].into();
        }
        if let Some(u) = st.users.get_mut(&ops) {
            u.api_key = Some(OPSADMIN_KEY.into());
        }
        // The gateway's own API user: an admin of entity 1 (reported as entity 0, an int).
        let gw = st.insert_user(
            json!({"login": GATEWAY_LOGIN, "lastname": "Gateway", "email": "idgate@example.com", "admin": "1"}),
            Some(GATEWAY_PASSWORD),
        );
        debug_assert_eq!(gw, GATEWAY_ID);
        if let Some(u) = st.users.get_mut(&gw) {
            u.api_key = Some(GATEWAY_KEY.into());
        }
        st.insert_group("developers", &[2, 7]);
        st.insert_group("sales", &[2]);
        st.insert_group("empty-group", &[]);
        st
    }

    fn insert_user(&mut self, fields: Value, pass: Option<&str>) -> u64 {
        let id = self.next_user;
        self.next_user += 1;
        let mut obj = user_template();
        obj.insert("id".into(), json!(id.to_string()));
        obj.insert("ref".into(), json!(id.to_string()));
        obj.insert("admin".into(), json!("0"));
        obj.insert("statut".into(), json!("1"));
        obj.insert("status".into(), json!("1"));
        obj.insert("employee".into(), json!("1"));
        obj.insert("entity".into(), json!("1"));
        obj.insert("datec".into(), json!(T0));
        obj.insert("datem".into(), json!(T0));
        if let Value::Object(f) = fields {
            for (k, v) in f {
                obj.insert(k, v);
            }
        }
        self.users.insert(
            id,
            SimUser { obj, pass: pass.map(String::from), api_key: None, rights: BTreeSet::new(), extra: None },
        );
        id
    }

    /// `array_options` as Dolibarr renders it: `[]` without extra fields, all null without a row,
    /// int as a string, date as Unix seconds (server-local midnight) or `""`.
    fn render_options(&self, u: &SimUser) -> Value {
        if self.extra_fields.is_empty() {
            return json!([]);
        }
        let mut m = Map::new();
        for (code, ty) in &self.extra_fields {
            let v = match &u.extra {
                None => Value::Null,
                Some(row) => match (ty, row.get(code).unwrap_or(&Value::Null)) {
                    (ExtraType::Date, Value::String(d)) => {
                        date_to_unix(d).map(|t| json!(t - self.utc_offset)).unwrap_or(json!(""))
                    }
                    (ExtraType::Date, _) => json!(""),
                    (_, Value::Null) => Value::Null,
                    (_, Value::Number(n)) => json!(n.to_string()),
                    (_, other) => other.clone(),
                },
            };
            m.insert(format!("options_{code}"), v);
        }
        Value::Object(m)
    }

    fn extra_type(&self, code: &str) -> Option<ExtraType> {
        self.extra_fields.iter().find(|(c, _)| c == code).map(|(_, t)| *t)
    }

    /// The column value Dolibarr would store for a written extra-field value; `Err` where it
    /// fails the whole update (a non-numeric int).
    fn extra_column(&self, ty: ExtraType, v: &Value) -> Result<Value, ()> {
        let text = match v {
            Value::Null => return Ok(Value::Null),
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => (if *b { "1" } else { "0" }).to_string(),
            _ => return Err(()),
        };
        if text.is_empty() {
            return Ok(Value::Null);
        }
        match ty {
            ExtraType::Varchar => Ok(json!(strip_html(&text))),
            ExtraType::Int | ExtraType::Boolean => text.parse::<i64>().map(|n| json!(n)).map_err(|_| ()),
            ExtraType::Date => Ok(if let Ok(n) = text.parse::<i64>() {
                json!(unix_to_date(n + self.utc_offset))
            } else if date_to_unix(&text).is_some() {
                json!(text)
            } else {
                // Any other format is silently stored as NULL (contract §12.2).
                Value::Null
            }),
        }
    }

    fn insert_group(&mut self, name: &str, members: &[u64]) -> u64 {
        let id = self.next_group;
        self.next_group += 1;
        self.groups.insert(
            id,
            SimGroup {
                id,
                name: name.into(),
                datec: T0 + 9,
                tms: T0 + 9,
                note: String::new(),
                members: members.iter().copied().collect(),
            },
        );
        id
    }

    fn render_user(&self, u: &SimUser, with_perms: bool) -> Value {
        let mut o = u.obj.clone();
        // Without multicompany, User::fetch reports admins of entity 1 as entity 0, an int (§12.5).
        if u.admin() && u.s("entity") == "1" {
            o.insert("entity".into(), json!(0));
        }
        o.insert("array_options".into(), self.render_options(u));
        let mut rights =
            json!({"user": {"user": {}, "self": {}, "user_advance": {}, "self_advance": {}, "group_advance": {}}});
        if with_perms {
            for (perm, path) in [
                (PERM_READ, ("user", "lire")),
                (PERM_WRITE, ("user", "creer")),
                (PERM_PASSWORD, ("user", "password")),
                (PERM_DELETE, ("user", "supprimer")),
                (PERM_SELF, ("self", "creer")),
            ] {
                if u.rights.contains(&perm) {
                    rights["user"][path.0][path.1] = json!(1);
                }
            }
        }
        o.insert("rights".into(), rights);
        Value::Object(o)
    }

    fn render_group(&self, g: &SimGroup, load_members: bool, for_user_list: bool) -> Value {
        let (mut o, member_tpl) = group_template();
        o.insert("id".into(), json!(g.id));
        o.insert("ref".into(), json!(g.id.to_string()));
        o.insert("name".into(), json!(g.name));
        o.insert("nom".into(), json!(g.name));
        o.insert("datec".into(), json!(g.datec));
        o.insert("tms".into(), json!(g.tms));
        if for_user_list {
            o.insert("usergroup_entity".into(), json!([1]));
        }
        if load_members && !g.members.is_empty() {
            let mut members = Map::new();
            for uid in &g.members {
                let Some(u) = self.users.get(uid) else { continue };
                let mut m = member_tpl.clone();
                for k in ["login", "firstname", "lastname", "email", "employee", "entity"] {
                    m.insert(k.into(), u.obj.get(k).cloned().unwrap_or(Value::Null));
                }
                m.insert("id".into(), json!(uid.to_string()));
                m.insert("status".into(), json!(u.s("statut")));
                m.insert("admin".into(), json!(if u.admin() { 1 } else { 0 }));
                if let Some(db) = m.get_mut("db").and_then(Value::as_object_mut) {
                    db.insert(
                        "lastquery".into(),
                        json!(format!(
                            "SELECT u.rowid, u.login, u.lastname, u.firstname, u.photo, u.fk_soc, u.entity, u.employee, u.email, u.statut as status, ug.entity as usergroup_entity FROM llx_user as u, llx_usergroup_user as ug WHERE 1 = 1 AND ug.fk_user = u.rowid AND ug.fk_usergroup = {} AND u.entity IN (0,1)",
                            g.id
                        )),
                    );
                }
                members.insert(uid.to_string(), Value::Object(m));
            }
            o.insert("members".into(), Value::Object(members));
        }
        Value::Object(o)
    }

    fn new_token(&mut self) -> String {
        self.key_counter += 1;
        format!("{:040x}", 0xfeed_0000_u64 + self.key_counter)
    }

    fn touch(&mut self, id: u64) {
        if let Some(u) = self.users.get_mut(&id) {
            u.obj.insert("datem".into(), json!(now()));
        }
    }
}

// ---------- responses ----------

fn reason(code: u16) -> &'static str {
    StatusCode::from_u16(code).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error")
}

fn json_resp(code: u16, body: &Value) -> Response {
    let mut text = serde_json::to_string_pretty(body).unwrap_or_default();
    text = text.replace("  ", "    ");
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header("Access-Control-Allow-Origin", "*")
        .body(Body::from(text))
        .unwrap_or_default()
}

fn html_resp(code: u16, text: String) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/html; charset=UTF-8")
        .body(Body::from(text))
        .unwrap_or_default()
}

struct Ctx<'a> {
    prod: bool,
    stage: &'a str,
}

fn err_with(ctx: &Ctx, code: u16, text: Option<&str>, extra: &[String]) -> Response {
    let message = match text {
        Some(t) => format!("{}: {t}", reason(code)),
        None => reason(code).to_string(),
    };
    let mut error = json!({"code": code, "message": message});
    for (i, e) in extra.iter().enumerate() {
        error[i.to_string()] = json!(e);
    }
    let mut body = json!({"error": error});
    if !ctx.prod {
        body["debug"] = json!({"source": format!("sim at {} stage", ctx.stage), "stages": {"success": ["get"], "failure": [ctx.stage, "message"]}});
    }
    json_resp(code, &body)
}

fn err(ctx: &Ctx, code: u16, text: &str) -> Response {
    err_with(ctx, code, Some(text), &[])
}

// ---------- sqlfilters ----------

enum Expr {
    Crit(String, String, String),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

struct FilterError;

fn parse_filter(s: &str) -> Result<Expr, FilterError> {
    let (e, rest) = parse_or(s.trim())?;
    if rest.trim().is_empty() { Ok(e) } else { Err(FilterError) }
}

fn parse_or(s: &str) -> Result<(Expr, &str), FilterError> {
    let mut ors = Vec::new();
    let mut ands = Vec::new();
    let mut rest = s;
    loop {
        let (t, r) = parse_term(rest.trim_start())?;
        ands.push(t);
        let r2 = r.trim_start();
        let lower = r2.to_ascii_lowercase();
        if lower.starts_with("and ") || lower.starts_with("and(") {
            rest = &r2[3..];
        } else if lower.starts_with("or ") || lower.starts_with("or(") {
            ors.push(Expr::And(std::mem::take(&mut ands)));
            rest = &r2[2..];
        } else {
            ors.push(Expr::And(ands));
            return Ok((Expr::Or(ors), r));
        }
    }
}

fn parse_term(s: &str) -> Result<(Expr, &str), FilterError> {
    let inner = s.strip_prefix('(').ok_or(FilterError)?;
    if inner.trim_start().starts_with('(') {
        let (e, r) = parse_or(inner)?;
        let r = r.trim_start().strip_prefix(')').ok_or(FilterError)?;
        return Ok((e, r));
    }
    let end = inner.find(')').ok_or(FilterError)?;
    let body = &inner[..end];
    if body.contains('(') {
        return Err(FilterError);
    }
    let mut parts = body.splitn(3, ':');
    let (Some(col), Some(op), Some(val)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(FilterError);
    };
    let op = op.trim().to_ascii_lowercase();
    if !["=", "!=", "<>", "<", ">", "<=", ">=", "like", "notlike", "in", "notin", "is", "isnot"].contains(&op.as_str())
        || !col.trim().chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        || col.trim().is_empty()
    {
        return Err(FilterError);
    }
    Ok((Expr::Crit(col.trim().into(), op, val.trim().into()), &inner[end + 1..]))
}

enum Lit {
    Str(String),
    Num(f64),
    Null,
}

/// A literal, or the name of the "column" an unquoted word would be read as by SQL.
fn literal(v: &str) -> Result<Lit, String> {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return Ok(Lit::Str(v[1..v.len() - 1].replace("\\'", "'")));
    }
    if let Ok(n) = v.parse::<f64>() {
        return Ok(Lit::Num(n));
    }
    if v.eq_ignore_ascii_case("null") {
        return Ok(Lit::Null);
    }
    Err(v.to_string())
}

fn like(value: &str, pattern: &str) -> bool {
    fn rec(v: &[char], p: &[char]) -> bool {
        match p.first() {
            None => v.is_empty(),
            Some('%') => (0..=v.len()).any(|i| rec(&v[i..], &p[1..])),
            Some('_') => !v.is_empty() && rec(&v[1..], &p[1..]),
            Some(c) => v.first().is_some_and(|x| x == c) && rec(&v[1..], &p[1..]),
        }
    }
    let v: Vec<char> = value.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    rec(&v, &p)
}

fn compare(col: &Value, op: &str, lit: &Lit) -> bool {
    let as_str = match col {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match (op, lit) {
        ("is", Lit::Null) => as_str.is_none(),
        ("isnot", Lit::Null) => as_str.is_some(),
        ("like", Lit::Str(p)) => as_str.is_some_and(|s| like(&s, p)),
        ("notlike", Lit::Str(p)) => as_str.is_some_and(|s| !like(&s, p)),
        (_, Lit::Null) => false,
        _ => {
            let Some(s) = as_str else { return false };
            let ord = match lit {
                Lit::Num(n) => match s.parse::<f64>() {
                    Ok(x) => x.partial_cmp(n),
                    Err(_) => return false,
                },
                Lit::Str(l) => match (s.parse::<f64>(), l.parse::<f64>()) {
                    (Ok(a), Ok(b)) => a.partial_cmp(&b),
                    _ => Some(s.to_lowercase().cmp(&l.to_lowercase())),
                },
                Lit::Null => None,
            };
            let Some(ord) = ord else { return false };
            match op {
                "=" => ord.is_eq(),
                "!=" | "<>" => ord.is_ne(),
                "<" => ord.is_lt(),
                ">" => ord.is_gt(),
                "<=" => ord.is_le(),
                ">=" => ord.is_ge(),
                _ => false,
            }
        }
    }
}

/// Evaluates against a row; `Err(column)` for an unknown column (SQL error).
fn eval(e: &Expr, row: &dyn Fn(&str) -> Option<Value>) -> Result<bool, String> {
    match e {
        Expr::And(v) => {
            let mut r = true;
            for x in v {
                r &= eval(x, row)?;
            }
            Ok(r)
        }
        Expr::Or(v) => {
            let mut r = false;
            for x in v {
                r |= eval(x, row)?;
            }
            Ok(r)
        }
        Expr::Crit(col, op, val) => {
            let c = row(col).ok_or_else(|| col.clone())?;
            if op == "in" || op == "notin" {
                let mut any = false;
                for item in val.split(',') {
                    let lit = literal(item)?;
                    any |= compare(&c, "=", &lit);
                }
                return Ok(if op == "in" { any } else { !any });
            }
            let lit = literal(val)?;
            Ok(compare(&c, op, &lit))
        }
    }
}

fn user_column(st: &State, u: &SimUser, col: &str) -> Option<Value> {
    let key = match col {
        "t.rowid" => "id",
        "t.login" => "login",
        "t.email" => "email",
        "t.firstname" => "firstname",
        "t.lastname" => "lastname",
        "t.statut" => "statut",
        "t.admin" => "admin",
        "t.employee" => "employee",
        "t.entity" => "entity",
        "t.ref_employee" => "ref_employee",
        "t.job" => "job",
        "t.office_phone" => "office_phone",
        "t.user_mobile" => "user_mobile",
        "t.lang" => "lang",
        "t.gender" => "gender",
        "t.fk_soc" => return Some(Value::Null),
        "t.fk_user" => "fk_user",
        "t.api_key" => {
            return Some(u.api_key.as_ref().map(|k| json!(format!("dolcrypt:AES-256-CTR:{k}"))).unwrap_or(Value::Null));
        }
        "t.pass_crypted" => return Some(u.pass.as_ref().map(|_| json!("$2y$10$placeholder")).unwrap_or(Value::Null)),
        "t.datec" => return Some(json!(local_datetime(u.obj.get("datec")?.as_i64()? + st.utc_offset))),
        "t.tms" => return Some(json!(local_datetime(u.obj.get("datem")?.as_i64()? + st.utc_offset))),
        other => {
            // Extra fields: `ef.<code>`, or the bare code (contract §12.2).
            let code = other.strip_prefix("ef.").unwrap_or(other);
            if code.contains('.') || st.extra_type(code).is_none() {
                return None;
            }
            return Some(u.extra.as_ref().and_then(|row| row.get(code).cloned()).unwrap_or(Value::Null));
        }
    };
    Some(u.obj.get(key).cloned().unwrap_or(Value::Null))
}

fn group_column(st: &State, g: &SimGroup, col: &str) -> Option<Value> {
    Some(match col {
        "t.rowid" => json!(g.id),
        "t.nom" => json!(g.name),
        "t.entity" => json!(1),
        "t.note" => json!(g.note),
        "t.datec" => json!(local_datetime(g.datec + st.utc_offset)),
        "t.tms" => json!(local_datetime(g.tms + st.utc_offset)),
        _ => return None,
    })
}

// ---------- server ----------

impl DolibarrSim {
    /// Starts a simulator on 127.0.0.1 with an ephemeral port, seeded with the recorded state.
    pub async fn start(version: Version) -> DolibarrSim {
        let state = Arc::new(Mutex::new(State::seed(version)));
        let app_state = state.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = app_state.clone();
            async move { handle(state, method, uri, headers, body).await }
        });
        DolibarrSim { state, server: SimServer::start(app).await }
    }

    /// Root URL (what goes in `DolibarrConfig::url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }
    /// The key the gateway uses: the admin account `idgate` (id 10).
    pub fn admin_key(&self) -> &'static str {
        GATEWAY_KEY
    }
    /// The key of the install-time superadmin (id 1).
    pub fn superadmin_key(&self) -> &'static str {
        ADMIN_KEY
    }
    pub fn reader_key(&self) -> &'static str {
        READER_KEY
    }
    pub fn norights_key(&self) -> &'static str {
        NORIGHTS_KEY
    }
    pub fn opsadmin_key(&self) -> &'static str {
        OPSADMIN_KEY
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

    /// The next `n` requests (any route) fail with `status` and a Dolibarr-style error body.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.st().fail_next.extend(std::iter::repeat_n(status, n));
    }
    /// Drops any pending injected failures.
    pub fn clear_failures(&self) {
        let mut st = self.st();
        st.fail_next.clear();
        st.fail_route.clear();
    }
    /// The next request for `route` (a pattern as in `count`) fails with `status`.
    pub fn fail_route(&self, route: &str, status: u16) {
        self.st().fail_route.push((route.to_string(), status));
    }
    /// Adds a delay before every answer.
    pub fn set_delay(&self, d: Duration) {
        self.st().delay = d;
    }
    /// Delay before a failed login or bad key answer (real Dolibarr: about 1 s).
    pub fn set_login_delay(&self, d: Duration) {
        self.st().login_delay = d;
    }
    pub fn set_allow_password_reset(&self, on: bool) {
        self.st().allow_password_reset = on;
    }
    /// `API_PRODUCTION_MODE`: no `debug` member in errors.
    pub fn set_prod_mode(&self, on: bool) {
        self.st().prod_mode = on;
    }
    /// Server local time minus UTC, in seconds.
    pub fn set_utc_offset(&self, secs: i64) {
        self.st().utc_offset = secs;
    }

    /// Requests seen for a route pattern such as `GET /users/{id}` or `GET /users/{id}/setGroup/{id}`.
    pub fn count(&self, route: &str) -> u64 {
        self.st().counts.get(route).copied().unwrap_or(0)
    }
    pub fn total_requests(&self) -> u64 {
        self.st().counts.values().sum()
    }
    pub fn reset_counts(&self) {
        self.st().counts.clear();
    }

    /// Adds a user as if created in the ERP's UI; returns its id.
    pub fn add_user(&self, login: &str, firstname: &str, lastname: &str, email: &str, password: Option<&str>) -> u64 {
        let mut st = self.st();
        let id = st.insert_user(
            json!({"login": login, "firstname": firstname, "lastname": lastname, "email": email}),
            password,
        );
        st.touch(id);
        id
    }
    /// Sets one key of a user's object as stored (no type conversion) and bumps its modification time.
    pub fn set_user_field(&self, id: u64, key: &str, value: Value) {
        let mut st = self.st();
        if let Some(u) = st.users.get_mut(&id) {
            u.obj.insert(key.into(), value);
        }
        st.touch(id);
    }
    /// Sets the modification time of a user.
    pub fn set_user_modified(&self, id: u64, unix: i64) {
        if let Some(u) = self.st().users.get_mut(&id) {
            u.obj.insert("datem".into(), json!(unix));
        }
    }
    pub fn disable_user(&self, id: u64) {
        self.set_user_field(id, "statut", json!("0"));
        self.set_user_field(id, "status", json!("0"));
    }
    pub fn set_password(&self, id: u64, password: Option<&str>) {
        if let Some(u) = self.st().users.get_mut(&id) {
            u.pass = password.map(String::from);
        }
    }
    pub fn set_api_key(&self, id: u64, key: Option<&str>) {
        if let Some(u) = self.st().users.get_mut(&id) {
            u.api_key = key.map(String::from);
        }
    }
    pub fn set_rights(&self, id: u64, rights: &[u32]) {
        if let Some(u) = self.st().users.get_mut(&id) {
            u.rights = rights.iter().copied().collect();
        }
    }
    pub fn user_field(&self, id: u64, key: &str) -> Option<Value> {
        self.st().users.get(&id).and_then(|u| u.obj.get(key).cloned())
    }
    pub fn user_password(&self, id: u64) -> Option<String> {
        self.st().users.get(&id).and_then(|u| u.pass.clone())
    }
    pub fn user_exists(&self, id: u64) -> bool {
        self.st().users.contains_key(&id)
    }
    pub fn user_id(&self, login: &str) -> Option<u64> {
        self.st().users.values().find(|u| u.s("login") == login).map(SimUser::id)
    }
    pub fn delete_user(&self, id: u64) {
        let mut st = self.st();
        st.users.remove(&id);
        for g in st.groups.values_mut() {
            g.members.remove(&id);
        }
    }
    /// Adds a user with this rowid and these stored fields (strings, as the database returns them).
    pub fn add_user_at(&self, id: u64, fields: Value, password: Option<&str>) {
        let mut st = self.st();
        let next = st.next_user;
        st.next_user = id;
        st.insert_user(fields, password);
        st.next_user = next.max(id + 1);
    }
    /// Defines a user extra field (`llx_extrafields`); every user object then carries it.
    pub fn define_extra_field(&self, code: &str, ty: ExtraType) {
        let mut st = self.st();
        st.extra_fields.retain(|(c, _)| c != code);
        st.extra_fields.push((code.to_string(), ty));
        for u in st.users.values_mut() {
            if let Some(row) = &mut u.extra {
                row.insert(code.to_string(), Value::Null);
            }
        }
    }
    /// Sets one extra-field column as stored (varchar: string, int: number, date: `YYYY-MM-DD`),
    /// creating the user's extra-field row if needed.
    pub fn set_extra(&self, id: u64, code: &str, column: Value) {
        let mut st = self.st();
        let defined: Vec<String> = st.extra_fields.iter().map(|(c, _)| c.clone()).collect();
        if let Some(u) = st.users.get_mut(&id) {
            let row = u.extra.get_or_insert_with(|| defined.iter().map(|c| (c.clone(), Value::Null)).collect());
            row.insert(code.to_string(), column);
        }
    }
    /// Removes a user's extra-field row (every option then reads null).
    pub fn drop_extra_row(&self, id: u64) {
        if let Some(u) = self.st().users.get_mut(&id) {
            u.extra = None;
        }
    }
    /// One extra-field column as stored (`None` when the user has no row or no such user).
    pub fn extra(&self, id: u64, code: &str) -> Option<Value> {
        self.st().users.get(&id).and_then(|u| u.extra.as_ref()?.get(code).cloned())
    }
    /// Sets the next rowid (ids have gaps after failed creates).
    pub fn set_next_user_id(&self, id: u64) {
        self.st().next_user = id;
    }
    pub fn add_group(&self, name: &str, members: &[u64]) -> u64 {
        self.st().insert_group(name, members)
    }
    pub fn group_members(&self, id: u64) -> Option<Vec<u64>> {
        self.st().groups.get(&id).map(|g| g.members.iter().copied().collect())
    }
    pub fn group_name(&self, id: u64) -> Option<String> {
        self.st().groups.get(&id).map(|g| g.name.clone())
    }
    pub fn set_member(&self, group: u64, user: u64, member: bool) {
        if let Some(g) = self.st().groups.get_mut(&group) {
            if member {
                g.members.insert(user);
            } else {
                g.members.remove(&user);
            }
        }
    }
}

fn route_pattern(method: &Method, segs: &[&str]) -> String {
    let mut p = String::from(method.as_str());
    p.push(' ');
    if segs.is_empty() {
        p.push('/');
    }
    for (i, s) in segs.iter().enumerate() {
        p.push('/');
        let param = s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty()
            || (i == 2 && matches!(segs.get(1), Some(&"login") | Some(&"email")));
        p.push_str(if param { "{id}" } else { s });
    }
    p
}

fn waf_blocks(uri: &Uri) -> bool {
    let Some(q) = uri.query() else { return false };
    url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| {
        let all = format!("{k}={v}").to_ascii_lowercase();
        all.contains('"') || all.contains("javascript:") || all.contains("<script") || all.contains(" on")
    })
}

async fn handle(state: Arc<Mutex<State>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let api_path = path.strip_prefix("/api/index.php").unwrap_or(&path).to_string();
    let segs: Vec<String> = api_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .map(|(_, v)| v.into_owned())
                .next()
                .unwrap_or_default()
        })
        .collect();
    let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (delay, fail, stopped) = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let pattern = route_pattern(&method, &seg_refs);
        *st.counts.entry(pattern.clone()).or_default() += 1;
        let mut fail = if st.fail_next.is_empty() { None } else { Some(st.fail_next.remove(0)) };
        if fail.is_none()
            && let Some(i) = st.fail_route.iter().position(|(r, _)| *r == pattern)
        {
            fail = Some(st.fail_route.remove(i).1);
        }
        (st.delay, fail, st.stopped)
    };
    if stopped {
        return html_resp(502, "Bad Gateway".into());
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let prod = state.lock().unwrap_or_else(|p| p.into_inner()).prod_mode;
    if let Some(code) = fail {
        return err(&Ctx { prod, stage: "call" }, code, "simulated failure");
    }
    if waf_blocks(&uri) {
        return html_resp(
            403,
            format!(
                "Access refused to 127.0.0.1 by SQL or Script injection protection in main.inc.php:analyseVarsForSqlAndScriptsInjection type=1<br>\nTry to go back, fix data of your form and resubmit it. You can contact also your technical support.\n<!--\npage={} paramtype=1 paramkey=0 paramvalue={}\n-->",
                uri.path(),
                uri.query().unwrap_or("")
            ),
        );
    }
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let json_body: Option<Value> = if body.is_empty() { None } else { serde_json::from_slice(&body).ok() };
    let rt = Ctx { prod, stage: "route" };

    let first = seg_refs.first().copied().unwrap_or("");
    if !matches!(first, "users" | "login" | "status") {
        return html_resp(501, "API not found (failed to include API file)".into());
    }
    if first == "login" {
        if !matches!(method, Method::GET | Method::POST) || seg_refs.len() != 1 {
            return err_with(&rt, 404, None, &[]);
        }
        return login(state, &method, &query, json_body, prod).await;
    }

    let version = state.lock().unwrap_or_else(|p| p.into_inner()).version;
    let route = match route_of(&method, &seg_refs, version) {
        Ok(r) => r,
        Err(code) => return err_with(&rt, code, None, &[]),
    };

    // Authentication.
    let key = headers
        .get("DOLAPIKEY")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(String::from)
        })
        .or_else(|| query.get("DOLAPIKEY").cloned());
    let auth = Ctx { prod, stage: "authenticate" };
    let Some(key) = key else {
        return err(
            &auth,
            401,
            "Failed to login to API. Neither parameter 'HTTP_DOLAPIKEY' nor 'Authentication: Bearer' found on HTTP header (and no parameter DOLAPIKEY in URL).",
        );
    };
    let caller = {
        let st = state.lock().unwrap_or_else(|p| p.into_inner());
        st.users.values().find(|u| u.api_key.as_deref() == Some(key.as_str()) && u.active()).map(SimUser::id)
    };
    let Some(caller) = caller else {
        let d = state.lock().unwrap_or_else(|p| p.into_inner()).login_delay;
        tokio::time::sleep(d).await;
        return err(
            &auth,
            401,
            "Error user not valid (not found with api key or bad status or bad validity dates) (conf->entity=1)",
        );
    };
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    let ctx = Ctx { prod, stage: "call" };
    api(&mut st, &ctx, route, caller, &query, json_body)
}

#[derive(Debug, Clone)]
enum Route {
    Status,
    ListUsers,
    CreateUser,
    Info,
    GetUser(String),
    PutUser(String),
    DeleteUser(String),
    ByLogin(String),
    ByEmail(String),
    UserGroups(String),
    SetGroup(String, String),
    RemoveGroup(String, String),
    SetPassword(String),
    ListGroups,
    GetGroup(String),
    CreateGroup,
    PutGroup(String),
    DeleteGroup(String),
}

fn route_of(m: &Method, s: &[&str], v: Version) -> Result<Route, u16> {
    let v23 = v == Version::V23;
    use Route::*;
    let r = match (m.as_str(), s) {
        ("GET", ["status"]) => Status,
        ("GET", ["users"]) => ListUsers,
        ("POST", ["users"]) => CreateUser,
        ("GET", ["users", "info"]) => Info,
        ("GET", ["users", "groups"]) => ListGroups,
        ("POST", ["users", "groups"]) if v23 => CreateGroup,
        ("POST", ["users", "groups"]) => return Err(405),
        ("GET", ["users", "groups", g]) => GetGroup(g.to_string()),
        ("PUT", ["users", "groups", g]) if v23 => PutGroup(g.to_string()),
        ("DELETE", ["users", "groups", g]) if v23 => DeleteGroup(g.to_string()),
        ("GET", ["users", "login", l]) => ByLogin(l.to_string()),
        ("GET", ["users", "email", e]) => ByEmail(e.to_string()),
        ("GET", ["users", id]) => GetUser(id.to_string()),
        ("PUT", ["users", id]) => PutUser(id.to_string()),
        ("DELETE", ["users", id]) => DeleteUser(id.to_string()),
        ("GET", ["users", id, "groups"]) => UserGroups(id.to_string()),
        ("GET", ["users", id, "setGroup", g]) => SetGroup(id.to_string(), g.to_string()),
        ("DELETE", ["users", id, "setGroup", g]) if v23 => RemoveGroup(id.to_string(), g.to_string()),
        ("GET", ["users", id, "setPassword"]) => SetPassword(id.to_string()),
        _ => return Err(404),
    };
    Ok(r)
}

async fn login(
    state: Arc<Mutex<State>>,
    method: &Method,
    query: &HashMap<String, String>,
    body: Option<Value>,
    prod: bool,
) -> Response {
    let get = |k: &str| -> Option<String> {
        if method == Method::POST {
            body.as_ref().and_then(|b| b.get(k)).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        } else {
            query.get(k).cloned()
        }
    };
    let validate = Ctx { prod, stage: "validate" };
    let Some(login) = get("login") else { return err(&validate, 400, "`login` is required.") };
    let Some(password) = get("password") else { return err(&validate, 400, "`password` is required.") };
    let reset = get("reset").is_some_and(|r| r == "1" || r == "true");
    let ctx = Ctx { prod, stage: "call" };
    let outcome = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let found = st
            .users
            .values()
            .find(|u| u.s("login") == login && u.active() && u.pass.as_deref() == Some(password.as_str()))
            .map(SimUser::id);
        match found {
            None => None,
            Some(id) => {
                let (has_key, can_self) = {
                    let u = &st.users[&id];
                    (u.api_key.is_some(), u.can(PERM_SELF))
                };
                if has_key && !reset {
                    let key = st.users[&id].api_key.clone().unwrap_or_default();
                    Some(Ok((key, false, st.users[&id].s("entity"))))
                } else if can_self {
                    let key = st.new_token();
                    if let Some(u) = st.users.get_mut(&id) {
                        u.api_key = Some(key.clone());
                    }
                    Some(Ok((key, reset, st.users[&id].s("entity"))))
                } else {
                    Some(Err(()))
                }
            }
        }
    };
    match outcome {
        None => {
            let d = state.lock().unwrap_or_else(|p| p.into_inner()).login_delay;
            tokio::time::sleep(d).await;
            err(&ctx, 403, "Access denied")
        }
        Some(Err(())) => err(
            &ctx,
            403,
            "No API token set for this user and user need write permission on itself to reset its API token",
        ),
        Some(Ok((token, is_new, entity))) => {
            let message = if is_new {
                format!("Welcome {login} - Token is new")
            } else {
                format!(
                    "Welcome {login} - This is your token (recorded for your user). You can use it to make any REST API call, or enter it into the DOLAPIKEY field to use the Dolibarr API explorer."
                )
            };
            json_resp(200, &json!({"success": {"code": 200, "token": token, "entity": entity, "message": message}}))
        }
    }
}

const FORBIDDEN_PROPS: &[&str] =
    &["api_key", "pass_crypted", "pass_indatabase", "pass_indatabase_crypted", "pass_temp"];
/// Keys a client may write (others are accepted and dropped, like `ref_ext`).
const WRITABLE: &[&str] = &[
    "login",
    "firstname",
    "lastname",
    "email",
    "admin",
    "employee",
    "job",
    "gender",
    "office_phone",
    "office_fax",
    "user_mobile",
    "personal_mobile",
    "personal_email",
    "lang",
    "ref_employee",
    "note_public",
    "note_private",
    "signature",
    "address",
    "zip",
    "town",
    "photo",
    "fk_user",
    "national_registration_number",
    "color",
];

/// Stored form of a written value: strings sanitized, numbers read back as strings.
fn stored_as(k: &str, v: &Value) -> Value {
    if k == "fk_user" { supervisor(v) } else { stored(v) }
}

fn stored(v: &Value) -> Value {
    match v {
        Value::String(s) => json!(strip_html(s).trim()),
        Value::Number(n) => json!(n.to_string()),
        Value::Bool(b) => json!(if *b { "1" } else { "0" }),
        other => other.clone(),
    }
}

fn int_param(q: &HashMap<String, String>, k: &str, default: i64) -> i64 {
    q.get(k).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn filter_props(v: Value, props: Option<&String>) -> Value {
    let Some(p) = props.filter(|p| !p.is_empty()) else { return v };
    let keep: BTreeSet<&str> = p.split(',').map(str::trim).collect();
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(k, _)| keep.contains(k.as_str())).collect()),
        other => other,
    }
}

fn api(
    st: &mut State,
    ctx: &Ctx,
    route: Route,
    caller: u64,
    q: &HashMap<String, String>,
    body: Option<Value>,
) -> Response {
    let me = match st.users.get(&caller) {
        Some(u) => (u.admin(), u.rights.clone(), u.s("login")),
        None => return err(ctx, 401, "user vanished"),
    };
    let can = |perm: u32| me.0 || me.1.contains(&perm);
    let v23 = st.version == Version::V23;
    let parse_id = |s: &str| s.parse::<u64>().ok();
    match route {
        Route::Status => {
            let t = now();
            json_resp(
                200,
                &json!({"success": {"code": 200, "dolibarr_version": if v23 { "23.0.0" } else { "22.0.4" },
                    "access_locked": "0", "environment": "non-production", "timestamp_now_utc": t,
                    "timestamp_php_tz": "UTC", "date_tz": local_datetime(t + st.utc_offset)}}),
            )
        }
        Route::Info => {
            let u = &st.users[&caller];
            let mut v = st.render_user(u, q.get("includepermissions").is_some_and(|x| x == "1"));
            let groups: Vec<Value> = st
                .groups
                .values()
                .filter(|g| g.members.contains(&caller))
                .map(|g| st.render_group(g, false, true))
                .collect();
            v["user_group_list"] = json!(groups);
            json_resp(200, &v)
        }
        Route::ListUsers => {
            if !can(PERM_READ) {
                return err(ctx, 403, "You are not allowed to read list of users");
            }
            let filter = match q.get("sqlfilters").filter(|s| !s.is_empty()) {
                None => None,
                Some(f) => {
                    let f = if f.trim_start().starts_with('(') { f.clone() } else { format!("({f})") };
                    match parse_filter(&f) {
                        Ok(e) => Some(e),
                        Err(FilterError) => {
                            return err(
                                ctx,
                                400,
                                &format!(
                                    "Error when validating parameter sqlfilters -> Bad syntax of the search string: {f}"
                                ),
                            );
                        }
                    }
                }
            };
            let sortfield = q.get("sortfield").cloned().unwrap_or_else(|| "t.rowid".into());
            let only: Option<BTreeSet<u64>> = q
                .get("user_ids")
                .filter(|s| !s.is_empty())
                .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect());
            let mut rows: Vec<&SimUser> = Vec::new();
            for u in st.users.values().filter(|u| only.as_ref().is_none_or(|o| o.contains(&u.id()))) {
                if let Some(e) = &filter {
                    match eval(e, &|c| user_column(st, u, c)) {
                        Ok(true) => rows.push(u),
                        Ok(false) => {}
                        Err(col) => {
                            return err(
                                ctx,
                                503,
                                &format!("Error when retrieve User list : Unknown column '{col}' in 'WHERE'"),
                            );
                        }
                    }
                } else {
                    rows.push(u);
                }
            }
            if let Some(u) = st.users.values().next()
                && user_column(st, u, &sortfield).is_none()
            {
                return err(
                    ctx,
                    503,
                    &format!("Error when retrieve User list : Unknown column '{sortfield}' in 'ORDER BY'"),
                );
            }
            sort_rows(&mut rows, |u| user_column(st, u, &sortfield).unwrap_or(Value::Null), q);
            let page = paginate(rows, q);
            let out: Vec<Value> =
                page.into_iter().map(|u| filter_props(st.render_user(u, false), q.get("properties"))).collect();
            json_resp(200, &json!(out))
        }
        Route::GetUser(id) => {
            let Some(n) = parse_id(&id) else { return err(ctx, 400, "invalid value specified for `id`") };
            if !can(PERM_READ) && n != caller {
                return err(ctx, 403, "Not allowed");
            }
            if n == 0 {
                if v23 {
                    return err(ctx, 400, "No user with id=0 can exist");
                }
                let mut o = user_template();
                for (k, v) in [
                    ("id", json!(0)),
                    ("ref", json!("SPECIMEN")),
                    ("login", json!("dolibspec")),
                    ("lastname", json!("DOLIBARR")),
                    ("firstname", json!("SPECIMEN")),
                    ("email", json!("email@specimen.com")),
                    ("specimen", json!(1)),
                ] {
                    o.insert(k.into(), v);
                }
                return json_resp(200, &Value::Object(o));
            }
            match st.users.get(&n) {
                Some(u) => json_resp(200, &st.render_user(u, q.get("includepermissions").is_some_and(|x| x == "1"))),
                None => err(ctx, 404, "User not found"),
            }
        }
        Route::ByLogin(l) | Route::ByEmail(l) if !can(PERM_READ) => {
            let _ = l;
            err(ctx, 403, "Not allowed")
        }
        Route::ByLogin(l) => match st.users.values().find(|u| u.s("login") == l) {
            Some(u) => json_resp(200, &st.render_user(u, q.get("includepermissions").is_some_and(|x| x == "1"))),
            None => err(ctx, 404, "User not found"),
        },
        Route::ByEmail(e) => match st.users.values().find(|u| u.s("email").eq_ignore_ascii_case(&e)) {
            Some(u) => json_resp(200, &st.render_user(u, q.get("includepermissions").is_some_and(|x| x == "1"))),
            None => err(ctx, 404, "User not found"),
        },
        Route::CreateUser => {
            if !can(PERM_WRITE) {
                return err(ctx, 403, &format!("User creation not allowed for login {}", me.2));
            }
            let Some(Value::Object(b)) = body else { return err(ctx, 400, "Request body is not a JSON object") };
            if let Some(p) = FORBIDDEN_PROPS.iter().find(|p| b.contains_key(**p)) {
                return err(ctx, 405, &format!("The property {p} can't be set/modified using the APIs"));
            }
            let login = b.get("login").map(stored).and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            let fail = |msg: String| err_with(ctx, 500, Some("Error creating"), &[msg]);
            if login.is_empty() {
                st.next_user += 1;
                return fail("Field 'Login' is required".into());
            }
            if login.contains([',', '@', '<', '>', '"', '\'']) {
                st.next_user += 1;
                return fail("Unauthorized character in the field Login".into());
            }
            if st.users.values().any(|u| u.s("login") == login) {
                st.next_user += 1;
                return fail(format!("Login {login} already exists."));
            }
            let email = b.get("email").map(stored).and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            if !email.is_empty() && st.users.values().any(|u| u.s("email").eq_ignore_ascii_case(&email)) {
                st.next_user += 1;
                return fail(format!("Email {email} already exists."));
            }
            let pass = b.get("pass").and_then(Value::as_str).map(strip_html);
            if let Some(p) = &pass
                && p.chars().count() < 12
            {
                st.next_user += 1;
                return fail("Your password must have at least <b>12</b> chars".into());
            }
            let mut fields = Map::new();
            for (k, v) in &b {
                if WRITABLE.contains(&k.as_str()) {
                    fields.insert(k.clone(), stored_as(k, v));
                }
            }
            let id = st.insert_user(Value::Object(fields), pass.as_deref());
            if let Some(u) = st.users.get_mut(&id) {
                let t = now();
                u.obj.insert("datec".into(), json!(t));
                u.obj.insert("datem".into(), json!(t));
            }
            json_resp(200, &json!(id))
        }
        Route::PutUser(id) => {
            let Some(n) = parse_id(&id) else { return err(ctx, 400, "invalid value specified for `id`") };
            if !can(PERM_WRITE) && n != caller {
                return err(ctx, 403, "User update not allowed");
            }
            if !st.users.contains_key(&n) {
                return err(ctx, 404, "Account not found");
            }
            let Some(Value::Object(b)) = body else { return err(ctx, 400, "Request body is not a JSON object") };
            if let Some(p) = FORBIDDEN_PROPS.iter().find(|p| b.contains_key(**p)) {
                return err(ctx, 405, &format!("The property {p} can't be set/modified using the APIs"));
            }
            let target_admin = st.users[&n].admin();
            if let Some(a) = b.get("admin").map(stored).and_then(|v| v.as_str().map(String::from)) {
                if a == "0" && target_admin {
                    return err(ctx, 403, "Reseting the admin status of a user is not possible using the API");
                }
                if a == "1" && !target_admin && !me.0 {
                    return err(ctx, 403, "Only an admin user can modify the admin status of another user");
                }
            }
            if let Some(l) = b.get("login").map(stored).and_then(|v| v.as_str().map(String::from))
                && st.users.values().any(|u| u.s("login") == l && u.id() != n)
            {
                return err(ctx, 500, &format!("Duplicate entry '{l}-1' for key 'uk_user_login'"));
            }
            // Extra fields merge into the row; keys with or without `options_`, unknown ones ignored.
            // A non-numeric int fails the whole update with a bare 500, nothing stored (§12.2).
            let mut options = Vec::new();
            if let Some(Value::Object(opts)) = b.get("array_options") {
                for (k, v) in opts {
                    let code = k.strip_prefix("options_").unwrap_or(k);
                    let Some(ty) = st.extra_type(code) else { continue };
                    match st.extra_column(ty, v) {
                        Ok(col) => options.push((code.to_string(), col)),
                        Err(()) => return err_with(ctx, 500, None, &[]),
                    }
                }
            }
            if let Some(p) = b.get("pass").and_then(Value::as_str) {
                if n != caller && !can(PERM_PASSWORD) {
                    return err(ctx, 403, "You are not allowed to modify password of other users");
                }
                let p = strip_html(p);
                if p.chars().count() < 12 {
                    return err(ctx, 500, "Your password must have at least <b>12</b> chars");
                }
                if let Some(u) = st.users.get_mut(&n) {
                    u.pass = Some(p);
                    u.obj.insert("datelastpassvalidation".into(), json!(local_datetime(now())));
                }
            }
            let status = b.get("statut").or_else(|| b.get("status")).map(stored);
            let defined: Vec<String> = st.extra_fields.iter().map(|(c, _)| c.clone()).collect();
            if let Some(u) = st.users.get_mut(&n) {
                if !options.is_empty() {
                    let row = u.extra.get_or_insert_with(|| defined.iter().map(|c| (c.clone(), Value::Null)).collect());
                    row.extend(options);
                }
                for (k, v) in &b {
                    if WRITABLE.contains(&k.as_str()) {
                        u.obj.insert(k.clone(), stored_as(k, v));
                    }
                }
                if let Some(s) = status {
                    u.obj.insert("statut".into(), s.clone());
                    u.obj.insert("status".into(), s);
                }
            }
            st.touch(n);
            // After an update the object carries the trigger's `trackid` instead of `actiontypecode`.
            let mut v = st.render_user(&st.users[&n], false);
            if let Some(o) = v.as_object_mut() {
                o.remove("actiontypecode");
                o.insert("trackid".into(), json!(format!("use{n}")));
            }
            json_resp(200, &v)
        }
        Route::DeleteUser(id) => {
            if !can(PERM_DELETE) {
                return err(ctx, 403, "Not allowed");
            }
            let Some(n) = parse_id(&id) else { return err(ctx, 400, "invalid value specified for `id`") };
            if st.users.remove(&n).is_none() {
                return err(ctx, 404, "User not found");
            }
            for g in st.groups.values_mut() {
                g.members.remove(&n);
            }
            json_resp(200, &json!({"success": {"code": 200, "message": "Ticket deleted"}}))
        }
        Route::SetPassword(id) => {
            if !st.allow_password_reset {
                return err(
                    ctx,
                    403,
                    "Error: password reset APIs are disabled by default. To allow this, the option API_ALLOW_PASSWORD_RESET must be set.",
                );
            }
            if !can(PERM_WRITE) {
                return err(ctx, 403, &format!("setPassword on user not allowed for login {}", me.2));
            }
            let n = parse_id(&id).unwrap_or(u64::MAX);
            let fresh = format!("Gen-{:016x}", now());
            match st.users.get_mut(&n) {
                Some(u) => {
                    u.pass = Some(fresh);
                    json_resp(200, &json!(1))
                }
                None => err(ctx, 404, "User not found, no password changed"),
            }
        }
        Route::UserGroups(id) => {
            if !can(PERM_READ) {
                return err_with(ctx, 403, None, &[]);
            }
            let n = parse_id(&id).unwrap_or(u64::MAX);
            if !st.users.contains_key(&n) {
                return err(ctx, 404, "user not found");
            }
            let out: Vec<Value> = st
                .groups
                .values()
                .filter(|g| g.members.contains(&n))
                .map(|g| st.render_group(g, false, true))
                .collect();
            json_resp(200, &json!(out))
        }
        Route::SetGroup(id, g) | Route::RemoveGroup(id, g) if !can(PERM_WRITE) => {
            let _ = (id, g);
            err(ctx, 403, &format!("setGroup on users not allowed for login {}", me.2))
        }
        Route::SetGroup(id, g) => {
            let n = parse_id(&id).unwrap_or(u64::MAX);
            if !st.users.contains_key(&n) {
                return err(ctx, 404, "User not found");
            }
            let gid = parse_id(&g).unwrap_or(u64::MAX);
            match st.groups.get_mut(&gid) {
                Some(grp) => {
                    grp.members.insert(n);
                    json_resp(200, &json!(1))
                }
                None => err(
                    ctx,
                    500,
                    "Cannot add or update a child row: a foreign key constraint fails (`dolibarr`.`llx_usergroup_user`, CONSTRAINT `fk_usergroup_user_fk_usergroup` FOREIGN KEY (`fk_usergroup`) REFERENCES `llx_usergroup` (`rowid`))",
                ),
            }
        }
        Route::RemoveGroup(id, g) => {
            let n = parse_id(&id).unwrap_or(u64::MAX);
            if !st.users.contains_key(&n) {
                return err(ctx, 404, "User not found");
            }
            let gid = parse_id(&g).unwrap_or(u64::MAX);
            match st.groups.get_mut(&gid) {
                Some(grp) => {
                    grp.members.remove(&n);
                    json_resp(200, &json!(1))
                }
                None => err(ctx, 404, "Group not found"),
            }
        }
        Route::ListGroups => {
            if !can(PERM_READ) {
                return err(ctx, 403, "You are not allowed to read groups");
            }
            let filter = match q.get("sqlfilters").filter(|s| !s.is_empty()) {
                None => None,
                Some(f) => {
                    let f = if f.trim_start().starts_with('(') { f.clone() } else { format!("({f})") };
                    match parse_filter(&f) {
                        Ok(e) => Some(e),
                        Err(FilterError) => {
                            return err(
                                ctx,
                                400,
                                &format!(
                                    "Error when validating parameter sqlfilters -> Bad syntax of the search string: {f}"
                                ),
                            );
                        }
                    }
                }
            };
            let mut rows: Vec<&SimGroup> = Vec::new();
            for g in st.groups.values() {
                match filter.as_ref().map(|e| eval(e, &|c| group_column(st, g, c))) {
                    None | Some(Ok(true)) => rows.push(g),
                    Some(Ok(false)) => {}
                    Some(Err(col)) => {
                        return err(
                            ctx,
                            503,
                            &format!("Error when retrieve Group list : Unknown column '{col}' in 'WHERE'"),
                        );
                    }
                }
            }
            let sortfield = q.get("sortfield").cloned().unwrap_or_else(|| "t.rowid".into());
            if let Some(g) = st.groups.values().next()
                && group_column(st, g, &sortfield).is_none()
            {
                return err(
                    ctx,
                    503,
                    &format!("Error when retrieve Group list : Unknown column '{sortfield}' in 'ORDER BY'"),
                );
            }
            sort_rows(&mut rows, |g| group_column(st, g, &sortfield).unwrap_or(Value::Null), q);
            let out: Vec<Value> = paginate(rows, q)
                .into_iter()
                .map(|g| filter_props(st.render_group(g, false, false), q.get("properties")))
                .collect();
            json_resp(200, &json!(out))
        }
        Route::GetGroup(g) => {
            if !can(PERM_READ) {
                return err(ctx, 403, "You are not allowed to read groups");
            }
            let gid = parse_id(&g);
            if v23 && gid == Some(0) {
                return err(ctx, 400, "No usergroup with id=0 can exist");
            }
            let load = q.get("load_members").is_some_and(|x| x == "1");
            match gid.and_then(|i| st.groups.get(&i)) {
                Some(grp) => json_resp(200, &st.render_group(grp, load, false)),
                None if v23 => err(ctx, 404, "Group not found"),
                None => {
                    let (mut o, _) = group_template();
                    for (k, v) in o.iter_mut() {
                        if !matches!(k.as_str(), "array_options" | "specimen" | "extraparams" | "members") {
                            *v = Value::Null;
                        }
                    }
                    json_resp(200, &Value::Object(o))
                }
            }
        }
        Route::CreateGroup => {
            if !can(PERM_WRITE) {
                return err(ctx, 403, &format!("Group creation not allowed for login {}", me.2));
            }
            let Some(Value::Object(b)) = body else { return err(ctx, 400, "Request body is not a JSON object") };
            if b.contains_key("id") {
                return err(ctx, 400, "Creating with id field is forbidden");
            }
            let name =
                b.get("name").or_else(|| b.get("nom")).and_then(Value::as_str).map(strip_html).unwrap_or_default();
            if name.is_empty() {
                return err_with(ctx, 500, Some("Error creating"), &[String::new(), "Field 'Name' is required".into()]);
            }
            if st.groups.values().any(|g| g.name == name) {
                return err(ctx, 500, &format!("Duplicate entry '{name}-1' for key 'uk_usergroup_name'"));
            }
            let id = st.insert_group(&name, &[]);
            let t = now();
            if let Some(g) = st.groups.get_mut(&id) {
                g.datec = t;
                g.tms = t;
                g.note = b.get("note").and_then(Value::as_str).map(strip_html).unwrap_or_default();
            }
            json_resp(200, &json!(id))
        }
        Route::PutGroup(g) => {
            if !can(PERM_WRITE) {
                return err(ctx, 403, "Group update not allowed");
            }
            let gid = parse_id(&g);
            if gid == Some(0) {
                return err(ctx, 400, "No usergroup with id=0 can exist");
            }
            let Some(Value::Object(b)) = body else { return err(ctx, 400, "Request body is not a JSON object") };
            let name = b.get("name").or_else(|| b.get("nom")).and_then(Value::as_str).map(strip_html);
            if let Some(nm) = &name
                && st.groups.values().any(|x| &x.name == nm && Some(x.id) != gid)
            {
                return err(ctx, 500, &format!("Duplicate entry '{nm}-1' for key 'uk_usergroup_name'"));
            }
            let Some(grp) = gid.and_then(|i| st.groups.get_mut(&i)) else { return err(ctx, 404, "Group not found") };
            if let Some(nm) = name {
                grp.name = nm;
            }
            if let Some(n) = b.get("note").and_then(Value::as_str) {
                grp.note = strip_html(n);
            }
            grp.tms = now();
            let grp = &st.groups[&grp_id(gid)];
            json_resp(200, &st.render_group(grp, false, false))
        }
        Route::DeleteGroup(g) => {
            if !can(PERM_DELETE) {
                return err(ctx, 403, "Not allowed");
            }
            match parse_id(&g).and_then(|i| st.groups.remove(&i)) {
                Some(_) => json_resp(200, &json!({"success": {"code": 200, "message": "Group deleted"}})),
                None => err(ctx, 404, "Group not found"),
            }
        }
    }
}

fn grp_id(g: Option<u64>) -> u64 {
    g.unwrap_or(0)
}

fn sort_rows<T>(rows: &mut [&T], key: impl Fn(&T) -> Value, q: &HashMap<String, String>) {
    let desc = q.get("sortorder").is_some_and(|o| o.eq_ignore_ascii_case("desc"));
    rows.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        let ord = match (
            ka.as_str().and_then(|s| s.parse::<f64>().ok()).or(ka.as_f64()),
            kb.as_str().and_then(|s| s.parse::<f64>().ok()).or(kb.as_f64()),
        ) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
            _ => ka.to_string().to_lowercase().cmp(&kb.to_string().to_lowercase()),
        };
        if desc { ord.reverse() } else { ord }
    });
}

fn paginate<'a, T>(rows: Vec<&'a T>, q: &HashMap<String, String>) -> Vec<&'a T> {
    let limit = int_param(q, "limit", 100).max(0) as usize;
    let page = int_param(q, "page", 0).max(0) as usize;
    if limit == 0 {
        return rows;
    }
    rows.into_iter().skip(limit.saturating_mul(page)).take(limit).collect()
}
