//! Accounts kept out of the directory: the gateway's own backend account always, and whatever
//! `[directory.hidden]` names. A hidden account is never put in a snapshot, so no search, lookup,
//! membership or bind can reach it, whichever front end asks.

use crate::config::HiddenConfig;
use crate::model::User;

#[derive(Debug, Clone, Default)]
pub struct Hidden {
    /// Lower-cased logins, the backend's own account included once `probe` found it.
    logins: std::collections::HashSet<String>,
    admins: bool,
    without_email: bool,
    system: bool,
}

impl Hidden {
    pub fn new(cfg: &HiddenConfig) -> Hidden {
        Hidden {
            logins: cfg.logins.iter().map(|l| l.to_lowercase()).collect(),
            admins: cfg.admins,
            without_email: cfg.without_email,
            system: cfg.system,
        }
    }

    /// Also hides `login` (the gateway's own backend account).
    pub fn with_login(mut self, login: Option<String>) -> Hidden {
        if let Some(l) = login {
            self.logins.insert(l.to_lowercase());
        }
        self
    }

    pub fn hides(&self, u: &User) -> bool {
        (self.system && u.system)
            || (self.admins && u.admin)
            || (self.without_email && u.email.trim().is_empty())
            || self.hides_login(&u.login)
    }

    /// True for a login hidden by name, whatever the account holds.
    pub fn hides_login(&self, login: &str) -> bool {
        !self.logins.is_empty() && self.logins.contains(&login.to_lowercase())
    }

    /// Why `u` is hidden, for `check-config`.
    pub fn reason(&self, u: &User, own: Option<&str>) -> Option<&'static str> {
        if own.is_some_and(|o| o.eq_ignore_ascii_case(&u.login)) {
            Some("the gateway's own backend account")
        } else if self.hides_login(&u.login) {
            Some("listed in directory.hidden.logins")
        } else if self.system && u.system {
            Some("a system account of the backend")
        } else if self.admins && u.admin {
            Some("an administrator (directory.hidden.admins)")
        } else if self.without_email && u.email.trim().is_empty() {
            Some("no e-mail address (directory.hidden.without_email)")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_hides_what_it_names() {
        let u = |login: &str, email: &str, admin: bool, system: bool| User {
            login: login.into(),
            email: email.into(),
            admin,
            system,
            ..Default::default()
        };
        let h = Hidden::new(&HiddenConfig::default()).with_login(Some("IdGate".into()));
        assert!(h.hides(&u("idgate", "i@x", false, false)), "the gateway's own account, any case");
        assert!(h.hides(&u("superadmin", "s@x", true, true)), "system accounts by default");
        assert!(!h.hides(&u("boss", "", true, false)), "admins and address-less accounts stay by default");
        let strict = Hidden::new(&HiddenConfig {
            logins: vec!["svc-erp".into()],
            admins: true,
            without_email: true,
            system: false,
        });
        assert!(strict.hides(&u("SVC-ERP", "x@x", false, false)));
        assert!(strict.hides(&u("boss", "b@x", true, false)));
        assert!(strict.hides(&u("nomail", " ", false, false)));
        assert!(!strict.hides(&u("sys", "s@x", false, true)), "system = false publishes them");
        assert_eq!(
            strict.reason(&u("boss", "b@x", true, false), None),
            Some("an administrator (directory.hidden.admins)")
        );
    }
}
