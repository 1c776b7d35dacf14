//! Distinguished names per RFC 4514: escapes (`\,`, `\2C`), multi-valued RDNs, case-insensitive
//! attribute types, insignificant spaces. Every attribute in our tree compares case-insensitively,
//! so the normalised form lower-cases values too.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnError {
    #[error("invalid DN {dn:?}: {why}")]
    Invalid { dn: String, why: &'static str },
}

/// One `type=value` pair. `attr` is lower-case; `value` is the unescaped value as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ava {
    pub attr: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rdn(pub Vec<Ava>);

impl Rdn {
    /// The first (usually only) pair.
    pub fn first(&self) -> &Ava {
        &self.0[0]
    }
}

/// A parsed DN, most specific RDN first, as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dn {
    rdns: Vec<Rdn>,
}

impl Dn {
    pub fn root() -> Dn {
        Dn::default()
    }

    pub fn parse(s: &str) -> Result<Dn, DnError> {
        let err = |why| DnError::Invalid { dn: s.to_string(), why };
        if s.trim().is_empty() {
            return Ok(Dn::root());
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut rdns = Vec::new();
        let mut avas = Vec::new();
        loop {
            // attribute type
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            let start = i;
            while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b',' && bytes[i] != b'+' {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] != b'=' {
                return Err(err("expected type=value"));
            }
            let attr = s[start..i].trim();
            if attr.is_empty() {
                return Err(err("empty attribute type"));
            }
            let valid_type = attr.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && (attr.as_bytes()[0].is_ascii_alphabetic() || attr.as_bytes()[0].is_ascii_digit());
            if !valid_type {
                return Err(err("invalid attribute type"));
            }
            i += 1; // '='
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            // value
            let mut value: Vec<u8> = Vec::new();
            let mut keep = 0; // length up to the last escaped byte, which trailing-space trimming must not cut
            while i < bytes.len() && bytes[i] != b',' && bytes[i] != b'+' && bytes[i] != b';' {
                if bytes[i] == b'\\' {
                    let next = *bytes.get(i + 1).ok_or_else(|| err("dangling escape"))?;
                    if next.is_ascii_hexdigit() {
                        let lo = *bytes.get(i + 2).ok_or_else(|| err("short hex escape"))?;
                        let hex = [next, lo];
                        let h = std::str::from_utf8(&hex).map_err(|_| err("bad hex escape"))?;
                        value.push(u8::from_str_radix(h, 16).map_err(|_| err("bad hex escape"))?);
                        i += 3;
                    } else {
                        value.push(next);
                        i += 2;
                    }
                    keep = value.len();
                } else {
                    value.push(bytes[i]);
                    i += 1;
                }
            }
            while value.len() > keep && value.last() == Some(&b' ') {
                value.pop();
            }
            let value = String::from_utf8(value).map_err(|_| err("value is not UTF-8"))?;
            avas.push(Ava { attr: attr.to_ascii_lowercase(), value });
            if i >= bytes.len() {
                rdns.push(Rdn(std::mem::take(&mut avas)));
                break;
            }
            let sep = bytes[i];
            i += 1;
            if sep != b'+' {
                rdns.push(Rdn(std::mem::take(&mut avas)));
            }
            if i >= bytes.len() {
                return Err(err("trailing separator"));
            }
        }
        Ok(Dn { rdns })
    }

    pub fn rdns(&self) -> &[Rdn] {
        &self.rdns
    }
    pub fn len(&self) -> usize {
        self.rdns.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }
    pub fn is_root(&self) -> bool {
        self.rdns.is_empty()
    }
    pub fn rdn(&self) -> Option<&Rdn> {
        self.rdns.first()
    }
    pub fn parent(&self) -> Dn {
        Dn { rdns: self.rdns.iter().skip(1).cloned().collect() }
    }

    /// `self` under `parent` (one RDN more).
    pub fn child(parent: &Dn, attr: &str, value: &str) -> Dn {
        let mut rdns = vec![Rdn(vec![Ava { attr: attr.to_ascii_lowercase(), value: value.to_string() }])];
        rdns.extend(parent.rdns.iter().cloned());
        Dn { rdns }
    }

    /// Canonical lower-case form, used as a map key and for comparisons.
    pub fn normalized(&self) -> String {
        let mut out = String::new();
        for (n, rdn) in self.rdns.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let mut avas: Vec<(String, String)> =
                rdn.0.iter().map(|a| (a.attr.clone(), a.value.to_lowercase())).collect();
            avas.sort();
            for (k, (attr, value)) in avas.iter().enumerate() {
                if k > 0 {
                    out.push('+');
                }
                out.push_str(attr);
                out.push('=');
                escape_value_into(value, &mut out);
            }
        }
        out
    }

    /// True when `self` equals `ancestor` or lies below it.
    pub fn is_within(&self, ancestor: &Dn) -> bool {
        let n = ancestor.rdns.len();
        if n > self.rdns.len() {
            return false;
        }
        let tail = &self.rdns[self.rdns.len() - n..];
        tail.iter().zip(&ancestor.rdns).all(|(a, b)| rdn_eq(a, b))
    }
}

fn rdn_eq(a: &Rdn, b: &Rdn) -> bool {
    a.0.len() == b.0.len()
        && a.0.iter().all(|x| b.0.iter().any(|y| x.attr == y.attr && x.value.to_lowercase() == y.value.to_lowercase()))
}

/// Escapes an attribute value per RFC 4514 §2.4.
pub fn escape_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    escape_value_into(v, &mut s);
    s
}

fn escape_value_into(v: &str, out: &mut String) {
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, rdn) in self.rdns.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            for (k, a) in rdn.0.iter().enumerate() {
                if k > 0 {
                    f.write_str("+")?;
                }
                write!(f, "{}={}", a.attr, escape_value(&a.value))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_spaces_are_insignificant() {
        let a = Dn::parse("UID=JDoe, OU=People ,dc=Example,dc=com").unwrap();
        let b = Dn::parse("uid=jdoe,ou=people,dc=example,dc=com").unwrap();
        assert_eq!(a.normalized(), b.normalized());
        assert_eq!(a.len(), 4);
        assert_eq!(a.rdn().unwrap().first().value, "JDoe");
    }

    #[test]
    fn escapes_round_trip() {
        let d = Dn::parse(r"cn=Doe\, John\2B\20,ou=people,dc=example,dc=com").unwrap();
        assert_eq!(d.rdn().unwrap().first().value, "Doe, John+ ");
        let again = Dn::parse(&d.to_string()).unwrap();
        assert_eq!(again, d);
        let hash = Dn::parse(r"cn=\#x,dc=a").unwrap();
        assert_eq!(hash.rdn().unwrap().first().value, "#x");
        assert_eq!(Dn::parse(&hash.to_string()).unwrap(), hash);
    }

    #[test]
    fn utf8_hex_escapes() {
        let d = Dn::parse(r"cn=Zo\C3\AB,dc=a").unwrap();
        assert_eq!(d.rdn().unwrap().first().value, "Zoë");
        assert!(Dn::parse(r"cn=\ff\fe,dc=a").is_err());
    }

    #[test]
    fn multi_valued_rdn_order_does_not_matter() {
        let a = Dn::parse("cn=a+uid=b,dc=x").unwrap();
        let b = Dn::parse("uid=B+cn=A,dc=x").unwrap();
        assert_eq!(a.normalized(), b.normalized());
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["foo", "cn=a,", ",cn=a", "=a", "cn=a\\", "c n=a", "cn=a,,dc=b"] {
            assert!(Dn::parse(bad).is_err(), "{bad}");
        }
        assert!(Dn::parse("").unwrap().is_root());
    }

    #[test]
    fn hierarchy() {
        let base = Dn::parse("dc=example,dc=com").unwrap();
        let u = Dn::parse("uid=a,ou=People,DC=Example,dc=com").unwrap();
        assert!(u.is_within(&base));
        assert!(base.is_within(&base));
        assert!(!base.is_within(&u));
        assert!(u.is_within(&Dn::root()));
        assert_eq!(u.parent().normalized(), "ou=people,dc=example,dc=com");
        assert_eq!(Dn::child(&base, "ou", "x").to_string(), "ou=x,dc=example,dc=com");
    }
}
