//! The step-wise pre-trainer of every method: `step()` runs one optimisation step (the method's
//! forward passes over its views, its loss, the optimiser, the method's after-step work),
//! `epoch()` a whole epoch, `fit()` the recipe with periodic k-NN, checkpoints and the run
//! directory. Between calls a notebook can inspect or change anything (the encoder, the method,
//! `set_lambda_reg`, the history). Nothing here knows a method: they are plug-ins
//! ([`crate::method`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, CheckpointState};
use super::history::{History, Metrics, StepStats};
use super::recipe::{Recipe, StepSchedule};
use crate::data::{self, Loader, LoaderConfig, ViewsEpoch};
use crate::eval::{knn_eval, knn_eval_all, KnnResult};
use crate::io::{atomic_write, read_safetensors, DirLock, Outputs};
use crate::loss::LossParts;
use crate::method::{BarlowTwins, Method, StepContext};
use crate::model::{encoder, Encoder};
use crate::optim::{Adam, Lars, Optimizer, OptimizerConfig, Sgd};
use crate::params::ParamStore;
use crate::{Error, Result};

/// Run-time options (not part of the recipe).
#[derive(Debug, Clone)]
pub struct PretrainOptions {
    pub seed: u64,
    pub device: Device,
    /// Decode/augment threads (0: all cores).
    pub workers: usize,
    /// Run directory (history, checkpoints, summary); `None` keeps everything in memory.
    pub out_dir: Option<PathBuf>,
    /// Also checkpoint every this many steps (besides every epoch end).
    pub checkpoint_every: Option<usize>,
    /// Checkpoints kept in the run directory.
    pub keep_checkpoints: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop `fit` after this much wall time (then the final k-NN runs).
    pub time_budget: Option<Duration>,
    /// Skip the k-NN of the randomly initialised network at the start of `fit`.
    pub skip_random_init_knn: bool,
    /// A fresh run into a run directory that holds a previous run replaces it (its checkpoints,
    /// model, history and summary are removed first); without it, that is an error.
    pub overwrite: bool,
    /// Blocks of the Mixed BT mixing permutation (`None`: the world size, i.e. each
    /// data-parallel rank permutes its own rows; one process: one permutation). One process
    /// with `Some(k)` draws what `k` ranks draw.
    pub mix_groups: Option<usize>,
    /// How data-parallel ranks combine their gradients (nothing changes for one process).
    pub grad_reduce: GradReduce,
    /// Which rows Barlow Twins standardises its embeddings over.
    pub loss_stats: LossStats,
}

/// The rows over which (Mixed) Barlow Twins standardises the embeddings before the
/// cross-correlations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossStats {
    /// The global batch (one process; FB's Barlow Twins with its `SyncBatchNorm`; the default).
    #[default]
    Global,
    /// Each rank's own rows, the cross-correlations then summed over ranks: `main_imagenet.py`
    /// as coded (mix-bt's per-GPU mean and std). One process uses the `mix_groups` blocks, to
    /// compare with that many ranks.
    PerRank,
}

/// How the gradients of data-parallel ranks are combined. Every rank computes the loss of the
/// whole (global) batch and back-propagates through its own rows only, so the gradients'
/// **sum** over ranks is the gradient of one process training on the global batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradReduce {
    /// The one-process gradient (the default).
    #[default]
    Sum,
    /// `main_imagenet.py` as coded: DDP averages the ranks' gradients, while each rank's
    /// `all_reduce` of `c` is not autograd-aware, so the loss's gradient is divided by the
    /// number of ranks (an implicit 1/world-size loss scale).
    MeanAsDdp,
}

impl PretrainOptions {
    /// An [`Error::Field`] for a zero checkpoint interval or a zero / non-finite time budget.
    pub fn validate(&self) -> Result<()> {
        if self.checkpoint_every == Some(0) {
            return Err(Error::field("checkpoint_every", "must be at least 1 step"));
        }
        if self.time_budget.is_some_and(|t| t.is_zero()) {
            return Err(Error::field("time_budget", "must be positive"));
        }
        Ok(())
    }
}

impl Default for PretrainOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            device: Device::Cpu,
            workers: 0,
            out_dir: None,
            checkpoint_every: None,
            keep_checkpoints: 2,
            progress: false,
            time_budget: None,
            skip_random_init_knn: false,
            overwrite: false,
            mix_groups: None,
            grad_reduce: GradReduce::Sum,
            loss_stats: LossStats::Global,
        }
    }
}

/// What `fit` reports and writes as `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub preset: String,
    pub steps: usize,
    pub epochs: usize,
    pub knn_top1: f64,
    pub knn_top5: f64,
    pub knn_top1_random_init: f64,
    pub knn_top5_random_init: f64,
    /// `ssl-sota`'s k-NN (k = `knn.majority_k`, 5; Euclidean, majority vote) of the final network.
    #[serde(default = "nan")]
    pub knn5_top1: f64,
    #[serde(default = "nan")]
    pub knn5_top5: f64,
    /// The method (`mixbt`, `bt`, `simclr`, `byol`, `wmse`).
    #[serde(default = "mixbt")]
    pub method: String,
    pub final_loss: f64,
    pub wall_seconds: f64,
    pub images_per_s: f64,
    pub checkpoint: Option<String>,
    /// The peak resident memory of the process when the run ended, in MiB (NaN where the
    /// platform does not say; in a notebook, the kernel's peak, earlier cells included).
    #[serde(default = "nan")]
    pub peak_rss_mib: f64,
}

fn nan() -> f64 {
    f64::NAN
}
fn mixbt() -> String {
    "mixbt".into()
}

/// A run folder's outputs: a previous run is one with checkpoints, a model, a history or a
/// summary (a lone `recipe.json` is what a run that failed at its start left); `--overwrite`
/// removes every file a run writes, and nothing else.
const RUN_OUTPUTS: Outputs = Outputs {
    previous: &["checkpoints", "model.safetensors", "model.json", "summary.json", "history.csv", "history.parquet"],
    removed: &["checkpoints", "model.safetensors", "model.json", "summary.json", "history.csv", "history.parquet", "plots", "recipe.json"],
    what: "a previous run",
    hint: "continue it with --resume, replace it with --overwrite, or choose another --out",
};

/// Lock the run directory `dir` for a fresh run: it must hold no previous run, or, with
/// `overwrite`, the previous run is removed (with the model card mixbt wrote for it).
fn claim_run_dir(dir: &Path, overwrite: bool) -> Result<DirLock> {
    let lock = DirLock::claim(dir, &RUN_OUTPUTS, overwrite)?;
    // A model card mixbt wrote for the old run (`hub push`) describes the old run.
    let card = dir.join("README.md");
    if overwrite && std::fs::read_to_string(&card).is_ok_and(|c| c.contains("library_name: mixbt")) {
        let _ = std::fs::remove_file(&card);
    }
    Ok(lock)
}

/// Step-wise self-supervised pre-training with the recipe's method.
pub struct Pretrainer {
    recipe: Recipe,
    opts: PretrainOptions,
    store: ParamStore,
    encoder: Encoder,
    method: Box<dyn Method>,
    opt: Box<dyn Optimizer>,
    loader: Loader,
    iter: Option<ViewsEpoch>,
    /// Steps done (0-based index of the next step).
    step: usize,
    /// Epoch in progress (0-based).
    epoch: usize,
    /// Batches of the current epoch done.
    batch_in_epoch: usize,
    history: History,
    knn_random_init: Option<KnnResult>,
    last_knn: Option<KnnResult>,
    /// The final network's majority-vote k-NN (`ssl-sota`'s, k = 5), after `fit`.
    last_knn_majority: Option<KnnResult>,
    schedule: StepSchedule,
    /// The data-parallel world (one process unless launched as ranks).
    world: crate::dist::Group,
    /// The run directory's lock, held while this trainer lives (rank 0's).
    _lock: Option<DirLock>,
    /// Seconds of `fit` before the one in progress: the sittings up to the checkpoint this
    /// trainer resumed from, and its earlier calls.
    wall_before: f64,
    /// When this sitting's `fit` began.
    fit_started: Option<Instant>,
}

impl Pretrainer {
    /// Build the encoder, optimiser and loader of `recipe`.
    pub fn new(recipe: Recipe, opts: PretrainOptions) -> Result<Self> {
        Self::build(recipe, opts, true)
    }

    /// [`new`](Self::new) for a fresh run (`fresh`: the run directory must not hold another
    /// run) or for [`resume`](Self::resume).
    fn build(recipe: Recipe, opts: PretrainOptions, fresh: bool) -> Result<Self> {
        recipe.validate()?;
        if opts.device.is_cpu() {
            recipe.check_memory()?;
        }
        opts.validate()?;
        let world = crate::dist::world();
        if let Some(k) = opts.mix_groups {
            if k == 0 || k % world.size() != 0 || recipe.batch_size % k != 0 {
                return Err(Error::field("mix_groups", format!("{k} must be a multiple of the {} rank(s) and divide the batch size {}", world.size(), recipe.batch_size)));
            }
        }
        // Rank 0 writes the run; the others only read (a checkpoint to resume from).
        let lock = match &opts.out_dir {
            _ if !world.is_root() => None,
            Some(d) if fresh => Some(claim_run_dir(d, opts.overwrite)?),
            Some(d) => Some(DirLock::acquire(d)?),
            None => None,
        };
        let store = ParamStore::new(opts.seed, DType::F32, &opts.device);
        let enc = encoder(&recipe.encoder, store.var_builder())?;
        let method = recipe.method.build(&enc, &store, opts.seed)?;
        let train = data::open(&recipe.data, recipe.data.pretrain_split)?;
        let lc = LoaderConfig {
            batch_size: recipe.batch_size,
            shuffle: true,
            drop_last: true,
            seed: opts.seed,
            workers: opts.workers,
            prefetch: 2,
        };
        // View A, view B, and view B's transform again for any further view.
        let transforms: Vec<_> =
            (0..method.views()).map(|v| if v == 0 { recipe.data.view_a.clone() } else { recipe.data.view_b.clone() }).collect();
        let mut loader = Loader::new(train, transforms, lc, &opts.device)?;
        if world.size() > 1 {
            loader = loader.sharded(world.rank(), world.size())?;
        }
        // The encoder's parameters, then the method's own (none for Barlow Twins).
        let mut params = store.trainable();
        params.extend(method.params());
        let opt: Box<dyn Optimizer> = match &recipe.optimizer {
            OptimizerConfig::Adam(c) => Box::new(Adam::single(params, *c)),
            OptimizerConfig::Lars(c) => Box::new(Lars::new(params, *c)),
            OptimizerConfig::Sgd(c) => Box::new(Sgd::single(params, *c)),
        };
        let schedule = recipe.step_schedule(loader.batches_per_epoch());
        Ok(Self {
            recipe,
            opts,
            store,
            encoder: enc,
            method,
            opt,
            loader,
            iter: None,
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            history: History::default(),
            knn_random_init: None,
            last_knn: None,
            last_knn_majority: None,
            schedule,
            world,
            _lock: lock,
            wall_before: 0.0,
            fit_started: None,
        })
    }

    /// Resume from a checkpoint directory (or a run directory: its latest checkpoint).
    /// The recipe comes from the checkpoint; `opts` supplies the run-time options.
    pub fn resume(path: &Path, mut opts: PretrainOptions) -> Result<Self> {
        let dir = checkpoint::resolve(path)?;
        let state = CheckpointState::read(&dir)?;
        opts.seed = state.seed;
        // Keep writing into the run the checkpoint belongs to, unless told otherwise.
        if opts.out_dir.is_none() {
            opts.out_dir = dir.parent().and_then(|c| c.parent()).map(Path::to_path_buf);
        }
        let mut me = Self::build(state.recipe.clone(), opts, false)?;
        me.store.load_safetensors(&dir.join(checkpoint::MODEL_FILE))?;
        let ot = read_safetensors(&dir.join(checkpoint::OPTIMIZER_FILE), &me.opts.device)?;
        me.opt.load_state(&ot, &state.optimizer).map_err(|e| Error::format(&dir, e.to_string()))?;
        // The method's tensors (none for Barlow Twins, whose checkpoints have no such file).
        let mpath = dir.join(crate::ckpt::METHOD_FILE);
        let mt = if mpath.exists() { read_safetensors(&mpath, &me.opts.device)? } else { BTreeMap::new() };
        me.method.load_state_tensors(&mt).map_err(|e| Error::format(&mpath, e.to_string()))?;
        if state.method_state.is_null() {
            // Written before methods were plug-ins: the λ_reg override was the only method state.
            if let Some(bt) = me.method.as_any_mut().downcast_mut::<BarlowTwins>() {
                bt.set_lambda_reg(state.lambda_reg_override);
            }
        } else {
            me.method.load_state_json(&state.method_state)?;
        }
        me.step = state.step;
        me.epoch = state.epoch;
        me.batch_in_epoch = state.batch_in_epoch;
        me.history = state.history;
        me.knn_random_init = state.knn_random_init;
        me.last_knn = state.last_knn;
        me.wall_before = state.wall_seconds;
        Ok(me)
    }

    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }
    pub fn params(&self) -> &ParamStore {
        &self.store
    }
    pub fn history(&self) -> &History {
        &self.history
    }
    pub fn loader(&self) -> &Loader {
        &self.loader
    }
    pub fn options(&self) -> &PretrainOptions {
        &self.opts
    }
    /// The data-parallel world this trainer runs in.
    pub fn world(&self) -> &crate::dist::Group {
        &self.world
    }
    /// Steps done.
    pub fn steps_done(&self) -> usize {
        self.step
    }
    /// Epochs completed.
    pub fn epochs_done(&self) -> usize {
        self.epoch
    }
    pub fn steps_per_epoch(&self) -> usize {
        self.loader.batches_per_epoch()
    }
    /// The method (downcast with `as_any()` to reach its own API, e.g. BYOL's target network).
    pub fn method(&self) -> &dyn Method {
        self.method.as_ref()
    }
    pub fn method_mut(&mut self) -> &mut dyn Method {
        self.method.as_mut()
    }
    /// The method as its concrete type, when it is `T`.
    pub fn method_as<T: 'static>(&self) -> Option<&T> {
        self.method.as_any().downcast_ref::<T>()
    }
    /// Barlow Twins' loss components of the last step (tensors still attached to the graph's
    /// values); `None` for the other methods.
    pub fn last_parts(&self) -> Option<&LossParts> {
        self.method_as::<BarlowTwins>().and_then(|b| b.last_parts())
    }
    /// The final network's majority-vote k-NN (`ssl-sota`'s, k = 5), once `fit` has run.
    pub fn last_knn_majority(&self) -> Option<KnnResult> {
        self.last_knn_majority
    }
    pub fn knn_random_init(&self) -> Option<KnnResult> {
        self.knn_random_init
    }
    pub fn last_knn(&self) -> Option<KnnResult> {
        self.last_knn
    }

    /// Change the step budget of a (resumed) run: train to `epochs` epochs in all (the
    /// learning-rate schedule is rebuilt over them, so the rest of the cosine stretches) and/or
    /// stop after `max_steps` steps. A budget already used up is an error.
    pub fn set_budget(&mut self, epochs: Option<usize>, max_steps: Option<usize>) -> Result<()> {
        if let Some(e) = epochs {
            if e * self.steps_per_epoch() < self.step || e == 0 {
                return Err(Error::Config(format!(
                    "--epochs {e}: the run has already done {} steps ({} epochs of {} steps); give more epochs",
                    self.step,
                    self.epoch,
                    self.steps_per_epoch()
                )));
            }
            self.recipe.epochs = e;
            self.schedule = self.recipe.step_schedule(self.steps_per_epoch());
        }
        if let Some(m) = max_steps {
            if m < self.step {
                return Err(Error::Config(format!("--max-steps {m}: the run has already done {} steps", self.step)));
            }
            self.recipe.max_steps = Some(m);
        }
        Ok(())
    }

    /// Override λ_reg from the next step on (`None` returns to the recipe's value and ramp).
    /// (Mixed) Barlow Twins only: an error for the other methods.
    pub fn set_lambda_reg(&mut self, v: Option<f64>) -> Result<()> {
        let name = self.recipe.method.name();
        let bt = self
            .method
            .as_any_mut()
            .downcast_mut::<BarlowTwins>()
            .ok_or_else(|| Error::Config(format!("{name} has no λ_reg (only bt and mixbt have)")))?;
        bt.set_lambda_reg(v);
        Ok(())
    }

    /// λ_reg in force at the next step (NaN for a method without one).
    pub fn lambda_reg(&self) -> f64 {
        self.method_as::<BarlowTwins>().map(|b| b.lambda_reg(self.step, self.steps_per_epoch())).unwrap_or(f64::NAN)
    }

    /// The learning rate of each group at 0-based step `step`.
    pub fn lrs_at(&self, step: usize) -> Vec<f64> {
        let f = self.schedule.factor(step);
        self.recipe.optimizer.base_lrs().into_iter().map(|lr| f * lr).collect()
    }

    fn total_steps(&self) -> usize {
        let all = self.recipe.epochs * self.steps_per_epoch();
        self.recipe.max_steps.map(|m| m.min(all)).unwrap_or(all)
    }

    /// Whether the recipe's step budget is used up.
    pub fn finished(&self) -> bool {
        self.step >= self.total_steps()
    }

    fn next_batch(&mut self) -> Result<Vec<Tensor>> {
        loop {
            if self.iter.is_none() {
                self.iter = Some(self.loader.views_epoch(self.epoch as u64, self.batch_in_epoch));
            }
            match self.iter.as_mut().unwrap().next() {
                Some(b) => return Ok(b?.views),
                None => {
                    self.iter = None;
                    self.epoch += 1;
                    self.batch_in_epoch = 0;
                }
            }
        }
    }

    /// One optimisation step on the next batch of the loader.
    pub fn step(&mut self) -> Result<StepStats> {
        let views = self.next_batch()?;
        let s = self.step_views(&views)?;
        self.batch_in_epoch += 1;
        if self.batch_in_epoch == self.steps_per_epoch() {
            self.iter = None;
            self.epoch += 1;
            self.batch_in_epoch = 0;
        }
        Ok(s)
    }

    /// One optimisation step on explicit views `[N, 3, H, W]` (does not advance the loader); a
    /// two-view method's step.
    pub fn step_on(&mut self, view_a: &Tensor, view_b: &Tensor) -> Result<StepStats> {
        self.step_views(&[view_a.clone(), view_b.clone()])
    }

    /// One optimisation step on explicit views, as many as the method takes.
    pub fn step_views(&mut self, views: &[Tensor]) -> Result<StepStats> {
        let t0 = Instant::now();
        let lrs = self.lrs_at(self.step);
        for (g, lr) in lrs.iter().enumerate() {
            self.opt.set_lr(g, *lr);
        }
        let ctx = StepContext {
            encoder: &self.encoder,
            seed: self.opts.seed,
            step: self.step,
            epoch: self.epoch,
            epochs: self.recipe.epochs,
            steps_per_epoch: self.loader.batches_per_epoch(),
            mix_groups: self.opts.mix_groups.unwrap_or(self.world.size()),
            stat_blocks: match self.opts.loss_stats {
                LossStats::Global => 1,
                LossStats::PerRank if self.world.size() > 1 => self.world.size(),
                LossStats::PerRank => self.opts.mix_groups.unwrap_or(1),
            },
        };
        crate::dist::set_step(self.step);
        crate::dist::fault_point(self.world.rank(), self.step + 1);
        // Forward and backward with each kernel packed once for the step (the weights change
        // only in the optimiser step, after).
        let (method, precision) = (&mut self.method, self.recipe.precision);
        // Errors of the forward pass are `(true, e)`, of the backward pass `(false, e)`.
        let step = crate::ops::with_weight_cache(|| {
            let prof = crate::ops::profile::scope("step.forward+loss");
            // The recipe's precision for the products of the forward pass, and of the backward
            // pass (each convolution keeps the precision it ran its forward pass at).
            let out = crate::ops::with_precision(precision, || method.forward(&ctx, views)).map_err(|e| (true, e))?;
            drop(prof);
            let _prof = crate::ops::profile::scope("step.backward");
            let grads = out.loss.backward().map_err(|e| (false, e.into()))?;
            Ok((out, grads))
        });
        let (out, mut grads) = step.map_err(|(forward, e)| if forward { self.stop_error(e) } else { e })?;
        if self.world.size() > 1 {
            let _prof = crate::ops::profile::scope("step.all-reduce");
            let mut vars: Vec<candle_core::Var> = self.store.trainable().into_iter().map(|(_, v)| v).collect();
            vars.extend(self.method.params().into_iter().map(|(_, v)| v));
            self.world.reduce_grads(&mut grads, &vars, self.opts.grad_reduce == GradReduce::MeanAsDdp)?;
        }
        let prof = crate::ops::profile::scope("step.optimizer");
        self.opt.step(&grads)?;
        drop(prof);
        self.method.after_step(&ctx)?;
        let mut ts: Vec<&Tensor> = out.metrics.iter().map(|(_, t)| t).collect();
        ts.push(&out.loss);
        let vals: Vec<f64> = Tensor::stack(&ts, 0)?.to_dtype(DType::F64)?.to_vec1()?;
        let mut metrics = Metrics::default();
        for ((name, _), v) in out.metrics.iter().zip(&vals) {
            metrics.push(name, *v);
        }
        for (name, v) in &out.values {
            metrics.push(name, *v);
        }
        // Images of the global batch.
        let n = views.first().map(|v| v.dim(0)).transpose()?.unwrap_or(0) * self.world.size();
        let secs = t0.elapsed().as_secs_f64();
        self.step += 1;
        let stats = StepStats {
            step: self.step,
            epoch: self.epoch + 1,
            loss: vals[vals.len() - 1],
            lr: lrs[0],
            images_per_s: n as f64 / secs,
            seconds: secs,
            knn_top1: None,
            knn_top5: None,
            metrics,
        };
        self.history.push(stats.clone());
        Ok(stats)
    }

    /// The error that stops a run when the loss cannot be computed (a zero-variance column, a
    /// non-finite value): the same variant, naming the step and the last good checkpoint. Other
    /// errors (a shape mismatch, …) are returned as they are, so they are reported as such.
    fn stop_error(&self, e: Error) -> Error {
        let ckpt = || {
            self.opts
                .out_dir
                .as_ref()
                .and_then(|d| checkpoint::resolve(d).ok())
                .map(|p| format!("the last good checkpoint is {} (resume with --resume)", p.display()))
                .unwrap_or_else(|| "no checkpoint was written yet".into())
        };
        let at = format!("training stopped at step {} (epoch {})", self.step + 1, self.epoch + 1);
        match e {
            Error::ZeroVariance(m) => Error::ZeroVariance(format!("{at}: {m}; {}", ckpt())),
            Error::NonFinite(m) => Error::NonFinite(format!("{at}: {m}; {}", ckpt())),
            other => other,
        }
    }

    /// Run the rest of the current epoch (or until the step budget); returns its last step.
    pub fn epoch(&mut self) -> Result<Option<StepStats>> {
        let start_epoch = self.epoch;
        let mut last = None;
        while self.epoch == start_epoch && !self.finished() {
            last = Some(self.step()?);
        }
        Ok(last)
    }

    /// The class names of the pre-training data (what k-NN predicts; chance is 1 / their count).
    pub fn class_names(&self) -> Vec<String> {
        self.loader.dataset().classes()
    }

    /// Weighted k-NN of the current backbone: bank = train split, test = test split, both
    /// under the eval transform.
    /// With data-parallel ranks, rank 0 computes it and the others receive its result.
    pub fn knn(&self) -> Result<KnnResult> {
        self.on_root(|| knn_eval(&self.encoder, &self.recipe.data, &self.recipe.knn, self.opts.workers))
    }

    /// `f` at the recipe's precision on rank 0, its result on every rank.
    fn on_root<T: Serialize + serde::de::DeserializeOwned>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let r = if self.world.is_root() { Some(crate::ops::with_precision(self.recipe.precision, f)?) } else { None };
        self.world.broadcast_json(r)
    }

    /// The weighted k-NN (`main.py`: k = 200, T = 0.5) and `ssl-sota`'s majority vote (k = 5,
    /// Euclidean, raw features) of the current backbone, from one embedding pass.
    pub fn knn_all(&self) -> Result<(KnnResult, KnnResult)> {
        self.on_root(|| knn_eval_all(&self.encoder, &self.recipe.data, &self.recipe.knn, self.opts.workers))
    }

    /// Save a checkpoint into the run directory (atomic); returns its folder. Data-parallel
    /// ranks other than 0 write nothing: for them this is an error.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let out = self.opts.out_dir.as_ref().ok_or_else(|| Error::Config("no run directory (--out) to checkpoint into".into()))?;
        if !self.world.is_root() {
            return Err(Error::Config(format!("rank {} does not write checkpoints (rank 0 writes the run)", self.world.rank())));
        }
        let state = CheckpointState {
            version: 2,
            recipe: self.recipe.clone(),
            seed: self.opts.seed,
            step: self.step,
            epoch: self.epoch,
            batch_in_epoch: self.batch_in_epoch,
            lambda_reg_override: None,
            method_state: self.method.state_json(),
            optimizer: self.opt.state_scalars(),
            rng: serde_json::json!({"kind": "keyed-chacha8", "seed": self.opts.seed, "note": "every draw is keyed by (seed, epoch, sample, view) or (seed, step); no stream state"}),
            knn_random_init: self.knn_random_init,
            last_knn: self.last_knn,
            wall_seconds: self.wall_seconds(),
            history: self.history.clone(),
        };
        checkpoint::save(out, &self.store, self.opt.as_ref(), &self.method.state_tensors(), &state, self.opts.keep_checkpoints)
    }

    /// Run the recipe to the end (or the step / time budget): k-NN of the random network first,
    /// periodic k-NN, a checkpoint per epoch, then the final k-NN, the final model and the summary.
    pub fn fit(&mut self) -> Result<Summary> {
        let res = self.fit_inner();
        if let Some(t) = self.fit_started.take() {
            self.wall_before += t.elapsed().as_secs_f64();
        }
        if res.is_err() {
            // A run that fails before its first checkpoint leaves no half-started run folder.
            if let Some(d) = &self.writes_to() {
                if checkpoint::resolve(d).is_err() {
                    let _ = std::fs::remove_file(d.join("recipe.json"));
                }
            }
        }
        res
    }

    /// The run directory this process writes into: rank 0's `out_dir` (other ranks write
    /// nothing).
    fn writes_to(&self) -> Option<PathBuf> {
        self.opts.out_dir.clone().filter(|_| self.world.is_root())
    }

    /// Seconds of [`fit`](Self::fit) so far over every sitting of the run: those before the
    /// checkpoint it resumed from, and this one's.
    pub fn wall_seconds(&self) -> f64 {
        self.wall_before + self.fit_started.map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    fn fit_inner(&mut self) -> Result<Summary> {
        let t0 = Instant::now();
        self.fit_started = Some(t0);
        if let Some(d) = &self.writes_to() {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
            atomic_write(&d.join("recipe.json"), serde_json::to_string_pretty(&self.recipe)?.as_bytes())?;
        }
        if self.knn_random_init.is_none() && !self.opts.skip_random_init_knn {
            let r = self.knn()?;
            if self.opts.progress && self.world.is_root() {
                eprintln!("k-NN of the randomly initialised network: top-1 {:.2}%, top-5 {:.2}%", r.top1, r.top5);
            }
            self.knn_random_init = Some(r);
        }
        let total = self.total_steps();
        let pb = if self.opts.progress && self.world.is_root() {
            let pb = indicatif::ProgressBar::new(total as u64);
            pb.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps ({eta}) {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            pb.set_position(self.step as u64);
            Some(pb)
        } else {
            None
        };
        let mut timed_out = false;
        while !self.finished() {
            let s = self.step()?;
            if let Some(pb) = &pb {
                pb.set_position(self.step as u64);
                pb.set_message(format!("epoch {} loss {:.3}{} {:.0} img/s", s.epoch, s.loss, s.metrics.components_text(), s.images_per_s));
            }
            let epoch_end = self.batch_in_epoch == 0;
            if let Some(every) = self.opts.checkpoint_every {
                if self.step % every == 0 && !epoch_end && self.writes_to().is_some() {
                    self.save_checkpoint()?;
                }
            }
            if epoch_end && !self.finished() {
                let k = self.recipe.knn_every_epochs;
                if k > 0 && self.epoch % k == 0 {
                    let r = self.knn()?;
                    self.history.set_knn(r.top1, r.top5);
                    self.last_knn = Some(r);
                    if let Some(pb) = &pb {
                        pb.println(format!("epoch {}: k-NN top-1 {:.2}% top-5 {:.2}%", self.epoch, r.top1, r.top5));
                    }
                }
                if let Some(d) = self.writes_to() {
                    self.save_checkpoint()?;
                    self.history.write(&d)?;
                }
            }
            let budget = match (self.opts.time_budget, self.recipe.time_budget_s.map(Duration::from_secs_f64)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(b) = budget {
                // Rank 0's clock decides for every rank.
                let over = self.world.broadcast_json(self.world.is_root().then(|| t0.elapsed() > b))?;
                if over {
                    timed_out = true;
                    break;
                }
            }
        }
        if let Some(pb) = &pb {
            pb.finish_and_clear();
            if timed_out {
                eprintln!("time budget reached after {} steps", self.step);
            }
        }
        let (r, r5) = self.knn_all()?;
        self.history.set_knn(r.top1, r.top5);
        self.last_knn = Some(r);
        self.last_knn_majority = Some(r5);
        let mut ckpt = None;
        if let Some(d) = self.writes_to() {
            ckpt = Some(self.save_checkpoint()?.display().to_string());
            self.history.write(&d)?;
            self.save_model(&d.join("model.safetensors"))?;
        }
        let ri = self.knn_random_init.unwrap_or(KnnResult { top1: f64::NAN, top5: f64::NAN, n_test: 0 });
        let rows = &self.history.rows;
        let ips = if rows.is_empty() {
            0.0
        } else {
            let tail = &rows[rows.len().saturating_sub(50)..];
            tail.iter().map(|r| r.images_per_s).sum::<f64>() / tail.len() as f64
        };
        let summary = Summary {
            preset: self.recipe.name.clone(),
            steps: self.step,
            epochs: self.epoch,
            knn_top1: r.top1,
            knn_top5: r.top5,
            knn_top1_random_init: ri.top1,
            knn_top5_random_init: ri.top5,
            knn5_top1: r5.top1,
            knn5_top5: r5.top5,
            method: self.recipe.method.name().into(),
            final_loss: rows.last().map(|r| r.loss).unwrap_or(f64::NAN),
            wall_seconds: self.wall_seconds(),
            images_per_s: ips,
            checkpoint: ckpt,
            peak_rss_mib: super::recipe::peak_resident_memory().map_or(f64::NAN, |b| b as f64 / (1 << 20) as f64),
        };
        if let Some(d) = &self.writes_to() {
            atomic_write(&d.join("summary.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
        }
        Ok(summary)
    }

    /// Save the model (all tensors, original names) with its encoder config as metadata, plus a
    /// `<name>.json` config beside it.
    pub fn save_model(&self, path: &Path) -> Result<()> {
        crate::ckpt::save_model(path, &self.store, &self.recipe.encoder, Some(&self.recipe.name), Some(self.step))
    }
}
