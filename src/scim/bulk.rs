//! `/Bulk` (RFC 7644 §3.7): operations run in order through the same code as the single-resource
//! endpoints; `bulkId:` references are resolved from earlier results, an operation whose reference
//! is not resolved yet waits for it, and references that can never resolve are reported as circular.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ScimError;
use super::filter::get_ci;
use super::schema::{BULK_RESPONSE_URN, Kind};
use super::service::{self, Change, Reply};
use super::{Authed, ScimBody, ScimState, scim_json};
use crate::directory::Caller;

struct BulkOp {
    method: Method,
    path: String,
    bulk_id: Option<String>,
    version: Option<String>,
    data: Option<Value>,
}

fn parse_ops(body: &Value, max: usize) -> Result<(Vec<BulkOp>, Option<usize>), ScimError> {
    let ops = get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("a BulkRequest needs an Operations array"))?;
    if ops.len() > max {
        return Err(ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("{} operations; at most {max} per request (bulk.maxOperations)", ops.len()),
        ));
    }
    let fail_on_errors = match get_ci(body, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| ScimError::invalid_value("failOnErrors must be a positive integer"))?
                as usize,
        ),
    };
    let parsed = ops
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let method = get_ci(o, "method")
                .and_then(Value::as_str)
                .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
                .filter(|m| [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(m))
                .ok_or_else(|| {
                    ScimError::invalid_syntax(format!("operation {}: method must be POST, PUT, PATCH or DELETE", i + 1))
                })?;
            let path = get_ci(o, "path")
                .and_then(Value::as_str)
                .ok_or_else(|| ScimError::invalid_syntax(format!("operation {}: path is required", i + 1)))?
                .to_string();
            let bulk_id = get_ci(o, "bulkId").and_then(Value::as_str).map(String::from);
            if method == Method::POST && bulk_id.is_none() {
                return Err(ScimError::invalid_syntax(format!("operation {}: POST needs a bulkId", i + 1)));
            }
            Ok(BulkOp {
                method,
                path,
                bulk_id,
                version: get_ci(o, "version").and_then(Value::as_str).map(String::from),
                data: get_ci(o, "data").cloned(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // References resolve by bulkId, so two operations may not share one.
    let mut seen = std::collections::HashMap::new();
    for (i, op) in parsed.iter().enumerate() {
        if let Some(b) = &op.bulk_id
            && let Some(first) = seen.insert(b.as_str(), i)
        {
            return Err(ScimError::bad_request(
                "invalidValue",
                format!("operations {} and {} have the same bulkId {b:?}; bulkIds must be unique", first + 1, i + 1),
            ));
        }
    }
    Ok((parsed, fail_on_errors))
}

/// Every `bulkId:x` reference in a string or JSON value.
fn refs_in(s: &str, out: &mut Vec<String>) {
    let mut rest = s;
    while let Some(i) = rest.find("bulkId:") {
        let tail = &rest[i + 7..];
        let end =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')).unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
}

fn value_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => refs_in(s, out),
        Value::Array(a) => a.iter().for_each(|x| value_refs(x, out)),
        Value::Object(o) => o.values().for_each(|x| value_refs(x, out)),
        _ => {}
    }
}

fn substitute(s: &str, ids: &HashMap<String, String>) -> String {
    let mut out = s.to_string();
    for (b, id) in ids {
        out = out.replace(&format!("bulkId:{b}"), id);
    }
    out
}

fn substitute_value(v: &mut Value, ids: &HashMap<String, String>) {
    match v {
        Value::String(s) if s.contains("bulkId:") => *s = substitute(s, ids),
        Value::Array(a) => a.iter_mut().for_each(|x| substitute_value(x, ids)),
        Value::Object(o) => o.values_mut().for_each(|x| substitute_value(x, ids)),
        _ => {}
    }
}

fn kind_and_id(path: &str) -> Result<(Kind, Option<String>), ScimError> {
    let p = path.trim_start_matches('/');
    let (t, id) = match p.split_once('/') {
        Some((t, id)) => (t, Some(id.to_string())),
        None => (p, None),
    };
    let kind = if t.eq_ignore_ascii_case("Users") {
        Kind::User
    } else if t.eq_ignore_ascii_case("Groups") {
        Kind::Group
    } else {
        return Err(ScimError::bad_request("invalidPath", format!("unknown bulk path {path:?}")));
    };
    Ok((kind, id.filter(|i| !i.is_empty())))
}

async fn run_one(
    s: &ScimState,
    p: &Caller,
    op: &BulkOp,
    path: &str,
    data: Option<&Value>,
    base: &str,
) -> Result<Reply, ScimError> {
    let (kind, id) = kind_and_id(path)?;
    let need_data = || data.ok_or_else(|| ScimError::invalid_syntax("data is required"));
    let headers = op.version.as_ref().and_then(|v| {
        let mut h = axum::http::HeaderMap::new();
        h.insert(axum::http::header::IF_MATCH, v.parse().ok()?);
        Some(h)
    });
    match (&op.method, id) {
        (&Method::POST, None) => service::create(s, p, kind, need_data()?, base).await,
        (&Method::PUT, Some(id)) => {
            service::modify(s, p, kind, &id, Change::Replace(need_data()?), headers.as_ref(), base).await
        }
        (&Method::PATCH, Some(id)) => {
            service::modify(s, p, kind, &id, Change::Patch(need_data()?), headers.as_ref(), base).await
        }
        (&Method::DELETE, Some(id)) => service::remove(s, p, kind, &id, headers.as_ref(), base).await,
        _ => Err(ScimError::bad_request("invalidPath", format!("{} {path}: wrong path for this method", op.method))),
    }
}

pub async fn handle(
    State(s): State<Arc<ScimState>>,
    Authed(p): Authed,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Response {
    let base = s.base(&headers);
    let (ops, fail_on_errors) = match parse_ops(&body, s.cfg.bulk_max_operations) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let mut results: Vec<Option<Value>> = vec![None; ops.len()];
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut errors = 0usize;
    let mut pending: Vec<usize> = (0..ops.len()).collect();
    'outer: loop {
        let mut progressed = false;
        let mut still = Vec::new();
        for &i in &pending {
            let op = &ops[i];
            let mut refs = Vec::new();
            refs_in(&op.path, &mut refs);
            if let Some(d) = &op.data {
                value_refs(d, &mut refs);
            }
            // A reference to an operation that failed can never resolve.
            let failed_ref = refs.iter().find(|r| {
                !ids.contains_key(*r)
                    && ops
                        .iter()
                        .enumerate()
                        .any(|(j, o)| o.bulk_id.as_deref() == Some(r.as_str()) && results[j].is_some())
            });
            let unknown_ref = refs.iter().find(|r| ops.iter().all(|o| o.bulk_id.as_deref() != Some(r.as_str())));
            let outcome = if let Some(r) = failed_ref.or(unknown_ref) {
                Some(Err(ScimError::new(
                    StatusCode::CONFLICT,
                    Some("invalidValue"),
                    format!("bulkId:{r} does not refer to a successful operation of this request"),
                )))
            } else if refs.iter().any(|r| !ids.contains_key(r)) {
                None
            } else {
                let path = substitute(&op.path, &ids);
                let mut data = op.data.clone();
                if let Some(d) = data.as_mut() {
                    substitute_value(d, &ids);
                }
                Some(run_one(&s, &p, op, &path, data.as_ref(), &base).await)
            };
            let Some(outcome) = outcome else {
                still.push(i);
                continue;
            };
            progressed = true;
            let mut r = json!({"method": op.method.as_str()});
            if let Some(b) = &op.bulk_id {
                r["bulkId"] = json!(b);
            }
            match outcome {
                Ok(reply) => {
                    if let (Some(b), Some(id)) = (&op.bulk_id, reply.body.as_ref().and_then(|v| v["id"].as_str())) {
                        ids.insert(b.clone(), id.to_string());
                    }
                    r["status"] = json!(reply.status.as_u16().to_string());
                    if let Some(l) = reply.location {
                        r["location"] = json!(l);
                    }
                    if let Some(v) = reply.etag {
                        r["version"] = json!(v);
                    }
                }
                Err(e) => {
                    errors += 1;
                    r["status"] = json!(e.status.as_u16().to_string());
                    r["response"] = e.body();
                }
            }
            results[i] = Some(r);
            if fail_on_errors.is_some_and(|n| errors >= n) {
                break 'outer;
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if !progressed {
            // Whatever is left waits on itself: circular references (RFC 7644 §3.7.1).
            for &i in &pending {
                let op = &ops[i];
                let e = ScimError::new(StatusCode::CONFLICT, Some("invalidValue"), "circular bulkId reference");
                let mut r = json!({"method": op.method.as_str(), "status": "409", "response": e.body()});
                if let Some(b) = &op.bulk_id {
                    r["bulkId"] = json!(b);
                }
                results[i] = Some(r);
            }
            break;
        }
    }
    let ops_out: Vec<Value> = results.into_iter().flatten().collect();
    scim_json(StatusCode::OK, &json!({"schemas": [BULK_RESPONSE_URN], "Operations": ops_out}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let mut r = Vec::new();
        refs_in("/Groups/bulkId:g1", &mut r);
        value_refs(&json!({"members": [{"value": "bulkId:u-1"}, {"value": "7"}]}), &mut r);
        assert_eq!(r, ["g1", "u-1"]);
        let ids = HashMap::from([("u-1".to_string(), "42".to_string())]);
        let mut v = json!({"members": [{"value": "bulkId:u-1"}]});
        substitute_value(&mut v, &ids);
        assert_eq!(v["members"][0]["value"], "42");
    }

    #[test]
    fn limits_and_shapes() {
        let body = json!({"Operations": [{"method": "POST", "path": "/Users", "bulkId": "a", "data": {}},
                                         {"method": "POST", "path": "/Users", "bulkId": "b", "data": {}}]});
        assert_eq!(parse_ops(&body, 1).err().map(|e| e.status.as_u16()), Some(413));
        assert!(parse_ops(&body, 2).is_ok());
        let e = parse_ops(&json!({"Operations": [{"method": "POST", "path": "/Users"}]}), 5).err().map(|e| e.detail);
        assert!(e.is_some_and(|d| d.contains("bulkId")));
        assert!(kind_and_id("/Things").is_err());
        assert_eq!(kind_and_id("/Groups/3").ok(), Some((Kind::Group, Some("3".into()))));
    }
}
