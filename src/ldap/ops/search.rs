//! Search: scoping, filtering, size and time limits, simple paged results (RFC 2696), and the
//! rendering of entries with the attributes a request selected.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapMsg, LdapOp, LdapPartialAttribute, LdapResult, LdapResultCode as Code, LdapSearchRequest,
    LdapSearchResultEntry, LdapSearchScope,
};

use crate::directory::ReadScope;
use crate::ldap::dit::{Dit, Entry, EntryKind};
use crate::ldap::dn::Dn;
use crate::ldap::filter::{Filter, FilterError, Limits, Tri};
use crate::ldap::schema::{self, AttrId};
use crate::ldap::session::{PagedSearch, Session, err_res, res};

/// Which attributes a search asked for.
#[derive(Debug, Clone)]
pub(in crate::ldap) struct Selection {
    all_user: bool,
    all_operational: bool,
    explicit: Vec<AttrId>,
}

impl Selection {
    fn parse(attrs: &[String]) -> Selection {
        let mut s = Selection { all_user: attrs.is_empty(), all_operational: false, explicit: Vec::new() };
        for a in attrs {
            match a.trim() {
                "*" => s.all_user = true,
                "+" => s.all_operational = true,
                // "1.1" means no attributes; "dn", "" and unknown names select nothing either.
                other => {
                    if let Some(id) = schema::lookup(other) {
                        s.explicit.push(id);
                    }
                }
            }
        }
        s
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

impl Session {
    pub(in crate::ldap) async fn search(
        &mut self,
        msgid: i32,
        req: &LdapSearchRequest,
        ctrls: &[LdapControl],
    ) -> Vec<LdapMsg> {
        let done =
            |r: LdapResult, ctrl: Vec<LdapControl>| LdapMsg::new_with_ctrls(msgid, LdapOp::SearchResultDone(r), ctrl);
        let paging = ctrls.iter().find_map(|c| match c {
            LdapControl::SimplePagedResults { size, cookie } => Some((*size, cookie.clone())),
            _ => None,
        });
        let base = match Dn::parse(&req.base) {
            Ok(d) => d,
            Err(e) => return vec![done(res(Code::InvalidDNSyntax, e.to_string()), vec![])],
        };
        let selection = Selection::parse(&req.attrs);
        let limits = Limits { max_depth: self.ctx.cfg.max_filter_depth, max_terms: self.ctx.cfg.max_filter_terms };
        let filter = match Filter::compile(&req.filter, &limits) {
            Ok(f) => f,
            Err(e @ FilterError::UnknownRule(_)) => {
                return vec![done(res(Code::InappropriateMatching, e.to_string()), vec![])];
            }
            Err(e) => {
                let msg = format!("{e} (limits: ldap.max_filter_depth, ldap.max_filter_terms)");
                return vec![done(res(Code::UnwillingToPerform, msg), vec![])];
            }
        };

        // The Root DSE and the subschema entry are readable by everyone.
        let special = if base.is_root() && req.scope == LdapSearchScope::Base {
            Some((&self.ctx.root_dse, true))
        } else if base.normalized() == self.ctx.schema_dn && req.scope == LdapSearchScope::Base {
            Some((&self.ctx.schema_entry, false))
        } else {
            None
        };
        if let Some((entry, everything)) = special {
            let mut out = Vec::new();
            if filter.eval(entry) == Tri::True {
                out.push(LdapMsg::new(
                    msgid,
                    LdapOp::SearchResultEntry(render(entry, &selection, req.typesonly, everything)),
                ));
            }
            let ctrl = paging
                .map(|_| vec![LdapControl::SimplePagedResults { size: 0, cookie: Vec::new() }])
                .unwrap_or_default();
            out.push(done(res(Code::Success, ""), ctrl));
            return out;
        }
        if !self.may_read_tree() {
            return vec![done(
                res(
                    Code::InsufficentAccessRights,
                    "anonymous clients may read only the Root DSE and cn=schema; bind first",
                ),
                vec![],
            )];
        }

        let fingerprint = format!(
            "{}|{:?}|{:?}|{:?}|{}|{}",
            base.normalized(),
            req.scope,
            req.filter,
            req.attrs,
            req.sizelimit,
            req.typesonly
        );
        if let Some((size, cookie)) = &paging
            && !cookie.is_empty()
        {
            return self.continue_paged(msgid, *size, cookie, &fingerprint);
        }

        let snapshot = match self.ctx.dir.snapshot() {
            Ok(s) => s,
            Err(e) => return vec![done(err_res(e.into()), vec![])],
        };
        let dit = self.ctx.dits.get(snapshot);
        let reader = self.reader(&dit);

        let base_idx = if base.is_root() {
            None
        } else {
            match dit.find(&base) {
                Some(i) if reader.can_read(i) => Some(i),
                _ => {
                    let mut r = res(Code::NoSuchObject, format!("no entry {}", req.base));
                    r.matcheddn = dit.matched_dn(&base);
                    return vec![done(r, vec![])];
                }
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
        let deadline = (!time_limit.is_zero()).then(|| Instant::now() + time_limit);
        let size_limit = match (req.sizelimit.max(0) as usize, self.ctx.cfg.size_limit) {
            (0, s) => s,
            (c, 0) => c,
            (c, s) => c.min(s),
        };

        if let Some((size, _)) = paging {
            // Paged searches keep entry numbers only; each page builds its entries.
            let mut matched = Vec::new();
            let timed_out = collect(&dit, &reader, &filter, base_idx, &req.scope, deadline, |i, _| {
                matched.push(i);
                true
            });
            let size_exceeded = size_limit > 0 && matched.len() > size_limit;
            if size_exceeded {
                matched.truncate(size_limit);
            }
            let mut p = PagedSearch {
                cookie: Vec::new(),
                fingerprint,
                dit,
                results: matched,
                next: 0,
                selection,
                types_only: req.typesonly,
                size_exceeded,
            };
            if timed_out {
                let mut out = page(msgid, &mut p, usize::MAX);
                out.push(done(
                    res(Code::TimeLimitExceeded, "time limit exceeded"),
                    vec![LdapControl::SimplePagedResults { size: 0, cookie: Vec::new() }],
                ));
                return out;
            }
            return self.emit_page(msgid, p, size);
        }

        // Entries are rendered as they match, from the copy the filter just saw; the scan stops as
        // soon as the size limit is known to be exceeded.
        let mut out: Vec<LdapMsg> = Vec::new();
        let mut size_exceeded = false;
        let timed_out = collect(&dit, &reader, &filter, base_idx, &req.scope, deadline, |_, e| {
            if size_limit > 0 && out.len() >= size_limit {
                size_exceeded = true;
                return false;
            }
            out.push(LdapMsg::new(msgid, LdapOp::SearchResultEntry(render_cow(e, &selection, req.typesonly))));
            true
        });
        let r = if timed_out {
            res(Code::TimeLimitExceeded, "time limit exceeded")
        } else if size_exceeded {
            res(Code::SizeLimitExceeded, format!("size limit of {size_limit} entries exceeded"))
        } else {
            res(Code::Success, "")
        };
        out.push(done(r, vec![]));
        out
    }

    fn emit_page(&mut self, msgid: i32, mut p: PagedSearch, size: i64) -> Vec<LdapMsg> {
        let page_size = if size <= 0 { usize::MAX } else { size as usize };
        let mut out = page(msgid, &mut p, page_size);
        let finished = p.next >= p.results.len();
        let (code, msg) = if finished && p.size_exceeded {
            (Code::SizeLimitExceeded, "size limit exceeded")
        } else {
            (Code::Success, "")
        };
        let cookie = if finished {
            Vec::new()
        } else {
            self.cookie_counter += 1;
            let mut c = self.cookie_counter.to_be_bytes().to_vec();
            c.extend_from_slice(&rand::random::<[u8; 8]>());
            p.cookie = c.clone();
            if self.paged.len() >= self.ctx.cfg.max_paged_searches.max(1) {
                self.paged.remove(0);
            }
            self.paged.push(p);
            c
        };
        out.push(LdapMsg::new_with_ctrls(
            msgid,
            LdapOp::SearchResultDone(res(code, msg)),
            vec![LdapControl::SimplePagedResults { size: 0, cookie }],
        ));
        out
    }

    fn continue_paged(&mut self, msgid: i32, size: i64, cookie: &[u8], fingerprint: &str) -> Vec<LdapMsg> {
        let done = |r: LdapResult| {
            LdapMsg::new_with_ctrls(
                msgid,
                LdapOp::SearchResultDone(r),
                vec![LdapControl::SimplePagedResults { size: 0, cookie: Vec::new() }],
            )
        };
        let Some(pos) = self.paged.iter().position(|p| p.cookie == cookie) else {
            return vec![done(res(Code::UnwillingToPerform, "paged results cookie is invalid or expired"))];
        };
        let p = self.paged.remove(pos);
        if p.fingerprint != fingerprint {
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
            EntryKind::Service => self.scope.services(),
        }
    }
}

/// Hands each readable entry in scope that matches, in tree order, to `on_match` until it returns
/// false; `true` when the deadline cut the scan short.
fn collect(
    dit: &Dit,
    reader: &Reader,
    filter: &Filter,
    base: Option<usize>,
    scope: &LdapSearchScope,
    deadline: Option<Instant>,
    mut on_match: impl FnMut(usize, Cow<'_, Entry>) -> bool,
) -> bool {
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
    let candidates: Vec<usize> = match filter.candidates(dit) {
        Some(c) => c.into_iter().filter(|&i| in_scope(i)).collect(),
        None => match (base, scope) {
            (Some(b), LdapSearchScope::Base) => vec![b],
            (Some(b), LdapSearchScope::OneLevel) => dit.children(b),
            (None, LdapSearchScope::OneLevel) => vec![dit.base],
            _ => dit.all().into_iter().filter(|&i| in_scope(i)).collect(),
        },
    };
    for (n, i) in candidates.into_iter().enumerate() {
        if n % 512 == 511
            && let Some(d) = deadline
            && Instant::now() > d
        {
            return true;
        }
        if reader.can_read(i) {
            let e = dit.entry(i);
            if filter.matches(&e) && !on_match(i, e) {
                break;
            }
        }
    }
    false
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
