//! User extra fields (`array_options`, contract §12.2) to and from the model's canonical text:
//! integers in decimal, booleans `true`/`false`, dates in Unix seconds.
//!
//! Wire shapes (22.0.4): varchar → string, int → *string* (`"4711"`), date → int Unix seconds, or
//! `""` when the user has an extra-field row without a date; every value is `null` for a user that
//! has no row at all, and `array_options` is `[]` when no extra field is defined.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::backend::{BackendError, BackendResult};
use crate::config::{AttributeSyntax, CustomAttribute};

use super::wire::{int_of, str_of};

const PREFIX: &str = "options_";

/// MySQL's `INT` column, which Dolibarr's int extra fields use; outside it a non-strict server
/// would silently clamp the value.
const INT_RANGE: std::ops::RangeInclusive<i64> = (i32::MIN as i64)..=(i32::MAX as i64);

/// The configured fields found in `options`, in canonical text. Fields not configured are not
/// published; empty values are absent.
pub(crate) fn read(attrs: &[CustomAttribute], options: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Some(map) = options.as_object() else { return out };
    for a in attrs {
        let Some(v) = map.get(&format!("{PREFIX}{}", a.field)) else { continue };
        let values = read_value(a, v);
        if !values.is_empty() {
            out.insert(a.field.clone(), values);
        }
    }
    out
}

fn read_value(a: &CustomAttribute, v: &Value) -> Vec<String> {
    if let AttributeSyntax::Date = a.syntax
        && !a.multi
    {
        // An int, or `""`/null/false when empty.
        return match v {
            Value::Bool(_) => Vec::new(),
            other => int_of(other).map(|n| vec![n.to_string()]).unwrap_or_default(),
        };
    }
    let Some(text) = str_of(v) else { return Vec::new() };
    let pieces: Vec<&str> = if a.multi && !a.separator.is_empty() {
        text.split(a.separator.as_str()).map(str::trim).collect()
    } else {
        vec![text.as_str()]
    };
    pieces.into_iter().filter(|p| !p.trim().is_empty()).filter_map(|p| canonical(a.syntax, p)).collect()
}

fn canonical(syntax: AttributeSyntax, p: &str) -> Option<String> {
    let t = p.trim();
    match syntax {
        AttributeSyntax::String => Some(p.to_string()),
        AttributeSyntax::Integer | AttributeSyntax::Date => t.parse::<i64>().ok().map(|n| n.to_string()),
        AttributeSyntax::Boolean => match t.to_ascii_lowercase().as_str() {
            "1" | "true" => Some("true".into()),
            "0" | "false" => Some("false".into()),
            _ => None,
        },
    }
}

/// The `array_options` object of a PUT: each changed field as `options_<code>`, `null` to clear.
pub(crate) fn write(
    attrs: &[CustomAttribute],
    changes: &BTreeMap<String, Option<Vec<String>>>,
) -> BackendResult<Map<String, Value>> {
    let mut out = Map::new();
    for (field, values) in changes {
        let a = attrs
            .iter()
            .find(|a| a.field == *field)
            .ok_or_else(|| BackendError::Invalid(format!("{field} is not a configured Dolibarr extra field")))?;
        let value = match values.as_deref() {
            None | Some([]) => Value::Null,
            Some(vs) if a.multi => json!(vs.join(&a.separator)),
            Some([one]) => wire_value(a, one)?,
            Some(_) => return Err(BackendError::Invalid(format!("{field} takes a single value"))),
        };
        out.insert(format!("{PREFIX}{field}"), value);
    }
    Ok(out)
}

fn wire_value(a: &CustomAttribute, v: &str) -> BackendResult<Value> {
    let bad = |what: &str| BackendError::Invalid(format!("{:?} is not {what} for extra field {}", v, a.field));
    Ok(match a.syntax {
        AttributeSyntax::String => json!(v),
        AttributeSyntax::Integer => {
            let n: i64 = v.trim().parse().map_err(|_| bad("an integer"))?;
            if !INT_RANGE.contains(&n) {
                return Err(bad("an integer Dolibarr can store (32-bit)"));
            }
            json!(n)
        }
        // Dolibarr takes Unix seconds (or YYYY-MM-DD) and keeps the date part.
        AttributeSyntax::Date => {
            let n: i64 = v.trim().parse().map_err(|_| bad("a date in Unix seconds"))?;
            let year = time::OffsetDateTime::from_unix_timestamp(n).map(|t| t.year()).unwrap_or(0);
            if !(1000..=9999).contains(&year) {
                return Err(bad("a date Dolibarr can store (years 1000 to 9999)"));
            }
            json!(n)
        }
        AttributeSyntax::Boolean => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => json!(1),
            "false" | "0" => json!(0),
            _ => return Err(bad("a boolean")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(field: &str, syntax: AttributeSyntax, multi: bool) -> CustomAttribute {
        CustomAttribute {
            name: field.into(),
            field: field.into(),
            scim_name: None,
            syntax,
            multi,
            separator: ",".into(),
            writable: true,
            indexed: true,
        }
    }

    fn attrs() -> Vec<CustomAttribute> {
        vec![
            attr("costcenter", AttributeSyntax::String, false),
            attr("badgeno", AttributeSyntax::Integer, false),
            attr("contractend", AttributeSyntax::Date, false),
            attr("remote", AttributeSyntax::Boolean, false),
            attr("skills", AttributeSyntax::String, true),
        ]
    }

    #[test]
    fn recorded_shapes_read_canonical() {
        let got = read(
            &attrs(),
            &json!({"options_costcenter": "CC-100", "options_badgeno": "4711", "options_contractend": 1814313600,
                    "options_remote": "1", "options_skills": "rust, sql,,ldap", "options_unpublished": "x"}),
        );
        let want: BTreeMap<String, Vec<String>> = [
            ("costcenter", vec!["CC-100"]),
            ("badgeno", vec!["4711"]),
            ("contractend", vec!["1814313600"]),
            ("remote", vec!["true"]),
            ("skills", vec!["rust", "sql", "ldap"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn empty_shapes_are_absent() {
        assert!(read(&attrs(), &json!([])).is_empty(), "no extra field defined");
        let none = json!({"options_costcenter": null, "options_badgeno": null, "options_contractend": null});
        assert!(read(&attrs(), &none).is_empty(), "no extra-field row");
        let empty = json!({"options_costcenter": "", "options_badgeno": "", "options_contractend": "",
                           "options_remote": null, "options_skills": " , "});
        assert!(read(&attrs(), &empty).is_empty(), "row without values");
        assert!(read(&attrs(), &json!({"options_contractend": false, "options_badgeno": "abc"})).is_empty());
        assert_eq!(read(&attrs(), &json!({"options_remote": 0}))["remote"], ["false"]);
    }

    #[test]
    fn writes_in_wire_types() {
        let ch = |f: &str, v: Option<&[&str]>| {
            let m: BTreeMap<String, Option<Vec<String>>> =
                [(f.to_string(), v.map(|v| v.iter().map(|s| s.to_string()).collect()))].into();
            write(&attrs(), &m)
        };
        assert_eq!(ch("costcenter", Some(&["CC-1"])).unwrap()["options_costcenter"], json!("CC-1"));
        assert_eq!(ch("badgeno", Some(&["4711"])).unwrap()["options_badgeno"], json!(4711));
        assert_eq!(ch("contractend", Some(&["1814313600"])).unwrap()["options_contractend"], json!(1814313600));
        assert_eq!(ch("remote", Some(&["false"])).unwrap()["options_remote"], json!(0));
        assert_eq!(ch("remote", Some(&["true"])).unwrap()["options_remote"], json!(1));
        assert_eq!(ch("skills", Some(&["a", "b"])).unwrap()["options_skills"], json!("a,b"));
        assert_eq!(ch("badgeno", None).unwrap()["options_badgeno"], Value::Null);
        for (f, v) in [
            ("badgeno", "abc"),
            ("badgeno", "99999999999"),
            ("contractend", "2027-06-30"),
            ("contractend", "999999999999999"),
            ("remote", "maybe"),
        ] {
            assert!(matches!(ch(f, Some(&[v])), Err(BackendError::Invalid(_))), "{f}={v}");
        }
        assert!(matches!(ch("nosuch", Some(&["x"])), Err(BackendError::Invalid(_))));
    }
}
