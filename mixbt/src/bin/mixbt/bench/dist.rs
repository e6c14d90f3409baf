//! `mixbt bench dist`: the data-parallel training step at 1, 2, … MPI ranks on this machine
//! (each through `mpirun -np R`, the ranks sharing the cores), with what the collectives cost
//! per step: their time, calls and the bytes each rank sends.

use std::process::Command;
use std::time::Instant;

use mixbt::train::{presets, PretrainOptions, Pretrainer};
use mixbt::{Error, Result};

use super::timing::median;

#[derive(clap::Args)]
pub struct DistArgs {
    /// Rank counts, each run as its own `mpirun -np R` job.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    ranks: Vec<usize>,
    /// Global batch (split over the ranks).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 0.125)]
    width: f64,
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Run as one rank of a job (what the outer command starts under mpirun).
    #[arg(long, hide = true)]
    worker: bool,
}

/// One job's figures (rank 0's; every rank does the same work).
#[derive(serde::Serialize, serde::Deserialize)]
struct JobFigures {
    ranks: usize,
    threads: usize,
    step_s: f64,
    comm_s: f64,
    comm_calls: f64,
    comm_bytes: f64,
}

pub fn run(a: &DistArgs) -> Result<()> {
    if a.worker {
        return worker(a);
    }
    let me = std::env::current_exe().map_err(|e| Error::msg(format!("own path: {e}")))?;
    let mut rows: Vec<JobFigures> = Vec::new();
    for &r in &a.ranks {
        let out = Command::new("mpirun")
            .args(["-np", &r.to_string(), "--oversubscribe", "--bind-to", "none"])
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
            .arg(&me)
            .args(["bench", "dist", "--worker", "--batch", &a.batch.to_string(), "--width", &a.width.to_string()])
            .args(["--steps", &a.steps.to_string(), "--warmup", &a.warmup.to_string()])
            .output()
            .map_err(|e| Error::msg(format!("mpirun (Open MPI's or MPICH's launcher) could not be started: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find_map(|l| l.strip_prefix("BENCH-DIST ")).ok_or_else(|| {
            Error::msg(format!("the {r}-rank job gave no figures (status {}):\n{}", out.status, String::from_utf8_lossy(&out.stderr)))
        })?;
        rows.push(serde_json::from_str(line)?);
    }
    let base = rows.first().map(|f| f.step_s).unwrap_or(f64::NAN);
    println!(
        "Mixed BT training step, quickstart network at width {}, global batch {}, median of {} steps; each rank's sends:",
        a.width, a.batch, a.steps
    );
    println!("{:>5} {:>8} {:>9} {:>10} {:>11} {:>12} {:>11} {:>9}", "ranks", "threads", "step s", "images/s", "speed-up", "comm s/step", "comm share", "MB/step");
    for f in &rows {
        println!(
            "{:>5} {:>8} {:>9.3} {:>10.1} {:>10.2}x {:>12.4} {:>10.1}% {:>9.2}",
            f.ranks,
            f.threads,
            f.step_s,
            a.batch as f64 / f.step_s,
            base / f.step_s,
            f.comm_s,
            100.0 * f.comm_s / f.step_s,
            f.comm_bytes / 1e6
        );
    }
    println!("collective calls per step: {}", rows.iter().map(|f| format!("{} ranks {:.0}", f.ranks, f.comm_calls)).collect::<Vec<_>>().join(", "));
    println!("{}", serde_json::to_string(&rows)?);
    Ok(())
}

fn worker(a: &DistArgs) -> Result<()> {
    let world = crate::pretrain::join_world(&mixbt::candle_core::Device::Cpu)?;
    let mut r = presets::quickstart();
    r.batch_size = a.batch;
    r.encoder = r.encoder.with_width(a.width);
    let mut t = Pretrainer::new(r, PretrainOptions { skip_random_init_knn: true, workers: 1, ..Default::default() })?;
    for _ in 0..a.warmup {
        t.step()?;
    }
    let (mut steps, mut comm, mut calls, mut bytes) = (vec![], vec![], vec![], vec![]);
    for _ in 0..a.steps {
        world.reset_stats();
        let t0 = Instant::now();
        t.step()?;
        steps.push(t0.elapsed().as_secs_f64());
        let s = world.stats();
        comm.push(s.seconds);
        calls.push(s.calls as f64);
        bytes.push(s.bytes as f64);
    }
    if world.is_root() {
        let f = JobFigures {
            ranks: world.size(),
            threads: rayon::current_num_threads(),
            step_s: median(&steps),
            comm_s: median(&comm),
            comm_calls: median(&calls),
            comm_bytes: median(&bytes),
        };
        println!("BENCH-DIST {}", serde_json::to_string(&f)?);
    }
    Ok(())
}
