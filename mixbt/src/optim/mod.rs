//! Optimisers with PyTorch's update rules, and the learning-rate / λ schedules of the original.
//!
//! Optimisers act only on the trainable parameters they are given ([`ParamStore::trainable`]);
//! BN running statistics are buffers and are never touched.
//!
//! [`ParamStore::trainable`]: crate::params::ParamStore::trainable

pub mod adam;
pub mod lars;
pub mod schedule;
pub mod sgd;

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

pub use adam::{Adam, AdamConfig};
pub use lars::{Lars, LarsConfig};
pub use schedule::{CosineAnnealing, ExponentialLr, LambdaRamp, MultiStepLr, WarmupCosine, WarmupMultiStep};
pub use sgd::{Sgd, SgdConfig};

use crate::Result;

/// A group of parameters sharing a learning rate (and, for LARS, a role).
#[derive(Clone)]
pub struct ParamGroup {
    pub params: Vec<(String, Var)>,
    pub lr: f64,
}

impl ParamGroup {
    pub fn new(params: Vec<(String, Var)>, lr: f64) -> Self {
        Self { params, lr }
    }
}

/// The interface shared by the optimisers.
pub trait Optimizer: Send {
    /// One update from the gradients in `grads` (parameters without a gradient are skipped, as
    /// PyTorch skips `p.grad is None`).
    fn step(&mut self, grads: &GradStore) -> Result<()>;
    /// Number of parameter groups.
    fn num_groups(&self) -> usize;
    fn lr(&self, group: usize) -> f64;
    fn set_lr(&mut self, group: usize, lr: f64);
    /// State tensors by name (moments, momentum buffers) for checkpoints.
    fn state_tensors(&self) -> BTreeMap<String, Tensor>;
    /// Scalar state (step counts) for checkpoints.
    fn state_scalars(&self) -> serde_json::Value;
    /// Restore [`state_tensors`](Self::state_tensors) and [`state_scalars`](Self::state_scalars).
    fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, scalars: &serde_json::Value) -> Result<()>;
}

/// Which optimiser a recipe uses (serialisable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// `torch.optim.Adam(lr, weight_decay)`: coupled L2 (`decoupled: false`), or AdamW.
    Adam(AdamConfig),
    /// The Barlow Twins LARS with two learning-rate groups.
    Lars(LarsConfig),
    Sgd(SgdConfig),
}

impl OptimizerConfig {
    /// Set the base learning rate the schedule multiplies: Adam's and SGD's `lr`, LARS's weight
    /// learning rate (`lr_weights`; its bias rate stays).
    pub fn set_base_lr(&mut self, lr: f64) {
        match self {
            OptimizerConfig::Adam(c) => c.lr = lr,
            OptimizerConfig::Sgd(c) => c.lr = lr,
            OptimizerConfig::Lars(c) => c.lr_weights = lr,
        }
    }
    /// The base learning rate of each parameter group (LARS: weights, then biases).
    pub fn base_lrs(&self) -> Vec<f64> {
        match self {
            OptimizerConfig::Adam(c) => vec![c.lr],
            OptimizerConfig::Sgd(c) => vec![c.lr],
            OptimizerConfig::Lars(c) => vec![c.lr_weights, c.lr_biases],
        }
    }
}

/// Load a state tensor `name` into `dst` (same shape), with a clear error.
pub(crate) fn load_into(tensors: &BTreeMap<String, Tensor>, name: &str, like: &Tensor) -> Result<Tensor> {
    let t = tensors
        .get(name)
        .ok_or_else(|| crate::Error::Checkpoint(format!("optimizer state `{name}` missing from the checkpoint")))?;
    if t.dims() != like.dims() {
        return Err(crate::Error::Checkpoint(format!("optimizer state `{name}`: shape {:?}, parameter {:?}", t.dims(), like.dims())));
    }
    Ok(t.to_dtype(like.dtype())?.to_device(like.device())?)
}
