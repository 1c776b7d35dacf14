//! LDAP message framing. The outer BER header of every message (a SEQUENCE tag and a definite
//! length) is read here before its body is kept, so that a length the server will not accept is
//! refused as soon as its octets arrive instead of being buffered until the idle timeout. While a
//! large message arrives, its declared size is held from a budget shared by all connections
//! (`ldap.max_pending_bytes`). Only a complete frame whose messageID and protocolOp pass a check
//! is handed to `ldap3_proto`: its decoder prints to stdout when it meets an operation it does
//! not know, and input must never reach that path.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ldap3_proto::LdapCodec;
use ldap3_proto::proto::{LdapMsg, LdapResultCode};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::config::LdapConfig;

/// BER nesting allowed by the decoder; deeper filters are cut off before they cost anything.
const MAX_BER_DEPTH: usize = 160;

/// Messages larger than this (header included) hold their declared size from the shared pending
/// budget while they arrive. Smaller ones cost at most this much per connection anyway.
pub const LARGE_MESSAGE_BYTES: usize = 64 * 1024;

/// Length octets accepted in a long-form length. Four express any size up to 4 GiB, far beyond
/// any sensible `ldap.max_message_bytes`; more is only ever an attempt to stall the reader.
const MAX_LENGTH_OCTETS: usize = 4;

/// Identifier octet of a universal, constructed SEQUENCE: every LDAPMessage starts with it.
const SEQUENCE: u8 = 0x30;
/// Identifier octet of a universal, primitive INTEGER (the messageID).
const INTEGER: u8 = 0x02;

/// Why a connection's input is refused. Each closes the connection with a Notice of
/// Disconnection (see [`FrameError::notice`]).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("malformed LDAP message: first octet {0:#04x} does not start an LDAPMessage (SEQUENCE)")]
    NotLdap(u8),
    #[error("malformed LDAP message: indefinite length (0x80) is not allowed")]
    IndefiniteLength,
    #[error("malformed LDAP message: reserved length octet 0xff")]
    ReservedLength,
    #[error("malformed LDAP message: a length of {0} octets (at most 4 are accepted)")]
    LengthOctets(usize),
    #[error("message of {size} bytes or more is larger than the server accepts (ldap.max_message_bytes = {max})")]
    TooLarge { size: u64, max: usize },
    #[error("server busy: too much input pending from all clients")]
    Busy,
    #[error("malformed LDAP message: messageID is not an INTEGER in 0..2147483647")]
    BadMessageId,
    #[error("malformed LDAP message: no protocolOp after the messageID")]
    MissingOp,
    #[error("malformed LDAP message: unknown protocolOp (identifier octet {0:#04x})")]
    UnknownOp(u8),
    /// The BER or LDAP decoder refused the message; the detail is for the log only.
    #[error("malformed LDAP message")]
    Malformed(String),
    #[error("server shutting down")]
    ShuttingDown,
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// Result code of the Notice of Disconnection sent before closing.
    pub fn notice_code(&self) -> LdapResultCode {
        match self {
            FrameError::Busy => LdapResultCode::Busy,
            FrameError::ShuttingDown => LdapResultCode::Unavailable,
            _ => LdapResultCode::ProtocolError,
        }
    }
}

/// Bytes of large messages still arriving, over all connections, against `ldap.max_pending_bytes`.
#[derive(Debug)]
pub struct PendingBudget {
    limit: usize,
    used: AtomicUsize,
}

impl PendingBudget {
    pub fn new(limit: usize) -> Arc<PendingBudget> {
        Arc::new(PendingBudget { limit, used: AtomicUsize::new(0) })
    }

    /// Bytes currently held.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .ok()?;
        Some(Reservation { budget: self.clone(), bytes })
    }
}

/// A share of the pending budget, given back when dropped: when its message is decoded, refused,
/// or its connection goes away mid-message.
#[derive(Debug)]
struct Reservation {
    budget: Arc<PendingBudget>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A message whose header has been read and whose body is still arriving.
#[derive(Debug)]
struct Pending {
    header_len: usize,
    size: usize,
    _reservation: Option<Reservation>,
}

/// The LDAP codec of one connection: frames messages itself, decodes them with `ldap3_proto`.
pub struct Codec {
    inner: LdapCodec,
    max_message_bytes: usize,
    budget: Arc<PendingBudget>,
    pending: Option<Pending>,
}

impl Codec {
    pub fn new(cfg: &LdapConfig, budget: Arc<PendingBudget>) -> Codec {
        Codec {
            inner: LdapCodec::new(Some(cfg.max_message_bytes), Some(MAX_BER_DEPTH)),
            max_message_bytes: cfg.max_message_bytes,
            budget,
            pending: None,
        }
    }
}

impl Codec {
    /// The next complete message, checked but not yet decoded.
    fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        if self.pending.is_none() {
            let Some(h) = parse_header(buf, self.max_message_bytes)? else { return Ok(None) };
            // Only a message that has yet to arrive holds budget; one already here is decoded now.
            let reservation = if h.size > LARGE_MESSAGE_BYTES && buf.len() < h.size {
                Some(self.budget.try_reserve(h.size).ok_or(FrameError::Busy)?)
            } else {
                None
            };
            self.pending = Some(Pending { header_len: h.header_len, size: h.size, _reservation: reservation });
        }
        let Some(p) = self.pending.as_ref() else { return Ok(None) };
        if buf.len() < p.size {
            return Ok(None);
        }
        let (header_len, size) = (p.header_len, p.size);
        // The reservation goes back once the frame is out of the buffer, decoded or not.
        let _done = self.pending.take();
        let frame = buf.split_to(size);
        check_body(frame.get(header_len..).unwrap_or_default())?;
        Ok(Some(frame))
    }
}

/// Decodes one checked frame.
fn decode_frame(inner: &mut LdapCodec, mut frame: BytesMut) -> Result<LdapMsg, FrameError> {
    match inner.decode(&mut frame) {
        Ok(Some(msg)) if frame.is_empty() => Ok(msg),
        // The frame is complete by our reading of its header; anything else is a disagreement
        // about where it ends, and the message is not trusted.
        Ok(_) => Err(FrameError::Malformed("frame length disagrees with its content".into())),
        Err(e) => Err(FrameError::Malformed(e.to_string())),
    }
}

/// Decodes a large frame handed out by [`ServerCodec`], wherever the caller runs it.
pub fn decode_large(frame: BytesMut, max_message_bytes: usize) -> Result<LdapMsg, FrameError> {
    decode_frame(&mut LdapCodec::new(Some(max_message_bytes), Some(MAX_BER_DEPTH)), frame)
}

impl Decoder for Codec {
    type Item = LdapMsg;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<LdapMsg>, FrameError> {
        match self.next_frame(buf)? {
            Some(frame) => decode_frame(&mut self.inner, frame).map(Some),
            None => Ok(None),
        }
    }
}

/// What the server's codec yields: a decoded message, or a large one still to be decoded.
pub enum Frame {
    Msg(LdapMsg),
    /// Over [`LARGE_MESSAGE_BYTES`]: decoding a filter of a megabyte takes tens of milliseconds,
    /// too long for a request worker, so the server decodes it on the blocking pool.
    Large(BytesMut),
}

/// The codec as the server uses it: large messages are framed and checked here, decoded elsewhere.
pub struct ServerCodec(pub Codec);

impl Decoder for ServerCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.0.next_frame(buf)? {
            Some(frame) if frame.len() > LARGE_MESSAGE_BYTES => Ok(Some(Frame::Large(frame))),
            Some(frame) => decode_frame(&mut self.0.inner, frame).map(|m| Some(Frame::Msg(m))),
            None => Ok(None),
        }
    }
}

impl Encoder<LdapMsg> for ServerCodec {
    type Error = FrameError;

    fn encode(&mut self, msg: LdapMsg, buf: &mut BytesMut) -> Result<(), FrameError> {
        self.0.encode(msg, buf)
    }
}

impl Encoder<LdapMsg> for Codec {
    type Error = FrameError;

    fn encode(&mut self, msg: LdapMsg, buf: &mut BytesMut) -> Result<(), FrameError> {
        Ok(self.inner.encode(msg, buf)?)
    }
}

/// The outer header of a message: how many octets it takes and the size of the whole message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHeader {
    header_len: usize,
    size: usize,
}

/// Reads the header of the message at the start of `buf`. `Ok(None)`: more octets are needed and
/// nothing seen so far is wrong. A message of more than `max` bytes is refused as soon as the
/// length octets read so far prove it.
fn parse_header(buf: &[u8], max: usize) -> Result<Option<FrameHeader>, FrameError> {
    let Some(&tag) = buf.first() else { return Ok(None) };
    if tag != SEQUENCE {
        return Err(FrameError::NotLdap(tag));
    }
    let max64 = u64::try_from(max).unwrap_or(u64::MAX);
    let too_large = |size: u64| FrameError::TooLarge { size, max };
    let (octets, len) = match read_length(buf.get(1..).unwrap_or_default(), max64) {
        Ok(Some(x)) => x,
        Ok(None) => return Ok(None),
        Err(LengthError::Indefinite) => return Err(FrameError::IndefiniteLength),
        Err(LengthError::Reserved) => return Err(FrameError::ReservedLength),
        Err(LengthError::TooManyOctets(n)) => return Err(FrameError::LengthOctets(n)),
        Err(LengthError::Exceeds(at_least)) => return Err(too_large(at_least)),
    };
    let header_len = 1 + octets;
    let size = len.saturating_add(header_len as u64);
    if size > max64 {
        return Err(too_large(size));
    }
    let size = usize::try_from(size).map_err(|_| too_large(size))?;
    Ok(Some(FrameHeader { header_len, size }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LengthError {
    Indefinite,
    Reserved,
    TooManyOctets(usize),
    /// The value is at least this, which is over the cap.
    Exceeds(u64),
}

/// Reads a BER definite length at the start of `b`: `(octets used, value)`, or `Ok(None)` when
/// its octets have not all arrived. Refuses at once what can never be accepted: the indefinite
/// form, the reserved 0xff, more than four length octets, and a value over `cap` (judged on the
/// octets already present, so a huge length is refused without waiting for the rest of it).
fn read_length(b: &[u8], cap: u64) -> Result<Option<(usize, u64)>, LengthError> {
    let Some(&first) = b.first() else { return Ok(None) };
    if first < 0x80 {
        let value = u64::from(first);
        return if value > cap { Err(LengthError::Exceeds(value)) } else { Ok(Some((1, value))) };
    }
    let n = usize::from(first & 0x7f);
    match first {
        0x80 => return Err(LengthError::Indefinite),
        0xff => return Err(LengthError::Reserved),
        _ if n > MAX_LENGTH_OCTETS => return Err(LengthError::TooManyOctets(n)),
        _ => {}
    }
    let have: Vec<u8> = b.iter().skip(1).take(n).copied().collect();
    let value = have.iter().fold(0u64, |v, &o| (v << 8) | u64::from(o));
    // With n <= 4 the shift stays within 32 bits.
    let at_least = value << (8 * (n - have.len()));
    if at_least > cap {
        return Err(LengthError::Exceeds(at_least));
    }
    if have.len() < n {
        return Ok(None);
    }
    Ok(Some((1 + n, value)))
}

/// Checks the start of a complete message's body: a messageID the decoder cannot misread, then a
/// protocolOp `ldap3_proto` decodes.
fn check_body(body: &[u8]) -> Result<(), FrameError> {
    if body.first() != Some(&INTEGER) {
        return Err(FrameError::BadMessageId);
    }
    let rest = body.get(1..).unwrap_or_default();
    let (octets, len) = match read_length(rest, rest.len() as u64) {
        Ok(Some(x)) => x,
        _ => return Err(FrameError::BadMessageId),
    };
    let start = 1 + octets;
    let end = start.saturating_add(usize::try_from(len).map_err(|_| FrameError::BadMessageId)?);
    let id = body.get(start..end).ok_or(FrameError::BadMessageId)?;
    // MessageID ::= INTEGER (0 .. 2^31-1): one to four octets, sign bit clear. Longer encodings
    // would be silently truncated to 32 bits by the decoder.
    match id.first() {
        Some(&lead) if id.len() <= 4 && lead & 0x80 == 0 => {}
        _ => return Err(FrameError::BadMessageId),
    }
    let op = *body.get(end).ok_or(FrameError::MissingOp)?;
    if !known_op(op) {
        return Err(FrameError::UnknownOp(op));
    }
    Ok(())
}

/// Whether `ldap3_proto` decodes a protocolOp with this identifier octet. Each operation is an
/// [APPLICATION n] tag, constructed except the UnbindRequest (NULL, either form accepted),
/// DelRequest and AbandonRequest (primitive); the crate knows n = 0..16, 19 and 23..25. Any other
/// octet would end in its fallback, which prints to stdout.
fn known_op(id: u8) -> bool {
    const CLASS_MASK: u8 = 0xc0;
    const APPLICATION: u8 = 0x40;
    const CONSTRUCTED: u8 = 0x20;
    if id & CLASS_MASK != APPLICATION {
        return false;
    }
    let constructed = id & CONSTRUCTED != 0;
    match id & 0x1f {
        2 => true,
        10 | 16 => !constructed,
        0..=9 | 11..=15 | 19 | 23..=25 => constructed,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3_proto::proto::{LdapBindCred, LdapBindRequest, LdapOp};

    const MAX: usize = 4096;

    fn header(b: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
        parse_header(b, MAX)
    }

    fn frame(header_len: usize, size: usize) -> Option<FrameHeader> {
        Some(FrameHeader { header_len, size })
    }

    #[test]
    fn short_and_long_form_lengths() {
        assert_eq!(header(&[0x30, 0x00]).unwrap(), frame(2, 2));
        assert_eq!(header(&[0x30, 0x05]).unwrap(), frame(2, 7));
        assert_eq!(header(&[0x30, 0x7f]).unwrap(), frame(2, 129));
        assert_eq!(header(&[0x30, 0x81, 0x80]).unwrap(), frame(3, 131));
        assert_eq!(header(&[0x30, 0x82, 0x01, 0x00]).unwrap(), frame(4, 260));
        // Non-minimal long forms are valid BER.
        assert_eq!(header(&[0x30, 0x81, 0x05]).unwrap(), frame(3, 8));
        assert_eq!(header(&[0x30, 0x84, 0x00, 0x00, 0x00, 0x05]).unwrap(), frame(6, 11));
        // Body octets after the header do not matter here.
        assert_eq!(header(&[0x30, 0x03, 0x02, 0x01]).unwrap(), frame(2, 5));
    }

    #[test]
    fn incomplete_headers_wait() {
        assert_eq!(header(&[]).unwrap(), None);
        assert_eq!(header(&[0x30]).unwrap(), None);
        assert_eq!(header(&[0x30, 0x82]).unwrap(), None);
        assert_eq!(header(&[0x30, 0x82, 0x01]).unwrap(), None);
        assert_eq!(header(&[0x30, 0x84, 0x00, 0x00, 0x00]).unwrap(), None);
    }

    #[test]
    fn forbidden_length_forms_are_refused_at_once() {
        assert!(matches!(header(&[0x30, 0x80]), Err(FrameError::IndefiniteLength)));
        assert!(matches!(header(&[0x30, 0xff]), Err(FrameError::ReservedLength)));
        assert!(matches!(header(&[0x30, 0x85]), Err(FrameError::LengthOctets(5))));
        assert!(matches!(header(&[0x30, 0x85, 0, 0, 0, 0, 1]), Err(FrameError::LengthOctets(5))));
        assert!(matches!(header(&[0x30, 0xfe]), Err(FrameError::LengthOctets(126))));
        let mut long = vec![0x30, 0xff];
        long.extend([0x01; 127]);
        assert!(matches!(header(&long), Err(FrameError::ReservedLength)));
        assert!(matches!(header(&[0x02, 0x01]), Err(FrameError::NotLdap(0x02))));
        assert!(matches!(header(b"GET / HTTP/1.1"), Err(FrameError::NotLdap(b'G'))));
    }

    #[test]
    fn oversize_is_refused_and_the_boundary_is_exact() {
        // MAX = 4096 bytes in all: a 4-octet-length header (6 octets) leaves 4090 for the body.
        assert_eq!(header(&[0x30, 0x84, 0x00, 0x00, 0x0f, 0xfa]).unwrap(), frame(6, MAX));
        assert!(matches!(
            header(&[0x30, 0x84, 0x00, 0x00, 0x0f, 0xfb]),
            Err(FrameError::TooLarge { size: 4097, max: MAX })
        ));
        assert_eq!(header(&[0x30, 0x82, 0x0f, 0xfc]).unwrap(), frame(4, MAX));
        assert!(matches!(header(&[0x30, 0x82, 0x0f, 0xfd]), Err(FrameError::TooLarge { size: 4097, .. })));
        // 2 GiB: refused on the first length octet, before the other three arrive.
        assert!(matches!(header(&[0x30, 0x84, 0x7f]), Err(FrameError::TooLarge { .. })));
        assert!(matches!(header(&[0x30, 0x84, 0x7f, 0xff, 0xff, 0xff]), Err(FrameError::TooLarge { .. })));
        // Partial octets that could still give an acceptable length keep waiting.
        assert_eq!(header(&[0x30, 0x84, 0x00, 0x00]).unwrap(), None);
        let e = header(&[0x30, 0x83, 0x10, 0x00, 0x00]).unwrap_err();
        assert!(e.to_string().contains("ldap.max_message_bytes"), "{e}");
    }

    fn bind_bytes(msgid: i32) -> BytesMut {
        let mut b = BytesMut::new();
        let op = LdapOp::BindRequest(LdapBindRequest {
            version: 3,
            dn: "cn=x".into(),
            cred: LdapBindCred::Simple("secret".into()),
        });
        LdapCodec::default().encode(LdapMsg::new(msgid, op), &mut b).unwrap();
        b
    }

    fn codec(max_pending: usize) -> (Codec, Arc<PendingBudget>) {
        let budget = PendingBudget::new(max_pending);
        (Codec::new(&LdapConfig::default(), budget.clone()), budget)
    }

    #[test]
    fn messages_split_across_reads_and_pipelined() {
        let (mut c, _) = codec(1 << 20);
        let mut wire = bind_bytes(7).to_vec();
        wire.extend_from_slice(&bind_bytes(8));
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &octet in &wire {
            buf.extend_from_slice(&[octet]);
            while let Some(m) = c.decode(&mut buf).unwrap() {
                got.push(m.msgid);
            }
        }
        assert_eq!(got, vec![7, 8]);
        assert!(buf.is_empty());

        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(c.decode(&mut buf).unwrap().map(|m| m.msgid), Some(7));
        assert_eq!(c.decode(&mut buf).unwrap().map(|m| m.msgid), Some(8));
        assert!(c.decode(&mut buf).unwrap().is_none());
    }

    /// A body whose first element is the messageID `id` and whose second starts with `op`.
    fn message(id: &[u8], op: &[u8]) -> BytesMut {
        let mut body = vec![INTEGER, id.len() as u8];
        body.extend_from_slice(id);
        body.extend_from_slice(op);
        let mut m = vec![SEQUENCE, body.len() as u8];
        m.extend(body);
        BytesMut::from(&m[..])
    }

    #[test]
    fn unknown_operations_never_reach_the_decoder() {
        let (mut c, _) = codec(1 << 20);
        // [APPLICATION 26], [APPLICATION 17], a constructed DelRequest and a primitive BindRequest:
        // all would reach ldap3_proto's printing fallback.
        for op in [0x7a, 0x71, 0x6a, 0x40, 0x7f, 0x30, 0xa0] {
            let r = c.decode(&mut message(&[1], &[op, 0x00]));
            assert!(matches!(r, Err(FrameError::UnknownOp(o)) if o == op), "{op:#04x}: {r:?}");
        }
        assert!(matches!(c.decode(&mut message(&[1], &[])), Err(FrameError::MissingOp)));
        // Known ones pass the check (and then fail or succeed on their content in the decoder).
        for op in [0x42, 0x62, 0x4a, 0x50, 0x60, 0x63, 0x73, 0x77, 0x79] {
            assert!(known_op(op), "{op:#04x}");
        }
        // An UnbindRequest decodes.
        let m = c.decode(&mut message(&[5], &[0x42, 0x00])).unwrap().unwrap();
        assert_eq!((m.msgid, m.op), (5, LdapOp::UnbindRequest));
    }

    #[test]
    fn message_ids_are_checked() {
        let (mut c, _) = codec(1 << 20);
        let unbind = [0x42, 0x00];
        for id in [&[][..], &[0x80][..], &[0xff, 0xff][..], &[0x01, 0, 0, 0, 0][..]] {
            let r = c.decode(&mut message(id, &unbind));
            assert!(matches!(r, Err(FrameError::BadMessageId)), "{id:02x?}: {r:?}");
        }
        // Not an INTEGER, and an INTEGER whose length runs past the message.
        let r = c.decode(&mut BytesMut::from(&[0x30, 0x03, 0x04, 0x01, 0x41][..]));
        assert!(matches!(r, Err(FrameError::BadMessageId)), "{r:?}");
        let r = c.decode(&mut BytesMut::from(&[0x30, 0x04, 0x02, 0x7f, 0x01, 0x42][..]));
        assert!(matches!(r, Err(FrameError::BadMessageId)), "{r:?}");
        let r = c.decode(&mut BytesMut::from(&[0x30, 0x03, 0x02, 0x80, 0x00][..]));
        assert!(matches!(r, Err(FrameError::BadMessageId)), "{r:?}");
        let m = c.decode(&mut message(&[0x7f, 0xff, 0xff, 0xff], &unbind)).unwrap().unwrap();
        assert_eq!(m.msgid, i32::MAX);
    }

    /// The header of a message of `size` bytes in all, with a four-octet length.
    fn big_header(size: usize) -> Vec<u8> {
        let mut h = vec![SEQUENCE, 0x84];
        h.extend_from_slice(&((size - 6) as u32).to_be_bytes());
        h
    }

    #[test]
    fn large_messages_hold_the_pending_budget_while_they_arrive() {
        let size = 100 * 1024;
        let budget = PendingBudget::new(size + size / 2);
        let cfg = LdapConfig::default();
        let (mut a, mut b) = (Codec::new(&cfg, budget.clone()), Codec::new(&cfg, budget.clone()));
        let mut abuf = BytesMut::from(&big_header(size)[..]);
        assert!(a.decode(&mut abuf).unwrap().is_none());
        assert_eq!(budget.in_use(), size);
        // A second large message does not fit while the first is pending.
        assert!(matches!(b.decode(&mut BytesMut::from(&big_header(size)[..])), Err(FrameError::Busy)));
        assert_eq!(budget.in_use(), size);
        // A small one does not need the budget.
        let mut small = bind_bytes(3);
        assert_eq!(b.decode(&mut small).unwrap().map(|m| m.msgid), Some(3));
        // Dropping the connection mid-message gives the budget back.
        drop(a);
        assert_eq!(budget.in_use(), 0);
        let mut bbuf = BytesMut::from(&big_header(size)[..]);
        assert!(b.decode(&mut bbuf).unwrap().is_none());
        assert_eq!(budget.in_use(), size);
        // Once the frame is complete it leaves the budget, whether it decodes or not (this body
        // is not an LDAPMessage).
        bbuf.extend_from_slice(&vec![0u8; size - 6]);
        assert!(matches!(b.decode(&mut bbuf), Err(FrameError::BadMessageId)));
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_large_message_already_complete_needs_no_budget() {
        let size = 100 * 1024;
        let (mut c, budget) = codec(0);
        let mut buf = BytesMut::from(&big_header(size)[..]);
        buf.extend_from_slice(&message(&[1], &[0x42, 0x00])[2..]);
        buf.resize(size, 0);
        // The body is an UnbindRequest followed by zeros: refused by the decoder, not for budget.
        assert!(matches!(c.decode(&mut buf), Err(FrameError::Malformed(_))));
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn budget_accounting_is_exact_under_contention() {
        let budget = PendingBudget::new(10);
        let held: Vec<_> = (0..10).filter_map(|_| budget.try_reserve(1)).collect();
        assert_eq!(held.len(), 10);
        assert!(budget.try_reserve(1).is_none());
        assert!(budget.try_reserve(usize::MAX).is_none());
        drop(held);
        assert_eq!(budget.in_use(), 0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = budget.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if let Some(r) = b.try_reserve(3) {
                            assert!(b.in_use() <= 10);
                            drop(r);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(budget.in_use(), 0);
    }
}
