//! The readers of untrusted bytes against random and mutated inputs, for a bounded time: a
//! safetensors file, a PyTorch `.pth`, CIFAR and STL-10 binaries, a Hugging Face parquet file, a
//! MAT file and a gzipped IDX file (the transfer targets), each mutated from a small valid one
//! (bytes flipped, cut, inserted; 8-byte words set to huge values) and as plain garbage. Every
//! input must give `Ok` or a clear `Err`: no panic, and no allocation beyond a small multiple of
//! the input's size (a counting global allocator measures the peak). Seeded, so a failure names the
//! seed and case and replays exactly; the budget is `MIXBT_FUZZ_SECONDS` (default 4 per format).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mixbt::image::{Rgb, RgbImage};
use mixbt::rng::SplitMix64;

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            if new > l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The allocation counters are process-wide: the tests of this file run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A reader under test: reads the file at the path; the result only has to be `Ok` or `Err`.
type Reader = fn(&Path) -> bool;

/// One mutation of `base`.
fn mutate(base: &[u8], r: &mut SplitMix64) -> Vec<u8> {
    let mut v = base.to_vec();
    let pick = |r: &mut SplitMix64, n: usize| (r.next_u64() % n.max(1) as u64) as usize;
    match r.next_u64() % 6 {
        0 => {
            for _ in 0..1 + pick(r, 8) {
                let i = pick(r, v.len());
                if let Some(b) = v.get_mut(i) {
                    *b ^= 1 << pick(r, 8);
                }
            }
        }
        1 => v.truncate(pick(r, v.len())),
        2 => {
            let i = pick(r, v.len() + 1);
            let extra: Vec<u8> = (0..1 + pick(r, 64)).map(|_| r.next_u64() as u8).collect();
            v.splice(i..i, extra);
        }
        3 => {
            // A size field turned huge: 8 bytes at a random (often early) offset.
            let i = if r.next_u64().is_multiple_of(2) { pick(r, 16.min(v.len())) } else { pick(r, v.len()) };
            let huge = [u64::MAX, 1 << 40, 1 << 32, 0x7fff_ffff, 0].map(u64::to_le_bytes)[pick(r, 5)];
            for (k, b) in huge.iter().enumerate() {
                if let Some(x) = v.get_mut(i + k) {
                    *x = *b;
                }
            }
        }
        4 => {
            let i = pick(r, v.len());
            let j = (i + pick(r, 256)).min(v.len());
            for x in &mut v[i..j] {
                *x = r.next_u64() as u8;
            }
        }
        _ => v = (0..pick(r, 4096)).map(|_| r.next_u64() as u8).collect(),
    }
    v
}

/// Run `read` on mutations of `base` written to `file` for `budget`; returns the cases run.
fn fuzz(name: &str, base: &[u8], file: &Path, read: Reader, seed: u64, budget: Duration) -> usize {
    // MIXBT_FUZZ_ONLY=<name> runs one format (to reproduce a case); the others then count as done.
    if std::env::var("MIXBT_FUZZ_ONLY").is_ok_and(|o| o != name) {
        return usize::MAX;
    }
    let mut r = SplitMix64::new(seed);
    let t0 = Instant::now();
    let mut n = 0;
    // The valid input itself must read.
    std::fs::write(file, base).unwrap();
    assert!(read(file), "{name}: the unmutated fixture does not read");
    while t0.elapsed() < budget {
        let input = mutate(base, &mut r);
        std::fs::write(file, &input).unwrap();
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let res = std::panic::catch_unwind(|| read(file));
        let grown = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        if res.is_err() {
            let keep = std::env::temp_dir().join(format!("mixbt-fuzz-{name}-{seed}-{n}"));
            std::fs::write(&keep, &input).unwrap();
            panic!("{name}: case {n} (seed {seed}) panicked; input kept in {}", keep.display());
        }
        let limit = (64 << 20) + 64 * input.len().max(base.len());
        if grown > limit {
            let keep = std::env::temp_dir().join(format!("mixbt-fuzz-{name}-{seed}-{n}"));
            std::fs::write(&keep, &input).unwrap();
            panic!("{name}: case {n} (seed {seed}) allocated {grown} bytes for a {}-byte input; input kept in {}", input.len(), keep.display());
        }
        n += 1;
    }
    n
}

fn budget() -> Duration {
    Duration::from_secs_f64(std::env::var("MIXBT_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4.0))
}

fn image(seed: u8, side: u32) -> RgbImage {
    RgbImage::from_fn(side, side, |x, y| Rgb([x as u8 ^ seed, y as u8, seed]))
}

#[test]
fn readers_survive_mutated_inputs() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut report = vec![];

    // safetensors: a small model file with metadata.
    let mut map = std::collections::BTreeMap::new();
    let dev = mixbt::candle_core::Device::Cpu;
    map.insert("a.weight".to_string(), mixbt::candle_core::Tensor::arange(0f32, 24.0, &dev).unwrap().reshape((2, 3, 4)).unwrap());
    map.insert("b.bias".to_string(), mixbt::candle_core::Tensor::ones(5, mixbt::candle_core::DType::F32, &dev).unwrap());
    let meta = [("mixbt.preset".to_string(), "x".to_string())].into_iter().collect();
    let st = mixbt::io::safetensors_bytes(&map, Some(meta)).unwrap();
    let f = d.join("m.safetensors");
    let n = fuzz("safetensors", &st, &f, |p| mixbt::io::read_safetensors(p, &mixbt::candle_core::Device::Cpu).is_ok(), 1, budget());
    report.push(("safetensors", n));
    fuzz("safetensors-metadata", &st, &f, |p| mixbt::io::read_safetensors_metadata(p).is_ok(), 2, budget() / 4);

    // PyTorch .pth (zip + pickle): the small fixture in the original format.
    let pth = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_r18_cifar.pth")).unwrap();
    let n = fuzz("pth", &pth, &d.join("m.pth"), |p| mixbt::ckpt::torch::read_state_dict(p).is_ok(), 3, budget());
    report.push(("pth", n));

    // CIFAR-10 test batch (any record count) and STL-10 binaries.
    let cdir = d.join("cifar");
    std::fs::create_dir_all(&cdir).unwrap();
    let imgs: Vec<(RgbImage, u8)> = (0..4).map(|i| (image(i, 32), i)).collect();
    common::fixtures::write_cifar10_batch(&cdir.join("test_batch.bin"), &imgs).unwrap();
    let cifar = std::fs::read(cdir.join("test_batch.bin")).unwrap();
    let n = fuzz(
        "cifar",
        &cifar,
        &cdir.join("test_batch.bin"),
        |p| mixbt::data::cifar::Cifar10::open_with(p.parent().unwrap(), mixbt::data::Split::Test, mixbt::data::cifar::RecordCount::Any).is_ok(),
        4,
        budget(),
    );
    report.push(("cifar", n));
    let sdir = d.join("stl");
    std::fs::create_dir_all(&sdir).unwrap();
    let simgs: Vec<(RgbImage, usize)> = (0..2).map(|i| (image(i as u8, 96), i)).collect();
    common::fixtures::write_stl10(&sdir.join("test_X.bin"), Some(&sdir.join("test_y.bin")), &simgs).unwrap();
    let y = std::fs::read(sdir.join("test_y.bin")).unwrap();
    let n = fuzz(
        "stl10-labels",
        &y,
        &sdir.join("test_y.bin"),
        |p| mixbt::data::Stl10::open(p.parent().unwrap(), mixbt::data::Stl10Split::Test).is_ok(),
        5,
        budget() / 2,
    );
    report.push(("stl10-labels", n));

    // Hugging Face parquet with PNG images, class names and labels.
    let pdir = d.join("pq");
    std::fs::create_dir_all(&pdir).unwrap();
    let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let pimgs: Vec<(RgbImage, usize)> = (0..3).map(|i| (image(i as u8, 8), i)).collect();
    let pf = pdir.join("train-00000-of-00001.parquet");
    common::fixtures::write_hf_parquet(&pf, "img", &pimgs, Some(&names)).unwrap();
    let pq = std::fs::read(&pf).unwrap();
    let n = fuzz("parquet", &pq, &pf, |p| mixbt::data::ParquetDataset::open(p, Default::default()).is_ok(), 6, budget());
    report.push(("parquet", n));
    // The transfer targets' binary formats: a compressed MATLAB file (Flowers-102's
    // imagelabels.mat) and a gzipped IDX file (MNIST), from the fixtures.
    let tfix = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/transfer");
    let mat = std::fs::read(tfix.join("vgg_flower/imagelabels.mat")).unwrap();
    let n = fuzz("mat", &mat, &d.join("l.mat"), |p| mixbt::data::mat::read_variable(p, "labels").is_ok(), 7, budget() / 2);
    report.push(("mat", n));
    let idx = std::fs::read(tfix.join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    let n = fuzz("idx-gz", &idx, &d.join("l.idx.gz"), |p| mixbt::data::idx::read_idx(p, 1).is_ok(), 8, budget() / 2);
    report.push(("idx-gz", n));
    eprintln!("fuzzed: {report:?}");
    for (name, n) in report {
        assert!(n >= 20, "{name}: only {n} cases in the time budget");
    }
}

/// Inputs the fuzzer found, kept: a footer that panicked polars' thrift decoder (case 57) and
/// footers that made it allocate over 200 MB for 2 KB (cases 96974 and 285248).
#[test]
fn found_parquet_inputs_are_clear_errors() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/fuzz");
    for case in [57, 96974, 285248] {
        let p = dir.join(format!("parquet-seed6-case{case}.parquet"));
        let size = std::fs::metadata(&p).unwrap().len() as usize;
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let err = mixbt::data::ParquetDataset::open(&p, Default::default()).err().unwrap().to_string();
        let grown = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        assert!(err.contains(&format!("case{case}.parquet")), "{err}");
        assert!(grown <= (16 << 20) + 64 * size, "case {case}: {grown} bytes");
    }
}
