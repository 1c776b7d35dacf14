//! The one mapping from internal errors to SCIM Error responses (RFC 7644 §3.12).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::schema::ERROR_URN;
use crate::backend::BackendError;
use crate::directory::DirectoryError;

/// An error as the SCIM client sees it: HTTP status, optional `scimType`, and a detail.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {detail}")]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> ScimError {
        ScimError { status, scim_type, detail: detail.into() }
    }
    pub fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> ScimError {
        ScimError::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }
    pub fn invalid_filter(detail: impl Into<String>) -> ScimError {
        ScimError::bad_request("invalidFilter", detail)
    }
    pub fn invalid_value(detail: impl Into<String>) -> ScimError {
        ScimError::bad_request("invalidValue", detail)
    }
    pub fn invalid_syntax(detail: impl Into<String>) -> ScimError {
        ScimError::bad_request("invalidSyntax", detail)
    }
    pub fn mutability(detail: impl Into<String>) -> ScimError {
        ScimError::bad_request("mutability", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> ScimError {
        ScimError::new(StatusCode::NOT_FOUND, None, detail)
    }
    pub fn not_implemented(detail: impl Into<String>) -> ScimError {
        ScimError::new(StatusCode::NOT_IMPLEMENTED, None, detail)
    }

    pub fn body(&self) -> serde_json::Value {
        let mut v = json!({"schemas": [ERROR_URN], "status": self.status.as_u16().to_string(), "detail": self.detail});
        if let Some(t) = self.scim_type {
            v["scimType"] = json!(t);
        }
        v
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut r = super::scim_json(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"idgate\""),
            );
        }
        r
    }
}

impl From<DirectoryError> for ScimError {
    fn from(e: DirectoryError) -> ScimError {
        let detail = e.to_string();
        match e.root() {
            DirectoryError::NotFound(_) => ScimError::not_found(detail),
            DirectoryError::Conflict(_) => ScimError::new(StatusCode::CONFLICT, Some("uniqueness"), detail),
            DirectoryError::Unsupported { .. } => ScimError::not_implemented(detail),
            DirectoryError::Invalid { .. } | DirectoryError::WrongPassword(_) => ScimError::invalid_value(detail),
            DirectoryError::Denied(_) => ScimError::new(StatusCode::FORBIDDEN, None, detail),
            DirectoryError::Throttled(_) => ScimError::new(StatusCode::TOO_MANY_REQUESTS, None, detail),
            DirectoryError::Precondition(_) => ScimError::new(StatusCode::PRECONDITION_FAILED, None, detail),
            DirectoryError::Unavailable { timeout: true, .. } => {
                ScimError::new(StatusCode::GATEWAY_TIMEOUT, None, detail)
            }
            DirectoryError::Unavailable { .. } | DirectoryError::Stale(_) => {
                ScimError::new(StatusCode::SERVICE_UNAVAILABLE, None, detail)
            }
            // The gateway's own backend account: a configuration problem upstream, not the client's.
            DirectoryError::Upstream { .. } => ScimError::new(StatusCode::BAD_GATEWAY, None, detail),
            DirectoryError::Partial { .. } => ScimError::new(StatusCode::INTERNAL_SERVER_ERROR, None, detail),
        }
    }
}

impl From<BackendError> for ScimError {
    fn from(e: BackendError) -> ScimError {
        DirectoryError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        let s = |e: BackendError| ScimError::from(e).status.as_u16();
        assert_eq!(s(BackendError::NotFound("x".into())), 404);
        assert_eq!(s(BackendError::Conflict("x".into())), 409);
        assert_eq!(ScimError::from(BackendError::Conflict("x".into())).scim_type, Some("uniqueness"));
        let e = ScimError::from(BackendError::Unsupported { backend: "dolibarr", what: "creating groups".into() });
        assert_eq!(e.status.as_u16(), 501);
        assert!(e.detail.contains("dolibarr") && e.detail.contains("creating groups"));
        assert_eq!(s(BackendError::Invalid("x".into())), 400);
        assert_eq!(s(BackendError::Auth("x".into())), 502);
        assert_eq!(s(BackendError::Unavailable("connection refused".into())), 503);
        assert_eq!(s(BackendError::Timeout("request timed out".into())), 504);
        assert_eq!(s(BackendError::Unavailable("request timed out".into())), 503, "variants decide, not texts");
        assert_eq!(s(BackendError::Protocol("x".into())), 502);
        assert_eq!(ScimError::from(DirectoryError::Stale("old".into())).status.as_u16(), 503);
        let b = ScimError::invalid_value("bad").body();
        assert_eq!(b["status"], "400");
        assert_eq!(b["scimType"], "invalidValue");
    }
}
