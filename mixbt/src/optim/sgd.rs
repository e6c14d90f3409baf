//! SGD with momentum as `torch.optim.SGD` (dampening 0, not Nesterov): `d = g + wd·p`,
//! `buf ← m·buf + d` (first step `buf = d`), `p ← p − lr·buf`.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::{load_into, Optimizer, ParamGroup};
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self { lr: 0.01, momentum: 0.9, weight_decay: 0.0 }
    }
}

pub struct Sgd {
    groups: Vec<ParamGroup>,
    cfg: SgdConfig,
    buf: BTreeMap<String, Tensor>,
}

impl Sgd {
    pub fn single(params: Vec<(String, candle_core::Var)>, cfg: SgdConfig) -> Self {
        Self { groups: vec![ParamGroup::new(params, cfg.lr)], cfg, buf: BTreeMap::new() }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.cfg;
        for g in &self.groups {
            for (name, var) in &g.params {
                let Some(grad) = grads.get(var.as_tensor()) else { continue };
                // Detached, so that the momentum buffer holds no graph (see `Lars::step`).
                let (grad, p) = (grad.detach(), var.as_tensor().detach());
                let p = &p;
                let mut d = grad.clone();
                if c.weight_decay != 0.0 {
                    d = (d + (p * c.weight_decay)?)?;
                }
                if c.momentum != 0.0 {
                    d = match self.buf.get(name) {
                        Some(b) => ((b * c.momentum)? + d)?,
                        None => d,
                    };
                    self.buf.insert(name.clone(), d.clone());
                }
                var.set(&(p - (d * g.lr)?)?)?;
            }
        }
        Ok(())
    }
    fn num_groups(&self) -> usize {
        self.groups.len()
    }
    fn lr(&self, group: usize) -> f64 {
        self.groups[group].lr
    }
    fn set_lr(&mut self, group: usize, lr: f64) {
        self.groups[group].lr = lr;
    }
    fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        self.buf.iter().map(|(k, v)| (format!("momentum_buffer.{k}"), v.clone())).collect()
    }
    fn state_scalars(&self) -> serde_json::Value {
        serde_json::json!({ "kind": "sgd", "has_buf": self.buf.keys().collect::<Vec<_>>(), "lrs": self.groups.iter().map(|g| g.lr).collect::<Vec<_>>() })
    }
    fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, scalars: &serde_json::Value) -> Result<()> {
        self.buf.clear();
        let has: Vec<String> = scalars
            .get("has_buf")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default();
        for g in &self.groups {
            for (name, var) in &g.params {
                if has.contains(name) {
                    self.buf.insert(name.clone(), load_into(tensors, &format!("momentum_buffer.{name}"), var.as_tensor())?);
                }
            }
        }
        Ok(())
    }
}
