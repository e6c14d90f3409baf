//! Self-supervised methods as plug-ins of the one pre-trainer ([`crate::train::Pretrainer`]).
//!
//! A method owns what is specific to it: the heads beyond the encoder's projector (SimCLR's
//! `bn_last`, BYOL's predictor and target network), its forward passes over the views, its loss,
//! the named metrics it reports, what it does after the optimiser step (BYOL's EMA), and the
//! extra tensors it checkpoints. The trainer owns the rest: data, optimiser, schedule, k-NN,
//! checkpoints, history.
//!
//! | `--method` | config | file |
//! |---|---|---|
//! | `mixbt`, `bt` | [`MethodConfig::BarlowTwins`] (`is_mixup` on / off) | `barlow_twins.rs` |
//! | `simclr` | [`MethodConfig::Simclr`] | `simclr.rs` |
//! | `byol` | [`MethodConfig::Byol`] | `byol.rs` |
//! | `wmse` | [`MethodConfig::Wmse`] | `wmse.rs` |
//!
//! Adding a method: a file with its config (`Serialize`/`Deserialize`/`Default`) and a type
//! implementing [`Method`], one variant in [`MethodConfig`] with its arms in the `impl` below
//! (the registry: name, views, build), and its presets in `train::presets`. The README's
//! "Adding a method" walks through it.

pub mod barlow_twins;
pub mod byol;
pub mod simclr;
pub mod wmse;

use std::any::Any;
use std::collections::BTreeMap;

use candle_core::{Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use barlow_twins::{BarlowTwins, BarlowTwinsConfig};
pub use byol::{byol_tau, Byol, ByolConfig};
pub use simclr::{Simclr, SimclrConfig};
pub use wmse::{Wmse, WmseConfig};

use crate::model::Encoder;
use crate::params::ParamStore;
use crate::{Error, Result};

/// Which method a recipe trains, with its settings (serialised with a `kind` tag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MethodConfig {
    /// Barlow Twins, plain (`is_mixup: false`) or mixed (`main.py`, `main_imagenet.py`).
    BarlowTwins(BarlowTwinsConfig),
    /// SimCLR (`ssl-sota/methods/contrastive.py`).
    Simclr(SimclrConfig),
    /// BYOL (`ssl-sota/methods/byol.py`).
    Byol(ByolConfig),
    /// W-MSE (`ssl-sota/methods/w_mse.py`).
    Wmse(WmseConfig),
}

/// The `--method` names and a line about each.
pub const METHODS: [(&str, &str); 5] = [
    ("mixbt", "Mixed Barlow Twins: Barlow Twins plus the mixed-sample regulariser (the paper)"),
    ("bt", "Barlow Twins: cross-correlation of two views towards the identity"),
    ("simclr", "SimCLR: NT-Xent contrast of each view with the other view of the batch"),
    ("byol", "BYOL: an online network predicts an EMA target network's projection"),
    ("wmse", "W-MSE: whitened embeddings of two views pulled together by normalised MSE"),
];

/// A method's name for readers ("Mixed Barlow Twins", "SimCLR", …) from its `--method` name;
/// an unknown name is returned as it is.
pub fn method_title(name: &str) -> &str {
    METHODS.iter().find(|(n, _)| *n == name).and_then(|(_, l)| l.split(':').next()).unwrap_or(name)
}

impl MethodConfig {
    /// The `--method` name: `mixbt`, `bt`, `simclr`, `byol` or `wmse`.
    pub fn name(&self) -> &'static str {
        match self {
            MethodConfig::BarlowTwins(c) if c.is_mixup => "mixbt",
            MethodConfig::BarlowTwins(_) => "bt",
            MethodConfig::Simclr(_) => "simclr",
            MethodConfig::Byol(_) => "byol",
            MethodConfig::Wmse(_) => "wmse",
        }
    }

    /// The defaults of method `name` (one of [`METHODS`]).
    pub fn for_name(name: &str) -> Result<Self> {
        Ok(match name {
            "mixbt" => MethodConfig::BarlowTwins(BarlowTwinsConfig::default()),
            "bt" => MethodConfig::BarlowTwins(BarlowTwinsConfig::plain(Default::default())),
            "simclr" => MethodConfig::Simclr(SimclrConfig::default()),
            "byol" => MethodConfig::Byol(ByolConfig::default()),
            "wmse" => MethodConfig::Wmse(WmseConfig::default()),
            _ => {
                return Err(Error::Config(format!(
                    "unknown method `{name}`; methods: {}",
                    METHODS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                )))
            }
        })
    }

    /// Augmented views per image the method trains on.
    pub fn views(&self) -> usize {
        match self {
            MethodConfig::BarlowTwins(_) => 2,
            MethodConfig::Simclr(c) => c.num_samples,
            MethodConfig::Byol(c) => c.num_samples,
            MethodConfig::Wmse(c) => c.num_samples,
        }
    }

    /// An [`Error::Field`] naming the first setting the method cannot train with at the
    /// recipe's `batch_size`.
    pub fn validate(&self, batch_size: usize) -> Result<()> {
        if self.views() < 2 {
            return Err(Error::field("method.num_samples", format!("must be at least 2 views, got {}", self.views())));
        }
        match self {
            MethodConfig::BarlowTwins(c) => c.validate(),
            MethodConfig::Simclr(c) => finite_positive("method.tau", c.tau),
            MethodConfig::Byol(c) => {
                if !(0.0..=1.0).contains(&c.tau_base) {
                    return Err(Error::field("method.tau_base", format!("must be in [0, 1], got {}", c.tau_base)));
                }
                if c.predictor_hidden == 0 {
                    return Err(Error::field("method.predictor_hidden", "must be at least 1"));
                }
                Ok(())
            }
            MethodConfig::Wmse(c) => c.validate(batch_size),
        }
    }

    /// Bytes the loss holds for a batch of `n` embeddings of size `d` (the memory check).
    /// Barlow Twins in its d×d form: 96 `d × d` f32 matrices (C, C^MA, C^MB, their targets, masks
    /// and their gradients; measured: a step at d = 4096 peaked at 55 with the parameters, one at
    /// d = 8192 passed 85 before the OOM killer ended it); in its Gram form (d > N, d ≥ 2048)
    /// no d×d matrix: 64 `N × d` and 32 `N × N` f64 ones bound it. The others (d ≤ 128, a few
    /// N × N logits): 8 `d × d`, a small allowance, not measured.
    pub fn loss_bytes(&self, n: usize, d: usize) -> u128 {
        let (n, d) = (n as u128, d as u128);
        match self {
            MethodConfig::BarlowTwins(_) if crate::loss::gram_form(n as usize, d as usize) => 64 * n * d * 4 + 32 * n * n * 8,
            MethodConfig::BarlowTwins(_) => 96 * d * d * 4,
            _ => 8 * d * d * 4,
        }
    }

    /// Build the method for `encoder` (whose parameters live in `store`); its own tensors are
    /// initialised from `seed`.
    pub fn build(&self, encoder: &Encoder, store: &ParamStore, seed: u64) -> Result<Box<dyn Method>> {
        Ok(match self {
            MethodConfig::BarlowTwins(c) => Box::new(BarlowTwins::new(c.clone())),
            MethodConfig::Simclr(c) => Box::new(Simclr::new(c.clone(), encoder, seed)?),
            MethodConfig::Byol(c) => Box::new(Byol::new(c.clone(), encoder, store, seed)?),
            MethodConfig::Wmse(c) => Box::new(Wmse::new(c.clone())),
        })
    }
}

fn finite_positive(field: &str, v: f64) -> Result<()> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(Error::field(field, format!("must be positive and finite, got {v}")))
    }
}

/// Where the trainer is when it asks a method for a step.
#[derive(Clone, Copy)]
pub struct StepContext<'a> {
    pub encoder: &'a Encoder,
    pub seed: u64,
    /// 0-based index of this step.
    pub step: usize,
    /// 0-based epoch this step belongs to.
    pub epoch: usize,
    /// Epochs of the recipe.
    pub epochs: usize,
    pub steps_per_epoch: usize,
    /// Blocks the Mixed BT permutation is drawn in: each data-parallel rank permutes its own
    /// rows (as `main_imagenet.py`), so this is the world size, or a multiple of it; one process
    /// can draw in blocks too, to match a run with that many ranks. 1: one permutation.
    pub mix_groups: usize,
    /// Blocks of rows Barlow Twins standardises its embeddings in: 1 (the global batch), or
    /// with `--loss-stats per-rank` one per rank as `main_imagenet.py` does on several GPUs.
    pub stat_blocks: usize,
}

/// What one forward pass of a method gives: the loss to minimise and what to report.
pub struct MethodOutput {
    /// The scalar the optimiser minimises (the history's `loss`).
    pub loss: Tensor,
    /// Named scalar tensors, in the method's column order. Names starting with `loss_` are
    /// components of `loss` (the loss chart draws them); others are diagnostics.
    pub metrics: Vec<(&'static str, Tensor)>,
    /// Named host values of the step (α, λ_reg, τ, …).
    pub values: Vec<(&'static str, f64)>,
}

/// A self-supervised method the pre-trainer can run.
pub trait Method: Send {
    /// The config it was built from (with any run-time overrides left out).
    fn config(&self) -> MethodConfig;

    /// Augmented views per image.
    fn views(&self) -> usize {
        self.config().views()
    }

    /// Parameters the method trains besides the encoder's, named with its own prefix.
    fn params(&self) -> Vec<(String, Var)> {
        vec![]
    }

    /// The forward passes over `views` (each `[N, 3, H, W]`) in train mode, and the loss.
    fn forward(&mut self, ctx: &StepContext, views: &[Tensor]) -> Result<MethodOutput>;

    /// Called after the optimiser step (BYOL's EMA update of its target network).
    fn after_step(&mut self, _ctx: &StepContext) -> Result<()> {
        Ok(())
    }

    /// Tensors a checkpoint keeps besides the encoder's and the optimiser's (the method's
    /// parameters and buffers, a target network).
    fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        BTreeMap::new()
    }

    /// Restore [`state_tensors`](Self::state_tensors); names and shapes must match exactly.
    fn load_state_tensors(&mut self, map: &BTreeMap<String, Tensor>) -> Result<()> {
        if let Some(k) = map.keys().next() {
            return Err(Error::Checkpoint(format!("unexpected method tensor `{k}`: {} keeps none", self.config().name())));
        }
        Ok(())
    }

    /// Scalars a checkpoint keeps (run-time overrides).
    fn state_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restore [`state_json`](Self::state_json).
    fn load_state_json(&mut self, _v: &serde_json::Value) -> Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// The RNG of step `step` (mixing permutation and α, W-MSE's sub-batches): keyed by
/// `(seed, step)`, so a resumed run draws what the uninterrupted one did.
pub fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64((seed ^ 0x5eed_0f_a1fa).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// Every rank's rows of each tensor (the global batch, this rank's block differentiable):
/// [`crate::dist::Group::gather_rows`] in the current world; the identity for one process.
pub(crate) fn gather_all(ts: Vec<Tensor>) -> Result<Vec<Tensor>> {
    let world = crate::dist::world();
    if world.size() == 1 {
        return Ok(ts);
    }
    ts.iter().map(|t| world.gather_rows(t)).collect()
}

/// An error unless a method that compares views got at least two.
pub(crate) fn check_views(method: &str, views: &[Tensor]) -> Result<()> {
    if views.len() < 2 {
        return Err(Error::Config(format!("{method} needs at least 2 views, got {}", views.len())));
    }
    Ok(())
}

/// All unordered view pairs `(i, j)`, `i < j`, as `ssl-sota` loops over them.
pub(crate) fn view_pairs(n: usize) -> Vec<(usize, usize)> {
    (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).collect()
}

/// Over every view pair `(i, j)`, `i < j`: the two directions `f(i, j) = (i → j, j → i)`, each
/// summed over the pairs; with the number of pairs (SimCLR's and BYOL's symmetric losses).
pub(crate) fn sum_directions(views: usize, mut f: impl FnMut(usize, usize) -> Result<(Tensor, Tensor)>) -> Result<(Tensor, Tensor, usize)> {
    let pairs = view_pairs(views);
    let mut acc: Option<(Tensor, Tensor)> = None;
    for &(i, j) in &pairs {
        let (a, b) = f(i, j)?;
        acc = Some(match acc {
            Some((sa, sb)) => ((sa + a)?, (sb + b)?),
            None => (a, b),
        });
    }
    let (a, b) = acc.ok_or_else(|| Error::Config(format!("{views} view(s): a symmetric loss needs at least 2")))?;
    Ok((a, b, pairs.len()))
}

/// A method's own tensors: a [`ParamStore`] whose names carry `prefix`.
pub(crate) fn prefixed(store: &ParamStore, prefix: &str) -> BTreeMap<String, Tensor> {
    store.tensors().into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)).collect()
}

/// Load the tensors under `prefix` of `map` into `store` (exact names and shapes).
pub(crate) fn load_prefixed(store: &ParamStore, prefix: &str, map: &BTreeMap<String, Tensor>) -> Result<()> {
    let sub: BTreeMap<String, Tensor> = map.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v.clone()))).collect();
    store.load_map(&sub).map_err(|e| match e {
        Error::Checkpoint(m) => Error::Checkpoint(format!("method tensors `{prefix}*`: {m}")),
        e => e,
    })
}

/// Trainable (non-buffer) parameters of `store`, named with `prefix`.
pub(crate) fn trainable_prefixed(store: &ParamStore, prefix: &str) -> Vec<(String, Var)> {
    store.trainable().into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)).collect()
}

/// Reject any name of `map` that does not start with one of `prefixes`.
pub(crate) fn check_prefixes(map: &BTreeMap<String, Tensor>, prefixes: &[&str], method: &str) -> Result<()> {
    if let Some(k) = map.keys().find(|k| !prefixes.iter().any(|p| k.starts_with(p))) {
        return Err(Error::Checkpoint(format!("unexpected method tensor `{k}` for {method} (expected names under {})", prefixes.join(", "))));
    }
    Ok(())
}
