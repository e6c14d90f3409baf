//! The paper's recipes as data (reference §4, §7, §8), plus CPU presets.
//!
//! Small data sets follow `scripts-pretrain-resnet{18,50}/*.sh` with the settings the released
//! checkpoint names encode (d = 1024, batch 256); ImageNet follows `main_imagenet.py` (ResNet-50,
//! LARS, batch 1024, projector 8192-8192-8192, 10-epoch λ_reg ramp). Plain Barlow Twins is any
//! recipe with λ_reg = 0 ([`Recipe::set_lambda_reg`]; CLI: `--lambda-reg 0` or `--method bt`).
//! The baselines' presets (`simclr-*`, `byol-*`, `wmse-*`) follow `ssl-sota/scripts-pretrain`
//! ([`ssl_sota`]); `quickstart-<method>` runs each method on `quickstart`'s data and budget
//! ([`with_method`]).

use crate::data::{BuiltinConfig, DataConfig, DatasetKind, Transform};
use crate::data::augment::norm;
use crate::eval::KnnConfig;
use crate::loss::{MixVariant, MixedBarlowTwins};
use crate::method::{BarlowTwinsConfig, ByolConfig, MethodConfig, SimclrConfig, WmseConfig};
use crate::model::{Arch, EncoderConfig, ProjectorConfig, Stem};
use crate::optim::{AdamConfig, LarsConfig, OptimizerConfig};
use crate::{Error, Result};

use super::recipe::{LrSchedule, PaperResult, Recipe};

/// Small-data-set lambda_BT (1/128) and the TinyImageNet one (`bc` truncation of 1/1024).
pub const LAMBDA_BT_SMALL: f64 = 0.0078125;
pub const LAMBDA_BT_TINY: f64 = 0.0009765;
pub const LAMBDA_BT_IMAGENET: f64 = 0.0051;

#[allow(clippy::too_many_arguments)]
fn small(arch: Arch, kind: DatasetKind, lambda_bt: f64, lambda_reg: f64, epochs: usize, knn: f64, lin: f64, ckpt: &str) -> Recipe {
    let (stem, dname) = match kind {
        DatasetKind::Cifar10 => (Stem::Cifar, "cifar10"),
        DatasetKind::Cifar100 => (Stem::Cifar, "cifar100"),
        DatasetKind::Stl10 => (Stem::Small64, "stl10"),
        _ => (Stem::Small64, "tiny-imagenet"),
    };
    let aname = match arch {
        Arch::R18 => "r18",
        Arch::R50 => "r50",
    };
    let mut r = Recipe {
        name: format!("{aname}-{dname}"),
        description: format!(
            "Mixed Barlow Twins, {} on {dname}: d 1024, lambda_BT {lambda_bt}, lambda_reg {lambda_reg}, {epochs} epochs, batch 256, Adam(lr 0.01 cosine, wd 1e-6) (main.py)",
            arch.name()
        ),
        encoder: EncoderConfig::small(arch, stem, 1024, 1.0),
        method: MethodConfig::BarlowTwins(BarlowTwinsConfig {
            loss: MixedBarlowTwins { lambda_bt, lambda_reg, variant: MixVariant::Small, l2_normalize: true },
            is_mixup: true,
            lambda_reg_warmup_epochs: None,
        }),
        optimizer: OptimizerConfig::Adam(AdamConfig { lr: 0.01, weight_decay: 1e-6, ..Default::default() }),
        schedule: LrSchedule::WarmupCosine { warmup_epochs: 10, epoch_offset: true },
        batch_size: 256,
        epochs,
        max_steps: None,
        time_budget_s: None,
        data: DataConfig::for_kind(kind),
        knn: KnnConfig::default(),
        knn_every_epochs: 5,
        precision: Default::default(),
        paper: Some(PaperResult { knn_top1: Some(knn), linear_top1: Some(lin), checkpoint: Some(ckpt.into()) }),
    };
    r.set_lambda_reg(lambda_reg).expect("Barlow Twins");
    r
}

fn imagenet(lambda_reg: f64, epochs: usize, lin: f64, ckpt: &str) -> Recipe {
    let name = if epochs == 300 { format!("imagenet-r50-300ep-lreg{lambda_reg}") } else { format!("imagenet-r50-{epochs}ep") };
    let mut r = Recipe {
        name,
        description: format!(
            "Mixed Barlow Twins on ImageNet (main_imagenet.py): ResNet-50, projector 8192-8192-8192, lambda_BT 0.0051, lambda_reg {lambda_reg} (10-epoch ramp), LARS (0.2 / 0.0048, wd 1e-6), batch 1024, {epochs} epochs"
        ),
        encoder: EncoderConfig::imagenet("8192-8192-8192", 1.0).expect("valid spec"),
        method: MethodConfig::BarlowTwins(BarlowTwinsConfig {
            loss: MixedBarlowTwins { lambda_bt: LAMBDA_BT_IMAGENET, lambda_reg, variant: MixVariant::ImageNet, l2_normalize: false },
            is_mixup: true,
            lambda_reg_warmup_epochs: Some(10),
        }),
        optimizer: OptimizerConfig::Lars(LarsConfig::default()),
        schedule: LrSchedule::WarmupCosine { warmup_epochs: 10, epoch_offset: false },
        batch_size: 1024,
        epochs,
        max_steps: None,
        time_budget_s: None,
        data: DataConfig::for_kind(DatasetKind::Imagenet),
        knn: KnnConfig::default(),
        knn_every_epochs: 0,
        precision: Default::default(),
        paper: Some(PaperResult { knn_top1: None, linear_top1: Some(lin), checkpoint: Some(ckpt.into()) }),
    };
    // λ_reg = 0 (the first row of the ablation) is plain Barlow Twins, without the mixed pass.
    r.set_lambda_reg(lambda_reg).expect("Barlow Twins");
    r
}

/// `quickstart`: the built-in shapes on a 2-core CPU in a few minutes. An embedding of 128 and
/// a peak lr of 3e-3: with the paper's d = 512 (or more) at this width and batch, or at
/// `main.py`'s peak of 7.5e-4, three epochs leave Barlow Twins at its random initialisation on
/// some seeds (measured gains and the seeds: `docs/quickstart.md`).
pub fn quickstart() -> Recipe {
    let mut enc = EncoderConfig::small(Arch::R18, Stem::Cifar, 128, 0.125);
    enc.projector = ProjectorConfig::small_with_hidden(enc.feature_dim(), 512, 128);
    let mut d = DataConfig::for_kind(DatasetKind::Builtin);
    d.builtin = Some(BuiltinConfig { seed: 0, train_size: 6000, test_size: 1000, size: 32 });
    Recipe {
        name: "quickstart".into(),
        description: "Mixed Barlow Twins on the built-in shapes (6,000 train / 1,000 test, 32x32): ResNet-18 at width 1/8, projector 64-512-128 (d 128), lambda_BT 1/128, lambda_reg 4, Adam at a peak lr of 3e-3 (1.2e-2 x batch/256) with 1 warm-up epoch and cosine, batch 64, 3 epochs; about a minute on 2 CPU cores".into(),
        encoder: enc,
        method: MethodConfig::BarlowTwins(BarlowTwinsConfig::default()),
        optimizer: OptimizerConfig::Adam(AdamConfig { lr: 1.2e-2, weight_decay: 1e-6, ..Default::default() }),
        schedule: LrSchedule::WarmupCosine { warmup_epochs: 1, epoch_offset: false },
        batch_size: 64,
        epochs: 3,
        max_steps: None,
        time_budget_s: None,
        data: d,
        knn: KnnConfig::default(),
        knn_every_epochs: 0,
        precision: Default::default(),
        paper: None,
    }
}

/// `cifar10-cpu`: real CIFAR-10 (image folder `train/<class>`, `test/<class>`) within 20 minutes on 2 cores.
pub fn cifar10_cpu() -> Recipe {
    let mut enc = EncoderConfig::small(Arch::R18, Stem::Cifar, 512, 0.125);
    enc.projector = ProjectorConfig::small_with_hidden(enc.feature_dim(), 512, 512);
    let mut d = DataConfig::for_kind(DatasetKind::ImageFolder);
    d.train_subset = Some(25_600);
    d.test_subset = Some(2_000);
    Recipe {
        name: "cifar10-cpu".into(),
        description: "Mixed Barlow Twins on real CIFAR-10 (image folder train/<class>, test/<class>) within 20 minutes on 2 CPU cores: ResNet-18 at width 1/8, d 512, lambda_BT 1/128, lambda_reg 4, Adam 3e-3 (x batch/256) with 1 warm-up epoch and cosine, batch 64, 2 epochs of 25,600 images (time budget 17.5 min); k-NN bank = the 50,000 train images, 2,000 test images".into(),
        encoder: enc,
        method: MethodConfig::BarlowTwins(BarlowTwinsConfig::default()),
        optimizer: OptimizerConfig::Adam(AdamConfig { lr: 3e-3, weight_decay: 1e-6, ..Default::default() }),
        schedule: LrSchedule::WarmupCosine { warmup_epochs: 1, epoch_offset: false },
        batch_size: 64,
        epochs: 2,
        max_steps: None,
        time_budget_s: Some(17.5 * 60.0),
        data: d,
        knn: KnnConfig::default(),
        knn_every_epochs: 0,
        precision: Default::default(),
        paper: None,
    }
}

/// Real CIFAR-10 on a 2-core CPU at a budget where Barlow Twins and Mixed Barlow Twins learn:
/// `cifar10_cpu`'s network and augmentations with batch 128, Adam at a peak lr of 1e-2
/// (2e-2 × batch/256; three epochs of Mixed BT at d = 128 gave k-NN 41.9 % against 40.4 % at a
/// peak of 3e-3, from 27.6 % at random init), projector 64-512-d, no time budget (runs end at their epochs, across
/// `--resume`), k-NN on the whole test split against the whole training split.
fn cifar10_cpu_budget(name: &str, method: &str, d: usize, train_subset: Option<usize>, epochs: usize, knn_every: usize, description: &str) -> Recipe {
    let mut r = cifar10_cpu();
    r.name = name.into();
    r.description = description.into();
    r.encoder.projector = ProjectorConfig::small_with_hidden(r.encoder.feature_dim(), 512, d);
    r.data.train_subset = train_subset;
    r.data.test_subset = None;
    r.data.bank_subset = None;
    r.batch_size = 128;
    r.optimizer.set_base_lr(1e-2 * 256.0 / 128.0);
    r.epochs = epochs;
    r.time_budget_s = None;
    r.knn_every_epochs = knn_every;
    with_method(r, method).expect("a Barlow Twins method")
}

/// The `ssl-sota` recipe of `method` on `kind` (reference §7; `scripts-pretrain/<method>/<data>.sh`
/// over `cfg.py`'s defaults): ResNet-50 (`conv1` 3×3 stride 1, max-pool kept except on CIFAR),
/// head `Linear(2048, 1024) → BN1d → ReLU → Linear(1024, emb)` with biases, `aug_transform`
/// (CIFAR-100 with its own statistics), Adam with L2 1e-6, 500 warm-up iterations and
/// `MultiStepLR([epochs − 50, epochs − 25], 0.2)`; k-NN every 20 epochs (BYOL's scripts: 5).
/// `None` for a pair the scripts do not have.
pub fn ssl_sota(method: &str, kind: DatasetKind) -> Option<Recipe> {
    let (dname, stem, crop, stats) = match kind {
        DatasetKind::Cifar10 => ("cifar10", Stem::Cifar, 32, norm::CIFAR),
        DatasetKind::Cifar100 => ("cifar100", Stem::Cifar, 32, norm::CIFAR100_SSL),
        DatasetKind::Stl10 => ("stl10", Stem::Small64, 64, norm::STL),
        DatasetKind::TinyImagenet => ("tiny-imagenet", Stem::Small64, 64, norm::TINY),
        _ => return None,
    };
    let small64 = matches!(kind, DatasetKind::Stl10 | DatasetKind::TinyImagenet);
    // (method config, epochs, lr, emb, batch, eval_every, script)
    let (m, epochs, lr, emb, batch, every, note) = match method {
        "simclr" => (MethodConfig::Simclr(SimclrConfig::default()), 1000, 3e-3, 64, 384, 20, "--epoch 1000 --lr 3e-3 --emb 64 (bs 384 by default)"),
        "byol" => {
            let bs = if kind == DatasetKind::TinyImagenet { 320 } else { 384 };
            (MethodConfig::Byol(ByolConfig::default()), 1000, 3e-3, 64, bs, 5, "--epoch 1000 --lr 3e-3 --emb 64 --eval_every 5 (tinyimagenet: --bs 320)")
        }
        "wmse" if small64 => (
            MethodConfig::Wmse(WmseConfig { w_size: 256, ..Default::default() }),
            1000,
            2e-3,
            128,
            256,
            20,
            "--epoch 1000 --lr 2e-3 --emb 128 --w_size 256 --bs 256 --w_eps 1e-2",
        ),
        // The CIFAR-100 script passes no --epoch: cfg.py's default of 200.
        "wmse" => (
            MethodConfig::Wmse(WmseConfig { w_size: 128, ..Default::default() }),
            if kind == DatasetKind::Cifar100 { 200 } else { 1000 },
            3e-3,
            64,
            256,
            20,
            if kind == DatasetKind::Cifar100 { "--lr 3e-3 --emb 64 --w_size 128 --bs 256 --w_eps 1e-2, no --epoch: 200 epochs" } else { "--epoch 1000 --lr 3e-3 --emb 64 --w_size 128 --bs 256 --w_eps 1e-2" },
        ),
        _ => return None,
    };
    let mut encoder = EncoderConfig::small(Arch::R50, stem, emb, 1.0);
    encoder.projector = ProjectorConfig::head(encoder.feature_dim(), 1024, emb);
    let mut data = DataConfig::for_kind(kind);
    let t = Transform::ssl_sota(crop, stats);
    data.view_a = t.clone();
    data.view_b = t;
    if kind == DatasetKind::Cifar100 {
        data.eval = Transform::normalize_only(norm::CIFAR100_SSL);
    }
    Some(Recipe {
        name: format!("{method}-{dname}"),
        description: format!(
            "{} baseline on {dname} as ssl-sota/scripts-pretrain ({note}): ResNet-50, head 2048-1024-{emb}, Adam (wd 1e-6), 500 warm-up iterations, MultiStepLR([epochs-50, epochs-25], 0.2), batch {batch}, {epochs} epochs",
            crate::method::method_title(method)
        ),
        encoder,
        method: m,
        optimizer: OptimizerConfig::Adam(AdamConfig { lr, weight_decay: 1e-6, ..Default::default() }),
        schedule: LrSchedule::WarmupMultiStep { warmup_steps: 500, milestones_from_end: [50, 25], gamma: 0.2 },
        batch_size: batch,
        epochs,
        max_steps: None,
        time_budget_s: None,
        data,
        knn: KnnConfig::default(),
        knn_every_epochs: every,
        precision: Default::default(),
        paper: None,
    })
}

/// `recipe` with another method (`mixbt`, `bt`, `simclr`, `byol`, `wmse`), everything else kept:
/// data, encoder backbone, optimiser, schedule, batch, budget. Between `mixbt` and `bt` only the
/// mixed pass changes (λ_reg 0 ↔ the recipe's λ_reg, or 4 when it had none). The baselines get
/// `ssl-sota`'s head (hidden 1024 with biases, emb 64, `cfg.py`'s defaults) on the recipe's
/// backbone and their defaults; W-MSE's `w_size` becomes the largest of 128, 64, … that divides
/// the batch.
pub fn with_method(mut recipe: Recipe, method: &str) -> Result<Recipe> {
    let m = MethodConfig::for_name(method)?;
    if recipe.method.name() == method {
        return Ok(recipe);
    }
    match (&mut recipe.method, m) {
        (MethodConfig::BarlowTwins(c), MethodConfig::BarlowTwins(_)) => {
            let l = if method == "bt" { 0.0 } else if c.loss.lambda_reg != 0.0 { c.loss.lambda_reg } else { MixedBarlowTwins::default().lambda_reg };
            c.set_lambda_reg(l);
        }
        (_, MethodConfig::BarlowTwins(_)) => {
            return Err(Error::Config(format!(
                "--method {method} on the {} recipe `{}`: start from a Barlow Twins preset (e.g. quickstart or r18-cifar10) instead",
                recipe.method.name(),
                recipe.name
            )))
        }
        (_, m) => {
            let m = match m {
                MethodConfig::Wmse(mut w) => {
                    let mut ws = 128;
                    while ws > 2 && recipe.batch_size % ws != 0 {
                        ws /= 2;
                    }
                    w.w_size = ws;
                    MethodConfig::Wmse(w)
                }
                m => m,
            };
            recipe.encoder.projector = ProjectorConfig::head(recipe.encoder.feature_dim(), 1024, 64);
            recipe.method = m;
        }
    }
    recipe.description = format!("{} [--method {method}]", recipe.description);
    recipe.paper = None;
    Ok(recipe)
}

/// `quickstart-<method>`: the five methods on one footing — `quickstart`'s data, backbone,
/// schedule (1 warm-up epoch, cosine), batch and epochs ([`with_method`]), and one optimiser for
/// all five: Adam at a peak lr of 3e-3 (`ssl-sota`'s lr, which it does not scale by the batch;
/// under quickstart's `batch/256` schedule that is lr = 3e-3 · 256 / batch), which is
/// `quickstart`'s own: `quickstart-mixbt` is `quickstart`.
pub fn quickstart_with(method: &str) -> Result<Recipe> {
    let mut r = with_method(quickstart(), method)?;
    r.name = format!("quickstart-{method}");
    r.optimizer.set_base_lr(3e-3 * 256.0 / r.batch_size as f64);
    let line = METHOD_LINES.iter().find(|(n, _)| *n == method).map(|(_, l)| *l).unwrap_or("");
    let head = match r.method {
        MethodConfig::BarlowTwins(_) => format!("projector {}", r.encoder.projector.sizes.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("-")),
        _ => format!("head {}", r.encoder.projector.sizes.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("-")),
    };
    r.description = format!(
        "{line}; the five methods' common footing: the built-in shapes (6,000 images), ResNet-18 at width 1/8, {head}, Adam at a peak lr of 3e-3 (ssl-sota's) with 1 warm-up epoch and cosine, batch 64, 3 epochs"
    );
    Ok(r)
}

use crate::method::METHODS as METHOD_LINES;

/// Every preset, in a stable order.
pub fn all() -> Vec<Recipe> {
    use Arch::*;
    use DatasetKind::*;
    let mut v = vec![quickstart()];
    for m in ["mixbt", "bt", "simclr", "byol", "wmse"] {
        v.push(quickstart_with(m).expect("a known method"));
    }
    v.extend([
        cifar10_cpu(),
        cifar10_cpu_budget(
            "cifar10-cpu-1h-mixbt",
            "mixbt",
            128,
            Some(10_000),
            80,
            4,
            "Mixed Barlow Twins on real CIFAR-10 within an hour on 2 CPU cores: 10,000 training images (stratified), ResNet-18 at width 1/8, projector 64-512-128, lambda_BT 1/128, lambda_reg 4, Adam at a peak lr of 1e-2 with 1 warm-up epoch and cosine, batch 128, 80 epochs; k-NN every 4 epochs (bank: the 50,000 training images, test: the 10,000 test images). Measured on seeds 0-2 (results/overfitting-80, runs mixbt-d128-s*): k-NN 53.63 / 52.87 / 52.64 %, +26.1 / +26.7 / +24.0 points over the random network; linear probe 55.13 / 53.91 / 54.34 %; 40-53 min each on 2 cores (in 40 epochs, results/overfitting: +20.6 / +20.3 / +18.5)",
        ),
        // d = 1024: at d = 128 Barlow Twins gained only +18.1 to +19.7 points in 40 epochs
        // (results/overfitting, runs bt-d128-s*).
        cifar10_cpu_budget(
            "cifar10-cpu-1h-bt",
            "bt",
            1024,
            Some(10_000),
            40,
            4,
            "Barlow Twins on real CIFAR-10 within an hour on 2 CPU cores: cifar10-cpu-1h-mixbt with lambda_reg 0 (no mixed pass), d 1024 (projector 64-512-1024) and 40 epochs. Measured on seeds 0-2 (results/overfitting, runs bt-d1024-s*): k-NN 49.78 / 50.10 / 50.41 %, +22.2 / +23.9 / +21.8 points over the random network; linear probe 50.12 / 49.85 / 49.71 %; 17-18 min each on 2 cores",
        ),
        cifar10_cpu_budget(
            "cifar10-cpu-study",
            "mixbt",
            128,
            Some(10_000),
            40,
            4,
            "The recipe of `mixbt study overfitting` and `mixbt study methods`: cifar10-cpu-1h-mixbt in 40 epochs (a study's --epochs sets another length), run with each arm's method and d",
        ),
        small(R18, Cifar10, LAMBDA_BT_SMALL, 4.0, 2000, 90.52, 92.58, "4wdhbpcf_0.0078125_1024_256_cifar10_model.pth"),
        small(R18, Cifar100, LAMBDA_BT_SMALL, 4.0, 2000, 61.25, 69.31, "76kk7scz_0.0078125_1024_256_cifar100_model.pth"),
        small(R18, TinyImagenet, LAMBDA_BT_TINY, 4.0, 2000, 38.11, 51.67, "02azq6fs_0.0009765_1024_256_tiny_imagenet_model.pth"),
        small(R18, Stl10, LAMBDA_BT_SMALL, 2.0, 2000, 88.94, 91.02, "i7det4xq_0.0078125_1024_256_stl10_model.pth"),
        small(R50, Cifar10, LAMBDA_BT_SMALL, 4.0, 1000, 91.39, 93.89, "v3gwgusq_0.0078125_1024_256_cifar10_model.pth"),
        small(R50, Cifar100, LAMBDA_BT_SMALL, 4.0, 1000, 64.32, 72.51, "z6ngefw7_0.0078125_1024_256_cifar100_model.pth"),
        small(R50, TinyImagenet, LAMBDA_BT_TINY, 4.0, 2000, 42.21, 51.84, "kxlkigsv_0.0009765_1024_256_tiny_imagenet_model.pth"),
        small(R50, Stl10, LAMBDA_BT_SMALL, 2.0, 2000, 87.79, 91.70, "pbknx38b_0.0078125_1024_256_stl10_model.pth"),
    ]);
    for (l, lin, ck) in [
        (0.0, 71.3, "3on0l4wl_0.0000_8192_1024_imagenet_resnet50.pth"),
        (0.0025, 70.9, "l418b9zw_0.0025_8192_1024_imagenet_resnet50.pth"),
        (0.1, 71.6, "13awtq23_0.1000_8192_1024_imagenet_resnet50.pth"),
        (1.0, 72.2, "3fb1op86_1.0000_8192_1024_imagenet_resnet50.pth"),
        (2.0, 72.1, "5n9yqio0_1.0000_8192_1024_imagenet_resnet50.pth"),
        (3.0, 72.0, "q03u2xjz_3.0000_8192_1024_imagenet_resnet50.pth"),
    ] {
        v.push(imagenet(l, 300, lin, ck));
    }
    v.push(imagenet(2.0, 1000, 74.06, "4wpu8wmd_resnet50.pth"));
    for m in ["simclr", "byol", "wmse"] {
        for k in [Cifar10, Cifar100, Stl10, TinyImagenet] {
            v.extend(ssl_sota(m, k));
        }
    }
    v
}

/// The preset called `name`.
pub fn get(name: &str) -> Result<Recipe> {
    all().into_iter().find(|r| r.name == name).ok_or_else(|| {
        Error::Config(format!(
            "unknown preset `{name}`; presets: {}",
            all().iter().map(|r| r.name.clone()).collect::<Vec<_>>().join(", ")
        ))
    })
}
