//! The HTTP side every backend simulator shares: an axum app on an ephemeral loopback port that can
//! be stopped (an outage: connections are refused) and restarted on the same port.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

pub struct SimServer {
    addr: SocketAddr,
    app: axum::Router,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SimServer {
    pub async fn start(app: axum::Router) -> SimServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind simulator");
        let addr = listener.local_addr().expect("local addr");
        let server = SimServer { addr, app, task: Mutex::new(None) };
        server.serve(listener);
        server
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = self.app.clone();
        let h = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(&self) {
        if let Some(h) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            h.abort();
        }
    }

    /// Serves again on the same port (retrying while the old socket is released).
    pub async fn restart(&self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot rebind simulator port {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.stop();
    }
}
