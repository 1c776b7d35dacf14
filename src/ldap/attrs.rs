//! Where LDAP attributes meet model fields: the object classes of users and groups, and the one
//! table of single-valued user attributes that are stored in a `User` field. The tree renders
//! entries from it (dit.rs) and the write operations change users through it (ops/), so an
//! attribute is mapped in exactly one place.

use crate::model::User;

/// Every user entry's object classes, in the order entries list them.
pub const USER_CLASSES: &[&str] = &["top", "person", "organizationalPerson", "inetOrgPerson", "posixAccount"];

/// Every group entry's object classes, in the order entries list them.
pub const GROUP_CLASSES: &[&str] = &["top", "groupOfNames", "groupOfUniqueNames", "posixGroup"];

/// A single-valued user attribute stored in one field of [`User`]. The empty string stands for
/// "no value" both ways: `get` returns it for an unset field, `set` clears the field with it.
pub struct UserField {
    /// The attribute's name, as the schema spells it.
    pub name: &'static str,
    /// The field's value as LDAP shows it.
    pub get: fn(&User) -> String,
    /// Stores an LDAP value in the field.
    pub set: fn(&mut User, String),
}

fn some(v: String) -> Option<String> {
    if v.is_empty() { None } else { Some(v) }
}

/// The stored single-valued user attributes, in the order entries list them.
pub const USER_FIELDS: &[UserField] = &[
    UserField { name: "sn", get: |u| u.last_name.clone(), set: |u, v| u.last_name = v },
    UserField { name: "givenName", get: |u| u.first_name.clone(), set: |u, v| u.first_name = v },
    UserField { name: "mail", get: |u| u.email.clone(), set: |u, v| u.email = v },
    UserField { name: "telephoneNumber", get: |u| u.phone.clone().unwrap_or_default(), set: |u, v| u.phone = some(v) },
    UserField { name: "mobile", get: |u| u.mobile.clone().unwrap_or_default(), set: |u, v| u.mobile = some(v) },
    UserField { name: "title", get: |u| u.title.clone().unwrap_or_default(), set: |u, v| u.title = some(v) },
    UserField {
        name: "employeeNumber",
        get: |u| u.employee_number.clone().unwrap_or_default(),
        set: |u, v| u.employee_number = some(v),
    },
    // Backends store locales as fr_FR; LDAP speaks RFC 4646 language tags (fr-FR).
    UserField {
        name: "preferredLanguage",
        get: |u| u.locale.as_deref().map(|l| l.replace('_', "-")).unwrap_or_default(),
        set: |u, v| u.locale = some(v).map(|l| l.replace('-', "_")),
    },
];

/// The stored user attribute named `name` (exactly as the schema spells it).
pub fn user_field(name: &str) -> Option<&'static UserField> {
    USER_FIELDS.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldap::schema;

    #[test]
    fn fields_round_trip_and_empty_clears() {
        for f in USER_FIELDS {
            assert_eq!(schema::def(schema::id(f.name)).name, f.name, "schema spelling of {}", f.name);
            let mut u = User::default();
            (f.set)(&mut u, "fr-FR".into());
            assert_eq!((f.get)(&u), "fr-FR", "{}", f.name);
            (f.set)(&mut u, String::new());
            assert_eq!((f.get)(&u), "", "{}", f.name);
        }
        let mut u = User::default();
        (user_field("preferredLanguage").unwrap().set)(&mut u, "fr-FR".into());
        assert_eq!(u.locale.as_deref(), Some("fr_FR"));
        (user_field("telephoneNumber").unwrap().set)(&mut u, String::new());
        assert_eq!(u.phone, None);
        assert!(user_field("cn").is_none(), "derived, not stored");
    }
}
