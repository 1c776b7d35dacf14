//! The real `idgate` binary as a child process, for what only a process shows: its stdout and
//! stderr, its exit on SIGTERM, its descriptor limit. It runs the demo config with ephemeral ports,
//! a private state file and JSON logs; the listening addresses come from its "listening" log line.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A change to the config document.
pub type ConfigEdit = Box<dyn FnOnce(&mut toml::Table)>;

/// How to start the child, beyond the demo config.
#[derive(Default)]
pub struct Options {
    /// Changes to the config document (the demo's, with the test's ports, state and log format).
    pub edit: Option<ConfigEdit>,
    /// Environment variables (e.g. `RUST_LOG`); `RUST_LOG` is unset otherwise.
    pub env: Vec<(String, String)>,
    /// The child's descriptor limit, (soft, hard), set before exec as `ulimit -n` would.
    pub nofile: Option<(u64, u64)>,
}

pub struct Gateway {
    child: Child,
    pub ldap_addr: SocketAddr,
    pub ldaps_addr: Option<SocketAddr>,
    pub http_addr: SocketAddr,
    logs: Arc<Mutex<String>>,
    log_reader: Option<JoinHandle<()>>,
    stdout_reader: Option<JoinHandle<Vec<u8>>>,
    _dir: tempfile::TempDir,
}

/// What a stopped child left.
pub struct Stopped {
    pub status: ExitStatus,
    /// From SIGTERM to exit.
    pub took: Duration,
    pub stdout: Vec<u8>,
    pub logs: String,
}

/// A table of the document, created when missing.
pub fn table<'a>(doc: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    let v = doc.entry(key.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !v.is_table() {
        *v = toml::Value::Table(toml::Table::new());
    }
    v.as_table_mut().expect("a table")
}

fn config(dir: &Path, edit: Option<ConfigEdit>) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config/demo.toml")).expect("demo config");
    let mut doc: toml::Table = text.parse().expect("demo config parses");
    let log = table(&mut doc, "log");
    log.insert("format".into(), "json".into());
    log.insert("level".into(), "info".into());
    let ldap = table(&mut doc, "ldap");
    ldap.insert("listen".into(), "127.0.0.1:0".into());
    if ldap.contains_key("ldaps_listen") {
        ldap.insert("ldaps_listen".into(), "127.0.0.1:0".into());
    }
    table(&mut doc, "http").insert("listen".into(), "127.0.0.1:0".into());
    let state = dir.join("scim.redb").to_string_lossy().into_owned();
    table(&mut doc, "scim").insert("state_path".into(), state.into());
    let seed = root.join("config/demo-directory.json").to_string_lossy().into_owned();
    table(&mut doc, "backend").insert("seed".into(), seed.into());
    if let Some(edit) = edit {
        edit(&mut doc);
    }
    let path = dir.join("idgate.toml");
    std::fs::write(&path, toml::to_string(&doc).expect("config serialises")).expect("write config");
    path
}

/// An address from the "listening" line, in JSON (`"ldap_addr":"…"`) or human (`ldap_addr=…`) logs.
fn listening(line: &str, key: &str) -> Option<SocketAddr> {
    let value = match serde_json::from_str::<serde_json::Value>(line) {
        Ok(v) => v["fields"][key].as_str()?.to_string(),
        Err(_) => line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}=")))?.to_string(),
    };
    value.trim_start_matches("Some(").trim_end_matches(')').parse().ok()
}

impl Gateway {
    pub fn start() -> Gateway {
        Gateway::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = config(dir.path(), opts.edit);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_idgate"));
        cmd.args(["serve", "--config"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .env_remove("IDGATE_CONFIG")
            .envs(opts.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((soft, hard)) = opts.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and the closure touches nothing else.
            unsafe {
                cmd.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, soft, hard));
            }
        }
        let mut child = cmd.spawn().expect("start idgate");
        let mut stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        let log_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("idgate listening") {
                    let _ = tx.send((
                        listening(&line, "ldap_addr"),
                        listening(&line, "ldaps_addr"),
                        listening(&line, "http_addr"),
                    ));
                }
                let mut all = sink.lock().unwrap_or_else(|e| e.into_inner());
                all.push_str(&line);
                all.push('\n');
            }
        });
        let stdout_reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = stdout.read_to_end(&mut s);
            s
        });
        let (ldap, ldaps, http) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((Some(l), s, Some(h))) => (l, s, h),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = log_reader.join();
                panic!("idgate did not start: {}", logs.lock().unwrap_or_else(|e| e.into_inner()));
            }
        };
        Gateway {
            child,
            ldap_addr: ldap,
            ldaps_addr: ldaps,
            http_addr: http,
            logs,
            log_reader: Some(log_reader),
            stdout_reader: Some(stdout_reader),
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Descriptors the child holds now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map(|d| d.count()).unwrap_or(0)
    }

    /// The child's exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The log lines so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends SIGTERM and waits up to `limit` for the exit; kills the child past it.
    pub fn stop(mut self, limit: Duration) -> Stopped {
        let t = Instant::now();
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for idgate") {
                break s;
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                break self.child.wait().expect("wait for idgate");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = t.elapsed();
        if let Some(r) = self.log_reader.take() {
            let _ = r.join();
        }
        let stdout = self.stdout_reader.take().map(|r| r.join().unwrap_or_default()).unwrap_or_default();
        Stopped { status, took, stdout, logs: self.logs() }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
