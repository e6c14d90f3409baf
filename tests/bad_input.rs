//! Issue 17, case by case, through the `mixbt` binary as a hostile new user would: each case
//! exits non-zero (or succeeds correctly) with a message naming the flag or the file, never
//! panics, never hangs past its time-out, and leaves nothing half-written.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::fixtures;
use mixbt::image::{Rgb, RgbImage};
use mixbt_hub_server::{Faults, HubServer, ServerConfig, SilentServer};

struct Out {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mixbt"));
    c.args(args).env_remove("HF_ENDPOINT").env_remove("HF_HUB_OFFLINE").env_remove("HF_TOKEN");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    Out { ok: o.status.success(), code: o.status.code(), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() }
}

fn run(args: &[&str]) -> Out {
    run_env(args, &[])
}

/// Fails with a message containing every one of `needles`, and without a panic.
fn fails(args: &[&str], needles: &[&str]) -> Out {
    let o = run(args);
    check_failure(args, &o, needles);
    o
}

fn check_failure(args: &[&str], o: &Out, needles: &[&str]) {
    assert!(!o.ok, "mixbt {args:?} succeeded:\n{}\n{}", o.stdout, o.stderr);
    assert_ne!(o.code, Some(101), "mixbt {args:?} panicked:\n{}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "mixbt {args:?} panicked:\n{}", o.stderr);
    for n in needles {
        assert!(o.stderr.contains(n), "mixbt {args:?}: the message lacks `{n}`:\n{}", o.stderr);
    }
}

fn succeeds(args: &[&str]) -> Out {
    let o = run(args);
    assert!(o.ok, "mixbt {args:?} failed:\n{}\n{}", o.stdout, o.stderr);
    o
}

/// A tiny pre-training run on the built-in data (1 step, no random-init k-NN).
const TINY: [&str; 16] = [
    "--width", "0.0625", "--batch-size", "8", "--train-subset", "32", "--test-subset", "20", "--bank-subset", "40", "--max-steps", "1", "--no-progress",
    "--skip-random-init-knn", "--workers", "1",
];

fn pretrain_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["pretrain", "--out", out];
    a.extend(TINY);
    a.extend(extra);
    a
}

fn img(w: u32, h: u32, seed: u8) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x as u8).wrapping_mul(seed), (y as u8).wrapping_add(seed), seed]))
}

#[test]
fn numeric_flags_are_checked_where_they_are_parsed() {
    for (args, flag) in [
        (vec!["pretrain", "--checkpoint-every", "0"], "--checkpoint-every"),
        (vec!["pretrain", "--time-budget-min=-1"], "--time-budget-min"),
        (vec!["pretrain", "--time-budget-min", "nan"], "--time-budget-min"),
        (vec!["pretrain", "--time-budget-min", "inf"], "--time-budget-min"),
        (vec!["pretrain", "--lr=-1"], "--lr"),
        (vec!["pretrain", "--lr", "NaN"], "--lr"),
        (vec!["pretrain", "--lr", "0"], "--lr"),
        (vec!["pretrain", "--lambda-reg=-5"], "--lambda-reg"),
        (vec!["pretrain", "--lambda-bt", "inf"], "--lambda-bt"),
        (vec!["pretrain", "--width", "0"], "--width"),
        (vec!["pretrain", "--epochs", "0"], "--epochs"),
        (vec!["pretrain", "--batch-size", "0"], "--batch-size"),
        (vec!["pretrain", "--train-subset", "0"], "--train-subset"),
        (vec!["knn", "--checkpoint", "x", "--k", "0"], "--k"),
        (vec!["knn", "--checkpoint", "x", "--temperature", "0"], "--temperature"),
        (vec!["knn", "--checkpoint", "x", "--temperature", "nan"], "--temperature"),
        (vec!["knn", "--checkpoint", "x", "--temperature=-1"], "--temperature"),
        (vec!["knn", "--checkpoint", "x", "--test-subset", "0"], "--test-subset"),
        (vec!["linear", "--checkpoint", "x", "--batch-size", "0", "--no-augment"], "--batch-size"),
        (vec!["linear", "--checkpoint", "x", "--epochs", "0"], "--epochs"),
        (vec!["embed", "--checkpoint", "x", "--images", "y", "--out", "z", "--batch-size", "0"], "--batch-size"),
    ] {
        let o = fails(&args, &[flag]);
        assert_eq!(o.code, Some(2), "{args:?}: a usage error\n{}", o.stderr);
    }
    // A batch of one cannot be standardised: the recipe says so, naming the field.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let a = ["pretrain", "--out", out.to_str().unwrap(), "--width", "0.0625", "--batch-size", "1", "--train-subset", "32", "--no-progress"];
    fails(&a, &["batch_size", "at least 2"]);
    assert!(!out.exists(), "a refused run leaves no folder");
}

#[test]
fn resource_caps() {
    let dir = tempfile::tempdir().unwrap();
    // An absurd width is refused up front, naming the flag, before anything is allocated.
    let t0 = Instant::now();
    fails(&["pretrain", "--width", "1e9", "--no-progress"], &["--width", "GiB"]);
    assert!(t0.elapsed() < Duration::from_secs(20));
    // Thousands of workers are capped (with a warning), and the run works.
    let out = dir.path().join("w");
    let mut a = pretrain_args(out.to_str().unwrap(), &[]);
    let i = a.iter().position(|x| *x == "--workers").unwrap();
    a[i + 1] = "10000";
    let o = succeeds(&a);
    assert!(o.stderr.contains("--workers 10000 capped"), "{}", o.stderr);
}

#[test]
fn run_folders_are_locked_and_not_overwritten_by_accident() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    let first = succeeds(&pretrain_args(out_s, &[]));
    assert!(first.stdout.contains("randomly initialised network: not measured"), "{}", first.stdout);
    assert!(!first.stdout.contains("NaN"), "{}", first.stdout);
    let model1 = std::fs::read(out.join("model.safetensors")).unwrap();
    // A second fresh run into the same folder is refused and changes nothing.
    fails(&pretrain_args(out_s, &[]), &[out_s, "previous run", "--overwrite", "--resume"]);
    assert_eq!(std::fs::read(out.join("model.safetensors")).unwrap(), model1);
    // With --overwrite the old run is replaced; the same seed gives a byte-identical model file.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    succeeds(&pretrain_args(out_s, &["--overwrite"]));
    assert_eq!(std::fs::read(out.join("model.safetensors")).unwrap(), model1, "identical runs write identical files");
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "mine", "other files are left alone");
    let ckpts: Vec<_> = std::fs::read_dir(out.join("checkpoints")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(ckpts.len(), 2, "{ckpts:?}"); // step-00000001 and `latest`
    // A folder locked by a live process (this test) is refused, and the lock is left alone.
    let locked = dir.path().join("locked");
    let held = mixbt::io::DirLock::acquire(&locked).unwrap();
    fails(&pretrain_args(locked.to_str().unwrap(), &[]), &["in use by process", &std::process::id().to_string()]);
    assert!(locked.join(".mixbt.lock").is_file());
    drop(held);
    assert!(!locked.exists(), "the lock removes the folder it created, when empty");
    // A stale lock file (its process gone, so its lock released) is taken over; no lock is
    // left after the run.
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::write(locked.join(".mixbt.lock"), "4000000000").unwrap();
    succeeds(&pretrain_args(locked.to_str().unwrap(), &[]));
    assert!(!locked.join(".mixbt.lock").exists());
    // A run that fails before its first checkpoint leaves no half-started run folder.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("train/a")).unwrap();
    std::fs::create_dir_all(data.join("train/b")).unwrap();
    for i in 0..8u8 {
        img(32, 32, i).save(data.join(format!("train/{}/{i}.png", if i % 2 == 0 { "a" } else { "b" }))).unwrap();
    }
    let failed = dir.path().join("failed");
    let mut a = vec!["pretrain", "--dataset", "image-folder", "--data-dir", data.to_str().unwrap(), "--out", failed.to_str().unwrap()];
    a.extend(["--width", "0.0625", "--batch-size", "4", "--max-steps", "1", "--no-progress"]);
    fails(&a, &["no test split", data.to_str().unwrap()]);
    assert!(!failed.exists() || common::files_under(&failed).is_empty(), "left behind: {:?}", common::files_under(&failed));
}

#[test]
fn silent_wrong_answers_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A model with a NaN weight: an error at load time naming the tensor.
    let run = d.join("run");
    succeeds(&pretrain_args(run.to_str().unwrap(), &[]));
    let model = run.join("model.safetensors");
    let mut map = mixbt::io::read_safetensors(&model, &mixbt::candle_core::Device::Cpu).unwrap();
    let meta = mixbt::io::read_safetensors_metadata(&model).unwrap();
    let w = map["f.0.weight"].clone();
    let nan = (w.ones_like().unwrap() * f64::NAN).unwrap();
    map.insert("f.0.weight".into(), nan);
    let bad = d.join("nan.safetensors");
    mixbt::io::write_safetensors(&bad, &map, Some(meta.into_iter().collect())).unwrap();
    fails(&["knn", "--checkpoint", bad.to_str().unwrap(), "--test-subset", "100", "--bank-subset", "600"], &["nan.safetensors", "f.0.weight", "NaN"]);
    // An image folder without test/: an error naming the folder, not k-NN on the training images.
    let data = d.join("folder");
    for (i, c) in ["a", "b", "a", "b"].iter().enumerate() {
        let p = data.join(format!("train/{c}/{i}.png"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        img(32, 32, i as u8).save(p).unwrap();
    }
    fails(&["knn", "--checkpoint", model.to_str().unwrap(), "--dataset", "image-folder", "--data-dir", data.to_str().unwrap()], &["no test split", data.to_str().unwrap()]);
    // One image of another size in an image folder: evaluation resizes it (as the views do).
    img(40, 36, 9).save(data.join("train/a/odd.png")).unwrap();
    std::fs::create_dir_all(data.join("test/a")).unwrap();
    img(32, 32, 5).save(data.join("test/a/t.png")).unwrap();
    img(48, 32, 6).save(data.join("test/a/u.png")).unwrap();
    let o = succeeds(&["knn", "--checkpoint", model.to_str().unwrap(), "--preset", "cifar10-cpu", "--data-dir", data.to_str().unwrap(), "--json"]);
    assert!(o.stdout.contains("\"n_test\":2"), "{}", o.stdout);
    // A CIFAR file cut at a record boundary.
    let cifar = d.join("cifar");
    std::fs::create_dir_all(&cifar).unwrap();
    fixtures::write_cifar10_batch(&cifar.join("test_batch.bin"), &vec![(img(32, 32, 1), 1); 3]).unwrap();
    fails(&["data", "stats", "--dataset", "cifar10", "--data-dir", cifar.to_str().unwrap(), "--split", "test"], &["test_batch.bin", "3 records", "10000"]);
    // Parquet: a label of 2^40 (no allocation), and string labels.
    let pq = d.join("pq");
    std::fs::create_dir_all(&pq).unwrap();
    let f = pq.join("train-00000-of-00001.parquet");
    fixtures::write_hf_parquet(&f, "img", &[(img(8, 8, 1), 0), (img(8, 8, 2), 1 << 40)], None).unwrap();
    fails(&["data", "stats", "--dataset", "parquet", "--data-dir", pq.to_str().unwrap()], &["train-00000-of-00001.parquet", "row 1", "1099511627776"]);
    let label = mixbt::polars::prelude::Column::new("label".into(), ["cat", "dog"]);
    fixtures::write_hf_parquet_with(&f, "img", &[img(8, 8, 1), img(8, 8, 2)], Some(label), None).unwrap();
    fails(&["data", "stats", "--dataset", "parquet", "--data-dir", pq.to_str().unwrap()], &["label", "not integers"]);
}

#[test]
fn files_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = d.join("run");
    succeeds(&pretrain_args(run.to_str().unwrap(), &[]));
    let model = run.join("model.safetensors");
    // `embed --out afile/x.safetensors`: the message says that `afile` is a file.
    let afile = d.join("afile");
    std::fs::write(&afile, "x").unwrap();
    let imgs = d.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    img(32, 32, 1).save(imgs.join("a.png")).unwrap();
    let target = afile.join("x.safetensors");
    fails(&["embed", "--checkpoint", model.to_str().unwrap(), "--images", imgs.to_str().unwrap(), "--out", target.to_str().unwrap()], &["afile", "is a file, not a folder"]);
    // A tensor whose bytes do not match its shape: the message names the tensor.
    let bytes = std::fs::read(&model).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let shape = header["f.0.weight"]["shape"].as_array_mut().unwrap();
    shape.insert(0, 2.into()); // one more dimension of 2: twice the bytes it has
    let h2 = serde_json::to_vec(&header).unwrap();
    let mut bad = (h2.len() as u64).to_le_bytes().to_vec();
    bad.extend(&h2);
    bad.extend(&bytes[8 + n..]);
    let badf = d.join("shape.safetensors");
    std::fs::write(&badf, bad).unwrap();
    fails(&["knn", "--checkpoint", badf.to_str().unwrap()], &["shape.safetensors", "f.0.weight"]);
    // A folder link loop is walked once.
    let data = d.join("loop");
    for c in ["a", "b"] {
        std::fs::create_dir_all(data.join("train").join(c)).unwrap();
        img(32, 32, 3).save(data.join("train").join(c).join("x.png")).unwrap();
    }
    std::os::unix::fs::symlink("..", data.join("train/a/up")).unwrap();
    let o = succeeds(&["data", "stats", "--dataset", "image-folder", "--data-dir", data.to_str().unwrap(), "--json"]);
    assert!(o.stdout.lines().last().unwrap().contains("\"images\":2"), "{}", o.stdout);
}

#[test]
fn the_hub_never_hangs_and_never_leaves_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let cache_s = cache.path().to_str().unwrap();
    // A server that accepts and never answers: the pull ends after the time-out, clearly.
    let silent = SilentServer::start().unwrap();
    let t0 = Instant::now();
    let o = run_env(&["hub", "pull", "hub:org/m/w.pth", "--cache-dir", cache_s], &[("HF_ENDPOINT", silent.url()), ("HF_HUB_DOWNLOAD_TIMEOUT", "1")]);
    check_failure(&["hub", "pull"], &o, &["no answer", "HF_HUB_DOWNLOAD_TIMEOUT"]);
    assert!(t0.elapsed() < Duration::from_secs(15), "took {:?}", t0.elapsed());
    assert!(common::files_under(cache.path()).is_empty());
    // A bad time-out value is named.
    let o = run_env(&["hub", "pull", "hub:org/m/w.pth", "--offline", "--cache-dir", cache_s], &[("HF_HUB_DOWNLOAD_TIMEOUT", "soon")]);
    assert!(!o.ok && o.stderr.contains("HF_HUB_DOWNLOAD_TIMEOUT=soon"), "{}", o.stderr);
    // Path traversal, online and offline: refused before any request or cache access.
    let s = HubServer::start(ServerConfig::default()).unwrap();
    s.add_file("model", "a/b", "x", vec![1, 2, 3]);
    for reference in ["hub:a/b/../../../../escape/x", "hub:a/b/../../../../../../etc/passwd"] {
        let o = run_env(&["hub", "pull", reference, "--cache-dir", cache_s], &[("HF_ENDPOINT", s.url())]);
        check_failure(&["hub", "pull", reference], &o, &["not a valid path"]);
        let o = run_env(&["hub", "pull", reference, "--cache-dir", cache_s, "--offline"], &[]);
        check_failure(&["hub", "pull", reference, "--offline"], &o, &["not a valid path"]);
        let o = run_env(&["knn", "--checkpoint", reference], &[("HF_ENDPOINT", s.url()), ("HF_HUB_CACHE", cache_s)]);
        check_failure(&["knn", "--checkpoint", reference], &o, &["not a valid path"]);
    }
    assert!(s.requests().is_empty(), "{:?}", s.requests());
    assert!(common::files_under(cache.path()).is_empty());
    assert!(!cache.path().join("../escape").exists());
    // A server error is reported as one, not as "cannot reach".
    s.set_faults(Faults { error500: ["x".to_string()].into(), ..Default::default() });
    let o = run_env(&["hub", "pull", "hub:a/b/x", "--cache-dir", cache_s], &[("HF_ENDPOINT", s.url())]);
    check_failure(&["hub", "pull", "hub:a/b/x"], &o, &["HTTP 500"]);
    assert!(!o.stderr.contains("cannot reach"), "{}", o.stderr);
}
