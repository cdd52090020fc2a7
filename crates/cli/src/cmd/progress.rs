//! The progress bar every long-running command draws on stderr, in one style.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

/// How often the bar is written as a plain line when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// A bar of `len` steps labelled `msg`. On a terminal it redraws in place; otherwise (a log file, CI,
/// a pipe) it writes its state as a line every ten seconds, so long work does not look hung there.
pub fn bar(len: u64, msg: &str) -> ProgressBar {
    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::new(len)
    } else {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::term_like_with_hz(Box::new(Lines::default()), 1))
    };
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

/// A "terminal" that prints the bar's lines to stderr at most every [`LINE_EVERY`] (the first at once)
/// and ignores cursor movement: indicatif draws nothing at all when stderr is not a terminal, and a
/// redraw per second would flood a log. indicatif has no such target of its own.
#[derive(Debug, Default)]
struct Lines {
    last: Mutex<Option<Instant>>,
}

impl TermLike for Lines {
    fn width(&self) -> u16 {
        100
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if s.trim().is_empty() || last.is_some_and(|t| t.elapsed() < LINE_EVERY) {
            return Ok(());
        }
        *last = Some(Instant::now());
        writeln!(std::io::stderr().lock(), "{}", s.trim())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.write_line(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}
