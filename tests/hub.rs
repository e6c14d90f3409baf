//! The Hub client against the local Hub server (same HTTP protocol): pull, cache and offline
//! use, 404/401, truncated downloads and wrong checksums, push (regular, LFS basic and
//! multipart) and the push → pull round trip, Hub data sets.

use std::path::{Path, PathBuf};

mod common;

use mixbt::hub::{self, push, HubConfig, HubRef, RepoKind};
use mixbt_hub_server::{Faults, HubServer, ServerConfig, SilentServer};

const TOKEN: &str = "hf_test_token";

fn server() -> HubServer {
    HubServer::start(ServerConfig { token: Some(TOKEN.into()), user: "tester".into(), multipart_chunk: None }).unwrap()
}

fn cfg(s: &HubServer, cache: &Path, token: bool) -> HubConfig {
    HubConfig {
        endpoint: s.url().into(),
        token: token.then(|| TOKEN.to_string()),
        cache_dir: cache.into(),
        offline: false,
        progress: false,
        timeout: std::time::Duration::from_secs(10),
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

fn r(s: &str) -> HubRef {
    HubRef::parse(s).unwrap()
}

#[test]
fn parse_references() {
    let h = r("hub:wgcban/mix-bt/checkpoints/4wdhbpcf_0.0078125_1024_256_cifar10_model.pth");
    assert_eq!((h.repo.as_str(), h.revision.as_str(), h.path.as_str()), ("wgcban/mix-bt", "main", "checkpoints/4wdhbpcf_0.0078125_1024_256_cifar10_model.pth"));
    let h = r("hub:org/repo@v1.0/a/b.safetensors");
    assert_eq!((h.revision.as_str(), h.path.as_str()), ("v1.0", "a/b.safetensors"));
    assert_eq!(r("hub:datasets/uoft-cs/cifar10/x.parquet").kind, RepoKind::Dataset);
    assert!(HubRef::parse("hub:only-org").is_err());
    let reg = hub::registry();
    assert_eq!(reg.checkpoints.len(), 22);
    let stl = reg.checkpoints.iter().find(|c| c.file.starts_with("i7det4xq")).unwrap();
    assert_eq!(stl.sha256.as_deref(), Some("97e36848d24a327f26b53edb43f51a9c0e004a30e5ac450bf7f8eed1467c152e"));
}

#[test]
fn pull_uses_the_cache_and_works_offline() {
    let s = server();
    let bytes = std::fs::read(fixture("tiny_r18_cifar.pth")).unwrap();
    s.add_file("model", "wgcban/mix-bt", "checkpoints/tiny.pth", bytes.clone());
    let cache = tempfile::tempdir().unwrap();
    let c = cfg(&s, cache.path(), false);
    let p = hub::pull(&r("hub:wgcban/mix-bt/checkpoints/tiny.pth"), &c, None).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), bytes);
    assert!(p.starts_with(cache.path()));
    // The blob is named by its sha256 (LFS ETag) and verified.
    let blob = std::fs::canonicalize(&p).unwrap();
    assert_eq!(blob.file_name().unwrap().to_string_lossy(), hub::sha256_file(&p).unwrap());
    // The cache layout is hf-hub's (and the Python client's): its reader finds the file.
    assert_eq!(hf_hub_cached(cache.path(), "wgcban/mix-bt", "checkpoints/tiny.pth"), Some(p.clone()));
    let n_requests = s.requests().len();
    drop(s);
    // Offline: the cache answers, the (gone) server is not asked.
    let off = HubConfig { offline: true, ..c.clone() };
    assert_eq!(hub::pull(&r("hub:wgcban/mix-bt/checkpoints/tiny.pth"), &off, None).unwrap(), p);
    assert!(n_requests >= 2);
    let err = hub::pull(&r("hub:wgcban/mix-bt/checkpoints/other.pth"), &off, None).unwrap_err().to_string();
    assert!(err.contains("not in the cache") && err.contains("HF_HUB_OFFLINE"), "{err}");
    // A wrong expected checksum (registry) is a clear error and evicts the file.
    let err = hub::pull(&r("hub:wgcban/mix-bt/checkpoints/tiny.pth"), &off, Some(&"0".repeat(64))).unwrap_err().to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(!p.exists());
}

#[test]
fn not_found_unauthorized_truncated_and_corrupt() {
    let s = server();
    s.add_file("model", "org/private", "w.safetensors", vec![1, 2, 3, 4]);
    s.set_private("model", "org/private", true);
    s.add_file("model", "org/m", "big.pth", (0..200_000u32).map(|i| (i % 251) as u8).collect());
    let cache = tempfile::tempdir().unwrap();
    let c = cfg(&s, cache.path(), false);
    let err = hub::pull(&r("hub:org/m/missing.pth"), &c, None).unwrap_err().to_string();
    assert!(err.contains("404") && err.contains("not found"), "{err}");
    let err = hub::pull(&r("hub:org/nope/x.pth"), &c, None).unwrap_err().to_string();
    assert!(err.contains("404"), "{err}");
    let err = hub::pull(&r("hub:org/private/w.safetensors"), &c, None).unwrap_err().to_string();
    assert!(err.contains("401") && err.contains("HF_TOKEN"), "{err}");
    assert!(hub::pull(&r("hub:org/private/w.safetensors"), &cfg(&s, cache.path(), true), None).is_ok());
    // Truncated body: an error, and nothing usable is left in the cache.
    s.set_faults(Faults { truncate: ["big.pth".to_string()].into(), ..Default::default() });
    let err = hub::pull(&r("hub:org/m/big.pth"), &c, None).unwrap_err().to_string();
    assert!(err.contains("big.pth"), "{err}");
    assert!(hf_hub_cached(cache.path(), "org/m", "big.pth").is_none());
    // Corrupted body (right ETag, wrong bytes): checksum error, evicted.
    s.set_faults(Faults { corrupt: ["big.pth".to_string()].into(), ..Default::default() });
    let err = hub::pull(&r("hub:org/m/big.pth"), &c, None).unwrap_err().to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(hf_hub_cached(cache.path(), "org/m", "big.pth").is_none());
    // Healthy again: the pull succeeds.
    s.set_faults(Faults::default());
    let p = hub::pull(&r("hub:org/m/big.pth"), &c, None).unwrap();
    assert_eq!(std::fs::read(p).unwrap().len(), 200_000);
}

fn hf_hub_cached(cache: &Path, repo: &str, file: &str) -> Option<PathBuf> {
    hf_hub::Cache::new(cache.to_path_buf()).repo(hf_hub::Repo::model(repo.to_string())).get(file)
}

#[test]
fn push_then_pull_round_trip() {
    for multipart in [None, Some(64 * 1024)] {
        let s = HubServer::start(ServerConfig { token: Some(TOKEN.into()), user: "tester".into(), multipart_chunk: multipart }).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let conv = mixbt::ckpt::convert::convert(&fixture("tiny_r18_cifar.pth"), "tiny_r18_cifar.pth", out.path()).unwrap();
        assert_eq!(conv.contents, "full");
        assert_eq!(conv.skipped_keys.len(), 18, "thop keys of a ResNet-18 Model");
        let card = std::fs::read_to_string(out.path().join("README.md")).unwrap();
        assert!(card.starts_with("---\n") && card.contains("library_name: mixbt"));
        // Without a token: a clear error.
        let err = push::push_folder(&cfg(&s, cache.path(), false), "tester/tiny", out.path(), "m", false).unwrap_err().to_string();
        assert!(err.contains("token"), "{err}");
        let rep = push::push_folder(&cfg(&s, cache.path(), true), "tester/tiny", out.path(), "first upload", false).unwrap();
        assert_eq!(rep.lfs_files, vec!["model.safetensors"]);
        assert!(rep.regular_files.contains(&"README.md".to_string()) && rep.regular_files.contains(&"config.json".to_string()));
        assert_eq!(s.is_lfs_file("model", "tester/tiny", "model.safetensors"), Some(true));
        assert!(s.commits("model", "tester/tiny").contains(&"first upload".to_string()));
        if multipart.is_some() {
            assert!(s.requests().iter().any(|q| q.contains("/lfs-part/")), "multipart parts were uploaded");
        }
        // Pull it back and load it.
        let p = hub::pull(&r("hub:tester/tiny/model.safetensors"), &cfg(&s, cache.path(), false), None).unwrap();
        let (_, store, _) = mixbt::ckpt::load_encoder(&p, &candle_core::Device::Cpu).unwrap();
        let orig = mixbt::ckpt::torch::read_state_dict(&fixture("tiny_r18_cifar.pth")).unwrap();
        for (k, v) in &orig {
            let got = store.get(k).unwrap().as_tensor().to_dtype(v.dtype()).unwrap().flatten_all().unwrap();
            let want = v.flatten_all().unwrap();
            assert_eq!(got.to_vec1::<f32>().ok(), want.to_vec1::<f32>().ok(), "{k}");
        }
        // A second push of the same weights does not upload the LFS object again.
        let before = s.requests().iter().filter(|q| q.contains("lfs-upload") || q.contains("lfs-part")).count();
        push::push_folder(&cfg(&s, cache.path(), true), "tester/tiny", out.path(), "again", false).unwrap();
        let after = s.requests().iter().filter(|q| q.contains("lfs-upload") || q.contains("lfs-part")).count();
        assert_eq!(before, after);
    }
}

#[test]
fn hub_datasets_as_parquet() {
    use mixbt::data::Split;
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let imgs: Vec<(image::RgbImage, usize)> = (0..5).map(|i| (image::RgbImage::from_pixel(32, 32, image::Rgb([i as u8 * 40, 0, 0])), i % 2)).collect();
    for (split, n) in [("train", 5), ("test", 2)] {
        let p = dir.path().join(format!("{split}.parquet"));
        common::fixtures::write_hf_parquet(&p, "img", &imgs[..n], None).unwrap();
        s.add_file("dataset", "uoft-cs/cifar10", &format!("plain_text/{split}-00000-of-00001.parquet"), std::fs::read(&p).unwrap());
    }
    s.add_file("dataset", "uoft-cs/cifar10", "README.md", b"# cifar".to_vec());
    let cache = tempfile::tempdir().unwrap();
    let c = cfg(&s, cache.path(), false);
    let files = hub::list_files(RepoKind::Dataset, "uoft-cs/cifar10", "main", &c).unwrap();
    assert_eq!(files.len(), 3);
    let tr = mixbt::data::hub::open_hub_dataset_with("uoft-cs/cifar10", Split::Train, false, &c).unwrap();
    assert_eq!(tr.len(), 5);
    assert_eq!(tr.image(3).unwrap(), imgs[3].0);
    let te = mixbt::data::hub::open_hub_dataset_with("uoft-cs/cifar10", Split::Test, false, &c).unwrap();
    assert_eq!(te.len(), 2);
    let err = mixbt::data::hub::open_hub_dataset_with("org/none", Split::Train, false, &c).err().unwrap().to_string();
    assert!(err.contains("404"), "{err}");
    // Offline, with the server gone: the cached snapshot answers, and no request is made.
    let n = s.requests().len();
    drop(s);
    let off = HubConfig { offline: true, endpoint: "http://127.0.0.1:9".into(), ..c.clone() };
    assert_eq!(hub::list_files(RepoKind::Dataset, "uoft-cs/cifar10", "main", &off).unwrap().len(), 2, "the two parquet files were pulled");
    let tr = mixbt::data::hub::open_hub_dataset_with("uoft-cs/cifar10", Split::Train, false, &off).unwrap();
    assert_eq!(tr.len(), 5);
    assert_eq!(mixbt::data::hub::open_hub_dataset_with("uoft-cs/cifar10", Split::Test, false, &off).unwrap().len(), 2);
    let err = mixbt::data::hub::open_hub_dataset_with("org/other", Split::Train, false, &off).err().unwrap().to_string();
    assert!(err.contains("HF_HUB_OFFLINE") && err.contains("no snapshot"), "{err}");
    assert!(n > 0);
}

#[test]
fn cli_hub_commands_and_hub_checkpoints() {
    let s = server();
    s.add_file("model", "wgcban/mix-bt", "checkpoints/tiny.pth", std::fs::read(fixture("tiny_r18_cifar.pth")).unwrap());
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mixbt"))
            .args(args)
            .env("HF_ENDPOINT", s.url())
            .env("HF_HUB_CACHE", cache.path())
            .env("HF_TOKEN", TOKEN)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, out, _) = run(&["hub", "list"]);
    assert!(ok && out.contains("4wdhbpcf_0.0078125_1024_256_cifar10_model.pth") && out.contains("90.52"), "{out}");
    let (ok, out, err) = run(&["hub", "pull", "hub:wgcban/mix-bt/checkpoints/tiny.pth"]);
    assert!(ok, "{err}");
    assert!(Path::new(out.trim()).is_file());
    let conv = work.path().join("conv");
    let (ok, out, err) = run(&["hub", "convert", "hub:wgcban/mix-bt/checkpoints/tiny.pth", "--out", conv.to_str().unwrap()]);
    assert!(ok && out.contains("18 thop keys skipped"), "{out}{err}");
    let (ok, out, err) = run(&["hub", "push", conv.to_str().unwrap(), "--repo", "tester/converted"]);
    assert!(ok && out.contains("model.safetensors"), "{out}{err}");
    // A hub: checkpoint wherever a checkpoint is accepted.
    let imgs = work.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    image::RgbImage::from_pixel(32, 32, image::Rgb([10, 200, 30])).save(imgs.join("a.png")).unwrap();
    let f = work.path().join("f.safetensors");
    let (ok, _, err) = run(&["embed", "--checkpoint", "hub:tester/converted/model.safetensors", "--images", imgs.to_str().unwrap(), "--out", f.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["embed", "--checkpoint", "hub:tester/converted/nope.safetensors", "--images", imgs.to_str().unwrap(), "--out", f.to_str().unwrap()]);
    assert!(!ok && err.contains("404"), "{err}");
    // A converted file that is neither released nor a run of ours: an "unknown run" card. A run
    // of ours: the card takes data set, method, λ values, epochs and batch size from
    // recipe.json, lists the k-NN result in a model-index, and names no local path.
    let card = String::from_utf8(s.file("model", "tester/converted", "README.md").unwrap()).unwrap();
    assert!(card.contains("(unknown run)"), "{card}");
    let r = work.path().join("run");
    let (ok, _, err) = run(&[
        "pretrain", "--width", "0.0625", "--batch-size", "16", "--train-subset", "32", "--test-subset", "20", "--bank-subset", "40", "--epochs", "1",
        "--lambda-reg", "2", "--out", r.to_str().unwrap(), "--no-progress", "--skip-random-init-knn",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["hub", "push", r.to_str().unwrap(), "--repo", "tester/run"]);
    assert!(ok, "{out}{err}");
    let card = String::from_utf8(s.file("model", "tester/run", "README.md").unwrap()).unwrap();
    let knn = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(r.join("summary.json")).unwrap()).unwrap()["knn_top1"].as_f64().unwrap();
    for want in [
        "# Mixed Barlow Twins — resnet18 ×0.0625 on builtin (recipe `quickstart`)",
        "| λ_BT / λ_reg | 0.0078125 / 2 |",
        "| epochs | 1 |",
        "| batch size | 16 |",
        "datasets:\n- builtin\n",
        "pipeline_tag: image-feature-extraction",
        "model-index:\n- name: ",
        &format!("      value: {knn}\n      name: \"k-NN top-1 (k=200, T=0.5), this run\""),
    ] {
        assert!(card.contains(want), "the card lacks {want:?}:\n{card}");
    }
    assert!(!card.contains("resnet18 (unknown)") && !card.contains("– / –"), "{card}");
    assert!(!card.contains(&work.path().display().to_string()), "{card}");
}

#[test]
fn a_silent_or_stalling_server_times_out_and_leaves_nothing_in_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    // Accepts the connection, never answers.
    let silent = SilentServer::start().unwrap();
    let c = HubConfig {
        endpoint: silent.url().into(),
        token: Some(TOKEN.into()),
        cache_dir: cache.path().into(),
        offline: false,
        progress: false,
        timeout: std::time::Duration::from_millis(800),
    };
    let t0 = std::time::Instant::now();
    let err = hub::pull(&r("hub:org/m/w.pth"), &c, None).unwrap_err().to_string();
    assert!(t0.elapsed() < std::time::Duration::from_secs(10), "took {:?}", t0.elapsed());
    assert!(err.contains("no answer") && err.contains("HF_HUB_DOWNLOAD_TIMEOUT") && !err.contains(TOKEN), "{err}");
    let err = hub::list_files(RepoKind::Dataset, "org/d", "main", &c).unwrap_err().to_string();
    assert!(err.contains("no answer"), "{err}");
    assert!(common::files_under(cache.path()).is_empty(), "{:?}", common::files_under(cache.path()));
    // Headers and half the body, then silence: the read time-out ends it, nothing is cached.
    let s = server();
    s.add_file("model", "org/m", "big.pth", (0..300_000u32).map(|i| (i % 241) as u8).collect());
    s.set_faults(Faults { stall: ["big.pth".to_string()].into(), ..Default::default() });
    let c = HubConfig { timeout: std::time::Duration::from_millis(800), ..cfg(&s, cache.path(), false) };
    let t0 = std::time::Instant::now();
    let err = hub::pull(&r("hub:org/m/big.pth"), &c, None).unwrap_err().to_string();
    assert!(t0.elapsed() < std::time::Duration::from_secs(10), "took {:?}", t0.elapsed());
    assert!(err.contains("big.pth") && (err.contains("stalled") || err.contains("no answer")), "{err}");
    assert!(hf_hub_cached(cache.path(), "org/m", "big.pth").is_none());
    assert!(common::files_under(cache.path()).is_empty(), "left behind: {:?}", common::files_under(cache.path()));
    // The time-out comes from HF_HUB_DOWNLOAD_TIMEOUT.
    assert_eq!(hub::http::timeout_from_env().unwrap(), std::time::Duration::from_secs(10));
}

#[test]
fn a_server_error_is_reported_as_one() {
    let s = server();
    s.add_file("model", "org/m", "w.pth", vec![7; 100]);
    s.set_faults(Faults { error500: ["w.pth".to_string()].into(), ..Default::default() });
    let cache = tempfile::tempdir().unwrap();
    let err = hub::pull(&r("hub:org/m/w.pth"), &cfg(&s, cache.path(), false), None).unwrap_err().to_string();
    assert!(err.contains("HTTP 500") && !err.contains("cannot reach") && !err.contains("OFFLINE"), "{err}");
}

#[test]
fn references_that_escape_the_cache_are_refused_before_any_request() {
    let s = server();
    s.add_file("model", "a/b", "x", vec![1]);
    let cache = tempfile::tempdir().unwrap();
    let c = cfg(&s, cache.path(), false);
    for bad in [
        "hub:a/b/../../../../escape/x",
        "hub:a/b/../../../../../../etc/passwd",
        "hub:a/b/./x",
        "hub:a/b//x",
        "hub:a/b/dir\\x",
        "hub:../b/x",
        "hub:a/..b/x",
        "hub:a/b c/x",
        "hub:a/b@../../x/y",
        "hub:a/-b/x",
    ] {
        let err = HubRef::parse(bad).unwrap_err().to_string();
        assert!(err.contains(bad.trim_start_matches("hub:").split('/').next().unwrap()) || err.contains("Hub"), "{bad}: {err}");
    }
    // A reference built by hand (fields are public) is checked by pull itself.
    let sneaky = HubRef { kind: RepoKind::Model, repo: "a/b".into(), revision: "main".into(), path: "../../../../x".into() };
    assert!(hub::pull(&sneaky, &c, None).is_err());
    let sneaky = HubRef { kind: RepoKind::Model, repo: "../../x".into(), revision: "main".into(), path: "x".into() };
    assert!(hub::pull(&sneaky, &c, None).is_err());
    let offline = HubConfig { offline: true, ..c.clone() };
    assert!(hub::pull(&HubRef { path: "/etc/passwd".into(), ..r("hub:a/b/x") }, &offline, None).is_err());
    assert!(s.requests().is_empty(), "requests were sent: {:?}", s.requests());
    assert!(common::files_under(cache.path()).is_empty());
    // A listing that names a path outside the repo is refused.
    s.add_file("dataset", "org/d", "../evil.parquet", vec![1]);
    let err = hub::list_files(RepoKind::Dataset, "org/d", "main", &c).unwrap_err().to_string();
    assert!(err.contains("../evil.parquet"), "{err}");
    // Names the server sends become file names: they must be plain.
    assert!(hub::validate_name("ETag", "0a1b2c").is_ok());
    for bad in ["..", "a/b", "../x", "", "a\\b"] {
        assert!(hub::validate_name("ETag", bad).is_err(), "{bad}");
    }
}

#[test]
fn the_token_goes_to_the_hub_host_only() {
    use mixbt::hub::download::same_host;
    assert!(same_host("https://huggingface.co/org/m/resolve/main/x", "https://huggingface.co"));
    assert!(same_host("http://127.0.0.1:8080/a", "http://127.0.0.1:8080"));
    assert!(!same_host("http://127.0.0.1:9090/a", "http://127.0.0.1:8080"));
    assert!(!same_host("https://cdn-lfs.hf.co/repos/ab/cd?X-Amz-Signature=1", "https://huggingface.co"));
    assert!(!same_host("https://huggingface.co.evil.example/x", "https://huggingface.co"));
}

/// The real Hub answers an LFS file with a 302 to its CDN (an absolute address) carrying
/// X-Repo-Commit, X-Linked-Etag and X-Linked-Size: the pull follows it and caches the file by its
/// sha256, in hf-hub's layout.
#[test]
fn pull_through_a_cdn_redirect() {
    let s = server();
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    s.add_file("model", "org/m", "w.pth", bytes.clone());
    s.set_faults(Faults { cdn: ["w.pth".to_string()].into(), ..Default::default() });
    let cache = tempfile::tempdir().unwrap();
    let p = hub::pull(&r("hub:org/m/w.pth"), &cfg(&s, cache.path(), false), None).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), bytes);
    let blob = std::fs::canonicalize(&p).unwrap();
    assert_eq!(blob.file_name().unwrap().to_string_lossy(), hub::sha256_file(&p).unwrap());
    assert_eq!(hf_hub_cached(cache.path(), "org/m", "w.pth"), Some(p));
    let reqs = s.requests();
    assert!(reqs.iter().any(|q| q.contains("/cdn/")), "the body came from the CDN address: {reqs:?}");
}

/// Pulls of one file at the same moment, from several processes and threads, into one empty
/// cache: every one succeeds with the whole file, and the cache holds one blob, one link and
/// no temporary files.
#[test]
fn simultaneous_pulls_of_one_file_all_succeed_with_one_blob() {
    let s = server();
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    s.add_file("model", "tester/big", "w/model.bin", bytes.clone());
    for t in 0..5 {
        let cache = tempfile::tempdir().unwrap();
        let procs: Vec<_> = (0..3)
            .map(|_| {
                std::process::Command::new(env!("CARGO_BIN_EXE_mixbt"))
                    .args(["hub", "pull", "hub:tester/big/w/model.bin"])
                    .env("HF_ENDPOINT", s.url())
                    .env("HF_HUB_CACHE", cache.path())
                    .env("HF_TOKEN", TOKEN)
                    .output()
            })
            .collect();
        let c = cfg(&s, cache.path(), true);
        let threads: Vec<_> = (0..2).map(|_| { let c = c.clone(); std::thread::spawn(move || hub::pull(&r("hub:tester/big/w/model.bin"), &c, None)) }).collect();
        for p in procs {
            let o = p.unwrap();
            assert!(o.status.success(), "try {t}: {}", String::from_utf8_lossy(&o.stderr));
        }
        for th in threads {
            let p = th.join().unwrap().unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), bytes, "try {t}");
        }
        let files = common::files_under(cache.path());
        let blobs: Vec<_> = files.iter().filter(|f| f.parent().is_some_and(|d| d.ends_with("blobs"))).collect();
        assert_eq!(blobs.len(), 1, "try {t}: {files:?}");
        assert!(files.iter().all(|f| !f.to_string_lossy().contains(".tmp-") && !f.to_string_lossy().contains("incomplete")), "try {t}: {files:?}");
    }
}
