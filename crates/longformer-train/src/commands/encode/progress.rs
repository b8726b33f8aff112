//! `encode`'s progress on stderr, for inputs of more than one batch: rows encoded of all, as a
//! live bar on a terminal, or elsewhere (logs, CI) a line at each tenth of the way.

use std::io::IsTerminal;
use std::time::Instant;

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};

use crate::progress::note;

/// Counts the rows encoded so far; silent while the first batch is not done, and altogether
/// when one batch holds every row.
pub(super) struct RowProgress {
    total: usize,
    done: usize,
    /// The number of rows at which the next plain line is due.
    next_line: usize,
    start: Instant,
    device: Device,
    bar: Option<ProgressBar>,
    terminal: bool,
}

impl RowProgress {
    /// Progress over `total` rows computed on `device`.
    pub(super) fn new(total: usize, device: &Device) -> Self {
        Self {
            total,
            done: 0,
            next_line: 0,
            start: Instant::now(),
            device: device.clone(),
            bar: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Records a batch of `rows` more rows, once the device has computed it (a GPU runs ahead
    /// of the host; waiting here makes the count one of finished rows). A device failure is not
    /// reported here: reading the batch's outputs back reports it, naming them.
    pub(super) fn advance(&mut self, rows: usize) {
        let _ = self.device.sync();
        self.done = (self.done + rows).min(self.total);
        if self.done == rows && self.done == self.total {
            return; // one batch: nothing to follow
        }
        if self.terminal {
            let bar = self.bar.get_or_insert_with(|| {
                let bar = ProgressBar::new(self.total as u64);
                bar.set_style(
                    ProgressStyle::with_template(
                        "encoded {pos}/{len} rows [{bar:30}] ({elapsed} elapsed)",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                );
                bar
            });
            bar.set_position(self.done as u64);
            if self.done == self.total {
                bar.finish_and_clear();
            }
        } else if self.done >= self.next_line || self.done == self.total {
            note(&self.line());
            self.next_line = self.done + self.total.div_ceil(10);
        }
    }

    /// `encoded 40/100 rows (12.0 s)`. No time left is guessed: length-sorted batches go
    /// longest first, so the rows done say little of the time to come.
    fn line(&self) -> String {
        format!(
            "encoded {}/{} rows ({:.1} s)",
            self.done,
            self.total,
            self.start.elapsed().as_secs_f64()
        )
    }
}
