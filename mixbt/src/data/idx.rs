//! The IDX format of MNIST and FashionMNIST: `{train,t10k}-{images-idx3,labels-idx1}-ubyte`,
//! gzipped (as downloaded) or not, read whole into memory (47 MB for MNIST's training split).
//! Grey images are returned as RGB, each channel the grey value (PIL's `convert('RGB')`).

use std::io::Read;
use std::path::{Path, PathBuf};

use image::RgbImage;

use super::{Dataset, Split};
use crate::{Error, Result};

/// The most bytes an IDX file may hold (MNIST's largest is 47 MB).
const MAX_IDX_BYTES: u64 = 1 << 30;

/// An IDX image file with its label file.
pub struct IdxImages {
    pixels: Vec<u8>,
    labels: Vec<u8>,
    height: usize,
    width: usize,
    classes: Vec<String>,
    what: String,
}

/// The file of `stem` in `dir`: `stem.gz` or `stem` itself (also torchvision's `raw/` folder).
pub fn find_idx_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("raw")]
        .iter()
        .flat_map(|d| [d.join(format!("{stem}.gz")), d.join(stem)])
        .find(|p| p.is_file())
}

/// Read an IDX file (gzip detected by its magic bytes) and check its header: `dims` dimensions
/// of unsigned bytes (type 0x08). Returns the dimensions and the data.
pub fn read_idx(path: &Path, dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = vec![];
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(MAX_IDX_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("gzip data do not decompress ({e}); the download is damaged")))?;
        if out.len() as u64 > MAX_IDX_BYTES {
            return Err(Error::format(path, format!("decompresses past {MAX_IDX_BYTES} bytes: not an IDX file")));
        }
        out
    } else {
        raw
    };
    if bytes.len() < 4 + 4 * dims {
        return Err(Error::format(path, format!("truncated IDX header ({} bytes)", bytes.len())));
    }
    let magic = u32::from_be_bytes(bytes[0..4].try_into().unwrap());
    let expected = 0x0800 | dims as u32;
    if magic != expected {
        return Err(Error::format(
            path,
            format!("bad IDX magic number {magic:#010x}, expected {expected:#010x} (unsigned bytes, {dims} dimensions)"),
        ));
    }
    let shape: Vec<usize> = (0..dims).map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize).collect();
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| Error::format(path, "dimensions overflow"))?;
    let data = &bytes[4 + 4 * dims..];
    if data.len() != n {
        return Err(Error::format(
            path,
            format!("IDX header says {shape:?} ({n} bytes of data), the file holds {} — truncated or not this file", data.len()),
        ));
    }
    Ok((shape, data.to_vec()))
}

impl IdxImages {
    /// Open `split` (train: `train-*`, test: `t10k-*`) of an MNIST-format folder.
    pub fn open(dir: &Path, split: Split, classes: Vec<String>) -> Result<Self> {
        let prefix = match split {
            Split::Test => "t10k",
            Split::Train => "train",
            s => return Err(Error::Config(format!("IDX data sets have train and test splits, not {s:?}"))),
        };
        let find = |stem: String| {
            find_idx_file(dir, &stem).ok_or_else(|| Error::format(dir.join(&stem), "missing (expected it, or it gzipped as .gz, in this folder)"))
        };
        let img_path = find(format!("{prefix}-images-idx3-ubyte"))?;
        let lab_path = find(format!("{prefix}-labels-idx1-ubyte"))?;
        let (shape, pixels) = read_idx(&img_path, 3)?;
        let (lshape, labels) = read_idx(&lab_path, 1)?;
        if lshape[0] != shape[0] {
            return Err(Error::format(&lab_path, format!("{} labels for {} images in {}", lshape[0], shape[0], img_path.display())));
        }
        if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= classes.len()) {
            return Err(Error::format(&lab_path, format!("label {l} of image {i} is out of range (0..{})", classes.len())));
        }
        Ok(Self { pixels, labels, height: shape[1], width: shape[2], classes, what: img_path.display().to_string() })
    }
}

impl Dataset for IdxImages {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn image(&self, i: usize) -> Result<RgbImage> {
        let n = self.height * self.width;
        let grey = &self.pixels[i * n..(i + 1) * n];
        let rgb: Vec<u8> = grey.iter().flat_map(|&g| [g, g, g]).collect();
        Ok(RgbImage::from_raw(self.width as u32, self.height as u32, rgb).expect("buffer sized from the header"))
    }
    fn label(&self, i: usize) -> Option<usize> {
        Some(self.labels[i] as usize)
    }
    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }
    fn describe(&self) -> String {
        format!("IDX images {}", self.what)
    }
}
