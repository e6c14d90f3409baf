//! The `mixbt` command line: a thin layer over the library.

// jemalloc as the process's malloc (`malloc`/`free` themselves, so that the dynamically linked
// libstd uses it too), keeping freed pages instead of handing them back to the kernel: glibc
// returns every block over 32 MiB (activations at batch 128) with `munmap`, and the next step
// pays a page fault and a kernel zero-fill per 4 KiB again (measured at batch 128: ~2.6 s of
// system time per training step; a 4-step bench run's system time 15.8 s -> 9.8 s with jemalloc).
#[cfg(feature = "jemalloc")]
use tikv_jemalloc_sys as _;

/// jemalloc's options, read at start-up: freed pages are never purged (returned to the kernel).
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);
// SAFETY: a pointer to a static, immutable C string.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for MallocConf {}
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static malloc_conf: MallocConf = MallocConf(c"dirty_decay_ms:-1,muzzy_decay_ms:-1".as_ptr());

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
    /// The Hugging Face Hub: released checkpoints, pull, convert, push.
    Hub {
        #[command(subcommand)]
        cmd: HubCmd,
    },
    /// Benchmarks, side by side with PyTorch / torchvision when available.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
}

#[derive(Subcommand)]
enum HubCmd {
    /// The paper's released checkpoints (reference §8).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Download a file into the Hub cache (verified) and print its path.
    Pull {
        /// hub:<org>/<repo>[@revision]/<path>, or a released file name (e.g. 4wdhbpcf_0.0078125_1024_256_cifar10_model.pth).
        reference: String,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Convert a checkpoint (.pth of the original code, or ours) into safetensors + config.json + model card.
    Convert {
        /// A path or hub: reference.
        checkpoint: String,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Push a converted model folder or a run folder to a Hub model repo.
    Push {
        /// The folder (model.safetensors, config.json, README.md; runs also push history and plots).
        folder: PathBuf,
        /// <org>/<name>
        #[arg(long)]
        repo: String,
        #[arg(long, default_value = "Upload with mixbt")]
        message: String,
        #[arg(long)]
        private: bool,
        #[command(flatten)]
        hub: HubArgs,
    },
}

#[derive(Args, Clone)]
struct HubArgs {
    /// Hub endpoint (default $HF_ENDPOINT or https://huggingface.co).
    #[arg(long)]
    endpoint: Option<String>,
    /// Access token (default $HF_TOKEN or the saved token).
    #[arg(long)]
    token: Option<String>,
    /// Cache folder (default $HF_HUB_CACHE or ~/.cache/huggingface/hub).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Use the cache only.
    #[arg(long)]
    offline: bool,
}

impl HubArgs {
    /// Apply the flags as the environment the library reads.
    fn apply(&self) {
        if let Some(e) = &self.endpoint {
            std::env::set_var("HF_ENDPOINT", e);
        }
        if let Some(t) = &self.token {
            std::env::set_var("HF_TOKEN", t);
        }
        if let Some(c) = &self.cache_dir {
            std::env::set_var("HF_HUB_CACHE", c);
        }
        if self.offline {
            std::env::set_var("HF_HUB_OFFLINE", "1");
        }
    }
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Augmented pairs per second of the CIFAR pre-training pipeline on an image folder, ours and torchvision's.
    Data {
        /// An image folder (class sub-folders), e.g. data/cifar10-jpg/train.
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 10000)]
        images: usize,
        /// Threads (ours) and DataLoader workers (torchvision); default: the cores.
        #[arg(long, default_value_t = 0)]
        workers: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long)]
        no_torch: bool,
    },
    /// Mixed BT training step (ResNet-18 CIFAR) and embedding throughput, ours and PyTorch's.
    Train {
        #[arg(long, default_value = "32,128")]
        batches: String,
        #[arg(long, default_value_t = 5)]
        steps: usize,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Rounds of ours and PyTorch's timings, alternating (the ratios are their median).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 1.0)]
        width: f64,
        #[arg(long, default_value_t = 256)]
        embed_batch: usize,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Skip the PyTorch side.
        #[arg(long)]
        no_torch: bool,
    },
    /// GFLOP/s of our matrix product against `matrixmultiply` (one thread) on the shapes of
    /// ResNet-18's convolutions.
    Gemm {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Other cases, `m,k,n,At,Bt;…` (At/Bt: 1 = operand transposed in memory).
        #[arg(long)]
        cases: Option<String>,
    },
    /// Time per pass (forward, input and weight gradient) of each ResNet-18 convolution with
    /// our CPU kernels, and GFLOP/s.
    Conv {
        /// Images per call (96 = the three forward passes of a step at batch 32).
        #[arg(long, default_value_t = 96)]
        batch: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
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
    /// Use only this many train images as the k-NN bank.
    #[arg(long)]
    bank_subset: Option<usize>,
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
    /// Learning rate (Adam/SGD lr, or LARS weight lr), multiplied by the schedule.
    #[arg(long)]
    lr: Option<f64>,
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
    /// Write the charts (loss components, k-NN) as SVG into <out>/plots.
    #[arg(long)]
    plots: bool,
    /// Skip the k-NN of the random network.
    #[arg(long)]
    skip_random_init_knn: bool,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    common: Common,
    /// A model file (.safetensors / .pth), a run or checkpoint folder, or hub:<org>/<repo>/<path>.
    #[arg(long)]
    checkpoint: String,
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
    /// A model file (.safetensors / .pth), a run or checkpoint folder, or hub:<org>/<repo>/<path>.
    #[arg(long)]
    checkpoint: String,
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
    /// A model file (.safetensors / .pth), a run or checkpoint folder, or hub:<org>/<repo>/<path>.
    #[arg(long)]
    checkpoint: String,
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
        if let Some(lr) = a.lr {
            match &mut r.optimizer {
                mixbt::optim::OptimizerConfig::Adam(c) => c.lr = lr,
                mixbt::optim::OptimizerConfig::Sgd(c) => c.lr = lr,
                mixbt::optim::OptimizerConfig::Lars(c) => c.lr_weights = lr,
            }
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
        if c.bank_subset.is_some() {
            r.data.bank_subset = c.bank_subset;
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
        if a.plots {
            let written = mixbt::report::write_run_plots(&out.join("plots"), trainer.history(), Some(s.knn_top1_random_init))?;
            eprintln!("charts: {}", written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
        }
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
    if c.bank_subset.is_some() {
        r.data.bank_subset = c.bank_subset;
    }
    Ok(r)
}

fn knn(a: EvalArgs) -> Result<()> {
    let device = parse_device(&a.common.device)?;
    let r = eval_recipe(&a.common)?;
    let (enc, _, _) = mixbt::ckpt::load_encoder(&mixbt::hub::resolve_checkpoint(&a.checkpoint)?, &device)?;
    let bank_ds = mixbt::train::open_dataset(&mixbt::train::DataConfig { train_subset: r.data.bank_subset, ..r.data.clone() }, Split::Train)?;
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
    let (enc, _, _) = mixbt::ckpt::load_encoder(&mixbt::hub::resolve_checkpoint(&a.checkpoint)?, &device)?;
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
    let (enc, _, cfg) = mixbt::ckpt::load_encoder(&mixbt::hub::resolve_checkpoint(&a.checkpoint)?, &device)?;
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

/// One case of `bench train`: ours and PyTorch's timings, one per round.
struct BenchCase {
    case: &'static str,
    batch: usize,
    ours: Vec<mixbt::bench::Timing>,
    theirs: Vec<mixbt::bench::Timing>,
}

impl BenchCase {
    fn ours_per_s(&self) -> f64 {
        mixbt::bench::median(&self.ours.iter().map(|t| t.images_per_s).collect::<Vec<_>>())
    }
    fn theirs_per_s(&self) -> Option<f64> {
        (!self.theirs.is_empty()).then(|| mixbt::bench::median(&self.theirs.iter().map(|t| t.images_per_s).collect::<Vec<_>>()))
    }
    /// Ours / theirs in each round.
    fn ratios(&self) -> Vec<f64> {
        self.ours.iter().zip(&self.theirs).map(|(o, t)| o.images_per_s / t.images_per_s).collect()
    }
}

#[allow(clippy::too_many_arguments)]
fn bench_train(batches: &str, steps: usize, warmup: usize, rounds: usize, width: f64, embed_batch: usize, device: &str, no_torch: bool) -> Result<()> {
    use mixbt::bench::{self, EmbedBench, TrainBench, TorchWorker};
    let dev = parse_device(device)?;
    let batches: Vec<usize> = batches.split(',').map(|b| b.trim().parse().map_err(|_| Error::Config(format!("bad batch `{b}`")))).collect::<Result<_>>()?;
    if steps == 0 || rounds == 0 {
        return Err(Error::Config(format!("bench train: steps and rounds must be at least 1 (got steps {steps}, rounds {rounds})")));
    }
    let mut trains = batches.iter().map(|&b| TrainBench::new(b, width, &dev)).collect::<Result<Vec<_>>>()?;
    let embed = EmbedBench::new(embed_batch, width, &dev)?;
    let py = bench::python();
    let script = bench::bench_dir().join("torch_train_step.py");
    let mut torch = if no_torch || width != 1.0 || !dev.is_cpu() {
        None
    } else if bench::python_has(&py, "torch, torchvision, numpy") {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Some(TorchWorker::start(&script, &["--threads".into(), threads.to_string()])?)
    } else {
        eprintln!("({py} cannot import torch: PyTorch side skipped; set MIXBT_PYTHON to a Python with torch)");
        None
    };
    let mut cases: Vec<BenchCase> = batches.iter().map(|&b| ("train", b)).chain([("embed", embed_batch)]).map(|(case, batch)| BenchCase { case, batch, ours: vec![], theirs: vec![] }).collect();
    for round in 0..rounds {
        // Full warm-up in the first round only (both sides keep their models between rounds);
        // which side goes first alternates from round to round.
        let w = if round == 0 { warmup } else { warmup.min(1) };
        for (i, c) in cases.iter_mut().enumerate() {
            for side in [round % 2, 1 - round % 2] {
                if side == 0 {
                    let t = if i < trains.len() { trains[i].time(steps, w)? } else { embed.time(steps, w)? };
                    eprintln!("round {}: mixbt {} batch {}: {:.3} s/batch, {:.2} {}/s", round + 1, c.case, c.batch, t.median_s, t.images_per_s, unit(c.case));
                    c.ours.push(t);
                } else if let Some(w_) = torch.as_mut() {
                    let t = w_.time(c.case, c.batch, steps, w)?;
                    eprintln!("round {}: torch {} batch {}: {:.3} s/batch, {:.2} {}/s", round + 1, c.case, c.batch, t.median_s, t.images_per_s, unit(c.case));
                    c.theirs.push(t);
                }
            }
            if round == 0 && i + 1 == trains.len() && mixbt::ops::profile::enabled() {
                eprintln!("profile of the first round's training steps, warm-up included (MIXBT_PROFILE=1; cores = process CPU time / wall time):");
                for t in mixbt::ops::profile::report() {
                    eprintln!("  {:<24} {:>8.3} s {:>7} calls {:>6.2} cores", t.name, t.wall, t.calls, t.cpu / t.wall.max(1e-9));
                }
            }
        }
    }
    println!("{:<8} {:>6} {:>14} {:>14} {:>8}   {}", "case", "batch", "mixbt img/s", "pytorch img/s", "ratio", "ratio per round");
    for c in &cases {
        let p = c.theirs_per_s();
        let ratios = c.ratios();
        println!(
            "{:<8} {:>6} {:>14.2} {:>14} {:>8}   {}",
            c.case,
            c.batch,
            c.ours_per_s(),
            p.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            if ratios.is_empty() { "-".into() } else { format!("{:.2}", bench::median(&ratios)) },
            ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ")
        );
    }
    println!(
        "(img/s: median over {rounds} round(s) of batch / median time of {steps} steps; training counts pairs, a step being 3 forward passes, backward and Adam; ratio: median of the rounds' ours/PyTorch, the two sides alternating within each round)"
    );
    let ratio = |case: &str, b: usize| cases.iter().find(|c| c.case == case && c.batch == b).map(|c| c.ratios()).filter(|r| !r.is_empty()).map(|r| bench::median(&r));
    if batches.contains(&32) {
        match ratio("train", 32) {
            Some(r) => println!("ratio_vs_pytorch={r:.2}"),
            None => println!("ratio_vs_pytorch=NA"),
        }
    }
    if let Some(r) = ratio("embed", embed_batch) {
        println!("embed_ratio_vs_pytorch={r:.2}");
    }
    Ok(())
}

fn unit(case: &str) -> &'static str {
    if case == "train" { "pairs" } else { "images" }
}

fn bench_conv(batch: usize, runs: usize) -> Result<()> {
    let r = mixbt::bench::conv_layers(batch, runs)?;
    println!("{:<18} {:>3} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7}", "layer", "n", "fwd ms", "bwd-in ms", "bwd-w ms", "fwd GF", "in GF", "w GF");
    let (mut f, mut i, mut w, mut fl) = (0.0, 0.0, 0.0, 0.0);
    for t in &r {
        let c = t.count as f64;
        println!(
            "{:<18} {:>3} {:>9.2} {:>9.2} {:>9.2} {:>7.1} {:>7.1} {:>7.1}",
            t.name, t.count, t.forward_ms, t.backward_input_ms, t.backward_weight_ms,
            t.gflop / t.forward_ms * 1e3, t.gflop / t.backward_input_ms * 1e3, t.gflop / t.backward_weight_ms * 1e3
        );
        f += c * t.forward_ms;
        i += c * t.backward_input_ms;
        w += c * t.backward_weight_ms;
        fl += c * t.gflop;
    }
    println!("{:<18} {:>3} {:>9.1} {:>9.1} {:>9.1} {:>7.1} {:>7.1} {:>7.1}", "all (x count)", "", f, i, w, fl / f * 1e3, fl / i * 1e3, fl / w * 1e3);
    println!("conv_total_ms={:.1} conv_gflops={:.1} (batch {batch}, median of {runs}, {} threads)", f + i + w, 3.0 * fl / (f + i + w) * 1e3, rayon::current_num_threads());
    Ok(())
}

fn bench_gemm(runs: usize, custom: Option<&str>) -> Result<()> {
    // (m, k, n, A transposed, B transposed): forward (W·col), input gradient (Wᵀ·dY) and weight
    // gradient (dY·colᵀ) of ResNet-18's 3×3 convolutions at 32², 16², 8² and 4², 512 columns.
    let mut cases = vec![];
    for (c, cols) in [(64, 1024), (128, 512), (256, 512), (512, 512)] {
        let ckk = c * 9;
        cases.push((c, ckk, cols, false, false));
        cases.push((ckk, c, cols, true, false));
        cases.push((c, cols, ckk, false, true));
    }
    cases.push((1024, 1024, 1024, false, false));
    if let Some(custom) = custom {
        let bad = |c: &str| Error::Config(format!("bad gemm case `{c}` (expected m,k,n,At,Bt)"));
        cases = custom
            .split(';')
            .map(|c| {
                let v: Vec<usize> = c.split(',').map(|x| x.trim().parse().map_err(|_| bad(c))).collect::<Result<_>>()?;
                match v[..] {
                    [m, k, n, at, bt] => Ok((m, k, n, at == 1, bt == 1)),
                    _ => Err(bad(c)),
                }
            })
            .collect::<Result<_>>()?;
    }
    let r = mixbt::bench::gemm(&cases, runs);
    println!("{:>5} {:>5} {:>5} {:>3} {:>3} {:>10} {:>10} {:>6} {:>9}", "m", "k", "n", "At", "Bt", "ours", "mm", "ratio", "max|Δ|");
    for t in &r {
        println!(
            "{:>5} {:>5} {:>5} {:>3} {:>3} {:>10.1} {:>10.1} {:>6.2} {:>9.2e}",
            t.m, t.k, t.n, t.a_transposed as u8, t.b_transposed as u8, t.ours_gflops, t.matrixmultiply_gflops,
            t.ours_gflops / t.matrixmultiply_gflops, t.max_abs_diff
        );
    }
    let g = r.iter().map(|t| (t.ours_gflops / t.matrixmultiply_gflops).ln()).sum::<f64>() / r.len() as f64;
    println!("(GFLOP/s, one thread, median of {runs}; ours = mixbt::ops::gemm, mm = matrixmultiply)");
    println!("geomean_ratio_vs_matrixmultiply={:.2}", g.exp());
    Ok(())
}

fn bench_data(dir: &std::path::Path, images: usize, workers: usize, runs: usize, no_torch: bool) -> Result<()> {
    use mixbt::bench;
    let threads = if workers == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { workers };
    let dir = if dir.join("train").is_dir() { dir.join("train") } else { dir.to_path_buf() };
    let ours = bench::data_pipeline(&dir, images, threads, 256, runs)?;
    println!("mixbt: {:.0} augmented pairs/s ({} images, {threads} threads, median of {runs} epochs)", ours.images_per_s, ours.batch);
    let py = bench::python();
    if no_torch {
        println!("ratio_vs_torchvision=NA");
        return Ok(());
    }
    if !bench::python_has(&py, "torch, torchvision") {
        eprintln!("({py} cannot import torchvision: side skipped; set MIXBT_PYTHON)");
        println!("ratio_vs_torchvision=NA");
        return Ok(());
    }
    let mut theirs = vec![];
    for _ in 0..runs.max(1) {
        let v = bench::run_python(
            &bench::bench_dir().join("torchvision_data.py"),
            &["--data-dir".into(), dir.display().to_string(), "--images".into(), images.to_string(), "--workers".into(), threads.to_string()],
        )?;
        if let Some(p) = v.first().and_then(|v| v["pairs_per_s"].as_f64()) {
            theirs.push(p);
        }
    }
    theirs.sort_by(f64::total_cmp);
    let tv = theirs.get(theirs.len() / 2).copied().ok_or_else(|| Error::msg("torchvision benchmark printed nothing"))?;
    println!("torchvision: {tv:.0} augmented pairs/s ({threads} DataLoader workers, median of {runs})");
    println!("ratio_vs_torchvision={:.2}", ours.images_per_s / tv);
    Ok(())
}

fn hub(cmd: HubCmd) -> Result<()> {
    use mixbt::hub;
    match cmd {
        HubCmd::List { json } => {
            let reg = hub::registry();
            if json {
                println!("{}", serde_json::to_string_pretty(&reg)?);
                return Ok(());
            }
            println!("Hub repo {} (files under checkpoints/); paper top-1 accuracies", reg.repo);
            println!("{:<54} {:<9} {:<14} {:>5} {:>9} {:>6} {:>6} {:>7} {:>7}  kind", "file", "arch", "dataset", "d", "lambda_bt", "l_reg", "epochs", "k-NN", "linear");
            for c in &reg.checkpoints {
                let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
                println!(
                    "{:<54} {:<9} {:<14} {:>5} {:>9} {:>6} {:>6} {:>7} {:>7}  {}",
                    c.file, c.arch, c.dataset, c.d, c.lambda_bt, c.lambda_reg, c.epochs, f(c.knn_top1), f(c.linear_top1), c.kind
                );
            }
            Ok(())
        }
        HubCmd::Pull { reference, hub: h } => {
            h.apply();
            let reference = if reference.starts_with("hub:") {
                reference
            } else {
                let reg = hub::registry();
                let c = reg.checkpoints.iter().find(|c| c.file == reference).ok_or_else(|| {
                    Error::Config(format!("`{reference}` is neither a hub: reference nor a released file (see `mixbt hub list`)"))
                })?;
                c.hub_ref(&reg)
            };
            let p = hub::resolve_checkpoint(&reference)?;
            println!("{}", p.display());
            Ok(())
        }
        HubCmd::Convert { checkpoint, out, hub: h } => {
            h.apply();
            let src = hub::resolve_checkpoint(&checkpoint)?;
            let c = hub::convert::convert(&src, &checkpoint, &out)?;
            println!(
                "converted {} ({} {} stem, width {}, d {}; {}; {} tensors{}) into {}",
                checkpoint,
                c.encoder.backbone.arch.name(),
                c.encoder.backbone.stem.name(),
                c.encoder.backbone.width,
                c.encoder.out_dim(),
                c.contents,
                c.tensors,
                if c.skipped_keys.is_empty() { String::new() } else { format!(", {} thop keys skipped", c.skipped_keys.len()) },
                out.display()
            );
            Ok(())
        }
        HubCmd::Push { folder, repo, message, private, hub: h } => {
            h.apply();
            let cfg = hub::HubConfig::from_env();
            // A run folder gets a model card first.
            if !folder.join("README.md").is_file() && folder.join("model.safetensors").is_file() {
                let c = hub::convert::convert(&folder.join("model.safetensors"), &folder.display().to_string(), &folder.join(".hub-card"))?;
                let summary: Option<serde_json::Value> =
                    std::fs::read_to_string(folder.join("summary.json")).ok().and_then(|s| serde_json::from_str(&s).ok());
                mixbt::ckpt::atomic_write(&folder.join("README.md"), hub::convert::model_card(&c, summary.as_ref()).as_bytes())?;
                if !folder.join("config.json").is_file() {
                    std::fs::copy(folder.join(".hub-card/config.json"), folder.join("config.json")).map_err(|e| Error::io(folder.join("config.json"), e))?;
                }
                let _ = std::fs::remove_dir_all(folder.join(".hub-card"));
            }
            let r = hub::push::push_folder(&cfg, &repo, &folder, &message, private)?;
            println!(
                "pushed {} files to {} (commit {}): LFS {:?}, regular {:?}",
                r.lfs_files.len() + r.regular_files.len(),
                r.repo_url,
                r.commit,
                r.lfs_files,
                r.regular_files
            );
            Ok(())
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Pretrain(a) => pretrain(a),
        Cmd::Knn(a) => knn(a),
        Cmd::Linear(a) => linear(a),
        Cmd::Embed(a) => embed(a),
        Cmd::Data { cmd: DataCmd::Stats { data, json, split } } => data_stats(data, json, &split),
        Cmd::Presets { json } => list_presets(json),
        Cmd::Hub { cmd } => hub(cmd),
        Cmd::Bench { cmd: BenchCmd::Gemm { runs, cases } } => bench_gemm(runs, cases.as_deref()),
        Cmd::Bench { cmd: BenchCmd::Conv { batch, runs } } => bench_conv(batch, runs),
        Cmd::Bench { cmd: BenchCmd::Data { data_dir, images, workers, runs, no_torch } } => bench_data(&data_dir, images, workers, runs, no_torch),
        Cmd::Bench { cmd: BenchCmd::Train { batches, steps, warmup, rounds, width, embed_batch, device, no_torch } } => {
            bench_train(&batches, steps, warmup, rounds, width, embed_batch, &device, no_torch)
        }
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
