//! The authorization policy: the documented defaults for every level and
//! permission, per-agent and per-tool minimums, and configuration parsing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dawn_security::{
    DecisionRule, Permission, Policy, PolicyConfig, PolicyError, Requirement, TrustLevel,
};

const PERMISSIONS: [Permission; 7] = [
    Permission::Connect,
    Permission::Discover,
    Permission::ListTools,
    Permission::CallTool { read_only: true },
    Permission::CallTool { read_only: false },
    Permission::ReadResource,
    Permission::GetPrompt,
];

/// The defaults table of the `policy` module docs, row by row:
/// untrusted, unknown, verified, trusted, bootstrap.
fn expected_default(permission: Permission) -> [bool; 5] {
    match permission {
        Permission::CallTool { read_only: false } => [false, false, false, true, true],
        _ => [false, true, true, true, true],
    }
}

#[test]
fn default_table_for_every_level_and_permission() {
    let policy = Policy::default();
    for permission in PERMISSIONS {
        let expected = expected_default(permission);
        for (level, allowed) in TrustLevel::ALL.into_iter().zip(expected) {
            let requirement = Requirement::tool("any-agent", "any-tool");
            let decision = policy.decide(level, permission, &requirement);
            assert_eq!(
                decision.allowed, allowed,
                "{level} {permission}: {}",
                decision.detail
            );
            assert_eq!(decision.level, level);
            let code = if allowed { "allowed" } else { "not_permitted" };
            assert_eq!(decision.reason_code, code);
        }
    }
}

#[test]
fn untrusted_is_refused_whatever_the_configuration() {
    let config: PolicyConfig =
        serde_json::from_str(r#"{"agents": {"open": {"tools": {"everything": "unknown"}}}}"#)
            .unwrap();
    let policy = Policy::new(config).unwrap();
    let decision = policy.decide(
        TrustLevel::Untrusted,
        Permission::CallTool { read_only: false },
        &Requirement::tool("open", "everything"),
    );
    assert!(!decision.allowed);
    assert_eq!(decision.rule, DecisionRule::Untrusted);

    for json in [
        r#"{"min_level": {"connect": "untrusted"}}"#,
        r#"{"agents": {"a": {"min_level": "untrusted"}}}"#,
        r#"{"agents": {"a": {"tools": {"t": "untrusted"}}}}"#,
    ] {
        let config: PolicyConfig = serde_json::from_str(json).unwrap();
        let error = Policy::new(config).unwrap_err();
        assert!(
            matches!(error, PolicyError::UntrustedMinimum { .. }),
            "{json}: {error:?}"
        );
        assert!(error.to_string().contains("security.policy."), "{error}");
    }
}

#[test]
fn per_tool_minimum_overrides_everything_else() {
    let config: PolicyConfig = serde_json::from_str(
        r#"{
            "agents": {
                "files": {
                    "min_level": "verified",
                    "tools": {"append_note": "verified", "read_secrets": "trusted"}
                }
            }
        }"#,
    )
    .unwrap();
    let policy = Policy::new(config).unwrap();
    let write = Permission::CallTool { read_only: false };
    let read = Permission::CallTool { read_only: true };

    // Loosened: a state-changing tool a verified peer may call.
    let decision = policy.decide(
        TrustLevel::Verified,
        write,
        &Requirement::tool("files", "append_note").with_declared_min_level(TrustLevel::Trusted),
    );
    assert!(decision.allowed, "{}", decision.detail);
    assert_eq!(decision.rule, DecisionRule::ToolMinimum);
    assert!(
        decision
            .detail
            .contains("security.policy.agents.files.tools.append_note")
    );

    // Tightened: a read-only tool that needs trusted.
    let decision = policy.decide(
        TrustLevel::Verified,
        read,
        &Requirement::tool("files", "read_secrets"),
    );
    assert!(!decision.allowed);
    assert_eq!(decision.rule, DecisionRule::ToolMinimum);
    assert_eq!(decision.required, TrustLevel::Trusted);

    // The agent minimum raises everything else about the agent.
    let decision = policy.decide(
        TrustLevel::Unknown,
        read,
        &Requirement::tool("files", "list"),
    );
    assert!(!decision.allowed);
    assert_eq!(decision.rule, DecisionRule::AgentMinimum);
    let decision = policy.decide(
        TrustLevel::Unknown,
        Permission::ListTools,
        &Requirement::agent("files"),
    );
    assert!(!decision.allowed);
    // ...but cannot lower the permission minimum for state-changing calls.
    let decision = policy.decide(
        TrustLevel::Verified,
        write,
        &Requirement::tool("files", "delete"),
    );
    assert!(!decision.allowed);
    assert_eq!(decision.rule, DecisionRule::PermissionMinimum);
    // Other agents are unaffected; agent settings do not apply to connect.
    assert!(
        policy
            .decide(
                TrustLevel::Unknown,
                read,
                &Requirement::tool("echo", "echo")
            )
            .allowed
    );
    assert!(
        policy
            .decide(
                TrustLevel::Unknown,
                Permission::Connect,
                &Requirement::agent("files")
            )
            .allowed
    );
}

#[test]
fn declared_minimum_raises_but_config_for_the_tool_wins() {
    let policy = Policy::default();
    let read = Permission::CallTool { read_only: true };
    let requirement =
        Requirement::tool("system", "peers").with_declared_min_level(TrustLevel::Trusted);
    let decision = policy.decide(TrustLevel::Verified, read, &requirement);
    assert!(!decision.allowed);
    assert_eq!(decision.rule, DecisionRule::DeclaredMinimum);
    assert!(
        policy
            .decide(TrustLevel::Trusted, read, &requirement)
            .allowed
    );
    // A declared minimum below the permission minimum changes nothing.
    let low = Requirement::tool("system", "shutdown").with_declared_min_level(TrustLevel::Unknown);
    assert!(
        !policy
            .decide(
                TrustLevel::Unknown,
                Permission::CallTool { read_only: false },
                &low
            )
            .allowed
    );
}

#[test]
fn bootstrap_meets_every_trusted_minimum() {
    let policy = Policy::default();
    for permission in PERMISSIONS {
        let trusted = policy.decide(TrustLevel::Trusted, permission, &Requirement::none());
        let bootstrap = policy.decide(TrustLevel::Bootstrap, permission, &Requirement::none());
        assert_eq!(trusted.allowed, bootstrap.allowed, "{permission}");
    }
}

#[test]
fn config_defaults_unknown_keys_and_consistency() {
    let config: PolicyConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config, PolicyConfig::default());
    assert_eq!(config.min_level.call_tools, TrustLevel::Trusted);
    assert_eq!(config.min_level.connect, TrustLevel::Unknown);

    let partial: PolicyConfig =
        serde_json::from_str(r#"{"min_level": {"call_tools": "verified"}}"#).unwrap();
    assert_eq!(partial.min_level.call_tools, TrustLevel::Verified);
    assert_eq!(partial.min_level.discover, TrustLevel::Unknown);

    for json in [
        r#"{"min_levels": {}}"#,
        r#"{"min_level": {"call_tool": "trusted"}}"#,
        r#"{"agents": {"a": {"minimum": "trusted"}}}"#,
    ] {
        assert!(
            serde_json::from_str::<PolicyConfig>(json).is_err(),
            "{json}"
        );
    }
    let bad_level = serde_json::from_str::<PolicyConfig>(r#"{"min_level": {"connect": "root"}}"#)
        .unwrap_err()
        .to_string();
    assert!(bad_level.contains("root"), "{bad_level}");

    let inverted: PolicyConfig = serde_json::from_str(
        r#"{"min_level": {"call_read_only_tools": "trusted", "call_tools": "verified"}}"#,
    )
    .unwrap();
    let error = Policy::new(inverted).unwrap_err();
    assert!(
        matches!(error, PolicyError::ReadOnlyStricterThanAny { .. }),
        "{error:?}"
    );

    let round_trip: PolicyConfig =
        serde_json::from_str(&serde_json::to_string(&PolicyConfig::default()).unwrap()).unwrap();
    assert_eq!(round_trip, PolicyConfig::default());
}
