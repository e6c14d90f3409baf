//! Studies: grids of pre-training runs whose results are kept as small tables, with the
//! command, machine and commit that made them and a verdict computed from the numbers.
//!
//! [`OverfittingStudy`] is the paper's central claim as an experiment: Barlow Twins and Mixed
//! Barlow Twins side by side (the same recipe, λ_reg = 0 or not), at several embedding sizes d
//! and seeds, with k-NN every few epochs. Does Barlow Twins' k-NN peak and fall with long
//! training while Mixed Barlow Twins' keeps rising (more so at large d)? Each run is an
//! ordinary run folder under `work_dir` (checkpointed every epoch): running the study again
//! skips finished runs and resumes unfinished ones bit-exactly, so it can be spread over
//! several sittings. [`OverfittingStudy::write_results`] writes what the runs finished so far.
//!
//! The same grid with more methods ([`ALL_METHODS`] at one d) is `mixbt study methods`: the
//! five methods on one footing, seeds as repeats.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::{PretrainOptions, Pretrainer, Recipe, Summary};
use crate::eval::{linear_probe, LinearProbeConfig};
use crate::io::{atomic_write, read_csv, read_parquet, write_csv, DirLock};
use crate::{data, Error, Result};

/// The methods the overfitting study compares, as `--method` names.
pub const STUDY_METHODS: [&str; 2] = ["bt", "mixbt"];

/// Every method, as `mixbt study methods` compares them.
pub const ALL_METHODS: [&str; 5] = ["mixbt", "bt", "simclr", "byol", "wmse"];

/// A k-NN drop larger than this many points from a run's peak to its end counts as a fall
/// (with 10,000 test images one standard error of an accuracy near 50 % is 0.5 points).
pub const FALL_POINTS: f64 = 1.0;

/// A grid of runs over methods (Barlow Twins and Mixed Barlow Twins by default), embedding
/// sizes and seeds.
#[derive(Debug, Clone)]
pub struct OverfittingStudy {
    /// The recipe of every run (a Barlow Twins recipe; each arm sets its method and d).
    pub recipe: Recipe,
    /// `--method` names ([`STUDY_METHODS`] for the overfitting study).
    pub methods: Vec<String>,
    /// Embedding sizes d (the projector's output width); empty: each method at its own d
    /// ([`own_d`]), as `mixbt study methods` runs them.
    pub dims: Vec<usize>,
    pub seeds: Vec<u64>,
    /// Where the run folders (checkpoints, models) go.
    pub work_dir: PathBuf,
    /// Where the result tables go (small: fit for a repository).
    pub out_dir: PathBuf,
    /// The linear probe of each final model (`None`: none).
    pub linear: Option<LinearProbeConfig>,
    /// Run-time options of every run (device, workers, progress); seed and folder are set per run.
    pub opts: PretrainOptions,
}

/// One run of a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRun {
    /// `<method>-d<d>-s<seed>`.
    pub name: String,
    pub method: String,
    pub d: usize,
    pub seed: u64,
}

/// What a finished run of a study gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub run: StudyRun,
    /// (epoch, k-NN top-1, top-5), epoch 0 being the randomly initialised network.
    pub knn: Vec<(usize, f64, f64)>,
    pub epochs: usize,
    pub knn_random_init: f64,
    pub knn_peak: f64,
    pub peak_epoch: usize,
    pub knn_final: f64,
    pub linear_top1: Option<f64>,
    /// Seconds of training and evaluation, summed over the sittings.
    pub wall_seconds: f64,
    /// The CPU of every sitting that trained or probed the run ([`cpu_label`]), joined by
    /// " + " (a study spread over machines says which did what); empty for runs stored
    /// before it was recorded.
    pub cpu: String,
    /// Why training stopped before its last epoch (a degenerate batch, a non-finite loss), for
    /// a run the study recorded as stopped; its k-NN curve ends there and it has no probe.
    pub stopped: Option<String>,
}

impl RunResult {
    /// Points from the peak down to the end (0 when the end is the peak).
    pub fn drop_from_peak(&self) -> f64 {
        self.knn_peak - self.knn_final
    }
    /// Whether k-NN peaked before the end and fell by more than [`FALL_POINTS`].
    pub fn fell(&self) -> bool {
        self.drop_from_peak() > FALL_POINTS
    }
    pub fn gain(&self) -> f64 {
        self.knn_final - self.knn_random_init
    }
}

/// Per-run bookkeeping kept in the run folder (`study.json`): sittings' wall time, linear probe.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RunNotes {
    wall_seconds: f64,
    /// [`cpu_label`] of each sitting that worked on the run, each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cpus: Vec<String>,
    linear_top1: Option<f64>,
    linear_top5: Option<f64>,
    /// The error that stopped training (the run is not tried again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stopped: Option<String>,
    /// The random network's k-NN (top-1, top-5) of a stopped run (it has no `summary.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    random_init: Option<(f64, f64)>,
}

const NOTES: &str = "study.json";

/// Every run of a study over `methods`, `dims` and `seeds`, seed-major (all arms of seed 0
/// first: a partial study compares like with like).
pub fn planned_runs<S: AsRef<str>>(methods: &[S], dims: &[usize], seeds: &[u64]) -> Vec<StudyRun> {
    let mut out = vec![];
    for &seed in seeds {
        for &d in dims {
            for m in methods.iter().map(|m| m.as_ref()) {
                out.push(StudyRun { name: format!("{m}-d{d}-s{seed}"), method: m.into(), d, seed });
            }
        }
    }
    out
}

/// The embedding size d that [`super::presets::with_method`] gives `method` on `recipe`: the
/// recipe's own projector for the two Barlow Twins, ssl-sota's head (…-1024-64) for the others.
pub fn own_d(recipe: &Recipe, method: &str) -> Result<usize> {
    let r = super::presets::with_method(recipe.clone(), method)?;
    r.encoder.projector.sizes.last().copied().ok_or_else(|| Error::Config(format!("recipe `{}` has no projector", recipe.name)))
}

/// The plan of a study: [`planned_runs`] over `dims`, or with `dims` empty each method at its
/// own d ([`own_d`]), seed-major.
pub fn plan(recipe: &Recipe, methods: &[String], dims: &[usize], seeds: &[u64]) -> Result<Vec<StudyRun>> {
    if !dims.is_empty() {
        return Ok(planned_runs(methods, dims, seeds));
    }
    let own: Vec<usize> = methods.iter().map(|m| own_d(recipe, m)).collect::<Result<_>>()?;
    let mut out = vec![];
    for &seed in seeds {
        for (m, &d) in methods.iter().zip(&own) {
            out.push(StudyRun { name: format!("{m}-d{d}-s{seed}"), method: m.clone(), d, seed });
        }
    }
    Ok(out)
}

impl OverfittingStudy {
    /// Every run, seed-major ([`plan`]).
    pub fn runs(&self) -> Vec<StudyRun> {
        plan(&self.recipe, &self.methods, &self.dims, &self.seeds).unwrap_or_default()
    }

    /// The embedding sizes the runs use, in increasing order.
    pub fn run_dims(&self) -> Vec<usize> {
        let mut d: Vec<usize> = self.runs().iter().map(|r| r.d).collect();
        d.sort();
        d.dedup();
        d
    }

    /// The recipe of `run`: the study's recipe with its method and d.
    pub fn recipe_for(&self, run: &StudyRun) -> Result<Recipe> {
        let mut r = super::presets::with_method(self.recipe.clone(), &run.method)?;
        super::sweep::set_param(&mut r, "d", run.d as f64)?;
        r.name = format!("{}-{}", self.recipe.name, run.name);
        Ok(r)
    }

    pub fn run_dir(&self, run: &StudyRun) -> PathBuf {
        self.work_dir.join(&run.name)
    }

    /// Whether `run` has finished in its work folder (its summary and, when the study probes,
    /// its linear probe).
    pub fn is_done(&self, run: &StudyRun) -> bool {
        let dir = self.run_dir(run);
        let notes = read_notes(&dir);
        notes.stopped.is_some() || dir.join("summary.json").is_file() && (self.linear.is_none() || notes.linear_top1.is_some())
    }

    /// Why `run` stopped before its end, if the study recorded it as stopped.
    pub fn stopped(&self, run: &StudyRun) -> Option<String> {
        read_notes(&self.run_dir(run)).stopped.as_deref().map(stop_reason)
    }

    /// Train `run` to its end (fresh, or resumed from its last checkpoint), then probe it. A run
    /// whose training stops on its numbers (a degenerate batch, a non-finite loss: the method
    /// fails at this recipe) is recorded as stopped ([`Self::stopped`]), with its k-NN curve up
    /// to there, and not tried again; the study goes on. Other errors are returned.
    pub fn run_one(&self, run: &StudyRun) -> Result<()> {
        let dir = self.run_dir(run);
        let recipe = self.recipe_for(run)?;
        let opts = PretrainOptions { seed: run.seed, out_dir: Some(dir.clone()), ..self.opts.clone() };
        if read_notes(&dir).stopped.is_some() {
            return Ok(());
        }
        if !dir.join("summary.json").is_file() {
            let mut t = if super::checkpoint::resolve(&dir).is_ok() {
                let t = Pretrainer::resume(&dir, opts)?;
                if !t.recipe().same_settings(&recipe) {
                    return Err(Error::format(&dir, "holds a run of another recipe: a study's settings cannot change between sittings (use another --work)"));
                }
                t
            } else {
                Pretrainer::new(recipe.clone(), opts)?
            };
            let fit = t.fit();
            let mut notes = read_notes(&dir);
            // Every sitting's training (the checkpoints carry the earlier ones'), then the probe's.
            notes.wall_seconds = t.wall_seconds();
            notes.add_cpu();
            match fit {
                Ok(_) => write_notes(&dir, &notes)?,
                Err(e @ (Error::ZeroVariance(_) | Error::NonFinite(_))) => {
                    notes.stopped = Some(stop_reason(&e.to_string()));
                    notes.random_init = t.knn_random_init().map(|r| (r.top1, r.top5));
                    // Its curve up to the stop (the last checkpoint may be older, or absent).
                    t.history().write(&dir)?;
                    write_notes(&dir, &notes)?;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(cfg) = &self.linear {
            let mut notes = read_notes(&dir);
            if notes.linear_top1.is_none() {
                let _lock = DirLock::acquire(&dir)?;
                let t0 = std::time::Instant::now();
                let (enc, _, _) = crate::ckpt::load_encoder(&dir.join("model.safetensors"), &self.opts.device)?;
                let train = data::open(&recipe.data, data::Split::Train)?;
                let test = data::open(&recipe.data, data::Split::Test)?;
                let res = linear_probe(&enc, train, test, &recipe.data.eval, &recipe.data.eval, cfg, |_| {})?;
                notes.linear_top1 = Some(res.last_top1);
                notes.linear_top5 = Some(res.last_top5);
                notes.wall_seconds += t0.elapsed().as_secs_f64();
                notes.add_cpu();
                write_notes(&dir, &notes)?;
            }
        }
        Ok(())
    }

    /// The results of the finished runs: those finished in the work folder, and those the
    /// result tables in `out_dir` already hold ([`Self::stored_results`]) whose folders are gone.
    pub fn results(&self) -> Result<Vec<RunResult>> {
        let stored = self.stored_results()?;
        let mut out = vec![];
        for r in self.runs() {
            if self.is_done(&r) {
                out.push(self.result_of(r)?);
            } else if let Some(s) = stored.iter().find(|s| s.run == r) {
                out.push(s.clone());
            }
        }
        Ok(out)
    }

    /// The runs still to train: neither finished in the work folder nor stored in `out_dir`.
    pub fn pending(&self) -> Result<Vec<StudyRun>> {
        let stored = self.stored_results()?;
        Ok(self.runs().into_iter().filter(|r| !self.is_done(r) && !stored.iter().any(|s| &s.run == r)).collect())
    }

    /// The finished runs that the result tables in `out_dir` hold: the record that outlives the
    /// run folders (a study committed to a repository continues on a machine that has only
    /// the tables). Empty when `out_dir` holds no study, or a record without its recipe; an
    /// error when it holds a study of another recipe (its tables would be overwritten).
    pub fn stored_results(&self) -> Result<Vec<RunResult>> {
        let mp = self.out_dir.join("study.json");
        let Ok(bytes) = std::fs::read(&mp) else { return Ok(vec![]) };
        let meta: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::format(&mp, format!("not JSON: {e}")))?;
        if meta.get("recipe").is_none() || !self.out_dir.join("runs.csv").is_file() {
            return Ok(vec![]);
        }
        let stored = read_study(&self.out_dir)?;
        if !stored.recipe()?.same_settings(&self.recipe) {
            return Err(Error::format(&mp, "holds a study of another recipe: a study's settings cannot change between sittings (use another --out)"));
        }
        Ok(stored.results.into_iter().chain(stored.stopped).filter(|s| self.runs().contains(&s.run)).collect())
    }

    fn result_of(&self, run: StudyRun) -> Result<RunResult> {
        let dir = self.run_dir(&run);
        let notes = read_notes(&dir);
        if let Some(why) = notes.stopped.as_deref().map(stop_reason) {
            let h = read_parquet(&dir.join("history.parquet"))?;
            let (ri1, ri5) = notes.random_init.unwrap_or((f64::NAN, f64::NAN));
            let mut knn = vec![(0, ri1, ri5)];
            knn.extend(knn_by_epoch(&h, &dir)?);
            let (peak_epoch, knn_peak) = knn.iter().skip(1).fold((0, f64::NAN), |b, &(e, k, _)| if !(k <= b.1) { (e, k) } else { b });
            let epochs = f64_col(&h, "epoch", &dir)?.into_iter().flatten().fold(0.0, f64::max) as usize;
            return Ok(RunResult {
                epochs,
                knn_random_init: ri1,
                knn_peak,
                peak_epoch,
                knn_final: knn.last().map_or(f64::NAN, |k| if k.0 == 0 { f64::NAN } else { k.1 }),
                linear_top1: None,
                wall_seconds: notes.wall_seconds,
                cpu: notes.cpus.join(" + "),
                knn,
                run,
                stopped: Some(why),
            });
        }
        let sp = dir.join("summary.json");
        let summary: Summary = serde_json::from_slice(&std::fs::read(&sp).map_err(|e| Error::io(&sp, e))?)?;
        let mut knn = vec![(0, summary.knn_top1_random_init, summary.knn_top5_random_init)];
        knn.extend(knn_by_epoch(&read_parquet(&dir.join("history.parquet"))?, &dir)?);
        let (peak_epoch, knn_peak) = knn.iter().skip(1).fold((0, f64::NEG_INFINITY), |b, &(e, k, _)| if k > b.1 { (e, k) } else { b });
        Ok(RunResult {
            epochs: summary.epochs,
            knn_random_init: summary.knn_top1_random_init,
            knn_peak,
            peak_epoch,
            knn_final: summary.knn_top1,
            linear_top1: notes.linear_top1,
            wall_seconds: notes.wall_seconds,
            cpu: notes.cpus.join(" + "),
            knn,
            run,
            stopped: None,
        })
    }

    /// Write the result tables of the finished runs into `out_dir`: `knn.csv` (run, method, d,
    /// seed, epoch, knn_top1, knn_top5; epoch 0 = random init), `runs.csv` (one row per run),
    /// `epochs/<run>.csv` (per-epoch means of the loss and its components, and k-NN),
    /// `verdict.md` and `study.json` (`meta`: command, machine, commit, …). Returns the
    /// verdict and the results it was computed from.
    pub fn write_results(&self, meta: &serde_json::Value) -> Result<(String, Vec<RunResult>)> {
        let res = self.results()?;
        std::fs::create_dir_all(self.out_dir.join("epochs")).map_err(|e| Error::io(&self.out_dir, e))?;
        let (mut names, mut methods, mut d, mut seed, mut ep, mut k1, mut k5) = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for r in &res {
            for &(e, a, b) in &r.knn {
                names.push(r.run.name.clone());
                methods.push(r.run.method.clone());
                d.push(r.run.d as u32);
                seed.push(r.run.seed);
                ep.push(e as u32);
                k1.push(a);
                k5.push(b);
            }
            // A stored run whose folder is gone keeps the epoch table it was stored with.
            if self.is_done(&r.run) {
                let dir = self.run_dir(&r.run);
                let mut epochs = epoch_table(&read_parquet(&dir.join("history.parquet"))?, &dir)?;
                write_csv(&self.out_dir.join("epochs").join(format!("{}.csv", r.run.name)), &mut epochs)?;
            }
        }
        let mut knn = df!("run" => names, "method" => methods, "d" => d, "seed" => seed, "epoch" => ep, "knn_top1" => k1, "knn_top5" => k5)
            .map_err(|e| Error::msg(e.to_string()))?;
        write_csv(&self.out_dir.join("knn.csv"), &mut knn)?;
        let mut runs = runs_table(&res)?;
        write_csv(&self.out_dir.join("runs.csv"), &mut runs)?;
        let verdict = verdict(&res, &self.runs());
        atomic_write(&self.out_dir.join("verdict.md"), verdict.as_bytes())?;
        atomic_write(&self.out_dir.join("study.json"), serde_json::to_string_pretty(meta)?.as_bytes())?;
        Ok((verdict, res))
    }
}

/// A study as its result tables store it ([`OverfittingStudy::write_results`]): the finished
/// runs and the plan, read from `out_dir` alone (no run folders needed: a study committed to
/// a repository can be drawn and judged anywhere).
#[derive(Debug, Clone)]
pub struct StoredStudy {
    /// The runs that trained to their end.
    pub results: Vec<RunResult>,
    /// The runs whose training stopped early ([`RunResult::stopped`]): in the verdict, in no
    /// figure.
    pub stopped: Vec<RunResult>,
    /// Every run the study planned (from `study.json`'s `dims` and `seeds`).
    pub planned: Vec<StudyRun>,
    /// `study.json`: command, commit, CPU, recipe, …
    pub meta: serde_json::Value,
}

impl StoredStudy {
    /// The verdict computed from the stored numbers ([`verdict`]).
    pub fn verdict(&self) -> String {
        verdict(&[self.results.as_slice(), &self.stopped].concat(), &self.planned)
    }
    /// The recipe every run shared, as `study.json` stores it.
    pub fn recipe(&self) -> Result<Recipe> {
        Ok(serde_json::from_value(self.meta.get("recipe").cloned().unwrap_or_default())?)
    }
    /// The methods of the plan, in its order.
    pub fn methods(&self) -> Vec<String> {
        plan_methods(&self.planned)
    }
    /// The embedding sizes of the plan.
    pub fn dims(&self) -> Vec<usize> {
        let mut d: Vec<usize> = self.planned.iter().map(|r| r.d).collect();
        d.dedup();
        d.sort();
        d.dedup();
        d
    }
}

/// Read the study stored in `out_dir` (`runs.csv`, `knn.csv`, `study.json`).
pub fn read_study(out_dir: &Path) -> Result<StoredStudy> {
    let mp = out_dir.join("study.json");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&mp).map_err(|e| Error::io(&mp, e))?)
        .map_err(|e| Error::format(&mp, format!("not JSON: {e}")))?;
    let list = |k: &str| -> Result<Vec<u64>> {
        meta.get(k)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
            .ok_or_else(|| Error::format(&mp, format!("no `{k}` list")))
    };
    let dims: Vec<usize> = list("dims")?.into_iter().map(|d| d as usize).collect();
    // Studies stored before `methods` was recorded compared the two Barlow Twins.
    let methods: Vec<String> = match meta.get("methods") {
        None => STUDY_METHODS.iter().map(|m| m.to_string()).collect(),
        Some(v) => v
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
            .ok_or_else(|| Error::format(&mp, "`methods` is not a list of names"))?,
    };
    let planned = if dims.is_empty() {
        let recipe: Recipe = serde_json::from_value(meta.get("recipe").cloned().unwrap_or_default()).map_err(|e| Error::format(&mp, format!("`recipe`: {e}")))?;
        plan(&recipe, &methods, &dims, &list("seeds")?)?
    } else {
        planned_runs(&methods, &dims, &list("seeds")?)
    };
    let rp = out_dir.join("runs.csv");
    let runs = read_csv(&rp)?;
    let kp = out_dir.join("knn.csv");
    let knn = read_csv(&kp)?;
    let text = |df: &DataFrame, p: &Path, n: &str| -> Result<Vec<String>> {
        let c = df.column(n).map_err(|_| Error::format(p, format!("no `{n}` column")))?;
        let c = c.cast(&DataType::String).map_err(|e| Error::format(p, format!("`{n}`: {e}")))?;
        Ok(c.str().map_err(|e| Error::format(p, format!("`{n}`: {e}")))?.iter().map(|s| s.unwrap_or("").to_string()).collect())
    };
    let num = |df: &DataFrame, p: &Path, n: &str| -> Result<Vec<Option<f64>>> { f64_col(df, n, p) };
    let need = |v: Option<f64>, p: &Path, n: &str, i: usize| v.ok_or_else(|| Error::format(p, format!("row {}: `{n}` is empty", i + 1)));
    let (kn, ke, k1, k5) = (text(&knn, &kp, "run")?, num(&knn, &kp, "epoch")?, num(&knn, &kp, "knn_top1")?, num(&knn, &kp, "knn_top5")?);
    let names = text(&runs, &rp, "run")?;
    let cols = ["epochs", "knn_random_init", "knn_peak", "peak_epoch", "knn_final", "linear_top1", "wall_seconds"];
    let c: Vec<Vec<Option<f64>>> = cols.iter().map(|n| num(&runs, &rp, n)).collect::<Result<_>>()?;
    // Tables written before runs could stop early (or before the CPU was recorded) lack the column.
    let optional = |n: &str| -> Result<Vec<String>> { if runs.column(n).is_ok() { text(&runs, &rp, n) } else { Ok(vec![String::new(); names.len()]) } };
    let stopped = optional("stopped")?;
    let cpus = optional("cpu")?;
    let mut results = vec![];
    for (i, name) in names.iter().enumerate() {
        let run = planned.iter().find(|r| &r.name == name).cloned().ok_or_else(|| Error::format(&rp, format!("run `{name}` is not in the plan of study.json")))?;
        let mut curve = vec![];
        for j in (0..kn.len()).filter(|&j| &kn[j] == name) {
            curve.push((need(ke[j], &kp, "epoch", j)? as usize, need(k1[j], &kp, "knn_top1", j)?, k5[j].unwrap_or(f64::NAN)));
        }
        if curve.is_empty() {
            return Err(Error::format(&kp, format!("no k-NN rows for run `{name}`")));
        }
        results.push(RunResult {
            run,
            knn: curve,
            epochs: need(c[0][i], &rp, cols[0], i)? as usize,
            knn_random_init: c[1][i].unwrap_or(f64::NAN),
            knn_peak: c[2][i].unwrap_or(f64::NAN),
            peak_epoch: need(c[3][i], &rp, cols[3], i)? as usize,
            knn_final: c[4][i].unwrap_or(f64::NAN),
            linear_top1: c[5][i],
            wall_seconds: c[6][i].unwrap_or(f64::NAN),
            cpu: cpus[i].clone(),
            stopped: Some(stopped[i].clone()).filter(|s| !s.is_empty()),
        });
    }
    let (stopped, results) = results.into_iter().partition(|r: &RunResult| r.stopped.is_some());
    Ok(StoredStudy { results, stopped, planned, meta })
}

/// Why a run stopped, for its record: the trainer's message without its hint of where the last
/// checkpoint lies (a path of the machine that ran it).
fn stop_reason(msg: &str) -> String {
    let end = ["; the last good checkpoint is ", "; no checkpoint was written yet"].iter().filter_map(|h| msg.find(h)).min().unwrap_or(msg.len());
    msg[..end].to_string()
}

impl RunNotes {
    /// Record this machine's CPU among the run's sittings.
    fn add_cpu(&mut self) {
        let me = cpu_label();
        if !self.cpus.contains(&me) {
            self.cpus.push(me);
        }
    }
}

/// This machine's CPU, as `/proc/cpuinfo` and the OS report it (empty fields elsewhere).
#[derive(Debug, Clone)]
pub struct CpuInfo {
    /// `model name`, e.g. "AMD EPYC".
    pub name: Option<String>,
    /// x86 `cpu family` and `model`: they tell apart generations that share a model name.
    pub family: Option<String>,
    pub model: Option<String>,
    /// The instruction sets the kernels choose between, of those the CPU has.
    pub isa: Vec<&'static str>,
    pub cores: usize,
}

impl CpuInfo {
    pub fn this() -> Self {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            info.lines().find(|l| l.split(':').next().is_some_and(|k| k.trim() == name)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
        };
        let flags = field("flags").unwrap_or_default();
        Self {
            name: field("model name"),
            family: field("cpu family"),
            model: field("model"),
            isa: ["avx2", "avx512f", "avx512_bf16", "amx_tile"].into_iter().filter(|f| flags.split_whitespace().any(|x| x == *f)).collect(),
            cores: std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1),
        }
    }

    /// In a few words, for the record of a result, e.g. `AMD EPYC (family 25 model 17); 2 cores;
    /// avx2 avx512f avx512_bf16` (no commas: it is a CSV field).
    pub fn label(&self) -> String {
        let name = self.name.clone().unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let generation = match (&self.family, &self.model) {
            (Some(f), Some(m)) => format!(" (family {f} model {m})"),
            _ => String::new(),
        };
        let isa = if self.isa.is_empty() { String::new() } else { format!("; {}", self.isa.join(" ")) };
        format!("{name}{generation}; {} core{}{isa}", self.cores, if self.cores == 1 { "" } else { "s" })
    }
}

/// [`CpuInfo::label`] of this machine.
pub fn cpu_label() -> String {
    CpuInfo::this().label()
}

fn read_notes(dir: &Path) -> RunNotes {
    std::fs::read(dir.join(NOTES)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn write_notes(dir: &Path, n: &RunNotes) -> Result<()> {
    atomic_write(&dir.join(NOTES), serde_json::to_string_pretty(n)?.as_bytes())
}

/// A numeric column as `f64`s (missing values `None`).
fn f64_col(h: &DataFrame, name: &str, dir: &Path) -> Result<Vec<Option<f64>>> {
    let c = h.column(name).map_err(|_| Error::format(dir, format!("history.parquet has no `{name}` column")))?;
    let c = c.cast(&DataType::Float64).map_err(|e| Error::format(dir, format!("`{name}`: {e}")))?;
    Ok(c.f64().map_err(|e| Error::format(dir, format!("`{name}`: {e}")))?.iter().collect())
}

/// (epoch, top-1, top-5) of every history row that carries a k-NN evaluation.
fn knn_by_epoch(h: &DataFrame, dir: &Path) -> Result<Vec<(usize, f64, f64)>> {
    let (e, a, b) = (f64_col(h, "epoch", dir)?, f64_col(h, "knn_top1", dir)?, f64_col(h, "knn_top5", dir)?);
    Ok(e.into_iter().zip(a).zip(b).filter_map(|((e, a), b)| Some((e? as usize, a?, b.unwrap_or(f64::NAN)))).collect())
}

/// Per-epoch means of every numeric history column but step, epoch and k-NN, with the epoch's
/// k-NN (where measured).
fn epoch_table(h: &DataFrame, dir: &Path) -> Result<DataFrame> {
    let epochs: Vec<u32> = f64_col(h, "epoch", dir)?.into_iter().map(|x| x.unwrap_or(0.0) as u32).collect();
    let mut uniq = epochs.clone();
    uniq.dedup();
    let mut out: Vec<Column> = vec![Column::new("epoch".into(), &uniq)];
    for c in h.columns() {
        let name = c.name().as_str();
        if matches!(name, "step" | "epoch") || !c.dtype().is_primitive_numeric() {
            continue;
        }
        let v = f64_col(h, name, dir)?;
        let knn = name.starts_with("knn_");
        let agg: Vec<Option<f64>> = uniq
            .iter()
            .map(|&u| {
                let xs: Vec<f64> = epochs.iter().zip(&v).filter(|(e, _)| **e == u).filter_map(|(_, x)| *x).collect();
                match (knn, xs.is_empty()) {
                    (_, true) => None,
                    (true, false) => xs.last().copied(),
                    (false, false) => Some(xs.iter().sum::<f64>() / xs.len() as f64),
                }
            })
            .collect();
        out.push(Column::new(name.into(), agg));
    }
    DataFrame::new(uniq.len(), out).map_err(|e| Error::msg(e.to_string()))
}

fn runs_table(res: &[RunResult]) -> Result<DataFrame> {
    let s = |f: &dyn Fn(&RunResult) -> String| res.iter().map(f).collect::<Vec<_>>();
    let n = |f: &dyn Fn(&RunResult) -> f64| res.iter().map(f).collect::<Vec<_>>();
    let u = |f: &dyn Fn(&RunResult) -> u64| res.iter().map(f).collect::<Vec<_>>();
    df!(
        "run" => s(&|r| r.run.name.clone()),
        "method" => s(&|r| r.run.method.clone()),
        "d" => u(&|r| r.run.d as u64),
        "seed" => u(&|r| r.run.seed),
        "epochs" => u(&|r| r.epochs as u64),
        "knn_random_init" => n(&|r| r.knn_random_init),
        "knn_peak" => n(&|r| r.knn_peak),
        "peak_epoch" => u(&|r| r.peak_epoch as u64),
        "knn_final" => n(&|r| r.knn_final),
        "drop_from_peak" => n(&|r| r.drop_from_peak()),
        "gain_over_random_init" => n(&|r| r.gain()),
        "linear_top1" => res.iter().map(|r| r.linear_top1).collect::<Vec<_>>(),
        "wall_seconds" => n(&|r| r.wall_seconds),
        "cpu" => s(&|r| r.cpu.clone()),
        "stopped" => s(&|r| r.stopped.clone().unwrap_or_default())
    )
    .map_err(|e| Error::msg(e.to_string()))
}

/// The methods of `runs`, each once, in their order.
pub fn plan_methods(runs: &[StudyRun]) -> Vec<String> {
    let mut v: Vec<String> = vec![];
    for r in runs {
        if !v.contains(&r.method) {
            v.push(r.method.clone());
        }
    }
    v
}

/// The verdict, computed from the finished runs: for each method and d, on how many seeds
/// k-NN peaked and fell (by more than [`FALL_POINTS`]), by how much, the spread of the final
/// k-NN over seeds and the linear probe; then Mixed BT − BT per seed.
pub fn verdict(all: &[RunResult], planned: &[StudyRun]) -> String {
    let mut out = String::new();
    let stopped: Vec<&RunResult> = all.iter().filter(|r| r.stopped.is_some()).collect();
    out.push_str(&format!(
        "{} of {} planned runs finished{}. A run *fell* when its k-NN top-1 ended more than {FALL_POINTS} point below its peak.\n\n",
        all.len(),
        planned.len(),
        if stopped.is_empty() { String::new() } else { format!(" ({} of them stopped before their last epoch: below, and left out of every figure)", stopped.len()) }
    ));
    for r in &stopped {
        let last = r.knn.iter().skip(1).next_back().map_or("no k-NN evaluation".to_string(), |k| format!("last k-NN {:.2} % at epoch {}", k.1, k.0));
        out.push_str(&format!(
            "- {} (d = {}), seed {}: {} ({last}).\n",
            crate::method::method_title(&r.run.method),
            r.run.d,
            r.run.seed,
            r.stopped.as_deref().unwrap_or_default().trim_end_matches('.')
        ));
    }
    if !stopped.is_empty() {
        out.push('\n');
    }
    let res: Vec<RunResult> = all.iter().filter(|r| r.stopped.is_none()).cloned().collect();
    let res = res.as_slice();
    let mut dims: Vec<usize> = res.iter().map(|r| r.run.d).collect();
    dims.sort();
    dims.dedup();
    for &d in &dims {
        for m in plan_methods(planned) {
            let rs: Vec<&RunResult> = res.iter().filter(|r| r.run.d == d && r.run.method == m).collect();
            if rs.is_empty() {
                continue;
            }
            let fell = rs.iter().filter(|r| r.fell()).count();
            let mean = |f: &dyn Fn(&RunResult) -> f64| rs.iter().map(|r| f(r)).sum::<f64>() / rs.len() as f64;
            let finals = rs.iter().map(|r| r.knn_final);
            let (lo, hi) = finals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
            let lin: Vec<f64> = rs.iter().filter_map(|r| r.linear_top1).collect();
            let linear = if lin.is_empty() { String::new() } else { format!("; linear probe {:.2} % on average", lin.iter().sum::<f64>() / lin.len() as f64) };
            out.push_str(&format!(
                "- {} (d = {d}): k-NN peaked and fell on {fell} of {} seeds; mean peak {:.2} % (epochs {}), mean final {:.2} % (seeds from {lo:.2} to {hi:.2}; drop {:.2} points, largest {:.2}); gain over the random network {:.2} points (smallest {:.2}){linear}.\n",
                crate::method::method_title(&m),
                rs.len(),
                mean(&|r| r.knn_peak),
                rs.iter().map(|r| r.peak_epoch.to_string()).collect::<Vec<_>>().join(", "),
                mean(&|r| r.knn_final),
                mean(&|r| r.drop_from_peak()),
                rs.iter().map(|r| r.drop_from_peak()).fold(f64::NEG_INFINITY, f64::max),
                mean(&|r| r.gain()),
                rs.iter().map(|r| r.gain()).fold(f64::INFINITY, f64::min),
            ));
        }
        // Paired by seed: Mixed BT − BT at the end.
        let pairs: Vec<(u64, f64)> = res
            .iter()
            .filter(|r| r.run.d == d && r.run.method == "mixbt")
            .filter_map(|m| res.iter().find(|b| b.run.d == d && b.run.method == "bt" && b.run.seed == m.run.seed).map(|b| (m.run.seed, m.knn_final - b.knn_final)))
            .collect();
        if !pairs.is_empty() {
            let ahead = pairs.iter().filter(|p| p.1 > 0.0).count();
            out.push_str(&format!(
                "- d = {d}, final k-NN of Mixed BT − BT by seed: {} (Mixed BT ahead on {ahead} of {}; with this few seeds only the sign is worth reading).\n",
                pairs.iter().map(|(s, x)| format!("seed {s}: {x:+.2}")).collect::<Vec<_>>().join(", "),
                pairs.len()
            ));
        }
    }
    // The overfitting verdict needs both Barlow Twins arms among the finished runs.
    if !(res.iter().any(|r| r.run.method == "bt") && res.iter().any(|r| r.run.method == "mixbt")) {
        return out;
    }
    let bt_fell = res.iter().filter(|r| r.run.method == "bt" && r.fell()).count();
    let mix_fell = res.iter().filter(|r| r.run.method == "mixbt" && r.fell()).count();
    let (nb, nm) = (res.iter().filter(|r| r.run.method == "bt").count(), res.iter().filter(|r| r.run.method == "mixbt").count());
    out.push_str(&format!(
        "\nVerdict: Barlow Twins' k-NN fell from its peak in {bt_fell} of {nb} runs, Mixed Barlow Twins' in {mix_fell} of {nm}. {}\n",
        match (bt_fell, mix_fell) {
            (0, 0) => "Neither curve bent at this budget: the paper's overfitting did not appear here.",
            (b, m) if b > m => "Barlow Twins fell more often, as the paper reports.",
            (b, m) if b == m => "Both fell equally often: no difference at this budget.",
            _ => "Mixed Barlow Twins fell more often: the opposite of the paper's report at this budget.",
        }
    ));
    out
}
