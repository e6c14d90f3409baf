//! Linear probes on a frozen backbone: `linear.py` (Adam 1e-2 → 1e-6 exponential, wd 5e-6), the
//! ImageNet probe of `evaluate_imagenet.py` (SGD 0.3, momentum 0.9, cosine, eval-mode backbone)
//! and the transfer probe of `evaluate_transfer.py` (SGD 0.01, momentum 0.9, steps at 60 and 80).
//!
//! Without augmentation and with the backbone in eval mode, the features never change: they are
//! computed once and the classifier trains on them ([`probe_features`]). The slow path (a forward
//! pass per batch and epoch) visits the samples in the same order, so both give the same numbers.

use candle_core::{DType, Device, Module, ModuleT, Tensor};
use candle_nn::Init;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{DynDataset, Loader, LoaderConfig, Subset, Transform};
use crate::model::layers::linear;
use crate::model::Encoder;
use crate::optim::{Adam, AdamConfig, CosineAnnealing, ExponentialLr, MultiStepLr, Optimizer, Sgd, SgdConfig};
use crate::params::ParamStore;
use crate::{Error, Result};

/// Which probe recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProbeOptimizer {
    /// linear.py: Adam(lr) with L2 `weight_decay`, ExponentialLR from `lr` to `lr_end` over the epochs.
    Adam { lr: f64, lr_end: f64, weight_decay: f64 },
    /// evaluate_imagenet.py: SGD(lr, momentum 0.9, weight_decay), CosineAnnealingLR(T_max = epochs);
    /// the classifier starts at N(0, 0.01), bias 0.
    Sgd { lr: f64, momentum: f64, weight_decay: f64 },
    /// evaluate_transfer.py: SGD(lr, momentum, weight_decay), MultiStepLR(milestones, gamma)
    /// stepped per epoch; the classifier keeps `nn.Linear`'s default initialisation.
    #[serde(rename = "sgd-step")]
    SgdStep { lr: f64, momentum: f64, weight_decay: f64, milestones: Vec<usize>, gamma: f64 },
}

/// Linear-probe settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearProbeConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: ProbeOptimizer,
    /// Train on augmented views (the original; each epoch runs the backbone again). Without it,
    /// the features are computed once and the probe trains in seconds.
    pub augment: bool,
    /// The original linear.py quirk: the frozen backbone runs in train mode during training
    /// epochs, so its BN uses batch statistics and its running statistics drift. Off by default.
    pub bn_train_mode_quirk: bool,
    /// Compute the features once when nothing makes them change (no augmentation, eval-mode
    /// BN). Off: a forward pass per batch and epoch, same sample order, same numbers, slower.
    #[serde(default = "yes")]
    pub cache_features: bool,
    /// Classifier outputs (default: the data's class count). The transfer protocol gives
    /// FGVC-Aircraft's 100 variants 102 outputs.
    #[serde(default)]
    pub outputs: Option<usize>,
    pub seed: u64,
    pub workers: usize,
}

fn yes() -> bool {
    true
}

impl LinearProbeConfig {
    /// `ssl-sota`'s `eval_sgd` (the baselines' final classifier): `nn.Linear` on frozen
    /// embeddings without augmentation, Adam 1e-2 → 1e-6 (ExponentialLR), wd 5e-6, 500 epochs,
    /// batch 1000; top-1 and top-5.
    pub fn ssl_sota() -> Self {
        Self { epochs: 500, batch_size: 1000, augment: false, ..Self::small() }
    }

    /// linear.py defaults (200 epochs, batch 512, Adam 1e-2 → 1e-6, wd 5e-6, with augmentation).
    pub fn small() -> Self {
        Self {
            epochs: 200,
            batch_size: 512,
            optimizer: ProbeOptimizer::Adam { lr: 1e-2, lr_end: 1e-6, weight_decay: 5e-6 },
            augment: true,
            bn_train_mode_quirk: false,
            cache_features: true,
            outputs: None,
            seed: 0,
            workers: 0,
        }
    }
    /// evaluate_imagenet.py defaults (100 epochs, global batch 256, SGD 0.3, frozen eval-mode
    /// backbone); its transforms are [`imagenet_transforms`](Self::imagenet_transforms).
    pub fn imagenet() -> Self {
        Self {
            epochs: 100,
            batch_size: 256,
            optimizer: ProbeOptimizer::Sgd { lr: 0.3, momentum: 0.9, weight_decay: 1e-6 },
            ..Self::small()
        }
    }
    /// evaluate_transfer.py (100 epochs, batch 128, SGD 0.01 momentum 0.9, no weight decay,
    /// MultiStepLR [60, 80] × 0.1, no augmentation). The original keeps the frozen backbone's BN
    /// in train mode while training (`bn_train_mode_quirk`, off here: features are cached).
    pub fn transfer() -> Self {
        Self {
            epochs: 100,
            batch_size: 128,
            optimizer: ProbeOptimizer::SgdStep { lr: 0.01, momentum: 0.9, weight_decay: 0.0, milestones: vec![60, 80], gamma: 0.1 },
            augment: false,
            ..Self::small()
        }
    }
}

impl LinearProbeConfig {
    /// `evaluate_imagenet.py`'s (train, evaluation) transforms: RandomResizedCrop(224) + flip;
    /// Resize(256) + CenterCrop(224); ImageNet statistics.
    pub fn imagenet_transforms() -> (Transform, Transform) {
        (Transform::imagenet_probe_train(), Transform::imagenet_eval())
    }

    /// An [`Error::Field`] unless epochs and batch size are at least 1 and the learning rates
    /// positive and finite.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::field("probe.epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::field("probe.batch_size", "must be at least 1"));
        }
        let lr = match &self.optimizer {
            ProbeOptimizer::Adam { lr, lr_end, .. } => lr.min(*lr_end),
            ProbeOptimizer::Sgd { lr, .. } | ProbeOptimizer::SgdStep { lr, .. } => *lr,
        };
        if self.outputs == Some(0) {
            return Err(Error::field("probe.outputs", "must be at least 1"));
        }
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(Error::field("probe.optimizer.lr", format!("must be positive and finite, got {lr}")));
        }
        Ok(())
    }
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        Self::small()
    }
}

/// One probe epoch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ProbeEpoch {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_top1: f64,
    pub test_top1: f64,
    pub test_top5: f64,
}

/// Probe result: every epoch, the best and the last test accuracy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeResult {
    pub epochs: Vec<ProbeEpoch>,
    pub best_top1: f64,
    /// Best test top-5 over the epochs (`evaluate_imagenet.py`'s `best_acc.top5`: a max of its own).
    pub best_top5: f64,
    pub last_top1: f64,
    pub last_top5: f64,
}

fn topk_correct(logits: &Tensor, labels: &[usize]) -> Result<(usize, usize)> {
    let l: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec2()?;
    let (mut t1, mut t5) = (0, 0);
    for (row, &y) in l.iter().zip(labels) {
        let mut idx: Vec<usize> = (0..row.len()).collect();
        idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        t1 += (idx[0] == y) as usize;
        t5 += idx.iter().take(5).any(|&i| i == y) as usize;
    }
    Ok((t1, t5))
}

/// The labels of a labelled split; an error naming `what` when an image has none.
pub(crate) fn labels_of(v: Vec<Option<usize>>, what: &str) -> Result<Vec<usize>> {
    v.into_iter().map(|l| l.ok_or_else(|| Error::Config(format!("{what} is unlabelled; a probe needs labels")))).collect()
}

/// The classifier, its optimiser and its per-epoch learning rate.
struct Head {
    fc: candle_nn::Linear,
    opt: Box<dyn Optimizer>,
    sched: Box<dyn Fn(usize) -> f64>,
    device: Device,
}

impl Head {
    fn new(fdim: usize, outputs: usize, cfg: &LinearProbeConfig, device: &Device) -> Result<Self> {
        let store = ParamStore::new(cfg.seed, DType::F32, device);
        let vb = store.var_builder();
        let fc = match cfg.optimizer {
            ProbeOptimizer::Adam { .. } | ProbeOptimizer::SgdStep { .. } => linear(fdim, outputs, true, vb.pp("fc"))?,
            ProbeOptimizer::Sgd { .. } => {
                let w = vb.get_with_hints((outputs, fdim), "fc.weight", Init::Randn { mean: 0.0, stdev: 0.01 })?;
                let b = vb.get_with_hints(outputs, "fc.bias", Init::Const(0.0))?;
                candle_nn::Linear::new(w, Some(b))
            }
        };
        let epochs = cfg.epochs.max(1);
        let (opt, sched): (Box<dyn Optimizer>, Box<dyn Fn(usize) -> f64>) = match cfg.optimizer.clone() {
            ProbeOptimizer::Adam { lr, lr_end, weight_decay } => {
                let s = ExponentialLr::from_to(lr, lr_end, epochs);
                (Box::new(Adam::single(store.trainable(), AdamConfig { lr, weight_decay, ..Default::default() })), Box::new(move |e| s.lr(e)))
            }
            ProbeOptimizer::Sgd { lr, momentum, weight_decay } => {
                let s = CosineAnnealing { lr0: lr, t_max: epochs, eta_min: 0.0 };
                (Box::new(Sgd::single(store.trainable(), SgdConfig { lr, momentum, weight_decay })), Box::new(move |e| s.lr(e)))
            }
            ProbeOptimizer::SgdStep { lr, momentum, weight_decay, milestones, gamma } => {
                let s = MultiStepLr { lr0: lr, milestones, gamma };
                (Box::new(Sgd::single(store.trainable(), SgdConfig { lr, momentum, weight_decay })), Box::new(move |e| s.lr(e)))
            }
        };
        Ok(Self { fc, opt, sched, device: device.clone() })
    }

    fn set_epoch(&mut self, epoch: usize) -> f64 {
        let lr = (self.sched)(epoch);
        for g in 0..self.opt.num_groups() {
            self.opt.set_lr(g, lr);
        }
        lr
    }

    /// One optimiser step on a batch of features; returns (summed loss, correct top-1).
    fn step(&mut self, feats: &Tensor, labels: &[usize]) -> Result<(f64, usize)> {
        let y = Tensor::from_vec(labels.iter().map(|&l| l as u32).collect::<Vec<_>>(), labels.len(), &self.device)?;
        let logits = self.fc.forward(&feats.detach())?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let grads = loss.backward()?;
        self.opt.step(&grads)?;
        Ok((loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * labels.len() as f64, topk_correct(&logits, labels)?.0))
    }
}

/// The sample order of probe epoch `epoch` (shared by the cached and the uncached path).
fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ epoch as u64));
    order
}

/// Records the epochs and the best / last accuracies.
struct Tally {
    epochs: Vec<ProbeEpoch>,
    best: f64,
    best5: f64,
}

impl Tally {
    fn new() -> Self {
        Self { epochs: vec![], best: 0.0, best5: 0.0 }
    }
    #[allow(clippy::too_many_arguments)]
    fn record(&mut self, head: &Head, test_f: &Tensor, test_l: &[usize], epoch: usize, lr: f64, loss_sum: f64, n_seen: usize, correct: usize, on_epoch: &mut impl FnMut(&ProbeEpoch)) -> Result<()> {
        let (t1, t5) = topk_correct(&head.fc.forward(test_f)?, test_l)?;
        let n = test_l.len().max(1) as f64;
        let e = ProbeEpoch {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / n_seen.max(1) as f64,
            train_top1: 100.0 * correct as f64 / n_seen.max(1) as f64,
            test_top1: 100.0 * t1 as f64 / n,
            test_top5: 100.0 * t5 as f64 / n,
        };
        self.best = self.best.max(e.test_top1);
        self.best5 = self.best5.max(e.test_top5);
        on_epoch(&e);
        self.epochs.push(e);
        Ok(())
    }
    fn finish(self) -> ProbeResult {
        let last = self.epochs.last().copied();
        ProbeResult {
            best_top1: self.best,
            best_top5: self.best5,
            last_top1: last.map(|e| e.test_top1).unwrap_or(0.0),
            last_top5: last.map(|e| e.test_top5).unwrap_or(0.0),
            epochs: self.epochs,
        }
    }
}

fn check_labels(labels: &[usize], outputs: usize, what: &str) -> Result<()> {
    match labels.iter().find(|&&l| l >= outputs) {
        Some(l) => Err(Error::Config(format!("{what}: label {l} is out of range for a classifier with {outputs} outputs"))),
        None => Ok(()),
    }
}

/// Train a linear classifier on fixed features (`[N, F]`, any device) and report test accuracy
/// per epoch: the second half of [`linear_probe`], for features computed once (or by the
/// notebook). `cfg.outputs` defaults to the largest label + 1.
pub fn probe_features(
    train_f: &Tensor,
    train_l: &[usize],
    test_f: &Tensor,
    test_l: &[usize],
    cfg: &LinearProbeConfig,
    mut on_epoch: impl FnMut(&ProbeEpoch),
) -> Result<ProbeResult> {
    cfg.validate()?;
    let (n, fdim) = train_f.dims2()?;
    if n != train_l.len() || test_f.dims2()?.0 != test_l.len() {
        return Err(Error::Config(format!("features and labels disagree: {n} train rows, {} labels; {} test rows, {} labels", train_l.len(), test_f.dims2()?.0, test_l.len())));
    }
    if n == 0 {
        return Err(Error::Config("a probe needs at least one training sample".into()));
    }
    let outputs = cfg.outputs.unwrap_or_else(|| train_l.iter().chain(test_l).max().map_or(1, |m| m + 1));
    check_labels(train_l, outputs, "train split")?;
    check_labels(test_l, outputs, "test split")?;
    let device = train_f.device().clone();
    let mut head = Head::new(fdim, outputs, cfg, &device)?;
    let test_f = test_f.to_device(&device)?;
    let mut tally = Tally::new();
    for epoch in 0..cfg.epochs {
        let lr = head.set_epoch(epoch);
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        for chunk in epoch_order(n, cfg.seed, epoch).chunks(cfg.batch_size) {
            let idx = Tensor::from_vec(chunk.iter().map(|&i| i as u32).collect::<Vec<_>>(), chunk.len(), &device)?;
            let lab: Vec<usize> = chunk.iter().map(|&i| train_l[i]).collect();
            let (l, c) = head.step(&train_f.index_select(&idx, 0)?, &lab)?;
            loss_sum += l;
            correct += c;
        }
        tally.record(&head, &test_f, test_l, epoch, lr, loss_sum, n, correct, &mut on_epoch)?;
    }
    Ok(tally.finish())
}

/// Train a linear classifier on the frozen backbone of `enc` and report test accuracy per epoch.
/// Features are computed once unless augmentation, the BN quirk or `cache_features: false` asks
/// for a forward pass per batch and epoch.
pub fn linear_probe(
    enc: &Encoder,
    train: DynDataset,
    test: DynDataset,
    train_transform: &Transform,
    eval_transform: &Transform,
    cfg: &LinearProbeConfig,
    mut on_epoch: impl FnMut(&ProbeEpoch),
) -> Result<ProbeResult> {
    cfg.validate()?;
    let device = enc.device().clone();
    let num_classes = train.classes().len().max(test.classes().len());
    if num_classes == 0 {
        return Err(Error::Config("linear probe needs labelled data".into()));
    }
    let outputs = cfg.outputs.unwrap_or(num_classes);
    let cfg = LinearProbeConfig { outputs: Some(outputs), ..cfg.clone() };
    // Test features (eval transform, eval mode), computed once.
    let (test_f, test_l) = super::features::extract(enc, test.clone(), eval_transform, 256, cfg.workers, false)?;
    let test_l = labels_of(test_l, &test.describe())?;
    if !cfg.augment && !cfg.bn_train_mode_quirk && cfg.cache_features {
        let (f, l) = super::features::extract(enc, train.clone(), eval_transform, 256, cfg.workers, false)?;
        return probe_features(&f, &labels_of(l, &train.describe())?, &test_f, &test_l, &cfg, on_epoch);
    }
    check_labels(&test_l, outputs, &test.describe())?;
    let mut head = Head::new(enc.config().feature_dim(), outputs, &cfg, &device)?;
    let transform = if cfg.augment { train_transform } else { eval_transform };
    let lc = LoaderConfig { batch_size: cfg.batch_size, shuffle: false, drop_last: false, seed: cfg.seed, workers: cfg.workers, prefetch: 2 };
    let mut tally = Tally::new();
    for epoch in 0..cfg.epochs {
        let lr = head.set_epoch(epoch);
        let (mut loss_sum, mut n_seen, mut correct) = (0.0, 0usize, 0usize);
        // The epoch's order as a subset read in sequence: the cached path's batches exactly.
        let ordered: DynDataset = std::sync::Arc::new(Subset::new(train.clone(), epoch_order(train.len(), cfg.seed, epoch)));
        let loader = Loader::single(ordered, transform.clone(), lc.clone(), &device)?;
        for b in loader.epoch(epoch as u64, 0) {
            let b = b?;
            let lab = labels_of(b.labels, &train.describe())?;
            check_labels(&lab, outputs, &train.describe())?;
            let feats = enc.backbone.forward_t(&b.images, cfg.bn_train_mode_quirk)?;
            let (l, c) = head.step(&feats, &lab)?;
            loss_sum += l;
            correct += c;
            n_seen += lab.len();
        }
        tally.record(&head, &test_f, &test_l, epoch, lr, loss_sum, n_seen, correct, &mut on_epoch)?;
    }
    Ok(tally.finish())
}
