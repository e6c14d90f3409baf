//! Shapes and parameter names of every arch × stem, BatchNorm statistics as PyTorch, the max-pool,
//! and initialisation.

use candle_core::{DType, Device, ModuleT, Tensor, Var};
use mixbt::model::layers::{batch_norm, max_pool2d, BatchNormConfig};
use mixbt::model::{encoder, Arch, EncoderConfig, KeyLayout, Stem};
use mixbt::params::ParamStore;

fn bn_names(p: &str) -> Vec<String> {
    ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"].iter().map(|s| format!("{p}.{s}")).collect()
}

/// The ResNet-18 CIFAR `Model` state-dict keys, written out from reference Appendix A.
fn appendix_a_r18(stage_base: usize) -> Vec<String> {
    let mut k = vec!["f.0.weight".to_string()];
    k.extend(bn_names("f.1"));
    for s in 0..4 {
        let l = stage_base + s;
        for b in 0..2 {
            let p = format!("f.{l}.{b}");
            k.push(format!("{p}.conv1.weight"));
            k.extend(bn_names(&format!("{p}.bn1")));
            k.push(format!("{p}.conv2.weight"));
            k.extend(bn_names(&format!("{p}.bn2")));
            if b == 0 && s > 0 {
                k.push(format!("{p}.downsample.0.weight"));
                k.extend(bn_names(&format!("{p}.downsample.1")));
            }
        }
    }
    k.push("g.0.weight".into());
    k.extend(bn_names("g.1"));
    k.push("g.3.weight".into());
    k.push("g.3.bias".into());
    k.sort();
    k
}

#[test]
fn r18_cifar_names_and_sizes_match_appendix_a() {
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    let cfg = EncoderConfig::small(Arch::R18, Stem::Cifar, 1024, 1.0);
    let _enc = encoder(&cfg, store.var_builder()).unwrap();
    assert_eq!(store.names(), appendix_a_r18(3));
    assert_eq!(store.names().len(), 128);
    // 11,967,936 f32 elements (≈ 47.9 MB) plus 21 int64 `num_batches_tracked` scalars.
    let floats: usize = store.all().iter().filter(|(_, v)| v.dtype() == DType::F32).map(|(_, v)| v.elem_count()).sum();
    assert_eq!(floats, 11_967_936, "f32 elements of the R18 CIFAR state dict");
    assert_eq!(store.all().iter().filter(|(_, v)| v.dtype() == DType::I64).count(), 21);
    let shape = |n: &str| store.get(n).unwrap().dims().to_vec();
    assert_eq!(shape("f.0.weight"), [64, 3, 3, 3]);
    assert_eq!(shape("f.4.0.downsample.0.weight"), [128, 64, 1, 1]);
    assert_eq!(shape("f.6.1.conv2.weight"), [512, 512, 3, 3]);
    assert_eq!(shape("g.0.weight"), [512, 512]);
    assert_eq!(shape("g.3.weight"), [1024, 512]);
    assert_eq!(store.get("f.1.num_batches_tracked").unwrap().dtype(), DType::I64);
}

#[test]
fn small64_layout_shifts_layers_by_one() {
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    let cfg = EncoderConfig::small(Arch::R18, Stem::Small64, 1024, 1.0);
    encoder(&cfg, store.var_builder()).unwrap();
    assert_eq!(store.names(), appendix_a_r18(4));
}

#[test]
fn r50_cifar_has_326_tensors_and_bottleneck_shapes() {
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    let cfg = EncoderConfig::small(Arch::R50, Stem::Cifar, 1024, 0.25);
    encoder(&cfg, store.var_builder()).unwrap();
    assert_eq!(store.names().len(), 326);
    let shape = |n: &str| store.get(n).unwrap().dims().to_vec();
    // width 0.25: planes 16, 32, 64, 128; expansion 4
    assert_eq!(shape("f.3.0.conv1.weight"), [16, 16, 1, 1]);
    assert_eq!(shape("f.3.0.conv3.weight"), [64, 16, 1, 1]);
    assert_eq!(shape("f.3.0.downsample.0.weight"), [64, 16, 1, 1]); // layer1.0 has a downsample in R50
    assert_eq!(shape("f.4.0.conv2.weight"), [32, 32, 3, 3]);
    assert_eq!(shape("f.6.2.bn3.weight"), [512]);
    assert_eq!(shape("g.0.weight"), [512, 512]);
    assert!(store.get("f.5.5.conv3.weight").is_some());
}

#[test]
fn imagenet_layout_uses_torchvision_names() {
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    let cfg = EncoderConfig::imagenet("64-64-32", 0.125).unwrap();
    encoder(&cfg, store.var_builder()).unwrap();
    let names = store.names();
    for n in [
        "backbone.conv1.weight",
        "backbone.bn1.running_var",
        "backbone.layer1.0.downsample.0.weight",
        "backbone.layer4.2.bn3.weight",
        "projector.0.weight",
        "projector.1.weight",
        "projector.3.weight",
        "projector.4.running_mean",
        "projector.6.weight",
    ] {
        assert!(names.contains(&n.to_string()), "missing {n}");
    }
    assert!(!names.iter().any(|n| n.starts_with("projector.6.bias")), "last ImageNet Linear has no bias");
    assert_eq!(store.get("backbone.conv1.weight").unwrap().dims(), [8, 3, 7, 7]);
    // zero_init_residual: the last BN of every block starts at 0.
    let w: Vec<f32> = store.get("backbone.layer2.1.bn3.weight").unwrap().to_vec1().unwrap();
    assert!(w.iter().all(|&x| x == 0.0));
    let w: Vec<f32> = store.get("backbone.layer2.1.bn2.weight").unwrap().to_vec1().unwrap();
    assert!(w.iter().all(|&x| x == 1.0));
}

#[test]
fn key_table_translates_between_layouts() {
    let k = KeyLayout::SmallCifar.translate("f.3.0.conv1.weight", KeyLayout::SmallPooled).unwrap();
    assert_eq!(k, "f.4.0.conv1.weight");
    let k = KeyLayout::TorchVision.translate("layer4.2.bn3.running_var", KeyLayout::ImageNet).unwrap();
    assert_eq!(k, "backbone.layer4.2.bn3.running_var");
    assert_eq!(KeyLayout::SmallCifar.translate("f.1.weight", KeyLayout::TorchVision).unwrap(), "bn1.weight");
    assert_eq!(KeyLayout::SmallCifar.translate("g.3.bias", KeyLayout::TorchVision), None);
    assert_eq!(KeyLayout::SmallCifar.translate("h.0.weight", KeyLayout::ImageNet), None);
}

#[test]
fn output_shapes_every_arch_and_stem() {
    let dev = Device::Cpu;
    for (arch, stem, hw, fdim) in [
        (Arch::R18, Stem::Cifar, 32, 64),
        (Arch::R18, Stem::Small64, 64, 64),
        (Arch::R50, Stem::Cifar, 32, 256),
        (Arch::R50, Stem::Small64, 64, 256),
    ] {
        let store = ParamStore::new(1, DType::F32, &dev);
        let cfg = EncoderConfig::small(arch, stem, 32, 0.125);
        let enc = encoder(&cfg, store.var_builder()).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, hw, hw), &dev).unwrap();
        let fm = enc.backbone.forward_features_t(&x, true).unwrap();
        assert_eq!(fm.dims(), [2, fdim, 4, 4], "{arch:?} {stem:?}: final map is 4×4 as in the reference");
        let (f, z) = enc.forward_t(&x, true).unwrap();
        assert_eq!(f.dims(), [2, fdim]);
        assert_eq!(z.dims(), [2, 32]);
        let (f, _) = enc.forward_model_t(&x, false).unwrap();
        let norms: Vec<f32> = f.sqr().unwrap().sum(1).unwrap().to_vec1().unwrap();
        assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5));
    }
    let store = ParamStore::new(1, DType::F32, &dev);
    let cfg = EncoderConfig::imagenet("32-16", 0.125).unwrap();
    let enc = encoder(&cfg, store.var_builder()).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &dev).unwrap();
    assert_eq!(enc.backbone.forward_features_t(&x, true).unwrap().dims(), [2, 256, 2, 2]);
    assert_eq!(enc.forward_t(&x, false).unwrap().1.dims(), [2, 16]);
}

#[test]
fn same_seed_same_network_different_seed_different() {
    let cfg = EncoderConfig::small(Arch::R18, Stem::Cifar, 16, 0.125);
    let mk = |seed| {
        let s = ParamStore::new(seed, DType::F32, &Device::Cpu);
        encoder(&cfg, s.var_builder()).unwrap();
        s.get("f.3.0.conv1.weight").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    assert_eq!(mk(5), mk(5));
    assert_ne!(mk(5), mk(6));
}

#[test]
fn initialisation_follows_pytorch() {
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    encoder(&EncoderConfig::small(Arch::R18, Stem::Cifar, 1024, 1.0), store.var_builder()).unwrap();
    let vals = |n: &str| store.get(n).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let std = |v: &[f32]| {
        let m = v.iter().sum::<f32>() / v.len() as f32;
        (v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / v.len() as f32).sqrt()
    };
    // Replaced conv1: PyTorch default, U(±1/√27).
    let v = vals("f.0.weight");
    let b = 1.0 / 27f32.sqrt();
    assert!(v.iter().all(|x| x.abs() <= b));
    assert!((std(&v) - b / 3f32.sqrt()).abs() < 0.15 * b);
    // torchvision convs: N(0, √(2/fan_out)), fan_out = 256·9 for a layer3 3×3 conv.
    let v = vals("f.5.1.conv1.weight");
    let want = (2.0f32 / (256.0 * 9.0)).sqrt();
    assert!((std(&v) - want).abs() < 0.02 * want, "std {} want {want}", std(&v));
    // Linear: U(±1/√fan_in) for weight and bias.
    let v = vals("g.3.bias");
    assert!(v.iter().all(|x| x.abs() <= 1.0 / 512f32.sqrt()));
    assert!(vals("g.1.weight").iter().all(|&x| x == 1.0));
    assert!(vals("f.1.running_var").iter().all(|&x| x == 1.0));
}

#[test]
fn batch_norm_statistics_follow_pytorch() {
    let dev = Device::Cpu;
    let store = ParamStore::new(0, DType::F64, &dev);
    let bn = batch_norm(3, BatchNormConfig::default(), store.var_builder().pp("bn")).unwrap();
    // Non-trivial affine parameters.
    store.set("bn.weight", &Tensor::new(&[1.5f64, 0.5, 2.0], &dev).unwrap()).unwrap();
    store.set("bn.bias", &Tensor::new(&[0.1f64, -0.2, 0.3], &dev).unwrap()).unwrap();
    let x = Tensor::randn(0.5f64, 2.0, (4, 3, 5, 5), &dev).unwrap();
    let flat: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    let (n, c, hw) = (4, 3, 25);
    let mut mean = [0.0; 3];
    let mut var = [0.0; 3];
    for ch in 0..c {
        let vals: Vec<f64> = (0..n).flat_map(|i| (0..hw).map(move |j| (i, j))).map(|(i, j)| flat[(i * c + ch) * hw + j]).collect();
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        mean[ch] = m;
        var[ch] = vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / vals.len() as f64;
    }
    let y = bn.forward_t(&x, true).unwrap();
    let yv: Vec<f64> = y.flatten_all().unwrap().to_vec1().unwrap();
    let w = [1.5, 0.5, 2.0];
    let b = [0.1, -0.2, 0.3];
    for i in [0usize, 17, 99, 150, 299] {
        let ch = (i / hw) % c;
        let want = (flat[i] - mean[ch]) / (var[ch] + 1e-5).sqrt() * w[ch] + b[ch];
        assert!((yv[i] - want).abs() < 1e-9);
    }
    let m = (n * hw) as f64;
    let rm: Vec<f64> = bn.running_mean().to_vec1().unwrap();
    let rv: Vec<f64> = bn.running_var().to_vec1().unwrap();
    for ch in 0..c {
        assert!((rm[ch] - 0.1 * mean[ch]).abs() < 1e-12);
        assert!((rv[ch] - (0.9 + 0.1 * var[ch] * m / (m - 1.0))).abs() < 1e-12, "unbiased running var");
    }
    assert_eq!(bn.num_batches_tracked().unwrap(), 1);
    // Eval mode uses the running statistics and changes nothing.
    let ye: Vec<f64> = bn.forward_t(&x, false).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    for i in [0usize, 17, 299] {
        let ch = (i / hw) % c;
        let want = (flat[i] - rm[ch]) / (rv[ch] + 1e-5).sqrt() * w[ch] + b[ch];
        assert!((ye[i] - want).abs() < 1e-9);
    }
    assert_eq!(bn.num_batches_tracked().unwrap(), 1);
    // A second train step compounds with momentum 0.1.
    bn.forward_t(&x, true).unwrap();
    let rm2: Vec<f64> = bn.running_mean().to_vec1().unwrap();
    assert!((rm2[0] - (0.9 * 0.1 * mean[0] + 0.1 * mean[0])).abs() < 1e-12);
    assert_eq!(bn.num_batches_tracked().unwrap(), 2);
}

#[test]
fn batch_norm_1d_and_gradients() {
    let dev = Device::Cpu;
    let store = ParamStore::new(0, DType::F64, &dev);
    let bn = batch_norm(4, BatchNormConfig::default(), store.var_builder().pp("g.1")).unwrap();
    let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (6, 4), &dev).unwrap()).unwrap();
    let coef = Tensor::randn(0f64, 1.0, (6, 4), &dev).unwrap();
    let f = |xx: &Tensor| (bn.forward_t(xx, true).unwrap() * &coef).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
    let y = (bn.forward_t(x.as_tensor(), true).unwrap() * &coef).unwrap().sum_all().unwrap();
    let g: Vec<f64> = y.backward().unwrap().get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let base: Vec<f64> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    for i in 0..24 {
        let mut p = base.clone();
        p[i] += 1e-6;
        let up = f(&Tensor::from_vec(p.clone(), (6, 4), &dev).unwrap());
        p[i] -= 2e-6;
        let down = f(&Tensor::from_vec(p, (6, 4), &dev).unwrap());
        let fd = (up - down) / 2e-6;
        assert!((fd - g[i]).abs() < 1e-5, "entry {i}: {fd} vs {}", g[i]);
    }
}

fn naive_max_pool(x: &[f32], n: usize, c: usize, h: usize, w: usize, k: usize, s: usize, p: usize) -> Vec<f32> {
    let ho = (h + 2 * p - k) / s + 1;
    let wo = (w + 2 * p - k) / s + 1;
    let mut out = vec![f32::NEG_INFINITY; n * c * ho * wo];
    for b in 0..n * c {
        for i in 0..ho {
            for j in 0..wo {
                for di in 0..k {
                    for dj in 0..k {
                        let (y, xx) = ((i * s + di) as isize - p as isize, (j * s + dj) as isize - p as isize);
                        if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w {
                            let v = x[b * h * w + y as usize * w + xx as usize];
                            let o = &mut out[b * ho * wo + i * wo + j];
                            *o = o.max(v);
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn max_pool_forward_and_backward() {
    let dev = Device::Cpu;
    for (h, w, k, s, p) in [(8, 8, 3, 2, 1), (7, 9, 3, 2, 1), (6, 6, 2, 2, 0), (5, 5, 3, 1, 1)] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev).unwrap()).unwrap();
        let y = max_pool2d(x.as_tensor(), k, s, p).unwrap();
        let xv: Vec<f32> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let want = naive_max_pool(&xv, 2, 3, h, w, k, s, p);
        let got: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, want, "{h}x{w} k{k} s{s} p{p}");
        // d(sum y)/dx counts how many windows pick each input (random inputs: no ties).
        let g: Vec<f32> = y.sum_all().unwrap().backward().unwrap().get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let total: f32 = g.iter().sum();
        assert_eq!(total as usize, got.len());
        assert!(g.iter().all(|v| *v >= 0.0 && v.fract() == 0.0));
    }
}

/// Model construction errors are `Error::Field` and name the config field, whatever layer finds it.
#[test]
fn invalid_configs_name_their_field() {
    let field = |cfg: &EncoderConfig| -> (String, String) {
        let store = ParamStore::new(0, DType::F32, &Device::Cpu);
        match encoder(cfg, store.var_builder()) {
            Err(e @ mixbt::Error::Field { .. }) => {
                let msg = e.to_string();
                let mixbt::Error::Field { field, .. } = e else { unreachable!() };
                (field, msg)
            }
            Err(e) => panic!("expected a field error, got {e:?}"),
            Ok(_) => panic!("built an encoder from {cfg:?}"),
        }
    };
    let good = EncoderConfig::small(Arch::R18, Stem::Cifar, 32, 0.0625);
    for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let mut c = good.clone();
        c.backbone.width = w;
        let (f, msg) = field(&c);
        assert_eq!(f, "backbone.width", "{msg}");
        assert!(msg.contains("`backbone.width`") && msg.contains(&w.to_string()), "{msg}");
    }
    let mut c = good.clone();
    c.projector.sizes[0] = 7;
    let (f, msg) = field(&c);
    assert_eq!(f, "projector.sizes[0]");
    assert!(msg.contains('7') && msg.contains(&good.feature_dim().to_string()), "{msg}");
    let mut c = good.clone();
    c.projector.sizes.truncate(1);
    assert_eq!(field(&c).0, "projector.sizes");
    let mut c = good.clone();
    c.projector.sizes[1] = 0;
    assert_eq!(field(&c).0, "projector.sizes[1]");
    // with_width keeps the projector's input equal to the backbone's feature size.
    let w = good.clone().with_width(0.25);
    assert_eq!(w.projector.sizes, vec![w.feature_dim(), 512, 32]);
    encoder(&w, ParamStore::new(0, DType::F32, &Device::Cpu).var_builder()).unwrap();
}

/// The parameter count behind the `--width` memory check is exact for every arch × stem.
#[test]
fn parameter_count_without_building_the_model() {
    for (arch, stem, width, d) in [
        (Arch::R18, Stem::Cifar, 0.125, 64),
        (Arch::R18, Stem::Small64, 0.25, 32),
        (Arch::R50, Stem::Cifar, 0.0625, 16),
        (Arch::R50, Stem::Imagenet, 0.0625, 16),
    ] {
        let cfg = EncoderConfig::small(arch, stem, d, width);
        let store = ParamStore::new(0, DType::F32, &Device::Cpu);
        encoder(&cfg, store.var_builder()).unwrap();
        assert_eq!(cfg.num_params(), store.num_trainable() as u128, "{arch:?} {stem:?} ×{width}");
    }
    let cfg = EncoderConfig::imagenet("64-64-32", 0.0625).unwrap();
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    encoder(&cfg, store.var_builder()).unwrap();
    assert_eq!(cfg.num_params(), store.num_trainable() as u128);
    // Paper sizes: ResNet-18 11.2 M + projector; an absurd width does not overflow.
    assert_eq!(EncoderConfig::small(Arch::R18, Stem::Cifar, 1024, 1.0).backbone.num_params(), 11_168_832);
    assert!(EncoderConfig::small(Arch::R18, Stem::Cifar, 1024, 1e9).num_params() > 1u128 << 64);
}

/// Weights with NaN are refused at load time, naming the tensor.
#[test]
fn non_finite_weights_are_refused_by_name() {
    let cfg = EncoderConfig::small(Arch::R18, Stem::Cifar, 16, 0.0625);
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    encoder(&cfg, store.var_builder()).unwrap();
    let mut map = store.tensors();
    let w = map["g.0.weight"].clone();
    map.insert("g.0.weight".into(), (w.ones_like().unwrap() * f64::INFINITY).unwrap());
    let err = store.load_map(&map).unwrap_err().to_string();
    assert!(err.contains("g.0.weight") && err.contains("NaN or infinite"), "{err}");
}
