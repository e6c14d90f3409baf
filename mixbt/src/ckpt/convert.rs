//! Conversion of checkpoints (the original `.pth` files, or ours) into a Hub-ready folder:
//! `model.safetensors` (the original parameter names), `config.json` and a model card `README.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::ckpt::{self, LoadMode};
use crate::hub::{self, HubConfig, Released};
use crate::io::{atomic_write, write_safetensors};
use crate::model::{EncoderConfig, KeyLayout};
use crate::{Error, Result};

/// What a conversion found and wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Converted {
    pub source: String,
    pub out_dir: PathBuf,
    pub encoder: EncoderConfig,
    /// `full` (backbone + projector), `backbone`, or `backbone+classifier`.
    pub contents: String,
    pub tensors: usize,
    pub skipped_keys: Vec<String>,
    pub released: Option<Released>,
}

/// What `convert` writes into its folder; the model card `README.md` alone does not make a
/// folder hold a conversion (it may be the user's).
pub const OUTPUTS: crate::io::Outputs = crate::io::Outputs {
    previous: &["model.safetensors", "config.json"],
    removed: &["model.safetensors", "config.json"],
    what: "a previous conversion",
    hint: "replace it with --overwrite, or choose another --out",
};

/// Convert `src` (a `.pth`, `.safetensors` or run folder) into `out_dir`, replacing a previous
/// conversion there; `out_dir` is locked while it is written (another process writing it is an
/// error). `mixbt hub convert` refuses a folder holding one unless `--overwrite`.
pub fn convert(src: &Path, source_name: &str, out_dir: &Path) -> Result<Converted> {
    let is_pth = src.extension().map(|e| e == "pth" || e == "pt").unwrap_or(false);
    let (map, skipped): (BTreeMap<String, Tensor>, Vec<String>) = if is_pth {
        let raw = crate::io::guard(src, "PyTorch checkpoint", || {
            candle_core::pickle::read_all(src).map_err(|e| Error::format(src, format!("cannot read as a PyTorch checkpoint: {e}")))
        })?;
        let skipped: Vec<String> = raw.iter().map(|(k, _)| k.clone()).filter(|k| ckpt::torch::is_thop_key(k)).collect();
        (ckpt::torch::read_state_dict(src)?, skipped)
    } else {
        let (_, store, _) = ckpt::load_encoder(src, &Device::Cpu)?;
        (store.tensors(), vec![])
    };
    // A classifier (`fc.*`, ImageNet probe checkpoints) is kept next to the backbone.
    let classifier: BTreeMap<String, Tensor> = map.iter().filter(|(k, _)| k.starts_with("fc.")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let bare = map.contains_key("conv1.weight");
    let mode = if bare { LoadMode::BackboneOnly } else { LoadMode::Strict };
    let (_, store, cfg) = ckpt::encoder_from_map(&map, None, mode, &Device::Cpu).map_err(|e| match e {
        Error::Checkpoint(m) => Error::format(src, m),
        e => e,
    })?;
    let mut tensors = store.tensors();
    let contents = if bare {
        let proj = format!("{}.", cfg.layout.prefix("projector"));
        tensors.retain(|k, _| !k.starts_with(&proj));
        if classifier.is_empty() {
            "backbone"
        } else {
            tensors.extend(classifier);
            "backbone+classifier"
        }
    } else {
        "full"
    };
    // Held while the three files are written: two conversions into one folder never mix.
    let _lock = crate::io::DirLock::acquire(out_dir)?;
    let mut meta = BTreeMap::new();
    meta.insert(ckpt::META_ENCODER.to_string(), serde_json::to_string(&cfg)?);
    meta.insert("format".into(), "pt".into());
    meta.insert("mixbt.contents".into(), contents.into());
    meta.insert("mixbt.source".into(), source_name.into());
    write_safetensors(&out_dir.join("model.safetensors"), &tensors, Some(meta))?;
    let file_name = source_name.rsplit('/').next().unwrap_or(source_name);
    let released = hub::registry().checkpoints.into_iter().find(|c| c.file == file_name);
    let conv = Converted {
        source: source_name.to_string(),
        out_dir: out_dir.to_path_buf(),
        encoder: cfg,
        contents: contents.into(),
        tensors: tensors.len(),
        skipped_keys: skipped,
        released,
    };
    let config = serde_json::json!({"encoder": conv.encoder, "contents": conv.contents, "source": conv.source, "released": conv.released, "library": "mixbt", "weights": "model.safetensors"});
    atomic_write(&out_dir.join("config.json"), serde_json::to_string_pretty(&config)?.as_bytes())?;
    atomic_write(&out_dir.join("README.md"), model_card(&conv, None, None).as_bytes())?;
    Ok(conv)
}

/// What a model card says about the training run: from the registry for released files, from
/// the run's `recipe.json` (read as plain JSON: this layer knows no recipes) for our runs.
struct RunFacts {
    title: String,
    dataset: String,
    method: String,
    lambda_bt: Option<f64>,
    lambda_reg: Option<f64>,
    epochs: Option<f64>,
    batch: Option<f64>,
}

fn run_facts(c: &Converted, recipe: Option<&serde_json::Value>) -> RunFacts {
    if let Some(r) = &c.released {
        let method = if r.lambda_reg == 0.0 { "Barlow Twins" } else { "Mixed Barlow Twins" };
        return RunFacts {
            title: format!("{method} — {} ({})", c.encoder.backbone.arch.name(), r.dataset),
            dataset: r.dataset.clone(),
            method: method.into(),
            lambda_bt: Some(r.lambda_bt),
            lambda_reg: Some(r.lambda_reg),
            epochs: Some(r.epochs as f64),
            batch: None,
        };
    }
    let Some(r) = recipe else {
        return RunFacts { title: format!("{} (unknown run)", c.encoder.backbone.arch.name()), dataset: "unknown".into(), method: "unknown".into(), lambda_bt: None, lambda_reg: None, epochs: None, batch: None };
    };
    let mut r = r.clone();
    super::migrate_recipe_json(&mut r);
    let dataset = r["data"]["hub_dataset"].as_str().or(r["data"]["kind"].as_str()).unwrap_or("unknown").to_string();
    let m = &r["method"];
    let mixed = m["is_mixup"].as_bool().unwrap_or(true);
    let method = match m["kind"].as_str() {
        Some("simclr") => "SimCLR",
        Some("byol") => "BYOL",
        Some("wmse") => "W-MSE",
        _ if mixed => "Mixed Barlow Twins",
        _ => "Barlow Twins",
    };
    let bt = m["kind"].as_str() == Some("barlow-twins");
    RunFacts {
        title: format!("{method} — {} ×{} on {dataset} (recipe `{}`)", c.encoder.backbone.arch.name(), c.encoder.backbone.width, r["name"].as_str().unwrap_or("?")),
        dataset,
        method: method.into(),
        lambda_bt: m["loss"]["lambda_bt"].as_f64().filter(|_| bt),
        lambda_reg: m["loss"]["lambda_reg"].as_f64().filter(|_| bt).map(|l| if mixed { l } else { 0.0 }),
        epochs: r["epochs"].as_f64(),
        batch: r["batch_size"].as_f64(),
    }
}

/// A model card (Hub README with YAML front matter: license, library, tags, `datasets`,
/// `pipeline_tag`, and a `model-index` with this run's k-NN result when `summary` has one, so
/// that the Hub page lists it). `recipe`: the run's `recipe.json`, when it is a run of ours.
pub fn model_card(c: &Converted, summary: Option<&serde_json::Value>, recipe: Option<&serde_json::Value>) -> String {
    let e = &c.encoder;
    let facts = run_facts(c, recipe);
    let (knn, lin) = c.released.as_ref().map(|r| (r.knn_top1, r.linear_top1)).unwrap_or((None, None));
    let f = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_else(|| "–".into());
    let run_knn = summary.and_then(|s| s["knn_top1"].as_f64());
    let mut s = String::new();
    s.push_str("---\nlicense: mit\nlibrary_name: mixbt\npipeline_tag: image-feature-extraction\ntags:\n- self-supervised-learning\n- barlow-twins\n- mixed-barlow-twins\n- safetensors\n");
    if facts.dataset != "unknown" {
        s.push_str(&format!("datasets:\n- {}\n", facts.dataset));
    }
    let results: Vec<(&str, f64)> = [("k-NN top-1 (k=200, T=0.5), this run", run_knn), ("k-NN top-1 (paper)", knn), ("linear top-1 (paper)", lin)]
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect();
    if !results.is_empty() {
        s.push_str(&format!("model-index:\n- name: {}\n  results:\n", yaml_str(&facts.title)));
        for (name, v) in results {
            s.push_str(&format!(
                "  - task:\n      type: image-classification\n    dataset:\n      name: {d}\n      type: {d}\n    metrics:\n    - type: accuracy\n      value: {v}\n      name: {n}\n",
                d = yaml_str(&facts.dataset),
                n = yaml_str(name)
            ));
        }
    }
    s.push_str("---\n\n");
    s.push_str(&format!("# {}\n\n", facts.title));
    s.push_str(&format!("Self-supervised encoder trained with {} (\"Guarding Barlow Twins Against Overfitting with Mixed Samples\", arXiv 2312.02151).\n", facts.method));
    s.push_str(&format!("Converted by [mixbt](https://github.com/mixbt/mixbt) from `{}`.\n\n", c.source));
    s.push_str("| | |\n|---|---|\n");
    s.push_str(&format!("| architecture | {} (width ×{}), stem `{}` |\n", e.backbone.arch.name(), e.backbone.width, e.backbone.stem.name()));
    let projector = if e.projector.is_none() { "none: a backbone (embeddings are its pooled features)".to_string() } else { format!("{:?}", e.projector.sizes) };
    s.push_str(&format!("| feature size | {} |\n| projector | {projector} |\n", e.feature_dim()));
    s.push_str(&format!("| contents | {} |\n| parameter names | {} |\n", c.contents, match e.layout {
        KeyLayout::SmallCifar | KeyLayout::SmallPooled => "the original `model.py` `Model` (`f.*`, `g.*`)",
        _ => "torchvision (`backbone.*`), projector `projector.*`",
    }));
    s.push_str(&format!("| data set | {} |\n| method | {} |\n", facts.dataset, facts.method));
    s.push_str(&format!("| λ_BT / λ_reg | {} / {} |\n| epochs | {} |\n| batch size | {} |\n", f(facts.lambda_bt), f(facts.lambda_reg), f(facts.epochs), f(facts.batch)));
    s.push_str(&format!("| k-NN top-1 (paper) | {} |\n| linear top-1 (paper) | {} |\n", f(knn), f(lin)));
    if let Some(sm) = summary {
        s.push_str(&format!("| k-NN top-1 (this run) | {} |\n| k-NN top-1 at random init | {} |\n", sm["knn_top1"], sm["knn_top1_random_init"]));
    }
    s.push_str("\n## Use\n\n```sh\nmixbt embed --checkpoint hub:<org>/<repo>/model.safetensors --images <folder> --out features.safetensors\nmixbt knn --checkpoint hub:<org>/<repo>/model.safetensors --preset r18-cifar10 --data-dir <cifar10>\n```\n");
    s
}

/// A YAML scalar, quoted when it holds anything beyond plain characters.
fn yaml_str(v: &str) -> String {
    if v.chars().all(|c| c.is_ascii_alphanumeric() || "-_. ".contains(c)) && !v.is_empty() {
        v.to_string()
    } else {
        serde_json::to_string(v).unwrap_or_default()
    }
}

/// Read the JSON `config.json` beside a converted model, if any.
pub fn read_config(dir: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).ok()?).ok()
}

/// Push a run folder (or a converted model folder) to the Hub model repo `repo`. A run folder
/// without a model card gets one first (from its `model.safetensors` and `summary.json`), and a
/// `config.json` beside it.
pub fn push_run(cfg: &HubConfig, folder: &Path, repo: &str, message: &str, private: bool) -> Result<hub::push::PushReport> {
    if !folder.join("README.md").is_file() && folder.join("model.safetensors").is_file() {
        let tmp = folder.join(".hub-card");
        // The card names the run folder, not its local path.
        let name = folder.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_else(|| "run".into());
        let c = convert(&folder.join("model.safetensors"), &format!("run folder {name}"), &tmp)?;
        let json = |name: &str| -> Option<serde_json::Value> { std::fs::read_to_string(folder.join(name)).ok().and_then(|s| serde_json::from_str(&s).ok()) };
        atomic_write(&folder.join("README.md"), model_card(&c, json("summary.json").as_ref(), json("recipe.json").as_ref()).as_bytes())?;
        if !folder.join("config.json").is_file() {
            std::fs::copy(tmp.join("config.json"), folder.join("config.json")).map_err(|e| Error::io(folder.join("config.json"), e))?;
        }
        let _ = std::fs::remove_dir_all(&tmp);
    }
    hub::push::push_folder(cfg, repo, folder, message, private)
}
