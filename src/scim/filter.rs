//! The RFC 7644 §3.4.2.2 filter grammar and the §3.5.2 PATCH path grammar, with bounded length and
//! nesting, evaluated against a resource's JSON representation. Attribute names and operators are
//! case-insensitive; string comparison follows each attribute's `caseExact`.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use super::error::ScimError;
use super::schema::{AttrDef, ResourceDef, Ty};
use crate::costly::Budget;

/// `[urn:]name[.sub]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrRef {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrRef {
    /// The extension the reference names (by URN, or by a name only that extension has), as
    /// the resource type spells its URN; `None` for the core schema.
    pub fn extension(&self, def: &ResourceDef) -> Option<&'static str> {
        match &self.urn {
            Some(u) => def.extension(u).map(|e| e.urn),
            None => def.extension_of(&self.name),
        }
    }

    /// The attribute's definition, if the resource type has it.
    pub fn def(&self, def: &ResourceDef) -> Option<AttrDef> {
        match (&self.urn, self.extension(def)) {
            (_, Some(urn)) => def.attr(Some(urn), &self.name),
            (Some(u), None) if !u.eq_ignore_ascii_case(def.kind.urn()) => None,
            _ => def.attr(None, &self.name),
        }
    }

    pub fn display(&self) -> String {
        let mut s = match &self.urn {
            Some(u) => format!("{u}:{}", self.name),
            None => self.name.clone(),
        };
        if let Some(sub) = &self.sub {
            s.push('.');
            s.push_str(sub);
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
    Pr,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Compare(AttrRef, Op, Value),
    /// `attr[filter]`, optionally followed by `.sub op value` (a form Entra sends).
    Has(AttrRef, Box<Filter>, Option<(String, Op, Value)>),
}

/// A PATCH target: `attrPath`, or `attrPath[filter]` with an optional `.subAttr`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrRef,
    pub filter: Option<Filter>,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_len: usize,
    pub max_depth: usize,
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
    max_depth: usize,
}

fn bad(msg: impl Into<String>) -> ScimError {
    ScimError::invalid_filter(msg)
}

pub fn parse_filter(text: &str, limits: Limits) -> Result<Filter, ScimError> {
    if text.len() > limits.max_len {
        return Err(bad(format!("filter is {} bytes long; at most {} accepted", text.len(), limits.max_len)));
    }
    let mut p = Parser { s: text.as_bytes(), text, pos: 0, depth: 0, max_depth: limits.max_depth };
    let f = p.or()?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(bad(format!("unexpected text at position {}: {:?}", p.pos, p.rest(20))));
    }
    Ok(f)
}

pub fn parse_path(text: &str, limits: Limits) -> Result<PatchPath, ScimError> {
    let path_err = |m: String| ScimError::bad_request("invalidPath", m);
    if text.len() > limits.max_len {
        return Err(path_err(format!("path is longer than {} bytes", limits.max_len)));
    }
    let mut p = Parser { s: text.as_bytes(), text, pos: 0, depth: 0, max_depth: limits.max_depth };
    p.ws();
    let mut attr = p.attr_path().map_err(|e| path_err(format!("invalid path {text:?}: {}", e.detail)))?;
    let mut filter = None;
    if p.peek() == Some(b'[') {
        if attr.sub.is_some() {
            return Err(path_err(format!("invalid path {text:?}: a filter must follow an attribute")));
        }
        p.pos += 1;
        p.enter().map_err(|e| path_err(e.detail))?;
        let f = p.or().map_err(|e| path_err(format!("invalid path {text:?}: {}", e.detail)))?;
        p.ws();
        if !p.eat(b']') {
            return Err(path_err(format!("invalid path {text:?}: missing ]")));
        }
        filter = Some(f);
        if p.eat(b'.') {
            let sub = p.name().map_err(|e| path_err(format!("invalid path {text:?}: {}", e.detail)))?;
            attr.sub = Some(sub);
        }
    }
    p.ws();
    if p.pos != p.s.len() {
        return Err(path_err(format!("invalid path {text:?}: unexpected {:?}", p.rest(20))));
    }
    Ok(PatchPath { attr, filter })
}

impl Parser<'_> {
    fn rest(&self, n: usize) -> String {
        self.text.get(self.pos..).unwrap_or("").chars().take(n).collect()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c == b' ' || c == b'\t' || c == b'\n' || c == b'\r') {
            self.pos += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn enter(&mut self) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(bad(format!("filter nests deeper than {} levels", self.max_depth)));
        }
        Ok(())
    }
    /// A keyword (case-insensitive) followed by a delimiter.
    fn keyword(&mut self, kw: &str) -> bool {
        self.ws();
        let end = self.pos + kw.len();
        if end > self.s.len() || !self.s[self.pos..end].eq_ignore_ascii_case(kw.as_bytes()) {
            return false;
        }
        let next = self.s.get(end).copied();
        if next.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b':') {
            return false;
        }
        self.pos = end;
        true
    }

    fn or(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, ScimError> {
        self.ws();
        if self.keyword("not") {
            self.ws();
            if !self.eat(b'(') {
                return Err(bad("\"not\" must be followed by a parenthesised filter"));
            }
            let f = self.group_body()?;
            return Ok(Filter::Not(Box::new(f)));
        }
        if self.eat(b'(') {
            return self.group_body();
        }
        self.attr_expr()
    }

    fn group_body(&mut self) -> Result<Filter, ScimError> {
        self.enter()?;
        let f = self.or()?;
        self.ws();
        if !self.eat(b')') {
            return Err(bad(format!("missing ) at position {}", self.pos)));
        }
        self.depth -= 1;
        Ok(f)
    }

    fn attr_expr(&mut self) -> Result<Filter, ScimError> {
        let attr = self.attr_path()?;
        if self.peek() == Some(b'[') {
            if attr.sub.is_some() {
                return Err(bad("a value filter must follow an attribute, not a sub-attribute"));
            }
            self.pos += 1;
            self.enter()?;
            let inner = self.or()?;
            self.ws();
            if !self.eat(b']') {
                return Err(bad(format!("missing ] at position {}", self.pos)));
            }
            self.depth -= 1;
            let then = if self.eat(b'.') {
                let sub = self.name()?;
                let (op, v) = self.op_value()?;
                Some((sub, op, v))
            } else {
                None
            };
            return Ok(Filter::Has(attr, Box::new(inner), then));
        }
        let (op, v) = self.op_value()?;
        Ok(Filter::Compare(attr, op, v))
    }

    fn op_value(&mut self) -> Result<(Op, Value), ScimError> {
        self.ws();
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        let word = self.text.get(start..self.pos).unwrap_or("").to_ascii_lowercase();
        let op = match word.as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "pr" => return Ok((Op::Pr, Value::Null)),
            "" => return Err(bad(format!("expected an operator at position {start}"))),
            other => return Err(bad(format!("unknown operator {other:?}"))),
        };
        self.ws();
        Ok((op, self.literal()?))
    }

    fn literal(&mut self) -> Result<Value, ScimError> {
        match self.peek() {
            Some(b'"') => {
                let start = self.pos;
                self.pos += 1;
                loop {
                    match self.peek() {
                        None => return Err(bad("unterminated string")),
                        Some(b'\\') => self.pos += 2,
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(_) => self.pos += 1,
                    }
                }
                let raw = self.text.get(start..self.pos).ok_or_else(|| bad("bad string"))?;
                serde_json::from_str::<Value>(raw).map_err(|e| bad(format!("bad string literal: {e}")))
            }
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+')) {
                    self.pos += 1;
                }
                let word = self.text.get(start..self.pos).unwrap_or("");
                match word.to_ascii_lowercase().as_str() {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    "null" => Ok(Value::Null),
                    "" => Err(bad(format!("expected a value at position {start}"))),
                    w => serde_json::from_str::<serde_json::Number>(w).map(Value::Number).map_err(|_| {
                        bad(format!("value {word:?} must be a quoted string, a number, true, false or null"))
                    }),
                }
            }
        }
    }

    fn name(&mut self) -> Result<String, ScimError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'$') {
            self.pos += 1;
        }
        let n = self.text.get(start..self.pos).unwrap_or("");
        if n.is_empty() || !n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '$') {
            return Err(bad(format!("expected an attribute name at position {start}")));
        }
        Ok(n.to_string())
    }

    fn attr_path(&mut self) -> Result<AttrRef, ScimError> {
        self.ws();
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'$' | b':' | b'.')) {
            self.pos += 1;
        }
        let word = self.text.get(start..self.pos).unwrap_or("");
        if word.is_empty() {
            return Err(bad(format!("expected an attribute at position {start}")));
        }
        split_attr(word).ok_or_else(|| bad(format!("invalid attribute path {word:?}")))
    }
}

fn valid_name(n: &str) -> bool {
    n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '$')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

/// Splits `urn:...:name.sub` / `name.sub` into its parts. `word` may be any client text (a JSON
/// key, an `attributes` list item), so the prefix is compared as bytes: byte 4 need not be a char
/// boundary.
pub fn split_attr(word: &str) -> Option<AttrRef> {
    let (urn, rest) = if word.len() > 4 && word.as_bytes()[..4].eq_ignore_ascii_case(b"urn:") {
        let i = word.rfind(':')?;
        (Some(word[..i].to_string()), &word[i + 1..])
    } else {
        (None, word)
    };
    let (name, sub) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s.to_string())),
        None => (rest, None),
    };
    if !valid_name(name) || sub.as_deref().is_some_and(|s| !valid_name(s)) {
        return None;
    }
    Some(AttrRef { urn, name: name.to_string(), sub })
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// Where attribute names are looked up: a whole resource, or one element of a multi-valued
/// complex attribute (inside `attr[...]`).
#[derive(Clone, Copy)]
enum Scope<'a> {
    Resource(&'a ResourceDef),
    Element(&'a AttrDef),
}

/// Finds a key case-insensitively.
pub fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let o = obj.as_object()?;
    o.get(key).or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn push_flat<'a>(out: &mut Vec<&'a Value>, v: &'a Value) {
    match v {
        Value::Array(a) => out.extend(a.iter().filter(|x| !x.is_null())),
        Value::Null => {}
        v => out.push(v),
    }
}

/// The values an attribute reference designates, and the definition of the leaf attribute.
fn lookup<'a>(scope: Scope<'_>, res: &'a Value, r: &AttrRef) -> (Option<AttrDef>, Vec<&'a Value>) {
    let mut out = Vec::new();
    let (attr_def, container) = match scope {
        Scope::Resource(def) => {
            let container = match r.extension(def) {
                Some(urn) => get_ci(res, urn),
                None => Some(res),
            };
            (r.def(def), container)
        }
        Scope::Element(parent) => (parent.sub_attr(&r.name).cloned(), Some(res)),
    };
    let Some(top) = container.and_then(|c| get_ci(c, &r.name)) else { return (attr_def, out) };
    match &r.sub {
        Some(sub) => {
            let leaf = attr_def.as_ref().and_then(|d| d.sub_attr(sub).cloned());
            match top {
                Value::Array(a) => a.iter().filter_map(|e| get_ci(e, sub)).for_each(|v| push_flat(&mut out, v)),
                o => {
                    if let Some(v) = get_ci(o, sub) {
                        push_flat(&mut out, v)
                    }
                }
            }
            (leaf, out)
        }
        None => {
            let complex = attr_def.as_ref().is_some_and(|d| d.ty == Ty::Complex);
            if complex {
                // A complex attribute compared as a whole means its `value` sub-attribute.
                let leaf = attr_def.as_ref().and_then(|d| d.sub_attr("value").cloned());
                let items: Vec<&Value> = match top {
                    Value::Array(a) => a.iter().collect(),
                    o => vec![o],
                };
                for e in items {
                    if let Some(v) = get_ci(e, "value") {
                        push_flat(&mut out, v);
                    }
                }
                (leaf, out)
            } else {
                push_flat(&mut out, top);
                (attr_def, out)
            }
        }
    }
}

/// Checks what can be checked without data: ordering operators on booleans.
pub fn validate(f: &Filter, def: &ResourceDef) -> Result<(), ScimError> {
    validate_in(f, Scope::Resource(def))
}

fn validate_in(f: &Filter, scope: Scope<'_>) -> Result<(), ScimError> {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            validate_in(a, scope)?;
            validate_in(b, scope)
        }
        Filter::Not(a) => validate_in(a, scope),
        Filter::Compare(r, op, v) => {
            let (leaf, _) = lookup(scope, &Value::Null, r);
            check_op(&r.display(), leaf.as_ref(), *op, v)
        }
        Filter::Has(r, inner, then) => {
            let attr = match scope {
                Scope::Resource(def) => r.def(def),
                Scope::Element(p) => p.sub_attr(&r.name).cloned(),
            };
            if let Some(a) = &attr {
                validate_in(inner, Scope::Element(a))?;
                if let Some((sub, op, v)) = then {
                    check_op(&format!("{}.{sub}", r.display()), a.sub_attr(sub), *op, v)?;
                }
            }
            Ok(())
        }
    }
}

fn ordering(op: Op) -> bool {
    matches!(op, Op::Gt | Op::Ge | Op::Lt | Op::Le)
}

fn check_op(name: &str, leaf: Option<&AttrDef>, op: Op, v: &Value) -> Result<(), ScimError> {
    if ordering(op) && (leaf.is_some_and(|d| d.ty == Ty::Boolean) || v.is_boolean() || v.is_null()) {
        return Err(bad(format!("{name}: gt/ge/lt/le cannot compare booleans or null")));
    }
    if matches!(op, Op::Co | Op::Sw | Op::Ew) && !v.is_string() {
        return Err(bad(format!("{name}: co/sw/ew need a string value")));
    }
    Ok(())
}

/// Does the resource match the filter? (One resource: the filter is prepared for it alone.)
pub fn matches(f: &Filter, def: &ResourceDef, res: &Value) -> bool {
    Prepared::new(f).matches(def, res, &Budget::unlimited())
}

/// A filter ready for evaluation over many resources: its string literals are case-folded once
/// here rather than once per comparison.
pub struct Prepared {
    root: Node,
    weight: u64,
}

enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Compare(AttrRef, Op, Lit),
    Has(AttrRef, Box<Node>, Option<(String, Op, Lit)>),
}

/// A comparison literal, and its case-folded form for attributes that ignore case.
struct Lit {
    value: Value,
    folded: Option<String>,
}

impl Lit {
    fn new(value: &Value) -> Lit {
        Lit { folded: value.as_str().map(str::to_lowercase), value: value.clone() }
    }
}

impl Prepared {
    pub fn new(f: &Filter) -> Prepared {
        let mut weight = 0u64;
        let root = prepare(f, &mut weight);
        Prepared { root, weight }
    }

    /// Work units it costs per resource: one per comparison, one more per 64 bytes of literals.
    pub fn weight(&self) -> u64 {
        self.weight
    }

    /// Does the resource match? Each comparison counts against `budget`; once it has ended the
    /// answer means nothing, and the caller asks the budget why.
    pub fn matches(&self, def: &ResourceDef, res: &Value, budget: &Budget) -> bool {
        eval(&self.root, Scope::Resource(def), res, budget)
    }
}

fn prepare(f: &Filter, weight: &mut u64) -> Node {
    let lit = |v: &Value, weight: &mut u64| {
        *weight = weight.saturating_add(1 + v.as_str().map_or(0, |s| s.len() / 64) as u64);
        Lit::new(v)
    };
    match f {
        Filter::And(a, b) => Node::And(Box::new(prepare(a, weight)), Box::new(prepare(b, weight))),
        Filter::Or(a, b) => Node::Or(Box::new(prepare(a, weight)), Box::new(prepare(b, weight))),
        Filter::Not(a) => Node::Not(Box::new(prepare(a, weight))),
        Filter::Compare(r, op, v) => Node::Compare(r.clone(), *op, lit(v, weight)),
        Filter::Has(r, inner, then) => {
            let inner = Box::new(prepare(inner, weight));
            let then = then.as_ref().map(|(sub, op, v)| (sub.clone(), *op, lit(v, weight)));
            *weight = weight.saturating_add(1);
            Node::Has(r.clone(), inner, then)
        }
    }
}

fn eval(f: &Node, scope: Scope<'_>, res: &Value, budget: &Budget) -> bool {
    match f {
        Node::And(a, b) => eval(a, scope, res, budget) && eval(b, scope, res, budget),
        Node::Or(a, b) => eval(a, scope, res, budget) || eval(b, scope, res, budget),
        Node::Not(a) => !eval(a, scope, res, budget),
        Node::Compare(r, op, v) => {
            if budget.tick() {
                return false;
            }
            let (leaf, vals) = lookup(scope, res, r);
            compare_any(leaf.as_ref(), &vals, *op, v)
        }
        Node::Has(r, inner, then) => {
            if budget.tick() {
                return false;
            }
            let (attr, container) = match scope {
                Scope::Resource(def) => {
                    let c = match r.extension(def) {
                        Some(urn) => get_ci(res, urn),
                        None => Some(res),
                    };
                    (r.def(def), c)
                }
                Scope::Element(p) => (p.sub_attr(&r.name).cloned(), Some(res)),
            };
            let Some(attr) = attr else { return false };
            let Some(top) = container.and_then(|c| get_ci(c, &r.name)) else { return false };
            let items: Vec<&Value> = match top {
                Value::Array(a) => a.iter().collect(),
                o => vec![o],
            };
            items.into_iter().any(|e| {
                eval(inner, Scope::Element(&attr), e, budget)
                    && match then {
                        None => true,
                        Some((sub, op, v)) => {
                            let mut vals = Vec::new();
                            if let Some(x) = get_ci(e, sub) {
                                push_flat(&mut vals, x);
                            }
                            compare_any(attr.sub_attr(sub), &vals, *op, v)
                        }
                    }
            })
        }
    }
}

/// The value a resource sorts by (case-insensitive; the first value of a multi-valued attribute).
pub fn sort_key(def: &ResourceDef, res: &Value, r: &AttrRef) -> Option<String> {
    let (_, vals) = lookup(Scope::Resource(def), res, r);
    vals.first().map(|v| match v {
        Value::String(s) => s.to_lowercase(),
        other => other.to_string(),
    })
}

/// True when an element of a multi-valued complex attribute matches a value filter.
pub fn element_matches(f: &Filter, attr: &AttrDef, element: &Value) -> bool {
    eval(&Prepared::new(f).root, Scope::Element(attr), element, &Budget::unlimited())
}

fn compare_any(leaf: Option<&AttrDef>, vals: &[&Value], op: Op, lit: &Lit) -> bool {
    match op {
        Op::Pr => vals.iter().any(|v| match v {
            Value::String(s) => !s.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        }),
        Op::Ne => !vals.iter().any(|v| compare(leaf, v, Op::Eq, lit)),
        _ => vals.iter().any(|v| compare(leaf, v, op, lit)),
    }
}

fn compare(leaf: Option<&AttrDef>, v: &Value, op: Op, lit: &Lit) -> bool {
    let exact = leaf.is_some_and(|d| d.case_exact);
    match (v, &lit.value) {
        (Value::String(a), Value::String(b)) => {
            let (a, b): (Cow<'_, str>, &str) = if exact {
                (Cow::Borrowed(a), b)
            } else {
                (Cow::Owned(a.to_lowercase()), lit.folded.as_deref().unwrap_or(b))
            };
            let a = a.as_ref();
            match op {
                Op::Eq => a == b,
                Op::Co => a.contains(b),
                Op::Sw => a.starts_with(b),
                Op::Ew => a.ends_with(b),
                Op::Gt => a > b,
                Op::Ge => a >= b,
                Op::Lt => a < b,
                Op::Le => a <= b,
                Op::Ne | Op::Pr => false,
            }
        }
        (Value::Bool(a), Value::Bool(b)) => op == Op::Eq && a == b,
        // Clients send "True"/"False" for booleans.
        (Value::Bool(a), Value::String(b)) => op == Op::Eq && b.eq_ignore_ascii_case(if *a { "true" } else { "false" }),
        (Value::Number(a), Value::Number(b)) => {
            let (Some(a), Some(b)) = (a.as_f64(), b.as_f64()) else { return false };
            let o = a.partial_cmp(&b);
            match op {
                Op::Eq => o == Some(Ordering::Equal),
                Op::Gt => o == Some(Ordering::Greater),
                Op::Ge => matches!(o, Some(Ordering::Greater | Ordering::Equal)),
                Op::Lt => o == Some(Ordering::Less),
                Op::Le => matches!(o, Some(Ordering::Less | Ordering::Equal)),
                _ => false,
            }
        }
        (Value::String(a), Value::Number(b)) if op == Op::Eq => a == &b.to_string(),
        _ => false,
    }
}

/// A top-level `attr eq "value"` the snapshot's indexes can answer.
pub fn indexed_eq(f: &Filter) -> Option<(String, &str)> {
    match f {
        Filter::Compare(r, Op::Eq, Value::String(v)) if r.urn.is_none() || r.urn.as_deref().is_some_and(is_core) => {
            let key = match &r.sub {
                None => r.name.to_ascii_lowercase(),
                Some(s) => format!("{}.{}", r.name.to_ascii_lowercase(), s.to_ascii_lowercase()),
            };
            Some((key, v.as_str()))
        }
        Filter::Has(r, inner, Some((sub, Op::Eq, Value::String(v))))
            if r.name.eq_ignore_ascii_case("emails") && sub.eq_ignore_ascii_case("value") && r.urn.is_none() =>
        {
            // emails[type eq "work"].value eq "x": our only email is the work one.
            match inner.as_ref() {
                Filter::Compare(t, Op::Eq, Value::String(ty))
                    if t.name.eq_ignore_ascii_case("type") && ty.eq_ignore_ascii_case("work") =>
                {
                    Some(("emails".into(), v.as_str()))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn is_core(urn: &str) -> bool {
    urn.eq_ignore_ascii_case(super::schema::USER_URN) || urn.eq_ignore_ascii_case(super::schema::GROUP_URN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Capabilities;
    use crate::scim::schema::ENTERPRISE_URN;
    use serde_json::json;

    const L: Limits = Limits { max_len: 4096, max_depth: 8 };

    fn user_def() -> ResourceDef {
        ResourceDef::user(&Capabilities::ALL)
    }

    fn alice() -> Value {
        json!({
            "id": "7", "userName": "Alice", "externalId": "Ext-1", "active": true, "title": "Lead",
            "name": {"givenName": "Alice", "familyName": "Martin"},
            "emails": [{"value": "alice@example.com", "type": "work", "primary": true}],
            "phoneNumbers": [{"value": "+33 1", "type": "work"}, {"value": "+33 6", "type": "mobile"}],
            "groups": [{"value": "3", "display": "devs"}],
            "meta": {"created": "2024-01-01T00:00:00Z", "lastModified": "2025-06-01T00:00:00Z"},
            ENTERPRISE_URN: {"employeeNumber": "E42", "manager": {"value": "3", "displayName": "Boss"}},
        })
    }

    fn m(text: &str) -> bool {
        let f = parse_filter(text, L).unwrap_or_else(|e| panic!("{text}: {}", e.detail));
        validate(&f, &user_def()).unwrap();
        matches(&f, &user_def(), &alice())
    }

    #[test]
    fn every_operator() {
        assert!(m(r#"userName eq "alice""#), "caseExact false");
        assert!(!m(r#"externalId eq "ext-1""#), "caseExact true");
        assert!(m(r#"externalId eq "Ext-1""#));
        assert!(m(r#"userName ne "bob""#));
        assert!(!m(r#"userName ne "ALICE""#));
        assert!(m(r#"name.familyName co "art""#));
        assert!(m(r#"userName sw "al""#));
        assert!(m(r#"userName ew "CE""#));
        assert!(m(r#"title pr"#));
        assert!(!m(r#"locale pr"#));
        assert!(m(r#"meta.lastModified gt "2025-01-01T00:00:00Z""#));
        assert!(m(r#"meta.created ge "2024-01-01T00:00:00Z""#));
        assert!(m(r#"meta.created lt "2024-01-02T00:00:00Z""#));
        assert!(!m(r#"meta.created le "2023-12-31T00:00:00Z""#));
        assert!(m(r#"active eq true"#));
        assert!(m(r#"active eq "True""#));
    }

    #[test]
    fn logic_grouping_and_precedence() {
        assert!(m(r#"userName eq "x" or userName eq "alice" and active eq true"#));
        assert!(!m(r#"(userName eq "x" or userName eq "alice") and active eq false"#));
        assert!(m(r#"not (userName eq "bob")"#));
        assert!(m(r#"NOT(userName EQ "bob") AND title Pr"#));
        // "and" binds tighter than "or"
        let f = parse_filter(r#"a eq "1" or b eq "2" and c eq "3""#, L).unwrap();
        assert!(matches!(f, Filter::Or(_, ref r) if matches!(**r, Filter::And(_, _))));
    }

    #[test]
    fn value_paths_and_urns() {
        assert!(m(r#"emails[type eq "work"].value eq "alice@example.com""#));
        assert!(m(r#"emails[type eq "work" and value co "example"]"#));
        assert!(!m(r#"emails[type eq "home"]"#));
        assert!(m(r#"phoneNumbers[type eq "mobile"].value eq "+33 6""#));
        assert!(m(r#"emails eq "ALICE@example.com""#), "complex attribute means its value");
        assert!(m(r#"groups.value eq "3""#));
        assert!(m(r#"groups[value eq "3"]"#));
        assert!(m(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "alice""#));
        assert!(m(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "E42""#));
        assert!(m(r#"employeeNumber eq "E42""#));
        assert!(m(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "3""#));
        assert!(m(r#"manager.value eq "3""#));
        assert!(m(r#"manager eq "3""#), "a complex attribute means its value");
        assert!(!m(r#"nickName eq "x""#), "unknown attributes match nothing");
        assert!(m(r#"id eq "7" and groups[value eq "3"]"#));
    }

    #[test]
    fn errors_and_limits() {
        for bad_filter in [
            "",
            "userName",
            "userName eq",
            r#"userName xx "a""#,
            r#"userName eq "a" and"#,
            r#"(userName eq "a""#,
            r#"emails[type eq "work""#,
            r#"userName eq unquoted"#,
            r#"userName eq "a" extra"#,
            r#"userName eq "unterminated"#,
        ] {
            let e = parse_filter(bad_filter, L).unwrap_err();
            assert_eq!(e.scim_type, Some("invalidFilter"), "{bad_filter}");
        }
        let deep = format!("{}userName eq \"a\"{}", "(".repeat(9), ")".repeat(9));
        assert!(parse_filter(&deep, L).unwrap_err().detail.contains("deeper"));
        let long = format!("userName eq \"{}\"", "a".repeat(5000));
        assert!(parse_filter(&long, L).unwrap_err().detail.contains("bytes"));
        let f = parse_filter(r#"active gt true"#, L).unwrap();
        assert_eq!(validate(&f, &user_def()).unwrap_err().scim_type, Some("invalidFilter"));
        let f = parse_filter(r#"userName co 3"#, L).unwrap();
        assert!(validate(&f, &user_def()).is_err());
    }

    #[test]
    fn patch_paths() {
        let p = parse_path(r#"members[value eq "12"]"#, L).unwrap();
        assert_eq!(p.attr.name, "members");
        assert!(p.filter.is_some());
        let p = parse_path(r#"emails[type eq "work"].value"#, L).unwrap();
        assert_eq!(p.attr.sub.as_deref(), Some("value"));
        let p = parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", L).unwrap();
        assert_eq!(p.attr.urn.as_deref(), Some(ENTERPRISE_URN));
        assert_eq!(p.attr.name, "manager");
        let p = parse_path("name.givenName", L).unwrap();
        assert_eq!((p.attr.name.as_str(), p.attr.sub.as_deref()), ("name", Some("givenName")));
        for bad_path in ["", "a b", "members[value eq", "name.given.x", "members[value eq \"1\"]x"] {
            assert_eq!(parse_path(bad_path, L).unwrap_err().scim_type, Some("invalidPath"), "{bad_path}");
        }
    }

    /// Found by fuzzing: a multi-byte character across byte 4 (a PATCH key, an `attributes`
    /// item) made the `urn:` prefix check slice inside the character and panic.
    #[test]
    fn split_attr_with_multibyte_char_at_byte_four() {
        assert_eq!(split_attr("sae\u{2d1}m"), None);
        assert_eq!(split_attr("abc\u{e9}"), None);
        assert_eq!(split_attr("urn\u{e9}:x"), None);
        let r = split_attr("URN:x:title").unwrap();
        assert_eq!((r.urn.as_deref(), r.name.as_str()), (Some("URN:x"), "title"));
    }

    #[test]
    fn index_shapes() {
        let f = parse_filter(r#"USERNAME eq "a""#, L).unwrap();
        assert_eq!(indexed_eq(&f), Some(("username".into(), "a")));
        let f = parse_filter(r#"emails[type eq "work"].value eq "a@x""#, L).unwrap();
        assert_eq!(indexed_eq(&f), Some(("emails".into(), "a@x")));
        let f = parse_filter(r#"userName eq "a" or id eq "1""#, L).unwrap();
        assert_eq!(indexed_eq(&f), None);
    }
}
