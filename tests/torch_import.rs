//! Import of the original PyTorch checkpoints: the committed small fixtures (always), and the
//! reference checkpoint of ../shared/data/reference (when present): import + `embed --transform
//! none` must reproduce PyTorch's features to ≤ 1e-4.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use mixbt::ckpt::{self, torch, LoadMode};
use mixbt::model::{Arch, KeyLayout, Stem};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn rows(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).collect()
}

/// Load a .pth, embed the fixture's images (pixel/255 then Normalize, eval mode) and compare
/// features and projections with PyTorch's.
fn check_small(pth: &Path, features: &Path, stem: Stem) {
    let r = json(features);
    let map = torch::read_state_dict(pth).unwrap();
    assert!(!map.keys().any(|k| torch::is_thop_key(k)), "thop keys are dropped");
    let want_keys: Vec<String> = r["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let mut got_keys: Vec<String> = map.keys().cloned().collect();
    let mut wk = want_keys.clone();
    got_keys.sort();
    wk.sort();
    assert_eq!(got_keys, wk);
    let (enc, store, cfg) = ckpt::encoder_from_map(&map, None, LoadMode::Strict, &Device::Cpu).unwrap();
    assert_eq!(cfg.backbone.arch, Arch::R18);
    assert_eq!(cfg.backbone.stem, stem);
    assert_eq!(cfg.layout, if stem == Stem::Cifar { KeyLayout::SmallCifar } else { KeyLayout::SmallPooled });
    let size = r["size"].as_u64().unwrap() as usize;
    let mean: Vec<f32> = r["normalize_mean"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let std: Vec<f32> = r["normalize_std"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let t = mixbt::data::Transform { ops: vec![], mean: [mean[0], mean[1], mean[2]], std: [std[0], std[1], std[2]] };
    let pix = r["pixels_hwc_u8"].as_array().unwrap();
    let mut buf = vec![];
    for p in pix {
        let px: Vec<u8> = p.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect();
        let img = image::RgbImage::from_raw(size as u32, size as u32, px).unwrap();
        let mut b = vec![0f32; 3 * size * size];
        t.to_tensor_into(&img, &mut b);
        buf.extend(b);
    }
    let x = Tensor::from_vec(buf, (pix.len(), 3, size, size), &Device::Cpu).unwrap();
    // Every BN buffer (running mean/var, counters) before the eval-mode passes.
    let buffers = |st: &mixbt::params::ParamStore| -> Vec<(String, Vec<f64>)> {
        st.all()
            .into_iter()
            .filter(|(k, _)| mixbt::params::is_buffer(k))
            .map(|(k, v)| (k, v.as_tensor().to_dtype(candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()))
            .collect()
    };
    let before = buffers(&store);
    assert!(before.iter().any(|(k, _)| k.ends_with("running_var")), "the fixture has BN statistics");
    let (f, z) = enc.forward_model_t(&x, false).unwrap();
    for (got, want) in [(f.clone(), rows(&r["features"])), (z, rows(&r["projections"]))] {
        let got: Vec<Vec<f32>> = got.to_vec2().unwrap();
        assert_eq!((got.len(), got[0].len()), (want.len(), want[0].len()));
        let max = got.iter().flatten().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max <= 1e-4, "max abs difference {max} > 1e-4");
    }
    // Eval mode leaves the running statistics alone: the same buffers, bit for bit, and a second
    // pass gives the same output as the first (which matched PyTorch's).
    let (f2, _) = enc.forward_model_t(&x, false).unwrap();
    assert_eq!(buffers(&store), before, "an eval-mode forward changed BN buffers");
    let diff = (f2 - f).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(diff, 0.0, "a second eval-mode pass differs from the first");
}

#[test]
fn small_model_cifar_fixture() {
    check_small(&fixture("tiny_r18_cifar.pth"), &fixture("tiny_r18_cifar_features.json"), Stem::Cifar);
}

#[test]
fn small_model_stl_layout_fixture() {
    check_small(&fixture("tiny_r18_small64.pth"), &fixture("tiny_r18_small64_features.json"), Stem::Small64);
}

#[test]
fn imagenet_backbone_and_probe_checkpoints() {
    // A bare torchvision ResNet-50 (the released resnet50.pth format): backbone only.
    let map = torch::read_state_dict(&fixture("tiny_resnet50_backbone.pth")).unwrap();
    assert!(map.contains_key("layer4.2.bn3.weight") && !map.contains_key("fc.weight"));
    let (enc, store, cfg) = ckpt::encoder_from_map(&map, None, LoadMode::BackboneOnly, &Device::Cpu).unwrap();
    assert_eq!((cfg.backbone.arch, cfg.backbone.stem), (Arch::R50, Stem::Imagenet));
    let w = store.get("backbone.layer4.2.bn3.weight").unwrap().as_tensor().to_vec1::<f32>().unwrap();
    assert_eq!(w, map["layer4.2.bn3.weight"].to_vec1::<f32>().unwrap());
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    // The embedding is the pooled backbone feature: layer4's output width (2048 × the fixture's 1/16).
    let out_ch = map["layer4.2.conv3.weight"].dims()[0];
    assert_eq!(out_ch, 128);
    assert_eq!(enc.embed(&x).unwrap().dims(), [2, out_ch]);
    // A backbone is a backbone: no (placeholder) projector; forward_t's second output is the
    // pooled feature itself, and d is the feature size.
    assert!(cfg.projector.is_none() && enc.projector.is_none(), "{:?}", cfg.projector);
    assert_eq!(cfg.out_dim(), out_ch);
    let (f, z) = enc.forward_t(&x, false).unwrap();
    assert_eq!(f.to_vec2::<f32>().unwrap(), z.to_vec2::<f32>().unwrap());
    assert!(!store.names().iter().any(|n| n.contains("projector")));
    // Converted, the config and the model card say so, and the file loads back as a backbone.
    let out = tempfile::tempdir().unwrap();
    let conv = mixbt::ckpt::convert::convert(&fixture("tiny_resnet50_backbone.pth"), "resnet50.pth", out.path()).unwrap();
    assert_eq!(conv.contents, "backbone");
    let config = json(&out.path().join("config.json"));
    assert_eq!(config["encoder"]["projector"]["sizes"], serde_json::json!([]), "{config}");
    let card = std::fs::read_to_string(out.path().join("README.md")).unwrap();
    assert!(card.contains("| projector | none: a backbone"), "{card}");
    let (enc2, _, cfg2) = ckpt::load_encoder(&out.path().join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(cfg2.projector.is_none());
    assert_eq!(enc2.embed(&x).unwrap().to_vec2::<f32>().unwrap(), enc.embed(&x).unwrap().to_vec2::<f32>().unwrap());
    // The linear-probe checkpoint: a dict with an argparse.Namespace, `model` with `module.` keys and fc.
    let probe = torch::read_state_dict(&fixture("tiny_imagenet_probe.pth")).unwrap();
    assert!(probe.contains_key("fc.weight") && probe.contains_key("conv1.weight"));
    assert!(!probe.keys().any(|k| k.starts_with("module.")));
    ckpt::encoder_from_map(&probe, None, LoadMode::BackboneOnly, &Device::Cpu).unwrap();
}

#[test]
fn mismatched_checkpoint_lists_every_problem() {
    let mut map = torch::read_state_dict(&fixture("tiny_r18_cifar.pth")).unwrap();
    map.remove("f.3.0.conv1.weight");
    map.insert("f.9.weird".into(), Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap());
    let g = map["g.3.weight"].clone();
    map.insert("g.3.weight".into(), g.narrow(0, 0, 8).unwrap());
    let cfg = ckpt::infer_encoder_config(&torch::read_state_dict(&fixture("tiny_r18_cifar.pth")).unwrap()).unwrap();
    let err = ckpt::encoder_from_map(&map, Some(cfg), LoadMode::Strict, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("missing keys: f.3.0.conv1.weight"), "{err}");
    assert!(err.contains("unexpected keys: f.9.weird"), "{err}");
    assert!(err.contains("mis-shaped keys: g.3.weight"), "{err}");
    // Not a checkpoint at all.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.pth");
    std::fs::write(&p, b"garbage").unwrap();
    let err = torch::read_state_dict(&p).err().unwrap().to_string();
    assert!(err.contains("x.pth"), "{err}");
}

/// The reference artifact made by PyTorch in the original format (../shared, when present).
#[test]
fn shared_reference_checkpoint_reproduces_pytorch_features() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/reference");
    let pth = root.join("mixbt_resnet18_cifar10_d1024_torch.pth");
    if !pth.is_file() {
        // Locally the reference data are optional; in CI (CI set) they must be there.
        assert!(std::env::var_os("CI").is_none(), "CI: the reference checkpoint {} is missing", pth.display());
        eprintln!("skipped: {} not present", pth.display());
        return;
    }
    let r = json(&root.join("mixbt_resnet18_cifar10_features.json"));
    let map = torch::read_state_dict(&pth).unwrap();
    let (enc, _, cfg) = ckpt::encoder_from_map(&map, None, LoadMode::Strict, &Device::Cpu).unwrap();
    assert_eq!((cfg.backbone.width, cfg.out_dim()), (1.0, 1024));
    // embed --transform none: ToTensor + Normalize of the PNGs, sorted by name.
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("images")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mean: Vec<f32> = r["normalize_mean"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let std: Vec<f32> = r["normalize_std"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let t = mixbt::data::Transform { ops: vec![], mean: [mean[0], mean[1], mean[2]], std: [std[0], std[1], std[2]] };
    let mut buf = vec![];
    for f in &files {
        let img = image::open(f).unwrap().to_rgb8();
        let mut b = vec![0f32; 3 * 32 * 32];
        t.to_tensor_into(&img, &mut b);
        buf.extend(b);
    }
    let x = Tensor::from_vec(buf, (files.len(), 3, 32, 32), &Device::Cpu).unwrap();
    let f: Vec<Vec<f32>> = enc.embed(&x).unwrap().to_vec2().unwrap();
    let want = rows(&r["features"]);
    let max = f.iter().flatten().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max <= 1e-4, "features: max abs difference {max}");
    let (_, z) = enc.forward_model_t(&x, false).unwrap();
    let z: Vec<Vec<f32>> = z.to_vec2().unwrap();
    let want = rows(&r["projections"]);
    let max = z.iter().flatten().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max <= 1e-4, "projections: max abs difference {max}");
}

/// A released-format linear probe evaluated as released: backbone and `fc` from the DDP
/// checkpoint, logits equal to PyTorch's (`scripts/make_probe_logits.py`) within 1e-4.
#[test]
fn released_probe_gives_pytorchs_logits() {
    let r = json(&fixture("tiny_imagenet_probe_logits.json"));
    let clf = ckpt::load_classifier(&fixture("tiny_imagenet_probe.pth"), &Device::Cpu).unwrap();
    assert_eq!(clf.num_classes() as u64, r["classes"].as_u64().unwrap());
    let size = r["size"].as_u64().unwrap() as usize;
    let v = |k: &str| -> [f32; 3] {
        let a: Vec<f32> = r[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        [a[0], a[1], a[2]]
    };
    let t = mixbt::data::Transform::normalize_only((v("normalize_mean"), v("normalize_std")));
    let pix = r["pixels_hwc_u8"].as_array().unwrap();
    let mut buf = vec![];
    for p in pix {
        let px: Vec<u8> = p.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect();
        let mut b = vec![0f32; 3 * size * size];
        t.to_tensor_into(&image::RgbImage::from_raw(size as u32, size as u32, px).unwrap(), &mut b);
        buf.extend(b);
    }
    let x = Tensor::from_vec(buf, (pix.len(), 3, size, size), &Device::Cpu).unwrap();
    let got: Vec<Vec<f32>> = clf.forward(&x).unwrap().to_vec2().unwrap();
    let want = rows(&r["logits"]);
    assert_eq!((got.len(), got[0].len()), (want.len(), want[0].len()));
    let max = got.iter().flatten().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max <= 1e-4, "logits differ from PyTorch's by {max}");
    // A pre-training file (no fc) is not a classifier: a clear error naming the file.
    let err = ckpt::load_classifier(&fixture("tiny_resnet50_backbone.pth"), &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("tiny_resnet50_backbone.pth") && err.contains("fc.weight"), "{err}");
}
