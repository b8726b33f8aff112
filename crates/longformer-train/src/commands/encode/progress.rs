//! `encode`'s progress on stderr, for inputs of more than one batch: rows encoded of all and the
//! time left, as a live bar on a terminal, or elsewhere (logs, CI) a line at each tenth of the
//! way.

use std::io::IsTerminal;
use std::time::Instant;

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};

use crate::progress::note;

/// Counts the rows encoded so far, and the work they took: tokens computed, the measure of the
/// time left (a long row's batch takes longer; length-sorted batches go longest first). Silent
/// while the first batch is not done, and altogether when one batch holds every row.
pub(super) struct RowProgress {
    total: usize,
    done: usize,
    total_work: usize,
    done_work: usize,
    /// The number of rows at which the next plain line is due.
    next_line: usize,
    start: Instant,
    device: Device,
    bar: Option<ProgressBar>,
    terminal: bool,
}

impl RowProgress {
    /// Progress over `total` rows, `total_work` tokens in all, computed on `device`.
    pub(super) fn new(total: usize, total_work: usize, device: &Device) -> Self {
        Self {
            total,
            done: 0,
            total_work: total_work.max(1),
            done_work: 0,
            next_line: 0,
            start: Instant::now(),
            device: device.clone(),
            bar: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Records a batch of `rows` more rows and `work` tokens, once the device has computed it (a
    /// GPU runs ahead of the host; waiting here makes the count one of finished rows). A device
    /// failure is not reported here: reading the batch's outputs back reports it, naming them.
    pub(super) fn advance(&mut self, rows: usize, work: usize) {
        let _ = self.device.sync();
        self.done = (self.done + rows).min(self.total);
        self.done_work = (self.done_work + work).min(self.total_work);
        if self.done == rows && self.done == self.total {
            return; // one batch: nothing to follow
        }
        if self.terminal {
            let bar = self.bar.get_or_insert_with(|| {
                let bar = ProgressBar::new(self.total_work as u64);
                bar.set_style(
                    ProgressStyle::with_template(
                        "encoded {msg} rows [{bar:30}] ({elapsed} elapsed, {eta} left)",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                );
                bar
            });
            bar.set_position(self.done_work as u64);
            bar.set_message(format!("{}/{}", self.done, self.total));
            if self.done == self.total {
                bar.finish_and_clear();
            }
        } else if self.done >= self.next_line || self.done == self.total {
            note(&self.line());
            self.next_line = self.done + self.total.div_ceil(10);
        }
    }

    /// `encoded 40/100 rows (12.0 s, about 18 s left)`: the time left at the rate of the tokens
    /// computed so far.
    fn line(&self) -> String {
        let elapsed = self.start.elapsed().as_secs_f64();
        let left = if self.done < self.total {
            let rate = self.done_work.max(1) as f64 / elapsed.max(1e-9);
            let seconds = (self.total_work - self.done_work) as f64 / rate;
            format!(", about {seconds:.0} s left")
        } else {
            String::new()
        };
        format!(
            "encoded {}/{} rows ({elapsed:.1} s{left})",
            self.done, self.total
        )
    }
}
