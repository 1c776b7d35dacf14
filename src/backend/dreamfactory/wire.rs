//! DreamFactory's JSON shapes (contract §5), read tolerantly. Private to this backend.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::config::DreamFactoryLogin;
use crate::model::User;

fn tolerant_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn tolerant_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn tolerant_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => Some(b),
        Value::Number(n) => Some(n.as_i64() != Some(0)),
        Value::String(s) => match s.trim() {
            "1" | "true" => Some(true),
            "0" | "false" | "" => Some(false),
            _ => None,
        },
        _ => None,
    })
}

/// The identity-relevant part of a user record of `/system/user` or `/system/admin`.
#[derive(Deserialize, Default)]
pub(crate) struct WireUser {
    #[serde(default, deserialize_with = "tolerant_int")]
    pub id: Option<u64>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub username: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub first_name: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub last_name: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub phone: Option<String>,
    #[serde(default, deserialize_with = "tolerant_bool")]
    pub is_active: Option<bool>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub created_date: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub last_modified_date: Option<String>,
    #[serde(default)]
    pub user_to_app_to_role_by_user_id: Vec<WireAssignment>,
}

/// A `user_to_app_to_role` row.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireAssignment {
    #[serde(default, deserialize_with = "tolerant_int")]
    pub id: Option<u64>,
    #[serde(default, deserialize_with = "tolerant_int")]
    pub user_id: Option<u64>,
    #[serde(default, deserialize_with = "tolerant_int")]
    pub app_id: Option<u64>,
    #[serde(default, deserialize_with = "tolerant_int")]
    pub role_id: Option<u64>,
}

/// A role record of `/system/role`.
#[derive(Deserialize, Default)]
pub(crate) struct WireRole {
    #[serde(default, deserialize_with = "tolerant_int")]
    pub id: Option<u64>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub created_date: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub last_modified_date: Option<String>,
    #[serde(default)]
    pub user_to_app_to_role_by_role_id: Vec<WireAssignment>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.trim().is_empty())
}

/// Reads DreamFactory dates: ISO-8601 with microseconds (DF 5+) or `Y-m-d H:i:s` (DF 4.x and
/// `last_login_date`), both in UTC.
pub(crate) fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(s, &fmt).ok().map(|t| t.assume_utc().unix_timestamp())
}

/// `Y-m-d H:i:s` in UTC, the form the database columns compare against in filters.
pub(crate) fn format_date(unix: i64) -> Option<String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(unix).ok()?.format(&fmt).ok()
}

impl WireUser {
    /// The neutral user, with the gateway id built by the caller (it depends on the endpoint).
    pub fn into_user(self, gateway_id: String, admin: bool, login: DreamFactoryLogin) -> User {
        let email = self.email.unwrap_or_default();
        let login = match login {
            DreamFactoryLogin::Email => email.clone(),
            DreamFactoryLogin::Username => non_empty(self.username).unwrap_or_else(|| email.clone()),
        };
        let (mut first, mut last) = (self.first_name.unwrap_or_default(), self.last_name.unwrap_or_default());
        // Accounts made in DreamFactory's own UI may only have `name`.
        if first.trim().is_empty()
            && last.trim().is_empty()
            && let Some(name) = non_empty(self.name)
        {
            match name.trim().rsplit_once(' ') {
                Some((f, l)) => (first, last) = (f.trim().to_string(), l.trim().to_string()),
                None => last = name.trim().to_string(),
            }
        }
        User {
            id: gateway_id,
            login,
            first_name: first,
            last_name: last,
            email,
            phone: non_empty(self.phone),
            active: self.is_active.unwrap_or(true),
            admin,
            created: self.created_date.as_deref().and_then(parse_date),
            modified: self.last_modified_date.as_deref().and_then(parse_date),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_of_both_generations() {
        assert_eq!(parse_date("2025-03-01T10:15:30.000000Z"), Some(1740824130));
        assert_eq!(parse_date("2025-03-01 10:15:30"), Some(1740824130));
        assert_eq!(parse_date("garbage"), None);
        assert_eq!(format_date(1740824130).as_deref(), Some("2025-03-01 10:15:30"));
    }

    #[test]
    fn user_from_name_only() {
        let w: WireUser = serde_json::from_value(
            serde_json::json!({"id": 3, "name": "Mary Ann Roe", "email": "m@x", "is_active": 0}),
        )
        .unwrap();
        let u = w.into_user("u3".into(), false, DreamFactoryLogin::Email);
        assert_eq!((u.first_name.as_str(), u.last_name.as_str(), u.login.as_str()), ("Mary Ann", "Roe", "m@x"));
        assert!(!u.active);
    }
}
