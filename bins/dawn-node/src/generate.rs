//! Man pages and shell completions generated from the clap definitions, for
//! release archives (`cargo xtask dist` runs `--generate-assets DIR`).
//!
//! Writes `DIR/man/NAME.1` (and one page per subcommand, `NAME-SUB.1`) and
//! `DIR/completions/` for bash (`NAME.bash`), zsh (`_NAME`) and fish
//! (`NAME.fish`), and `DIR/markdown/NAME.md` (the Markdown reference that
//! `docs/cli.md` is assembled from; not part of release archives).

use std::{fs, path::Path};

use anyhow::{Context as _, Result};
use clap_complete::Shell;

#[path = "../../dawn-cli/src/cli_markdown.rs"]
mod cli_markdown;

/// Writes the man pages and completions of `command` under `dir`.
pub fn write_assets(mut command: clap::Command, dir: &Path) -> Result<()> {
    let name = command.get_name().to_owned();
    // Without `help` subcommands: they would each get a page.
    command = command.disable_help_subcommand(true);
    let markdown = dir.join("markdown");
    fs::create_dir_all(&markdown)
        .with_context(|| format!("cannot create {}", markdown.display()))?;
    let page = markdown.join(format!("{name}.md"));
    fs::write(&page, cli_markdown::render(command.clone()))
        .with_context(|| format!("cannot write {}", page.display()))?;
    let man = dir.join("man");
    fs::create_dir_all(&man).with_context(|| format!("cannot create {}", man.display()))?;
    clap_mangen::generate_to(command.clone(), &man)
        .with_context(|| format!("cannot write man pages to {}", man.display()))?;
    let completions = dir.join("completions");
    fs::create_dir_all(&completions)
        .with_context(|| format!("cannot create {}", completions.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, &name, &completions).with_context(
            || {
                format!(
                    "cannot write {shell} completions to {}",
                    completions.display()
                )
            },
        )?;
    }
    Ok(())
}
