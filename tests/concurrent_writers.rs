//! Two writers into one output at the same moment: exactly one proceeds, the other gets a
//! clear error, and nothing the winner wrote is replaced.
//!
//! The lock-level test races processes of this very test binary (each re-runs the test
//! `claimant` with a role in its environment) behind a barrier: every claimant announces
//! itself, waits for a "go" file, then claims. The command-level tests race real `mixbt`
//! commands. `MIXBT_RACE_TRIES` sets the number of tries (default: 100 for the locks, 5 for
//! the commands).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mixbt::io::{DirLock, FileLock, Outputs};

const ROLE: &str = "MIXBT_RACE_ROLE";
const TARGET: &str = "MIXBT_RACE_TARGET";
const BARRIER: &str = "MIXBT_RACE_BARRIER";
/// Exit code of a claimant refused with the expected error.
const REFUSED: i32 = 3;

fn tries(default: usize) -> usize {
    std::env::var("MIXBT_RACE_TRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The body of a racing process, started by the tests below (ignored when the harness runs).
#[test]
#[ignore = "a child process of the race tests"]
fn claimant() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let target = PathBuf::from(std::env::var(TARGET).unwrap());
    let barrier = PathBuf::from(std::env::var(BARRIER).unwrap());
    let me = std::process::id();
    std::fs::write(barrier.join(format!("ready-{me}")), "").unwrap();
    let start = Instant::now();
    while !barrier.join("go").exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "no go signal");
        std::thread::yield_now();
    }
    let claimed = match role.as_str() {
        "dir" => DirLock::claim(&target, &Outputs { previous: &["result.txt"], removed: &["result.txt"], what: "a previous result", hint: "use --overwrite" }, false).map(|l| {
            mixbt::io::atomic_write(&target.join("result.txt"), me.to_string().as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(5));
            drop(l)
        }),
        "file" => FileLock::claim(&target, false, "use --overwrite").map(|l| {
            mixbt::io::atomic_write(&target, me.to_string().as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(5));
            drop(l)
        }),
        other => panic!("unknown role {other}"),
    };
    if let Err(e) = claimed {
        let msg = e.to_string();
        let expected = ["in use by process", "is being written by process", "holds a previous result", "already exists"];
        assert!(expected.iter().any(|x| msg.contains(x)), "unexpected error: {msg}");
        eprintln!("refused: {msg}");
        std::process::exit(REFUSED);
    }
}

/// Start `n` claimants on `target`, release them at once, and return (pid, exit code).
fn race(role: &str, target: &Path, barrier: &Path, n: usize) -> Vec<(u32, i32)> {
    std::fs::create_dir_all(barrier).unwrap();
    let children: Vec<Child> = (0..n)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "claimant", "--ignored", "--nocapture", "--test-threads", "1"])
                .env(ROLE, role)
                .env(TARGET, target)
                .env(BARRIER, barrier)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    while std::fs::read_dir(barrier).unwrap().count() < n {
        assert!(start.elapsed() < Duration::from_secs(60), "claimants did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::fs::write(barrier.join("go"), "").unwrap();
    children
        .into_iter()
        .map(|c| {
            let pid = c.id();
            let o = c.wait_with_output().unwrap();
            let code = o.status.code().unwrap_or(-1);
            assert!(code == 0 || code == REFUSED, "claimant {pid} exited {code}:\n{}", String::from_utf8_lossy(&o.stderr));
            (pid, code)
        })
        .collect()
}

/// Exactly one winner, and the output holds the winner's pid.
fn check_one_winner(results: &[(u32, i32)], output: &Path, what: &str) {
    let winners: Vec<u32> = results.iter().filter(|r| r.1 == 0).map(|r| r.0).collect();
    assert_eq!(winners.len(), 1, "{what}: {} of {} writers proceeded ({results:?})", winners.len(), results.len());
    assert_eq!(std::fs::read_to_string(output).unwrap(), winners[0].to_string(), "{what}: the output is not the winner's");
}

/// `tries` races of two claimants of `role` on a fresh target each (`target(tmp, t)`; its
/// parent is missing too), each checked by `check(target, t)` after the one winner is.
fn races(role: &str, target: impl Fn(&Path, usize) -> PathBuf, output: impl Fn(&Path) -> PathBuf, check: impl Fn(&Path, usize)) {
    let tmp = tempfile::tempdir().unwrap();
    for t in 0..tries(100) {
        let target = target(tmp.path(), t);
        let results = race(role, &target, &tmp.path().join(format!("barrier{t}")), 2);
        check_one_winner(&results, &output(&target), &format!("try {t}"));
        check(&target, t);
    }
}

#[test]
fn exactly_one_of_simultaneous_folder_claims_proceeds() {
    // A folder that does not exist yet (the race the issue found).
    races(
        "dir",
        |tmp, t| tmp.join(format!("try{t}/out")),
        |out| out.join("result.txt"),
        |out, t| assert!(!out.join(mixbt::io::LOCK_FILE).exists(), "try {t}: a lock file was left behind"),
    );
}

#[test]
fn exactly_one_of_simultaneous_file_claims_proceeds() {
    races(
        "file",
        |tmp, t| tmp.join(format!("try{t}/features.safetensors")),
        |f| f.to_path_buf(),
        |f, t| {
            let left: Vec<_> = std::fs::read_dir(f.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
            assert_eq!(left.len(), 1, "try {t}: only the output is left: {left:?}");
        },
    );
}

/// A lock file left by a process that died is taken over: the operating system released its lock.
#[test]
fn a_dead_holders_lock_is_taken_over_and_a_live_one_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(mixbt::io::LOCK_FILE), "").unwrap(); // empty: as a writer killed mid-claim leaves it
    let held = DirLock::acquire(&dir).unwrap();
    // The same process shares its claim (a notebook building a second trainer on its run).
    let again = DirLock::acquire(&dir).unwrap();
    drop(again);
    assert!(dir.join(mixbt::io::LOCK_FILE).is_file(), "the first claim still holds the lock");
    // Another process is refused, naming this one.
    let results = race("dir", &dir, &tmp.path().join("barrier"), 1);
    assert_eq!(results[0].1, REFUSED);
    drop(held);
    assert!(!dir.join(mixbt::io::LOCK_FILE).exists());
    assert!(dir.is_dir(), "a folder the lock did not create stays");
}

/// Start the `mixbt` commands `args` at once; return (index, success, stderr) for each.
fn race_commands(argss: &[Vec<String>]) -> Vec<(usize, bool, String)> {
    let children: Vec<Child> = argss
        .iter()
        .map(|a| Command::new(env!("CARGO_BIN_EXE_mixbt")).args(a).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    children
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let o = c.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            assert!(!err.contains("panicked"), "command {i} panicked:\n{err}");
            (i, o.status.success(), err)
        })
        .collect()
}

fn tiny_pretrain(out: &Path, seed: u64) -> Vec<String> {
    let mut a: Vec<String> = ["pretrain", "--width", "0.0625", "--batch-size", "8", "--train-subset", "32", "--test-subset", "20", "--bank-subset", "40"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(["--max-steps", "1", "--no-progress", "--skip-random-init-knn", "--workers", "1", "--seed"].map(String::from));
    a.push(seed.to_string());
    a.push("--out".into());
    a.push(out.to_str().unwrap().into());
    a
}

#[test]
fn two_pretrains_into_one_new_folder_one_runs_the_other_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for t in 0..tries(5) {
        let out = tmp.path().join(format!("run{t}"));
        let results = race_commands(&[tiny_pretrain(&out, 1), tiny_pretrain(&out, 2)]);
        let winners: Vec<&(usize, bool, String)> = results.iter().filter(|r| r.1).collect();
        assert_eq!(winners.len(), 1, "try {t}: {} of 2 runs succeeded:\n{results:?}", winners.len());
        let loser = results.iter().find(|r| !r.1).unwrap();
        assert!(loser.2.contains("in use by process") || loser.2.contains("holds a previous run"), "try {t}: {}", loser.2);
        // The folder holds the winner's run, whole: its checkpoint names the winner's seed.
        let latest = std::fs::read_to_string(out.join("checkpoints/latest")).unwrap();
        let state = out.join("checkpoints").join(latest.trim()).join(mixbt::ckpt::STATE_FILE);
        let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        assert_eq!(state["seed"].as_u64(), Some(winners[0].0 as u64 + 1), "try {t}");
        for f in ["summary.json", "recipe.json", "history.csv", "model.safetensors"] {
            assert!(out.join(f).is_file(), "try {t}: {f} missing");
        }
        assert!(!out.join(mixbt::io::LOCK_FILE).exists());
    }
}

/// `hub convert --out`, `embed --out` and `transfer --out` raced the same way: one writes, the
/// other is refused, and the output is whole.
#[test]
fn two_converts_embeds_and_transfers_into_one_output_one_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let pth = fixtures.join("tiny_r18_cifar.pth");
    let imgs = tmp.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    for i in 0..4u8 {
        mixbt::image::RgbImage::from_pixel(32, 32, mixbt::image::Rgb([i * 50, 100, 200 - i * 40])).save(imgs.join(format!("{i}.png"))).unwrap();
    }
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let refused = |e: &str| ["in use by process", "is being written by process", "holds a previous", "already exists"].iter().any(|x| e.contains(x));
    for t in 0..tries(5) {
        let conv = tmp.path().join(format!("conv{t}"));
        let a: Vec<String> = ["hub", "convert", &s(&pth), "--out", &s(&conv)].map(String::from).to_vec();
        let results = race_commands(&[a.clone(), a]);
        assert_eq!(results.iter().filter(|r| r.1).count(), 1, "convert, try {t}: {results:?}");
        assert!(results.iter().all(|r| r.1 || refused(&r.2)), "convert, try {t}: {results:?}");
        let model = conv.join("model.safetensors");
        assert!(mixbt::io::read_safetensors(&model, &mixbt::candle_core::Device::Cpu).is_ok() && conv.join("config.json").is_file());

        let feats = tmp.path().join(format!("f{t}/features.safetensors"));
        let a: Vec<String> = ["embed", "--checkpoint", &s(&model), "--images", &s(&imgs), "--out", &s(&feats), "--transform", "none"].map(String::from).to_vec();
        let results = race_commands(&[a.clone(), a]);
        assert_eq!(results.iter().filter(|r| r.1).count(), 1, "embed, try {t}: {results:?}");
        assert!(results.iter().all(|r| r.1 || refused(&r.2)), "embed, try {t}: {results:?}");
        assert_eq!(mixbt::io::read_safetensors(&feats, &mixbt::candle_core::Device::Cpu).unwrap()["features"].dims()[0], 4);

        let out = tmp.path().join(format!("transfer{t}"));
        let a: Vec<String> = ["transfer", "--checkpoint", &s(&model), "--targets", "builtin", "--epochs", "1", "--workers", "1", "--out", &s(&out)].map(String::from).to_vec();
        let results = race_commands(&[a.clone(), a]);
        assert_eq!(results.iter().filter(|r| r.1).count(), 1, "transfer, try {t}: {results:?}");
        assert!(results.iter().all(|r| r.1 || refused(&r.2)), "transfer, try {t}: {results:?}");
        for f in ["transfer.csv", "transfer.parquet", "transfer.json", "transfer.svg"] {
            assert!(out.join(f).is_file(), "transfer, try {t}: {f}");
        }
    }
    // Sequentially, a second writer is refused too, and --overwrite replaces.
    let conv = tmp.path().join("conv0");
    let (ok, err) = one(&["hub", "convert", &s(&pth), "--out", &s(&conv)]);
    assert!(!ok && err.contains("holds a previous conversion") && err.contains("--overwrite"), "{err}");
    let (ok, err) = one(&["hub", "convert", &s(&pth), "--out", &s(&conv), "--overwrite"]);
    assert!(ok, "{err}");
    let feats = tmp.path().join("f0/features.safetensors");
    let (ok, err) = one(&["embed", "--checkpoint", &s(&conv.join("model.safetensors")), "--images", &s(&imgs), "--out", &s(&feats)]);
    assert!(!ok && err.contains("already exists") && err.contains("--overwrite"), "{err}");
}

fn one(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_mixbt")).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}
