//! The child process of a stdio server: spawning it in its own process
//! group, reading its stderr line by line, and stopping it (and anything it
//! started) without leaving orphans.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStderr, ChildStdin, ChildStdout, Command},
};

use crate::config::MountedServerConfig;

/// Longest stderr line kept; the rest of a longer line is dropped.
const MAX_STDERR_LINE: usize = 4096;

/// How long a child may take to exit after its stdin closed, and again
/// after SIGTERM, before it is killed.
pub(super) const EXIT_GRACE: Duration = Duration::from_millis(1500);

/// A spawned server with its pipes.
pub(super) struct Spawned {
    pub(super) child: Child,
    pub(super) stdout: ChildStdout,
    pub(super) stdin: ChildStdin,
    pub(super) stderr: ChildStderr,
}

/// Starts `command` with piped stdio, the node's environment minus its
/// `DAWN_*` variables plus the configured ones, in a new process group.
/// The child is killed if its handle is dropped.
pub(super) fn spawn(config: &MountedServerConfig) -> std::io::Result<Spawned> {
    let program = config.command.as_deref().unwrap_or_default();
    let mut command = Command::new(program);
    command
        .args(&config.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The node's own settings and secrets (DAWN_API_TOKEN, DAWN_PASSPHRASE,
    // DAWN_* config) are not the server's business.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DAWN_") {
            command.env_remove(&name);
        }
    }
    command.envs(&config.env);
    if let Some(cwd) = &config.cwd {
        command.current_dir(cwd);
    }
    // Its own process group, so that stopping it also stops what it started
    // (e.g. `npx` and the server it runs).
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command.spawn()?;
    let missing = || std::io::Error::other("a pipe of the child process is missing");
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    Ok(Spawned {
        child,
        stdout,
        stdin,
        stderr,
    })
}

/// Reads stderr until EOF, calling `on_line` for each line (without the line
/// break, lossily decoded, cut at [`MAX_STDERR_LINE`] bytes).
pub(super) async fn read_lines(stderr: ChildStderr, mut on_line: impl FnMut(String)) {
    let mut reader = BufReader::new(stderr);
    let mut line: Vec<u8> = Vec::new();
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let (chunk, used, complete) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = MAX_STDERR_LINE.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(used);
        if complete {
            on_line(decode(&line));
            line.clear();
        }
    }
    if !line.is_empty() {
        on_line(decode(&line));
    }
}

fn decode(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .to_owned()
}

/// Stops a child whose stdin is already closed: waits [`EXIT_GRACE`], then
/// sends SIGTERM to its process group and waits again, then kills the group.
/// `pgid` is the child's pid, taken when it was spawned.
pub(super) async fn stop(child: &mut Child, pgid: Option<u32>) {
    if tokio::time::timeout(EXIT_GRACE, child.wait()).await.is_ok() {
        kill_group(pgid);
        return;
    }
    signal_group(pgid, Signal::Term);
    if tokio::time::timeout(EXIT_GRACE, child.wait()).await.is_ok() {
        kill_group(pgid);
        return;
    }
    kill(child, pgid).await;
}

/// Kills a child and its process group at once, and reaps it.
pub(super) async fn kill(child: &mut Child, pgid: Option<u32>) {
    kill_group(pgid);
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

/// Kills whatever is left in the group after its leader exited.
pub(super) fn kill_group(pgid: Option<u32>) {
    signal_group(pgid, Signal::Kill);
}

#[cfg(unix)]
fn signal_group(pgid: Option<u32>, signal: Signal) {
    let Some(pid) = pgid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let signal = match signal {
        Signal::Term => rustix::process::Signal::TERM,
        Signal::Kill => rustix::process::Signal::KILL,
    };
    // ESRCH (nothing left in the group) is the normal case.
    let _ = rustix::process::kill_process_group(pid, signal);
}

#[cfg(not(unix))]
fn signal_group(_pgid: Option<u32>, _signal: Signal) {}
