//! A local server that speaks the Hugging Face Hub's HTTP protocol, so that pulls, pushes and
//! push → pull round trips are tested for real, without internet.
//!
//! Implemented (as the Hub documents and `huggingface_hub` / `hf-hub` use it):
//! - `GET`/`HEAD /{repo}/resolve/{revision}/{path}` (models; `datasets/…` for data sets) with
//!   `ETag` (sha256 for LFS files, git blob sha1 otherwise), `X-Repo-Commit`, `X-Linked-Etag`,
//!   `X-Linked-Size`, `Accept-Ranges` and `Range` requests (206 + `Content-Range`);
//! - `GET /api/models/{repo}` (and `/revision/{rev}`), `/api/datasets/{repo}`: repo info with
//!   `sha` and `siblings`; `GET /api/whoami-v2`;
//! - `POST /api/repos/create`;
//! - `POST /api/{models|datasets}/{repo}/preupload/{rev}`: which files go through LFS;
//! - `POST /{repo}.git/info/lfs/objects/batch` (Git LFS batch API, basic transfer) with upload
//!   and verify actions served by this server;
//! - `POST /api/{models|datasets}/{repo}/commit/{rev}`: the NDJSON commit (`header`, `file`
//!   (base64), `lfsFile`, `deletedFile`).
//!
//! Bearer tokens: writes need the configured token; private repos need it for reads too.
//! Faults can be switched on per file (truncated body, corrupted body) to test client errors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine;
use sha2::Digest;
use tiny_http::{Header, Method, Request, Response, Server};

/// Files bigger than this (or with an LFS extension) are uploaded through LFS.
pub const LFS_THRESHOLD: usize = 10 * 1024 * 1024;
const LFS_EXTENSIONS: [&str; 9] = ["safetensors", "pth", "pt", "bin", "parquet", "ckpt", "h5", "npz", "msgpack"];

#[derive(Clone, Debug)]
struct FileEntry {
    data: Arc<Vec<u8>>,
    lfs: bool,
}

impl FileEntry {
    fn etag(&self) -> String {
        if self.lfs {
            hex(&sha2::Sha256::digest(self.data.as_slice()))
        } else {
            // git blob sha1
            let mut h = sha1::Sha1::new();
            h.update(format!("blob {}\0", self.data.len()).as_bytes());
            h.update(self.data.as_slice());
            hex(&h.finalize())
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Repo {
    private: bool,
    /// Commit history (newest last): (commit id, summary, files at that commit).
    commits: Vec<(String, String, BTreeMap<String, FileEntry>)>,
}

impl Repo {
    fn head(&self) -> Option<&(String, String, BTreeMap<String, FileEntry>)> {
        self.commits.last()
    }
    fn at(&self, rev: &str) -> Option<&(String, String, BTreeMap<String, FileEntry>)> {
        if rev == "main" {
            return self.head();
        }
        self.commits.iter().rev().find(|c| c.0 == rev || c.0.starts_with(rev))
    }
}

/// Faults to inject, by file path (in any repo).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Send only half of the body (with the full `Content-Length`) and close.
    pub truncate: HashSet<String>,
    /// Flip bytes of the body (the `ETag` still names the correct content).
    pub corrupt: HashSet<String>,
    /// Send the headers and half of the body, then keep the connection open without sending
    /// anything more (a stalled download: only a read time-out ends it).
    pub stall: HashSet<String>,
    /// Answer every request for the file with HTTP 500.
    pub error500: HashSet<String>,
    /// Serve the (LFS) file as the Hub does: a 302 to an absolute CDN address (`/cdn/<etag>`)
    /// carrying `X-Repo-Commit`, `X-Linked-Etag` and `X-Linked-Size`.
    pub cdn: HashSet<String>,
}

#[derive(Default)]
struct State {
    repos: HashMap<(String, String), Repo>,
    lfs: HashMap<String, Arc<Vec<u8>>>,
    parts: HashMap<(String, usize), Vec<u8>>,
    faults: Faults,
    counter: u64,
    requests: Vec<String>,
    /// Truncated bodies waiting on the raw socket, by token: (status, headers, half body, promised
    /// length, stall instead of closing).
    truncated: HashMap<String, (u16, Vec<(String, String)>, Vec<u8>, usize, bool)>,
    /// Port of the raw socket that serves truncated bodies and then closes the connection.
    raw_port: u16,
    /// Bodies behind `/cdn/<etag>` (files redirected by the `cdn` fault).
    cdn: HashMap<String, Arc<Vec<u8>>>,
}

/// Server settings.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// Token accepted for writes and private reads (`None`: writes are refused).
    pub token: Option<String>,
    /// User name returned by `whoami`.
    pub user: String,
    /// Ask for multipart LFS uploads with parts of this size for larger objects (as the Hub
    /// does for big files); `None`: basic single-PUT transfers.
    pub multipart_chunk: Option<usize>,
}

/// A running local Hub.
pub struct HubServer {
    url: String,
    state: Arc<Mutex<State>>,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn repo_type_of(t: &str) -> Option<&'static str> {
    match t {
        "model" | "models" => Some("model"),
        "dataset" | "datasets" => Some("dataset"),
        "space" | "spaces" => Some("space"),
        _ => None,
    }
}

impl HubServer {
    /// Start on 127.0.0.1 on a free port.
    pub fn start(cfg: ServerConfig) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", cfg)
    }

    /// Start on `addr` (e.g. `127.0.0.1:8765`).
    pub fn start_on(addr: &str, cfg: ServerConfig) -> std::io::Result<Self> {
        let server = Arc::new(Server::http(addr).map_err(|e| std::io::Error::other(e.to_string()))?);
        let port = server.server_addr().to_ip().map(|a| a.port()).unwrap_or(0);
        let url = format!("http://127.0.0.1:{port}");
        let state = Arc::new(Mutex::new(State::default()));
        // tiny_http keeps connections alive, so a short body would leave the client waiting:
        // truncated downloads are redirected (as the Hub redirects LFS files to its CDN) to a raw
        // socket that writes the promised length, half the bytes, and closes.
        let raw = std::net::TcpListener::bind("127.0.0.1:0")?;
        state.lock().unwrap().raw_port = raw.local_addr()?.port();
        let st_raw = Arc::downgrade(&state);
        std::thread::spawn(move || serve_truncated(raw, st_raw));
        let (s2, st2, url2) = (server.clone(), state.clone(), url.clone());
        let thread = std::thread::spawn(move || {
            for req in s2.incoming_requests() {
                handle(req, &st2, &cfg, &url2);
            }
        });
        Ok(Self { url, state, server, thread: Some(thread) })
    }

    /// Base URL (`http://127.0.0.1:PORT`), the value for `HF_ENDPOINT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Create (or replace) a file in a repo directly, as a new commit. `repo_type`: model or dataset.
    pub fn add_file(&self, repo_type: &str, repo_id: &str, path: &str, data: Vec<u8>) -> String {
        let mut st = self.state.lock().unwrap();
        let lfs = is_lfs(path, data.len());
        let key = (repo_type_of(repo_type).unwrap_or("model").to_string(), repo_id.to_string());
        st.counter += 1;
        let n = st.counter;
        let repo = st.repos.entry(key).or_default();
        let mut files = repo.head().map(|c| c.2.clone()).unwrap_or_default();
        files.insert(path.to_string(), FileEntry { data: Arc::new(data), lfs });
        let id = commit_id(repo_id, n);
        repo.commits.push((id.clone(), format!("add {path}"), files));
        id
    }

    /// Make a repo private (reads then need the token).
    pub fn set_private(&self, repo_type: &str, repo_id: &str, private: bool) {
        let mut st = self.state.lock().unwrap();
        let key = (repo_type_of(repo_type).unwrap_or("model").to_string(), repo_id.to_string());
        st.repos.entry(key).or_default().private = private;
    }

    /// Replace the injected faults.
    pub fn set_faults(&self, f: Faults) {
        self.state.lock().unwrap().faults = f;
    }

    /// The bytes of a file at the head of a repo.
    pub fn file(&self, repo_type: &str, repo_id: &str, path: &str) -> Option<Vec<u8>> {
        let st = self.state.lock().unwrap();
        let key = (repo_type_of(repo_type).unwrap_or("model").to_string(), repo_id.to_string());
        st.repos.get(&key)?.head()?.2.get(path).map(|f| f.data.as_ref().clone())
    }

    /// Whether a file is stored through LFS.
    pub fn is_lfs_file(&self, repo_type: &str, repo_id: &str, path: &str) -> Option<bool> {
        let st = self.state.lock().unwrap();
        let key = (repo_type_of(repo_type).unwrap_or("model").to_string(), repo_id.to_string());
        st.repos.get(&key)?.head()?.2.get(path).map(|f| f.lfs)
    }

    /// Commit summaries of a repo, oldest first.
    pub fn commits(&self, repo_type: &str, repo_id: &str) -> Vec<String> {
        let st = self.state.lock().unwrap();
        let key = (repo_type_of(repo_type).unwrap_or("model").to_string(), repo_id.to_string());
        st.repos.get(&key).map(|r| r.commits.iter().map(|c| c.1.clone()).collect()).unwrap_or_default()
    }

    /// Every request line served so far (`METHOD /path`).
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Load every file under `dir/<org>/<name>/…` as model repos (`dir/datasets/<org>/<name>/…`
    /// as data-set repos).
    pub fn seed_from_dir(&self, dir: &std::path::Path) -> std::io::Result<usize> {
        let mut n = 0;
        fn walk(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
            for e in std::fs::read_dir(d)? {
                let p = e?.path();
                if p.is_dir() {
                    walk(&p, out)?;
                } else {
                    out.push(p);
                }
            }
            Ok(())
        }
        let mut files = vec![];
        walk(dir, &mut files)?;
        files.sort();
        for f in files {
            let rel = f.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
            let parts: Vec<&str> = rel.split('/').collect();
            let (ty, rest) = if parts[0] == "datasets" { ("dataset", &parts[1..]) } else { ("model", &parts[..]) };
            if rest.len() < 3 {
                continue;
            }
            let repo = format!("{}/{}", rest[0], rest[1]);
            self.add_file(ty, &repo, &rest[2..].join("/"), std::fs::read(&f)?);
            n += 1;
        }
        Ok(n)
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn commit_id(repo: &str, n: u64) -> String {
    hex(&sha1::Sha1::digest(format!("{repo}:{n}").as_bytes()))
}

fn is_lfs(path: &str, size: usize) -> bool {
    let ext = path.rsplit('.').next().unwrap_or("");
    size >= LFS_THRESHOLD || LFS_EXTENSIONS.contains(&ext)
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap()
}

fn json(status: u16, v: serde_json::Value) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(v.to_string().into_bytes()).with_status_code(status).with_header(header("Content-Type", "application/json"))
}

fn error(status: u16, code: &str, msg: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    json(status, serde_json::json!({ "error": msg })).with_header(header("X-Error-Code", code)).with_header(header("X-Error-Message", msg))
}

fn bearer(req: &Request) -> Option<String> {
    req.headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .and_then(|h| h.value.as_str().strip_prefix("Bearer ").map(|s| s.trim().to_string()))
}

fn authorized(req: &Request, cfg: &ServerConfig) -> bool {
    matches!((&cfg.token, bearer(req)), (Some(t), Some(b)) if *t == b)
}

/// Split `[datasets/|spaces/]org/name/rest…` into (type, repo id, rest).
fn split_repo(path: &str) -> Option<(&'static str, String, String)> {
    let (ty, p) = if let Some(p) = path.strip_prefix("datasets/") {
        ("dataset", p)
    } else if let Some(p) = path.strip_prefix("spaces/") {
        ("space", p)
    } else {
        ("model", path)
    };
    let mut it = p.splitn(3, '/');
    let org = it.next()?;
    let name = it.next()?;
    Some((ty, format!("{org}/{name}"), it.next().unwrap_or("").to_string()))
}

fn handle(mut req: Request, state: &Arc<Mutex<State>>, cfg: &ServerConfig, base: &str) {
    let method = req.method().clone();
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("").trim_start_matches('/').to_string();
    state.lock().unwrap().requests.push(format!("{method} /{path}"));
    let mut body = vec![];
    let _ = std::io::Read::read_to_end(req.as_reader(), &mut body);
    let resp = route(&req, &method, &path, &body, state, cfg, base);
    match resp {
        Reply::Data(r) => {
            let _ = req.respond(r);
        }
        Reply::Truncated { status, headers, data, full_len, stall } => {
            let mut st = state.lock().unwrap();
            st.counter += 1;
            let token = format!("t{}", st.counter);
            let hs = headers.iter().map(|h| (h.field.to_string(), h.value.to_string())).collect();
            st.truncated.insert(token.clone(), (status, hs, data, full_len, stall));
            let location = format!("http://127.0.0.1:{}/{token}", st.raw_port);
            drop(st);
            let _ = req.respond(Response::from_data(vec![]).with_status_code(302).with_header(header("Location", &location)));
        }
    }
}

/// The raw socket behind truncated downloads: promise the full `Content-Length`, send half, close.
fn serve_truncated(listener: std::net::TcpListener, state_weak: std::sync::Weak<Mutex<State>>) {
    use std::io::{BufRead, Write};
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let Some(state) = state_weak.upgrade() else { return };
        let mut reader = std::io::BufReader::new(conn.try_clone().expect("clone socket"));
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let token = line.split_whitespace().nth(1).unwrap_or("").trim_start_matches('/').to_string();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
                break;
            }
        }
        let entry = state.lock().unwrap().truncated.remove(&token);
        drop(state);
        let (out, stall) = match entry {
            Some((status, headers, data, full_len, stall)) => {
                let mut head = format!("HTTP/1.1 {status} OK\r\nContent-Length: {full_len}\r\nConnection: close\r\n");
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                ([head.into_bytes(), data].concat(), stall)
            }
            None => (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), false),
        };
        let _ = conn.write_all(&out);
        let _ = conn.flush();
        if stall {
            // Hold the connection open, silent, until the server is dropped (at most 2 minutes).
            let weak = state_weak.clone();
            std::thread::spawn(move || {
                let t0 = std::time::Instant::now();
                while weak.upgrade().is_some() && t0.elapsed() < std::time::Duration::from_secs(120) {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                drop(conn);
            });
            continue;
        }
        let _ = conn.shutdown(std::net::Shutdown::Both);
    }
}

/// A server that accepts connections and never answers (a hung Hub, for time-out tests). The
/// connections are held until it is dropped.
pub struct SilentServer {
    url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl SilentServer {
    /// Listen on 127.0.0.1 on a free port.
    pub fn start() -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = vec![];
            for conn in listener.incoming() {
                if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    held.push(c);
                }
            }
        });
        Ok(Self { url: format!("http://{addr}"), stop, addr, thread: Some(thread) })
    }

    /// Base URL, the value for `HF_ENDPOINT`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr); // wake the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Reply {
    Data(Response<std::io::Cursor<Vec<u8>>>),
    Truncated { status: u16, headers: Vec<Header>, data: Vec<u8>, full_len: usize, stall: bool },
}

fn route(req: &Request, method: &Method, path: &str, body: &[u8], state: &Arc<Mutex<State>>, cfg: &ServerConfig, base: &str) -> Reply {
    use Reply::Data;
    // --- API
    if let Some(rest) = path.strip_prefix("api/") {
        if rest == "whoami-v2" || rest == "whoami" {
            return Data(if authorized(req, cfg) {
                json(200, serde_json::json!({"name": cfg.user, "type": "user"}))
            } else {
                error(401, "Unauthorized", "Invalid credentials in Authorization header")
            });
        }
        if rest == "repos/create" && *method == Method::Post {
            if !authorized(req, cfg) {
                return Data(error(401, "Unauthorized", "Invalid credentials in Authorization header"));
            }
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let name = v["name"].as_str().unwrap_or("");
            let org = v["organization"].as_str().map(String::from).unwrap_or_else(|| cfg.user.clone());
            let ty = repo_type_of(v["type"].as_str().unwrap_or("model")).unwrap_or("model");
            if name.is_empty() {
                return Data(error(400, "BadRequest", "missing name"));
            }
            let id = if name.contains('/') { name.to_string() } else { format!("{org}/{name}") };
            let mut st = state.lock().unwrap();
            let key = (ty.to_string(), id.clone());
            if st.repos.contains_key(&key) {
                return Data(error(409, "RepoExists", "You already created this repo"));
            }
            st.counter += 1;
            let n = st.counter;
            let mut files = BTreeMap::new();
            files.insert(".gitattributes".to_string(), FileEntry { data: Arc::new(b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n".to_vec()), lfs: false });
            st.repos.insert(key, Repo { private: v["private"].as_bool().unwrap_or(false), commits: vec![(commit_id(&id, n), "initial commit".into(), files)] });
            let prefix = if ty == "dataset" { "datasets/" } else { "" };
            return Data(json(200, serde_json::json!({"url": format!("{base}/{prefix}{id}"), "name": id})));
        }
        // api/{models|datasets}/{org}/{name}[/revision/{rev} | /preupload/{rev} | /commit/{rev}]
        let (kind, after) = match rest.split_once('/') {
            Some(x) => x,
            None => return Data(error(404, "NotFound", "unknown API route")),
        };
        let Some(ty) = repo_type_of(kind) else { return Data(error(404, "NotFound", "unknown API route")) };
        let mut it = after.splitn(3, '/');
        let (org, name, tail) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
        let id = format!("{org}/{name}");
        let key = (ty.to_string(), id.clone());
        let (op, rev) = tail.split_once('/').map(|(a, b)| (a.to_string(), b.to_string())).unwrap_or((tail.to_string(), "main".into()));
        let rev = urldecode(&rev);
        if op.is_empty() || op == "revision" {
            let st = state.lock().unwrap();
            let Some(repo) = st.repos.get(&key) else { return Data(error(404, "RepoNotFound", &format!("Repository {id} not found"))) };
            if repo.private && !authorized(req, cfg) {
                return Data(error(401, "RepoNotFound", "Repository not found or private"));
            }
            let Some((sha, _, files)) = repo.at(&rev) else { return Data(error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"))) };
            let siblings: Vec<_> = files.keys().map(|f| serde_json::json!({"rfilename": f})).collect();
            return Data(json(200, serde_json::json!({"id": id, "modelId": id, "sha": sha, "private": repo.private, "siblings": siblings})));
        }
        if !authorized(req, cfg) {
            return Data(error(401, "Unauthorized", "Invalid credentials in Authorization header"));
        }
        if op == "preupload" {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let files: Vec<_> = v["files"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|f| {
                    let p = f["path"].as_str().unwrap_or("");
                    let size = f["size"].as_u64().unwrap_or(0) as usize;
                    serde_json::json!({"path": p, "uploadMode": if is_lfs(p, size) { "lfs" } else { "regular" }, "shouldIgnore": false})
                })
                .collect();
            return Data(json(200, serde_json::json!({"files": files})));
        }
        if op == "commit" {
            let text = String::from_utf8_lossy(body);
            let mut st = state.lock().unwrap();
            if !st.repos.contains_key(&key) {
                return Data(error(404, "RepoNotFound", &format!("Repository {id} not found")));
            }
            let mut files = st.repos[&key].head().map(|c| c.2.clone()).unwrap_or_default();
            let mut summary = String::from("commit");
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: serde_json::Value = match serde_json::from_str(line) {
                    Ok(v) => v,
                    Err(e) => return Data(error(400, "BadRequest", &format!("bad NDJSON line: {e}"))),
                };
                let val = &v["value"];
                match v["key"].as_str().unwrap_or("") {
                    "header" => summary = val["summary"].as_str().unwrap_or("commit").to_string(),
                    "file" => {
                        let p = val["path"].as_str().unwrap_or("").to_string();
                        let Ok(data) = base64::engine::general_purpose::STANDARD.decode(val["content"].as_str().unwrap_or("")) else {
                            return Data(error(400, "BadRequest", &format!("{p}: content is not base64")));
                        };
                        files.insert(p, FileEntry { data: Arc::new(data), lfs: false });
                    }
                    "lfsFile" => {
                        let p = val["path"].as_str().unwrap_or("").to_string();
                        let oid = val["oid"].as_str().unwrap_or("");
                        let Some(data) = st.lfs.get(oid).cloned() else {
                            return Data(error(400, "BadRequest", &format!("{p}: LFS object {oid} was not uploaded")));
                        };
                        files.insert(p, FileEntry { data, lfs: true });
                    }
                    "deletedFile" => {
                        files.remove(val["path"].as_str().unwrap_or(""));
                    }
                    other => return Data(error(400, "BadRequest", &format!("unknown commit operation `{other}`"))),
                }
            }
            st.counter += 1;
            let n = st.counter;
            let cid = commit_id(&id, n);
            st.repos.get_mut(&key).unwrap().commits.push((cid.clone(), summary, files));
            let prefix = if ty == "dataset" { "datasets/" } else { "" };
            return Data(json(200, serde_json::json!({"success": true, "commitOid": cid, "commitUrl": format!("{base}/{prefix}{id}/commit/{cid}")})));
        }
        return Data(error(404, "NotFound", "unknown API route"));
    }
    // --- LFS transfer endpoints served by this server
    if let Some(oid) = path.strip_prefix("lfs-upload/") {
        let got = hex(&sha2::Sha256::digest(body));
        if got != oid {
            return Data(error(400, "BadRequest", &format!("sha256 {got} does not match {oid}")));
        }
        state.lock().unwrap().lfs.insert(oid.to_string(), Arc::new(body.to_vec()));
        return Data(json(200, serde_json::json!({})));
    }
    if let Some(rest) = path.strip_prefix("lfs-part/") {
        let (oid, n) = rest.split_once('/').unwrap_or((rest, "0"));
        let n: usize = n.parse().unwrap_or(0);
        let etag = hex(&sha2::Sha256::digest(body))[..16].to_string();
        state.lock().unwrap().parts.insert((oid.to_string(), n), body.to_vec());
        return Data(json(200, serde_json::json!({})).with_header(header("ETag", &format!("\"{etag}\""))));
    }
    if let Some(oid) = path.strip_prefix("lfs-complete/") {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let mut st = state.lock().unwrap();
        let mut data = vec![];
        for p in v["parts"].as_array().cloned().unwrap_or_default() {
            let n = p["partNumber"].as_u64().unwrap_or(0) as usize;
            let Some(part) = st.parts.remove(&(oid.to_string(), n)) else {
                return Data(error(400, "BadRequest", &format!("part {n} of {oid} was not uploaded")));
            };
            let etag = hex(&sha2::Sha256::digest(&part))[..16].to_string();
            if p["etag"].as_str().map(|e| e.trim_matches('"')) != Some(etag.as_str()) {
                return Data(error(400, "BadRequest", &format!("part {n}: wrong etag")));
            }
            data.extend(part);
        }
        let got = hex(&sha2::Sha256::digest(&data));
        if got != oid {
            return Data(error(400, "BadRequest", &format!("assembled object has sha256 {got}, expected {oid}")));
        }
        st.lfs.insert(oid.to_string(), Arc::new(data));
        return Data(json(200, serde_json::json!({})));
    }
    if path.starts_with("lfs-verify/") {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let oid = v["oid"].as_str().unwrap_or("");
        let st = state.lock().unwrap();
        return Data(match st.lfs.get(oid) {
            Some(d) if Some(d.len() as u64) == v["size"].as_u64() => json(200, serde_json::json!({})),
            _ => error(404, "NotFound", &format!("object {oid} not found or size mismatch")),
        });
    }
    // --- Git LFS batch API
    if path.ends_with(".git/info/lfs/objects/batch") && *method == Method::Post {
        if !authorized(req, cfg) {
            return Data(error(401, "Unauthorized", "Invalid credentials in Authorization header"));
        }
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let st = state.lock().unwrap();
        let objects: Vec<_> = v["objects"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|o| {
                let oid = o["oid"].as_str().unwrap_or("");
                let size = o["size"].as_u64().unwrap_or(0);
                let multi = cfg.multipart_chunk.filter(|c| size as usize > *c && v["transfers"].as_array().map(|t| t.iter().any(|x| x == "multipart")).unwrap_or(false));
                if st.lfs.contains_key(oid) {
                    serde_json::json!({"oid": oid, "size": size})
                } else if let Some(chunk) = multi {
                    let mut header = serde_json::Map::new();
                    header.insert("chunk_size".into(), serde_json::json!(chunk.to_string()));
                    for n in 1..=(size as usize).div_ceil(chunk) {
                        header.insert(format!("{n:05}"), serde_json::json!(format!("{base}/lfs-part/{oid}/{n}")));
                    }
                    serde_json::json!({"oid": oid, "size": size, "authenticated": true, "actions": {
                        "upload": {"href": format!("{base}/lfs-complete/{oid}"), "header": header},
                        "verify": {"href": format!("{base}/lfs-verify/{oid}"), "header": {}}
                    }})
                } else {
                    serde_json::json!({"oid": oid, "size": size, "authenticated": true, "actions": {
                        "upload": {"href": format!("{base}/lfs-upload/{oid}"), "header": {"X-Test": "1"}},
                        "verify": {"href": format!("{base}/lfs-verify/{oid}"), "header": {}}
                    }})
                }
            })
            .collect();
        return Data(json(200, serde_json::json!({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})).with_header(header("Content-Type", "application/vnd.git-lfs+json")));
    }
    // --- the CDN behind LFS redirects
    if let Some(etag) = path.strip_prefix("cdn/") {
        return match state.lock().unwrap().cdn.get(etag) {
            Some(data) => Data(Response::from_data(data.as_ref().clone()).with_header(header("Content-Type", "application/octet-stream"))),
            None => Data(error(404, "NotFound", "no such object")),
        };
    }
    // --- resolve
    if let Some((ty, id, rest)) = split_repo(path) {
        if let Some(r) = rest.strip_prefix("resolve/") {
            let (rev, file) = r.split_once('/').unwrap_or((r, ""));
            let (rev, file) = (urldecode(rev), urldecode(file));
            let mut st = state.lock().unwrap();
            let Some(repo) = st.repos.get(&(ty.to_string(), id.clone())) else {
                return Data(error(404, "RepoNotFound", &format!("Repository {id} not found")));
            };
            if repo.private && !authorized(req, cfg) {
                return Data(error(401, "RepoNotFound", "Repository not found or private (invalid credentials)"));
            }
            let Some((sha, _, files)) = repo.at(&rev) else { return Data(error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"))) };
            let Some(entry) = files.get(&file) else { return Data(error(404, "EntryNotFound", &format!("{file} does not exist on {rev}"))) };
            if st.faults.error500.contains(&file) {
                return Data(error(500, "InternalError", "injected server error"));
            }
            if st.faults.cdn.contains(&file) && entry.lfs {
                let (etag, sha, data) = (entry.etag(), sha.clone(), entry.data.clone());
                let location = format!("{base}/cdn/{etag}");
                st.cdn.insert(etag.clone(), data.clone());
                let r = Response::from_data(vec![])
                    .with_status_code(302)
                    .with_header(header("Location", &location))
                    .with_header(header("X-Repo-Commit", &sha))
                    .with_header(header("X-Linked-Etag", &format!("\"{etag}\"")))
                    .with_header(header("X-Linked-Size", &data.len().to_string()));
                return Data(r);
            }
            let etag = entry.etag();
            let total = entry.data.len();
            let mut data = entry.data.as_ref().clone();
            if st.faults.corrupt.contains(&file) && !data.is_empty() {
                let n = data.len();
                for i in (0..n).step_by((n / 16).max(1)) {
                    data[i] ^= 0x5a;
                }
            }
            let range = req.headers().iter().find(|h| h.field.equiv("Range")).map(|h| h.value.as_str().to_string());
            let (status, slice, content_range) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
                Some(spec) => {
                    let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
                    let a: usize = a.parse().unwrap_or(0);
                    let b: usize = if b.is_empty() { total.saturating_sub(1) } else { b.parse().unwrap_or(total.saturating_sub(1)).min(total.saturating_sub(1)) };
                    if a >= total && total > 0 {
                        return Data(error(416, "RangeNotSatisfiable", "range not satisfiable"));
                    }
                    (206, data[a.min(total)..(b + 1).min(total)].to_vec(), Some(format!("bytes {a}-{b}/{total}")))
                }
                None => (200, data, None),
            };
            let mut headers = vec![
                header("ETag", &format!("\"{etag}\"")),
                header("X-Repo-Commit", sha),
                header("Accept-Ranges", "bytes"),
                header("Content-Type", "application/octet-stream"),
            ];
            if entry.lfs {
                headers.push(header("X-Linked-Etag", &format!("\"{etag}\"")));
                headers.push(header("X-Linked-Size", &total.to_string()));
            }
            if let Some(cr) = content_range {
                headers.push(header("Content-Range", &cr));
            }
            let full_len = slice.len();
            if *method == Method::Head {
                let mut r = Response::from_data(vec![]).with_status_code(status);
                for h in headers {
                    r = r.with_header(h);
                }
                return Data(r);
            }
            let stall = st.faults.stall.contains(&file);
            if (st.faults.truncate.contains(&file) || stall) && full_len > 1 {
                let half = slice[..full_len / 2].to_vec();
                return Reply::Truncated { status, headers, data: half, full_len, stall };
            }
            let mut r = Response::from_data(slice).with_status_code(status);
            for h in headers {
                r = r.with_header(h);
            }
            return Data(r);
        }
    }
    Data(error(404, "NotFound", &format!("no route for {method} /{path}")))
}

fn urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
