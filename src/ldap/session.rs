//! One connection's protocol state and the handling of each request. The transport (server.rs)
//! feeds decoded messages in and writes the returned messages out; the session owns the bound
//! identity and the open paged searches.

mod write;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindRequest, LdapBindResponse, LdapCompareRequest, LdapExtendedRequest, LdapExtendedResponse,
    LdapMsg, LdapOp, LdapPartialAttribute, LdapResult, LdapResultCode as Code, LdapSearchRequest,
    LdapSearchResultEntry, LdapSearchScope,
};

use super::dit::{Dit, DitCache, DitSettings, Entry, EntryKind};
use super::dn::Dn;
use super::error::LdapError;
use super::filter::{Filter, FilterError, Limits, Tri};
use super::schema::{self, AttrId};
use crate::config::{LdapConfig, Rights};
use crate::directory::{AuthOutcome, Caller, Directory, Principal, ReadScope};

pub const OID_PAGED_RESULTS: &str = "1.2.840.113556.1.4.319";
pub const OID_MANAGE_DSA_IT: &str = "2.16.840.1.113730.3.4.2";
pub const OID_WHOAMI: &str = "1.3.6.1.4.1.4203.1.11.3";
pub const OID_STARTTLS: &str = "1.3.6.1.4.1.1466.20037";
pub const OID_PASSWORD_MODIFY: &str = "1.3.6.1.4.1.4203.1.11.1";

/// Shared by every connection.
pub struct LdapContext {
    pub dir: Arc<Directory>,
    pub dits: DitCache,
    pub cfg: LdapConfig,
    root_dse: Entry,
    schema_entry: Entry,
    schema_dn: String,
}

impl LdapContext {
    pub fn new(cfg: LdapConfig, dir: Arc<Directory>) -> Result<LdapContext, String> {
        let (kind, instance) = dir.scope().split_once('\u{0}').unwrap_or((dir.scope(), ""));
        let settings = DitSettings::new(&cfg, kind, instance)?;
        let root_dse = root_dse(&settings, &cfg);
        let schema_entry = schema_entry();
        Ok(LdapContext {
            schema_dn: Dn::parse("cn=schema").map(|d| d.normalized()).unwrap_or_default(),
            dits: DitCache::new(settings),
            dir,
            cfg,
            root_dse,
            schema_entry,
        })
    }

    pub fn settings(&self) -> &DitSettings {
        self.dits.settings()
    }
}

fn root_dse(s: &DitSettings, cfg: &LdapConfig) -> Entry {
    let mut e = Entry::new(&Dn::root(), EntryKind::Container);
    e.set("objectClass", vec!["top".into()]);
    e.set1("namingContexts", s.base.to_string());
    e.set1("defaultNamingContext", s.base.to_string());
    e.set1("supportedLDAPVersion", "3");
    e.set("supportedControl", vec![OID_PAGED_RESULTS.into(), OID_MANAGE_DSA_IT.into()]);
    let mut ext = vec![OID_WHOAMI.to_string(), OID_PASSWORD_MODIFY.to_string()];
    if cfg.starttls {
        ext.push(OID_STARTTLS.into());
    }
    e.set("supportedExtension", ext);
    // All operational attributes (`+`) and absolute true/false filters.
    e.set("supportedFeatures", vec!["1.3.6.1.4.1.4203.1.5.1".into(), "1.3.6.1.4.1.4203.1.5.3".into()]);
    e.set1("subschemaSubentry", "cn=schema");
    e.set1("vendorName", "idgate");
    e.set1("vendorVersion", concat!("idgate ", env!("CARGO_PKG_VERSION")));
    e
}

fn schema_entry() -> Entry {
    let dn = Dn::parse("cn=schema").unwrap_or_default();
    let mut e = Entry::new(&dn, EntryKind::Container);
    e.set("objectClass", vec!["top".into(), "subentry".into(), "subschema".into()]);
    e.set1("cn", "schema");
    e.set1("subtreeSpecification", "{}");
    e.set1("structuralObjectClass", "subentry");
    e.set("ldapSyntaxes", schema::syntax_descriptions());
    e.set("matchingRules", schema::matching_rule_descriptions());
    e.set("attributeTypes", schema::attribute_type_descriptions());
    e.set("objectClasses", schema::object_class_descriptions());
    e.set1("entryDN", "cn=schema");
    e.set1("subschemaSubentry", "cn=schema");
    e
}

/// Who the connection is bound as. Owned by the connection, never shared.
#[derive(Debug, Clone)]
pub enum Identity {
    Anonymous,
    User { id: String, dn: String },
    Service { name: String, access: Rights, dn: String },
}

impl Identity {
    /// The core's view of this identity.
    pub fn principal(&self) -> Principal {
        match self {
            Identity::Anonymous => Principal::Anonymous,
            Identity::User { id, .. } => Principal::User { id: id.clone() },
            Identity::Service { name, access, .. } => Principal::Service { name: name.clone(), rights: *access },
        }
    }

    fn authz_id(&self) -> String {
        match self {
            Identity::Anonymous => String::new(),
            Identity::User { dn, .. } | Identity::Service { dn, .. } => format!("dn:{dn}"),
        }
    }
}

/// What the transport should do after a request.
pub struct Reply {
    pub msgs: Vec<LdapMsg>,
    pub close: bool,
}

struct PagedSearch {
    cookie: Vec<u8>,
    fingerprint: String,
    dit: Arc<Dit>,
    results: Vec<usize>,
    next: usize,
    selection: Selection,
    types_only: bool,
    size_exceeded: bool,
}

pub struct Session {
    ctx: Arc<LdapContext>,
    peer: SocketAddr,
    /// The connection is encrypted (LDAPS, or after StartTLS).
    tls: bool,
    identity: Identity,
    paged: Vec<PagedSearch>,
    cookie_counter: u64,
}

fn res(code: Code, message: impl Into<String>) -> LdapResult {
    LdapResult { code, matcheddn: String::new(), message: message.into(), referral: Vec::new() }
}

fn err_res(e: LdapError) -> LdapResult {
    LdapResult { code: e.code, matcheddn: e.matched_dn, message: e.message, referral: Vec::new() }
}

/// The response that answers `op` with `r`; `None` for requests that have no response.
fn response_for(op: &LdapOp, r: LdapResult) -> Option<LdapOp> {
    Some(match op {
        LdapOp::BindRequest(_) => LdapOp::BindResponse(LdapBindResponse { res: r, saslcreds: None }),
        LdapOp::SearchRequest(_) => LdapOp::SearchResultDone(r),
        LdapOp::ModifyRequest(_) => LdapOp::ModifyResponse(r),
        LdapOp::AddRequest(_) => LdapOp::AddResponse(r),
        LdapOp::DelRequest(_) => LdapOp::DelResponse(r),
        LdapOp::ModifyDNRequest(_) => LdapOp::ModifyDNResponse(r),
        LdapOp::CompareRequest(_) => LdapOp::CompareResult(r),
        LdapOp::ExtendedRequest(_) => {
            LdapOp::ExtendedResponse(LdapExtendedResponse { res: r, name: None, value: None })
        }
        _ => return None,
    })
}

fn op_name(op: &LdapOp) -> &'static str {
    match op {
        LdapOp::BindRequest(_) => "bind",
        LdapOp::UnbindRequest => "unbind",
        LdapOp::SearchRequest(_) => "search",
        LdapOp::ModifyRequest(_) => "modify",
        LdapOp::AddRequest(_) => "add",
        LdapOp::DelRequest(_) => "delete",
        LdapOp::ModifyDNRequest(_) => "modrdn",
        LdapOp::CompareRequest(_) => "compare",
        LdapOp::AbandonRequest(_) => "abandon",
        LdapOp::ExtendedRequest(_) => "extended",
        _ => "invalid",
    }
}

/// The first control that is critical and that we do not implement.
fn unsupported_critical(ctrls: &[LdapControl]) -> Option<String> {
    ctrls.iter().find_map(|c| match c {
        LdapControl::Unknown { oid, criticality: true, .. } => Some(oid.clone()),
        LdapControl::PasswordPolicyRequest { criticality: true } => Some("1.3.6.1.4.1.42.2.27.8.5.1".into()),
        LdapControl::SyncRequest { criticality: true, .. } => Some("1.3.6.1.4.1.4203.1.9.1.1".into()),
        LdapControl::SearchOptions { criticality: true, .. } => Some("1.2.840.113556.1.4.1340".into()),
        LdapControl::ShowDeleted { criticality: true } => Some("1.2.840.113556.1.4.417".into()),
        LdapControl::SdFlags { criticality: true, .. } => Some("1.2.840.113556.1.4.801".into()),
        LdapControl::ExtendedDn { criticality: true, .. } => Some("1.2.840.113556.1.4.529".into()),
        _ => None,
    })
}

/// Which attributes a search asked for.
#[derive(Debug, Clone)]
struct Selection {
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
fn render_cow(e: std::borrow::Cow<'_, Entry>, sel: &Selection, types_only: bool) -> LdapSearchResultEntry {
    match e {
        std::borrow::Cow::Borrowed(e) => render(e, sel, types_only, false),
        std::borrow::Cow::Owned(e) => LdapSearchResultEntry {
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
    pub fn new(ctx: Arc<LdapContext>, peer: SocketAddr, tls: bool) -> Session {
        Session { ctx, peer, tls, identity: Identity::Anonymous, paged: Vec::new(), cookie_counter: 0 }
    }

    /// After a successful StartTLS handshake.
    pub fn set_tls(&mut self) {
        self.tls = true;
    }

    /// Under `require_tls`, what may still happen in clear text: anonymous binds, reading the Root
    /// DSE (to discover StartTLS), StartTLS itself.
    fn allowed_in_clear(op: &LdapOp) -> bool {
        match op {
            LdapOp::BindRequest(b) => matches!(&b.cred, LdapBindCred::Simple(p) if p.is_empty()) && b.dn.is_empty(),
            LdapOp::SearchRequest(s) => s.base.is_empty() && s.scope == LdapSearchScope::Base,
            LdapOp::ExtendedRequest(x) => x.name == OID_STARTTLS,
            _ => false,
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub async fn handle(&mut self, msg: LdapMsg) -> Reply {
        let started = Instant::now();
        let op = op_name(&msg.op);
        let msgid = msg.msgid;
        let mut reply = match &msg.op {
            LdapOp::UnbindRequest => Reply { msgs: Vec::new(), close: true },
            // Requests run in order, so whatever Abandon names has finished; it never gets a response.
            LdapOp::AbandonRequest(_) => Reply { msgs: Vec::new(), close: false },
            op if response_for(op, res(Code::Success, "")).is_none() => Reply {
                msgs: vec![ldap3_proto::simple::DisconnectionNotice::gen_response(
                    Code::ProtocolError,
                    "a client sent a response-only message",
                )],
                close: true,
            },
            op if self.ctx.cfg.require_tls && !self.tls && !Self::allowed_in_clear(op) => {
                let r = res(Code::ConfidentialityRequired, "this server requires TLS: use StartTLS or LDAPS");
                Reply {
                    msgs: vec![LdapMsg::new(msgid, response_for(op, r).unwrap_or(LdapOp::UnbindRequest))],
                    close: false,
                }
            }
            op => {
                let msgs = match unsupported_critical(&msg.ctrl) {
                    Some(oid) => {
                        let r =
                            res(Code::UnavailableCriticalExtension, format!("critical control {oid} is not supported"));
                        vec![LdapMsg::new(msgid, response_for(op, r).unwrap_or(LdapOp::UnbindRequest))]
                    }
                    None => self.dispatch(msgid, &msg.op, &msg.ctrl).await,
                };
                Reply { msgs, close: false }
            }
        };
        if let Some(last) = reply.msgs.last() {
            let code = match &last.op {
                LdapOp::BindResponse(r) => Some(&r.res.code),
                LdapOp::SearchResultDone(r)
                | LdapOp::CompareResult(r)
                | LdapOp::ModifyResponse(r)
                | LdapOp::AddResponse(r)
                | LdapOp::DelResponse(r)
                | LdapOp::ModifyDNResponse(r) => Some(&r.code),
                LdapOp::ExtendedResponse(r) => Some(&r.res.code),
                _ => None,
            };
            if let Some(code) = code {
                let result = format!("{code:?}");
                metrics::counter!("idgate_ldap_requests_total", "op" => op, "result" => result).increment(1);
                metrics::histogram!("idgate_ldap_request_seconds", "op" => op).record(started.elapsed().as_secs_f64());
            }
        }
        reply.msgs.shrink_to_fit();
        reply
    }

    async fn dispatch(&mut self, msgid: i32, op: &LdapOp, ctrls: &[LdapControl]) -> Vec<LdapMsg> {
        let one = |r: Result<LdapResult, LdapError>| {
            let r = r.unwrap_or_else(err_res);
            vec![LdapMsg::new(msgid, response_for(op, r).unwrap_or(LdapOp::UnbindRequest))]
        };
        match op {
            LdapOp::BindRequest(b) => {
                let r = self.bind(b).await;
                vec![LdapMsg::new(msgid, LdapOp::BindResponse(LdapBindResponse { res: r, saslcreds: None }))]
            }
            LdapOp::SearchRequest(s) => self.search(msgid, s, ctrls).await,
            LdapOp::CompareRequest(c) => one(self.compare(c)),
            LdapOp::ExtendedRequest(x) if x.name == OID_PASSWORD_MODIFY => {
                vec![LdapMsg::new(msgid, LdapOp::ExtendedResponse(self.password_modify(x).await))]
            }
            LdapOp::ExtendedRequest(x) => vec![LdapMsg::new(msgid, LdapOp::ExtendedResponse(self.extended(x)))],
            LdapOp::AddRequest(r) => one(self.add(r).await),
            LdapOp::ModifyRequest(r) => one(self.modify(r).await),
            LdapOp::DelRequest(dn) => one(self.delete(dn).await),
            LdapOp::ModifyDNRequest(r) => one(self.modify_dn(r).await),
            _ => one(Err(LdapError::new(Code::ProtocolError, "unexpected operation"))),
        }
    }

    // ---- Bind -----------------------------------------------------------------------------

    async fn bind(&mut self, b: &LdapBindRequest) -> LdapResult {
        // A bind resets the connection to anonymous whatever its outcome (RFC 4511 §4.2.1).
        self.identity = Identity::Anonymous;
        self.paged.clear();
        if b.version != 3 {
            return res(Code::ProtocolError, format!("LDAP version {} is not supported; use version 3", b.version));
        }
        let password = match &b.cred {
            LdapBindCred::Simple(p) => p.as_str(),
            LdapBindCred::SASL(s) => {
                return res(
                    Code::AuthMethodNotSupported,
                    format!("SASL mechanism {} is not supported; use a simple bind", s.mechanism),
                );
            }
            LdapBindCred::Unsupported => return res(Code::AuthMethodNotSupported, "only simple binds are supported"),
        };
        let name = b.dn.trim();
        match (name.is_empty(), password.is_empty()) {
            (true, true) => return res(Code::Success, ""),
            (false, true) => {
                return res(
                    Code::UnwillingToPerform,
                    "unauthenticated bind (a name without a password) is not allowed",
                );
            }
            (true, false) => return res(Code::UnwillingToPerform, "a password needs a bind name"),
            _ => {}
        }
        let peer = self.peer.ip();
        let s = self.ctx.settings().clone();
        let target = self.resolve_bind_name(name, &s);
        let outcome = match &target {
            BindTarget::Service(n) => Ok(self.ctx.dir.authenticate_service(n, password, peer)),
            BindTarget::User(login) => self.ctx.dir.authenticate_user(login, password, peer).await,
            BindTarget::Nobody => {
                // Same answer and same throttling as a wrong password, so names outside the tree
                // reveal nothing. The NUL prefix cannot occur in a configured account name.
                Ok(self.ctx.dir.authenticate_service(&format!("\u{0}{}", name.to_lowercase()), password, peer))
            }
        };
        let result = match outcome {
            Ok(AuthOutcome::User(u)) => {
                self.identity = Identity::User { id: u.id.clone(), dn: s.user_dn(&u.login).to_string() };
                res(Code::Success, "")
            }
            Ok(AuthOutcome::Service { name, access }) => {
                self.identity = Identity::Service { dn: s.service_dn(&name).to_string(), name, access };
                res(Code::Success, "")
            }
            Ok(AuthOutcome::Invalid) => res(Code::InvalidCredentials, "invalid credentials"),
            Ok(AuthOutcome::Throttled(d)) => res(
                Code::InvalidCredentials,
                format!("too many failed binds for this name or address; try again in {} s", d.as_secs().max(1)),
            ),
            Err(e) => {
                let e = LdapError::from(e);
                tracing::warn!(peer = %self.peer, error = %e.message, "bind could not be checked");
                res(if e.code == Code::InvalidCredentials { Code::Unavailable } else { e.code }, e.message)
            }
        };
        tracing::info!(
            target: "idgate::audit",
            event = "bind",
            peer = %self.peer,
            name = %name,
            result = ?result.code,
        );
        result
    }

    fn resolve_bind_name(&self, name: &str, s: &DitSettings) -> BindTarget {
        if name.contains('=') {
            let Ok(dn) = Dn::parse(name) else { return BindTarget::Nobody };
            let Some(rdn) = dn.rdn().map(|r| r.first().clone()) else { return BindTarget::Nobody };
            let parent = dn.parent().normalized();
            if parent == s.services.normalized() && rdn.attr == "cn" {
                return BindTarget::Service(rdn.value);
            }
            if parent == s.people.normalized() && rdn.attr == "uid" {
                return BindTarget::User(rdn.value);
            }
            return BindTarget::Nobody;
        }
        if let Some((login, domain)) = name.rsplit_once('@') {
            return match &self.ctx.cfg.bind_domain {
                Some(d) if d.eq_ignore_ascii_case(domain) => BindTarget::User(login.to_string()),
                _ => BindTarget::Nobody,
            };
        }
        BindTarget::User(name.to_string())
    }

    // ---- Access control -------------------------------------------------------------------

    fn may_read_tree(&self) -> bool {
        self.ctx.dir.may_read_tree(&self.identity.principal())
    }

    /// A reader for one search: what the bound identity may see in this tree.
    fn reader<'a>(&'a self, dit: &'a Dit) -> Reader<'a> {
        Reader { scope: self.ctx.dir.read_scope(&self.identity.principal(), &dit.snapshot), dit }
    }

    /// The bound identity as the core's write API takes it.
    pub(super) fn caller(&self) -> Caller {
        let label = match &self.identity {
            Identity::Anonymous => "anonymous".to_string(),
            Identity::User { dn, .. } | Identity::Service { dn, .. } => dn.clone(),
        };
        Caller { principal: self.identity.principal(), label, source: self.peer.to_string(), frontend: "ldap" }
    }

    // ---- Search ---------------------------------------------------------------------------

    async fn search(&mut self, msgid: i32, req: &LdapSearchRequest, ctrls: &[LdapControl]) -> Vec<LdapMsg> {
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

    // ---- Compare --------------------------------------------------------------------------

    fn compare(&self, c: &LdapCompareRequest) -> Result<LdapResult, LdapError> {
        let dn = Dn::parse(&c.dn).map_err(|e| LdapError::new(Code::InvalidDNSyntax, e.to_string()))?;
        if !self.may_read_tree() {
            return Err(LdapError::new(Code::InsufficentAccessRights, "bind first"));
        }
        let Some(id) = schema::lookup(&c.atype) else {
            return Err(LdapError::new(Code::UndefinedAttributeType, format!("unknown attribute {}", c.atype)));
        };
        if schema::def(id).name == "userPassword" {
            return Err(LdapError::new(Code::InsufficentAccessRights, "userPassword cannot be compared"));
        }
        let value = String::from_utf8(c.val.clone())
            .map_err(|_| LdapError::new(Code::InvalidAttributeSyntax, "the assertion value is not UTF-8"))?;
        let snapshot = self.ctx.dir.snapshot()?;
        let dit = self.ctx.dits.get(snapshot);
        let reader = self.reader(&dit);
        let idx = dit.find(&dn).filter(|&i| reader.can_read(i)).ok_or_else(|| {
            let mut e = LdapError::new(Code::NoSuchObject, format!("no entry {}", c.dn));
            e.matched_dn = dit.matched_dn(&dn);
            e
        })?;
        let entry = dit.entry(idx);
        if entry.get(id).is_none() {
            return Err(LdapError::new(Code::NoSuchAttribute, format!("{} has no {}", c.dn, schema::def(id).name)));
        }
        Ok(match Filter::Equality(id, value).eval(&entry) {
            Tri::True => res(Code::CompareTrue, ""),
            _ => res(Code::CompareFalse, ""),
        })
    }

    // ---- Extended -------------------------------------------------------------------------

    fn extended(&self, x: &LdapExtendedRequest) -> LdapExtendedResponse {
        match x.name.as_str() {
            OID_WHOAMI => LdapExtendedResponse {
                res: res(Code::Success, ""),
                name: None,
                value: Some(self.identity.authz_id().into_bytes()),
            },
            // RFC 4511 §4.14.2: a StartTLS request on a connection already protected by TLS.
            OID_STARTTLS if self.tls => LdapExtendedResponse {
                res: res(Code::OperationsError, "TLS is already established on this connection"),
                name: Some(OID_STARTTLS.into()),
                value: None,
            },
            OID_STARTTLS => LdapExtendedResponse {
                res: res(Code::Unavailable, "StartTLS is not available on this listener"),
                name: Some(OID_STARTTLS.into()),
                value: None,
            },
            OID_PASSWORD_MODIFY => LdapExtendedResponse {
                res: res(
                    Code::UnwillingToPerform,
                    "the password modify operation is not available in this idgate version",
                ),
                name: None,
                value: None,
            },
            other => LdapExtendedResponse {
                res: res(Code::ProtocolError, format!("unsupported extended operation {other}")),
                name: None,
                value: None,
            },
        }
    }
}

enum BindTarget {
    User(String),
    Service(String),
    Nobody,
}

/// Read access of one identity over one tree, as the core decides it.
struct Reader<'a> {
    scope: ReadScope,
    dit: &'a Dit,
}

impl Reader<'_> {
    fn can_read(&self, idx: usize) -> bool {
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
    mut on_match: impl FnMut(usize, std::borrow::Cow<'_, Entry>) -> bool,
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
