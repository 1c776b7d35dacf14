//! User names from identity providers. Entra ID and Okta name users by UPN or e-mail
//! (`jane.doe@example.com`), which some backends refuse as a login (Dolibarr refuses `@`). The
//! core derives a login the backend takes and keeps the client's name in the gateway's state: SCIM
//! shows and filters on that name, and LDAP binds accept it as an alias of the login.

use crate::config::{UserNameConfig, UserNameRule};

#[derive(Debug, Clone)]
pub struct NameRule {
    rule: UserNameRule,
    replacement: String,
    refused: &'static [char],
}

impl NameRule {
    pub fn new(cfg: &UserNameConfig, refused: &'static [char]) -> NameRule {
        let rule = match cfg.rule {
            // A backend that refuses `@` cannot take UPNs: their local part is the natural login.
            UserNameRule::Auto if refused.contains(&'@') => UserNameRule::LocalPart,
            UserNameRule::Auto => UserNameRule::AsIs,
            r => r,
        };
        NameRule { rule, replacement: cfg.replacement.clone(), refused }
    }

    /// The rule in force (never `Auto`).
    pub fn rule(&self) -> UserNameRule {
        self.rule
    }

    /// The login for a client's user name. Equal to `name` when the backend takes it as it is.
    pub fn login_for(&self, name: &str) -> String {
        if !name.contains(self.refused) {
            return name.to_string();
        }
        let base = match self.rule {
            UserNameRule::LocalPart => name.rsplit_once('@').map_or(name, |(local, _)| local),
            _ => name,
        };
        match self.rule {
            UserNameRule::AsIs | UserNameRule::Auto => base.to_string(),
            _ => base
                .chars()
                .map(|c| if self.refused.contains(&c) { self.replacement.clone() } else { c.to_string() })
                .collect(),
        }
    }

    /// The characters of `login` the backend refuses, if any.
    pub fn refused_in(&self, login: &str) -> Vec<char> {
        let mut v: Vec<char> = login.chars().filter(|c| self.refused.contains(c)).collect();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOLIBARR: &[char] = &[',', '@', '<', '>', '"', '\''];

    fn rule(r: UserNameRule, replacement: &str) -> NameRule {
        NameRule::new(&UserNameConfig { rule: r, replacement: replacement.into() }, DOLIBARR)
    }

    #[test]
    fn auto_takes_the_local_part_where_at_is_refused() {
        let r = rule(UserNameRule::Auto, "_");
        assert_eq!(r.rule(), UserNameRule::LocalPart);
        assert_eq!(r.login_for("jane.doe@example.com"), "jane.doe");
        assert_eq!(r.login_for("jdoe"), "jdoe");
        assert_eq!(r.login_for("o'neil@example.com"), "o_neil", "what is left refused is replaced");
        let open = NameRule::new(&UserNameConfig::default(), &[]);
        assert_eq!(open.rule(), UserNameRule::AsIs);
        assert_eq!(open.login_for("jane.doe@example.com"), "jane.doe@example.com");
    }

    #[test]
    fn replace_and_as_is() {
        assert_eq!(rule(UserNameRule::Replace, ".").login_for("jane@example.com"), "jane.example.com");
        assert_eq!(rule(UserNameRule::Replace, "").login_for("a,b@c"), "abc");
        let as_is = rule(UserNameRule::AsIs, "_");
        assert_eq!(as_is.login_for("jane@example.com"), "jane@example.com", "left for the backend to refuse");
        assert_eq!(as_is.refused_in("a@b,c@"), vec!['@', ',', '@']);
    }
}
