//! The transfer targets of the original (`transfer_datasets/*.py`, reference §6.3), read from
//! the files their official archives unpack to, with the original's splits and label order:
//!
//! | target | folder under `--data-root` | split |
//! |---|---|---|
//! | `dtd` | `dtd/images/<class>/*.jpg`, `dtd/labels/{train,val,test}1.txt` | train1 + val1 / test1 |
//! | `mnist`, `fashionmnist` | the four IDX files (gzipped or not) | train / t10k |
//! | `cu_birds` | `images.txt`, `image_class_labels.txt`, `train_test_split.txt`, `images/` (or inside `CUB_200_2011/`) | the official split |
//! | `vgg_flower` | `imagelabels.mat` and `jpg/image_NNNNN.jpg` (or the images beside it); without the `.mat`, class folders | 80/20 per class, `RandomState(42)` |
//! | `traffic_sign` | `FullIJCNN2013/00..42/*.ppm` (or the class folders directly) | 80/20 per class, `RandomState(42)` |
//! | `aircraft` | `data/` (or `fgvc-aircraft-2013b/data/`): `images/*.jpg`, `images_variant_{trainval,test}.txt`, `variants.txt`, `images_box.txt` | trainval / test, images cropped to their box |
//!
//! Every listed image is checked to exist when a target is opened, and an error names the list
//! file and its line. Nothing is cached on disk.
//!
//! Quirks kept from the original and named: `aircraft` has 102 classifier outputs for its 100
//! variants ([`TargetInfo::outputs`]); its boxes are cropped as PIL crops them (right/bottom
//! exclusive, zero-padded outside the image); the traffic signs' files are sorted before the
//! shuffle (the original takes `glob`'s directory order, which depends on the file system, so
//! its split cannot be reproduced exactly on another machine — sorting makes ours repeatable).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use super::{decode_image, Dataset, DynDataset, Split};
use crate::rng::NumpyRandomState;
use crate::{Error, Result};

/// The seven targets, in the order of the original's transfer scripts.
pub const TARGETS: [&str; 7] = ["dtd", "mnist", "fashionmnist", "cu_birds", "vgg_flower", "traffic_sign", "aircraft"];

/// What the transfer protocol knows of a target: classifier outputs and normalisation
/// (`data_statistics.py`'s `get_data_nclass` and `get_data_mean_and_stdev`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetInfo {
    pub name: &'static str,
    pub outputs: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// The original's table for one of [`TARGETS`].
pub fn target_info(name: &str) -> Option<TargetInfo> {
    let (name, outputs, mean, std) = match name {
        "aircraft" => ("aircraft", 102, [0.486, 0.507, 0.525], [0.266, 0.260, 0.276]),
        "cu_birds" => ("cu_birds", 200, [0.483, 0.491, 0.424], [0.228, 0.224, 0.259]),
        "dtd" => ("dtd", 47, [0.533, 0.474, 0.426], [0.261, 0.250, 0.259]),
        "fashionmnist" => ("fashionmnist", 10, [0.348; 3], [0.347; 3]),
        "mnist" => ("mnist", 10, [0.170; 3], [0.320; 3]),
        "traffic_sign" => ("traffic_sign", 43, [0.335, 0.291, 0.295], [0.267, 0.249, 0.251]),
        "vgg_flower" => ("vgg_flower", 102, [0.518, 0.410, 0.329], [0.296, 0.249, 0.285]),
        _ => return None,
    };
    Some(TargetInfo { name, outputs, mean, std })
}

/// Open `split` (train or test) of the known target `name` whose files are in `dir`.
pub fn open_known(name: &str, dir: &Path, split: Split) -> Result<DynDataset> {
    if !matches!(split, Split::Train | Split::Test) {
        return Err(Error::Config(format!("transfer targets have train and test splits, not {split:?}")));
    }
    if !dir.is_dir() {
        return Err(Error::format(dir, format!("no such folder (the {name} target)")));
    }
    let train = split == Split::Train;
    if let Some(list) = file_target(name, dir, train)? {
        return Ok(Arc::new(list));
    }
    Ok(match name {
        "mnist" => Arc::new(super::idx::IdxImages::open(&idx_dir(dir, "MNIST"), split, (0..10).map(|d| d.to_string()).collect())?),
        "fashionmnist" => Arc::new(super::idx::IdxImages::open(&idx_dir(dir, "FashionMNIST"), split, FASHION.iter().map(|s| s.to_string()).collect())?),
        other => return Err(Error::Config(format!("unknown transfer target `{other}` (known: {})", TARGETS.join(", ")))),
    })
}

/// The image-file targets (`dtd`, `cu_birds`, `vgg_flower`, `traffic_sign`, `aircraft`);
/// `None` for any other name.
fn file_target(name: &str, dir: &Path, train: bool) -> Result<Option<FileList>> {
    Ok(Some(match name {
        "dtd" => dtd(dir, train)?,
        "cu_birds" => cub(dir, train)?,
        "vgg_flower" => flowers(dir, train)?,
        "traffic_sign" => traffic_signs(dir, train)?,
        "aircraft" => aircraft(dir, train)?,
        _ => return Ok(None),
    }))
}

/// The image files of an image-file target in data-set order: what the reader would decode,
/// for checks and listings.
pub fn list_files(name: &str, dir: &Path, split: Split) -> Result<Vec<PathBuf>> {
    let train = match split {
        Split::Train => true,
        Split::Test => false,
        s => return Err(Error::Config(format!("transfer targets have train and test splits, not {s:?}"))),
    };
    file_target(name, dir, train)?.map(|l| l.files).ok_or_else(|| Error::Config(format!("`{name}` is not an image-file target")))
}

const FASHION: [&str; 10] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// The IDX folder: `dir` itself, or torchvision's `dir/<Name>/raw`.
fn idx_dir(dir: &Path, torchvision_name: &str) -> PathBuf {
    let tv = dir.join(torchvision_name).join("raw");
    if !dir.join("train-images-idx3-ubyte.gz").exists() && !dir.join("train-images-idx3-ubyte").exists() && tv.is_dir() {
        tv
    } else {
        dir.to_path_buf()
    }
}

/// `dir`, or the first of its sub-folders `nested` that holds `marker`.
fn locate(dir: &Path, nested: &[&str], marker: &str) -> PathBuf {
    if dir.join(marker).exists() {
        return dir.to_path_buf();
    }
    nested.iter().map(|n| dir.join(n)).find(|d| d.join(marker).exists()).unwrap_or_else(|| dir.to_path_buf())
}

/// The non-empty lines of a list file with their 1-based numbers (`\r\n` endings accepted).
fn lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(text).map_err(|e| Error::format(path, format!("not UTF-8 text ({e})")))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r').to_string()))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect())
}

/// `line N: ...` on `path`.
fn at(path: &Path, line: usize, msg: impl std::fmt::Display) -> Error {
    Error::format(path, format!("line {line}: {msg}"))
}

/// A list of image files with labels, optionally cropped to boxes.
pub struct FileList {
    files: Vec<PathBuf>,
    labels: Vec<usize>,
    /// PIL boxes `(left, top, right, bottom)`.
    boxes: Option<Vec<[i64; 4]>>,
    classes: Vec<String>,
    what: String,
}

impl FileList {
    /// The image files, in data-set order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
    /// Every file must exist: `source(i)` names the list file and line that named file `i`.
    fn check_exist(&self, source: impl Fn(usize) -> (PathBuf, usize)) -> Result<()> {
        for (i, f) in self.files.iter().enumerate() {
            if !f.is_file() {
                let (path, line) = source(i);
                return Err(at(&path, line, format!("names {}, which does not exist", f.display())));
            }
        }
        Ok(())
    }
}

impl Dataset for FileList {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn image(&self, i: usize) -> Result<RgbImage> {
        let p = &self.files[i];
        let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
        let img = decode_image(&bytes, p)?;
        match &self.boxes {
            Some(b) => pil_crop(&img, b[i]).map_err(|m| Error::format(p, m)),
            None => Ok(img),
        }
    }
    fn label(&self, i: usize) -> Option<usize> {
        Some(self.labels[i])
    }
    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }
    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// `Image.crop((left, top, right, bottom))`: right and bottom exclusive, the part outside the
/// image black (PIL pads with zeros).
pub fn pil_crop(img: &RgbImage, [left, top, right, bottom]: [i64; 4]) -> std::result::Result<RgbImage, String> {
    if right < left || bottom < top {
        return Err(format!("crop box ({left}, {top}, {right}, {bottom}) has its right/bottom before its left/top"));
    }
    let (w, h) = ((right - left) as u32, (bottom - top) as u32);
    if w as u64 * h as u64 > 1 << 28 {
        return Err(format!("crop box ({left}, {top}, {right}, {bottom}) is too large"));
    }
    let mut out = RgbImage::new(w, h);
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    for y in top.max(0)..bottom.min(ih) {
        for x in left.max(0)..right.min(iw) {
            out.put_pixel((x - left) as u32, (y - top) as u32, *img.get_pixel(x as u32, y as u32));
        }
    }
    Ok(out)
}

/// DTD split 1: train1 + val1 for training, test1 for testing; classes are the sorted
/// categories of the split's own lines (`dtd.py`).
fn dtd(dir: &Path, train: bool) -> Result<FileList> {
    let dir = locate(dir, &["dtd"], "labels");
    let lists: Vec<PathBuf> = if train { vec!["train1.txt", "val1.txt"] } else { vec!["test1.txt"] }
        .into_iter()
        .map(|f| dir.join("labels").join(f))
        .collect();
    let mut rows = vec![]; // (list file, line, relative path)
    for l in &lists {
        for (n, line) in lines(l)? {
            rows.push((l.clone(), n, line));
        }
    }
    if rows.is_empty() {
        return Err(Error::format(&lists[0], "lists no images"));
    }
    let mut categories = BTreeSet::new();
    for (l, n, rel) in &rows {
        match rel.split_once('/') {
            Some((c, f)) if !c.is_empty() && !f.is_empty() => {
                categories.insert(c.to_string());
            }
            _ => return Err(at(l, *n, format!("`{rel}` is not `<category>/<image>`"))),
        }
    }
    let categories: Vec<String> = categories.into_iter().collect();
    let index: HashMap<&str, usize> = categories.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    let list = FileList {
        files: rows.iter().map(|(_, _, r)| dir.join("images").join(r)).collect(),
        labels: rows.iter().map(|(_, _, r)| index[r.split('/').next().unwrap()]).collect(),
        boxes: None,
        classes: categories,
        what: format!("DTD {} ({})", if train { "train1+val1" } else { "test1" }, dir.display()),
    };
    list.check_exist(|i| (rows[i].0.clone(), rows[i].1))?;
    Ok(list)
}

/// `<id> <value>` lines of a CUB list file, as a map (the later line wins, as `dict(...)`).
fn id_map(path: &Path) -> Result<(Vec<(usize, String, String)>, HashMap<String, (usize, String)>)> {
    let mut rows = vec![];
    let mut map = HashMap::new();
    for (n, line) in lines(path)? {
        let (id, v) = line.split_once(' ').ok_or_else(|| at(path, n, format!("`{line}` is not `<id> <value>`")))?;
        rows.push((n, id.to_string(), v.to_string()));
        map.insert(id.to_string(), (n, v.to_string()));
    }
    Ok((rows, map))
}

/// CUB-200-2011: images in `images.txt` order, label `image_class_labels − 1`, the official
/// train/test split (`cu_birds.py`).
fn cub(dir: &Path, train: bool) -> Result<FileList> {
    let dir = locate(dir, &["CUB_200_2011"], "images.txt");
    let images_txt = dir.join("images.txt");
    let labels_txt = dir.join("image_class_labels.txt");
    let split_txt = dir.join("train_test_split.txt");
    let (images, _) = id_map(&images_txt)?;
    let (_, labels) = id_map(&labels_txt)?;
    let (_, split) = id_map(&split_txt)?;
    let mut seen = HashSet::new();
    let (mut files, mut labs, mut src) = (vec![], vec![], vec![]);
    // dict(...) keeps the first position of a repeated id with the last value.
    let last: HashMap<&str, (usize, &str)> = images.iter().map(|(n, id, p)| (id.as_str(), (*n, p.as_str()))).collect();
    for (_, id, _) in &images {
        if !seen.insert(id.clone()) {
            continue;
        }
        let (n, path) = last[id.as_str()];
        let (ln, label) = labels.get(id).ok_or_else(|| Error::format(&labels_txt, format!("has no label for image {id} (images.txt line {n})")))?;
        let (sn, s) = split.get(id).ok_or_else(|| Error::format(&split_txt, format!("has no split for image {id} (images.txt line {n})")))?;
        let is_train = match s.trim() {
            "1" => true,
            "0" => false,
            other => return Err(at(&split_txt, *sn, format!("split `{other}` is neither 1 (train) nor 0 (test)"))),
        };
        let label: usize = match label.trim().parse::<usize>() {
            Ok(l) if l >= 1 => l - 1,
            _ => return Err(at(&labels_txt, *ln, format!("class `{label}` is not a number from 1"))),
        };
        if is_train == train {
            files.push(dir.join("images").join(path));
            labs.push(label);
            src.push(n);
        }
    }
    let classes = match lines(&dir.join("classes.txt")) {
        Ok(c) => c.into_iter().map(|(_, l)| l.split_once(' ').map_or(l.clone(), |(_, n)| n.to_string())).collect(),
        Err(_) => (1..=labs.iter().max().map_or(0, |m| m + 1)).map(|k| format!("class {k}")).collect(),
    };
    let list = FileList { files, labels: labs, boxes: None, classes, what: format!("CUB-200-2011 {} ({})", if train { "train" } else { "test" }, dir.display()) };
    list.check_exist(|i| (images_txt.clone(), src[i]))?;
    Ok(list)
}

/// The 80/20 split of `vgg_flower.py` and `traffic_sign.py`: one `RandomState(42)` shuffles each
/// class's list in turn (classes in the given order); the first `int(0.8·n)` train.
fn split_80_20(classes: Vec<(usize, Vec<PathBuf>)>, train: bool) -> (Vec<PathBuf>, Vec<usize>) {
    let mut rs = NumpyRandomState::new(42);
    let (mut files, mut labels) = (vec![], vec![]);
    for (label, paths) in classes {
        let n = paths.len();
        let mut idx: Vec<usize> = (0..n).collect();
        rs.shuffle(&mut idx);
        let cut = (0.8 * n as f64) as usize;
        let range = if train { 0..cut } else { cut..n };
        for &i in &idx[range] {
            files.push(paths[i].clone());
            labels.push(label);
        }
    }
    (files, labels)
}

/// Oxford Flowers-102 as `vgg_flower.py` reads it: `imagelabels.mat` (labels 1..102 in image
/// order), classes in order of first appearance, each split 80/20 by `RandomState(42)`.
fn flowers(dir: &Path, train: bool) -> Result<FileList> {
    let mat = dir.join("imagelabels.mat");
    if !mat.exists() {
        if let Some(list) = flowers_in_class_folders(dir, train)? {
            return Ok(list);
        }
    }
    let labels = super::mat::read_variable(&mat, "labels")?;
    let images = if dir.join("jpg").is_dir() { dir.join("jpg") } else { dir.to_path_buf() };
    let mut order: Vec<usize> = vec![];
    let mut by_label: HashMap<usize, Vec<PathBuf>> = HashMap::new();
    for (i, &v) in labels.values.iter().enumerate() {
        if !(v >= 1.0 && v.fract() == 0.0 && v < 1e6) {
            return Err(Error::format(&mat, format!("label {v} of image {} is not a class number from 1", i + 1)));
        }
        let l = v as usize;
        let path = images.join(format!("image_{:05}.jpg", i + 1));
        if !path.is_file() {
            return Err(Error::format(&mat, format!("labels image {} ({}), which does not exist", i + 1, path.display())));
        }
        by_label.entry(l).or_insert_with(|| {
            order.push(l);
            vec![]
        });
        by_label.get_mut(&l).unwrap().push(path);
    }
    if order.is_empty() {
        return Err(Error::format(&mat, "`labels` is empty"));
    }
    let max = *order.iter().max().unwrap();
    let classes = order.iter().map(|&l| (l - 1, by_label.remove(&l).unwrap())).collect();
    let (files, labels) = split_80_20(classes, train);
    Ok(FileList {
        files,
        labels,
        boxes: None,
        classes: (1..=max).map(|k| format!("flower {k}")).collect(),
        what: format!("Flowers-102 {} ({})", if train { "train 80%" } else { "test 20%" }, dir.display()),
    })
}

/// Flowers-102 re-organised into class folders (`<class>/*.jpg`, as some copies ship it, without
/// `imagelabels.mat`): classes in sorted folder order, files sorted, the same `RandomState(42)`
/// 80/20 split. `None` when `dir` has no sub-folders with images.
fn flowers_in_class_folders(dir: &Path, train: bool) -> Result<Option<FileList>> {
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    subdirs.sort();
    let mut classes = vec![];
    let mut names = vec![];
    for d in &subdirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|e| Error::io(d, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && super::image_folder::is_image(p))
            .collect();
        if files.is_empty() {
            continue;
        }
        files.sort();
        classes.push((names.len(), files));
        names.push(d.file_name().unwrap().to_string_lossy().into_owned());
    }
    if classes.is_empty() {
        return Ok(None);
    }
    let (files, labels) = split_80_20(classes, train);
    Ok(Some(FileList { files, labels, boxes: None, classes: names, what: format!("Flowers-102 class folders {} ({})", if train { "train 80%" } else { "test 20%" }, dir.display()) }))
}

/// The German traffic-sign crops as `traffic_sign.py` reads them: class folders `00`..`42` of
/// `*.ppm` (a missing folder is an empty class, as `glob` gives), each split 80/20 by
/// `RandomState(42)` after sorting (see the module notes).
fn traffic_signs(dir: &Path, train: bool) -> Result<FileList> {
    let root = if dir.join("FullIJCNN2013").is_dir() { dir.join("FullIJCNN2013") } else { dir.to_path_buf() };
    let mut classes = vec![];
    for c in 0..43 {
        let d = root.join(format!("{c:02}"));
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&d) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "ppm") && p.is_file()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(Error::io(&d, e)),
        };
        paths.sort();
        classes.push((c, paths));
    }
    if classes.iter().all(|(_, p)| p.is_empty()) {
        return Err(Error::format(&root, "no class folders 00..42 with .ppm images (expected FullIJCNN2013/00/*.ppm …)"));
    }
    let (files, labels) = split_80_20(classes, train);
    Ok(FileList {
        files,
        labels,
        boxes: None,
        classes: (0..43).map(|c| format!("{c:02}")).collect(),
        what: format!("traffic signs {} ({})", if train { "train 80%" } else { "test 20%" }, root.display()),
    })
}

/// FGVC-Aircraft as `aircraft.py` reads it: `images_variant_{trainval,test}.txt`, variants
/// sorted (labels 0..99 of the split's own variants), images sorted by name within a variant,
/// each cropped to its box in `images_box.txt`.
fn aircraft(dir: &Path, train: bool) -> Result<FileList> {
    let data = locate(dir, &["data", "fgvc-aircraft-2013b/data"], "images_box.txt");
    let split_txt = data.join(format!("images_variant_{}.txt", if train { "trainval" } else { "test" }));
    let box_txt = data.join("images_box.txt");
    let variants_txt = data.join("variants.txt");
    let known: Option<HashSet<String>> = if variants_txt.exists() { Some(lines(&variants_txt)?.into_iter().map(|(_, v)| v).collect()) } else { None };
    let mut names_to_variant: HashMap<String, (usize, String)> = HashMap::new();
    for (n, line) in lines(&split_txt)? {
        let (name, variant) = line.split_once(' ').ok_or_else(|| at(&split_txt, n, format!("`{line}` is not `<image> <variant>`")))?;
        if let Some(k) = &known {
            if !k.contains(variant) {
                return Err(at(&split_txt, n, format!("variant `{variant}` is not in {}", variants_txt.display())));
            }
        }
        names_to_variant.insert(name.to_string(), (n, variant.to_string()));
    }
    if names_to_variant.is_empty() {
        return Err(Error::format(&split_txt, "lists no images"));
    }
    let mut boxes: HashMap<String, [i64; 4]> = HashMap::new();
    for (n, line) in lines(&box_txt)? {
        let parts: Vec<&str> = line.split(' ').collect();
        let nums: Option<Vec<i64>> = parts.get(1..).map(|p| p.iter().map(|v| v.parse().ok()).collect()).unwrap_or(None);
        match nums {
            Some(v) if parts.len() == 5 => {
                boxes.insert(parts[0].to_string(), [v[0], v[1], v[2], v[3]]);
            }
            _ => return Err(at(&box_txt, n, format!("`{line}` is not `<image> <xmin> <ymin> <xmax> <ymax>`"))),
        }
    }
    let variants: Vec<String> = names_to_variant.values().map(|(_, v)| v.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let mut names: Vec<(&String, &(usize, String))> = names_to_variant.iter().collect();
    names.sort_by(|a, b| a.1 .1.cmp(&b.1 .1).then(a.0.cmp(b.0)));
    let (mut files, mut labels, mut bx, mut src) = (vec![], vec![], vec![], vec![]);
    for (name, (n, variant)) in names {
        let b = boxes.get(name).ok_or_else(|| Error::format(&box_txt, format!("has no box for image {name} ({} line {n})", split_txt.display())))?;
        files.push(data.join("images").join(format!("{name}.jpg")));
        labels.push(variants.binary_search(variant).unwrap());
        bx.push(*b);
        src.push(*n);
    }
    let list = FileList { files, labels, boxes: Some(bx), classes: variants, what: format!("FGVC-Aircraft {} ({})", if train { "trainval" } else { "test" }, data.display()) };
    list.check_exist(|i| (split_txt.clone(), src[i]))?;
    Ok(list)
}

/// Where a transfer target's images come from (`--targets` entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSource {
    /// One of [`TARGETS`], in `<data-root>/<name>` or in the given folder.
    Known { dir: Option<PathBuf> },
    /// Any labelled image folder (`train/<class>/…`, `test/<class>/…` or `val/<class>/…`).
    Folder(PathBuf),
    /// A Hugging Face data set read as parquet (`hf:<org>/<name>`).
    Hub(String),
    /// The built-in data set.
    Builtin,
}

/// A `--targets` entry: `dtd` (a known target under the data root), `dtd=<folder>`,
/// `name=<image folder>`, `name=hf:<org>/<data set>`, or `builtin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub name: String,
    pub source: TargetSource,
}

impl std::str::FromStr for TargetSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let (name, rest) = match s.split_once('=') {
            Some((n, r)) => (n.trim(), Some(r.trim())),
            None => (s, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(Error::Config(format!("transfer target `{s}`: the name must be letters, digits, `-`, `_` or `.`")));
        }
        let known = target_info(name).is_some();
        let source = match rest {
            None if known => TargetSource::Known { dir: None },
            None if name == "builtin" => TargetSource::Builtin,
            None => {
                return Err(Error::Config(format!(
                    "unknown transfer target `{name}` (known: {}, builtin; or name=<image folder>, name=hf:<org>/<data set>)",
                    TARGETS.join(", ")
                )))
            }
            Some("") => return Err(Error::Config(format!("transfer target `{s}`: nothing after `=`"))),
            Some(r) => match r.strip_prefix("hf:") {
                Some(repo) => TargetSource::Hub(repo.to_string()),
                None if known => TargetSource::Known { dir: Some(PathBuf::from(r)) },
                None => TargetSource::Folder(PathBuf::from(r)),
            },
        };
        Ok(Self { name: name.to_string(), source })
    }
}

impl TargetSpec {
    /// Parse a comma-separated `--targets` list (duplicates refused).
    pub fn parse_list(s: &str) -> Result<Vec<Self>> {
        let specs: Vec<Self> = s.split(',').filter(|p| !p.trim().is_empty()).map(str::parse).collect::<Result<_>>()?;
        let mut seen = HashSet::new();
        for t in &specs {
            if !seen.insert(t.name.clone()) {
                return Err(Error::Config(format!("transfer target `{}` is named twice", t.name)));
            }
        }
        if specs.is_empty() {
            return Err(Error::Config("no transfer targets given".into()));
        }
        Ok(specs)
    }

    /// The seven targets of the original, under the data root.
    pub fn all_known() -> Vec<Self> {
        TARGETS.iter().map(|n| Self { name: n.to_string(), source: TargetSource::Known { dir: None } }).collect()
    }

    /// The original's outputs and statistics when the name is one of [`TARGETS`].
    pub fn info(&self) -> Option<TargetInfo> {
        target_info(&self.name)
    }

    /// The folder the target is read from (`None` for Hub and built-in targets).
    pub fn folder(&self, data_root: Option<&Path>) -> Option<PathBuf> {
        match &self.source {
            TargetSource::Known { dir: Some(d) } | TargetSource::Folder(d) => Some(d.clone()),
            TargetSource::Known { dir: None } => Some(data_root.unwrap_or(Path::new(".")).join(&self.name)),
            TargetSource::Hub(_) | TargetSource::Builtin => None,
        }
    }

    /// Open `split`; `Ok(None)` when the target's folder does not exist (the caller lists it as
    /// skipped), an error when it exists but is not readable as the target.
    pub fn open(&self, data_root: Option<&Path>, split: Split) -> Result<Option<DynDataset>> {
        if let Some(dir) = self.folder(data_root) {
            if !dir.exists() {
                return Ok(None);
            }
        }
        Ok(Some(match &self.source {
            TargetSource::Known { .. } => open_known(&self.name, &self.folder(data_root).unwrap(), split)?,
            TargetSource::Folder(d) => {
                let cfg = super::DataConfig { dir: Some(d.clone()), ..super::DataConfig::for_kind(super::DatasetKind::ImageFolder) };
                super::open(&cfg, split)?
            }
            TargetSource::Hub(repo) => super::hub::open_hub_dataset(repo, split, false)?,
            TargetSource::Builtin => super::open(&super::DataConfig::for_kind(super::DatasetKind::Builtin), split)?,
        }))
    }
}
