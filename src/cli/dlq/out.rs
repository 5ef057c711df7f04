//! Output of the DLQ tools: stdout that ends quietly when the reader goes away (`| head`),
//! and progress on stderr (a bar on a terminal, plain lines otherwise).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::ToolError;

/// Stdout, buffered; a closed pipe becomes [`ToolError::Closed`].
pub struct Out {
    w: std::io::BufWriter<std::io::Stdout>,
}

impl Default for Out {
    fn default() -> Self {
        Out {
            w: std::io::BufWriter::new(std::io::stdout()),
        }
    }
}

fn closed(e: std::io::Error) -> ToolError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        ToolError::Closed
    } else {
        ToolError::Failed(format!("writing the output: {e}"))
    }
}

impl Out {
    /// Writes one line.
    pub fn line(&mut self, s: &str) -> Result<(), ToolError> {
        self.w.write_all(s.as_bytes()).map_err(closed)?;
        self.w.write_all(b"\n").map_err(closed)
    }

    /// Writes text as it is.
    pub fn text(&mut self, s: &str) -> Result<(), ToolError> {
        self.w.write_all(s.as_bytes()).map_err(closed)
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> Result<(), ToolError> {
        self.w.flush().map_err(closed)
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    Auto,
    /// Always a bar.
    Bar,
    /// Always plain lines (every few seconds).
    Lines,
    /// Nothing.
    None,
}

/// Progress of a long run on stderr.
pub struct Progress {
    bar: bool,
    off: bool,
    started: Instant,
    last: Instant,
    every: Duration,
    drawn: bool,
}

impl Progress {
    /// Starts showing progress.
    pub fn new(mode: ProgressMode) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let now = Instant::now();
        Progress {
            bar: mode == ProgressMode::Bar || (mode == ProgressMode::Auto && tty),
            off: mode == ProgressMode::None,
            started: now,
            last: now,
            every: if tty {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(2)
            },
            drawn: false,
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Shows `done` of `total` looked at and `written` written, at most every so often.
    pub fn update(&mut self, verb: &str, looked: u64, total: Option<u64>, written: u64) {
        if self.off || self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        self.draw(verb, looked, total, written);
    }

    fn draw(&mut self, verb: &str, looked: u64, total: Option<u64>, written: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = written as f64 / secs;
        let mut err = std::io::stderr().lock();
        if self.bar {
            let width = 30usize;
            let (bar, of) = match total {
                Some(t) if t > 0 => {
                    let filled = ((looked.min(t) as f64 / t as f64) * width as f64) as usize;
                    (
                        format!("{}{}", "#".repeat(filled), "-".repeat(width - filled)),
                        format!("{looked}/{t}"),
                    )
                }
                _ => ("-".repeat(width), looked.to_string()),
            };
            let _ = write!(
                err,
                "\r[{bar}] {of} looked at, {written} {verb}, {rate:.0}/s   "
            );
            self.drawn = true;
        } else {
            let of = total.map_or(String::new(), |t| format!(" of {t}"));
            let _ = writeln!(
                err,
                "progress: looked at {looked}{of}, {written} {verb}, {rate:.0} records/s"
            );
        }
        let _ = err.flush();
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
    }
}
