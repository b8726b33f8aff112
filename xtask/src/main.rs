//! `cargo xtask <command> [--backend flex|ndarray|wgpu|vulkan] [--release] [ARGS...]`
//!
//! Builds the `longformer` binary (crate `longformer-train`) with the Cargo features the backend
//! needs and runs `<command>` with the remaining arguments. No tensor code lives here.

use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "Project tasks for longformer-burn")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// Arguments every task shares; everything after them goes to the `longformer` binary.
#[derive(clap::Args, Debug)]
struct Forward {
    /// Compute backend [default: flex]. Also taken from the command's own arguments
    /// (`cargo xtask encode -- --backend wgpu ...`), since the backend decides the build.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Build with the release profile (slower to build, faster to run). The default dev profile
    /// optimizes all dependencies and shares its build with `cargo test`.
    #[arg(long)]
    release: bool,
    /// Arguments for the command (see `cargo xtask <task> -- --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Encode token ids (`--input FILE.json`) or text (`--text`, `--text-file`) and write
    /// `last_hidden_state`. Without --model: the bundled tiny model; without --input, --text or
    /// --text-file: its `example.json`.
    Encode(Forward),
    /// Turn a WikiHop JSON file into model inputs (`--data FILE.json --tokenizer DIR --out FILE.jsonl`).
    Prepare(Forward),
    /// Time and peak memory of a random-weight model's forward (`--mode train`: training step),
    /// against HF's with `--compare-hf` (`-- --seq 1024,4096 --layers 12 ...`).
    Bench(Forward),
    /// Train a WikiHop model. With no arguments: a tiny model from scratch on the bundled sample
    /// set, on the CPU (`-- --model DIR --train F --dev F` fine-tunes a checkpoint).
    Train(Forward),
    /// Accuracy and `predictions.json` of a trained run (`-- --run RUN_DIR [--data FILE.json]`).
    Eval(Forward),
    /// Write a trained run as a HuggingFace directory (`-- --run RUN_DIR --to OUT_DIR`).
    Export(Forward),
    /// Convert a RoBERTa checkpoint into a Longformer one
    /// (`-- --from ROBERTA_DIR --to OUT_DIR [--max-pos 4096] [--window 512] [--force]`).
    Convert(Forward),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Backend {
    Flex,
    Ndarray,
    Wgpu,
    Vulkan,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
            Self::Vulkan => "vulkan",
        }
    }

    /// Features beyond the binary's defaults (`flex`, `ndarray`, `wgpu`, the set `cargo test`
    /// builds too, so switching among them or running the tests reuses one build). `vulkan`, the
    /// backend for speed on a real GPU, also turns on Burn's kernel autotuning (matmul tiles,
    /// and the fused attention kernels' launch shapes, picked by timing on the device, on first
    /// use of each shape).
    fn extra_features(self) -> Option<&'static str> {
        match self {
            Self::Vulkan => Some("vulkan,autotune"),
            _ => None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (command, forward) = match cli.task {
        Task::Encode(f) => ("encode", f),
        Task::Prepare(f) => ("prepare", f),
        Task::Bench(f) => ("bench", f),
        Task::Train(f) => ("train", f),
        Task::Eval(f) => ("eval", f),
        Task::Convert(f) => ("convert", f),
        Task::Export(f) => ("export", f),
    };
    let runs_a_model = !matches!(command, "prepare" | "convert" | "export");
    let backend = match backend(&forward, runs_a_model) {
        Ok(backend) => backend,
        Err(message) => {
            eprintln!("xtask: {message}");
            return ExitCode::from(2);
        }
    };
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    die_with_this_process(&mut cargo);
    // Not `--quiet`: the first build compiles Burn for half an hour, and says so as it goes.
    cargo.args(["run", "-p", "longformer-train", "--bin", "longformer"]);
    if let Some(features) = backend.extra_features() {
        cargo.args(["--features", features]);
    }
    if forward.release {
        cargo.arg("--release");
    }
    cargo.args(["--", command]);
    // `prepare`, `convert` and `export` run no model: they take no backend. A backend among the
    // command's own arguments stays there, once.
    if runs_a_model && backend_in_args(&forward.args).is_none() {
        cargo.args(["--backend", backend.name()]);
    }
    cargo.args(defaults(command, &forward.args));
    cargo.args(&forward.args);
    let mut child = match cargo.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            return ExitCode::FAILURE;
        }
    };
    outlive_interrupts(child.id());
    let waited = child.wait();
    forget_child();
    match waited {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => ExitCode::from(exit_code(status)),
        Err(e) => {
            eprintln!("xtask: waiting for cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The backend to build for: `--backend` given to xtask or among the command's arguments (the
/// same one if both), flex by default. Errors (as text) for two different ones, an unknown one,
/// or one given to a command that runs no model.
fn backend(forward: &Forward, runs_a_model: bool) -> Result<Backend, String> {
    let in_args = match backend_in_args(&forward.args) {
        Some(name) => Some(
            Backend::from_str(&name, true)
                .map_err(|_| format!("unknown --backend {name} (flex, ndarray, wgpu or vulkan)"))?,
        ),
        None => None,
    };
    let given = match (forward.backend, in_args) {
        (Some(a), Some(b)) if a.name() != b.name() => {
            return Err(format!(
                "--backend {} before `--` and --backend {} after it; give one",
                a.name(),
                b.name()
            ));
        }
        (a, b) => a.or(b),
    };
    if !runs_a_model && let Some(backend) = given {
        return Err(format!(
            "--backend {}: this command runs no model, so it takes no backend",
            backend.name()
        ));
    }
    Ok(given.unwrap_or(Backend::Flex))
}

/// Arguments added before the user's: `encode` takes the bundled tiny model unless given
/// `--model`, and encodes its example unless given `--input`, `--text` or `--text-file` (paths
/// from the checkout, whatever the current folder), so that `cargo xtask encode -- --dtype bf16`
/// works as `cargo xtask encode` does.
fn defaults(command: &str, args: &[String]) -> Vec<std::ffi::OsString> {
    let given = |flag: &str| flag_value(args, flag).is_some();
    let mut added = Vec::new();
    if command != "encode" {
        return added;
    }
    let tiny = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/tiny-longformer");
    if !given("--model") {
        added.extend(["--model".into(), tiny.clone().into_os_string()]);
    }
    if !["--input", "--text", "--text-file"].into_iter().any(given) {
        added.extend(["--input".into(), tiny.join("example.json").into_os_string()]);
    }
    added
}

/// The value of `--backend X` or `--backend=X` among `args`.
fn backend_in_args(args: &[String]) -> Option<String> {
    flag_value(args, "--backend")
}

/// The value of `FLAG X` or `FLAG=X` among `args` (empty when `FLAG` ends them).
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, arg)| {
        if arg == flag {
            Some(args.get(i + 1).cloned().unwrap_or_default())
        } else {
            arg.strip_prefix(&prefix).map(str::to_string)
        }
    })
}

/// The child's exit code, or the shell's `128 + signal` when a signal ended it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return (128 + signal).clamp(1, 255) as u8;
    }
    status.code().unwrap_or(1).clamp(1, 255) as u8
}

/// Makes the process `command` starts receive SIGTERM when this process dies, however it dies
/// (`kill -9` included), so that it is not left running as an orphan: a restarter that then runs
/// `--resume` would otherwise have two trainers writing one run directory. `cargo run` `exec`s the
/// `longformer` binary in its own place, so the trainer is this process's direct child and the
/// parent-death signal, which survives `execve`, reaches it; it answers SIGTERM as it answers
/// Ctrl-C, by checkpointing after its current optimizer step. Linux only (`PR_SET_PDEATHSIG`);
/// elsewhere a no-op.
///
/// The signal is sent when the *thread* that spawned the child exits: `main` spawns and waits.
#[cfg(target_os = "linux")]
fn die_with_this_process(command: &mut Command) {
    die_with_parent(command, std::process::id());
}

#[cfg(not(target_os = "linux"))]
fn die_with_this_process(_command: &mut Command) {}

/// [`die_with_this_process`] for a `parent` given (this process's id but in a test): set in the
/// child between `fork` and `exec`. If the parent died before `prctl` ran, no signal will come:
/// the child then finds another parent (init or a subreaper) and exits before `exec`.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command, parent: u32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child before `exec` and calls only `prctl`, `getppid`
    // and `_exit`, all async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                // `_exit` rather than `raise(SIGTERM)`: SIGTERM may be inherited ignored or
                // blocked. Nobody is left to read the status; 143 reads as "ended by SIGTERM".
                libc::_exit(128 + libc::SIGTERM);
            }
            Ok(())
        });
    }
}

/// The child's process id, for [`forward_termination`].
#[cfg(unix)]
static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Ctrl-C reaches the whole foreground process group: `longformer train` answers it by
/// finishing its optimizer step and writing a checkpoint. This process ignores it (after the
/// child is started, which would otherwise inherit the ignored disposition), so that it waits
/// for that and the shell's prompt comes back after the child's last words, not before.
/// SIGTERM (a job scheduler's `kill PID`) reaches this process alone: it is passed on to the
/// child (`cargo run` replaces itself with the `longformer` binary), which checkpoints the same
/// way, and this process still waits for it.
#[cfg(unix)]
fn outlive_interrupts(child: u32) {
    CHILD.store(child as i32, std::sync::atomic::Ordering::SeqCst);
    let forward: extern "C" fn(libc::c_int) = forward_termination;
    // SAFETY: "ignore" installs no handler; `forward_termination` only loads an atomic and
    // calls `kill`, both async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, forward as libc::sighandler_t);
    }
}

/// SIGTERM's handler: sends the signal on to the child.
#[cfg(unix)]
extern "C" fn forward_termination(signal: libc::c_int) {
    let child = CHILD.load(std::sync::atomic::Ordering::SeqCst);
    if child > 0 {
        // SAFETY: `kill` is async-signal-safe; `child` is our child, not yet reaped
        // (`forget_child` clears it once `wait` has returned). `errno`, which `kill` may set,
        // is put back for the code this handler interrupted.
        unsafe {
            #[cfg(target_os = "linux")]
            let saved = *libc::__errno_location();
            libc::kill(child, signal);
            #[cfg(target_os = "linux")]
            {
                *libc::__errno_location() = saved;
            }
        }
    }
}

/// Once the child is reaped its id may be reused: SIGTERM is no longer passed on.
#[cfg(unix)]
fn forget_child() {
    CHILD.store(0, std::sync::atomic::Ordering::SeqCst);
}

#[cfg(not(unix))]
fn outlive_interrupts(_child: u32) {}

#[cfg(not(unix))]
fn forget_child() {}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(backend: Option<Backend>, args: &[&str]) -> Forward {
        Forward {
            backend,
            release: false,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn the_backend_comes_from_either_side_of_the_separator_once() {
        let name = |f: Forward| backend(&f, true).map(Backend::name);
        assert_eq!(name(forward(None, &[])), Ok("flex"));
        assert_eq!(name(forward(Some(Backend::Vulkan), &[])), Ok("vulkan"));
        assert_eq!(
            name(forward(None, &["--backend", "wgpu", "--seq", "8"])),
            Ok("wgpu")
        );
        assert_eq!(name(forward(None, &["--backend=ndarray"])), Ok("ndarray"));
        assert_eq!(
            name(forward(Some(Backend::Wgpu), &["--backend", "wgpu"])),
            Ok("wgpu")
        );
        let both = name(forward(Some(Backend::Flex), &["--backend", "wgpu"])).unwrap_err();
        assert!(both.contains("give one"), "{both}");
        let unknown = name(forward(None, &["--backend", "cuda"])).unwrap_err();
        assert!(unknown.contains("unknown --backend cuda"), "{unknown}");
        let no_model = backend(&forward(Some(Backend::Wgpu), &[]), false).unwrap_err();
        assert!(no_model.contains("runs no model"), "{no_model}");
        assert_eq!(backend_in_args(&["--seq".into(), "8".into()]), None);
    }

    #[test]
    fn encode_defaults_to_the_bundled_model_and_example_unless_given() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let added = defaults("encode", &args(&["--dtype", "bf16"]));
        assert_eq!(added.len(), 4);
        let path = |arg: &std::ffi::OsString| std::path::PathBuf::from(arg);
        assert!(path(&added[1]).join("config.json").is_file());
        assert!(path(&added[3]).is_file());
        // Text or an input file of one's own: the bundled model still, no bundled input.
        for own in [
            &["--text", "hi"][..],
            &["--input", "ids.json"],
            &["--text-file", "-"],
        ] {
            let added = defaults("encode", &args(own));
            assert_eq!(added.len(), 2);
            assert_eq!(added[0], "--model");
        }
        assert!(defaults("encode", &args(&["--model=dir", "--input=x.json"])).is_empty());
        assert!(defaults("train", &args(&[])).is_empty());
    }

    /// Set in the copy of the test binary that [`a_child_gets_sigterm_when_its_parent_is_killed`]
    /// runs as the parent to kill: the folder its child reports in.
    #[cfg(target_os = "linux")]
    const PARENT_FOLDER: &str = "XTASK_TEST_PARENT_FOLDER";

    /// A parent (this test binary again, running only this test) starts a shell through
    /// [`die_with_this_process`], as `main` starts cargo, and is SIGKILLed: the shell gets SIGTERM.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_child_gets_sigterm_when_its_parent_is_killed() {
        use std::time::{Duration, Instant};
        if let Some(folder) = std::env::var_os(PARENT_FOLDER) {
            // The parent: start the child, then wait to be killed.
            let mut child = Command::new("sh");
            child
                .args(["-c", r#"trap 'echo > "$0/term"; exit 0' TERM; echo $$ > "$0/ready"; while :; do sleep 0.05; done"#])
                .arg(folder);
            die_with_this_process(&mut child);
            // Waits in the spawning thread: the signal comes when that thread ends, not the process.
            let _ = child.spawn().expect("spawn sh").wait();
            return;
        }
        let folder = std::env::temp_dir().join(format!("xtask-pdeathsig-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        let mut parent = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::a_child_gets_sigterm_when_its_parent_is_killed",
                "--test-threads=1",
            ])
            .env(PARENT_FOLDER, &folder)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let appears = |name: &str| {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if folder.join(name).exists() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        };
        let ready = appears("ready");
        parent.kill().unwrap(); // SIGKILL: no handler, no cleanup in the parent
        parent.wait().unwrap();
        let term = ready && appears("term");
        if ready && !term {
            // The failure this test is for leaves the shell running: end it.
            let pid = std::fs::read_to_string(folder.join("ready")).unwrap_or_default();
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: plain `kill`; the shell is orphaned and still running.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_dir_all(&folder);
        assert!(ready, "the child never started");
        assert!(term, "the child got no SIGTERM when its parent was killed");
    }

    /// The race: a child whose parent is already gone when `prctl` runs (here: whose expected
    /// parent is not its parent) exits before `exec` instead of running unwatched.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_child_whose_parent_is_gone_before_prctl_does_not_run() {
        let marker = std::env::temp_dir().join(format!("xtask-orphan-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let mut child = Command::new("sh");
        child.args(["-c", r#"echo > "$0""#]).arg(&marker);
        die_with_parent(&mut child, u32::MAX);
        let status = child.spawn().unwrap().wait().unwrap();
        assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
        assert!(!marker.exists(), "the orphan ran its command");
        // With the right parent it runs.
        let mut child = Command::new("sh");
        child.args(["-c", r#"echo > "$0""#]).arg(&marker);
        die_with_this_process(&mut child);
        assert!(child.status().unwrap().success());
        assert!(marker.exists());
        let _ = std::fs::remove_file(&marker);
    }
}
