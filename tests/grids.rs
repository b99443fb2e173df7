//! Sampling grids and beta tables equal diffusers' (0.42.1, fixtures from
//! `tools/make_fixtures.py`) for 1000 training steps and n in {1, 4, 7, 10, 30, 50, 999}.

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use common::fixture;
use diffusion_samplers::*;

const NS: [usize; 7] = [1, 4, 7, 10, 30, 50, 999];

fn grids() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("diffusers_grids.safetensors"), &Device::Cpu).unwrap()
}

fn vec(t: &HashMap<String, Tensor>, key: &str) -> Vec<f64> {
    t.get(key)
        .unwrap_or_else(|| panic!("fixture lacks {key}"))
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn schedule() -> DiscreteVp {
    DiscreteVp::linear(1e-4, 0.02, 1000).unwrap()
}

/// Our schedule on diffusers' own float32 `alphas_cumprod` table: the grids are then compared
/// for the spacing logic alone (the tables themselves are compared in `beta_tables`).
fn diffusers_table(g: &HashMap<String, Tensor>) -> DiscreteVp {
    DiscreteVp::new(BetaSchedule::AlphasCumprod(vec(g, "alphas_cumprod.linear")), 1000).unwrap()
}

fn timesteps(grid: &Grid, round: impl Fn(f64) -> f64) -> Vec<f64> {
    grid.points().iter().filter(|p| !p.is_clean()).map(|p| round(p.t)).collect()
}

fn ksigmas(grid: &Grid) -> Vec<f64> {
    grid.points().iter().map(|p| if p.is_clean() { 0.0 } else { p.ksigma() }).collect()
}

/// diffusers stores sigmas in float32.
const F32_SIGMA_REL: f64 = 1e-6;

fn assert_close(name: &str, ours: &[f64], theirs: &[f64], rel: f64) {
    assert_eq!(ours.len(), theirs.len(), "{name}: lengths differ: {ours:?} vs {theirs:?}");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!((a - b).abs() <= rel * b.abs().max(1e-12), "{name}[{i}]: ours {a} vs diffusers {b}");
    }
}

#[test]
fn ddim_timesteps() {
    let g = grids();
    let s = schedule();
    for n in NS {
        for (variant, spacing) in [
            ("leading0", Spacing::Leading { steps_offset: 0, skip_zero: false }),
            ("leading1", Spacing::Leading { steps_offset: 1, skip_zero: false }),
            ("linspace", Spacing::Linspace { round: true, skip_zero: false }),
            ("trailing", Spacing::Trailing),
        ] {
            let grid = Grid::new(&s, &spacing, n, End::Clean).unwrap();
            let expected = vec(&g, &format!("ddim.{variant}.{n}.timesteps"));
            assert_eq!(timesteps(&grid, |t| t), expected, "ddim {variant} n = {n}");
        }
    }
}

#[test]
fn dpm_solver_timesteps_and_sigmas() {
    let g = grids();
    let s = diffusers_table(&g);
    for n in NS {
        for (variant, spacing) in [
            ("leading0", Spacing::Leading { steps_offset: 0, skip_zero: true }),
            ("leading1", Spacing::Leading { steps_offset: 1, skip_zero: true }),
            ("linspace", Spacing::Linspace { round: true, skip_zero: true }),
            ("trailing", Spacing::Trailing),
        ] {
            if variant == "leading1" && n == 999 {
                // diffusers places timestep 1000 outside the 0..999 table and repeats sigma_max
                // (a zero-length first step); we refuse the repeated point
                assert_eq!(vec(&g, "dpm.leading1.999.timesteps")[0], 1000.0);
                let err = Grid::new(&s, &spacing, n, End::Clean).unwrap_err();
                assert!(matches!(err, Error::InvalidGrid(_)), "{err}");
                continue;
            }
            let grid = Grid::new(&s, &spacing, n, End::Clean).unwrap();
            assert_eq!(
                timesteps(&grid, |t| t),
                vec(&g, &format!("dpm.{variant}.{n}.timesteps")),
                "dpm {variant} n = {n}"
            );
            // diffusers stores its sigmas in float32
            assert_close(
                &format!("dpm {variant} n = {n} sigmas"),
                &ksigmas(&grid),
                &vec(&g, &format!("dpm.{variant}.{n}.sigmas")),
                F32_SIGMA_REL,
            );
        }
    }
}

#[test]
fn karras_and_exponential_sigmas() {
    let g = grids();
    let s = diffusers_table(&g);
    for n in NS {
        let karras = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, n, End::Clean).unwrap();
        assert_close(
            &format!("karras n = {n}"),
            &ksigmas(&karras),
            &vec(&g, &format!("dpm.karras.{n}.sigmas")),
            F32_SIGMA_REL,
        );
        // diffusers rounds karras and lu timesteps to integers, and truncates exponential ones
        let unrounded = vec(&g, &format!("dpm.karras.{n}.timesteps_unrounded"));
        for (a, b) in timesteps(&karras, |t| t).iter().zip(&unrounded) {
            assert!((a - b).abs() < 1e-4, "karras n = {n}: continuous t {a} vs {b}");
        }
        assert_eq!(
            timesteps(&karras, f64::round_ties_even),
            vec(&g, &format!("dpm.karras.{n}.timesteps")),
            "karras n = {n}"
        );

        let exp = Grid::new(&s, &Spacing::Exponential, n, End::Clean).unwrap();
        assert_close(
            &format!("exponential n = {n}"),
            &ksigmas(&exp),
            &vec(&g, &format!("dpm.exponential.{n}.sigmas")),
            F32_SIGMA_REL,
        );
        assert_eq!(
            timesteps(&exp, f64::trunc),
            vec(&g, &format!("dpm.exponential.{n}.timesteps")),
            "exponential n = {n}"
        );
        let lu = Grid::new(&s, &Spacing::UniformLambda, n, End::Clean).unwrap();
        assert_close(
            &format!("lu n = {n}"),
            &ksigmas(&lu),
            &vec(&g, &format!("dpm.lu_lambdas.{n}.sigmas")),
            F32_SIGMA_REL,
        );
        assert_eq!(
            timesteps(&lu, f64::round_ties_even),
            vec(&g, &format!("dpm.lu_lambdas.{n}.timesteps")),
            "lu n = {n}"
        );
    }
}

#[test]
fn beta_tables() {
    let g = grids();
    let linear = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    assert_close("linear", linear.alphas_cumprod(), &vec(&g, "alphas_cumprod.linear"), 1e-6);
    let scaled = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    assert_close("scaled_linear", scaled.alphas_cumprod(), &vec(&g, "alphas_cumprod.scaled_linear"), 1e-6);
    // the cosine schedule in float64 equals diffusers' formula evaluated in float64 to rounding,
    // and its float32 table to float32 precision; candle's copy (integer division) fails both
    let cos = DiscreteVp::new(BetaSchedule::SquaredCosCapV2 { max_beta: 0.999 }, 1000).unwrap();
    assert_close(
        "squaredcos_cap_v2 f64",
        cos.alphas_cumprod(),
        &vec(&g, "alphas_cumprod_f64.squaredcos_cap_v2"),
        1e-12,
    );
    assert_close("squaredcos_cap_v2 f32", cos.alphas_cumprod(), &vec(&g, "alphas_cumprod.squaredcos_cap_v2"), 2e-5);
}

/// `trailing` is numpy's `round(arange(N, 0, -N / n)) - 1`: numpy's arange steps by
/// `(N - N/n) - N`, not `N/n`, so at 48 steps of 1000 the timesteps 937.5 - 1 etc. land just below
/// the tie and round down. Expected values from numpy 2 (`np.round(np.arange(1000, 0, -1000/48)) - 1`)
/// at the indices where the exact decimal would round the other way.
#[test]
fn trailing_follows_numpy_arange() {
    let s = schedule();
    let g = Grid::new(&s, &Spacing::Trailing, 48, End::Clean).unwrap();
    let t = timesteps(&g, |t| t);
    assert_eq!(t.len(), 48);
    assert_eq!((t[0], t[1], t[47]), (999.0, 978.0, 20.0));
    assert_eq!([t[3], t[15], t[27], t[39]], [936.0, 686.0, 436.0, 186.0]);
}
