//! Benchmarks (run by `mixbt bench …`; never timed tests): the Mixed Barlow Twins training step,
//! embedding throughput and the data pipeline, each next to the same work in PyTorch /
//! torchvision measured in the same run when `python3` can import them.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::train::{presets, PretrainOptions, Pretrainer};
use crate::{Error, Result};

/// One timed case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    pub case: String,
    pub batch: usize,
    pub median_s: f64,
    /// batch / median seconds (pairs per second for training).
    pub images_per_s: f64,
    pub times: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn timing(case: &str, batch: usize, times: Vec<f64>) -> Timing {
    let m = median(&times);
    Timing { case: case.into(), batch, median_s: m, images_per_s: batch as f64 / m, times }
}

/// The training step of ResNet-18 (CIFAR stem, width `width`, projector 512-512-1024) at
/// `batch`: three forward passes (views A, B and the mixed batch), the Mixed BT loss, backward,
/// Adam with L2 decay. Random 32×32 inputs.
pub fn train_step(batch: usize, width: f64, steps: usize, warmup: usize, device: &Device) -> Result<Timing> {
    let mut r = presets::get("r18-cifar10")?;
    r.encoder.backbone.width = width;
    r.encoder.projector.sizes[0] = r.encoder.backbone.feature_dim();
    r.data.kind = crate::data::DatasetKind::Builtin;
    r.data.builtin = Some(crate::data::BuiltinConfig { train_size: batch, test_size: 10, ..Default::default() });
    r.batch_size = batch;
    let opts = PretrainOptions { device: device.clone(), ..Default::default() };
    let mut t = Pretrainer::new(r, opts)?;
    let a = Tensor::randn(0f32, 1.0, (batch, 3, 32, 32), device)?;
    let b = Tensor::randn(0f32, 1.0, (batch, 3, 32, 32), device)?;
    for _ in 0..warmup {
        t.step_on(&a, &b)?;
    }
    let mut times = vec![];
    for _ in 0..steps {
        let t0 = Instant::now();
        t.step_on(&a, &b)?;
        device.synchronize()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(timing("train", batch, times))
}

/// Forward-only embedding throughput (eval mode, L2-normalised pooled features).
pub fn embed(batch: usize, width: f64, steps: usize, warmup: usize, device: &Device) -> Result<Timing> {
    let mut cfg = crate::model::EncoderConfig::small(crate::model::Arch::R18, crate::model::Stem::Cifar, 1024, width);
    cfg.projector.sizes[0] = cfg.backbone.feature_dim();
    let store = crate::params::ParamStore::new(0, DType::F32, device);
    let enc = crate::model::encoder(&cfg, store.var_builder())?;
    let x = Tensor::randn(0f32, 1.0, (batch, 3, 32, 32), device)?;
    for _ in 0..warmup {
        enc.embed(&x)?;
    }
    let mut times = vec![];
    for _ in 0..steps {
        let t0 = Instant::now();
        let f = enc.embed(&x)?;
        f.to_device(&Device::Cpu)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(timing("embed", batch, times))
}

/// The Python interpreter to use for the side-by-side runs: `$MIXBT_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("MIXBT_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether `python` can import `modules`.
pub fn python_has(python: &str, modules: &str) -> bool {
    Command::new(python).args(["-c", &format!("import {modules}")]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Run a Python benchmark script and parse its JSON lines.
pub fn run_python(script: &Path, args: &[String]) -> Result<Vec<serde_json::Value>> {
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| Error::io(script, e))?;
    if !out.status.success() {
        return Err(Error::msg(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// The repository's `bench/` folder (scripts for the side-by-side runs).
pub fn bench_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("bench")
}

/// Throughput of the CIFAR pre-training pipeline on an image folder: decode + two augmented
/// views + ToTensor/Normalize + batching through the loader, `images` images, `workers` threads.
/// Returns augmented pairs per second (median of `runs`).
pub fn data_pipeline(dir: &Path, images: usize, workers: usize, batch: usize, runs: usize) -> Result<Timing> {
    use std::sync::Arc;
    let folder = crate::data::ImageFolder::open(dir, Default::default())?;
    let ds: crate::data::DynDataset = Arc::new(crate::data::Subset::even(Arc::new(folder), images));
    let n = ds.len();
    let cfg = crate::data::LoaderConfig { batch_size: batch, shuffle: true, drop_last: false, seed: 0, workers, prefetch: 2 };
    let loader = crate::data::Loader::pairs(ds, crate::data::Transform::cifar_train(), cfg, &Device::Cpu)?;
    let mut times = vec![];
    for r in 0..runs.max(1) {
        let t0 = Instant::now();
        let mut seen = 0;
        for b in loader.pair_epoch(r as u64, 0) {
            seen += b?.view_a.dim(0)?;
        }
        times.push(t0.elapsed().as_secs_f64() * n as f64 / seen.max(1) as f64);
    }
    Ok(timing("data", n, times))
}
