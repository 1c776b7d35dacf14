//! What the SCIM targets share: resources shaped as idgate renders them, the configured limits, and
//! the check that a refusal is a well-formed SCIM error.
#![allow(dead_code)]

use idgate::backend::Capabilities;
use idgate::config::ScimConfig;
use idgate::scim::ScimError;
use idgate::scim::filter::Limits;
use idgate::scim::patch::{self, PatchOp};
use idgate::scim::resource::{group_fields, user_fields};
use idgate::scim::schema::ResourceDef;
use serde_json::{Value, json};

/// The limits of the default configuration.
pub fn limits() -> Limits {
    let c = ScimConfig::default();
    Limits { max_len: c.max_filter_length, max_depth: c.max_filter_depth }
}

pub fn user_def() -> ResourceDef {
    ResourceDef::user(&Capabilities::ALL)
}

pub fn group_def() -> ResourceDef {
    ResourceDef::group(&Capabilities::ALL)
}

/// A user as GET /Users/{id} shows it, with every kind of attribute: simple, complex,
/// multi-valued, boolean, read-only, and the enterprise extension.
pub fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "7", "externalId": "Ext-1", "userName": "Alice",
        "name": {"givenName": "Alice", "familyName": "Martin"},
        "displayName": "Alice Martin", "title": "Lead", "locale": "fr-FR", "active": true,
        "emails": [{"value": "alice@example.com", "type": "work"}],
        "phoneNumbers": [{"value": "+33 1", "type": "work"}, {"value": "+33 6", "type": "mobile"}],
        "groups": [{"value": "g-3", "display": "devs", "$ref": "http://localhost/scim/v2/Groups/g-3", "type": "direct"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "E42"},
        "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z",
                 "lastModified": "2025-06-01T00:00:00Z", "version": "W/\"1\""}
    })
}

/// A group as GET /Groups/{id} shows it.
pub fn group() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "g-3", "externalId": "grp-ext", "displayName": "devs",
        "members": [
            {"value": "7", "display": "Alice", "$ref": "http://localhost/scim/v2/Users/7", "type": "User"},
            {"value": "8", "display": "bob", "$ref": "http://localhost/scim/v2/Users/8", "type": "User"}
        ],
        "meta": {"resourceType": "Group", "created": "2024-01-01T00:00:00Z"}
    })
}

/// A refusal must be a client error with one of the scimType values RFC 7644 §3.12 defines for
/// it, and say why.
pub fn check_error(e: &ScimError, allowed: &[&str]) {
    assert_eq!(e.status.as_u16(), 400, "refusal with status {}: {}", e.status, e.detail);
    let t = e.scim_type.unwrap_or_else(|| panic!("refusal without scimType: {}", e.detail));
    assert!(allowed.contains(&t), "unexpected scimType {t}: {}", e.detail);
    assert!(!e.detail.is_empty());
}

/// scimType values a PATCH may be refused with.
pub const PATCH_ERRORS: &[&str] =
    &["invalidPath", "invalidValue", "invalidSyntax", "invalidFilter", "mutability", "noTarget"];

/// What PATCH /Users/{id} and /Groups/{id} do with parsed operations: apply them to a copy of
/// the resource, then read the writable fields back from the result.
pub fn apply_to_both(ops: &[PatchOp]) {
    let limits = limits();
    let _ = patch::member_removals(ops, limits);
    let mut u = user();
    match patch::apply(&mut u, ops, &user_def(), limits) {
        Ok(()) => {
            if let Err(e) = user_fields(&u, &user_def()) {
                check_error(&e, &["invalidValue", "invalidSyntax"]);
            }
        }
        Err(e) => check_error(&e, PATCH_ERRORS),
    }
    let mut g = group();
    match patch::apply(&mut g, ops, &group_def(), limits) {
        Ok(()) => {
            if let Err(e) = group_fields(&g) {
                check_error(&e, &["invalidValue", "invalidSyntax"]);
            }
        }
        Err(e) => check_error(&e, PATCH_ERRORS),
    }
}
