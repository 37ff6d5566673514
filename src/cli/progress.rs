//! A one-line progress display on standard error, shown only when standard
//! error is a terminal and at most ten times a second.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Redraw {
    AtMostTenPerSecond,
    Now,
}

/// Redraws one status line in place.
pub struct ProgressLine {
    enabled: bool,
    last: Mutex<Option<Instant>>,
}

impl ProgressLine {
    /// A progress line on standard error, silent when it is not a terminal.
    pub fn stderr() -> ProgressLine {
        ProgressLine {
            enabled: std::io::stderr().is_terminal(),
            last: Mutex::new(None),
        }
    }

    /// Shows `text`, unless the line was redrawn less than 100 ms ago.
    pub fn update(&self, text: impl FnOnce() -> String) {
        self.draw(Redraw::AtMostTenPerSecond, text);
    }

    /// Shows `text` now: for the start of a new phase, which must not be
    /// hidden behind the previous phase's last line.
    pub fn show(&self, text: impl FnOnce() -> String) {
        self.draw(Redraw::Now, text);
    }

    fn draw(&self, redraw: Redraw, text: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if redraw == Redraw::AtMostTenPerSecond
            && last.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
        {
            return;
        }
        *last = Some(now);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", text());
        let _ = err.flush();
    }

    /// Erases the line.
    pub fn finish(&self) {
        if self.enabled {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}
