//! Finding the node to talk to: its API base URL and bearer token, from the
//! data directory (`api.addr`, `api.token`), flags or environment.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};
use dawn_core::{
    DataDir,
    config::{ConfigLoader, default_data_root, expand_home},
};
use dawn_security::{ApiToken, SecretFileError, TokenError};
use reqwest::Url;

use crate::cli::GlobalArgs;

/// Environment variable holding the API token itself.
pub const TOKEN_ENV: &str = "DAWN_API_TOKEN";

/// Where the API address came from.
#[derive(Debug, Clone)]
pub enum AddressSource {
    /// `--api` (or `$DAWN_API_URL`).
    Flag,
    /// `<data_root>/api.addr`.
    AddrFile(PathBuf),
}

/// Where the token came from (never the token itself).
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A token file (`--token-file` or `<data_root>/api.token`).
    File(PathBuf),
    /// `$DAWN_API_TOKEN`.
    Env,
    /// No token was found; requests go without `Authorization`.
    None {
        /// The token file that was looked for.
        looked_for: PathBuf,
    },
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(path) => write!(f, "token file {}", path.display()),
            TokenSource::Env => write!(f, "${TOKEN_ENV}"),
            TokenSource::None { looked_for } => {
                write!(f, "no token (no {} file)", looked_for.display())
            }
        }
    }
}

/// Everything needed to reach one node's API.
pub struct Endpoint {
    /// Base URL, e.g. `http://127.0.0.1:9090/`.
    pub base: Url,
    /// Where the URL came from.
    pub address_source: AddressSource,
    /// The bearer token, if any.
    pub token: Option<ApiToken>,
    /// Where the token came from.
    pub token_source: TokenSource,
    /// The data directory consulted.
    pub data_dir: DataDir,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("base", &self.base.as_str())
            .field("address_source", &self.address_source)
            .field("token_source", &self.token_source)
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

impl Endpoint {
    /// Resolves the endpoint from the global options and the environment.
    /// Blocking (reads small files); call it before entering the runtime.
    pub fn resolve(args: &GlobalArgs) -> anyhow::Result<Endpoint> {
        let data_dir = DataDir::new(data_root(args)?);
        let (base, address_source) = match &args.api {
            Some(url) => (parse_api_url(url)?, AddressSource::Flag),
            None => (
                url_from_data_dir(&data_dir)?,
                AddressSource::AddrFile(data_dir.api_addr_file()),
            ),
        };
        let (token, token_source) = load_token(args, &data_dir)?;
        Ok(Endpoint {
            base,
            address_source,
            token,
            token_source,
            data_dir,
        })
    }
}

/// `--data-root` / `$DAWN_NODE__DATA_ROOT` (clap merges both), else
/// `node.data_root` from `--config`, else the default.
pub(crate) fn data_root(args: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(root) = &args.data_root {
        if root.as_os_str().is_empty() {
            bail!("--data-root (or $DAWN_NODE__DATA_ROOT) must not be empty");
        }
        return Ok(expand_home(root.clone()));
    }
    if let Some(file) = &args.config {
        let config = ConfigLoader::new()
            .process_env()
            .file(file)
            .load()
            .with_context(|| format!("cannot use config file {}", file.display()))?;
        return Ok(config.node.data_root);
    }
    Ok(default_data_root())
}

/// Turns `--api` into a base URL: `http://host:port`, or `host:port`.
pub fn parse_api_url(raw: &str) -> anyhow::Result<Url> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let mut url = Url::parse(&with_scheme)
        .map_err(|e| anyhow!("--api {raw:?} is not a URL ({e}); use e.g. http://127.0.0.1:9090"))?;
    match url.scheme() {
        "http" => {}
        "https" => bail!(
            "--api {raw:?}: dawn-cli speaks plain HTTP to the node API; use http:// \
             (for a remote node, tunnel its loopback API, e.g. with ssh -L)"
        ),
        other => bail!("--api {raw:?}: unsupported scheme {other:?}; use http://HOST:PORT"),
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("--api {raw:?} has no host; use e.g. http://127.0.0.1:9090");
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// The URL of a node recorded in `api.addr`, or a one-line explanation of
/// why there is none.
fn url_from_data_dir(data_dir: &DataDir) -> anyhow::Result<Url> {
    let root = data_dir.root().display();
    let addr_file = data_dir.api_addr_file();
    match data_dir.read_api_addr() {
        Some(addr) => {
            let url = format!("http://{}/", connectable(addr));
            Url::parse(&url)
                .map_err(|e| anyhow!("{} holds an unusable address: {e}", addr_file.display()))
        }
        None if addr_file.exists() => bail!(
            "{} does not hold a socket address; is a dawn-node of another version running on {root}?",
            addr_file.display()
        ),
        None if !data_dir.root().exists() => bail!(
            "no node is running on {root} (the directory does not exist); start one with \
             dawn-node --data-root {root}, or pass --data-root or --api"
        ),
        None if data_dir.is_locked() => bail!(
            "a dawn-node holds {root} but has not published its API address (no api.addr file): \
             it is still starting, or its HTTP API is disabled"
        ),
        None => bail!(
            "no node is running on {root} (no api.addr file); start one with dawn-node --data-root {root}"
        ),
    }
}

/// An API bound to a wildcard address is reached through loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// `--token-file`, else `$DAWN_API_TOKEN`, else `<data_root>/api.token`
/// (whose absence is not an error: the node may not require a token).
fn load_token(
    args: &GlobalArgs,
    data_dir: &DataDir,
) -> anyhow::Result<(Option<ApiToken>, TokenSource)> {
    if let Some(path) = &args.token_file {
        let token = load_token_file(path)?;
        return Ok((Some(token), TokenSource::File(path.clone())));
    }
    if let Some(value) = std::env::var_os(TOKEN_ENV) {
        let value = value
            .into_string()
            .map_err(|_| anyhow!("${TOKEN_ENV} is not valid UTF-8"))?;
        if !value.trim().is_empty() {
            let token = ApiToken::parse(&value).map_err(|e| anyhow!("${TOKEN_ENV}: {e}"))?;
            return Ok((Some(token), TokenSource::Env));
        }
    }
    let path = data_dir.api_token();
    match ApiToken::load(&path) {
        Ok(token) => Ok((Some(token), TokenSource::File(path))),
        Err(TokenError::File(SecretFileError::NotFound { .. })) => {
            Ok((None, TokenSource::None { looked_for: path }))
        }
        Err(e) => Err(token_error(e, &path)),
    }
}

fn load_token_file(path: &Path) -> anyhow::Result<ApiToken> {
    ApiToken::load(path).map_err(|e| token_error(e, path))
}

fn token_error(error: TokenError, path: &Path) -> anyhow::Error {
    match error {
        TokenError::File(SecretFileError::NotFound { .. }) => {
            anyhow!(
                "cannot read the API token: {} does not exist",
                path.display()
            )
        }
        other => anyhow!("cannot use the API token: {other}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn api_urls_are_normalised() {
        assert_eq!(
            parse_api_url("127.0.0.1:9090").unwrap().as_str(),
            "http://127.0.0.1:9090/"
        );
        assert_eq!(
            parse_api_url("http://localhost:9090/node")
                .unwrap()
                .as_str(),
            "http://localhost:9090/node/"
        );
        assert!(
            parse_api_url("https://x:1")
                .unwrap_err()
                .to_string()
                .contains("plain HTTP")
        );
        assert!(parse_api_url("ftp://x").is_err());
        assert!(parse_api_url("http://").is_err());
    }

    #[test]
    fn wildcard_addresses_become_loopback() {
        assert_eq!(
            connectable("0.0.0.0:5".parse().unwrap()),
            "127.0.0.1:5".parse().unwrap()
        );
        assert_eq!(
            connectable("[::]:5".parse().unwrap()),
            "[::1]:5".parse().unwrap()
        );
        assert_eq!(
            connectable("10.1.2.3:5".parse().unwrap()),
            "10.1.2.3:5".parse().unwrap()
        );
    }

    #[test]
    fn missing_node_is_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let err = url_from_data_dir(&data).unwrap_err().to_string();
        assert!(err.contains("no node is running"), "{err}");
        assert!(err.contains("dawn-node --data-root"), "{err}");
        assert!(!err.contains('\n'), "{err}");

        let missing = DataDir::new(dir.path().join("nope"));
        let err = url_from_data_dir(&missing).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
