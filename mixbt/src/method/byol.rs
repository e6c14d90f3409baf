//! BYOL as `ssl-sota/methods/byol.py`: the online network `pred(head(model(x)))`, a target
//! network `head_t(model_t(x))` that starts as a copy (buffers included), runs in train mode
//! without gradient, and follows the online parameters by EMA after every step:
//! `t ← τ·t + (1 − τ)·s` for the encoder's and head's parameters (buffers are not averaged),
//! with `τ = 1 − (1 − τ_base)·(cos(π·epoch/epochs) + 1)/2` (`τ_base` 0.99 → 1, per epoch).
//! Loss: `norm_mse(z_i, zt_j) + norm_mse(z_j, zt_i)` over the view pairs, divided by their number.

use std::any::Any;
use std::collections::BTreeMap;

use candle_core::{DType, ModuleT, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::{check_prefixes, check_views, gather_all, sum_directions, trainable_prefixed, Method, MethodConfig, MethodOutput, StepContext};
use crate::loss::norm_mse;
use crate::model::{encoder, projector, Encoder, Projector, ProjectorConfig};
use crate::params::ParamStore;
use crate::{Error, Result};

/// BYOL settings (`ssl-sota` defaults: `byol_tau` 0.99, predictor hidden 1024, two views).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ByolConfig {
    /// τ at the first epoch (`--byol_tau`); it rises to 1 by a half cosine over the epochs.
    pub tau_base: f64,
    /// Hidden width of the predictor `Linear(emb, h) → BN1d → ReLU → Linear(h, emb)`.
    pub predictor_hidden: usize,
    /// Views per image (`--num_samples`).
    pub num_samples: usize,
}

impl Default for ByolConfig {
    fn default() -> Self {
        Self { tau_base: 0.99, predictor_hidden: 1024, num_samples: 2 }
    }
}

/// The EMA coefficient of 0-based `epoch` of `epochs` (`BYOL.step(ep / cfg.epoch)`).
pub fn byol_tau(tau_base: f64, epoch: usize, epochs: usize) -> f64 {
    let progress = epoch as f64 / epochs.max(1) as f64;
    1.0 - (1.0 - tau_base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
}

const PRED: &str = "pred.";
const TARGET: &str = "target.";

/// The method. Reports `loss_ab` (online view i against target view j > i) and `loss_ba` (the
/// reverse; the two add up to the loss), and `tau`.
pub struct Byol {
    cfg: ByolConfig,
    /// The online encoder's store (shared with the trainer): the EMA's source.
    online: ParamStore,
    pred_store: ParamStore,
    pred: Projector,
    target_store: ParamStore,
    target: Encoder,
}

impl Byol {
    /// The predictor (initialised from `seed`) and the target network, a copy of `encoder`
    /// (whose tensors live in `online`).
    pub fn new(cfg: ByolConfig, enc: &Encoder, online: &ParamStore, seed: u64) -> Result<Self> {
        let ecfg = enc.config();
        if ecfg.projector.is_none() {
            return Err(Error::field("encoder.projector.sizes", "BYOL needs a projector (the head)"));
        }
        let emb = ecfg.out_dim();
        let device = enc.device();
        let pred_store = ParamStore::new(seed ^ 0xb701, DType::F32, device);
        let pred = projector(&ProjectorConfig::head(emb, cfg.predictor_hidden, emb), pred_store.var_builder().pp("pred"))?;
        let target_store = ParamStore::new(seed, online.dtype(), device);
        let target = encoder(ecfg, target_store.var_builder())?;
        target_store.load_map(&online.tensors())?;
        Ok(Self { cfg, online: online.clone(), pred_store, pred, target_store, target })
    }

    /// The target network (its tensors: [`target_params`](Self::target_params)).
    pub fn target(&self) -> &Encoder {
        &self.target
    }
    pub fn target_params(&self) -> &ParamStore {
        &self.target_store
    }
    pub fn predictor_params(&self) -> &ParamStore {
        &self.pred_store
    }

    /// `t ← τ·t + (1 − τ)·s` for every trainable tensor of the target (buffers untouched).
    pub fn ema_update(&self, tau: f64) -> Result<()> {
        for (name, t) in self.target_store.trainable() {
            let s = self.online.get(&name).ok_or_else(|| Error::msg(format!("BYOL: the online network has no `{name}`")))?;
            let new = (t.as_tensor().affine(tau, 0.0)? + s.as_tensor().affine(1.0 - tau, 0.0)?)?;
            t.set(&new)?;
        }
        Ok(())
    }
}

impl Method for Byol {
    fn config(&self) -> MethodConfig {
        MethodConfig::Byol(self.cfg.clone())
    }

    fn params(&self) -> Vec<(String, Var)> {
        trainable_prefixed(&self.pred_store, "method.")
    }

    fn forward(&mut self, ctx: &StepContext, views: &[Tensor]) -> Result<MethodOutput> {
        check_views("BYOL", views)?;
        let mut z = Vec::with_capacity(views.len());
        for v in views {
            let (_, h) = ctx.encoder.forward_t(v, true)?;
            z.push(self.pred.forward_t(&h, true)?);
        }
        let mut zt = Vec::with_capacity(views.len());
        for v in views {
            zt.push(self.target.forward_t(v, true)?.1.detach());
        }
        let (z, zt) = (gather_all(z)?, gather_all(zt)?);
        // norm_mse(z_i, zt_j) + norm_mse(z_j, zt_i) per pair, averaged over the pairs.
        let (ab, ba, k) = sum_directions(views.len(), |i, j| Ok((norm_mse(&z[i], &zt[j])?, norm_mse(&z[j], &zt[i])?)))?;
        let k = k as f64;
        Ok(MethodOutput {
            loss: ((&ab + &ba)? / k)?,
            metrics: vec![("loss_ab", (ab / k)?), ("loss_ba", (ba / k)?)],
            values: vec![("tau", byol_tau(self.cfg.tau_base, ctx.epoch, ctx.epochs))],
        })
    }

    fn after_step(&mut self, ctx: &StepContext) -> Result<()> {
        self.ema_update(byol_tau(self.cfg.tau_base, ctx.epoch, ctx.epochs))
    }

    fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        let mut m = self.pred_store.tensors();
        m.extend(self.target_store.tensors().into_iter().map(|(k, v)| (format!("{TARGET}{k}"), v)));
        m
    }

    fn load_state_tensors(&mut self, map: &BTreeMap<String, Tensor>) -> Result<()> {
        check_prefixes(map, &[PRED, TARGET], "byol")?;
        let pred: BTreeMap<String, Tensor> = map.iter().filter(|(k, _)| k.starts_with(PRED)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let target: BTreeMap<String, Tensor> = map.iter().filter_map(|(k, v)| k.strip_prefix(TARGET).map(|s| (s.to_string(), v.clone()))).collect();
        let ctx = |what: &str, e: Error| match e {
            Error::Checkpoint(m) => Error::Checkpoint(format!("BYOL {what}: {m}")),
            e => e,
        };
        self.pred_store.load_map(&pred).map_err(|e| ctx("predictor", e))?;
        self.target_store.load_map(&target).map_err(|e| ctx("target network", e))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
