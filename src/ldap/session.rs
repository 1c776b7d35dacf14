//! One connection's protocol state and the dispatch of each request. The transport (server.rs)
//! feeds decoded messages in and writes the returned messages out; the session owns the bound
//! identity and the open paged searches. Each operation's handler is in `super::ops`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindResponse, LdapExtendedResponse, LdapMsg, LdapOp, LdapResult, LdapResultCode as Code,
    LdapSearchScope,
};

use super::codec::PendingBudget;
use super::dit::{Dit, DitCache, DitSettings, Entry, EntryKind};
use super::dn::Dn;
use super::error::LdapError;
use super::ops::{Reader, Selection};
use super::schema;
use crate::config::{LdapConfig, Rights};
use crate::directory::{Caller, Directory, Principal};

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
    pub(in crate::ldap) root_dse: Entry,
    pub(in crate::ldap) schema_entry: Entry,
    pub(in crate::ldap) schema_dn: String,
    /// Bytes of large messages still arriving on any connection (`ldap.max_pending_bytes`).
    pub(in crate::ldap) pending: Arc<PendingBudget>,
    /// Binds that could not be checked (a backend outage) warn once per interval, not per bind.
    pub(in crate::ldap) unchecked_binds: std::sync::Mutex<crate::accept::RateLimitedWarn>,
    pub(in crate::ldap) paged_state: Arc<PagedState>,
    /// Large messages decoded at once, off the request workers (`ldap.costly_searches`).
    pub(in crate::ldap) decode_slots: Arc<tokio::sync::Semaphore>,
}

impl LdapContext {
    pub fn new(cfg: LdapConfig, dir: Arc<Directory>) -> Result<LdapContext, String> {
        let (kind, instance) = dir.scope().split_once('\u{0}').unwrap_or((dir.scope(), ""));
        let settings =
            DitSettings::new(&cfg, kind, instance)?.with_directory(dir.member_of(), dir.custom_attributes().all())?;
        let root_dse = root_dse(&settings, &cfg);
        let schema_entry = schema_entry(&settings.custom);
        Ok(LdapContext {
            schema_dn: Dn::parse("cn=schema").map(|d| d.normalized()).unwrap_or_default(),
            dits: DitCache::new(settings),
            pending: PendingBudget::new(cfg.max_pending_bytes),
            unchecked_binds: std::sync::Mutex::new(crate::accept::RateLimitedWarn::new(crate::accept::WARN_INTERVAL)),
            paged_state: PagedState::new(cfg.max_paged_state_bytes),
            decode_slots: Arc::new(tokio::sync::Semaphore::new(
                cfg.costly_searches.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            )),
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

/// The subschema entry: the standard table, plus this server's custom attributes and the
/// auxiliary class user entries carry them with.
fn schema_entry(custom: &[schema::AttrId]) -> Entry {
    let dn = Dn::parse("cn=schema").unwrap_or_default();
    let mut e = Entry::new(&dn, EntryKind::Container);
    e.set("objectClass", vec!["top".into(), "subentry".into(), "subschema".into()]);
    e.set1("cn", "schema");
    e.set1("subtreeSpecification", "{}");
    e.set1("structuralObjectClass", "subentry");
    e.set("ldapSyntaxes", schema::syntax_descriptions());
    e.set("matchingRules", schema::matching_rule_descriptions());
    let mut types = schema::attribute_type_descriptions();
    types.extend(schema::custom_type_descriptions(custom));
    e.set("attributeTypes", types);
    let mut classes = schema::object_class_descriptions();
    if !custom.is_empty() {
        classes.push(schema::custom_class_description(custom));
    }
    e.set("objectClasses", classes);
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

    pub(in crate::ldap) fn authz_id(&self) -> String {
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

/// An open paged search, kept between pages: the entries it matched and how far it got.
pub(in crate::ldap) struct PagedSearch {
    pub(in crate::ldap) cookie: Vec<u8>,
    /// A hash of the request, which a continuation must repeat.
    pub(in crate::ldap) fingerprint: [u8; 32],
    pub(in crate::ldap) dit: Arc<Dit>,
    pub(in crate::ldap) results: Vec<usize>,
    pub(in crate::ldap) next: usize,
    pub(in crate::ldap) selection: Selection,
    pub(in crate::ldap) types_only: bool,
    pub(in crate::ldap) size_exceeded: bool,
    /// Its share of the server-wide paged-state budget, while it is kept.
    pub(in crate::ldap) charge: Option<PagedCharge>,
}

impl PagedSearch {
    /// The memory it holds of its own (the tree it reads is shared with every other search).
    pub(in crate::ldap) fn bytes(&self) -> usize {
        std::mem::size_of::<PagedSearch>()
            + self.cookie.capacity()
            + self.results.capacity() * std::mem::size_of::<usize>()
            + self.selection.bytes()
    }
}

/// Bytes held by open paged searches on all connections, within `ldap.max_paged_state_bytes`.
pub struct PagedState {
    used: AtomicUsize,
    max: usize,
}

impl PagedState {
    fn new(max: usize) -> Arc<PagedState> {
        Arc::new(PagedState { used: AtomicUsize::new(0), max })
    }

    /// Reserves `bytes`, or `None` when they do not fit.
    pub(in crate::ldap) fn charge(self: &Arc<Self>, bytes: usize) -> Option<PagedCharge> {
        let now = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_add(bytes).filter(|&n| n <= self.max))
            .ok()?
            + bytes;
        metrics::gauge!("idgate_ldap_paged_state_bytes").set(now as f64);
        Some(PagedCharge { bytes, state: self.clone() })
    }
}

/// A reservation in [`PagedState`], released when the paged search it belongs to is dropped
/// (finished, abandoned, evicted, or its connection closed).
pub(in crate::ldap) struct PagedCharge {
    bytes: usize,
    state: Arc<PagedState>,
}

impl Drop for PagedCharge {
    fn drop(&mut self) {
        let before = self.state.used.fetch_sub(self.bytes, Ordering::AcqRel);
        metrics::gauge!("idgate_ldap_paged_state_bytes").set(before.saturating_sub(self.bytes) as f64);
    }
}

pub struct Session {
    pub(in crate::ldap) ctx: Arc<LdapContext>,
    pub(in crate::ldap) peer: SocketAddr,
    /// The connection is encrypted (LDAPS, or after StartTLS).
    pub(in crate::ldap) tls: bool,
    pub(in crate::ldap) identity: Identity,
    pub(in crate::ldap) paged: Vec<PagedSearch>,
    pub(in crate::ldap) cookie_counter: u64,
}

pub(in crate::ldap) fn res(code: Code, message: impl Into<String>) -> LdapResult {
    LdapResult { code, matcheddn: String::new(), message: message.into(), referral: Vec::new() }
}

pub(in crate::ldap) fn err_res(e: LdapError) -> LdapResult {
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

    /// Handles one request, `received` when its last byte arrived (limits count from then, the
    /// wait to decode a large message included).
    pub async fn handle(&mut self, msg: LdapMsg, received: Instant) -> Reply {
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
                    None => self.dispatch(msgid, msg.op, &msg.ctrl, received).await,
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
                metrics::histogram!("idgate_ldap_request_seconds", "op" => op).record(received.elapsed().as_secs_f64());
            }
        }
        reply.msgs.shrink_to_fit();
        reply
    }

    async fn dispatch(&mut self, msgid: i32, op: LdapOp, ctrls: &[LdapControl], received: Instant) -> Vec<LdapMsg> {
        // A search takes its request: a large filter then moves to wherever it is evaluated.
        let op = match op {
            LdapOp::SearchRequest(s) => return self.search(msgid, s, ctrls, received).await,
            op => op,
        };
        let op = &op;
        let one = |r: Result<LdapResult, LdapError>| {
            let r = r.unwrap_or_else(err_res);
            vec![LdapMsg::new(msgid, response_for(op, r).unwrap_or(LdapOp::UnbindRequest))]
        };
        match op {
            LdapOp::BindRequest(b) => {
                let r = self.bind(b).await;
                vec![LdapMsg::new(msgid, LdapOp::BindResponse(LdapBindResponse { res: r, saslcreds: None }))]
            }
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

    // ---- Access control -------------------------------------------------------------------

    pub(in crate::ldap) fn may_read_tree(&self) -> bool {
        self.ctx.dir.may_read_tree(&self.identity.principal())
    }

    /// A reader for one search: what the bound identity may see in this tree.
    pub(in crate::ldap) fn reader<'a>(&'a self, dit: &'a Dit) -> Reader<'a> {
        Reader { scope: self.ctx.dir.read_scope(&self.identity.principal(), &dit.snapshot), dit }
    }

    /// The bound identity as the core's write API takes it.
    pub(in crate::ldap) fn caller(&self) -> Caller {
        let label = match &self.identity {
            Identity::Anonymous => "anonymous".to_string(),
            Identity::User { dn, .. } | Identity::Service { dn, .. } => dn.clone(),
        };
        Caller { principal: self.identity.principal(), label, source: self.peer.to_string(), frontend: "ldap" }
    }
}
