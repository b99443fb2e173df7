//! A name -> tensor store that checks every lookup against the shape the config implies and
//! reports missing, misshapen and unused tensors as typed errors.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Shape, Tensor};

use crate::error::{Error, Result};

/// Weight tensors by diffusers name, read once from a safetensors file (or given in memory).
pub(crate) struct Weights {
    tensors: HashMap<String, Tensor>,
    source: String,
    dtype: DType,
    device: Device,
    used: RefCell<BTreeSet<String>>,
}

impl Weights {
    pub(crate) fn from_file(path: &Path, dtype: DType, device: &Device) -> Result<Weights> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(Error::ModelFile {
                path: shown,
                reason: "no such file (expected diffusers' diffusion_pytorch_model.safetensors; a \
                         .bin-only checkpoint must be converted to safetensors first)"
                    .into(),
            });
        }
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| Error::ModelFile {
            path: shown.clone(),
            reason: format!("not a readable safetensors file ({e}); re-download or re-export it"),
        })?;
        Ok(Weights::new(tensors, shown, dtype, device))
    }

    pub(crate) fn new(tensors: HashMap<String, Tensor>, source: String, dtype: DType, device: &Device) -> Weights {
        Weights { tensors, source, dtype, device: device.clone(), used: RefCell::new(BTreeSet::new()) }
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The tensor `name`, checked to have `shape`, in the model's dtype and device.
    pub(crate) fn get(&self, name: &str, shape: impl Into<Shape>) -> Result<Tensor> {
        let expected: Shape = shape.into();
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::MissingWeight { name: name.to_string(), file: self.source.clone() })?;
        if t.shape() != &expected {
            return Err(Error::WeightShape { name: name.to_string(), expected, got: t.shape().clone() });
        }
        if !t.dtype().is_float() {
            return Err(Error::ModelFile {
                path: self.source.clone(),
                reason: format!("tensor `{name}` has dtype {:?}; weights must be floating point", t.dtype()),
            });
        }
        self.used.borrow_mut().insert(name.to_string());
        Ok(t.to_dtype(self.dtype)?.to_device(&self.device)?)
    }

    /// Fail if the file holds tensors the config did not ask for.
    pub(crate) fn check_all_used(&self) -> Result<()> {
        let used = self.used.borrow();
        let mut unused: Vec<&String> = self.tensors.keys().filter(|k| !used.contains(*k)).collect();
        if unused.is_empty() {
            return Ok(());
        }
        unused.sort();
        Err(Error::UnusedWeights { name: unused[0].clone(), count: unused.len(), file: self.source.clone() })
    }
}
