//! Running OpenLDAP's command-line tools (ldapsearch, ldapwhoami, ...) from tests, which skip with
//! a message when the tools are not installed.

use std::process::Output;
use std::time::Duration;

/// Runs an OpenLDAP tool with config files ignored; `None` when it is not installed.
pub async fn run(tool: &str, args: &[String]) -> Option<Output> {
    let mut cmd = tokio::process::Command::new(tool);
    cmd.args(args)
        .env("LDAPNOINIT", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    match cmd.spawn() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("SKIPPED: {tool} is not installed (Debian package ldap-utils)");
            None
        }
        Err(e) => panic!("cannot run {tool}: {e}"),
        Ok(child) => Some(
            tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
                .await
                .unwrap_or_else(|_| panic!("{tool} did not finish in time"))
                .expect("tool output"),
        ),
    }
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

/// `attr: value` lines of an LDIF output (no line folding with -o ldif_wrap=no).
pub fn ldif_values(out: &str, name: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_once(": ").or_else(|| l.split_once(":: ")))
        .filter(|(a, _)| a.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_string())
        .collect()
}
