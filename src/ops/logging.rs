//! Logging setup: `tracing` to stderr, text or JSON.
//!
//! Two rules an operator relies on:
//! - **Logging never takes the process down.** When stderr is a closed pipe
//!   (`quarantine run ... 2>&1 | head -3`), writes fail with `EPIPE`. `tracing-subscriber`
//!   reports its own write errors with `eprintln!`, which panics on that same closed pipe
//!   and takes down the task that was logging (the signal task included, so SIGTERM went
//!   unheard). Here write errors are swallowed by the writer and internal-error reporting
//!   is off: a log line that cannot be written is dropped, nothing else happens.
//! - **No colour codes where nobody sees colour.** ANSI escapes only when stderr is a
//!   terminal and `NO_COLOR` is unset.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::fmt::MakeWriter;

/// Set once a write to stderr failed with a broken pipe: later lines are not even tried.
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Stderr that never reports an error to its caller.
#[derive(Clone, Copy, Default)]
pub struct QuietStderr;

impl Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !STDERR_CLOSED.load(Ordering::Relaxed) {
            if let Err(e) = io::stderr().write_all(buf) {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    STDERR_CLOSED.store(true, Ordering::Relaxed);
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for QuietStderr {
    type Writer = QuietStderr;

    fn make_writer(&'a self) -> Self::Writer {
        QuietStderr
    }
}

/// Writes one line to stderr for the process edge (exit messages), ignoring a closed pipe
/// where `eprintln!` would panic.
pub fn stderr_line(text: &str) {
    let _ = writeln!(io::stderr(), "{text}");
}

/// Whether text logs should carry ANSI colour: stderr is a terminal and `NO_COLOR` is unset
/// (or empty, as <https://no-color.org> asks).
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&str>) -> bool {
    stderr_is_terminal && no_color.is_none_or(str::is_empty)
}

/// Installs the global subscriber: `QUARANTINE_LOG` (a `tracing` filter) wins over
/// `level`; `format` is `text` or `json`.
pub fn init(format: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUARANTINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let no_color = std::env::var("NO_COLOR").ok();
    let ansi = use_colour(io::stderr().is_terminal(), no_color.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(QuietStderr)
        .log_internal_errors(false);
    if format == "json" {
        builder.json().flatten_event(true).with_ansi(false).init();
    } else {
        builder.with_ansi(ansi).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("")));
        assert!(!use_colour(true, Some("1")));
        assert!(!use_colour(false, None));
    }
}
