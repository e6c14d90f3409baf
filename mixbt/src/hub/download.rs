//! Downloads into the Hub cache, in the layout `hf-hub` and the Python client read
//! (`<cache>/models--org--name/{blobs/<etag>, snapshots/<commit>/<path>, refs/<revision>}`),
//! with the time-outs of [`super::http`]: a server that stops answering ends the download with a
//! clear error after `HF_HUB_DOWNLOAD_TIMEOUT` seconds without progress, and nothing is left in
//! the cache (the body goes to a temporary file that is renamed only when complete).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{http, validate_name, HubConfig, HubRef};
use crate::{Error, Result};

/// What the metadata request says about a file.
struct Metadata {
    commit: String,
    etag: String,
    size: u64,
    /// Where the body is (the resolve URL, or the CDN it redirects to).
    url: String,
}

/// The folder of `r`'s repo in the cache.
pub fn repo_dir(cfg: &HubConfig, r: &HubRef) -> PathBuf {
    let kind = match r.kind {
        super::RepoKind::Model => "models",
        super::RepoKind::Dataset => "datasets",
    };
    cfg.cache_dir.join(format!("{kind}--{}", r.repo.replace('/', "--")))
}

/// The snapshot folder of `r.revision` in the cache (`refs/<revision>` names its commit).
fn snapshot_dir(cfg: &HubConfig, r: &HubRef) -> Option<PathBuf> {
    let dir = repo_dir(cfg, r);
    let commit = std::fs::read_to_string(dir.join("refs").join(&r.revision)).ok()?;
    validate_name("commit in the cache", commit.trim()).ok()?;
    Some(dir.join("snapshots").join(commit.trim()))
}

/// The cached file of `r`, if its revision's snapshot has it.
pub fn cached(cfg: &HubConfig, r: &HubRef) -> Option<PathBuf> {
    let p = snapshot_dir(cfg, r)?.join(&r.path);
    p.exists().then_some(p)
}

/// The files of `r.revision`'s snapshot in the cache (relative paths, sorted), for offline use;
/// `None` when the cache has no snapshot of that revision.
pub fn cached_files(cfg: &HubConfig, r: &HubRef) -> Option<Vec<String>> {
    fn walk(d: &Path, rel: &str, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            // Snapshot entries are links to blobs (followed) or folders.
            if e.path().is_dir() {
                walk(&e.path(), &rel, out);
            } else if e.path().is_file() {
                out.push(rel);
            }
        }
    }
    let snap = snapshot_dir(cfg, r)?;
    let mut out = vec![];
    walk(&snap, "", &mut out);
    out.sort();
    Some(out)
}

fn header(resp: &ureq::Response, name: &str) -> Option<String> {
    resp.header(name).map(|v| v.trim().trim_start_matches("W/").trim_matches('"').to_string())
}

/// `GET` with `Range: bytes=0-0`, following relative redirects (renamed repos) but not the
/// absolute one to the CDN, whose address is kept for the body.
fn metadata(r: &HubRef, cfg: &HubConfig) -> Result<Metadata> {
    let what = r.to_string();
    let agent = http::agent(cfg, 0);
    let mut url = r.url(&cfg.endpoint);
    for _ in 0..5 {
        let resp = http::with_token(agent.get(&url), cfg).set("Range", "bytes=0-0").call().map_err(|e| http::error(&what, cfg, e))?;
        let status = resp.status();
        // The Hub's headers: the commit and the ETag (the LFS one, for LFS files).
        let commit = || header(&resp, "x-repo-commit").ok_or_else(|| Error::Hub(format!("{what}: the Hub sent no X-Repo-Commit")));
        let etag = || {
            header(&resp, "x-linked-etag").or_else(|| header(&resp, "etag")).ok_or_else(|| Error::Hub(format!("{what}: the Hub sent no ETag")))
        };
        if (300..400).contains(&status) {
            let loc = resp.header("Location").ok_or_else(|| Error::Hub(format!("{what}: redirect without a Location")))?.to_string();
            if loc.starts_with('/') {
                url = format!("{}{loc}", cfg.endpoint);
                continue;
            }
            // An absolute redirect (the CDN): the size is the Hub's X-Linked-Size, else the CDN's.
            let size = match header(&resp, "x-linked-size").and_then(|s| s.parse().ok()) {
                Some(s) => s,
                None => range_size(&what, &agent.get(&loc).set("Range", "bytes=0-0").call().map_err(|e| http::error(&what, cfg, e))?)?,
            };
            return checked(&what, Metadata { commit: commit()?, etag: etag()?, size, url: loc });
        }
        return checked(&what, Metadata { commit: commit()?, etag: etag()?, size: range_size(&what, &resp)?, url });
    }
    Err(Error::Hub(format!("{what}: too many redirects")))
}

/// The total of a `Content-Range: bytes 0-0/<total>` answer.
fn range_size(what: &str, resp: &ureq::Response) -> Result<u64> {
    resp.header("Content-Range")
        .and_then(|c| c.rsplit('/').next())
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| Error::Hub(format!("{what}: the Hub sent no usable Content-Range")))
}

/// The commit and the ETag become file names in the cache: they must be plain names.
fn checked(what: &str, m: Metadata) -> Result<Metadata> {
    validate_name(&format!("{what}: X-Repo-Commit"), &m.commit)?;
    validate_name(&format!("{what}: ETag"), &m.etag)?;
    Ok(m)
}

/// Download `r` into the cache and return its snapshot path.
pub fn download(r: &HubRef, cfg: &HubConfig) -> Result<PathBuf> {
    let what = r.to_string();
    let m = metadata(r, cfg)?;
    let dir = repo_dir(cfg, r);
    let blobs = dir.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e))?;
    let blob = blobs.join(&m.etag);
    let complete = |b: &Path| b.is_file() && std::fs::metadata(b).map(|x| x.len()).unwrap_or(0) == m.size;
    // One download of a blob at a time: a second process (or thread) pulling the same file
    // waits, then finds it complete.
    let _claim = if complete(&blob) { None } else { Some(crate::io::FileLock::wait(&blob)?) };
    if !complete(&blob) {
        let tmp = crate::io::temp_path(&blob.with_file_name(format!("{}.incomplete", m.etag)));
        let res = fetch_body(&what, cfg, &m, &tmp);
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &blob).map_err(|e| Error::io(&blob, e))?;
    }
    let pointer = dir.join("snapshots").join(&m.commit).join(&r.path);
    if let Some(parent) = pointer.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    // A relative link: `snapshots/<commit>/<a>/<b>` → `../../../blobs/<etag>`.
    let depth = r.path.split('/').count() + 1;
    let target: PathBuf = std::iter::repeat_n(Path::new(".."), depth).collect::<PathBuf>().join("blobs").join(&m.etag);
    if std::fs::read_link(&pointer).ok().as_ref() != Some(&target) {
        // Made under a temporary name and renamed over: a concurrent pull of the same file
        // makes the same link, and a stale link is replaced.
        let tmp = crate::io::temp_path(&pointer);
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).map_err(|e| Error::io(&pointer, e))?;
        std::fs::rename(&tmp, &pointer).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(&pointer, e)
        })?;
    }
    let refp = dir.join("refs").join(&r.revision);
    if let Some(parent) = refp.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    crate::io::atomic_write(&refp, m.commit.as_bytes())?;
    Ok(pointer)
}

/// Stream the body into `tmp`, checking its length.
fn fetch_body(what: &str, cfg: &HubConfig, m: &Metadata, tmp: &Path) -> Result<()> {
    let agent = http::agent(cfg, 5);
    // The token goes to the Hub only, never to the CDN it redirects LFS files to (a presigned URL).
    let req = agent.get(&m.url);
    let req = if same_host(&m.url, &cfg.endpoint) { http::with_token(req, cfg) } else { req };
    let resp = req.call().map_err(|e| http::error(what, cfg, e))?;
    let mut body = resp.into_reader();
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(tmp).map_err(|e| Error::io(tmp, e))?;
    let pb = cfg.progress.then(|| {
        let pb = indicatif::ProgressBar::new(m.size);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} ({eta})").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb.set_message(what.rsplit('/').next().unwrap_or(what).to_string());
        pb
    });
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if http::is_timeout(&e) => {
                return Err(Error::Hub(format!(
                    "{what}: the download stalled after {got} of {} bytes: no data for {} s (set HF_HUB_DOWNLOAD_TIMEOUT to wait longer); nothing was cached",
                    m.size,
                    cfg.timeout.as_secs_f64()
                )))
            }
            Err(e) => return Err(Error::Hub(format!("{what}: the download broke off after {got} of {} bytes ({e}); nothing was cached", m.size))),
        };
        got += n as u64;
        if got > m.size {
            return Err(Error::Hub(format!("{what}: the server sent more than the {} bytes it announced; nothing was cached", m.size)));
        }
        f.write_all(&buf[..n]).map_err(|e| Error::io(tmp, e))?;
        if let Some(pb) = &pb {
            pb.set_position(got);
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if got != m.size {
        return Err(Error::Hub(format!("{what}: the download broke off after {got} of {} bytes; nothing was cached", m.size)));
    }
    f.sync_all().map_err(|e| Error::io(tmp, e))
}

/// Whether `url` is on the host (and port) of `endpoint`.
pub fn same_host(url: &str, endpoint: &str) -> bool {
    let host = |u: &str| u.split("://").nth(1).map(|r| r.split('/').next().unwrap_or("").to_ascii_lowercase());
    host(url).is_some() && host(url) == host(endpoint)
}

/// The file names of a repo at `r.revision` (the repo-info API).
pub fn list(r: &HubRef, cfg: &HubConfig) -> Result<Vec<String>> {
    let what = format!("hub:{}{}", r.kind.prefix(), r.repo);
    let url = format!("{}/api/{}/{}/revision/{}", cfg.endpoint, r.kind.api(), r.repo, r.revision);
    let resp = http::with_token(http::agent(cfg, 5).get(&url), cfg).call().map_err(|e| http::error(&what, cfg, e))?;
    let v: serde_json::Value = resp.into_json().map_err(|e| Error::Hub(format!("{what}: the repo information is not JSON ({e})")))?;
    let files = v["siblings"].as_array().ok_or_else(|| Error::Hub(format!("{what}: the repo information lists no files")))?;
    Ok(files.iter().filter_map(|s| s["rfilename"].as_str().map(String::from)).collect())
}
