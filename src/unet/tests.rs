//! The fused CPU kernels against candle's composed operations (the reference path), on odd
//! sizes, concatenated and strided inputs, and every option the layers use.

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Tensor, D};

use super::config::TimeScaleShift;
use super::fused::{self, ConvParams, NormParams, Skip};
use super::kernels::{exp_f32, silu_f32, Act};
use super::layers::{ConvDownsample, ConvUpsample, ResnetBlock, ResnetResample, ResnetSpec, SpatialAttention};
use super::weights::Weights;
use crate::noise::SeededNoise;

fn randn(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = SeededNoise::new(seed).normal_vec(n).into_iter().map(|x| x as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Max |a - b| over max(1, max |b|): a relative error for O(1) outputs.
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let scale = b.iter().fold(1f64, |m, v| m.max(v.abs()));
    a.iter().zip(&b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// A `[B, C, H, W]` tensor that is not contiguous (the transpose of a `[B, C, W, H]` one).
fn strided(shape: [usize; 4], seed: u64) -> Tensor {
    let t = randn(&[shape[0], shape[1], shape[3], shape[2]], seed).transpose(2, 3).unwrap();
    assert!(!t.is_contiguous());
    t
}

#[test]
fn exp_and_silu_match_libm() {
    let mut worst = 0f64;
    for i in -87_000..88_000 {
        let x = i as f32 * 1e-3 + 1.7e-4;
        let want = (x as f64).exp();
        worst = worst.max(((exp_f32(x) as f64) - want).abs() / want);
    }
    assert!(worst < 3e-7, "exp_f32 max relative error {worst:.2e}");
    for x in [-100f32, -30.0, -5.0, -0.5, 0.0, 0.25, 3.0, 40.0, 100.0] {
        let want = x as f64 / (1.0 + (-x as f64).exp());
        assert!((silu_f32(x) as f64 - want).abs() <= 1e-6 * want.abs().max(1e-30), "silu({x})");
    }
    assert_eq!(silu_f32(-1e4), -0.0);
    assert_eq!(silu_f32(1e4), 1e4);
}

fn norm_reference(x: &Tensor, gamma: &Tensor, beta: &Tensor, groups: usize, act: Act) -> Tensor {
    let c = x.dim(1).unwrap();
    let gn = candle_nn::GroupNorm::new(gamma.clone(), beta.clone(), c, groups, 1e-5).unwrap();
    let y = gn.forward(x).unwrap();
    match act {
        Act::None => y,
        Act::Silu => candle_nn::ops::silu(&y).unwrap(),
    }
}

#[test]
fn group_norm_matches_composed_on_parts_strided_and_odd_sizes() {
    // 12 channels in 4 groups of 3, given as parts of 5 and 7 channels (groups straddle the
    // boundary), 5x7 pixels, batch 3; the second part strided; offset mean to test the variance
    for act in [Act::None, Act::Silu] {
        let a = (randn(&[3, 5, 5, 7], 1) * 2.0).unwrap();
        let b = (strided([3, 7, 5, 7], 2) + 3.0).unwrap();
        let gamma = randn(&[12], 3);
        let beta = randn(&[12], 4);
        let p = NormParams { weight: &gamma, bias: &beta, groups: 4, eps: 1e-5 };
        let got = fused::group_norm(&[&a, &b], &p, act).unwrap();
        let want = norm_reference(&Tensor::cat(&[&a, &b], 1).unwrap(), &gamma, &beta, 4, act);
        let err = rel_err(&got, &want);
        assert!(err < 2e-6, "{act:?}: {err:.2e}");
    }
    // one group of one channel, one pixel
    let x = randn(&[2, 1, 1, 1], 5);
    let (g, b) = (randn(&[1], 6), randn(&[1], 7));
    let p = NormParams { weight: &g, bias: &b, groups: 1, eps: 1e-5 };
    let err = rel_err(&fused::group_norm(&[&x], &p, Act::Silu).unwrap(), &norm_reference(&x, &g, &b, 1, Act::Silu));
    assert!(err < 1e-6, "{err:.2e}");
}

fn conv_reference(x: &Tensor, w: &Tensor, b: &Tensor, stride: usize, pad: usize) -> Tensor {
    let y = x.conv2d(w, pad, stride, 1, 1).unwrap();
    y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1)).unwrap()).unwrap()
}

#[test]
fn conv2d_matches_composed_for_every_geometry() {
    let (bsz, c1, c2, c_out, h, w) = (3, 4, 3, 6, 7, 9);
    let a = randn(&[bsz, c1, h, w], 10);
    let b = strided([bsz, c2, h, w], 11);
    let cat = Tensor::cat(&[&a, &b], 1).unwrap();
    let bias = randn(&[c_out], 12);
    for (k, stride, pad) in [(3, 1, 1), (3, 2, 1), (1, 1, 0), (3, 1, 0), (3, 2, 2), (1, 2, 0)] {
        let weight = randn(&[c_out, c1 + c2, k, k], 13);
        let p = ConvParams { weight: &weight, bias: &bias, stride, pad, pad_end: pad, upsample: false };
        let got = fused::conv2d(&[&a, &b], &p, Skip::None, 1.0).unwrap();
        let want = conv_reference(&cat, &weight, &bias, stride, pad);
        let err = rel_err(&got, &want);
        assert!(err < 2e-6, "k {k} stride {stride} pad {pad}: {err:.2e}");
    }
    let weight = randn(&[c_out, c1 + c2, 3, 3], 14);
    // diffusers' Downsample2D with padding 0: pad right and bottom by one, stride 2
    let p = ConvParams { weight: &weight, bias: &bias, stride: 2, pad: 0, pad_end: 1, upsample: false };
    let got = fused::conv2d(&[&a, &b], &p, Skip::None, 1.0).unwrap();
    let padded = cat.pad_with_zeros(D::Minus1, 0, 1).unwrap().pad_with_zeros(D::Minus2, 0, 1).unwrap();
    let err = rel_err(&got, &conv_reference(&padded, &weight, &bias, 2, 0));
    assert!(err < 2e-6, "pad right/bottom: {err:.2e}");
    // Upsample2D: nearest 2x, then the 3x3 convolution
    let p = ConvParams { weight: &weight, bias: &bias, stride: 1, pad: 1, pad_end: 1, upsample: true };
    let got = fused::conv2d(&[&a, &b], &p, Skip::None, 1.0).unwrap();
    let up = cat.upsample_nearest2d(2 * h, 2 * w).unwrap();
    let err = rel_err(&got, &conv_reference(&up, &weight, &bias, 1, 1));
    assert!(err < 2e-6, "upsample: {err:.2e}");
}

#[test]
fn conv2d_folds_residual_shortcut_and_scale() {
    let (bsz, c_in, c_out, h, w) = (2, 5, 4, 6, 5);
    let x = randn(&[bsz, c_in, h, w], 20);
    let weight = randn(&[c_out, c_in, 3, 3], 21);
    let bias = randn(&[c_out], 22);
    let conv = conv_reference(&x, &weight, &bias, 1, 1);
    let p = ConvParams { weight: &weight, bias: &bias, stride: 1, pad: 1, pad_end: 1, upsample: false };
    // identity residual (strided), output scale sqrt(2)
    let r = strided([bsz, c_out, h, w], 23);
    let got = fused::conv2d(&[&x], &p, Skip::Identity(&r), 2f64.sqrt()).unwrap();
    let want = ((&conv + &r).unwrap() / 2f64.sqrt()).unwrap();
    let err = rel_err(&got, &want);
    assert!(err < 2e-6, "identity: {err:.2e}");
    // 1x1 shortcut over a concatenation of two parts
    let (s1, s2) = (randn(&[bsz, 3, h, w], 24), strided([bsz, 2, h, w], 25));
    let w_sc = randn(&[c_out, 5, 1, 1], 26);
    let b_sc = randn(&[c_out], 27);
    let parts = [&s1, &s2];
    let got = fused::conv2d(&[&x], &p, Skip::Shortcut { parts: &parts, weight: &w_sc, bias: &b_sc }, 1.0).unwrap();
    let sc = conv_reference(&Tensor::cat(&parts, 1).unwrap(), &w_sc, &b_sc, 1, 0);
    let err = rel_err(&got, &(&conv + &sc).unwrap());
    assert!(err < 2e-6, "shortcut: {err:.2e}");
}

#[test]
fn conv2d_rejects_inconsistent_inputs() {
    let x = randn(&[1, 3, 4, 4], 30);
    let weight = randn(&[2, 4, 3, 3], 31); // 4 input channels, x has 3
    let bias = randn(&[2], 32);
    let p = ConvParams { weight: &weight, bias: &bias, stride: 1, pad: 1, pad_end: 1, upsample: false };
    assert!(fused::conv2d(&[&x], &p, Skip::None, 1.0).is_err());
    let weight = randn(&[2, 3, 5, 5], 33); // kernel larger than the padded 4x4 input
    let p = ConvParams { weight: &weight, bias: &bias, stride: 1, pad: 0, pad_end: 0, upsample: false };
    assert!(fused::conv2d(&[&x], &p, Skip::None, 1.0).is_err());
    let x64 = x.to_dtype(DType::F64).unwrap();
    assert!(!fused::usable(&x64));
}

/// Random weights for the layers under `name`, by the shapes the loader asks for.
fn weights(shapes: &[(&str, Vec<usize>)], seed: u64) -> Weights {
    let mut map = HashMap::new();
    for (i, (name, shape)) in shapes.iter().enumerate() {
        let t = (randn(shape, seed + i as u64) * 0.3).unwrap();
        map.insert(name.to_string(), t);
    }
    Weights::new(map, "test".into(), DType::F32, &Device::Cpu)
}

fn resnet_shapes(c_in: usize, c_out: usize, temb: usize, proj: usize) -> Vec<(&'static str, Vec<usize>)> {
    let mut v = vec![
        ("r.norm1.weight", vec![c_in]),
        ("r.norm1.bias", vec![c_in]),
        ("r.conv1.weight", vec![c_out, c_in, 3, 3]),
        ("r.conv1.bias", vec![c_out]),
        ("r.time_emb_proj.weight", vec![proj, temb]),
        ("r.time_emb_proj.bias", vec![proj]),
        ("r.norm2.weight", vec![c_out]),
        ("r.norm2.bias", vec![c_out]),
        ("r.conv2.weight", vec![c_out, c_out, 3, 3]),
        ("r.conv2.bias", vec![c_out]),
    ];
    if c_in != c_out {
        v.push(("r.conv_shortcut.weight", vec![c_out, c_in, 1, 1]));
        v.push(("r.conv_shortcut.bias", vec![c_out]));
    }
    v
}

#[test]
fn resnet_block_fused_matches_composed() {
    let temb = 16;
    let cases = [
        // (c_in parts, c_out, shift, output scale, resample)
        (vec![8], 8, TimeScaleShift::Default, 1.0, ResnetResample::None),
        (vec![8, 4], 8, TimeScaleShift::Default, 1.0, ResnetResample::None),
        (vec![4, 8], 8, TimeScaleShift::ScaleShift, 2f64.sqrt(), ResnetResample::None),
        (vec![8], 4, TimeScaleShift::Default, 1.0, ResnetResample::Up),
        (vec![8], 8, TimeScaleShift::ScaleShift, 1.0, ResnetResample::Down),
    ];
    for (i, (parts_c, c_out, shift, scale, resample)) in cases.into_iter().enumerate() {
        let c_in: usize = parts_c.iter().sum();
        let proj = if shift == TimeScaleShift::ScaleShift { 2 * c_out } else { c_out };
        let w = weights(&resnet_shapes(c_in, c_out, temb, proj), 100 * i as u64);
        let spec = ResnetSpec { temb, groups: 4, eps: 1e-5, shift };
        let block = ResnetBlock::load(&w, "r", c_in, c_out, spec, scale, resample).unwrap();
        let parts: Vec<Tensor> = parts_c
            .iter()
            .enumerate()
            .map(|(j, &c)| if j == 1 { strided([3, c, 6, 10], 50 + j as u64) } else { randn(&[3, c, 6, 10], 50) })
            .collect();
        let refs: Vec<&Tensor> = parts.iter().collect();
        let temb_act = candle_nn::ops::silu(&randn(&[1, temb], 60)).unwrap();
        let got = block.forward_fused(&refs, &temb_act).unwrap();
        let want = block.forward(&Tensor::cat(&refs, 1).unwrap(), &temb_act, false).unwrap();
        let err = rel_err(&got, &want);
        assert!(err < 5e-6, "case {i}: {err:.2e}");
    }
}

#[test]
fn attention_fused_matches_composed() {
    // (channels, head_dim, GroupNorm groups, rescale, H, W): several heads, one head, no norm,
    // more positions than one query block (256)
    for (i, (c, d, groups, rescale, h, w)) in [
        (8, 4, Some(2), 1.0, 3, 5),
        (6, 6, Some(3), 2f64.sqrt(), 4, 4),
        (8, 2, None, 1.0, 2, 3),
        (4, 4, Some(1), 1.0, 18, 17),
    ]
    .into_iter()
    .enumerate()
    {
        let mut shapes = vec![];
        for p in ["to_q", "to_k", "to_v"] {
            shapes.push((format!("a.{p}.weight"), vec![c, c]));
            shapes.push((format!("a.{p}.bias"), vec![c]));
        }
        shapes.push(("a.to_out.0.weight".into(), vec![c, c]));
        shapes.push(("a.to_out.0.bias".into(), vec![c]));
        if groups.is_some() {
            shapes.push(("a.group_norm.weight".into(), vec![c]));
            shapes.push(("a.group_norm.bias".into(), vec![c]));
        }
        let shapes: Vec<(&str, Vec<usize>)> = shapes.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
        let wts = weights(&shapes, 200 + 10 * i as u64);
        let attn = SpatialAttention::load(&wts, "a", c, d, groups, 1e-5, rescale).unwrap();
        let x = (strided([2, c, h, w], 70) * 2.0).unwrap();
        let got = attn.forward_fused(&x).unwrap();
        let want = attn.forward(&x, false).unwrap();
        let err = rel_err(&got, &want);
        assert!(err < 5e-6, "case {i}: {err:.2e}");
    }
}

#[test]
fn resamplers_fused_match_composed() {
    let shapes = [("c.weight", vec![5, 5, 3, 3]), ("c.bias", vec![5])];
    let w = weights(&shapes, 300);
    let x = randn(&[2, 5, 6, 7], 80);
    for padding in [0, 1] {
        let ds = ConvDownsample::load(&w, "c", 5, padding).unwrap();
        let err = rel_err(&ds.forward_fused(&x).unwrap(), &ds.forward(&x).unwrap());
        assert!(err < 2e-6, "downsample padding {padding}: {err:.2e}");
    }
    let us = ConvUpsample::load(&w, "c", 5).unwrap();
    let err = rel_err(&us.forward_fused(&x).unwrap(), &us.forward(&x).unwrap());
    assert!(err < 2e-6, "upsample: {err:.2e}");
}

/// The fused CUDA GroupNorm (+ SiLU) against candle-nn's composed GroupNorm on the same device.
/// Runs only where a CUDA device exists (it prints why it skipped otherwise).
#[cfg(feature = "cuda")]
#[test]
fn cuda_group_norm_matches_composed() {
    let Ok(dev) = Device::new_cuda(0) else {
        println!("skipped: no CUDA device");
        return;
    };
    // 12 channels in 4 groups, odd spatial size, an offset mean; F32, F16, BF16
    let x = (strided([3, 12, 5, 7], 1) + 3.0).unwrap().to_device(&dev).unwrap();
    let (gamma, beta) = (randn(&[12], 3).to_device(&dev).unwrap(), randn(&[12], 4).to_device(&dev).unwrap());
    for (dtype, tol) in [(DType::F32, 2e-6), (DType::F16, 2e-3), (DType::BF16, 2e-2)] {
        for act in [Act::None, Act::Silu] {
            let (x, g, b) = (x.to_dtype(dtype).unwrap(), gamma.to_dtype(dtype).unwrap(), beta.to_dtype(dtype).unwrap());
            let got = super::cuda::group_norm(&x, &g, &b, 4, 1e-5, act).unwrap();
            assert_eq!(got.dtype(), dtype);
            let want = norm_reference(
                &x.to_dtype(DType::F32).unwrap(),
                &g.to_dtype(DType::F32).unwrap(),
                &b.to_dtype(DType::F32).unwrap(),
                4,
                act,
            );
            let err = rel_err(&got.to_device(&Device::Cpu).unwrap(), &want.to_device(&Device::Cpu).unwrap());
            assert!(err < tol, "{dtype:?} {act:?}: {err:.2e}");
        }
    }
}

/// The whole model on a CUDA device (fused GroupNorm) against the CPU's fused kernels.
#[cfg(feature = "cuda")]
#[test]
fn cuda_forward_matches_cpu() {
    let Ok(dev) = Device::new_cuda(0) else {
        println!("skipped: no CUDA device");
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mnist-unet");
    let cpu = super::UNet2DModel::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let gpu = super::UNet2DModel::load(&dir, DType::F32, &dev).unwrap();
    let x = randn(&[4, 1, 32, 32], 9);
    for t in [999.0, 10.0] {
        let want = cpu.forward(&x, t).unwrap();
        let got = gpu.forward(&x.to_device(&dev).unwrap(), t).unwrap().to_device(&Device::Cpu).unwrap();
        let composed = gpu.forward_composed(&x.to_device(&dev).unwrap(), t).unwrap().to_device(&Device::Cpu).unwrap();
        let (err, err_c) = (rel_err(&got, &want), rel_err(&composed, &want));
        println!("t = {t}: fused CUDA vs CPU {err:.2e}, composed CUDA vs CPU {err_c:.2e}");
        // TF32 may be enabled for cuBLAS matmuls on the GPU: compare at that precision
        assert!(err < 1e-2 && err_c < 1e-2, "t = {t}: {err:.2e} / {err_c:.2e}");
    }
}
