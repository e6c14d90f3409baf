//! `mixbt study`: grids of runs whose results are stored with the command that made them.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use mixbt::eval::LinearProbeConfig;
use mixbt::train::study::{OverfittingStudy, STUDY_METHODS};
use mixbt::train::PretrainOptions;
use mixbt::{Error, Result};

use crate::{at_least_one, parse_device, positive, workers, DataArgs};

#[derive(Subcommand)]
pub enum StudyCmd {
    /// Barlow Twins and Mixed Barlow Twins side by side, k-NN every few epochs, over embedding
    /// sizes and seeds: does Barlow Twins' k-NN peak and fall while Mixed Barlow Twins' keeps
    /// rising (the paper's claim)? Running it again continues where it stopped.
    Overfitting(OverfittingArgs),
    /// The five methods (Mixed Barlow Twins, Barlow Twins, SimCLR, BYOL, W-MSE) on one footing:
    /// the same data, backbone, optimiser, schedule, batch and d, k-NN every few epochs and a
    /// linear probe of each final model, over seeds. Runs that the overfitting study already
    /// trained (same recipe, same folder) are not trained again.
    Methods(MethodsArgs),
}

#[derive(Args)]
pub struct OverfittingArgs {
    /// Embedding sizes d, comma-separated.
    #[arg(long, default_value = "128,1024", value_delimiter = ',')]
    dims: Vec<usize>,
    /// Run folders (checkpoints and models: large, keep them out of a repository).
    #[arg(long, default_value = "runs/study-overfitting")]
    work: PathBuf,
    /// Result tables (small): knn.csv, runs.csv, epochs/, verdict.md, study.json.
    #[arg(long, default_value = "results/overfitting")]
    out: PathBuf,
    #[command(flatten)]
    common: StudyArgs,
}

#[derive(Args)]
pub struct MethodsArgs {
    /// Methods, comma-separated (`--method` names).
    #[arg(long, default_value = "mixbt,bt,simclr,byol,wmse", value_delimiter = ',')]
    methods: Vec<String>,
    /// Embedding sizes d (the projector's or head's output), comma-separated; by default each
    /// method's own: the preset's projector for the two Barlow Twins, ssl-sota's head
    /// (…-1024-64) for SimCLR, BYOL and W-MSE (W-MSE whitens batches of 128 and needs d < 128).
    #[arg(long, value_delimiter = ',')]
    dims: Vec<usize>,
    /// Run folders (by default the overfitting study's: its Barlow Twins runs are reused).
    #[arg(long, default_value = "runs/study-overfitting")]
    work: PathBuf,
    /// Result tables (small): knn.csv, runs.csv, epochs/, verdict.md, study.json.
    #[arg(long, default_value = "results/methods")]
    out: PathBuf,
    #[command(flatten)]
    common: StudyArgs,
}

/// What every study takes.
#[derive(Args)]
pub struct StudyArgs {
    /// The recipe of every run (a Barlow Twins preset: each arm sets its method and d).
    #[arg(long, default_value = "cifar10-cpu-study")]
    preset: String,
    #[command(flatten)]
    data: DataArgs,
    /// Seeds, comma-separated.
    #[arg(long, default_value = "0,1,2", value_delimiter = ',')]
    seeds: Vec<u64>,
    /// Epochs of every run (default: the preset's).
    #[arg(long, value_parser = at_least_one)]
    epochs: Option<usize>,
    /// Pre-training images (a stratified sample; default: the preset's).
    #[arg(long, value_parser = at_least_one)]
    train_subset: Option<usize>,
    /// k-NN every this many epochs (default: the preset's).
    #[arg(long, value_parser = at_least_one)]
    knn_every: Option<usize>,
    /// Learning rate of every run (Adam/SGD lr, or LARS weight lr, multiplied by the schedule:
    /// `cifar10-cpu-study`'s peak is lr × batch/256; default: the preset's). A study at another
    /// rate is another study: give it its own --work and --out.
    #[arg(long, value_parser = positive)]
    lr: Option<f64>,
    /// Epochs of the linear probe of each final model (frozen features, no augmentation); 0: none.
    #[arg(long, default_value_t = 100)]
    linear_epochs: usize,
    /// Stop after this many runs have been worked on in this sitting (the rest next time).
    #[arg(long, value_parser = at_least_one)]
    max_runs: Option<usize>,
    /// Only write the tables of the runs finished so far.
    #[arg(long)]
    report_only: bool,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Decode/augment threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    #[arg(long)]
    no_progress: bool,
    /// The data set's name in chart titles.
    #[arg(long, default_value = "CIFAR-10")]
    label: String,
}

pub fn run(cmd: StudyCmd) -> Result<()> {
    match cmd {
        StudyCmd::Overfitting(a) => {
            let methods = STUDY_METHODS.iter().map(|m| m.to_string()).collect();
            study(a.common, methods, a.dims, a.work, a.out, false)
        }
        StudyCmd::Methods(a) => {
            for m in &a.methods {
                mixbt::method::MethodConfig::for_name(m)?;
            }
            study(a.common, a.methods, a.dims, a.work, a.out, true)
        }
    }
}

/// Run (or continue) a study and write its tables; the charts: one per d of the two Barlow
/// Twins, or with `methods_chart` one of every method.
fn study(a: StudyArgs, methods: Vec<String>, dims: Vec<usize>, work: PathBuf, out: PathBuf, methods_chart: bool) -> Result<()> {
    let mut recipe = mixbt::train::presets::get(&a.preset)?;
    if recipe.barlow_twins().is_none() {
        return Err(Error::Config(format!("--preset {}: the study needs a Barlow Twins recipe", a.preset)));
    }
    a.data.apply(&mut recipe.data, &format!("recipe `{}`", recipe.name))?;
    if let Some(e) = a.epochs {
        recipe.epochs = e;
    }
    if a.train_subset.is_some() {
        recipe.data.train_subset = a.train_subset;
    }
    if let Some(k) = a.knn_every {
        recipe.knn_every_epochs = k;
    }
    if let Some(lr) = a.lr {
        recipe.optimizer.set_base_lr(lr);
    }
    recipe.time_budget_s = None; // runs end at their epochs, whatever the sittings
    if dims.contains(&0) || a.seeds.is_empty() || methods.is_empty() {
        return Err(Error::Config("--methods and --seeds need at least one value each, and every d is at least 1".into()));
    }
    let linear = (a.linear_epochs > 0).then(|| LinearProbeConfig { epochs: a.linear_epochs, batch_size: 512, augment: false, workers: workers(a.workers), ..LinearProbeConfig::small() });
    let opts = PretrainOptions { device: parse_device(&a.device)?, workers: workers(a.workers), progress: !a.no_progress, ..Default::default() };
    let study = OverfittingStudy { recipe, methods, dims, seeds: a.seeds, work_dir: work, out_dir: out.clone(), linear, opts };
    let runs = study.runs();
    let started = chrono_now();
    let t0 = std::time::Instant::now();
    // For the charts: chance from the classes, and the pre-training set's size.
    let classes = mixbt::data::open(&study.recipe.data, mixbt::data::Split::Test)?.classes().len();
    let train = mixbt::data::open(&study.recipe.data, mixbt::data::Split::Train)?.len();
    let label = format!("{} ({train} training images)", a.label);
    // `--report-only` trains nothing: the record of the sitting that trained stays.
    let previous: Option<serde_json::Value> =
        if a.report_only { std::fs::read(out.join("study.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()) } else { None };
    let machine = machine();
    // The tables and one chart per d, after every run: an interrupted study still leaves its results.
    let report = || -> Result<String> {
        let record = previous.clone().unwrap_or_else(|| meta(&study, &machine, &started, t0.elapsed().as_secs_f64()));
        let (verdict, results) = study.write_results(&record)?;
        if !methods_chart {
            for d in study.run_dims() {
                if results.iter().any(|r| r.run.d == d && r.stopped.is_none()) {
                    mixbt::report::study_chart(&results, d, classes, &label)?.save(&out.join(format!("knn-d{d}.svg")))?;
                }
            }
        } else if results.iter().any(|r| r.stopped.is_none()) {
            mixbt::report::methods_chart(&results, classes, &label)?.save(&out.join("knn.svg"))?;
        }
        Ok(verdict)
    };
    if !a.report_only {
        let mut worked = 0;
        let pending = study.pending()?;
        for (i, r) in runs.iter().enumerate() {
            if !pending.contains(r) {
                continue;
            }
            if a.max_runs.is_some_and(|m| worked >= m) {
                eprintln!("stopping after {worked} run(s) (--max-runs); run the same command again to continue");
                break;
            }
            eprintln!("[{}/{}] {} → {}", i + 1, runs.len(), r.name, study.run_dir(r).display());
            study.run_one(r)?;
            if let Some(why) = study.stopped(r) {
                eprintln!("warning: {} stopped before its last epoch and is recorded so (not tried again; the study goes on): {why}", r.name);
            }
            worked += 1;
            report()?;
        }
    }
    println!("{}", report()?);
    println!("tables in {}", out.display());
    Ok(())
}

/// The machine: CPU model, the instruction sets the kernels choose between, cores, commit.
fn machine() -> serde_json::Value {
    let cpu = mixbt::train::study::CpuInfo::this();
    let commit = std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    serde_json::json!({
        "commit": commit,
        "mixbt_version": env!("CARGO_PKG_VERSION"),
        "cpu": cpu.name,
        // The last sitting's CPU with its generation (each run's own is in runs.csv).
        "cpu_last_sitting": cpu.label(),
        "cpu_features": cpu.isa,
        "cores": cpu.cores,
    })
}

/// What `study.json` records: the command line, the machine, the sitting, the recipe.
fn meta(study: &OverfittingStudy, machine: &serde_json::Value, started: &str, seconds: f64) -> serde_json::Value {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut m = serde_json::json!({
        "command": format!("mixbt {}", args.join(" ")),
        "last_sitting_started": started,
        "last_sitting_seconds": seconds,
        "recipe": study.recipe,
        "methods": study.methods,
        "dims": study.dims,
        "seeds": study.seeds,
    });
    if let (Some(m), Some(x)) = (m.as_object_mut(), machine.as_object()) {
        m.extend(x.clone());
    }
    m
}

/// The time now, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
fn chrono_now() -> String {
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    chrono::DateTime::from_timestamp(s as i64, 0).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}
