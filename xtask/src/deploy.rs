//! `cargo xtask deploy`: checks the deployment files without a Docker engine.
//!
//! 1. Installs the pinned linters (see [`crate::tools`]) and builds
//!    `dawn-node` and `dawn-cli` (debug).
//! 2. Lints `deploy/Dockerfile` with hadolint (`deploy/hadolint.yaml`) and
//!    the workflows in `.github/workflows` with actionlint (and shellcheck).
//! 3. Checks the Dockerfile against the node: exec-form ENTRYPOINT (so
//!    SIGTERM reaches the node) and HEALTHCHECK (`dawn-cli health`), a
//!    numeric non-root USER, the data directory is the VOLUME, EXPOSE covers
//!    the effective P2P and API ports of the image's configuration (from
//!    `dawn-node --print-config` with the image's ENV), the Rust version is
//!    at least the MSRV.
//! 4. Validates `deploy/compose.yaml` with `docker compose config` and
//!    checks each node service against the Dockerfile and its effective
//!    configuration (`--check-config` with the service's environment): build
//!    file, data volume, published ports, health check, restart policy, stop
//!    grace period longer than `node.shutdown_grace`; the Prometheus and
//!    Grafana bind mounts exist and the scrape config names every node.
//! 5. Checks `deploy/dawn.toml` with `dawn-node --check-config`, and the
//!    systemd unit with `systemd-analyze verify` where that exists (on a copy
//!    whose binaries point at the local build) plus its command lines.
//! 6. Runs the image's ENTRYPOINT + CMD with its ENV against the local
//!    binaries, waits for its HEALTHCHECK command to pass, sends the
//!    STOPSIGNAL and expects exit status 0, then expects the health check to
//!    fail against the stopped node. Paths under the image's volume and
//!    workdir are moved into a temporary directory and the node listens on
//!    127.0.0.1 port 0 (P2P and API), so the run never collides with a real
//!    node nor listens beyond loopback; if `tini` is not installed
//!    the entrypoint runs without its `tini --` prefix (with a notice).

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    command,
    dockerfile::Dockerfile,
    json::Json,
    nodes::tail,
    tools::{self, PyTools},
};

/// Where the deployment files are, relative to the workspace root.
pub const DOCKERFILE: &str = "deploy/Dockerfile";
/// The compose file.
pub const COMPOSE: &str = "deploy/compose.yaml";
/// The systemd unit.
pub const SYSTEMD_UNIT: &str = "deploy/systemd/dawn-node.service";
/// The example configuration shipped in archives and used by the unit.
pub const EXAMPLE_CONFIG: &str = "deploy/dawn.toml";
/// How long the node started from the image's entrypoint may take to pass
/// its health check.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `cargo xtask deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// Do not run `cargo build`: use the dawn-node and dawn-cli already built.
    #[arg(long)]
    pub no_build: bool,
}

/// What the checks share.
struct Ctx {
    root: PathBuf,
    tools: PyTools,
    bin_dir: PathBuf,
    scratch: PathBuf,
}

impl Ctx {
    fn node_bin(&self) -> PathBuf {
        self.bin_dir.join("dawn-node")
    }
}

/// Runs `cargo xtask deploy` for the workspace at `root`.
pub fn run(args: &DeployArgs, root: &Path) -> Result<()> {
    let tools = tools::ensure(root)?;
    if !args.no_build {
        command::run(command::cargo(root).args([
            "build",
            "--quiet",
            "-p",
            "dawn-node",
            "-p",
            "dawn-cli",
        ]))?;
    }
    let target = tools::target_dir(root);
    let scratch = target.join("deploy-check");
    if scratch.exists() {
        fs::remove_dir_all(&scratch)
            .with_context(|| format!("cannot clear {}", scratch.display()))?;
    }
    fs::create_dir_all(&scratch)?;
    let ctx = Ctx {
        root: root.to_path_buf(),
        tools,
        bin_dir: target.join("debug"),
        scratch,
    };
    for bin in ["dawn-node", "dawn-cli"] {
        ensure!(
            ctx.bin_dir.join(bin).is_file(),
            "{} is missing: build it (or drop --no-build)",
            ctx.bin_dir.join(bin).display()
        );
    }

    section("hadolint", DOCKERFILE);
    command::run(ctx.tools.command("hadolint").current_dir(root).args([
        "--no-color",
        "--config",
        "deploy/hadolint.yaml",
        DOCKERFILE,
    ]))
    .context("hadolint found problems in the Dockerfile")?;

    section("actionlint", ".github/workflows");
    command::run(
        ctx.tools
            .command("actionlint")
            .current_dir(root)
            .arg("-no-color"),
    )
    .context("actionlint found problems in the workflows")?;
    check_workflows(root)?;

    section("Dockerfile", "against the node's configuration");
    let dockerfile = Dockerfile::parse(&read(root, DOCKERFILE)?)?;
    let image = check_dockerfile(&ctx, &dockerfile)?;

    section("compose", COMPOSE);
    check_compose(&ctx, &dockerfile, &image)?;

    section("example config and systemd", SYSTEMD_UNIT);
    check_example_config(&ctx)?;
    check_systemd(&ctx)?;

    section(
        "image commands",
        "ENTRYPOINT, CMD and HEALTHCHECK against local binaries",
    );
    run_image_commands(&ctx, &dockerfile)?;

    println!("\ndeploy: all checks passed");
    Ok(())
}

fn section(name: &str, what: &str) {
    println!("\n--> deploy: {name}: {what}");
}

fn read(root: &Path, relative: &str) -> Result<String> {
    fs::read_to_string(root.join(relative)).with_context(|| format!("cannot read {relative}"))
}

/// The workflows test on the MSRV declared in Cargo.toml.
fn check_workflows(root: &Path) -> Result<()> {
    let msrv = msrv(root)?;
    let ci = read(root, ".github/workflows/ci.yml")?;
    ensure!(
        ci.contains(&format!("\"{msrv}\"")) || ci.contains(&format!("toolchain: {msrv}")),
        ".github/workflows/ci.yml does not test the MSRV {msrv} (rust-version in Cargo.toml)"
    );
    let release = read(root, ".github/workflows/release.yml")?;
    ensure!(
        release.contains("cargo xtask dist") && release.contains(DOCKERFILE),
        ".github/workflows/release.yml must build archives with `cargo xtask dist` and the image from {DOCKERFILE}"
    );
    println!("workflows test MSRV {msrv}; release uses cargo xtask dist and {DOCKERFILE}");
    Ok(())
}

/// `rust-version` of the workspace.
fn msrv(root: &Path) -> Result<String> {
    let manifest = read(root, "Cargo.toml")?;
    manifest
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "rust-version").then(|| value.trim().trim_matches('"').to_owned())
        })
        .context("Cargo.toml has no rust-version")
}

/// `1.90` -> (1, 90, 0).
fn version_triple(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// The container's effective configuration, as the checks need it.
#[derive(Debug, Clone)]
struct Effective {
    data_root: String,
    /// `(port, "tcp" | "udp")` of the P2P listen addresses.
    p2p_ports: Vec<(u16, &'static str)>,
    api_port: u16,
    api_enabled: bool,
    shutdown_grace: Duration,
    /// `observability.metrics.path`, when metrics are served without a token.
    open_metrics_path: Option<String>,
}

/// A `dawn-node` command with a clean environment (no inherited `DAWN_*`
/// or log settings, HOME in the scratch directory) plus `env`.
fn node_command(ctx: &Ctx, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(ctx.node_bin());
    clean_env(&mut cmd);
    cmd.env("HOME", &ctx.scratch);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null());
    cmd
}

/// Removes the variables a container would not inherit from this shell.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("DAWN_") || ["LOG_LEVEL", "LOG_FORMAT", "RUST_LOG"].contains(&&*key) {
            cmd.env_remove(&*key);
        }
    }
}

/// Validates the configuration given by `env` (and `args`) and returns the
/// effective values.
fn effective_config(
    ctx: &Ctx,
    env: &[(String, String)],
    args: &[&str],
    what: &str,
) -> Result<Effective> {
    let output = node_command(ctx, env)
        .args(args)
        .arg("--check-config")
        .output()
        .context("cannot run dawn-node --check-config")?;
    if !output.status.success() {
        bail!(
            "the configuration of {what} is invalid:\n{}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let output = node_command(ctx, env)
        .args(args)
        .arg("--print-config")
        .output()
        .context("cannot run dawn-node --print-config")?;
    ensure!(
        output.status.success(),
        "dawn-node --print-config failed for {what}"
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let string = |section: &str, key: &str| -> Result<String> {
        toml_value(&text, section, key)
            .and_then(|v| v.as_str().map(str::to_owned))
            .with_context(|| format!("--print-config has no string {section}.{key}"))
    };
    let listen =
        toml_value(&text, "node", "listen").context("--print-config has no node.listen")?;
    let mut p2p_ports = Vec::new();
    for addr in listen.items() {
        let addr = addr.as_str().context("node.listen holds a non-string")?;
        p2p_ports.push(multiaddr_port(addr).with_context(|| format!("no port in {addr}"))?);
    }
    let api_listen = string("api", "listen")?;
    let api_port = api_listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("no port in api.listen {api_listen}"))?;
    let grace = string("node", "shutdown_grace")?;
    Ok(Effective {
        data_root: string("node", "data_root")?,
        p2p_ports,
        api_port,
        api_enabled: toml_value(&text, "api", "enabled") != Some(Json::Bool(false)),
        open_metrics_path: (toml_value(&text, "observability.metrics", "enabled")
            != Some(Json::Bool(false))
            && toml_value(&text, "observability.metrics", "require_token")
                != Some(Json::Bool(true)))
        .then(|| string("observability.metrics", "path").unwrap_or_else(|_| "/metrics".to_owned())),
        shutdown_grace: parse_duration(&grace)
            .with_context(|| format!("cannot read node.shutdown_grace {grace:?}"))?,
    })
}

/// `/ip4/0.0.0.0/tcp/8000` -> (8000, "tcp"); `/udp/8000/quic-v1` -> udp.
fn multiaddr_port(addr: &str) -> Option<(u16, &'static str)> {
    let parts: Vec<&str> = addr.split('/').collect();
    parts.windows(2).find_map(|w| match w[0] {
        "tcp" => w[1].parse().ok().map(|p| (p, "tcp")),
        "udp" => w[1].parse().ok().map(|p| (p, "udp")),
        _ => None,
    })
}

/// `30s`, `1m`, `500ms`, `1m30s` (compose) or a number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let mut total = 0.0;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&next) = chars.peek() {
            if next.is_ascii_alphabetic() {
                unit.push(next);
                chars.next();
            } else {
                break;
            }
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        total += value
            * match unit.as_str() {
                "ms" => 0.001,
                "s" => 1.0,
                "m" | "min" => 60.0,
                "h" => 3600.0,
                "d" => 86_400.0,
                _ => return None,
            };
    }
    if !number.is_empty() {
        return None;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The value of `key` in `[section]` of TOML as `toml::to_string_pretty`
/// writes it (strings, booleans, numbers and arrays of those), as JSON.
fn toml_value(text: &str, section: &str, key: &str) -> Option<Json> {
    let header = format!("[{section}]");
    let mut lines = text.lines().skip_while(|l| l.trim() != header).skip(1);
    let mut value = String::new();
    for line in lines.by_ref() {
        let line = line.trim();
        if line.starts_with('[')
            && !line.starts_with("[ ")
            && line.ends_with(']')
            && !line.contains('=')
        {
            return None;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            value.push_str(v.trim());
            break;
        }
    }
    if value.is_empty() {
        return None;
    }
    let depth = |s: &str| s.matches('[').count() as i64 - s.matches(']').count() as i64;
    while depth(&value) > 0 {
        let next = lines.next()?;
        value.push_str(next.trim());
    }
    // TOML's pretty arrays end items with a comma; JSON does not allow one
    // before `]`.
    let value = value.replace(",]", "]");
    Json::parse(&value).ok()
}

/// What the Dockerfile gives the node.
struct Image {
    env: Vec<(String, String)>,
    effective: Effective,
    data_root: String,
}

fn check_dockerfile(ctx: &Ctx, file: &Dockerfile) -> Result<Image> {
    // Build toolchain at least the MSRV.
    let msrv = msrv(&ctx.root)?;
    let rust = file
        .arg("RUST_VERSION")
        .context("the Dockerfile has no ARG RUST_VERSION=<x.y> for its build stage")?;
    ensure!(
        version_triple(rust) >= version_triple(&msrv),
        "the Dockerfile builds with Rust {rust}, older than the MSRV {msrv}"
    );
    ensure!(
        file.from
            .first()
            .is_some_and(|f| f.starts_with(&format!("rust:{rust}"))),
        "the build stage should be FROM rust:${{RUST_VERSION}}-..., found {:?}",
        file.from.first()
    );

    // Signals reach the node: exec form, dawn-node under an init that
    // forwards them (or dawn-node itself as PID 1).
    let entry = &file.entrypoint;
    let node_at = entry
        .iter()
        .position(|w| w == "dawn-node" || w.ends_with("/dawn-node"))
        .context("ENTRYPOINT does not run dawn-node")?;
    if node_at > 0 {
        ensure!(
            entry[0].ends_with("tini") && entry[node_at - 1] == "--",
            "ENTRYPOINT runs dawn-node under {:?}; use tini (`tini -- dawn-node`) so signals are forwarded",
            &entry[..node_at]
        );
    }
    let signal = file.stop_signal.as_deref().unwrap_or("SIGTERM");
    ensure!(
        signal == "SIGTERM" || signal == "SIGINT",
        "STOPSIGNAL {signal}: dawn-node drains on SIGTERM or SIGINT"
    );

    // Health check: dawn-cli health, with a timeout.
    let health = file
        .healthcheck
        .as_ref()
        .context("the Dockerfile has no HEALTHCHECK")?;
    ensure!(
        health
            .command
            .first()
            .is_some_and(|c| c == "dawn-cli" || c.ends_with("/dawn-cli"))
            && health.command.iter().any(|c| c == "health"),
        "HEALTHCHECK must be CMD [\"dawn-cli\", \"health\"], found {:?}",
        health.command
    );
    ensure!(
        health.option("timeout").is_some(),
        "HEALTHCHECK needs a --timeout"
    );

    // Non-root, numeric user (resolvable without the image's /etc/passwd).
    let user = file
        .user
        .as_deref()
        .context("the Dockerfile has no USER: the node would run as root")?;
    let uid = user.split(':').next().unwrap_or_default();
    ensure!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "USER {user}: use a numeric non-root uid"
    );

    // The configuration the image gives the node.
    let env: Vec<(String, String)> = file.env.clone();
    for (key, _) in &env {
        ensure!(
            !key.starts_with("DAWN_") || key.contains("__"),
            "ENV {key}: config variables are DAWN_<SECTION>__<KEY>"
        );
    }
    let effective = effective_config(ctx, &env, &[], "the image (Dockerfile ENV)")?;
    let data_root = effective.data_root.clone();
    ensure!(
        file.volumes.contains(&data_root),
        "the data directory {data_root} (node.data_root) is not a VOLUME ({:?})",
        file.volumes
    );
    // `dawn-cli health` finds the node's api.addr and api.token through
    // $DAWN_NODE__DATA_ROOT (it reads no config file by default).
    ensure!(
        file.env("DAWN_NODE__DATA_ROOT") == Some(data_root.as_str()),
        "ENV DAWN_NODE__DATA_ROOT must name the data directory {data_root}, so that the \
         health check's dawn-cli finds the node"
    );
    ensure!(file.workdir.is_some(), "the Dockerfile needs a WORKDIR");
    let mut wanted: Vec<String> = effective
        .p2p_ports
        .iter()
        .map(|(port, proto)| format!("{port}/{proto}"))
        .collect();
    if effective.api_enabled {
        wanted.push(format!("{}/tcp", effective.api_port));
    }
    for port in &wanted {
        ensure!(
            file.expose.contains(port),
            "the node listens on {port} but the Dockerfile does not EXPOSE it ({:?})",
            file.expose
        );
    }
    for port in &file.expose {
        ensure!(
            wanted.contains(port),
            "EXPOSE {port}: the node does not listen there (it listens on {wanted:?})"
        );
    }
    println!(
        "Dockerfile: rust {rust} >= MSRV {msrv}; entrypoint {entry:?}; healthcheck {:?}; user {user}; \
         volume {data_root}; exposes {wanted:?}",
        health.command
    );
    Ok(Image {
        env,
        effective,
        data_root,
    })
}

/// Members of a JSON object.
fn members(value: &Json) -> &[(String, Json)] {
    match value {
        Json::Object(members) => members,
        _ => &[],
    }
}

fn number(value: Option<&Json>) -> Option<f64> {
    match value {
        Some(Json::Number(n)) => Some(*n),
        Some(Json::String(s)) => s.parse().ok(),
        _ => None,
    }
}

fn strings(value: Option<&Json>) -> Vec<String> {
    value
        .map(|v| {
            v.items()
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn check_compose(ctx: &Ctx, dockerfile: &Dockerfile, image: &Image) -> Result<()> {
    let output = ctx
        .tools
        .command("docker-compose")
        .current_dir(&ctx.root)
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROJECT_NAME")
        .args(["-f", COMPOSE, "config", "--format", "json"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run docker-compose config")?;
    if !output.status.success() {
        bail!(
            "docker compose config rejects {COMPOSE}:\n{}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let config = Json::parse(&String::from_utf8_lossy(&output.stdout))
        .context("docker compose config printed invalid JSON")?;
    println!("{COMPOSE}: valid (docker compose config)");
    let services = members(config.get("services").context("no services")?);
    let root = fs::canonicalize(&ctx.root)?;

    let mut nodes = Vec::new();
    for (name, service) in services {
        ensure!(
            service
                .get("restart")
                .and_then(Json::as_str)
                .is_some_and(|r| r != "no"),
            "service {name} has no restart policy"
        );
        ensure!(
            service.get("healthcheck").is_some(),
            "service {name} has no health check"
        );
        for volume in service.get("volumes").map(Json::items).unwrap_or_default() {
            if volume.get("type").and_then(Json::as_str) == Some("bind") {
                let source = volume
                    .get("source")
                    .and_then(Json::as_str)
                    .unwrap_or_default();
                ensure!(
                    Path::new(source).exists(),
                    "service {name} mounts {source}, which does not exist"
                );
            }
        }
        let Some(build) = service.get("build") else {
            continue;
        };
        // A node service: built from the Dockerfile with the repo as context.
        let context = build
            .get("context")
            .and_then(Json::as_str)
            .unwrap_or_default();
        let dockerfile_path = build
            .get("dockerfile")
            .and_then(Json::as_str)
            .unwrap_or_default();
        ensure!(
            fs::canonicalize(context).ok().as_deref() == Some(root.as_path()),
            "service {name} builds with context {context}, not the repository root"
        );
        ensure!(
            dockerfile_path == DOCKERFILE,
            "service {name} builds {dockerfile_path}, not {DOCKERFILE}"
        );
        nodes.push((name.clone(), service));
    }
    ensure!(
        nodes.len() >= 3,
        "{COMPOSE} should run at least three nodes built from {DOCKERFILE}, found {}",
        nodes.len()
    );

    let mut volumes_seen = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    for (name, service) in &nodes {
        // Effective configuration: image ENV, then the service's environment.
        let mut env = image.env.clone();
        for (key, value) in members(service.get("environment").unwrap_or(&Json::Null)) {
            let value = match value {
                Json::String(s) => s.clone(),
                Json::Null => String::new(),
                other => format!("{other:?}"),
            };
            env.push((key.clone(), value));
        }
        let effective = effective_config(ctx, &env, &[], &format!("compose service {name}"))?;

        // The health check is the image's.
        let health = strings(service.get("healthcheck").and_then(|h| h.get("test")));
        // Compose writes an exec-form test as ["CMD", ...].
        let image_health: &Vec<String> = &std::iter::once("CMD".to_owned())
            .chain(
                dockerfile
                    .healthcheck
                    .iter()
                    .flat_map(|h| h.command.iter().cloned()),
            )
            .collect();
        ensure!(
            &health == image_health,
            "service {name}: health check {health:?} differs from the Dockerfile's {image_health:?}"
        );

        // Data on a named volume of its own, at the data directory.
        let data_volume = service
            .get("volumes")
            .map(Json::items)
            .unwrap_or_default()
            .iter()
            .find(|v| v.get("target").and_then(Json::as_str) == Some(effective.data_root.as_str()));
        let data_volume = data_volume.with_context(|| {
            format!(
                "service {name} mounts nothing at its data directory {}",
                effective.data_root
            )
        })?;
        ensure!(
            effective.data_root == image.data_root,
            "service {name} moves node.data_root to {}, away from the image's VOLUME {}",
            effective.data_root,
            image.data_root
        );
        let source = data_volume
            .get("source")
            .and_then(Json::as_str)
            .unwrap_or_default();
        ensure!(
            data_volume.get("type").and_then(Json::as_str) == Some("volume"),
            "service {name}: the data directory should be a named volume"
        );
        ensure!(
            volumes_seen.insert(source.to_owned()),
            "volume {source} is shared by two nodes"
        );

        // Published ports go to ports the node listens on; the API only on
        // the host's loopback.
        let mut listening: Vec<(u16, String)> = effective
            .p2p_ports
            .iter()
            .map(|(p, proto)| (*p, (*proto).to_owned()))
            .collect();
        if effective.api_enabled {
            listening.push((effective.api_port, "tcp".to_owned()));
        }
        for port in service.get("ports").map(Json::items).unwrap_or_default() {
            let target = number(port.get("target")).unwrap_or(0.0) as u16;
            let proto = port
                .get("protocol")
                .and_then(Json::as_str)
                .unwrap_or("tcp")
                .to_owned();
            let published = port
                .get("published")
                .and_then(Json::as_str)
                .unwrap_or_default();
            ensure!(
                listening.contains(&(target, proto.clone())),
                "service {name} publishes {published}->{target}/{proto}, where the node does not listen ({listening:?})"
            );
            ensure!(
                dockerfile.expose.contains(&format!("{target}/{proto}")),
                "service {name} publishes {target}/{proto}, which the Dockerfile does not EXPOSE"
            );
            if effective.api_enabled && target == effective.api_port && proto == "tcp" {
                let host_ip = port
                    .get("host_ip")
                    .and_then(Json::as_str)
                    .unwrap_or("0.0.0.0");
                ensure!(
                    host_ip == "127.0.0.1" || host_ip == "::1",
                    "service {name} publishes the API on {host_ip}; bind it to 127.0.0.1"
                );
            }
            ensure!(
                host_ports.insert((published.to_owned(), proto.clone())),
                "host port {published}/{proto} is published twice"
            );
        }

        // Prometheus scrapes every node alike.
        ensure!(
            effective.api_port == image.effective.api_port
                && effective.open_metrics_path == image.effective.open_metrics_path,
            "service {name} changes the API port or the metrics endpoint; the scrape config \
             expects port {} and {:?}",
            image.effective.api_port,
            image.effective.open_metrics_path
        );

        // Docker waits stop_grace_period after SIGTERM before SIGKILL.
        let grace = service
            .get("stop_grace_period")
            .and_then(Json::as_str)
            .and_then(parse_duration)
            .unwrap_or(Duration::from_secs(10));
        ensure!(
            grace > effective.shutdown_grace,
            "service {name}: stop_grace_period {grace:?} must exceed node.shutdown_grace {:?}",
            effective.shutdown_grace
        );
        println!(
            "service {name}: config valid; data volume {source} at {}; ports {:?}; grace {grace:?}",
            effective.data_root,
            service
                .get("ports")
                .map(Json::items)
                .unwrap_or_default()
                .len()
        );
    }

    check_monitoring(ctx, services, &nodes, image)?;
    Ok(())
}

/// Prometheus scrapes every node's API port with the rules from
/// deploy/prometheus; Grafana gets provisioning from deploy/grafana.
fn check_monitoring(
    ctx: &Ctx,
    services: &[(String, Json)],
    nodes: &[(String, &Json)],
    image: &Image,
) -> Result<()> {
    let find = |name: &str| services.iter().find(|(n, _)| n == name).map(|(_, s)| s);
    let prometheus = find("prometheus").context("no prometheus service")?;
    let grafana = find("grafana").context("no grafana service")?;
    let bind_sources = |service: &Json| -> Vec<(String, String)> {
        service
            .get("volumes")
            .map(Json::items)
            .unwrap_or_default()
            .iter()
            .filter(|v| v.get("type").and_then(Json::as_str) == Some("bind"))
            .map(|v| {
                (
                    v.get("source")
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    v.get("target")
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    };
    let deploy = fs::canonicalize(ctx.root.join("deploy"))?;
    let prometheus_dir = deploy.join("prometheus");
    let prom_mount = bind_sources(prometheus)
        .into_iter()
        .find(|(s, _)| Path::new(s) == prometheus_dir)
        .context("prometheus does not mount deploy/prometheus")?;
    let config_arg = strings(prometheus.get("command"))
        .into_iter()
        .find_map(|a| a.strip_prefix("--config.file=").map(str::to_owned))
        .context("prometheus has no --config.file")?;
    let relative = config_arg
        .strip_prefix(&format!("{}/", prom_mount.1))
        .with_context(|| format!("--config.file {config_arg} is not under {}", prom_mount.1))?;
    let scrape_path = prometheus_dir.join(relative);
    let scrape = fs::read_to_string(&scrape_path)
        .with_context(|| format!("cannot read the scrape config {}", scrape_path.display()))?;
    // Prometheus sends no credentials: metrics must be served without the
    // API token, at the path the scrape config asks for.
    let metrics_path = image.effective.open_metrics_path.clone().context(
        "the image serves no metrics without a token (observability.metrics), so Prometheus cannot scrape it",
    )?;
    if metrics_path != "/metrics" {
        ensure!(
            scrape.contains(&metrics_path),
            "the nodes serve metrics at {metrics_path}, which the scrape config does not name"
        );
    }
    for (name, _) in nodes {
        let target = format!("{name}:{}", image.effective.api_port);
        ensure!(
            scrape.contains(&target),
            "{} does not scrape {target}",
            scrape_path.display()
        );
    }
    // Rule files named by the scrape config exist (relative to it).
    let mut rule_files = 0;
    let mut in_rules = false;
    for line in scrape.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("rule_files:") {
            in_rules = true;
            continue;
        }
        if in_rules {
            if let Some(item) = trimmed.strip_prefix("- ") {
                let item = item.trim().trim_matches(['"', '\'']);
                let item = item
                    .strip_prefix(&format!("{}/", prom_mount.1))
                    .unwrap_or(item);
                let matched = glob_exists(&prometheus_dir, item);
                ensure!(
                    matched,
                    "rule file {item} (in {}) does not exist",
                    scrape_path.display()
                );
                rule_files += 1;
            } else if !trimmed.is_empty() && !trimmed.starts_with('#') {
                in_rules = false;
            }
        }
    }
    ensure!(
        rule_files > 0,
        "{} loads no rule_files",
        scrape_path.display()
    );

    let grafana_dir = deploy.join("grafana");
    let grafana_mounts = bind_sources(grafana);
    ensure!(
        grafana_mounts
            .iter()
            .any(|(s, t)| Path::new(s).starts_with(&grafana_dir)
                && t.starts_with("/etc/grafana/provisioning")),
        "grafana does not mount provisioning from deploy/grafana"
    );
    // Provisioned data sources point at compose services, and dashboard
    // providers read directories that are mounted.
    let mut provisioned = 0;
    for kind in ["datasources", "dashboards"] {
        let dir = grafana_dir.join("provisioning").join(kind);
        let Ok(files) = fs::read_dir(&dir) else {
            continue;
        };
        for file in files.flatten() {
            let text = fs::read_to_string(file.path()).unwrap_or_default();
            for line in text.lines().map(str::trim) {
                if let Some(url) = line.strip_prefix("url:") {
                    let url = url.trim().trim_matches(['"', '\'']);
                    let host = url
                        .split("://")
                        .nth(1)
                        .and_then(|rest| rest.split([':', '/']).next())
                        .unwrap_or_default();
                    ensure!(
                        services.iter().any(|(n, _)| n == host),
                        "{}: data source {url} names no compose service",
                        file.path().display()
                    );
                    provisioned += 1;
                }
                if let Some(path) = line.strip_prefix("path:") {
                    let path = path.trim().trim_matches(['"', '\'']);
                    ensure!(
                        grafana_mounts.iter().any(|(_, t)| t == path),
                        "{}: dashboards are read from {path}, which grafana does not mount",
                        file.path().display()
                    );
                    provisioned += 1;
                }
            }
        }
    }
    ensure!(
        provisioned >= 2,
        "deploy/grafana/provisioning provisions no data source or dashboards"
    );
    println!(
        "prometheus: scrapes {} nodes with {rule_files} rule file pattern(s); grafana: provisioning mounted",
        nodes.len()
    );
    Ok(())
}

/// Whether `pattern` (relative to `dir`, `*` allowed in the last part)
/// names an existing file.
fn glob_exists(dir: &Path, pattern: &str) -> bool {
    let path = dir.join(pattern);
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return false;
    };
    if !name.contains('*') {
        return path.is_file();
    }
    let (prefix, suffix) = name.split_once('*').unwrap_or((&name, ""));
    let parent = path.parent().unwrap_or(dir);
    fs::read_dir(parent).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(prefix) && n.ends_with(suffix) && e.path().is_file()
        })
    })
}

fn check_example_config(ctx: &Ctx) -> Result<()> {
    let config = ctx.root.join(EXAMPLE_CONFIG);
    let args = ["--config", config.to_str().context("non-UTF-8 path")?];
    let effective = effective_config(ctx, &[], &args, EXAMPLE_CONFIG)?;
    println!(
        "{EXAMPLE_CONFIG}: valid (data_root {})",
        effective.data_root
    );
    Ok(())
}

fn check_systemd(ctx: &Ctx) -> Result<()> {
    let unit = read(&ctx.root, SYSTEMD_UNIT)?;
    let mut env = Vec::new();
    let mut exec_lines = Vec::new();
    for line in unit.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Environment=") {
            let (k, v) = value
                .split_once('=')
                .context("Environment= needs KEY=VALUE")?;
            env.push((k.to_owned(), v.to_owned()));
        }
        if let Some((key, value)) = line.split_once('=')
            && (key == "ExecStart" || key == "ExecStartPre")
        {
            exec_lines.push(value.to_owned());
        }
    }
    for setting in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=dawn",
        "EnvironmentFile=",
    ] {
        ensure!(unit.contains(setting), "{SYSTEMD_UNIT} lacks {setting}");
    }
    // Each command line, with the example config standing in for
    // /etc/dawn/dawn.toml, is accepted by the node.
    let example = ctx.root.join(EXAMPLE_CONFIG);
    for line in &exec_lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        ensure!(
            words.first().is_some_and(|w| w.ends_with("/dawn-node")),
            "{SYSTEMD_UNIT}: {line} does not run dawn-node"
        );
        let mut args: Vec<String> = words[1..].iter().map(|w| (*w).to_owned()).collect();
        for arg in &mut args {
            if arg == "/etc/dawn/dawn.toml" {
                *arg = example.display().to_string();
            }
        }
        if !args.iter().any(|a| a == "--check-config") {
            args.push("--check-config".to_owned());
        }
        let output = node_command(ctx, &env).args(&args).output()?;
        ensure!(
            output.status.success(),
            "{SYSTEMD_UNIT}: `{line}` is refused by dawn-node:\n{}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let env_file = read(&ctx.root, "deploy/systemd/dawn-node.env")?;
    let mut env_vars = env.clone();
    for line in env_file.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .context("dawn-node.env: lines must be KEY=VALUE")?;
        env_vars.push((k.to_owned(), v.to_owned()));
    }
    let args = ["--config", example.to_str().context("non-UTF-8 path")?];
    effective_config(ctx, &env_vars, &args, "deploy/systemd/dawn-node.env")?;
    println!(
        "{SYSTEMD_UNIT}: hardening present; {} command line(s) accepted",
        exec_lines.len()
    );

    if !command::succeeds(Command::new("systemd-analyze").arg("--version")) {
        println!("systemd-analyze is not installed: skipping `systemd-analyze verify`");
        return Ok(());
    }
    // verify checks that ExecStart binaries exist: point them at the build.
    let dir = ctx.scratch.join("systemd");
    fs::create_dir_all(&dir)?;
    let copy = dir.join("dawn-node.service");
    fs::write(
        &copy,
        unit.replace(
            "/usr/local/bin/dawn-node",
            &ctx.node_bin().display().to_string(),
        ),
    )?;
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .stdin(Stdio::null())
        .output()
        .context("cannot run systemd-analyze verify")?;
    let complaints = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    ensure!(
        output.status.success() && complaints.is_empty(),
        "systemd-analyze verify {SYSTEMD_UNIT}:\n{complaints}"
    );
    println!("systemd-analyze verify: no complaints");
    Ok(())
}

/// The image's ENV with container paths moved under `base` and listen ports
/// set to 0.
fn local_env(
    image_env: &[(String, String)],
    moved: &[String],
    base: &Path,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = image_env
        .iter()
        .map(|(key, value)| {
            let mut value = value.clone();
            for path in moved {
                if value == *path || value.starts_with(&format!("{path}/")) {
                    value = format!("{}{value}", base.display());
                }
            }
            if key == "DAWN_API__LISTEN" {
                // Loopback only, as every test here binds.
                value = "127.0.0.1:0".to_owned();
            }
            (key.clone(), value)
        })
        .collect();
    if !env.iter().any(|(k, _)| k == "DAWN_NODE__LISTEN") {
        env.push((
            "DAWN_NODE__LISTEN".to_owned(),
            r#"["/ip4/127.0.0.1/tcp/0","/ip4/127.0.0.1/udp/0/quic-v1"]"#.to_owned(),
        ));
    }
    env
}

/// Runs `command` (already set up), killing it after `timeout`.
fn run_with_timeout(mut command: Command, timeout: Duration) -> Result<(ExitStatus, String)> {
    let out = tempfile_path()?;
    let file = fs::File::create(&out)?;
    let mut child = command
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("cannot start the health check")?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            let text = fs::read_to_string(&out).unwrap_or_default();
            let _ = fs::remove_file(&out);
            return Ok((status, text));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait()?;
            let _ = fs::remove_file(&out);
            return Ok((status, format!("(timed out after {timeout:?})")));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn tempfile_path() -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ok(std::env::temp_dir().join(format!("xtask-deploy-{}-{n}.out", std::process::id())))
}

/// The entrypoint process, killed if still running when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn run_image_commands(ctx: &Ctx, file: &Dockerfile) -> Result<()> {
    let base = ctx.scratch.join("container");
    let mut moved: Vec<String> = file.volumes.clone();
    moved.extend(file.workdir.clone());
    for path in &moved {
        let local = PathBuf::from(format!("{}{path}", base.display()));
        fs::create_dir_all(&local)?;
        // As in the image: `install -d -m 0700 /data`.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&local, fs::Permissions::from_mode(0o700))?;
        }
    }
    let mut env = local_env(&file.env, &moved, &base);
    // No multicast from a check: mDNS off when this node has the setting.
    let printed = node_command(ctx, &[]).arg("--print-config").output()?;
    if toml_value(
        &String::from_utf8_lossy(&printed.stdout),
        "discovery",
        "mdns",
    )
    .is_some()
    {
        env.push(("DAWN_DISCOVERY__MDNS".to_owned(), "false".to_owned()));
    }
    let path = {
        let current = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![ctx.bin_dir.clone()];
        dirs.extend(std::env::split_paths(&current));
        std::env::join_paths(dirs)?
    };
    let workdir = file
        .workdir
        .as_ref()
        .map(|w| PathBuf::from(format!("{}{w}", base.display())))
        .unwrap_or_else(|| base.clone());
    let prepare = |words: &[String]| -> Command {
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..]);
        clean_env(&mut cmd);
        cmd.env("HOME", &base)
            .env("PATH", &path)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(&workdir)
            .stdin(Stdio::null());
        cmd
    };

    // ENTRYPOINT + CMD, as `docker run` would.
    let mut argv: Vec<String> = file.entrypoint.iter().chain(&file.cmd).cloned().collect();
    if let Some(init) = argv.first()
        && init.ends_with("tini")
        && !Path::new(init).is_file()
    {
        println!("note: {init} is not installed here; running the entrypoint without `tini --`");
        argv.drain(..2);
    }
    let health = file.healthcheck.as_ref().context("no HEALTHCHECK")?;
    let health_argv: Vec<String> = health.command.clone();
    let health_timeout = health
        .option("timeout")
        .and_then(parse_duration)
        .unwrap_or(Duration::from_secs(30));
    println!(
        "$ {}    (env: {})",
        argv.join(" "),
        env.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );

    let log = ctx.scratch.join("entrypoint.log");
    let log_file = fs::File::create(&log)?;
    let mut entry = prepare(&argv);
    entry.stdout(log_file.try_clone()?).stderr(log_file);
    let mut node = Running(
        entry
            .spawn()
            .with_context(|| format!("cannot start {}", argv[0]))?,
    );

    // The health check passes once the node is up.
    let deadline = Instant::now() + HEALTHY_TIMEOUT;
    let mut last;
    loop {
        if let Some(status) = node.0.try_wait()? {
            bail!(
                "the entrypoint exited ({status}) before it was healthy; {}:\n{}",
                log.display(),
                tail(&log, 30)
            );
        }
        let (status, output) = run_with_timeout(prepare(&health_argv), health_timeout)?;
        last = format!("{status}: {}", output.trim());
        if status.success() {
            println!(
                "$ {} -> healthy\n{}",
                health_argv.join(" "),
                indent(output.trim())
            );
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "`{}` did not pass within {HEALTHY_TIMEOUT:?} (last: {last}); {}:\n{}",
                health_argv.join(" "),
                log.display(),
                tail(&log, 30)
            );
        }
        thread::sleep(Duration::from_millis(500));
    }

    // STOPSIGNAL: the node drains and exits 0 within the grace period.
    let signal = file.stop_signal.as_deref().unwrap_or("SIGTERM");
    let name = signal.trim_start_matches("SIG");
    command::run(Command::new("kill").args([&format!("-{name}"), &node.0.id().to_string()]))?;
    let grace = Duration::from_secs(30);
    let deadline = Instant::now() + grace;
    let status = loop {
        if let Some(status) = node.0.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            bail!(
                "the entrypoint did not exit within {grace:?} of {signal}; {}:\n{}",
                log.display(),
                tail(&log, 30)
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    ensure!(
        status.success(),
        "the entrypoint exited with {status} after {signal} (expected 0: graceful shutdown); {}:\n{}",
        log.display(),
        tail(&log, 30)
    );
    println!("{signal} -> exited with status 0");

    // With the node gone, the health check fails.
    let (status, output) = run_with_timeout(prepare(&health_argv), health_timeout)?;
    ensure!(
        !status.success(),
        "`{}` still passes after the node stopped: {}",
        health_argv.join(" "),
        output.trim()
    );
    println!(
        "$ {} -> {status} once the node is stopped\n{}",
        health_argv.join(" "),
        indent(output.trim())
    );
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINTED: &str = r#"[node]
data_root = "/data"
listen = [
    "/ip4/0.0.0.0/tcp/8000",
    "/ip4/0.0.0.0/udp/8000/quic-v1",
]
bootstrap = []
shutdown_grace = "10s"

[api]
enabled = true
listen = "0.0.0.0:9090"

[discovery]
mdns = true
"#;

    #[test]
    fn reads_printed_config() {
        assert_eq!(
            toml_value(PRINTED, "node", "data_root"),
            Some(Json::String("/data".into()))
        );
        let listen = toml_value(PRINTED, "node", "listen").unwrap();
        assert_eq!(listen.items().len(), 2);
        assert_eq!(
            toml_value(PRINTED, "node", "bootstrap"),
            Some(Json::Array(vec![]))
        );
        assert_eq!(
            toml_value(PRINTED, "api", "enabled"),
            Some(Json::Bool(true))
        );
        assert_eq!(
            toml_value(PRINTED, "discovery", "mdns"),
            Some(Json::Bool(true))
        );
        assert_eq!(
            toml_value(PRINTED, "api", "data_root"),
            None,
            "keys stay in their section"
        );
        assert_eq!(toml_value(PRINTED, "nope", "x"), None);
    }

    #[test]
    fn ports_of_multiaddrs() {
        assert_eq!(multiaddr_port("/ip4/0.0.0.0/tcp/8000"), Some((8000, "tcp")));
        assert_eq!(
            multiaddr_port("/ip4/0.0.0.0/udp/8000/quic-v1"),
            Some((8000, "udp"))
        );
        assert_eq!(multiaddr_port("/memory/5"), None);
    }

    #[test]
    fn durations_of_compose_and_dawn() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_triple("1.95") >= version_triple("1.90"));
        assert!(version_triple("1.100") > version_triple("1.95"));
        assert!(version_triple("1.89") < version_triple("1.90"));
    }

    #[test]
    fn local_env_moves_paths_and_frees_ports() {
        let image = vec![
            ("DAWN_NODE__DATA_ROOT".to_owned(), "/data".to_owned()),
            ("DAWN_API__LISTEN".to_owned(), "0.0.0.0:9090".to_owned()),
            ("OTHER".to_owned(), "/database".to_owned()),
        ];
        let env = local_env(&image, &["/data".to_owned()], Path::new("/tmp/x"));
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("DAWN_NODE__DATA_ROOT"), Some("/tmp/x/data"));
        assert_eq!(get("DAWN_API__LISTEN"), Some("127.0.0.1:0"));
        assert_eq!(
            get("OTHER"),
            Some("/database"),
            "only whole path components move"
        );
        assert!(get("DAWN_NODE__LISTEN").unwrap().contains("/tcp/0"));
    }
}
