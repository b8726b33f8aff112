//! Stopping training on SIGINT (Ctrl-C) and SIGTERM: the first signal asks the loop to stop
//! after its current optimizer step, with a checkpoint; a second one ends the process at once.

use std::sync::atomic::AtomicBool;
#[cfg(unix)]
use std::sync::atomic::Ordering;

/// Exit status after SIGINT or SIGTERM stopped training (128 + SIGINT, as a shell reports
/// a Ctrl-C).
pub const INTERRUPTED_EXIT_CODE: i32 = 130;

/// Set by the first SIGINT or SIGTERM: training stops after the current optimizer step.
static STOP: AtomicBool = AtomicBool::new(false);

/// Monotonic time of the first stop signal in milliseconds (at least 1), 0 before it.
#[cfg(unix)]
static FIRST_STOP_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A SIGTERM this soon after the first stop signal is the same request delivered twice, not a
/// second one: a signal to the process group (`timeout`, systemd, Slurm, `kill -- -PGID`)
/// reaches this process directly and again through `cargo xtask`, which passes SIGTERM on.
#[cfg(unix)]
const REPEAT_WINDOW_MS: u64 = 1000;

/// Installs the handler of SIGINT (Ctrl-C) and SIGTERM: the first sets [`STOP`], so that
/// training stops after the current optimizer step with a checkpoint; a second one ends the
/// process at once, unless it is a SIGTERM within [`REPEAT_WINDOW_MS`] of the first.
#[cfg(unix)]
pub fn stop_on_signal() -> &'static AtomicBool {
    extern "C" fn on_signal(signal: libc::c_int) {
        // Only async-signal-safe calls: atomics, `clock_gettime`, `write`, `signal`, `raise`;
        // `errno` is put back as it was.
        preserving_errno(|| {
            let now = monotonic_ms();
            let first = FIRST_STOP_MS.load(Ordering::SeqCst);
            if first == 0 {
                FIRST_STOP_MS.store(now.max(1), Ordering::SeqCst);
                STOP.store(true, Ordering::SeqCst);
                let message = b"\nstopping after this optimizer step, with a checkpoint (signal \
                    again to quit now)\n";
                // SAFETY: writes a static buffer to stderr.
                unsafe {
                    libc::write(2, message.as_ptr().cast(), message.len());
                }
            } else if signal != libc::SIGTERM || now.saturating_sub(first) >= REPEAT_WINDOW_MS {
                // SAFETY: the default action of this signal, then the signal again: the
                // process ends as the signal ends it.
                unsafe {
                    libc::signal(signal, libc::SIG_DFL);
                    libc::raise(signal);
                }
            }
        })
    }
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` makes only async-signal-safe calls. A signal ignored from the
        // start (`train ... &` in a script) stays ignored.
        unsafe {
            if libc::signal(signal, handler as libc::sighandler_t) == libc::SIG_IGN {
                libc::signal(signal, libc::SIG_IGN);
            }
        }
    }
    &STOP
}

/// `CLOCK_MONOTONIC` in milliseconds (`clock_gettime` is async-signal-safe).
#[cfg(unix)]
fn monotonic_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to fill.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    (now.tv_sec as u64) * 1000 + (now.tv_nsec as u64) / 1_000_000
}

/// Runs `f` and puts `errno` back as it was: a signal handler must not change it under the
/// code it interrupted.
#[cfg(target_os = "linux")]
fn preserving_errno(f: impl FnOnce()) {
    // SAFETY: `__errno_location` returns this thread's errno, valid for the thread's life.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        f();
        *errno = saved;
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn preserving_errno(f: impl FnOnce()) {
    f();
}

/// Elsewhere than on Unix, signals end training as before (at the last checkpoint).
#[cfg(not(unix))]
pub fn stop_on_signal() -> &'static AtomicBool {
    &STOP
}
