//! Training progress on stderr: a live bar (step, loss, accuracy, time left) above which the log
//! lines scroll when stderr is a terminal; the log lines alone otherwise (CI, files).

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

/// Where log lines and the progress bar go.
pub struct TrainProgress {
    bar: Option<ProgressBar>,
    verbose: bool,
}

impl TrainProgress {
    /// A reporter for a run of `total` optimizer steps starting at `done`; silent unless `verbose`.
    pub fn new(verbose: bool, total: usize, done: usize) -> Self {
        let bar = (verbose && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "step {pos}/{len} [{bar:30}] {msg} ({elapsed} elapsed, {eta} left)",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.set_position(done as u64);
            bar
        });
        Self { bar, verbose }
    }

    /// Prints a log line (above the bar on a terminal).
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if self.verbose => note(text),
            None => {}
        }
    }

    /// Moves the bar to `step`, showing the last batch's loss.
    pub fn step(&self, step: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.4}"));
        }
    }

    /// Removes the bar; later lines print plainly.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Writes a line on stderr, ignoring errors: a reader that went away (`2>&1 | head`, a closed
/// pager) must not stop a run, as `eprintln!` would by panicking.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Writes a line on stdout, ignoring errors, as [`note`] does on stderr: the commands' results
/// are files (or, for `bench`, also `--out`), which a closed stdout must not cost.
pub fn say(text: &str) {
    let _ = writeln!(std::io::stdout(), "{text}");
}
