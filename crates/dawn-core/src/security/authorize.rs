//! Authorizing one JSON-RPC request from a peer: which permission it needs,
//! the decision, the metric and the audit record.

use dawn_resilience::ErrorKind;
use dawn_security::{
    AuditDecision, AuditEvent, AuditRecord, DecisionRule, Permission, Requirement, TrustLevel,
};
use dawn_transport::PeerId;
use serde_json::Value;

use super::NodeSecurity;
use crate::{
    agent_table::AgentTable,
    jsonrpc::{CallError, Request},
};

/// Agents built into the node. Their tools that do not declare themselves
/// read-only need `trusted` unless `security.policy.agents.<agent>.tools`
/// names the tool.
const BUILT_IN_AGENTS: [&str; 2] = [crate::system_agent::SYSTEM_AGENT_ID, "conformance"];

/// The node-level method listing every local agent (`node/inbound.rs`).
const NODE_AGENTS_METHOD: &str = "dawn/agents";
/// The node-level method watching a resource (`node/resources.rs`).
const WATCH_METHOD: &str = "dawn/watch_resource";

/// The message a refused peer sees: nothing about levels or rules.
pub(crate) const NOT_PERMITTED: &str = "not permitted";

/// What a request asks for: its permission (with `read_only` still to be
/// resolved for tool calls) and the tool, prompt or resource it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MethodClass {
    /// Needs this permission.
    Permission(Permission),
    /// A tool call: read-only or not depends on the tool.
    ToolCall,
}

/// Maps a JSON-RPC method to what it needs. Methods the node does not know
/// need the permission of state-changing calls: an agent might do anything
/// with them.
pub(crate) fn method_permission(method: &str, params: Option<&Value>) -> MethodClass {
    use MethodClass::Permission as P;
    match method {
        "tools/call" => MethodClass::ToolCall,
        "ping" | "initialize" | "logging/setLevel" => P(Permission::Connect),
        m if m.starts_with("notifications/") => P(Permission::Connect),
        "tools/list"
        | "resources/list"
        | "resources/templates/list"
        | "prompts/list"
        | "dawn/describe"
        | NODE_AGENTS_METHOD => P(Permission::ListTools),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" | WATCH_METHOD => {
            P(Permission::ReadResource)
        }
        "prompts/get" => P(Permission::GetPrompt),
        // Registry anti-entropy: receiving and sending registry records.
        crate::registry::SYNC_METHOD => P(Permission::Discover),
        "completion/complete" => {
            let reference = params
                .and_then(|p| p.get("ref"))
                .and_then(|r| r.get("type"))
                .and_then(Value::as_str);
            if reference == Some("ref/resource") {
                P(Permission::ReadResource)
            } else {
                P(Permission::GetPrompt)
            }
        }
        _ => P(Permission::CallTool { read_only: false }),
    }
}

/// The name a request is about (tool, prompt, resource URI), for the
/// requirement and the audit record.
fn target_name<'a>(method: &str, params: Option<&'a Value>) -> Option<&'a str> {
    let params = params?;
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        WATCH_METHOD => "uri",
        _ => return None,
    };
    params.get(key).and_then(Value::as_str)
}

impl NodeSecurity {
    /// Decides whether `peer` may send `request` to local `agent` (or to the
    /// node itself). Allowed: `Ok`, audited for state-changing calls (or all,
    /// per `security.audit.allowed`). Refused: the error to send back
    /// (-32001 `not permitted`), counted in `dawn_security_denials_total`
    /// and audited; peers that are untrusted or refused by
    /// `security.reject_unknown` are also disconnected.
    pub(crate) fn authorize_call(
        &self,
        agents: &AgentTable,
        peer: &PeerId,
        agent: &str,
        request: &Request,
    ) -> Result<(), CallError> {
        let params = request.params.as_ref();
        let target = target_name(&request.method, params);
        let permission = match method_permission(&request.method, params) {
            MethodClass::Permission(permission) => permission,
            MethodClass::ToolCall => {
                let read_only = target.is_some_and(|tool| {
                    agents
                        .get(agent)
                        .and_then(|entry| entry.tool_read_only(tool))
                        .unwrap_or(false)
                });
                Permission::CallTool { read_only }
            }
        };
        let mut requirement = match target {
            Some(name) => Requirement::tool(agent, name),
            None => Requirement::agent(agent),
        };
        if permission == (Permission::CallTool { read_only: false })
            && BUILT_IN_AGENTS.contains(&agent)
        {
            requirement = requirement.with_declared_min_level(TrustLevel::Trusted);
        }
        // Fast path for the common case, an allowed call that is not
        // audited: the same rules on the current trust, without building
        // the decision's texts.
        if !self.audits_allowed(permission)
            && self
                .trust
                .permits(peer, &self.policy, permission, &requirement)
        {
            return Ok(());
        }
        let decision = self
            .trust
            .authorize(peer, &self.policy, permission, &requirement);
        // Built only when audited: most allowed calls are not.
        let record = |event: AuditEvent, decision_kind: AuditDecision, reason: String| {
            let request_id = request.id.as_ref().map(|id| match id {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            let mut record = AuditRecord::new(event)
                .peer(peer)
                .agent(agent)
                .decision(decision_kind)
                .reason(reason)
                .detail("method", request.method.as_str())
                .detail("permission", permission.name());
            if let Some(target) = target {
                record = record.tool(target);
            }
            if let Some(id) = &request_id {
                record = record.request_id(id.as_str());
            }
            record
        };
        if decision.allowed {
            if self.audits_allowed(permission) {
                self.audit(
                    record(
                        AuditEvent::CallAllowed,
                        AuditDecision::Allow,
                        decision.detail,
                    )
                    .detail("level", decision.level.as_str()),
                );
            }
            return Ok(());
        }
        Self::count_denial(permission);
        tracing::info!(
            %peer,
            agent,
            method = %request.method,
            permission = permission.name(),
            rule = decision.rule.as_str(),
            "request refused by policy"
        );
        self.audit(
            record(AuditEvent::CallDenied, AuditDecision::Deny, decision.detail)
                .detail("level", decision.level.as_str())
                .detail("required", decision.required.as_str())
                .detail("rule", decision.rule.as_str()),
        );
        if matches!(
            decision.rule,
            DecisionRule::Untrusted | DecisionRule::RejectUnknown
        ) {
            // The connection should not exist: it raced the admission check.
            self.enforce_admission(*peer, None);
        }
        Err(CallError::new(ErrorKind::Unauthorized, NOT_PERMITTED)
            .with("reason", decision.reason_code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_permissions() {
        let p = |m: &str| method_permission(m, None);
        assert_eq!(p("tools/call"), MethodClass::ToolCall);
        assert_eq!(
            p("tools/list"),
            MethodClass::Permission(Permission::ListTools)
        );
        assert_eq!(
            p("dawn/agents"),
            MethodClass::Permission(Permission::ListTools)
        );
        assert_eq!(
            p("resources/read"),
            MethodClass::Permission(Permission::ReadResource)
        );
        assert_eq!(
            p("dawn/watch_resource"),
            MethodClass::Permission(Permission::ReadResource)
        );
        assert_eq!(
            p("prompts/get"),
            MethodClass::Permission(Permission::GetPrompt)
        );
        assert_eq!(p("ping"), MethodClass::Permission(Permission::Connect));
        assert_eq!(
            p("dawn/registry_sync"),
            MethodClass::Permission(Permission::Discover)
        );
        assert_eq!(
            p("notifications/cancelled"),
            MethodClass::Permission(Permission::Connect)
        );
        assert_eq!(
            p("something/new"),
            MethodClass::Permission(Permission::CallTool { read_only: false })
        );
        let resource_completion = serde_json::json!({"ref": {"type": "ref/resource"}});
        assert_eq!(
            method_permission("completion/complete", Some(&resource_completion)),
            MethodClass::Permission(Permission::ReadResource)
        );
    }

    #[test]
    fn targets_are_taken_from_params() {
        let params = serde_json::json!({"name": "delete", "uri": "file:///x"});
        assert_eq!(target_name("tools/call", Some(&params)), Some("delete"));
        assert_eq!(
            target_name("resources/read", Some(&params)),
            Some("file:///x")
        );
        assert_eq!(target_name("tools/list", Some(&params)), None);
    }
}
