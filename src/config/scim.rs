//! Configuration of the SCIM 2.0 front end (`[scim]`).

use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;

/// The default URN of the custom attributes' extension schema.
pub const CUSTOM_SCHEMA: &str = "urn:idgate:params:scim:schemas:extension:custom:2.0:User";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScimConfig {
    /// Serve `/scim/v2` on the HTTP listener.
    pub enabled: bool,
    /// Bearer tokens; without any, every SCIM request is refused with 401.
    pub tokens: Vec<ScimToken>,
    /// The gateway's own durable store (externalId); relative to the config file. Without it,
    /// externalIds live in memory only and are lost on restart.
    pub state_path: Option<PathBuf>,
    /// Largest accepted request body (also advertised as the bulk maxPayloadSize).
    pub max_body_bytes: usize,
    /// Largest page; an explicit `count` above it is refused with 400 tooMany.
    pub max_results: usize,
    /// Operations per /Bulk request.
    pub bulk_max_operations: usize,
    /// Filters longer (in bytes) or deeper (nesting) than these are refused with invalidFilter.
    pub max_filter_length: usize,
    pub max_filter_depth: usize,
    /// Answer group PATCH with 204 No Content instead of 200 and the group.
    pub group_patch_no_content: bool,
    /// External base URL (e.g. `https://id.example.com/scim/v2`) for `Location` and `meta.location`;
    /// by default derived from the request's Host header.
    pub public_url: Option<String>,
    /// The SCIM extension schema of `[[directory.attributes]]`.
    pub custom_schema: String,
}

impl Default for ScimConfig {
    fn default() -> Self {
        ScimConfig {
            enabled: true,
            tokens: Vec::new(),
            state_path: None,
            max_body_bytes: 2 * 1024 * 1024,
            max_results: 1000,
            bulk_max_operations: 100,
            max_filter_length: 8192,
            max_filter_depth: 32,
            group_patch_no_content: false,
            public_url: None,
            custom_schema: CUSTOM_SCHEMA.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimToken {
    /// Names the client in the audit log.
    pub name: String,
    pub token: Secret,
    pub scope: ScimScope,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ScimScope {
    Read,
    Write,
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ScimScope};

    #[test]
    fn defaults_tokens_and_unknown_keys() {
        let c = Config::parse("[backend]\nkind=\"memory\"\n").unwrap();
        assert!(c.scim.enabled && c.scim.tokens.is_empty() && !c.scim.group_patch_no_content);
        let c = Config::parse(
            "[scim]\ngroup_patch_no_content = true\n[[scim.tokens]]\nname=\"a\"\ntoken=\"t0k3n\"\nscope=\"read\"\n[backend]\nkind=\"memory\"\n",
        )
        .unwrap();
        assert_eq!(c.scim.tokens[0].scope, ScimScope::Read);
        assert!(c.scim.group_patch_no_content);
        assert!(!format!("{:?}", c.scim).contains("t0k3n"), "tokens are secrets");
        let e = Config::parse("[scim]\nmax_result = 3\n[backend]\nkind=\"memory\"\n").unwrap_err();
        assert!(e.contains("max_result"), "{e}");
    }
}
