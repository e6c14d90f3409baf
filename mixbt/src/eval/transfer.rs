//! Linear transfer to other data sets, as `evaluate_transfer.py` (reference §6.3): each target
//! resized to a square of 32 (CIFAR-trained models) or 64 pixels (the others), bilinear and
//! aspect-distorting, normalised with the target's statistics; the backbone frozen, a new linear
//! layer trained with SGD 0.01 (momentum 0.9, MultiStepLR [60, 80] × 0.1) for 100 epochs at
//! batch 128; the best and the last test top-1 reported.
//!
//! Step by step (what [`transfer`] does per target, and what a notebook can call):
//! [`TransferTarget::open`] → [`transfer_features`] (the backbone runs once per image) →
//! [`transfer_probe`] (seconds). The original keeps the backbone's BN in train mode while the
//! classifier trains, so its features drift with every batch; that is
//! `probe.bn_train_mode_quirk`, which takes the slow path (a forward pass per batch and epoch).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::features::extract;
use super::linear::{labels_of, linear_probe, probe_features, LinearProbeConfig, ProbeEpoch, ProbeResult};
use crate::data::transfer::TargetSpec;
use crate::data::{stats, DynDataset, Split, Transform};
use crate::model::{Encoder, Stem};
use crate::{Error, Result};

/// Transfer settings: the probe (default [`LinearProbeConfig::transfer`]) and the image size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferConfig {
    pub probe: LinearProbeConfig,
    /// Square side the images are resized to (default: [`default_resize`] of the model).
    pub resize: Option<usize>,
    /// Images per forward pass while embedding.
    pub embed_batch: usize,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self { probe: LinearProbeConfig::transfer(), resize: None, embed_batch: 256 }
    }
}

/// 32 for a model with the CIFAR stem (pre-trained on CIFAR-10/100), 64 otherwise, as
/// `evaluate_transfer.py` picks it from the pre-training data set.
pub fn default_resize(enc: &Encoder) -> usize {
    if enc.config().backbone.stem == Stem::Cifar {
        32
    } else {
        64
    }
}

/// A target ready for the probe: both splits, the transform and the classifier's outputs.
pub struct TransferTarget {
    pub name: String,
    pub train: DynDataset,
    pub test: DynDataset,
    /// `Resize((s, s))` bilinear + `Normalize(mean, std)` of the target.
    pub transform: Transform,
    pub outputs: usize,
}

impl TransferTarget {
    /// Open `spec` (under `data_root` for the known targets) with images resized to `resize`.
    /// `Ok(None)` when its folder does not exist. Known targets use the original's statistics
    /// and output counts; any other target gets the mean/std of its training images (pixel/255
    /// over every pixel, `mixbt data stats`) and as many outputs as it has classes.
    pub fn open(spec: &TargetSpec, data_root: Option<&Path>, resize: usize) -> Result<Option<Self>> {
        let Some(train) = spec.open(data_root, Split::Train)? else { return Ok(None) };
        let test = spec.open(data_root, Split::Test)?.ok_or_else(|| Error::Config(format!("transfer target {}: the test split vanished", spec.name)))?;
        let (mean, std, outputs) = match spec.info() {
            Some(i) => (i.mean, i.std, i.outputs),
            None => {
                let s = stats::compute(train.as_ref())?;
                let f = |v: [f64; 3]| v.map(|x| x as f32);
                let classes = train.classes().len().max(test.classes().len());
                if classes == 0 {
                    return Err(Error::Config(format!("transfer target {}: {} is unlabelled", spec.name, train.describe())));
                }
                if s.std.iter().any(|&v| v <= 0.0) {
                    return Err(Error::Config(format!("transfer target {}: a colour channel of {} is constant (std 0)", spec.name, train.describe())));
                }
                (f(s.mean), f(s.std), classes)
            }
        };
        if train.is_empty() || test.is_empty() {
            return Err(Error::Config(format!("transfer target {}: {} train and {} test images; both splits need images", spec.name, train.len(), test.len())));
        }
        Ok(Some(Self { name: spec.name.clone(), train, test, transform: Transform::transfer(resize, (mean, std)), outputs }))
    }

    /// Distinct labels over both splits (aircraft: its 100 variants, not the 102 outputs).
    pub fn classes(&self) -> usize {
        let mut seen = std::collections::BTreeSet::new();
        for ds in [&self.train, &self.test] {
            seen.extend((0..ds.len()).filter_map(|i| ds.label(i)));
        }
        seen.len()
    }
}

/// Raw pooled backbone features of both splits (eval mode, not L2-normalised: the probe's
/// input in the original), with labels.
#[derive(Debug, Clone)]
pub struct TransferFeatures {
    pub train: Tensor,
    pub train_labels: Vec<usize>,
    pub test: Tensor,
    pub test_labels: Vec<usize>,
}

/// Embed every image of both splits once.
pub fn transfer_features(enc: &Encoder, target: &TransferTarget, cfg: &TransferConfig) -> Result<TransferFeatures> {
    let (train, tl) = extract(enc, target.train.clone(), &target.transform, cfg.embed_batch.max(1), cfg.probe.workers, false)?;
    let (test, vl) = extract(enc, target.test.clone(), &target.transform, cfg.embed_batch.max(1), cfg.probe.workers, false)?;
    Ok(TransferFeatures {
        train: train.to_dtype(DType::F32)?,
        train_labels: labels_of(tl, &target.train.describe())?,
        test: test.to_dtype(DType::F32)?,
        test_labels: labels_of(vl, &target.test.describe())?,
    })
}

/// Train the transfer classifier (`outputs` outputs) on cached features.
pub fn transfer_probe(f: &TransferFeatures, outputs: usize, probe: &LinearProbeConfig, on_epoch: impl FnMut(&ProbeEpoch)) -> Result<ProbeResult> {
    let cfg = LinearProbeConfig { outputs: Some(outputs), ..probe.clone() };
    probe_features(&f.train, &f.train_labels, &f.test, &f.test_labels, &cfg, on_epoch)
}

/// One row of the transfer table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferRow {
    pub target: String,
    /// Distinct classes in the data (the classifier may have more outputs: aircraft).
    pub classes: usize,
    pub train: usize,
    pub test: usize,
    pub best_top1: f64,
    pub last_top1: f64,
    /// Wall time of the target: embedding and probe.
    pub seconds: f64,
}

/// Run the protocol on one opened target: cached features when nothing makes them change,
/// else the slow path with the original's BN behaviour.
pub fn transfer_target(enc: &Encoder, target: &TransferTarget, cfg: &TransferConfig, on_epoch: impl FnMut(&ProbeEpoch)) -> Result<(TransferRow, ProbeResult)> {
    let t0 = Instant::now();
    let probe = LinearProbeConfig { outputs: Some(target.outputs), augment: false, ..cfg.probe.clone() };
    let res = if probe.bn_train_mode_quirk || !probe.cache_features {
        linear_probe(enc, target.train.clone(), target.test.clone(), &target.transform, &target.transform, &probe, on_epoch)?
    } else {
        transfer_probe(&transfer_features(enc, target, cfg)?, target.outputs, &probe, on_epoch)?
    };
    let row = TransferRow {
        target: target.name.clone(),
        classes: target.classes(),
        train: target.train.len(),
        test: target.test.len(),
        best_top1: res.best_top1,
        last_top1: res.last_top1,
        seconds: t0.elapsed().as_secs_f64(),
    };
    Ok((row, res))
}

/// What [`transfer`] reports while it runs.
#[derive(Debug, Clone)]
pub enum TransferEvent<'a> {
    /// The target's folder is absent: skipped, with the folder looked for.
    Skipped { target: &'a str, folder: PathBuf },
    /// The target is open and about to be embedded.
    Started { target: &'a str, train: usize, test: usize, epochs: usize },
    Epoch { target: &'a str, epoch: &'a ProbeEpoch },
    Finished { row: &'a TransferRow },
}

/// The result of a transfer run: one row per target that ran, and the skipped ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TransferReport {
    pub rows: Vec<TransferRow>,
    /// `(target, folder looked for)`.
    pub skipped: Vec<(String, PathBuf)>,
}

impl TransferReport {
    /// The table: `target, classes, train, test, best_top1, last_top1, seconds`.
    pub fn to_dataframe(&self) -> Result<DataFrame> {
        rows_to_dataframe(&self.rows)
    }
}

/// [`TransferRow`]s as a polars table (`target, classes, train, test, best_top1, last_top1, seconds`).
pub fn rows_to_dataframe(rows: &[TransferRow]) -> Result<DataFrame> {
    let col = |name: &str, v: Vec<f64>| Column::new(name.into(), v);
    let int = |name: &str, v: Vec<u64>| Column::new(name.into(), v);
    DataFrame::new(
        rows.len(),
        vec![
            Column::new("target".into(), rows.iter().map(|r| r.target.clone()).collect::<Vec<_>>()),
            int("classes", rows.iter().map(|r| r.classes as u64).collect()),
            int("train", rows.iter().map(|r| r.train as u64).collect()),
            int("test", rows.iter().map(|r| r.test as u64).collect()),
            col("best_top1", rows.iter().map(|r| r.best_top1).collect()),
            col("last_top1", rows.iter().map(|r| r.last_top1).collect()),
            col("seconds", rows.iter().map(|r| r.seconds).collect()),
        ],
    )
    .map_err(|e| Error::msg(format!("transfer table: {e}")))
}

/// Run the protocol on every target in turn; absent folders are skipped (reported through
/// `on_event`), any other failure is an error naming the target.
pub fn transfer(enc: &Encoder, targets: &[TargetSpec], data_root: Option<&Path>, cfg: &TransferConfig, mut on_event: impl FnMut(TransferEvent)) -> Result<TransferReport> {
    cfg.probe.validate()?;
    let resize = cfg.resize.unwrap_or_else(|| default_resize(enc));
    let mut report = TransferReport::default();
    for spec in targets {
        let ctx = |e: Error| Error::msg(format!("transfer target {}: {e}", spec.name));
        let Some(target) = TransferTarget::open(spec, data_root, resize).map_err(ctx)? else {
            let folder = spec.folder(data_root).unwrap_or_default();
            on_event(TransferEvent::Skipped { target: &spec.name, folder: folder.clone() });
            report.skipped.push((spec.name.clone(), folder));
            continue;
        };
        on_event(TransferEvent::Started { target: &spec.name, train: target.train.len(), test: target.test.len(), epochs: cfg.probe.epochs });
        let (row, _) = transfer_target(enc, &target, cfg, |e| on_event(TransferEvent::Epoch { target: &spec.name, epoch: e })).map_err(ctx)?;
        on_event(TransferEvent::Finished { row: &row });
        report.rows.push(row);
    }
    Ok(report)
}
