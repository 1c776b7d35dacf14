//! Discovery (RFC 7644 §4): ServiceProviderConfig, ResourceTypes and Schemas, read-only and built
//! from the same resource definitions the endpoints validate against.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ScimError;
use super::schema::{Kind, LIST_URN, ResourceDef};
use super::{ScimState, St, scim_json};

pub(super) async fn method_not_allowed() -> Response {
    let mut r =
        ScimError::new(StatusCode::METHOD_NOT_ALLOWED, None, "discovery endpoints are read-only").into_response();
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
    r
}

pub(super) async fn service_provider_config(State(s): St, h: HeaderMap) -> Response {
    let base = s.base(&h);
    let caps = s.dir.capabilities();
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": true},
            "bulk": {"supported": true, "maxOperations": s.cfg.bulk_max_operations, "maxPayloadSize": s.cfg.max_body_bytes},
            "filter": {"supported": true, "maxResults": s.cfg.max_results},
            "changePassword": {"supported": caps.password_set},
            "sort": {"supported": true},
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "A static bearer token from the gateway's configuration",
                "primary": true,
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
        }),
    )
}

fn list_of(items: Vec<Value>) -> Value {
    json!({"schemas": [LIST_URN], "totalResults": items.len(), "startIndex": 1, "itemsPerPage": items.len(), "Resources": items})
}

fn all_defs(s: &ScimState) -> [ResourceDef; 2] {
    [s.def(Kind::User), s.def(Kind::Group)]
}

pub(super) async fn resource_types(State(s): St, h: HeaderMap) -> Response {
    let base = s.base(&h);
    scim_json(StatusCode::OK, &list_of(all_defs(&s).iter().map(|d| d.resource_type_json(&base)).collect()))
}

pub(super) async fn resource_type(State(s): St, Path(id): Path<String>, h: HeaderMap) -> Response {
    let base = s.base(&h);
    match all_defs(&s).iter().find(|d| d.kind.name().eq_ignore_ascii_case(&id)) {
        Some(d) => scim_json(StatusCode::OK, &d.resource_type_json(&base)),
        None => ScimError::not_found(format!("no resource type {id:?}")).into_response(),
    }
}

fn all_schemas(s: &ScimState, base: &str) -> Vec<Value> {
    all_defs(s).iter().flat_map(|d| d.schema_json(base)).collect()
}

pub(super) async fn schemas(State(s): St, h: HeaderMap) -> Response {
    scim_json(StatusCode::OK, &list_of(all_schemas(&s, &s.base(&h))))
}

pub(super) async fn schema_by_id(State(s): St, Path(id): Path<String>, h: HeaderMap) -> Response {
    match all_schemas(&s, &s.base(&h))
        .into_iter()
        .find(|v| v["id"].as_str().is_some_and(|i| i.eq_ignore_ascii_case(&id)))
    {
        Some(v) => scim_json(StatusCode::OK, &v),
        None => ScimError::not_found(format!("no schema {id:?}")).into_response(),
    }
}
