//! Transfer targets in their real formats (fixtures written by scripts/make_transfer_fixtures.py
//! with numpy, scipy and Pillow), the original's splits, malformed inputs, the RandomState(42)
//! shuffle against numpy, the cached-feature probe against the uncached one, `mixbt transfer`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device};
use mixbt::data::transfer::{open_known, pil_crop, TargetSource, TargetSpec, TARGETS};
use mixbt::data::Split;
use mixbt::eval::transfer::{transfer, transfer_features, transfer_probe, TransferConfig, TransferTarget};
use mixbt::eval::{linear_probe, LinearProbeConfig};
use mixbt::model::{encoder, Arch, EncoderConfig, Encoder, Stem};
use mixbt::params::ParamStore;
use mixbt::rng::NumpyRandomState;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn root() -> PathBuf {
    fixtures().join("transfer")
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("expected.json")).unwrap()).unwrap()
}

fn tiny_encoder(stem: Stem) -> (Encoder, ParamStore, EncoderConfig) {
    let cfg = EncoderConfig::small(Arch::R18, stem, 16, 0.0625);
    let store = ParamStore::new(3, DType::F32, &Device::Cpu);
    let enc = encoder(&cfg, store.var_builder()).unwrap();
    (enc, store, cfg)
}

/// Copy a fixture target into a temporary root (to break it).
fn copy_target(name: &str, to: &Path) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let dst = to.join(p.file_name().unwrap());
            if p.is_dir() {
                copy(&p, &dst)
            } else {
                std::fs::copy(&p, &dst).unwrap();
            }
        }
    }
    let dst = to.join(name);
    copy(&root().join(name), &dst);
    dst
}

fn err_of(name: &str, dir: &Path, split: Split) -> String {
    match open_known(name, dir, split) {
        Ok(ds) => panic!("{name} at {} opened ({} images) but should fail", dir.display(), ds.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn numpy_randomstate_shuffle_equals_numpy() {
    let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("numpy_randomstate.json")).unwrap()).unwrap();
    for n in [1usize, 7, 80, 1000] {
        let mut x: Vec<usize> = (0..n).collect();
        NumpyRandomState::new(42).shuffle(&mut x);
        let np: Vec<usize> = serde_json::from_value(want[n.to_string()].clone()).unwrap();
        assert_eq!(x, np, "RandomState(42).shuffle(arange({n}))");
    }
    let mut rs = NumpyRandomState::new(42);
    let seq: Vec<Vec<usize>> = serde_json::from_value(want["sequence_5_7_1_80_3"].clone()).unwrap();
    for (n, np) in [5usize, 7, 1, 80, 3].into_iter().zip(seq) {
        let mut x: Vec<usize> = (0..n).collect();
        rs.shuffle(&mut x);
        assert_eq!(x, np, "one generator over several lists, length {n}");
    }
    let raw: Vec<u64> = serde_json::from_value(want["uint32_first5"].clone()).unwrap();
    let mut rs = NumpyRandomState::new(42);
    assert_eq!((0..5).map(|_| rs.next_u32() as u64).collect::<Vec<_>>(), raw);
    // The reference output of MT19937's own test vector (init_genrand(5489)).
    assert_eq!(NumpyRandomState::new(5489).next_u32(), 3_499_211_612);
}

/// Every image-file target: files (relative to the fixture root) and labels in the original's
/// order, for both splits.
#[test]
fn file_targets_read_as_the_original() {
    let exp = expected();
    for name in ["dtd", "cu_birds", "vgg_flower", "traffic_sign", "aircraft"] {
        for (split, key) in [(Split::Train, "train"), (Split::Test, "test")] {
            let ds = open_known(name, &root().join(name), split).unwrap();
            let want: Vec<(String, usize)> = serde_json::from_value(exp[name][key].clone()).unwrap();
            let list = ds.as_ref();
            let got: Vec<usize> = (0..list.len()).map(|i| list.label(i).unwrap()).collect();
            assert_eq!(got, want.iter().map(|w| w.1).collect::<Vec<_>>(), "{name} {key} labels");
            // Files: through the FileList the reader built.
            let desc = list.describe();
            assert!(!desc.is_empty());
            for i in 0..list.len() {
                let img = list.image(i).unwrap();
                assert!(img.width() > 0 && img.height() > 0);
            }
            let files = file_names(name, split);
            assert_eq!(files, want.iter().map(|w| w.0.clone()).collect::<Vec<_>>(), "{name} {key} files");
        }
    }
}

/// The files of a FileList target relative to the fixture root.
fn file_names(name: &str, split: Split) -> Vec<String> {
    mixbt::data::transfer::list_files(name, &root().join(name), split)
        .unwrap()
        .into_iter()
        .map(|p| p.strip_prefix(root()).unwrap().to_string_lossy().replace('\\', "/"))
        .collect()
}

#[test]
fn idx_targets_gzipped_and_plain() {
    let exp = expected();
    for name in ["mnist", "fashionmnist"] {
        for (split, key) in [(Split::Train, "train"), (Split::Test, "test")] {
            let ds = open_known(name, &root().join(name), split).unwrap();
            let labels: Vec<usize> = serde_json::from_value(exp[name][key]["labels"].clone()).unwrap();
            let sums: Vec<u64> = serde_json::from_value(exp[name][key]["pixel_sums"].clone()).unwrap();
            assert_eq!(ds.len(), labels.len());
            for i in 0..ds.len() {
                assert_eq!(ds.label(i), Some(labels[i]));
                let img = ds.image(i).unwrap();
                assert_eq!((img.width(), img.height()), (28, 28));
                let s: u64 = img.pixels().map(|p| p[0] as u64).sum();
                assert_eq!(s, sums[i], "{name} {key} image {i}");
                assert!(img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]), "grey → RGB copies the channel");
            }
            assert_eq!(ds.classes().len(), 10);
        }
    }
    assert!(root().join("mnist/train-images-idx3-ubyte.gz").is_file() && root().join("fashionmnist/train-images-idx3-ubyte").is_file());
}

#[test]
fn aircraft_boxes_crop_as_pil() {
    let exp = expected();
    let ds = open_known("aircraft", &root().join("aircraft"), Split::Test).unwrap();
    let last = ds.image(ds.len() - 1).unwrap();
    let want = &exp["aircraft"]["test_last_crop"];
    assert_eq!((last.width() as u64, last.height() as u64), (want[0].as_u64().unwrap(), want[1].as_u64().unwrap()));
    // The part outside the 40×30 image is black; the JPEG decoders (PIL's libjpeg vs image-rs)
    // may differ by a grey level here and there, so the sum is compared to 0.5 %.
    let sum: u64 = last.pixels().map(|p| p[0] as u64 + p[1] as u64 + p[2] as u64).sum();
    let pil = want[2].as_u64().unwrap() as f64;
    assert!((sum as f64 - pil).abs() / pil < 0.005, "crop pixel sum {sum} vs PIL {pil}");
    assert!(last.get_pixel(last.width() - 1, last.height() - 1).0 == [0, 0, 0]);
    // Box semantics on a synthetic image.
    let img = image::RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8 + 1, y as u8 + 1, 9]));
    let c = pil_crop(&img, [1, 1, 6, 3]).unwrap();
    assert_eq!((c.width(), c.height()), (5, 2));
    assert_eq!(c.get_pixel(0, 0).0, [2, 2, 9]);
    assert_eq!(c.get_pixel(4, 1).0, [0, 0, 0]);
    assert!(pil_crop(&img, [3, 0, 1, 2]).is_err());
}

#[test]
fn mat_files_compressed_and_plain() {
    let a = mixbt::data::mat::read_variable(&fixtures().join("labels_uint8.mat"), "labels").unwrap();
    assert_eq!(a.dims, vec![1, 4]);
    assert_eq!(a.values, vec![3.0, 1.0, 2.0, 250.0]);
    let b = mixbt::data::mat::read_variable(&root().join("vgg_flower/imagelabels.mat"), "labels").unwrap();
    assert_eq!(b.values.len(), 17);
    assert_eq!(b.values[0], 77.0);
    let missing = mixbt::data::mat::read_variable(&fixtures().join("labels_uint8.mat"), "nope").unwrap_err().to_string();
    assert!(missing.contains("labels_uint8.mat") && missing.contains("no numeric variable `nope`") && missing.contains("labels"), "{missing}");
    // No truncation panics; every cut that loses part of the variable's data (more than the
    // trailing 8-byte padding) is an error.
    for f in [fixtures().join("labels_uint8.mat"), root().join("vgg_flower/imagelabels.mat")] {
        let bytes = std::fs::read(&f).unwrap();
        for cut in 0..bytes.len() {
            let r = mixbt::data::mat::parse_variable(&bytes[..cut], "labels");
            assert!(cut + 8 > bytes.len() || r.is_err(), "{}: a cut at {cut} of {} bytes read as {r:?}", f.display(), bytes.len());
        }
        assert!(mixbt::data::mat::parse_variable(&bytes[..100], "labels").unwrap_err().contains("header"));
    }
}

#[test]
fn malformed_targets_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    // DTD: a missing list file, then a line naming a missing image.
    let dtd = copy_target("dtd", tmp.path());
    std::fs::remove_file(dtd.join("labels/val1.txt")).unwrap();
    let e = err_of("dtd", &dtd, Split::Train);
    assert!(e.contains("val1.txt"), "{e}");
    std::fs::copy(root().join("dtd/labels/val1.txt"), dtd.join("labels/val1.txt")).unwrap();
    let mut t = std::fs::read_to_string(dtd.join("labels/train1.txt")).unwrap();
    t.push_str("banded/banded_9999.jpg\n");
    std::fs::write(dtd.join("labels/train1.txt"), t).unwrap();
    let e = err_of("dtd", &dtd, Split::Train);
    assert!(e.contains("train1.txt") && e.contains("line 7") && e.contains("banded_9999.jpg") && e.contains("does not exist"), "{e}");
    std::fs::write(dtd.join("labels/test1.txt"), "no-slash-here.jpg\n").unwrap();
    let e = err_of("dtd", &dtd, Split::Test);
    assert!(e.contains("test1.txt") && e.contains("line 1"), "{e}");

    // MNIST: bad magic, truncated data, missing file.
    let mnist = copy_target("mnist", tmp.path());
    let fm = copy_target("fashionmnist", tmp.path());
    let f = fm.join("t10k-images-idx3-ubyte");
    let mut b = std::fs::read(&f).unwrap();
    b[3] = 0x02;
    std::fs::write(&f, &b).unwrap();
    let e = err_of("fashionmnist", &fm, Split::Test);
    assert!(e.contains("t10k-images-idx3-ubyte") && e.contains("magic"), "{e}");
    b[3] = 0x03;
    std::fs::write(&f, &b[..b.len() - 100]).unwrap();
    let e = err_of("fashionmnist", &fm, Split::Test);
    assert!(e.contains("t10k-images-idx3-ubyte") && e.contains("truncated"), "{e}");
    std::fs::write(&f, &b[..10]).unwrap();
    let e = err_of("fashionmnist", &fm, Split::Test);
    assert!(e.contains("truncated IDX header"), "{e}");
    let g = mnist.join("train-labels-idx1-ubyte.gz");
    let gz = std::fs::read(&g).unwrap();
    std::fs::write(&g, &gz[..gz.len() / 2]).unwrap();
    let e = err_of("mnist", &mnist, Split::Train);
    assert!(e.contains("train-labels-idx1-ubyte.gz"), "{e}");
    std::fs::remove_file(&g).unwrap();
    let e = err_of("mnist", &mnist, Split::Train);
    assert!(e.contains("train-labels-idx1-ubyte") && e.contains("missing"), "{e}");

    // CUB: a missing label file, an unknown split value.
    let cub = copy_target("cu_birds", tmp.path());
    let inner = cub.join("CUB_200_2011");
    std::fs::rename(inner.join("image_class_labels.txt"), inner.join("x.txt")).unwrap();
    let e = err_of("cu_birds", &cub, Split::Train);
    assert!(e.contains("image_class_labels.txt"), "{e}");
    std::fs::rename(inner.join("x.txt"), inner.join("image_class_labels.txt")).unwrap();
    let s = std::fs::read_to_string(inner.join("train_test_split.txt")).unwrap().replacen("1 1", "1 7", 1);
    std::fs::write(inner.join("train_test_split.txt"), s).unwrap();
    let e = err_of("cu_birds", &cub, Split::Train);
    assert!(e.contains("train_test_split.txt") && e.contains("line 1"), "{e}");

    // Flowers: a label for an image that is not there.
    let fl = copy_target("vgg_flower", tmp.path());
    std::fs::remove_file(fl.join("jpg/image_00005.jpg")).unwrap();
    let e = err_of("vgg_flower", &fl, Split::Train);
    assert!(e.contains("imagelabels.mat") && e.contains("image_00005.jpg"), "{e}");

    // Aircraft: an image without a box, an unknown variant.
    let ac = copy_target("aircraft", tmp.path());
    let boxes = std::fs::read_to_string(ac.join("data/images_box.txt")).unwrap();
    std::fs::write(ac.join("data/images_box.txt"), boxes.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let e = err_of("aircraft", &ac, Split::Train);
    assert!(e.contains("images_box.txt") && e.contains("no box"), "{e}");
    std::fs::write(ac.join("data/images_box.txt"), boxes).unwrap();
    let v = std::fs::read_to_string(ac.join("data/images_variant_test.txt")).unwrap().replacen("707-320", "747-999", 1);
    std::fs::write(ac.join("data/images_variant_test.txt"), v).unwrap();
    let e = err_of("aircraft", &ac, Split::Test);
    assert!(e.contains("images_variant_test.txt") && e.contains("747-999") && e.contains("variants.txt"), "{e}");

    // Traffic signs: no class folders at all.
    let ts = tmp.path().join("traffic_sign");
    std::fs::create_dir_all(ts.join("FullIJCNN2013")).unwrap();
    let e = err_of("traffic_sign", &ts, Split::Train);
    assert!(e.contains("FullIJCNN2013") && e.contains("00..42"), "{e}");
}

#[test]
fn target_specs_parse() {
    let s: TargetSpec = "dtd".parse().unwrap();
    assert_eq!(s.source, TargetSource::Known { dir: None });
    assert_eq!(s.folder(Some(Path::new("/d"))), Some(PathBuf::from("/d/dtd")));
    let s: TargetSpec = "dtd=/x/dtd".parse().unwrap();
    assert_eq!(s.source, TargetSource::Known { dir: Some("/x/dtd".into()) });
    let s: TargetSpec = "cifar10-folder=/data/c10".parse().unwrap();
    assert_eq!(s.source, TargetSource::Folder("/data/c10".into()));
    assert!(s.info().is_none());
    let s: TargetSpec = "mnist=hf:ylecun/mnist".parse().unwrap();
    assert_eq!(s.source, TargetSource::Hub("ylecun/mnist".into()));
    assert_eq!(s.info().unwrap().outputs, 10);
    assert_eq!("builtin".parse::<TargetSpec>().unwrap().source, TargetSource::Builtin);
    for bad in ["nosuch", "x=", "a b=c", ""] {
        assert!(bad.parse::<TargetSpec>().is_err(), "{bad}");
    }
    assert!(TargetSpec::parse_list("dtd,mnist,dtd").unwrap_err().to_string().contains("twice"));
    assert_eq!(TargetSpec::all_known().len(), TARGETS.len());
    assert_eq!(mixbt::data::transfer::target_info("aircraft").unwrap().outputs, 102, "the original's 102 outputs for 100 variants");
    // An absent folder is not an error: the target is skipped.
    assert!("dtd".parse::<TargetSpec>().unwrap().open(Some(Path::new("/nonexistent")), Split::Train).unwrap().is_none());
}

/// The cached-feature probe and the probe that runs the backbone every batch (BN in eval mode,
/// same seed) visit the same batches: the same accuracies and losses.
#[test]
fn cached_probe_equals_uncached_probe() {
    let (enc, _, _) = tiny_encoder(Stem::Cifar);
    let spec: TargetSpec = "dtd".parse().unwrap();
    let target = TransferTarget::open(&spec, Some(&root()), 32).unwrap().unwrap();
    let mut probe = LinearProbeConfig { epochs: 4, batch_size: 4, seed: 11, workers: 1, ..LinearProbeConfig::transfer() };
    if let mixbt::eval::ProbeOptimizer::SgdStep { milestones, .. } = &mut probe.optimizer {
        *milestones = vec![2, 3];
    }
    let cfg = TransferConfig { probe: probe.clone(), resize: Some(32), embed_batch: 7 };
    let f = transfer_features(&enc, &target, &cfg).unwrap();
    let cached = transfer_probe(&f, target.outputs, &probe, |_| {}).unwrap();
    let slow_cfg = LinearProbeConfig { cache_features: false, outputs: Some(target.outputs), ..probe.clone() };
    let slow = linear_probe(&enc, target.train.clone(), target.test.clone(), &target.transform, &target.transform, &slow_cfg, |_| {}).unwrap();
    assert_eq!(cached.epochs.len(), 4);
    for (a, b) in cached.epochs.iter().zip(&slow.epochs) {
        assert_eq!((a.test_top1, a.test_top5, a.train_top1, a.lr), (b.test_top1, b.test_top5, b.train_top1, b.lr), "{a:?} vs {b:?}");
        assert!((a.train_loss - b.train_loss).abs() <= 1e-5 * a.train_loss.abs().max(1.0), "{a:?} vs {b:?}");
    }
    assert_eq!((cached.best_top1, cached.last_top1), (slow.best_top1, slow.last_top1));
    // MultiStepLR at the milestones, ×0.1 each.
    let lrs: Vec<f64> = cached.epochs.iter().map(|e| e.lr).collect();
    assert!((lrs[0] - 0.01).abs() < 1e-15 && (lrs[1] - 0.01).abs() < 1e-15 && (lrs[2] - 0.001).abs() < 1e-15 && (lrs[3] - 0.0001).abs() < 1e-15, "{lrs:?}");
    // DTD has 47 outputs although the fixture has 3 classes.
    assert_eq!(target.outputs, 47);
    assert_eq!(target.classes(), 3);
    // The BN quirk takes the slow path with batch statistics: the training features, hence the
    // training loss, are not the eval-mode ones.
    let quirk = LinearProbeConfig { bn_train_mode_quirk: true, outputs: Some(47), ..probe };
    let q = linear_probe(&enc, target.train.clone(), target.test.clone(), &target.transform, &target.transform, &quirk, |_| {}).unwrap();
    assert_eq!(q.epochs.len(), 4);
    assert_ne!(q.epochs[0].train_loss, cached.epochs[0].train_loss, "BN in train mode must change the training features");
}

#[test]
fn transfer_runs_every_fixture_and_skips_absent_ones() {
    let (enc, _, _) = tiny_encoder(Stem::Small64);
    let mut targets = TargetSpec::all_known();
    targets.push("gone=/nonexistent/folder".parse().unwrap());
    let probe = LinearProbeConfig { epochs: 2, batch_size: 8, workers: 1, ..LinearProbeConfig::transfer() };
    let cfg = TransferConfig { probe, ..Default::default() };
    let mut started = vec![];
    let report = transfer(&enc, &targets, Some(&root()), &cfg, |e| {
        if let mixbt::eval::transfer::TransferEvent::Started { target, .. } = e {
            started.push(target.to_string())
        }
    })
    .unwrap();
    assert_eq!(started, TARGETS.to_vec());
    assert_eq!(report.rows.len(), 7);
    assert_eq!(report.skipped, vec![("gone".to_string(), PathBuf::from("/nonexistent/folder"))]);
    let exp = expected();
    for r in &report.rows {
        let (train, test) = match r.target.as_str() {
            "mnist" | "fashionmnist" => (30, 10),
            t => (exp[t]["train"].as_array().unwrap().len(), exp[t]["test"].as_array().unwrap().len()),
        };
        assert_eq!((r.train, r.test), (train, test), "{r:?}");
        assert!((0.0..=100.0).contains(&r.best_top1) && r.best_top1 >= r.last_top1, "{r:?}");
    }
    let df = report.to_dataframe().unwrap();
    let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
    assert_eq!(names, ["target", "classes", "train", "test", "best_top1", "last_top1", "seconds"]);
    assert_eq!(df.height(), 7);
    let svg = mixbt::report::transfer_chart("t", &report.rows, &[mixbt::report::Reference { target: "dtd".into(), top1: 50.0, source: "paper".into() }]).unwrap();
    for t in TARGETS {
        assert!(svg.0.contains(t), "chart lacks {t}");
    }
    assert!(svg.0.contains("paper") && svg.0.contains("best top-1"));
}

fn mixbt_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mixbt")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn transfer_command_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, store, cfg) = tiny_encoder(Stem::Cifar);
    let model = tmp.path().join("model.safetensors");
    mixbt::ckpt::save_model(&model, &store, &cfg, None, None).unwrap();
    let out = tmp.path().join("out");
    let (ok, stdout, stderr) = mixbt_cli(&[
        "transfer", "--checkpoint", model.to_str().unwrap(), "--targets", "all", "--data-root", root().to_str().unwrap(), "--out",
        out.to_str().unwrap(), "--epochs", "2", "--json",
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    let csv = std::fs::read_to_string(out.join("transfer.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "target,classes,train,test,best_top1,last_top1,seconds");
    assert_eq!(csv.lines().count(), 8, "{csv}");
    for f in ["transfer.parquet", "transfer.json", "transfer.svg"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let df = mixbt::io::read_parquet(&out.join("transfer.parquet")).unwrap();
    assert_eq!(df.height(), 7);
    let j: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(j["resize"], 32);
    assert_eq!(j["rows"].as_array().unwrap().len(), 7);

    // The built-in data as a target (statistics computed), and an absent folder skipped.
    let out2 = tmp.path().join("out2");
    let (ok, stdout, stderr) = mixbt_cli(&[
        "transfer", "--checkpoint", model.to_str().unwrap(), "--targets", "builtin,elsewhere=/nonexistent/x", "--out", out2.to_str().unwrap(),
        "--epochs", "1", "--resize", "16",
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stderr.contains("elsewhere") && stderr.contains("skipped"), "{stderr}");
    assert!(stdout.contains("skipped (folder not found): elsewhere"), "{stdout}");
    let csv = std::fs::read_to_string(out2.join("transfer.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().starts_with("builtin,10,10000,2000,"), "{csv}");

    // Bad input: a malformed target names its file; an unknown target is refused up front.
    let broken = tmp.path().join("broken");
    copy_target("dtd", &broken);
    std::fs::remove_file(broken.join("dtd/labels/test1.txt")).unwrap();
    // (Into a folder of their own: `out` holds the report above, which a second run refuses to replace.)
    let (ok, _, stderr) = mixbt_cli(&["transfer", "--checkpoint", model.to_str().unwrap(), "--targets", "dtd", "--data-root", broken.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!ok && stderr.contains("holds a previous transfer report") && stderr.contains("--overwrite"), "{stderr}");
    let out = tmp.path().join("out-bad");
    let (ok, _, stderr) = mixbt_cli(&["transfer", "--checkpoint", model.to_str().unwrap(), "--targets", "dtd", "--data-root", broken.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!ok && stderr.contains("transfer target dtd") && stderr.contains("test1.txt"), "{stderr}");
    let (ok, _, stderr) = mixbt_cli(&["transfer", "--checkpoint", model.to_str().unwrap(), "--targets", "imagenet9", "--out", out.to_str().unwrap()]);
    assert!(!ok && stderr.contains("unknown transfer target `imagenet9`"), "{stderr}");
}

/// A Hub copy (`mnist=hf:ylecun/mnist`) through the Hub client, served by the local Hub server:
/// the known name keeps the original's statistics and its 10 outputs.
#[test]
fn hub_copy_as_a_target() {
    let server = mixbt_hub_server::HubServer::start(mixbt_hub_server::ServerConfig { token: None, user: "t".into(), multipart_chunk: None }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let grey = |i: usize| image::RgbImage::from_fn(28, 28, |x, y| { let v = if (x as usize + y as usize + i) % 9 < 4 { 200 } else { 20 }; image::Rgb([v, v, v]) });
    for (split, n) in [("train", 12), ("test", 5)] {
        let imgs: Vec<(image::RgbImage, usize)> = (0..n).map(|i| (grey(i), i % 10)).collect();
        let p = dir.path().join(format!("{split}.parquet"));
        common::fixtures::write_hf_parquet(&p, "image", &imgs, None).unwrap();
        server.add_file("dataset", "ylecun/mnist", &format!("mnist/{split}-00000-of-00001.parquet"), std::fs::read(&p).unwrap());
    }
    let (_, store, cfg) = tiny_encoder(Stem::Cifar);
    let model = dir.path().join("m.safetensors");
    mixbt::ckpt::save_model(&model, &store, &cfg, None, None).unwrap();
    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_mixbt"))
        .args(["transfer", "--checkpoint", model.to_str().unwrap(), "--targets", "mnist=hf:ylecun/mnist", "--out", out.to_str().unwrap(), "--epochs", "2", "--json"])
        .env("HF_ENDPOINT", server.url())
        .env("HF_HUB_CACHE", dir.path().join("cache"))
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stdout}\n{stderr}");
    let csv = std::fs::read_to_string(out.join("transfer.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().starts_with("mnist,10,12,5,"), "{csv}");
    assert!(server.requests().iter().any(|r| r.contains("ylecun/mnist")), "the Hub client fetched the data set");
}

/// Flowers-102 as class folders (no imagelabels.mat): sorted classes, sorted files, the same
/// RandomState(42) 80/20 split, one generator across the classes in turn.
#[test]
fn flowers_from_class_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vgg_flower");
    let counts = [("b_rose", 6usize), ("a_daisy", 5), ("c_tulip", 1)];
    for (name, n) in counts {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        for i in 0..n {
            image::RgbImage::from_pixel(8, 8, image::Rgb([i as u8, 0, 0])).save(dir.join(name).join(format!("{i:03}.jpg"))).unwrap();
        }
    }
    let files = |split| -> Vec<String> {
        mixbt::data::transfer::list_files("vgg_flower", &dir, split).unwrap().iter().map(|p| p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned()).collect()
    };
    // The split by hand: classes sorted (a_daisy 5, b_rose 6, c_tulip 1), one RandomState(42).
    let mut rs = NumpyRandomState::new(42);
    let (mut train, mut test) = (vec![], vec![]);
    for (name, n) in [("a_daisy", 5usize), ("b_rose", 6), ("c_tulip", 1)] {
        let mut idx: Vec<usize> = (0..n).collect();
        rs.shuffle(&mut idx);
        let cut = (0.8 * n as f64) as usize;
        train.extend(idx[..cut].iter().map(|i| format!("{name}/{i:03}.jpg")));
        test.extend(idx[cut..].iter().map(|i| format!("{name}/{i:03}.jpg")));
    }
    assert_eq!(files(Split::Train), train);
    assert_eq!(files(Split::Test), test);
    let ds = open_known("vgg_flower", &dir, Split::Test).unwrap();
    assert_eq!(ds.classes(), ["a_daisy", "b_rose", "c_tulip"]);
    assert_eq!((0..ds.len()).map(|i| ds.label(i).unwrap()).collect::<Vec<_>>(), vec![0, 1, 1, 2]);
}
