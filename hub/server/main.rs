//! `mixbt-hub-server`: run the local Hub on 127.0.0.1 (for notebooks and manual tests).
//!
//! `mixbt-hub-server [--port N] [--token T] [--user U] [--seed DIR]` prints
//! `HF_ENDPOINT=http://127.0.0.1:PORT` and serves until killed. `--seed DIR` loads
//! `DIR/<org>/<name>/<files>` as model repos and `DIR/datasets/<org>/<name>/<files>` as data sets.

use mixbt_hub_server::{HubServer, ServerConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).cloned();
    let port = get("--port").unwrap_or_else(|| "0".into());
    let cfg = ServerConfig { token: get("--token"), user: get("--user").unwrap_or_else(|| "tester".into()), multipart_chunk: None };
    let server = match HubServer::start_on(&format!("127.0.0.1:{port}"), cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    if let Some(dir) = get("--seed") {
        match server.seed_from_dir(std::path::Path::new(&dir)) {
            Ok(n) => eprintln!("seeded {n} files from {dir}"),
            Err(e) => {
                eprintln!("error: {dir}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("HF_ENDPOINT={}", server.url());
    loop {
        std::thread::park();
    }
}
