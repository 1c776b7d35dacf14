//! Assembles a running gateway from a config: backend, directory, listeners. Used by the binary
//! and by the integration tests, which start the real server on ephemeral ports.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::backend::{self, Backend};
use crate::config::Config;
use crate::directory::Directory;
use crate::ldap::server::{Mode, serve};
use crate::ldap::session::LdapContext;
use crate::ldap::tls::{Source, Tls};

/// A started gateway. Call [`Running::shutdown`] to stop it gracefully; dropping it stops the
/// listeners abruptly.
pub struct Running {
    pub ldap_addr: SocketAddr,
    /// The LDAPS listener, when configured.
    pub ldaps_addr: Option<SocketAddr>,
    pub http_addr: SocketAddr,
    pub directory: Arc<Directory>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// `shutdown_timeout`: how long [`Running::shutdown`] may take in all.
    shutdown_timeout: Duration,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, and returns within `shutdown_timeout` in
    /// all: what still runs then is cancelled, searches on the blocking pool included (they stop
    /// within a few work units; nobody waits for them).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        for t in &mut self.tasks {
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                tracing::warn!("shutdown_timeout reached; cancelling what still runs");
                break;
            }
        }
        self.directory.searches().stop();
        // Aborting a listener drops its connections, and with them the searches they await.
        for t in &self.tasks {
            t.abort();
        }
    }

    /// A handle that can trigger the shutdown from elsewhere (e.g. a signal handler).
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|_| handle)
        })
        .clone()
}

/// Starts the gateway with the given backend (tests pass their own).
pub async fn start_with_backend(mut cfg: Config, backend: Arc<dyn Backend>) -> anyhow::Result<Running> {
    crate::ldap::validate(&cfg.ldap).map_err(anyhow::Error::msg)?;
    // Before anything opens descriptors: the caps in `cfg` become the ones the limit allows.
    crate::limits::apply(&mut cfg)?;
    let metrics = metrics_handle();
    match backend.probe().await {
        Ok(report) => {
            tracing::info!(backend = report.backend, version = ?report.version, notes = ?report.notes, "backend probed")
        }
        Err(e) => tracing::warn!(error = %e, "backend probe failed; starting anyway and retrying in the background"),
    }
    let directory = Directory::open(&cfg, backend)?;
    if let Err(e) = directory.refresh_full().await {
        tracing::warn!(error = %e, "initial directory load failed; will retry");
    }
    let (tx, rx) = watch::channel(false);
    let mut tasks = vec![directory.spawn_refresher(rx.clone())];

    let tls = if cfg.ldap.starttls || cfg.ldap.ldaps_listen.is_some() {
        let source = match (&cfg.ldap.tls_cert, &cfg.ldap.tls_key) {
            (Some(cert), Some(key)) => Source::Files { cert: cert.clone(), key: key.clone() },
            _ => Source::SelfSigned,
        };
        Some(Arc::new(Tls::new(source)?))
    } else {
        None
    };
    let ldap_listener = TcpListener::bind(cfg.ldap.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for LDAP on {}: {e}", cfg.ldap.listen))?;
    let ldap_addr = ldap_listener.local_addr()?;
    let ctx = Arc::new(LdapContext::new(cfg.ldap.clone(), directory.clone()).map_err(anyhow::Error::msg)?);
    let starttls = if cfg.ldap.starttls { tls.clone() } else { None };
    // One cap for LDAP and LDAPS together: the budget is per protocol, not per port.
    let ldap_slots = Arc::new(Semaphore::new(cfg.ldap.max_connections.max(1)));
    tasks.push(tokio::spawn(serve(
        ldap_listener,
        ctx.clone(),
        Mode::Plain { starttls },
        ldap_slots.clone(),
        rx.clone(),
    )));
    let mut ldaps_addr = None;
    if let (Some(addr), Some(tls)) = (cfg.ldap.ldaps_listen, &tls) {
        let l = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen for LDAPS on {addr}: {e}"))?;
        ldaps_addr = Some(l.local_addr()?);
        tasks.push(tokio::spawn(serve(l, ctx, Mode::Ldaps(tls.clone()), ldap_slots, rx.clone())));
    }
    // SIGHUP reloads the TLS certificate; without TLS it is logged, never fatal.
    #[cfg(unix)]
    {
        let tls = tls.clone();
        let mut stop = rx.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = hup.recv() => match &tls {
                        Some(tls) => {
                            if let Err(e) = tls.reload() {
                                tracing::error!(error = %e, "TLS reload failed; keeping the current certificate");
                            }
                        }
                        None => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
                    },
                    _ = stop.changed() => return,
                }
            }
        }));
    }

    let http_listener = TcpListener::bind(cfg.http.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {}: {e}", cfg.http.listen))?;
    let http_addr = http_listener.local_addr()?;
    let mut router = crate::ops::router(crate::ops::OpsState { dir: directory.clone(), metrics: metrics.clone() });
    if cfg.scim.enabled {
        let scim = crate::scim::ScimState::new(directory.clone(), cfg.scim.clone());
        router = router.merge(crate::scim::router(Arc::new(scim)));
    }
    tasks.push(tokio::spawn(crate::http::serve(
        http_listener,
        router,
        cfg.http.clone(),
        cfg.shutdown_timeout,
        rx.clone(),
    )));
    if let Some(m) = metrics {
        let mut stop = rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => m.run_upkeep(),
                    _ = stop.changed() => return,
                }
            }
        }));
    }
    tracing::info!(%ldap_addr, ?ldaps_addr, %http_addr, "idgate listening");
    let shutdown_timeout = cfg.shutdown_timeout;
    Ok(Running { ldap_addr, ldaps_addr, http_addr, directory, shutdown: tx, tasks, shutdown_timeout })
}

pub async fn start(cfg: Config) -> anyhow::Result<Running> {
    let backend = backend::build(&cfg).map_err(anyhow::Error::msg)?;
    start_with_backend(cfg, backend).await
}
