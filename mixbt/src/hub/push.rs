//! Pushing to the Hub with its documented HTTP protocol: create the repo, ask `preupload` which
//! files go through LFS, upload those with the Git LFS batch API (basic or multipart transfer,
//! then verify), and commit everything with one NDJSON commit.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::json;
use sha2::Digest;

use super::{HubConfig, RepoKind};
use crate::{Error, Result};

/// A file to push: its path in the repo and its bytes on disk.
#[derive(Debug, Clone)]
pub struct UploadFile {
    pub path_in_repo: String,
    pub local: PathBuf,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    pub repo_url: String,
    pub commit: String,
    pub lfs_files: Vec<String>,
    pub regular_files: Vec<String>,
}

/// The Hub agent with the configured time-outs, following redirects.
fn agent(cfg: &HubConfig) -> ureq::Agent {
    super::http::agent(cfg, 5)
}

fn auth(req: ureq::Request, cfg: &HubConfig) -> Result<ureq::Request> {
    if cfg.token.is_none() {
        return Err(Error::Hub("pushing needs a token: set HF_TOKEN or pass --token".into()));
    }
    Ok(super::http::with_token(req, cfg))
}

fn call_err(cfg: &HubConfig, what: &str, e: ureq::Error) -> Error {
    match e {
        ureq::Error::Status(code, resp) => {
            let msg = resp.header("X-Error-Message").map(String::from).unwrap_or_else(|| resp.into_string().unwrap_or_default());
            let hint = match code {
                401 | 403 => " (check the token and its write access)",
                404 => " (repo or revision not found)",
                _ => "",
            };
            Error::Hub(format!("{what}: HTTP {code}: {msg}{hint}"))
        }
        e => super::http::error(what, cfg, e),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Create `repo` (`org/name`) if it does not exist.
pub fn create_repo(cfg: &HubConfig, kind: RepoKind, repo: &str, private: bool) -> Result<String> {
    super::validate_repo_id(repo)?;
    let (org, name) = repo.split_once('/').ok_or_else(|| Error::Config(format!("repo `{repo}` must be <org>/<name>")))?;
    let body = json!({"name": name, "organization": org, "type": match kind { RepoKind::Model => "model", RepoKind::Dataset => "dataset" }, "private": private});
    let req = auth(agent(cfg).post(&format!("{}/api/repos/create", cfg.endpoint)), cfg)?;
    match req.send_json(body) {
        Ok(r) => Ok(r.into_json::<serde_json::Value>().ok().and_then(|v| v["url"].as_str().map(String::from)).unwrap_or_default()),
        Err(ureq::Error::Status(409, _)) => Ok(format!("{}/{}{repo}", cfg.endpoint, kind.prefix())),
        Err(e) => Err(call_err(cfg, &format!("create repo {repo}"), e)),
    }
}

/// Upload one LFS object following the batch response's actions.
fn lfs_upload(cfg: &HubConfig, obj: &serde_json::Value, data: &[u8], what: &str) -> Result<()> {
    let Some(actions) = obj.get("actions") else { return Ok(()) }; // already on the server
    if let Some(err) = obj.get("error") {
        return Err(Error::Hub(format!("{what}: LFS batch refused the object: {err}")));
    }
    let upload = &actions["upload"];
    let href = upload["href"].as_str().ok_or_else(|| Error::Hub(format!("{what}: LFS batch answer without an upload href")))?;
    let header = upload["header"].as_object().cloned().unwrap_or_default();
    if let Some(chunk) = header.get("chunk_size").and_then(|c| c.as_str().and_then(|s| s.parse::<usize>().ok()).or(c.as_u64().map(|v| v as usize))) {
        // Multipart: numbered keys are presigned part URLs; PUT each part, then POST the
        // completion with the parts' ETags to the upload href.
        let mut parts: Vec<(usize, String)> =
            header.iter().filter_map(|(k, v)| k.parse::<usize>().ok().and_then(|n| v.as_str().map(|u| (n, u.to_string())))).collect();
        parts.sort();
        let mut etags = vec![];
        for (i, (n, url)) in parts.iter().enumerate() {
            let piece = &data[(i * chunk).min(data.len())..((i + 1) * chunk).min(data.len())];
            let r = agent(cfg).put(url).send_bytes(piece).map_err(|e| call_err(cfg, &format!("{what}: upload part {n}"), e))?;
            let etag = r.header("ETag").unwrap_or("").to_string();
            etags.push(json!({"partNumber": n, "etag": etag}));
        }
        agent(cfg)
            .post(href)
            .send_json(json!({"oid": obj["oid"], "parts": etags}))
            .map_err(|e| call_err(cfg, &format!("{what}: complete multipart upload"), e))?;
    } else {
        let mut req = agent(cfg).put(href);
        for (k, v) in &header {
            if let Some(v) = v.as_str() {
                req = req.set(k, v);
            }
        }
        req.send_bytes(data).map_err(|e| call_err(cfg, &format!("{what}: LFS upload"), e))?;
    }
    if let Some(verify) = actions.get("verify") {
        let href = verify["href"].as_str().unwrap_or_default();
        let mut req = auth(agent(cfg).post(href), cfg)?;
        for (k, v) in verify["header"].as_object().cloned().unwrap_or_default() {
            if let Some(v) = v.as_str() {
                req = req.set(&k, v);
            }
        }
        req.send_json(json!({"oid": obj["oid"], "size": obj["size"]})).map_err(|e| call_err(cfg, &format!("{what}: LFS verify"), e))?;
    }
    Ok(())
}

/// Push `files` to `repo` at `revision` as one commit (creating the repo if needed).
pub fn push_files(cfg: &HubConfig, kind: RepoKind, repo: &str, revision: &str, files: &[UploadFile], message: &str, private: bool) -> Result<PushReport> {
    super::validate_repo_path("revision", revision)?;
    for f in files {
        super::validate_repo_path("file", &f.path_in_repo)?;
    }
    let repo_url = create_repo(cfg, kind, repo, private)?;
    // Read and hash every file.
    let mut blobs = vec![];
    for f in files {
        let data = std::fs::read(&f.local).map_err(|e| Error::io(&f.local, e))?;
        let oid = hex(&sha2::Sha256::digest(&data));
        blobs.push((f.path_in_repo.clone(), data, oid));
    }
    // 1. preupload: which files are LFS.
    let b64 = base64::engine::general_purpose::STANDARD;
    let pre = json!({"files": blobs.iter().map(|(p, d, _)| json!({"path": p, "size": d.len(), "sample": b64.encode(&d[..d.len().min(512)])})).collect::<Vec<_>>()});
    let url = format!("{}/api/{}/{repo}/preupload/{revision}", cfg.endpoint, kind.api());
    let modes: serde_json::Value =
        auth(agent(cfg).post(&url), cfg)?.send_json(pre).map_err(|e| call_err(cfg, "preupload", e))?.into_json().map_err(|e| Error::Hub(format!("preupload: {e}")))?;
    let is_lfs = |p: &str| {
        modes["files"].as_array().map(|a| a.iter().any(|f| f["path"] == p && f["uploadMode"] == "lfs")).unwrap_or(false)
    };
    // 2. LFS batch + uploads.
    let lfs: Vec<&(String, Vec<u8>, String)> = blobs.iter().filter(|(p, _, _)| is_lfs(p)).collect();
    if !lfs.is_empty() {
        let batch = json!({
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "objects": lfs.iter().map(|(_, d, oid)| json!({"oid": oid, "size": d.len()})).collect::<Vec<_>>(),
            "hash_algo": "sha256",
            "ref": {"name": format!("refs/heads/{revision}")},
        });
        let url = format!("{}/{}{repo}.git/info/lfs/objects/batch", cfg.endpoint, kind.prefix());
        let resp: serde_json::Value = auth(agent(cfg).post(&url), cfg)?
            .set("Accept", "application/vnd.git-lfs+json")
            .set("Content-Type", "application/vnd.git-lfs+json")
            .send_string(&batch.to_string())
            .map_err(|e| call_err(cfg, "LFS batch", e))?
            .into_json()
            .map_err(|e| Error::Hub(format!("LFS batch: {e}")))?;
        for obj in resp["objects"].as_array().cloned().unwrap_or_default() {
            let (path, data, _) = lfs.iter().find(|(_, _, oid)| obj["oid"] == oid.as_str()).ok_or_else(|| Error::Hub("LFS batch answered an unknown object".into()))?;
            lfs_upload(cfg, &obj, data, path)?;
        }
    }
    // 3. The commit (NDJSON).
    let mut lines = vec![json!({"key": "header", "value": {"summary": message, "description": ""}}).to_string()];
    for (p, d, oid) in &blobs {
        let line = if is_lfs(p) {
            json!({"key": "lfsFile", "value": {"path": p, "algo": "sha256", "oid": oid, "size": d.len()}})
        } else {
            json!({"key": "file", "value": {"path": p, "content": b64.encode(d), "encoding": "base64"}})
        };
        lines.push(line.to_string());
    }
    let url = format!("{}/api/{}/{repo}/commit/{revision}", cfg.endpoint, kind.api());
    let resp: serde_json::Value = auth(agent(cfg).post(&url), cfg)?
        .set("Content-Type", "application/x-ndjson")
        .send_string(&(lines.join("\n") + "\n"))
        .map_err(|e| call_err(cfg, "commit", e))?
        .into_json()
        .map_err(|e| Error::Hub(format!("commit: {e}")))?;
    Ok(PushReport {
        repo_url,
        commit: resp["commitOid"].as_str().unwrap_or_default().to_string(),
        lfs_files: blobs.iter().filter(|(p, _, _)| is_lfs(p)).map(|(p, _, _)| p.clone()).collect(),
        regular_files: blobs.iter().filter(|(p, _, _)| !is_lfs(p)).map(|(p, _, _)| p.clone()).collect(),
    })
}

/// Push a converted model folder or a run folder: model weights, config, model card, and (for
/// runs) the history and charts.
pub fn push_folder(cfg: &HubConfig, repo: &str, dir: &Path, message: &str, private: bool) -> Result<PushReport> {
    let mut files = vec![];
    let mut add = |rel: &str| {
        let p = dir.join(rel);
        if p.is_file() {
            files.push(UploadFile { path_in_repo: rel.to_string(), local: p });
        }
    };
    for f in ["model.safetensors", "config.json", "README.md", "model.json", "summary.json", "recipe.json", "history.csv", "history.parquet"] {
        add(f);
    }
    if let Ok(rd) = std::fs::read_dir(dir.join("plots")) {
        let mut plots: Vec<String> = rd.filter_map(|e| e.ok().map(|e| format!("plots/{}", e.file_name().to_string_lossy()))).collect();
        plots.sort();
        for p in plots {
            add(&p);
        }
    }
    if !files.iter().any(|f| f.path_in_repo == "model.safetensors") {
        return Err(Error::format(dir, "no model.safetensors to push (convert a checkpoint or push a run folder)"));
    }
    push_files(cfg, RepoKind::Model, repo, "main", &files, message, private)
}
