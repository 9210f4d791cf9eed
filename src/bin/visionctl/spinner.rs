//! A spinner on stderr while a call waits (a cold admission, a preload):
//! a person at a terminal sees that something is happening; a script that
//! pipes or redirects stderr sees nothing at all.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// Starts spinning with `message` when stderr is a terminal.
    pub fn start(message: String) -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(bar))
    }

    /// Stops and erases the spinner (the answer is printed after it).
    pub fn finish(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}
