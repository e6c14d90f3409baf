//! STL-10 in the official binary format (`stl10_binary/`): 96×96 RGB, each channel plane stored
//! column-major; labels 1..10 in `*_y.bin`. Images are read on access (the unlabelled file is 2.7 GB).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use image::RgbImage;

use super::Dataset;
use crate::{Error, Result};

const SIDE: usize = 96;
const BYTES: usize = 3 * SIDE * SIDE;
pub const STL10_CLASSES: [&str; 10] =
    ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"];

/// Which STL-10 split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stl10Split {
    Train,
    Test,
    Unlabeled,
    /// `train` followed by `unlabeled` (the original's pre-training set, 105k images).
    TrainUnlabeled,
}

struct Part {
    file: File,
    path: PathBuf,
    n: usize,
    labels: Option<Vec<u8>>,
}

/// STL-10 reader.
pub struct Stl10 {
    parts: Vec<Part>,
    classes: Vec<String>,
    root: PathBuf,
}

fn open_part(dir: &Path, x: &str, y: Option<&str>) -> Result<Part> {
    let path = dir.join(x);
    let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
    let size = file.metadata().map_err(|e| Error::io(&path, e))?.len() as usize;
    if size == 0 || size % BYTES != 0 {
        return Err(Error::format(
            &path,
            format!("truncated or not an STL-10 image file: {size} bytes is not a whole number of {BYTES}-byte 96×96×3 images"),
        ));
    }
    let n = size / BYTES;
    let labels = match y {
        None => None,
        Some(y) => {
            let lp = dir.join(y);
            let l = std::fs::read(&lp).map_err(|e| Error::io(&lp, e))?;
            if l.len() != n {
                return Err(Error::format(&lp, format!("{} labels for {n} images in {}", l.len(), path.display())));
            }
            if let Some((k, bad)) = l.iter().enumerate().find(|(_, v)| !(1..=10).contains(*v)) {
                return Err(Error::format(&lp, format!("label {bad} at {k} out of range 1..=10")));
            }
            Some(l)
        }
    };
    Ok(Part { file, path, n, labels })
}

impl Stl10 {
    /// `dir` is `stl10_binary` or its parent.
    pub fn open(dir: &Path, split: Stl10Split) -> Result<Self> {
        let d = [dir.to_path_buf(), dir.join("stl10_binary")]
            .into_iter()
            .find(|d| d.join("test_X.bin").is_file() || d.join("train_X.bin").is_file())
            .ok_or_else(|| Error::format(dir, "no `train_X.bin`/`test_X.bin` here or in `stl10_binary/`"))?;
        let parts = match split {
            Stl10Split::Train => vec![open_part(&d, "train_X.bin", Some("train_y.bin"))?],
            Stl10Split::Test => vec![open_part(&d, "test_X.bin", Some("test_y.bin"))?],
            Stl10Split::Unlabeled => vec![open_part(&d, "unlabeled_X.bin", None)?],
            Stl10Split::TrainUnlabeled => {
                vec![open_part(&d, "train_X.bin", Some("train_y.bin"))?, open_part(&d, "unlabeled_X.bin", None)?]
            }
        };
        let classes = std::fs::read_to_string(d.join("class_names.txt"))
            .ok()
            .map(|s| s.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect::<Vec<_>>())
            .filter(|v| v.len() == 10)
            .unwrap_or_else(|| STL10_CLASSES.iter().map(|s| s.to_string()).collect());
        Ok(Self { parts, classes, root: d })
    }

    fn locate(&self, mut i: usize) -> (&Part, usize) {
        for p in &self.parts {
            if i < p.n {
                return (p, i);
            }
            i -= p.n;
        }
        panic!("index out of range")
    }
}

impl Dataset for Stl10 {
    fn len(&self) -> usize {
        self.parts.iter().map(|p| p.n).sum()
    }
    fn image(&self, i: usize) -> Result<RgbImage> {
        let (p, j) = self.locate(i);
        let mut raw = vec![0u8; BYTES];
        p.file.read_exact_at(&mut raw, (j * BYTES) as u64).map_err(|e| Error::io(&p.path, e))?;
        let mut px = vec![0u8; BYTES];
        for c in 0..3 {
            for x in 0..SIDE {
                for y in 0..SIDE {
                    px[(y * SIDE + x) * 3 + c] = raw[c * SIDE * SIDE + x * SIDE + y];
                }
            }
        }
        Ok(RgbImage::from_raw(SIDE as u32, SIDE as u32, px).unwrap())
    }
    fn label(&self, i: usize) -> Option<usize> {
        let (p, j) = self.locate(i);
        p.labels.as_ref().map(|l| l[j] as usize - 1)
    }
    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }
    fn describe(&self) -> String {
        format!("STL-10 ({})", self.root.display())
    }
}
