//! CIFAR-10 / CIFAR-100 in the official binary format (`cifar-10-batches-bin`, `cifar-100-binary`).
//!
//! CIFAR-10 record: 1 label byte + 3072 pixel bytes (R plane, G plane, B plane, 32×32 each).
//! CIFAR-100 record: coarse label byte, fine label byte, 3072 pixel bytes.

use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::{Dataset, Split};
use crate::{Error, Result};

const PIXELS: usize = 3072;

pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// In-memory CIFAR images (HWC RGB bytes) and labels.
struct Records {
    pixels: Vec<u8>, // N × 32 × 32 × 3, HWC
    labels: Vec<usize>,
    classes: Vec<String>,
    what: String,
}

impl Records {
    fn image(&self, i: usize) -> Result<RgbImage> {
        let px = self.pixels[i * PIXELS..(i + 1) * PIXELS].to_vec();
        Ok(RgbImage::from_raw(32, 32, px).expect("32×32 RGB"))
    }
}

/// How many records each file must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordCount {
    /// The official files: 10,000 records per CIFAR-10 batch and CIFAR-100 `test.bin`, 50,000 in
    /// CIFAR-100 `train.bin`. A file cut at a record boundary is an error, not fewer images.
    Official,
    /// Any whole number of records (small files in the CIFAR format, e.g. test fixtures).
    Any,
}

/// Parse the binary files; `label_bytes` is 1 (CIFAR-10) or 2 (CIFAR-100), `pick` selects the
/// label byte, `expected` the records each file must hold (`None`: any number).
fn read_records(files: &[PathBuf], label_bytes: usize, pick: usize, max_label: usize, expected: Option<usize>) -> Result<(Vec<u8>, Vec<usize>)> {
    let rec = label_bytes + PIXELS;
    let mut pixels = vec![];
    let mut labels = vec![];
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        if bytes.is_empty() || bytes.len() % rec != 0 {
            return Err(Error::format(
                f,
                format!(
                    "truncated or not a CIFAR binary file: {} bytes is not a whole number of {rec}-byte records ({} complete, {} bytes left over)",
                    bytes.len(),
                    bytes.len() / rec,
                    bytes.len() % rec
                ),
            ));
        }
        if let Some(n) = expected.filter(|&n| bytes.len() / rec != n) {
            return Err(Error::format(
                f,
                format!("{} records, but the official file holds {n}: the file is truncated (or not the official one)", bytes.len() / rec),
            ));
        }
        for (k, r) in bytes.chunks_exact(rec).enumerate() {
            let label = r[pick] as usize;
            if label >= max_label {
                return Err(Error::format(f, format!("record {k}: label {label} out of range 0..{max_label}")));
            }
            labels.push(label);
            let planes = &r[label_bytes..];
            for p in 0..1024 {
                pixels.extend_from_slice(&[planes[p], planes[1024 + p], planes[2048 + p]]);
            }
        }
    }
    Ok((pixels, labels))
}

fn find_dir(dir: &Path, sub: &str, probe: &str) -> Result<PathBuf> {
    for d in [dir.to_path_buf(), dir.join(sub)] {
        if d.join(probe).is_file() {
            return Ok(d);
        }
    }
    Err(Error::format(dir, format!("no `{probe}` here or in `{sub}/` (expected the official binary CIFAR layout)")))
}

fn read_names(path: &Path) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(path).ok()?;
    let v: Vec<String> = s.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    (!v.is_empty()).then_some(v)
}

/// CIFAR-10 (binary version).
pub struct Cifar10(Records);

impl Cifar10 {
    /// `dir` is `cifar-10-batches-bin` or its parent; the files must be the official ones.
    pub fn open(dir: &Path, split: Split) -> Result<Self> {
        Self::open_with(dir, split, RecordCount::Official)
    }

    /// [`open`](Self::open) with the record-count check of `count`.
    pub fn open_with(dir: &Path, split: Split, count: RecordCount) -> Result<Self> {
        let d = find_dir(dir, "cifar-10-batches-bin", "test_batch.bin")?;
        let files: Vec<PathBuf> = match split {
            Split::Train | Split::TrainUnlabeled | Split::Unlabeled => {
                (1..=5).map(|i| d.join(format!("data_batch_{i}.bin"))).collect()
            }
            Split::Test => vec![d.join("test_batch.bin")],
        };
        let expected = (count == RecordCount::Official).then_some(10_000);
        let (pixels, labels) = read_records(&files, 1, 0, 10, expected)?;
        let classes = read_names(&d.join("batches.meta.txt"))
            .unwrap_or_else(|| CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect());
        Ok(Self(Records { pixels, labels, classes, what: format!("CIFAR-10 {split:?} ({})", d.display()) }))
    }
}

/// Which CIFAR-100 label to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CifarLabel {
    /// 100 fine classes.
    Fine,
    /// 20 super-classes.
    Coarse,
}

/// CIFAR-100 (binary version).
pub struct Cifar100(Records);

impl Cifar100 {
    /// `dir` is `cifar-100-binary` or its parent; the files must be the official ones.
    pub fn open(dir: &Path, split: Split, label: CifarLabel) -> Result<Self> {
        Self::open_with(dir, split, label, RecordCount::Official)
    }

    /// [`open`](Self::open) with the record-count check of `count`.
    pub fn open_with(dir: &Path, split: Split, label: CifarLabel, count: RecordCount) -> Result<Self> {
        let d = find_dir(dir, "cifar-100-binary", "test.bin")?;
        let file = match split {
            Split::Test => d.join("test.bin"),
            _ => d.join("train.bin"),
        };
        let (pick, n, names) = match label {
            CifarLabel::Coarse => (0, 20, "coarse_label_names.txt"),
            CifarLabel::Fine => (1, 100, "fine_label_names.txt"),
        };
        let expected = (count == RecordCount::Official).then_some(if split == Split::Test { 10_000 } else { 50_000 });
        let (pixels, labels) = read_records(&[file], 2, pick, n, expected)?;
        let classes = read_names(&d.join(names)).unwrap_or_else(|| (0..n).map(|i| i.to_string()).collect());
        Ok(Self(Records { pixels, labels, classes, what: format!("CIFAR-100 {split:?} ({})", d.display()) }))
    }
}

macro_rules! impl_records_dataset {
    ($t:ty) => {
        impl Dataset for $t {
            fn len(&self) -> usize {
                self.0.labels.len()
            }
            fn image(&self, i: usize) -> Result<RgbImage> {
                self.0.image(i)
            }
            fn label(&self, i: usize) -> Option<usize> {
                Some(self.0.labels[i])
            }
            fn classes(&self) -> Vec<String> {
                self.0.classes.clone()
            }
            fn describe(&self) -> String {
                self.0.what.clone()
            }
        }
    };
}
impl_records_dataset!(Cifar10);
impl_records_dataset!(Cifar100);
