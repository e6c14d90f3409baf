//! A pre-training recipe: everything that defines a run, serialisable to JSON.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::data::DataConfig;
use crate::{Error, Result};
use crate::eval::KnnConfig;
use crate::method::{BarlowTwinsConfig, MethodConfig};
use crate::model::EncoderConfig;
use crate::optim::{OptimizerConfig, WarmupCosine, WarmupMultiStep};

/// How the learning rate evolves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LrSchedule {
    /// The original warm-up (10 epochs) + cosine to 0.1 % with `base = batch/256`;
    /// `epoch_offset` is `main.py`'s one-epoch step offset.
    WarmupCosine { warmup_epochs: usize, epoch_offset: bool },
    /// `ssl-sota`'s: a linear warm-up over the first `warmup_steps` iterations, then
    /// `MultiStepLR([epochs − m for m in milestones_from_end], gamma)` stepped per epoch
    /// (see [`WarmupMultiStep`]).
    WarmupMultiStep { warmup_steps: usize, milestones_from_end: [usize; 2], gamma: f64 },
    /// A constant factor 1.
    Constant,
}

/// A schedule laid out over a run: the factor of each step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepSchedule {
    WarmupCosine(WarmupCosine),
    WarmupMultiStep(WarmupMultiStep),
    Constant,
}

impl StepSchedule {
    /// The multiplier of the recipe's learning rate at 0-based step `step`.
    pub fn factor(&self, step: usize) -> f64 {
        match self {
            StepSchedule::WarmupCosine(s) => s.factor(step),
            StepSchedule::WarmupMultiStep(s) => s.factor(step),
            StepSchedule::Constant => 1.0,
        }
    }
}

/// The paper's reported numbers for a recipe (reference §8.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperResult {
    pub knn_top1: Option<f64>,
    pub linear_top1: Option<f64>,
    pub checkpoint: Option<String>,
}

/// A complete pre-training recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub name: String,
    pub description: String,
    pub encoder: EncoderConfig,
    /// The self-supervised method and its settings. Recipes written before methods were
    /// plug-ins (with top-level `loss`, `is_mixup`, `lambda_reg_warmup_epochs`) are read as
    /// Barlow Twins ([`migrate_json`]).
    pub method: MethodConfig,
    pub optimizer: OptimizerConfig,
    pub schedule: LrSchedule,
    pub batch_size: usize,
    pub epochs: usize,
    /// Stop after this many steps (CPU budgets); the schedule still spans `epochs`.
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// Stop training after this many seconds of wall time (CPU presets that promise a budget);
    /// the final k-NN still runs.
    #[serde(default)]
    pub time_budget_s: Option<f64>,
    pub data: DataConfig,
    pub knn: KnnConfig,
    /// k-NN every this many epochs (0: only at the end).
    pub knn_every_epochs: usize,
    /// How the convolutions and linear layers multiply in the training steps and the k-NN
    /// evaluations: `f32` (the default and the reference) or `bf16` (bfloat16 products summed in
    /// FP32, like PyTorch's CPU autocast; weights, optimiser state and the loss stay FP32). See
    /// [`crate::ops::Precision`]. Not written when `f32`, so older recipes read and print the same.
    #[serde(default, skip_serializing_if = "is_f32")]
    pub precision: crate::ops::Precision,
    #[serde(default)]
    pub paper: Option<PaperResult>,
}

pub use crate::ckpt::migrate_recipe_json as migrate_json;

fn is_f32(p: &crate::ops::Precision) -> bool {
    *p == crate::ops::Precision::F32
}

impl Recipe {
    /// Whether `other` trains exactly as this recipe does: every field but the description
    /// (prose, which a later version may reword without changing a run). Resuming a study's run
    /// compares recipes with it.
    pub fn same_settings(&self, other: &Recipe) -> bool {
        Recipe { description: other.description.clone(), ..self.clone() } == *other
    }

    /// Set λ_reg, and with it whether the mixed pass runs: `0` is plain Barlow Twins (no third
    /// forward pass, as `--is_mixup false`), anything else Mixed Barlow Twins. The one place that
    /// decides `is_mixup` from λ_reg (presets, the command line and notebooks all call it).
    /// An error for a method without λ_reg (SimCLR, BYOL, W-MSE).
    pub fn set_lambda_reg(&mut self, lambda_reg: f64) -> Result<()> {
        match &mut self.method {
            MethodConfig::BarlowTwins(c) => {
                c.set_lambda_reg(lambda_reg);
                Ok(())
            }
            m => Err(Error::field("method", format!("{} has no λ_reg (only bt and mixbt have)", m.name()))),
        }
    }

    /// The Barlow Twins settings, when the method is (Mixed) Barlow Twins.
    pub fn barlow_twins(&self) -> Option<&BarlowTwinsConfig> {
        match &self.method {
            MethodConfig::BarlowTwins(c) => Some(c),
            _ => None,
        }
    }
    pub fn barlow_twins_mut(&mut self) -> Option<&mut BarlowTwinsConfig> {
        match &mut self.method {
            MethodConfig::BarlowTwins(c) => Some(c),
            _ => None,
        }
    }

    /// λ_reg of a (Mixed) Barlow Twins recipe (`Some(0.0)` for plain Barlow Twins).
    pub fn lambda_reg(&self) -> Option<f64> {
        self.barlow_twins().map(|c| if c.is_mixup { c.loss.lambda_reg } else { 0.0 })
    }

    /// The learning-rate schedule over a run of `steps_per_epoch` steps per epoch.
    pub fn step_schedule(&self, steps_per_epoch: usize) -> StepSchedule {
        match self.schedule {
            LrSchedule::WarmupCosine { warmup_epochs, epoch_offset } => StepSchedule::WarmupCosine(WarmupCosine {
                batch_size: self.batch_size,
                steps_per_epoch,
                epochs: self.epochs,
                warmup_epochs,
                end_factor: 0.001,
                step_offset: if epoch_offset { steps_per_epoch } else { 0 },
            }),
            LrSchedule::WarmupMultiStep { warmup_steps, milestones_from_end, gamma } => StepSchedule::WarmupMultiStep(WarmupMultiStep {
                steps_per_epoch,
                epochs: self.epochs,
                warmup_steps,
                milestones_from_end,
                gamma,
            }),
            LrSchedule::Constant => StepSchedule::Constant,
        }
    }

    /// An [`Error::Field`] naming the first field a run cannot start with: the encoder's, batch
    /// size (≥ 2: Barlow Twins standardises over the batch), epochs, λ values (finite, ≥ 0),
    /// learning rates (positive, finite), the k-NN settings and the subsets (≥ 1).
    pub fn validate(&self) -> Result<()> {
        self.encoder.validate().map_err(|e| match e {
            Error::Field { field, msg } => Error::Field { field: format!("encoder.{field}"), msg },
            e => e,
        })?;
        if self.batch_size < 2 {
            return Err(Error::field("batch_size", format!("must be at least 2 (every method normalises over the batch), got {}", self.batch_size)));
        }
        if self.epochs == 0 {
            return Err(Error::field("epochs", "must be at least 1"));
        }
        if self.max_steps == Some(0) {
            return Err(Error::field("max_steps", "must be at least 1"));
        }
        self.method.validate(self.batch_size)?;
        if let LrSchedule::WarmupMultiStep { gamma, .. } = self.schedule {
            if !(gamma > 0.0 && gamma.is_finite()) {
                return Err(Error::field("schedule.gamma", format!("must be positive and finite, got {gamma}")));
            }
        }
        for lr in self.optimizer.base_lrs() {
            if !(lr > 0.0 && lr.is_finite()) {
                return Err(Error::field("optimizer.lr", format!("must be positive and finite, got {lr}")));
            }
        }
        if let Some(t) = self.time_budget_s {
            if !(t > 0.0 && t.is_finite()) {
                return Err(Error::field("time_budget_s", format!("must be positive and finite, got {t}")));
            }
        }
        self.knn.validate()?;
        let d = &self.data;
        for (name, v) in [("data.train_subset", d.train_subset), ("data.test_subset", d.test_subset), ("data.bank_subset", d.bank_subset)] {
            if v == Some(0) {
                return Err(Error::field(name, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// Bytes a CPU training step needs, estimated: 16 per parameter (weights, gradients, two
    /// optimiser moments) and the loss's own ([`crate::method::MethodConfig::loss_bytes`]: for
    /// Barlow Twins in its d×d form, 96 `d×d` f32 matrices; in its Gram form, none).
    /// Activations are not counted.
    pub fn memory_estimate(&self) -> u128 {
        self.encoder.num_params().saturating_mul(16).saturating_add(self.method.loss_bytes(self.batch_size, self.encoder.out_dim()))
    }

    /// An [`Error::Field`] naming `encoder.backbone.width` or `encoder.projector.sizes` when a
    /// CPU training step would not fit in the memory this machine has available
    /// (`MemAvailable`; no check where it cannot be read) — a clear error instead of the OOM
    /// killer.
    pub fn check_memory(&self) -> Result<()> {
        let need = self.memory_estimate();
        let Some(avail) = available_memory() else { return Ok(()) };
        if need <= avail as u128 {
            return Ok(());
        }
        let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
        let params = self.encoder.num_params().saturating_mul(16);
        let (field, what) = if params > avail as u128 {
            ("encoder.backbone.width", format!("{} gives {} parameters", self.encoder.backbone.width, self.encoder.num_params()))
        } else {
            ("encoder.projector.sizes", format!("a projector output of d = {} (batch {}) needs large matrices in the loss", self.encoder.out_dim(), self.batch_size))
        };
        Err(Error::field(
            field,
            format!("{what}: a training step needs about {:.1} GiB, more than the {:.1} GiB available", gib(need), gib(avail as u128)),
        ))
    }

    /// The recipe as pretty JSON (what `recipe.json` and `mixbt presets --show` hold).
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Read a recipe from a JSON file (`mixbt presets --show NAME > r.json`, or a run's
    /// `recipe.json`); a run folder stands for its `recipe.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = if path.is_dir() { path.join("recipe.json") } else { path.to_path_buf() };
        let s = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        Self::from_json(&s).map_err(|e| Error::format(&file, format!("not a mixbt recipe: {e}")))
    }

    /// Parse a recipe (current, or written before methods were plug-ins: [`migrate_json`]).
    pub fn from_json(s: &str) -> std::result::Result<Self, serde_json::Error> {
        let mut v: serde_json::Value = serde_json::from_str(s)?;
        migrate_json(&mut v);
        serde_json::from_value(v)
    }
}

/// The peak resident memory of this process so far, in bytes (`getrusage`; `None` where the
/// platform does not say).
pub fn peak_resident_memory() -> Option<u64> {
    #[cfg(unix)]
    {
        // SAFETY: `getrusage` fills the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 || u.ru_maxrss <= 0 {
            return None;
        }
        // Kilobytes on Linux, bytes on macOS.
        let unit = if cfg!(target_os = "macos") { 1 } else { 1024 };
        Some(u.ru_maxrss as u64 * unit)
    }
    #[cfg(not(unix))]
    None
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn available_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = s.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
