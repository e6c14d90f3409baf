//! The Hugging Face Hub client: the registry of released checkpoints, pulls through `hf-hub`
//! (cache, revision, token, endpoint, offline use, progress, sha256 verification) and pushes
//! (repo creation, preupload, Git LFS batch upload, NDJSON commit — the Hub's documented HTTP
//! protocol, which `hf-hub` 0.4 does not implement). It knows files, not models: converting
//! checkpoints and writing model cards is `ckpt::convert`; Hub data sets are opened by `data`.
//!
//! Settings come from the usual variables: `HF_ENDPOINT`, `HF_TOKEN`, `HF_HOME` /
//! `HF_HUB_CACHE`, `HF_HUB_OFFLINE`.

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
    pub sha256: Option<String>,
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
    fn hf(self) -> hf_hub::RepoType {
        match self {
            RepoKind::Model => hf_hub::RepoType::Model,
            RepoKind::Dataset => hf_hub::RepoType::Dataset,
        }
    }
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
        Self { endpoint: endpoint.trim_end_matches('/').to_string(), token, cache_dir, offline, progress: false }
    }

    fn api(&self) -> Result<hf_hub::api::sync::Api> {
        hf_hub::api::sync::ApiBuilder::new()
            .with_endpoint(self.endpoint.clone())
            .with_cache_dir(self.cache_dir.clone())
            .with_token(self.token.clone())
            .with_progress(self.progress)
            .build()
            .map_err(|e| Error::Hub(format!("cannot set up the Hub client: {e}")))
    }
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
        Ok(Self { kind, repo: format!("{org}/{name}"), revision, path: path.to_string() })
    }

    fn hf_repo(&self) -> hf_hub::Repo {
        hf_hub::Repo::with_revision(self.repo.clone(), self.kind.hf(), self.revision.clone())
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

/// Turn an `hf-hub` error into a clear message about `r`.
fn hub_error(r: &HubRef, cfg: &HubConfig, e: hf_hub::api::sync::ApiError) -> Error {
    let url = r.url(&cfg.endpoint);
    let text = e.to_string();
    let msg = if text.contains("status code 404") {
        format!("{r}: not found on {} (404): check the repo, the revision `{}` and the path", cfg.endpoint, r.revision)
    } else if text.contains("status code 401") || text.contains("status code 403") {
        format!("{r}: unauthorized ({}): the repo is private or gated; set HF_TOKEN or pass --token", if text.contains("401") { 401 } else { 403 })
    } else if text.contains("Connection") || text.contains("connect") || text.contains("dns") || text.contains("resolve") {
        format!("{r}: cannot reach {} ({text}); set HF_HUB_OFFLINE=1 to use the cache only", cfg.endpoint)
    } else {
        format!("{r}: download from {url} failed: {text}")
    };
    Error::Hub(msg)
}

/// Download (or find in the cache) the file `r`; verify it (sha256 against the LFS ETag the
/// cache names it by, and against `expected` when given). A corrupt file is removed from the
/// cache and reported.
pub fn pull(r: &HubRef, cfg: &HubConfig, expected: Option<&str>) -> Result<PathBuf> {
    let cache = hf_hub::Cache::new(cfg.cache_dir.clone());
    let cached = cache.repo(r.hf_repo()).get(&r.path);
    let path = match (cached, cfg.offline) {
        (Some(p), _) => p,
        (None, true) => {
            return Err(Error::Hub(format!(
                "{r}: not in the cache {} and HF_HUB_OFFLINE is set",
                cfg.cache_dir.display()
            )))
        }
        (None, false) => {
            let api = cfg.api()?;
            api.repo(r.hf_repo()).download(&r.path).map_err(|e| hub_error(r, cfg, e))?
        }
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

/// List the files of a Hub repo (at `revision`).
pub fn list_files(kind: RepoKind, repo: &str, revision: &str, cfg: &HubConfig) -> Result<Vec<String>> {
    let api = cfg.api()?;
    let r = hf_hub::Repo::with_revision(repo.to_string(), kind.hf(), revision.to_string());
    let info = api.repo(r).info().map_err(|e| {
        let href = HubRef { kind, repo: repo.to_string(), revision: revision.to_string(), path: String::new() };
        hub_error(&href, cfg, e)
    })?;
    Ok(info.siblings.into_iter().map(|s| s.rfilename).collect())
}
