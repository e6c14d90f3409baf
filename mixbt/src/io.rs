//! Files every layer shares: atomic writes (temporary name + rename), safetensors and
//! CSV/parquet tables. The bottom layer: it imports nothing of the crate but its error type.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use polars::prelude::*;

use crate::{Error, Result};

/// Write `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
/// A crash leaves either the old file or the new one, never a half-written file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let res = (|| -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// The temporary name used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Serialise tensors (any device) to safetensors bytes, with optional string metadata.
pub fn safetensors_bytes(tensors: &BTreeMap<String, Tensor>, metadata: Option<BTreeMap<String, String>>) -> Result<Vec<u8>> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let meta: Option<HashMap<String, String>> = metadata.map(|m| m.into_iter().collect());
    safetensors::serialize(cpu.iter().map(|(k, t)| (k.as_str(), t)), meta)
        .map_err(|e| Error::msg(format!("safetensors serialisation: {e}")))
}

/// Write tensors as a safetensors file, atomically.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>, metadata: Option<BTreeMap<String, String>>) -> Result<()> {
    atomic_write(path, &safetensors_bytes(tensors, metadata)?)
}

/// Read every tensor of a safetensors file onto `device`.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::format(path, format!("not a valid safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let t = candle_core::safetensors::Load::load(&view, device)
            .map_err(|e| Error::format(path, format!("tensor `{name}`: {e}")))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Metadata strings of a safetensors file.
pub fn read_safetensors_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::format(path, format!("not a valid safetensors file: {e}")))?;
    Ok(meta.metadata().clone().map(|m| m.into_iter().collect()).unwrap_or_default())
}

/// Write a DataFrame as CSV, atomically.
pub fn write_csv(path: &Path, df: &mut DataFrame) -> Result<()> {
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf).finish(df).map_err(|e| Error::format(path, format!("csv: {e}")))?;
    atomic_write(path, &buf)
}

/// Write a DataFrame as parquet, atomically.
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<()> {
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf).finish(df).map_err(|e| Error::format(path, format!("parquet: {e}")))?;
    atomic_write(path, &buf)
}

/// Read a parquet file into a DataFrame.
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(f).finish().map_err(|e| Error::format(path, format!("parquet: {e}")))
}

/// A lock on a folder for one writing process: `<dir>/.mixbt.lock` holding the pid, created
/// exclusively. A lock whose process is gone is stale and taken over; one held by this process is
/// shared (a notebook may build a second trainer on the same run). Dropping the lock removes
/// the file, and the folder too when the lock created it and it is still empty.
#[derive(Debug)]
pub struct DirLock {
    file: PathBuf,
    dir: PathBuf,
    created_dir: bool,
}

/// The lock file's name inside a locked folder.
pub const LOCK_FILE: &str = ".mixbt.lock";

impl DirLock {
    /// Lock `dir` (created if missing); an error names the folder and the process holding it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let created_dir = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let file = dir.join(LOCK_FILE);
        let me = std::process::id();
        for _ in 0..3 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&file) {
                Ok(mut f) => {
                    f.write_all(me.to_string().as_bytes()).map_err(|e| Error::io(&file, e))?;
                    return Ok(Self { file, dir: dir.to_path_buf(), created_dir });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&file).ok().and_then(|s| s.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if pid == me => return Ok(Self { file, dir: dir.to_path_buf(), created_dir: false }),
                        Some(pid) if Path::new(&format!("/proc/{pid}")).exists() => {
                            return Err(Error::format(
                                dir,
                                format!("this run folder is in use by process {pid} (lock file {LOCK_FILE}); wait for that run to end, or use another --out"),
                            ))
                        }
                        // Stale (its process is gone) or unreadable: take it over.
                        _ => {
                            let _ = std::fs::remove_file(&file);
                        }
                    }
                }
                Err(e) => return Err(Error::io(&file, e)),
            }
        }
        Err(Error::format(dir, "could not take the run folder's lock"))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let mine = std::fs::read_to_string(&self.file).ok().and_then(|s| s.trim().parse::<u32>().ok()) == Some(std::process::id());
        if mine {
            let _ = std::fs::remove_file(&self.file);
        }
        if self.created_dir {
            let _ = std::fs::remove_dir(&self.dir); // only succeeds when empty
        }
    }
}
