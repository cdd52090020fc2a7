//! Progress bars on stderr, hidden when stderr is not a terminal or the caller asked for none.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A new bar drawing on stderr, or a hidden one when `enabled` is false or stderr is not a terminal.
pub fn bar(enabled: bool) -> ProgressBar {
    let target = if enabled && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    ProgressBar::with_draw_target(None, target)
}

/// Switches `bar` to a byte counter labelled `label` for `total` bytes.
pub fn bytes_style(bar: &ProgressBar, label: &str, total: u64) {
    let template = format!("{{spinner}} {label} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} {{wide_msg}}");
    bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_length(total);
    bar.set_position(0);
}
