//! Benchmarks (run by `mixbt bench …`; never timed tests): the Mixed Barlow Twins training step,
//! embedding throughput and the data pipeline, each next to the same work in PyTorch /
//! torchvision measured in the same run when `python3` can import them.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use mixbt::ops::gemm::Kernel;
use mixbt::train::{presets, PretrainOptions, Pretrainer};
use mixbt::{Error, Result};

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

/// The median of `v` (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn timing(case: &str, batch: usize, times: Vec<f64>) -> Timing {
    let m = median(&times);
    Timing { case: case.into(), batch, median_s: m, images_per_s: batch as f64 / m, times }
}

/// A timed case needs at least one image and one timed step.
fn check_sizes(case: &str, batch: usize, steps: usize) -> Result<()> {
    if batch == 0 || steps == 0 {
        return Err(mixbt::Error::Config(format!("bench {case}: batch size and steps must be at least 1 (got batch {batch}, steps {steps})")));
    }
    Ok(())
}

/// The training step of ResNet-18 (CIFAR stem, width `width`, projector 512-512-1024) at
/// `batch`: three forward passes (views A, B and the mixed batch), the Mixed BT loss, backward,
/// Adam with L2 decay. Random 32×32 inputs. Kept alive so that it can be timed in several rounds.
pub struct TrainBench {
    trainer: Pretrainer,
    case: &'static str,
    a: Tensor,
    b: Tensor,
    batch: usize,
}

impl TrainBench {
    /// At `precision` (the recipe's: BF16 products in the convolutions and linear layers); the
    /// case is named `train` (FP32) or `train-bf16`.
    pub fn new(batch: usize, width: f64, device: &Device, precision: mixbt::ops::Precision) -> Result<Self> {
        check_sizes("train", batch, 1)?;
        let mut r = presets::get("r18-cifar10")?;
        r.precision = precision;
        r.encoder = r.encoder.with_width(width);
        r.data.kind = mixbt::data::DatasetKind::Builtin;
        r.data.builtin = Some(mixbt::data::BuiltinConfig { train_size: batch, test_size: 10, ..Default::default() });
        r.batch_size = batch;
        let opts = PretrainOptions { device: device.clone(), ..Default::default() };
        let trainer = Pretrainer::new(r, opts)?;
        let a = Tensor::randn(0f32, 1.0, (batch, 3, 32, 32), device)?;
        let b = Tensor::randn(0f32, 1.0, (batch, 3, 32, 32), device)?;
        Ok(Self { trainer, case: case_name("train", precision), a, b, batch })
    }

    /// `warmup` untimed steps, then `steps` timed ones.
    pub fn time(&mut self, steps: usize, warmup: usize) -> Result<Timing> {
        check_sizes("train", self.batch, steps)?;
        let device = self.a.device().clone();
        for _ in 0..warmup {
            self.trainer.step_on(&self.a, &self.b)?;
        }
        let mut times = vec![];
        for _ in 0..steps {
            let t0 = Instant::now();
            self.trainer.step_on(&self.a, &self.b)?;
            device.synchronize()?;
            times.push(t0.elapsed().as_secs_f64());
        }
        Ok(timing(self.case, self.batch, times))
    }
}

/// Forward-only embedding throughput (eval mode, L2-normalised pooled features), kept alive
/// across rounds.
pub struct EmbedBench {
    enc: mixbt::model::Encoder,
    precision: mixbt::ops::Precision,
    x: Tensor,
    batch: usize,
}

impl EmbedBench {
    /// At `precision`; the case is named `embed` (FP32) or `embed-bf16`.
    pub fn new(batch: usize, width: f64, device: &Device, precision: mixbt::ops::Precision) -> Result<Self> {
        check_sizes("embed", batch, 1)?;
        let cfg = mixbt::model::EncoderConfig::small(mixbt::model::Arch::R18, mixbt::model::Stem::Cifar, 1024, width);
        let store = mixbt::params::ParamStore::new(0, DType::F32, device);
        let enc = mixbt::model::encoder(&cfg, store.var_builder())?;
        let x = Tensor::randn(0f32, 1.0, (batch, 3, 32, 32), device)?;
        Ok(Self { enc, precision, x, batch })
    }

    /// `warmup` untimed batches, then `steps` timed ones.
    pub fn time(&self, steps: usize, warmup: usize) -> Result<Timing> {
        check_sizes("embed", self.batch, steps)?;
        let embed = || mixbt::ops::with_precision(self.precision, || self.enc.embed(&self.x));
        for _ in 0..warmup {
            embed()?;
        }
        let mut times = vec![];
        for _ in 0..steps {
            let t0 = Instant::now();
            let f = embed()?;
            f.to_device(&Device::Cpu)?;
            times.push(t0.elapsed().as_secs_f64());
        }
        Ok(timing(case_name("embed", self.precision), self.batch, times))
    }
}

/// `case` at `precision`: `train`, `train-bf16`, `embed`, `embed-bf16`.
pub fn case_name(case: &str, precision: mixbt::ops::Precision) -> &'static str {
    match (case, precision) {
        ("train", mixbt::ops::Precision::F32) => "train",
        ("train", mixbt::ops::Precision::Bf16) => "train-bf16",
        ("embed", mixbt::ops::Precision::F32) => "embed",
        _ => "embed-bf16",
    }
}

/// The PyTorch side of `mixbt bench train` as a long-lived subprocess
/// (`bench/torch_train_step.py --serve`): it keeps its model and optimiser between requests, so
/// that rounds of ours and theirs can alternate within seconds of each other (this machine's
/// speed drifts by more than the difference being measured).
pub struct TorchWorker {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    script: std::path::PathBuf,
}

impl TorchWorker {
    /// Starts `script --serve args…` with [`python`]; its stderr goes to ours.
    pub fn start(script: &Path, args: &[String]) -> Result<Self> {
        use std::process::Stdio;
        let mut child = Command::new(python())
            .arg(script)
            .arg("--serve")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::io(script, e))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::msg(format!("{}: no pipes to the worker", script.display())));
        };
        Ok(Self { child, stdin, stdout: std::io::BufReader::new(stdout), script: script.to_path_buf() })
    }

    /// Times `steps` steps of `case` ("train" or "embed", "train-bf16" or "embed-bf16" under
    /// `torch.autocast("cpu", torch.bfloat16)`) at `batch` after `warmup` untimed ones.
    pub fn time(&mut self, case: &str, batch: usize, steps: usize, warmup: usize) -> Result<Timing> {
        use std::io::{BufRead, Write};
        let fail = |what: String| Error::msg(format!("{}: {what}", self.script.display()));
        writeln!(self.stdin, "{case} {batch} {steps} {warmup}").and_then(|_| self.stdin.flush()).map_err(|e| fail(format!("the worker stopped ({e})")))?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| fail(format!("reading its answer: {e}")))?;
        if line.is_empty() {
            return Err(fail("the worker exited without an answer (its error is above)".into()));
        }
        let t: Timing = serde_json::from_str(line.trim()).map_err(|e| fail(format!("bad answer `{}`: {e}", line.trim())))?;
        if t.case != case || t.batch != batch || t.times.len() != steps {
            return Err(fail(format!("answer for {} {} ({} steps) to a request for {case} {batch} ({steps} steps)", t.case, t.batch, t.times.len())));
        }
        Ok(t)
    }
}

impl Drop for TorchWorker {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = writeln!(self.stdin, "quit").and_then(|_| self.stdin.flush());
        let _ = self.child.wait();
    }
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
    let folder = mixbt::data::ImageFolder::open(dir, Default::default())?;
    let ds: mixbt::data::DynDataset = Arc::new(mixbt::data::Subset::even(Arc::new(folder), images));
    let n = ds.len();
    let cfg = mixbt::data::LoaderConfig { batch_size: batch, shuffle: true, drop_last: false, seed: 0, workers, prefetch: 2 };
    let loader = mixbt::data::Loader::pairs(ds, mixbt::data::Transform::cifar_train(), cfg, &Device::Cpu)?;
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

/// One matrix-product case of [`gemm`]: `C[m×n] = A[m×k]·B[k×n]`, with A and/or B transposed in
/// memory as the convolution kernels use them.
#[derive(Debug, Clone, Serialize)]
pub struct GemmTiming {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub a_transposed: bool,
    pub b_transposed: bool,
    /// GFLOP/s of `mixbt::ops::gemm` with the kernel in use (median of the runs).
    pub ours_gflops: f64,
    /// GFLOP/s of the 6×16 AVX2 kernel, same run, when the kernel in use is the AVX-512 one.
    pub avx2_gflops: Option<f64>,
    /// GFLOP/s of the BF16 product (`gemm::gemm` at `Precision::Bf16`, on `gemm::bf16_path()`),
    /// same run, when that path is the native `vdpbf16ps` one.
    pub bf16_gflops: Option<f64>,
    /// GFLOP/s of `matrixmultiply::sgemm`, same inputs, same thread.
    pub matrixmultiply_gflops: f64,
    /// Largest absolute difference between the two results.
    pub max_abs_diff: f32,
}

/// Times `mixbt::ops::gemm::sgemm` against `matrixmultiply::sgemm` on one thread for each case
/// `(m, k, n, a_transposed, b_transposed)`, `runs` times each (median). Note: in the workspace's
/// dev profile `matrixmultiply` (a dependency) keeps debug assertions while `mixbt` does not, so
/// the ratio flatters ours; build with `--release` for a like-for-like comparison.
pub fn gemm(cases: &[(usize, usize, usize, bool, bool)], runs: usize) -> Vec<GemmTiming> {
    let mut rng = mixbt::rng::SplitMix64::new(7);
    cases
        .iter()
        .map(|&(m, k, n, at, bt)| {
            let a: Vec<f32> = (0..m * k).map(|_| rng.next_sym() as f32).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.next_sym() as f32).collect();
            let (rsa, csa) = if at { (1, m as isize) } else { (k as isize, 1) };
            let (rsb, csb) = if bt { (1, k as isize) } else { (n as isize, 1) };
            let mut c1 = vec![0f32; m * n];
            let mut c2 = vec![0f32; m * n];
            let flops = 2.0 * (m * k * n) as f64;
            let time = |f: &mut dyn FnMut()| {
                f();
                let mut t = vec![];
                for _ in 0..runs.max(1) {
                    let t0 = Instant::now();
                    f();
                    t.push(t0.elapsed().as_secs_f64());
                }
                flops / median(&t) / 1e9
            };
            // SAFETY: the buffers cover every element addressed by the strides above.
            let mut ours_run = || unsafe {
                mixbt::ops::gemm::sgemm(m, k, n, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, c1.as_mut_ptr(), n as isize, 1, false)
            };
            let ours = time(&mut ours_run);
            let avx2_gflops = (mixbt::ops::gemm::kernel() == Kernel::Avx512).then(|| {
                mixbt::ops::gemm::set_kernel(Kernel::Avx2);
                let t = time(&mut ours_run);
                mixbt::ops::gemm::set_kernel(Kernel::Avx512);
                t
            });
            let bf16_gflops = (mixbt::ops::gemm::bf16_path() == mixbt::ops::gemm::Bf16Path::Avx512Bf16).then(|| {
                let mut c3 = vec![0f32; m * n];
                // SAFETY: as above.
                time(&mut || unsafe {
                    mixbt::ops::gemm::gemm(mixbt::ops::Precision::Bf16, m, k, n, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, c3.as_mut_ptr(), n as isize, 1, false)
                })
            });
            let mm = time(&mut || unsafe {
                matrixmultiply::sgemm(m, k, n, 1.0, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, 0.0, c2.as_mut_ptr(), n as isize, 1)
            });
            let max_abs_diff = c1.iter().zip(&c2).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            GemmTiming { m, k, n, a_transposed: at, b_transposed: bt, ours_gflops: ours, avx2_gflops, bf16_gflops, matrixmultiply_gflops: mm, max_abs_diff }
        })
        .collect()
}

/// One convolution of [`conv_layers`]: milliseconds per call of each pass and GFLOP/s.
#[derive(Debug, Clone, Serialize)]
pub struct ConvTiming {
    pub name: String,
    /// How often the layer's geometry occurs in ResNet-18 (CIFAR stem).
    pub count: usize,
    pub forward_ms: f64,
    pub backward_input_ms: f64,
    pub backward_weight_ms: f64,
    /// 2·N·O·C·k²·Ho·Wo, the FLOPs of each pass.
    pub gflop: f64,
}

/// One convolution geometry of a network: `count` layers of `c → o` channels on `h × h` maps.
#[derive(Debug, Clone, Copy)]
pub struct ConvLayer {
    pub name: &'static str,
    pub count: usize,
    pub c: usize,
    pub o: usize,
    pub h: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

#[allow(clippy::too_many_arguments)]
const fn layer(name: &'static str, count: usize, c: usize, o: usize, h: usize, k: usize, stride: usize, pad: usize) -> ConvLayer {
    ConvLayer { name, count, c, o, h, k, stride, pad }
}

/// The convolutions of ResNet-18 with the CIFAR stem on 32×32 inputs.
pub const R18_CIFAR_CONVS: [ConvLayer; 11] = [
    layer("conv1", 1, 3, 64, 32, 3, 1, 1),
    layer("layer1 3x3", 4, 64, 64, 32, 3, 1, 1),
    layer("layer2.0 3x3 s2", 1, 64, 128, 32, 3, 2, 1),
    layer("layer2.0 1x1 s2", 1, 64, 128, 32, 1, 2, 0),
    layer("layer2 3x3", 3, 128, 128, 16, 3, 1, 1),
    layer("layer3.0 3x3 s2", 1, 128, 256, 16, 3, 2, 1),
    layer("layer3.0 1x1 s2", 1, 128, 256, 16, 1, 2, 0),
    layer("layer3 3x3", 3, 256, 256, 8, 3, 1, 1),
    layer("layer4.0 3x3 s2", 1, 256, 512, 8, 3, 2, 1),
    layer("layer4.0 1x1 s2", 1, 256, 512, 8, 1, 2, 0),
    layer("layer4 3x3", 3, 512, 512, 4, 3, 1, 1),
];

/// Times the three passes of each convolution of [`R18_CIFAR_CONVS`] with the CPU kernels at
/// batch `n` (96 = the three forward passes of a Mixed BT step at batch 32), `runs` calls each
/// after one warm-up, median.
pub fn conv_layers(n: usize, runs: usize) -> Result<Vec<ConvTiming>> {
    use mixbt::ops::conv::{conv2d_backward_input, conv2d_backward_weight, ConvGeom, Conv2dOp};
    let dev = Device::Cpu;
    let mut out = vec![];
    for &ConvLayer { name, count, c, o, h, k, stride, pad } in &R18_CIFAR_CONVS {
        let x = Tensor::randn(0f32, 1.0, (n, c, h, h), &dev)?;
        let w = Tensor::randn(0f32, 0.1, (o, c, k, k), &dev)?;
        let g = ConvGeom::new(x.dims(), w.dims(), stride, pad)?;
        let dy = Tensor::randn(0f32, 1.0, (n, o, g.ho, g.wo), &dev)?;
        let time = |f: &dyn Fn() -> Result<Tensor>| -> Result<f64> {
            f()?;
            let mut t = vec![];
            for _ in 0..runs.max(1) {
                let t0 = Instant::now();
                f()?;
                t.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            Ok(median(&t))
        };
        let forward_ms = time(&|| Ok(x.apply_op2_no_bwd(&w, &Conv2dOp { stride, pad, prec: mixbt::ops::precision(), key: None, winograd: mixbt::ops::winograd::enabled() })?))?;
        let backward_input_ms = time(&|| Ok(conv2d_backward_input(&dy, &w, g)?))?;
        let backward_weight_ms = time(&|| Ok(conv2d_backward_weight(&x, &dy, g)?))?;
        let gflop = 2.0 * (n * o * c * k * k * g.ho * g.wo) as f64 / 1e9;
        out.push(ConvTiming { name: name.into(), count, forward_ms, backward_input_ms, backward_weight_ms, gflop });
    }
    Ok(out)
}

/// The FMA throughput of one core in GFLOP/s for the vector width of `k` (12 independent
/// accumulators, registers only): the ceiling a GEMM kernel of that width can reach.
pub fn fma_peak(k: Kernel) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::hint::black_box;
        let (lanes, run): (usize, unsafe fn(usize) -> f32) = match k {
            Kernel::Avx2 if is_x86_feature_detected!("fma") => (8, fma_loop_256),
            Kernel::Avx512 if is_x86_feature_detected!("avx512f") => (16, fma_loop_512),
            _ => return None,
        };
        let n = 20_000_000usize;
        // SAFETY: the CPU has the features checked above.
        unsafe { black_box(run(black_box(n / 10))) };
        let t0 = Instant::now();
        unsafe { black_box(run(black_box(n))) };
        Some((n * 12 * lanes * 2) as f64 / t0.elapsed().as_secs_f64() / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = k;
        None
    }
}

macro_rules! fma_loop {
    ($name:ident, $feat:literal, $set1:ident, $fma:ident, $store:ident, $lanes:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feat)]
        unsafe fn $name(n: usize) -> f32 {
            use std::arch::x86_64::*;
            let (x, y) = ($set1(std::hint::black_box(0.999_f32)), $set1(std::hint::black_box(1e-7_f32)));
            let mut acc = [$set1(1.0); 12];
            for _ in 0..n {
                for a in acc.iter_mut() {
                    *a = $fma(*a, x, y);
                }
            }
            let mut out = [0f32; $lanes];
            let mut sum = acc[0];
            for a in &acc[1..] {
                sum = $fma(sum, x, *a);
            }
            $store(out.as_mut_ptr(), sum);
            out.iter().sum()
        }
    };
}
fma_loop!(fma_loop_256, "avx2,fma", _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps, 8);
fma_loop!(fma_loop_512, "avx512f", _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps, 16);
