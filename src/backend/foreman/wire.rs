//! Foreman's JSON shapes (API v2), read tolerantly: only the identity-relevant keys, unknown keys
//! ignored, `null` where a string is missing. Private to this backend.

use serde::Deserialize;
use serde_json::Value;

use crate::model::{Group, User};

/// The envelope of every index route (contract §4).
#[derive(Deserialize)]
pub(crate) struct Envelope {
    #[serde(default)]
    pub subtotal: Option<u64>,
    #[serde(default)]
    pub results: Vec<Value>,
}

/// A user in index or show shape (the extra keys of show are ignored).
#[derive(Deserialize)]
pub(crate) struct WireUser {
    pub id: u64,
    pub login: String,
    #[serde(default)]
    pub firstname: Option<String>,
    #[serde(default)]
    pub lastname: Option<String>,
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    /// `Internal`, an LDAP source's name, or `Hidden` for Foreman's own system accounts.
    #[serde(default)]
    pub auth_source_name: Option<String>,
    /// Present (show shape) when the user's auth source is the hidden one (contract §5.2).
    #[serde(default)]
    pub auth_source_hidden: Option<Value>,
}

/// The name of the auth source of Foreman's internal accounts (`foreman_admin`,
/// `foreman_api_admin`); Foreman itself never lists them nor lets them log in.
pub(crate) const HIDDEN_SOURCE: &str = "Hidden";

impl WireUser {
    pub fn into_user(self) -> User {
        let system = self.auth_source_name.as_deref() == Some(HIDDEN_SOURCE)
            || self.auth_source_hidden.as_ref().is_some_and(|v| !v.is_null());
        User {
            id: self.id.to_string(),
            login: self.login,
            first_name: self.firstname.unwrap_or_default(),
            last_name: self.lastname.unwrap_or_default(),
            email: self.mail.unwrap_or_default(),
            locale: self.locale.filter(|l| !l.trim().is_empty()),
            // `disabled` is the inverse of the active flag (quirk 5).
            active: !self.disabled,
            admin: self.admin,
            created: self.created_at.as_deref().and_then(parse_time),
            modified: self.updated_at.as_deref().and_then(parse_time),
            system,
            ..Default::default()
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct WireMember {
    pub id: u64,
}

/// A usergroup in show shape; the index shape has no `users` (and reads as no members).
#[derive(Deserialize)]
pub(crate) struct WireGroup {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub users: Vec<WireMember>,
    /// Direct child groups: groups that are members of this one (contract §6.1).
    #[serde(default)]
    pub usergroups: Vec<WireMember>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

impl WireGroup {
    pub fn member_ids(&self) -> Vec<u64> {
        self.users.iter().map(|m| m.id).collect()
    }

    pub fn child_ids(&self) -> Vec<u64> {
        self.usergroups.iter().map(|m| m.id).collect()
    }

    pub fn into_group(self) -> Group {
        let sorted = |list: &[WireMember]| {
            let mut ids: Vec<u64> = list.iter().map(|m| m.id).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.into_iter().map(|i| i.to_string()).collect::<Vec<String>>()
        };
        let members = sorted(&self.users);
        // A group listing itself (impossible through Foreman's API) would only be noise.
        let own = self.id.to_string();
        let member_groups = sorted(&self.usergroups).into_iter().filter(|c| *c != own).collect();
        Group {
            id: self.id.to_string(),
            name: self.name,
            // Foreman user groups have no description (contract §6.1).
            description: None,
            members,
            member_groups,
            created: self.created_at.as_deref().and_then(parse_time),
            modified: self.updated_at.as_deref().and_then(parse_time),
        }
    }
}

/// An auth source row of `/api/auth_source_internals`.
#[derive(Deserialize)]
pub(crate) struct WireAuthSource {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
}

/// Foreman's rendered times: `2025-03-01 10:15:30 UTC`, `2025-03-01 11:15:30 +0100` (caller's time
/// zone), or ISO 8601 in raw records. Unix seconds, or `None` when unreadable.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let (stamp, zone) = s.rsplit_once(' ')?;
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let local = time::PrimitiveDateTime::parse(stamp, &fmt).ok()?.assume_utc().unix_timestamp();
    let offset = match zone {
        "UTC" | "Z" | "GMT" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let h: i64 = z.get(1..3)?.parse().ok()?;
            let m: i64 = z.get(3..5)?.parse().ok()?;
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    Some(local - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times() {
        assert_eq!(parse_time("2025-03-01 10:15:30 UTC"), Some(1740824130));
        assert_eq!(parse_time("2025-03-01 11:15:30 +0100"), Some(1740824130));
        assert_eq!(parse_time("2025-03-01T10:15:30.000Z"), Some(1740824130));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn user_mapping() {
        let w: WireUser = serde_json::from_value(json!({"id": 5, "login": "jdoe", "firstname": null,
            "lastname": "Doe", "mail": null, "admin": true, "disabled": true, "locale": "", "extra": [1]}))
        .unwrap();
        let u = w.into_user();
        assert_eq!((u.id.as_str(), u.first_name.as_str(), u.email.as_str()), ("5", "", ""));
        assert!(!u.active && u.admin);
        assert_eq!(u.locale, None);
        assert!(!u.system);
    }

    #[test]
    fn hidden_accounts_are_system_accounts() {
        let by_name: WireUser =
            serde_json::from_value(json!({"id": 1, "login": "foreman_admin", "auth_source_name": "Hidden"})).unwrap();
        assert!(by_name.into_user().system);
        let by_key: WireUser = serde_json::from_value(json!({"id": 2, "login": "foreman_api_admin",
            "auth_source_hidden": {"id": 2, "type": "AuthSourceHidden", "name": "Hidden"}}))
        .unwrap();
        assert!(by_key.into_user().system);
        let ldap: WireUser =
            serde_json::from_value(json!({"id": 3, "login": "x", "auth_source_name": "Corp LDAP"})).unwrap();
        assert!(!ldap.into_user().system);
    }

    #[test]
    fn group_mapping_reads_child_groups() {
        let w: WireGroup = serde_json::from_value(json!({"id": 12, "name": "ops",
            "users": [{"id": 10, "login": "ckent"}, {"id": 5, "login": "jdoe"}],
            "usergroups": [{"id": 14, "name": "b"}, {"id": 13, "name": "a"}, {"id": 12, "name": "ops"}]}))
        .unwrap();
        assert_eq!(w.child_ids(), vec![14, 13, 12]);
        let g = w.into_group();
        assert_eq!(g.members, vec!["5", "10"]);
        assert_eq!(g.member_groups, vec!["13", "14"], "sorted, without the group itself");
        let index: WireGroup = serde_json::from_value(json!({"id": 1, "name": "x", "admin": false})).unwrap();
        assert!(index.into_group().member_groups.is_empty());
    }
}
