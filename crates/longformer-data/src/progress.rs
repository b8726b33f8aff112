//! Progress reporting for long preprocessing runs: a bar when stderr is a terminal,
//! plain lines every 10% otherwise (CI logs), nothing when hidden.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// Whether preprocessing reports progress on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar on a terminal, a line every 10% otherwise.
    #[default]
    Auto,
    /// Silent (library use, tests).
    Hidden,
}

/// A thread-safe progress counter.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    label: String,
    total: usize,
    done: AtomicUsize,
}

impl Progress {
    /// Starts reporting `total` steps.
    pub(crate) fn new(mode: ProgressMode, label: &str, total: usize) -> Self {
        let (bar, lines) = match mode {
            ProgressMode::Hidden => (None, false),
            ProgressMode::Auto if std::io::stderr().is_terminal() => {
                let bar = ProgressBar::new(total as u64);
                let style = ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
                )
                .expect("the template is valid")
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_message(label.to_owned());
                (Some(bar), false)
            }
            ProgressMode::Auto => (None, true),
        };
        Self {
            bar,
            lines,
            label: label.to_owned(),
            total,
            done: AtomicUsize::new(0),
        }
    }

    /// One more step done.
    pub(crate) fn inc(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if self.lines && self.total > 0 {
            let step = self.total.div_ceil(10);
            if done.is_multiple_of(step) || done == self.total {
                // Ignoring write errors: a closed stderr (`... 2>&1 | head`) must not end the run.
                let _ = writeln!(
                    std::io::stderr(),
                    "{}: {done}/{} ({}%)",
                    self.label,
                    self.total,
                    done * 100 / self.total
                );
            }
        }
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
