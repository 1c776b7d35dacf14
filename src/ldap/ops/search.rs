//! Search: scoping, filtering, size and time limits, simple paged results (RFC 2696), and the
//! rendering of entries with the attributes a request selected.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapFilter, LdapMsg, LdapOp, LdapPartialAttribute, LdapResult, LdapResultCode as Code, LdapSearchRequest,
    LdapSearchResultEntry, LdapSearchScope, LdapSubstringFilter,
};
use sha2::{Digest, Sha256};

use crate::costly::{self, Budget, COSTLY_COST, Refused, Stop};
use crate::directory::ReadScope;
use crate::ldap::dit::{Dit, Entry, EntryKind};
use crate::ldap::dn::Dn;
use crate::ldap::filter::{self, Filter, FilterError, Limits, Tri};
use crate::ldap::schema::{self, AttrId};
use crate::ldap::session::{Identity, LdapContext, PagedSearch, Session, err_res, res};

/// Which attributes a search asked for.
#[derive(Debug, Clone)]
pub(in crate::ldap) struct Selection {
    all_user: bool,
    all_operational: bool,
    explicit: Vec<AttrId>,
}

impl Selection {
    fn parse(attrs: &[String], custom: &[AttrId]) -> Selection {
        let mut s = Selection { all_user: attrs.is_empty(), all_operational: false, explicit: Vec::new() };
        for a in attrs {
            match a.trim() {
                "*" => s.all_user = true,
                "+" => s.all_operational = true,
                // "1.1" means no attributes; "dn", "" and unknown names select nothing either.
                other => {
                    if let Some(id) = schema::lookup_in(other, custom) {
                        s.explicit.push(id);
                    }
                }
            }
        }
        s
    }

    /// Heap bytes it holds.
    pub(in crate::ldap) fn bytes(&self) -> usize {
        self.explicit.capacity() * std::mem::size_of::<AttrId>()
    }

    fn wants(&self, id: AttrId) -> bool {
        let d = schema::def(id);
        if d.name == "userPassword" {
            return false;
        }
        self.explicit.contains(&id)
            || (self.all_user && (!d.operational || d.in_user_set))
            || (self.all_operational && d.operational)
    }
}

/// Like `render`, but moves the values of an entry built for this request instead of copying them.
fn render_cow(e: Cow<'_, Entry>, sel: &Selection, types_only: bool) -> LdapSearchResultEntry {
    match e {
        Cow::Borrowed(e) => render(e, sel, types_only, false),
        Cow::Owned(e) => LdapSearchResultEntry {
            dn: e.dn,
            attributes: e
                .attrs
                .into_iter()
                .filter(|(id, _)| sel.wants(*id))
                .map(|(id, vals)| LdapPartialAttribute {
                    atype: schema::def(id).name.to_string(),
                    vals: if types_only { Vec::new() } else { vals.into_iter().map(String::into_bytes).collect() },
                })
                .collect(),
        },
    }
}

fn render(e: &Entry, sel: &Selection, types_only: bool, everything: bool) -> LdapSearchResultEntry {
    let attributes = e
        .attrs
        .iter()
        .filter(|(id, _)| sel.wants(*id) || (everything && sel.all_user))
        .map(|(id, vals)| LdapPartialAttribute {
            atype: schema::def(*id).name.to_string(),
            vals: if types_only { Vec::new() } else { vals.iter().map(|v| v.as_bytes().to_vec()).collect() },
        })
        .collect();
    LdapSearchResultEntry { dn: e.dn.clone(), attributes }
}

/// Filters weighing at most this many work units are compiled on the request worker; heavier
/// ones only off it (normalising a megabyte of assertion values is itself costly).
const INLINE_WEIGHT: u64 = 1024;

/// What a search reads.
enum Target {
    /// The Root DSE (`true`, with every attribute) or the subschema entry.
    Special(bool),
    /// The tree, as the bound identity may read it, under `base` (`None`: from the empty DN).
    Tree { dit: Arc<Dit>, scope: ReadScope, base: Option<usize> },
}

/// A search settled on the request worker, owned so that it can run on the blocking pool.
struct Job {
    msgid: i32,
    ctx: Arc<LdapContext>,
    req: LdapSearchRequest,
    base: Dn,
    selection: Selection,
    size_limit: usize,
    /// The page size of a new paged search.
    paging: Option<i64>,
    target: Target,
}

/// What [`Session::settle`] decided.
struct Settled {
    base: Dn,
    target: Target,
    deadline: Option<Instant>,
    size_limit: usize,
    paging: Option<i64>,
}

/// What a job produced.
enum Outcome {
    Done(Vec<LdapMsg>),
    /// A new paged search and its page size; the session emits the first page and keeps the rest.
    Paged(PagedSearch, i64),
    /// A new paged search cut short: everything it matched, then this result.
    PagedCut(PagedSearch, LdapResult),
}

fn done(msgid: i32, r: LdapResult, ctrl: Vec<LdapControl>) -> LdapMsg {
    LdapMsg::new_with_ctrls(msgid, LdapOp::SearchResultDone(r), ctrl)
}

fn stopped(why: Stop) -> LdapResult {
    match why {
        Stop::TimeLimit => res(Code::TimeLimitExceeded, "time limit exceeded"),
        Stop::Cancelled => res(Code::Unavailable, "search cancelled: the server is shutting down"),
    }
}

impl Job {
    fn compile(&self) -> Result<Filter, LdapResult> {
        let limits = Limits { max_depth: self.ctx.cfg.max_filter_depth, max_terms: self.ctx.cfg.max_filter_terms };
        Filter::compile_with(&self.req.filter, &limits, &self.ctx.settings().custom).map_err(|e| match e {
            FilterError::UnknownRule(_) => res(Code::InappropriateMatching, e.to_string()),
            e => res(Code::UnwillingToPerform, format!("{e} (limits: ldap.max_filter_depth, ldap.max_filter_terms)")),
        })
    }

    /// The entries the filter must look at: in scope, narrowed by the equality indexes, and
    /// readable by the bound identity (which is also what a search's cost is counted on).
    fn candidates(&self, filter: &Filter) -> Vec<usize> {
        let Target::Tree { dit, base, scope: access } = &self.target else { return vec![0] };
        let reader = Reader { scope: access.clone(), dit };
        let (base, scope) = (*base, &self.req.scope);
        // From the empty DN, one level is the naming context itself and subtree is everything.
        let in_scope = |i: usize| -> bool {
            match (base, scope) {
                (None, LdapSearchScope::Base) => false,
                (None, LdapSearchScope::OneLevel) => i == dit.base,
                (None, _) => true,
                (Some(b), LdapSearchScope::Base) => i == b,
                (Some(b), LdapSearchScope::OneLevel) => dit.parent(i) == Some(b),
                (Some(b), LdapSearchScope::Subtree) => dit.is_within(i, b),
                (Some(b), LdapSearchScope::Children) => i != b && dit.is_within(i, b),
            }
        };
        let mut candidates = match filter.candidates(dit) {
            Some(c) => c.into_iter().filter(|&i| in_scope(i)).collect(),
            None => match (base, scope) {
                (Some(b), LdapSearchScope::Base) => vec![b],
                (Some(b), LdapSearchScope::OneLevel) => dit.children(b),
                (None, LdapSearchScope::OneLevel) => vec![dit.base],
                _ => dit.all().into_iter().filter(|&i| in_scope(i)).collect(),
            },
        };
        candidates.retain(|&i| reader.can_read(i));
        candidates
    }

    /// Evaluates the filter over the candidates within `budget` and builds the answer.
    fn run(self, filter: &Filter, candidates: Vec<usize>, budget: &Budget) -> Outcome {
        let msgid = self.msgid;
        let dit = match self.target {
            Target::Special(root) => {
                let entry = if root { &self.ctx.root_dse } else { &self.ctx.schema_entry };
                let mut out = Vec::new();
                if filter.eval_within(entry, budget) == Tri::True {
                    out.push(LdapMsg::new(
                        msgid,
                        LdapOp::SearchResultEntry(render(entry, &self.selection, self.req.typesonly, root)),
                    ));
                }
                let ctrl = self
                    .paging
                    .map(|_| vec![LdapControl::SimplePagedResults { size: 0, cookie: Vec::new() }])
                    .unwrap_or_default();
                out.push(done(msgid, budget.ended().map_or_else(|| res(Code::Success, ""), stopped), ctrl));
                return Outcome::Done(out);
            }
            Target::Tree { dit, .. } => dit,
        };
        let size_limit = self.size_limit;

        if let Some(size) = self.paging {
            // Paged searches keep entry numbers only; each page builds its entries.
            let mut matched = Vec::new();
            let stop = scan(&dit, filter, candidates, budget, |i, _| {
                matched.push(i);
                true
            });
            let size_exceeded = size_limit > 0 && matched.len() > size_limit;
            if size_exceeded {
                matched.truncate(size_limit);
            }
            matched.shrink_to_fit();
            let p = PagedSearch {
                cookie: Vec::new(),
                fingerprint: fingerprint(&self.base, &self.req),
                dit: dit.clone(),
                results: matched,
                next: 0,
                selection: self.selection,
                types_only: self.req.typesonly,
                size_exceeded,
                charge: None,
            };
            return match stop {
                Some(why) => Outcome::PagedCut(p, stopped(why)),
                None => Outcome::Paged(p, size),
            };
        }

        // Entries are rendered as they match, from the copy the filter just saw; the scan stops as
        // soon as the size limit is known to be exceeded.
        let mut out: Vec<LdapMsg> = Vec::new();
        let mut size_exceeded = false;
        let (selection, types_only) = (&self.selection, self.req.typesonly);
        let stop = scan(&dit, filter, candidates, budget, |_, e| {
            if size_limit > 0 && out.len() >= size_limit {
                size_exceeded = true;
                return false;
            }
            out.push(LdapMsg::new(msgid, LdapOp::SearchResultEntry(render_cow(e, selection, types_only))));
            true
        });
        let r = match stop {
            Some(why) => stopped(why),
            None if size_exceeded => {
                res(Code::SizeLimitExceeded, format!("size limit of {size_limit} entries exceeded"))
            }
            None => res(Code::Success, ""),
        };
        out.push(done(msgid, r, vec![]));
        Outcome::Done(out)
    }
}

/// What a paged search's cookie is bound to: a hash of every request field that shapes its
/// results, so that a continuation must repeat the search it continues. Fixed-size, whatever the
/// size of the filter.
fn fingerprint(base: &Dn, req: &LdapSearchRequest) -> [u8; 32] {
    fn put(h: &mut Sha256, b: &[u8]) {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    }
    fn opt(h: &mut Sha256, s: &Option<String>) {
        match s {
            Some(s) => {
                h.update([1]);
                put(h, s.as_bytes());
            }
            None => h.update([0]),
        }
    }
    fn filter(h: &mut Sha256, f: &LdapFilter) {
        match f {
            LdapFilter::And(v) | LdapFilter::Or(v) => {
                h.update([if matches!(f, LdapFilter::And(_)) { 0 } else { 1 }]);
                h.update((v.len() as u64).to_be_bytes());
                v.iter().for_each(|x| filter(h, x));
            }
            LdapFilter::Not(x) => {
                h.update([2]);
                filter(h, x);
            }
            LdapFilter::Equality(a, v)
            | LdapFilter::Approx(a, v)
            | LdapFilter::GreaterOrEqual(a, v)
            | LdapFilter::LessOrEqual(a, v) => {
                h.update([match f {
                    LdapFilter::Equality(..) => 3,
                    LdapFilter::Approx(..) => 4,
                    LdapFilter::GreaterOrEqual(..) => 5,
                    _ => 6,
                }]);
                put(h, a.as_bytes());
                put(h, v.as_bytes());
            }
            LdapFilter::Present(a) => {
                h.update([7]);
                put(h, a.as_bytes());
            }
            LdapFilter::Substring(a, LdapSubstringFilter { initial, any, final_ }) => {
                h.update([8]);
                put(h, a.as_bytes());
                opt(h, initial);
                h.update((any.len() as u64).to_be_bytes());
                any.iter().for_each(|s| put(h, s.as_bytes()));
                opt(h, final_);
            }
            LdapFilter::Extensible(m) => {
                h.update([9, u8::from(m.dn_attributes)]);
                opt(h, &m.matching_rule);
                opt(h, &m.type_);
                put(h, m.match_value.as_bytes());
            }
        }
    }
    let mut h = Sha256::new();
    put(&mut h, base.normalized().as_bytes());
    h.update([match req.scope {
        LdapSearchScope::Base => 0,
        LdapSearchScope::OneLevel => 1,
        LdapSearchScope::Subtree => 2,
        LdapSearchScope::Children => 3,
    }]);
    filter(&mut h, &req.filter);
    h.update((req.attrs.len() as u64).to_be_bytes());
    req.attrs.iter().for_each(|a| put(&mut h, a.as_bytes()));
    h.update(req.sizelimit.to_be_bytes());
    h.update([u8::from(req.typesonly)]);
    h.finalize().into()
}

impl Session {
    /// The key the costly-search limits count this connection's identity under.
    fn principal_key(&self) -> String {
        match &self.identity {
            Identity::Anonymous => "ldap:anonymous".into(),
            Identity::User { id, .. } => format!("ldap-user:{id}"),
            Identity::Service { name, .. } => format!("ldap-service:{name}"),
        }
    }

    /// Everything a search needs decided before its filter is looked at; `Err` is the answer
    /// when there is nothing to evaluate (an error, or the next page of a paged search).
    fn settle(
        &mut self,
        msgid: i32,
        req: &LdapSearchRequest,
        ctrls: &[LdapControl],
        started: Instant,
    ) -> Result<Settled, Vec<LdapMsg>> {
        let paging = ctrls.iter().find_map(|c| match c {
            LdapControl::SimplePagedResults { size, cookie } => Some((*size, cookie.clone())),
            _ => None,
        });
        let base =
            Dn::parse(&req.base).map_err(|e| vec![done(msgid, res(Code::InvalidDNSyntax, e.to_string()), vec![])])?;

        // The Root DSE and the subschema entry are readable by everyone.
        let special = if base.is_root() && req.scope == LdapSearchScope::Base {
            Some(true)
        } else if base.normalized() == self.ctx.schema_dn && req.scope == LdapSearchScope::Base {
            Some(false)
        } else {
            None
        };
        if special.is_none() && !self.may_read_tree() {
            return Err(vec![done(
                msgid,
                res(
                    Code::InsufficentAccessRights,
                    "anonymous clients may read only the Root DSE and cn=schema; bind first",
                ),
                vec![],
            )]);
        }
        if special.is_none()
            && let Some((size, cookie)) = &paging
            && !cookie.is_empty()
        {
            return Err(self.continue_paged(msgid, *size, cookie, &fingerprint(&base, req)));
        }

        let target = match special {
            Some(root) => Target::Special(root),
            None => {
                let snapshot = self.ctx.dir.snapshot().map_err(|e| vec![done(msgid, err_res(e.into()), vec![])])?;
                let dit = self.ctx.dits.get(snapshot);
                let scope = self.reader(&dit).scope;
                let base_idx = if base.is_root() {
                    None
                } else {
                    match dit.find(&base) {
                        Some(i) if (Reader { scope: scope.clone(), dit: &dit }).can_read(i) => Some(i),
                        _ => {
                            let mut r = res(Code::NoSuchObject, format!("no entry {}", req.base));
                            r.matcheddn = dit.matched_dn(&base);
                            return Err(vec![done(msgid, r, vec![])]);
                        }
                    }
                };
                Target::Tree { dit, scope, base: base_idx }
            }
        };

        let time_limit = {
            let server = self.ctx.cfg.time_limit;
            let client = Duration::from_secs(req.timelimit.max(0) as u64);
            match (client.is_zero(), server.is_zero()) {
                (true, _) => server,
                (false, true) => client,
                (false, false) => client.min(server),
            }
        };
        let size_limit = match (req.sizelimit.max(0) as usize, self.ctx.cfg.size_limit) {
            (0, s) => s,
            (c, 0) => c,
            (c, s) => c.min(s),
        };
        Ok(Settled {
            base,
            target,
            deadline: (!time_limit.is_zero()).then(|| started + time_limit),
            size_limit,
            paging: paging.map(|(size, _)| size),
        })
    }

    pub(in crate::ldap) async fn search(
        &mut self,
        msgid: i32,
        req: LdapSearchRequest,
        ctrls: &[LdapControl],
        started: Instant,
    ) -> Vec<LdapMsg> {
        // The time limit runs from the request's arrival: waits to be decoded and for a turn
        // among costly searches count against it.
        let weight = filter::weight(&req.filter, INLINE_WEIGHT);
        let Settled { base, target, deadline, size_limit, paging } = match self.settle(msgid, &req, ctrls, started) {
            Ok(s) => s,
            Err(answer) => {
                if weight > INLINE_WEIGHT {
                    costly::free_off_worker(req);
                }
                return answer;
            }
        };
        let paged = paging.is_some();
        let job = Job {
            msgid,
            ctx: self.ctx.clone(),
            selection: Selection::parse(&req.attrs, &self.ctx.settings().custom),
            req,
            base,
            size_limit,
            paging,
            target,
        };

        // The common case: a small filter over few entries runs here and now.
        let compiled = if weight <= INLINE_WEIGHT {
            let filter = match job.compile() {
                Ok(f) => f,
                Err(r) => return vec![done(msgid, r, vec![])],
            };
            let candidates = job.candidates(&filter);
            if weight.saturating_mul(candidates.len() as u64) <= COSTLY_COST {
                let budget = self.ctx.dir.searches().budget(deadline);
                let outcome = job.run(&filter, candidates, &budget);
                return self.finish(msgid, outcome);
            }
            Some((filter, candidates))
        } else {
            None
        };

        // A costly search: compiled (if still needed) and evaluated on the blocking pool, when
        // this principal and the server have a turn for it.
        let principal = self.principal_key();
        let outcome = self
            .ctx
            .dir
            .searches()
            .run(&principal, deadline, move |budget| {
                let (filter, candidates) = match compiled {
                    Some(c) => c,
                    None => match job.compile() {
                        Ok(f) => {
                            let c = job.candidates(&f);
                            (f, c)
                        }
                        Err(r) => return Outcome::Done(vec![done(msgid, r, vec![])]),
                    },
                };
                job.run(&filter, candidates, budget)
            })
            .await;
        let r = match outcome {
            Ok(o) => return self.finish(msgid, o),
            Err(Refused::TimeLimit) => res(
                Code::TimeLimitExceeded,
                "time limit exceeded waiting for a turn among costly searches (ldap.costly_searches, \
                 ldap.costly_searches_per_principal)",
            ),
            Err(Refused::ShuttingDown) => res(Code::Unavailable, "the server is shutting down"),
            Err(Refused::Failed) => res(Code::Other, "the search failed"),
        };
        // A paged search that never ran ends like one cut short: with an empty cookie.
        let ctrl = if paged { vec![LdapControl::SimplePagedResults { size: 0, cookie: Vec::new() }] } else { vec![] };
        vec![done(msgid, r, ctrl)]
    }

    fn finish(&mut self, msgid: i32, outcome: Outcome) -> Vec<LdapMsg> {
        match outcome {
            Outcome::Done(msgs) => msgs,
            Outcome::Paged(p, size) => self.emit_page(msgid, p, size),
            Outcome::PagedCut(mut p, r) => {
                let mut out = page(msgid, &mut p, usize::MAX);
                out.push(done(msgid, r, vec![LdapControl::SimplePagedResults { size: 0, cookie: Vec::new() }]));
                out
            }
        }
    }

    fn emit_page(&mut self, msgid: i32, mut p: PagedSearch, size: i64) -> Vec<LdapMsg> {
        let page_size = if size <= 0 { usize::MAX } else { size as usize };
        let finished = p.next.saturating_add(page_size) >= p.results.len();
        let cookie = if finished {
            Vec::new()
        } else {
            self.cookie_counter += 1;
            let mut c = self.cookie_counter.to_be_bytes().to_vec();
            c.extend_from_slice(&rand::random::<[u8; 8]>());
            p.cookie = c.clone();
            // A connection over its own cap loses its oldest paged search; the server-wide budget
            // instead refuses the new one, so that no client can end another's paging.
            if self.paged.len() >= self.ctx.cfg.max_paged_searches.max(1) {
                self.paged.remove(0);
            }
            // A continuing search keeps the charge it has; only a new one must fit.
            match p.charge.take().or_else(|| self.ctx.paged_state.charge(p.bytes())) {
                Some(charge) => p.charge = Some(charge),
                None => {
                    return vec![done(
                        msgid,
                        res(
                            Code::AdminLimitExceeded,
                            "too much paged-search state is open server-wide (ldap.max_paged_state_bytes); \
                             finish or abandon open paged searches, or retry later",
                        ),
                        vec![LdapControl::SimplePagedResults { size: 0, cookie: Vec::new() }],
                    )];
                }
            }
            c
        };
        let mut out = page(msgid, &mut p, page_size);
        let (code, msg) = if finished && p.size_exceeded {
            (Code::SizeLimitExceeded, "size limit exceeded")
        } else {
            (Code::Success, "")
        };
        if !finished {
            self.paged.push(p);
        }
        out.push(done(msgid, res(code, msg), vec![LdapControl::SimplePagedResults { size: 0, cookie }]));
        out
    }

    fn continue_paged(&mut self, msgid: i32, size: i64, cookie: &[u8], fingerprint: &[u8; 32]) -> Vec<LdapMsg> {
        let done =
            |r: LdapResult| done(msgid, r, vec![LdapControl::SimplePagedResults { size: 0, cookie: Vec::new() }]);
        let Some(pos) = self.paged.iter().position(|p| p.cookie == cookie) else {
            return vec![done(res(Code::UnwillingToPerform, "paged results cookie is invalid or expired"))];
        };
        let p = self.paged.remove(pos);
        if &p.fingerprint != fingerprint {
            return vec![done(res(Code::UnwillingToPerform, "paged results cookie belongs to a different search"))];
        }
        if size == 0 {
            // The client abandons the paged search.
            return vec![done(res(Code::Success, ""))];
        }
        self.emit_page(msgid, p, size)
    }
}

/// Read access of one identity over one tree, as the core decides it.
pub(in crate::ldap) struct Reader<'a> {
    pub(in crate::ldap) scope: ReadScope,
    pub(in crate::ldap) dit: &'a Dit,
}

impl Reader<'_> {
    pub(in crate::ldap) fn can_read(&self, idx: usize) -> bool {
        let snap = &self.dit.snapshot;
        match self.dit.kind(idx) {
            EntryKind::Container => self.scope.containers(),
            EntryKind::User(ui) => self.scope.user(snap, ui),
            EntryKind::Group(gi) => self.scope.group(snap, gi),
            EntryKind::Primary(owner) => self.scope.made_up_group(|ui| owner.is_none_or(|o| o == ui)),
            EntryKind::Service => self.scope.services(),
        }
    }
}

/// Hands each candidate that matches to `on_match`, in order, until it returns false; why the
/// budget cut the scan short, if it did.
fn scan(
    dit: &Dit,
    filter: &Filter,
    candidates: Vec<usize>,
    budget: &Budget,
    mut on_match: impl FnMut(usize, Cow<'_, Entry>) -> bool,
) -> Option<Stop> {
    for i in candidates {
        if budget.tick() {
            break;
        }
        let e = dit.entry(i);
        if filter.eval_in_tree(dit, &e, budget) == Tri::True && !on_match(i, e) {
            break;
        }
    }
    budget.ended()
}

fn page(msgid: i32, p: &mut PagedSearch, size: usize) -> Vec<LdapMsg> {
    let end = p.next.saturating_add(size).min(p.results.len());
    let out = p.results[p.next..end]
        .iter()
        .map(|&i| {
            LdapMsg::new(msgid, LdapOp::SearchResultEntry(render_cow(p.dit.entry(i), &p.selection, p.types_only)))
        })
        .collect();
    p.next = end;
    out
}
