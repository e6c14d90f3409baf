//! Data sets, augmentations and the parallel loader.
//!
//! Every reader implements [`Dataset`]: random access to decoded RGB images and their labels.
//! Readers hold the encoded bytes (or file offsets) and decode on access, in parallel in the
//! loader.

pub mod augment;
pub mod builtin;
pub mod cifar;
pub mod config;
pub mod hub;
pub mod idx;
pub mod image_folder;
pub mod loader;
pub mod mat;
pub mod parquet;
pub mod stats;
pub mod stl10;
pub mod transfer;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use image::RgbImage;
use serde::{Deserialize, Serialize};

pub use augment::{Interp, Op, Transform};
pub use builtin::{BuiltinConfig, BuiltinShapes};
pub use cifar::{Cifar10, Cifar100, CifarLabel};
pub use config::{open, open_bank, DataConfig};
pub use image_folder::{ImageFolder, ImageFolderConfig};
pub use loader::{Batch, Loader, LoaderConfig, PairBatch, PairEpoch, SingleEpoch, ViewsBatch, ViewsEpoch};
pub use parquet::{ParquetConfig, ParquetDataset};
pub use stl10::{Stl10, Stl10Split};

use crate::{Error, Result};

/// Random access to a labelled (or unlabelled) image collection.
pub trait Dataset: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Decode image `i` as RGB.
    fn image(&self, i: usize) -> Result<RgbImage>;
    /// Label of image `i` (`None` for unlabelled data).
    fn label(&self, i: usize) -> Option<usize>;
    /// Class names (empty for unlabelled data).
    fn classes(&self) -> Vec<String>;
    /// A human-readable description (file or folder).
    fn describe(&self) -> String;
    /// Images skipped as corrupt so far (readers with `skip_corrupt`).
    fn skipped(&self) -> usize {
        0
    }
    /// Whether a failing image may be replaced by another one (`skip_corrupt`).
    fn skip_corrupt(&self) -> bool {
        false
    }
    /// Record that image `i` was skipped.
    fn note_skipped(&self, _i: usize, _err: &Error) {}
}

/// A shared, type-erased data set.
pub type DynDataset = Arc<dyn Dataset>;

/// Which split of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
    /// STL-10 `unlabeled` (pre-training only).
    Unlabeled,
    /// STL-10 `train+unlabeled`, the pre-training set of the original.
    TrainUnlabeled,
}

impl std::str::FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "test" | "val" => Ok(Split::Test),
            "unlabeled" | "unlabelled" => Ok(Split::Unlabeled),
            "train+unlabeled" => Ok(Split::TrainUnlabeled),
            _ => Err(Error::Config(format!("unknown split `{s}`"))),
        }
    }
}

/// The data set kinds the CLI and presets name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    Cifar10,
    Cifar100,
    Stl10,
    ImageFolder,
    Parquet,
    Builtin,
    TinyImagenet,
    Imagenet,
}

impl DatasetKind {
    /// The name the command line takes (`cifar10`, `image-folder`, …).
    pub fn name(&self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::Stl10 => "stl10",
            DatasetKind::ImageFolder => "image-folder",
            DatasetKind::Parquet => "parquet",
            DatasetKind::Builtin => "builtin",
            DatasetKind::TinyImagenet => "tiny-imagenet",
            DatasetKind::Imagenet => "imagenet",
        }
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "cifar10" | "cifar-10" => DatasetKind::Cifar10,
            "cifar100" | "cifar-100" => DatasetKind::Cifar100,
            "stl10" | "stl-10" => DatasetKind::Stl10,
            "image-folder" | "imagefolder" | "folder" => DatasetKind::ImageFolder,
            "parquet" => DatasetKind::Parquet,
            "builtin" | "shapes" => DatasetKind::Builtin,
            "tiny-imagenet" | "tinyimagenet" => DatasetKind::TinyImagenet,
            "imagenet" => DatasetKind::Imagenet,
            _ => {
                return Err(Error::Config(format!(
                    "unknown data set `{s}` (cifar10, cifar100, stl10, tiny-imagenet, imagenet, image-folder, parquet, builtin, hf:<org>/<name>)"
                )))
            }
        })
    }
}

/// Counts images skipped as corrupt, and warns once per image.
#[derive(Debug, Default)]
pub struct SkipCounter {
    count: AtomicUsize,
}

impl SkipCounter {
    pub fn note(&self, what: &str, err: &Error) {
        self.count.fetch_add(1, Ordering::Relaxed);
        eprintln!("warning: skipping corrupt image {what}: {err}");
    }
    pub fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

/// A subset of another data set (the first `n` images, or every k-th), e.g. for quick runs.
pub struct Subset {
    inner: DynDataset,
    indices: Vec<usize>,
}

impl Subset {
    /// `n` images drawn evenly from each class in proportion to its size (deterministic): the
    /// images sorted by (label, index), then every `len/n`-th of that list, back in data-set
    /// order. Every class keeps its share even when labels repeat with a period that divides the
    /// stride (the built-in set's labels are `i % 10`, where [`even`](Self::even) can pick one
    /// class only). Unlabelled data: as `even`.
    pub fn stratified(inner: DynDataset, n: usize) -> Self {
        let len = inner.len();
        let n = n.min(len);
        let mut order: Vec<(usize, usize)> = (0..len).map(|i| (inner.label(i).unwrap_or(0), i)).collect();
        order.sort_unstable();
        let mut indices: Vec<usize> = (0..n).map(|k| order[k * len / n.max(1)].1).collect();
        indices.sort_unstable();
        Self { inner, indices }
    }

    /// `n` images spread evenly over `inner` (deterministic).
    pub fn even(inner: DynDataset, n: usize) -> Self {
        let len = inner.len();
        let n = n.min(len);
        let indices = (0..n).map(|i| i * len / n.max(1)).collect();
        Self { inner, indices }
    }
    pub fn new(inner: DynDataset, indices: Vec<usize>) -> Self {
        Self { inner, indices }
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn image(&self, i: usize) -> Result<RgbImage> {
        self.inner.image(self.indices[i])
    }
    fn label(&self, i: usize) -> Option<usize> {
        self.inner.label(self.indices[i])
    }
    fn classes(&self) -> Vec<String> {
        self.inner.classes()
    }
    fn describe(&self) -> String {
        format!("{} images of {}", self.indices.len(), self.inner.describe())
    }
    fn skipped(&self) -> usize {
        self.inner.skipped()
    }
    fn skip_corrupt(&self) -> bool {
        self.inner.skip_corrupt()
    }
    fn note_skipped(&self, i: usize, err: &Error) {
        self.inner.note_skipped(self.indices[i], err)
    }
}

/// Decode an encoded image (JPEG, PNG, …) to RGB; `what` names it in errors.
pub fn decode_image(bytes: &[u8], what: &Path) -> Result<RgbImage> {
    let img = image::load_from_memory(bytes).map_err(|e| Error::format(what, format!("cannot decode image: {e}")))?;
    Ok(img.to_rgb8())
}
