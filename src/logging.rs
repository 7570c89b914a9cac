//! Logging set-up: `tracing` to stderr, level from `CHOPD_LOG` (default `info`), colours only on
//! a terminal, no timestamps under the journal (it stamps lines itself).
//!
//! A line is the message, then its fields as ` key=value`. A value is written bare when it is one
//! plain token (`addr=127.0.0.1:9000`, `errors=2`) and quoted with Rust string escapes otherwise
//! (`changed="built oscin \"in2\""`), whichever way the call site recorded it (`%`, `?` or a
//! literal). So a reader — the tests, a log shipper — can take facts from the fields without
//! parsing the message.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("CHOPD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .fmt_fields(Fields);
    // A second init (tests) is harmless: keep the first subscriber.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        let _ = builder.without_time().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// The field format described above.
pub struct Fields;

impl<'w> FormatFields<'w> for Fields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let ansi = writer.has_ansi_escapes();
        let mut v = Visitor {
            writer: &mut writer,
            ansi,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct Visitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    ansi: bool,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_, '_> {
    fn write(&mut self, field: &Field, text: &str) {
        if self.result.is_err() {
            return;
        }
        let pad = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            write!(self.writer, "{pad}{text}")
        } else {
            let value = value(text);
            if self.ansi {
                // As tracing's own format: the key in italics, `=` dimmed.
                write!(
                    self.writer,
                    "{pad}\x1b[3m{}\x1b[0m\x1b[2m=\x1b[0m{value}",
                    field.name()
                )
            } else {
                write!(self.writer, "{pad}{}={value}", field.name())
            }
        };
    }
}

impl Visit for Visitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        // `?` on a string already quoted it: take the text inside, so `?s` and `%s` agree.
        let text = match unquote(&text) {
            Some(inner) if field.name() != "message" => inner.to_string(),
            _ => text,
        };
        self.write(field, &text);
    }
}

/// A value as written: bare when it is one plain token, else quoted.
fn value(text: &str) -> String {
    let plain = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '='));
    if plain {
        text.to_string()
    } else {
        format!("{text:?}")
    }
}

/// The text of a Debug-quoted string that needed no escapes (the common case); None otherwise.
fn unquote(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains(['"', '\\'])).then_some(inner)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn fields_are_bare_tokens_or_quoted_strings() {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .with_level(false)
            .fmt_fields(Fields)
            .finish();
        let addr: std::net::SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let name = String::from("in");
        tracing::subscriber::with_default(sub, || {
            tracing::info!(op = %name, kind = "oscin", addr = %addr, "listening");
            tracing::info!(reload = "applied", changed = %"built oscin \"in2\"", "reloaded x");
            tracing::info!(reload = ?"rejected", errors = 2, path = %"a b/c.toml", "refused");
            tracing::info!(changed = "", "nothing");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert_eq!(
            lines,
            [
                "listening op=in kind=oscin addr=127.0.0.1:9000",
                r#"reloaded x reload=applied changed="built oscin \"in2\"""#,
                r#"refused reload=rejected errors=2 path="a b/c.toml""#,
                r#"nothing changed="""#,
            ]
        );
    }
}
