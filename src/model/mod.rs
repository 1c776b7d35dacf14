//! Backend-neutral identity model: what every backend produces and every front end projects.

use std::collections::BTreeMap;

use crate::config::AttributeSyntax;
use serde::{Deserialize, Serialize};

/// Values of the backend's extra fields, by the backend's field name; an absent or empty field has
/// no entry. Backends hand them over as text (dates as Unix seconds); `[directory.attributes]`
/// says how each is published.
pub type Custom = BTreeMap<String, Vec<String>>;

/// A person account as the ERP holds it. Ids are the backend's own, kept as strings because
/// backends disagree on their JSON type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct User {
    pub id: String,
    pub login: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub mobile: Option<String>,
    pub title: Option<String>,
    pub employee_number: Option<String>,
    /// Locale as the backend spells it, e.g. `fr_FR`.
    pub locale: Option<String>,
    pub active: bool,
    pub admin: bool,
    /// Unix seconds; `None` when the backend does not say.
    pub created: Option<i64>,
    pub modified: Option<i64>,
    /// The backend id of the user's manager (supervisor); it may name a user that is gone.
    #[serde(default)]
    pub manager: Option<String>,
    #[serde(default)]
    pub custom: Custom,
    /// The backend reports this as one of its own system accounts (never a person).
    #[serde(default)]
    pub system: bool,
}

impl User {
    /// "First Last", or the login when the backend has no name.
    pub fn full_name(&self) -> String {
        let full = format!("{} {}", self.first_name.trim(), self.last_name.trim());
        let full = full.trim();
        if full.is_empty() { self.login.clone() } else { full.to_string() }
    }
}

/// A group with its direct members (backend user ids) and, where the backend nests groups, its
/// direct member groups (backend group ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub members: Vec<String>,
    #[serde(default)]
    pub member_groups: Vec<String>,
    pub created: Option<i64>,
    pub modified: Option<i64>,
}

/// Fields of a user to create. `password` is plaintext and never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NewUser {
    pub login: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub mobile: Option<String>,
    pub title: Option<String>,
    pub employee_number: Option<String>,
    pub locale: Option<String>,
    pub active: bool,
    pub admin: bool,
    pub password: Option<String>,
    /// Backend id of the manager.
    pub manager: Option<String>,
    pub custom: Custom,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("login", &self.login)
            .field("email", &self.email)
            .field("active", &self.active)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// A partial update: `None` leaves a field alone; `Some(None)` on an optional field clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChanges {
    pub login: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<Option<String>>,
    pub mobile: Option<Option<String>>,
    pub title: Option<Option<String>>,
    pub employee_number: Option<Option<String>>,
    pub locale: Option<Option<String>>,
    pub active: Option<bool>,
    pub admin: Option<bool>,
    /// `Some(None)` removes the manager.
    pub manager: Option<Option<String>>,
    /// Extra fields to set (`Some`, values) or clear (`None`); others stay.
    pub custom: BTreeMap<String, Option<Vec<String>>>,
}

impl UserChanges {
    pub fn is_empty(&self) -> bool {
        *self == UserChanges::default()
    }

    /// Applies the change set to a copy of `user`, as a backend that stores every field would.
    pub fn apply_to(&self, user: &User) -> User {
        let mut u = user.clone();
        if let Some(v) = &self.login {
            u.login = v.clone();
        }
        if let Some(v) = &self.first_name {
            u.first_name = v.clone();
        }
        if let Some(v) = &self.last_name {
            u.last_name = v.clone();
        }
        if let Some(v) = &self.email {
            u.email = v.clone();
        }
        if let Some(v) = &self.phone {
            u.phone = v.clone();
        }
        if let Some(v) = &self.mobile {
            u.mobile = v.clone();
        }
        if let Some(v) = &self.title {
            u.title = v.clone();
        }
        if let Some(v) = &self.employee_number {
            u.employee_number = v.clone();
        }
        if let Some(v) = &self.locale {
            u.locale = v.clone();
        }
        if let Some(v) = self.active {
            u.active = v;
        }
        if let Some(v) = self.admin {
            u.admin = v;
        }
        if let Some(v) = &self.manager {
            u.manager = v.clone();
        }
        for (k, v) in &self.custom {
            match v {
                Some(v) if !v.is_empty() => {
                    u.custom.insert(k.clone(), v.clone());
                }
                _ => {
                    u.custom.remove(k);
                }
            }
        }
        u
    }
}

/// The extra-field changes that turn `old` into `new`.
pub fn custom_diff(old: &Custom, new: &Custom) -> BTreeMap<String, Option<Vec<String>>> {
    let mut out = BTreeMap::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            out.insert(k.clone(), Some(v.clone()));
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            out.insert(k.clone(), None);
        }
    }
    out
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewGroup {
    pub name: String,
    pub description: Option<String>,
    /// Initial members (backend user ids).
    pub members: Vec<String>,
    /// Initial member groups (backend group ids), where the backend nests groups.
    pub member_groups: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
}

/// The canonical form of a custom field's value (how backends report it and the core compares
/// it), or `None` when it is not one of the syntax.
pub fn canonical(syntax: AttributeSyntax, v: &str) -> Option<String> {
    match syntax {
        AttributeSyntax::String => (!v.is_empty()).then(|| v.to_string()),
        AttributeSyntax::Integer | AttributeSyntax::Date => v.parse::<i64>().ok().map(|n| n.to_string()),
        AttributeSyntax::Boolean => match v.to_ascii_lowercase().as_str() {
            "true" | "1" => Some("true".into()),
            "false" | "0" => Some("false".into()),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_name_falls_back_to_login() {
        let mut u = User { login: "jdoe".into(), ..Default::default() };
        assert_eq!(u.full_name(), "jdoe");
        u.first_name = "John".into();
        assert_eq!(u.full_name(), "John");
        u.last_name = "Doe".into();
        assert_eq!(u.full_name(), "John Doe");
    }

    #[test]
    fn changes_apply_only_given_fields() {
        let u = User { login: "a".into(), email: "a@x".into(), title: Some("t".into()), ..Default::default() };
        let c = UserChanges { email: Some("b@x".into()), title: Some(None), ..Default::default() };
        let n = c.apply_to(&u);
        assert_eq!(n.email, "b@x");
        assert_eq!(n.title, None);
        assert_eq!(n.login, "a");
    }

    #[test]
    fn new_user_debug_hides_password() {
        let n = NewUser { login: "a".into(), password: Some("s3cret".into()), ..Default::default() };
        assert!(!format!("{n:?}").contains("s3cret"));
    }
}
