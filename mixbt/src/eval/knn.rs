//! Weighted k-NN on L2-normalised backbone features, exactly as `main.py`'s `test()`:
//! cosine similarity to the whole bank, the k most similar, weights `exp(sim / T)`, class score =
//! sum of weights per label, top-1/top-5 from the ranked scores. And `ssl-sota`'s `eval_knn`
//! ([`knn_majority`]): Euclidean distance on the raw features, k = 5, majority vote.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::features::{labelled_features, labelled_features_as, Features};
use crate::data::{self, DataConfig};
use crate::model::{l2_normalize, Encoder};
use crate::{Error, Result};

/// k-NN settings (the original's argparse defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnnConfig {
    pub k: usize,
    pub temperature: f64,
    /// Test rows per similarity block.
    pub batch_size: usize,
    /// k of `ssl-sota`'s majority-vote k-NN ([`knn_majority`]).
    #[serde(default = "five")]
    pub majority_k: usize,
}

fn five() -> usize {
    5
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self { k: 200, temperature: 0.5, batch_size: 256, majority_k: 5 }
    }
}

impl KnnConfig {
    /// An [`Error::Field`] unless `k` ≥ 1, the temperature is positive and finite, and the
    /// block size ≥ 1.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::field("knn.k", "must be at least 1"));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::field("knn.temperature", format!("must be positive and finite, got {}", self.temperature)));
        }
        if self.batch_size == 0 {
            return Err(Error::field("knn.batch_size", "must be at least 1"));
        }
        if self.majority_k == 0 {
            return Err(Error::field("knn.majority_k", "must be at least 1"));
        }
        Ok(())
    }
}

/// k-NN accuracy (percent).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnnResult {
    pub top1: f64,
    pub top5: f64,
    pub n_test: usize,
}

/// Ranked class predictions for each test row (most likely first).
pub fn knn_predict(bank: &Features, test: &Tensor, cfg: &KnnConfig) -> Result<Vec<Vec<usize>>> {
    cfg.validate()?;
    let c = bank.num_classes;
    if c == 0 {
        return Err(Error::Config("k-NN needs a labelled bank".into()));
    }
    let n = bank.features.dim(0)?;
    let k = cfg.k.min(n);
    let bank_t = bank.features.t()?.contiguous()?;
    let m = test.dim(0)?;
    let mut out = Vec::with_capacity(m);
    let mut start = 0;
    while start < m {
        let len = cfg.batch_size.min(m - start);
        let sim = test.narrow(0, start, len)?.matmul(&bank_t)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let sim: Vec<f32> = sim.flatten_all()?.to_vec1()?;
        for r in 0..len {
            let row = &sim[r * n..(r + 1) * n];
            let mut idx: Vec<u32> = (0..n as u32).collect();
            if k < n {
                idx.select_nth_unstable_by(k - 1, |&a, &b| row[b as usize].total_cmp(&row[a as usize]));
                idx.truncate(k);
            }
            let mut scores = vec![0f64; c];
            for &j in &idx {
                // exp(sim / T) in f32 as the original, summed per class.
                let w = (row[j as usize] / cfg.temperature as f32).exp();
                scores[bank.labels[j as usize]] += w as f64;
            }
            let mut rank: Vec<usize> = (0..c).collect();
            rank.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            out.push(rank);
        }
        start += len;
    }
    Ok(out)
}

/// Top-1/top-5 accuracy of the weighted k-NN of `test` against `bank`.
pub fn knn_accuracy(bank: &Features, test: &Features, cfg: &KnnConfig) -> Result<KnnResult> {
    let preds = knn_predict(bank, &test.features, cfg)?;
    let n = preds.len();
    let (mut t1, mut t5) = (0usize, 0usize);
    for (p, &y) in preds.iter().zip(&test.labels) {
        t1 += (p[0] == y) as usize;
        t5 += p.iter().take(5).any(|&q| q == y) as usize;
    }
    Ok(KnnResult { top1: 100.0 * t1 as f64 / n.max(1) as f64, top5: 100.0 * t5 as f64 / n.max(1) as f64, n_test: n })
}

/// `ssl-sota`'s `eval_knn(x_train, y_train, x_test, y_test, k)`: Euclidean distances
/// (`torch.cdist`) from each test row to the bank's raw features, the `k` nearest, and the most
/// frequent label among them (ties: the smallest label, as `unique(return_counts=True)` then
/// `argmax`). Top-1 is that vote; top-5 counts a test row when its label is among the
/// neighbours' labels ranked by votes (the first five; with k = 5 any neighbour's label).
pub fn knn_majority(bank: &Features, test: &Features, k: usize, block: usize) -> Result<KnnResult> {
    let c = bank.num_classes;
    if c == 0 || k == 0 {
        return Err(Error::Config("k-NN needs a labelled bank and k ≥ 1".into()));
    }
    let n = bank.features.dim(0)?;
    let k = k.min(n);
    let bank_f = bank.features.to_dtype(DType::F32)?;
    let bank_t = bank_f.t()?.contiguous()?;
    let bank_sq: Vec<f32> = bank_f.sqr()?.sum(1)?.to_device(&Device::Cpu)?.to_vec1()?;
    let test_f = test.features.to_dtype(DType::F32)?;
    let m = test_f.dim(0)?;
    let (mut t1, mut t5) = (0usize, 0usize);
    let mut start = 0;
    while start < m {
        let len = block.max(1).min(m - start);
        let q = test_f.narrow(0, start, len)?;
        let q_sq: Vec<f32> = q.sqr()?.sum(1)?.to_device(&Device::Cpu)?.to_vec1()?;
        let dot: Vec<f32> = q.matmul(&bank_t)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?;
        for r in 0..len {
            // ‖q − b‖² = ‖q‖² + ‖b‖² − 2·q·b (what cdist's matmul path computes), clamped at 0.
            let d: Vec<f32> = (0..n).map(|j| (q_sq[r] + bank_sq[j] - 2.0 * dot[r * n + j]).max(0.0)).collect();
            let mut idx: Vec<u32> = (0..n as u32).collect();
            if k < n {
                idx.select_nth_unstable_by(k - 1, |&a, &b| d[a as usize].total_cmp(&d[b as usize]));
                idx.truncate(k);
            }
            let mut votes = vec![0usize; c];
            for &j in &idx {
                votes[bank.labels[j as usize]] += 1;
            }
            let mut rank: Vec<usize> = (0..c).filter(|&l| votes[l] > 0).collect();
            rank.sort_by(|&a, &b| votes[b].cmp(&votes[a]).then(a.cmp(&b)));
            let y = test.labels[start + r];
            t1 += (rank[0] == y) as usize;
            t5 += rank.iter().take(5).any(|&l| l == y) as usize;
        }
        start += len;
    }
    Ok(KnnResult { top1: 100.0 * t1 as f64 / m.max(1) as f64, top5: 100.0 * t5 as f64 / m.max(1) as f64, n_test: m })
}

/// Images per embedding batch: `cfg.batch_size` (at least 64) for images of CIFAR's 32×32, and
/// as many pixels for larger ones (224×224 ImageNet crops: 5 at a time instead of 256, whose
/// activations would take gigabytes). Evaluation-mode features do not depend on the batch.
/// `image` is the `(height, width)` of the data's images before the transform.
pub fn embed_batch(cfg: &KnnConfig, eval: &crate::data::Transform, image: (usize, usize)) -> usize {
    let bs = cfg.batch_size.max(64);
    let (h, w) = eval.output_size(image.0, image.1);
    (bs * 32 * 32 / (h * w).max(1)).clamp(1, bs)
}

/// [`embed_batch`] for a data set, sized by its first image.
fn embed_batch_for(cfg: &KnnConfig, eval: &crate::data::Transform, ds: &crate::data::DynDataset) -> Result<usize> {
    let size = if ds.is_empty() { (32, 32) } else { ds.image(0).map(|im| (im.height() as usize, im.width() as usize))? };
    Ok(embed_batch(cfg, eval, size))
}

/// [`knn_eval`] and `ssl-sota`'s majority-vote k-NN (k = `cfg.majority_k`, Euclidean on the raw
/// pooled features) from one embedding pass: the weighted k-NN uses the same features
/// L2-normalised, so its result is [`knn_eval`]'s to the last digit.
pub fn knn_eval_all(enc: &Encoder, data: &DataConfig, cfg: &KnnConfig, workers: usize) -> Result<(KnnResult, KnnResult)> {
    cfg.validate()?;
    let bank_ds = data::open_bank(data)?;
    let bs = embed_batch_for(cfg, &data.eval, &bank_ds)?;
    let bank = labelled_features_as(enc, bank_ds, &data.eval, bs, workers, false)?;
    let test = labelled_features_as(enc, data::open(data, data::Split::Test)?, &data.eval, bs, workers, false)?;
    let norm = |f: &Features| -> Result<Features> { Ok(Features { features: l2_normalize(&f.features)?, ..f.clone() }) };
    let weighted = knn_accuracy(&norm(&bank)?, &norm(&test)?, cfg)?;
    let majority = knn_majority(&bank, &test, cfg.majority_k, cfg.batch_size)?;
    Ok((weighted, majority))
}

/// The k-NN evaluation of a backbone on the data of `data` (as `main.py`'s `test()`): the bank is
/// the labelled train split (`bank_subset`), the queries the test split (`test_subset`), both
/// embedded under the evaluation transform in batches of [`embed_batch`].
/// `workers`: decoding threads (0: all cores).
pub fn knn_eval(enc: &Encoder, data: &DataConfig, cfg: &KnnConfig, workers: usize) -> Result<KnnResult> {
    cfg.validate()?;
    let bank_ds = data::open_bank(data)?;
    let bs = embed_batch_for(cfg, &data.eval, &bank_ds)?;
    let bank = labelled_features(enc, bank_ds, &data.eval, bs, workers)?;
    let test = labelled_features(enc, data::open(data, data::Split::Test)?, &data.eval, bs, workers)?;
    knn_accuracy(&bank, &test, cfg)
}
