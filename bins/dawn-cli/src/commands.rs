//! The commands that talk to a running node: fetch, then print a table or
//! the API's JSON.

use std::process::ExitCode;

use serde_json::{Map, Value};

use crate::{
    api_client::{self, Agents, ApiClient, Peers, Status},
    bench,
    cli::Command,
    output, security_commands,
};

/// Runs one command; the exit code says whether it succeeded.
pub async fn run(command: Command, client: &ApiClient, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        Command::Status => {
            let value = client.status().await?;
            show(json, &value, |v| {
                Ok(output::status(&api_client::decode::<Status>(
                    "/api/v1/status",
                    v,
                )?))
            })?;
        }
        Command::Peers => {
            let value = client.peers().await?;
            show(json, &value, |v| {
                Ok(output::peers(&api_client::decode::<Peers>(
                    "/api/v1/peers",
                    v,
                )?))
            })?;
        }
        Command::Agents { all } => {
            let mut value = client.agents().await?;
            if !all && let Some(map) = value.as_object_mut() {
                map.remove("remote");
            }
            show(json, &value, |v| {
                Ok(output::agents(
                    &api_client::decode::<Agents>("/api/v1/agents", v)?,
                    all,
                ))
            })?;
        }
        Command::Tools { agent: Some(agent) } => {
            let value = client.tools(&agent).await?;
            show(json, &value, |v| Ok(output::tools(std::slice::from_ref(v))))?;
        }
        Command::Tools { agent: None } => {
            let agents: Agents = api_client::decode("/api/v1/agents", &client.agents().await?)?;
            let mut answers = Vec::with_capacity(agents.local.len());
            for agent in &agents.local {
                answers.push(client.tools(&agent.id).await?);
            }
            let value = Value::Array(answers);
            show(json, &value, |v| {
                Ok(output::tools(
                    v.as_array().map(Vec::as_slice).unwrap_or_default(),
                ))
            })?;
        }
        Command::Call {
            agent,
            tool,
            args,
            timeout,
        } => {
            let arguments = args.unwrap_or_else(Map::new);
            let answer = client.call(&agent, &tool, &arguments, timeout).await?;
            let result = answer.get("result").unwrap_or(&Value::Null);
            if json {
                output::stdout(&output::json(&answer))?;
                return Ok(exit_for(output::is_error_result(result)));
            }
            let rendered = output::call_result(result);
            if rendered.is_error {
                let text = if rendered.text.trim().is_empty() {
                    format!("error: {agent}/{tool} reported an error without a message")
                } else {
                    rendered.text
                };
                output::stderr(&text)?;
            } else {
                output::stdout(&rendered.text)?;
            }
            return Ok(exit_for(rendered.is_error));
        }
        Command::Bench(args) => {
            let report = bench::run(client, &args).await?;
            if json {
                output::stdout(&output::json(&report.to_json()))?;
            } else {
                output::stdout(&report.summary())?;
            }
            return Ok(exit_for(report.ok == 0));
        }
        Command::Mcp(_) => {
            // `main` runs the bridge itself: it owns stdin/stdout and its runtime.
            anyhow::bail!("`mcp` is not an API command");
        }
        Command::Backup(_) => {
            // `main` runs it: it works without a running node too.
            anyhow::bail!("`backup` is not an API command");
        }
        Command::Health(args) => return crate::health_cmd::run(client, &args, json).await,
        Command::VerifyRelease(_) | Command::GenerateAssets { .. } => {
            // `main` runs them offline, before any API client exists.
            anyhow::bail!("not an API command");
        }
        Command::Trust(command) => security_commands::trust(command, client, json).await?,
        Command::Token(_) => security_commands::rotate_online(client, json).await?,
        Command::Audit(_) | Command::Identity(_) => {
            // `main` runs them on the data directory (security_commands::run_offline).
            anyhow::bail!("`audit` and `identity` are not API commands");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn exit_for(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints `value` as pretty JSON, or as the table `render` makes of it.
fn show(
    json: bool,
    value: &Value,
    render: impl FnOnce(&Value) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    if json {
        output::stdout(&output::json(value))
    } else {
        output::stdout(&render(value)?)
    }
}
