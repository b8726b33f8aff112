//! One training process per run directory.
//!
//! `longformer train` holds an advisory lock on `RUN_DIR/.lock` while it trains, so that a
//! second process (a restart script's `--resume` while an orphaned trainer still runs, or two
//! runs given the same `--run-dir`) is refused instead of interleaving its checkpoints and log
//! lines with the first's. The operating system releases the lock when the process ends, however
//! it ends, so a killed run never leaves a stale lock. Holding it, the process also removes the
//! scratch files that a process killed while writing left behind.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The lock file's name in a run directory; it holds the id of the process that locked it.
pub const LOCK_FILE: &str = ".lock";

/// Files of a run directory that are written through a temporary sibling
/// ([`crate::output::write_file`]: `.NAME.tmp-PID-N`).
const REPLACED_FILES: [&str; 5] = [
    "run.json",
    "config.json",
    "summary.json",
    "metrics.jsonl",
    "training_curve.svg",
];

/// The lock on a run directory, held until dropped (or the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Locks `run_dir` (creating it), then removes the scratch files of earlier processes
    /// ([`remove_scratch`]). An error names the directory and the process that holds it; where
    /// the file system has no locks, a note on stderr says so and the run goes on.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
        let path = run_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path)
                    .map(|text| text.trim().to_owned())
                    .unwrap_or_default();
                let holder = if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (process {holder})")
                };
                bail!(
                    "{} is in use by another longformer process{holder}: let it finish, or stop it \
                     (SIGTERM writes a checkpoint), before training or resuming there",
                    run_dir.display()
                );
            }
            // A file system without locks (some network and FUSE mounts) must not stop
            // training: it goes on unguarded, and says so.
            Err(TryLockError::Error(e)) => crate::progress::note(&format!(
                "cannot lock {} ({e}): a second process training in {} would not be refused",
                path.display(),
                run_dir.display()
            )),
        }
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        remove_scratch(run_dir)?;
        Ok(Self { _file: file })
    }
}

/// Removes what a process killed while writing leaves in `run_dir`: temporary siblings of the
/// run's files (`.NAME.tmp-PID-N`), partial weights in `best/` and `final/` (anything named
/// `model.bpk.*`: the burnpack store's `model.bpk.PID-N.tmp`, or older runs'
/// `model.bpk.partial`), and partial checkpoints (`checkpoints/step-N.partial/`). Only for the
/// holder of the [`RunLock`]: another process's files in progress would go too.
pub fn remove_scratch(run_dir: &Path) -> Result<()> {
    let is_temporary = |name: &str| {
        REPLACED_FILES
            .iter()
            .any(|file| name.starts_with(&format!(".{file}.tmp-")))
    };
    remove_entries(run_dir, is_temporary)?;
    for weights in ["best", "final"] {
        remove_entries(&run_dir.join(weights), |name| {
            name.starts_with("model.bpk.")
        })?;
    }
    remove_entries(&run_dir.join("checkpoints"), |name| {
        name.starts_with("step-") && name.ends_with(".partial")
    })
}

/// Removes the entries of `dir` (files or directories) whose names `matches`; none when `dir`
/// does not exist.
fn remove_entries(dir: &Path, matches: impl Fn(&str) -> bool) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if !entry.file_name().to_str().is_some_and(&matches) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lf-run-lock-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// The lock is per open file, so a second lock in this process stands for a second process.
    #[test]
    fn a_second_lock_on_a_run_directory_is_refused_until_the_first_is_dropped() {
        let dir = scratch_dir("twice");
        let first = RunLock::acquire(&dir).unwrap();
        let error = RunLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            error.contains("is in use by another longformer process")
                && error.contains(&format!("(process {})", std::process::id()))
                && error.contains(&dir.display().to_string()),
            "{error}"
        );
        drop(first);
        RunLock::acquire(&dir).unwrap();
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn locking_removes_the_scratch_of_killed_writes_and_keeps_the_run() {
        let dir = scratch_dir("scratch");
        let scratch = [
            ".summary.json.tmp-41-0",
            ".metrics.jsonl.tmp-41-3",
            "best/model.bpk.partial",
            "best/model.bpk.partial.41-2.tmp",
            "final/model.bpk.partial.41-7.tmp",
            "final/model.bpk.41-8.tmp",
            "checkpoints/step-00000003.partial/model.bpk",
        ];
        let kept = [
            "run.json",
            "summary.json",
            "metrics.jsonl",
            ".predictions.json.tmp-9-0",
            "best/model.bpk",
            "final/model.bpk",
            "checkpoints/step-00000002/state.json",
        ];
        for file in scratch.iter().chain(&kept) {
            let path = dir.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "x").unwrap();
        }
        let _lock = RunLock::acquire(&dir).unwrap();
        for file in scratch {
            assert!(!dir.join(file).exists(), "{file} is left");
        }
        assert!(!dir.join("checkpoints/step-00000003.partial").exists());
        for file in kept {
            assert!(dir.join(file).is_file(), "{file} is gone");
        }
        fs::remove_dir_all(dir).unwrap();
    }
}
