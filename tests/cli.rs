//! The `mixbt` command end to end on a tiny run.

use std::path::Path;
use std::process::Command;

fn mixbt(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mixbt")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn ok(args: &[&str]) -> String {
    let (ok, out, err) = mixbt(args);
    assert!(ok, "mixbt {args:?} failed:\n{out}\n{err}");
    out
}

const TINY: [&str; 14] = [
    "--preset", "quickstart", "--width", "0.0625", "--batch-size", "16", "--train-subset", "64", "--test-subset", "40", "--bank-subset", "80",
    "--epochs", "1",
];

#[test]
fn pretrain_knn_embed_linear_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let mut args = vec!["pretrain"];
    args.extend(TINY);
    args.extend(["--out", run_s, "--no-progress"]);
    let out = ok(&args);
    assert!(out.contains("k-NN top-1") && out.contains("randomly initialised"), "{out}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    for k in ["knn_top1", "knn_top5", "knn_top1_random_init"] {
        assert!(summary[k].as_f64().is_some(), "summary.json lacks {k}: {summary}");
    }
    assert_eq!(summary["steps"], 4);
    let csv = std::fs::read_to_string(run.join("history.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    for c in ["step", "epoch", "loss_bt", "loss_reg", "loss", "lr", "alpha", "knn_top1"] {
        assert!(header.split(',').any(|h| h == c), "history.csv header {header} lacks {c}");
    }
    assert_eq!(csv.lines().count(), 5);
    assert!(run.join("history.parquet").is_file() && run.join("model.safetensors").is_file());
    assert!(run.join("checkpoints/latest").is_file());

    // k-NN of the saved model (run folder and model file both accepted).
    let out = ok(&["knn", "--checkpoint", run_s, "--test-subset", "40", "--bank-subset", "80", "--json"]);
    let last = out.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert!((v["top1"].as_f64().unwrap() - summary["knn_top1"].as_f64().unwrap()).abs() < 1e-9, "{out} vs {summary}");

    // embed: L2-normalised features, rows in file-name order.
    let imgs = dir.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    for (i, name) in ["b.png", "a.png", "c.png"].iter().enumerate() {
        let ds = mixbt::data::BuiltinShapes::new(Default::default(), mixbt::data::Split::Test);
        mixbt::data::Dataset::image(&ds, i).unwrap().save(imgs.join(name)).unwrap();
    }
    let feats = dir.path().join("f.safetensors");
    ok(&["embed", "--checkpoint", run.join("model.safetensors").to_str().unwrap(), "--images", imgs.to_str().unwrap(), "--out", feats.to_str().unwrap(), "--transform", "none"]);
    let t = mixbt::io::read_safetensors(&feats, &candle_core::Device::Cpu).unwrap();
    let f = &t["features"];
    assert_eq!(f.dims(), [3, 32]);
    let norms: Vec<f32> = f.sqr().unwrap().sum(1).unwrap().to_vec1().unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5));
    let meta = mixbt::io::read_safetensors_metadata(&feats).unwrap();
    assert_eq!(meta["files"], r#"["a.png","b.png","c.png"]"#);
    let pq = dir.path().join("f.parquet");
    ok(&["embed", "--checkpoint", run_s, "--images", imgs.to_str().unwrap(), "--out", pq.to_str().unwrap()]);
    assert_eq!(mixbt::io::read_parquet(&pq).unwrap().height(), 3);

    // linear probe (features computed once), and resume of the finished run.
    let out = ok(&["linear", "--checkpoint", run_s, "--epochs", "2", "--no-augment", "--test-subset", "40", "--json"]);
    assert!(out.contains("best_top1"), "{out}");
    // Resume: recipe flags are refused by name, --epochs extends the run, and the resumed history
    // continues the first one (its 4 rows unchanged, then steps 5..8 of epoch 2).
    let (okk, _, err) = mixbt(&["pretrain", "--resume", run_s, "--no-progress", "--lambda-reg", "1", "--width", "0.5"]);
    assert!(!okk && err.contains("--lambda-reg") && err.contains("--width") && err.contains("--resume"), "{err}");
    let (okk, _, err) = mixbt(&["pretrain", "--resume", run_s, "--no-progress", "--preset", "quickstart"]);
    assert!(!okk && err.contains("--preset"), "{err}");
    let before: Vec<String> = csv.lines().map(String::from).collect();
    let (okk, _, err) = mixbt(&["pretrain", "--resume", run_s, "--out", run_s, "--no-progress", "--epochs", "2"]);
    assert!(okk, "{err}");
    assert!(err.contains("resumed from") && err.contains("at step 4"), "{err}");
    let after = std::fs::read_to_string(run.join("history.csv")).unwrap();
    let after: Vec<&str> = after.lines().collect();
    assert_eq!(after.len(), 9, "{after:?}");
    assert_eq!(after[0], before[0], "same columns");
    // The first run's rows carry over (its final k-NN was set on row 4 and stays there).
    for i in 1..=4 {
        assert_eq!(after[i], before[i], "row {i} of the resumed history differs from the first run's");
    }
    let col = |name: &str| header.split(',').position(|h| h == name).unwrap();
    let (step, epoch, loss) = (col("step"), col("epoch"), col("loss"));
    for (i, row) in after[1..].iter().enumerate() {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f[step], (i + 1).to_string(), "{row}");
        assert_eq!(f[epoch], if i < 4 { "1" } else { "2" }, "{row}");
        assert!(f[loss].parse::<f64>().unwrap().is_finite(), "{row}");
    }
    let summary2: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary2["steps"], 8);
    // A budget already used up is an error, not a silent no-op.
    let (okk, _, err) = mixbt(&["pretrain", "--resume", run_s, "--no-progress", "--epochs", "1"]);
    assert!(!okk && err.contains("--epochs 1") && err.contains("8 steps"), "{err}");

    // data stats
    let out = ok(&["data", "stats", "--dataset", "builtin", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["images"], mixbt::data::builtin::BuiltinConfig::default().train_size as u64);
    assert_eq!(v["classes"], 10);
    assert_eq!(v["mean"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (okk, _, err) = mixbt(&["pretrain", "--preset", "nope"]);
    assert!(!okk && err.contains("unknown preset") && err.contains("quickstart"), "{err}");
    let (okk, _, err) = mixbt(&["pretrain", "--preset", "r18-cifar10"]);
    assert!(!okk && err.contains("--data-dir"), "{err}");
    let (okk, _, err) = mixbt(&["data", "stats", "--dataset", "cifar10", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!okk && err.contains("test_batch.bin"), "{err}");
    let bogus = dir.path().join("bogus.safetensors");
    std::fs::write(&bogus, b"not safetensors").unwrap();
    let (okk, _, err) = mixbt(&["knn", "--checkpoint", bogus.to_str().unwrap()]);
    assert!(!okk && err.contains("bogus.safetensors"), "{err}");
    let (okk, _, err) = mixbt(&["pretrain", "--device", "cuda:0", "--max-steps", "1"]);
    assert!(!okk && err.to_lowercase().contains("cuda"), "{err}");
    let (okk, _, err) = mixbt(&["pretrain", "--resume", Path::new("/nonexistent/run").to_str().unwrap()]);
    assert!(!okk && err.contains("/nonexistent/run"), "{err}");
    let (okk, _, err) = mixbt(&["bench", "train", "--no-torch", "--batches", "0"]);
    assert!(!okk && err.contains("batch size and steps must be at least 1"), "{err}");
    let work = dir.path().join("study-runs");
    let (okk, _, err) = mixbt(&["study", "methods", "--methods", "mixbt,nope", "--work", work.to_str().unwrap(), "--out", dir.path().join("t").to_str().unwrap()]);
    assert!(!okk && err.contains("nope"), "{err}");
    assert!(!work.exists(), "a refused study starts nothing");
    let (okk, _, err) = mixbt(&["bench", "train", "--no-torch", "--rounds", "0"]);
    assert!(!okk && err.contains("steps and rounds must be at least 1"), "{err}");
}

/// `mixbt embed --transform none` on the reference checkpoint saved by PyTorch in the original
/// format (../shared/data/reference, when present) reproduces PyTorch's features to ≤ 1e-4.
#[test]
fn embed_reference_checkpoint_matches_pytorch() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/reference");
    let pth = root.join("mixbt_resnet18_cifar10_d1024_torch.pth");
    if !pth.is_file() {
        // Locally the reference data are optional; in CI (CI set) they must be there.
        assert!(std::env::var_os("CI").is_none(), "CI: the reference checkpoint {} is missing", pth.display());
        eprintln!("skipped: {} not present", pth.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.safetensors");
    ok(&["embed", "--checkpoint", pth.to_str().unwrap(), "--arch", "resnet18", "--dataset", "cifar10", "--images", root.join("images").to_str().unwrap(), "--out", out.to_str().unwrap(), "--transform", "none"]);
    let t = mixbt::io::read_safetensors(&out, &candle_core::Device::Cpu).unwrap();
    let got: Vec<Vec<f32>> = t["features"].to_vec2().unwrap();
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("mixbt_resnet18_cifar10_features.json")).unwrap()).unwrap();
    let want: Vec<Vec<f32>> = r["features"].as_array().unwrap().iter().map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).collect();
    assert_eq!(got.len(), want.len());
    let max = got.iter().flatten().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max <= 1e-4, "max abs difference {max}");
}

/// `mixbt presets --show NAME` writes a recipe file; `pretrain --recipe` runs it, and a run's own
/// `recipe.json` reproduces the run exactly.
#[test]
fn recipe_files_reproduce_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let shown = ok(&["presets", "--show", "quickstart"]);
    let r: mixbt::train::Recipe = serde_json::from_str(&shown).unwrap();
    assert_eq!(r, mixbt::train::presets::quickstart());
    let file = dir.path().join("r.json");
    std::fs::write(&file, &shown).unwrap();
    let (run1, run2) = (dir.path().join("run1"), dir.path().join("run2"));
    let small = ["--width", "0.0625", "--batch-size", "16", "--train-subset", "32", "--test-subset", "20", "--bank-subset", "40", "--epochs", "1"];
    let mut a = vec!["pretrain", "--recipe", file.to_str().unwrap(), "--out", run1.to_str().unwrap(), "--no-progress", "--skip-random-init-knn"];
    a.extend(small);
    ok(&a);
    // The first run's recipe.json (with the flags applied) as the recipe of a second run.
    ok(&["pretrain", "--recipe", run1.to_str().unwrap(), "--out", run2.to_str().unwrap(), "--no-progress", "--skip-random-init-knn"]);
    let summary = |d: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap() };
    let (s1, s2) = (summary(&run1), summary(&run2));
    assert_eq!(s1["steps"], 2);
    for k in ["steps", "knn_top1", "knn_top5", "final_loss"] {
        assert_eq!(s1[k], s2[k], "{k}: {s1} vs {s2}");
    }
    assert_eq!(std::fs::read_to_string(run1.join("recipe.json")).unwrap(), std::fs::read_to_string(run2.join("recipe.json")).unwrap());
    let (okk, _, err) = mixbt(&["pretrain", "--recipe", file.to_str().unwrap(), "--preset", "quickstart"]);
    assert!(!okk && err.contains("--preset") && err.contains("--recipe"), "{err}");
    let (okk, _, err) = mixbt(&["pretrain", "--recipe", dir.path().join("none.json").to_str().unwrap()]);
    assert!(!okk && err.contains("none.json"), "{err}");
}

/// `scripts/gpu-check.sh`'s CPU half: the CPU against itself (parity exact), the bench and a
/// short run, and the table — so that the script is ready, and cannot rot, before a GPU is lent.
#[test]
fn gpu_check_script_runs_on_the_cpu() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/gpu-check.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["--bin", env!("CARGO_BIN_EXE_mixbt"), "--device", "cpu", "--data", "builtin", "--steps", "2", "--batch", "8", "--width", "0.125"])
        .args(["--", "--width", "0.0625", "--batch-size", "16", "--train-subset", "64", "--test-subset", "40", "--bank-subset", "80"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("| (a) parity with the CPU: loss, largest gradient difference | rel 0.000e0, 0.000e0 (ok: true) |"), "{stdout}");
    assert!(stdout.contains("| (b) training step, batch 8 |") && stdout.contains("| (c) 2 steps: k-NN top-1"), "{stdout}");
    assert!(stdout.contains("kernel path of the CPU side: "), "{stdout}");
    // A parity failure is an error: a tolerance no computation meets.
    let (okk, _, err) = mixbt(&["bench", "parity", "--device", "cpu", "--against", "cpu", "--batch", "4", "--width", "0.0625", "--tol=-1"]);
    assert!(!okk && err.contains("differ by more than"), "{err}");
}

/// The ImageNet path end to end on an ImageNet-layout folder (`train/<wnid>/*.JPEG`,
/// `val/<wnid>/*.JPEG`, 64–96 px): the `imagenet-r50-300ep-lreg1` preset (LARS, the λ_reg ramp,
/// the two ImageNet views with blur and solarisation, Resize 256 + CenterCrop 224 evaluation),
/// at width 1/8 with the preset's 8192-8192-8192 projector through a recipe file: its loss in
/// Gram form (d > N) holds no 8192×8192 matrix, so the step fits where the d×d form (~26 GiB)
/// was refused up front.
#[test]
fn imagenet_path_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("imagenet");
    imagenet_folder(&data);
    let mut r = mixbt::train::presets::get("imagenet-r50-300ep-lreg1").unwrap();
    r.encoder = r.encoder.with_width(0.125);
    assert_eq!(r.encoder.out_dim(), 8192);
    let (shown, _, err) = mixbt(&["presets", "--show", "imagenet-r50-300ep-lreg1"]);
    assert!(shown && err.contains("memory estimate of a training step on the CPU") && err.contains("batch 1024"), "{err}");
    assert!(r.memory_estimate() < 5u128 << 30, "Gram form at batch 1024: {} bytes", r.memory_estimate());
    r.batch_size = 8192;
    assert!(r.memory_estimate() > 20u128 << 30, "the d×d form (d ≤ N) would hold 8192×8192 matrices");
    r.batch_size = 4;
    r.data.dir = Some(data.clone());
    let recipe = dir.path().join("imagenet.json");
    std::fs::write(&recipe, r.to_json().unwrap()).unwrap();
    let run = dir.path().join("run");
    let out = ok(&["pretrain", "--recipe", recipe.to_str().unwrap(), "--max-steps", "2", "--out", run.to_str().unwrap(), "--no-progress", "--skip-random-init-knn"]);
    assert!(out.contains("k-NN top-1"), "{out}");
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["steps"], 2);
    assert!(s["final_loss"].as_f64().unwrap().is_finite());
    let csv = std::fs::read_to_string(run.join("history.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let lam = header.iter().position(|h| *h == "lambda_reg").unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    // 12 images / batch 4 = 3 steps per epoch; the ramp over 10 epochs: λ_reg = 1.0 · step / 30.
    assert_eq!(rows[0][lam].parse::<f64>().unwrap(), 0.0);
    assert_eq!(rows[1][lam].parse::<f64>().unwrap(), 1.0 / 30.0);
    // The evaluation reads val/ (3 classes, 6 images).
    let o = ok(&["knn", "--checkpoint", run.to_str().unwrap(), "--preset", "imagenet-r50-300ep-lreg1", "--data-dir", data.to_str().unwrap(), "--json"]);
    assert!(o.contains("\"n_test\":6"), "{o}");
}

/// `mixbt eval` of the released-format probe on a validation folder (`<class>/*`, or a folder
/// holding `val/`): the same numbers as the library's `eval::classify` with the ImageNet
/// validation transform (Resize 256, CenterCrop 224).
#[test]
fn released_probe_evaluated_through_the_cli_and_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let val = dir.path().join("val");
    for c in 0..10u8 {
        let d = val.join(format!("n{c:08}"));
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..2u8 {
            image::RgbImage::from_fn(48 + 8 * i as u32, 64, |x, y| image::Rgb([c * 25, (x as u8) ^ i, y as u8])).save(d.join(format!("{i}.png"))).unwrap();
        }
    }
    let probe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_imagenet_probe.pth");
    let cli = |data: &Path| -> mixbt::eval::Accuracy {
        let out = ok(&["eval", "--checkpoint", probe.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "--json", "--batch-size", "7"]);
        assert!(out.contains("top-1") && out.contains("20 images of 10 classes"), "{out}");
        serde_json::from_str(out.lines().last().unwrap()).unwrap()
    };
    let (a, b) = (cli(&val), cli(dir.path()));
    let clf = mixbt::ckpt::load_classifier(&probe, &candle_core::Device::Cpu).unwrap();
    let ds: mixbt::data::DynDataset = std::sync::Arc::new(mixbt::data::ImageFolder::open(&val, Default::default()).unwrap());
    let eval = mixbt::data::DataConfig::for_kind(mixbt::data::DatasetKind::Imagenet).eval;
    let lib = mixbt::eval::classify(&clf, ds, &eval, 256, 1).unwrap();
    assert_eq!(a, lib);
    assert_eq!(b, lib);
    assert_eq!(lib.n, 20);
    let (okk, _, err) = mixbt(&["eval", "--checkpoint", "../tests/fixtures/tiny_r18_cifar.pth", "--data-dir", val.to_str().unwrap()]);
    assert!(!okk && err.contains("fc.weight"), "{err}");
}

/// An ImageNet-layout folder: `train/<wnid>/*.JPEG` (4 per class) and `val/<wnid>/*.JPEG` (2),
/// three classes, images of 64–96 px.
fn imagenet_folder(data: &Path) {
    use mixbt::image::{DynamicImage, ImageFormat, Rgb, RgbImage};
    let mut seed = 7u32;
    let mut next = || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        seed >> 8
    };
    for (split, n) in [("train", 4), ("val", 2)] {
        for wnid in ["n01440764", "n01443537", "n01484850"] {
            let d = data.join(split).join(wnid);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let (w, h) = (64 + next() % 33, 64 + next() % 33);
                let base = [next() as u8, next() as u8, next() as u8];
                let img = RgbImage::from_fn(w, h, |x, y| Rgb([base[0] ^ (x as u8), base[1] ^ (y as u8), base[2]]));
                DynamicImage::ImageRgb8(img).save_with_format(d.join(format!("{wnid}_{i}.JPEG")), ImageFormat::Jpeg).unwrap();
            }
        }
    }
}

/// evaluate_imagenet.py's linear protocol (SGD 0.3, cosine, RandomResizedCrop 224 + flip /
/// Resize 256 + CenterCrop 224, eval-mode backbone, best top-1 and top-5) gives the same numbers
/// through the CLI and the library, on the ImageNet-layout fixture and the bare ResNet-50 fixture.
#[test]
fn imagenet_linear_protocol_cli_equals_library() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("imagenet");
    imagenet_folder(&data);
    let backbone = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_resnet50_backbone.pth");
    let out = ok(&[
        "linear", "--checkpoint", backbone.to_str().unwrap(), "--preset", "imagenet-r50-300ep-lreg1", "--data-dir", data.to_str().unwrap(),
        "--imagenet-protocol", "--epochs", "3", "--batch-size", "4", "--seed", "5", "--json",
    ]);
    let cli: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let (enc, _, _) = mixbt::ckpt::load_encoder(&backbone, &candle_core::Device::Cpu).unwrap();
    let mut r = mixbt::train::presets::get("imagenet-r50-300ep-lreg1").unwrap();
    r.data.dir = Some(data.clone());
    let train = mixbt::data::open(&r.data, mixbt::data::Split::Train).unwrap();
    let test = mixbt::data::open(&r.data, mixbt::data::Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (12, 6));
    let cfg = mixbt::eval::LinearProbeConfig { epochs: 3, batch_size: 4, seed: 5, augment: true, ..mixbt::eval::LinearProbeConfig::imagenet() };
    let (tt, et) = mixbt::eval::LinearProbeConfig::imagenet_transforms();
    let lib = mixbt::eval::linear_probe(&enc, train, test, &tt, &et, &cfg, |_| {}).unwrap();
    assert_eq!(lib.epochs.len(), 3);
    assert!((lib.epochs[0].lr - 0.3).abs() < 1e-12, "SGD 0.3 with a cosine over the epochs: {:?}", lib.epochs[0]);
    for (k, v) in [("best_top1", lib.best_top1), ("best_top5", lib.best_top5), ("last_top1", lib.last_top1), ("last_top5", lib.last_top5)] {
        assert_eq!(cli[k].as_f64().unwrap(), v, "{k}: CLI {cli} vs library {lib:?}");
    }
    assert_eq!(lib.best_top5, lib.epochs.iter().map(|e| e.test_top5).fold(0.0, f64::max));
}

/// `--method` on a preset, the presets' method column, flags a method does not have, and the
/// baselines' final classifier (`linear --ssl-sota-protocol`).
#[test]
fn methods_on_the_command_line() {
    let list = ok(&["presets"]);
    for (preset, method) in [("quickstart ", "mixbt"), ("quickstart-bt", "bt"), ("quickstart-byol", "byol"), ("simclr-cifar10", "simclr"), ("wmse-cifar100", "wmse")] {
        let line = list.lines().find(|l| l.starts_with(preset)).unwrap_or_else(|| panic!("{preset} not listed:\n{list}"));
        assert!(line.split_whitespace().nth(1) == Some(method), "{line}");
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("byol");
    let small = ["--width", "0.0625", "--batch-size", "16", "--train-subset", "32", "--test-subset", "20", "--bank-subset", "40", "--epochs", "1"];
    let mut a = vec!["pretrain", "--preset", "quickstart", "--method", "byol", "--out", run.to_str().unwrap(), "--no-progress", "--skip-random-init-knn"];
    a.extend(small);
    let out = ok(&a);
    assert!(out.contains("k = 5, Euclidean"), "{out}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["method"], "byol");
    assert!(summary["knn5_top1"].as_f64().is_some());
    let recipe = mixbt::train::Recipe::from_file(&run).unwrap();
    assert_eq!(recipe.name, "quickstart-byol", "--method on quickstart takes the quickstart-byol preset");
    assert!(run.join("checkpoints/step-00000002/method.safetensors").is_file(), "BYOL checkpoints its target network and predictor");
    // The model file is a plain encoder: k-NN and the ssl-sota classifier read it.
    ok(&["knn", "--checkpoint", run.to_str().unwrap(), "--preset", "quickstart", "--test-subset", "20", "--bank-subset", "40"]);
    let lin = ok(&["linear", "--checkpoint", run.to_str().unwrap(), "--preset", "quickstart", "--ssl-sota-protocol", "--epochs", "2", "--batch-size", "20", "--test-subset", "20", "--bank-subset", "40"]);
    assert!(lin.contains("linear probe: best top-1"), "{lin}");
    // λ_reg and λ_BT belong to Barlow Twins.
    for flag in [["--lambda-reg", "1"], ["--lambda-bt", "0.01"]] {
        let (okk, _, err) = mixbt(&["pretrain", "--preset", "quickstart", "--method", "simclr", flag[0], flag[1], "--no-progress"]);
        assert!(!okk && err.contains(flag[0]) && err.contains("simclr has no"), "{err}");
    }
    let (okk, _, err) = mixbt(&["pretrain", "--method", "moco", "--no-progress"]);
    assert!(!okk && err.contains("unknown method `moco`"), "{err}");
}

/// Training holds its resident memory flat: the BYOL step (two networks, Winograd convolutions
/// of many sizes) once grew the process by ~1 MB a step under jemalloc's default extent reuse
/// until the kernel killed a CIFAR-10 run. `summary.json` records the peak; 100 steps may not
/// end much above 20.
#[test]
fn training_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let peak = |steps: &str| {
        let run = dir.path().join(format!("byol-{steps}"));
        let a = ["pretrain", "--preset", "quickstart", "--method", "byol", "--max-steps", steps, "--test-subset", "50", "--bank-subset", "100", "--out", run.to_str().unwrap(), "--no-progress", "--skip-random-init-knn"];
        ok(&a);
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
        let mib = summary["peak_rss_mib"].as_f64().unwrap_or(f64::NAN);
        assert!(mib.is_finite() && mib > 10.0, "peak_rss_mib {:?}", summary["peak_rss_mib"]);
        mib
    };
    let (short, long) = (peak("20"), peak("100"));
    assert!(long - short < 30.0, "the resident memory grew from {short:.0} MiB after 20 steps to {long:.0} MiB after 100");
}

/// `mixbt study … --lr`: every run of the study trains at that learning rate, and the stored
/// study records it.
#[test]
fn a_study_at_another_learning_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (work, out) = (dir.path().join("w"), dir.path().join("o"));
    ok(&[
        "study", "methods", "--preset", "quickstart", "--methods", "bt", "--seeds", "0", "--epochs", "1", "--train-subset", "64",
        "--linear-epochs", "0", "--lr", "5e-3", "--work", work.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress",
    ]);
    let lr = |p: &Path| -> f64 {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        let r = if v.get("recipe").is_some() { &v["recipe"] } else { &v };
        r["optimizer"]["lr"].as_f64().unwrap_or_else(|| panic!("{}: no optimizer.lr", p.display()))
    };
    let runs: Vec<_> = std::fs::read_dir(&work).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(lr(&runs[0].join("recipe.json")), 5e-3);
    assert_eq!(lr(&out.join("study.json")), 5e-3);
    assert_ne!(mixbt::train::presets::quickstart().optimizer.base_lrs()[0], 5e-3, "the test must change the rate");
}
