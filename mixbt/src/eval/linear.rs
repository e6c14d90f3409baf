//! Linear probes on a frozen backbone: `linear.py` (Adam 1e-2 → 1e-6 exponential, wd 5e-6) and
//! the ImageNet probe of `evaluate_imagenet.py` (SGD 0.3, momentum 0.9, cosine, eval-mode backbone).

use candle_core::{DType, Device, Module, ModuleT, Tensor};
use candle_nn::Init;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{DynDataset, Loader, LoaderConfig, Transform};
use crate::model::layers::linear;
use crate::model::Encoder;
use crate::optim::{Adam, AdamConfig, CosineAnnealing, ExponentialLr, Optimizer, Sgd, SgdConfig};
use crate::params::ParamStore;
use crate::{Error, Result};

/// Which probe recipe.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProbeOptimizer {
    /// linear.py: Adam(lr) with L2 `weight_decay`, ExponentialLR from `lr` to `lr_end` over the epochs.
    Adam { lr: f64, lr_end: f64, weight_decay: f64 },
    /// evaluate_imagenet.py: SGD(lr, momentum 0.9, weight_decay), CosineAnnealingLR(T_max = epochs);
    /// the classifier starts at N(0, 0.01), bias 0.
    Sgd { lr: f64, momentum: f64, weight_decay: f64 },
}

/// Linear-probe settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
    pub seed: u64,
    pub workers: usize,
}

impl LinearProbeConfig {
    /// linear.py defaults (200 epochs, batch 512, Adam 1e-2 → 1e-6, wd 5e-6, with augmentation).
    pub fn small() -> Self {
        Self {
            epochs: 200,
            batch_size: 512,
            optimizer: ProbeOptimizer::Adam { lr: 1e-2, lr_end: 1e-6, weight_decay: 5e-6 },
            augment: true,
            bn_train_mode_quirk: false,
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
        let lr = match self.optimizer {
            ProbeOptimizer::Adam { lr, lr_end, .. } => lr.min(lr_end),
            ProbeOptimizer::Sgd { lr, .. } => lr,
        };
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

fn labels_of(v: Vec<Option<usize>>, what: &str) -> Result<Vec<usize>> {
    v.into_iter().map(|l| l.ok_or_else(|| Error::Config(format!("{what} is unlabelled; a probe needs labels")))).collect()
}

/// Train a linear classifier on the frozen backbone of `enc` and report test accuracy per epoch.
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
    let fdim = enc.config().feature_dim();
    let store = ParamStore::new(cfg.seed, DType::F32, &device);
    let vb = store.var_builder();
    let fc = match cfg.optimizer {
        ProbeOptimizer::Adam { .. } => linear(fdim, num_classes, true, vb.pp("fc"))?,
        ProbeOptimizer::Sgd { .. } => {
            let w = vb.get_with_hints((num_classes, fdim), "fc.weight", Init::Randn { mean: 0.0, stdev: 0.01 })?;
            let b = vb.get_with_hints(num_classes, "fc.bias", Init::Const(0.0))?;
            candle_nn::Linear::new(w, Some(b))
        }
    };
    let (mut opt, sched): (Box<dyn Optimizer>, Box<dyn Fn(usize) -> f64>) = match cfg.optimizer {
        ProbeOptimizer::Adam { lr, lr_end, weight_decay } => {
            let s = ExponentialLr::from_to(lr, lr_end, cfg.epochs.max(1));
            (Box::new(Adam::single(store.trainable(), AdamConfig { lr, weight_decay, ..Default::default() })), Box::new(move |e| s.lr(e)))
        }
        ProbeOptimizer::Sgd { lr, momentum, weight_decay } => {
            let s = CosineAnnealing { lr0: lr, t_max: cfg.epochs.max(1), eta_min: 0.0 };
            (Box::new(Sgd::single(store.trainable(), SgdConfig { lr, momentum, weight_decay })), Box::new(move |e| s.lr(e)))
        }
    };
    // Test features (eval transform, eval mode), computed once.
    let (test_f, test_l) = super::features::extract(enc, test.clone(), eval_transform, 256, cfg.workers, false)?;
    let test_l = labels_of(test_l, &test.describe())?;
    // Fixed train features when neither augmentation nor the BN quirk asks for a forward per epoch.
    let fixed = if !cfg.augment && !cfg.bn_train_mode_quirk {
        let (f, l) = super::features::extract(enc, train.clone(), eval_transform, 256, cfg.workers, false)?;
        Some((f, labels_of(l, &train.describe())?))
    } else {
        None
    };
    let loader = if fixed.is_none() {
        let lc = LoaderConfig { batch_size: cfg.batch_size, shuffle: true, drop_last: false, seed: cfg.seed, workers: cfg.workers, prefetch: 2 };
        Some(Loader::single(train.clone(), train_transform.clone(), lc, &device)?)
    } else {
        None
    };
    let mut epochs = vec![];
    let (mut best, mut best5): (f64, f64) = (0.0, 0.0);
    for epoch in 0..cfg.epochs {
        let lr = sched(epoch);
        for g in 0..opt.num_groups() {
            opt.set_lr(g, lr);
        }
        let (mut loss_sum, mut n_seen, mut correct) = (0.0, 0usize, 0usize);
        let mut train_step = |feats: &Tensor, labels: &[usize]| -> Result<()> {
            let y = Tensor::from_vec(labels.iter().map(|&l| l as u32).collect::<Vec<_>>(), labels.len(), &device)?;
            let logits = fc.forward(&feats.detach())?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let grads = loss.backward()?;
            opt.step(&grads)?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * labels.len() as f64;
            n_seen += labels.len();
            correct += topk_correct(&logits, labels)?.0;
            Ok(())
        };
        if let Some((f, l)) = &fixed {
            let mut order: Vec<usize> = (0..l.len()).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed ^ epoch as u64));
            for chunk in order.chunks(cfg.batch_size) {
                let idx = Tensor::from_vec(chunk.iter().map(|&i| i as u32).collect::<Vec<_>>(), chunk.len(), f.device())?;
                let lab: Vec<usize> = chunk.iter().map(|&i| l[i]).collect();
                train_step(&f.index_select(&idx, 0)?, &lab)?;
            }
        } else if let Some(loader) = &loader {
            for b in loader.epoch(epoch as u64, 0) {
                let b = b?;
                let lab = labels_of(b.labels, &train.describe())?;
                let feats = enc.backbone.forward_t(&b.images, cfg.bn_train_mode_quirk)?;
                train_step(&feats, &lab)?;
            }
        }
        let logits = fc.forward(&test_f)?;
        let (t1, t5) = topk_correct(&logits, &test_l)?;
        let n = test_l.len().max(1) as f64;
        let e = ProbeEpoch {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / n_seen.max(1) as f64,
            train_top1: 100.0 * correct as f64 / n_seen.max(1) as f64,
            test_top1: 100.0 * t1 as f64 / n,
            test_top5: 100.0 * t5 as f64 / n,
        };
        best = best.max(e.test_top1);
        best5 = best5.max(e.test_top5);
        on_epoch(&e);
        epochs.push(e);
    }
    let last = epochs.last().copied();
    Ok(ProbeResult {
        best_top1: best,
        best_top5: best5,
        last_top1: last.map(|e| e.test_top1).unwrap_or(0.0),
        last_top5: last.map(|e| e.test_top5).unwrap_or(0.0),
        epochs,
    })
}
