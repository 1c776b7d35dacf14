//! Search filters: compiled once per request from the wire form (with depth and size limits), then
//! evaluated with RFC 4511's three-valued logic. Equality terms on indexed attributes pick the
//! candidate entries, so most searches never scan the tree.

use ldap3_proto::proto::{LdapFilter, LdapMatchingRuleAssertion, LdapSubstringFilter};

use super::dit::{Dit, Entry};
use super::dn::Dn;
use super::matching::{Norm, has_ordering, has_substrings, index_key, normalize};
use super::schema::{self, AttrId, Matching};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    True,
    False,
    Undefined,
}

impl Tri {
    fn not(self) -> Tri {
        match self {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            Tri::Undefined => Tri::Undefined,
        }
    }
    fn from(b: bool) -> Tri {
        if b { Tri::True } else { Tri::False }
    }
}

#[derive(Debug, Clone)]
pub enum Rule {
    /// Compare with the attribute's own rule (or the named standard one).
    Default,
    CaseExact,
    /// 1.2.840.113556.1.4.1941: membership through nested groups. Groups do not nest in the
    /// backends we serve, so this is direct membership.
    InChain,
    BitAnd,
    BitOr,
}

#[derive(Debug, Clone)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// The attribute is unknown to the schema: Undefined, or False for presence.
    Unknown {
        present: bool,
    },
    Equality(AttrId, String),
    Substring {
        attr: AttrId,
        initial: Option<String>,
        any: Vec<String>,
        last: Option<String>,
    },
    Ge(AttrId, String),
    Le(AttrId, String),
    Present(AttrId),
    Extensible {
        attr: Option<AttrId>,
        rule: Rule,
        value: String,
        dn_attributes: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("filter nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("filter has more than {0} terms")]
    TooLarge(usize),
    #[error("unknown matching rule {0}")]
    UnknownRule(String),
}

pub struct Limits {
    pub max_depth: usize,
    pub max_terms: usize,
}

impl Filter {
    pub fn compile(f: &LdapFilter, limits: &Limits) -> Result<Filter, FilterError> {
        let mut terms = 0;
        compile(f, 1, &mut terms, limits)
    }
}

fn attr(name: &str) -> Option<AttrId> {
    schema::lookup(name)
}

fn compile(f: &LdapFilter, depth: usize, terms: &mut usize, lim: &Limits) -> Result<Filter, FilterError> {
    if depth > lim.max_depth {
        return Err(FilterError::TooDeep(lim.max_depth));
    }
    *terms += 1;
    if *terms > lim.max_terms {
        return Err(FilterError::TooLarge(lim.max_terms));
    }
    let unknown = |present| Filter::Unknown { present };
    Ok(match f {
        LdapFilter::And(v) => {
            Filter::And(v.iter().map(|x| compile(x, depth + 1, terms, lim)).collect::<Result<_, _>>()?)
        }
        LdapFilter::Or(v) => Filter::Or(v.iter().map(|x| compile(x, depth + 1, terms, lim)).collect::<Result<_, _>>()?),
        LdapFilter::Not(x) => Filter::Not(Box::new(compile(x, depth + 1, terms, lim)?)),
        LdapFilter::Equality(a, v) | LdapFilter::Approx(a, v) => match attr(a) {
            Some(id) => Filter::Equality(id, v.clone()),
            None => unknown(false),
        },
        LdapFilter::Substring(a, LdapSubstringFilter { initial, any, final_ }) => match attr(a) {
            Some(id) => {
                Filter::Substring { attr: id, initial: initial.clone(), any: any.clone(), last: final_.clone() }
            }
            None => unknown(false),
        },
        LdapFilter::GreaterOrEqual(a, v) => attr(a).map_or(unknown(false), |id| Filter::Ge(id, v.clone())),
        LdapFilter::LessOrEqual(a, v) => attr(a).map_or(unknown(false), |id| Filter::Le(id, v.clone())),
        LdapFilter::Present(a) => attr(a).map_or(unknown(true), Filter::Present),
        LdapFilter::Extensible(LdapMatchingRuleAssertion { matching_rule, type_, match_value, dn_attributes }) => {
            let rule = match matching_rule.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None => Rule::Default,
                Some("1.2.840.113556.1.4.1941") | Some("inchainmatch") => Rule::InChain,
                Some("1.2.840.113556.1.4.803") | Some("integerbitandmatch") => Rule::BitAnd,
                Some("1.2.840.113556.1.4.804") | Some("integerbitormatch") => Rule::BitOr,
                Some("2.5.13.5") | Some("caseexactmatch") | Some("2.5.13.7") | Some("caseexactia5match") => {
                    Rule::CaseExact
                }
                Some(
                    "2.5.13.2"
                    | "caseignorematch"
                    | "1.3.6.1.4.1.1466.109.114.2"
                    | "caseignoreia5match"
                    | "2.5.13.14"
                    | "integermatch"
                    | "2.5.13.1"
                    | "distinguishednamematch"
                    | "2.5.13.27"
                    | "generalizedtimematch"
                    | "2.5.13.0"
                    | "objectidentifiermatch",
                ) => Rule::Default,
                Some(other) => return Err(FilterError::UnknownRule(other.to_string())),
            };
            match type_ {
                Some(a) => match attr(a) {
                    Some(id) => Filter::Extensible {
                        attr: Some(id),
                        rule,
                        value: match_value.clone(),
                        dn_attributes: *dn_attributes,
                    },
                    None => unknown(false),
                },
                None => {
                    Filter::Extensible { attr: None, rule, value: match_value.clone(), dn_attributes: *dn_attributes }
                }
            }
        }
    })
}

fn matching(id: AttrId) -> Matching {
    schema::def(id).matching
}

fn equality(entry: &Entry, id: AttrId, value: &str) -> Tri {
    let m = matching(id);
    let Some(want) = normalize(m, value) else { return Tri::Undefined };
    match entry.get(id) {
        Some(vals) => Tri::from(vals.iter().any(|v| normalize(m, v).as_ref() == Some(&want))),
        None => Tri::False,
    }
}

fn ordering(entry: &Entry, id: AttrId, value: &str, ge: bool) -> Tri {
    let m = matching(id);
    if !has_ordering(m) {
        return Tri::Undefined;
    }
    let Some(bound) = normalize(m, value) else { return Tri::Undefined };
    match entry.get(id) {
        Some(vals) => {
            Tri::from(vals.iter().filter_map(|v| normalize(m, v)).any(|v| if ge { v >= bound } else { v <= bound }))
        }
        None => Tri::False,
    }
}

fn substring(entry: &Entry, id: AttrId, initial: &Option<String>, any: &[String], last: &Option<String>) -> Tri {
    let m = matching(id);
    if !has_substrings(m) {
        return Tri::Undefined;
    }
    let norm = |s: &str| match normalize(m, s) {
        Some(Norm::Str(s)) => s,
        _ => String::new(),
    };
    let initial = initial.as_deref().map(norm);
    let any: Vec<String> = any.iter().map(|s| norm(s)).collect();
    let last = last.as_deref().map(norm);
    let Some(vals) = entry.get(id) else { return Tri::False };
    Tri::from(vals.iter().any(|v| {
        let v = norm(v);
        let mut rest = v.as_str();
        if let Some(i) = &initial {
            match rest.strip_prefix(i.as_str()) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        for a in &any {
            match rest.find(a.as_str()) {
                Some(p) => rest = &rest[p + a.len()..],
                None => return false,
            }
        }
        match &last {
            Some(l) => rest.len() >= l.len() && rest.ends_with(l.as_str()),
            None => true,
        }
    }))
}

fn extensible(entry: &Entry, attr: Option<AttrId>, rule: &Rule, value: &str, dn_attributes: bool) -> Tri {
    let check = |id: AttrId| -> Tri {
        match rule {
            Rule::Default | Rule::InChain => equality(entry, id, value),
            Rule::CaseExact => match entry.get(id) {
                Some(vals) => Tri::from(vals.iter().any(|v| v.split_whitespace().eq(value.split_whitespace()))),
                None => Tri::False,
            },
            Rule::BitAnd | Rule::BitOr => {
                let Ok(mask) = value.trim().parse::<i64>() else { return Tri::Undefined };
                match entry.get(id) {
                    Some(vals) => {
                        Tri::from(vals.iter().filter_map(|v| v.trim().parse::<i64>().ok()).any(|v| match rule {
                            Rule::BitAnd => v & mask == mask,
                            _ => v & mask != 0,
                        }))
                    }
                    None => Tri::False,
                }
            }
        }
    };
    let mut result = match attr {
        Some(id) => check(id),
        None => {
            let mut r = Tri::False;
            for (id, _) in &entry.attrs {
                match check(*id) {
                    Tri::True => return Tri::True,
                    Tri::Undefined => r = Tri::Undefined,
                    Tri::False => {}
                }
            }
            r
        }
    };
    if dn_attributes && result != Tri::True {
        // The DN's own attribute values count too (RFC 4511 §4.5.1.7.7).
        if let Ok(dn) = Dn::parse(&entry.dn) {
            let hit = dn.rdns().iter().flat_map(|r| r.0.iter()).any(|ava| {
                attr.is_none_or(|id| schema::lookup(&ava.attr) == Some(id))
                    && schema::lookup(&ava.attr).is_some_and(|id| {
                        let m = matching(id);
                        normalize(m, &ava.value).is_some() && normalize(m, &ava.value) == normalize(m, value)
                    })
            });
            if hit {
                result = Tri::True;
            }
        }
    }
    result
}

impl Filter {
    pub fn eval(&self, entry: &Entry) -> Tri {
        match self {
            Filter::And(v) => {
                let mut r = Tri::True;
                for f in v {
                    match f.eval(entry) {
                        Tri::False => return Tri::False,
                        Tri::Undefined => r = Tri::Undefined,
                        Tri::True => {}
                    }
                }
                r
            }
            Filter::Or(v) => {
                let mut r = Tri::False;
                for f in v {
                    match f.eval(entry) {
                        Tri::True => return Tri::True,
                        Tri::Undefined => r = Tri::Undefined,
                        Tri::False => {}
                    }
                }
                r
            }
            Filter::Not(f) => f.eval(entry).not(),
            Filter::Unknown { present } => {
                if *present {
                    Tri::False
                } else {
                    Tri::Undefined
                }
            }
            Filter::Equality(id, v) => equality(entry, *id, v),
            Filter::Substring { attr, initial, any, last } => substring(entry, *attr, initial, any, last),
            Filter::Ge(id, v) => ordering(entry, *id, v, true),
            Filter::Le(id, v) => ordering(entry, *id, v, false),
            Filter::Present(id) => Tri::from(entry.get(*id).is_some() || *id == schema::id("objectClass")),
            Filter::Extensible { attr, rule, value, dn_attributes } => {
                extensible(entry, *attr, rule, value, *dn_attributes)
            }
        }
    }

    pub fn matches(&self, entry: &Entry) -> bool {
        self.eval(entry) == Tri::True
    }

    /// Entries that may match, from the equality indexes (ascending, deduplicated); `None` when
    /// the filter gives the index nothing to work with and the scope must be scanned.
    pub fn candidates(&self, dit: &Dit) -> Option<Vec<usize>> {
        match self {
            Filter::Equality(id, v)
            | Filter::Extensible {
                attr: Some(id),
                rule: Rule::Default | Rule::InChain,
                value: v,
                dn_attributes: false,
            } => {
                match index_key(matching(*id), v) {
                    Some(_) => dit.lookup(*id, v),
                    // An invalid assertion value matches nothing.
                    None => Some(Vec::new()),
                }
            }
            Filter::Unknown { .. } => Some(Vec::new()),
            Filter::And(v) => v.iter().filter_map(|f| f.candidates(dit)).min_by_key(Vec::len),
            Filter::Or(v) => {
                let mut all = Vec::new();
                for f in v {
                    all.extend(f.candidates(dit)?);
                }
                all.sort_unstable();
                all.dedup();
                Some(all)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::directory::Snapshot;
    use crate::ldap::dit::DitSettings;
    use crate::model::{Group, User};
    use ldap3_proto::proto::LdapFilter as F;
    use std::sync::Arc;

    fn dit() -> Dit {
        let cfg = Config::parse("[backend]\nkind=\"memory\"\n").unwrap();
        let s = DitSettings::new(&cfg.ldap, "memory", "t").unwrap();
        let mk = |id: &str, login: &str, mail: &str, m: i64| {
            Arc::new(User {
                id: id.into(),
                login: login.into(),
                email: mail.into(),
                first_name: login.to_uppercase(),
                active: true,
                created: Some(m),
                modified: Some(m),
                ..Default::default()
            })
        };
        let users =
            vec![mk("1", "alice", "alice@example.com", 1_000), mk("2", "bob", "bob@example.org", 2_000_000_000)];
        let groups = vec![Arc::new(Group {
            id: "1".into(),
            name: "devs".into(),
            members: vec!["1".into()],
            ..Default::default()
        })];
        Dit::build(&s, Arc::new(Snapshot::build("memory\u{0}test", 1, users, groups)))
    }

    fn run(d: &Dit, f: &F) -> Vec<String> {
        let f = Filter::compile(f, &Limits { max_depth: 64, max_terms: 10_000 }).unwrap();
        (0..d.len()).map(|i| d.entry(i)).filter(|e| f.matches(e)).map(|e| e.dn.clone()).collect()
    }

    fn eq(a: &str, v: &str) -> F {
        F::Equality(a.into(), v.into())
    }

    #[test]
    fn equality_is_case_insensitive_and_typed() {
        let d = dit();
        assert_eq!(run(&d, &eq("UID", "ALICE")), vec!["uid=alice,ou=people,dc=example,dc=com"]);
        assert_eq!(run(&d, &eq("uidNumber", "10002")).len(), 1);
        assert_eq!(run(&d, &eq("uidNumber", "010002")).len(), 1, "integer match");
        assert_eq!(run(&d, &eq("member", "UID=alice, ou=People,dc=example,dc=com")).len(), 1, "DN match");
        assert_eq!(run(&d, &eq("memberOf", "cn=devs,ou=groups,dc=example,dc=com")).len(), 1);
    }

    #[test]
    fn substrings_use_every_component() {
        let d = dit();
        let sub = |i: Option<&str>, any: &[&str], f: Option<&str>| {
            F::Substring(
                "mail".into(),
                LdapSubstringFilter {
                    initial: i.map(Into::into),
                    any: any.iter().map(|s| s.to_string()).collect(),
                    final_: f.map(Into::into),
                },
            )
        };
        assert_eq!(run(&d, &sub(Some("a"), &["@"], Some(".com"))).len(), 1);
        assert_eq!(run(&d, &sub(Some("a"), &["@"], Some(".org"))).len(), 0);
        assert_eq!(run(&d, &sub(None, &["example"], None)).len(), 2);
        assert_eq!(
            run(&d, &sub(Some("alice@"), &["example", "example"], None)).len(),
            0,
            "any components must not overlap"
        );
    }

    #[test]
    fn ordering_on_times_and_integers() {
        let d = dit();
        assert_eq!(run(&d, &F::GreaterOrEqual("modifyTimestamp".into(), "20200101000000Z".into())).len(), 1);
        assert_eq!(
            run(&d, &F::LessOrEqual("createTimestamp".into(), "19700101010000Z".into())).len(),
            2,
            "alice and the undated group"
        );
        assert_eq!(run(&d, &F::GreaterOrEqual("uidNumber".into(), "10002".into())).len(), 1);
        assert_eq!(run(&d, &F::GreaterOrEqual("uidNumber".into(), "abc".into())).len(), 0);
    }

    #[test]
    fn three_valued_logic() {
        let d = dit();
        // unknown attribute: Undefined, and NOT Undefined is still Undefined
        assert_eq!(run(&d, &eq("nosuch", "x")).len(), 0);
        assert_eq!(run(&d, &F::Not(Box::new(eq("nosuch", "x")))).len(), 0);
        assert_eq!(run(&d, &F::Not(Box::new(F::Present("nosuch".into())))).len(), d.len());
        // OR with an Undefined branch still matches on the other branch
        assert_eq!(run(&d, &F::Or(vec![eq("nosuch", "x"), eq("uid", "bob")])).len(), 1);
        assert_eq!(run(&d, &F::And(vec![])).len(), d.len(), "absolute true");
        assert_eq!(run(&d, &F::Or(vec![])).len(), 0, "absolute false");
        let sssd = F::And(vec![
            eq("uid", "alice"),
            eq("objectclass", "posixAccount"),
            F::Present("uid".into()),
            F::And(vec![F::Present("uidNumber".into()), F::Not(Box::new(eq("uidNumber", "0")))]),
        ]);
        assert_eq!(run(&d, &sssd).len(), 1);
    }

    #[test]
    fn extensible_rules() {
        let d = dit();
        let ext = |t: Option<&str>, r: Option<&str>, v: &str, dna: bool| {
            F::Extensible(LdapMatchingRuleAssertion {
                matching_rule: r.map(Into::into),
                type_: t.map(Into::into),
                match_value: v.into(),
                dn_attributes: dna,
            })
        };
        assert_eq!(
            run(
                &d,
                &ext(Some("memberOf"), Some("1.2.840.113556.1.4.1941"), "cn=devs,ou=groups,dc=example,dc=com", false)
            )
            .len(),
            1
        );
        assert_eq!(run(&d, &ext(Some("uid"), Some("caseExactMatch"), "alice", false)).len(), 1);
        assert_eq!(run(&d, &ext(Some("uid"), Some("caseExactMatch"), "Alice", false)).len(), 0);
        assert_eq!(run(&d, &ext(Some("uidNumber"), Some("1.2.840.113556.1.4.803"), "2", false)).len(), 1);
        // dnAttributes: ou=people appears in the DN of every user
        assert_eq!(run(&d, &ext(Some("ou"), None, "people", true)).len(), 3);
        let bad = Filter::compile(&ext(Some("uid"), Some("9.9.9"), "x", false), &Limits { max_depth: 9, max_terms: 9 });
        assert!(matches!(bad, Err(FilterError::UnknownRule(_))));
    }

    #[test]
    fn limits() {
        let mut f = eq("uid", "x");
        for _ in 0..100 {
            f = F::Not(Box::new(f));
        }
        let lim = Limits { max_depth: 64, max_terms: 1000 };
        assert_eq!(Filter::compile(&f, &lim).unwrap_err(), FilterError::TooDeep(64));
        let wide = F::Or((0..2000).map(|i| eq("uid", &format!("u{i}"))).collect());
        assert_eq!(Filter::compile(&wide, &lim).unwrap_err(), FilterError::TooLarge(1000));
    }

    #[test]
    fn candidates_come_from_indexes() {
        let d = dit();
        let lim = Limits { max_depth: 64, max_terms: 1000 };
        let c = |f: &F| Filter::compile(f, &lim).unwrap().candidates(&d);
        assert_eq!(c(&eq("uid", "alice")).unwrap().len(), 1);
        assert_eq!(c(&F::And(vec![eq("objectClass", "inetOrgPerson"), eq("uid", "bob")])).unwrap().len(), 1);
        assert_eq!(c(&F::Or(vec![eq("uid", "alice"), eq("uid", "bob"), eq("uid", "zed")])).unwrap().len(), 2);
        assert!(c(&F::Or(vec![eq("uid", "alice"), eq("givenName", "BOB")])).is_none());
        assert!(c(&F::Present("uid".into())).is_none());
        assert_eq!(c(&eq("uidNumber", "notanumber")).unwrap().len(), 0);
    }
}
