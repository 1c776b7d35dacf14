//! HTTP plumbing for the Foreman API: Basic auth, JSON content type on every write, timeouts,
//! retries of GETs only, and the mapping of Foreman's answers to `BackendError`.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::backend::BackendError;
use crate::backend::http::{Answer, Rest};
use crate::config::{ForemanConfig, Secret};

/// One raw answer, kept as bytes until we decide what to show of it.
pub(crate) struct Reply {
    pub status: StatusCode,
    /// The `Foreman_version` response header, when sent.
    pub version: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Result<Value, BackendError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| BackendError::Protocol(format!("Foreman sent a body that is not JSON ({e})")))
    }
}

pub(crate) use crate::backend::http::Retry;

pub(crate) struct Client {
    rest: Rest,
    username: String,
    password: Secret,
}

impl Client {
    pub fn new(cfg: &ForemanConfig) -> Result<Client, BackendError> {
        let rest = Rest::new("Foreman", &cfg.url, "api/", cfg.timeout, cfg.retries)?;
        let root = rest.url(&[], &[])?;
        if !root.username().is_empty() || root.password().is_some() {
            // Credentials in the URL would end up in error messages; they belong in the config keys.
            return Err(BackendError::Invalid(
                "the Foreman url must not carry credentials; use backend.username and backend.password".into(),
            ));
        }
        if cfg.username.is_empty() || cfg.username.contains(':') {
            return Err(BackendError::Invalid("backend.username must be a Foreman login (no ':')".into()));
        }
        Ok(Client { rest, username: cfg.username.clone(), password: cfg.password.clone() })
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// One call as the gateway's account. Returns any HTTP answer; only transport failures become
    /// errors here. GETs (`Retry::Safe`) are retried on transport failures and 502/503/504.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Reply, BackendError> {
        let answer = self
            .rest
            .send(method, segments, query, retry, |req| {
                let req = req.basic_auth(&self.username, Some(self.password.expose()));
                // `json` sets `Content-Type: application/json`, without which Foreman answers 415.
                if let Some(b) = body { req.json(b) } else { req }
            })
            .await?;
        Ok(Reply::from(answer))
    }

    /// `GET /api/current_user` with someone else's credentials: a password check. Never retried.
    pub async fn current_user_as(&self, login: &str, password: &str) -> Result<Reply, BackendError> {
        let url = self.rest.url(&["current_user"], &[])?;
        let req = self.rest.request(Method::GET, url).basic_auth(login, Some(password));
        Ok(Reply::from(self.rest.send_once(req).await?))
    }
}

impl From<Answer> for Reply {
    fn from(a: Answer) -> Reply {
        let version = a
            .headers
            .get("foreman_version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .filter(|v| !v.is_empty());
        Reply { status: a.status, version, body: a.body }
    }
}

/// The text Foreman locks an address out with (contract §3).
pub(crate) const TOO_MANY_TRIES: &str = "Too many tries";

/// The message of an error body: `error.message` (+ `details`), the 422 `full_messages`, or the
/// unwrapped 400 form `{"status":400,"error":"..."}`.
pub(crate) fn error_text(body: &Value) -> String {
    let err = body.get("error").unwrap_or(body);
    if let Some(s) = err.as_str() {
        return s.to_string();
    }
    if let Some(list) = err.get("full_messages").and_then(Value::as_array) {
        let msgs: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
        if !msgs.is_empty() {
            return msgs.join("; ");
        }
    }
    let message = err.get("message").and_then(Value::as_str).unwrap_or("");
    match err.get("details").and_then(Value::as_str) {
        Some(d) if !message.is_empty() => format!("{message}: {d}"),
        Some(d) => d.to_string(),
        None => message.to_string(),
    }
}

/// 422 errors that are uniqueness failures (contract §5.1, §6.1).
fn is_uniqueness(body: &Value) -> bool {
    let Some(errors) = body.pointer("/error/errors").and_then(Value::as_object) else {
        return false;
    };
    errors.values().filter_map(Value::as_array).flatten().filter_map(Value::as_str).any(|m| {
        m.contains("already exists")
            || m.contains("has already been taken")
            || m.contains("already used by a user account")
            || m.contains("user group already exists")
    })
}

/// Maps a non-success answer to an error, by status code. Message text is read only for the two
/// ambiguous cases: a 401 that is the address lock-out, and a 422 that is a uniqueness failure.
pub(crate) fn map_error(reply: &Reply) -> BackendError {
    let status = reply.status.as_u16();
    let body: Option<Value> = serde_json::from_slice(&reply.body).ok();
    let text = body.as_ref().map(error_text).unwrap_or_default();
    let text = if text.is_empty() { format!("HTTP {status}") } else { text };
    match status {
        401 if text.contains(TOO_MANY_TRIES) => BackendError::Unavailable(format!(
            "Foreman refuses logins from the gateway's address for a few minutes (too many failed logins): {text}"
        )),
        401 => BackendError::Auth(text),
        403 => BackendError::Forbidden(text),
        404 => BackendError::NotFound(text),
        422 if body.as_ref().is_some_and(is_uniqueness) => BackendError::Conflict(text),
        400 | 422 => BackendError::Invalid(text),
        415 => BackendError::Protocol(format!("Foreman refused the request's media type: {text}")),
        500..=599 => BackendError::Unavailable(text),
        _ if body.is_none() => BackendError::Protocol(format!("HTTP {status} with a body that is not JSON")),
        _ => BackendError::Protocol(format!("HTTP {status}: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(status: u16, body: Value) -> Reply {
        Reply { status: StatusCode::from_u16(status).unwrap(), version: None, body: serde_json::to_vec(&body).unwrap() }
    }

    #[test]
    fn statuses_map_to_variants() {
        let msg = |m: &str| json!({"error": {"message": m}});
        assert_eq!(
            map_error(&reply(401, msg("Unable to authenticate user idgate"))),
            BackendError::Auth("Unable to authenticate user idgate".into())
        );
        assert!(matches!(
            map_error(&reply(401, msg("Too many tries, please try again in a few minutes."))),
            BackendError::Unavailable(_)
        ));
        let denied = json!({"error": {"message": "Access denied", "details": "Missing one of the required permissions: edit_users", "missing_permissions": ["edit_users"]}});
        assert_eq!(
            map_error(&reply(403, denied)),
            BackendError::Forbidden("Access denied: Missing one of the required permissions: edit_users".into())
        );
        assert!(matches!(map_error(&reply(404, msg("Resource user not found by id '9'"))), BackendError::NotFound(_)));
        assert!(matches!(map_error(&reply(503, msg("x"))), BackendError::Unavailable(_)));
        assert!(matches!(map_error(&reply(500, msg("x"))), BackendError::Unavailable(_)));
        assert!(matches!(map_error(&reply(415, msg("x"))), BackendError::Protocol(_)));
        assert_eq!(
            map_error(&reply(400, json!({"status": 400, "error": "There was a problem in the JSON you submitted"}))),
            BackendError::Invalid("There was a problem in the JSON you submitted".into())
        );
    }

    #[test]
    fn validation_errors() {
        let taken = json!({"error": {"id": null, "errors": {"login": ["already exists"]}, "full_messages": ["Login already exists"]}});
        assert_eq!(map_error(&reply(422, taken)), BackendError::Conflict("Login already exists".into()));
        let clash = json!({"error": {"id": null, "errors": {"name": ["is already used by a user account"]}, "full_messages": ["Name is already used by a user account"]}});
        assert!(matches!(map_error(&reply(422, clash)), BackendError::Conflict(_)));
        let blank = json!({"error": {"id": 11, "errors": {"mail": ["can't be blank"]}, "full_messages": ["Mail can't be blank"]}});
        assert_eq!(map_error(&reply(422, blank)), BackendError::Invalid("Mail can't be blank".into()));
        let garbage = Reply { status: StatusCode::IM_A_TEAPOT, version: None, body: b"<html>".to_vec() };
        assert!(matches!(map_error(&garbage), BackendError::Protocol(_)));
    }
}
