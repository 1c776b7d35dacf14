//! The SCIM filter grammar (RFC 7644 §3.4.2.2) as `?filter=` and POST /.search deliver it: parsing
//! never panics, a refusal is an invalidFilter error, and an accepted filter validates and
//! evaluates against users and groups.
#![no_main]

mod common;

use idgate::scim::filter::{indexed_eq, matches, parse_filter, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let limits = common::limits();
    let f = match parse_filter(text, limits) {
        Ok(f) => f,
        Err(e) => return common::check_error(&e, &["invalidFilter"]),
    };
    // Parentheses around a whole filter change nothing, unless they pass the nesting limit.
    match parse_filter(&format!("({text})"), limits) {
        Ok(g) => assert_eq!(g, f, "parenthesised filter parses differently"),
        Err(e) => assert!(e.detail.contains("deeper") || e.detail.contains("bytes"), "{}", e.detail),
    }
    let _ = indexed_eq(&f);
    for (def, res) in [(common::user_def(), common::user()), (common::group_def(), common::group())] {
        match validate(&f, &def) {
            Ok(()) => {
                let _ = matches(&f, &def, &res);
            }
            Err(e) => common::check_error(&e, &["invalidFilter"]),
        }
    }
});
