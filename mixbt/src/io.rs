//! Files every layer shares: atomic writes (temporary name + rename), safetensors and
//! CSV/parquet tables. The bottom layer: it imports nothing of the crate but its error type.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use polars::prelude::*;

use crate::{Error, Result};

/// Write `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
/// A crash leaves either the old file or the new one, never a half-written file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |w| w.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// [`atomic_write`] of what `write` streams into the file (buffered): nothing needs to be held
/// in memory whole. An error from `write` leaves the old file, if any.
pub fn atomic_write_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // A file where a folder should be: say so (create_dir_all says only "File exists").
        if let Some(file) = dir.ancestors().find(|a| !a.as_os_str().is_empty() && a.exists() && !a.is_dir()) {
            return Err(Error::format(file, format!("is a file, not a folder: cannot write {} inside it", path.display())));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(path, e))?;
    }
    let res = (|| -> Result<()> {
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io(path, e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        write(&mut w)?;
        let f = w.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(path, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// A temporary name for writing `path`, unique to this process and call (two threads writing
/// the same file never share one).
pub fn temp_path(path: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Serialise tensors (any device) to safetensors bytes, with optional string metadata
/// ([`write_safetensors_to`] into memory).
pub fn safetensors_bytes(tensors: &BTreeMap<String, Tensor>, metadata: Option<BTreeMap<String, String>>) -> Result<Vec<u8>> {
    let mut out = vec![];
    write_safetensors_to(&mut out, tensors, metadata)?;
    Ok(out)
}

/// Stream tensors as a safetensors file into `w`, one tensor's bytes at a time: the bytes the
/// `safetensors` crate writes (tensors ordered by dtype, widest first, then by name), with the
/// JSON header's keys sorted (the crate takes the metadata from a `HashMap`, in a random
/// order), so identical tensors and metadata give identical files.
pub fn write_safetensors_to(w: &mut dyn Write, tensors: &BTreeMap<String, Tensor>, metadata: Option<BTreeMap<String, String>>) -> Result<()> {
    use safetensors::View;
    let mut order: Vec<(&String, &Tensor)> = tensors.iter().collect();
    order.sort_by(|(ln, lt), (rn, rt)| View::dtype(*rt).cmp(&View::dtype(*lt)).then(ln.cmp(rn)));
    let mut header: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    if let Some(m) = metadata {
        header.insert("__metadata__".into(), serde_json::to_value(m)?);
    }
    let mut offset = 0usize;
    for (name, t) in &order {
        let len = View::data_len(*t);
        let info = serde_json::json!({"data_offsets": [offset, offset + len], "dtype": View::dtype(*t), "shape": t.dims()});
        header.insert((*name).clone(), info);
        offset += len;
    }
    let mut json = serde_json::to_vec(&header)?;
    // The header is padded with spaces to 8 bytes, as the safetensors writer does.
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let io = |e: std::io::Error| Error::msg(format!("safetensors serialisation: {e}"));
    w.write_all(&(json.len() as u64).to_le_bytes()).map_err(io)?;
    w.write_all(&json).map_err(io)?;
    for (_, t) in order {
        let t = t.to_device(&Device::Cpu)?.contiguous()?;
        w.write_all(&View::data(&t)).map_err(io)?;
    }
    Ok(())
}

/// Write tensors as a safetensors file, atomically and streamed ([`write_safetensors_to`]): the
/// file is never held in memory whole.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>, metadata: Option<BTreeMap<String, String>>) -> Result<()> {
    atomic_write_with(path, |w| write_safetensors_to(w, tensors, metadata).map_err(|e| Error::format(path, e.to_string())))
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

/// Read a CSV file with a header row into a DataFrame.
pub fn read_csv(path: &Path) -> Result<DataFrame> {
    std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    guard(path, "CSV file", || {
        CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish())
            .map_err(|e| Error::format(path, format!("csv: {e}")))
    })
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

/// An exclusive claim of a path by one process: an advisory lock (`flock`) on a lock file,
/// which the operating system releases when the process ends, so a crashed writer never
/// leaves a stale lock behind. The lock file holds the owner's pid, for the error message.
/// Taking it is one atomic step: of two processes trying at once, exactly one gets it.
/// Within one process the claim is shared (a notebook may build a second trainer on the run
/// it has open). Dropping the last claim removes the lock file.
#[derive(Debug)]
struct HeldLock {
    /// The lock file's path (the registry key).
    path: PathBuf,
}

/// Lock files this process holds: path → (claims, the open file that holds the `flock`).
static HELD: std::sync::Mutex<Vec<(PathBuf, usize, std::fs::File)>> = std::sync::Mutex::new(Vec::new());

/// How to wait for a lock another process holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Wait {
    /// Fail at once, naming the holder.
    No,
    /// Block until the holder releases it.
    Yes,
}

/// Why a lock could not be taken.
enum LockError {
    /// Another process holds it (its pid when the lock file names one).
    Busy(Option<u32>),
    Io(std::io::Error),
}

impl HeldLock {
    fn acquire(path: &Path, wait: Wait) -> std::result::Result<Self, LockError> {
        if Self::share(path) {
            return Ok(Self { path: path.to_path_buf() });
        }
        // The holder may remove the lock file between our open and our lock: then we hold a
        // lock on a file no longer at `path`, and try again with the file there now.
        for _ in 0..100 {
            let mut f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(LockError::Io)?;
            match wait {
                Wait::Yes => f.lock().map_err(LockError::Io)?,
                Wait::No => match f.try_lock() {
                    Ok(()) => {}
                    // Another thread of this process may have taken it meanwhile: share it.
                    Err(std::fs::TryLockError::WouldBlock) if Self::share(path) => return Ok(Self { path: path.to_path_buf() }),
                    Err(std::fs::TryLockError::WouldBlock) => return Err(LockError::Busy(lock_holder(&mut f))),
                    Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
                },
            }
            if !same_file(&f, path) {
                continue;
            }
            f.set_len(0).map_err(LockError::Io)?;
            f.write_all(std::process::id().to_string().as_bytes()).map_err(LockError::Io)?;
            HELD.lock().unwrap_or_else(|p| p.into_inner()).push((path.to_path_buf(), 1, f));
            return Ok(Self { path: path.to_path_buf() });
        }
        Err(LockError::Io(std::io::Error::other("the lock file kept being replaced")))
    }

    /// Take one more claim on a lock this process holds already.
    fn share(path: &Path) -> bool {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        match held.iter_mut().find(|(p, _, _)| p == path) {
            Some(entry) => {
                entry.1 += 1;
                true
            }
            None => false,
        }
    }

    /// Whether this is the process's only claim on the lock.
    fn is_last(&self) -> bool {
        HELD.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|(p, n, _)| p == &self.path && *n == 1)
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = held.iter().position(|(p, _, _)| p == &self.path) {
            held[i].1 -= 1;
            if held[i].1 == 0 {
                // Removed while still locked, then unlocked by closing: a process waiting on
                // the old file sees it is no longer at the path and opens the new one.
                let _ = std::fs::remove_file(&self.path);
                held.swap_remove(i);
            }
        }
    }
}

/// The pid an open lock file names, read through our own handle (the holder may remove the
/// file meanwhile; the handle still reads what it wrote). It may be empty for an instant
/// after its holder took it.
fn lock_holder(f: &mut std::fs::File) -> Option<u32> {
    use std::io::{Read, Seek};
    for _ in 0..50 {
        let mut s = String::new();
        if f.rewind().is_ok() && f.read_to_string(&mut s).is_ok() {
            if let Ok(pid) = s.trim().parse::<u32>() {
                return Some(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    None
}

/// Whether the open file `f` is still the file at `path`.
fn same_file(f: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A lock on a folder for one writing process: `<dir>/.mixbt.lock`, see [`HeldLock`]. The
/// folder is created if missing; dropping the lock removes the lock file, and the folder too
/// when this lock created it and it is still empty. Check what the folder holds *after*
/// taking the lock: the check and the claim are then one step.
#[derive(Debug)]
pub struct DirLock {
    dir: PathBuf,
    created_dir: bool,
    _lock: HeldLock,
}

/// The lock file's name inside a locked folder.
pub const LOCK_FILE: &str = ".mixbt.lock";

impl DirLock {
    /// Lock `dir` (created if missing); an error names the folder and the process holding it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        if let Some(file) = dir.ancestors().find(|a| !a.as_os_str().is_empty() && a.exists() && !a.is_dir()) {
            return Err(Error::format(file, format!("is a file, not a folder: cannot write {} inside it", dir.display())));
        }
        // The folder may vanish between its creation and the lock (a run that failed at once
        // removes the folder it created): then create it again.
        for _ in 0..20 {
            let created_dir = match std::fs::create_dir(dir) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                    true
                }
                Err(e) => return Err(Error::io(dir, e)),
            };
            // One key per folder however it is spelt (relative, absolute, through links).
            let file = match std::fs::canonicalize(dir) {
                Ok(d) => d.join(LOCK_FILE),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(dir, e)),
            };
            match HeldLock::acquire(&file, Wait::No) {
                Ok(lock) => return Ok(Self { dir: dir.to_path_buf(), created_dir, _lock: lock }),
                Err(LockError::Busy(pid)) => {
                    let who = pid.map(|p| format!("process {p}")).unwrap_or_else(|| "another process".into());
                    return Err(Error::format(dir, format!("is in use by {who} (lock file {LOCK_FILE}); wait for it to end, or use another --out")));
                }
                Err(LockError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(LockError::Io(e)) => return Err(Error::io(&file, e)),
            }
        }
        Err(Error::format(dir, "could not take the folder's lock: the folder kept disappearing"))
    }

    /// Lock `dir`, then check that it holds none of the files of `out.previous` (what an earlier
    /// run of the same command wrote), or remove `out.removed` when `overwrite` is set. Other
    /// files are never touched. Checked under the lock: two writers never both pass.
    pub fn claim(dir: &Path, out: &Outputs, overwrite: bool) -> Result<Self> {
        let lock = Self::acquire(dir)?;
        let previous: Vec<&str> = out.previous.iter().copied().filter(|f| dir.join(f).symlink_metadata().is_ok()).collect();
        if previous.is_empty() {
            return Ok(lock);
        }
        if !overwrite {
            return Err(Error::format(dir, format!("holds {} ({}); {}", out.what, previous.join(", "), out.hint)));
        }
        for f in out.removed {
            let p = dir.join(f);
            let res = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            match res {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&p, e)),
                _ => {}
            }
        }
        Ok(lock)
    }
}

/// The outputs a command writes into a folder, for [`DirLock::claim`].
#[derive(Debug, Clone, Copy)]
pub struct Outputs<'a> {
    /// Files (or folders) whose presence means the folder holds an earlier output.
    pub previous: &'a [&'a str],
    /// What `--overwrite` removes.
    pub removed: &'a [&'a str],
    /// The earlier output, for the error ("a previous run").
    pub what: &'a str,
    /// What to do about it, for the error.
    pub hint: &'a str,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // The lock file goes first (HeldLock's drop runs after this body).
        if self.created_dir && self._lock.is_last() {
            let dir = self.dir.clone();
            let only_lock = std::fs::read_dir(&dir).map(|mut it| it.all(|e| e.is_ok_and(|e| e.file_name() == LOCK_FILE))).unwrap_or(false);
            if only_lock {
                let _ = std::fs::remove_file(dir.join(LOCK_FILE));
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

/// A claim of one output file `path` for one writing process: the lock file
/// `.<name>.mixbt.lock` beside it ([`HeldLock`]). Taken, the caller checks whether `path`
/// exists and writes it; a second process claiming the same path meanwhile gets an error
/// naming the holder.
#[derive(Debug)]
pub struct FileLock {
    _lock: HeldLock,
}

impl FileLock {
    /// Claim `path` (its folder is created if missing). With `overwrite` false, an existing
    /// file at `path` is an error that says to pass `hint`'s flag.
    pub fn claim(path: &Path, overwrite: bool, hint: &str) -> Result<Self> {
        let lock = Self::lock(path, Wait::No)?;
        if !overwrite && path.symlink_metadata().is_ok() {
            return Err(Error::format(path, format!("already exists; {hint}")));
        }
        Ok(lock)
    }

    /// Wait for the claim of `path` (for caches: the second writer waits for the first, then
    /// finds its file complete).
    pub fn wait(path: &Path) -> Result<Self> {
        Self::lock(path, Wait::Yes)
    }

    fn lock(path: &Path, wait: Wait) -> Result<Self> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Some(file) = dir.ancestors().find(|a| !a.as_os_str().is_empty() && a.exists() && !a.is_dir()) {
            return Err(Error::format(file, format!("is a file, not a folder: cannot write {} inside it", path.display())));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let file = dir.join(format!(".{name}.mixbt.lock"));
        match HeldLock::acquire(&file, wait) {
            Ok(lock) => Ok(Self { _lock: lock }),
            Err(LockError::Busy(pid)) => {
                let who = pid.map(|p| format!("process {p}")).unwrap_or_else(|| "another process".into());
                Err(Error::format(path, format!("is being written by {who} (lock file {}); wait for it to end, or choose another output", file.display())))
            }
            Err(LockError::Io(e)) => Err(Error::io(&file, e)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The `safetensors` crate's bytes with the header's keys sorted (what mixbt wrote before
    /// it streamed its files).
    fn crate_bytes(tensors: &BTreeMap<String, Tensor>, metadata: Option<BTreeMap<String, String>>) -> Vec<u8> {
        let meta: Option<HashMap<String, String>> = metadata.map(|m| m.into_iter().collect());
        let bytes = safetensors::serialize(tensors.iter().map(|(k, t)| (k.as_str(), t)), meta).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let header: BTreeMap<String, serde_json::Value> = header
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::Object(o) => (k, serde_json::to_value(o.into_iter().collect::<BTreeMap<_, _>>()).unwrap()),
                v => (k, v),
            })
            .collect();
        let mut json = serde_json::to_vec(&header).unwrap();
        json.resize(json.len().div_ceil(8) * 8, b' ');
        [&(json.len() as u64).to_le_bytes()[..], &json, &bytes[8 + n..]].concat()
    }

    #[test]
    fn streamed_safetensors_are_the_crates_bytes() {
        let dev = Device::Cpu;
        let mut m = BTreeMap::new();
        m.insert("b.weight".to_string(), Tensor::arange(0f32, 12.0, &dev).unwrap().reshape((3, 4)).unwrap());
        m.insert("a.bias".to_string(), Tensor::arange(0f32, 5.0, &dev).unwrap());
        m.insert("c.steps".to_string(), Tensor::new(&[7i64, 9], &dev).unwrap());
        m.insert("d.half".to_string(), Tensor::new(&[1f32, 2.0, 3.0], &dev).unwrap().to_dtype(candle_core::DType::BF16).unwrap());
        m.insert("e.t".to_string(), Tensor::arange(0f64, 6.0, &dev).unwrap().reshape((2, 3)).unwrap().t().unwrap());
        let meta: BTreeMap<String, String> = [("z", "1"), ("format", "pt"), ("a", "x")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for md in [None, Some(meta)] {
            let contiguous: BTreeMap<String, Tensor> = m.iter().map(|(k, t)| (k.clone(), t.contiguous().unwrap())).collect();
            assert_eq!(safetensors_bytes(&m, md.clone()).unwrap(), crate_bytes(&contiguous, md.clone()));
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.safetensors");
            write_safetensors(&path, &m, md.clone()).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), crate_bytes(&contiguous, md));
        }
    }
}
