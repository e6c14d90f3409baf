//! Training checkpoints: a folder `checkpoints/step-00000123/` holding `model.safetensors`,
//! `optimizer.safetensors`, the method's `method.safetensors` (when it has tensors of its own)
//! and `state.json` (recipe, step, epoch, optimiser scalars, RNG keys,
//! history). The folder is written under a temporary name and renamed, then `checkpoints/latest`
//! is replaced atomically: a crash never leaves a half-written checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::history::History;
use super::recipe::Recipe;
pub use crate::ckpt::{resolve, LATEST, METHOD_FILE, MODEL_FILE, OPTIMIZER_FILE, STATE_FILE};
use crate::eval::KnnResult;
use crate::io::{atomic_write, write_safetensors};
use crate::optim::Optimizer;
use crate::params::ParamStore;
use crate::{Error, Result};

/// Everything but the tensors. (`R` is only ever [`Recipe`]; [`read`](CheckpointState::read)
/// first takes the recipe as plain JSON, to bring an older version's up to date, and the rest —
/// the history with its columns in their order — as it is.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState<R = Recipe> {
    pub version: u32,
    pub recipe: R,
    pub seed: u64,
    /// Steps done.
    pub step: usize,
    /// Epoch in progress (0-based) and batches of it done.
    pub epoch: usize,
    pub batch_in_epoch: usize,
    /// Version 1 (before methods were plug-ins): Barlow Twins' λ_reg override, read only; since
    /// version 2 it is in `method_state`.
    #[serde(default, skip_serializing)]
    pub lambda_reg_override: Option<f64>,
    /// The method's scalars ([`Method::state_json`](crate::method::Method::state_json)); `null`
    /// in checkpoints written before methods were plug-ins.
    #[serde(default)]
    pub method_state: serde_json::Value,
    pub optimizer: serde_json::Value,
    pub rng: serde_json::Value,
    pub knn_random_init: Option<KnnResult>,
    pub last_knn: Option<KnnResult>,
    /// Seconds of training up to this checkpoint, over every sitting that worked on the run (0
    /// in checkpoints written before it was recorded).
    #[serde(default)]
    pub wall_seconds: f64,
    pub history: History,
}

impl CheckpointState {
    pub fn read(dir: &Path) -> Result<Self> {
        let p = dir.join(STATE_FILE);
        let s = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        let parse = || -> std::result::Result<Self, serde_json::Error> {
            let mut st: CheckpointState<serde_json::Value> = serde_json::from_str(&s)?;
            super::recipe::migrate_json(&mut st.recipe);
            let recipe: Recipe = serde_json::from_value(st.recipe)?;
            Ok(CheckpointState {
                version: st.version,
                recipe,
                seed: st.seed,
                step: st.step,
                epoch: st.epoch,
                batch_in_epoch: st.batch_in_epoch,
                lambda_reg_override: st.lambda_reg_override,
                method_state: st.method_state,
                optimizer: st.optimizer,
                rng: st.rng,
                knn_random_init: st.knn_random_init,
                last_knn: st.last_knn,
                wall_seconds: st.wall_seconds,
                history: st.history,
            })
        };
        parse().map_err(|e| Error::format(&p, format!("not a mixbt checkpoint state: {e}")))
    }
}

/// Write a checkpoint under `run_dir/checkpoints/` and keep the newest `keep`.
pub fn save(
    run_dir: &Path,
    store: &ParamStore,
    opt: &dyn Optimizer,
    method_tensors: &BTreeMap<String, Tensor>,
    state: &CheckpointState,
    keep: usize,
) -> Result<PathBuf> {
    let root = run_dir.join("checkpoints");
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let name = format!("step-{:08}", state.step);
    let dst = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let write = || -> Result<()> {
        store.save_safetensors(&tmp.join(MODEL_FILE), None)?;
        write_safetensors(&tmp.join(OPTIMIZER_FILE), &opt.state_tensors(), None)?;
        if !method_tensors.is_empty() {
            write_safetensors(&tmp.join(METHOD_FILE), method_tensors, None)?;
        }
        atomic_write(&tmp.join(STATE_FILE), serde_json::to_string_pretty(state)?.as_bytes())?;
        if dst.exists() {
            std::fs::remove_dir_all(&dst).map_err(|e| Error::io(&dst, e))?;
        }
        std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
        atomic_write(&root.join(LATEST), name.as_bytes())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Prune old checkpoints (never the one just written).
    let mut all: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(|e| Error::io(&root, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().map(|n| n.to_string_lossy().starts_with("step-")).unwrap_or(false))
        .collect();
    all.sort();
    if all.len() > keep.max(1) {
        for p in &all[..all.len() - keep.max(1)] {
            if p != &dst {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
    Ok(dst)
}
