//! The LDAP v3 front end.

pub mod attrs;
pub mod codec;
pub mod dit;
pub mod dn;
pub mod error;
pub mod filter;
pub mod matching;
mod ops;
pub mod schema;
pub mod server;
pub mod session;
pub mod tls;

use crate::config::LdapConfig;

/// Checks the tree settings of a config: `ldap.base_dn` must be a DN and each `ldap.*_rdn` a single
/// RDN. Errors name the key. Run wherever a config is loaded to serve or to be checked.
pub fn validate(cfg: &LdapConfig) -> Result<(), String> {
    dn::Dn::parse(&cfg.base_dn).map_err(|e| format!("ldap.base_dn: {e}"))?;
    for (key, rdn) in [
        ("ldap.users_rdn", &cfg.users_rdn),
        ("ldap.groups_rdn", &cfg.groups_rdn),
        ("ldap.services_rdn", &cfg.services_rdn),
    ] {
        let dn = dn::Dn::parse(rdn).map_err(|e| format!("{key}: {e}"))?;
        if dn.len() != 1 {
            return Err(format!("{key}: must be a single RDN such as ou=people, got {rdn:?}"));
        }
    }
    dit::DitSettings::new(cfg, "", "").map(|_| ())
}

/// Checks that custom attributes (`[[directory.attributes]]`) do not take the name of a standard
/// LDAP attribute, which the schema would then publish twice.
pub fn validate_attributes(attrs: &[crate::config::CustomAttribute]) -> Result<(), String> {
    match attrs.iter().find(|a| schema::lookup(&a.name).is_some()) {
        Some(a) => Err(format!("directory.attributes: {} is a standard LDAP attribute; choose another name", a.name)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_settings_are_validated_and_errors_name_the_key() {
        let ok = LdapConfig::default();
        assert_eq!(validate(&ok), Ok(()));
        let bad = |f: fn(&mut LdapConfig)| {
            let mut c = LdapConfig::default();
            f(&mut c);
            validate(&c).unwrap_err()
        };
        let e = bad(|c| c.base_dn = "dc=example,,dc=com".into());
        assert!(e.starts_with("ldap.base_dn: "), "{e}");
        let e = bad(|c| c.users_rdn = "people".into());
        assert!(e.starts_with("ldap.users_rdn: "), "{e}");
        let e = bad(|c| c.groups_rdn = "ou=groups,ou=x".into());
        assert!(e.starts_with("ldap.groups_rdn: must be a single RDN"), "{e}");
        let e = bad(|c| c.services_rdn = String::new());
        assert!(e.starts_with("ldap.services_rdn: "), "{e}");
    }

    #[test]
    fn custom_attributes_must_not_shadow_standard_ones() {
        let a = |name: &str| crate::config::CustomAttribute {
            name: name.into(),
            field: "f".into(),
            scim_name: None,
            syntax: Default::default(),
            multi: false,
            separator: ",".into(),
            writable: true,
            indexed: true,
        };
        assert_eq!(validate_attributes(&[a("costCenter")]), Ok(()));
        let e = validate_attributes(&[a("costCenter"), a("Manager")]).unwrap_err();
        assert!(e.contains("Manager is a standard LDAP attribute"), "{e}");
        assert!(validate_attributes(&[a("userid")]).is_err(), "aliases too");
    }

    /// The tree settings of the shipped configs (the config module's own test loads the rest).
    #[test]
    fn shipped_configs_have_valid_tree_settings() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut n = 0;
        for dir in [root.join("config"), root.join("docker")] {
            for f in std::fs::read_dir(&dir).unwrap() {
                let p = f.unwrap().path();
                if p.extension().is_none_or(|e| e != "toml") {
                    continue;
                }
                let doc: toml::Table = std::fs::read_to_string(&p).unwrap().parse().unwrap();
                let mut cfg = LdapConfig::default();
                if let Some(ldap) = doc.get("ldap").and_then(|l| l.as_table()) {
                    for (key, field) in [
                        ("base_dn", &mut cfg.base_dn),
                        ("users_rdn", &mut cfg.users_rdn),
                        ("groups_rdn", &mut cfg.groups_rdn),
                        ("services_rdn", &mut cfg.services_rdn),
                    ] {
                        if let Some(v) = ldap.get(key).and_then(|v| v.as_str()) {
                            *field = v.to_string();
                        }
                    }
                }
                validate(&cfg).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 5, "demo, dolibarr, dreamfactory, foreman and container configs");
    }
}
