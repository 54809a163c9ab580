//! A small HTTP(S) client of a running `healer run`'s API, for the CLI
//! commands that take `--server URL --token T`.

use anyhow::Context as _;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};

/// Where the server is and how to call it.
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// Base URL of a running `healer run` (`http://127.0.0.1:8080`, or the
    /// service's https address).
    #[arg(long, env = "HEALER_SERVER")]
    pub server: Option<String>,
    /// Admin bearer token.
    #[arg(long, env = "HEALER_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// [`call`] from synchronous code, on a runtime of its own.
pub fn call_blocking(
    server: &ServerArgs,
    method: Method,
    path: &str,
    body: Vec<u8>,
    content_type: &str,
) -> anyhow::Result<serde_json::Value> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(call(server, method, path, body, content_type))
}

/// Calls one route; answers the JSON body of a 2xx, else an error with the
/// server's `ApiError` message.
pub async fn call(
    server: &ServerArgs,
    method: Method,
    path: &str,
    body: Vec<u8>,
    content_type: &str,
) -> anyhow::Result<serde_json::Value> {
    let base = server
        .server
        .as_deref()
        .context("--server (or HEALER_SERVER) is required")?
        .trim_end_matches('/');
    let client = healer::http::client().map_err(anyhow::Error::msg)?;
    let url = format!("{base}{path}");
    let mut req = Request::builder()
        .method(method)
        .uri(&url)
        .header(hyper::header::CONTENT_TYPE, content_type);
    if let Some(t) = &server.token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {}", t.trim()));
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .with_context(|| format!("invalid server URL {url}"))?;
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("cannot read the answer of {url}"))?
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(
        |_| serde_json::json!({"message": String::from_utf8_lossy(&bytes).into_owned()}),
    );
    if !status.is_success() {
        let message = json["message"].as_str().unwrap_or("no message");
        let code = json["error"].as_str().unwrap_or("error");
        anyhow::bail!("{url} answered {}: {code}: {message}", code_of(status));
    }
    Ok(json)
}

fn code_of(s: StatusCode) -> String {
    s.as_u16().to_string()
}
