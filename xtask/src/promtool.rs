//! `promtool` for the observability tests (`promtool check metrics` on a
//! live scrape, `promtool check rules` / `test rules` on deploy/prometheus).
//! It comes from Debian's `prometheus` package, installed with apt-get when
//! absent: directly as root, else through passwordless sudo.

use std::process::Command;

use anyhow::{Result, bail};

use crate::command;

/// The environment variable that makes tests fail, instead of skip, when a
/// tool they need is missing. `cargo xtask ci` sets it for the test step.
pub const REQUIRE_TOOLS_ENV: &str = "DAWN_REQUIRE_TOOLS";

fn present() -> bool {
    command::succeeds(Command::new("promtool").arg("--version"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Makes sure `promtool` is on `PATH`, installing Debian's `prometheus`
/// package if needed.
pub fn ensure() -> Result<()> {
    if present() {
        return Ok(());
    }
    println!("promtool is not installed: installing Debian's prometheus package");
    let apt = |args: &[&str]| {
        let mut cmd = if is_root() {
            Command::new("apt-get")
        } else if command::succeeds(Command::new("sudo").args(["-n", "true"])) {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        } else {
            return Err(anyhow::anyhow!(
                "promtool is missing and apt-get needs root: run `sudo apt-get install -y prometheus`"
            ));
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command::run(&mut cmd)
    };
    let install = ["install", "-y", "--no-install-recommends", "prometheus"];
    if apt(&install).is_err() {
        // A fresh machine may have no package lists yet.
        apt(&["update"])?;
        apt(&install)?;
    }
    if !present() {
        bail!("installed the prometheus package but promtool is still not on PATH");
    }
    Ok(())
}
