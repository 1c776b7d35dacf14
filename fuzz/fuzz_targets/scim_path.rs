//! The attribute path grammars: PATCH `path` (RFC 7644 §3.5.2, `attr[filter].sub`) and the
//! `attributes`/`excludedAttributes` lists. Parsing never panics, a refusal is a typed SCIM
//! error, and an accepted path can be applied with each operation to a user and a group.
#![no_main]

mod common;

use idgate::scim::filter::parse_path;
use idgate::scim::patch::{OpKind, PatchOp};
use idgate::scim::resource::{parse_attr_list, project};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let limits = common::limits();

    match parse_attr_list(text) {
        Ok(list) => {
            let _ = project(common::user(), &common::user_def(), &list, &[]);
            let _ = project(common::user(), &common::user_def(), &[], &list);
            let _ = project(common::group(), &common::group_def(), &list, &[]);
        }
        Err(e) => common::check_error(&e, &["invalidValue"]),
    }

    match parse_path(text, limits) {
        Ok(p) => {
            if p.filter.is_none() {
                let shown = p.attr.display();
                let again = parse_path(&shown, limits).unwrap_or_else(|e| panic!("{shown:?}: {}", e.detail));
                assert_eq!(again, p, "path display round trip");
            }
        }
        Err(e) => return common::check_error(&e, &["invalidPath"]),
    }

    let values = [
        None,
        Some(json!("x@example.com")),
        Some(json!(true)),
        Some(json!(null)),
        Some(json!({"value": "9", "type": "work", "primary": true})),
        Some(json!([{"value": "9"}, "8"])),
    ];
    for value in values {
        for op in [OpKind::Add, OpKind::Replace, OpKind::Remove] {
            if op != OpKind::Remove && value.is_none() {
                continue;
            }
            common::apply_to_both(&[PatchOp { op, path: Some(text.to_string()), value: value.clone() }]);
        }
    }
});
