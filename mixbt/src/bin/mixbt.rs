//! The `mixbt` command line: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use mixbt::data::{self, DatasetKind, Split, Transform};
use mixbt::train::{presets, PretrainOptions, Pretrainer, Recipe};
use mixbt::{Error, Result};

#[derive(Parser)]
#[command(name = "mixbt", version, about = "Mixed Barlow Twins self-supervised learning (candle)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Pre-train with a preset (default `quickstart`), then k-NN against the random network.
    Pretrain(PretrainArgs),
    /// Weighted k-NN (k=200, T=0.5) of a checkpoint.
    Knn(EvalArgs),
    /// Linear probe of a checkpoint's frozen backbone.
    Linear(LinearArgs),
    /// Write L2-normalised backbone features of a folder of images.
    Embed(EmbedArgs),
    /// Data-set tools.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
    /// List the presets (the paper's recipes and the CPU ones).
    Presets {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DataCmd {
    /// Images, classes and per-channel mean/std of a data set.
    Stats {
        #[command(flatten)]
        data: DataArgs,
        /// Print one JSON object as the last line.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "train")]
        split: String,
    },
}

#[derive(Args, Clone)]
struct DataArgs {
    /// cifar10, cifar100, stl10, tiny-imagenet, imagenet, image-folder, parquet, builtin, or hf:<org>/<name>.
    #[arg(long)]
    dataset: Option<String>,
    /// Folder of the data set (the layout of each reader; see data/README.md).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Skip undecodable images with a warning instead of failing.
    #[arg(long)]
    skip_corrupt: bool,
}

#[derive(Args)]
struct Common {
    #[arg(long, default_value = "quickstart")]
    preset: String,
    #[command(flatten)]
    data: DataArgs,
    /// cpu or cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Decode/augment threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Use only this many test images for k-NN.
    #[arg(long)]
    test_subset: Option<usize>,
}

#[derive(Args)]
struct PretrainArgs {
    #[command(flatten)]
    common: Common,
    /// Run directory (history, checkpoints, summary.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from a checkpoint (a checkpoint folder, or a run folder's latest).
    #[arg(long)]
    resume: Option<PathBuf>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    max_steps: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// λ_reg (`0` with the mixed pass off = plain Barlow Twins).
    #[arg(long)]
    lambda_reg: Option<f64>,
    #[arg(long)]
    lambda_bt: Option<f64>,
    /// Network width multiplier.
    #[arg(long)]
    width: Option<f64>,
    /// Use only this many pre-training images.
    #[arg(long)]
    train_subset: Option<usize>,
    /// Stop after this many minutes (the final k-NN still runs).
    #[arg(long)]
    time_budget_min: Option<f64>,
    /// Also checkpoint every N steps (always at each epoch end).
    #[arg(long)]
    checkpoint_every: Option<usize>,
    #[arg(long)]
    no_progress: bool,
    /// Skip the k-NN of the random network.
    #[arg(long)]
    skip_random_init_knn: bool,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    common: Common,
    /// A model file (.safetensors / .pth), a run or checkpoint folder.
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long, default_value_t = 200)]
    k: usize,
    #[arg(long, default_value_t = 0.5)]
    temperature: f64,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LinearArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long, default_value_t = 200)]
    epochs: usize,
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Train on features of un-augmented images computed once (fast) instead of augmented views.
    #[arg(long)]
    no_augment: bool,
    /// Reproduce linear.py's quirk: the frozen backbone's BN in train mode while probing.
    #[arg(long)]
    bn_train_quirk: bool,
    /// The ImageNet protocol (SGD 0.3, cosine) instead of linear.py's Adam.
    #[arg(long)]
    imagenet_protocol: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EmbedArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// Folder of images (rows in sorted file-name order).
    #[arg(long)]
    images: PathBuf,
    /// Output: `.safetensors` (tensor `features`) or `.parquet`.
    #[arg(long)]
    out: PathBuf,
    /// Check the model against this architecture (inferred otherwise).
    #[arg(long)]
    arch: Option<String>,
    /// Data set whose statistics/eval transform to use (default cifar10).
    #[arg(long, default_value = "cifar10")]
    dataset: String,
    /// `eval` (the data set's eval transform) or `none` (ToTensor + Normalize only).
    #[arg(long, default_value = "eval")]
    transform: String,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
}

fn parse_device(s: &str) -> Result<mixbt::prelude::Device> {
    if s == "cpu" {
        return Ok(mixbt::prelude::Device::Cpu);
    }
    if let Some(n) = s.strip_prefix("cuda:").or_else(|| (s == "cuda").then_some("0")) {
        let n: usize = n.parse().map_err(|_| Error::Config(format!("bad device `{s}` (cpu or cuda:N)")))?;
        if !mixbt::prelude::Device::new_cuda(n).map(|_| true).unwrap_or(false) && !cfg!(feature = "cuda") {
            return Err(Error::Config("this mixbt was built without CUDA; rebuild with `--features cuda` (see README)".into()));
        }
        return Ok(mixbt::prelude::Device::new_cuda(n)?);
    }
    Err(Error::Config(format!("bad device `{s}` (cpu or cuda:N)")))
}

/// Apply `--dataset`/`--data-dir` to a recipe's data config.
fn apply_data(r: &mut Recipe, d: &DataArgs) -> Result<()> {
    if let Some(ds) = &d.dataset {
        if let Some(repo) = ds.strip_prefix("hf:") {
            r.data.hub_dataset = Some(repo.to_string());
            r.data.kind = DatasetKind::Parquet;
        } else {
            r.data.kind = ds.parse()?;
            r.data.hub_dataset = None;
        }
    }
    if let Some(dir) = &d.data_dir {
        r.data.dir = Some(dir.clone());
    }
    r.data.skip_corrupt |= d.skip_corrupt;
    if r.data.kind != DatasetKind::Builtin && r.data.dir.is_none() && r.data.hub_dataset.is_none() {
        return Err(Error::Config(format!("preset `{}` reads {:?}: give --data-dir (or --dataset builtin)", r.name, r.data.kind)));
    }
    Ok(())
}

fn pretrain(a: PretrainArgs) -> Result<()> {
    let c = &a.common;
    let opts = PretrainOptions {
        seed: c.seed,
        device: parse_device(&c.device)?,
        workers: c.workers,
        out_dir: a.out.clone(),
        checkpoint_every: a.checkpoint_every,
        keep_checkpoints: 2,
        progress: !a.no_progress,
        time_budget: a.time_budget_min.map(|m| Duration::from_secs_f64(m * 60.0)),
        skip_random_init_knn: a.skip_random_init_knn,
    };
    let mut trainer = if let Some(r) = &a.resume {
        let t = Pretrainer::resume(r, opts)?;
        eprintln!("resumed from {} at step {} (epoch {})", r.display(), t.steps_done(), t.epochs_done() + 1);
        t
    } else {
        let mut r = presets::get(&c.preset)?;
        apply_data(&mut r, &c.data)?;
        if let Some(e) = a.epochs {
            r.epochs = e;
        }
        if let Some(m) = a.max_steps {
            r.max_steps = Some(m);
        }
        if let Some(b) = a.batch_size {
            r.batch_size = b;
        }
        if let Some(l) = a.lambda_reg {
            r.loss.lambda_reg = l;
            r.is_mixup = l != 0.0;
        }
        if let Some(l) = a.lambda_bt {
            r.loss.lambda_bt = l;
        }
        if let Some(w) = a.width {
            let d = r.encoder.out_dim();
            let hidden = r.encoder.projector.sizes[1];
            r.encoder.backbone.width = w;
            let f = r.encoder.backbone.feature_dim();
            r.encoder.projector.sizes = if r.encoder.projector.sizes.len() == 3 { vec![f, hidden, d] } else {
                let mut s = r.encoder.projector.sizes.clone();
                s[0] = f;
                s
            };
        }
        if a.train_subset.is_some() {
            r.data.train_subset = a.train_subset;
        }
        if c.test_subset.is_some() {
            r.data.test_subset = c.test_subset;
        }
        eprintln!("preset {}: {}", r.name, r.description);
        Pretrainer::new(r, opts)?
    };
    eprintln!(
        "{} trainable parameters, {} steps per epoch, data: {}",
        trainer.params().num_trainable(),
        trainer.steps_per_epoch(),
        trainer.loader().dataset().describe()
    );
    let s = trainer.fit()?;
    println!(
        "k-NN top-1 {:.2}% (top-5 {:.2}%) after {} steps; randomly initialised network: top-1 {:.2}% (top-5 {:.2}%)",
        s.knn_top1, s.knn_top5, s.steps, s.knn_top1_random_init, s.knn_top5_random_init
    );
    if let Some(out) = &a.out {
        println!("run directory: {}", out.display());
    }
    println!("{}", serde_json::to_string(&s)?);
    Ok(())
}

/// The recipe used for evaluation data: the preset, with the data flags applied.
fn eval_recipe(c: &Common) -> Result<Recipe> {
    let mut r = presets::get(&c.preset)?;
    apply_data(&mut r, &c.data)?;
    if c.test_subset.is_some() {
        r.data.test_subset = c.test_subset;
    }
    Ok(r)
}

fn knn(a: EvalArgs) -> Result<()> {
    let device = parse_device(&a.common.device)?;
    let r = eval_recipe(&a.common)?;
    let (enc, _, _) = mixbt::ckpt::load_encoder(&a.checkpoint, &device)?;
    let bank_ds = mixbt::train::open_dataset(&r.data, Split::Train)?;
    let test_ds = mixbt::train::open_dataset(&r.data, Split::Test)?;
    let bank = mixbt::eval::labelled_features(&enc, bank_ds, &r.data.eval, 256, a.common.workers)?;
    let test = mixbt::eval::labelled_features(&enc, test_ds, &r.data.eval, 256, a.common.workers)?;
    let cfg = mixbt::eval::KnnConfig { k: a.k, temperature: a.temperature, ..Default::default() };
    let res = mixbt::eval::knn_accuracy(&bank, &test, &cfg)?;
    println!("k-NN (k={}, T={}) top-1 {:.2}% top-5 {:.2}% on {} test images", a.k, a.temperature, res.top1, res.top5, res.n_test);
    if a.json {
        println!("{}", serde_json::to_string(&res)?);
    }
    Ok(())
}

fn linear(a: LinearArgs) -> Result<()> {
    let device = parse_device(&a.common.device)?;
    let r = eval_recipe(&a.common)?;
    let (enc, _, _) = mixbt::ckpt::load_encoder(&a.checkpoint, &device)?;
    let train = mixbt::train::open_dataset(&r.data, Split::Train)?;
    let test = mixbt::train::open_dataset(&r.data, Split::Test)?;
    let mut cfg = if a.imagenet_protocol { mixbt::eval::LinearProbeConfig::imagenet() } else { mixbt::eval::LinearProbeConfig::small() };
    cfg.epochs = a.epochs;
    cfg.batch_size = a.batch_size;
    cfg.augment = !a.no_augment;
    cfg.bn_train_mode_quirk = a.bn_train_quirk;
    cfg.seed = a.common.seed;
    cfg.workers = a.common.workers;
    let res = mixbt::eval::linear_probe(&enc, train, test, &r.data.view_a, &r.data.eval, &cfg, |e| {
        eprintln!("epoch {:>3}: loss {:.4} train {:.2}% test top-1 {:.2}% top-5 {:.2}% (lr {:.2e})", e.epoch, e.train_loss, e.train_top1, e.test_top1, e.test_top5, e.lr)
    })?;
    println!("linear probe: best top-1 {:.2}%, last top-1 {:.2}% (top-5 {:.2}%)", res.best_top1, res.last_top1, res.last_top5);
    if a.json {
        println!("{}", serde_json::json!({"best_top1": res.best_top1, "last_top1": res.last_top1, "last_top5": res.last_top5}));
    }
    Ok(())
}

fn embed(a: EmbedArgs) -> Result<()> {
    let device = parse_device(&a.device)?;
    let (enc, _, cfg) = mixbt::ckpt::load_encoder(&a.checkpoint, &device)?;
    if let Some(arch) = &a.arch {
        let want: mixbt::model::Arch = arch.parse()?;
        if want != cfg.backbone.arch {
            return Err(Error::Config(format!("--arch {arch}, but the checkpoint holds a {}", cfg.backbone.arch.name())));
        }
    }
    let kind: DatasetKind = a.dataset.parse()?;
    let r = presets::all().into_iter().find(|r| r.data.kind == kind).unwrap_or_else(presets::quickstart);
    let t = match a.transform.as_str() {
        "eval" => r.data.eval.clone(),
        "none" => Transform::normalize_only((r.data.eval.mean, r.data.eval.std)),
        other => return Err(Error::Config(format!("--transform {other}: use eval or none"))),
    };
    let n = mixbt::eval::features::embed_folder(&enc, &a.images, &t, a.batch_size, &a.out)?;
    println!("wrote {n} feature rows [{n}, {}] to {}", cfg.feature_dim(), a.out.display());
    Ok(())
}

fn data_stats(d: DataArgs, json: bool, split: &str) -> Result<()> {
    let split: Split = split.parse()?;
    let ds = match d.dataset.as_deref() {
        Some(h) if h.starts_with("hf:") => mixbt::hub::datasets::open_hub_dataset(&h[3..], split, d.skip_corrupt)?,
        Some(k) => data::open(k.parse()?, d.data_dir.as_deref(), split, d.skip_corrupt)?,
        None => return Err(Error::Config("give --dataset".into())),
    };
    let s = data::stats::compute(ds.as_ref())?;
    println!("{}", ds.describe());
    println!("images:  {}", s.images);
    println!("classes: {}", s.classes);
    println!("mean:    [{:.4}, {:.4}, {:.4}]", s.mean[0], s.mean[1], s.mean[2]);
    println!("std:     [{:.4}, {:.4}, {:.4}]", s.std[0], s.std[1], s.std[2]);
    if s.skipped > 0 {
        println!("skipped: {} corrupt images", s.skipped);
    }
    if json {
        println!("{}", serde_json::json!({"images": s.images, "classes": s.classes, "mean": s.mean, "std": s.std}));
    }
    Ok(())
}

fn list_presets(json: bool) -> Result<()> {
    let all = presets::all();
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!("{:<28} {:<9} {:<14} {:>6} {:>9} {:>7} {:>6}  paper k-NN / linear", "preset", "arch", "data", "epochs", "lambda_bt", "l_reg", "batch");
    for r in all {
        let p = r.paper.as_ref();
        let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<28} {:<9} {:<14} {:>6} {:>9} {:>7} {:>6}  {} / {}",
            r.name,
            r.encoder.backbone.arch.name(),
            format!("{:?}", r.data.kind).to_lowercase(),
            r.epochs,
            r.loss.lambda_bt,
            if r.is_mixup { r.loss.lambda_reg.to_string() } else { "0 (BT)".into() },
            r.batch_size,
            f(p.and_then(|p| p.knn_top1)),
            f(p.and_then(|p| p.linear_top1))
        );
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Pretrain(a) => pretrain(a),
        Cmd::Knn(a) => knn(a),
        Cmd::Linear(a) => linear(a),
        Cmd::Embed(a) => embed(a),
        Cmd::Data { cmd: DataCmd::Stats { data, json, split } } => data_stats(data, json, &split),
        Cmd::Presets { json } => list_presets(json),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
