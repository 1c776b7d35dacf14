//! Typed configuration: TOML with every unknown key rejected, relative paths resolved against the
//! config file's folder, and every secret readable from the environment or a file.

mod directory;
mod duration;
mod scim;
mod secret;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use directory::{
    AttributeSyntax, CustomAttribute, DirectoryConfig, HiddenConfig, MemberOf, UserNameConfig, UserNameRule,
};
pub use scim::{ScimConfig, ScimScope, ScimToken};
pub use secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub ldap: LdapConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub bind_throttle: ThrottleConfig,
    #[serde(default)]
    pub scim: ScimConfig,
    #[serde(default)]
    pub directory: DirectoryConfig,
    /// How long a graceful shutdown may take before what still runs is cancelled.
    #[serde(default = "default_shutdown_timeout", with = "duration")]
    pub shutdown_timeout: Duration,
    pub backend: BackendConfig,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Human, level: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    pub listen: SocketAddr,
    pub base_dn: String,
    /// RDN of the users container under the base, e.g. `ou=people`.
    pub users_rdn: String,
    pub groups_rdn: String,
    pub services_rdn: String,
    /// When set, `login@bind_domain` is accepted as a bind name.
    pub bind_domain: Option<String>,
    /// Let anonymous clients read the tree like a `read` service account.
    pub allow_anonymous: bool,
    /// Open connections at most, the LDAP and LDAPS listeners together; beyond it new connections
    /// get a `busy` notice and are closed. Lowered at start when the descriptor limit is too low.
    pub max_connections: usize,
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Largest accepted LDAP message (BER) in bytes.
    pub max_message_bytes: usize,
    /// Server-side cap on entries per search (0 = none); the client's sizeLimit may lower it.
    pub size_limit: usize,
    #[serde(with = "duration")]
    pub time_limit: Duration,
    /// Filters deeper or larger than these are refused with a clear error.
    pub max_filter_depth: usize,
    pub max_filter_terms: usize,
    /// Open paged-search cookies kept per connection.
    pub max_paged_searches: usize,
    pub uid_number_base: u32,
    pub gid_number_base: u32,
    /// gidNumber of every user's primary group.
    pub user_gid_number: u32,
    /// Name of the group published with `user_gid_number` and every user in `memberUid`.
    pub primary_group: String,
    /// Instead: each user's primary group is a group of its own, named like the user, with
    /// gidNumber = uidNumber.
    pub private_groups: bool,
    pub login_shell: String,
    /// `{login}` is replaced by the user's login.
    pub home_directory: String,
    pub service_accounts: Vec<ServiceAccount>,
    /// Offer StartTLS on the plain listener.
    pub starttls: bool,
    /// LDAPS listener (TLS from the first byte); none by default.
    pub ldaps_listen: Option<SocketAddr>,
    /// PEM certificate chain and key; with neither, a self-signed certificate is generated at start.
    /// Both are reloaded on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Refuse binds and operations over plain text (confidentialityRequired).
    pub require_tls: bool,
    /// Shortest password accepted by idgate itself (the backend may demand more).
    pub password_min_length: usize,
    /// Users may change their own password (Password Modify or a userPassword modify).
    pub users_may_change_password: bool,
    /// A user changing their own password must prove the old one.
    pub self_password_change_requires_old: bool,
    /// What an LDAP Delete of a user does: `delete` it in the backend, or `disable` it.
    pub delete_mode: DeleteMode,
    /// Bytes all connections together may hold of messages still arriving; beyond it, a connection
    /// sending a large message is closed with `busy`.
    pub max_pending_bytes: usize,
    /// Bytes all connections together may hold in open paged searches; beyond it, a new paged
    /// search that needs to keep state is refused with adminLimitExceeded.
    pub max_paged_state_bytes: usize,
    /// Costly searches (large filters over many entries) evaluated at once, server-wide; they run
    /// off the request workers so that other clients stay responsive.
    pub costly_searches: usize,
    /// Costly searches one principal may have running at once; more wait for their turn.
    pub costly_searches_per_principal: usize,
    /// DN of the published password-policy entry (`pwdLockout: TRUE`) that ppolicy-aware clients
    /// read; default `cn=ppolicy,ou=policies,<base_dn>`.
    pub ppolicy_dn: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeleteMode {
    #[default]
    Delete,
    Disable,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            listen: "127.0.0.1:3389".parse().expect("static address"),
            base_dn: "dc=example,dc=com".into(),
            users_rdn: "ou=people".into(),
            groups_rdn: "ou=groups".into(),
            services_rdn: "ou=services".into(),
            bind_domain: None,
            allow_anonymous: false,
            max_connections: 4096,
            idle_timeout: Duration::from_secs(300),
            max_message_bytes: 4 * 1024 * 1024,
            size_limit: 0,
            time_limit: Duration::from_secs(60),
            max_filter_depth: 64,
            max_filter_terms: 20_000,
            max_paged_searches: 16,
            uid_number_base: 10_000,
            gid_number_base: 20_000,
            user_gid_number: 10_000,
            primary_group: "users".into(),
            private_groups: false,
            login_shell: "/bin/bash".into(),
            home_directory: "/home/{login}".into(),
            service_accounts: Vec::new(),
            starttls: false,
            ldaps_listen: None,
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            password_min_length: 8,
            users_may_change_password: true,
            self_password_change_requires_old: true,
            delete_mode: DeleteMode::Delete,
            max_pending_bytes: 64 * 1024 * 1024,
            max_paged_state_bytes: 256 * 1024 * 1024,
            costly_searches: 1,
            costly_searches_per_principal: 1,
            ppolicy_dn: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccount {
    /// The account binds as `cn=<name>,<services_rdn>,<base_dn>`.
    pub name: String,
    pub password: Secret,
    /// `"read"` or `"write"` on the whole tree, or per subtree: `{ users = "write", groups = "read" }`.
    pub access: Rights,
    /// Source networks the account may bind from (`["10.0.0.0/8", "::1/128"]`); empty: anywhere.
    /// Binds from elsewhere fail like a wrong password and never count against the account.
    #[serde(default)]
    pub networks: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    None,
    Read,
    Write,
}

/// What a service account may do with users and with groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rights {
    pub users: Access,
    pub groups: Access,
}

impl Rights {
    pub const fn all(a: Access) -> Rights {
        Rights { users: a, groups: a }
    }

    /// `read`, `write`, or `users: write, groups: read`.
    pub fn describe(&self) -> String {
        let name = |a: Access| format!("{a:?}").to_lowercase();
        if self.users == self.groups {
            name(self.users)
        } else {
            format!("users: {}, groups: {}", name(self.users), name(self.groups))
        }
    }
}

impl<'de> Deserialize<'de> for Rights {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rights, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Split {
            #[serde(default = "no_access")]
            users: Access,
            #[serde(default = "no_access")]
            groups: Access,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            All(Access),
            Split(Split),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("access must be \"read\", \"write\" or { users = \"...\", groups = \"...\" }")
        })? {
            Raw::All(a) => Ok(Rights::all(a)),
            Raw::Split(s) => Ok(Rights { users: s.users, groups: s.groups }),
        }
    }
}

fn no_access() -> Access {
    Access::None
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Open HTTP connections at most; beyond it new connections are closed at once. Lowered at
    /// start when the descriptor limit is too low.
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    #[serde(with = "duration")]
    pub header_timeout: Duration,
    /// Time a client has to send a request's body.
    #[serde(with = "duration")]
    pub body_timeout: Duration,
    /// Time a request may take from its headers to its response.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".parse().expect("static address"),
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Only `snapshot` today.
    pub mode: CacheMode,
    /// Incremental refresh period (changed users; groups are re-read).
    #[serde(with = "duration")]
    pub refresh_interval: Duration,
    /// Full reload period, which also notices deletions.
    #[serde(with = "duration")]
    pub full_refresh_interval: Duration,
    /// Beyond this age without a successful refresh, reads answer "unavailable" instead of lying.
    #[serde(with = "duration")]
    pub max_stale: Duration,
    /// How long a successful backend password check is remembered (as a keyed hash).
    #[serde(with = "duration")]
    pub bind_cache_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            mode: CacheMode::Snapshot,
            refresh_interval: Duration::from_secs(30),
            full_refresh_interval: Duration::from_secs(600),
            max_stale: Duration::from_secs(3600),
            bind_cache_ttl: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    Snapshot,
}

/// Failed-bind throttling: growing delays on failures, never a lockout (see the README's Security
/// section). Counters are kept per (name, address), per name and per address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Failures of one name from one address before that pair's failures are slowed down.
    pub pair_free_failures: u32,
    /// Failures of one name from every address together before failures of that name from
    /// addresses that have not bound it recently are slowed down.
    pub name_free_failures: u32,
    /// Failures from one address (any names) before its failures are slowed down. Its correct
    /// passwords never are.
    pub address_free_failures: u32,
    /// The first delay; each further failure doubles it, up to `max_delay`.
    #[serde(with = "duration")]
    pub first_delay: Duration,
    #[serde(with = "duration")]
    pub max_delay: Duration,
    /// The per-address delay stays below this, so one shared address is slowed, never stopped.
    #[serde(with = "duration")]
    pub max_address_delay: Duration,
    /// A counter is forgotten after this long without a failure.
    #[serde(with = "duration")]
    pub forget_after: Duration,
    /// An address that bound a name successfully is exempt from that name's and its own
    /// counters for this long.
    #[serde(with = "duration")]
    pub trusted_for: Duration,
    /// Every failed bind takes at least this long (answers are padded to the backend's usual
    /// failure time anyway, so that they do not tell which accounts exist).
    #[serde(with = "duration")]
    pub min_failure_time: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            pair_free_failures: 5,
            name_free_failures: 20,
            address_free_failures: 30,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_address_delay: Duration::from_secs(5),
            forget_after: Duration::from_secs(900),
            trusted_for: Duration::from_secs(86_400),
            min_failure_time: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackendConfig {
    Memory(MemoryConfig),
    Dolibarr(DolibarrConfig),
    Foreman(ForemanConfig),
    Dreamfactory(DreamFactoryConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Seed file (JSON); relative to the config file.
    pub seed: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DolibarrConfig {
    /// Root of the Dolibarr install, e.g. `https://erp.example.com` (the API is under `/api/index.php`).
    pub url: String,
    pub api_key: Secret,
    /// Multicompany entity (`DOLAPIENTITY`); none for single-entity installs.
    #[serde(default)]
    pub entity: Option<u32>,
    #[serde(default = "default_backend_timeout", with = "duration")]
    pub timeout: Duration,
    /// Retries of idempotent reads after a transient failure.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Page size for list calls.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// The backend's system accounts, as a Dolibarr `sqlfilters` expression on `llx_user` (alias
    /// `t`). Unset: `(t.entity:=:0)`, the install-time superadmin. Empty: none.
    #[serde(default)]
    pub system_filter: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForemanConfig {
    /// Root of the Foreman install, e.g. `https://foreman.example.com` (the API is under `/api`).
    pub url: String,
    /// Login of the gateway's Foreman account (an admin is recommended, see the README).
    pub username: String,
    /// Its password or a personal access token; sent with HTTP Basic on every call.
    pub password: Secret,
    /// Default 10 s; applies to every call.
    #[serde(default = "default_backend_timeout", with = "duration")]
    pub timeout: Duration,
    /// Retries of idempotent reads (GET) after a transient failure; default 2.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// `per_page` for list calls; default 100.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Password checks that may fail in a burst before further checks are refused without calling
    /// Foreman; default 10. The budget refills at the same number per `failed_check_window`, so at
    /// most twice this many failures reach Foreman in any window. Foreman locks out the gateway's
    /// address (its own account included) after 30 failures in 5 minutes: keep 2 × this well below.
    #[serde(default = "default_failed_check_burst")]
    pub failed_check_burst: u32,
    /// Default 5 min, Foreman's own counting window.
    #[serde(default = "default_failed_check_window", with = "duration")]
    pub failed_check_window: Duration,
}

fn default_failed_check_burst() -> u32 {
    10
}
fn default_failed_check_window() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DreamFactoryConfig {
    /// Root of the DreamFactory instance, e.g. `https://df.example.com` (the API is under `/api/v2`).
    pub url: String,
    /// A system administrator the gateway logs in as (`POST /api/v2/system/admin/session`).
    pub admin_email: String,
    pub admin_password: Secret,
    /// Optional app API key sent with every System API call (`X-DreamFactory-API-Key`).
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// The app whose role assignments are the gateway's groups (a user holds one role per app).
    pub app_id: u64,
    /// Which user column is the login: `email` (DreamFactory's default) or `username`
    /// (instances with `DF_LOGIN_ATTRIBUTE=username`).
    #[serde(default)]
    pub login_attribute: DreamFactoryLogin,
    #[serde(default = "default_backend_timeout", with = "duration")]
    pub timeout: Duration,
    /// Retries of idempotent reads after a transient failure.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Page size (`limit`) for list calls.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DreamFactoryLogin {
    #[default]
    Email,
    Username,
}

fn default_backend_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retries() -> u32 {
    2
}
fn default_page_size() -> u32 {
    100
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut cfg = Config::parse(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        for p in [&mut cfg.ldap.tls_cert, &mut cfg.ldap.tls_key].into_iter().flatten() {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        if let BackendConfig::Memory(m) = &mut cfg.backend
            && let Some(seed) = &m.seed
            && seed.is_relative()
        {
            m.seed = Some(dir.join(seed));
        }
        if let Some(p) = &cfg.scim.state_path
            && p.is_relative()
        {
            cfg.scim.state_path = Some(dir.join(p));
        }
        cfg.validate().map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        Ok(cfg)
    }

    /// Parses TOML text; secrets are resolved from the environment here.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks what the config module itself understands. The DN syntax of `ldap.base_dn` and the
    /// `ldap.*_rdn` keys belongs to the LDAP front end, which checks it (`ldap::validate`).
    fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for sa in &self.ldap.service_accounts {
            if sa.name.is_empty() || !names.insert(sa.name.to_ascii_lowercase()) {
                return Err(format!("ldap.service_accounts: empty or duplicate name {:?}", sa.name));
            }
        }
        if self.ldap.tls_cert.is_some() != self.ldap.tls_key.is_some() {
            return Err("ldap.tls_cert and ldap.tls_key go together".into());
        }
        if self.ldap.require_tls && !self.ldap.starttls && self.ldap.ldaps_listen.is_none() {
            return Err("ldap.require_tls needs ldap.starttls or ldap.ldaps_listen".into());
        }
        if self.ldap.max_message_bytes < 1024 {
            return Err("ldap.max_message_bytes: at least 1024".into());
        }
        let mut tokens = std::collections::HashSet::new();
        for t in &self.scim.tokens {
            if t.name.is_empty() || t.token.expose().is_empty() || !tokens.insert(t.name.to_ascii_lowercase()) {
                return Err(format!("scim.tokens: empty or duplicate name {:?}, or an empty token", t.name));
            }
        }
        if self.scim.max_results == 0 || self.scim.bulk_max_operations == 0 || self.scim.max_body_bytes < 1024 {
            return Err(
                "scim: max_results and bulk_max_operations must be positive, max_body_bytes at least 1024".into()
            );
        }
        if self.ldap.max_connections == 0 || self.http.max_connections == 0 {
            return Err("ldap.max_connections and http.max_connections must be positive".into());
        }
        let h = &self.http;
        if [h.header_timeout, h.body_timeout, h.request_timeout, h.idle_timeout].contains(&Duration::ZERO) {
            return Err("http: header_timeout, body_timeout, request_timeout and idle_timeout must be positive".into());
        }
        if self.cache.max_stale < self.cache.refresh_interval {
            return Err("cache.max_stale must be at least cache.refresh_interval".into());
        }
        let mut attrs = std::collections::HashSet::new();
        for a in &self.directory.attributes {
            let well_formed = |n: &str| {
                n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            };
            if !well_formed(&a.name) || !well_formed(a.scim_name()) || a.field.trim().is_empty() {
                return Err(format!(
                    "directory.attributes: {:?} needs a name of letters, digits and '-' starting with a letter, and a field",
                    a.name
                ));
            }
            if !attrs.insert(a.name.to_ascii_lowercase()) {
                return Err(format!("directory.attributes: {} is listed twice", a.name));
            }
        }
        if self.directory.user_names.rule == UserNameRule::Replace
            && self.directory.user_names.replacement.chars().any(|c| c.is_control() || "@,<>\"'".contains(c))
        {
            return Err("directory.user_names.replacement: must not itself be a refused character".into());
        }
        if !self.scim.custom_schema.starts_with("urn:") {
            return Err("scim.custom_schema must be a URN".into());
        }
        if self.ldap.primary_group.trim().is_empty() {
            return Err("ldap.primary_group must not be empty".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse("[backend]\nkind = \"memory\"\n").unwrap();
        assert_eq!(c.ldap.listen.port(), 3389);
        assert_eq!(c.cache.refresh_interval, Duration::from_secs(30));
        assert!(matches!(c.backend, BackendConfig::Memory(_)));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse("[ldap]\nlisten_addr = \"x\"\n[backend]\nkind=\"memory\"\n").unwrap_err();
        assert!(e.contains("listen_addr"), "{e}");
        let e = Config::parse("[backend]\nkind = \"memory\"\nseeds = \"x\"\n").unwrap_err();
        assert!(e.contains("seeds"), "{e}");
        let e = Config::parse("bogus = 1\n[backend]\nkind = \"memory\"\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn durations_and_secrets() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("IDGATE_TEST_SECRET_A", "from-env") };
        let c = Config::parse(
            r#"
            [cache]
            refresh_interval = "2m"
            max_stale = "1h"
            [[ldap.service_accounts]]
            name = "a"
            password = { env = "IDGATE_TEST_SECRET_A" }
            access = "read"
            [[ldap.service_accounts]]
            name = "b"
            password = "literal"
            access = "write"
            [backend]
            kind = "memory"
            "#,
        )
        .unwrap();
        assert_eq!(c.cache.refresh_interval, Duration::from_secs(120));
        assert_eq!(c.ldap.service_accounts[0].password.expose(), "from-env");
        assert_eq!(c.ldap.service_accounts[0].access, Rights::all(Access::Read));
        assert_eq!(c.ldap.service_accounts[1].password.expose(), "literal");
        assert!(!format!("{:?}", c.ldap.service_accounts).contains("literal"));
    }

    #[test]
    fn shipped_configs_are_valid() {
        // SAFETY: only this test reads these variables.
        unsafe {
            for v in [
                "IDGATE_DOLIBARR_API_KEY",
                "IDGATE_FOREMAN_PASSWORD",
                "IDGATE_DREAMFACTORY_ADMIN_PASSWORD",
                "IDGATE_DREAMFACTORY_API_KEY",
                "IDGATE_LDAP_ADMIN_PASSWORD",
                "IDGATE_LDAP_READER_PASSWORD",
                "IDGATE_SCIM_TOKEN",
            ] {
                std::env::set_var(v, "x");
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut n = 0;
        for dir in [root.join("config"), root.join("docker")] {
            for f in std::fs::read_dir(&dir).unwrap() {
                let p = f.unwrap().path();
                if p.extension().is_some_and(|e| e == "toml") {
                    Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
                    n += 1;
                }
            }
        }
        assert!(n >= 5, "demo, dolibarr, dreamfactory, foreman and container configs");
    }

    #[test]
    fn rights_per_subtree() {
        let c = Config::parse(
            "[[ldap.service_accounts]]\nname=\"k\"\npassword=\"p\"\naccess={users=\"write\"}\n[backend]\nkind=\"memory\"\n",
        )
        .unwrap();
        assert_eq!(c.ldap.service_accounts[0].access, Rights { users: Access::Write, groups: Access::None });
        let e = Config::parse(
            "[[ldap.service_accounts]]\nname=\"k\"\npassword=\"p\"\naccess=\"admin\"\n[backend]\nkind=\"memory\"\n",
        )
        .unwrap_err();
        assert!(e.contains("access must be"), "{e}");
    }

    #[test]
    fn connection_caps_and_http_timeouts_must_be_positive() {
        let base = "[backend]\nkind = \"memory\"\n";
        assert!(Config::parse(base).unwrap().validate().is_ok());
        for bad in
            ["[http]\nmax_connections = 0\n", "[ldap]\nmax_connections = 0\n", "[http]\nheader_timeout = \"0s\"\n"]
        {
            let e = Config::parse(&format!("{bad}{base}")).unwrap().validate().unwrap_err();
            assert!(e.contains("must be positive"), "{bad}: {e}");
        }
    }

    #[test]
    fn missing_env_secret_is_an_error_naming_the_variable() {
        let e = Config::parse(
            "[[ldap.service_accounts]]\nname=\"a\"\npassword={env=\"IDGATE_TEST_UNSET_VAR\"}\naccess=\"read\"\n[backend]\nkind=\"memory\"\n",
        )
        .unwrap_err();
        assert!(e.contains("IDGATE_TEST_UNSET_VAR"), "{e}");
    }
}
