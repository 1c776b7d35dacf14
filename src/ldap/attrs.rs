//! Where LDAP attributes meet model fields: the object classes of users and groups, and the one
//! table of single-valued user attributes that are stored in a `User` field. The tree renders
//! entries from it (dit.rs) and the write operations change users through it (ops/), so an
//! attribute is mapped in exactly one place.

use crate::config::AttributeSyntax;
use crate::directory::custom::canonical;
use crate::ldap::matching::{format_generalized_time, parse_generalized_time};
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

/// Unix seconds GeneralizedTime can write with four year digits (0000-01-01 to 9999-12-31).
const TIME_RANGE: std::ops::RangeInclusive<i64> = -62_167_219_200..=253_402_300_799;

/// A custom attribute's value as LDAP shows it, from the core's canonical text: booleans
/// `TRUE`/`FALSE`, dates GeneralizedTime. `None` for a value the syntax cannot show (it is left out).
pub fn custom_to_ldap(syntax: AttributeSyntax, v: &str) -> Option<String> {
    let c = canonical(syntax, v.trim())?;
    match syntax {
        AttributeSyntax::String => Some(v.to_string()),
        AttributeSyntax::Integer => Some(c),
        AttributeSyntax::Boolean => Some(if c == "true" { "TRUE" } else { "FALSE" }.into()),
        AttributeSyntax::Date => {
            let secs: i64 = c.parse().ok()?;
            TIME_RANGE.contains(&secs).then(|| format_generalized_time(secs))
        }
    }
}

/// The core's canonical text of a value a client wrote in LDAP form; `None` when it is not a
/// value of the syntax (RFC 4517: Boolean is `TRUE` or `FALSE`; dates are GeneralizedTime, kept
/// to the second).
pub fn custom_from_ldap(syntax: AttributeSyntax, v: &str) -> Option<String> {
    match syntax {
        AttributeSyntax::String => canonical(syntax, v),
        AttributeSyntax::Integer => canonical(syntax, v.trim()),
        AttributeSyntax::Boolean => match v.trim().to_ascii_uppercase().as_str() {
            "TRUE" => Some("true".into()),
            "FALSE" => Some("false".into()),
            _ => None,
        },
        AttributeSyntax::Date => {
            let secs = parse_generalized_time(v)?.div_euclid(1000);
            TIME_RANGE.contains(&secs).then(|| secs.to_string())
        }
    }
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

    #[test]
    fn custom_values_convert_between_ldap_and_canonical_forms() {
        use AttributeSyntax as S;
        assert_eq!(custom_to_ldap(S::Boolean, "true").as_deref(), Some("TRUE"));
        assert_eq!(custom_to_ldap(S::Boolean, "false").as_deref(), Some("FALSE"));
        assert_eq!(custom_from_ldap(S::Boolean, "TRUE").as_deref(), Some("true"));
        assert_eq!(custom_from_ldap(S::Boolean, " false ").as_deref(), Some("false"));
        assert_eq!(custom_from_ldap(S::Boolean, "yes"), None);
        assert_eq!(custom_from_ldap(S::Boolean, "1"), None, "LDAP booleans are TRUE or FALSE");
        assert_eq!(custom_to_ldap(S::Date, "1709210096").as_deref(), Some("20240229123456Z"));
        assert_eq!(custom_from_ldap(S::Date, "20240229123456Z").as_deref(), Some("1709210096"));
        assert_eq!(custom_from_ldap(S::Date, "20240229133456+0100").as_deref(), Some("1709210096"));
        assert_eq!(custom_from_ldap(S::Date, "19691231235959.5Z").as_deref(), Some("-1"), "floor to the second");
        assert_eq!(custom_from_ldap(S::Date, "2024-02-29"), None);
        assert_eq!(custom_to_ldap(S::Date, "99999999999999"), None, "beyond year 9999");
        assert_eq!(custom_from_ldap(S::Integer, " +42 ").as_deref(), Some("42"));
        assert_eq!(custom_from_ldap(S::Integer, "4.2"), None);
        assert_eq!(custom_from_ldap(S::Integer, "99999999999999999999"), None, "beyond 64 bits");
        assert_eq!(custom_to_ldap(S::Integer, "x"), None, "a backend's bad value is left out");
        assert_eq!(custom_from_ldap(S::String, "CC-100").as_deref(), Some("CC-100"));
        assert_eq!(custom_from_ldap(S::String, ""), None);
        for secs in [0i64, 1, 1_709_210_096, -86_400, 253_402_300_799] {
            let l = custom_to_ldap(S::Date, &secs.to_string()).unwrap();
            assert_eq!(custom_from_ldap(S::Date, &l), Some(secs.to_string()), "{l}");
        }
    }
}
