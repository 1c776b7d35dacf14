//! Distinguished names as clients send them (bind, search base, add, modify DN): parsing never
//! panics, and the forms idgate writes back parse to the same name.
#![no_main]

use idgate::ldap::dn::{Dn, escape_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Any text is also a candidate attribute value: escaping must make it survive a parse.
    let value = Dn::parse(&format!("cn={},dc=example", escape_value(text))).expect("an escaped value parses");
    assert_eq!(value.rdn().unwrap().first().value, text, "escaped value round trip");

    let Ok(dn) = Dn::parse(text) else { return };
    let norm = dn.normalized();
    let again = Dn::parse(&norm).unwrap_or_else(|e| panic!("normalized form {norm:?} does not parse: {e}"));
    assert_eq!(again.normalized(), norm, "normalisation is idempotent");
    assert_eq!(again.len(), dn.len());

    let shown = dn.to_string();
    let reparsed = Dn::parse(&shown).unwrap_or_else(|e| panic!("displayed form {shown:?} does not parse: {e}"));
    assert_eq!(reparsed, dn, "display round trip");

    // The hierarchy agrees with itself.
    assert!(dn.is_within(&dn));
    assert!(dn.is_within(&Dn::root()));
    if !dn.is_root() {
        let parent = dn.parent();
        assert_eq!(parent.len() + 1, dn.len());
        assert!(dn.is_within(&parent));
        assert!(!parent.is_within(&dn));
    }
});
