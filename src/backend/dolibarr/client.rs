//! HTTP plumbing for the Dolibarr API: headers, timeouts, retries of safe reads, and the mapping
//! of Dolibarr's answers to `BackendError`.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::backend::BackendError;
use crate::backend::http::Rest;
use crate::config::DolibarrConfig;
use crate::config::Secret;

/// One raw answer. Bodies are kept as bytes so that nothing (a password echoed in an error page,
/// say) is formatted before we decide what to show.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Result<Value, BackendError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| BackendError::Protocol(format!("Dolibarr sent a body that is not JSON ({e})")))
    }

    fn is_html(&self) -> bool {
        self.content_type.to_ascii_lowercase().contains("text/html")
    }
}

/// What kind of call failed, which decides how some statuses read (a 500 on a read is an outage,
/// on a write it is Dolibarr refusing the values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Write,
}

pub(crate) use crate::backend::http::Retry;

pub(crate) struct Client {
    rest: Rest,
    key: Secret,
    entity: Option<u32>,
}

impl Client {
    pub fn new(cfg: &DolibarrConfig) -> Result<Client, BackendError> {
        let rest = Rest::new("Dolibarr", &cfg.url, "api/index.php/", cfg.timeout, cfg.retries)?;
        Ok(Client { rest, key: cfg.api_key.clone(), entity: cfg.entity })
    }

    /// Sends one call with the API key, retrying per `retry` (`setGroup` is a state change behind a
    /// GET, quirk 7: never retried). Returns any HTTP answer; only transport failures and
    /// exhausted retries on 502/503/504 become errors here.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Reply, BackendError> {
        self.send(method, segments, query, body, retry, true).await
    }

    /// Same as `call`, without credentials (for `/login`, which must not see the service key).
    pub async fn call_anonymous(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<Reply, BackendError> {
        self.send(method, segments, &[], body, Retry::Never, false).await
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        retry: Retry,
        with_key: bool,
    ) -> Result<Reply, BackendError> {
        let answer = self
            .rest
            .send(method, segments, query, retry, |mut req| {
                if with_key {
                    req = req.header("DOLAPIKEY", self.key.expose());
                    if let Some(e) = self.entity {
                        req = req.header("DOLAPIENTITY", e.to_string());
                    }
                }
                if let Some(b) = body {
                    req = req.json(b);
                }
                req
            })
            .await?;
        let content_type =
            answer.headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        Ok(Reply { status: answer.status, content_type, body: answer.body })
    }
}

/// Removes HTML tags from a Dolibarr message (`at least <b>12</b> chars`).
pub(crate) fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
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

/// Error text of a Dolibarr error body: the message without its HTTP reason prefix, and the
/// object-level errors (`"0"`, `"1"`, ...) when present.
pub(crate) fn error_texts(body: &Value) -> (String, Vec<String>) {
    let Some(err) = body.get("error") else {
        return (String::new(), Vec::new());
    };
    let message = err.get("message").and_then(Value::as_str).unwrap_or("").to_string();
    let message = match message.split_once(": ") {
        Some((_, rest)) => rest.to_string(),
        None => message,
    };
    let mut details = Vec::new();
    if let Some(map) = err.as_object() {
        let mut keys: Vec<(&String, &Value)> =
            map.iter().filter(|(k, _)| k.chars().all(|c| c.is_ascii_digit())).collect();
        keys.sort_by_key(|(k, _)| k.parse::<u32>().unwrap_or(u32::MAX));
        details = keys.into_iter().filter_map(|(_, v)| v.as_str().map(strip_tags)).collect();
    }
    (strip_tags(&message), details)
}

/// Texts of the 500 answers with which Dolibarr refuses the data of a write (contract §4).
const WRITE_REJECTIONS: &[&str] = &[
    "Error creating",
    "Error updating",
    "password",
    "foreign key constraint",
    "is required",
    "Unauthorized character",
];

/// Maps a non-success answer to an error. Decisions go by status code; message text is read only
/// where the contract says the status is ambiguous (duplicates among 500s).
pub(crate) fn map_error(op: Op, reply: &Reply) -> BackendError {
    let status = reply.status.as_u16();
    if status == 403 && reply.is_html() {
        return BackendError::Invalid("refused by Dolibarr's web application firewall".into());
    }
    let body: Option<Value> = serde_json::from_slice(&reply.body).ok();
    let (message, details) = body.as_ref().map(error_texts).unwrap_or_default();
    let text = if details.is_empty() {
        message.clone()
    } else if message.is_empty() {
        details.join("; ")
    } else {
        format!("{message}: {}", details.join("; "))
    };
    let text = if text.is_empty() { format!("HTTP {status}") } else { text };
    match status {
        401 => BackendError::Auth(text),
        403 => BackendError::Forbidden(text),
        404 => BackendError::NotFound(text),
        400 | 405 | 409 | 422 => BackendError::Invalid(text),
        500 if op == Op::Write => {
            let all = format!("{message} {}", details.join(" "));
            if all.contains("already exists") || all.contains("Duplicate entry") {
                BackendError::Conflict(text)
            } else if !details.is_empty() || WRITE_REJECTIONS.iter().any(|r| all.contains(r)) {
                // Dolibarr reports refused writes as 500 with the reason (contract §4).
                BackendError::Invalid(text)
            } else {
                // A 500 without a reason Dolibarr gives for refused data is a failure of the server:
                // the same request may succeed later.
                BackendError::Unavailable(text)
            }
        }
        500..=599 => BackendError::Unavailable(text),
        _ if body.is_none() => BackendError::Protocol(format!("HTTP {status} with a body that is not JSON")),
        _ => BackendError::Protocol(format!("HTTP {status}: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(status: u16, ct: &str, body: Value) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            content_type: ct.into(),
            body: serde_json::to_vec(&body).unwrap(),
        }
    }
    const JSON: &str = "application/json; charset=utf-8";

    #[test]
    fn statuses_map_to_variants() {
        let e = |s: u16, m: &str| reply(s, JSON, json!({"error": {"code": s, "message": m}}));
        assert!(matches!(map_error(Op::Read, &e(401, "Unauthorized: x")), BackendError::Auth(_)));
        assert_eq!(
            map_error(Op::Read, &e(403, "Forbidden: You are not allowed to read list of users")),
            BackendError::Forbidden("You are not allowed to read list of users".into())
        );
        assert!(matches!(map_error(Op::Read, &e(404, "Not Found: User not found")), BackendError::NotFound(_)));
        assert!(matches!(map_error(Op::Read, &e(503, "Service Unavailable: x")), BackendError::Unavailable(_)));
        assert!(matches!(map_error(Op::Read, &e(500, "Internal Server Error")), BackendError::Unavailable(_)));
        assert!(matches!(map_error(Op::Write, &e(400, "Bad Request: x")), BackendError::Invalid(_)));
        // A 500 on a write without a reason for refusing the data: the server failed, not the data.
        assert!(matches!(map_error(Op::Write, &e(500, "Internal Server Error")), BackendError::Unavailable(_)));
        assert!(matches!(map_error(Op::Write, &e(500, "Internal Server Error: boom")), BackendError::Unavailable(_)));
        let fk = e(500, "Internal Server Error: Cannot add or update a child row: a foreign key constraint fails");
        assert!(matches!(map_error(Op::Write, &fk), BackendError::Invalid(_)));
        let pw = e(500, "Internal Server Error: Your password must have at least <b>12</b> chars");
        assert!(matches!(map_error(Op::Write, &pw), BackendError::Invalid(_)));
    }

    #[test]
    fn create_errors() {
        let dup = reply(
            500,
            JSON,
            json!({"error": {"code": 500, "message": "Internal Server Error: Error creating", "0": "Login jdoe already exists."}}),
        );
        assert!(matches!(map_error(Op::Write, &dup), BackendError::Conflict(_)));
        let db = reply(
            500,
            JSON,
            json!({"error": {"code": 500, "message": "Internal Server Error: Duplicate entry 'jdoe-1' for key 'uk_user_login'"}}),
        );
        assert!(matches!(map_error(Op::Write, &db), BackendError::Conflict(_)));
        let policy = reply(
            500,
            JSON,
            json!({"error": {"code": 500, "message": "Internal Server Error: Error creating", "0": "Your password must have at least <b>12</b> chars"}}),
        );
        assert_eq!(
            map_error(Op::Write, &policy),
            BackendError::Invalid("Error creating: Your password must have at least 12 chars".into())
        );
    }

    #[test]
    fn waf_and_garbage() {
        let waf = Reply {
            status: StatusCode::FORBIDDEN,
            content_type: "text/html; charset=UTF-8".into(),
            body: b"Access refused".to_vec(),
        };
        assert_eq!(
            map_error(Op::Read, &waf),
            BackendError::Invalid("refused by Dolibarr's web application firewall".into())
        );
        let odd = Reply { status: StatusCode::IM_A_TEAPOT, content_type: "text/plain".into(), body: b"x".to_vec() };
        assert!(matches!(map_error(Op::Read, &odd), BackendError::Protocol(_)));
        assert!(reply(200, JSON, json!(1)).json().is_ok());
        let bad = Reply { status: StatusCode::OK, content_type: JSON.into(), body: b"<html>".to_vec() };
        assert!(matches!(bad.json(), Err(BackendError::Protocol(_))));
    }

    #[test]
    fn tags_are_stripped() {
        assert_eq!(strip_tags("at least <b>12</b> chars"), "at least 12 chars");
        assert_eq!(strip_tags("a > b"), "a > b");
    }
}
