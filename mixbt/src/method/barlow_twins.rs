//! Barlow Twins and Mixed Barlow Twins (`main.py`, `main_imagenet.py`): two forward passes, and
//! with `is_mixup` a third on the mixed batch `α·x_A + (1 − α)·x_B[π]`; the loss is
//! [`MixedBarlowTwins`].

use std::any::Any;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::{gather_all, step_rng, Method, MethodConfig, MethodOutput, StepContext};
use crate::loss::{mix_batch, sample_mix_grouped, LossParts, MixedBarlowTwins};
use crate::optim::LambdaRamp;
use crate::{Error, Result};

/// Barlow Twins settings: the loss, whether the mixed pass runs, ImageNet's λ_reg ramp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarlowTwinsConfig {
    pub loss: MixedBarlowTwins,
    /// Run the third (mixed) forward pass (`--is_mixup`). With `false` this is plain Barlow Twins.
    pub is_mixup: bool,
    /// ImageNet's linear λ_reg warm-up over this many epochs (`adjust_mixup_scale`).
    #[serde(default)]
    pub lambda_reg_warmup_epochs: Option<usize>,
}

impl Default for BarlowTwinsConfig {
    /// Mixed Barlow Twins with the small data sets' loss (λ_BT 1/128, λ_reg 4).
    fn default() -> Self {
        Self { loss: MixedBarlowTwins::default(), is_mixup: true, lambda_reg_warmup_epochs: None }
    }
}

impl BarlowTwinsConfig {
    /// Plain Barlow Twins with `loss`'s λ_BT (λ_reg 0, no mixed pass).
    pub fn plain(loss: MixedBarlowTwins) -> Self {
        Self { loss: MixedBarlowTwins { lambda_reg: 0.0, ..loss }, is_mixup: false, lambda_reg_warmup_epochs: None }
    }

    /// Set λ_reg and with it whether the mixed pass runs (`0`: plain Barlow Twins).
    pub fn set_lambda_reg(&mut self, lambda_reg: f64) {
        self.loss.lambda_reg = lambda_reg;
        self.is_mixup = lambda_reg != 0.0;
    }

    /// λ_reg at 0-based step `step` (the ramp, when the recipe has one).
    pub fn lambda_reg_at(&self, step: usize, steps_per_epoch: usize) -> f64 {
        match self.lambda_reg_warmup_epochs {
            Some(w) => LambdaRamp { steps_per_epoch, warmup_epochs: w }.value(self.loss.lambda_reg, step),
            None => self.loss.lambda_reg,
        }
    }

    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("method.loss.lambda_bt", self.loss.lambda_bt), ("method.loss.lambda_reg", self.loss.lambda_reg)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::field(name, format!("must be finite and ≥ 0, got {v}")));
            }
        }
        Ok(())
    }
}

/// The method. Reports `loss_bt`, `loss_reg` (its components), `alpha`, `lambda_reg`,
/// `on_diag`, `off_diag`, `reg_ma`, `reg_mb`.
pub struct BarlowTwins {
    cfg: BarlowTwinsConfig,
    lambda_reg_override: Option<f64>,
    last_parts: Option<LossParts>,
}

impl BarlowTwins {
    pub fn new(cfg: BarlowTwinsConfig) -> Self {
        Self { cfg, lambda_reg_override: None, last_parts: None }
    }

    /// Override λ_reg from the next step on (`None`: back to the recipe's value and ramp).
    pub fn set_lambda_reg(&mut self, v: Option<f64>) {
        self.lambda_reg_override = v;
    }

    pub fn lambda_reg_override(&self) -> Option<f64> {
        self.lambda_reg_override
    }

    /// λ_reg in force at 0-based step `step`.
    pub fn lambda_reg(&self, step: usize, steps_per_epoch: usize) -> f64 {
        self.lambda_reg_override.unwrap_or_else(|| self.cfg.lambda_reg_at(step, steps_per_epoch))
    }

    /// The loss components of the last step (tensors of its graph).
    pub fn last_parts(&self) -> Option<&LossParts> {
        self.last_parts.as_ref()
    }
}

impl Method for BarlowTwins {
    fn config(&self) -> MethodConfig {
        MethodConfig::BarlowTwins(self.cfg.clone())
    }

    fn forward(&mut self, ctx: &StepContext, views: &[Tensor]) -> Result<MethodOutput> {
        let [view_a, view_b] = views else {
            return Err(Error::Config(format!("Barlow Twins trains on 2 views, got {}", views.len())));
        };
        let lambda_reg = self.lambda_reg(ctx.step, ctx.steps_per_epoch);
        let loss = MixedBarlowTwins { lambda_reg, ..self.cfg.loss };
        let (_, h_a) = ctx.encoder.forward_t(view_a, true)?;
        let (_, h_b) = ctx.encoder.forward_t(view_b, true)?;
        // Data-parallel ranks: this rank's rows of the global batch; the loss sees all of them.
        let world = crate::dist::world();
        let (rank, n_local) = (world.rank(), view_a.dim(0)?);
        let n = n_local * world.size();
        let (parts, alpha) = if self.cfg.is_mixup {
            let groups = ctx.mix_groups.max(1);
            if n % groups != 0 || groups % world.size() != 0 {
                return Err(Error::Config(format!("the mixing permutation's {groups} blocks must divide the batch of {n} and be a multiple of the {} ranks", world.size())));
            }
            let (perm, alpha) = sample_mix_grouped(&mut step_rng(ctx.seed, ctx.step), n, groups);
            // This rank's rows map among themselves (the blocks nest in the ranks' shares).
            let off = rank * n_local;
            let local: Vec<usize> = perm[off..off + n_local].iter().map(|i| i - off).collect();
            let x_m = mix_batch(view_a, view_b, &local, alpha)?;
            let (_, h_m) = ctx.encoder.forward_t(&x_m, true)?;
            let [h_a, h_b, h_m]: [Tensor; 3] = gather_all(vec![h_a, h_b, h_m])?.try_into().expect("three tensors");
            (loss.compute_blocks(&h_a, &h_b, &h_m, &perm, alpha, ctx.stat_blocks)?, alpha)
        } else {
            let [h_a, h_b]: [Tensor; 2] = gather_all(vec![h_a, h_b])?.try_into().expect("two tensors");
            (loss.compute_bt_blocks(&h_a, &h_b, ctx.stat_blocks)?, f64::NAN)
        };
        let out = MethodOutput {
            loss: parts.total.clone(),
            metrics: vec![
                ("loss_bt", parts.loss_bt.clone()),
                ("loss_reg", parts.loss_reg.clone()),
                ("on_diag", parts.on_diag.clone()),
                ("off_diag", parts.off_diag.clone()),
                ("reg_ma", parts.reg_ma.clone()),
                ("reg_mb", parts.reg_mb.clone()),
            ],
            values: vec![("alpha", alpha), ("lambda_reg", lambda_reg)],
        };
        self.last_parts = Some(parts);
        Ok(out)
    }

    fn state_json(&self) -> serde_json::Value {
        serde_json::json!({ "lambda_reg_override": self.lambda_reg_override })
    }

    fn load_state_json(&mut self, v: &serde_json::Value) -> Result<()> {
        self.lambda_reg_override = v.get("lambda_reg_override").and_then(|x| x.as_f64());
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
