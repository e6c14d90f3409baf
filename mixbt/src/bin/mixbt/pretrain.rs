//! `mixbt pretrain` and `mixbt presets`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use mixbt::train::{presets as p, GradReduce, LossStats, PretrainOptions, Pretrainer, Recipe, Summary};
use mixbt::{Error, Result};

use crate::{at_least_one, non_negative, parse_device, positive, workers, Common};

#[derive(Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    common: Common,
    /// A recipe file (`mixbt presets --show NAME > r.json`, or a run's recipe.json / run folder) instead of --preset.
    #[arg(long, conflicts_with = "preset")]
    recipe: Option<PathBuf>,
    /// Run directory (history, checkpoints, summary.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from a checkpoint (a checkpoint folder, or a run folder's latest). Takes the
    /// recipe from the checkpoint: only --epochs, --max-steps and run-time flags may be given.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Epochs (on --resume: train the run to this many epochs; the cosine schedule is stretched to them).
    #[arg(long, value_parser = at_least_one)]
    epochs: Option<usize>,
    #[arg(long, value_parser = at_least_one)]
    max_steps: Option<usize>,
    /// The method: mixbt, bt, simclr, byol or wmse (`mixbt presets` lists each preset's).
    /// On a preset P it takes the preset `P-<method>` when there is one (quickstart-simclr, …),
    /// otherwise P with the method swapped in (data, backbone, optimiser and budget kept).
    #[arg(long)]
    method: Option<String>,
    /// How the convolutions and linear layers multiply: f32 (the default and the reference) or
    /// bf16 (bfloat16 products summed in FP32, like PyTorch's CPU autocast; weights, optimiser
    /// and loss stay FP32). Native `vdpbf16ps` on CPUs with AVX512-BF16, elsewhere emulated: the
    /// same numbers, no faster.
    #[arg(long)]
    precision: Option<mixbt::ops::Precision>,
    /// Images per step (at least 2: every method normalises over the batch).
    #[arg(long, value_parser = at_least_one)]
    batch_size: Option<usize>,
    /// λ_reg (`0` = plain Barlow Twins, without the mixed pass).
    #[arg(long, value_parser = non_negative)]
    lambda_reg: Option<f64>,
    #[arg(long, value_parser = non_negative)]
    lambda_bt: Option<f64>,
    /// Learning rate (Adam/SGD lr, or LARS weight lr), multiplied by the schedule.
    #[arg(long, value_parser = positive)]
    lr: Option<f64>,
    /// Network width multiplier (the projector's input follows the backbone).
    #[arg(long, value_parser = positive)]
    width: Option<f64>,
    /// Use only this many pre-training images.
    #[arg(long, value_parser = at_least_one)]
    train_subset: Option<usize>,
    /// Stop after this many minutes (the final k-NN still runs).
    #[arg(long, value_parser = positive)]
    time_budget_min: Option<f64>,
    /// Also checkpoint every N steps (always at each epoch end).
    #[arg(long, value_parser = at_least_one)]
    checkpoint_every: Option<usize>,
    #[arg(long)]
    no_progress: bool,
    /// Write the charts (loss components, k-NN) as SVG into <out>/plots.
    #[arg(long)]
    plots: bool,
    /// Skip the k-NN of the random network.
    #[arg(long)]
    skip_random_init_knn: bool,
    /// Replace a previous run in --out (its checkpoints, model, history, summary) instead of refusing.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Draw the Mixed BT mixing permutation in this many blocks, each permuting its own rows
    /// (default: the number of data-parallel ranks, each permuting its own batch; 1 for one
    /// process). One process with `--mix-groups K` draws what K ranks draw.
    #[arg(long, value_parser = at_least_one)]
    mix_groups: Option<usize>,
    /// How data-parallel ranks combine gradients: `sum` (the one-process gradient of the global
    /// batch) or `mean-as-ddp` (main_imagenet.py as coded: DDP's mean, which divides the loss's
    /// gradient by the number of ranks).
    #[arg(long, default_value = "sum", value_parser = ["sum", "mean-as-ddp"])]
    grad_reduce: String,
    /// The rows (Mixed) Barlow Twins standardises its embeddings over: `global` (the global
    /// batch) or `per-rank` (each rank's own rows, then the cross-correlations summed:
    /// main_imagenet.py as coded; one process uses the --mix-groups blocks).
    #[arg(long, default_value = "global", value_parser = ["global", "per-rank"])]
    loss_stats: String,
}

impl PretrainArgs {
    /// The flags that define the recipe, which a resumed run takes from its checkpoint.
    fn recipe_flags(&self) -> Vec<&'static str> {
        let c = &self.common;
        [
            ("--preset", c.preset.is_some()),
            ("--recipe", self.recipe.is_some()),
            ("--dataset", c.data.dataset.is_some()),
            ("--data-dir", c.data.data_dir.is_some()),
            ("--skip-corrupt", c.data.skip_corrupt),
            ("--seed", c.seed.is_some()),
            ("--test-subset", c.test_subset.is_some()),
            ("--bank-subset", c.bank_subset.is_some()),
            ("--method", self.method.is_some()),
            ("--batch-size", self.batch_size.is_some()),
            ("--precision", self.precision.is_some()),
            ("--lambda-reg", self.lambda_reg.is_some()),
            ("--lambda-bt", self.lambda_bt.is_some()),
            ("--lr", self.lr.is_some()),
            ("--width", self.width.is_some()),
            ("--train-subset", self.train_subset.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, given)| given.then_some(f))
        .collect()
    }

    /// The recipe of a new run: the preset or recipe file, with the flags applied.
    fn new_recipe(&self) -> Result<Recipe> {
        let preset = self.common.preset.as_deref().unwrap_or("quickstart");
        let mut r = match (&self.recipe, &self.method) {
            (Some(f), _) => Recipe::from_file(f)?,
            (None, Some(m)) => match p::get(&format!("{preset}-{m}")) {
                Ok(r) => r,
                Err(_) => p::get(preset)?,
            },
            (None, None) => p::get(preset)?,
        };
        if let Some(m) = &self.method {
            r = p::with_method(r, m)?;
        }
        self.common.apply(&mut r)?;
        if let Some(e) = self.epochs {
            r.epochs = e;
        }
        r.max_steps = self.max_steps.or(r.max_steps);
        r.batch_size = self.batch_size.unwrap_or(r.batch_size);
        r.precision = self.precision.unwrap_or(r.precision);
        if let Some(l) = self.lambda_reg {
            r.set_lambda_reg(l).map_err(|e| Error::Config(format!("--lambda-reg: {e}")))?;
        }
        if let Some(l) = self.lambda_bt {
            let name = r.method.name();
            r.barlow_twins_mut().ok_or_else(|| Error::Config(format!("--lambda-bt: {name} has no λ_BT (only bt and mixbt have)")))?.loss.lambda_bt = l;
        }
        if let Some(lr) = self.lr {
            r.optimizer.set_base_lr(lr);
        }
        if let Some(w) = self.width {
            r.encoder = r.encoder.with_width(w);
        }
        r.data.train_subset = self.train_subset.or(r.data.train_subset);
        Ok(r)
    }

    fn options(&self) -> Result<PretrainOptions> {
        let launch = mixbt::dist::Launch::from_env()?;
        let mut device = parse_device(&self.common.device)?;
        if let (mixbt::dist::Launch::Env { local_rank, .. }, true) = (&launch, device.is_cuda()) {
            // One process per GPU: this rank's GPU.
            device = mixbt::candle_core::Device::new_cuda(*local_rank)?;
        }
        // Ranks on one machine share its cores.
        let mut w = workers(self.common.workers);
        if w == 0 && launch.local_size() > 1 {
            w = (std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1) / launch.local_size()).max(1);
        }
        Ok(PretrainOptions {
            seed: self.common.seed.unwrap_or(0),
            device,
            workers: w,
            out_dir: self.out.clone(),
            checkpoint_every: self.checkpoint_every,
            keep_checkpoints: 2,
            progress: !self.no_progress,
            time_budget: self.time_budget_min.map(|m| Duration::from_secs_f64(m * 60.0)),
            skip_random_init_knn: self.skip_random_init_knn,
            overwrite: self.overwrite,
            mix_groups: self.mix_groups,
            grad_reduce: if self.grad_reduce == "mean-as-ddp" { GradReduce::MeanAsDdp } else { GradReduce::Sum },
            loss_stats: if self.loss_stats == "per-rank" { LossStats::PerRank } else { LossStats::Global },
        })
    }
}

/// Join the data-parallel job this process was launched into (none: one process), sharing the
/// machine's cores between its ranks there.
pub fn join_world(device: &mixbt::candle_core::Device) -> Result<mixbt::dist::Group> {
    let launch = mixbt::dist::Launch::from_env()?;
    if launch.local_size() > 1 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
        let _ = rayon::ThreadPoolBuilder::new().num_threads((cores / launch.local_size()).max(1)).build_global();
    }
    let world = mixbt::dist::init_from_env(device)?;
    if !matches!(launch, mixbt::dist::Launch::Single) {
        // Installed (size 1 too) so that the rank finalises its backend when it ends well.
        mixbt::dist::set_world(world.clone())?;
        if world.is_root() && world.size() > 1 {
            eprintln!("data-parallel: {} ranks ({}), {} compute threads per rank", world.size(), world.backend(), rayon::current_num_threads());
        }
    }
    Ok(world)
}

pub fn pretrain(a: PretrainArgs) -> Result<()> {
    let opts = a.options()?;
    let world = join_world(&opts.device)?;
    // Rank 0 speaks for the job.
    macro_rules! say {
        ($($t:tt)*) => { if world.is_root() { eprintln!($($t)*); } };
    }
    let mut trainer = match &a.resume {
        Some(path) => {
            let given = a.recipe_flags();
            if !given.is_empty() {
                return Err(Error::Config(format!(
                    "--resume continues the recipe of its checkpoint; {} cannot change it (only --epochs, --max-steps and run-time flags such as --out, --device, --workers, --time-budget-min may be given)",
                    given.join(", ")
                )));
            }
            let mut t = Pretrainer::resume(path, opts)?;
            t.set_budget(a.epochs, a.max_steps)?;
            say!("resumed from {} at step {} (epoch {})", path.display(), t.steps_done(), t.epochs_done() + 1);
            t
        }
        None => {
            let r = a.new_recipe()?;
            say!("preset {} (method {}): {}", r.name, r.method.name(), r.description);
            if r.precision == mixbt::ops::Precision::Bf16 {
                say!("precision bf16: products on {}", mixbt::ops::gemm::bf16_path().name());
            }
            // A width the machine cannot hold is the flag's fault: name it.
            Pretrainer::new(r, opts).map_err(|e| match (e, a.width) {
                (Error::Field { field, msg }, Some(w)) if field == "encoder.backbone.width" => Error::Config(format!("--width {w}: {msg}")),
                (e, _) => e,
            })?
        }
    };
    say!(
        "{} trainable parameters, {} steps per epoch, data: {}",
        trainer.params().num_trainable(),
        trainer.steps_per_epoch(),
        trainer.loader().dataset().describe()
    );
    let s = trainer.fit()?;
    if !world.is_root() {
        return Ok(());
    }
    report(&a, &trainer, &s)
}

fn report(a: &PretrainArgs, trainer: &Pretrainer, s: &Summary) -> Result<()> {
    let random = if s.knn_top1_random_init.is_nan() {
        "not measured (--skip-random-init-knn)".to_string()
    } else {
        format!("top-1 {:.2}% (top-5 {:.2}%)", s.knn_top1_random_init, s.knn_top5_random_init)
    };
    println!("k-NN top-1 {:.2}% (top-5 {:.2}%) after {} steps; randomly initialised network: {random}", s.knn_top1, s.knn_top5, s.steps);
    println!("k-NN with k = 5, Euclidean, majority vote (ssl-sota's): top-1 {:.2}% (top-5 {:.2}%)", s.knn5_top1, s.knn5_top5);
    if let Some(out) = trainer.options().out_dir.as_ref() {
        if a.plots {
            let written = mixbt::report::write_run_plots(&out.join("plots"), trainer.history(), Some(s.knn_top1_random_init), Some(trainer.class_names().len()).filter(|n| *n > 0))?;
            eprintln!("charts: {}", written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
        }
        println!("run directory: {}", out.display());
    }
    println!("{}", serde_json::to_string(s)?);
    Ok(())
}

#[derive(Args)]
pub struct PresetsArgs {
    /// Every preset as JSON.
    #[arg(long)]
    json: bool,
    /// Print the recipe of one preset as JSON (a recipe file for `pretrain --recipe`).
    #[arg(long, value_name = "NAME")]
    show: Option<String>,
}

pub fn presets(a: PresetsArgs) -> Result<()> {
    if let Some(name) = &a.show {
        let r = p::get(name)?;
        println!("{}", r.to_json()?);
        // On stderr, so that the JSON can be redirected to a recipe file as it is.
        eprintln!(
            "memory estimate of a training step on the CPU: {:.1} GiB (parameters, gradients, optimiser state and the loss at batch {}; activations not counted)",
            r.memory_estimate() as f64 / (1u64 << 30) as f64,
            r.batch_size
        );
        return Ok(());
    }
    let all = p::all();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!("{:<28} {:<7} {:<9} {:<14} {:>6} {:>9} {:>7} {:>6}  paper k-NN / linear", "preset", "method", "arch", "data", "epochs", "lambda_bt", "l_reg", "batch");
    for r in all {
        let paper = r.paper.as_ref();
        let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<28} {:<7} {:<9} {:<14} {:>6} {:>9} {:>7} {:>6}  {} / {}",
            r.name,
            r.method.name(),
            r.encoder.backbone.arch.name(),
            r.data.kind.name(),
            r.epochs,
            r.barlow_twins().map(|b| b.loss.lambda_bt.to_string()).unwrap_or_else(|| "-".into()),
            match r.barlow_twins() {
                Some(b) if b.is_mixup => b.loss.lambda_reg.to_string(),
                Some(_) => "0 (BT)".into(),
                None => "-".into(),
            },
            r.batch_size,
            f(paper.and_then(|p| p.knn_top1)),
            f(paper.and_then(|p| p.linear_top1))
        );
    }
    Ok(())
}
