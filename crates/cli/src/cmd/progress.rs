//! The progress bar every long-running command draws on stderr, in one style.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};

/// How often the bar is written as a plain line when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// A bar of `len` steps labelled `msg`. On a terminal it redraws in place; otherwise (a log file, CI,
/// a pipe) it writes its state as a line every ten seconds, so long work does not look hung there.
///
/// The time left is the average pace so far applied to what remains. indicatif's own `{eta}` follows
/// the recent pace, which work done in uneven batches (an encoder batch of 128 after a pause) throws
/// off by hours.
pub fn bar(len: u64, msg: &str) -> ProgressBar {
    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::new(len)
    } else {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::term_like_with_hz(Box::new(Lines::default()), 1))
    };
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({elapsed}, eta {average_eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("average_eta", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = match average_eta(state.pos(), state.len(), state.elapsed()) {
                    Some(left) => write!(w, "{:#}", HumanDuration(left)),
                    None => write!(w, "?"),
                };
            })
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

/// [`bar`] when there are steps to show; a hidden bar for work of none (`router train --folds 0` drew
/// an empty bar at 0/0). Not for bars whose length is set later.
pub fn bar_if_any(len: u64, msg: &str) -> ProgressBar {
    if len == 0 {
        ProgressBar::hidden()
    } else {
        bar(len, msg)
    }
}

/// The time left at the average pace so far: `elapsed` for `pos` steps, `len - pos` to go; unknown
/// before the first step or without a length.
fn average_eta(pos: u64, len: Option<u64>, elapsed: Duration) -> Option<Duration> {
    let len = len?;
    if pos == 0 {
        return None;
    }
    let left = len.saturating_sub(pos);
    Some(elapsed.mul_f64(left as f64 / pos as f64))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_follows_the_average_pace() {
        let s = Duration::from_secs;
        // 128 of 1,062 in 61 s: about 7.4 minutes to go (indicatif's recent pace said 5 hours).
        assert_eq!(average_eta(128, Some(1062), s(61)).map(|d| d.as_secs()), Some(445));
        assert_eq!(average_eta(10, Some(10), s(5)), Some(Duration::ZERO));
        assert_eq!(average_eta(0, Some(10), s(5)), None);
        assert_eq!(average_eta(3, None, s(5)), None);
    }
}
