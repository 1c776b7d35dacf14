//! A secret from the config: a literal string, `{ env = "VAR" }` or `{ file = "/path" }`.
//! Its `Debug` never shows the value.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, { env = \"VAR\" } or { file = \"/path\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom("empty secret table; use { env = \"VAR\" } or { file = \"/path\" }"));
                };
                let val: String = map.next_value()?;
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!("unexpected key `{extra}` in secret table")));
                }
                match key.as_str() {
                    "env" => std::env::var(&val)
                        .map(Secret)
                        .map_err(|_| de::Error::custom(format!("environment variable {val} is not set"))),
                    "file" => std::fs::read_to_string(&val)
                        .map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_string()))
                        .map_err(|e| de::Error::custom(format!("cannot read secret file {val}: {e}"))),
                    other => Err(de::Error::unknown_field(other, &["env", "file"])),
                }
            }
        }
        d.deserialize_any(V)
    }
}
