//! HTTP for the Hub client: one agent with connect, read (idle) and write timeouts, the token
//! header, and errors that say what happened (HTTP status, time-out, unreachable host).

use std::time::Duration;

use super::HubConfig;
use crate::{Error, Result};

/// The default of `HF_HUB_DOWNLOAD_TIMEOUT` (seconds), as the Python client.
pub const DEFAULT_TIMEOUT_S: f64 = 10.0;

/// `HF_HUB_DOWNLOAD_TIMEOUT` (seconds, positive), or the default.
pub fn timeout_from_env() -> Result<Duration> {
    match std::env::var("HF_HUB_DOWNLOAD_TIMEOUT") {
        Err(_) => Ok(Duration::from_secs_f64(DEFAULT_TIMEOUT_S)),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() && s < 1e6 => Ok(Duration::from_secs_f64(s)),
            _ => Err(Error::Config(format!("HF_HUB_DOWNLOAD_TIMEOUT={v}: expected a positive number of seconds"))),
        },
    }
}

/// An agent whose every connection, read and write gives up after `cfg.timeout` without
/// progress; `redirects`: how many redirects it follows (0: none, the caller looks at them).
pub fn agent(cfg: &HubConfig, redirects: u32) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(cfg.timeout)
        .timeout_read(cfg.timeout)
        .timeout_write(cfg.timeout)
        .redirects(redirects)
        .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
        .user_agent(concat!("mixbt/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The request with the token (when there is one).
pub fn with_token(req: ureq::Request, cfg: &HubConfig) -> ureq::Request {
    match &cfg.token {
        Some(t) => req.set("Authorization", &format!("Bearer {t}")),
        None => req,
    }
}

/// Whether an I/O error is a time-out.
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
}

/// A clear message for a failed call: `what` names the file or action. Never includes the token.
pub fn error(what: &str, cfg: &HubConfig, e: ureq::Error) -> Error {
    let secs = cfg.timeout.as_secs_f64();
    match e {
        ureq::Error::Status(code, resp) => {
            let detail = resp.header("X-Error-Message").map(String::from);
            let msg = match code {
                404 => format!("{what}: not found on {} (404): check the repo, the revision and the path", cfg.endpoint),
                401 | 403 => format!("{what}: unauthorized ({code}): the repo is private or gated, or the token lacks access; set HF_TOKEN or pass --token"),
                _ => format!("{what}: the Hub at {} answered HTTP {code}{}", cfg.endpoint, detail.map(|d| format!(" ({d})")).unwrap_or_default()),
            };
            Error::Hub(msg)
        }
        ureq::Error::Transport(t) => {
            let timed_out = std::error::Error::source(&t)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .map(is_timeout)
                .unwrap_or(false)
                || t.to_string().contains("timed out");
            match t.kind() {
                _ if timed_out => Error::Hub(format!(
                    "{what}: no answer from {} within {secs} s (set HF_HUB_DOWNLOAD_TIMEOUT to wait longer, or HF_HUB_OFFLINE=1 to use the cache only)",
                    cfg.endpoint
                )),
                ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed => Error::Hub(format!(
                    "{what}: cannot reach {} ({t}); set HF_HUB_OFFLINE=1 to use the cache only",
                    cfg.endpoint
                )),
                _ => Error::Hub(format!("{what}: {t}")),
            }
        }
    }
}
