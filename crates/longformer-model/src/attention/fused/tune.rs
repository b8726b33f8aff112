//! Autotuning of the fused kernels' launch shapes (the `autotune` feature, as Burn's own
//! kernels): the first launch of each kernel for a problem size measures
//! [`LaunchShape::standard`] and the [`TUNED_SHAPES`] that fit the device (and for the key-side
//! kernel each of them as two launches, `dk` then `dv`), with CubeCL's tuner, and every later
//! launch of that size uses the fastest. Results are kept per device and
//! problem key (head width; sequence length, `(row, head)` pairs, window and global slots
//! rounded to powers of two; causal; dropout), in CubeCL's autotune cache. Every candidate
//! computes the same values, in the same order: only the speed differs.
//!
//! Built with every GPU build (its tests run on the software GPU in CI); used only with
//! `autotune`, where [`super::cube`] calls it instead of the standard shape.
#![cfg_attr(not(feature = "autotune"), allow(dead_code))]

use burn_cubecl::CubeTuneId;
use burn_cubecl::cubecl;
use burn_cubecl::tensor::CubeTensor;
use cubecl::AutotuneKey;
use cubecl::tune::{LocalTuner, Tunable, TunableSet, local_tuner};
use serde::{Deserialize, Serialize};

use super::cube::{
    BackwardLaunch, Band, ForwardLaunch, LaunchShape, TUNED_SHAPES, launch_dk_then_dv, launch_dkdv,
    launch_dq, launch_forward,
};

/// What a tuned launch shape is kept for.
#[derive(Hash, Eq, PartialEq, Debug, Clone, Serialize, Deserialize, AutotuneKey)]
pub struct BandKernelKey {
    /// Head width (sets the vector width and the tiles' bytes).
    head_dim: usize,
    /// Tokens per row.
    #[autotune(anchor)]
    seq_len: usize,
    /// `(row, head)` pairs: with `seq_len`, the number of cubes.
    #[autotune(anchor)]
    pairs: usize,
    /// One-sided window.
    #[autotune(anchor)]
    window: usize,
    /// Global slots (forward only; 0 for the backward kernels).
    #[autotune(anchor)]
    n_global: usize,
    /// Causal window.
    causal: bool,
    /// Dropout in the kernel.
    dropout: bool,
    /// Shared memory a tuned shape may use on the device (its limit, at most 48 KiB): which
    /// shapes fit, so that a result kept for a device with more is not replayed on one with less.
    shared_limit: usize,
}

impl BandKernelKey {
    fn of(q: &CubeTensor, n_global: usize, band: Band) -> Self {
        let [rows, heads, m, d] = q.meta.shape().dims::<4>();
        let Band {
            window,
            causal,
            dropout,
            ..
        } = band;
        let shared_limit = LaunchShape::shared_limit(head_and_shared(q).1);
        Self::new(
            d,
            m,
            rows * heads,
            window,
            n_global,
            causal,
            dropout > 0.0,
            shared_limit,
        )
    }
}

/// The tensors of one kernel's launch, as the tuner sees them.
trait KernelLaunch: Clone + Send + Sync + 'static {
    /// The queries (their shape and device stand for the launch's).
    fn q(&self) -> &CubeTensor;
    /// What a tuned shape is kept for.
    fn key(&self) -> BandKernelKey;
}

impl KernelLaunch for ForwardLaunch {
    fn q(&self) -> &CubeTensor {
        &self.q
    }

    fn key(&self) -> BandKernelKey {
        let g = self.global_k.meta.shape().dims::<4>()[2];
        BandKernelKey::of(&self.q, g, self.band)
    }
}

impl KernelLaunch for BackwardLaunch {
    fn q(&self) -> &CubeTensor {
        &self.q
    }

    fn key(&self) -> BandKernelKey {
        BandKernelKey::of(&self.q, 0, self.band)
    }
}

/// Head width and the device's shared memory per cube.
fn head_and_shared(q: &CubeTensor) -> (usize, usize) {
    let d = q.meta.shape().dims::<4>()[3];
    (d, q.client.properties().hardware.max_shared_memory_size)
}

/// One way to run a kernel with a given shape, and the prefix of its tunables' names.
type Variant<I> = (&'static str, fn(LaunchShape, &I));

/// The tunables of one kernel: for each variant, the standard shape first, then every
/// [`TUNED_SHAPES`] entry.
fn tunables<I: KernelLaunch>(variants: &[Variant<I>]) -> TunableSet<BandKernelKey, I, ()> {
    let mut set = TunableSet::new_cloning_inputs(I::key);
    for &(prefix, launch) in variants {
        set = set.with(Tunable::new(&format!("{prefix}standard"), move |t: I| {
            let (d, _) = head_and_shared(t.q());
            launch(LaunchShape::standard(d), &t);
            Ok::<(), String>(())
        }));
        for (block, tile) in TUNED_SHAPES {
            set = set.with(Tunable::new(
                &format!("{prefix}block{block}-tile{tile}"),
                move |t: I| {
                    let (d, shared) = head_and_shared(t.q());
                    let shape = LaunchShape::tuned(d, block, tile, shared)?;
                    launch(shape, &t);
                    Ok::<(), String>(())
                },
            ));
        }
    }
    set
}

/// The fastest of `variants` and shapes `tuner` knows for the launch's key on its device
/// (timing them all first when it knows none).
fn tuned<I: KernelLaunch>(
    tuner: &'static LocalTuner<BandKernelKey, CubeTuneId>,
    t: I,
    variants: &'static [Variant<I>],
) {
    let client = t.q().client.clone();
    let id = CubeTuneId::new(&client, &t.q().device);
    let set = tuner.init(&id, move || tunables(variants));
    tuner.execute(&id, &client, set, t)
}

/// [`launch_forward`] with the fastest shape for its key.
pub(super) fn tuned_forward(t: ForwardLaunch) {
    static TUNER: LocalTuner<BandKernelKey, CubeTuneId> = local_tuner!("forward");
    tuned(&TUNER, t, &[("", launch_forward)])
}

/// [`launch_dq`] with the fastest shape for its key.
pub(super) fn tuned_dq(t: BackwardLaunch) {
    static TUNER: LocalTuner<BandKernelKey, CubeTuneId> = local_tuner!("dq");
    tuned(&TUNER, t, &[("", launch_dq)])
}

/// `dk` and `dv` by the faster of [`launch_dkdv`] and [`launch_dk_then_dv`], each with the
/// fastest shape for its key.
pub(super) fn tuned_dkdv(t: BackwardLaunch) {
    static TUNER: LocalTuner<BandKernelKey, CubeTuneId> = local_tuner!("dkdv");
    tuned(
        &TUNER,
        t,
        &[("", launch_dkdv), ("split-", launch_dk_then_dv)],
    )
}

#[cfg(test)]
mod tests {
    use burn::backend::ops::IntTensorOps;
    use burn::backend::{BackendTypes, DispatchDevice};
    use burn::tensor::{Device, TensorData};
    use burn_cubecl::CubeBackend;

    use super::super::ops::LocalAttentionOps;
    use super::*;
    use crate::host::{read, write};
    use crate::test_devices::values;

    type CubeDevice = <CubeBackend as BackendTypes>::Device;

    /// The software GPU's CubeCL device (`None` where `LONGFORMER_SKIP_WGPU=1`).
    fn cube_device() -> Option<CubeDevice> {
        if std::env::var("LONGFORMER_SKIP_WGPU").is_ok_and(|v| v == "1") {
            return None;
        }
        match Device::wgpu(Default::default()).as_dispatch() {
            DispatchDevice::Cube(device) => Some(device.clone()),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    fn float(device: &CubeDevice, shape: &[usize], salt: u64) -> CubeTensor {
        let n = shape.iter().product();
        write::<CubeBackend>(values(n, salt), shape.to_vec(), device)
    }

    /// `1.0` or `0.0` flags, about a fifth of them zero.
    fn flags(device: &CubeDevice, shape: &[usize], salt: u64) -> CubeTensor {
        let n = shape.iter().product();
        let data = values(n, salt)
            .into_iter()
            .map(|x| if x < -0.6 { 0.0 } else { 1.0 })
            .collect();
        write::<CubeBackend>(data, shape.to_vec(), device)
    }

    fn zeros(device: &CubeDevice, shape: &[usize]) -> CubeTensor {
        let n = shape.iter().product();
        write::<CubeBackend>(vec![0.0; n], shape.to_vec(), device)
    }

    /// Inputs with every feature the kernels branch on: two rows of two heads, 150 tokens
    /// (several cubes of every tuned block, the last one partial), a window wider than a tile,
    /// masked keys, three global slots, dropout.
    fn problem(device: &CubeDevice, d: usize) -> (ForwardLaunch, BackwardLaunch) {
        let (rows, heads, m, g) = (2, 2, 150, 3);
        let qkv = [rows, heads, m, d];
        let band = Band {
            window: 40,
            causal: false,
            dropout: 0.1,
            slot_chunks: 1,
        };
        let seed = CubeBackend::int_from_data(TensorData::new(vec![12345i32, 678], [2]), device);
        let forward = ForwardLaunch {
            q: float(device, &qkv, 1),
            k: float(device, &qkv, 2),
            v: float(device, &qkv, 3),
            global_k: float(device, &[rows, heads, g, d], 4),
            global_v: float(device, &[rows, heads, g, d], 5),
            key_ok: flags(device, &[rows, m], 6),
            global_ok: flags(device, &[rows, g], 7),
            seed: seed.clone(),
            band,
            out: zeros(device, &qkv),
            lse: zeros(device, &[rows, heads, m]),
        };
        let backward = BackwardLaunch {
            q: forward.q.clone(),
            k: forward.k.clone(),
            v: forward.v.clone(),
            key_ok: forward.key_ok.clone(),
            lse: float(device, &[rows, heads, m], 9),
            delta: float(device, &[rows, heads, m], 10),
            grad: float(device, &qkv, 11),
            seed,
            band,
            dq: zeros(device, &qkv),
            dk: zeros(device, &qkv),
            dv: zeros(device, &qkv),
        };
        (forward, backward)
    }

    /// The outputs of the three kernels launched with `shape` (`None`: tuned), `dk` and `dv` in
    /// two launches when `split`.
    fn outputs(
        device: &CubeDevice,
        d: usize,
        shape: Option<LaunchShape>,
        split: bool,
    ) -> Vec<Vec<f32>> {
        let (forward, backward) = problem(device, d);
        match shape {
            Some(shape) => {
                launch_forward(shape, &forward);
                launch_dq(shape, &backward);
                if split {
                    launch_dk_then_dv(shape, &backward);
                } else {
                    launch_dkdv(shape, &backward);
                }
            }
            None => {
                tuned_forward(forward.clone());
                tuned_dq(backward.clone());
                tuned_dkdv(backward.clone());
            }
        }
        [
            &forward.out,
            &forward.lse,
            &backward.dq,
            &backward.dk,
            &backward.dv,
        ]
        .map(|t| read::<CubeBackend>(t.clone()))
        .to_vec()
    }

    /// What [`outputs`] returns, in order.
    const NAMES: [&str; 5] = ["context", "lse", "dq", "dk", "dv"];

    /// Every tuned shape that fits the software GPU, and `dk` and `dv` in two launches, walk the
    /// same keys in the same order as the standard shape does: identical outputs from all three
    /// kernels (head width 32: every shape fits its 32 KiB; 6: vectors of 2, tiles larger than
    /// the rows of a short row span).
    #[test]
    fn every_tuned_shape_computes_what_the_standard_shape_does() {
        let Some(device) = cube_device() else { return };
        let shared = device.client().properties().hardware.max_shared_memory_size;
        for d in [32, 6] {
            let standard = LaunchShape::standard(d);
            let expected = outputs(&device, d, Some(standard), false);
            for (name, values) in NAMES.iter().zip(&expected) {
                assert!(
                    values.iter().all(|x| x.is_finite()) && values.iter().any(|x| *x != 0.0),
                    "{name}: the standard shape computed nothing useful"
                );
            }
            let fitting: Vec<LaunchShape> = TUNED_SHAPES
                .iter()
                .filter_map(|&(block, tile)| LaunchShape::tuned(d, block, tile, shared).ok())
                .collect();
            assert!(
                fitting.len() >= 4,
                "d = {d}: only {} tuned shapes fit {shared} bytes",
                fitting.len()
            );
            for shape in fitting.into_iter().chain([standard]) {
                for split in [false, true] {
                    let ours = outputs(&device, d, Some(shape), split);
                    for (name, (a, b)) in NAMES.iter().zip(expected.iter().zip(&ours)) {
                        assert_eq!(
                            a, b,
                            "d = {d}, {shape}, split {split}: {name} differs from the standard shape"
                        );
                    }
                }
            }
        }
    }

    /// More `(row, head)` pairs than a grid dimension holds (65,535): 9,363 rows of 7 heads,
    /// 65,541 pairs, spread over two layers of 32,771 cubes (the last one idle). The first and
    /// the last row's outputs from all three kernels are those of the same row launched alone,
    /// bit for bit.
    #[test]
    fn pairs_past_one_grid_dimension_compute_their_own_rows() {
        let Some(device) = cube_device() else { return };
        let ([rows, heads, m, d], g) = ([9_363, 7, 20, 4], 2);
        // The inputs in `ForwardLaunch`/`BackwardLaunch` order (q, k, v, global k and v, key_ok,
        // global_ok, lse, delta, grad), each of a kind of shape, whose values per row are
        // `per_row[kind]`; host values of the whole problem, rows first.
        let kinds = [0, 0, 0, 1, 1, 2, 3, 4, 4, 0];
        let per_row = [heads * m * d, heads * g * d, m, g, heads * m];
        let inputs: Vec<Vec<f32>> = kinds
            .iter()
            .enumerate()
            .map(|(salt, &kind)| {
                let values = values(rows * per_row[kind], salt as u64 + 1);
                match salt {
                    // key_ok, global_ok: flags.
                    5..=6 => values
                        .iter()
                        .map(|&x| f32::from(u8::from(x >= -0.6)))
                        .collect(),
                    _ => values,
                }
            })
            .collect();
        let outputs_of = |first: usize, count: usize| -> Vec<Vec<f32>> {
            let shapes = [
                vec![count, heads, m, d],
                vec![count, heads, g, d],
                vec![count, m],
                vec![count, g],
                vec![count, heads, m],
            ];
            let t = |i: usize| {
                let n = per_row[kinds[i]];
                let rows = inputs[i][first * n..(first + count) * n].to_vec();
                write::<CubeBackend>(rows, shapes[kinds[i]].clone(), &device)
            };
            // No dropout: its hash takes the pair's index, which differs for a row alone.
            let band = Band {
                window: 3,
                causal: false,
                dropout: 0.0,
                slot_chunks: 1,
            };
            let seed = CubeBackend::int_from_data(TensorData::new(vec![777i32, 888], [2]), &device);
            let empty = |kind: usize| {
                let n = shapes[kind].iter().product();
                write::<CubeBackend>(vec![0.0; n], shapes[kind].clone(), &device)
            };
            let forward = ForwardLaunch {
                q: t(0),
                k: t(1),
                v: t(2),
                global_k: t(3),
                global_v: t(4),
                key_ok: t(5),
                global_ok: t(6),
                seed: seed.clone(),
                band,
                out: empty(0),
                lse: empty(4),
            };
            let backward = BackwardLaunch {
                q: forward.q.clone(),
                k: forward.k.clone(),
                v: forward.v.clone(),
                key_ok: forward.key_ok.clone(),
                lse: t(7),
                delta: t(8),
                grad: t(9),
                seed,
                band,
                dq: empty(0),
                dk: empty(0),
                dv: empty(0),
            };
            let shape = LaunchShape::standard(d);
            launch_forward(shape, &forward);
            launch_dq(shape, &backward);
            launch_dkdv(shape, &backward);
            [
                forward.out,
                forward.lse,
                backward.dq,
                backward.dk,
                backward.dv,
            ]
            .map(read::<CubeBackend>)
            .to_vec()
        };
        let all = outputs_of(0, rows);
        for row in [0, rows - 1] {
            let alone = outputs_of(row, 1);
            for (name, (all, alone)) in NAMES.iter().zip(all.iter().zip(&alone)) {
                let n = alone.len();
                assert!(
                    alone.iter().any(|x| *x != 0.0),
                    "row {row}: {name} is all zero"
                );
                assert!(
                    all[row * n..(row + 1) * n] == alone[..],
                    "row {row}: {name} differs from the row launched alone"
                );
            }
        }
    }

    /// `t` (`[rows, heads, m, d]`) with the same values, laid out in memory with its axes in
    /// the order `memory` (`[0, 2, 1, 3]`: `[rows, m, heads, d]`, the heads of a projection
    /// split by a view; `[0, 1, 3, 2]`: the head axis strided).
    fn laid_out(t: &CubeTensor, memory: [usize; 4], device: &CubeDevice) -> CubeTensor {
        let dims = t.meta.shape().dims::<4>();
        let memory_dims = memory.map(|axis| dims[axis]);
        let mut laid = vec![0.0; dims.iter().product()];
        for (at, x) in read::<CubeBackend>(t.clone()).into_iter().enumerate() {
            let index = [
                at / (dims[1] * dims[2] * dims[3]),
                at / (dims[2] * dims[3]) % dims[1],
                at / dims[3] % dims[2],
                at % dims[3],
            ];
            let offset = memory
                .iter()
                .fold(0, |offset, &axis| offset * dims[axis] + index[axis]);
            laid[offset] = x;
        }
        let mut t = write::<CubeBackend>(laid, memory_dims.to_vec(), device);
        // Memory axis `k` holds logical axis `memory[k]`: back to the logical order.
        let mut logical = [0; 4];
        for (k, &axis) in memory.iter().enumerate() {
            logical[axis] = k;
        }
        t.meta
            .permute(&logical)
            .expect("a permutation of four axes");
        t
    }

    /// The op's outputs (context, log-sum-exp, `dq`, `dk`, `dv`) for the inputs of
    /// [`problem`], each head tensor first passed through `layout`.
    fn op_outputs(
        device: &CubeDevice,
        d: usize,
        layout: &dyn Fn(&CubeTensor) -> CubeTensor,
    ) -> Vec<CubeTensor> {
        let (f, b) = problem(device, d);
        let (q, k, v) = (layout(&f.q), layout(&f.k), layout(&f.v));
        let (context, lse) = CubeBackend::local_attention_forward(
            q.clone(),
            k.clone(),
            v.clone(),
            layout(&f.global_k),
            layout(&f.global_v),
            f.key_ok,
            f.global_ok,
            f.seed,
            f.band.dropout,
            f.band.window,
            f.band.causal,
            f.band.slot_chunks,
        );
        let (dq, dk, dv) = CubeBackend::local_attention_band_backward(
            q,
            k,
            v,
            b.key_ok,
            b.lse,
            b.delta,
            layout(&b.grad),
            b.seed,
            b.band.dropout as f32,
            b.band.window,
            b.band.causal,
        );
        vec![context, lse, dq, dk, dv]
    }

    /// Heads split from a projection by a view (token-major) are read in place, and heads the
    /// kernels cannot read in place are copied: both give the contiguous inputs' outputs bit for
    /// bit. The context and the gradients come back token-major, so that merging the heads is a
    /// view.
    #[test]
    fn heads_are_read_and_written_in_place() {
        let Some(device) = cube_device() else { return };
        for d in [32, 6] {
            let expected: Vec<Vec<f32>> = op_outputs(&device, d, &|t| t.clone())
                .into_iter()
                .map(read::<CubeBackend>)
                .collect();
            let token_major = |t: &CubeTensor| laid_out(t, [0, 2, 1, 3], &device);
            let strided = |t: &CubeTensor| laid_out(t, [0, 1, 3, 2], &device);
            for (layout, outputs) in [
                ("token-major", op_outputs(&device, d, &token_major)),
                ("head axis strided", op_outputs(&device, d, &strided)),
            ] {
                for (name, (t, expected)) in NAMES.iter().zip(outputs.into_iter().zip(&expected)) {
                    if *name != "lse" {
                        let [rows, heads, m, _] = t.meta.shape().dims::<4>();
                        assert_eq!(
                            &t.meta.strides()[..],
                            &[m * heads * d, d, heads * d, 1],
                            "d = {d}, {layout}: {name} is not token-major"
                        );
                        assert!(rows > 1 && heads > 1);
                    }
                    assert_eq!(
                        &read::<CubeBackend>(t),
                        expected,
                        "d = {d}, {layout}: {name} differs from contiguous inputs'"
                    );
                }
            }
        }
    }

    /// The tuner measures the shapes on the device and launches one: its outputs are the
    /// standard shape's.
    #[test]
    fn the_tuned_launch_computes_what_the_standard_shape_does() {
        let Some(device) = cube_device() else { return };
        let d = 32;
        assert_eq!(
            outputs(&device, d, None, false),
            outputs(&device, d, Some(LaunchShape::standard(d)), false)
        );
    }
}
