//! `mixbt bench`: benchmarks, never timed tests. Each prints a table and, where PyTorch /
//! torchvision are importable by `python3` (or `$MIXBT_PYTHON`), the same work timed in the same
//! run, with the ratio.

mod dist;
mod loss;
mod parity;
mod timing;

use std::path::PathBuf;

use clap::Subcommand;

use mixbt::{Error, Result};

use crate::parse_device;
use timing::{EmbedBench, Timing, TorchWorker, TrainBench};

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Augmented pairs per second of the CIFAR pre-training pipeline on an image folder, ours and torchvision's.
    Data {
        /// An image folder (class sub-folders), e.g. data/cifar10-jpg/train.
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 10000)]
        images: usize,
        /// Threads (ours) and DataLoader workers (torchvision); default: the cores.
        #[arg(long, default_value_t = 0)]
        workers: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long)]
        no_torch: bool,
    },
    /// Mixed BT training step (ResNet-18 CIFAR) and embedding throughput, ours and PyTorch's.
    Train(TrainArgs),
    /// The data-parallel training step at 1, 2, … MPI ranks (`mpirun`; a build with the `mpi`
    /// feature): step time, speed-up, and each rank's collectives per step (time, bytes).
    Dist(dist::DistArgs),
    /// GFLOP/s of our matrix product against `matrixmultiply` (one thread) on the shapes of
    /// ResNet-18's convolutions.
    Gemm {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Other cases, `m,k,n,At,Bt;…` (At/Bt: 1 = operand transposed in memory).
        #[arg(long)]
        cases: Option<String>,
    },
    /// One Mixed BT step (forward, loss, backward) on two devices from the same weights and batch:
    /// loss and gradients compared (`--device cuda:0` against the CPU; `cpu` against itself is exact).
    Parity {
        #[arg(long, default_value = "cuda:0")]
        device: String,
        #[arg(long, default_value = "cpu")]
        against: String,
        #[arg(long, default_value_t = 16, value_parser = crate::at_least_one)]
        batch: usize,
        #[arg(long, default_value_t = 0.25, value_parser = crate::positive)]
        width: f64,
        /// Largest relative difference accepted (loss components; each gradient against its largest value).
        #[arg(long, default_value_t = 1e-3)]
        tol: f64,
    },
    /// The Mixed Barlow Twins loss (forward + backward) at several d: its Gram form, its d×d
    /// reference form and the original PyTorch loss (`bench/torch_loss.py`, when python3 has torch).
    Loss {
        #[arg(long, default_value = "1024,4096,8192", value_delimiter = ',')]
        dims: Vec<usize>,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long)]
        no_torch: bool,
    },
    /// Time per pass (forward, input and weight gradient) of each ResNet-18 convolution with
    /// our CPU kernels, and GFLOP/s.
    Conv {
        /// Images per call (96 = the three forward passes of a step at batch 32).
        #[arg(long, default_value_t = 96)]
        batch: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

#[derive(clap::Args)]
pub struct TrainArgs {
    #[arg(long, default_value = "32,128")]
    batches: String,
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Rounds of ours and PyTorch's timings, alternating (the ratios are their median).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    #[arg(long, default_value_t = 256)]
    embed_batch: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Skip the PyTorch side.
    #[arg(long)]
    no_torch: bool,
    /// Skip the BF16 pair of rows (the training step at the first batch size and the embedding,
    /// ours with `precision: bf16` next to PyTorch under `torch.autocast("cpu", torch.bfloat16)`).
    #[arg(long)]
    no_bf16: bool,
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Gemm { runs, cases } => bench_gemm(runs, cases.as_deref()),
        BenchCmd::Conv { batch, runs } => bench_conv(batch, runs),
        BenchCmd::Loss { dims, batch, runs, no_torch } => loss::run(&dims, batch, runs, no_torch),
        BenchCmd::Data { data_dir, images, workers, runs, no_torch } => bench_data(&data_dir, images, workers, runs, no_torch),
        BenchCmd::Train(a) => bench_train(&a),
        BenchCmd::Dist(a) => dist::run(&a),
        BenchCmd::Parity { device, against, batch, width, tol } => {
            if parity::run(&parse_device(&device)?, &parse_device(&against)?, batch, width, tol)? {
                Ok(())
            } else {
                Err(Error::msg(format!("parity: {device} and {against} differ by more than {tol} (see above)")))
            }
        }
    }
}

/// One case of `bench train`: ours and PyTorch's timings, one per round.
struct BenchCase {
    case: &'static str,
    batch: usize,
    ours: Vec<Timing>,
    theirs: Vec<Timing>,
}

impl BenchCase {
    fn ours_per_s(&self) -> f64 {
        timing::median(&self.ours.iter().map(|t| t.images_per_s).collect::<Vec<_>>())
    }
    fn theirs_per_s(&self) -> Option<f64> {
        (!self.theirs.is_empty()).then(|| timing::median(&self.theirs.iter().map(|t| t.images_per_s).collect::<Vec<_>>()))
    }
    /// Ours / theirs in each round.
    fn ratios(&self) -> Vec<f64> {
        self.ours.iter().zip(&self.theirs).map(|(o, t)| o.images_per_s / t.images_per_s).collect()
    }
}

/// The PyTorch worker (on the same device as ours), when this run can have one.
fn torch_worker(a: &TrainArgs) -> Result<Option<TorchWorker>> {
    if a.no_torch || a.width != 1.0 {
        return Ok(None);
    }
    let py = timing::python();
    if !timing::python_has(&py, "torch, torchvision, numpy") {
        eprintln!("({py} cannot import torch: PyTorch side skipped; set MIXBT_PYTHON to a Python with torch)");
        return Ok(None);
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let args = ["--threads".to_string(), threads.to_string(), "--device".into(), a.device.clone()];
    Ok(Some(TorchWorker::start(&timing::bench_dir().join("torch_train_step.py"), &args)?))
}

fn bench_train(a: &TrainArgs) -> Result<()> {
    let dev = parse_device(&a.device)?;
    let batches: Vec<usize> = a.batches.split(',').map(|b| b.trim().parse().map_err(|_| Error::Config(format!("bad batch `{b}`")))).collect::<Result<_>>()?;
    if a.steps == 0 || a.rounds == 0 {
        return Err(Error::Config(format!("bench train: steps and rounds must be at least 1 (got steps {}, rounds {})", a.steps, a.rounds)));
    }
    use mixbt::ops::Precision;
    /// Our side of a case.
    enum Ours {
        Train(TrainBench),
        Embed(EmbedBench),
    }
    let mut ours: Vec<Ours> = vec![];
    for &b in &batches {
        ours.push(Ours::Train(TrainBench::new(b, a.width, &dev, Precision::F32)?));
    }
    ours.push(Ours::Embed(EmbedBench::new(a.embed_batch, a.width, &dev, Precision::F32)?));
    let bf16 = !a.no_bf16 && dev.is_cpu();
    if bf16 {
        ours.push(Ours::Train(TrainBench::new(batches[0], a.width, &dev, Precision::Bf16)?));
        ours.push(Ours::Embed(EmbedBench::new(a.embed_batch, a.width, &dev, Precision::Bf16)?));
    }
    let mut torch = torch_worker(a)?;
    let mut cases: Vec<BenchCase> = batches
        .iter()
        .map(|&b| ("train", b))
        .chain([("embed", a.embed_batch)])
        .chain(bf16.then_some([("train-bf16", batches[0]), ("embed-bf16", a.embed_batch)]).into_iter().flatten())
        .map(|(case, batch)| BenchCase { case, batch, ours: vec![], theirs: vec![] })
        .collect();
    for round in 0..a.rounds {
        // Full warm-up in the first round only (both sides keep their models between rounds);
        // which side goes first alternates from round to round.
        let w = if round == 0 { a.warmup } else { a.warmup.min(1) };
        for (i, c) in cases.iter_mut().enumerate() {
            for side in [round % 2, 1 - round % 2] {
                let t = if side == 0 {
                    match &mut ours[i] {
                        Ours::Train(t) => t.time(a.steps, w)?,
                        Ours::Embed(e) => e.time(a.steps, w)?,
                    }
                } else if let Some(worker) = torch.as_mut() {
                    worker.time(c.case, c.batch, a.steps, w)?
                } else {
                    continue;
                };
                let who = if side == 0 { "mixbt" } else { "torch" };
                eprintln!("round {}: {who} {} batch {}: {:.3} s/batch, {:.2} {}/s", round + 1, c.case, c.batch, t.median_s, t.images_per_s, unit(c.case));
                if side == 0 { c.ours.push(t) } else { c.theirs.push(t) }
            }
            if round == 0 && i + 1 == batches.len() {
                print_profile("the first round's training steps, warm-up included");
            }
        }
    }
    print_train_table(&cases, a);
    Ok(())
}

/// The first round's per-op profile, with `MIXBT_PROFILE=1`.
fn print_profile(what: &str) {
    if !mixbt::ops::profile::enabled() {
        return;
    }
    eprintln!("profile of {what} (MIXBT_PROFILE=1; cores = process CPU time / wall time):");
    for t in mixbt::ops::profile::report() {
        eprintln!("  {:<24} {:>8.3} s {:>7} calls {:>6.2} cores", t.name, t.wall, t.calls, t.cpu / t.wall.max(1e-9));
    }
}

fn print_train_table(cases: &[BenchCase], a: &TrainArgs) {
    println!("kernel={} bf16={} conv3x3={} threads={}", mixbt::ops::gemm::kernel().name(), mixbt::ops::gemm::bf16_path().name(), mixbt::ops::winograd::name(), rayon::current_num_threads());
    println!("{:<8} {:>6} {:>14} {:>14} {:>8}   ratio per round", "case", "batch", "mixbt img/s", "pytorch img/s", "ratio");
    for c in cases {
        let ratios = c.ratios();
        println!(
            "{:<8} {:>6} {:>14.2} {:>14} {:>8}   {}",
            c.case,
            c.batch,
            c.ours_per_s(),
            c.theirs_per_s().map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            if ratios.is_empty() { "-".into() } else { format!("{:.2}", timing::median(&ratios)) },
            ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ")
        );
    }
    println!(
        "(img/s: median over {} round(s) of batch / median time of {} steps; training counts pairs, a step being 3 forward passes, backward and Adam; ratio: median of the rounds' ours/PyTorch, the two sides alternating within each round)",
        a.rounds, a.steps
    );
    let ratio = |case: &str, b: usize| cases.iter().find(|c| c.case == case && c.batch == b).map(|c| c.ratios()).filter(|r| !r.is_empty()).map(|r| timing::median(&r));
    if cases.iter().any(|c| c.case == "train" && c.batch == 32) {
        match ratio("train", 32) {
            Some(r) => println!("ratio_vs_pytorch={r:.2}"),
            None => println!("ratio_vs_pytorch=NA"),
        }
    }
    if let Some(r) = ratio("embed", a.embed_batch) {
        println!("embed_ratio_vs_pytorch={r:.2}");
    }
    // The BF16 training row runs at the first batch size.
    let first = cases.iter().find(|c| c.case == "train-bf16").map_or(0, |c| c.batch);
    if let Some(r) = ratio("train-bf16", first) {
        println!("bf16_ratio_vs_pytorch_autocast={r:.2}");
    }
    if let Some(r) = ratio("embed-bf16", a.embed_batch) {
        println!("bf16_embed_ratio_vs_pytorch_autocast={r:.2}");
    }
    let speedup = |case: &str, base: &str, b: usize| {
        let get = |c: &str| cases.iter().find(|x| x.case == c && x.batch == b).map(|x| x.ours_per_s());
        Some(get(case)? / get(base)?)
    };
    if let (Some(t), Some(e)) = (speedup("train-bf16", "train", first), speedup("embed-bf16", "embed", a.embed_batch)) {
        println!("bf16_vs_f32_ours: train {t:.2}, embed {e:.2}");
    }
}

fn unit(case: &str) -> &'static str {
    if case.starts_with("train") { "pairs" } else { "images" }
}

fn bench_conv(batch: usize, runs: usize) -> Result<()> {
    let r = timing::conv_layers(batch, runs)?;
    println!("{:<18} {:>3} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7}", "layer", "n", "fwd ms", "bwd-in ms", "bwd-w ms", "fwd GF", "in GF", "w GF");
    let (mut f, mut i, mut w, mut fl) = (0.0, 0.0, 0.0, 0.0);
    for t in &r {
        let c = t.count as f64;
        println!(
            "{:<18} {:>3} {:>9.2} {:>9.2} {:>9.2} {:>7.1} {:>7.1} {:>7.1}",
            t.name, t.count, t.forward_ms, t.backward_input_ms, t.backward_weight_ms,
            t.gflop / t.forward_ms * 1e3, t.gflop / t.backward_input_ms * 1e3, t.gflop / t.backward_weight_ms * 1e3
        );
        f += c * t.forward_ms;
        i += c * t.backward_input_ms;
        w += c * t.backward_weight_ms;
        fl += c * t.gflop;
    }
    println!("{:<18} {:>3} {:>9.1} {:>9.1} {:>9.1} {:>7.1} {:>7.1} {:>7.1}", "all (x count)", "", f, i, w, fl / f * 1e3, fl / i * 1e3, fl / w * 1e3);
    println!(
        "conv_total_ms={:.1} conv_gflops={:.1} (batch {batch}, median of {runs}, {} threads, kernel={}, conv3x3={}; GFLOP/s count a direct convolution's multiply-adds)",
        f + i + w,
        3.0 * fl / (f + i + w) * 1e3,
        rayon::current_num_threads(),
        mixbt::ops::gemm::kernel().name(),
        mixbt::ops::winograd::name()
    );
    print_profile("every call, warm-up included");
    Ok(())
}

fn bench_gemm(runs: usize, custom: Option<&str>) -> Result<()> {
    // (m, k, n, A transposed, B transposed): forward (W·col), input gradient (Wᵀ·dY) and weight
    // gradient (dY·colᵀ) of ResNet-18's 3×3 convolutions at 32², 16², 8² and 4², 512 columns.
    let mut cases = vec![];
    for (c, cols) in [(64, 1024), (128, 512), (256, 512), (512, 512)] {
        let ckk = c * 9;
        cases.push((c, ckk, cols, false, false));
        cases.push((ckk, c, cols, true, false));
        cases.push((c, cols, ckk, false, true));
    }
    cases.push((1024, 1024, 1024, false, false));
    if let Some(custom) = custom {
        let bad = |c: &str| Error::Config(format!("bad gemm case `{c}` (expected m,k,n,At,Bt)"));
        cases = custom
            .split(';')
            .map(|c| {
                let v: Vec<usize> = c.split(',').map(|x| x.trim().parse().map_err(|_| bad(c))).collect::<Result<_>>()?;
                match v[..] {
                    [m, k, n, at, bt] => Ok((m, k, n, at == 1, bt == 1)),
                    _ => Err(bad(c)),
                }
            })
            .collect::<Result<_>>()?;
    }
    let r = timing::gemm(&cases, runs);
    let kernel = mixbt::ops::gemm::kernel();
    let peak = timing::fma_peak(kernel);
    let avx2_peak = r.iter().any(|t| t.avx2_gflops.is_some()).then(|| timing::fma_peak(mixbt::ops::gemm::Kernel::Avx2)).flatten();
    println!("kernel={} one-core FMA peak {} GFLOP/s{}", kernel.name(), peak.map(|p| format!("{p:.1}")).unwrap_or("-".into()),
        avx2_peak.map(|p| format!(" (avx2: {p:.1})")).unwrap_or_default());
    println!("bf16={}", mixbt::ops::gemm::bf16_path().name());
    println!("{:>5} {:>5} {:>5} {:>3} {:>3} {:>10} {:>6} {:>10} {:>10} {:>10} {:>6} {:>9}", "m", "k", "n", "At", "Bt", "ours", "%peak", "ours avx2", "ours bf16", "mm", "ratio", "max|Δ|");
    for t in &r {
        println!(
            "{:>5} {:>5} {:>5} {:>3} {:>3} {:>10.1} {:>6} {:>10} {:>10} {:>10.1} {:>6.2} {:>9.2e}",
            t.m, t.k, t.n, t.a_transposed as u8, t.b_transposed as u8, t.ours_gflops,
            peak.map(|p| format!("{:.0}%", 100.0 * t.ours_gflops / p)).unwrap_or("-".into()),
            t.avx2_gflops.map(|g| format!("{g:.1}")).unwrap_or("-".into()),
            t.bf16_gflops.map(|g| format!("{g:.1}")).unwrap_or("-".into()),
            t.matrixmultiply_gflops, t.ours_gflops / t.matrixmultiply_gflops, t.max_abs_diff
        );
    }
    let geo = |f: &dyn Fn(&timing::GemmTiming) -> f64| (r.iter().map(|t| f(t).ln()).sum::<f64>() / r.len() as f64).exp();
    println!("(GFLOP/s, one thread, median of {runs}; ours = mixbt::ops::gemm with kernel {}, mm = matrixmultiply)", kernel.name());
    println!("geomean_ratio_vs_matrixmultiply={:.2}", geo(&|t| t.ours_gflops / t.matrixmultiply_gflops));
    if r.iter().all(|t| t.avx2_gflops.is_some()) {
        println!("geomean_ratio_avx512_vs_avx2={:.2}", geo(&|t| t.ours_gflops / t.avx2_gflops.unwrap_or(f64::NAN)));
    }
    if r.iter().all(|t| t.bf16_gflops.is_some()) {
        println!("geomean_ratio_bf16_vs_f32={:.2}", geo(&|t| t.bf16_gflops.unwrap_or(f64::NAN) / t.ours_gflops));
    }
    Ok(())
}

fn bench_data(dir: &std::path::Path, images: usize, workers: usize, runs: usize, no_torch: bool) -> Result<()> {
    let threads = if workers == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { workers };
    let dir = if dir.join("train").is_dir() { dir.join("train") } else { dir.to_path_buf() };
    let ours = timing::data_pipeline(&dir, images, threads, 256, runs)?;
    println!("mixbt: {:.0} augmented pairs/s ({} images, {threads} threads, median of {runs} epochs)", ours.images_per_s, ours.batch);
    let py = timing::python();
    if no_torch {
        println!("ratio_vs_torchvision=NA");
        return Ok(());
    }
    if !timing::python_has(&py, "torch, torchvision") {
        eprintln!("({py} cannot import torchvision: side skipped; set MIXBT_PYTHON)");
        println!("ratio_vs_torchvision=NA");
        return Ok(());
    }
    let mut theirs = vec![];
    for _ in 0..runs.max(1) {
        let v = timing::run_python(
            &timing::bench_dir().join("torchvision_data.py"),
            &["--data-dir".into(), dir.display().to_string(), "--images".into(), images.to_string(), "--workers".into(), threads.to_string()],
        )?;
        if let Some(p) = v.first().and_then(|v| v["pairs_per_s"].as_f64()) {
            theirs.push(p);
        }
    }
    theirs.sort_by(f64::total_cmp);
    let tv = theirs.get(theirs.len() / 2).copied().ok_or_else(|| Error::msg("torchvision benchmark printed nothing"))?;
    println!("torchvision: {tv:.0} augmented pairs/s ({threads} DataLoader workers, median of {runs})");
    println!("ratio_vs_torchvision={:.2}", ours.images_per_s / tv);
    Ok(())
}

