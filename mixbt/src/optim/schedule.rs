//! Learning-rate and λ_reg schedules of the original scripts.

use serde::{Deserialize, Serialize};

/// `adjust_learning_rate` of `main.py` / `main_imagenet.py`: linear warm-up over
/// `warmup_epochs`, then a cosine from `base_lr` to `base_lr·end_factor`; `base_lr =
/// batch_size/256`; the result is multiplied by the recipe's lr (`--lr`, or each LARS group's).
///
/// `step_offset` reproduces `main.py`'s quirk: epochs run 1..=E and `step = epoch·len(loader)`,
/// so the first step is `len(loader)` (lr starts at 10 % of its peak) and the last epoch runs past
/// `max_steps` (the cosine angle goes slightly past π). The ImageNet code starts at step 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WarmupCosine {
    pub batch_size: usize,
    pub steps_per_epoch: usize,
    pub epochs: usize,
    pub warmup_epochs: usize,
    pub end_factor: f64,
    /// Added to the 0-based training step before the formula (`len(loader)` in `main.py`).
    pub step_offset: usize,
}

impl WarmupCosine {
    /// `main.py`: 10 warm-up epochs, offset of one epoch.
    pub fn small(batch_size: usize, steps_per_epoch: usize, epochs: usize) -> Self {
        Self { batch_size, steps_per_epoch, epochs, warmup_epochs: 10, end_factor: 0.001, step_offset: steps_per_epoch }
    }
    /// `main_imagenet.py`: 10 warm-up epochs, no offset.
    pub fn imagenet(batch_size: usize, steps_per_epoch: usize, epochs: usize) -> Self {
        Self { step_offset: 0, ..Self::small(batch_size, steps_per_epoch, epochs) }
    }

    /// The multiplier for 0-based training step `step` (multiply by the recipe's lr).
    pub fn factor(&self, step: usize) -> f64 {
        let l = self.steps_per_epoch as f64;
        let mut max_steps = self.epochs as f64 * l;
        let warmup = self.warmup_epochs as f64 * l;
        let base = self.batch_size as f64 / 256.0;
        let mut s = (step + self.step_offset) as f64;
        if s < warmup {
            base * s / warmup
        } else {
            s -= warmup;
            max_steps -= warmup;
            // No cosine phase (warm-up as long as training) and a step past it: the end of
            // the cosine, not 0/0 (where the original would raise ZeroDivisionError).
            let q = if max_steps > 0.0 { 0.5 * (1.0 + (std::f64::consts::PI * s / max_steps).cos()) } else { 0.0 };
            let end = base * self.end_factor;
            base * q + end * (1.0 - q)
        }
    }
}

/// `ssl-sota`'s `train.py`: the lr is set to `lr·(i + 1)/warmup_steps` for the first
/// `warmup_steps` iterations, and `MultiStepLR([epochs − 50, epochs − 25], gamma)` is stepped
/// after every epoch (`milestones_from_end` = `[50, 25]`).
///
/// As coded, two things follow that this reproduces: a milestone ≤ 0 (fewer than 50 or 25
/// epochs) is never reached, and a milestone reached before the warm-up ends is lost, because
/// the warm-up overwrites the group's lr afterwards (MultiStepLR multiplies the lr it finds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WarmupMultiStep {
    pub steps_per_epoch: usize,
    pub epochs: usize,
    pub warmup_steps: usize,
    pub milestones_from_end: [usize; 2],
    pub gamma: f64,
}

impl WarmupMultiStep {
    /// The multiplier for 0-based training step `step` (multiply by the recipe's lr).
    pub fn factor(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return (step + 1) as f64 / self.warmup_steps as f64;
        }
        // Scheduler steps taken before this training step.
        let epoch = step / self.steps_per_epoch.max(1);
        let hits = self
            .milestones_from_end
            .iter()
            .filter_map(|&k| self.epochs.checked_sub(k))
            .filter(|&m| m >= 1 && m <= epoch && m * self.steps_per_epoch >= self.warmup_steps)
            .count();
        self.gamma.powi(hits as i32)
    }
}

/// `adjust_mixup_scale` of `main_imagenet.py`: λ_reg ramps linearly over the first
/// `warmup_epochs` epochs (`λ·step/warmup_steps`), then stays.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LambdaRamp {
    pub steps_per_epoch: usize,
    pub warmup_epochs: usize,
}

impl LambdaRamp {
    pub fn value(&self, lambda: f64, step: usize) -> f64 {
        let w = self.warmup_epochs * self.steps_per_epoch;
        if step < w {
            lambda * step as f64 / w as f64
        } else {
            lambda
        }
    }
}

/// `ExponentialLR(gamma)`, stepped per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExponentialLr {
    pub lr0: f64,
    pub gamma: f64,
}

impl ExponentialLr {
    /// linear.py's schedule: from `lr0` to `lr_end` over `epochs` (`gamma = (end/lr0)^(1/epochs)`).
    pub fn from_to(lr0: f64, lr_end: f64, epochs: usize) -> Self {
        Self { lr0, gamma: (lr_end / lr0).powf(1.0 / epochs as f64) }
    }
    pub fn lr(&self, epoch: usize) -> f64 {
        self.lr0 * self.gamma.powi(epoch as i32)
    }
}

/// `MultiStepLR(milestones, gamma)`, stepped per epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiStepLr {
    pub lr0: f64,
    pub milestones: Vec<usize>,
    pub gamma: f64,
}

impl MultiStepLr {
    pub fn lr(&self, epoch: usize) -> f64 {
        let k = self.milestones.iter().filter(|&&m| m <= epoch).count();
        self.lr0 * self.gamma.powi(k as i32)
    }
}

/// `CosineAnnealingLR(T_max, eta_min)`, stepped per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CosineAnnealing {
    pub lr0: f64,
    pub t_max: usize,
    pub eta_min: f64,
}

impl CosineAnnealing {
    pub fn lr(&self, epoch: usize) -> f64 {
        self.eta_min + (self.lr0 - self.eta_min) * (1.0 + (std::f64::consts::PI * epoch as f64 / self.t_max as f64).cos()) / 2.0
    }
}
