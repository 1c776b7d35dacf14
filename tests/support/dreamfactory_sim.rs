//! An in-process DreamFactory System API simulator following the contract derived from
//! DreamFactory's source (users/admins on one table, roles, per-app role assignments, JWT
//! sessions, the `resource` wrapper, batch errors, the filter parser's quirks), with controls to
//! inject outages, failures and slowness.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::server::SimServer;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "Admin-Password-0001";
pub const JANE_EMAIL: &str = "jane.doe@example.com";
pub const JANE_PASSWORD: &str = "Jane-Password-00001";
pub const JIM_PASSWORD: &str = "Jim-Password-000001";
pub const OUTSIDER_EMAIL: &str = "outsider@example.org";
pub const OUTSIDER_PASSWORD: &str = "Outsider-Password-01";
pub const DISABLED_EMAIL: &str = "dana.ward@example.com";
pub const DISABLED_PASSWORD: &str = "Dana-Password-000001";
/// API key of app 2 ("portal").
pub const APP_KEY: &str = "6498a8ad1beb9d84d63035c5d1120c007fad6de706734db9689f8996707e0f7d";
/// The app whose assignments the tests use as groups.
pub const APP_ID: u64 = 2;
/// Sessions the example exchanges present (seeded as live sessions).
const EXAMPLE_ADMIN_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodHRwOi8vZGYuZXhhbXBsZS50ZXN0L2FwaS92Mi9zeXN0ZW0vYWRtaW4vc2Vzc2lvbiIsImlhdCI6MTc0MDkwMjQwMCwiZXhwIjoxNzQwOTg4ODAwLCJuYmYiOjE3NDA5MDI0MDAsImp0aSI6IkFiMTJDZDM0RWY1NkdoNzgiLCJzdWIiOiJlNjRjN2Q4OWYyNmJkMTk3MmVmYTg1NGQxM2Q3ZGQ2MSIsInVzZXJfaWQiOjEsImZvcmV2ZXIiOmZhbHNlfQ.ZmFrZS1zaWduYXR1cmUtbm90LXZhbGlk";
const EXAMPLE_USER_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodHRwOi8vZGYuZXhhbXBsZS50ZXN0L2FwaS92Mi91c2VyL3Nlc3Npb24iLCJpYXQiOjE3NDA5MDI0MDAsImV4cCI6MTc0MDk4ODgwMCwibmJmIjoxNzQwOTAyNDAwLCJqdGkiOiJBYjEyQ2QzNEVmNTZHaDc4Iiwic3ViIjoiMGNiYTAwY2EzZGExYjI4M2E1NzI4N2JjY2ViMTdlMzUiLCJ1c2VyX2lkIjo3LCJmb3JldmVyIjpmYWxzZX0.ZmFrZS1zaWduYXR1cmUtbm90LXZhbGlk";
const JWT_HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";
const TTL: i64 = 1440 * 60;

const MSG_NO_CREDENTIALS: &str = "No session token (JWT) or API Key detected in request. Please send in X-DreamFactory-Session-Token and/or X-DreamFactory-API-Key request header. You can also use URL query parameters session_token and/or api_key.";
const MSG_NO_KEY: &str = "No API Key provided. Please provide a valid API Key using X-DreamFactory-API-Key request header or 'api_key' url query parameter.";
const MSG_EXPIRED: &str =
    "Token has expired: Session expired. Please refresh your token (if still within refresh window) or re-login.";
const MSG_UNWRAPPED: &str = "No record(s) detected in request. Please make sure record(s) are wrapped in a 'resource' tag. Example: {\"resource\":[{\"record\":1},{\"record\":2}]}";

#[derive(Clone)]
struct SimUser {
    id: u64,
    admin: bool,
    name: Option<String>,
    username: String,
    first_name: Option<String>,
    last_name: Option<String>,
    email: String,
    is_active: bool,
    phone: Option<String>,
    password: Option<String>,
    last_login: Option<String>,
    created: i64,
    modified: i64,
    created_by: Option<u64>,
    modified_by: Option<u64>,
}

#[derive(Clone)]
struct SimRole {
    id: u64,
    name: String,
    description: Option<String>,
    is_active: bool,
    created: i64,
    modified: i64,
    created_by: Option<u64>,
    modified_by: Option<u64>,
}

#[derive(Clone, Copy)]
struct Assignment {
    id: u64,
    user_id: u64,
    app_id: u64,
    role_id: u64,
}

struct Session {
    user_id: u64,
    admin: bool,
    revoked: bool,
    expired: bool,
}

struct State {
    users: BTreeMap<u64, SimUser>,
    roles: BTreeMap<u64, SimRole>,
    assignments: BTreeMap<u64, Assignment>,
    apps: BTreeMap<u64, (String, String)>,
    sessions: HashMap<String, Session>,
    next_user: u64,
    next_role: u64,
    next_assignment: u64,
    token_counter: u64,
    delay: Duration,
    fail_next: Vec<u16>,
    fail_route: Vec<(String, u16)>,
    counts: HashMap<String, u64>,
    stopped: bool,
}

/// A running simulator. Dropping it stops the server.
pub struct DreamFactorySim {
    state: Arc<Mutex<State>>,
    server: SimServer,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn iso(unix: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].000000Z");
    time::OffsetDateTime::from_unix_timestamp(unix).ok().and_then(|t| t.format(&fmt).ok()).unwrap_or_default()
}

fn plain_date(unix: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(unix).ok().and_then(|t| t.format(&fmt).ok()).unwrap_or_default()
}

fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(s, &fmt).ok().map(|t| t.assume_utc().unix_timestamp())
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64url(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn unb64url(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'+' => 62,
            b'/' => 63,
            _ => B64.iter().position(|b| *b == c)?,
        } as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    Some(out)
}

/// The `exp` claim of a JWT-shaped token.
fn token_exp(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let v: Value = serde_json::from_slice(&unb64url(payload)?).ok()?;
    v.get("exp")?.as_i64()
}

fn encode_entities(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

fn error_obj(code: u16, message: &str, context: Value) -> Value {
    json!({"code": code, "context": context, "message": encode_entities(message), "status_code": code})
}

fn resp(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_string(body).unwrap_or_default()))
        .unwrap_or_default()
}

fn err(code: u16, message: &str) -> Response {
    resp(code, &json!({"error": error_obj(code, message, Value::Null)}))
}

fn validation(errors: Vec<(&str, String)>) -> Value {
    let mut ctx = Map::new();
    let mut all = Vec::new();
    for (field, m) in errors {
        ctx.insert(field.into(), json!([m.clone()]));
        all.push(m);
    }
    error_obj(400, &format!("Invalid data supplied. {}", all.join(" ")), Value::Object(ctx))
}

fn batch(verb: &str, failed: usize, results: Vec<Value>) -> Response {
    resp(
        400,
        &json!({"error": {"code": 1000, "status_code": 400,
            "message": format!("Batch Error: Not all requested records could be {verb}."),
            "context": {"error": [failed], "resource": results}}}),
    )
}

/// PHP's `empty()`: values a POST on user/admin drops before saving.
fn php_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s == "0",
        Value::Array(a) => a.is_empty(),
        Value::Object(_) => false,
    }
}

fn opt_str(v: Option<&Value>) -> Option<Option<String>> {
    match v? {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        other => Some(Some(other.to_string())),
    }
}

fn bool_of(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64() != Some(0),
        Value::String(s) => !matches!(s.as_str(), "" | "0" | "false"),
        _ => false,
    }
}

fn valid_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((l, d)) => !l.is_empty() && d.contains('.') && !d.starts_with('.') && !e.contains(' '),
        None => false,
    }
}

// ---------- filters (contract §4.1) ----------

#[derive(Clone, Debug)]
enum F {
    Null,
    Int(i64),
    Bool(bool),
    Str(String),
    Date(i64),
}

enum Expr {
    Cmp(String, String, String),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

/// Splits `(a) AND (b) OR (c)` at top level; `None` when `s` is not a sequence of groups.
fn split_groups(s: &str) -> Option<(Vec<String>, Vec<String>)> {
    let mut groups = Vec::new();
    let mut ops = Vec::new();
    let mut rest = s.trim();
    loop {
        let inner = rest.strip_prefix('(')?;
        let mut depth = 1;
        let mut quote: Option<char> = None;
        let mut end = None;
        for (i, c) in inner.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '(') => depth += 1,
                (None, ')') => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end?;
        groups.push(inner[..end].to_string());
        rest = inner[end + 1..].trim_start();
        if rest.is_empty() {
            return Some((groups, ops));
        }
        let lower = rest.to_ascii_lowercase();
        let (op, len) = if lower.starts_with("and") {
            ("and", 3)
        } else if lower.starts_with("&&") {
            ("and", 2)
        } else if lower.starts_with("or") || lower.starts_with("||") {
            ("or", 2)
        } else {
            return None;
        };
        ops.push(op.to_string());
        rest = rest[len..].trim_start();
    }
}

fn parse_filter(s: &str) -> Result<Expr, String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("NOT ").or_else(|| s.strip_prefix("not ")) {
        return Ok(Expr::Not(Box::new(parse_filter(rest)?)));
    }
    if s.starts_with('(')
        && let Some((groups, ops)) = split_groups(s)
    {
        let mut parts = groups.iter().map(|g| parse_filter(g));
        let mut acc = parts.next().ok_or_else(|| s.to_string())??;
        for (op, next) in ops.iter().zip(parts) {
            let next = next?;
            acc = if op == "and" {
                Expr::And(Box::new(acc), Box::new(next))
            } else {
                Expr::Or(Box::new(acc), Box::new(next))
            };
        }
        return Ok(acc);
    }
    // One comparison: field, operator, and the whole rest as the value (quirk 6).
    let field_len = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(s.len());
    let field = s[..field_len].to_string();
    let rest = &s[field_len..];
    for sym in [">=", "<=", "!=", "<>", "=", ">", "<"] {
        if let Some(v) = rest.trim_start().strip_prefix(sym) {
            return Ok(Expr::Cmp(field, sym.to_string(), v.trim().to_string()));
        }
    }
    let lower = rest.to_ascii_lowercase();
    for word in [
        " is not null",
        " is null",
        " not in ",
        " in ",
        " like ",
        " contains ",
        " starts with ",
        " ends with ",
        " eq ",
        " ne ",
        " gte ",
        " gt ",
        " lte ",
        " lt ",
    ] {
        if lower.starts_with(word) || lower.trim_end() == word.trim_end() && word.ends_with("null") {
            let v = rest.get(word.len()..).unwrap_or("").trim().to_string();
            return Ok(Expr::Cmp(field, word.trim().to_string(), v));
        }
    }
    Err(field)
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['\'', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
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

fn cmp_values(col: &F, lit: &str) -> Option<std::cmp::Ordering> {
    match col {
        F::Null => None,
        F::Int(n) => lit.parse::<i64>().ok().map(|l| n.cmp(&l)),
        // MySQL compares a non-numeric string to a tinyint as 0 (`is_active=true` finds inactive rows).
        F::Bool(b) => Some(i64::from(*b).cmp(&lit.parse::<i64>().unwrap_or(0))),
        F::Str(s) => Some(s.to_lowercase().cmp(&lit.to_lowercase())),
        F::Date(d) => parse_date(lit).map(|l| d.cmp(&l)),
    }
}

fn eval(e: &Expr, row: &dyn Fn(&str) -> Option<F>, ints: &[&str]) -> Result<bool, String> {
    Ok(match e {
        Expr::And(a, b) => eval(a, row, ints)? & eval(b, row, ints)?,
        Expr::Or(a, b) => eval(a, row, ints)? | eval(b, row, ints)?,
        Expr::Not(a) => !eval(a, row, ints)?,
        Expr::Cmp(field, op, raw) => {
            let col = row(field).ok_or_else(|| format!("Invalid or unparsable field in filter request: '{field}'"))?;
            let lit = unquote(raw);
            if ints.contains(&field.as_str())
                && matches!(op.as_str(), "=" | "!=" | "<>" | ">" | "<" | ">=" | "<=")
                && !lit.chars().all(|c| c.is_ascii_digit())
            {
                return Err(format!("Field '{field}' must be a valid integer."));
            }
            let text = match &col {
                F::Null => None,
                F::Int(n) => Some(n.to_string()),
                F::Bool(b) => Some(i64::from(*b).to_string()),
                F::Str(s) => Some(s.clone()),
                F::Date(d) => Some(plain_date(*d)),
            };
            let ord = cmp_values(&col, &lit);
            match op.as_str() {
                "=" | "eq" => ord.is_some_and(|o| o.is_eq()),
                "!=" | "<>" | "ne" => ord.is_some_and(|o| o.is_ne()),
                ">" | "gt" => ord.is_some_and(|o| o.is_gt()),
                ">=" | "gte" => ord.is_some_and(|o| o.is_ge()),
                "<" | "lt" => ord.is_some_and(|o| o.is_lt()),
                "<=" | "lte" => ord.is_some_and(|o| o.is_le()),
                "like" => text.is_some_and(|t| like(&t, &lit)),
                "contains" => text.is_some_and(|t| like(&t, &format!("%{raw}%"))),
                "starts with" => text.is_some_and(|t| like(&t, &format!("{raw}%"))),
                "ends with" => text.is_some_and(|t| like(&t, &format!("%{raw}"))),
                "is null" => text.is_none(),
                "is not null" => text.is_some(),
                "in" | "not in" => {
                    let list = raw.trim().trim_start_matches('(').trim_end_matches(')');
                    let any = list.split(',').any(|item| cmp_values(&col, &unquote(item)).is_some_and(|o| o.is_eq()));
                    if op == "in" { any } else { !any }
                }
                _ => false,
            }
        }
    })
}

fn user_col(u: &SimUser, c: &str) -> Option<F> {
    let s = |v: &Option<String>| v.clone().map_or(F::Null, F::Str);
    Some(match c {
        "id" => F::Int(u.id as i64),
        "name" => s(&u.name),
        "username" => F::Str(u.username.clone()),
        "first_name" => s(&u.first_name),
        "last_name" => s(&u.last_name),
        "email" => F::Str(u.email.clone()),
        "is_active" => F::Bool(u.is_active),
        "phone" => s(&u.phone),
        "last_login_date" => s(&u.last_login),
        "created_date" => F::Date(u.created),
        "last_modified_date" => F::Date(u.modified),
        "created_by_id" => u.created_by.map_or(F::Null, |n| F::Int(n as i64)),
        "last_modified_by_id" => u.modified_by.map_or(F::Null, |n| F::Int(n as i64)),
        "security_question" | "default_app_id" | "ldap_username" | "adldap" | "oauth_provider" | "saml" => F::Null,
        _ => return None,
    })
}

fn role_col(r: &SimRole, c: &str) -> Option<F> {
    Some(match c {
        "id" => F::Int(r.id as i64),
        "name" => F::Str(r.name.clone()),
        "description" => r.description.clone().map_or(F::Null, F::Str),
        "is_active" => F::Bool(r.is_active),
        "created_date" => F::Date(r.created),
        "last_modified_date" => F::Date(r.modified),
        "created_by_id" => r.created_by.map_or(F::Null, |n| F::Int(n as i64)),
        "last_modified_by_id" => r.modified_by.map_or(F::Null, |n| F::Int(n as i64)),
        _ => return None,
    })
}

const INT_COLUMNS: &[&str] = &["id", "created_by_id", "last_modified_by_id", "default_app_id"];

// ---------- state ----------

impl State {
    fn seed() -> State {
        let mut st = State {
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            assignments: BTreeMap::new(),
            apps: BTreeMap::new(),
            sessions: HashMap::new(),
            next_user: 10,
            next_role: 5,
            next_assignment: 32,
            token_counter: 0,
            delay: Duration::ZERO,
            fail_next: Vec::new(),
            fail_route: Vec::new(),
            counts: HashMap::new(),
            stopped: false,
        };
        let t_created = parse_date("2025-03-01T10:15:30Z").unwrap_or_default();
        let t_modified = parse_date("2025-03-02T08:00:00Z").unwrap_or_default();
        let mut add = |id: u64, admin: bool, first: &str, last: &str, email: &str, pw: &str, active: bool| {
            st.users.insert(
                id,
                SimUser {
                    id,
                    admin,
                    name: Some(format!("{first} {last}")),
                    username: email.into(),
                    first_name: Some(first.into()),
                    last_name: Some(last.into()),
                    email: email.into(),
                    is_active: active,
                    phone: None,
                    password: Some(pw.into()),
                    last_login: Some("2025-03-02 08:00:00".into()),
                    created: t_created,
                    modified: t_modified,
                    created_by: Some(1),
                    modified_by: Some(1),
                },
            );
        };
        add(1, true, "Admin", "User", ADMIN_EMAIL, ADMIN_PASSWORD, true);
        add(2, false, "Mary", "Roe", "mary.roe@example.com", "Mary-Password-000001", true);
        add(3, false, "Paul", "Smyth", "paul.smyth@example.com", "Paul-Password-000001", true);
        add(4, false, "Dana", "Ward", DISABLED_EMAIL, DISABLED_PASSWORD, false);
        add(5, false, "Out", "Sider", OUTSIDER_EMAIL, OUTSIDER_PASSWORD, true);
        add(7, false, "Jane", "Doe", JANE_EMAIL, JANE_PASSWORD, true);
        add(8, false, "John", "Smith", "john.smith@example.com", "correct-horse-battery-staple", true);
        add(9, false, "Jim", "Beam", "jim.beam@example.com", JIM_PASSWORD, true);
        let t_role = parse_date("2025-02-20T09:00:00Z").unwrap_or_default();
        for (id, name, desc) in [(3, "staff", "Regular staff"), (4, "auditors", "Read-only auditors")] {
            st.roles.insert(
                id,
                SimRole {
                    id,
                    name: name.into(),
                    description: Some(desc.into()),
                    is_active: true,
                    created: t_role,
                    modified: t_role,
                    created_by: Some(1),
                    modified_by: None,
                },
            );
        }
        st.apps.insert(2, ("portal".into(), APP_KEY.into()));
        st.apps
            .insert(5, ("reports".into(), "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a".into()));
        for (id, user_id, app_id, role_id) in [(21, 7, 2, 3), (22, 7, 5, 4), (31, 8, 2, 3), (23, 9, 2, 4)] {
            st.assignments.insert(id, Assignment { id, user_id, app_id, role_id });
        }
        st.sessions
            .insert(EXAMPLE_ADMIN_TOKEN.into(), Session { user_id: 1, admin: true, revoked: false, expired: false });
        st.sessions
            .insert(EXAMPLE_USER_TOKEN.into(), Session { user_id: 7, admin: false, revoked: false, expired: false });
        st
    }

    fn new_token(&mut self, user: &SimUser) -> String {
        self.token_counter += 1;
        let t = now();
        let claims = json!({"iss": "http://df-host/api/v2/session", "iat": t, "exp": t + TTL, "nbf": t,
            "jti": format!("sim{}", self.token_counter), "sub": format!("{:x}", self.token_counter), "user_id": user.id, "forever": false});
        let token = format!("{JWT_HEADER}.{}.c2ltdWxhdGVk", b64url(claims.to_string().as_bytes()));
        self.sessions
            .insert(token.clone(), Session { user_id: user.id, admin: user.admin, revoked: false, expired: false });
        token
    }

    fn revoke_user(&mut self, id: u64) {
        for s in self.sessions.values_mut().filter(|s| s.user_id == id) {
            s.revoked = true;
        }
    }

    fn session_info(&self, token: &str, u: &SimUser) -> Value {
        json!({"session_token": token, "session_id": token, "id": u.id, "name": u.name, "first_name": u.first_name,
            "last_name": u.last_name, "email": u.email, "is_sys_admin": u.admin, "last_login_date": u.last_login,
            "host": "df-host", "token_expiry_date": plain_date(now() + TTL)})
    }

    fn user_rows(&self, uid: u64) -> Vec<Value> {
        self.assignments
            .values()
            .filter(|a| a.user_id == uid)
            .map(|a| json!({"id": a.id, "user_id": a.user_id, "app_id": a.app_id, "role_id": a.role_id}))
            .collect()
    }

    fn role_rows(&self, rid: u64) -> Vec<Value> {
        self.assignments
            .values()
            .filter(|a| a.role_id == rid)
            .map(|a| json!({"id": a.id, "user_id": a.user_id, "app_id": a.app_id, "role_id": a.role_id}))
            .collect()
    }

    fn full_user(u: &SimUser) -> Map<String, Value> {
        let v = json!({"id": u.id, "name": u.name, "username": u.username, "ldap_username": null,
            "first_name": u.first_name, "last_name": u.last_name, "last_login_date": u.last_login, "email": u.email,
            "is_active": u.is_active, "phone": u.phone, "security_question": null, "default_app_id": null,
            "adldap": null, "oauth_provider": null, "saml": null, "created_date": iso(u.created),
            "last_modified_date": iso(u.modified), "created_by_id": u.created_by, "last_modified_by_id": u.modified_by,
            "confirmed": true, "expired": false});
        v.as_object().cloned().unwrap_or_default()
    }

    fn full_role(r: &SimRole) -> Map<String, Value> {
        let v = json!({"id": r.id, "name": r.name, "description": r.description, "is_active": r.is_active,
            "created_date": iso(r.created), "last_modified_date": iso(r.modified), "created_by_id": r.created_by,
            "last_modified_by_id": r.modified_by});
        v.as_object().cloned().unwrap_or_default()
    }
}

/// Selection of a read or write answer (`fields`, `related`).
struct Shape {
    fields: Option<Vec<String>>,
    related: Vec<String>,
}

impl Shape {
    fn of(q: &HashMap<String, String>, write: bool) -> Shape {
        let fields =
            q.get("fields").or_else(|| q.get("select")).map(|f| f.split(',').map(|s| s.trim().to_string()).collect());
        let fields = match fields {
            Some(f) => Some(f),
            None if write => Some(vec!["id".to_string()]),
            None => None,
        };
        let related = q
            .get("related")
            .map(|r| r.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Shape { fields, related }
    }
    fn plain_id(&self) -> bool {
        self.related.is_empty() && self.fields.as_ref().is_some_and(|f| f.len() == 1 && f[0] == "id")
    }
}

fn shape_user(st: &State, u: &SimUser, shape: &Shape) -> Value {
    let full = State::full_user(u);
    let mut out = match &shape.fields {
        Some(f) if !f.iter().any(|x| x == "*") => {
            let mut m: Map<String, Value> =
                full.iter().filter(|(k, _)| f.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
            if !shape.plain_id() {
                m.insert("confirmed".into(), json!(true));
                m.insert("expired".into(), json!(false));
            }
            m
        }
        _ => full,
    };
    if shape.related.iter().any(|r| r == "user_to_app_to_role_by_user_id") {
        out.insert("user_to_app_to_role_by_user_id".into(), Value::Array(st.user_rows(u.id)));
    }
    Value::Object(out)
}

fn shape_role(st: &State, r: &SimRole, shape: &Shape) -> Value {
    let full = State::full_role(r);
    let mut out = match &shape.fields {
        Some(f) if !f.iter().any(|x| x == "*") => {
            full.iter().filter(|(k, _)| f.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        _ => full,
    };
    if shape.related.iter().any(|r| r == "user_to_app_to_role_by_role_id") {
        out.insert("user_to_app_to_role_by_role_id".into(), Value::Array(st.role_rows(r.id)));
    }
    Value::Object(out)
}

// ---------- server and controls ----------

impl DreamFactorySim {
    /// Starts a simulator on 127.0.0.1 with an ephemeral port, seeded with the contract's examples.
    pub async fn start() -> DreamFactorySim {
        let state = Arc::new(Mutex::new(State::seed()));
        let app_state = state.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = app_state.clone();
            async move { handle(state, method, uri, headers, body).await }
        });
        DreamFactorySim { state, server: SimServer::start(app).await }
    }

    /// Root URL (what goes in `DreamFactoryConfig::url`).
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

    /// The next `n` requests (any route) fail with `status` and a DreamFactory error body.
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
    /// Requests seen for a route pattern such as `GET /system/user/{id}` or `POST /user/session`.
    pub fn count(&self, route: &str) -> u64 {
        self.st().counts.get(route).copied().unwrap_or(0)
    }
    pub fn total_requests(&self) -> u64 {
        self.st().counts.values().sum()
    }
    pub fn reset_counts(&self) {
        self.st().counts.clear();
    }
    /// Sessions neither logged out nor revoked.
    pub fn live_sessions(&self, user: u64) -> usize {
        self.st().sessions.values().filter(|s| s.user_id == user && !s.revoked && !s.expired).count()
    }
    /// Expires every session (as after `DF_JWT_TTL`): their next use answers 401.
    pub fn expire_sessions(&self) {
        for s in self.st().sessions.values_mut() {
            s.expired = true;
        }
    }
    /// Adds an account as if created in DreamFactory's admin UI; returns its id.
    pub fn add_user(&self, first: &str, last: &str, email: &str, password: Option<&str>, admin: bool) -> u64 {
        let mut st = self.st();
        let id = st.next_user;
        st.next_user += 1;
        let t = now();
        st.users.insert(
            id,
            SimUser {
                id,
                admin,
                name: Some(format!("{first} {last}")),
                username: email.into(),
                first_name: Some(first.into()),
                last_name: Some(last.into()),
                email: email.into(),
                is_active: true,
                phone: None,
                password: password.map(String::from),
                last_login: None,
                created: t,
                modified: t,
                created_by: Some(1),
                modified_by: None,
            },
        );
        id
    }
    /// Changes one column (`first_name`, `last_name`, `email`, `phone`, `name`, `username`, `is_active`) and bumps
    /// the modification time.
    pub fn set_user_field(&self, id: u64, key: &str, value: Value) {
        let mut st = self.st();
        let Some(u) = st.users.get_mut(&id) else { return };
        let s = value.as_str().map(String::from);
        match key {
            "first_name" => u.first_name = s,
            "last_name" => u.last_name = s,
            "name" => u.name = s,
            "email" => u.email = s.unwrap_or_default(),
            "username" => u.username = s.unwrap_or_default(),
            "phone" => u.phone = s,
            "is_active" => u.is_active = bool_of(&value),
            other => panic!("the simulator has no user column {other}"),
        }
        u.modified = now();
    }
    pub fn set_user_modified(&self, id: u64, unix: i64) {
        if let Some(u) = self.st().users.get_mut(&id) {
            u.modified = unix;
        }
    }
    pub fn disable_user(&self, id: u64) {
        self.set_user_field(id, "is_active", json!(false));
        self.st().revoke_user(id);
    }
    pub fn set_password(&self, id: u64, password: Option<&str>) {
        if let Some(u) = self.st().users.get_mut(&id) {
            u.password = password.map(String::from);
        }
    }
    pub fn user_password(&self, id: u64) -> Option<String> {
        self.st().users.get(&id).and_then(|u| u.password.clone())
    }
    pub fn user_exists(&self, id: u64) -> bool {
        self.st().users.contains_key(&id)
    }
    pub fn user_active(&self, id: u64) -> Option<bool> {
        self.st().users.get(&id).map(|u| u.is_active)
    }
    pub fn user_is_admin(&self, id: u64) -> Option<bool> {
        self.st().users.get(&id).map(|u| u.admin)
    }
    pub fn user_field(&self, id: u64, key: &str) -> Option<Value> {
        self.st().users.get(&id).and_then(|u| State::full_user(u).get(key).cloned())
    }
    pub fn user_id(&self, email: &str) -> Option<u64> {
        self.st().users.values().find(|u| u.email.eq_ignore_ascii_case(email)).map(|u| u.id)
    }
    pub fn delete_user(&self, id: u64) {
        let mut st = self.st();
        st.users.remove(&id);
        st.assignments.retain(|_, a| a.user_id != id);
        st.revoke_user(id);
    }
    pub fn set_next_user_id(&self, id: u64) {
        self.st().next_user = id;
    }
    pub fn set_next_assignment_id(&self, id: u64) {
        self.st().next_assignment = id;
    }
    pub fn add_role(&self, name: &str, active: bool) -> u64 {
        let mut st = self.st();
        let id = st.next_role;
        st.next_role += 1;
        let t = now();
        st.roles.insert(
            id,
            SimRole {
                id,
                name: name.into(),
                description: None,
                is_active: active,
                created: t,
                modified: t,
                created_by: Some(1),
                modified_by: None,
            },
        );
        id
    }
    pub fn role_name(&self, id: u64) -> Option<String> {
        self.st().roles.get(&id).map(|r| r.name.clone())
    }
    pub fn role_active(&self, id: u64) -> Option<bool> {
        self.st().roles.get(&id).map(|r| r.is_active)
    }
    pub fn role_id(&self, name: &str) -> Option<u64> {
        self.st().roles.values().find(|r| r.name == name).map(|r| r.id)
    }
    /// Sets (or with `None` removes) the user's role for an app.
    pub fn assign(&self, user: u64, app: u64, role: Option<u64>) {
        let mut st = self.st();
        st.assignments.retain(|_, a| !(a.user_id == user && a.app_id == app));
        if let Some(role_id) = role {
            let id = st.next_assignment;
            st.next_assignment += 1;
            st.assignments.insert(id, Assignment { id, user_id: user, app_id: app, role_id });
        }
    }
    /// The user's role for an app.
    pub fn role_of(&self, user: u64, app: u64) -> Option<u64> {
        self.st().assignments.values().find(|a| a.user_id == user && a.app_id == app).map(|a| a.role_id)
    }
}

fn route_pattern(method: &Method, segs: &[&str]) -> String {
    let mut p = format!("{} ", method.as_str());
    for s in segs {
        p.push('/');
        p.push_str(if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) { "{id}" } else { s });
    }
    p
}

async fn handle(state: Arc<Mutex<State>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let api_path = path.strip_prefix("/api/v2").or_else(|| path.strip_prefix("/api")).unwrap_or(&path).to_string();
    let segs: Vec<String> = api_path.split('/').filter(|s| !s.is_empty()).map(String::from).collect();
    let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    // Verb tunnelling (contract §2).
    let method = headers
        .get("X-HTTP-Method")
        .or_else(|| headers.get("X-Method-Override"))
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .or_else(|| query.get("method").cloned())
        .filter(|_| method == Method::POST)
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .map(|m| if m.as_str() == "MERGE" { Method::PATCH } else { m })
        .unwrap_or(method);
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
        return Response::builder().status(502).body(Body::from("Bad Gateway")).unwrap_or_default();
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(code) = fail {
        return err(code, "simulated failure");
    }
    let json_body: Option<Value> = if body.is_empty() { None } else { serde_json::from_slice(&body).ok() };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(String::from)
        .or_else(|| headers.get("X-DreamFactory-Session-Token").and_then(|v| v.to_str().ok()).map(String::from))
        .or_else(|| query.get("session_token").cloned());
    let api_key = headers
        .get("X-DreamFactory-API-Key")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .or_else(|| query.get("api_key").cloned());
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    match seg_refs.as_slice() {
        ["system", "admin", "session"] => session(&mut st, &method, true, token, api_key, json_body),
        ["user", "session"] => session(&mut st, &method, false, token, api_key, json_body),
        ["system", res, rest @ ..] if matches!(*res, "user" | "admin" | "role" | "app") && rest.len() <= 1 => {
            let caller = match authorize(&st, token.as_deref(), api_key.as_deref()) {
                Ok(c) => c,
                Err(r) => return *r,
            };
            system(&mut st, caller, &method, res, rest.first().copied(), &query, json_body)
        }
        _ => err(404, &format!("Resource '{}' not found for service.", api_path.trim_start_matches('/'))),
    }
}

/// Access check for `/system/*`: a live admin session (contract §3.2, §3.5).
fn authorize(st: &State, token: Option<&str>, key: Option<&str>) -> Result<u64, Box<Response>> {
    let Some(token) = token else {
        return Err(Box::new(if key.is_none() {
            err(400, MSG_NO_CREDENTIALS)
        } else {
            err(401, "There is no valid session for the current request.")
        }));
    };
    match st.sessions.get(token) {
        Some(s) if s.expired => Err(Box::new(err(401, MSG_EXPIRED))),
        Some(s) if s.revoked => {
            Err(Box::new(err(403, "Token has been blacklisted: Session terminated. Please re-login.")))
        }
        Some(s) => {
            let active = st.users.get(&s.user_id).is_some_and(|u| u.is_active);
            if !active {
                Err(Box::new(err(403, "User is not active.")))
            } else if s.admin {
                Ok(s.user_id)
            } else if key.is_none() {
                Err(Box::new(err(400, MSG_NO_KEY)))
            } else {
                Err(Box::new(err(403, "Access Forbidden. You do not have enough privileges to access this resource.")))
            }
        }
        None => match token_exp(token) {
            Some(exp) if exp < now() => Err(Box::new(err(401, MSG_EXPIRED))),
            _ => Err(Box::new(err(401, "Invalid token: Could not decode token."))),
        },
    }
}

fn session(
    st: &mut State,
    method: &Method,
    admin: bool,
    token: Option<String>,
    key: Option<String>,
    body: Option<Value>,
) -> Response {
    match method.as_str() {
        "POST" => {
            let body = body.unwrap_or(Value::Null);
            let email = body.get("email").and_then(Value::as_str).unwrap_or("");
            let password = body.get("password").and_then(Value::as_str).unwrap_or("");
            if email.is_empty() {
                return err(400, "Login request is missing required email.");
            }
            if password.is_empty() {
                return err(400, "Login request is missing required password.");
            }
            let Some(user) = st
                .users
                .values()
                .find(|u| {
                    u.email.eq_ignore_ascii_case(email)
                        && u.is_active
                        && u.admin == admin
                        && u.password.as_deref() == Some(password)
                })
                .cloned()
            else {
                return err(401, "Invalid credentials supplied.");
            };
            let mut role = None;
            if let Some(k) = key
                && let Some((&app, _)) = st.apps.iter().find(|(_, (_, ak))| *ak == k)
                && let Some(a) = st.assignments.values().find(|a| a.user_id == user.id && a.app_id == app)
                && let Some(r) = st.roles.get(&a.role_id)
            {
                if !r.is_active {
                    return err(403, "Role is not active.");
                }
                role = Some((r.name.clone(), r.id));
            }
            let t = now();
            if let Some(u) = st.users.get_mut(&user.id) {
                u.last_login = Some(plain_date(t));
                u.modified = t;
            }
            let user = st.users.get(&user.id).cloned().unwrap_or(user);
            let token = st.new_token(&user);
            let mut info = st.session_info(&token, &user);
            if let Some((name, id)) = role {
                info["role"] = json!(name);
                info["role_id"] = json!(id);
            }
            resp(200, &info)
        }
        "DELETE" | "GET" | "PUT" => {
            let live = token.as_deref().and_then(|t| st.sessions.get(t)).filter(|s| !s.revoked && s.admin == admin);
            let Some(s) = live else {
                return if admin && method == Method::GET {
                    err(404, "No user session found.")
                } else {
                    err(401, "There is no valid session for the current request.")
                };
            };
            let uid = s.user_id;
            let expired = s.expired;
            let Some(user) = st.users.get(&uid).cloned() else {
                return err(401, "There is no valid session for the current request.");
            };
            let token = token.unwrap_or_default();
            match method.as_str() {
                "DELETE" => {
                    if let Some(s) = st.sessions.get_mut(&token) {
                        s.revoked = true;
                    }
                    resp(200, &json!({"success": true}))
                }
                "GET" if expired => err(401, MSG_EXPIRED),
                "GET" => resp(200, &st.session_info(&token, &user)),
                _ => {
                    if let Some(s) = st.sessions.get_mut(&token) {
                        s.revoked = true;
                    }
                    let new = st.new_token(&user);
                    resp(200, &st.session_info(&new, &user))
                }
            }
        }
        _ => err(405, "Method not allowed."),
    }
}

fn records_of(body: Option<Value>) -> Option<Vec<Value>> {
    match body? {
        Value::Array(a) => Some(a),
        Value::Object(mut o) => match o.remove("resource") {
            Some(Value::Array(a)) => Some(a),
            _ => None,
        },
        _ => None,
    }
}

fn system(
    st: &mut State,
    caller: u64,
    method: &Method,
    res: &str,
    id: Option<&str>,
    q: &HashMap<String, String>,
    body: Option<Value>,
) -> Response {
    let id = match id.map(|s| s.parse::<u64>()) {
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return err(404, "Resource not found."),
        None => None,
    };
    let write = method != Method::GET;
    let shape = Shape::of(q, write);
    match (res, method.as_str(), id) {
        ("app", "GET", None) => {
            let list: Vec<Value> = st
                .apps
                .iter()
                .map(|(id, (n, k))| json!({"id": id, "name": n, "api_key": k, "is_active": true, "role_id": null}))
                .collect();
            resp(200, &json!({"resource": list}))
        }
        ("app", "GET", Some(n)) => match st.apps.get(&n) {
            Some((name, k)) => {
                resp(200, &json!({"id": n, "name": name, "api_key": k, "is_active": true, "role_id": null}))
            }
            None => err(404, &format!("Record with identifier '{n}' not found.")),
        },
        ("app", ..) => err(405, "Method not allowed."),
        ("role", "GET", _) => list_or_get(st, q, &shape, id, ListKind::Role),
        ("user" | "admin", "GET", _) => list_or_get(st, q, &shape, id, ListKind::User(res == "admin")),
        (_, "POST", Some(_)) => err(400, "Create record by identifier not currently supported."),
        (_, "POST", None) => {
            let Some(records) = records_of(body) else {
                return err(400, MSG_UNWRAPPED);
            };
            let mut results = Vec::new();
            for (i, rec) in records.into_iter().enumerate() {
                let outcome = if res == "role" {
                    create_role(st, caller, rec)
                } else {
                    create_user(st, caller, rec, res == "admin")
                };
                match outcome {
                    Ok(new_id) => results.push(if res == "role" {
                        st.roles.get(&new_id).map(|r| shape_role(st, r, &shape)).unwrap_or(Value::Null)
                    } else {
                        write_answer(st, new_id, &shape)
                    }),
                    Err(e) => {
                        results.push(e);
                        return batch("created", i, results);
                    }
                }
            }
            resp(201, &json!({"resource": results}))
        }
        (_, "PATCH" | "PUT", Some(n)) => {
            let Some(Value::Object(rec)) = body else {
                return err(400, "No record(s) detected in request.");
            };
            let outcome = if res == "role" {
                update_role(st, caller, n, rec)
            } else {
                update_user(st, caller, n, rec, res == "admin")
            };
            match outcome {
                Ok(()) if res == "role" => {
                    resp(200, &st.roles.get(&n).map(|r| shape_role(st, r, &shape)).unwrap_or(json!({"id": n})))
                }
                Ok(()) => resp(200, &write_answer(st, n, &shape)),
                Err(e) => {
                    let code = e.get("status_code").and_then(Value::as_u64).unwrap_or(400) as u16;
                    resp(code, &json!({"error": e}))
                }
            }
        }
        (_, "PATCH" | "PUT", None) => err(400, "Batch updates are not supported by this simulator."),
        (_, "DELETE", Some(n)) => {
            let outcome = if res == "role" { delete_role(st, n) } else { delete_user(st, caller, n, res == "admin") };
            match outcome {
                Ok(()) => resp(200, &json!({"id": n})),
                Err(e) => {
                    let code = e.get("status_code").and_then(Value::as_u64).unwrap_or(400) as u16;
                    resp(code, &json!({"error": e}))
                }
            }
        }
        (_, "DELETE", None) => err(400, "No filter or records given for delete request."),
        _ => err(405, "Method not allowed."),
    }
}

fn write_answer(st: &State, id: u64, shape: &Shape) -> Value {
    match st.users.get(&id) {
        Some(u) if shape.plain_id() => json!({"id": u.id}),
        Some(u) => shape_user(st, u, shape),
        None => json!({"id": id}),
    }
}

/// A row's column reader, for filters and ordering.
type Row<'a> = (u64, Box<dyn Fn(&str) -> Option<F> + 'a>);

enum ListKind {
    User(bool),
    Role,
}

fn not_found(n: u64) -> Value {
    error_obj(404, &format!("Record with identifier '{n}' not found."), Value::Null)
}

fn list_or_get(st: &State, q: &HashMap<String, String>, shape: &Shape, id: Option<u64>, kind: ListKind) -> Response {
    let render = |n: u64| -> Option<Value> {
        match kind {
            ListKind::User(admin) => st.users.get(&n).filter(|u| u.admin == admin).map(|u| shape_user(st, u, shape)),
            ListKind::Role => st.roles.get(&n).map(|r| shape_role(st, r, shape)),
        }
    };
    if let Some(n) = id {
        return match render(n) {
            Some(v) => resp(200, &v),
            None => resp(404, &json!({"error": not_found(n)})),
        };
    }
    if let Some(ids) = q.get("ids") {
        let mut results = Vec::new();
        let mut failed = None;
        for (i, part) in ids.split(',').enumerate() {
            let n: u64 = part.trim().parse().unwrap_or(0);
            match render(n) {
                Some(v) => results.push(v),
                None => {
                    results.push(not_found(n));
                    failed.get_or_insert(i);
                }
            }
        }
        return match failed {
            Some(i) => batch("retrieved", i, results),
            None => resp(200, &json!({"resource": results})),
        };
    }
    let filter = match q.get("filter").or_else(|| q.get("where")).map(|f| parse_filter(f)) {
        Some(Ok(e)) => Some(e),
        Some(Err(field)) => return err(400, &format!("Invalid or unparsable field in filter request: '{field}'")),
        None => None,
    };
    let mut rows: Vec<Row<'_>> = match kind {
        ListKind::User(admin) => st
            .users
            .values()
            .filter(|u| u.admin == admin)
            .map(|u| (u.id, Box::new(move |c: &str| user_col(u, c)) as Box<dyn Fn(&str) -> Option<F>>))
            .collect(),
        ListKind::Role => st
            .roles
            .values()
            .map(|r| (r.id, Box::new(move |c: &str| role_col(r, c)) as Box<dyn Fn(&str) -> Option<F>>))
            .collect(),
    };
    if let Some(f) = &filter {
        let mut kept = Vec::new();
        for (n, row) in rows {
            match eval(f, &*row, INT_COLUMNS) {
                Ok(true) => kept.push((n, row)),
                Ok(false) => {}
                Err(m) => return err(400, &m),
            }
        }
        rows = kept;
    }
    if let Some(order) = q.get("order").or_else(|| q.get("sort")).or_else(|| q.get("order_by")) {
        let mut parts = order.split(',').next().unwrap_or("id").split_whitespace();
        let field = parts.next().unwrap_or("id").to_string();
        let desc = parts.next().is_some_and(|d| d.eq_ignore_ascii_case("desc"));
        let key = |r: &dyn Fn(&str) -> Option<F>| match r(&field) {
            Some(F::Int(n)) => (0, n, String::new()),
            Some(F::Date(n)) => (0, n, String::new()),
            Some(F::Bool(b)) => (0, i64::from(b), String::new()),
            Some(F::Str(s)) => (1, 0, s.to_lowercase()),
            _ => (-1, 0, String::new()),
        };
        if !rows.is_empty() && rows[0].1(&field).is_none() {
            return err(400, &format!("Invalid or unparsable field in order request: '{field}'"));
        }
        rows.sort_by(|a, b| key(&*a.1).cmp(&key(&*b.1)).then(a.0.cmp(&b.0)));
        if desc {
            rows.reverse();
        }
    }
    let count = rows.len();
    if q.get("count_only").is_some_and(|v| v == "true" || v == "1") {
        return resp(200, &json!(count));
    }
    let offset: usize = q.get("offset").or_else(|| q.get("skip")).and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit: usize =
        q.get("limit").or_else(|| q.get("top")).and_then(|v| v.parse().ok()).filter(|l| *l >= 1).unwrap_or(100_000);
    let page: Vec<Value> = rows.iter().skip(offset).take(limit).filter_map(|(n, _)| render(*n)).collect();
    let mut out = json!({"resource": page});
    if q.get("include_count").is_some_and(|v| v == "true" || v == "1") {
        out["meta"] = json!({"count": count});
    }
    resp(200, &out)
}

fn assignments_merge(st: &mut State, uid: u64, rows: &Value) -> Result<(), Value> {
    let Some(rows) = rows.as_array() else { return Ok(()) };
    for row in rows {
        let rid = row.get("id").and_then(Value::as_u64);
        let user_id = row.get("user_id");
        let app = row.get("app_id").and_then(Value::as_u64);
        let role = row.get("role_id").and_then(Value::as_u64);
        match rid {
            Some(rid) => {
                if user_id.is_some_and(Value::is_null) {
                    st.assignments.remove(&rid);
                } else if let Some(a) = st.assignments.get_mut(&rid) {
                    if let Some(r) = role {
                        a.role_id = r;
                    }
                    if let Some(ap) = app {
                        a.app_id = ap;
                    }
                }
            }
            None => {
                let (Some(app), Some(role)) = (app, role) else {
                    return Err(validation(vec![("app_id", "The app id field is required.".into())]));
                };
                if !st.roles.contains_key(&role) || !st.apps.contains_key(&app) {
                    return Err(error_obj(
                        500,
                        "Failed to update resource: SQLSTATE[23000]: Integrity constraint violation: 1452 Cannot add or update a child row: a foreign key constraint fails",
                        Value::Null,
                    ));
                }
                if st.assignments.values().any(|a| a.user_id == uid && a.app_id == app) {
                    return Err(error_obj(
                        400,
                        "Multiple user-to-app-to-role assignment. You can only have a single user-to-app-to-role assignment.",
                        Value::Null,
                    ));
                }
                let id = st.next_assignment;
                st.next_assignment += 1;
                st.assignments.insert(id, Assignment { id, user_id: uid, app_id: app, role_id: role });
            }
        }
    }
    Ok(())
}

fn create_user(st: &mut State, caller: u64, rec: Value, admin: bool) -> Result<u64, Value> {
    let Value::Object(mut rec) = rec else { return Err(error_obj(400, "Invalid record.", Value::Null)) };
    let related = rec.remove("user_to_app_to_role_by_user_id");
    // Falsy values are dropped on create (quirk 2).
    rec.retain(|_, v| !php_empty(v));
    let s = |k: &str| rec.get(k).and_then(Value::as_str).map(String::from);
    let mut errors = Vec::new();
    let email = s("email").unwrap_or_default();
    if email.is_empty() {
        errors.push(("email", "The email field is required.".to_string()));
    } else if !valid_email(&email) {
        errors.push(("email", "The email field must be a valid email address.".to_string()));
    }
    let username = s("username").unwrap_or_else(|| email.clone());
    if !username.is_empty() && st.users.values().any(|u| u.username.eq_ignore_ascii_case(&username)) {
        errors.push(("username", "The username has already been taken.".to_string()));
    }
    let password = s("password");
    if password.as_ref().is_some_and(|p| p.chars().count() < 16) {
        errors.push(("password", "The password field must be at least 16 characters.".to_string()));
    }
    if !errors.is_empty() {
        return Err(validation(errors));
    }
    if st.users.values().any(|u| u.email.eq_ignore_ascii_case(&email)) {
        return Err(error_obj(
            500,
            &format!(
                "Failed to create resource: SQLSTATE[23000]: Integrity constraint violation: 1062 Duplicate entry '{email}' for key 'user_email_unique'"
            ),
            Value::Null,
        ));
    }
    let id = st.next_user;
    st.next_user += 1;
    let t = now();
    st.users.insert(
        id,
        SimUser {
            id,
            admin,
            name: s("name"),
            username,
            first_name: s("first_name"),
            last_name: s("last_name"),
            email,
            is_active: rec.get("is_active").map(bool_of).unwrap_or(true),
            phone: s("phone"),
            password,
            last_login: None,
            created: t,
            modified: t,
            created_by: Some(caller),
            modified_by: None,
        },
    );
    if let Some(rows) = related
        && let Err(e) = assignments_merge(st, id, &rows)
    {
        st.users.remove(&id);
        return Err(e);
    }
    Ok(id)
}

fn update_user(st: &mut State, caller: u64, n: u64, rec: Map<String, Value>, admin_ep: bool) -> Result<(), Value> {
    let Some(u) = st.users.get(&n).cloned() else { return Err(not_found(n)) };
    if u.admin && !admin_ep {
        return Err(error_obj(403, "Not allowed to change an admin user.", Value::Null));
    }
    if !u.admin && admin_ep {
        return Err(error_obj(400, "Cannot update a non-admin user.", Value::Null));
    }
    let mut u = u;
    let mut errors = Vec::new();
    if let Some(Some(e)) = opt_str(rec.get("email")) {
        if !valid_email(&e) {
            errors.push(("email", "The email field must be a valid email address.".to_string()));
        }
        u.email = e;
    }
    if let Some(Some(p)) = opt_str(rec.get("password")) {
        if p.chars().count() < 16 {
            errors.push(("password", "The password field must be at least 16 characters.".to_string()));
        }
        u.password = Some(p);
    }
    if !errors.is_empty() {
        return Err(validation(errors));
    }
    if st.users.values().any(|o| o.id != n && (o.email.eq_ignore_ascii_case(&u.email))) {
        return Err(error_obj(
            500,
            &format!(
                "Failed to update resource: SQLSTATE[23000]: Integrity constraint violation: 1062 Duplicate entry '{}' for key 'user_email_unique'",
                u.email
            ),
            Value::Null,
        ));
    }
    if let Some(Some(name)) = opt_str(rec.get("username")) {
        if st.users.values().any(|o| o.id != n && o.username.eq_ignore_ascii_case(&name)) {
            return Err(validation(vec![("username", "The username has already been taken.".into())]));
        }
        u.username = name;
    }
    for (k, slot) in [
        ("first_name", &mut u.first_name),
        ("last_name", &mut u.last_name),
        ("name", &mut u.name),
        ("phone", &mut u.phone),
    ] {
        if let Some(v) = opt_str(rec.get(k)) {
            *slot = v;
        }
    }
    let revoke = rec.contains_key("password") || rec.get("is_active").is_some_and(|v| !bool_of(v));
    if let Some(a) = rec.get("is_active") {
        u.is_active = bool_of(a);
    }
    if let Some(rows) = rec.get("user_to_app_to_role_by_user_id") {
        assignments_merge(st, n, rows)?;
    }
    u.modified = now();
    u.modified_by = Some(caller);
    st.users.insert(n, u);
    if revoke {
        st.revoke_user(n);
    }
    Ok(())
}

fn delete_user(st: &mut State, caller: u64, n: u64, admin_ep: bool) -> Result<(), Value> {
    let Some(u) = st.users.get(&n) else { return Err(not_found(n)) };
    if u.admin && !admin_ep {
        return Err(error_obj(403, "Not allowed to delete an admin user.", Value::Null));
    }
    if !u.admin && admin_ep {
        return Err(error_obj(400, "Cannot delete a non-admin user.", Value::Null));
    }
    if n == caller {
        return Err(error_obj(403, "Cannot delete your account.", Value::Null));
    }
    st.users.remove(&n);
    st.assignments.retain(|_, a| a.user_id != n);
    st.revoke_user(n);
    Ok(())
}

fn create_role(st: &mut State, caller: u64, rec: Value) -> Result<u64, Value> {
    let name = rec.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    if name.is_empty() {
        return Err(validation(vec![("name", "The name field is required.".into())]));
    }
    if st.roles.values().any(|r| r.name.eq_ignore_ascii_case(&name)) {
        return Err(validation(vec![("name", "The name has already been taken.".into())]));
    }
    let id = st.next_role;
    st.next_role += 1;
    let t = now();
    let description = rec.get("description").and_then(Value::as_str).map(|d| d.chars().take(255).collect());
    st.roles.insert(
        id,
        SimRole {
            id,
            name,
            description,
            // DB default false (quirk 15).
            is_active: rec.get("is_active").map(bool_of).unwrap_or(false),
            created: t,
            modified: t,
            created_by: Some(caller),
            modified_by: None,
        },
    );
    Ok(id)
}

fn update_role(st: &mut State, caller: u64, n: u64, rec: Map<String, Value>) -> Result<(), Value> {
    if !st.roles.contains_key(&n) {
        return Err(not_found(n));
    }
    if let Some(Some(name)) = opt_str(rec.get("name")) {
        if name.is_empty() {
            return Err(validation(vec![("name", "The name field is required.".into())]));
        }
        if st.roles.values().any(|r| r.id != n && r.name.eq_ignore_ascii_case(&name)) {
            return Err(validation(vec![("name", "The name has already been taken.".into())]));
        }
    }
    let Some(r) = st.roles.get_mut(&n) else { return Err(not_found(n)) };
    if let Some(Some(name)) = opt_str(rec.get("name")) {
        r.name = name;
    }
    if let Some(d) = opt_str(rec.get("description")) {
        r.description = d;
    }
    if let Some(a) = rec.get("is_active") {
        r.is_active = bool_of(a);
    }
    r.modified = now();
    r.modified_by = Some(caller);
    Ok(())
}

fn delete_role(st: &mut State, n: u64) -> Result<(), Value> {
    if st.roles.remove(&n).is_none() {
        return Err(not_found(n));
    }
    st.assignments.retain(|_, a| a.role_id != n);
    Ok(())
}
