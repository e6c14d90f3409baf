//! LARS as in the Barlow Twins ImageNet code (`main_imagenet.py`): 1-d parameters (biases, BN)
//! get neither weight decay nor the trust-ratio adaptation; momentum buffer `mu ← m·mu + dp`,
//! `p ← p − lr·mu`. Two learning-rate groups: weights and biases.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::{load_into, Optimizer, ParamGroup};
use crate::Result;

/// LARS hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LarsConfig {
    /// `--learning-rate-weights` (multiplies the scheduled lr of group 0).
    pub lr_weights: f64,
    /// `--learning-rate-biases` (group 1).
    pub lr_biases: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub eta: f64,
    /// Exclude 1-d parameters from weight decay (`weight_decay_filter=True`).
    pub weight_decay_filter: bool,
    /// Exclude 1-d parameters from the adaptation (`lars_adaptation_filter=True`).
    pub lars_adaptation_filter: bool,
}

impl Default for LarsConfig {
    fn default() -> Self {
        Self {
            lr_weights: 0.2,
            lr_biases: 0.0048,
            weight_decay: 1e-6,
            momentum: 0.9,
            eta: 0.001,
            weight_decay_filter: true,
            lars_adaptation_filter: true,
        }
    }
}

/// The LARS optimiser.
pub struct Lars {
    groups: Vec<ParamGroup>,
    cfg: LarsConfig,
    mu: BTreeMap<String, Tensor>,
}

impl Lars {
    /// Split `params` as the original: group 0 = ndim > 1 (weights), group 1 = ndim == 1.
    pub fn new(params: Vec<(String, candle_core::Var)>, cfg: LarsConfig) -> Self {
        let (w, b): (Vec<_>, Vec<_>) = params.into_iter().partition(|(_, v)| v.rank() > 1);
        Self { groups: vec![ParamGroup::new(w, 0.0), ParamGroup::new(b, 0.0)], cfg, mu: BTreeMap::new() }
    }
    pub fn config(&self) -> &LarsConfig {
        &self.cfg
    }
    /// Parameter names of each group.
    pub fn group_names(&self, g: usize) -> Vec<String> {
        self.groups[g].params.iter().map(|(n, _)| n.clone()).collect()
    }
}

impl Optimizer for Lars {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.cfg;
        for g in &self.groups {
            for (name, var) in &g.params {
                let Some(grad) = grads.get(var.as_tensor()) else { continue };
                // Detached: a gradient from the backward pass still holds the graph it came from
                // (and the weights are a variable); the momentum kept from step to step must not,
                // or every step's graph stays alive through it.
                let (grad, p) = (grad.detach(), var.as_tensor().detach());
                let p = &p;
                let one_d = p.rank() == 1;
                let mut dp = grad.clone();
                if !c.weight_decay_filter || !one_d {
                    dp = (dp + (p * c.weight_decay)?)?;
                }
                if !c.lars_adaptation_filter || !one_d {
                    let pn = p.to_dtype(DType::F64)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?;
                    let un = dp.to_dtype(DType::F64)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?;
                    let q = if pn > 0.0 && un > 0.0 { c.eta * pn / un } else { 1.0 };
                    dp = (dp * q)?;
                }
                let mu = match self.mu.get(name) {
                    Some(m) => ((m * c.momentum)? + dp)?,
                    None => dp,
                };
                var.set(&(p - (&mu * g.lr)?)?)?;
                self.mu.insert(name.clone(), mu);
            }
        }
        Ok(())
    }
    fn num_groups(&self) -> usize {
        2
    }
    fn lr(&self, group: usize) -> f64 {
        self.groups[group].lr
    }
    fn set_lr(&mut self, group: usize, lr: f64) {
        self.groups[group].lr = lr;
    }
    fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        self.mu.iter().map(|(k, v)| (format!("mu.{k}"), v.clone())).collect()
    }
    fn state_scalars(&self) -> serde_json::Value {
        serde_json::json!({ "kind": "lars", "has_mu": self.mu.keys().collect::<Vec<_>>(), "lrs": [self.groups[0].lr, self.groups[1].lr] })
    }
    fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, scalars: &serde_json::Value) -> Result<()> {
        self.mu.clear();
        let has: Vec<String> = scalars
            .get("has_mu")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default();
        for g in &self.groups {
            for (name, var) in &g.params {
                if has.contains(name) {
                    self.mu.insert(name.clone(), load_into(tensors, &format!("mu.{name}"), var.as_tensor())?);
                }
            }
        }
        if let Some(lrs) = scalars.get("lrs").and_then(|v| v.as_array()) {
            for (g, lr) in self.groups.iter_mut().zip(lrs) {
                g.lr = lr.as_f64().unwrap_or(g.lr);
            }
        }
        Ok(())
    }
}
