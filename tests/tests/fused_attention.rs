//! The fused local-attention op (CubeCL kernels on the wgpu device, Mesa llvmpipe in CI;
//! blocked products on flex and ndarray) against the band path it replaces: outputs, and
//! gradients of every attention weight, on layouts with padding, varied global tokens, windows
//! wider than one kernel tile, dilation and causal windows; dropout against finite
//! differences. The HF parity and dense-reference tests run it too (it is the default).

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};
use longformer_model::attention::fused::{fused_available, fused_local_attention};
use longformer_model::{
    AttentionDilation, AttentionWindow, DropoutSeed, LocalAttentionKernel, LongformerConfig,
    LongformerInput, LongformerModel,
};
use longformer_tests::{devices, max_abs_diff_tensors};

/// Taken by every test here: one at a time on the software GPU, whose tests of one binary would
/// otherwise run on parallel threads.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn fused_op_is_available_on_every_backend() {
    let _serial = serial();
    for (name, device) in devices() {
        assert!(fused_available(&device), "{name}");
        assert!(fused_available(&device.autodiff()), "{name} with autodiff");
    }
}

/// longformer-model's `wgpu` feature turns on Burn's kernel fusion, so the wgpu device here runs
/// through it: the extensions' ops are registered in fusion's lazy stream (output shapes
/// declared up front, execution deferred) between generated kernels, and every wgpu test in
/// this crate checks that path.
#[test]
fn wgpu_tests_run_through_burn_fusion() {
    let backend = std::any::type_name::<burn::backend::Cube>();
    assert!(
        backend.contains("Fusion"),
        "the wgpu backend of this build is `{backend}`, without Burn's fusion, which \
         longformer-model's `wgpu` feature should turn on"
    );
}

/// The same model (same weights) with the local attention computed by `kernel`.
fn with_kernel(model: &LongformerModel, kernel: LocalAttentionKernel) -> LongformerModel {
    model.clone().with_local_attention_kernel(kernel)
}

/// Rows of different lengths (right padding), global tokens at varied places; one row without
/// any global token and one with many.
fn input(lens: &[usize], device: &Device) -> LongformerInput {
    let rows: Vec<Vec<i64>> = lens
        .iter()
        .enumerate()
        .map(|(b, &n)| (0..n).map(|t| 3 + ((t * 31 + b * 7) % 90) as i64).collect())
        .collect();
    let globals: Vec<Vec<i64>> = lens
        .iter()
        .enumerate()
        .map(|(b, &n)| {
            (0..n)
                .map(|t| match b % 3 {
                    0 => i64::from(t < 3 || t % 29 == 5),
                    1 => 0,
                    _ => i64::from(t % 4 == 1),
                })
                .collect()
        })
        .collect();
    LongformerInput::from_rows(&rows, None, Some(&globals), 1, device)
}

fn config(windows: Vec<usize>, dilation: AttentionDilation, causal: bool) -> LongformerConfig {
    let layers = windows.len();
    LongformerConfig::tiny(100)
        .with_num_hidden_layers(layers)
        .with_max_position_embeddings(400)
        .with_attention_window(AttentionWindow::PerLayer(windows))
        .with_attention_dilation(dilation)
        .with_autoregressive(causal)
        .with_hidden_dropout_prob(0.0)
        .with_attention_probs_dropout_prob(0.0)
}

/// Attention weights of every layer, to compare gradients.
fn attention_weights(model: &LongformerModel) -> Vec<(String, Param<Tensor<2>>)> {
    model
        .encoder
        .layer
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| {
            let a = &layer.attention.self_attn;
            [
                ("query", &a.query.weight),
                ("key", &a.key.weight),
                ("value", &a.value.weight),
                ("query_global", &a.query_global.weight),
                ("key_global", &a.key_global.weight),
                ("value_global", &a.value_global.weight),
            ]
            .map(|(name, p)| (format!("layer {i} {name}"), p.clone()))
        })
        .collect()
}

fn check(label: &str, config: LongformerConfig, lens: &[usize]) {
    for (name, device) in devices() {
        check_on(&format!("{label} on {name}"), &config, lens, &device);
    }
}

fn check_on(label: &str, config: &LongformerConfig, lens: &[usize], device: &Device) {
    let device = device.clone();
    // Inference.
    let model = config.init(&device);
    let fused = with_kernel(&model, LocalAttentionKernel::Fused);
    let reference = with_kernel(&model, LocalAttentionKernel::Reference);
    let a = fused.forward(input(lens, &device)).last_hidden_state;
    let b = reference.forward(input(lens, &device)).last_hidden_state;
    let diff = max_abs_diff_tensors(a, b);
    assert!(diff < 1e-4, "{label}: inference outputs differ by {diff}");

    // Training: outputs and the gradient of every attention weight.
    let ad = device.autodiff();
    let model = config.init(&ad);
    let fused = with_kernel(&model, LocalAttentionKernel::Fused);
    let reference = with_kernel(&model, LocalAttentionKernel::Reference);
    let [batch, len] = [lens.len(), *lens.iter().max().unwrap()];
    let weights = Tensor::<3>::random(
        [batch, len, config.hidden_size],
        Distribution::Normal(0.0, 1.0),
        &ad,
    );
    let a = fused.forward(input(lens, &ad)).last_hidden_state;
    let b = reference.forward(input(lens, &ad)).last_hidden_state;
    let diff = max_abs_diff_tensors(a.clone().detach(), b.clone().detach());
    assert!(diff < 1e-4, "{label}: training outputs differ by {diff}");
    let ga = (a * weights.clone()).sum().backward();
    let gb = (b * weights).sum().backward();
    for ((name, pa), (_, pb)) in attention_weights(&fused)
        .into_iter()
        .zip(attention_weights(&reference))
    {
        let (Some(da), Some(db)) = (pa.grad(&ga), pb.grad(&gb)) else {
            assert!(
                pa.grad(&ga).is_none() && pb.grad(&gb).is_none(),
                "{label}: {name} has a gradient on one path only"
            );
            continue;
        };
        let scale = db.clone().abs().max().into_scalar::<f32>().max(1e-6);
        let diff = max_abs_diff_tensors(da.unsqueeze::<3>(), db.unsqueeze::<3>()) / scale;
        assert!(
            diff < 1e-3,
            "{label}: d/d{name} differs by {diff} (relative)"
        );
    }
}

#[test]
fn fused_equals_band_path_with_windows_wider_than_a_tile() {
    let _serial = serial();
    // One-sided windows 2, 40 and 70 (a kernel tile is 64 rows); 150 tokens span three tiles.
    check(
        "plain",
        config(vec![4, 80, 140], AttentionDilation::Uniform(1), false),
        &[150, 97, 64, 1],
    );
}

#[test]
fn fused_equals_band_path_with_dilation_and_causal_windows() {
    let _serial = serial();
    check(
        "dilated",
        config(
            vec![8, 20],
            AttentionDilation::PerHead(vec![vec![2, 1, 2, 3], vec![1, 1, 1, 1]]),
            false,
        ),
        &[130, 71, 20],
    );
    check(
        "causal",
        config(vec![10, 80], AttentionDilation::Uniform(1), true),
        &[140, 33, 90],
    );
}

/// Random `[rows, heads, n, d]` inputs of the fused op, and its key masks: every key but the
/// last three is a band key; two global slots, the second empty. The device's generator is
/// seeded first, so a test's inputs (and what it draws next, under [`serial`]) are the same in
/// every run: the finite differences' accuracy depends on them.
struct OpCase {
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    gk: Tensor<4>,
    gv: Tensor<4>,
    key_ok: Tensor<2>,
    global_ok: Tensor<2>,
}

impl OpCase {
    fn new(device: &Device, [rows, heads, n, d]: [usize; 4]) -> Self {
        device.seed(0x5eed);
        let random =
            |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), device);
        let key_ok: Vec<f32> = (0..rows * n)
            .map(|i| f32::from(u8::from(i % n < n - 3)))
            .collect();
        Self {
            q: random([rows, heads, n, d]),
            k: random([rows, heads, n, d]),
            v: random([rows, heads, n, d]),
            gk: random([rows, heads, 2, d]),
            gv: random([rows, heads, 2, d]),
            key_ok: Tensor::from_data(burn::tensor::TensorData::new(key_ok, [rows, n]), device),
            global_ok: Tensor::from_data(
                burn::tensor::TensorData::new([1.0f32, 0.0].repeat(rows), [rows, 2]),
                device,
            ),
        }
    }

    fn run(&self, tensors: [Tensor<4>; 5], window: usize, dropout: f64) -> Tensor<4> {
        let [q, k, v, gk, gv] = tensors;
        fused_local_attention(
            q,
            k,
            v,
            Some((gk, gv)),
            self.key_ok.clone(),
            self.global_ok.clone(),
            window,
            false,
            dropout,
            DropoutSeed::new(7),
        )
    }

    fn tensors(&self) -> [Tensor<4>; 5] {
        [
            self.q.clone(),
            self.k.clone(),
            self.v.clone(),
            self.gk.clone(),
            self.gv.clone(),
        ]
    }
}

#[test]
fn fused_dropout_keeps_the_expectation_and_drops_about_p() {
    let _serial = serial();
    for (name, device) in devices() {
        let ad = device.autodiff();
        let case = OpCase::new(&ad, [2, 3, 150, 8]);
        // With every value 1, each context entry is the sum of the kept probabilities (times
        // 1 / (1 - p)): 1 in expectation, and exactly 1 without dropout. Queries of zeros spread
        // each row's probability evenly over its 8 to 12 keys, and the seed is fixed, so the
        // outcome is fixed: the mean of 900 rows' sums (std 0.3 each, so about 0.01 for the
        // mean) is 0.991 on every backend. With random queries some rows' probability sat on
        // one key, the sums were 0 or 2, and the mean missed 1 by over 0.05 now and then
        // (0.937 once on wgpu).
        let ones = case.v.clone().ones_like();
        let [q, k, _, gk, _] = case.tensors();
        let out = case.run(
            [q.zeros_like(), k, ones.clone(), gk, ones.narrow(2, 0, 2)],
            5,
            0.5,
        );
        let values = out.into_data().iter::<f32>().collect::<Vec<_>>();
        let n = values.len() as f32;
        let mean = values.iter().sum::<f32>() / n;
        let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n;
        println!("{name}: mean {mean}, std {}", var.sqrt());
        assert!(
            (mean - 1.0).abs() < 0.05,
            "{name}: mean {mean} (expected about 1)"
        );
        assert!(
            var.sqrt() > 0.1,
            "std {} (dropout should spread the sums)",
            var.sqrt()
        );
    }
}

#[test]
fn fused_dropout_gradients_match_finite_differences() {
    let _serial = serial();
    for (device_name, device) in devices() {
        let ad = device.autodiff();
        let case = OpCase::new(&ad, [1, 2, 40, 8]);
        let weights = Tensor::<4>::random([1, 2, 40, 8], Distribution::Normal(0.0, 1.0), &ad);
        // The same dropout choices on every call: one seed.
        let loss = |tensors: [Tensor<4>; 5]| (case.run(tensors, 6, 0.3) * weights.clone()).sum();
        let inputs = case.tensors().map(|t| t.detach().require_grad());
        let grads = loss(inputs.clone()).backward();
        let eps = 1e-2;
        for (which, name) in ["q", "k", "v", "global k", "global v"].iter().enumerate() {
            let analytic = inputs[which].grad(&grads).expect("a gradient");
            let numel = inputs[which].shape().num_elements();
            let dims = inputs[which].dims();
            let analytic = analytic.into_data().iter::<f32>().collect::<Vec<_>>();
            for probe in 0..6 {
                let flat = (probe * 7919 + which * 31) % numel;
                let bump = |sign: f32| {
                    let mut delta = vec![0.0f32; numel];
                    delta[flat] = sign * eps;
                    let delta: Tensor<4> =
                        Tensor::from_data(burn::tensor::TensorData::new(delta, dims), &ad);
                    let mut moved = case.tensors();
                    moved[which] = moved[which].clone() + delta;
                    loss(moved).into_scalar::<f32>()
                };
                let numeric = (bump(1.0) - bump(-1.0)) / (2.0 * eps);
                let a = analytic[flat];
                assert!(
                    (numeric - a).abs() <= 2e-2 * a.abs().max(0.2),
                    "{device_name}: d loss / d {name}[{flat}]: analytic {a}, finite differences {numeric}"
                );
            }
        }
    }
}

#[test]
fn fused_equals_band_path_at_base_head_width_and_window() {
    let _serial = serial();
    // longformer-base's head width (64) and window (512), 600 tokens: the unrolled kernels the
    // base model runs (their tiles sized to fit the software GPU's 32 KiB of shared memory).
    check(
        "base head width",
        config(vec![512], AttentionDilation::Uniform(1), false)
            .with_hidden_size(128)
            .with_num_attention_heads(2)
            .with_intermediate_size(256)
            .with_max_position_embeddings(700),
        &[600, 300],
    );
}

/// The kernels read head rows as vectors of 4 floats when the head width allows, else of 2 or 1:
/// head widths 6 and 5 take the narrower reads.
#[test]
fn fused_equals_band_path_at_head_widths_not_divisible_by_four() {
    let _serial = serial();
    for hidden in [24, 20] {
        check(
            &format!("head width {}", hidden / 4),
            config(vec![6, 30], AttentionDilation::Uniform(1), false).with_hidden_size(hidden),
            &[90, 41],
        );
    }
}

/// With the same seed, every backend drops the same probabilities: the CPU op and the GPU
/// kernels hash `(seed, row·head, query, key)` alike for the band, and `(seed, row, column)` of
/// `keep_scale`'s mask for the global slots, so a run is reproducible across devices.
#[test]
fn fused_dropout_drops_the_same_scores_on_every_backend() {
    use burn::backend::Dispatch;
    use burn::tensor::{Int, TensorData};
    use longformer_model::attention::fused::LocalAttentionOps;

    let _serial = serial();
    let [rows, heads, m, g, d] = [1, 2, 40, 3, 8];
    let (window, dropout) = (5, 0.3f64);
    let values = |n: usize, salt: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + salt * 104_729) % 211) as f32 / 211.0) - 0.5)
            .collect()
    };
    let run = |device: &Device, dropout: f64| -> Vec<f32> {
        let tensor = |shape: [usize; 4], salt: usize| {
            let n = shape.iter().product();
            Tensor::<4>::from_data(TensorData::new(values(n, salt), shape), device)
        };
        let [q, k, v] = [1, 2, 3].map(|salt| tensor([rows, heads, m, d], salt).into_dispatch());
        let [gk, gv] = [4, 5].map(|salt| tensor([rows, heads, g, d], salt).into_dispatch());
        let key_ok = Tensor::<2>::ones([rows, m], device).into_dispatch();
        let global_ok = Tensor::<2>::ones([rows, g], device).into_dispatch();
        // The band's key, the global slots'.
        let seed =
            Tensor::<1, Int>::from_data(TensorData::new(vec![123_457i64, 98_765], [2]), device);
        let (context, _lse) = <Dispatch as LocalAttentionOps>::local_attention_forward(
            q,
            k,
            v,
            gk,
            gv,
            key_ok,
            global_ok,
            seed.into_dispatch(),
            dropout,
            window,
            false,
            1,
        );
        Tensor::<4>::from_dispatch(context)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let all = devices();
    let (first_name, first_device) = &all[0];
    let reference = run(first_device, dropout);
    let moved = max_abs_diff(&reference, &run(first_device, 0.0));
    assert!(moved > 1e-3, "dropout changed nothing on {first_name}");
    for (name, device) in &all[1..] {
        let diff = max_abs_diff(&run(device, dropout), &reference);
        assert!(
            diff < 1e-5,
            "{name} and {first_name} drop different scores: outputs differ by {diff}"
        );
    }
}

/// More `(row, head)` pairs than one grid dimension holds (65,535): 5,462 rows of 12 heads, 65,544
/// pairs, which the GPU kernels spread over two grid dimensions. Outputs and gradients on every
/// device against flex's CPU op, on the same inputs.
#[test]
fn fused_covers_more_pairs_than_one_grid_dimension() {
    let _serial = serial();
    let all = devices();
    let (first_name, first_device) = &all[0];
    let [rows, heads] = [5_462, 12];
    let reference = many_pairs(first_device, rows, heads);
    for (name, device) in &all[1..] {
        let what = ["output", "dq", "dk", "dv", "d global k", "d global v"];
        for (what, (ours, theirs)) in what
            .iter()
            .zip(many_pairs(device, rows, heads).iter().zip(&reference))
        {
            let diff = max_abs_diff(ours, theirs);
            assert!(
                diff < 1e-5,
                "{name} vs {first_name}: {what} differs by {diff}"
            );
        }
    }
}

/// The fused op's output on `rows` rows of `heads` heads (6 tokens of head width 4, the last a
/// padding key, two global slots, the second empty, window 2), then the gradients of `q`, `k`,
/// `v` and the global keys and values; the same inputs on every device.
fn many_pairs(device: &Device, rows: usize, heads: usize) -> Vec<Vec<f32>> {
    use burn::tensor::TensorData;

    let [m, g, d] = [6, 2, 4];
    let data = |shape: [usize; 4], salt: usize| {
        let n: usize = shape.iter().product();
        let values = (0..n)
            .map(|i| (((i * 7919 + salt * 104_729) % 211) as f32 / 211.0) - 0.5)
            .collect::<Vec<_>>();
        TensorData::new(values, shape)
    };
    let ad = device.clone().autodiff();
    let tensor = |shape, salt| Tensor::<4>::from_data(data(shape, salt), &ad).require_grad();
    let [q, k, v] = [1, 2, 3].map(|salt| tensor([rows, heads, m, d], salt));
    let [gk, gv] = [4, 5].map(|salt| tensor([rows, heads, g, d], salt));
    let key_ok = (0..rows * m)
        .map(|i| f32::from(u8::from(i % m < m - 1)))
        .collect::<Vec<_>>();
    let key_ok = Tensor::<2>::from_data(TensorData::new(key_ok, [rows, m]), &ad);
    let global_ok =
        Tensor::<2>::from_data(TensorData::new([1.0f32, 0.0].repeat(rows), [rows, g]), &ad);
    let out = fused_local_attention(
        q.clone(),
        k.clone(),
        v.clone(),
        Some((gk.clone(), gv.clone())),
        key_ok,
        global_ok,
        2,
        false,
        0.0,
        DropoutSeed::new(0),
    );
    let flat = |t: Tensor<4>| t.into_data().iter::<f32>().collect::<Vec<_>>();
    let mut all = vec![flat(out.clone().inner())];
    let weights = Tensor::<4>::from_data(data([rows, heads, m, d], 6), &ad);
    let grads = (out * weights).sum().backward();
    for input in [q, k, v, gk, gv] {
        all.push(flat(input.grad(&grads).expect("a gradient")));
    }
    all
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
}
