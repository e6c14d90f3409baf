//! Import of PyTorch `.pth` files (the zip format of `torch.save`) as saved by the original code:
//!
//! - small-data-set `Model` state dicts (`f.*`, `g.*`), including thop's float64
//!   `total_ops`/`total_params` buffers (skipped);
//! - the ImageNet `resnet50.pth` (a bare torchvision ResNet-50 without `fc`);
//! - ImageNet training / linear-probe checkpoints: a dict with a nested `model` state dict whose
//!   keys carry DDP's `module.` prefix, next to a pickled `argparse.Namespace` (never executed:
//!   the pickle is interpreted as data, only tensors are taken).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Tensor;

use crate::{Error, Result};

/// Keys thop leaves in the original state dicts.
pub fn is_thop_key(k: &str) -> bool {
    let last = k.rsplit('.').next().unwrap_or(k);
    last == "total_ops" || last == "total_params"
}

fn read_key(path: &Path, key: Option<&str>) -> Result<Vec<(String, Tensor)>> {
    crate::io::guard(path, "PyTorch checkpoint", || {
        candle_core::pickle::read_all_with_key(path, key)
            .map_err(|e| Error::format(path, format!("cannot read as a PyTorch checkpoint (torch.save zip format): {e}")))
    })
}

/// Read the model state dict of a `.pth` file: the top-level dict, or its `model` /
/// `state_dict` entry; `module.` prefixes removed; thop keys dropped.
pub fn read_state_dict(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    if !path.is_file() {
        return Err(Error::format(path, "no such file"));
    }
    let mut tensors = read_key(path, None)?;
    if tensors.is_empty() {
        for key in ["model", "state_dict", "model_state_dict"] {
            if let Ok(t) = read_key(path, Some(key)) {
                if !t.is_empty() {
                    tensors = t;
                    break;
                }
            }
        }
    }
    if tensors.is_empty() {
        return Err(Error::format(path, "no tensors found (expected a state dict, or a dict with a `model` state dict)"));
    }
    let mut out = BTreeMap::new();
    for (k, t) in tensors {
        if is_thop_key(&k) {
            continue;
        }
        let k = k.strip_prefix("module.").map(String::from).unwrap_or(k);
        out.insert(k, t);
    }
    Ok(out)
}
