//! The Hugging Face Hub client: the registry of released checkpoints, pulls into the cache
//! layout of `hf-hub` and the Python client (revision, token, endpoint, offline use, progress,
//! time-outs, sha256 verification; `download`) and pushes
//! (repo creation, preupload, Git LFS batch upload, NDJSON commit — the Hub's documented HTTP
//! protocol, which `hf-hub` 0.4 does not implement). It knows files, not models: converting
//! checkpoints and writing model cards is `ckpt::convert`; Hub data sets are opened by `data`.
//!
//! Settings come from the usual variables: `HF_ENDPOINT`, `HF_TOKEN`, `HF_HOME` /
//! `HF_HUB_CACHE`, `HF_HUB_OFFLINE`, `HF_HUB_DOWNLOAD_TIMEOUT` (seconds without progress before a
//! connection, a read or a write gives up; default 10). Repository ids, revisions and file paths
//! are checked against the Hub's rules before any request or cache access, and so are the names
//! the server sends back (commit, ETag), since they become file names in the cache.

pub mod download;
pub mod http;
pub mod push;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::{Error, Result};

/// The released-checkpoint registry (`hub/registry.json`), compiled in.
pub const REGISTRY_JSON: &str = include_str!("../../../hub/registry.json");

/// One released checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Released {
    pub file: String,
    pub arch: String,
    pub dataset: String,
    pub stem: String,
    pub d: usize,
    pub lambda_bt: f64,
    pub lambda_reg: f64,
    pub epochs: usize,
    pub knn_top1: Option<f64>,
    pub linear_top1: Option<f64>,
    /// `small-model`, `imagenet-backbone` or `imagenet-linear-probe`.
    pub kind: String,
    /// The Git LFS oid: a pull is verified against it (and, where unknown, against the ETag).
    pub sha256: Option<String>,
    /// The approximate size the Hub page lists, in bytes (informational: not checked).
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub note: Option<String>,
}

impl Released {
    /// `hub:` reference of this file.
    pub fn hub_ref(&self, reg: &Registry) -> String {
        format!("hub:{}/checkpoints/{}", reg.repo, self.file)
    }
}

/// The registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registry {
    pub repo: String,
    pub revision: String,
    pub checkpoints: Vec<Released>,
}

/// Parse the compiled-in registry.
pub fn registry() -> Registry {
    serde_json::from_str(REGISTRY_JSON).expect("hub/registry.json is valid")
}

/// Which kind of Hub repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    /// URL prefix (`""` or `"datasets/"`).
    pub fn prefix(self) -> &'static str {
        match self {
            RepoKind::Model => "",
            RepoKind::Dataset => "datasets/",
        }
    }
    /// API segment (`models` or `datasets`).
    pub fn api(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }
}

/// Where and how to talk to the Hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub endpoint: String,
    pub token: Option<String>,
    pub cache_dir: PathBuf,
    pub offline: bool,
    pub progress: bool,
    /// Connect, read and write time-out: how long a request may go without progress.
    pub timeout: std::time::Duration,
}

impl HubConfig {
    /// From the environment (`HF_ENDPOINT`, `HF_TOKEN` or the saved token, `HF_HUB_CACHE` /
    /// `HF_HOME`, `HF_HUB_OFFLINE`).
    pub fn from_env() -> Self {
        let home = std::env::var("HF_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".cache/huggingface"));
        let cache_dir = std::env::var("HF_HUB_CACHE").map(PathBuf::from).unwrap_or_else(|_| home.join("hub"));
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| std::fs::read_to_string(home.join("token")).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()));
        let offline = std::env::var("HF_HUB_OFFLINE").map(|v| v == "1" || v.eq_ignore_ascii_case("true")).unwrap_or(false);
        let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
        let timeout = http::timeout_from_env().unwrap_or_else(|e| {
            eprintln!("warning: {e}; using {} s", http::DEFAULT_TIMEOUT_S);
            std::time::Duration::from_secs_f64(http::DEFAULT_TIMEOUT_S)
        });
        Self { endpoint: endpoint.trim_end_matches('/').to_string(), token, cache_dir, offline, progress: false, timeout }
    }
}

/// A repository id as the Hub allows it: `org/name` (or a bare `name`), each part of
/// `[A-Za-z0-9._-]`, at most 96 characters, not starting or ending with `.` or `-`, without
/// `--` or `..`.
pub fn validate_repo_id(id: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::Config(format!("`{id}` is not a Hub repository id ({why}; expected <org>/<name> of letters, digits, `.`, `_`, `-`)")));
    let parts: Vec<&str> = id.split('/').collect();
    if parts.is_empty() || parts.len() > 2 {
        return bad("at most one `/`");
    }
    for p in parts {
        if p.is_empty() || p.len() > 96 {
            return bad("empty or too long part");
        }
        if !p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return bad("a character outside [A-Za-z0-9._-]");
        }
        if p.starts_with(['.', '-']) || p.ends_with(['.', '-']) || p.contains("..") || p.contains("--") {
            return bad("`.` or `-` at an end, or `..` / `--`");
        }
    }
    Ok(())
}

/// A path inside a repository (or a revision name): relative, `/`-separated, with no empty, `.`
/// or `..` segment, no backslash and no control character.
pub fn validate_repo_path(what: &str, p: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::Config(format!("{what} `{}` is not a valid path in a Hub repository ({why})", p.escape_debug())));
    if p.is_empty() || p.len() > 1024 {
        return bad("empty or too long");
    }
    if p.starts_with('/') {
        return bad("absolute");
    }
    if p.contains('\\') || p.chars().any(|c| c.is_control()) {
        return bad("a backslash or a control character");
    }
    if p.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("an empty, `.` or `..` segment");
    }
    Ok(())
}

/// A name the server sends that becomes a file name in the cache (commit hash, ETag).
pub fn validate_name(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 256 || s == "." || s == ".." || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(Error::Hub(format!("{what} `{}` is not a plain name; refusing to use it as a file name in the cache", s.escape_debug())));
    }
    Ok(())
}

/// A file on the Hub: `hub:<org>/<repo>[@revision]/<path in repo>`; data sets as
/// `hub:datasets/<org>/<repo>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    pub kind: RepoKind,
    pub repo: String,
    pub revision: String,
    pub path: String,
}

impl HubRef {
    /// Parse a `hub:` reference.
    pub fn parse(s: &str) -> Result<Self> {
        let rest = s.strip_prefix("hub:").ok_or_else(|| Error::Config(format!("`{s}` is not a hub: reference")))?;
        let (kind, rest) = match rest.strip_prefix("datasets/") {
            Some(r) => (RepoKind::Dataset, r),
            None => (RepoKind::Model, rest),
        };
        let mut it = rest.splitn(3, '/');
        let (org, name, path) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
        if org.is_empty() || name.is_empty() || path.is_empty() {
            return Err(Error::Config(format!("`{s}`: expected hub:<org>/<repo>[@revision]/<path in repo>")));
        }
        let (name, revision) = match name.split_once('@') {
            Some((n, r)) => (n, r.to_string()),
            None => (name, "main".to_string()),
        };
        let r = Self { kind, repo: format!("{org}/{name}"), revision, path: path.to_string() };
        r.validate().map_err(|e| Error::Config(format!("`{s}`: {}", e.to_string().trim_start_matches("invalid configuration: "))))?;
        Ok(r)
    }

    /// Check the repository id, the revision and the path (before any request or cache access).
    pub fn validate(&self) -> Result<()> {
        validate_repo_id(&self.repo)?;
        validate_repo_path("revision", &self.revision)?;
        validate_repo_path("file", &self.path)
    }

    /// The resolve URL on `endpoint`.
    pub fn url(&self, endpoint: &str) -> String {
        format!("{endpoint}/{}{}/resolve/{}/{}", self.kind.prefix(), self.repo, self.revision, self.path)
    }
}

impl std::fmt::Display for HubRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rev = if self.revision == "main" { String::new() } else { format!("@{}", self.revision) };
        write!(f, "hub:{}{}{}/{}", if self.kind == RepoKind::Dataset { "datasets/" } else { "" }, self.repo, rev, self.path)
    }
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Remove a cached file (its snapshot link and the blob it points to).
fn evict(path: &Path) {
    if let Ok(target) = std::fs::canonicalize(path) {
        let _ = std::fs::remove_file(&target);
    }
    let _ = std::fs::remove_file(path);
}

/// Download (or find in the cache) the file `r`; verify it (sha256 against the LFS ETag the
/// cache names it by, and against `expected` when given). A corrupt file is removed from the
/// cache and reported.
pub fn pull(r: &HubRef, cfg: &HubConfig, expected: Option<&str>) -> Result<PathBuf> {
    r.validate()?;
    let path = match (download::cached(cfg, r), cfg.offline) {
        (Some(p), _) => p,
        (None, true) => {
            return Err(Error::Hub(format!(
                "{r}: not in the cache {} and HF_HUB_OFFLINE is set",
                cfg.cache_dir.display()
            )))
        }
        (None, false) => download::download(r, cfg)?,
    };
    verify(r, &path, expected)?;
    Ok(path)
}

fn verify(r: &HubRef, path: &Path, expected: Option<&str>) -> Result<()> {
    let blob = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let etag = blob.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let want = expected.map(str::to_string).or_else(|| is_sha256(&etag).then_some(etag));
    if let Some(want) = want {
        let got = sha256_file(path)?;
        if got != want {
            evict(path);
            return Err(Error::Hub(format!(
                "{r}: checksum mismatch (sha256 {got}, expected {want}); the corrupt download was removed from the cache, pull again"
            )));
        }
    }
    Ok(())
}

/// A checkpoint argument: a local path, or a `hub:` reference pulled into the cache (released
/// files are verified against the registry's sha256 where known).
pub fn resolve_checkpoint(arg: &str) -> Result<PathBuf> {
    if arg.starts_with("hub:") {
        let r = HubRef::parse(arg)?;
        let reg = registry();
        let expected = reg
            .checkpoints
            .iter()
            .find(|c| r.repo == reg.repo && r.path == format!("checkpoints/{}", c.file))
            .and_then(|c| c.sha256.clone());
        let mut cfg = HubConfig::from_env();
        cfg.progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        return pull(&r, &cfg, expected.as_deref());
    }
    let p = PathBuf::from(arg);
    if !p.exists() {
        return Err(Error::format(&p, "no such file or folder (a checkpoint is a path or hub:<org>/<repo>/<path>)"));
    }
    Ok(p)
}

/// List the files of a Hub repo (at `revision`); offline, the files of its cached snapshot.
/// Names that are not valid repository paths are an error (a hostile server could list `../x`).
pub fn list_files(kind: RepoKind, repo: &str, revision: &str, cfg: &HubConfig) -> Result<Vec<String>> {
    validate_repo_id(repo)?;
    validate_repo_path("revision", revision)?;
    let r = HubRef { kind, repo: repo.to_string(), revision: revision.to_string(), path: String::new() };
    // Offline means no network call at all: the files of the cached snapshot.
    let files = if cfg.offline {
        download::cached_files(cfg, &r).ok_or_else(|| {
            Error::Hub(format!(
                "hub:{}{repo}@{revision}: HF_HUB_OFFLINE is set and the cache {} holds no snapshot of it",
                kind.prefix(),
                cfg.cache_dir.display()
            ))
        })?
    } else {
        download::list(&r, cfg)?
    };
    for f in &files {
        validate_repo_path(&format!("hub:{}{repo}: listed file", kind.prefix()), f)?;
    }
    Ok(files)
}
