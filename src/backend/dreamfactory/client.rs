//! HTTP plumbing for DreamFactory's System API: the admin session (logged in lazily, renewed once
//! when DreamFactory answers 401), timeouts, retries of safe reads, and the mapping of DreamFactory
//! error envelopes (plain and batch) to `BackendError`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::backend::BackendError;
use crate::backend::http::Rest;
use crate::config::{DreamFactoryConfig, Secret};

const SESSION_HEADER: &str = "X-DreamFactory-Session-Token";
const API_KEY_HEADER: &str = "X-DreamFactory-API-Key";

/// One raw answer; bodies stay bytes until we decide what to show.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Result<Value, BackendError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| BackendError::Protocol(format!("DreamFactory sent a body that is not JSON ({e})")))
    }
}

pub(crate) use crate::backend::http::Retry;

/// Whether a call carries the gateway's admin session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    Admin,
    /// End-user session calls: only the given token (if any), never the gateway's.
    Token,
}

pub(crate) struct Client {
    rest: Rest,
    admin_email: String,
    admin_password: Secret,
    api_key: Option<Secret>,
    session: Mutex<Option<String>>,
}

impl Client {
    pub fn new(cfg: &DreamFactoryConfig) -> Result<Client, BackendError> {
        Ok(Client {
            rest: Rest::new("DreamFactory", &cfg.url, "api/v2/", cfg.timeout, cfg.retries)?,
            admin_email: cfg.admin_email.clone(),
            admin_password: cfg.admin_password.clone(),
            api_key: cfg.api_key.clone(),
            session: Mutex::new(None),
        })
    }

    /// Logs the gateway in as its administrator and keeps the session token.
    pub async fn login(&self) -> Result<String, BackendError> {
        let body = json!({"email": self.admin_email, "password": self.admin_password.expose(), "remember_me": false});
        let reply = self.send(Method::POST, &["system", "admin", "session"], &[], Some(&body), None, false).await?;
        match reply.status.as_u16() {
            200 => {}
            400 | 401 => {
                return Err(BackendError::Auth(format!(
                    "administrator login as {} refused ({}): check admin_email and admin_password, and that the \
                     account is an active system administrator",
                    self.admin_email,
                    error_message(&reply).unwrap_or_else(|| format!("HTTP {}", reply.status.as_u16()))
                )));
            }
            _ => return Err(map_error(&reply)),
        }
        let token = reply
            .json()?
            .get("session_token")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| BackendError::Protocol("the admin login answered without a session_token".into()))?;
        *self.session.lock().await = Some(token.clone());
        Ok(token)
    }

    async fn token(&self) -> Result<String, BackendError> {
        if let Some(t) = self.session.lock().await.clone() {
            return Ok(t);
        }
        self.login().await
    }

    /// A call with the admin session. A 401 means the session expired or was revoked (DreamFactory
    /// refuses before doing anything), so the gateway logs in again once and resends; a second 401
    /// is returned as is and maps to `Auth`.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Reply, BackendError> {
        let token = self.token().await?;
        let reply = self.send(method.clone(), segments, query, body, Some(&token), retry == Retry::Safe).await?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return Ok(reply);
        }
        {
            let mut s = self.session.lock().await;
            if s.as_deref() == Some(token.as_str()) {
                *s = None;
            }
        }
        let token = self.login().await?;
        self.send(method, segments, query, body, Some(&token), retry == Retry::Safe).await
    }

    /// A call that carries only `token` (an end user's session) or nothing, never the admin session.
    pub async fn call_as(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<Reply, BackendError> {
        self.send_inner(method, segments, &[], body, token, false, Auth::Token).await
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        token: Option<&str>,
        safe: bool,
    ) -> Result<Reply, BackendError> {
        self.send_inner(method, segments, query, body, token, safe, Auth::Admin).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_inner(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        token: Option<&str>,
        safe: bool,
        auth: Auth,
    ) -> Result<Reply, BackendError> {
        let retry = if safe { Retry::Safe } else { Retry::Never };
        let answer = self
            .rest
            .send(method, segments, query, retry, |mut req| {
                if let Some(t) = token {
                    req = req.header(SESSION_HEADER, t);
                }
                if auth == Auth::Admin
                    && let Some(k) = &self.api_key
                {
                    req = req.header(API_KEY_HEADER, k.expose());
                }
                if let Some(b) = body {
                    req = req.json(b);
                }
                req
            })
            .await?;
        Ok(Reply { status: answer.status, body: answer.body })
    }
}

/// Undoes the HTML-entity encoding DreamFactory applies to error messages (quirk 13).
pub(crate) fn decode_entities(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#039;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The message of an error body, decoded.
pub(crate) fn error_message(reply: &Reply) -> Option<String> {
    let body: Value = serde_json::from_slice(&reply.body).ok()?;
    body.pointer("/error/message").and_then(Value::as_str).map(decode_entities)
}

/// Maps one error object (`{code, context, message, status_code}`) to a variant.
fn map_error_object(status: u16, err: &Value) -> BackendError {
    let message = err.get("message").and_then(Value::as_str).map(decode_entities).unwrap_or_default();
    let text = if message.is_empty() { format!("HTTP {status}") } else { message.clone() };
    let duplicate = message.contains("has already been taken") || message.contains("SQLSTATE[23000]");
    match status {
        401 => BackendError::Auth(text),
        403 => BackendError::Forbidden(text),
        404 => BackendError::NotFound(text),
        400 | 409 | 422 if duplicate => BackendError::Conflict(text),
        409 => BackendError::Conflict(text),
        400 | 405 | 422 => BackendError::Invalid(text),
        // A unique index breaking on update surfaces as a 500 (contract §6).
        500 if duplicate => BackendError::Conflict(text),
        429 | 500..=599 => BackendError::Unavailable(text),
        _ => BackendError::Protocol(format!("HTTP {status}: {text}")),
    }
}

/// Maps a non-success answer. A batch error (400, code 1000) is replaced by the error of the
/// first failed record, so a one-record write reads like a plain error with its own status.
pub(crate) fn map_error(reply: &Reply) -> BackendError {
    let status = reply.status.as_u16();
    let Ok(body) = serde_json::from_slice::<Value>(&reply.body) else {
        return match status {
            401 => BackendError::Auth(format!("HTTP {status}")),
            429 | 500..=599 => BackendError::Unavailable(format!("HTTP {status}")),
            _ => BackendError::Protocol(format!("HTTP {status} with a body that is not JSON")),
        };
    };
    let err = body.get("error").cloned().unwrap_or(Value::Null);
    if err.get("code").and_then(Value::as_i64) == Some(1000) {
        return map_batch(&err);
    }
    map_error_object(status, &err)
}

/// Per-record errors of a batch error: the first failed record decides the variant; the message
/// names the record's index.
fn map_batch(err: &Value) -> BackendError {
    let failed: Vec<usize> = err
        .pointer("/context/error")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).map(|n| n as usize).collect())
        .unwrap_or_default();
    let results = err.pointer("/context/resource").and_then(Value::as_array);
    let Some((idx, inner)) = failed.iter().find_map(|i| results.and_then(|r| r.get(*i)).map(|v| (*i, v))) else {
        let message = err.get("message").and_then(Value::as_str).map(decode_entities).unwrap_or_default();
        return BackendError::Invalid(if message.is_empty() { "batch error".into() } else { message });
    };
    let status = inner.get("status_code").or_else(|| inner.get("code")).and_then(Value::as_u64).unwrap_or(400);
    let status = u16::try_from(status).unwrap_or(400);
    let mapped = map_error_object(status, inner);
    let ctx = |m: String| format!("record {idx}: {m}");
    match mapped {
        BackendError::NotFound(m) => BackendError::NotFound(ctx(m)),
        BackendError::Conflict(m) => BackendError::Conflict(ctx(m)),
        BackendError::Invalid(m) => BackendError::Invalid(ctx(m)),
        BackendError::Forbidden(m) => BackendError::Forbidden(ctx(m)),
        BackendError::Auth(m) => BackendError::Auth(ctx(m)),
        BackendError::Unavailable(m) => BackendError::Unavailable(ctx(m)),
        BackendError::Timeout(m) => BackendError::Timeout(ctx(m)),
        BackendError::Protocol(m) => BackendError::Protocol(ctx(m)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: Value) -> Reply {
        Reply { status: StatusCode::from_u16(status).unwrap(), body: serde_json::to_vec(&body).unwrap() }
    }
    fn plain(status: u16, message: &str) -> Reply {
        reply(status, json!({"error": {"code": status, "context": null, "message": message, "status_code": status}}))
    }

    #[test]
    fn statuses_map_to_variants() {
        assert!(matches!(map_error(&plain(401, "Token has expired")), BackendError::Auth(_)));
        assert!(matches!(map_error(&plain(403, "Not allowed")), BackendError::Forbidden(_)));
        assert!(matches!(map_error(&plain(404, "Record with identifier '9' not found.")), BackendError::NotFound(_)));
        assert!(matches!(map_error(&plain(503, "down")), BackendError::Unavailable(_)));
        assert!(matches!(map_error(&plain(500, "boom")), BackendError::Unavailable(_)));
        assert!(matches!(
            map_error(&plain(500, "Failed to update resource: SQLSTATE[23000]: Integrity constraint violation")),
            BackendError::Conflict(_)
        ));
        assert!(matches!(map_error(&plain(400, "Invalid data supplied.")), BackendError::Invalid(_)));
        let garbage = Reply { status: StatusCode::BAD_GATEWAY, body: b"<html>".to_vec() };
        assert!(matches!(map_error(&garbage), BackendError::Unavailable(_)));
    }

    #[test]
    fn batch_errors_become_the_failed_records_error() {
        let dup = reply(
            400,
            json!({"error": {"code": 1000, "status_code": 400, "message": "Batch Error: Not all requested records could be created.",
                "context": {"error": [0], "resource": [{"code": 400, "status_code": 400,
                    "context": {"username": ["The username has already been taken."]},
                    "message": "Invalid data supplied. The username has already been taken."}]}}}),
        );
        assert_eq!(
            map_error(&dup),
            BackendError::Conflict("record 0: Invalid data supplied. The username has already been taken.".into())
        );
        let missing = reply(
            400,
            json!({"error": {"code": 1000, "status_code": 400, "message": "Batch Error",
                "context": {"error": [1], "resource": [{"id": 7}, {"code": 404, "status_code": 404, "context": null,
                    "message": "Record with identifier '99' not found."}]}}}),
        );
        assert!(matches!(map_error(&missing), BackendError::NotFound(m) if m.starts_with("record 1:")));
    }

    #[test]
    fn entities_are_decoded() {
        assert_eq!(decode_entities("{&quot;a&quot;:1} &lt;b&gt; &amp;"), "{\"a\":1} <b> &");
        let r = plain(400, "wrapped in a &#039;resource&#039; tag. {&quot;resource&quot;:[]}");
        assert_eq!(error_message(&r).as_deref(), Some("wrapped in a 'resource' tag. {\"resource\":[]}"));
    }
}
