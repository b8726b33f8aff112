//! Criterion micro-benchmarks of one longformer-base attention layer at n = 4096 and 16384 with
//! 64 global tokens, on the CPU backends:
//!
//! - `local`: the band core alone (scores of the 2w+1 band and the global keys, softmax, values;
//!   no projections);
//! - `global`: the 64 global rows over the whole sequence (with their projections);
//! - `layer`: the whole attention of a layer as the model runs it.
//!
//! `cargo bench --workspace --profile dev --bench attention` (`-- local` to pick one group), which
//! reuses the test build (`-p longformer-benches` would build Burn with other features). Each
//! sample is one call; at n = 16384 a sample takes seconds, so the groups take 10 samples.

use std::time::Duration;

use burn::tensor::Device;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use longformer_benches::AttentionCase;

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

criterion_group!(benches, attention);
criterion_main!(benches);
