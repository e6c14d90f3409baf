//! The `mixbt` command line: a thin layer over the library, one file per command group
//! (`pretrain`, `eval`, `data`, `hub`, `bench`). Each parses its flags and calls the library.

// jemalloc as the process's malloc (`malloc`/`free` themselves, so that the dynamically linked
// libstd uses it too), keeping freed pages instead of handing them back to the kernel: glibc
// returns every block over 32 MiB (activations at batch 128) with `munmap`, and the next step
// pays a page fault and a kernel zero-fill per 4 KiB again (measured at batch 128: ~2.6 s of
// system time per training step; a 4-step bench run's system time 15.8 s -> 9.8 s with jemalloc).
#[cfg(feature = "jemalloc")]
use tikv_jemalloc_sys as _;

/// jemalloc's options, read at start-up: freed pages are never purged (returned to the kernel),
/// and a freed extent may serve any smaller allocation (`lg_extent_max_active_fit`, 2^6 by
/// default: an extent is reused only for allocations at most 64x smaller). With the default and
/// no purging, the Winograd convolutions' mix of buffer sizes kept mapping fresh pages while
/// freed ones sat idle: the resident set grew every step (BYOL, quickstart: 364 MB after 30
/// steps, 455 MB after 120; at batch 128 on CIFAR-10, 24 GB after 39 epochs), not the memory in
/// use (flat with purging on). With it, 351 MB after 30 steps and 358 MB after 240, at the same
/// speed.
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);
// SAFETY: a pointer to a static, immutable C string.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for MallocConf {}
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static malloc_conf: MallocConf = MallocConf(c"dirty_decay_ms:-1,muzzy_decay_ms:-1,lg_extent_max_active_fit:20".as_ptr());

/// The global allocator: the system's `malloc` (jemalloc, above), except that zeroed
/// allocations are a `malloc` and a `memset` instead of `calloc`. jemalloc zeroes a recycled
/// block for `calloc` by handing its pages back to the kernel (`madvise(MADV_DONTNEED)`), so the
/// next use of those pages, by anyone, page-faults and is zero-filled by the kernel again;
/// candle's and our `vec![0.0; n]` did that to every large buffer each step (measured, batch 32:
/// ~65,000 page faults per training step, 1,240,000 in a 12-step bench run).
#[cfg(feature = "jemalloc")]
struct ZeroByMemset;

#[cfg(feature = "jemalloc")]
// SAFETY: every method forwards to `System`; `alloc_zeroed` zeroes the whole block it returns.
unsafe impl std::alloc::GlobalAlloc for ZeroByMemset {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        std::alloc::System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = std::alloc::System.alloc(layout);
        if !p.is_null() {
            std::ptr::write_bytes(p, 0, layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        std::alloc::System.realloc(ptr, layout, new_size)
    }
}

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: ZeroByMemset = ZeroByMemset;

mod bench;
mod data;
mod eval;
mod hub;
mod pretrain;
mod study;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use mixbt::data::DataConfig;
use mixbt::Result;

#[derive(Parser)]
#[command(name = "mixbt", version, about = "Mixed Barlow Twins self-supervised learning (candle)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Pre-train with a preset (default `quickstart`) or a recipe file, then k-NN against the random network.
    Pretrain(pretrain::PretrainArgs),
    /// Weighted k-NN (k=200, T=0.5) of a checkpoint.
    Knn(eval::KnnArgs),
    /// Linear probe of a checkpoint's frozen backbone.
    Linear(eval::LinearArgs),
    /// Write L2-normalised backbone features of a folder of images.
    Embed(eval::EmbedArgs),
    /// Top-1/top-5 of a released linear probe (backbone + fc) on a validation folder.
    Eval(eval::ClassifyArgs),
    /// Linear transfer to DTD, MNIST, FashionMNIST, CUB, Flowers, traffic signs, Aircraft (evaluate_transfer.py).
    Transfer(transfer::TransferArgs),
    /// Data-set tools.
    Data {
        #[command(subcommand)]
        cmd: data::DataCmd,
    },
    /// List the presets (the paper's recipes and the CPU ones), or print one as a recipe file.
    Presets(pretrain::PresetsArgs),
    /// The Hugging Face Hub: released checkpoints, pull, convert, push.
    Hub {
        #[command(subcommand)]
        cmd: hub::HubCmd,
    },
    /// Studies: grids of runs stored as tables with the command that made them, and a verdict.
    Study {
        #[command(subcommand)]
        cmd: study::StudyCmd,
    },
    /// Benchmarks, side by side with PyTorch / torchvision when available.
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
}

/// Where the data are: `--dataset`, `--data-dir`, `--skip-corrupt`.
#[derive(Args, Clone, Default)]
pub struct DataArgs {
    /// cifar10, cifar100, stl10, tiny-imagenet, imagenet, image-folder, parquet, builtin, or hf:<org>/<name>.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Folder of the data set (the layout of each reader; see data/README.md).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Skip undecodable images with a warning instead of failing.
    #[arg(long)]
    pub skip_corrupt: bool,
}

impl DataArgs {
    /// Whether any of the flags was given.
    pub fn any(&self) -> bool {
        self.dataset.is_some() || self.data_dir.is_some() || self.skip_corrupt
    }

    /// Apply the flags to `cfg`; `what` names the recipe in the error when the data cannot be
    /// located.
    pub fn apply(&self, cfg: &mut DataConfig, what: &str) -> Result<()> {
        if let Some(ds) = &self.dataset {
            cfg.set_source(ds)?;
        }
        if let Some(dir) = &self.data_dir {
            cfg.dir = Some(dir.clone());
        }
        cfg.skip_corrupt |= self.skip_corrupt;
        cfg.check_located(what)
    }
}

/// Flags shared by `pretrain`, `knn` and `linear`.
#[derive(Args)]
pub struct Common {
    /// A preset (`mixbt presets`); default `quickstart`.
    #[arg(long)]
    pub preset: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
    /// cpu or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Seed (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Decode/augment threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Use only this many test images for k-NN (a stratified sample: every class keeps its share).
    #[arg(long, value_parser = at_least_one)]
    pub test_subset: Option<usize>,
    /// Use only this many train images as the k-NN bank (stratified).
    #[arg(long, value_parser = at_least_one)]
    pub bank_subset: Option<usize>,
}

impl Common {
    /// The preset named by `--preset` (default `quickstart`) with the data flags applied.
    pub fn recipe(&self) -> Result<mixbt::train::Recipe> {
        let mut r = mixbt::train::presets::get(self.preset.as_deref().unwrap_or("quickstart"))?;
        self.apply(&mut r)?;
        Ok(r)
    }

    /// Apply the data and subset flags to a recipe.
    pub fn apply(&self, r: &mut mixbt::train::Recipe) -> Result<()> {
        self.data.apply(&mut r.data, &format!("recipe `{}`", r.name))?;
        if self.test_subset.is_some() {
            r.data.test_subset = self.test_subset;
        }
        if self.bank_subset.is_some() {
            r.data.bank_subset = self.bank_subset;
        }
        Ok(())
    }
}

/// Value parser: an integer of at least 1 (clap names the flag in the error).
pub fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// Value parser: a positive, finite number.
pub fn positive(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        Ok(v) => Err(format!("must be a positive, finite number, got {v}")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// Value parser: a finite number ≥ 0.
pub fn non_negative(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        Ok(v) => Err(format!("must be a finite number ≥ 0, got {v}")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// Decode/augment threads: 0 means all cores; more than 8 per core is capped, with a warning.
pub fn workers(n: usize) -> usize {
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    if n > 8 * cores {
        eprintln!("warning: --workers {n} capped at {} (8 per core on {cores} cores)", 8 * cores);
        return 8 * cores;
    }
    n
}

pub use mixbt::params::parse_device;

fn run(cli: Cli) -> Result<()> {
    // Only pre-training runs as data-parallel ranks; anything else started by a launcher with
    // several ranks would run once per rank, each writing the same outputs.
    let data_parallel = matches!(&cli.cmd, Cmd::Pretrain(_) | Cmd::Bench { cmd: bench::BenchCmd::Dist(_) });
    match mixbt::dist::Launch::from_env()? {
        mixbt::dist::Launch::Mpi { size, .. } | mixbt::dist::Launch::Env { size, .. } if size > 1 && !data_parallel => {
            return Err(mixbt::Error::Config(format!(
                "started as {size} ranks, but only `mixbt pretrain` trains data-parallel: run this command as one process (without mpirun or WORLD_SIZE)"
            )));
        }
        _ => {}
    }
    match cli.cmd {
        Cmd::Pretrain(a) => pretrain::pretrain(a),
        Cmd::Presets(a) => pretrain::presets(a),
        Cmd::Knn(a) => eval::knn(a),
        Cmd::Linear(a) => eval::linear(a),
        Cmd::Embed(a) => eval::embed(a),
        Cmd::Eval(a) => eval::classify(a),
        Cmd::Transfer(a) => transfer::run(a),
        Cmd::Data { cmd } => data::run(cmd),
        Cmd::Hub { cmd } => hub::run(cmd),
        Cmd::Study { cmd } => study::run(cmd),
        Cmd::Bench { cmd } => bench::run(cmd),
    }
}

fn main() -> ExitCode {
    // A data-parallel rank that ends well finalises its backend (MPI expects it of every rank).
    match run(Cli::parse()).and_then(|()| mixbt::dist::finalize()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
