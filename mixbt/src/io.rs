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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // A file where a folder should be: say so (create_dir_all says only "File exists").
        if let Some(file) = dir.ancestors().find(|a| !a.as_os_str().is_empty() && a.exists() && !a.is_dir()) {
            return Err(Error::format(file, format!("is a file, not a folder: cannot write {} inside it", path.display())));
        }
    }
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
    let bytes = safetensors::serialize(cpu.iter().map(|(k, t)| (k.as_str(), t)), meta)
        .map_err(|e| Error::msg(format!("safetensors serialisation: {e}")))?;
    sorted_header(bytes)
}

/// The same safetensors bytes with the JSON header's keys sorted (the metadata comes out of a
/// `HashMap` in a random order): identical tensors and metadata give identical files.
fn sorted_header(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n])?;
    let header: BTreeMap<String, serde_json::Value> = header
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::Object(o) => (k, serde_json::to_value(o.into_iter().collect::<BTreeMap<_, _>>()).expect("json")),
            v => (k, v),
        })
        .collect();
    let mut json = serde_json::to_vec(&header)?;
    // The header is padded with spaces to 8 bytes, as the safetensors writer does.
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + json.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// The error for a file the safetensors reader refuses, naming the tensor at fault when the
/// header shows one.
fn invalid_safetensors(path: &Path, bytes: &[u8], e: safetensors::SafeTensorError) -> Error {
    let which = malformed_tensor(bytes).map(|m| format!(" ({m})")).unwrap_or_default();
    Error::format(path, format!("not a valid safetensors file: {e}{which}"))
}

/// Which tensor of a safetensors header does not fit the file (its byte range against its
/// shape and dtype, or past the end), for an error that names it.
fn malformed_tensor(bytes: &[u8]) -> Option<String> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let data = (bytes.len() - 8 - n) as u64;
    for (name, v) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        let size = match v["dtype"].as_str()? {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            _ => 1,
        };
        let shape: Option<Vec<u64>> = v["shape"].as_array()?.iter().map(|d| d.as_u64()).collect();
        let offs: Option<Vec<u64>> = v["data_offsets"].as_array()?.iter().map(|d| d.as_u64()).collect();
        let (Some(shape), Some(offs)) = (shape, offs) else { return Some(format!("tensor `{name}`: malformed shape or data_offsets")) };
        let need = shape.iter().try_fold(size as u64, |a, &d| a.checked_mul(d));
        let (start, end) = (offs.first().copied().unwrap_or(0), offs.get(1).copied().unwrap_or(0));
        if end < start || end > data {
            return Some(format!("tensor `{name}`: bytes {start}..{end} lie outside the {data} bytes of data"));
        }
        if need != Some(end - start) {
            return Some(format!("tensor `{name}`: shape {shape:?} of {} needs {} bytes, the file gives {}", v["dtype"], need.map(|x| x.to_string()).unwrap_or("too many".into()), end - start));
        }
    }
    None
}

/// Write tensors as a safetensors file, atomically.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>, metadata: Option<BTreeMap<String, String>>) -> Result<()> {
    atomic_write(path, &safetensors_bytes(tensors, metadata)?)
}

/// Read every tensor of a safetensors file onto `device`.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| invalid_safetensors(path, &bytes, e))?;
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
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| invalid_safetensors(path, &bytes, e))?;
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
    guard(path, "parquet file", || ParquetReader::new(f).finish().map_err(|e| Error::format(path, format!("parquet: {e}"))))
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

/// How many [`guard`]s are running: while any is, panic messages are not printed (the decoders
/// also panic on their worker threads, and those panics reach the guard as its own).
static QUIET_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Run a third-party decoder (polars' parquet reader, candle's pickle reader) on the file
/// `path`: a panic inside it — malformed bytes can trip decoders that unwrap — becomes an error
/// naming the file and `what` it should have been, and its message is not printed.
pub fn guard<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    use std::sync::atomic::Ordering;
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET_PANICS.load(Ordering::SeqCst) == 0 {
                previous(info)
            }
        }));
    });
    QUIET_PANICS.fetch_add(1, Ordering::SeqCst);
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANICS.fetch_sub(1, Ordering::SeqCst);
    match res {
        Ok(r) => r,
        Err(p) => {
            let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
            Err(Error::format(path, format!("not a readable {what}: its decoder failed ({msg})")))
        }
    }
}
