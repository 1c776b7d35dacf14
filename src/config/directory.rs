//! `[directory]`: what the directory publishes beyond the backend's own fields, for every front
//! end alike: which accounts stay hidden, how group membership is reported, custom attributes, and
//! how identity providers' user names become backend logins.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// `memberOf` of users (and groups): every group reached through nesting, or direct ones only.
    pub member_of: MemberOf,
    pub hidden: HiddenConfig,
    /// Backend fields published as extra attributes.
    pub attributes: Vec<CustomAttribute>,
    pub user_names: UserNameConfig,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MemberOf {
    #[default]
    Transitive,
    Direct,
}

/// Accounts kept out of the directory: never listed, never found, never able to bind. The
/// gateway's own backend account is always hidden, whatever this says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HiddenConfig {
    /// Logins (case-insensitive).
    pub logins: Vec<String>,
    /// Every account the backend flags as an administrator.
    pub admins: bool,
    /// Every account without an e-mail address.
    pub without_email: bool,
    /// Accounts the backend itself reports as system accounts (Dolibarr: those matching the
    /// backend's `system_filter`, by default the install superadmin).
    pub system: bool,
}

impl Default for HiddenConfig {
    fn default() -> Self {
        HiddenConfig { logins: Vec::new(), admins: false, without_email: false, system: true }
    }
}

/// One backend field published as an attribute.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CustomAttribute {
    /// The LDAP attribute name, also the SCIM attribute name unless `scim_name` says otherwise.
    pub name: String,
    /// The backend's field: a Dolibarr extra field's code, a Foreman or DreamFactory column, a key
    /// of the memory backend's `custom` map.
    pub field: String,
    #[serde(default)]
    pub scim_name: Option<String>,
    #[serde(default)]
    pub syntax: AttributeSyntax,
    /// Several values (a backend stores them as one text, values separated by `separator`).
    #[serde(default)]
    pub multi: bool,
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Clients with write access may change it (where the backend can store it).
    #[serde(default = "yes")]
    pub writable: bool,
    /// Equality lookups answer from an index instead of a scan.
    #[serde(default = "yes")]
    pub indexed: bool,
}

fn default_separator() -> String {
    ",".into()
}

fn yes() -> bool {
    true
}

impl CustomAttribute {
    pub fn scim_name(&self) -> &str {
        self.scim_name.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AttributeSyntax {
    #[default]
    String,
    Integer,
    Boolean,
    /// Stored as Unix seconds; LDAP GeneralizedTime, SCIM dateTime.
    Date,
}

/// How a SCIM `userName` the backend cannot take as a login becomes one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserNameConfig {
    pub rule: UserNameRule,
    /// For `replace`: what each refused character becomes.
    pub replacement: String,
}

impl Default for UserNameConfig {
    fn default() -> Self {
        UserNameConfig { rule: UserNameRule::Auto, replacement: "_".into() }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UserNameRule {
    /// The backend's own choice (Dolibarr, which refuses `@`: `local-part`; others: `as-is`).
    #[default]
    Auto,
    /// The user name is the login; a name the backend refuses is refused.
    AsIs,
    /// `jane.doe@example.com` → `jane.doe`; names without `@` stay as they are.
    LocalPart,
    /// Every character the backend refuses becomes `replacement`.
    Replace,
}
