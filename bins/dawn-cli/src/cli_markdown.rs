//! Markdown reference of a clap command tree, for `docs/cli.md`.
//!
//! Used by both binaries (`dawn-node` includes this file with `#[path]`):
//! `generate-assets DIR` writes `DIR/markdown/NAME.md`, and the dawn-cli test
//! `cli_docs` assembles `docs/cli.md` from the two files.

use std::fmt::Write as _;

/// The Markdown reference of `command`: usage, about text, arguments (with
/// defaults, possible values and environment variables) and every visible
/// subcommand, recursively. Headings start at `##`.
pub fn render(mut command: clap::Command) -> String {
    command = command.disable_help_subcommand(true);
    command.build();
    let mut out = String::new();
    let name = command.get_name().to_owned();
    render_command(&mut out, &mut command, &name, 2, true);
    out
}

fn render_command(
    out: &mut String,
    command: &mut clap::Command,
    path: &str,
    level: usize,
    top: bool,
) {
    let _ = writeln!(out, "{} `{path}`\n", "#".repeat(level.min(6)));
    let about = command
        .get_long_about()
        .or_else(|| command.get_about())
        .map(ToString::to_string);
    if let Some(about) = about {
        let _ = writeln!(out, "{}\n", about.trim());
    }
    let usage = command.render_usage().to_string();
    let usage = usage.trim().trim_start_matches("Usage:").trim();
    // A built command's usage already names the full path; an unbuilt
    // subcommand's names only the leaf: show the full path either way.
    let usage = if top || usage.starts_with(path) {
        usage.to_owned()
    } else {
        match usage.split_once(' ') {
            Some((_, rest)) => format!("{path} {rest}"),
            None => path.to_owned(),
        }
    };
    let _ = writeln!(out, "```text\n{usage}\n```\n");

    let args: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .filter(|a| top || !a.is_global_set())
        .collect();
    let positionals: Vec<&&clap::Arg> = args.iter().filter(|a| a.is_positional()).collect();
    let options: Vec<&&clap::Arg> = args.iter().filter(|a| !a.is_positional()).collect();
    if !positionals.is_empty() {
        out.push_str("Arguments:\n\n");
        for arg in positionals {
            render_arg(out, arg);
        }
        out.push('\n');
    }
    if !options.is_empty() {
        out.push_str(if top && command.has_subcommands() {
            "Options (accepted by every subcommand where marked *global*):\n\n"
        } else {
            "Options:\n\n"
        });
        for arg in options {
            render_arg(out, arg);
        }
        out.push('\n');
    }
    if let Some(after) = command
        .get_after_long_help()
        .or_else(|| command.get_after_help())
    {
        let _ = writeln!(out, "```text\n{}\n```\n", after.to_string().trim());
    }

    let visible: Vec<String> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_owned())
        .collect();
    if !visible.is_empty() {
        out.push_str("Subcommands:\n\n");
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            let _ = writeln!(out, "- `{path} {}`: {}", sub.get_name(), about.trim());
        }
        out.push('\n');
    }
    for name in visible {
        if let Some(sub) = command.find_subcommand_mut(&name) {
            render_command(out, sub, &format!("{path} {name}"), level + 1, false);
        }
    }
}

fn render_arg(out: &mut String, arg: &clap::Arg) {
    let value_names: Vec<String> = arg
        .get_value_names()
        .map(|names| names.iter().map(|n| format!("<{n}>")).collect())
        .unwrap_or_else(|| vec![format!("<{}>", arg.get_id().as_str().to_uppercase())]);
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
    let mut spelling = Vec::new();
    if arg.is_positional() {
        spelling.push(value_names.join(" "));
    } else {
        if let Some(long) = arg.get_long() {
            let mut s = format!("--{long}");
            if takes_value {
                let _ = write!(s, " {}", value_names.join(" "));
            }
            spelling.push(s);
        }
        if let Some(short) = arg.get_short() {
            spelling.push(format!("-{short}"));
        }
    }
    let spelling = spelling
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut notes = Vec::new();
    if arg.is_required_set() {
        notes.push("required".to_owned());
    }
    if arg.is_global_set() {
        notes.push("global".to_owned());
    }
    if !arg.is_hide_default_value_set() {
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() && takes_value {
            notes.push(format!("default: `{}`", defaults.join(",")));
        }
    }
    if !arg.is_hide_possible_values_set() && takes_value {
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        if !values.is_empty() {
            notes.push(format!("one of {}", values.join(", ")));
        }
    }
    if let Some(env) = arg.get_env() {
        notes.push(format!("env: `{}`", env.to_string_lossy()));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    let _ = writeln!(out, "- {spelling}: {help}{notes}");
}
