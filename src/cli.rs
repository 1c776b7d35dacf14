//! Command line: `serve`, `check-config`, `version`.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};

#[derive(Parser)]
#[command(name = "idgate", version, about = "LDAP and SCIM gateway in front of ERP user APIs")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short, env = "IDGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file and probe its backend.
    CheckConfig { config: PathBuf },
    /// Print the version.
    Version,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Version => {
            println!("idgate {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::CheckConfig { config } => check_config(&config).await,
        Command::Serve { config } => {
            let cfg = load_config(&config)?;
            crate::logging::init(&cfg);
            let running = crate::app::start(cfg).await?;
            let stop = running.shutdown_sender();
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
            running.shutdown().await;
            Ok(())
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Reads and validates a config file, including the LDAP tree settings, which the LDAP front end
/// checks.
fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let cfg = Config::load(path)?;
    crate::ldap::validate(&cfg.ldap).map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
    crate::ldap::validate_attributes(&cfg.directory.attributes)
        .map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
    Ok(cfg)
}

async fn check_config(path: &Path) -> anyhow::Result<()> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(e) => {
            println!("config: INVALID\n  {e}");
            std::process::exit(1);
        }
    };
    println!("config: ok ({})", path.display());
    println!("  ldap: {} base {}", cfg.ldap.listen, cfg.ldap.base_dn);
    println!("  http: {}", cfg.http.listen);
    println!(
        "  service accounts: {}",
        cfg.ldap
            .service_accounts
            .iter()
            .map(|s| format!("{} ({})", s.name, s.access.describe()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let backend = match crate::backend::build(&cfg) {
        Ok(b) => b,
        Err(e) => {
            println!("backend: INVALID\n  {e}");
            std::process::exit(1);
        }
    };
    match backend.probe().await {
        Ok(r) => {
            println!(
                "backend: {} reachable{}",
                r.backend,
                r.version.map(|v| format!(", version {v}")).unwrap_or_default()
            );
            for n in &r.notes {
                println!("  {n}");
            }
            let c = serde_json::to_value(r.capabilities).unwrap_or_default();
            if let Some(map) = c.as_object() {
                let yes: Vec<_> =
                    map.iter().filter(|(_, v)| v.as_bool() == Some(true)).map(|(k, _)| k.as_str()).collect();
                let no: Vec<_> =
                    map.iter().filter(|(_, v)| v.as_bool() == Some(false)).map(|(k, _)| k.as_str()).collect();
                println!("  supports: {}", yes.join(", "));
                if !no.is_empty() {
                    println!("  not supported: {}", no.join(", "));
                }
            }
            report_hidden(&cfg, &backend).await;
            Ok(())
        }
        Err(e) => {
            println!("backend: FAILED\n  {e}");
            std::process::exit(2);
        }
    }
}

/// Lists the accounts the directory keeps out of LDAP and SCIM, and why.
async fn report_hidden(cfg: &crate::config::Config, backend: &std::sync::Arc<dyn crate::backend::Backend>) {
    let users = match backend.list_users().await {
        Ok(u) => u,
        Err(e) => {
            println!("hidden accounts: cannot list users ({e})");
            return;
        }
    };
    let dir = crate::directory::Directory::new(cfg, backend.clone());
    let hidden = dir.hidden_report(&users);
    if hidden.is_empty() {
        println!("hidden accounts: none");
    } else {
        println!("hidden accounts: {}", hidden.len());
        for (login, why) in hidden {
            println!("  {login}: {why}");
        }
    }
}
