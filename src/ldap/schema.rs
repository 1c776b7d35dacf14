//! The attribute types and object classes our entries use. One table drives attribute-name
//! resolution (names, aliases, OIDs), matching in filters, and the published `cn=schema` entry, so
//! what the schema says and what the server does cannot drift apart.

/// How values of an attribute compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// Case-insensitive, insignificant spaces folded; ordering by the folded string.
    CaseIgnore,
    /// Like CaseIgnore, but spaces and hyphens are insignificant (telephone numbers).
    Telephone,
    Integer,
    GeneralizedTime,
    Dn,
    /// Object identifiers or descriptors (objectClass values): case-insensitive, no substrings.
    Oid,
    Uuid,
    Boolean,
}

#[derive(Debug)]
pub struct AttrDef {
    /// Canonical name, as returned to clients.
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub oid: &'static str,
    pub syntax: &'static str,
    pub matching: Matching,
    pub single_value: bool,
    /// Operational attributes are returned only on request (`+` or by name).
    pub operational: bool,
    /// Returned with `*` although operational elsewhere, because clients expect them there.
    pub in_user_set: bool,
    pub no_user_modification: bool,
}

const DIRECTORY_STRING: &str = "1.3.6.1.4.1.1466.115.121.1.15";
const IA5_STRING: &str = "1.3.6.1.4.1.1466.115.121.1.26";
const INTEGER: &str = "1.3.6.1.4.1.1466.115.121.1.27";
const GENERALIZED_TIME: &str = "1.3.6.1.4.1.1466.115.121.1.24";
const DN: &str = "1.3.6.1.4.1.1466.115.121.1.12";
const OID: &str = "1.3.6.1.4.1.1466.115.121.1.38";
const TELEPHONE: &str = "1.3.6.1.4.1.1466.115.121.1.50";
const UUID: &str = "1.3.6.1.1.16.1";
const BOOLEAN: &str = "1.3.6.1.4.1.1466.115.121.1.7";
const SUBTREE_SPEC: &str = "1.3.6.1.4.1.1466.115.121.1.45";

macro_rules! attr {
    ($name:expr, $oid:expr, $syntax:expr, $m:ident) => {
        attr!($name, [], $oid, $syntax, $m, false, false)
    };
    ($name:expr, [$($alias:expr),*], $oid:expr, $syntax:expr, $m:ident, $single:expr, $op:expr) => {
        AttrDef {
            name: $name,
            aliases: &[$($alias),*],
            oid: $oid,
            syntax: $syntax,
            matching: Matching::$m,
            single_value: $single,
            operational: $op,
            in_user_set: false,
            no_user_modification: $op,
        }
    };
}

/// Every attribute the server knows. Order matters only for `cn=schema` readability.
pub static ATTRS: &[AttrDef] = &[
    attr!("objectClass", [], "2.5.4.0", OID, Oid, false, false),
    attr!("uid", ["userid"], "0.9.2342.19200300.100.1.1", DIRECTORY_STRING, CaseIgnore, false, false),
    attr!("cn", ["commonName"], "2.5.4.3", DIRECTORY_STRING, CaseIgnore, false, false),
    attr!("sn", ["surname"], "2.5.4.4", DIRECTORY_STRING, CaseIgnore, false, false),
    attr!("givenName", ["gn"], "2.5.4.42", DIRECTORY_STRING, CaseIgnore, false, false),
    attr!("displayName", [], "2.16.840.1.113730.3.1.241", DIRECTORY_STRING, CaseIgnore, true, false),
    attr!("mail", ["rfc822Mailbox"], "0.9.2342.19200300.100.1.3", IA5_STRING, CaseIgnore, false, false),
    attr!("telephoneNumber", [], "2.5.4.20", TELEPHONE, Telephone, false, false),
    attr!("mobile", ["mobileTelephoneNumber"], "0.9.2342.19200300.100.1.41", TELEPHONE, Telephone, false, false),
    attr!("title", [], "2.5.4.12", DIRECTORY_STRING, CaseIgnore, false, false),
    attr!("employeeNumber", [], "2.16.840.1.113730.3.1.3", DIRECTORY_STRING, CaseIgnore, true, false),
    attr!("preferredLanguage", [], "2.16.840.1.113730.3.1.39", DIRECTORY_STRING, CaseIgnore, true, false),
    attr!("uidNumber", [], "1.3.6.1.1.1.1.0", INTEGER, Integer, true, false),
    attr!("gidNumber", [], "1.3.6.1.1.1.1.1", INTEGER, Integer, true, false),
    attr!("gecos", [], "1.3.6.1.1.1.1.2", IA5_STRING, CaseIgnore, true, false),
    attr!("homeDirectory", [], "1.3.6.1.1.1.1.3", IA5_STRING, CaseIgnore, true, false),
    attr!("loginShell", [], "1.3.6.1.1.1.1.4", IA5_STRING, CaseIgnore, true, false),
    attr!("memberUid", [], "1.3.6.1.1.1.1.12", IA5_STRING, CaseIgnore, false, false),
    // RFC 4524: the DN of the user's manager (inetOrgPerson may hold it).
    attr!("manager", [], "0.9.2342.19200300.100.1.10", DN, Dn, false, false),
    attr!("member", [], "2.5.4.31", DN, Dn, false, false),
    attr!("uniqueMember", [], "2.5.4.50", DN, Dn, false, false),
    attr!("description", [], "2.5.4.13", DIRECTORY_STRING, CaseIgnore, false, false),
    attr!("ou", ["organizationalUnitName"], "2.5.4.11", DIRECTORY_STRING, CaseIgnore, false, false),
    attr!("o", ["organizationName"], "2.5.4.10", DIRECTORY_STRING, CaseIgnore, false, false),
    attr!("dc", ["domainComponent"], "0.9.2342.19200300.100.1.25", IA5_STRING, CaseIgnore, true, false),
    attr!("userPassword", [], "2.5.4.35", "1.3.6.1.4.1.1466.115.121.1.40", CaseIgnore, false, false),
    AttrDef { in_user_set: true, ..attr!("memberOf", [], "1.2.840.113556.1.2.102", DN, Dn, false, true) },
    AttrDef { in_user_set: true, ..attr!("entryUUID", [], "1.3.6.1.1.16.4", UUID, Uuid, true, true) },
    attr!("entryDN", [], "1.3.6.1.1.20", DN, Dn, true, true),
    attr!("createTimestamp", [], "2.5.18.1", GENERALIZED_TIME, GeneralizedTime, true, true),
    attr!("modifyTimestamp", [], "2.5.18.2", GENERALIZED_TIME, GeneralizedTime, true, true),
    attr!("structuralObjectClass", [], "2.5.21.9", OID, Oid, true, true),
    attr!("subschemaSubentry", [], "2.5.18.10", DN, Dn, true, true),
    attr!("hasSubordinates", [], "2.5.18.9", BOOLEAN, Boolean, true, true),
    attr!("pwdAccountLockedTime", [], "1.3.6.1.4.1.42.2.27.8.1.17", GENERALIZED_TIME, GeneralizedTime, true, true),
    // The published password policy (draft-behera-ldap-password-policy), read by ppolicy-aware clients.
    attr!("pwdAttribute", [], "1.3.6.1.4.1.42.2.27.8.1.1", OID, Oid, true, false),
    attr!("pwdMinLength", [], "1.3.6.1.4.1.42.2.27.8.1.5", INTEGER, Integer, true, false),
    attr!("pwdLockout", [], "1.3.6.1.4.1.42.2.27.8.1.7", BOOLEAN, Boolean, true, false),
    attr!("pwdMaxFailure", [], "1.3.6.1.4.1.42.2.27.8.1.9", INTEGER, Integer, true, false),
    attr!("pwdMustChange", [], "1.3.6.1.4.1.42.2.27.8.1.12", BOOLEAN, Boolean, true, false),
    attr!("pwdAllowUserChange", [], "1.3.6.1.4.1.42.2.27.8.1.13", BOOLEAN, Boolean, true, false),
    attr!("pwdSafeModify", [], "1.3.6.1.4.1.42.2.27.8.1.14", BOOLEAN, Boolean, true, false),
    // Root DSE
    attr!("namingContexts", [], "1.3.6.1.4.1.1466.101.120.5", DN, Dn, false, true),
    attr!("defaultNamingContext", [], "1.2.840.113556.1.4.2034", DN, Dn, true, true),
    attr!("supportedControl", [], "1.3.6.1.4.1.1466.101.120.13", OID, Oid, false, true),
    attr!("supportedExtension", [], "1.3.6.1.4.1.1466.101.120.7", OID, Oid, false, true),
    attr!("supportedFeatures", [], "1.3.6.1.4.1.4203.1.3.5", OID, Oid, false, true),
    attr!("supportedLDAPVersion", [], "1.3.6.1.4.1.1466.101.120.15", INTEGER, Integer, false, true),
    attr!("supportedSASLMechanisms", [], "1.3.6.1.4.1.1466.101.120.14", DIRECTORY_STRING, CaseIgnore, false, true),
    attr!("vendorName", [], "1.3.6.1.1.4", DIRECTORY_STRING, CaseIgnore, true, true),
    attr!("vendorVersion", [], "1.3.6.1.1.5", DIRECTORY_STRING, CaseIgnore, true, true),
    // Subschema
    attr!("attributeTypes", [], "2.5.21.5", DIRECTORY_STRING, CaseIgnore, false, true),
    attr!("objectClasses", [], "2.5.21.6", DIRECTORY_STRING, CaseIgnore, false, true),
    attr!("ldapSyntaxes", [], "1.3.6.1.4.1.1466.101.120.16", DIRECTORY_STRING, CaseIgnore, false, true),
    attr!("matchingRules", [], "2.5.21.4", DIRECTORY_STRING, CaseIgnore, false, true),
    attr!("subtreeSpecification", [], "2.5.18.6", SUBTREE_SPEC, CaseIgnore, true, false),
];

/// Index into [`ATTRS`], or past it a custom attribute of the registry below.
pub type AttrId = usize;

/// Resolves a standard attribute's name, alias or OID (case-insensitive; `;options` ignored).
/// Custom attributes are resolved by [`lookup_in`], against the set one server publishes.
pub fn lookup(name: &str) -> Option<AttrId> {
    let base = name.split(';').next().unwrap_or(name);
    ATTRS.iter().position(|a| {
        a.name.eq_ignore_ascii_case(base) || a.oid == base || a.aliases.iter().any(|al| al.eq_ignore_ascii_case(base))
    })
}

/// Resolves a name or OID among the standard attributes and then the custom ones in `custom`.
pub fn lookup_in(name: &str, custom: &[AttrId]) -> Option<AttrId> {
    lookup(name).or_else(|| {
        let base = name.split(';').next().unwrap_or(name);
        custom.iter().copied().find(|&id| {
            let d = def(id);
            d.name.eq_ignore_ascii_case(base) || d.oid == base
        })
    })
}

/// The id of a name known at compile time.
pub fn id(name: &str) -> AttrId {
    match lookup(name) {
        Some(i) => i,
        None => panic!("attribute {name} missing from the schema table"),
    }
}

pub fn def(id: AttrId) -> &'static AttrDef {
    match ATTRS.get(id) {
        Some(d) => d,
        None => &custom_slot(id).expect("an attribute id handed out by this module").def,
    }
}

// ---- Custom attributes ([[directory.attributes]]) -------------------------------------------
//
// They are known only once a config is read, yet attribute ids are plain numbers that `def`
// resolves without a lock on every comparison. So each distinct definition is registered once per
// process in a fixed table of write-once slots (lock-free reads); a server resolves names only
// among the ids it registered (`lookup_in`), so servers with other configs in the same process
// (tests) never see each other's attributes.

/// A custom attribute's schema entry and its configuration.
#[derive(Debug)]
pub struct CustomDef {
    pub def: AttrDef,
    pub attr: crate::config::CustomAttribute,
}

/// Distinct custom attribute definitions one process may register.
const MAX_CUSTOM: usize = 1024;

static CUSTOM: [std::sync::OnceLock<CustomDef>; MAX_CUSTOM] = [const { std::sync::OnceLock::new() }; MAX_CUSTOM];
static CUSTOM_LEN: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

fn custom_slot(id: AttrId) -> Option<&'static CustomDef> {
    CUSTOM.get(id.checked_sub(ATTRS.len())?)?.get()
}

/// The configuration of a custom attribute id; `None` for a standard attribute.
pub fn custom(id: AttrId) -> Option<&'static crate::config::CustomAttribute> {
    custom_slot(id).map(|c| &c.attr)
}

/// A stable OID for a name: under the UUID arc 2.25 (ITU-T X.667), the decimal value of a
/// name-based (v5) UUID of it, so it never changes across restarts or installations.
pub fn stable_oid(kind: &str, name: &str) -> String {
    const NS: uuid::Uuid = uuid::uuid!("4b0f6c1e-8d0a-5f5e-9c3b-2a7d1e6f0b94");
    let u = uuid::Uuid::new_v5(&NS, format!("{kind}\u{0}{}", name.to_ascii_lowercase()).as_bytes());
    format!("2.25.{}", u.as_u128())
}

/// How values of each custom syntax are written in LDAP and compared.
pub fn custom_syntax(s: crate::config::AttributeSyntax) -> (&'static str, Matching) {
    use crate::config::AttributeSyntax as S;
    match s {
        S::String => (DIRECTORY_STRING, Matching::CaseIgnore),
        S::Integer => (INTEGER, Matching::Integer),
        S::Boolean => (BOOLEAN, Matching::Boolean),
        S::Date => (GENERALIZED_TIME, Matching::GeneralizedTime),
    }
}

/// Registers the custom attributes of a config (once per distinct definition) and returns their
/// ids, in config order. Refuses a name or OID that a standard attribute already has.
pub fn register_custom(attrs: &[crate::config::CustomAttribute]) -> Result<Vec<AttrId>, String> {
    let mut ids = Vec::with_capacity(attrs.len());
    for a in attrs {
        if lookup(&a.name).is_some() {
            return Err(format!("directory.attributes: {} is a standard LDAP attribute; choose another name", a.name));
        }
        let mut len = CUSTOM_LEN.lock().unwrap_or_else(|p| p.into_inner());
        let existing = (0..*len).find(|&i| CUSTOM[i].get().is_some_and(|c| c.attr == *a));
        let slot = match existing {
            Some(i) => i,
            None => {
                if *len == MAX_CUSTOM {
                    return Err(format!("more than {MAX_CUSTOM} custom attribute definitions in one process"));
                }
                let (syntax, matching) = custom_syntax(a.syntax);
                // Leaked once per distinct definition: the table above bounds it.
                let name: &'static str = Box::leak(a.name.clone().into_boxed_str());
                let oid: &'static str = Box::leak(stable_oid("attributeType", &a.name).into_boxed_str());
                let def = AttrDef {
                    name,
                    aliases: &[],
                    oid,
                    syntax,
                    matching,
                    single_value: !a.multi,
                    operational: false,
                    in_user_set: false,
                    no_user_modification: false,
                };
                let i = *len;
                let _ = CUSTOM[i].set(CustomDef { def, attr: a.clone() });
                *len += 1;
                i
            }
        };
        ids.push(ATTRS.len() + slot);
    }
    Ok(ids)
}

/// The auxiliary class that lets user entries hold the custom attributes.
pub const CUSTOM_CLASS: &str = "idgateUser";

/// `attributeTypes` values of custom attributes.
pub fn custom_type_descriptions(ids: &[AttrId]) -> Vec<String> {
    ids.iter().map(|&id| type_description(def(id))).collect()
}

/// The `objectClasses` value of [`CUSTOM_CLASS`], listing the custom attributes.
pub fn custom_class_description(ids: &[AttrId]) -> String {
    let names: Vec<&str> = ids.iter().map(|&id| def(id).name).collect();
    format!(
        "( {} NAME '{CUSTOM_CLASS}' DESC 'Attributes idgate publishes from backend fields' SUP top AUXILIARY MAY {} )",
        stable_oid("objectClass", CUSTOM_CLASS),
        oids(&names)
    )
}

struct ClassDef {
    name: &'static str,
    oid: &'static str,
    sup: &'static str,
    kind: &'static str,
    must: &'static [&'static str],
    may: &'static [&'static str],
}

static CLASSES: &[ClassDef] = &[
    ClassDef { name: "top", oid: "2.5.6.0", sup: "", kind: "ABSTRACT", must: &["objectClass"], may: &[] },
    ClassDef {
        name: "domain",
        oid: "0.9.2342.19200300.100.4.13",
        sup: "top",
        kind: "STRUCTURAL",
        must: &["dc"],
        may: &["description", "o"],
    },
    ClassDef {
        name: "organization",
        oid: "2.5.6.4",
        sup: "top",
        kind: "STRUCTURAL",
        must: &["o"],
        may: &["description"],
    },
    ClassDef {
        name: "organizationalUnit",
        oid: "2.5.6.5",
        sup: "top",
        kind: "STRUCTURAL",
        must: &["ou"],
        may: &["description"],
    },
    ClassDef {
        name: "person",
        oid: "2.5.6.6",
        sup: "top",
        kind: "STRUCTURAL",
        must: &["sn", "cn"],
        may: &["userPassword", "telephoneNumber", "description"],
    },
    ClassDef {
        name: "organizationalPerson",
        oid: "2.5.6.7",
        sup: "person",
        kind: "STRUCTURAL",
        must: &[],
        may: &["title", "ou"],
    },
    ClassDef {
        name: "inetOrgPerson",
        oid: "2.16.840.1.113730.3.2.2",
        sup: "organizationalPerson",
        kind: "STRUCTURAL",
        must: &[],
        may: &["displayName", "employeeNumber", "givenName", "mail", "manager", "mobile", "preferredLanguage", "uid"],
    },
    ClassDef {
        name: "posixAccount",
        oid: "1.3.6.1.1.1.2.0",
        sup: "top",
        kind: "AUXILIARY",
        must: &["cn", "uid", "uidNumber", "gidNumber", "homeDirectory"],
        may: &["userPassword", "loginShell", "gecos", "description"],
    },
    ClassDef {
        name: "groupOfNames",
        oid: "2.5.6.9",
        sup: "top",
        kind: "STRUCTURAL",
        must: &["cn"],
        may: &["member", "description", "o", "ou"],
    },
    ClassDef {
        name: "groupOfUniqueNames",
        oid: "2.5.6.17",
        sup: "top",
        kind: "STRUCTURAL",
        must: &["cn"],
        may: &["uniqueMember", "description", "o", "ou"],
    },
    ClassDef {
        name: "posixGroup",
        oid: "1.3.6.1.1.1.2.2",
        sup: "top",
        kind: "AUXILIARY",
        must: &["gidNumber"],
        may: &["memberUid", "description", "cn"],
    },
    ClassDef {
        name: "applicationProcess",
        oid: "2.5.6.11",
        sup: "top",
        kind: "STRUCTURAL",
        must: &["cn"],
        may: &["description", "ou"],
    },
    ClassDef {
        name: "pwdPolicy",
        oid: "1.3.6.1.4.1.42.2.27.8.2.1",
        sup: "top",
        kind: "AUXILIARY",
        must: &["pwdAttribute"],
        may: &["pwdMinLength", "pwdLockout", "pwdMaxFailure", "pwdMustChange", "pwdAllowUserChange", "pwdSafeModify"],
    },
    ClassDef {
        name: "subentry",
        oid: "2.5.17.0",
        sup: "top",
        kind: "STRUCTURAL",
        must: &["cn", "subtreeSpecification"],
        may: &[],
    },
    ClassDef {
        name: "subschema",
        oid: "2.5.20.1",
        sup: "",
        kind: "AUXILIARY",
        must: &[],
        may: &["attributeTypes", "objectClasses", "ldapSyntaxes", "matchingRules"],
    },
];

fn oids(names: &[&str]) -> String {
    match names {
        [one] => one.to_string(),
        many => format!("( {} )", many.join(" $ ")),
    }
}

fn matching_rules(m: Matching) -> &'static str {
    match m {
        Matching::CaseIgnore => {
            "EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch ORDERING caseIgnoreOrderingMatch"
        }
        Matching::Telephone => "EQUALITY telephoneNumberMatch SUBSTR telephoneNumberSubstringsMatch",
        Matching::Integer => "EQUALITY integerMatch ORDERING integerOrderingMatch",
        Matching::GeneralizedTime => "EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch",
        Matching::Dn => "EQUALITY distinguishedNameMatch",
        Matching::Oid => "EQUALITY objectIdentifierMatch",
        Matching::Uuid => "EQUALITY UUIDMatch ORDERING UUIDOrderingMatch",
        Matching::Boolean => "EQUALITY booleanMatch",
    }
}

fn type_description(a: &AttrDef) -> String {
    let mut names = vec![a.name];
    names.extend(a.aliases.iter().copied());
    let names = match names.as_slice() {
        [one] => format!("'{one}'"),
        many => format!("( {} )", many.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(" ")),
    };
    let mut s = format!("( {} NAME {} {} SYNTAX {}", a.oid, names, matching_rules(a.matching), a.syntax);
    if a.single_value {
        s.push_str(" SINGLE-VALUE");
    }
    if a.no_user_modification {
        s.push_str(" NO-USER-MODIFICATION USAGE directoryOperation");
    }
    s.push_str(" )");
    s
}

/// RFC 4512 attribute type descriptions, one per value of `attributeTypes`.
pub fn attribute_type_descriptions() -> Vec<String> {
    ATTRS.iter().map(type_description).collect()
}

pub fn object_class_descriptions() -> Vec<String> {
    CLASSES
        .iter()
        .map(|c| {
            let mut s = format!("( {} NAME '{}'", c.oid, c.name);
            if !c.sup.is_empty() {
                s.push_str(&format!(" SUP {}", c.sup));
            }
            s.push_str(&format!(" {}", c.kind));
            if !c.must.is_empty() {
                s.push_str(&format!(" MUST {}", oids(c.must)));
            }
            if !c.may.is_empty() {
                s.push_str(&format!(" MAY {}", oids(c.may)));
            }
            s.push_str(" )");
            s
        })
        .collect()
}

pub fn syntax_descriptions() -> Vec<String> {
    [
        (DIRECTORY_STRING, "Directory String"),
        (IA5_STRING, "IA5 String"),
        (INTEGER, "INTEGER"),
        (GENERALIZED_TIME, "Generalized Time"),
        (DN, "Distinguished Name"),
        (OID, "OID"),
        (TELEPHONE, "Telephone Number"),
        (UUID, "UUID"),
        (BOOLEAN, "Boolean"),
        ("1.3.6.1.4.1.1466.115.121.1.40", "Octet String"),
        (SUBTREE_SPEC, "Subtree Specification"),
    ]
    .iter()
    .map(|(oid, d)| format!("( {oid} DESC '{d}' )"))
    .collect()
}

pub fn matching_rule_descriptions() -> Vec<String> {
    [
        ("2.5.13.2", "caseIgnoreMatch", DIRECTORY_STRING),
        ("2.5.13.3", "caseIgnoreOrderingMatch", DIRECTORY_STRING),
        ("2.5.13.4", "caseIgnoreSubstringsMatch", "1.3.6.1.4.1.1466.115.121.1.58"),
        ("2.5.13.5", "caseExactMatch", DIRECTORY_STRING),
        ("2.5.13.14", "integerMatch", INTEGER),
        ("2.5.13.15", "integerOrderingMatch", INTEGER),
        ("2.5.13.27", "generalizedTimeMatch", GENERALIZED_TIME),
        ("2.5.13.28", "generalizedTimeOrderingMatch", GENERALIZED_TIME),
        ("2.5.13.1", "distinguishedNameMatch", DN),
        ("2.5.13.0", "objectIdentifierMatch", OID),
        ("2.5.13.20", "telephoneNumberMatch", TELEPHONE),
        ("2.5.13.21", "telephoneNumberSubstringsMatch", "1.3.6.1.4.1.1466.115.121.1.58"),
        ("1.3.6.1.1.16.2", "UUIDMatch", UUID),
        ("1.3.6.1.1.16.3", "UUIDOrderingMatch", UUID),
        ("2.5.13.13", "booleanMatch", BOOLEAN),
        ("1.2.840.113556.1.4.1941", "inChainMatch", DN),
        ("1.2.840.113556.1.4.803", "integerBitAndMatch", INTEGER),
        ("1.2.840.113556.1.4.804", "integerBitOrMatch", INTEGER),
    ]
    .iter()
    .map(|(oid, name, syn)| format!("( {oid} NAME '{name}' SYNTAX {syn} )"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_and_oids_resolve() {
        assert_eq!(lookup("UID"), lookup("userid"));
        assert_eq!(lookup("2.5.4.3"), lookup("commonName"));
        assert_eq!(lookup("cn;lang-en"), lookup("cn"));
        assert!(lookup("nosuchattr").is_none());
        assert_eq!(def(id("memberof")).name, "memberOf");
    }

    #[test]
    fn every_class_attribute_is_defined() {
        for c in CLASSES {
            for a in c.must.iter().chain(c.may) {
                assert!(lookup(a).is_some(), "{} uses undefined {a}", c.name);
            }
        }
        let oids: std::collections::HashSet<_> = ATTRS.iter().map(|a| a.oid).collect();
        assert_eq!(oids.len(), ATTRS.len(), "duplicate OID");
    }

    fn cattr(name: &str, syntax: crate::config::AttributeSyntax, multi: bool) -> crate::config::CustomAttribute {
        crate::config::CustomAttribute {
            name: name.into(),
            field: name.to_lowercase(),
            scim_name: None,
            syntax,
            multi,
            separator: ",".into(),
            writable: true,
            indexed: true,
        }
    }

    #[test]
    fn custom_attributes_get_stable_oids_and_resolve_per_server() {
        use crate::config::AttributeSyntax as S;
        // The OID depends on the name only (not its case): stable across restarts and configs.
        assert_eq!(stable_oid("attributeType", "costCenter"), stable_oid("attributeType", "COSTCENTER"));
        assert_ne!(stable_oid("attributeType", "costCenter"), stable_oid("attributeType", "costCentre"));
        assert_ne!(stable_oid("attributeType", "x"), stable_oid("objectClass", "x"));
        let oid = stable_oid("attributeType", "costCenter");
        assert!(oid.starts_with("2.25.") && oid[5..].parse::<u128>().is_ok(), "{oid}");
        assert_eq!(oid, "2.25.".to_string() + &oid[5..], "a UUID's decimal value");

        let a = register_custom(&[cattr("costCenter", S::String, false), cattr("hired", S::Date, false)]).unwrap();
        let again = register_custom(&[cattr("costCenter", S::String, false)]).unwrap();
        assert_eq!(a[0], again[0], "registered once per distinct definition");
        let other = register_custom(&[cattr("costCenter", S::Integer, false)]).unwrap();
        assert_ne!(a[0], other[0], "another server's definition is another id");
        assert_eq!(lookup_in("COSTCENTER", &a), Some(a[0]));
        assert_eq!(lookup_in("costCenter", &other), Some(other[0]));
        assert_eq!(lookup_in(&oid, &a), Some(a[0]));
        assert_eq!(lookup("costCenter"), None, "unknown without the server's set");
        assert_eq!(def(a[1]).matching, Matching::GeneralizedTime);
        assert!(def(a[0]).single_value);
        assert_eq!(custom(a[1]).unwrap().field, "hired");
        assert!(custom(id("uid")).is_none());
        let err = register_custom(&[cattr("mail", S::String, false)]).unwrap_err();
        assert!(err.contains("standard LDAP attribute"), "{err}");

        let types = custom_type_descriptions(&a);
        assert_eq!(
            types[0],
            format!(
                "( {oid} NAME 'costCenter' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch ORDERING \
                 caseIgnoreOrderingMatch SYNTAX {DIRECTORY_STRING} SINGLE-VALUE )"
            )
        );
        assert!(types[1].contains("EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch"));
        let class = custom_class_description(&a);
        assert!(
            class.contains("NAME 'idgateUser'") && class.contains("AUXILIARY MAY ( costCenter $ hired )"),
            "{class}"
        );
    }

    #[test]
    fn descriptions_are_well_formed() {
        let at = attribute_type_descriptions();
        assert!(at.iter().any(|d| d.starts_with("( 0.9.2342.19200300.100.1.1 NAME ( 'uid' 'userid' )")));
        assert!(at.iter().all(|d| d.starts_with("( ") && d.ends_with(" )")));
        let oc = object_class_descriptions();
        assert!(oc.iter().any(|d| d.contains("'posixAccount'") && d.contains("MUST ( cn $ uid $ uidNumber")));
    }
}
