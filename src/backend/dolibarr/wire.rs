//! Dolibarr's JSON shapes, read tolerantly: the same key is a string in one object, an int in
//! another, and `""` where a date is missing (contract quirk 2). Private to this backend.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::model::{Group, User};

/// Reads an integer sent as a number, a numeric string, a bool, `""` or `null`. Anything that is
/// not a number becomes `None` rather than an error: one odd field must not hide a whole user.
pub(crate) fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| s.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| f as i64))
        }
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// Reads a string that may also arrive as a number; `null` becomes `None`.
pub(crate) fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn tolerant_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(int_of(&Value::deserialize(d)?))
}

fn tolerant_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(str_of(&Value::deserialize(d)?))
}

/// The identity-relevant part of a Dolibarr user object; the ~120 other keys are ignored.
#[derive(Deserialize, Default)]
pub(crate) struct WireUser {
    #[serde(default, deserialize_with = "tolerant_str")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub login: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub firstname: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub lastname: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub office_phone: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub user_mobile: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub job: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub ref_employee: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub lang: Option<String>,
    #[serde(default, deserialize_with = "tolerant_int")]
    pub statut: Option<i64>,
    #[serde(default, deserialize_with = "tolerant_int")]
    pub status: Option<i64>,
    #[serde(default, deserialize_with = "tolerant_int")]
    pub admin: Option<i64>,
    #[serde(default, deserialize_with = "tolerant_int")]
    pub specimen: Option<i64>,
    #[serde(default, deserialize_with = "tolerant_int")]
    pub datec: Option<i64>,
    #[serde(default, deserialize_with = "tolerant_int")]
    pub datem: Option<i64>,
    /// Supervisor's rowid: `"3"`, or null when none (contract §12.3).
    #[serde(default, deserialize_with = "tolerant_int")]
    pub fk_user: Option<i64>,
    /// Extra fields: `{"options_<code>": value}`, or `[]` when none is defined (contract §12.2).
    #[serde(default)]
    pub array_options: Value,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.trim().is_empty())
}

/// True for an id that names a real row: Dolibarr uses 0 for its specimen and null for "absent".
pub(crate) fn real_id(id: Option<&str>) -> Option<&str> {
    id.filter(|s| s.parse::<u64>().is_ok_and(|n| n > 0))
}

impl WireUser {
    /// The model user, or `None` for the specimen and for objects without a real id.
    pub fn into_user(self) -> Option<User> {
        if self.specimen == Some(1) {
            return None;
        }
        let id = real_id(self.id.as_deref())?.to_string();
        Some(User {
            id,
            login: self.login.unwrap_or_default(),
            first_name: self.firstname.unwrap_or_default(),
            last_name: self.lastname.unwrap_or_default(),
            email: self.email.unwrap_or_default(),
            phone: non_empty(self.office_phone),
            mobile: non_empty(self.user_mobile),
            title: non_empty(self.job),
            employee_number: non_empty(self.ref_employee),
            locale: non_empty(self.lang),
            active: self.statut.or(self.status) == Some(1),
            admin: self.admin == Some(1),
            created: self.datec.filter(|t| *t > 0),
            modified: self.datem.filter(|t| *t > 0),
            // Dolibarr writes any value <= 0 as NULL; no existence check, so it may dangle.
            manager: self.fk_user.filter(|n| *n > 0).map(|n| n.to_string()),
            ..Default::default()
        })
    }
}

/// A group object; `members` is `[]` or a map keyed by user id (quirk 11).
#[derive(Deserialize, Default)]
pub(crate) struct WireGroup {
    #[serde(default, deserialize_with = "tolerant_str")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub nom: Option<String>,
    #[serde(default, deserialize_with = "tolerant_int")]
    pub datec: Option<i64>,
    #[serde(default, deserialize_with = "tolerant_int")]
    pub tms: Option<i64>,
    #[serde(default)]
    pub members: Value,
}

impl WireGroup {
    /// The model group, or `None` for the all-null object Dolibarr returns for unknown ids.
    pub fn into_group(self) -> Option<Group> {
        let id = real_id(self.id.as_deref())?.to_string();
        let mut members: Vec<String> = match &self.members {
            Value::Object(map) => map.keys().filter(|k| real_id(Some(k)).is_some()).cloned().collect(),
            Value::Array(items) => items
                .iter()
                .filter_map(|m| m.get("id").and_then(str_of))
                .filter(|k| real_id(Some(k)).is_some())
                .collect(),
            _ => Vec::new(),
        };
        members.sort_by_key(|m| m.parse::<u64>().unwrap_or(u64::MAX));
        Some(Group {
            id,
            name: self.name.or(self.nom).unwrap_or_default(),
            description: None,
            members,
            created: self.datec.filter(|t| *t > 0),
            modified: self.tms.filter(|t| *t > 0),
            ..Default::default()
        })
    }
}

/// `GET /status` answer.
#[derive(Deserialize)]
pub(crate) struct StatusBody {
    pub success: StatusInner,
}

#[derive(Deserialize)]
pub(crate) struct StatusInner {
    #[serde(default, deserialize_with = "tolerant_str")]
    pub dolibarr_version: Option<String>,
    #[serde(default, deserialize_with = "tolerant_int")]
    pub timestamp_now_utc: Option<i64>,
    #[serde(default, deserialize_with = "tolerant_str")]
    pub date_tz: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_read_from_any_shape() {
        assert_eq!(int_of(&json!(1)), Some(1));
        assert_eq!(int_of(&json!("1")), Some(1));
        assert_eq!(int_of(&json!(" 42 ")), Some(42));
        assert_eq!(int_of(&json!("")), None);
        assert_eq!(int_of(&json!(null)), None);
        assert_eq!(int_of(&json!("abc")), None);
        assert_eq!(int_of(&json!(true)), Some(1));
        assert_eq!(int_of(&json!(1795407473.0)), Some(1795407473));
    }

    #[test]
    fn user_with_string_and_int_numbers() {
        let u: WireUser = serde_json::from_value(json!({
            "id": "2", "login": "jdoe", "statut": "1", "admin": 0, "datec": 1795407473,
            "datem": "", "lang": null, "job": "", "specimen": 0, "unknown": {"x": 1}
        }))
        .unwrap();
        let u = u.into_user().unwrap();
        assert_eq!(u.id, "2");
        assert!(u.active);
        assert!(!u.admin);
        assert_eq!(u.created, Some(1795407473));
        assert_eq!(u.modified, None);
        assert_eq!(u.title, None);
        let u: WireUser = serde_json::from_value(json!({"id": 7, "statut": 0, "admin": "1"})).unwrap();
        let u = u.into_user().unwrap();
        assert_eq!(u.id, "7");
        assert!(!u.active);
        assert!(u.admin);
    }

    #[test]
    fn supervisor_from_any_shape() {
        let manager = |v: Value| {
            let u: WireUser = serde_json::from_value(json!({"id": "9", "fk_user": v})).unwrap();
            u.into_user().unwrap().manager
        };
        assert_eq!(manager(json!("3")), Some("3".into()));
        assert_eq!(manager(json!(3)), Some("3".into()));
        for none in [json!(null), json!(0), json!(""), json!("0"), json!(-1), json!("x")] {
            assert_eq!(manager(none.clone()), None, "{none}");
        }
    }

    #[test]
    fn specimen_and_null_ids_are_skipped() {
        let s: WireUser = serde_json::from_value(json!({"id": 0, "login": "dolibspec", "specimen": 1})).unwrap();
        assert!(s.into_user().is_none());
        let s: WireUser = serde_json::from_value(json!({"id": null})).unwrap();
        assert!(s.into_user().is_none());
        let g: WireGroup = serde_json::from_value(json!({"id": null, "members": []})).unwrap();
        assert!(g.into_group().is_none());
    }

    #[test]
    fn members_array_or_map() {
        let g: WireGroup =
            serde_json::from_value(json!({"id": 1, "name": "dev", "members": {"7": {}, "2": {}}})).unwrap();
        assert_eq!(g.into_group().unwrap().members, vec!["2", "7"]);
        let g: WireGroup = serde_json::from_value(json!({"id": "3", "nom": "e", "members": []})).unwrap();
        let g = g.into_group().unwrap();
        assert!(g.members.is_empty());
        assert_eq!(g.name, "e");
    }
}
