//! Search filters: compiled once per request from the wire form (with depth and size limits), then
//! evaluated with RFC 4511's three-valued logic. Equality terms on indexed attributes pick the
//! candidate entries, so most searches never scan the tree.

use std::cell::OnceCell;
use std::collections::HashSet;
use std::sync::OnceLock;

use ldap3_proto::proto::{LdapFilter, LdapMatchingRuleAssertion, LdapSubstringFilter};

use super::dit::{Dit, Entry, EntryKind};
use super::dn::Dn;
use super::matching::{Norm, has_ordering, has_substrings, index_key, normalize};
use super::schema::{self, AttrId, Matching};
use crate::costly::Budget;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Compare with the attribute's own rule (or the named standard one).
    Default,
    CaseExact,
    /// 1.2.840.113556.1.4.1941: membership through nested groups, at any depth (on memberOf,
    /// member and uniqueMember; plain equality elsewhere).
    InChain,
    BitAnd,
    BitOr,
}

/// A compiled filter. Assertion values are normalised here, once per request, so that evaluating
/// an entry only normalises the entry's own values.
#[derive(Debug)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// The attribute is unknown to the schema: Undefined, or False for presence.
    Unknown {
        present: bool,
    },
    /// `raw` feeds the equality index; `want` is `None` when the value is invalid for the
    /// attribute's rule (the assertion is then Undefined).
    Equality {
        attr: AttrId,
        raw: String,
        want: Option<Norm>,
    },
    /// `parts` is `None` when the attribute's rule has no substring matching (Undefined).
    Substring {
        attr: AttrId,
        parts: Option<Box<Substrings>>,
    },
    /// The bound is `None` when the rule has no ordering or the value is invalid (Undefined).
    Ge(AttrId, Option<Norm>),
    Le(AttrId, Option<Norm>),
    Present(AttrId),
    Extensible(Box<Extensible>),
}

/// Normalised substring components.
#[derive(Debug)]
pub struct Substrings {
    initial: Option<String>,
    /// Empty components match anywhere and are dropped.
    any: Vec<String>,
    last: Option<String>,
    /// The components cannot overlap, so a shorter value cannot match.
    min_len: usize,
}

/// Number of matching rules, for per-rule tables.
const MATCHINGS: usize = 8;

fn slot(m: Matching) -> usize {
    match m {
        Matching::CaseIgnore => 0,
        Matching::Telephone => 1,
        Matching::Integer => 2,
        Matching::GeneralizedTime => 3,
        Matching::Dn => 4,
        Matching::Oid => 5,
        Matching::Uuid => 6,
        Matching::Boolean => 7,
    }
}

#[derive(Debug)]
pub struct Extensible {
    attr: Option<AttrId>,
    rule: Rule,
    value: String,
    dn_attributes: bool,
    /// The value normalised under each rule, on first use: without a type, or against the DN's
    /// attributes, it is compared under the rule of every attribute it meets.
    norms: [OnceLock<Option<Norm>>; MATCHINGS],
    /// For caseExactMatch: the value's words.
    words: Vec<String>,
    /// For the bitwise rules: the value as an integer.
    mask: Option<i64>,
    /// For the in-chain rule: the entries of one tree generation that match, worked out once.
    chain: OnceLock<(u64, HashSet<EntryKind>)>,
}

impl Extensible {
    fn norm(&self, m: Matching) -> &Option<Norm> {
        self.norms[slot(m)].get_or_init(|| normalize(m, &self.value))
    }
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
    /// Compiles with the standard attributes only.
    pub fn compile(f: &LdapFilter, limits: &Limits) -> Result<Filter, FilterError> {
        Filter::compile_with(f, limits, &[])
    }

    /// Compiles, resolving attribute names among the standard ones and the custom ones given.
    pub fn compile_with(f: &LdapFilter, limits: &Limits, custom: &[AttrId]) -> Result<Filter, FilterError> {
        let mut terms = 0;
        compile(f, 1, &mut terms, &Cl { limits, custom })
    }

    /// An equality assertion (Compare uses it).
    pub fn equality(attr: AttrId, value: String) -> Filter {
        let want = normalize(matching(attr), &value);
        Filter::Equality { attr, raw: value, want }
    }
}

/// Work units a filter costs per entry, read from its wire form before anything is compiled: one
/// per term, one more per 64 bytes of assertion values (normalising and comparing them grows with
/// their size), and 16 for an extensible match that looks at every attribute or at the DN. The
/// walk stops once the weight is past `cap` (and then reports more than `cap`), so that sizing up
/// a huge filter costs next to nothing.
pub fn weight(f: &LdapFilter, cap: u64) -> u64 {
    fn walk(f: &LdapFilter, w: &mut u64, cap: u64) {
        let bytes = |n: usize| 1 + (n / 64) as u64;
        let add = match f {
            LdapFilter::And(v) | LdapFilter::Or(v) => {
                *w = w.saturating_add(1);
                for x in v {
                    if *w > cap {
                        return;
                    }
                    walk(x, w, cap);
                }
                return;
            }
            LdapFilter::Not(x) => {
                *w = w.saturating_add(1);
                return walk(x, w, cap);
            }
            LdapFilter::Equality(_, v)
            | LdapFilter::Approx(_, v)
            | LdapFilter::GreaterOrEqual(_, v)
            | LdapFilter::LessOrEqual(_, v) => bytes(v.len()),
            LdapFilter::Present(_) => 1,
            LdapFilter::Substring(_, LdapSubstringFilter { initial, any, final_ }) => {
                let n = initial.as_ref().map_or(0, String::len)
                    + final_.as_ref().map_or(0, String::len)
                    + any.iter().map(String::len).sum::<usize>();
                bytes(n).saturating_add(any.len() as u64)
            }
            LdapFilter::Extensible(m) => {
                let wide = m.type_.is_none() || m.dn_attributes;
                bytes(m.match_value.len()).saturating_mul(if wide { 16 } else { 1 })
            }
        };
        *w = w.saturating_add(add);
    }
    let mut w = 0;
    walk(f, &mut w, cap);
    w
}

/// What compiling needs besides the filter.
struct Cl<'a> {
    limits: &'a Limits,
    custom: &'a [AttrId],
}

fn substrings(id: AttrId, initial: &Option<String>, any: &[String], last: &Option<String>) -> Filter {
    let m = matching(id);
    if !has_substrings(m) {
        return Filter::Substring { attr: id, parts: None };
    }
    let norm = |s: &str| match normalize(m, s) {
        Some(Norm::Str(s)) => s,
        _ => String::new(),
    };
    let initial = initial.as_deref().map(norm);
    let any: Vec<String> = any.iter().map(|s| norm(s)).filter(|s| !s.is_empty()).collect();
    let last = last.as_deref().map(norm);
    let min_len = initial.as_ref().map_or(0, String::len)
        + any.iter().map(String::len).sum::<usize>()
        + last.as_ref().map_or(0, String::len);
    Filter::Substring { attr: id, parts: Some(Box::new(Substrings { initial, any, last, min_len })) }
}

fn ordering_bound(id: AttrId, value: &str) -> Option<Norm> {
    let m = matching(id);
    if has_ordering(m) { normalize(m, value) } else { None }
}

fn compile(f: &LdapFilter, depth: usize, terms: &mut usize, cl: &Cl) -> Result<Filter, FilterError> {
    let lim = cl.limits;
    let attr = |name: &str| schema::lookup_in(name, cl.custom);
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
            Filter::And(v.iter().map(|x| compile(x, depth + 1, terms, cl)).collect::<Result<_, _>>()?)
        }
        LdapFilter::Or(v) => Filter::Or(v.iter().map(|x| compile(x, depth + 1, terms, cl)).collect::<Result<_, _>>()?),
        LdapFilter::Not(x) => Filter::Not(Box::new(compile(x, depth + 1, terms, cl)?)),
        LdapFilter::Equality(a, v) | LdapFilter::Approx(a, v) => match attr(a) {
            Some(id) => Filter::equality(id, v.clone()),
            None => unknown(false),
        },
        LdapFilter::Substring(a, LdapSubstringFilter { initial, any, final_ }) => match attr(a) {
            Some(id) => substrings(id, initial, any, final_),
            None => unknown(false),
        },
        LdapFilter::GreaterOrEqual(a, v) => attr(a).map_or(unknown(false), |id| Filter::Ge(id, ordering_bound(id, v))),
        LdapFilter::LessOrEqual(a, v) => attr(a).map_or(unknown(false), |id| Filter::Le(id, ordering_bound(id, v))),
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
            let attr = match type_ {
                Some(a) => match attr(a) {
                    Some(id) => Some(id),
                    None => return Ok(unknown(false)),
                },
                None => None,
            };
            let words = match rule {
                Rule::CaseExact => match_value.split_whitespace().map(String::from).collect(),
                _ => Vec::new(),
            };
            let mask = match rule {
                Rule::BitAnd | Rule::BitOr => match_value.trim().parse::<i64>().ok(),
                _ => None,
            };
            Filter::Extensible(Box::new(Extensible {
                attr,
                rule,
                value: match_value.clone(),
                dn_attributes: *dn_attributes,
                norms: Default::default(),
                words,
                mask,
                chain: OnceLock::new(),
            }))
        }
    })
}

fn matching(id: AttrId) -> Matching {
    schema::def(id).matching
}

/// One entry under evaluation, with what is worth working out once per entry.
struct Cx<'a> {
    entry: &'a Entry,
    budget: &'a Budget,
    /// The tree the entry is in, when known: the in-chain rule walks its groups.
    tree: Option<&'a Dit>,
    /// The entry's DN, parsed when an extensible match with dnAttributes first needs it.
    dn: OnceCell<Option<Dn>>,
}

fn equality(entry: &Entry, id: AttrId, want: &Option<Norm>) -> Tri {
    let Some(want) = want else { return Tri::Undefined };
    let m = matching(id);
    match entry.get(id) {
        Some(vals) => Tri::from(vals.iter().any(|v| normalize(m, v).as_ref() == Some(want))),
        None => Tri::False,
    }
}

fn ordering(entry: &Entry, id: AttrId, bound: &Option<Norm>, ge: bool) -> Tri {
    let Some(bound) = bound else { return Tri::Undefined };
    let m = matching(id);
    match entry.get(id) {
        Some(vals) => {
            Tri::from(vals.iter().filter_map(|v| normalize(m, v)).any(|v| if ge { v >= *bound } else { v <= *bound }))
        }
        None => Tri::False,
    }
}

fn substring(entry: &Entry, id: AttrId, parts: &Option<Box<Substrings>>) -> Tri {
    let Some(p) = parts else { return Tri::Undefined };
    let Some(vals) = entry.get(id) else { return Tri::False };
    let m = matching(id);
    Tri::from(vals.iter().any(|v| {
        let Some(Norm::Str(v)) = normalize(m, v) else { return false };
        if v.len() < p.min_len {
            return false;
        }
        let mut rest = v.as_str();
        if let Some(i) = &p.initial {
            match rest.strip_prefix(i.as_str()) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        for a in &p.any {
            match rest.find(a.as_str()) {
                Some(at) => rest = &rest[at + a.len()..],
                None => return false,
            }
        }
        match &p.last {
            Some(l) => rest.len() >= l.len() && rest.ends_with(l.as_str()),
            None => true,
        }
    }))
}

/// The in-chain rule on memberOf, member or uniqueMember, answered from the tree's nesting
/// indexes; `None` when it is plain equality (another attribute, or no tree at hand).
fn in_chain(cx: &Cx, x: &Extensible) -> Option<Tri> {
    let (tree, id) = (cx.tree?, x.attr?);
    let fresh;
    let set = match x.chain.get() {
        Some((generation, set)) if *generation == tree.generation => set,
        _ => {
            let set: HashSet<EntryKind> = tree.in_chain(id, &x.value)?.into_iter().map(|i| tree.kind(i)).collect();
            match x.chain.set((tree.generation, set)) {
                Ok(()) => &x.chain.get()?.1,
                // Another tree generation holds the cache: work out this one's uncached.
                Err((_, set)) => {
                    fresh = set;
                    &fresh
                }
            }
        }
    };
    Some(Tri::from(set.contains(&cx.entry.kind)))
}

fn extensible(cx: &Cx, x: &Extensible) -> Tri {
    let entry = cx.entry;
    if x.rule == Rule::InChain
        && let Some(t) = in_chain(cx, x)
    {
        return t;
    }
    let check = |id: AttrId| -> Tri {
        match x.rule {
            Rule::Default | Rule::InChain => equality(entry, id, x.norm(matching(id))),
            Rule::CaseExact => match entry.get(id) {
                Some(vals) => {
                    Tri::from(vals.iter().any(|v| v.split_whitespace().eq(x.words.iter().map(String::as_str))))
                }
                None => Tri::False,
            },
            Rule::BitAnd | Rule::BitOr => {
                let Some(mask) = x.mask else { return Tri::Undefined };
                match entry.get(id) {
                    Some(vals) => {
                        Tri::from(vals.iter().filter_map(|v| v.trim().parse::<i64>().ok()).any(|v| match x.rule {
                            Rule::BitAnd => v & mask == mask,
                            _ => v & mask != 0,
                        }))
                    }
                    None => Tri::False,
                }
            }
        }
    };
    let mut result = match x.attr {
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
    if x.dn_attributes && result != Tri::True {
        // The DN's own attribute values count too (RFC 4511 §4.5.1.7.7).
        if let Some(dn) = cx.dn.get_or_init(|| Dn::parse(&entry.dn).ok()) {
            let hit = dn.rdns().iter().flat_map(|r| r.0.iter()).any(|ava| {
                schema::lookup(&ava.attr).is_some_and(|id| {
                    x.attr.is_none_or(|want| want == id) && {
                        let m = matching(id);
                        let v = normalize(m, &ava.value);
                        v.is_some() && &v == x.norm(m)
                    }
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
    /// Evaluates one entry without a budget: for single entries (the Root DSE, Compare).
    pub fn eval(&self, entry: &Entry) -> Tri {
        self.eval_within(entry, &Budget::unlimited())
    }

    /// Evaluates one entry, counting each term against `budget`; once the budget has ended the
    /// result is Undefined, and the caller asks the budget why.
    pub fn eval_within(&self, entry: &Entry, budget: &Budget) -> Tri {
        self.eval_in(&Cx { entry, budget, tree: None, dn: OnceCell::new() })
    }

    /// Evaluates an entry of `tree` (built by it), counting against `budget`.
    pub fn eval_in_tree(&self, tree: &Dit, entry: &Entry, budget: &Budget) -> Tri {
        self.eval_in(&Cx { entry, budget, tree: Some(tree), dn: OnceCell::new() })
    }

    fn eval_in(&self, cx: &Cx) -> Tri {
        let entry = cx.entry;
        match self {
            Filter::And(v) => {
                let mut r = Tri::True;
                for f in v {
                    if cx.budget.tick() {
                        return Tri::Undefined;
                    }
                    match f.eval_in(cx) {
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
                    if cx.budget.tick() {
                        return Tri::Undefined;
                    }
                    match f.eval_in(cx) {
                        Tri::True => return Tri::True,
                        Tri::Undefined => r = Tri::Undefined,
                        Tri::False => {}
                    }
                }
                r
            }
            Filter::Not(f) => f.eval_in(cx).not(),
            Filter::Unknown { present } => {
                if *present {
                    Tri::False
                } else {
                    Tri::Undefined
                }
            }
            Filter::Equality { attr, want, .. } => equality(entry, *attr, want),
            Filter::Substring { attr, parts } => substring(entry, *attr, parts),
            Filter::Ge(id, bound) => ordering(entry, *id, bound, true),
            Filter::Le(id, bound) => ordering(entry, *id, bound, false),
            Filter::Present(id) => Tri::from(entry.get(*id).is_some() || *id == schema::id("objectClass")),
            Filter::Extensible(x) => extensible(cx, x),
        }
    }

    pub fn matches(&self, entry: &Entry) -> bool {
        self.eval(entry) == Tri::True
    }

    /// Entries that may match, from the equality indexes (ascending, deduplicated); `None` when
    /// the filter gives the index nothing to work with and the scope must be scanned.
    pub fn candidates(&self, dit: &Dit) -> Option<Vec<usize>> {
        let indexed = |id: AttrId, v: &str| match index_key(matching(id), v) {
            Some(_) => dit.lookup(id, v),
            // An invalid assertion value matches nothing.
            None => Some(Vec::new()),
        };
        match self {
            Filter::Equality { attr, raw, .. } => indexed(*attr, raw),
            Filter::Extensible(x) if x.rule == Rule::InChain && !x.dn_attributes => {
                x.attr.and_then(|id| dit.in_chain(id, &x.value).or_else(|| indexed(id, &x.value)))
            }
            Filter::Extensible(x) if x.rule == Rule::Default && !x.dn_attributes => {
                x.attr.and_then(|id| indexed(id, &x.value))
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

    /// A substring filter on mail.
    fn sub(i: Option<&str>, any: &[&str], f: Option<&str>) -> F {
        F::Substring(
            "mail".into(),
            LdapSubstringFilter {
                initial: i.map(Into::into),
                any: any.iter().map(|s| s.to_string()).collect(),
                final_: f.map(Into::into),
            },
        )
    }

    #[test]
    fn substrings_use_every_component() {
        let d = dit();
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
    fn assertions_are_normalised_once_and_long_substrings_rejected_cheaply() {
        let d = dit();
        let lim = Limits { max_depth: 64, max_terms: 1000 };
        let f = Filter::compile(&sub(Some(" ALICE"), &["  ", "Example", ""], Some(".COM ")), &lim).unwrap();
        let Filter::Substring { parts: Some(p), .. } = &f else { panic!("{f:?}") };
        assert_eq!(p.initial.as_deref(), Some("alice"));
        assert_eq!(p.any, vec!["example".to_string()], "blank components match anywhere and are dropped");
        assert_eq!((p.last.as_deref(), p.min_len), (Some(".com"), 16));
        assert_eq!(run(&d, &sub(Some(" ALICE"), &["  ", "Example", ""], Some(".COM "))).len(), 1);
        // No value is as long as the components together: nothing matches, whatever they hold.
        let long = "e".repeat(100_000);
        assert_eq!(run(&d, &sub(None, &[&long], None)).len(), 0);
        assert_eq!(run(&d, &sub(Some("a"), &["l", "i", "c", "e", "@"], Some("example.com"))).len(), 1);
        assert_eq!(run(&d, &sub(Some("a"), &["l", "i", "c", "e", "@x"], Some("example.com"))).len(), 0);

        let Filter::Equality { want, .. } = Filter::compile(&eq("cn", "  Alice  "), &lim).unwrap() else { panic!() };
        assert_eq!(want, Some(Norm::Str("alice".into())));
        let Filter::Ge(_, bound) = Filter::compile(&F::GreaterOrEqual("uidNumber".into(), "x".into()), &lim).unwrap()
        else {
            panic!()
        };
        assert_eq!(bound, None, "an invalid bound is Undefined");
    }

    #[test]
    fn an_ended_budget_ends_evaluation() {
        let d = dit();
        let lim = Limits { max_depth: 64, max_terms: 100_000 };
        let wide = F::Or((0..10_000).map(|i| eq("description", &format!("d{i}"))).collect());
        let f = Filter::compile(&wide, &lim).unwrap();
        let e = d.entry(d.all()[4]);
        assert_eq!(f.eval(&e), Tri::False);
        let past = Budget::until(Some(std::time::Instant::now()));
        assert_eq!(f.eval_within(&e, &past), Tri::Undefined);
        assert_eq!(past.ended(), Some(crate::costly::Stop::TimeLimit));
    }

    #[test]
    fn weight_grows_with_terms_and_bytes_and_stops_at_its_cap() {
        assert_eq!(weight(&eq("uid", "alice"), u64::MAX), 1);
        assert_eq!(weight(&F::And(vec![eq("uid", "a"), F::Present("mail".into())]), u64::MAX), 3);
        assert_eq!(weight(&eq("description", &"x".repeat(6400)), u64::MAX), 101);
        let any = F::Extensible(LdapMatchingRuleAssertion {
            matching_rule: None,
            type_: None,
            match_value: "x".into(),
            dn_attributes: false,
        });
        assert_eq!(weight(&any, u64::MAX), 16, "a match without a type looks at every attribute");
        let wide = F::Or((0..100_000).map(|i| eq("uid", &format!("u{i}"))).collect());
        assert_eq!(weight(&wide, u64::MAX), 100_001);
        let capped = weight(&wide, 1024);
        assert!((1025..=1026).contains(&capped), "{capped}");
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
