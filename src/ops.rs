//! `lincomb`: the one tensor primitive every solver step goes through.
//!
//! A solver step is `x_next = sum_i c_i * x_i` with host f64 coefficients. Writing every update
//! through this function keeps the step at one pass over memory once the fused kernel lands, and
//! keeps the unfused path as the reference.

use candle_core::Tensor;

use crate::error::{Error, Result};

/// `sum_i c_i * x_i` over tensors of one shape, dtype and device.
///
/// Terms with a zero coefficient are skipped (their tensors are not read), so a term may be
/// non-finite when its weight is exactly zero. Coefficients are applied in the tensors' dtype;
/// keep the working state in F32 or F64.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::lincomb;
/// let a = Tensor::new(&[1.0f64, 2.0], &Device::Cpu)?;
/// let b = Tensor::new(&[10.0f64, 20.0], &Device::Cpu)?;
/// let y = lincomb(&[(2.0, &a), (0.5, &b)])?;
/// assert_eq!(y.to_vec1::<f64>()?, vec![7.0, 14.0]);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn lincomb(terms: &[(f64, &Tensor)]) -> Result<Tensor> {
    let first = terms
        .first()
        .ok_or_else(|| Error::InvalidConfig("lincomb needs at least one term".into()))?
        .1;
    let mut acc: Option<Tensor> = None;
    for &(c, x) in terms {
        if x.dims() != first.dims() {
            return Err(Error::InvalidConfig(format!(
                "lincomb terms must share one shape, got {:?} and {:?}",
                first.dims(),
                x.dims()
            )));
        }
        if c == 0.0 {
            continue;
        }
        let term = if c == 1.0 { x.clone() } else { x.affine(c, 0.0)? };
        acc = Some(match acc {
            None => term,
            Some(a) => (a + term)?,
        });
    }
    match acc {
        Some(a) => Ok(a),
        None => Ok(first.zeros_like()?),
    }
}
