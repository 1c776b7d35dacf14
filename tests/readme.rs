//! The README's copy-paste lines, run top to bottom against a fresh demo, as a new user would run
//! them: every `sh` block that talks to the demo, in order, each line's failure failing the test.
//! `curl` fails on HTTP errors here (a 404 answered to an example is a broken example).

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::{Gateway, Options};

/// The `sh` blocks that talk to the demo, with their line numbers.
fn demo_blocks(readme: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (n, line) in readme.lines().enumerate() {
        let fence = line.trim_start();
        match &mut block {
            None if fence == "```sh" => block = Some((n + 1, String::new())),
            Some(_) if fence == "```" => {
                let (start, text) = block.take().unwrap_or_default();
                let talks_to_demo =
                    ["127.0.0.1:3389", "127.0.0.1:6636", "127.0.0.1:8080"].iter().any(|a| text.contains(a));
                if talks_to_demo && !text.contains("cargo ") && !text.contains("docker") {
                    out.push((start, text));
                }
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    out
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-VV").output().is_ok()
}

#[test]
fn readme_demo_lines_work_top_to_bottom_on_a_fresh_demo() {
    if !have("ldapsearch") || !have("curl") {
        println!("SKIPPED: ldap-utils or curl is not installed");
        return;
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let blocks = demo_blocks(&readme);
    assert!(blocks.len() >= 2, "the README has its demo examples: {}", blocks.len());
    let gw = Gateway::start_with(Options::default());
    let ldaps = gw.ldaps_addr.expect("the demo has LDAPS").to_string();
    let (ldap, http) = (gw.ldap_addr.to_string(), gw.http_addr.to_string());
    for (line, block) in blocks {
        let script =
            block.replace("127.0.0.1:3389", &ldap).replace("127.0.0.1:6636", &ldaps).replace("127.0.0.1:8080", &http);
        let harness =
            format!("set -eo pipefail\ncurl() {{ command curl --fail-with-body --max-time 20 \"$@\"; }}\n{script}");
        let out = Command::new("bash")
            .arg("-c")
            .arg(&harness)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "README block at line {line} failed ({}):\n{script}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    gw.stop(Duration::from_secs(10));
}
