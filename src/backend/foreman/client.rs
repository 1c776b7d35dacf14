//! HTTP plumbing for the Foreman API: Basic auth, JSON content type on every write, timeouts,
//! retries of GETs only, and the mapping of Foreman's answers to `BackendError`.

use std::time::Duration;

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::backend::BackendError;
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

/// Whether a call may be sent again after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// A GET: idempotent, no state change worth guarding.
    Safe,
    /// Writes, and logins (each one counts toward Foreman's brute-force limit).
    Never,
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: url::Url,
    username: String,
    password: Secret,
    retries: u32,
}

impl Client {
    pub fn new(cfg: &ForemanConfig) -> Result<Client, BackendError> {
        let root = cfg.url.trim_end_matches('/');
        let base = url::Url::parse(&format!("{root}/api/"))
            .map_err(|e| BackendError::Invalid(format!("invalid Foreman url {root:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(BackendError::Invalid("Foreman url must be http(s)".into()));
        }
        if !base.username().is_empty() || base.password().is_some() {
            // Credentials in the URL would end up in error messages; they belong in the config keys.
            return Err(BackendError::Invalid(
                "the Foreman url must not carry credentials; use backend.username and backend.password".into(),
            ));
        }
        if cfg.username.is_empty() || cfg.username.contains(':') {
            return Err(BackendError::Invalid("backend.username must be a Foreman login (no ':')".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .build()
            .map_err(|e| BackendError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client { http, base, username: cfg.username.clone(), password: cfg.password.clone(), retries: cfg.retries })
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// Full URL of a route; each segment is percent-encoded on its own.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<url::Url, BackendError> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| BackendError::Invalid("the Foreman url cannot be a base".into()))?;
            path.pop_if_empty();
            for s in segments {
                path.push(s);
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
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
        let retry = if method == Method::GET { retry } else { Retry::Never };
        let url = self.url(segments, query)?;
        let attempts = if retry == Retry::Safe { self.retries + 1 } else { 1 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req =
                self.http.request(method.clone(), url.clone()).basic_auth(&self.username, Some(self.password.expose()));
            let outcome = self.send(req, body).await;
            let transient = match &outcome {
                Ok(r) => matches!(r.status.as_u16(), 502..=504),
                Err(e) => e.is_transient(),
            };
            if !transient || attempt >= attempts {
                return outcome;
            }
            tracing::debug!(route = segments.first().copied().unwrap_or(""), attempt, "retrying Foreman read");
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// `GET /api/current_user` with someone else's credentials: a password check. Never retried.
    pub async fn current_user_as(&self, login: &str, password: &str) -> Result<Reply, BackendError> {
        let url = self.url(&["current_user"], &[])?;
        let req = self.http.get(url).basic_auth(login, Some(password));
        self.send(req, None).await
    }

    async fn send(&self, req: reqwest::RequestBuilder, body: Option<&Value>) -> Result<Reply, BackendError> {
        let mut req = req.header("Accept", "application/json");
        if let Some(b) = body {
            // `json` sets `Content-Type: application/json`, without which Foreman answers 415.
            req = req.json(b);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let version = resp
                    .headers()
                    .get("foreman_version")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .filter(|v| !v.is_empty());
                match resp.bytes().await {
                    Ok(b) => Ok(Reply { status, version, body: b.to_vec() }),
                    Err(e) => Err(transport_error(&e)),
                }
            }
            Err(e) => Err(transport_error(&e)),
        }
    }
}

/// Exponential backoff with jitter: about 100 ms, 200 ms, 400 ms ... capped at 5 s.
fn backoff(attempt: u32) -> Duration {
    let cap = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

/// Transport failures, described without the URL (its query may carry search values).
fn transport_error(e: &reqwest::Error) -> BackendError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "answer interrupted"
    } else {
        "request failed"
    };
    BackendError::Unavailable(format!("Foreman {what}"))
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
