//! Compares a recorded or documented JSON body with a simulator's answer, for the contract replays.
//! Only volatile values (dates, tokens) are exempt, and each replay says which ones.

use serde_json::Value;

pub struct Rules<'a> {
    /// Keys that must be present on both sides but whose values change from run to run.
    pub skip: &'a [&'a str],
    /// Keys compared with `loose` instead of equality (e.g. timestamps in another format).
    pub loose: &'a [&'a str],
    pub loose_eq: fn(&Value, &Value) -> bool,
    /// The recording was trimmed: extra keys and extra array items in the answer are accepted.
    pub trimmed: bool,
}

impl Default for Rules<'_> {
    fn default() -> Self {
        Rules { skip: &[], loose: &[], loose_eq: |a, b| a == b, trimmed: false }
    }
}

/// Every difference between `want` and `got`, one line each (empty when they agree).
pub fn diff(want: &Value, got: &Value, rules: &Rules) -> Vec<String> {
    let mut errors = Vec::new();
    walk(want, got, "body", rules, &mut errors);
    errors
}

fn walk(want: &Value, got: &Value, path: &str, rules: &Rules, errors: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    None => errors.push(format!("{p}: missing")),
                    Some(_) if rules.skip.contains(&k.as_str()) => {}
                    Some(gv) if rules.loose.contains(&k.as_str()) => {
                        if !(rules.loose_eq)(wv, gv) {
                            errors.push(format!("{p}: recorded {wv}, answered {gv}"));
                        }
                    }
                    Some(gv) => walk(wv, gv, &p, rules, errors),
                }
            }
            if !rules.trimmed {
                for k in g.keys().filter(|k| !w.contains_key(*k) && !rules.skip.contains(&k.as_str())) {
                    errors.push(format!("{path}.{k}: unexpected"));
                }
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            if w.len() != g.len() && !(rules.trimmed && g.len() > w.len()) {
                errors.push(format!("{path}: {} items recorded, {} answered", w.len(), g.len()));
            }
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                walk(wv, gv, &format!("{path}[{i}]"), rules, errors);
            }
        }
        _ if want != got => errors.push(format!("{path}: recorded {want}, answered {got}")),
        _ => {}
    }
}
