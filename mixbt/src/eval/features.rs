//! Feature extraction: L2-normalised pooled backbone features of a whole split, in eval mode.

use candle_core::{DType, Tensor};

use crate::data::{Loader, LoaderConfig, Transform, DynDataset};
use crate::model::Encoder;
use crate::{Error, Result};

/// Features of a split, with labels.
#[derive(Debug, Clone)]
pub struct Features {
    /// `[N, F]`, rows L2-normalised.
    pub features: Tensor,
    pub labels: Vec<usize>,
    pub num_classes: usize,
}

/// Embed every image of `ds` (data-set order) under `transform` with the backbone in eval mode.
/// Returns L2-normalised features, or raw pooled features when `normalize` is false.
pub fn extract(enc: &Encoder, ds: DynDataset, transform: &Transform, batch_size: usize, workers: usize, normalize: bool) -> Result<(Tensor, Vec<Option<usize>>)> {
    let device = enc_device(enc)?;
    let cfg = LoaderConfig { batch_size, shuffle: false, drop_last: false, seed: 0, workers, prefetch: 2 };
    let loader = Loader::single(ds, transform.clone(), cfg, &device)?;
    let mut feats = vec![];
    let mut labels = vec![];
    let what = loader.dataset().describe();
    for b in loader.epoch(0, 0) {
        let b = b?;
        let f = if normalize { enc.embed(&b.images)? } else { enc.backbone_features(&b.images)? };
        // One scalar per batch: the sum of |f| is finite exactly when every feature is.
        let total = f.abs()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !total.is_finite() {
            return Err(Error::NonFinite(format!(
                "the features of {what} (images {}..{}) contain NaN or infinite values: the model's weights or the images are broken",
                labels.len(),
                labels.len() + b.labels.len()
            )));
        }
        feats.push(f.detach());
        labels.extend(b.labels);
    }
    Ok((Tensor::cat(&feats, 0)?, labels))
}

/// [`extract`] for a labelled split, as a k-NN bank / test set (L2-normalised features).
pub fn labelled_features(enc: &Encoder, ds: DynDataset, transform: &Transform, batch_size: usize, workers: usize) -> Result<Features> {
    labelled_features_as(enc, ds, transform, batch_size, workers, true)
}

/// [`labelled_features`], L2-normalised or raw (`normalize`, as [`extract`]).
pub fn labelled_features_as(enc: &Encoder, ds: DynDataset, transform: &Transform, batch_size: usize, workers: usize, normalize: bool) -> Result<Features> {
    let num_classes = ds.classes().len();
    let what = ds.describe();
    let (features, labels) = extract(enc, ds, transform, batch_size, workers, normalize)?;
    let labels = labels
        .into_iter()
        .map(|l| l.ok_or_else(|| Error::Config(format!("{what} is unlabelled; k-NN and probes need labels"))))
        .collect::<Result<Vec<_>>>()?;
    Ok(Features { features: features.to_dtype(DType::F32)?, labels, num_classes })
}

fn enc_device(enc: &Encoder) -> Result<candle_core::Device> {
    Ok(enc.device().clone())
}

/// Embed every image under `dir` (recursively, sorted by relative path) and write the
/// L2-normalised pooled features `[N, F]` to `out`: `.safetensors` (tensor `features`, the file
/// names in the metadata `files`) or `.parquet` (columns `file`, `features`). Returns N.
pub fn embed_folder(enc: &Encoder, dir: &std::path::Path, transform: &Transform, batch_size: usize, out: &std::path::Path) -> Result<usize> {
    let folder = crate::data::ImageFolder::open(dir, Default::default())?;
    let mut files: Vec<(String, usize)> = folder
        .files()
        .iter()
        .enumerate()
        .map(|(i, p)| (p.strip_prefix(dir).unwrap_or(p).to_string_lossy().into_owned(), i))
        .collect();
    files.sort();
    let order: Vec<usize> = files.iter().map(|(_, i)| *i).collect();
    let ds: DynDataset = std::sync::Arc::new(crate::data::Subset::new(std::sync::Arc::new(folder), order));
    let (feats, _) = extract(enc, ds, transform, batch_size, 0, true)?;
    let feats = feats.to_dtype(DType::F32)?.to_device(&candle_core::Device::Cpu)?;
    let names: Vec<String> = files.into_iter().map(|(n, _)| n).collect();
    let n = names.len();
    match out.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            let mut m = std::collections::BTreeMap::new();
            m.insert("features".to_string(), feats);
            let mut meta = std::collections::BTreeMap::new();
            meta.insert("files".to_string(), serde_json::to_string(&names)?);
            crate::io::write_safetensors(out, &m, Some(meta))?;
        }
        Some("parquet") => {
            use polars::prelude::*;
            let rows: Vec<Vec<f32>> = feats.to_vec2()?;
            let list: Vec<Series> = rows.into_iter().map(|r| Series::new("".into(), r)).collect();
            let mut df = DataFrame::new(
                n,
                vec![Series::new("file".into(), names).into_column(), Series::new("features".into(), list).into_column()],
            )
            .map_err(|e| Error::format(out, e.to_string()))?;
            crate::io::write_parquet(out, &mut df)?;
        }
        _ => return Err(Error::Config(format!("{}: the output must end in .safetensors or .parquet", out.display()))),
    }
    Ok(n)
}
