//! SimCLR as `ssl-sota/methods/contrastive.py`: the backbone on each view, the head on the
//! concatenated views (its BN sees all of them), `bn_last` (BatchNorm1d over the embedding), and
//! [`nt_xent`](crate::loss::nt_xent) over every pair of views, averaged over the pairs.

use std::any::Any;
use std::collections::BTreeMap;

use candle_core::{DType, ModuleT, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::{check_prefixes, check_views, gather_all, load_prefixed, prefixed, sum_directions, trainable_prefixed, Method, MethodConfig, MethodOutput, StepContext};
use crate::loss::nt_xent_directions;
use crate::model::layers::{batch_norm, BatchNorm, BatchNormConfig};
use crate::model::Encoder;
use crate::params::ParamStore;
use crate::Result;

/// SimCLR settings (`ssl-sota` defaults: τ 0.5, `bn_last`, two views).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimclrConfig {
    /// Temperature (`--tau`).
    pub tau: f64,
    /// BatchNorm1d on the head's output (`contrastive.py` always has it).
    pub bn_last: bool,
    /// Views per image (`--num_samples`).
    pub num_samples: usize,
}

impl Default for SimclrConfig {
    fn default() -> Self {
        Self { tau: 0.5, bn_last: true, num_samples: 2 }
    }
}

const BN_LAST: &str = "bn_last.";

/// The method. Reports `loss_ab` and `loss_ba` (view A's and view B's cross-entropy, halved:
/// they add up to the loss).
pub struct Simclr {
    cfg: SimclrConfig,
    store: ParamStore,
    bn_last: Option<BatchNorm>,
}

impl Simclr {
    pub fn new(cfg: SimclrConfig, encoder: &Encoder, seed: u64) -> Result<Self> {
        let emb = encoder.config().out_dim();
        let store = ParamStore::new(seed ^ 0x51ac1, DType::F32, encoder.device());
        let bn_last = if cfg.bn_last { Some(batch_norm(emb, BatchNormConfig::default(), store.var_builder().pp("bn_last"))?) } else { None };
        Ok(Self { cfg, store, bn_last })
    }
}

/// Backbone on each view, then the projector on the concatenation (`head(cat(h))`), split back
/// into one embedding per view. Shared by SimCLR and W-MSE.
pub(crate) fn embed_concat(enc: &Encoder, views: &[Tensor], post: Option<&BatchNorm>) -> Result<Vec<Tensor>> {
    let n = views.first().map(|v| v.dim(0)).transpose()?.unwrap_or(0);
    let feats = views.iter().map(|v| enc.backbone.forward_t(v, true)).collect::<candle_core::Result<Vec<_>>>()?;
    let h = Tensor::cat(&feats, 0)?;
    let mut z = match &enc.projector {
        Some(p) => p.forward_t(&h, true)?,
        None => h,
    };
    if let Some(bn) = post {
        z = bn.forward_t(&z, true)?;
    }
    (0..views.len()).map(|i| Ok(z.narrow(0, i * n, n)?)).collect()
}

impl Method for Simclr {
    fn config(&self) -> MethodConfig {
        MethodConfig::Simclr(self.cfg.clone())
    }

    fn params(&self) -> Vec<(String, Var)> {
        trainable_prefixed(&self.store, "method.")
    }

    fn forward(&mut self, ctx: &StepContext, views: &[Tensor]) -> Result<MethodOutput> {
        check_views("SimCLR", views)?;
        let z = gather_all(embed_concat(ctx.encoder, views, self.bn_last.as_ref())?)?;
        // contrastive_loss(x0, x1) = (CE_ab + CE_ba)/2 per pair, averaged over the pairs.
        let (ab, ba, k) = sum_directions(views.len(), |i, j| nt_xent_directions(&z[i], &z[j], self.cfg.tau))?;
        let half = 2.0 * k as f64;
        Ok(MethodOutput {
            loss: ((&ab + &ba)? / half)?,
            metrics: vec![("loss_ab", (ab / half)?), ("loss_ba", (ba / half)?)],
            values: vec![("tau", self.cfg.tau)],
        })
    }

    fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        prefixed(&self.store, "")
    }

    fn load_state_tensors(&mut self, map: &BTreeMap<String, Tensor>) -> Result<()> {
        check_prefixes(map, &[BN_LAST], "simclr")?;
        load_prefixed(&self.store, "", map)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
