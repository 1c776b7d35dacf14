//! Value normalisation per matching rule, and GeneralizedTime.

use super::dn::Dn;
use super::schema::Matching;

/// A value reduced to the form its matching rule compares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Norm {
    Str(String),
    Int(i128),
    /// Unix milliseconds.
    Time(i64),
}

fn fold_spaces(s: &str) -> String {
    if !s.is_ascii() {
        return s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    }
    // Most values are ASCII: one pass and one allocation. The same spaces as `split_whitespace`
    // (tab to carriage return, and space).
    let mut out = String::with_capacity(s.len());
    let mut gap = false;
    for b in s.bytes() {
        if matches!(b, b'\t'..=b'\r' | b' ') {
            gap = !out.is_empty();
        } else {
            if gap {
                out.push(' ');
                gap = false;
            }
            out.push(b.to_ascii_lowercase() as char);
        }
    }
    out
}

/// `None` when the value is not valid for the rule (the assertion is then Undefined).
pub fn normalize(m: Matching, v: &str) -> Option<Norm> {
    Some(match m {
        Matching::CaseIgnore | Matching::Oid => Norm::Str(fold_spaces(v)),
        Matching::Uuid => Norm::Str(v.trim().to_ascii_lowercase()),
        Matching::Telephone => {
            Norm::Str(v.chars().filter(|c| !c.is_whitespace() && *c != '-').collect::<String>().to_lowercase())
        }
        Matching::Integer => Norm::Int(v.trim().parse().ok()?),
        Matching::GeneralizedTime => Norm::Time(parse_generalized_time(v)?),
        Matching::Dn => Norm::Str(Dn::parse(v).ok()?.normalized()),
        Matching::Boolean => match v.trim().to_ascii_uppercase().as_str() {
            "TRUE" => Norm::Str("TRUE".into()),
            "FALSE" => Norm::Str("FALSE".into()),
            _ => return None,
        },
    })
}

/// The string form used as an index key (equality only).
pub fn index_key(m: Matching, v: &str) -> Option<String> {
    Some(match normalize(m, v)? {
        Norm::Str(s) => s,
        Norm::Int(i) => i.to_string(),
        Norm::Time(t) => t.to_string(),
    })
}

/// True when the rule defines substring matching.
pub fn has_substrings(m: Matching) -> bool {
    matches!(m, Matching::CaseIgnore | Matching::Telephone)
}

/// True when the rule defines ordering.
pub fn has_ordering(m: Matching) -> bool {
    matches!(m, Matching::CaseIgnore | Matching::Integer | Matching::GeneralizedTime | Matching::Uuid)
}

/// `YYYYMMDDHH[MM[SS]][.fff](Z|±hh[mm])` to Unix milliseconds.
pub fn parse_generalized_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if !matches!(digits, 10 | 12 | 14) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d, h) = (num(0..4)?, num(4..6)?, num(6..8)?, num(8..10)?);
    let mi = if digits >= 12 { num(10..12)? } else { 0 };
    let se = if digits >= 14 { num(12..14)? } else { 0 };
    let mut rest = &s[digits..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(',')) {
        let n = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let f: String = frac[..n].chars().chain("000".chars()).take(3).collect();
        millis = f.parse().ok()?;
        rest = &frac[n..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        o if (o.len() == 3 || o.len() == 5) && (o.starts_with('+') || o.starts_with('-')) => {
            let oh: i64 = o.get(1..3)?.parse().ok()?;
            let om: i64 = if o.len() == 5 { o.get(3..5)?.parse().ok()? } else { 0 };
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let month = time::Month::try_from(mo as u8).ok()?;
    let date = time::Date::from_calendar_date(y as i32, month, d as u8).ok()?;
    let days = date.to_julian_day() as i64 - 2_440_588; // Julian day of 1970-01-01
    let secs = days * 86_400 + h * 3600 + mi * 60 + se.min(59) - offset_secs;
    Some(secs * 1000 + millis)
}

/// Unix seconds to `YYYYMMDDHHMMSSZ`.
pub fn format_generalized_time(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}{:02}{:02}{:02}{:02}{:02}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_time_round_trip_and_forms() {
        assert_eq!(parse_generalized_time("19700101000000Z"), Some(0));
        assert_eq!(parse_generalized_time("1970010100Z"), Some(0));
        assert_eq!(parse_generalized_time("19700101010000+0100"), Some(0));
        assert_eq!(parse_generalized_time("20240229123456.5Z"), Some(1_709_210_096_500));
        assert_eq!(format_generalized_time(1_709_210_096), "20240229123456Z");
        for bad in ["", "2024", "20241301000000Z", "20240101000000", "20240101000000X", "2024010100000Z"] {
            assert_eq!(parse_generalized_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize(Matching::CaseIgnore, "  John   DOE "), Some(Norm::Str("john doe".into())));
        assert_eq!(normalize(Matching::CaseIgnore, "\tA\x0b\x0cb\r\n"), Some(Norm::Str("a b".into())));
        assert_eq!(normalize(Matching::CaseIgnore, " Ärger  IST "), Some(Norm::Str("ärger ist".into())));
        assert_eq!(normalize(Matching::CaseIgnore, "   "), Some(Norm::Str(String::new())));
        assert_eq!(normalize(Matching::Telephone, "+33 1-23"), Some(Norm::Str("+33123".into())));
        assert_eq!(normalize(Matching::Integer, "x"), None);
        assert_eq!(normalize(Matching::Integer, " 42"), Some(Norm::Int(42)));
        assert_eq!(normalize(Matching::Dn, "UID=A, OU=People,dc=X"), Some(Norm::Str("uid=a,ou=people,dc=x".into())));
        assert!(normalize(Matching::Integer, "3") < normalize(Matching::Integer, "20"));
    }
}
