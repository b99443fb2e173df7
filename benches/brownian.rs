//! The cost of Brownian-path noise: one `BrownianPath::noise` call per sampler step on successive
//! steps of a long grid (so every call evaluates one new noise level, the previous one being
//! cached, as in sampling), against drawing the same number of iid normals (`SeededNoise`).
//!
//! Run: `cargo bench --bench brownian -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion};
use diffusion_samplers::{BrownianPath, NoiseSource, SeededNoise};

const SHAPES: [[usize; 4]; 2] = [[1, 4, 64, 64], [4, 4, 128, 128]];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("brownian_noise");
    for shape in SHAPES {
        let id = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        let like = Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu).expect("tensor");
        // a long descending grid of noise levels: each call starts where the previous ended
        let sigmas: Vec<f64> = (0..10_000).map(|i| 14.6 * (1.0 - i as f64 / 10_000.0)).collect();
        for depth in [32, 40] {
            let mut w = BrownianPath::new(0, 0.0, 14.6).and_then(|w| w.with_depth(depth)).expect("path");
            let mut i = 0;
            group.bench_function(BenchmarkId::new(format!("depth{depth}"), &id), |b| {
                b.iter(|| {
                    let (s0, s1) = (sigmas[i % 9_999], sigmas[i % 9_999 + 1]);
                    i += 1;
                    black_box(w.noise(&like, s0, s1).expect("noise"))
                })
            });
        }
        let mut iid = SeededNoise::new(0);
        group.bench_function(BenchmarkId::new("iid", &id), |b| {
            b.iter(|| black_box(iid.noise_like(&like).expect("noise")))
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
