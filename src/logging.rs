//! Log output that clients cannot forge: every event is one line, whatever the values in it, and
//! dependencies that would log credentials are kept quiet at every level.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{Config, LogFormat};

/// Directives added to every filter, `RUST_LOG` included: ldap3_proto dumps raw BER (bind and
/// Password Modify passwords among it) at trace level and whole offending messages at error; the
/// HTTP stacks print headers (bearer tokens, API keys) at trace level.
const ALWAYS: &[&str] = &["ldap3_proto=off", "hyper=debug", "hyper_util=debug", "h2=debug", "reqwest=debug"];

pub fn init(cfg: &Config) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log.level));
    for d in ALWAYS {
        if let Ok(d) = d.parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(OneLine(io::stderr)).with_ansi(false);
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

/// Writes each event with its control characters escaped (`\n` as `\\n`), but for the newline
/// that ends it. The formatter hands over a whole event per write, so a value carrying a newline
/// (a bind name, a backend's error page) stays on its event's line.
#[derive(Clone, Copy)]
pub struct OneLine<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLine<M> {
    type Writer = Escaping<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Escaping(self.0.make_writer())
    }
}

pub struct Escaping<W>(W);

/// `buf` with control characters escaped, but for a final newline.
pub fn escape_line(buf: &[u8]) -> Vec<u8> {
    let (body, end) = match buf.split_last() {
        Some((b'\n', body)) => (body, &b"\n"[..]),
        _ => (buf, &b""[..]),
    };
    let mut out = Vec::with_capacity(buf.len() + 8);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.push(b'\t'),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.extend_from_slice(end);
    out
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&escape_line(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_stays_one_line() {
        assert_eq!(escape_line(b"name=uid=x\nforged=1 result=Success\n"), b"name=uid=x\\nforged=1 result=Success\n");
        assert_eq!(escape_line(b"a\r\x00\x1b[31m\x7f\tb\n"), b"a\\r\\x00\\x1b[31m\\x7f\tb\n".to_vec());
        assert_eq!(escape_line("é ✓\n".as_bytes()), "é ✓\n".as_bytes(), "UTF-8 passes untouched");
        assert_eq!(escape_line(b"no newline"), b"no newline");
    }
}
