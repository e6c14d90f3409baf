//! Weighted k-NN on L2-normalised backbone features, exactly as `main.py`'s `test()`:
//! cosine similarity to the whole bank, the k most similar, weights `exp(sim / T)`, class score =
//! sum of weights per label, top-1/top-5 from the ranked scores.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::features::{labelled_features, Features};
use crate::data::{self, DataConfig};
use crate::model::Encoder;
use crate::{Error, Result};

/// k-NN settings (the original's argparse defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnnConfig {
    pub k: usize,
    pub temperature: f64,
    /// Test rows per similarity block.
    pub batch_size: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self { k: 200, temperature: 0.5, batch_size: 256 }
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

/// The k-NN evaluation of a backbone on the data of `data` (as `main.py`'s `test()`): the bank is
/// the labelled train split (`bank_subset`), the queries the test split (`test_subset`), both
/// embedded under the evaluation transform in batches of `cfg.batch_size` (at least 64).
/// `workers`: decoding threads (0: all cores).
pub fn knn_eval(enc: &Encoder, data: &DataConfig, cfg: &KnnConfig, workers: usize) -> Result<KnnResult> {
    cfg.validate()?;
    let bs = cfg.batch_size.max(64);
    let bank = labelled_features(enc, data::open_bank(data)?, &data.eval, bs, workers)?;
    let test = labelled_features(enc, data::open(data, data::Split::Test)?, &data.eval, bs, workers)?;
    knn_accuracy(&bank, &test, cfg)
}
