//! Model and checkpoint files: mixbt model files (safetensors + encoder config), the layout of
//! checkpoint folders, the PyTorch `.pth` import, and conversion for the Hub (model cards).

pub mod convert;
pub mod torch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::io::{atomic_write, read_safetensors, read_safetensors_metadata};
use crate::params::ParamStore;
use crate::{Error, Result};

/// File names inside a checkpoint folder `checkpoints/step-00000123/`.
pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";
/// A method's own tensors in a checkpoint folder (BYOL's predictor and target network, SimCLR's
/// `bn_last`), when it has any.
pub const METHOD_FILE: &str = "method.safetensors";
/// The file in `checkpoints/` naming the newest complete checkpoint folder.
pub const LATEST: &str = "latest";

/// A checkpoint folder from a checkpoint folder, a run folder or its `checkpoints/` folder.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join(STATE_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    for root in [path.join("checkpoints"), path.to_path_buf()] {
        let latest = root.join(LATEST);
        if latest.is_file() {
            let name = std::fs::read_to_string(&latest).map_err(|e| Error::io(&latest, e))?;
            let dir = root.join(name.trim());
            if dir.join(STATE_FILE).is_file() {
                return Ok(dir);
            }
            return Err(Error::format(&latest, format!("points to `{}`, which is not a complete checkpoint", name.trim())));
        }
    }
    Err(Error::format(path, "no checkpoint here (expected state.json, or checkpoints/latest in a run folder)"))
}

/// Metadata key holding the encoder config (JSON) in mixbt model files.
pub const META_ENCODER: &str = "mixbt.encoder";
/// Metadata key of the recipe name.
pub const META_PRESET: &str = "mixbt.preset";
/// Metadata key of the training step.
pub const META_STEP: &str = "mixbt.step";

/// Save a model: every tensor under its original name, the encoder config as safetensors
/// metadata, and the same config as `<stem>.json` beside the file.
pub fn save_model(
    path: &Path,
    store: &ParamStore,
    cfg: &crate::model::EncoderConfig,
    preset: Option<&str>,
    step: Option<usize>,
) -> Result<()> {
    let mut meta = BTreeMap::new();
    meta.insert(META_ENCODER.to_string(), serde_json::to_string(cfg)?);
    meta.insert("format".to_string(), "pt".to_string());
    if let Some(p) = preset {
        meta.insert(META_PRESET.to_string(), p.to_string());
    }
    if let Some(s) = step {
        meta.insert(META_STEP.to_string(), s.to_string());
    }
    store.save_safetensors(path, Some(meta.clone()))?;
    let json = serde_json::json!({ "encoder": cfg, "preset": preset, "step": step, "weights": path.file_name().map(|n| n.to_string_lossy().into_owned()) });
    atomic_write(&path.with_extension("json"), serde_json::to_string_pretty(&json)?.as_bytes())
}

/// Infer the encoder configuration from the names and shapes of a state dict (original
/// small-data-set `Model`, ImageNet `BarlowTwins`, or a bare torchvision ResNet).
pub fn infer_encoder_config(map: &BTreeMap<String, Tensor>) -> Result<crate::model::EncoderConfig> {
    use crate::model::{Arch, EncoderConfig, KeyLayout, ProjectorConfig, ResNetConfig, Stem};
    let has = |k: &str| map.contains_key(k);
    let any_prefix = |p: &str| map.keys().any(|k| k.starts_with(p));
    let arch = if map.keys().any(|k| k.contains(".conv3.")) { Arch::R50 } else { Arch::R18 };
    let layout = if has("f.0.weight") {
        if any_prefix("f.7.") {
            KeyLayout::SmallPooled
        } else {
            KeyLayout::SmallCifar
        }
    } else if has("backbone.conv1.weight") {
        KeyLayout::ImageNet
    } else if has("conv1.weight") {
        KeyLayout::TorchVision
    } else {
        return Err(Error::Checkpoint(
            "cannot recognise the model: no `f.0.weight` (small-data-set Model), `backbone.conv1.weight` (ImageNet BarlowTwins) or `conv1.weight` (torchvision ResNet)".into(),
        ));
    };
    let conv1_key = format!("{}.weight", layout.prefix("conv1"));
    let conv1 = map.get(&conv1_key).ok_or_else(|| Error::Checkpoint(format!("missing `{conv1_key}`")))?;
    let (c0, k) = (conv1.dim(0)?, conv1.dim(2)?);
    let stem = match (layout, k) {
        (KeyLayout::SmallCifar, _) => Stem::Cifar,
        (KeyLayout::SmallPooled, _) => Stem::Small64,
        (_, 7) => Stem::Imagenet,
        (_, 3) => Stem::Cifar,
        _ => return Err(Error::Checkpoint(format!("unexpected conv1 kernel {k}×{k}"))),
    };
    let backbone = ResNetConfig {
        arch,
        stem,
        width: c0 as f64 / 64.0,
        zero_init_residual: layout == KeyLayout::ImageNet,
        ..Default::default()
    };
    let fdim = backbone.feature_dim();
    // Projector: Linear weights at indices 0, 3, 6, … of `g`/`projector`.
    let pp = if layout == KeyLayout::TorchVision { "projector" } else { layout.prefix("projector") };
    let mut sizes = vec![fdim];
    let mut i = 0;
    let mut last_bias = false;
    while let Some(w) = map.get(&format!("{pp}.{}.weight", 3 * i)) {
        sizes.push(w.dim(0)?);
        last_bias = map.contains_key(&format!("{pp}.{}.bias", 3 * i));
        i += 1;
    }
    // A projector only when the file has one; a bare backbone (or a probe's) has none.
    // Hidden biases (the `ssl-sota` heads of SimCLR, BYOL and W-MSE runs) show on the first Linear.
    let hidden_bias = sizes.len() > 2 && map.contains_key(&format!("{pp}.0.bias"));
    let projector = if sizes.len() >= 2 { ProjectorConfig { sizes, last_bias, hidden_bias } } else { ProjectorConfig::none() };
    let layout = if layout == KeyLayout::TorchVision { KeyLayout::ImageNet } else { layout };
    let l2_normalize = matches!(layout, KeyLayout::SmallCifar | KeyLayout::SmallPooled);
    Ok(EncoderConfig { backbone, projector, layout, l2_normalize })
}

/// How strictly a state dict must match the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Every tensor of the model, nothing else.
    Strict,
    /// Only the backbone must be present (a bare torchvision ResNet, or a backbone export).
    BackboneOnly,
}

/// Build an encoder from a state dict with original names (config given or inferred).
pub fn encoder_from_map(
    map: &BTreeMap<String, Tensor>,
    cfg: Option<crate::model::EncoderConfig>,
    mode: LoadMode,
    device: &Device,
) -> Result<(crate::model::Encoder, ParamStore, crate::model::EncoderConfig)> {
    use crate::model::KeyLayout;
    let cfg = match cfg {
        Some(c) => c,
        None => infer_encoder_config(map)?,
    };
    // A bare torchvision state dict is renamed into the ImageNet layout.
    let renamed: BTreeMap<String, Tensor>;
    let map = if map.contains_key("conv1.weight") && cfg.layout == KeyLayout::ImageNet {
        renamed = map
            .iter()
            .filter_map(|(k, v)| KeyLayout::TorchVision.translate(k, KeyLayout::ImageNet).map(|k2| (k2, v.clone())))
            .collect();
        &renamed
    } else {
        map
    };
    let store = ParamStore::new(0, candle_core::DType::F32, device);
    let enc = crate::model::encoder(&cfg, store.var_builder())?;
    match mode {
        LoadMode::Strict => store.load_map(map)?,
        LoadMode::BackboneOnly => {
            let proj = cfg.layout.prefix("projector");
            // The projector may be absent; a classifier (`fc.*`, ImageNet probes) is not part of
            // the encoder and is left out.
            let only: BTreeMap<String, Tensor> = map
                .iter()
                .filter(|(k, _)| !k.starts_with(&format!("{proj}.")) && !k.starts_with("fc."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            // Check the backbone keys against a store without the projector's names.
            let missing: Vec<String> =
                store.names().into_iter().filter(|n| !n.starts_with(&format!("{proj}.")) && !only.contains_key(n)).collect();
            let unexpected: Vec<String> = only.keys().filter(|k| store.get(k).is_none()).cloned().collect();
            if !missing.is_empty() || !unexpected.is_empty() {
                return Err(Error::Checkpoint(format!(
                    "backbone does not match: missing keys: [{}]; unexpected keys: [{}]",
                    missing.join(", "),
                    unexpected.join(", ")
                )));
            }
            crate::params::check_finite(&only)?;
            for (k, v) in &only {
                store.set(k, v)?;
            }
        }
    }
    Ok((enc, store, cfg))
}

/// Load an encoder from a mixbt model file (`.safetensors` with config metadata), a checkpoint
/// or run folder, or a plain safetensors state dict (config inferred from the names and shapes).
pub fn load_encoder(path: &Path, device: &Device) -> Result<(crate::model::Encoder, ParamStore, crate::model::EncoderConfig)> {
    let file = if path.is_dir() {
        let run_model = path.join("model.safetensors");
        if run_model.is_file() && !path.join("state.json").is_file() {
            run_model
        } else {
            resolve(path)?.join(MODEL_FILE)
        }
    } else {
        path.to_path_buf()
    };
    if file.extension().map(|e| e == "pth" || e == "pt").unwrap_or(false) {
        let map = torch::read_state_dict(&file)?;
        let mode = if map.contains_key("conv1.weight") { LoadMode::BackboneOnly } else { LoadMode::Strict };
        return encoder_from_map(&map, None, mode, device).map_err(|e| reword(e, &file));
    }
    let meta = read_safetensors_metadata(&file)?;
    let map = read_safetensors(&file, &Device::Cpu)?;
    let cfg = match meta.get(META_ENCODER) {
        Some(j) => Some(serde_json::from_str(j).map_err(|e| Error::format(&file, format!("bad {META_ENCODER} metadata: {e}")))?),
        None => None,
    };
    let contents = meta.get("mixbt.contents").map(String::as_str).unwrap_or("full");
    let mode = if map.contains_key("conv1.weight") || contents != "full" { LoadMode::BackboneOnly } else { LoadMode::Strict };
    encoder_from_map(&map, cfg, mode, device).map_err(|e| reword(e, &file))
}

fn reword(e: Error, file: &Path) -> Error {
    match e {
        Error::Checkpoint(m) => Error::format(file, m),
        e => e,
    }
}

/// Load a linear-probe checkpoint as released (`checkpoint_*.pth` of `evaluate_imagenet.py`:
/// the backbone and its trained `fc`; or a converted `backbone+classifier` safetensors file) as a
/// [`Classifier`](crate::model::Classifier). A file without `fc.weight`/`fc.bias` is an error.
pub fn load_classifier(path: &Path, device: &Device) -> Result<crate::model::Classifier> {
    let map = if path.extension().map(|e| e == "pth" || e == "pt").unwrap_or(false) {
        torch::read_state_dict(path)?
    } else {
        read_safetensors(path, &Device::Cpu)?
    };
    let (w, b) = match (map.get("fc.weight"), map.get("fc.bias")) {
        (Some(w), Some(b)) => (w.clone(), b.clone()),
        _ => return Err(Error::format(path, "holds no classifier (`fc.weight`, `fc.bias`): a linear-probe checkpoint is needed; pre-training files have none")),
    };
    crate::params::check_finite(&[("fc.weight".to_string(), w.clone()), ("fc.bias".to_string(), b.clone())].into_iter().collect())
        .map_err(|e| reword(e, path))?;
    let (encoder, _, cfg) = encoder_from_map(&map, None, LoadMode::BackboneOnly, device).map_err(|e| reword(e, path))?;
    if w.dims() != [b.dim(0)?, cfg.feature_dim()] {
        return Err(Error::format(path, format!("`fc.weight` is {:?}, expected [{}, {}] for this backbone", w.dims(), b.dim(0)?, cfg.feature_dim())));
    }
    let fc = candle_nn::Linear::new(w.to_dtype(candle_core::DType::F32)?.to_device(device)?, Some(b.to_dtype(candle_core::DType::F32)?.to_device(device)?));
    Ok(crate::model::Classifier { encoder, fc })
}

/// Bring a recipe's JSON written before methods were plug-ins (top-level `loss`, `is_mixup`,
/// `lambda_reg_warmup_epochs`) to the current form (`method: {kind: barlow-twins, …}`); a
/// current one is left as it is. Every reader of recipes and checkpoints calls it (`train::migrate_json`; here so that the model cards can read old runs too).
pub fn migrate_recipe_json(v: &mut serde_json::Value) {
    let Some(obj) = v.as_object_mut() else { return };
    if obj.contains_key("method") || !obj.contains_key("loss") {
        return;
    }
    let loss = obj.remove("loss").unwrap_or_default();
    let is_mixup = obj.remove("is_mixup").unwrap_or(serde_json::Value::Bool(true));
    let ramp = obj.remove("lambda_reg_warmup_epochs").unwrap_or_default();
    obj.insert(
        "method".into(),
        serde_json::json!({ "kind": "barlow-twins", "loss": loss, "is_mixup": is_mixup, "lambda_reg_warmup_epochs": ramp }),
    );
}
