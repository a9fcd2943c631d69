//! `dawn-cli health`: the node's health report, with an exit status a
//! container `HEALTHCHECK` or a script can use.

use std::{fmt::Write as _, process::ExitCode, time::Duration};

use serde_json::{Value, json};

use crate::{api_client::ApiClient, cli::HealthArgs, output};

/// Fetches `/health` (and `/health/ready`), prints them, and returns 0 when
/// the node is healthy or degraded (with `--ready`: when it is ready), 1
/// otherwise. A node that cannot be reached is an error (status 1 too).
pub async fn run(client: &ApiClient, args: &HealthArgs, json: bool) -> anyhow::Result<ExitCode> {
    let timeout = args.timeout;
    let (ready_status, ready) = client.get_with_status("health/ready", timeout).await?;
    let (health_status, health) = if args.ready {
        (None, None)
    } else {
        let (status, body) = client.get_with_status("health", timeout).await?;
        (Some(status), Some(body))
    };
    let ok = match health_status {
        None => ready_status == 200,
        Some(status) => status == 200,
    };
    if json {
        let value = match health {
            Some(mut health) => {
                if let Some(map) = health.as_object_mut() {
                    map.insert("ready".into(), ready);
                }
                health
            }
            None => json!({ "ready": ready }),
        };
        output::stdout(&output::json(&value))?;
    } else {
        output::stdout(&render(health.as_ref(), &ready))?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn human_duration(secs: u64) -> String {
    let d = Duration::from_secs(secs);
    let (h, m, s) = (d.as_secs() / 3600, d.as_secs() / 60 % 60, d.as_secs() % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s:02}s"),
        _ => format!("{h}h {m:02}m"),
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("?")
}

/// The report as people read it.
fn render(health: Option<&Value>, ready: &Value) -> String {
    let mut out = String::new();
    if let Some(h) = health {
        let _ = writeln!(out, "status:   {}", text(h, "status"));
    }
    let is_ready = ready.get("ready").and_then(Value::as_bool).unwrap_or(false);
    let reasons: Vec<&str> = ready
        .get("reasons")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if is_ready {
        let _ = writeln!(out, "ready:    yes");
    } else {
        let _ = writeln!(out, "ready:    no ({})", reasons.join("; "));
    }
    let Some(h) = health else {
        return out;
    };
    let _ = writeln!(out, "node:     {}", text(h, "node_id"));
    let _ = writeln!(out, "version:  {}", text(h, "version"));
    let uptime = h.get("uptime_secs").and_then(Value::as_u64).unwrap_or(0);
    let _ = writeln!(out, "uptime:   {}", human_duration(uptime));
    let checks = h
        .get("checks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if checks.is_empty() {
        return out;
    }
    let width = checks
        .iter()
        .map(|c| text(c, "name").len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "\n{:<width$}  {:<9}  {:>7}  MESSAGE",
        "CHECK", "STATUS", "TIME"
    );
    for c in &checks {
        let ms = c.get("duration_ms").and_then(Value::as_u64).unwrap_or(0);
        let _ = writeln!(
            out,
            "{:<width$}  {:<9}  {:>4} ms  {}",
            text(c, "name"),
            text(c, "status"),
            ms,
            text(c, "message")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_checks_and_readiness() {
        let health = json!({
            "status": "degraded", "version": "0.1.0", "node_id": "12D3KooWX", "uptime_secs": 3725,
            "checks": [
                {"name": "store", "status": "healthy", "message": "database read and write ok", "duration_ms": 2, "critical": true},
                {"name": "peers", "status": "degraded", "message": "0 peers connected (minimum 1)", "duration_ms": 0, "critical": false}
            ]
        });
        let ready = json!({"ready": false, "reasons": ["bootstrap: waiting"], "conditions": []});
        let text = render(Some(&health), &ready);
        assert!(text.contains("status:   degraded"), "{text}");
        assert!(text.contains("ready:    no (bootstrap: waiting)"), "{text}");
        assert!(text.contains("uptime:   1h 02m"), "{text}");
        assert!(text.contains("peers  degraded"), "{text}");
        assert!(text.contains("0 peers connected (minimum 1)"), "{text}");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(61), "1m 01s");
    }
}
