//! A reader for one numeric variable of a MATLAB Level-5 MAT file (`imagelabels.mat` of
//! Flowers-102), compressed (`-v7`, what MATLAB writes) or not.
//!
//! Hand-written because it is ~150 lines over `flate2`, which the build already has: the MAT
//! crates on crates.io pull a parser-combinator stack and a second inflate implementation for
//! the one `1×N double` this project reads. Every length is checked against what is left of
//! the file, and inflated data are capped, so a malformed or hostile file is an error, not a
//! panic or an allocation of its choosing.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// The most bytes one compressed element may inflate to.
const MAX_INFLATED: u64 = 1 << 28;

/// A numeric MAT variable: its dimensions (MATLAB order) and its real values, column-major.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    pub dims: Vec<usize>,
    pub values: Vec<f64>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    big: bool,
}

impl<'a> Cursor<'a> {
    fn u32(&mut self) -> Option<u32> {
        let b: [u8; 4] = self.buf.get(self.pos..self.pos + 4)?.try_into().ok()?;
        self.pos += 4;
        Some(if self.big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }
    /// The next data element: (type, payload). Small elements pack type and size in one word.
    fn element(&mut self) -> std::result::Result<(u32, &'a [u8]), String> {
        let start = self.pos;
        let w = self.u32().ok_or("truncated element tag")?;
        let (ty, n, small) = if w >> 16 != 0 { (w & 0xffff, (w >> 16) as usize, true) } else { (w, self.u32().ok_or("truncated element tag")? as usize, false) };
        if small && n > 4 {
            return Err(format!("small data element at byte {start} claims {n} bytes"));
        }
        let data = self.buf.get(self.pos..self.pos.checked_add(n).ok_or("element size overflows")?).ok_or_else(|| {
            format!("element at byte {start} claims {n} bytes, {} are left", self.buf.len().saturating_sub(self.pos))
        })?;
        let padded = if small { 4 } else if ty == MI_COMPRESSED { n } else { n.div_ceil(8) * 8 };
        self.pos = (self.pos + padded).min(self.buf.len());
        Ok((ty, data))
    }
}

fn numbers(ty: u32, data: &[u8], big: bool) -> std::result::Result<Vec<f64>, String> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            data.chunks_exact($n)
                .map(|c| {
                    let b: [u8; $n] = c.try_into().unwrap();
                    (if big { <$t>::from_be_bytes(b) } else { <$t>::from_le_bytes(b) }) as f64
                })
                .collect()
        };
    }
    Ok(match ty {
        MI_INT8 => data.iter().map(|&b| b as i8 as f64).collect(),
        MI_UINT8 => data.iter().map(|&b| b as f64).collect(),
        MI_INT16 => conv!(i16, 2),
        MI_UINT16 => conv!(u16, 2),
        MI_INT32 => conv!(i32, 4),
        MI_UINT32 => conv!(u32, 4),
        MI_SINGLE => conv!(f32, 4),
        MI_DOUBLE => conv!(f64, 8),
        MI_INT64 => conv!(i64, 8),
        MI_UINT64 => conv!(u64, 8),
        t => return Err(format!("unsupported numeric data type {t}")),
    })
}

/// Parse a miMATRIX payload: `Some((name, array))` for a numeric matrix, `None` for other
/// classes (cells, structs, strings), which are skipped.
fn matrix(payload: &[u8], big: bool) -> std::result::Result<Option<(String, MatArray)>, String> {
    let mut c = Cursor { buf: payload, pos: 0, big };
    let (_, flags) = c.element()?;
    let word: [u8; 4] = flags.get(..4).and_then(|b| b.try_into().ok()).ok_or("array flags shorter than 4 bytes")?;
    let class = (if big { u32::from_be_bytes(word) } else { u32::from_le_bytes(word) }) & 0xff;
    if !(6..=15).contains(&class) {
        return Ok(None);
    }
    let (dty, dims) = c.element()?;
    let dims: Vec<usize> = numbers(dty, dims, big)?.into_iter().map(|d| d as usize).collect();
    let (_, name) = c.element()?;
    let name = String::from_utf8_lossy(name).into_owned();
    let (vty, data) = c.element()?;
    let values = numbers(vty, data, big)?;
    let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("dimensions overflow")?;
    if values.len() != expected {
        return Err(format!("variable `{name}`: dimensions {dims:?} need {expected} values, the data hold {}", values.len()));
    }
    Ok(Some((name, MatArray { dims, values })))
}

/// Read the numeric variable `name` from the MAT file `path`.
pub fn read_variable(path: &Path, name: &str) -> Result<MatArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_variable(&bytes, name).map_err(|m| Error::format(path, m))
}

/// [`read_variable`] on the bytes of a file.
pub fn parse_variable(bytes: &[u8], name: &str) -> std::result::Result<MatArray, String> {
    if bytes.len() < 128 {
        return Err("not a MAT file (shorter than the 128-byte header)".into());
    }
    let big = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        _ => return Err("not a Level-5 MAT file (no endian indicator at byte 126; MAT v7.3 files are HDF5 and not read)".into()),
    };
    let mut c = Cursor { buf: bytes, pos: 128, big };
    let mut seen = vec![];
    while c.pos < bytes.len() {
        let (ty, data) = c.element()?;
        let inflated;
        let (ty, payload) = if ty == MI_COMPRESSED {
            let mut out = vec![];
            flate2::read::ZlibDecoder::new(data)
                .take(MAX_INFLATED + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("compressed element does not inflate: {e}"))?;
            if out.len() as u64 > MAX_INFLATED {
                return Err(format!("a compressed element inflates past {MAX_INFLATED} bytes"));
            }
            inflated = out;
            let mut inner = Cursor { buf: &inflated, pos: 0, big };
            let (t, p) = inner.element()?;
            (t, p)
        } else {
            (ty, data)
        };
        if ty == MI_MATRIX {
            if let Some((n, arr)) = matrix(payload, big)? {
                if n == name {
                    return Ok(arr);
                }
                seen.push(n);
            }
        }
    }
    Err(format!("no numeric variable `{name}` (found: {})", if seen.is_empty() { "none".to_string() } else { seen.join(", ") }))
}
