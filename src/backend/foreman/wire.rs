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
}

impl WireUser {
    pub fn into_user(self) -> User {
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
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

impl WireGroup {
    pub fn member_ids(&self) -> Vec<u64> {
        self.users.iter().map(|m| m.id).collect()
    }

    pub fn into_group(self) -> Group {
        let mut members: Vec<String> = self.users.iter().map(|m| m.id.to_string()).collect();
        members.sort_by_key(|m| m.parse::<u64>().unwrap_or(u64::MAX));
        Group {
            id: self.id.to_string(),
            name: self.name,
            // Foreman user groups have no description (contract §6.1).
            description: None,
            members,
            created: self.created_at.as_deref().and_then(parse_time),
            modified: self.updated_at.as_deref().and_then(parse_time),
            ..Default::default()
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
    }
}
