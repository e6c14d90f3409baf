//! Folders of images: `root/<class>/**/<image>` (torchvision `ImageFolder`, TinyImageNet with its
//! val split re-organised, ImageNet, the transfer sets, your own data), or an unlabelled folder
//! of images (`root/<image>`) for pre-training.

use std::path::{Path, PathBuf};

use image::RgbImage;

use super::{decode_image, Dataset, SkipCounter};
use crate::{Error, Result};

/// torchvision's `IMG_EXTENSIONS`.
pub const IMG_EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"];

/// Image-folder options.
#[derive(Debug, Clone, Default)]
pub struct ImageFolderConfig {
    /// Skip (with a warning, counted) images that fail to decode instead of failing.
    pub skip_corrupt: bool,
}

/// A folder of images, labelled by sub-folder or unlabelled.
pub struct ImageFolder {
    root: PathBuf,
    files: Vec<PathBuf>,
    labels: Option<Vec<usize>>,
    classes: Vec<String>,
    cfg: ImageFolderConfig,
    skipped: SkipCounter,
}

/// Whether `p` has one of [`IMG_EXTENSIONS`] (any case).
pub(crate) fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).map(|e| IMG_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())).unwrap_or(false)
}

/// Image files under `dir`, recursively, sorted as torchvision (sorted walk, sorted names).
/// Folder links are followed, but a folder in `seen` (already visited: a link loop, two links to
/// one folder, the root or a class folder) is not walked again; `top` walks `dir` itself anyway.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, seen: &mut std::collections::HashSet<PathBuf>, top: bool) -> Result<()> {
    let real = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    if !seen.insert(real) && !top {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) = entries.into_iter().partition(|p| p.is_dir());
    out.extend(files.into_iter().filter(|p| is_image(p)));
    for d in dirs {
        walk(&d, out, seen, false)?;
    }
    Ok(())
}

impl ImageFolder {
    /// Open `root`. Sub-folders are classes (sorted); with none, the images directly in `root`
    /// form an unlabelled data set.
    pub fn open(root: &Path, cfg: ImageFolderConfig) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::format(root, "not a folder"));
        }
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(|e| Error::io(root, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && !p.file_name().map(|n| n.to_string_lossy().starts_with('.')).unwrap_or(true))
            .collect();
        subdirs.sort();
        let mut files = vec![];
        let mut seen = std::collections::HashSet::new();
        if subdirs.is_empty() {
            walk(root, &mut files, &mut seen, true)?;
            if files.is_empty() {
                return Err(Error::format(root, format!("no images (extensions {})", IMG_EXTENSIONS.join(", "))));
            }
            return Ok(Self { root: root.into(), files, labels: None, classes: vec![], cfg, skipped: SkipCounter::default() });
        }
        let mut labels = vec![];
        let mut classes = vec![];
        // The root and the class folders themselves are never walked through a link.
        for d in std::iter::once(root).chain(subdirs.iter().map(PathBuf::as_path)) {
            seen.insert(std::fs::canonicalize(d).map_err(|e| Error::io(d, e))?);
        }
        for (c, d) in subdirs.iter().enumerate() {
            let before = files.len();
            walk(d, &mut files, &mut seen, true)?;
            if files.len() == before {
                return Err(Error::format(
                    d,
                    format!("class folder has no images (extensions {}); remove it or add images", IMG_EXTENSIONS.join(", ")),
                ));
            }
            labels.extend(std::iter::repeat_n(c, files.len() - before));
            classes.push(d.file_name().unwrap().to_string_lossy().into_owned());
        }
        Ok(Self { root: root.into(), files, labels: Some(labels), classes, cfg, skipped: SkipCounter::default() })
    }

    /// The image files, in data-set order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn image(&self, i: usize) -> Result<RgbImage> {
        let p = &self.files[i];
        let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
        decode_image(&bytes, p)
    }
    fn label(&self, i: usize) -> Option<usize> {
        self.labels.as_ref().map(|l| l[i])
    }
    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }
    fn describe(&self) -> String {
        format!("image folder {}", self.root.display())
    }
    fn skipped(&self) -> usize {
        self.skipped.get()
    }
    fn skip_corrupt(&self) -> bool {
        self.cfg.skip_corrupt
    }
    fn note_skipped(&self, i: usize, err: &Error) {
        self.skipped.note(&self.files[i].display().to_string(), err)
    }
}
