//! The step-wise pre-trainer: `step()` runs one optimisation step (three forward passes: view A,
//! view B and the mixed batch), `epoch()` a whole epoch, `fit()` the recipe with periodic k-NN,
//! checkpoints and the run directory. Between calls a notebook can inspect or change anything
//! (the encoder, `set_lambda_reg`, the history).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, CheckpointState};
use super::history::{History, StepStats};
use super::recipe::{LrSchedule, Recipe};
use crate::data::{self, Loader, LoaderConfig, PairEpoch};
use crate::eval::{knn_eval, KnnResult};
use crate::io::{atomic_write, read_safetensors, DirLock};
use crate::loss::{mix_batch, sample_mix, LossParts};
use crate::model::{encoder, Encoder};
use crate::optim::{Adam, Lars, LambdaRamp, Optimizer, OptimizerConfig, Sgd, WarmupCosine};
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
    pub final_loss: f64,
    pub wall_seconds: f64,
    pub images_per_s: f64,
    pub checkpoint: Option<String>,
}

/// The learning-rate schedule of `recipe` with `spe` steps per epoch.
fn schedule_for(recipe: &Recipe, spe: usize) -> Option<WarmupCosine> {
    match recipe.schedule {
        LrSchedule::WarmupCosine { warmup_epochs, epoch_offset } => Some(WarmupCosine {
            batch_size: recipe.batch_size,
            steps_per_epoch: spe,
            epochs: recipe.epochs,
            warmup_epochs,
            end_factor: 0.001,
            step_offset: if epoch_offset { spe } else { 0 },
        }),
        LrSchedule::Constant => None,
    }
}

/// The files whose presence means a run folder holds a previous run (a lone `recipe.json` is
/// what a run that failed at its start left).
const PREVIOUS_RUN: [&str; 6] = ["checkpoints", "model.safetensors", "model.json", "summary.json", "history.csv", "history.parquet"];
/// Every file a run writes into its run folder (what `--overwrite` removes).
const RUN_FILES: [&str; 8] = ["checkpoints", "model.safetensors", "model.json", "summary.json", "history.csv", "history.parquet", "plots", "recipe.json"];

/// Check that the run directory `dir` holds no previous run (checkpoints, a model, a history or
/// a summary; a lone `recipe.json` of a run that failed at its start does not count), or remove
/// that run when `overwrite` is set. Other files are never touched.
fn claim_run_dir(dir: &Path, overwrite: bool) -> Result<()> {
    let previous: Vec<&str> = PREVIOUS_RUN.iter().copied().filter(|f| dir.join(f).exists()).collect();
    if previous.is_empty() {
        return Ok(());
    }
    if !overwrite {
        return Err(Error::format(
            dir,
            format!("holds a previous run ({}); continue it with --resume, replace it with --overwrite, or choose another --out", previous.join(", ")),
        ));
    }
    for f in RUN_FILES {
        let p = dir.join(f);
        let res = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        match res {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&p, e)),
            _ => {}
        }
    }
    // A model card mixbt wrote for the old run (`hub push`) describes the old run.
    let card = dir.join("README.md");
    if std::fs::read_to_string(&card).is_ok_and(|c| c.contains("library_name: mixbt")) {
        let _ = std::fs::remove_file(&card);
    }
    Ok(())
}

fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64((seed ^ 0x5eed_0f_a1fa).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// Step-wise Mixed Barlow Twins pre-training.
pub struct Pretrainer {
    recipe: Recipe,
    opts: PretrainOptions,
    store: ParamStore,
    encoder: Encoder,
    opt: Box<dyn Optimizer>,
    loader: Loader,
    iter: Option<PairEpoch>,
    /// Steps done (0-based index of the next step).
    step: usize,
    /// Epoch in progress (0-based).
    epoch: usize,
    /// Batches of the current epoch done.
    batch_in_epoch: usize,
    lambda_reg_override: Option<f64>,
    history: History,
    knn_random_init: Option<KnnResult>,
    last_knn: Option<KnnResult>,
    schedule: Option<WarmupCosine>,
    last_parts: Option<LossParts>,
    /// The run directory's lock, held while this trainer lives.
    _lock: Option<DirLock>,
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
        let lock = match &opts.out_dir {
            Some(d) => {
                let lock = DirLock::acquire(d)?;
                if fresh {
                    claim_run_dir(d, opts.overwrite)?;
                }
                Some(lock)
            }
            None => None,
        };
        let store = ParamStore::new(opts.seed, DType::F32, &opts.device);
        let enc = encoder(&recipe.encoder, store.var_builder())?;
        let train = data::open(&recipe.data, recipe.data.pretrain_split)?;
        let lc = LoaderConfig {
            batch_size: recipe.batch_size,
            shuffle: true,
            drop_last: true,
            seed: opts.seed,
            workers: opts.workers,
            prefetch: 2,
        };
        let loader = Loader::new(train, vec![recipe.data.view_a.clone(), recipe.data.view_b.clone()], lc, &opts.device)?;
        let opt: Box<dyn Optimizer> = match &recipe.optimizer {
            OptimizerConfig::Adam(c) => Box::new(Adam::single(store.trainable(), *c)),
            OptimizerConfig::Lars(c) => Box::new(Lars::new(store.trainable(), *c)),
            OptimizerConfig::Sgd(c) => Box::new(Sgd::single(store.trainable(), *c)),
        };
        let schedule = schedule_for(&recipe, loader.batches_per_epoch());
        Ok(Self {
            recipe,
            opts,
            store,
            encoder: enc,
            opt,
            loader,
            iter: None,
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            lambda_reg_override: None,
            history: History::default(),
            knn_random_init: None,
            last_knn: None,
            schedule,
            last_parts: None,
            _lock: lock,
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
        me.step = state.step;
        me.epoch = state.epoch;
        me.batch_in_epoch = state.batch_in_epoch;
        me.lambda_reg_override = state.lambda_reg_override;
        me.history = state.history;
        me.knn_random_init = state.knn_random_init;
        me.last_knn = state.last_knn;
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
    /// Loss components of the last step (tensors still attached to the graph's values).
    pub fn last_parts(&self) -> Option<&LossParts> {
        self.last_parts.as_ref()
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
            self.schedule = schedule_for(&self.recipe, self.steps_per_epoch());
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
    pub fn set_lambda_reg(&mut self, v: Option<f64>) {
        self.lambda_reg_override = v;
    }

    /// λ_reg in force at the next step.
    pub fn lambda_reg(&self) -> f64 {
        if let Some(v) = self.lambda_reg_override {
            return v;
        }
        match self.recipe.lambda_reg_warmup_epochs {
            Some(w) => LambdaRamp { steps_per_epoch: self.steps_per_epoch(), warmup_epochs: w }.value(self.recipe.loss.lambda_reg, self.step),
            None => self.recipe.loss.lambda_reg,
        }
    }

    /// The learning rate of each group at 0-based step `step`.
    pub fn lrs_at(&self, step: usize) -> Vec<f64> {
        let f = self.schedule.map(|s| s.factor(step)).unwrap_or(1.0);
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

    fn next_batch(&mut self) -> Result<(Tensor, Tensor)> {
        loop {
            if self.iter.is_none() {
                self.iter = Some(self.loader.pair_epoch(self.epoch as u64, self.batch_in_epoch));
            }
            match self.iter.as_mut().unwrap().next() {
                Some(b) => {
                    let b = b?;
                    return Ok((b.view_a, b.view_b));
                }
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
        let (a, b) = self.next_batch()?;
        let s = self.step_on(&a, &b)?;
        self.batch_in_epoch += 1;
        if self.batch_in_epoch == self.steps_per_epoch() {
            self.iter = None;
            self.epoch += 1;
            self.batch_in_epoch = 0;
        }
        Ok(s)
    }

    /// One optimisation step on explicit views `[N, 3, H, W]` (does not advance the loader).
    pub fn step_on(&mut self, view_a: &Tensor, view_b: &Tensor) -> Result<StepStats> {
        let t0 = Instant::now();
        let lrs = self.lrs_at(self.step);
        for (g, lr) in lrs.iter().enumerate() {
            self.opt.set_lr(g, *lr);
        }
        let lambda_reg = self.lambda_reg();
        let loss = crate::loss::MixedBarlowTwins { lambda_reg, ..self.recipe.loss };
        let prof = crate::ops::profile::scope("step.forward+loss");
        let (_, h_a) = self.encoder.forward_t(view_a, true)?;
        let (_, h_b) = self.encoder.forward_t(view_b, true)?;
        let n = view_a.dim(0)?;
        let mixed = self.recipe.is_mixup;
        let (parts, alpha) = if mixed {
            let (perm, alpha) = sample_mix(&mut step_rng(self.opts.seed, self.step), n);
            let x_m = mix_batch(view_a, view_b, &perm, alpha)?;
            let (_, h_m) = self.encoder.forward_t(&x_m, true)?;
            (loss.compute(&h_a, &h_b, &h_m, &perm, alpha), alpha)
        } else {
            (loss.compute_bt(&h_a, &h_b), f64::NAN)
        };
        let parts = parts.map_err(|e| self.stop_error(e))?;
        drop(prof);
        let prof = crate::ops::profile::scope("step.backward");
        let grads = parts.total.backward()?;
        drop(prof);
        let prof = crate::ops::profile::scope("step.optimizer");
        self.opt.step(&grads)?;
        drop(prof);
        let vals: Vec<f64> = Tensor::stack(
            &[&parts.on_diag, &parts.off_diag, &parts.loss_bt, &parts.reg_ma, &parts.reg_mb, &parts.loss_reg, &parts.total],
            0,
        )?
        .to_dtype(DType::F64)?
        .to_vec1()?;
        let secs = t0.elapsed().as_secs_f64();
        self.step += 1;
        let stats = StepStats {
            step: self.step,
            epoch: self.epoch + 1,
            on_diag: vals[0],
            off_diag: vals[1],
            loss_bt: vals[2],
            reg_ma: vals[3],
            reg_mb: vals[4],
            loss_reg: vals[5],
            loss: vals[6],
            lr: lrs[0],
            alpha,
            lambda_reg,
            images_per_s: n as f64 / secs,
            seconds: secs,
            knn_top1: None,
            knn_top5: None,
        };
        self.history.push(stats);
        self.last_parts = Some(parts);
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

    /// Weighted k-NN of the current backbone: bank = train split, test = test split, both
    /// under the eval transform.
    pub fn knn(&self) -> Result<KnnResult> {
        knn_eval(&self.encoder, &self.recipe.data, &self.recipe.knn, self.opts.workers)
    }

    /// Save a checkpoint into the run directory (atomic); returns its folder.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let out = self.opts.out_dir.as_ref().ok_or_else(|| Error::Config("no run directory (--out) to checkpoint into".into()))?;
        let state = CheckpointState {
            version: 1,
            recipe: self.recipe.clone(),
            seed: self.opts.seed,
            step: self.step,
            epoch: self.epoch,
            batch_in_epoch: self.batch_in_epoch,
            lambda_reg_override: self.lambda_reg_override,
            optimizer: self.opt.state_scalars(),
            rng: serde_json::json!({"kind": "keyed-chacha8", "seed": self.opts.seed, "note": "every draw is keyed by (seed, epoch, sample, view) or (seed, step); no stream state"}),
            knn_random_init: self.knn_random_init,
            last_knn: self.last_knn,
            history: self.history.clone(),
        };
        checkpoint::save(out, &self.store, self.opt.as_ref(), &state, self.opts.keep_checkpoints)
    }

    /// Run the recipe to the end (or the step / time budget): k-NN of the random network first,
    /// periodic k-NN, a checkpoint per epoch, then the final k-NN, the final model and the summary.
    pub fn fit(&mut self) -> Result<Summary> {
        let res = self.fit_inner();
        if res.is_err() {
            // A run that fails before its first checkpoint leaves no half-started run folder.
            if let Some(d) = &self.opts.out_dir {
                if checkpoint::resolve(d).is_err() {
                    let _ = std::fs::remove_file(d.join("recipe.json"));
                }
            }
        }
        res
    }

    fn fit_inner(&mut self) -> Result<Summary> {
        let t0 = Instant::now();
        if let Some(d) = &self.opts.out_dir {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
            atomic_write(&d.join("recipe.json"), serde_json::to_string_pretty(&self.recipe)?.as_bytes())?;
        }
        if self.knn_random_init.is_none() && !self.opts.skip_random_init_knn {
            let r = self.knn()?;
            if self.opts.progress {
                eprintln!("k-NN of the randomly initialised network: top-1 {:.2}%, top-5 {:.2}%", r.top1, r.top5);
            }
            self.knn_random_init = Some(r);
        }
        let total = self.total_steps();
        let pb = if self.opts.progress {
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
                pb.set_message(format!("epoch {} loss {:.3} (bt {:.3} reg {:.4}) {:.0} img/s", s.epoch, s.loss, s.loss_bt, s.loss_reg, s.images_per_s));
            }
            let epoch_end = self.batch_in_epoch == 0;
            if let Some(every) = self.opts.checkpoint_every {
                if self.step % every == 0 && !epoch_end && self.opts.out_dir.is_some() {
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
                if let Some(d) = self.opts.out_dir.clone() {
                    self.save_checkpoint()?;
                    self.history.write(&d)?;
                }
            }
            let budget = match (self.opts.time_budget, self.recipe.time_budget_s.map(Duration::from_secs_f64)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(b) = budget {
                if t0.elapsed() > b {
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
        let r = self.knn()?;
        self.history.set_knn(r.top1, r.top5);
        self.last_knn = Some(r);
        let mut ckpt = None;
        if let Some(d) = self.opts.out_dir.clone() {
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
            final_loss: rows.last().map(|r| r.loss).unwrap_or(f64::NAN),
            wall_seconds: t0.elapsed().as_secs_f64(),
            images_per_s: ips,
            checkpoint: ckpt,
        };
        if let Some(d) = &self.opts.out_dir {
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
