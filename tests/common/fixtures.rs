//! Fixture writers: small data sets in the real formats (CIFAR binaries, STL-10 binaries,
//! Hugging Face parquet), written by the tests themselves. The readers live in `mixbt::data`;
//! nothing in the library writes these formats.

use std::path::Path;

use mixbt::image::{self, RgbImage};
use mixbt::io::{atomic_write, temp_path};
use mixbt::polars::prelude::*;
use mixbt::{Error, Result};

/// Write images in the CIFAR-10 binary format . `images` are 32×32 RGB.
pub fn write_cifar10_batch(path: &Path, images: &[(RgbImage, u8)]) -> Result<()> {
    write_records(path, images.iter().map(|(im, l)| (im, vec![*l])))
}

/// Write images in the CIFAR-100 binary format (coarse, fine).
pub fn write_cifar100_file(path: &Path, images: &[(RgbImage, u8, u8)]) -> Result<()> {
    write_records(path, images.iter().map(|(im, c, f)| (im, vec![*c, *f])))
}

fn write_records<'a>(path: &Path, it: impl Iterator<Item = (&'a RgbImage, Vec<u8>)>) -> Result<()> {
    let mut out = vec![];
    for (im, labels) in it {
        if im.dimensions() != (32, 32) {
            return Err(Error::Config(format!("CIFAR images are 32×32, got {:?}", im.dimensions())));
        }
        out.extend_from_slice(&labels);
        let raw = im.as_raw();
        for c in 0..3 {
            out.extend((0..1024).map(|p| raw[p * 3 + c]));
        }
    }
    atomic_write(path, &out)
}

/// Write images (96×96) in the STL-10 binary layout, with optional 0-based labels.
pub fn write_stl10(x_path: &Path, y_path: Option<&Path>, images: &[(RgbImage, usize)]) -> Result<()> {
    let mut xs = vec![];
    for (im, _) in images {
        if im.dimensions() != (96, 96) {
            return Err(Error::Config("STL-10 images are 96×96".into()));
        }
        let raw = im.as_raw();
        for c in 0..3 {
            for x in 0..96 {
                for y in 0..96 {
                    xs.push(raw[(y * 96 + x) * 3 + c]);
                }
            }
        }
    }
    atomic_write(x_path, &xs)?;
    if let Some(y) = y_path {
        let ys: Vec<u8> = images.iter().map(|(_, l)| *l as u8 + 1).collect();
        atomic_write(y, &ys)?;
    }
    Ok(())
}

/// Write a parquet file in the Hugging Face image layout: struct column `image_col`
/// {bytes, path} with PNG-encoded images, and an `Int64` `label` column.
pub fn write_hf_parquet(path: &Path, image_col: &str, images: &[(RgbImage, usize)], class_names: Option<&[String]>) -> Result<()> {
    let labels: Vec<i64> = images.iter().map(|(_, l)| *l as i64).collect();
    let ims: Vec<RgbImage> = images.iter().map(|(im, _)| im.clone()).collect();
    write_hf_parquet_with(path, image_col, &ims, Some(Column::new("label".into(), labels)), class_names)
}

/// [`write_hf_parquet`] with any label column (other types, nulls), or none.
pub fn write_hf_parquet_with(path: &Path, image_col: &str, images: &[RgbImage], label: Option<Column>, class_names: Option<&[String]>) -> Result<()> {
    let mut encoded = vec![];
    for im in images {
        let mut buf = std::io::Cursor::new(Vec::new());
        im.write_to(&mut buf, image::ImageFormat::Png).map_err(|e| Error::msg(format!("png encode: {e}")))?;
        encoded.push(buf.into_inner());
    }
    let n = images.len();
    let refs: Vec<&[u8]> = encoded.iter().map(|v| v.as_slice()).collect();
    let bytes = Series::new("bytes".into(), refs);
    let paths: Vec<String> = (0..n).map(|i| format!("{i}.png")).collect();
    let paths = Series::new("path".into(), paths);
    let st = StructChunked::from_series(image_col.into(), n, [bytes, paths].iter()).map_err(|e| Error::format(path, e.to_string()))?;
    let mut cols = vec![st.into_series().into_column()];
    cols.extend(label);
    let mut df = DataFrame::new(n, cols).map_err(|e| Error::format(path, e.to_string()))?;
    let tmp = temp_path(path);
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut w = ParquetWriter::new(&mut f);
    if let Some(names) = class_names {
        let hf = serde_json::json!({"info": {"features": {"label": {"names": names, "_type": "ClassLabel"}}}});
        w = w.with_key_value_metadata(Some(KeyValueMetadata::from_static(vec![("huggingface".to_string(), hf.to_string())])));
    }
    w.finish(&mut df).map_err(|e| Error::format(path, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(())
}
