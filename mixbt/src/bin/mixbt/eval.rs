//! `mixbt knn`, `mixbt linear` and `mixbt embed`: evaluation of a checkpoint.

use std::path::PathBuf;

use clap::Args;

use mixbt::data::{self, DataConfig, DatasetKind, Split, Transform};
use mixbt::eval::{knn_eval, linear_probe, KnnConfig, LinearProbeConfig};
use mixbt::model::Encoder;
use mixbt::{Error, Result};

use crate::{at_least_one, parse_device, positive, workers, Common};

#[derive(Args)]
pub struct KnnArgs {
    #[command(flatten)]
    common: Common,
    /// A model file (.safetensors / .pth), a run or checkpoint folder, or hub:<org>/<repo>/<path>.
    #[arg(long)]
    checkpoint: String,
    #[arg(long, default_value_t = 200, value_parser = at_least_one)]
    k: usize,
    #[arg(long, default_value_t = 0.5, value_parser = positive)]
    temperature: f64,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct LinearArgs {
    #[command(flatten)]
    common: Common,
    /// A model file (.safetensors / .pth), a run or checkpoint folder, or hub:<org>/<repo>/<path>.
    #[arg(long)]
    checkpoint: String,
    /// Epochs (default 200; 500 with --ssl-sota-protocol).
    #[arg(long, value_parser = at_least_one)]
    epochs: Option<usize>,
    /// Batch size (default 512; 1000 with --ssl-sota-protocol).
    #[arg(long, value_parser = at_least_one)]
    batch_size: Option<usize>,
    /// Train on features of un-augmented images computed once (fast) instead of augmented views.
    #[arg(long)]
    no_augment: bool,
    /// ssl-sota's `eval_sgd` (the SimCLR/BYOL/W-MSE baselines' final classifier): Adam 1e-2 →
    /// 1e-6, wd 5e-6, 500 epochs, batch 1000, frozen embeddings without augmentation.
    #[arg(long, conflicts_with = "imagenet_protocol")]
    ssl_sota_protocol: bool,
    /// Reproduce linear.py's quirk: the frozen backbone's BN in train mode while probing.
    #[arg(long)]
    bn_train_quirk: bool,
    /// evaluate_imagenet.py's protocol (SGD 0.3 momentum 0.9 wd 1e-6, cosine; RandomResizedCrop 224 +
    /// flip for training, Resize 256 + CenterCrop 224 for evaluation) instead of linear.py's Adam.
    #[arg(long)]
    imagenet_protocol: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct EmbedArgs {
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
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    batch_size: usize,
    /// Replace an existing --out file instead of refusing.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Args)]
pub struct ClassifyArgs {
    /// A linear-probe checkpoint (`checkpoint_*.pth` of the original, or a converted one), or hub:<org>/<repo>/<path>.
    #[arg(long)]
    checkpoint: String,
    /// Which validation transform and statistics (default imagenet: Resize 256, CenterCrop 224).
    #[arg(long, default_value = "imagenet")]
    dataset: String,
    /// The validation folder (`<class>/*` in sorted class order), or a folder holding `val/`.
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    batch_size: usize,
    /// Decode threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    #[arg(long)]
    json: bool,
}

/// The encoder of a checkpoint argument (path or `hub:` reference).
fn load(checkpoint: &str, device: &str) -> Result<(Encoder, mixbt::model::EncoderConfig)> {
    let (enc, _, cfg) = mixbt::ckpt::load_encoder(&mixbt::hub::resolve_checkpoint(checkpoint)?, &parse_device(device)?)?;
    Ok((enc, cfg))
}

pub fn knn(a: KnnArgs) -> Result<()> {
    let r = a.common.recipe()?;
    let (enc, _) = load(&a.checkpoint, &a.common.device)?;
    let cfg = KnnConfig { k: a.k, temperature: a.temperature, ..Default::default() };
    let res = knn_eval(&enc, &r.data, &cfg, workers(a.common.workers))?;
    println!("k-NN (k={}, T={}) top-1 {:.2}% top-5 {:.2}% on {} test images", a.k, a.temperature, res.top1, res.top5, res.n_test);
    if a.json {
        println!("{}", serde_json::to_string(&res)?);
    }
    Ok(())
}

pub fn linear(a: LinearArgs) -> Result<()> {
    let r = a.common.recipe()?;
    let (enc, _) = load(&a.checkpoint, &a.common.device)?;
    let train = data::open(&r.data, Split::Train)?;
    let test = data::open(&r.data, Split::Test)?;
    let mut cfg = if a.imagenet_protocol {
        LinearProbeConfig::imagenet()
    } else if a.ssl_sota_protocol {
        LinearProbeConfig::ssl_sota()
    } else {
        LinearProbeConfig { epochs: 200, batch_size: 512, ..LinearProbeConfig::small() }
    };
    cfg.epochs = a.epochs.unwrap_or(cfg.epochs);
    cfg.batch_size = a.batch_size.unwrap_or(cfg.batch_size);
    cfg.augment = !a.no_augment && !a.ssl_sota_protocol;
    cfg.bn_train_mode_quirk = a.bn_train_quirk;
    cfg.seed = a.common.seed.unwrap_or(0);
    cfg.workers = workers(a.common.workers);
    // The ImageNet protocol has its own transforms; linear.py trains on the pre-training view.
    let (train_t, eval_t) = if a.imagenet_protocol { LinearProbeConfig::imagenet_transforms() } else { (r.data.view_a.clone(), r.data.eval.clone()) };
    let res = linear_probe(&enc, train, test, &train_t, &eval_t, &cfg, |e| {
        eprintln!("epoch {:>3}: loss {:.4} train {:.2}% test top-1 {:.2}% top-5 {:.2}% (lr {:.2e})", e.epoch, e.train_loss, e.train_top1, e.test_top1, e.test_top5, e.lr)
    })?;
    println!("linear probe: best top-1 {:.2}% (best top-5 {:.2}%), last top-1 {:.2}% (top-5 {:.2}%)", res.best_top1, res.best_top5, res.last_top1, res.last_top5);
    if a.json {
        let j = serde_json::json!({"best_top1": res.best_top1, "best_top5": res.best_top5, "last_top1": res.last_top1, "last_top5": res.last_top5});
        println!("{j}");
    }
    Ok(())
}

pub fn embed(a: EmbedArgs) -> Result<()> {
    let (enc, cfg) = load(&a.checkpoint, &a.device)?;
    if let Some(arch) = &a.arch {
        let want: mixbt::model::Arch = arch.parse()?;
        if want != cfg.backbone.arch {
            return Err(Error::Config(format!("--arch {arch}, but the checkpoint holds a {}", cfg.backbone.arch.name())));
        }
    }
    let kind: DatasetKind = a.dataset.parse()?;
    let eval = DataConfig::for_kind(kind).eval;
    let t = match a.transform.as_str() {
        "eval" => eval,
        "none" => Transform::normalize_only((eval.mean, eval.std)),
        other => return Err(Error::Config(format!("--transform {other}: use eval or none"))),
    };
    // Claimed before the work: a second `embed` into the same file fails at once.
    let _claim = mixbt::io::FileLock::claim(&a.out, a.overwrite, "replace it with --overwrite, or choose another --out")?;
    let n = mixbt::eval::features::embed_folder(&enc, &a.images, &t, a.batch_size, &a.out)?;
    println!("wrote {n} feature rows [{n}, {}] to {}", cfg.feature_dim(), a.out.display());
    Ok(())
}

/// Top-1/top-5 of a released linear probe on a validation folder, with the data set's
/// evaluation transform (ImageNet: Resize 256, CenterCrop 224, ImageNet mean/std).
pub fn classify(a: ClassifyArgs) -> Result<()> {
    let clf = mixbt::ckpt::load_classifier(&mixbt::hub::resolve_checkpoint(&a.checkpoint)?, &parse_device(&a.device)?)?;
    let mut cfg = DataConfig::for_kind(a.dataset.parse()?);
    cfg.dir = Some(a.data_dir.clone());
    // `--data-dir` may be the validation folder itself (its sub-folders the classes).
    let ds = if a.data_dir.join("val").is_dir() || a.data_dir.join("test").is_dir() {
        data::open(&cfg, Split::Test)?
    } else {
        std::sync::Arc::new(mixbt::data::ImageFolder::open(&a.data_dir, Default::default())?) as mixbt::data::DynDataset
    };
    let n_classes = ds.classes().len();
    let acc = mixbt::eval::classify(&clf, ds, &cfg.eval, a.batch_size, workers(a.workers))?;
    println!("top-1 {:.2}% top-5 {:.2}% on {} images of {n_classes} classes ({} outputs)", acc.top1, acc.top5, acc.n, clf.num_classes());
    if a.json {
        println!("{}", serde_json::to_string(&acc)?);
    }
    Ok(())
}
