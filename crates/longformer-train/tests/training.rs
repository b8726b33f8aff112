//! The training loop on a few sample-set examples: it learns, it resumes exactly, and
//! gradient accumulation averages.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};
use longformer_data::{PrepareOptions, WikiHopTokenizer, prepare_file, sample_dir};
use longformer_model::LongformerConfig;
use longformer_train::checkpoint::checkpoints;
use longformer_train::metrics::TrainPoint;
use longformer_train::trainer::{Interrupted, Trained};
use longformer_train::{
    Combine, ExampleSet, LossScaling, OptimizerSettings, Precision, Run, Start, TrainSettings,
    WikiHopModel,
};

fn sample(examples: usize) -> (ExampleSet, usize) {
    let dir = sample_dir();
    let tokenizer = WikiHopTokenizer::from_dir(&dir.join("tokenizer")).unwrap();
    let prepared = prepare_file(
        &dir.join("dev.json"),
        &tokenizer,
        &PrepareOptions::default(),
    )
    .unwrap();
    let chunks = prepared.chunks.into_iter().take(examples).collect();
    (
        ExampleSet::new(chunks, tokenizer.pad_id()),
        tokenizer.vocab_size(),
    )
}

/// Burn's random generator is one per device, shared by the tests of this process: a test
/// seeds it before drawing initial weights, which another test's draws in between would
/// change. The tests that draw take turns.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn config(vocab: usize, dropout: f64) -> LongformerConfig {
    LongformerConfig::tiny(vocab)
        .with_hidden_dropout_prob(dropout)
        .with_attention_probs_dropout_prob(dropout)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lf-train-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn settings() -> TrainSettings {
    TrainSettings {
        optimizer: OptimizerSettings {
            lr: 1e-3,
            warmup_steps: 2,
            ..OptimizerSettings::default()
        },
        batch_size: 2,
        grad_accum: 2,
        epochs: 1,
        log_every: 1,
        eval_every: 3,
        checkpoint_every: 2,
        keep_checkpoints: 10,
        eval_batch_size: 4,
        seed: 7,
        ..TrainSettings::default()
    }
}

#[test]
fn a_few_steps_lower_the_loss_on_a_fixed_batch() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let (set, vocab) = sample(8);
    device.seed(1);
    let mut model = WikiHopModel::init(&config(vocab, 0.0), &device);
    let mut optimizer = settings().optimizer.optimizer();
    let batch = set.batch(&(0..8).collect::<Vec<_>>(), &device);
    let first = model
        .forward(&batch, Combine::Mean)
        .loss
        .into_scalar::<f32>();
    let mut last = first;
    for _ in 0..20 {
        let loss = model.forward(&batch, Combine::Mean).loss;
        last = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(3e-3, model, grads);
    }
    let after = model
        .forward(&batch, Combine::Mean)
        .loss
        .into_scalar::<f32>();
    assert!(first.is_finite() && after.is_finite());
    assert!(
        after < 0.5 * first,
        "loss {first} -> {last} -> {after} after 20 steps"
    );
}

#[test]
fn resuming_from_a_checkpoint_continues_exactly() {
    let _serial = serial();
    check_resume(Device::flex(), "flex", 0.0, settings());
}

/// With f16 passes, the loss scale and its count of steps without overflow continue from the
/// checkpoint. Per step (the loss's own gradient is 2^k / 2 passes for a scale of 2^k, past
/// f16's 65,504 from 2^17; here the third step's gradients overflow at 2^16 too):
/// - from 2^17, doubled after two steps without overflow: skip, apply, skip, apply; a run
///   restarted at its first scale would skip the third step at 2^17 and apply the fourth at 2^16;
/// - from 2^15, doubled after three: four steps applied, the scale doubled after the third; a
///   run restarted with a count of 0 would not double it.
#[test]
fn resuming_with_f16_passes_continues_the_loss_scale() {
    let _serial = serial();
    for (init_scale, growth_interval, skipped, last_scale) in [
        (2f32.powi(17), 2, 2, 2f32.powi(15)),
        (2f32.powi(15), 3, 0, 2f32.powi(16)),
    ] {
        let scaling = LossScaling {
            init_scale,
            growth_interval,
        };
        let full = check_resume(Device::flex(), "flex-f16", 0.0, f16_settings(scaling, 4));
        assert_eq!(full.summary.skipped_steps, skipped, "from {init_scale}");
        assert_eq!(
            full.summary.loss_scale,
            Some(last_scale),
            "from {init_scale}"
        );
    }
}

/// On the software GPU too, through Burn's kernel fusion, which may order a resumed process's
/// operations differently: every dropout mask is a function of the batch's seed, not of the
/// order in which the device ran random draws.
#[test]
fn resuming_on_the_software_gpu_continues_with_the_same_dropout() {
    if std::env::var("LONGFORMER_SKIP_WGPU").is_ok_and(|v| v == "1") {
        return;
    }
    let _serial = serial();
    check_resume(Device::wgpu(Default::default()), "wgpu", 1e-5, settings());
}

/// A run of 4 steps with `settings` (of [`settings`]'s batches and cadence) against copies of
/// it resumed from its step-2 checkpoint: the same log lines, dev loss (within 1e-5) and
/// skipped steps, and final weights within `weight_tolerance`. Returns the uninterrupted run.
fn check_resume(
    device: Device,
    backend: &'static str,
    weight_tolerance: f32,
    settings: TrainSettings,
) -> Trained {
    let (train, vocab) = sample(16);
    let (dev, _) = sample(4);
    // 8 batches of 2, 2 per step: 4 steps, checkpoints at 2 and 4, log lines at 3 and 4: the
    // resumed run's line at 3 covers step 1 and 2 too, from the checkpoint's interval.
    let settings = TrainSettings {
        log_every: 3,
        ..settings
    };
    let full_dir = temp_dir(&format!("full-{backend}"));
    fn run<'a>(
        dir: &'a Path,
        train: &'a ExampleSet,
        dev: &'a ExampleSet,
        settings: &'a TrainSettings,
        backend: &'static str,
    ) -> Run<'a> {
        Run {
            dir,
            train,
            dev,
            settings,
            backend,
            verbose: false,
            stop: None,
            gradient_checkpointing: false,
        }
    }
    let autodiff = device.clone().autodiff();
    autodiff.seed(3);
    let model = WikiHopModel::init(&config(vocab, 0.1), &autodiff);
    let full = run(&full_dir, &train, &dev, &settings, backend)
        .train(Start::Fresh(model), std::slice::from_ref(&device))
        .unwrap();
    assert_eq!(full.summary.optimizer_steps, 4);
    let full_history = read_history(&full_dir);
    assert_eq!(full_history.len(), 2);

    // Copies of the run killed after the checkpoint of step 2, and after the checkpoint of
    // step 4 with its state.json lost (as a crash of the machine can leave it): resumed from
    // step 2 both.
    for lost_state in [false, true] {
        let resumed_dir = temp_dir(&format!("resumed-{backend}"));
        copy_dir(&full_dir, &resumed_dir);
        let step_4 = resumed_dir.join("checkpoints/step-00000004");
        if lost_state {
            std::fs::write(step_4.join("state.json"), "").unwrap();
        } else {
            std::fs::remove_dir_all(step_4).unwrap();
        }
        std::fs::remove_file(resumed_dir.join("summary.json")).unwrap();
        let fresh = WikiHopModel::init(&config(vocab, 0.1), &autodiff);
        let resumed = run(&resumed_dir, &train, &dev, &settings, backend)
            .train(Start::Resume(fresh), std::slice::from_ref(&device))
            .unwrap();
        let resumed_history = read_history(&resumed_dir);
        assert_eq!(resumed_history.len(), 2, "{resumed_history:?}");
        for (a, b) in full_history.iter().zip(&resumed_history) {
            assert_eq!(a.step, b.step);
            assert_eq!(
                a.skipped_steps, b.skipped_steps,
                "{backend}, step {}",
                a.step
            );
            assert_eq!(a.loss_scale, b.loss_scale, "{backend}, step {}", a.step);
            for (what, x, y) in [
                ("loss", a.loss, b.loss),
                ("accuracy", a.accuracy, b.accuracy),
                ("gradient norm", a.grad_norm, b.grad_norm),
            ] {
                assert!(
                    (x - y).abs() <= 1e-5 * x.abs().max(1.0),
                    "{backend}, step {}: {what} {x} uninterrupted, {y} resumed (lost state: {lost_state})",
                    a.step
                );
            }
        }
        assert_eq!(resumed.summary.optimizer_steps, 4);
        assert_eq!(resumed.summary.examples_seen, full.summary.examples_seen);
        assert_eq!(resumed.summary.skipped_steps, full.summary.skipped_steps);
        assert_eq!(resumed.summary.loss_scale, full.summary.loss_scale);
        assert!((resumed.summary.dev_loss - full.summary.dev_loss).abs() < 1e-5);
        let (a, b) = (weights(&full.model), weights(&resumed.model));
        let apart = max_apart(&a, &b);
        println!("{backend}: resumed weights {apart:e} from the uninterrupted run's");
        assert!(
            apart <= weight_tolerance,
            "{backend}: resumed weights {apart} from the uninterrupted run's (lost state: {lost_state})"
        );
        std::fs::remove_dir_all(resumed_dir).unwrap();
    }
    std::fs::remove_dir_all(full_dir).unwrap();
    full
}

#[test]
fn a_stop_request_checkpoints_the_current_step_and_the_run_resumes() {
    let _serial = serial();
    let device = Device::flex();
    let (train, vocab) = sample(16);
    let (dev, _) = sample(4);
    let settings = settings(); // 4 steps, checkpoints at 2 and 4
    let dir = temp_dir("stop");
    let autodiff = device.clone().autodiff();
    autodiff.seed(3);
    let stop = AtomicBool::new(true); // as if a signal came during the first step
    let run = |stop| Run {
        dir: &dir,
        train: &train,
        dev: &dev,
        settings: &settings,
        backend: "flex",
        verbose: false,
        stop,
        gradient_checkpointing: false,
    };
    let model = WikiHopModel::init(&config(vocab, 0.1), &autodiff);
    let error = run(Some(&stop))
        .train(Start::Fresh(model), std::slice::from_ref(&device))
        .err()
        .expect("the run stops");
    let interrupted = error.downcast_ref::<Interrupted>().expect("an Interrupted");
    assert_eq!(interrupted.step, 1);
    assert!(
        interrupted
            .checkpoint
            .ends_with("checkpoints/step-00000001")
    );
    assert_eq!(
        checkpoints(&dir).unwrap(),
        vec![interrupted.checkpoint.clone()]
    );
    assert!(!dir.join("summary.json").exists());

    let fresh = WikiHopModel::init(&config(vocab, 0.1), &autodiff);
    let resumed = run(None)
        .train(Start::Resume(fresh), std::slice::from_ref(&device))
        .unwrap();
    assert_eq!(resumed.summary.optimizer_steps, 4);
    assert_eq!(resumed.summary.examples_seen, train.len());
    std::fs::remove_dir_all(dir).unwrap();
}

/// The runs in `a` and `b` logged the same steps, with training losses within `tolerance`.
fn assert_same_losses(a: &Path, b: &Path, tolerance: f64) {
    let (ha, hb) = (read_history(a), read_history(b));
    assert_eq!(ha.len(), hb.len());
    for (x, y) in ha.iter().zip(&hb) {
        assert_eq!(x.step, y.step);
        assert!(
            (x.loss - y.loss).abs() < tolerance,
            "step {}: {} vs {}",
            x.step,
            x.loss,
            y.loss
        );
    }
}

/// Every training log line in `metrics.jsonl`.
fn read_history(dir: &Path) -> Vec<TrainPoint> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            Some(serde_json::from_value(v.get("train")?.clone()).unwrap())
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn accumulating_k_batches_of_one_equals_one_batch_of_k() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let (set, vocab) = sample(4);
    device.seed(5);
    let model = WikiHopModel::init(&config(vocab, 0.0), &device);
    let all: Vec<usize> = (0..4).collect();
    let batch = set.batch(&all, &device);
    let whole =
        GradientsParams::from_grads(model.forward(&batch, Combine::Mean).loss.backward(), &model);
    let mut accumulator = GradientsAccumulator::<WikiHopModel>::new();
    for &i in &all {
        let one = set.batch(&[i], &device);
        let loss = model.forward(&one, Combine::Mean).loss.div_scalar(4.0);
        accumulator.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
    }
    let accumulated = accumulator.grads();
    let mut compare = Compare {
        a: &whole,
        b: &accumulated,
        tensors: Vec::new(),
    };
    model.visit(&mut compare);
    assert!(
        compare.tensors.len() > 10,
        "compared {} tensors",
        compare.tensors.len()
    );
    // Relative to each tensor's own scale, floored at 1e-3 of the largest gradient: some
    // gradients (key biases, for one) are zero in exact arithmetic and hold only rounding noise.
    let largest = compare.tensors.iter().map(|t| t.1).fold(0.0f32, f32::max);
    assert!(largest > 0.0);
    let worst = compare
        .tensors
        .iter()
        .map(|&(diff, scale)| diff / scale.max(1e-3 * largest))
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "worst relative difference {worst}");
}

/// A model with `dropout` on `device`'s autodiff twin, with the same weights every call
/// (seed 11).
fn fresh_model(vocab: usize, dropout: f64, device: &Device) -> WikiHopModel {
    let main = device.clone().autodiff();
    main.seed(11);
    WikiHopModel::init(&config(vocab, dropout), &main)
}

/// Two optimizer steps of [`fresh_model`] (with `dropout`) on `devices` with passes in
/// `precision`, run in `dir`.
fn two_steps(
    dir: &Path,
    data: (&ExampleSet, &ExampleSet),
    model: (usize, f64),
    precision: Precision,
    devices: &[Device],
) -> anyhow::Result<Trained> {
    two_steps_checkpointed(dir, data, model, precision, devices, false)
}

/// [`two_steps`], with gradient checkpointing when `gradient_checkpointing` is set.
fn two_steps_checkpointed(
    dir: &Path,
    (train, dev): (&ExampleSet, &ExampleSet),
    (vocab, dropout): (usize, f64),
    precision: Precision,
    devices: &[Device],
    gradient_checkpointing: bool,
) -> anyhow::Result<Trained> {
    let settings = TrainSettings {
        max_steps: Some(2),
        precision,
        loss_scaling: (precision == Precision::F16).then(LossScaling::default),
        ..settings()
    };
    train_fresh(
        dir,
        (train, dev),
        (vocab, dropout),
        &settings,
        devices,
        gradient_checkpointing,
    )
}

/// A run of [`fresh_model`] (with `dropout`) with `settings` on `devices` in `dir`.
fn train_fresh(
    dir: &Path,
    (train, dev): (&ExampleSet, &ExampleSet),
    (vocab, dropout): (usize, f64),
    settings: &TrainSettings,
    devices: &[Device],
    gradient_checkpointing: bool,
) -> anyhow::Result<Trained> {
    Run {
        dir,
        train,
        dev,
        settings,
        backend: "flex",
        verbose: false,
        stop: None,
        gradient_checkpointing,
    }
    .train(
        Start::Fresh(fresh_model(vocab, dropout, &devices[0])),
        devices,
    )
}

/// The largest `|a[i] - b[i]|`.
fn max_apart(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every float parameter of `model`, flattened in visiting order.
fn weights(model: &WikiHopModel) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.extend(param.val().into_data().iter::<f32>());
        }
    }
    let mut all = Collect(Vec::new());
    model.visit(&mut all);
    all.0
}

/// (max |a - b|, max |a|) of every parameter's two gradients.
struct Compare<'a> {
    a: &'a GradientsParams,
    b: &'a GradientsParams,
    tensors: Vec<(f32, f32)>,
}

impl ModuleVisitor for Compare<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (Some(a), Some(b)) = (self.a.get::<D>(param.id), self.b.get::<D>(param.id)) else {
            return;
        };
        let scale = a.clone().abs().max().into_scalar::<f32>();
        let diff = (a - b).abs().max().into_scalar::<f32>();
        assert!(diff.is_finite() && scale.is_finite());
        self.tensors.push((diff, scale));
    }
}

#[test]
#[allow(deprecated)] // Device::ndarray: a second, distinct device on a CPU-only machine
fn two_devices_train_like_one() {
    let _serial = serial();
    let (train, vocab) = sample(8);
    let (dev, _) = sample(4);
    // With dropout: each batch's masks come from the step's seed and the batch's place in the
    // step, whichever device (and backend) runs it.
    let run = |dir: &Path, devices: &[Device]| {
        two_steps(dir, (&train, &dev), (vocab, 0.1), Precision::F32, devices).unwrap()
    };
    let one_dir = temp_dir("one-device");
    let two_dir = temp_dir("two-devices");
    let one = run(&one_dir, &[Device::flex()]);
    let two = run(&two_dir, &[Device::flex(), Device::ndarray()]);
    assert_eq!(one.summary.examples_seen, two.summary.examples_seen);
    let (a, b) = (one.summary.dev_loss, two.summary.dev_loss);
    assert!(
        (a - b).abs() < 1e-4 * a.abs().max(1.0),
        "dev loss {a} on one device, {b} on two"
    );
    assert_same_losses(&one_dir, &two_dir, 1e-4);
    for dir in [one_dir, two_dir] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// f16 passes with loss scaling on two devices (flex twice: ndarray has no f16): each device
/// unscales its own gradients before they are combined, so the steps match one device's.
#[test]
fn two_devices_train_like_one_with_f16_passes() {
    let _serial = serial();
    let (train, vocab) = sample(8);
    let (dev, _) = sample(4);
    let run = |dir: &Path, devices: &[Device]| {
        two_steps(dir, (&train, &dev), (vocab, 0.1), Precision::F16, devices).unwrap()
    };
    let one_dir = temp_dir("one-device-f16");
    let two_dir = temp_dir("two-devices-f16");
    let one = run(&one_dir, &[Device::flex()]);
    let two = run(&two_dir, &[Device::flex(), Device::flex()]);
    assert_eq!(one.summary.examples_seen, two.summary.examples_seen);
    assert_eq!(one.summary.loss_scale, two.summary.loss_scale);
    assert_eq!(one.summary.skipped_steps, two.summary.skipped_steps);
    let start = weights(&fresh_model(vocab, 0.1, &Device::flex()));
    let (a, b) = (weights(&one.model), weights(&two.model));
    let (moved, apart) = (max_apart(&start, &a), max_apart(&a, &b));
    assert!(moved > 1e-4, "two steps moved the weights by {moved}");
    // The devices' sums are grouped differently: f32 rounding apart, not a step's movement.
    assert!(
        apart <= 1e-3 * moved,
        "two devices land {apart} from one ({moved} moved)"
    );
    assert_same_losses(&one_dir, &two_dir, 1e-3);
    for dir in [one_dir, two_dir] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
#[allow(deprecated)] // Device::ndarray: a device without bf16
fn half_passes_keep_f32_master_weights_and_follow_the_f32_run() {
    let _serial = serial();
    let (train, vocab) = sample(8);
    let (dev, _) = sample(4);
    let run = |dir: &Path, precision: Precision, device: Device| {
        two_steps(dir, (&train, &dev), (vocab, 0.0), precision, &[device])
    };
    let f32_dir = temp_dir("f32-passes");
    let full = run(&f32_dir, Precision::F32, Device::flex()).unwrap();
    let init = fresh_model(vocab, 0.0, &Device::flex());
    let query = |m: &WikiHopModel| {
        m.longformer.encoder.layer[0]
            .attention
            .self_attn
            .query
            .weight
            .val()
    };
    // bf16 passes, and f16 passes with the loss scaled (PyTorch's default scale, 2^16).
    for precision in [Precision::Bf16, Precision::F16] {
        let half_dir = temp_dir(&format!("{}-passes", precision.name()));
        let half = run(&half_dir, precision, Device::flex()).unwrap();
        // The master weights stay f32, and move as the f32 run's do.
        let weight = half.model.answer_score.weight.val();
        assert_eq!(weight.dtype(), burn::tensor::DType::F32);
        for (start, f, h) in [
            (
                init.answer_score.weight.val(),
                full.model.answer_score.weight.val(),
                weight,
            ),
            (query(&init), query(&full.model), query(&half.model)),
        ] {
            let moved = (f.clone() - start.clone()).abs().max().into_scalar::<f32>();
            let apart = (f - h).abs().max().into_scalar::<f32>();
            assert!(moved > 0.0);
            assert!(
                apart < 0.1 * moved,
                "the f32 run moved a weight by up to {moved}; {precision:?} passes land {apart} \
                 from it"
            );
        }
        // Two steps of half passes land where the f32 run does, within the dtype's rounding.
        let (a, b) = (full.summary.dev_loss, half.summary.dev_loss);
        assert!(
            (a - b).abs() < 2e-2 * a.abs().max(1.0),
            "dev loss {a} with f32 passes, {b} with {precision:?} passes"
        );
        assert_same_losses(&f32_dir, &half_dir, 2e-2);
        // The gradients AdamW and the clipping see are the unscaled ones.
        for (a, b) in read_history(&f32_dir).iter().zip(&read_history(&half_dir)) {
            assert!(
                (a.grad_norm - b.grad_norm).abs() < 2e-2 * a.grad_norm,
                "step {}: gradient norm {} with f32 passes, {} with {precision:?} passes",
                a.step,
                a.grad_norm,
                b.grad_norm
            );
        }
        let scale = (precision == Precision::F16).then_some(65536.0);
        assert_eq!(half.summary.loss_scale, scale);
        assert_eq!(half.summary.skipped_steps, 0);
        std::fs::remove_dir_all(half_dir).unwrap();
    }
    // A device without bf16 is refused, with the reason.
    let err = match run(&temp_dir("refused"), Precision::Bf16, Device::ndarray()) {
        Ok(_) => panic!("bf16 trained on ndarray"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("cannot compute in BF16"), "{err}");
    std::fs::remove_dir_all(f32_dir).unwrap();
}

/// Activation checkpointing recomputes each layer in the backward pass, dropout masks included
/// (they come from the batch's seed), so two steps land on the same weights as without it: on
/// flex (with f32, bf16 and loss-scaled f16 passes), on two devices, and on the software GPU (with its fused
/// attention kernel).
#[test]
#[allow(deprecated)] // Device::ndarray: a second, distinct device on a CPU-only machine
fn gradient_checkpointing_trains_the_same_weights() {
    let _serial = serial();
    let (train, vocab) = sample(8);
    let (dev, _) = sample(4);
    let mut cases = vec![
        ("flex", Precision::F32, vec![Device::flex()]),
        ("flex, bf16 passes", Precision::Bf16, vec![Device::flex()]),
        ("flex, f16 passes", Precision::F16, vec![Device::flex()]),
        (
            "flex+ndarray",
            Precision::F32,
            vec![Device::flex(), Device::ndarray()],
        ),
    ];
    if !std::env::var("LONGFORMER_SKIP_WGPU").is_ok_and(|v| v == "1") {
        cases.push((
            "wgpu",
            Precision::F32,
            vec![Device::wgpu(Default::default())],
        ));
    }
    for (case, (backend, precision, devices)) in cases.into_iter().enumerate() {
        let run = |checkpointing: bool| {
            let dir = temp_dir(&format!("checkpointing-{case}-{checkpointing}"));
            let trained = two_steps_checkpointed(
                &dir,
                (&train, &dev),
                (vocab, 0.1),
                precision,
                &devices,
                checkpointing,
            )
            .unwrap();
            (dir, trained)
        };
        let (kept_dir, kept) = run(false);
        let (recomputed_dir, recomputed) = run(true);
        assert!(recomputed.summary.gradient_checkpointing && !kept.summary.gradient_checkpointing);
        let start = weights(&fresh_model(vocab, 0.1, &devices[0]));
        let (a, b) = (weights(&kept.model), weights(&recomputed.model));
        let moved = max_apart(&start, &a);
        let apart = max_apart(&a, &b);
        println!(
            "{backend}: weights moved up to {moved:e}; checkpointed run {apart:e} from the other"
        );
        assert!(
            moved > 1e-4,
            "{backend}: two steps moved the weights by {moved}"
        );
        // Usually bit-identical or a few ulps apart (a CPU's vectorized sums round by the
        // alignment of the buffers they read, which the recomputation changes); a wrong dropout
        // mask or a missing gradient moves some weights as much as training does.
        assert!(
            apart <= 1e-2 * moved,
            "{backend}: with gradient checkpointing the weights land {apart} from those without"
        );
        assert_same_losses(&kept_dir, &recomputed_dir, 1e-5);
        for dir in [kept_dir, recomputed_dir] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}

/// `settings()` with f16 passes scaled by `scaling`, for `steps` optimizer steps.
fn f16_settings(scaling: LossScaling, steps: usize) -> TrainSettings {
    TrainSettings {
        max_steps: Some(steps),
        precision: Precision::F16,
        loss_scaling: Some(scaling),
        ..settings()
    }
}

/// Without loss scaling (a scale of 1), f16 passes lose the gradients below f16's range
/// (2^-24); with it they keep them. AdamW's first step with ε at 1e-20 moves every weight whose
/// gradient is not zero by the learning rate, so a weight the f32 run moves and an f16 run
/// leaves in place lost its gradient.
#[test]
fn loss_scaling_keeps_the_gradients_below_f16s_range() {
    let _serial = serial();
    let (train, vocab) = sample(8);
    let (dev, _) = sample(4);
    let device = Device::flex();
    let run = |tag: &str, settings: TrainSettings| {
        let dir = temp_dir(tag);
        let settings = TrainSettings {
            optimizer: OptimizerSettings {
                epsilon: 1e-20,
                ..settings.optimizer
            },
            // One optimizer step of 8 passes: each pass's loss is divided by 8.
            batch_size: 1,
            grad_accum: 8,
            max_steps: Some(1),
            ..settings
        };
        let trained = train_fresh(
            &dir,
            (&train, &dev),
            (vocab, 0.0),
            &settings,
            std::slice::from_ref(&device),
            false,
        )
        .unwrap();
        std::fs::remove_dir_all(dir).unwrap();
        weights(&trained.model)
    };
    let full = run("f32-sign", settings());
    let scaled = run("f16-scaled", f16_settings(LossScaling::default(), 1));
    let unscaled = run(
        "f16-unscaled",
        f16_settings(
            LossScaling {
                init_scale: 1.0,
                ..LossScaling::default()
            },
            1,
        ),
    );
    let start = weights(&fresh_model(vocab, 0.0, &device));
    let lost = |half: &[f32]| {
        (0..start.len())
            .filter(|&i| full[i] != start[i] && half[i] == start[i])
            .count()
    };
    let (scaled, unscaled) = (lost(&scaled), lost(&unscaled));
    println!("weights the f32 step moves and f16 passes leave: {scaled} scaled, {unscaled} not");
    assert!(
        unscaled >= 50 && scaled * 10 <= unscaled,
        "f16 passes lost the gradients of {scaled} weights with the loss scaled, of {unscaled} \
         without"
    );
}

/// Gradients past f16's range skip the optimizer step and halve the scale: from 2^40 both steps
/// of a run overflow, its weights stay where they started, and each log line counts its skip.
#[test]
fn overflowing_f16_gradients_skip_the_step_and_halve_the_scale() {
    let _serial = serial();
    let (train, vocab) = sample(8);
    let (dev, _) = sample(4);
    let device = Device::flex();
    let dir = temp_dir("f16-overflow");
    let scaling = LossScaling {
        init_scale: 2f32.powi(40),
        ..LossScaling::default()
    };
    let trained = train_fresh(
        &dir,
        (&train, &dev),
        (vocab, 0.0),
        &f16_settings(scaling, 2),
        std::slice::from_ref(&device),
        false,
    )
    .unwrap();
    assert_eq!(trained.summary.optimizer_steps, 2);
    assert_eq!(trained.summary.skipped_steps, 2);
    assert_eq!(trained.summary.loss_scale, Some(2f32.powi(38)));
    let start = weights(&fresh_model(vocab, 0.0, &device));
    assert_eq!(max_apart(&start, &weights(&trained.model)), 0.0);
    let history = read_history(&dir);
    let logged: Vec<_> = history
        .iter()
        .map(|p| (p.step, p.skipped_steps, p.loss_scale))
        .collect();
    assert_eq!(
        logged,
        [(1, 1, Some(2f32.powi(39))), (2, 1, Some(2f32.powi(38)))]
    );
    assert!(history.iter().all(|p| p.loss.is_finite()));
    std::fs::remove_dir_all(dir).unwrap();

    // A forward pass past f16's range is an error: no loss scale brings it back. Answer
    // scores of some 10^5 overflow to infinity in f16.
    let dir = temp_dir("f16-forward-overflow");
    let mut model = fresh_model(vocab, 0.0, &device);
    model.answer_score.weight = model.answer_score.weight.map(|w| w.mul_scalar(1e6));
    let err = Run {
        dir: &dir,
        train: &train,
        dev: &dev,
        settings: &f16_settings(LossScaling::default(), 2),
        backend: "flex",
        verbose: false,
        stop: None,
        gradient_checkpointing: false,
    }
    .train(Start::Fresh(model), std::slice::from_ref(&device))
    .err()
    .expect("the run fails");
    assert!(
        err.to_string()
            .contains("the forward pass left f16's range"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
