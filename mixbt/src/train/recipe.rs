//! A pre-training recipe: everything that defines a run, serialisable to JSON.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::{BuiltinConfig, DatasetKind, Split, Transform};
use crate::eval::KnnConfig;
use crate::loss::MixedBarlowTwins;
use crate::model::EncoderConfig;
use crate::optim::OptimizerConfig;

/// Where the data come from and how they are transformed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    pub kind: DatasetKind,
    /// Local folder (not needed for `builtin`).
    pub dir: Option<PathBuf>,
    /// A Hub data set (`org/name`) to download as parquet, instead of `dir`.
    #[serde(default)]
    pub hub_dataset: Option<String>,
    /// Split used for pre-training (`train`, or `train+unlabeled` for STL-10).
    pub pretrain_split: Split,
    /// View A and view B transforms (the same for the small data sets).
    pub view_a: Transform,
    pub view_b: Transform,
    /// k-NN / probe evaluation transform.
    pub eval: Transform,
    /// Use only this many pre-training images (evenly spread), for quick runs.
    #[serde(default)]
    pub train_subset: Option<usize>,
    /// Use only this many test images for k-NN.
    #[serde(default)]
    pub test_subset: Option<usize>,
    /// Use only this many train images as the k-NN bank (default: the whole train split).
    #[serde(default)]
    pub bank_subset: Option<usize>,
    /// Built-in data set settings.
    #[serde(default)]
    pub builtin: Option<BuiltinConfig>,
    #[serde(default)]
    pub skip_corrupt: bool,
}

/// How the learning rate evolves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LrSchedule {
    /// The original warm-up (10 epochs) + cosine to 0.1 % with `base = batch/256`;
    /// `epoch_offset` is `main.py`'s one-epoch step offset.
    WarmupCosine { warmup_epochs: usize, epoch_offset: bool },
    /// A constant factor 1.
    Constant,
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
    pub loss: MixedBarlowTwins,
    /// Run the third (mixed) forward pass (`--is_mixup`). With `false` this is plain Barlow Twins.
    pub is_mixup: bool,
    /// ImageNet's linear λ_reg warm-up over this many epochs (`adjust_mixup_scale`).
    #[serde(default)]
    pub lambda_reg_warmup_epochs: Option<usize>,
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
    #[serde(default)]
    pub paper: Option<PaperResult>,
}
