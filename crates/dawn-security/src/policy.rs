//! Authorization policy: which trust level may do what.
//!
//! A [`Policy`] gives every [`Permission`] a minimum [`TrustLevel`]; a peer is
//! allowed when its level is at least the minimum (levels are ordered, see
//! [`crate::trust`]). Per-agent and per-tool minimums refine it.
//!
//! # Defaults
//!
//! | permission                      | minimum   | untrusted | unknown | verified | trusted | bootstrap |
//! |---------------------------------|-----------|-----------|---------|----------|---------|-----------|
//! | `connect`                       | unknown   | no        | yes     | yes      | yes     | yes       |
//! | `discover` (send/receive records)| unknown  | no        | yes     | yes      | yes     | yes       |
//! | `list_tools`                    | unknown   | no        | yes     | yes      | yes     | yes       |
//! | `call_tool` (read-only tool)    | unknown   | no        | yes     | yes      | yes     | yes       |
//! | `call_tool` (any other tool)    | trusted   | no        | no      | no       | yes     | yes       |
//! | `read_resource`                 | unknown   | no        | yes     | yes      | yes     | yes       |
//! | `get_prompt`                    | unknown   | no        | yes     | yes      | yes     | yes       |
//!
//! So an unknown peer can connect, discover, list, read and call tools that
//! declare themselves read-only, but cannot call anything that may change
//! state. A tool counts as read-only only if its agent says so (MCP's
//! `readOnlyHint`); callers must pass `read_only: false` for a tool without
//! the hint. `untrusted` peers are refused everything, whatever the
//! configuration says, and no minimum may be configured as `untrusted`.
//!
//! # How the minimum for one request is found
//!
//! 1. A peer at `untrusted` is denied ([`DecisionRule::Untrusted`]).
//! 2. For a tool call, if the configuration names that exact tool
//!    (`agents.<agent>.tools.<tool>`), that minimum is used alone: an operator
//!    naming a tool may loosen or tighten it ([`DecisionRule::ToolMinimum`]).
//! 3. Otherwise the minimum is the highest of: the permission's minimum
//!    (`min_level.*`), the agent's configured `min_level` (for agent-scoped
//!    permissions), and any minimum the agent declares in code
//!    ([`Requirement::declared_min_level`]). The rule that set the highest
//!    one is reported.
//!
//! `connect` and `discover` are not about an agent; agent and tool settings do
//! not apply to them.
//!
//! # What the remote learns
//!
//! A [`Decision`] carries a short stable `reason_code` ("allowed" or
//! "not_permitted") that may be sent to the remote peer (with JSON-RPC error
//! -32001), and a `detail` for the audit log and local logs only: it names
//! levels and rules, which a remote peer should not learn.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::trust::TrustLevel;

/// The reason code of an allowed request.
pub const REASON_ALLOWED: &str = "allowed";

/// The reason code of a refused request; safe to send to the remote.
pub const REASON_NOT_PERMITTED: &str = "not_permitted";

/// Something a peer asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Open (or keep) a connection.
    Connect,
    /// Send or receive mesh registry records.
    Discover,
    /// List an agent's tools, resources and prompts.
    ListTools,
    /// Call a tool. `read_only` is the tool's declared read-only hint (false
    /// when the tool declares nothing).
    CallTool {
        /// Whether the tool declares that it changes nothing.
        read_only: bool,
    },
    /// Read a resource.
    ReadResource,
    /// Get a prompt.
    GetPrompt,
}

impl Permission {
    /// A stable snake_case name, for logs, metrics and the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Connect => "connect",
            Permission::Discover => "discover",
            Permission::ListTools => "list_tools",
            Permission::CallTool { read_only: true } => "call_read_only_tool",
            Permission::CallTool { read_only: false } => "call_tool",
            Permission::ReadResource => "read_resource",
            Permission::GetPrompt => "get_prompt",
        }
    }

    /// Whether agent and tool settings apply to this permission.
    fn is_agent_scoped(self) -> bool {
        !matches!(self, Permission::Connect | Permission::Discover)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a request is about, and any minimum its agent declares in code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requirement<'a> {
    /// The agent addressed, if any.
    pub agent: Option<&'a str>,
    /// The tool called, if any.
    pub tool: Option<&'a str>,
    /// A minimum level the agent itself requires for this request (for
    /// example a built-in tool that must stay `trusted`-only). Configuration
    /// naming the exact tool overrides it.
    pub declared_min_level: Option<TrustLevel>,
}

impl<'a> Requirement<'a> {
    /// No agent, no tool, no declared minimum (for `connect`, `discover`).
    pub fn none() -> Self {
        Requirement::default()
    }

    /// A request to `agent` as a whole (listing, resources, prompts).
    pub fn agent(agent: &'a str) -> Self {
        Requirement {
            agent: Some(agent),
            ..Requirement::default()
        }
    }

    /// A call of `tool` on `agent`.
    pub fn tool(agent: &'a str, tool: &'a str) -> Self {
        Requirement {
            agent: Some(agent),
            tool: Some(tool),
            declared_min_level: None,
        }
    }

    /// The same requirement with a minimum declared by the agent's code.
    pub fn with_declared_min_level(mut self, level: TrustLevel) -> Self {
        self.declared_min_level = Some(level);
        self
    }
}

/// Which rule decided a [`Decision`]; stable snake_case names via
/// [`DecisionRule::as_str`], suitable as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionRule {
    /// The peer is `untrusted`.
    Untrusted,
    /// The peer has no trust record and `security.reject_unknown` is true.
    RejectUnknown,
    /// The permission's minimum (`min_level.*`).
    PermissionMinimum,
    /// The agent's configured `min_level`.
    AgentMinimum,
    /// The configured minimum of this exact tool.
    ToolMinimum,
    /// A minimum declared by the agent in code.
    DeclaredMinimum,
}

impl DecisionRule {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionRule::Untrusted => "untrusted",
            DecisionRule::RejectUnknown => "reject_unknown",
            DecisionRule::PermissionMinimum => "permission_minimum",
            DecisionRule::AgentMinimum => "agent_minimum",
            DecisionRule::ToolMinimum => "tool_minimum",
            DecisionRule::DeclaredMinimum => "declared_minimum",
        }
    }
}

impl fmt::Display for DecisionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of an authorization check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// [`REASON_ALLOWED`] or [`REASON_NOT_PERMITTED`]: the only reason a
    /// remote peer should see.
    pub reason_code: &'static str,
    /// The rule that decided.
    pub rule: DecisionRule,
    /// The peer's level at the time of the decision.
    pub level: TrustLevel,
    /// The minimum level the request needed.
    pub required: TrustLevel,
    /// A sentence for the audit log and local logs; never send it to the
    /// remote.
    pub detail: String,
}

impl Decision {
    pub(crate) fn deny(
        level: TrustLevel,
        required: TrustLevel,
        rule: DecisionRule,
        detail: String,
    ) -> Decision {
        Decision {
            allowed: false,
            reason_code: REASON_NOT_PERMITTED,
            rule,
            level,
            required,
            detail,
        }
    }

    /// The message for the remote peer: "not permitted" when denied.
    pub fn public_message(&self) -> &'static str {
        if self.allowed {
            "allowed"
        } else {
            "not permitted"
        }
    }
}

/// Minimum levels per permission (`security.policy.min_level`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PermissionMinimums {
    /// Open or keep a connection. Default `unknown`.
    pub connect: TrustLevel,
    /// Send and receive registry records. Default `unknown`.
    pub discover: TrustLevel,
    /// List an agent's tools, resources and prompts. Default `unknown`.
    pub list_tools: TrustLevel,
    /// Call a tool that declares itself read-only. Default `unknown`.
    pub call_read_only_tools: TrustLevel,
    /// Call any other tool (may change state). Default `trusted`.
    pub call_tools: TrustLevel,
    /// Read a resource. Default `unknown`.
    pub read_resources: TrustLevel,
    /// Get a prompt. Default `unknown`.
    pub get_prompts: TrustLevel,
}

impl Default for PermissionMinimums {
    fn default() -> Self {
        PermissionMinimums {
            connect: TrustLevel::Unknown,
            discover: TrustLevel::Unknown,
            list_tools: TrustLevel::Unknown,
            call_read_only_tools: TrustLevel::Unknown,
            call_tools: TrustLevel::Trusted,
            read_resources: TrustLevel::Unknown,
            get_prompts: TrustLevel::Unknown,
        }
    }
}

impl PermissionMinimums {
    fn for_permission(&self, permission: Permission) -> (TrustLevel, &'static str) {
        match permission {
            Permission::Connect => (self.connect, "connect"),
            Permission::Discover => (self.discover, "discover"),
            Permission::ListTools => (self.list_tools, "list_tools"),
            Permission::CallTool { read_only: true } => {
                (self.call_read_only_tools, "call_read_only_tools")
            }
            Permission::CallTool { read_only: false } => (self.call_tools, "call_tools"),
            Permission::ReadResource => (self.read_resources, "read_resources"),
            Permission::GetPrompt => (self.get_prompts, "get_prompts"),
        }
    }

    fn entries(&self) -> [(&'static str, TrustLevel); 7] {
        [
            ("connect", self.connect),
            ("discover", self.discover),
            ("list_tools", self.list_tools),
            ("call_read_only_tools", self.call_read_only_tools),
            ("call_tools", self.call_tools),
            ("read_resources", self.read_resources),
            ("get_prompts", self.get_prompts),
        ]
    }
}

/// Settings for one agent (`security.policy.agents.<agent>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentPolicyConfig {
    /// A minimum level for everything about this agent (listing, calls,
    /// resources, prompts). It can only raise the permission minimums.
    pub min_level: Option<TrustLevel>,
    /// Minimum levels for single tools of this agent. Each replaces every
    /// other minimum for calls of that tool, so it can also loosen one.
    pub tools: BTreeMap<String, TrustLevel>,
}

/// The policy's configuration (`security.policy`), for embedding in the
/// node's config schema. Unknown keys are errors; every key has a default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Minimum level per permission.
    pub min_level: PermissionMinimums,
    /// Per-agent (and per-tool) settings, by agent id.
    pub agents: BTreeMap<String, AgentPolicyConfig>,
}

/// An invalid [`PolicyConfig`]. Messages name the config key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// A minimum set to `untrusted`, which would admit untrusted peers.
    #[error(
        "{key} is \"untrusted\", but untrusted peers are always refused; the lowest minimum \
         is \"unknown\""
    )]
    UntrustedMinimum {
        /// The config key.
        key: String,
    },
    /// Read-only tools would need more than state-changing ones.
    #[error(
        "security.policy.min_level.call_read_only_tools ({read_only}) is stricter than \
         security.policy.min_level.call_tools ({any}); read-only tools cannot need more than \
         other tools"
    )]
    ReadOnlyStricterThanAny {
        /// The read-only minimum.
        read_only: TrustLevel,
        /// The minimum for any tool.
        any: TrustLevel,
    },
    /// An empty agent id or tool name.
    #[error("{key} has an empty name")]
    EmptyName {
        /// The config key holding the empty name.
        key: String,
    },
}

/// A validated authorization policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    config: PolicyConfig,
}

impl Default for Policy {
    /// The documented defaults (see the [module docs](self)).
    fn default() -> Self {
        Policy {
            config: PolicyConfig::default(),
        }
    }
}

impl Policy {
    /// Validates `config` into a policy.
    pub fn new(config: PolicyConfig) -> Result<Policy, PolicyError> {
        for (name, level) in config.min_level.entries() {
            if level == TrustLevel::Untrusted {
                return Err(PolicyError::UntrustedMinimum {
                    key: format!("security.policy.min_level.{name}"),
                });
            }
        }
        let minimums = &config.min_level;
        if minimums.call_read_only_tools > minimums.call_tools {
            return Err(PolicyError::ReadOnlyStricterThanAny {
                read_only: minimums.call_read_only_tools,
                any: minimums.call_tools,
            });
        }
        for (agent, settings) in &config.agents {
            if agent.is_empty() {
                return Err(PolicyError::EmptyName {
                    key: "security.policy.agents".to_owned(),
                });
            }
            if settings.min_level == Some(TrustLevel::Untrusted) {
                return Err(PolicyError::UntrustedMinimum {
                    key: format!("security.policy.agents.{agent}.min_level"),
                });
            }
            for (tool, level) in &settings.tools {
                if tool.is_empty() {
                    return Err(PolicyError::EmptyName {
                        key: format!("security.policy.agents.{agent}.tools"),
                    });
                }
                if *level == TrustLevel::Untrusted {
                    return Err(PolicyError::UntrustedMinimum {
                        key: format!("security.policy.agents.{agent}.tools.{tool}"),
                    });
                }
            }
        }
        Ok(Policy { config })
    }

    /// The configuration this policy was built from.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Decides whether a peer at `level` may do `permission` on
    /// `requirement`'s target (see the [module docs](self) for the rules).
    pub fn decide(
        &self,
        level: TrustLevel,
        permission: Permission,
        requirement: &Requirement<'_>,
    ) -> Decision {
        let target = describe_target(permission, requirement);
        if level == TrustLevel::Untrusted {
            return Decision::deny(
                level,
                TrustLevel::Unknown,
                DecisionRule::Untrusted,
                format!("peer is untrusted; untrusted peers are refused everything ({target})"),
            );
        }

        let (required, rule, key) = self.minimum(permission, requirement);
        let allowed = level >= required;
        let detail = if allowed {
            format!("level {level} meets the minimum {required} for {target} ({key})")
        } else {
            format!("level {level} is below the minimum {required} for {target} ({key})")
        };
        Decision {
            allowed,
            reason_code: if allowed {
                REASON_ALLOWED
            } else {
                REASON_NOT_PERMITTED
            },
            rule,
            level,
            required,
            detail,
        }
    }

    /// Whether a peer at `level` may do `permission` on `requirement`'s
    /// target: exactly [`Decision::allowed`] of [`Self::decide`], without
    /// building the decision's texts (for the per-call fast path).
    pub fn permits(
        &self,
        level: TrustLevel,
        permission: Permission,
        requirement: &Requirement<'_>,
    ) -> bool {
        level != TrustLevel::Untrusted && level >= self.minimum_level(permission, requirement).0
    }

    /// The minimum level for a request, the rule that set it and the key (or
    /// source) responsible.
    fn minimum(
        &self,
        permission: Permission,
        requirement: &Requirement<'_>,
    ) -> (TrustLevel, DecisionRule, String) {
        let (level, rule) = self.minimum_level(permission, requirement);
        let agent = requirement.agent.unwrap_or_default();
        let key = match rule {
            DecisionRule::ToolMinimum => format!(
                "security.policy.agents.{agent}.tools.{}",
                requirement.tool.unwrap_or_default()
            ),
            DecisionRule::AgentMinimum => format!("security.policy.agents.{agent}.min_level"),
            DecisionRule::DeclaredMinimum => "declared by the agent".to_owned(),
            _ => format!(
                "security.policy.min_level.{}",
                self.config.min_level.for_permission(permission).1
            ),
        };
        (level, rule, key)
    }

    /// The minimum level for a request and the rule that set it.
    fn minimum_level(
        &self,
        permission: Permission,
        requirement: &Requirement<'_>,
    ) -> (TrustLevel, DecisionRule) {
        let agent_settings = requirement
            .agent
            .filter(|_| permission.is_agent_scoped())
            .and_then(|agent| self.config.agents.get(agent));

        if let (Permission::CallTool { .. }, Some(settings), Some(tool)) =
            (permission, agent_settings, requirement.tool)
            && let Some(level) = settings.tools.get(tool)
        {
            return (*level, DecisionRule::ToolMinimum);
        }

        let (base, _) = self.config.min_level.for_permission(permission);
        let mut best = (base, DecisionRule::PermissionMinimum);
        if let Some(settings) = agent_settings
            && let Some(level) = settings.min_level
            && level > best.0
        {
            best = (level, DecisionRule::AgentMinimum);
        }
        if permission.is_agent_scoped()
            && let Some(level) = requirement.declared_min_level
            && level > best.0
        {
            best = (level, DecisionRule::DeclaredMinimum);
        }
        best
    }
}

/// "call_tool on agent files tool delete", for details.
fn describe_target(permission: Permission, requirement: &Requirement<'_>) -> String {
    let mut text = permission.name().to_owned();
    if permission.is_agent_scoped() {
        if let Some(agent) = requirement.agent {
            text.push_str(" on agent ");
            text.push_str(agent);
        }
        if let Some(tool) = requirement.tool {
            text.push_str(" tool ");
            text.push_str(tool);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_names_are_stable() {
        assert_eq!(
            Permission::CallTool { read_only: true }.name(),
            "call_read_only_tool"
        );
        assert_eq!(
            Permission::CallTool { read_only: false }.to_string(),
            "call_tool"
        );
        assert_eq!(DecisionRule::RejectUnknown.as_str(), "reject_unknown");
    }

    #[test]
    fn details_name_the_rule_but_reason_code_does_not() {
        let policy = Policy::default();
        let decision = policy.decide(
            TrustLevel::Unknown,
            Permission::CallTool { read_only: false },
            &Requirement::tool("files", "delete"),
        );
        assert!(!decision.allowed);
        assert_eq!(decision.reason_code, "not_permitted");
        assert_eq!(decision.public_message(), "not permitted");
        assert_eq!(
            decision.detail,
            "level unknown is below the minimum trusted for call_tool on agent files tool \
             delete (security.policy.min_level.call_tools)"
        );
    }

    #[test]
    fn permits_agrees_with_decide_and_keys_name_each_rule() {
        let mut config = PolicyConfig::default();
        config.agents.insert(
            "files".to_owned(),
            AgentPolicyConfig {
                min_level: Some(TrustLevel::Verified),
                tools: BTreeMap::from([
                    ("delete".to_owned(), TrustLevel::Bootstrap),
                    ("stat".to_owned(), TrustLevel::Unknown),
                ]),
            },
        );
        let policy = Policy::new(config).unwrap();
        let permissions = [
            Permission::Connect,
            Permission::Discover,
            Permission::ListTools,
            Permission::CallTool { read_only: true },
            Permission::CallTool { read_only: false },
            Permission::ReadResource,
            Permission::GetPrompt,
        ];
        let requirements = [
            Requirement::none(),
            Requirement::agent("files"),
            Requirement::tool("files", "delete"),
            Requirement::tool("files", "stat"),
            Requirement::tool("files", "read"),
            Requirement::tool("system", "echo"),
            Requirement::tool("system", "echo").with_declared_min_level(TrustLevel::Trusted),
        ];
        for level in TrustLevel::ALL {
            for permission in permissions {
                for requirement in &requirements {
                    let decision = policy.decide(level, permission, requirement);
                    assert_eq!(
                        policy.permits(level, permission, requirement),
                        decision.allowed,
                        "{level} {permission} {requirement:?}: {}",
                        decision.detail
                    );
                }
            }
        }
        let key = |permission, requirement: &Requirement<'_>| {
            policy
                .decide(TrustLevel::Trusted, permission, requirement)
                .detail
        };
        let any = Permission::CallTool { read_only: false };
        assert!(
            key(any, &Requirement::tool("files", "delete"))
                .ends_with("(security.policy.agents.files.tools.delete)")
        );
        assert!(
            key(Permission::ListTools, &Requirement::agent("files"))
                .ends_with("(security.policy.agents.files.min_level)")
        );
        assert!(
            key(any, &Requirement::tool("files", "read"))
                .ends_with("(security.policy.min_level.call_tools)")
        );
        assert!(
            key(Permission::ListTools, &Requirement::agent("system"))
                .ends_with("(security.policy.min_level.list_tools)")
        );
        assert!(
            key(
                Permission::CallTool { read_only: true },
                &Requirement::tool("system", "x").with_declared_min_level(TrustLevel::Bootstrap)
            )
            .ends_with("(declared by the agent)")
        );
    }
}
