//! `cargo xtask dist`: release archives, checksums and their signature.
//!
//! For one target (the host unless `--target`), builds `dawn-node` and
//! `dawn-cli` (release profile unless `--profile dev`) and writes
//! `<out>/dawn-<version>-<target>.tar.gz`, holding under
//! `dawn-<version>-<target>/`:
//!
//! ```text
//! bin/dawn-node  bin/dawn-cli            the binaries
//! README.md  LICENSE-MIT  LICENSE-APACHE
//! docs/*.md                              the user and operator docs
//! man/*.1                                man pages of both programs and their commands
//! completions/                           bash, zsh and fish completions
//! config/dawn.toml                       example configuration (deploy/dawn.toml)
//! systemd/dawn-node.service  systemd/dawn-node.env  systemd/dawn.sysusers
//! ```
//!
//! Before packing, when valgrind is installed and the build is for this
//! machine (`--layout auto`, the default; `require` or `off` to choose),
//! `dawn-node` is linked again with the functions a running node executes
//! placed together at the start of its code, which keeps an idle node's
//! resident memory small (see `layout.rs` and docs/benchmarks.md).
//!
//! The archive's metadata is reproducible: entries sorted by path, every
//! mtime set to `$SOURCE_DATE_EPOCH` (else the last commit's time, else 0),
//! uid/gid 0 without names, modes 0755 (directories, binaries) or 0644, and a
//! gzip header without name or time. Building the same binaries twice gives
//! byte-identical archives.
//!
//! Then `<out>/SHA256SUMS` is (re)written for every `dawn-*.tar.gz` in
//! `<out>` (the format of `sha256sum`, so `sha256sum -c` works too) and, when
//! a release key is given (`--sign-key FILE`, or `$DAWN_RELEASE_KEY`: base64
//! of a PKCS#8 Ed25519 key, as written by `--new-key`), signed into
//! `<out>/SHA256SUMS.sig` (base64 of the Ed25519 signature of the file's
//! bytes). `dawn-cli verify-release DIR --key PUBKEY` checks both.
//!
//! `--check` is the self-test `cargo xtask ci` runs: a dev-profile dist into
//! `target/dist-check` with a throwaway key, then it reads the archive back
//! (entries, modes, times, owners, binaries identical to the build), builds
//! it again to compare bytes, and runs `dawn-cli verify-release` on the
//! result and on tampered copies (a changed archive byte, a changed
//! checksum line, a wrong key, a missing signature), which must fail.

use std::{
    fs,
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;
use ring::{
    digest,
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair as _},
};

use crate::{command, layout, tools::target_dir};

/// The checksums file's name.
pub const CHECKSUMS: &str = "SHA256SUMS";
/// The signature file's name.
pub const SIGNATURE: &str = "SHA256SUMS.sig";
/// Environment variable holding the release key (base64 PKCS#8).
pub const KEY_ENV: &str = "DAWN_RELEASE_KEY";
/// The binaries in every archive.
const BINARIES: [&str; 2] = ["dawn-node", "dawn-cli"];

/// Arguments of `cargo xtask dist`.
#[derive(Debug, Default, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask dist                                   release archive for this machine in target/dist\n  \
    cargo xtask dist --target aarch64-unknown-linux-gnu --sign-key release.key\n  \
    cargo xtask dist --checksums-only --out dist       SHA256SUMS (+ .sig) for the archives in dist/\n  \
    cargo xtask dist --new-key release.key             create a release key, print its public key\n  \
    cargo xtask dist --check                           self-test: dev build, read back, verify, tamper")]
pub struct DistArgs {
    /// Target triple to build for (default: this machine's).
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
    /// Cargo profile: `release` (default) or `dev` (faster; `--check` uses it).
    #[arg(long, value_name = "PROFILE", value_parser = ["release", "dev"])]
    pub profile: Option<String>,
    /// Output directory (default: target/dist, or target/dist-check with --check).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Do not run `cargo build`: package the binaries already built.
    #[arg(long)]
    pub no_build: bool,
    /// File holding the release key (base64 PKCS#8 Ed25519); default:
    /// $DAWN_RELEASE_KEY. Without a key SHA256SUMS is not signed.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// Only (re)write SHA256SUMS and its signature for the archives in --out.
    #[arg(long, conflicts_with_all = ["target", "profile", "no_build", "check"])]
    pub checksums_only: bool,
    /// Fail unless TAG is `v<workspace version>` (for release pipelines).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Create a new release key in FILE (mode 0600) and print its public key.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["target", "profile", "no_build", "checksums_only", "check", "sign_key"])]
    pub new_key: Option<PathBuf>,
    /// Self-test: dist with a throwaway key, read back, verify, tamper.
    #[arg(long)]
    pub check: bool,
    /// Function layout of dawn-node (see xtask/src/layout.rs): `auto` does it
    /// when valgrind is installed and the build is for this machine, `require`
    /// fails without it, `off` skips it.
    #[arg(long, value_enum, default_value_t = LayoutMode::Auto)]
    pub layout: LayoutMode,
}

/// Whether `dist` links dawn-node with the functions a node runs first.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutMode {
    /// When valgrind is installed and the target is this machine.
    #[default]
    Auto,
    /// Always; fail if it cannot be done.
    Require,
    /// Never.
    Off,
}

/// Runs `cargo xtask dist`.
pub fn run(args: &DistArgs, root: &Path) -> Result<()> {
    if let Some(file) = &args.new_key {
        let public = new_key(file)?;
        println!("release key written to {} (keep it secret)", file.display());
        println!("public key (publish it; `dawn-cli verify-release DIR --key <this>`):\n{public}");
        return Ok(());
    }
    let version = workspace_version(root)?;
    if let Some(tag) = &args.tag {
        ensure!(
            *tag == format!("v{version}"),
            "tag {tag} does not match the workspace version {version} (expected v{version})"
        );
    }
    if args.check {
        return self_test(args, root, &version);
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir(root).join("dist"));
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let key = release_key(args.sign_key.as_deref())?;
    if !args.checksums_only {
        let profile = args.profile.as_deref().unwrap_or("release");
        let target = match &args.target {
            Some(t) => t.clone(),
            None => host_triple()?,
        };
        let bin_dir = build(root, profile, args.target.as_deref(), args.no_build)?;
        function_layout(args, root, profile, &bin_dir, &target)?;
        let archive = write_archive(root, &bin_dir, &version, &target, &out)?;
        println!("wrote {}", archive.display());
    }
    write_checksums(&out, key.as_ref())?;
    Ok(())
}

/// Applies the function layout to the freshly built dawn-node when
/// `--layout` and the machine allow it.
fn function_layout(
    args: &DistArgs,
    root: &Path,
    profile: &str,
    bin_dir: &Path,
    target: &str,
) -> Result<()> {
    let skip = |why: &str| -> Result<()> {
        if args.layout == LayoutMode::Require {
            bail!("--layout require: the function layout cannot be done: {why}");
        }
        if args.layout == LayoutMode::Auto {
            println!(
                "note: no function layout ({why}); an idle dawn-node will map more of its code"
            );
        }
        Ok(())
    };
    if args.layout == LayoutMode::Off {
        return Ok(());
    }
    if args.no_build {
        return skip("--no-build: the binaries were not built here");
    }
    if profile == "dev" {
        return skip("a dev build");
    }
    if target != host_triple()? {
        return skip("the training run needs binaries for this machine");
    }
    if target != layout::TARGET {
        return skip(&format!(
            "only done for {} (rust-lld, the default linker there, takes a symbol ordering file)",
            layout::TARGET
        ));
    }
    if !layout::available() {
        return skip("valgrind is not installed");
    }
    // The same build command, so the dependencies and dawn-cli are fresh
    // and only dawn-node is linked again.
    let relink = |order_file: &Path| {
        let mut cargo = cargo_build(root, profile, args.target.as_deref());
        cargo.env(layout::ORDER_ENV, order_file);
        command::run(&mut cargo)
    };
    layout::apply(bin_dir, &target_dir(root).join("layout"), relink)?;
    Ok(())
}

/// `version` of `[workspace.package]`.
fn workspace_version(root: &Path) -> Result<String> {
    let manifest = fs::read_to_string(root.join("Cargo.toml")).context("cannot read Cargo.toml")?;
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
            continue;
        }
        if in_package
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "version"
        {
            return Ok(value.trim().trim_matches('"').to_owned());
        }
    }
    bail!("Cargo.toml has no version in [workspace.package]")
}

fn host_triple() -> Result<String> {
    let output = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("-vV")
        .output()
        .context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV printed no host triple")
}

/// Builds the binaries and returns the directory they are in.
fn build(root: &Path, profile: &str, target: Option<&str>, no_build: bool) -> Result<PathBuf> {
    if !no_build {
        command::run(&mut cargo_build(root, profile, target))?;
    }
    let mut dir = target_dir(root);
    if let Some(target) = target {
        dir = dir.join(target);
    }
    Ok(dir.join(if profile == "dev" { "debug" } else { profile }))
}

/// `cargo build` of the archive's binaries, with a plain link of dawn-node
/// (no function layout from the caller's environment).
fn cargo_build(root: &Path, profile: &str, target: Option<&str>) -> Command {
    let mut cargo = command::cargo(root);
    cargo.args(["build", "--locked", "--profile", profile]);
    for bin in BINARIES {
        cargo.args(["-p", bin]);
    }
    if let Some(target) = target {
        cargo.args(["--target", target]);
    }
    cargo.env_remove(layout::ORDER_ENV);
    cargo
}

/// One archive member.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// Path inside the archive, below the top directory; directories end in `/`.
    path: String,
    data: Vec<u8>,
    mode: u32,
}

impl Entry {
    fn is_dir(&self) -> bool {
        self.path.ends_with('/')
    }
}

/// What goes into an archive, sorted by path, directories included.
fn archive_entries(root: &Path, bin_dir: &Path) -> Result<Vec<Entry>> {
    let mut files: Vec<(String, PathBuf, u32)> = Vec::new();
    for bin in BINARIES {
        files.push((format!("bin/{bin}"), bin_dir.join(bin), 0o755));
    }
    for name in ["README.md", "LICENSE-MIT", "LICENSE-APACHE"] {
        files.push((name.to_owned(), root.join(name), 0o644));
    }
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .context("cannot list docs/")?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md") && p.is_file())
        .collect();
    docs.sort();
    for doc in docs {
        let name = doc
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push((format!("docs/{name}"), doc, 0o644));
    }
    files.extend(generated_assets(root, bin_dir)?);
    files.push((
        "config/dawn.toml".to_owned(),
        root.join("deploy/dawn.toml"),
        0o644,
    ));
    for name in ["dawn-node.service", "dawn-node.env", "dawn.sysusers"] {
        files.push((
            format!("systemd/{name}"),
            root.join("deploy/systemd").join(name),
            0o644,
        ));
    }

    let mut entries = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for (path, source, mode) in files {
        let data =
            fs::read(&source).with_context(|| format!("cannot read {}", source.display()))?;
        if let Some((dir, _)) = path.rsplit_once('/') {
            dirs.insert(format!("{dir}/"));
        }
        entries.push(Entry { path, data, mode });
    }
    entries.extend(dirs.into_iter().map(|path| Entry {
        path,
        data: Vec::new(),
        mode: 0o755,
    }));
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Man pages and shell completions, generated by the built binaries from
/// their clap definitions (`dawn-node --generate-assets DIR`, `dawn-cli
/// generate-assets DIR`) into a scratch directory.
fn generated_assets(root: &Path, bin_dir: &Path) -> Result<Vec<(String, PathBuf, u32)>> {
    let scratch = target_dir(root).join("dist-assets");
    if scratch.exists() {
        fs::remove_dir_all(&scratch)
            .with_context(|| format!("cannot clear {}", scratch.display()))?;
    }
    fs::create_dir_all(&scratch)?;
    let generators: [(&str, &str); 2] = [
        ("dawn-node", "--generate-assets"),
        ("dawn-cli", "generate-assets"),
    ];
    for (bin, arg) in generators {
        let program = bin_dir.join(bin);
        let output = Command::new(&program)
            .arg(arg)
            .arg(&scratch)
            .stdin(Stdio::null())
            .output()
            .with_context(|| {
                format!(
                    "cannot run {} to generate man pages and completions (the target's binaries must run on this machine)",
                    program.display()
                )
            })?;
        ensure!(
            output.status.success(),
            "{} could not generate man pages and completions: {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut files = Vec::new();
    for dir in ["completions", "man"] {
        let mut names: Vec<String> = fs::read_dir(scratch.join(dir))
            .with_context(|| format!("no {dir}/ was generated"))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        ensure!(!names.is_empty(), "no {dir} were generated");
        for name in names {
            files.push((
                format!("{dir}/{name}"),
                scratch.join(dir).join(&name),
                0o644,
            ));
        }
    }
    Ok(files)
}

/// The modification time stamped on every entry.
fn source_date_epoch(root: &Path) -> u64 {
    if let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return epoch;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(root)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// The `.tar.gz` bytes of `entries` under `top/`.
fn tar_gz(top: &str, entries: &[Entry], mtime: u64) -> Result<Vec<u8>> {
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut top_dir = vec![Entry {
        path: format!("{top}/"),
        data: Vec::new(),
        mode: 0o755,
    }];
    top_dir.extend(entries.iter().map(|e| Entry {
        path: format!("{top}/{}", e.path),
        ..e.clone()
    }));
    for entry in &top_dir {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(if entry.is_dir() {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        header.set_size(entry.data.len() as u64);
        header.set_mode(entry.mode);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        tar.append_data(&mut header, &entry.path, entry.data.as_slice())
            .with_context(|| format!("cannot add {} to the archive", entry.path))?;
    }
    let gz = tar.into_inner().context("cannot finish the tar stream")?;
    gz.finish().context("cannot finish the gzip stream")
}

fn archive_name(version: &str, target: &str) -> String {
    format!("dawn-{version}-{target}")
}

fn write_archive(
    root: &Path,
    bin_dir: &Path,
    version: &str,
    target: &str,
    out: &Path,
) -> Result<PathBuf> {
    let top = archive_name(version, target);
    let entries = archive_entries(root, bin_dir)?;
    let bytes = tar_gz(&top, &entries, source_date_epoch(root))?;
    let path = out.join(format!("{top}.tar.gz"));
    fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn sha256_hex(data: &[u8]) -> String {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes SHA256SUMS for the archives in `out`, and its signature if `key`.
fn write_checksums(out: &Path, key: Option<&Ed25519KeyPair>) -> Result<()> {
    let mut archives: Vec<String> = fs::read_dir(out)
        .with_context(|| format!("cannot list {}", out.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dawn-") && n.ends_with(".tar.gz"))
        .collect();
    archives.sort();
    ensure!(
        !archives.is_empty(),
        "no dawn-*.tar.gz in {}",
        out.display()
    );
    let mut sums = String::new();
    for name in &archives {
        let data = fs::read(out.join(name)).with_context(|| format!("cannot read {name}"))?;
        sums.push_str(&format!("{}  {name}\n", sha256_hex(&data)));
    }
    fs::write(out.join(CHECKSUMS), &sums).context("cannot write SHA256SUMS")?;
    println!(
        "wrote {} ({} archive(s))",
        out.join(CHECKSUMS).display(),
        archives.len()
    );
    let sig_path = out.join(SIGNATURE);
    match key {
        Some(key) => {
            let signature = key.sign(sums.as_bytes());
            let text = format!(
                "{}\n",
                base64::engine::general_purpose::STANDARD.encode(signature.as_ref())
            );
            fs::write(&sig_path, text).context("cannot write SHA256SUMS.sig")?;
            println!(
                "wrote {} (public key {})",
                sig_path.display(),
                public_key_base64(key)
            );
        }
        None => {
            let _ = fs::remove_file(&sig_path);
            println!("no release key (--sign-key or ${KEY_ENV}): SHA256SUMS is not signed");
        }
    }
    Ok(())
}

fn public_key_base64(key: &Ed25519KeyPair) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.public_key().as_ref())
}

/// The release key from `file` or `$DAWN_RELEASE_KEY`, if either is given.
fn release_key(file: Option<&Path>) -> Result<Option<Ed25519KeyPair>> {
    let (text, origin) = match file {
        Some(file) => (
            fs::read_to_string(file)
                .with_context(|| format!("cannot read the release key {}", file.display()))?,
            file.display().to_string(),
        ),
        None => match std::env::var(KEY_ENV) {
            Ok(text) if !text.trim().is_empty() => (text, format!("${KEY_ENV}")),
            _ => return Ok(None),
        },
    };
    parse_key(&text)
        .with_context(|| format!("{origin} is not a release key (base64 of a PKCS#8 Ed25519 key, as written by `cargo xtask dist --new-key`)"))
        .map(Some)
}

fn parse_key(text: &str) -> Result<Ed25519KeyPair> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("not base64")?;
    Ed25519KeyPair::from_pkcs8(&der)
        .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der))
        .map_err(|e| anyhow::anyhow!("not a PKCS#8 Ed25519 key ({e})"))
}

/// Writes a new key to `file` (refusing to overwrite) and returns its public key.
fn new_key(file: &Path) -> Result<String> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("cannot generate a key"))?;
    let text = format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut out = options
        .open(file)
        .with_context(|| format!("cannot create {} (it must not exist yet)", file.display()))?;
    out.write_all(text.as_bytes())?;
    let key = parse_key(&text)?;
    Ok(public_key_base64(&key))
}

/// Reads a `.tar.gz` back: (path, mode, mtime, uid, gid, data) per entry.
#[allow(clippy::type_complexity)]
fn read_archive(path: &Path) -> Result<Vec<(String, u32, u64, u64, u64, Vec<u8>)>> {
    let file = fs::File::open(path)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header().clone();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        out.push((
            name,
            header.mode()?,
            header.mtime()?,
            header.uid()?,
            header.gid()?,
            data,
        ));
    }
    Ok(out)
}

/// `dawn-cli verify-release DIR --key KEY`: (success, output).
fn verify_release(cli: &Path, dir: &Path, key: &str) -> Result<(bool, String)> {
    let output = Command::new(cli)
        .arg("verify-release")
        .arg(dir)
        .args(["--key", key])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", cli.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text.trim().to_owned()))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)?.flatten() {
        if entry.path().is_file() {
            fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Changes a copy of a release directory.
type Tamper<'a> = dyn Fn(&Path) -> Result<()> + 'a;

fn self_test(args: &DistArgs, root: &Path, version: &str) -> Result<()> {
    let base = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir(root).join("dist-check"));
    if base.exists() {
        fs::remove_dir_all(&base).with_context(|| format!("cannot clear {}", base.display()))?;
    }
    let out = base.join("release");
    fs::create_dir_all(&out)?;
    let profile = args.profile.as_deref().unwrap_or("dev");
    let target = host_triple()?;
    let bin_dir = build(root, profile, None, args.no_build)?;
    let cli = bin_dir.join("dawn-cli");

    // A throwaway key, kept outside the release directory.
    let key_file = base.join("release.key");
    let public = new_key(&key_file)?;
    let key = release_key(Some(&key_file))?.context("the new key did not load")?;
    let archive = write_archive(root, &bin_dir, version, &target, &out)?;
    write_checksums(&out, Some(&key))?;
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!("dist --check: built {name} ({profile} profile)");

    // Contents: exactly the expected entries, in order, with fixed metadata.
    let top = archive_name(version, &target);
    let expected = archive_entries(root, &bin_dir)?;
    let read = read_archive(&archive)?;
    let mtime = source_date_epoch(root);
    let mut wanted_paths = vec![format!("{top}/")];
    wanted_paths.extend(expected.iter().map(|e| format!("{top}/{}", e.path)));
    let paths: Vec<&str> = read.iter().map(|e| e.0.as_str()).collect();
    ensure!(
        paths == wanted_paths.iter().map(String::as_str).collect::<Vec<_>>(),
        "archive entries differ:\n  got {paths:?}\n  want {wanted_paths:?}"
    );
    let mut sorted = paths.clone();
    sorted.sort();
    ensure!(sorted == paths, "archive entries are not sorted");
    for ((path, mode, time, uid, gid, data), want) in read.iter().skip(1).zip(&expected) {
        ensure!(
            *mode == want.mode,
            "{path}: mode {mode:o}, want {:o}",
            want.mode
        );
        ensure!(*time == mtime, "{path}: mtime {time}, want {mtime}");
        ensure!(
            *uid == 0 && *gid == 0,
            "{path}: owner {uid}:{gid}, want 0:0"
        );
        ensure!(
            *data == want.data,
            "{path}: content differs from its source"
        );
    }
    for bin in BINARIES {
        for member in [
            format!("bin/{bin}"),
            format!("man/{bin}.1"),
            format!("completions/{bin}.bash"),
            format!("completions/_{bin}"),
            format!("completions/{bin}.fish"),
        ] {
            ensure!(
                paths.contains(&format!("{top}/{member}").as_str()),
                "the archive lacks {member}"
            );
        }
    }
    println!(
        "dist --check: {} entries, sorted, mtime {mtime}, owner 0:0, modes as wanted, binaries identical to the build",
        read.len()
    );

    // Reproducible: the same inputs give the same bytes.
    let again = tar_gz(&top, &expected, mtime)?;
    ensure!(
        again == fs::read(&archive)?,
        "building the archive twice gave different bytes"
    );
    println!("dist --check: rebuilding the archive gives identical bytes");

    // The extracted dawn-cli runs.
    let extracted = base.join("extracted");
    fs::create_dir_all(&extracted)?;
    tar::Archive::new(flate2::read::GzDecoder::new(fs::File::open(&archive)?))
        .unpack(&extracted)
        .context("cannot unpack the archive")?;
    let version_out = Command::new(extracted.join(&top).join("bin/dawn-cli"))
        .arg("--version")
        .output()
        .context("cannot run the extracted dawn-cli")?;
    let printed = String::from_utf8_lossy(&version_out.stdout);
    ensure!(
        version_out.status.success() && printed.contains(version),
        "the extracted dawn-cli --version printed {printed:?}"
    );
    println!(
        "dist --check: extracted bin/dawn-cli --version: {}",
        printed.trim()
    );

    // SHA256SUMS lists the archive with its digest.
    let sums = fs::read_to_string(out.join(CHECKSUMS))?;
    ensure!(
        sums == format!("{}  {name}\n", sha256_hex(&fs::read(&archive)?)),
        "SHA256SUMS is wrong: {sums:?}"
    );

    // dawn-cli verify-release accepts the release ...
    let (ok, text) = verify_release(&cli, &out, &public)?;
    ensure!(
        ok,
        "dawn-cli verify-release rejects a good release:\n{text}"
    );
    println!(
        "dist --check: dawn-cli verify-release accepts the release:\n{}",
        indent(&text)
    );

    // ... and rejects every tampered copy.
    let cases: [(&str, &Tamper<'_>, String); 4] = [
        (
            "one changed byte in the archive",
            &|dir: &Path| {
                let path = dir.join(&name);
                let mut data = fs::read(&path)?;
                let middle = data.len() / 2;
                data[middle] ^= 0x01;
                fs::write(&path, data)?;
                Ok(())
            },
            public.clone(),
        ),
        (
            "an edited SHA256SUMS",
            &|dir: &Path| {
                let path = dir.join(CHECKSUMS);
                let text = fs::read_to_string(&path)?;
                let first = text.chars().next().unwrap_or('0');
                let swapped = if first == '0' { '1' } else { '0' };
                fs::write(&path, format!("{swapped}{}", &text[1..]))?;
                Ok(())
            },
            public.clone(),
        ),
        (
            "a missing signature",
            &|dir: &Path| Ok(fs::remove_file(dir.join(SIGNATURE))?),
            public.clone(),
        ),
        ("another key", &|_: &Path| Ok(()), {
            let other = base.join("other.key");
            new_key(&other)?
        }),
    ];
    for (i, (what, tamper, key)) in cases.iter().enumerate() {
        let dir = base.join(format!("tampered-{i}"));
        copy_dir(&out, &dir)?;
        tamper(&dir)?;
        let (ok, text) = verify_release(&cli, &dir, key)?;
        ensure!(
            !ok,
            "dawn-cli verify-release accepts a release with {what}:\n{text}"
        );
        println!(
            "dist --check: {what}: rejected: {}",
            text.lines().last().unwrap_or_default()
        );
    }
    // The copies are large (debug binaries): keep only the release itself.
    let _ = fs::remove_dir_all(&extracted);
    for i in 0..cases.len() {
        let _ = fs::remove_dir_all(base.join(format!("tampered-{i}")));
    }
    println!(
        "dist --check: all checks passed ({} kept for inspection)",
        out.display()
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
    use ring::signature;

    use super::*;

    fn entries() -> Vec<Entry> {
        vec![
            Entry {
                path: "bin/".into(),
                data: vec![],
                mode: 0o755,
            },
            Entry {
                path: "bin/tool".into(),
                data: b"\x7fELF".to_vec(),
                mode: 0o755,
            },
            Entry {
                path: "README.md".into(),
                data: b"# hi\n".to_vec(),
                mode: 0o644,
            },
        ]
    }

    #[test]
    fn archives_are_byte_reproducible_and_carry_fixed_metadata() {
        let a = tar_gz("top", &entries(), 1_700_000_000).unwrap();
        let b = tar_gz("top", &entries(), 1_700_000_000).unwrap();
        assert_eq!(a, b);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        fs::write(&path, &a).unwrap();
        let read = read_archive(&path).unwrap();
        let names: Vec<&str> = read.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["top/", "top/bin/", "top/bin/tool", "top/README.md"]);
        for (_, _, mtime, uid, gid, _) in &read {
            assert_eq!((*mtime, *uid, *gid), (1_700_000_000, 0, 0));
        }
        assert_eq!(read[2].1, 0o755);
        assert_eq!(read[3].5, b"# hi\n");
        // gzip header: no file name (FLG 0), no time, OS unknown.
        assert_eq!(&a[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&a[4..8], &[0, 0, 0, 0]);
        assert_eq!(a[9], 255);
    }

    #[test]
    fn keys_round_trip_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        let public = new_key(&file).unwrap();
        assert!(
            new_key(&file).is_err(),
            "an existing key is not overwritten"
        );
        let key = release_key(Some(&file)).unwrap().unwrap();
        assert_eq!(public_key_base64(&key), public);
        let sig = key.sign(b"sums");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&public)
            .unwrap();
        signature::UnparsedPublicKey::new(&signature::ED25519, raw)
            .verify(b"sums", sig.as_ref())
            .unwrap();
        assert!(parse_key("not a key").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn checksums_cover_the_archives_and_are_signed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("dawn-1-x.tar.gz"), b"one").unwrap();
        fs::write(dir.path().join("dawn-1-a.tar.gz"), b"two").unwrap();
        fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        write_checksums(dir.path(), None).unwrap();
        let sums = fs::read_to_string(dir.path().join(CHECKSUMS)).unwrap();
        assert_eq!(
            sums,
            format!(
                "{}  dawn-1-a.tar.gz\n{}  dawn-1-x.tar.gz\n",
                sha256_hex(b"two"),
                sha256_hex(b"one")
            )
        );
        assert!(!dir.path().join(SIGNATURE).exists());
        let keyfile = dir.path().join("k");
        new_key(&keyfile).unwrap();
        let key = release_key(Some(&keyfile)).unwrap().unwrap();
        write_checksums(dir.path(), Some(&key)).unwrap();
        let sig = fs::read_to_string(dir.path().join(SIGNATURE)).unwrap();
        let sig = base64::engine::general_purpose::STANDARD
            .decode(sig.trim())
            .unwrap();
        signature::UnparsedPublicKey::new(&signature::ED25519, key.public_key().as_ref())
            .verify(sums.as_bytes(), &sig)
            .unwrap();
        let empty = tempfile::tempdir().unwrap();
        assert!(write_checksums(empty.path(), None).is_err());
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn workspace_version_is_read() {
        let root = crate::workspace_root();
        let version = workspace_version(&root).unwrap();
        assert!(version.split('.').count() >= 3, "{version}");
    }
}
