//! Custom attributes: backend extra fields published under names of the administrator's choosing
//! (`[[directory.attributes]]`). Values travel through the core in one canonical text form per
//! syntax, whichever front end they came from: integers in decimal, booleans `true`/`false`, dates
//! in Unix seconds. Front ends convert to and from their protocol's forms; backends to and from
//! their wire's.

use crate::config::{AttributeSyntax, CustomAttribute};

use super::DirectoryError;

#[derive(Debug, Clone, Default)]
pub struct CustomAttrs {
    attrs: Vec<CustomAttribute>,
}

impl CustomAttrs {
    pub fn new(attrs: &[CustomAttribute]) -> CustomAttrs {
        CustomAttrs { attrs: attrs.to_vec() }
    }

    pub fn all(&self) -> &[CustomAttribute] {
        &self.attrs
    }

    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }

    /// By LDAP name (case-insensitive).
    pub fn by_name(&self, name: &str) -> Option<&CustomAttribute> {
        self.attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// By SCIM name (case-insensitive, as SCIM attribute names are).
    pub fn by_scim_name(&self, name: &str) -> Option<&CustomAttribute> {
        self.attrs.iter().find(|a| a.scim_name().eq_ignore_ascii_case(name))
    }

    /// Checks values a client wants to store (already in canonical form) and returns them
    /// canonical: `42` for `+42`, `true` for `TRUE`.
    pub fn check(&self, a: &CustomAttribute, values: &[String]) -> Result<Vec<String>, DirectoryError> {
        let name: &'static str = "custom attribute";
        let invalid = |msg: String| DirectoryError::Invalid { attribute: Some(name), message: msg };
        if !a.writable {
            return Err(DirectoryError::Denied(format!("{} is read-only", a.name)));
        }
        if !a.multi && values.len() > 1 {
            return Err(invalid(format!("{} takes a single value", a.name)));
        }
        values
            .iter()
            .map(|v| {
                let v = v.trim();
                if v.chars().any(char::is_control) {
                    return Err(invalid(format!("{} must not contain control characters", a.name)));
                }
                if a.multi && v.contains(a.separator.as_str()) && !a.separator.is_empty() {
                    return Err(invalid(format!("a value of {} must not contain {:?}", a.name, a.separator)));
                }
                canonical(a.syntax, v)
                    .ok_or_else(|| invalid(format!("{:?} is not a valid {} for {}", v, syntax_name(a.syntax), a.name)))
            })
            .collect()
    }
}

pub use crate::model::canonical;

pub fn syntax_name(s: AttributeSyntax) -> &'static str {
    match s {
        AttributeSyntax::String => "string",
        AttributeSyntax::Integer => "integer",
        AttributeSyntax::Boolean => "boolean",
        AttributeSyntax::Date => "date",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(syntax: AttributeSyntax, multi: bool) -> CustomAttribute {
        CustomAttribute {
            name: "x".into(),
            field: "x".into(),
            scim_name: None,
            syntax,
            multi,
            separator: ",".into(),
            writable: true,
            indexed: true,
        }
    }

    #[test]
    fn values_are_checked_and_made_canonical() {
        let c = CustomAttrs::default();
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(c.check(&attr(AttributeSyntax::Integer, false), &v(&["+42"])).unwrap(), v(&["42"]));
        assert!(c.check(&attr(AttributeSyntax::Integer, false), &v(&["4x"])).is_err());
        assert!(c.check(&attr(AttributeSyntax::Integer, false), &v(&["1", "2"])).is_err(), "single-valued");
        assert_eq!(c.check(&attr(AttributeSyntax::Boolean, false), &v(&["TRUE"])).unwrap(), v(&["true"]));
        assert!(c.check(&attr(AttributeSyntax::Boolean, false), &v(&["yes"])).is_err());
        assert_eq!(c.check(&attr(AttributeSyntax::String, true), &v(&["a", "b"])).unwrap(), v(&["a", "b"]));
        assert!(c.check(&attr(AttributeSyntax::String, true), &v(&["a,b"])).is_err(), "the separator");
        assert!(c.check(&attr(AttributeSyntax::String, false), &v(&["a\u{0}"])).is_err());
        let ro = CustomAttribute { writable: false, ..attr(AttributeSyntax::String, false) };
        assert!(matches!(c.check(&ro, &v(&["a"])), Err(DirectoryError::Denied(_))));
    }
}
