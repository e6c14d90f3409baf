//! W-MSE as `ssl-sota/methods/w_mse.py`: the backbone on each view, the head on the
//! concatenated views; `w_iter` times, the batch is cut by a random permutation into sub-batches
//! of `w_size`, each view's sub-batch is whitened on its own
//! ([`whiten`](crate::loss::whiten), `Whitening2d(track_running_stats=False)`), and the loss is
//! [`norm_mse`](crate::loss::norm_mse) between the whitened views, averaged over the view pairs
//! and iterations.

use std::any::Any;

use candle_core::Tensor;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::simclr::embed_concat;
use super::{check_views, gather_all, step_rng, view_pairs, Method, MethodConfig, MethodOutput, StepContext};
use crate::loss::{norm_mse, whiten};
use crate::{Error, Result};

/// W-MSE settings (`ssl-sota` scripts: `w_size` 128, `w_eps` 0.01, `w_iter` 1, two views).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WmseConfig {
    /// Sub-batch size of the whitening (`--w_size`); must divide the batch.
    pub w_size: usize,
    /// Whitening iterations per step (`--w_iter`).
    pub w_iter: usize,
    /// Covariance shrinkage `(1 − eps)·Σ + eps·I` (`--w_eps`).
    pub w_eps: f64,
    /// Views per image (`--num_samples`).
    pub num_samples: usize,
}

impl Default for WmseConfig {
    fn default() -> Self {
        Self { w_size: 128, w_iter: 1, w_eps: 0.01, num_samples: 2 }
    }
}

impl WmseConfig {
    /// The whitening settings at `batch_size` (the view count is [`MethodConfig::validate`]'s).
    pub fn validate(&self, batch_size: usize) -> Result<()> {
        if self.w_size < 2 {
            return Err(Error::field("method.w_size", format!("must be at least 2 (a covariance needs N − 1 > 0), got {}", self.w_size)));
        }
        if batch_size % self.w_size != 0 {
            return Err(Error::field(
                "method.w_size",
                format!("{} does not divide the batch size {batch_size} (`randperm(bs).view(-1, w_size)`)", self.w_size),
            ));
        }
        if self.w_iter == 0 {
            return Err(Error::field("method.w_iter", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.w_eps) {
            return Err(Error::field("method.w_eps", format!("must be in [0, 1], got {}", self.w_eps)));
        }
        Ok(())
    }
}

/// The method. Reports `loss_w<k>` for each whitening iteration k (its share of the loss) and
/// `pos_cos`, the mean cosine of the whitened positive pairs.
pub struct Wmse {
    cfg: WmseConfig,
}

impl Wmse {
    pub fn new(cfg: WmseConfig) -> Self {
        Self { cfg }
    }
}

/// Metric names of the iterations (`loss_w1`, `loss_w2`, …; static so that columns are cheap).
const ITER_NAMES: [&str; 8] = ["loss_w1", "loss_w2", "loss_w3", "loss_w4", "loss_w5", "loss_w6", "loss_w7", "loss_w8"];

impl Method for Wmse {
    fn config(&self) -> MethodConfig {
        MethodConfig::Wmse(self.cfg.clone())
    }

    fn forward(&mut self, ctx: &StepContext, views: &[Tensor]) -> Result<MethodOutput> {
        check_views("W-MSE", views)?;
        // The whole (global) batch: data-parallel ranks whiten the sub-batches of all ranks.
        let h = gather_all(embed_concat(ctx.encoder, views, None)?)?;
        let bs = h[0].dim(0)?;
        self.cfg.validate(bs)?;
        let pairs = view_pairs(views.len());
        let mut rng = step_rng(ctx.seed, ctx.step);
        let subs = bs / self.cfg.w_size;
        let mut total: Option<Tensor> = None;
        let mut metrics = vec![];
        let mut iter_sum: Vec<Tensor> = vec![];
        for _ in 0..self.cfg.w_iter {
            let mut perm: Vec<u32> = (0..bs as u32).collect();
            perm.shuffle(&mut rng);
            // Each view's sub-batches whitened separately; rows kept in permutation order (the
            // pairing of view i's row r with view j's row r is what matters, and the loss is a mean).
            let mut z: Vec<Tensor> = Vec::with_capacity(views.len());
            for hv in &h {
                let mut parts = Vec::with_capacity(subs);
                for s in 0..subs {
                    let idx = Tensor::from_slice(&perm[s * self.cfg.w_size..(s + 1) * self.cfg.w_size], self.cfg.w_size, hv.device())?;
                    parts.push(whiten(&hv.index_select(&idx, 0)?, self.cfg.w_eps)?);
                }
                z.push(Tensor::cat(&parts, 0)?);
            }
            let mut it_loss: Option<Tensor> = None;
            for &(i, j) in &pairs {
                let l = norm_mse(&z[i], &z[j])?;
                it_loss = Some(match it_loss {
                    Some(a) => (a + l)?,
                    None => l,
                });
            }
            let it_loss = it_loss.expect("one pair at least");
            total = Some(match total {
                Some(a) => (a + &it_loss)?,
                None => it_loss.clone(),
            });
            iter_sum.push(it_loss);
        }
        let k = (self.cfg.w_iter * pairs.len()) as f64;
        for (it, l) in iter_sum.into_iter().enumerate() {
            if let Some(name) = ITER_NAMES.get(it) {
                metrics.push((*name, (l / k)?));
            }
        }
        let loss = (total.expect("one iteration at least") / k)?;
        // 2 − 2·cos averaged = loss, so the mean positive cosine is 1 − loss/2.
        let pos_cos = loss.affine(-0.5, 1.0)?;
        metrics.push(("pos_cos", pos_cos));
        Ok(MethodOutput { loss, metrics, values: vec![] })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
