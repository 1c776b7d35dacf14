//! The LDAP listener: accepts connections up to a cap, frames messages with a size limit, applies
//! the idle timeout, and answers undecodable input with a Notice of Disconnection.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use ldap3_proto::LdapCodec;
use ldap3_proto::proto::LdapResultCode as Code;
use ldap3_proto::proto::{LdapExtendedResponse, LdapMsg, LdapOp, LdapResult};
use ldap3_proto::simple::DisconnectionNotice;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::server::TlsStream;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder, Framed, FramedParts};
use tokio_util::either::Either;

use super::session::{LdapContext, OID_STARTTLS, Session};
use super::tls::Tls;

/// A client connection, in clear text or TLS.
type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a listener speaks.
#[derive(Clone)]
pub enum Mode {
    /// Plain LDAP, with StartTLS when a TLS configuration is given.
    Plain { starttls: Option<Arc<Tls>> },
    /// LDAPS: TLS from the first byte.
    Ldaps(Arc<Tls>),
}

/// BER nesting allowed by the decoder; deeper filters are cut off before they cost anything.
const MAX_BER_DEPTH: usize = 160;

/// Messages longer than this are decoded on the blocking pool: decoding a filter of a megabyte
/// takes tens of milliseconds, too long to hold a request worker.
const LARGE_MESSAGE: usize = 64 * 1024;

/// What the codec yields: a decoded message, or a large one still to be decoded.
enum Frame {
    Msg(LdapMsg),
    Large(BytesMut),
}

/// The start of a BER element, as far as framing needs it.
enum Header {
    Incomplete,
    /// The element's whole length, header included.
    Len(usize),
    /// A form only the full decoder judges (indefinite or over-long lengths).
    Other,
}

fn header(buf: &[u8]) -> Header {
    let Some(&first) = buf.get(1) else { return Header::Incomplete };
    if first < 0x80 {
        return Header::Len(2 + first as usize);
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return Header::Other;
    }
    let Some(octets) = buf.get(2..2 + n) else { return Header::Incomplete };
    let body = octets.iter().fold(0u64, |len, &b| (len << 8) | u64::from(b));
    Header::Len(usize::try_from(body).unwrap_or(usize::MAX).saturating_add(2 + n))
}

/// The LDAP codec, refusing at once input whose first octet cannot start an LDAPMessage (a
/// SEQUENCE, 0x30). Without this, bytes such as an HTTP request parse as the start of some other
/// element with a large length, and the connection waits for the idle timeout. Large messages are
/// framed here and decoded elsewhere (see [`LARGE_MESSAGE`]).
struct Codec {
    inner: LdapCodec,
    max: usize,
}

impl Codec {
    fn new(max: usize) -> Codec {
        Codec { inner: LdapCodec::new(Some(max), Some(MAX_BER_DEPTH)), max }
    }
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if buf.first().is_some_and(|&b| b != 0x30) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not an LDAP message"));
        }
        if let Header::Len(len) = header(buf)
            && len > LARGE_MESSAGE
        {
            if len > self.max {
                return Err(std::io::Error::new(std::io::ErrorKind::OutOfMemory, "LDAP message too large"));
            }
            if buf.len() < len {
                buf.reserve(len - buf.len());
                return Ok(None);
            }
            return Ok(Some(Frame::Large(buf.split_to(len))));
        }
        Ok(self.inner.decode(buf)?.map(Frame::Msg))
    }
}

impl Encoder<LdapMsg> for Codec {
    type Error = std::io::Error;

    fn encode(&mut self, msg: LdapMsg, buf: &mut BytesMut) -> Result<(), Self::Error> {
        self.inner.encode(msg, buf)
    }
}

/// Decodes a large message on the blocking pool, as many at once as `ldap.costly_searches`.
async fn decode_large(ctx: &LdapContext, mut bytes: BytesMut) -> std::io::Result<LdapMsg> {
    let slot = ctx
        .decode_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| std::io::Error::other("the server is shutting down"))?;
    let max = ctx.cfg.max_message_bytes;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        LdapCodec::new(Some(max), Some(MAX_BER_DEPTH))
            .decode(&mut bytes)?
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "truncated LDAP message"))
    })
    .await
    .map_err(std::io::Error::other)?
}

pub async fn serve(listener: TcpListener, ctx: Arc<LdapContext>, mode: Mode, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(ctx.cfg.max_connections.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "LDAP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let ctx = ctx.clone();
                let shutdown = shutdown.clone();
                let mode = mode.clone();
                tasks.spawn(async move {
                    metrics::gauge!("idgate_ldap_connections").increment(1.0);
                    match mode {
                        Mode::Plain { starttls } => {
                            connection(Either::Left(stream), peer, ctx, starttls, shutdown).await
                        }
                        Mode::Ldaps(tls) => {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
                                Ok(Ok(s)) => connection(Either::Right(s), peer, ctx, None, shutdown).await,
                                Ok(Err(e)) => tracing::info!(%peer, error = %e, "LDAPS handshake failed"),
                                Err(_) => tracing::info!(%peer, "LDAPS handshake timed out"),
                            }
                        }
                    }
                    metrics::gauge!("idgate_ldap_connections").decrement(1.0);
                    drop(permit);
                });
            }
            Err(_) => {
                tracing::warn!(%peer, "LDAP connection refused: ldap.max_connections reached");
                tasks.spawn(async move {
                    let mut framed = Framed::new(stream, LdapCodec::default());
                    let _ = framed.send(DisconnectionNotice::gen_response(Code::Busy, "too many connections")).await;
                });
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    // Let open connections finish the request they are on; they see the shutdown flag too. The
    // shutdown bounds this wait (`shutdown_timeout`) and then aborts this task, which drops (and so
    // aborts) every connection still open.
    while tasks.join_next().await.is_some() {}
}

/// Resolves when the client has closed the connection (or it failed). It only peeks, so requests
/// the client pipelined stay in the socket for the connection loop.
async fn peer_gone(stream: &Stream) {
    let tcp = match stream {
        Either::Left(tcp) => tcp,
        Either::Right(tls) => tls.get_ref().0,
    };
    match tcp.peek(&mut [0u8; 1]).await {
        Ok(0) | Err(_) => {}
        // The client sent more (another request, an Abandon): a close behind those bytes cannot be
        // seen without reading them, so the search runs to its own limits.
        Ok(_) => std::future::pending().await,
    }
}

fn starttls_reply(msgid: i32, r: LdapResult) -> LdapMsg {
    LdapMsg::new(
        msgid,
        LdapOp::ExtendedResponse(LdapExtendedResponse { res: r, name: Some(OID_STARTTLS.into()), value: None }),
    )
}

/// Answers a StartTLS request and performs the handshake on the same socket. `None` when the
/// connection must close.
async fn start_tls(
    mut framed: Framed<Stream, Codec>,
    msgid: i32,
    tls: &Tls,
    peer: SocketAddr,
) -> Option<Framed<Stream, Codec>> {
    let ok = LdapResult { code: Code::Success, matcheddn: String::new(), message: String::new(), referral: Vec::new() };
    framed.send(starttls_reply(msgid, ok)).await.ok()?;
    let FramedParts { io, codec, read_buf, .. } = framed.into_parts();
    if !read_buf.is_empty() {
        // Bytes sent after StartTLS but before the handshake must never be read as protected.
        tracing::info!(%peer, "client pipelined data after StartTLS; closing");
        return None;
    }
    let Either::Left(tcp) = io else { return None };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp)).await {
        Ok(Ok(s)) => Some(Framed::new(Either::Right(s), codec)),
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "StartTLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(%peer, "StartTLS handshake timed out");
            None
        }
    }
}

async fn connection(
    stream: Stream,
    peer: SocketAddr,
    ctx: Arc<LdapContext>,
    starttls: Option<Arc<Tls>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let idle = ctx.cfg.idle_timeout;
    let codec = Codec::new(ctx.cfg.max_message_bytes);
    let tls = matches!(stream, Either::Right(_));
    let mut framed = Framed::new(stream, codec);
    let mut session = Session::new(ctx.clone(), peer, tls);
    tracing::debug!(%peer, "LDAP connection opened");
    loop {
        let next = tokio::select! {
            r = tokio::time::timeout(idle, framed.next()) => r,
            _ = shutdown.changed() => {
                let _ = framed.send(DisconnectionNotice::gen_response(Code::Unavailable, "server shutting down")).await;
                break;
            }
        };
        let frame = match next {
            Err(_) => {
                tracing::debug!(%peer, "LDAP connection idle; closing");
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    framed.send(DisconnectionNotice::gen_response(Code::Unavailable, "idle timeout")),
                )
                .await;
                break;
            }
            Ok(None) => break,
            Ok(Some(frame)) => frame,
        };
        let received = std::time::Instant::now();
        let decoded = match frame {
            Ok(Frame::Msg(m)) => Ok(m),
            Ok(Frame::Large(bytes)) => decode_large(&ctx, bytes).await,
            Err(e) => Err(e),
        };
        let msg = match decoded {
            Err(e) => {
                let why = if e.kind() == std::io::ErrorKind::OutOfMemory {
                    "message larger than the server accepts (ldap.max_message_bytes)".to_string()
                } else {
                    "malformed LDAP message".to_string()
                };
                tracing::info!(%peer, error = %e, "closing LDAP connection: {why}");
                metrics::counter!("idgate_ldap_protocol_errors_total").increment(1);
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    framed.send(DisconnectionNotice::gen_response(Code::ProtocolError, &why)),
                )
                .await;
                break;
            }
            Ok(m) => m,
        };
        if let (LdapOp::ExtendedRequest(x), Some(tls), Either::Left(_)) = (&msg.op, &starttls, framed.get_ref())
            && x.name == OID_STARTTLS
        {
            match start_tls(framed, msg.msgid, tls, peer).await {
                Some(f) => {
                    framed = f;
                    session.set_tls();
                    tracing::debug!(%peer, "StartTLS established");
                    continue;
                }
                None => break,
            }
        }
        let reply = if matches!(msg.op, LdapOp::SearchRequest(_)) {
            // A search may run long: if the client hangs up meanwhile, dropping it cancels it.
            tokio::select! {
                r = session.handle(msg, received) => r,
                _ = peer_gone(framed.get_ref()) => {
                    tracing::debug!(%peer, "client went away during a search; search cancelled");
                    break;
                }
            }
        } else {
            session.handle(msg, received).await
        };
        let write = async {
            for m in reply.msgs {
                framed.feed(m).await?;
            }
            framed.flush().await
        };
        match tokio::time::timeout(idle, write).await {
            Ok(Ok(())) => {}
            _ => break,
        }
        if reply.close {
            break;
        }
    }
    tracing::debug!(%peer, "LDAP connection closed");
}
