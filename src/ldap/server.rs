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
use tokio_util::codec::{Encoder, Framed, FramedParts};
use tokio_util::either::Either;

use super::codec::{self, Codec, Frame, FrameError, ServerCodec};
use super::session::{LdapContext, OID_STARTTLS, Session};
use super::tls::Tls;
use crate::accept::{Acceptor, RateLimitedWarn, WARN_INTERVAL, suppressed_note};

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

/// Decodes a large message on the blocking pool, as many at once as `ldap.costly_searches`.
async fn decode_large(ctx: &LdapContext, bytes: BytesMut) -> Result<LdapMsg, FrameError> {
    let slot = ctx.decode_slots.clone().acquire_owned().await.map_err(|_| FrameError::ShuttingDown)?;
    let max = ctx.cfg.max_message_bytes;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        codec::decode_large(bytes, max)
    })
    .await
    .map_err(|_| FrameError::ShuttingDown)?
}

/// Accepts LDAP connections until `shutdown` turns true. `slots` is the connection cap
/// (`ldap.max_connections`), shared by the LDAP and LDAPS listeners: one budget of descriptors for
/// the protocol, whichever port clients use.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<LdapContext>,
    mode: Mode,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = if matches!(mode, Mode::Ldaps(_)) { "ldaps" } else { "ldap" };
    // Sent, without waiting, to a connection refused at the cap before it is closed.
    let mut busy = BytesMut::new();
    let notice = DisconnectionNotice::gen_response(Code::Busy, "too many connections");
    if LdapCodec::default().encode(notice, &mut busy).is_err() {
        busy.clear();
    }
    let mut refused = RateLimitedWarn::new(WARN_INTERVAL);
    let mut acceptor = Acceptor::new(listener, if matches!(mode, Mode::Ldaps(_)) { "LDAPS" } else { "LDAP" });
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            x = acceptor.next() => x,
            _ = shutdown.changed() => break,
        };
        while tasks.try_join_next().is_some() {}
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
                // Refused at once: a task per refused connection would let them pile up. On LDAPS
                // the clear-text notice means nothing to the client, which sees the close.
                if matches!(mode, Mode::Plain { .. }) {
                    let _ = stream.try_write(&busy);
                }
                drop(stream);
                metrics::counter!("idgate_connections_refused_total", "listener" => name).increment(1);
                if let Some(suppressed) = refused.check() {
                    tracing::warn!(
                        listener = name,
                        %peer,
                        "LDAP connection refused: ldap.max_connections ({}) reached {}",
                        ctx.cfg.max_connections,
                        suppressed_note(suppressed)
                    );
                }
            }
        }
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
    mut framed: Framed<Stream, ServerCodec>,
    msgid: i32,
    tls: &Tls,
    peer: SocketAddr,
) -> Option<Framed<Stream, ServerCodec>> {
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
    let codec = ServerCodec(Codec::new(&ctx.cfg, ctx.pending.clone()));
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
                tracing::info!(%peer, error = ?e, "closing LDAP connection: {e}");
                metrics::counter!("idgate_ldap_protocol_errors_total").increment(1);
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    framed.send(DisconnectionNotice::gen_response(e.notice_code(), &e.to_string())),
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
