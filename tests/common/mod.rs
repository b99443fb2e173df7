//! Shared helpers for the integration tests.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use diffusion_samplers::SeededNoise;

/// Seeded standard normal `[n, d]` f64 tensor.
pub fn noise(n: usize, d: usize, seed: u64) -> Tensor {
    Tensor::from_vec(SeededNoise::new(seed).normal_vec(n * d), (n, d), &Device::Cpu).unwrap()
}

pub fn rms(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).unwrap().sqr().unwrap().mean_all().unwrap().to_dtype(candle_core::DType::F64).unwrap().to_scalar::<f64>().unwrap().sqrt()
}

pub fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_dtype(candle_core::DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// Least-squares slope of ln(err) against ln(n), negated (the convergence order).
pub fn order_slope(ns: &[usize], errs: &[f64]) -> f64 {
    let xs: Vec<f64> = ns.iter().map(|&n| (n as f64).ln()).collect();
    let ys: Vec<f64> = errs.iter().map(|e| e.ln()).collect();
    let mx = xs.iter().sum::<f64>() / xs.len() as f64;
    let my = ys.iter().sum::<f64>() / ys.len() as f64;
    let num: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    -num / den
}

pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}
