//! Hugging Face parquet data sets (`uoft-cs/cifar10`, `uoft-cs/cifar100`, `zh-plus/tiny-imagenet`,
//! `jxie/stl10`, …): an image column stored as a struct with encoded PNG/JPEG `bytes`, and an
//! integer label column. Read with polars; images are decoded on access.

use std::path::{Path, PathBuf};

use image::RgbImage;
use polars::prelude::*;

use super::{decode_image, Dataset, SkipCounter, Split};
use crate::{Error, Result};

/// Parquet reader options.
#[derive(Debug, Clone, Default)]
pub struct ParquetConfig {
    /// Image column (default: the first struct column with a `bytes` field, e.g. `img` or `image`).
    pub image_column: Option<String>,
    /// Label column (default: `label`, then `fine_label`, `labels`; none → unlabelled).
    pub label_column: Option<String>,
    pub skip_corrupt: bool,
}

/// Images and labels from one or more parquet files.
pub struct ParquetDataset {
    images: Vec<Vec<u8>>,
    labels: Option<Vec<usize>>,
    classes: Vec<String>,
    files: Vec<PathBuf>,
    cfg: ParquetConfig,
    skipped: SkipCounter,
}

const LABEL_CANDIDATES: [&str; 4] = ["label", "fine_label", "labels", "coarse_label"];

/// The most classes a file without class names may have (ImageNet-21k has 21,841).
pub const MAX_CLASSES: usize = 100_000;

fn perr(path: &Path, e: PolarsError) -> Error {
    Error::format(path, format!("parquet: {e}"))
}

/// Check a parquet file before polars decodes it: the footer and every page header are decoded
/// with the generated thrift decoder of `parquet-format`, which charges every list and string
/// against a budget proportional to the bytes it decodes before allocating; then each page must
/// fit the sizes its column chunk declares, and each chunk a bounded multiple of the file. A
/// corrupt or crafted file (a footer declaring millions of row groups, a page claiming
/// gigabytes) is an error here instead of an allocation of what it claims in polars (whose own
/// footer decoder trusts the declared lengths). Returns the footer's `huggingface` key-value
/// metadata (the class names), so that nothing decodes the footer a third time.
fn check_pages(path: &Path, bytes: &[u8]) -> Result<Option<String>> {
    use polars_parquet_format::thrift::protocol::TCompactInputProtocol;
    use polars_parquet_format::{FileMetaData, PageHeader};
    let bad = |m: String| Error::format(path, format!("corrupt parquet file: {m}"));
    let n = bytes.len();
    if n < 12 || &bytes[..4] != b"PAR1" || &bytes[n - 4..] != b"PAR1" {
        return Err(bad("no `PAR1` magic at both ends".into()));
    }
    let flen = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    if flen > n - 12 {
        return Err(bad(format!("a footer of {flen} bytes in a {n}-byte file")));
    }
    let footer = &bytes[n - 8 - flen..n - 8];
    let budget = |len: usize| 16 * len + 4096;
    let md = FileMetaData::read_from_in_protocol(&mut TCompactInputProtocol::new(footer, budget(flen)))
        .map_err(|e| bad(format!("footer: {e}")))?;
    let limit = 64 * n as i64 + (1 << 16);
    for rg in &md.row_groups {
        for c in &rg.columns {
            let Some(m) = &c.meta_data else { continue };
            let name = m.path_in_schema.join(".");
            let (un, vals, z) = (m.total_uncompressed_size, m.num_values, m.total_compressed_size);
            let start = m.dictionary_page_offset.filter(|&d| d > 0).unwrap_or(m.data_page_offset);
            let end = start.checked_add(z).unwrap_or(-1);
            if !(0..=limit).contains(&un) || !(0..=limit).contains(&vals) || start < 0 || z < 0 || end < 0 || end as usize > n - 8 - flen {
                return Err(bad(format!("column `{name}` declares {un} bytes and {vals} values at bytes {start}..{end} of a {n}-byte file")));
            }
            let (mut pos, end) = (start as usize, end as usize);
            let mut seen = 0i64;
            while pos < end && seen < vals {
                let mut cur = std::io::Cursor::new(&bytes[pos..end]);
                let h = PageHeader::read_from_in_protocol(&mut TCompactInputProtocol::new(&mut cur, budget(end - pos)))
                    .map_err(|e| bad(format!("column `{name}`: page header at byte {pos}: {e}")))?;
                let header_len = cur.position() as usize;
                let data_values = h.data_page_header.as_ref().map(|d| d.num_values).or(h.data_page_header_v2.as_ref().map(|d| d.num_values));
                let k = data_values.or(h.dictionary_page_header.as_ref().map(|d| d.num_values)).unwrap_or(0) as i64;
                let (u, cz) = (h.uncompressed_page_size as i64, h.compressed_page_size as i64);
                if u < 0 || cz < 0 || k < 0 || u > un || k > vals || cz as usize > end - pos - header_len {
                    return Err(bad(format!(
                        "column `{name}`: the page at byte {pos} declares {u} bytes ({cz} compressed) and {k} values; its column chunk holds {un} bytes and {vals} values"
                    )));
                }
                seen += data_values.map(i64::from).unwrap_or(0);
                pos += header_len + cz as usize;
            }
        }
    }
    Ok(md.key_value_metadata.unwrap_or_default().into_iter().find(|kv| kv.key == "huggingface").and_then(|kv| kv.value))
}

/// Class names from the `huggingface` key-value metadata (`ClassLabel` names), when present.
fn hf_class_names(hf: Option<&str>, label_col: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(hf?).ok()?;
    let names = v.pointer(&format!("/info/features/{label_col}/names"))?.as_array()?;
    Some(names.iter().filter_map(|n| n.as_str().map(String::from)).collect())
}

impl ParquetDataset {
    /// Read the given parquet files (concatenated in order).
    pub fn open_files(files: &[PathBuf], cfg: ParquetConfig) -> Result<Self> {
        if files.is_empty() {
            return Err(Error::Config("no parquet files given".into()));
        }
        let mut images = vec![];
        let mut labels: Option<Vec<usize>> = None;
        let mut label_name: Option<String> = None;
        let mut first_hf: Option<String> = None;
        for (k, path) in files.iter().enumerate() {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let (hf, df) = crate::io::guard(path, "parquet file", || {
                let hf = check_pages(path, &bytes)?;
                Ok((hf, ParquetReader::new(std::io::Cursor::new(&bytes[..])).finish().map_err(|e| perr(path, e))?))
            })?;
            if k == 0 {
                first_hf = hf.clone();
            }
            let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
            // Image column: named, or the first struct with a `bytes` field.
            let img_col = match &cfg.image_column {
                Some(c) => c.clone(),
                None => names
                    .iter()
                    .find(|n| {
                        df.column(n)
                            .ok()
                            .and_then(|c| c.struct_().ok().map(|s| s.field_by_name("bytes").is_ok()))
                            .unwrap_or(false)
                    })
                    .cloned()
                    .ok_or_else(|| {
                        Error::format(
                            path,
                            format!(
                                "no image column: expected a struct column with a `bytes` field (like `img` or `image`); columns are {}",
                                names.join(", ")
                            ),
                        )
                    })?,
            };
            let col = df.column(&img_col).map_err(|_| {
                Error::format(path, format!("no column `{img_col}`; columns are {}", names.join(", ")))
            })?;
            let st = col
                .struct_()
                .map_err(|_| Error::format(path, format!("column `{img_col}` is {}, not a struct with `bytes`", col.dtype())))?;
            let bytes = st
                .field_by_name("bytes")
                .map_err(|_| Error::format(path, format!("column `{img_col}` has no `bytes` field")))?;
            let bin = bytes.binary().map_err(|_| Error::format(path, format!("`{img_col}.bytes` is not binary")))?;
            for (r, b) in bin.iter().enumerate() {
                match b {
                    Some(b) => images.push(b.to_vec()),
                    None => return Err(Error::format(path, format!("row {r}: `{img_col}.bytes` is null"))),
                }
            }
            // Label column.
            let lname = match &cfg.label_column {
                Some(c) => {
                    if !names.contains(c) {
                        return Err(Error::format(path, format!("no label column `{c}`; columns are {}", names.join(", "))));
                    }
                    Some(c.clone())
                }
                None => LABEL_CANDIDATES.iter().find(|c| names.iter().any(|n| n == *c)).map(|s| s.to_string()),
            };
            if k > 0 && lname.is_some() != labels.is_some() {
                return Err(Error::format(path, "label column present in some files and not in others"));
            }
            if let Some(ln) = &lname {
                let c = df.column(ln).map_err(|e| perr(path, e))?;
                if !c.dtype().is_integer() {
                    return Err(Error::format(path, format!("label column `{ln}` holds {} values, not integers (class indices)", c.dtype())));
                }
                let c = c.cast(&DataType::Int64).map_err(|e| perr(path, e))?;
                // Labels index the class names: bounded by the names the file declares, else by
                // MAX_CLASSES, before any name is allocated.
                let names = hf_class_names(hf.as_deref(), ln);
                let bound = names.as_ref().map(|n| n.len()).unwrap_or(MAX_CLASSES);
                let l = labels.get_or_insert_with(Vec::new);
                for (r, v) in c.i64().map_err(|e| perr(path, e))?.iter().enumerate() {
                    match v {
                        None => return Err(Error::format(path, format!("row {r}: label `{ln}` is null"))),
                        Some(v) if v < 0 => return Err(Error::format(path, format!("row {r}: label `{ln}` is {v}, negative"))),
                        Some(v) if v as u64 >= bound as u64 => {
                            let limit = match &names {
                                Some(n) => format!("the file names {} classes", n.len()),
                                None => format!("more than {MAX_CLASSES} classes is not a data set this reader takes"),
                            };
                            return Err(Error::format(path, format!("row {r}: label `{ln}` is {v}, out of range ({limit})")));
                        }
                        Some(v) => l.push(v as usize),
                    }
                }
                label_name = Some(ln.clone());
            }
        }
        let classes = match (&labels, &label_name) {
            (Some(l), Some(ln)) => {
                let n = l.iter().max().map(|m| m + 1).unwrap_or(0);
                hf_class_names(first_hf.as_deref(), ln).filter(|c| c.len() >= n).unwrap_or_else(|| (0..n).map(|i| i.to_string()).collect())
            }
            _ => vec![],
        };
        Ok(Self { images, labels, classes, files: files.to_vec(), cfg, skipped: SkipCounter::default() })
    }

    /// A file, or every `*.parquet` under a folder (sorted).
    pub fn open(path: &Path, cfg: ParquetConfig) -> Result<Self> {
        let files = if path.is_dir() { find_parquet(path)? } else { vec![path.to_path_buf()] };
        if files.is_empty() {
            return Err(Error::format(path, "no .parquet files in this folder"));
        }
        Self::open_files(&files, cfg)
    }

    /// The files of `split` under a Hub snapshot folder: names starting with the split
    /// (`train-00000-of-00001.parquet`) or inside a folder named after it (`train/…`).
    /// The test split also matches `valid`/`validation` (TinyImageNet).
    pub fn open_split(root: &Path, split: Split, cfg: ParquetConfig) -> Result<Self> {
        if root.is_file() {
            return Self::open_files(&[root.to_path_buf()], cfg);
        }
        let all = find_parquet(root)?;
        let rel: Vec<String> = all.iter().map(|p| p.strip_prefix(root).unwrap_or(p).to_string_lossy().replace('\\', "/")).collect();
        let files: Vec<PathBuf> = select_split(&rel, split).iter().map(|r| root.join(r)).collect();
        if files.is_empty() {
            return Err(Error::format(root, format!("no parquet files for the {split:?} split (looked for <split>-*.parquet or <split>/*.parquet)")));
        }
        Self::open_files(&files, cfg)
    }
}

/// The files of `split` among repo-relative parquet paths (sorted): names starting with the
/// split name or inside a folder named after it; the test split also matches `valid` and
/// `validation`; `train+unlabeled` adds `unlabeled`.
pub fn select_split(paths: &[String], split: Split) -> Vec<String> {
    let keys: &[&str] = match split {
        Split::Test => &["test", "valid", "validation"],
        Split::Unlabeled => &["unlabeled", "unlabelled"],
        _ => &["train"],
    };
    let pick = |key: &str| -> Vec<String> {
        let mut v: Vec<String> = paths
            .iter()
            .filter(|p| {
                let mut parts: Vec<String> = p.split('/').map(|s| s.to_lowercase()).collect();
                let name = parts.pop().unwrap_or_default();
                name.starts_with(&format!("{key}-")) || name.starts_with(&format!("{key}.")) || parts.last().map(|d| d == key).unwrap_or(false)
            })
            .cloned()
            .collect();
        v.sort();
        v
    };
    let mut files = vec![];
    for k in keys {
        files = pick(k);
        if !files.is_empty() {
            break;
        }
    }
    if split == Split::TrainUnlabeled {
        files.extend(pick("unlabeled"));
    }
    files
}

fn find_parquet(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let p = e.map_err(|e| Error::io(&d, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().map(|e| e == "parquet").unwrap_or(false) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Dataset for ParquetDataset {
    fn len(&self) -> usize {
        self.images.len()
    }
    fn image(&self, i: usize) -> Result<RgbImage> {
        decode_image(&self.images[i], &PathBuf::from(format!("{} row {i}", self.describe())))
    }
    fn label(&self, i: usize) -> Option<usize> {
        self.labels.as_ref().map(|l| l[i])
    }
    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }
    fn describe(&self) -> String {
        match self.files.as_slice() {
            [one] => one.display().to_string(),
            more => format!("{} parquet files in {}", more.len(), more[0].parent().map(|p| p.display().to_string()).unwrap_or_default()),
        }
    }
    fn skipped(&self) -> usize {
        self.skipped.get()
    }
    fn skip_corrupt(&self) -> bool {
        self.cfg.skip_corrupt
    }
    fn note_skipped(&self, i: usize, err: &Error) {
        self.skipped.note(&format!("row {i}"), err)
    }
}
