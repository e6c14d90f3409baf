//! Checkpoint files: safetensors I/O (atomic writes), key checking, and the PyTorch `.pth` import.

pub mod torch;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::params::ParamStore;
use crate::{Error, Result};

/// Write `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
/// A crash leaves either the old file or the new one, never a half-written file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let res = (|| -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// The temporary name used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Serialise tensors (any device) to safetensors bytes, with optional string metadata.
pub fn safetensors_bytes(tensors: &BTreeMap<String, Tensor>, metadata: Option<BTreeMap<String, String>>) -> Result<Vec<u8>> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let meta: Option<HashMap<String, String>> = metadata.map(|m| m.into_iter().collect());
    safetensors::serialize(cpu.iter().map(|(k, t)| (k.as_str(), t)), meta)
        .map_err(|e| Error::msg(format!("safetensors serialisation: {e}")))
}

/// Write tensors as a safetensors file, atomically.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>, metadata: Option<BTreeMap<String, String>>) -> Result<()> {
    atomic_write(path, &safetensors_bytes(tensors, metadata)?)
}

/// Read every tensor of a safetensors file onto `device`.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::format(path, format!("not a valid safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let t = candle_core::safetensors::Load::load(&view, device)
            .map_err(|e| Error::format(path, format!("tensor `{name}`: {e}")))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Metadata strings of a safetensors file.
pub fn read_safetensors_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::format(path, format!("not a valid safetensors file: {e}")))?;
    Ok(meta.metadata().clone().map(|m| m.into_iter().collect()).unwrap_or_default())
}

/// Check that `map` has exactly the store's names with the same shapes; one error lists every
/// missing, unexpected and mis-shaped key.
pub fn check_keys(store: &ParamStore, map: &BTreeMap<String, Tensor>) -> Result<()> {
    let mut missing = vec![];
    let mut mis = vec![];
    for (name, var) in store.all() {
        match map.get(&name) {
            None => missing.push(name),
            Some(t) if t.dims() != var.dims() => {
                mis.push(format!("{name} (file {:?}, model {:?})", t.dims(), var.dims()))
            }
            _ => {}
        }
    }
    let unexpected: Vec<String> = map.keys().filter(|k| store.get(k).is_none()).cloned().collect();
    if missing.is_empty() && unexpected.is_empty() && mis.is_empty() {
        return Ok(());
    }
    let mut msg = String::from("checkpoint does not match the model:");
    let list = |v: &[String]| {
        let mut s = v.iter().take(12).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > 12 {
            s.push_str(&format!(", … ({} in all)", v.len()));
        }
        s
    };
    if !missing.is_empty() {
        msg.push_str(&format!("\n  missing keys: {}", list(&missing)));
    }
    if !unexpected.is_empty() {
        msg.push_str(&format!("\n  unexpected keys: {}", list(&unexpected)));
    }
    if !mis.is_empty() {
        msg.push_str(&format!("\n  mis-shaped keys: {}", list(&mis)));
    }
    Err(Error::Checkpoint(msg))
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
    let projector = if sizes.len() >= 2 {
        ProjectorConfig { sizes, last_bias }
    } else {
        // A bare backbone: a placeholder projector; loaders use BackboneOnly.
        ProjectorConfig { sizes: vec![fdim, 8], last_bias: false }
    };
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
            crate::train::checkpoint::resolve(path)?.join(crate::train::checkpoint::MODEL_FILE)
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
