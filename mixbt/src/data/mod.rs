//! Data sets, augmentations and the parallel loader.
//!
//! Every reader implements [`Dataset`]: random access to decoded RGB images and their labels.
//! Readers hold the encoded bytes (or file offsets) and decode on access, in parallel in the
//! loader.

pub mod augment;
pub mod builtin;
pub mod cifar;
pub mod image_folder;
pub mod loader;
pub mod parquet;
pub mod stats;
pub mod stl10;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use image::RgbImage;
use serde::{Deserialize, Serialize};

pub use augment::{Interp, Op, Transform};
pub use builtin::{BuiltinConfig, BuiltinShapes};
pub use cifar::{Cifar10, Cifar100, CifarLabel};
pub use image_folder::{ImageFolder, ImageFolderConfig};
pub use loader::{Batch, Loader, LoaderConfig, PairBatch, PairEpoch, SingleEpoch};
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

/// Open the data set `kind` under `dir` (the layout each reader documents) for `split`.
/// `builtin` needs no directory.
pub fn open(kind: DatasetKind, dir: Option<&Path>, split: Split, skip_corrupt: bool) -> Result<DynDataset> {
    let need = |what: &str| -> Result<PathBuf> {
        dir.map(Path::to_path_buf)
            .ok_or_else(|| Error::Config(format!("the {what} data set needs --data-dir")))
    };
    Ok(match kind {
        DatasetKind::Builtin => {
            let cfg = BuiltinConfig::default();
            Arc::new(BuiltinShapes::new(cfg, split))
        }
        DatasetKind::Cifar10 => Arc::new(Cifar10::open(&need("CIFAR-10")?, split)?),
        DatasetKind::Cifar100 => Arc::new(Cifar100::open(&need("CIFAR-100")?, split, CifarLabel::Fine)?),
        DatasetKind::Stl10 => {
            let s = match split {
                Split::Train => Stl10Split::Train,
                Split::Test => Stl10Split::Test,
                Split::Unlabeled => Stl10Split::Unlabeled,
                Split::TrainUnlabeled => Stl10Split::TrainUnlabeled,
            };
            Arc::new(Stl10::open(&need("STL-10")?, s)?)
        }
        DatasetKind::ImageFolder | DatasetKind::TinyImagenet | DatasetKind::Imagenet => {
            let root = need("image-folder")?;
            let sub = match split {
                Split::Train | Split::TrainUnlabeled | Split::Unlabeled => ["train"],
                Split::Test => ["val"],
            };
            // `<dir>/train` and `<dir>/val` (or `test`) when present, else `<dir>` itself.
            let mut folder = root.join(sub[0]);
            if split == Split::Test && !folder.is_dir() && root.join("test").is_dir() {
                folder = root.join("test");
            }
            if !folder.is_dir() {
                folder = root.clone();
            }
            let cfg = ImageFolderConfig { skip_corrupt, ..Default::default() };
            Arc::new(ImageFolder::open(&folder, cfg)?)
        }
        DatasetKind::Parquet => {
            let root = need("parquet")?;
            let cfg = ParquetConfig { skip_corrupt, ..Default::default() };
            Arc::new(ParquetDataset::open_split(&root, split, cfg)?)
        }
    })
}

/// A subset of another data set (the first `n` images, or every k-th), e.g. for quick runs.
pub struct Subset {
    inner: DynDataset,
    indices: Vec<usize>,
}

impl Subset {
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
