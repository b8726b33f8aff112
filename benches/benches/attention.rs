//! Criterion micro-benchmarks of one longformer-base attention layer at n = 4096 and 16384 with
//! 64 global tokens, on the CPU backends:
//!
//! - `local`: the band core alone (scores of the 2w+1 band and the global keys, softmax, values;
//!   no projections);
//! - `global`: the 64 global rows over the whole sequence (with their projections);
//! - `layer`: the whole attention of a layer as the model runs it;
//! - `global-keys`: the global rows at n = 4096 on flex with 1, 16 and 64 global tokens, their
//!   keys and values projected (HF's way) or folded into the global queries.
//!
//! `cargo bench --workspace --profile dev --bench attention` (`-- local` to pick one group), which
//! reuses the test build (`-p longformer-benches` would build Burn with other features). Each
//! sample is one call; at n = 16384 a sample takes seconds, so the groups take 10 samples.

use std::time::Duration;

use burn::tensor::Device;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use longformer_benches::AttentionCase;
use longformer_model::attention::LocalAttentionKernel;
use longformer_model::attention::global::GlobalKeys;

const LENGTHS: [usize; 2] = [4096, 16384];
const N_GLOBAL: usize = 64;

fn backends() -> Vec<(&'static str, Device)> {
    #[allow(deprecated)] // Burn 0.22 deprecates the ndarray backend; it is still supported
    let ndarray = Device::ndarray();
    vec![("flex", Device::flex()), ("ndarray", ndarray)]
}

fn attention(c: &mut Criterion) {
    for part in ["local", "global", "layer"] {
        let mut group = c.benchmark_group(part);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(10));
        for (backend, device) in backends() {
            for n in LENGTHS {
                let case = AttentionCase::new(n, N_GLOBAL, &device);
                group.throughput(Throughput::Elements(n as u64));
                group.bench_with_input(BenchmarkId::new(backend, n), &case, |b, case| match part {
                    // Projections are made outside the timed call.
                    "local" => b.iter_batched(
                        || case.local_heads(),
                        |heads| case.run_local(heads),
                        BatchSize::PerIteration,
                    ),
                    "global" => b.iter(|| case.run_global()),
                    _ => b.iter(|| case.run_layer()),
                });
            }
        }
        group.finish();
    }
}

fn global_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("global-keys");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let device = Device::flex();
    for n_global in [1, 16, 64] {
        let case = AttentionCase::new(4096, n_global, &device);
        for (name, keys, kernel) in [
            (
                "projected",
                GlobalKeys::Projected,
                LocalAttentionKernel::Reference,
            ),
            (
                "projected-fused",
                GlobalKeys::Projected,
                LocalAttentionKernel::Fused,
            ),
            ("folded", GlobalKeys::Folded, LocalAttentionKernel::Auto),
        ] {
            group.bench_with_input(BenchmarkId::new(name, n_global), &case, |b, case| {
                b.iter(|| case.run_global_with(keys, kernel))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, attention, global_keys);
criterion_main!(benches);
