//! Top-1/top-5 accuracy of a [`Classifier`] on a labelled data set (a released linear probe
//! evaluated as released: the original validation transform, backbone in eval mode).

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::data::{DynDataset, Loader, LoaderConfig, Transform};
use crate::model::Classifier;
use crate::{Error, Result};

/// Accuracy (percent) over `n` images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub top1: f64,
    pub top5: f64,
    pub n: usize,
}

/// Classify every image of `ds` under `transform` (batches of `batch_size`, `workers` decoding
/// threads) and count the top-1/top-5 hits against its labels.
pub fn classify(clf: &Classifier, ds: DynDataset, transform: &Transform, batch_size: usize, workers: usize) -> Result<Accuracy> {
    let what = ds.describe();
    if ds.classes().len() > clf.num_classes() {
        return Err(Error::Config(format!("{what} has {} classes, the classifier {}", ds.classes().len(), clf.num_classes())));
    }
    let cfg = LoaderConfig { batch_size: batch_size.max(1), shuffle: false, drop_last: false, seed: 0, workers, prefetch: 2 };
    let loader = Loader::single(ds, transform.clone(), cfg, clf.encoder.device())?;
    let (mut t1, mut t5, mut n) = (0usize, 0usize, 0usize);
    for b in loader.epoch(0, 0) {
        let b = b?;
        let logits: Vec<Vec<f32>> = clf.forward(&b.images)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec2()?;
        for (row, label) in logits.iter().zip(&b.labels) {
            let y = label.ok_or_else(|| Error::Config(format!("{what} is unlabelled; accuracy needs labels")))?;
            let mut idx: Vec<usize> = (0..row.len()).collect();
            idx.sort_by(|&a, &c| row[c].total_cmp(&row[a]).then(a.cmp(&c)));
            t1 += (idx[0] == y) as usize;
            t5 += idx.iter().take(5).any(|&i| i == y) as usize;
            n += 1;
        }
    }
    let pct = |k: usize| 100.0 * k as f64 / n.max(1) as f64;
    Ok(Accuracy { top1: pct(t1), top5: pct(t5), n })
}
