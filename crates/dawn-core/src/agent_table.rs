//! The node's local agents, with their tool tables and compiled argument
//! validators, and the dispatch of one JSON-RPC request to one agent.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

use dawn_resilience::ErrorKind;
use rmcp::model::{JsonObject, Tool};
use serde_json::{Value, json};

use crate::{
    address::AgentId,
    agent::{Agent, CallContext},
    jsonrpc::{CallError, Request, Response},
};

/// Most validation errors reported for one call.
const MAX_REPORTED_ERRORS: usize = 10;

/// A tool plus its compiled input validator.
struct ToolEntry {
    tool: Tool,
    validator: Result<Arc<jsonschema::Validator>, String>,
}

/// What the node remembers about one local agent.
pub(crate) struct AgentEntry {
    pub(crate) id: AgentId,
    pub(crate) agent: Arc<dyn Agent>,
    tools: RwLock<Arc<HashMap<String, ToolEntry>>>,
}

impl AgentEntry {
    pub(crate) fn new(id: AgentId, agent: Arc<dyn Agent>) -> Arc<AgentEntry> {
        let entry = Arc::new(AgentEntry {
            id,
            agent,
            tools: RwLock::new(Arc::new(HashMap::new())),
        });
        entry.refresh_tools();
        entry
    }

    /// Re-reads the agent's tools and compiles their schemas.
    pub(crate) fn refresh_tools(&self) {
        let table: HashMap<String, ToolEntry> = self
            .agent
            .tools()
            .into_iter()
            .map(|tool| {
                let schema = Value::Object((*tool.input_schema).clone());
                let validator = jsonschema::validator_for(&schema)
                    .map(Arc::new)
                    .map_err(|e| e.to_string());
                if let Err(error) = &validator {
                    tracing::warn!(agent = %self.id, tool = %tool.name, %error, "tool has an invalid input schema; calls to it will fail");
                }
                (tool.name.to_string(), ToolEntry { tool, validator })
            })
            .collect();
        *self.tools.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }

    fn tool_table(&self) -> Arc<HashMap<String, ToolEntry>> {
        self.tools.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The agent's full description.
    pub(crate) fn descriptor(&self) -> crate::descriptor::AgentDescriptor {
        crate::descriptor::AgentDescriptor {
            id: self.id.to_string(),
            description: self.agent.description(),
            tools: self.tools(),
            resources: self.agent.resources(),
            resource_templates: self.agent.resource_templates(),
            prompts: self.agent.prompts(),
        }
    }

    /// Whether tool `name` declares itself read-only (MCP `readOnlyHint`);
    /// `None` if the agent has no such tool.
    pub(crate) fn tool_read_only(&self, name: &str) -> Option<bool> {
        let table = self.tool_table();
        let entry = table.get(name)?;
        Some(
            entry
                .tool
                .annotations
                .as_ref()
                .and_then(|a| a.read_only_hint)
                .unwrap_or(false),
        )
    }

    /// The agent's tools, sorted by name.
    pub(crate) fn tools(&self) -> Vec<Tool> {
        let table = self.tool_table();
        let sorted: BTreeMap<&String, &ToolEntry> = table.iter().collect();
        sorted.into_values().map(|e| e.tool.clone()).collect()
    }
}

/// All local agents.
#[derive(Default)]
pub(crate) struct AgentTable {
    agents: RwLock<BTreeMap<AgentId, Arc<AgentEntry>>>,
}

impl AgentTable {
    pub(crate) fn get(&self, id: &str) -> Option<Arc<AgentEntry>> {
        let agents = self.agents.read().unwrap_or_else(|e| e.into_inner());
        agents
            .iter()
            .find(|(k, _)| k.as_str() == id)
            .map(|(_, v)| v.clone())
    }

    pub(crate) fn insert(&self, entry: Arc<AgentEntry>) -> bool {
        let mut agents = self.agents.write().unwrap_or_else(|e| e.into_inner());
        if agents.contains_key(&entry.id) {
            return false;
        }
        agents.insert(entry.id.clone(), entry);
        true
    }

    pub(crate) fn remove(&self, id: &str) -> Option<Arc<AgentEntry>> {
        let mut agents = self.agents.write().unwrap_or_else(|e| e.into_inner());
        let key = agents.keys().find(|k| k.as_str() == id).cloned()?;
        agents.remove(&key)
    }

    pub(crate) fn all(&self) -> Vec<Arc<AgentEntry>> {
        self.agents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// Handles one JSON-RPC message addressed to `entry`. Returns `None` for
/// notifications.
pub(crate) async fn dispatch(
    entry: &AgentEntry,
    request: Request,
    ctx: CallContext,
) -> Option<Response> {
    let Request {
        id, method, params, ..
    } = request;
    let id = id?;
    let deadline = ctx.deadline;
    let cancel = ctx.cancel.clone();
    // `dawn_agent_tool_calls_total`: only names of this agent's tools are labels.
    let tool_label = (method == "tools/call").then(|| {
        let name = params
            .as_ref()
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if entry.tool_table().contains_key(name) {
            name.to_owned()
        } else {
            "other".to_owned()
        }
    });
    let work = handle_method(entry, &method, params, ctx);
    // Biased, work first: an agent that answers at once never arms the
    // deadline timer nor registers with the cancellation token.
    let result = tokio::select! {
        biased;
        result = work => result,
        () = cancel.cancelled() => Err(CallError::new(ErrorKind::Cancelled, "the call was cancelled")),
        () = tokio::time::sleep_until(deadline.instant().into()) => Err(CallError::new(
            ErrorKind::DeadlineExceeded,
            format!("agent {} did not answer {method} before the deadline", entry.id),
        )),
    };
    if let Some(tool) = &tool_label {
        let status = crate::observe::telemetry::tool_status(&result);
        crate::observe::telemetry::record_tool_call(entry.id.as_str(), tool, status);
    }
    if matches!(result, Err(ref e) if e.code == ErrorKind::DeadlineExceeded.jsonrpc_code()) {
        cancel.cancel();
    }
    Some(match result {
        Ok(value) => Response::ok(id, value),
        Err(error) => Response::err(id, error),
    })
}

fn object_params(params: Option<Value>) -> Result<JsonObject, CallError> {
    match params {
        None | Some(Value::Null) => Ok(JsonObject::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(CallError::new(
            ErrorKind::InvalidParams,
            "params must be an object",
        )),
    }
}

fn string_param(params: &JsonObject, key: &str) -> Result<String, CallError> {
    match params.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(CallError::new(
            ErrorKind::InvalidParams,
            format!("params.{key} must be a string"),
        )),
        None => Err(CallError::new(
            ErrorKind::InvalidParams,
            format!("params.{key} is required"),
        )),
    }
}

fn object_param(params: &mut JsonObject, key: &str) -> Result<JsonObject, CallError> {
    match params.remove(key) {
        None | Some(Value::Null) => Ok(JsonObject::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(CallError::new(
            ErrorKind::InvalidParams,
            format!("params.{key} must be an object"),
        )),
    }
}

fn to_value<T: serde::Serialize>(value: T) -> Result<Value, CallError> {
    serde_json::to_value(value).map_err(|e| {
        CallError::new(
            ErrorKind::Internal,
            format!("cannot encode the result: {e}"),
        )
    })
}

async fn handle_method(
    entry: &AgentEntry,
    method: &str,
    params: Option<Value>,
    mut ctx: CallContext,
) -> Result<Value, CallError> {
    let agent = &entry.agent;
    match method {
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": entry.tools() })),
        "resources/list" => Ok(json!({ "resources": agent.resources() })),
        "resources/templates/list" => {
            Ok(json!({ "resourceTemplates": agent.resource_templates() }))
        }
        "prompts/list" => Ok(json!({ "prompts": agent.prompts() })),
        "tools/call" => {
            let mut params = object_params(params)?;
            let name = string_param(&params, "name")?;
            let arguments = object_param(&mut params, "arguments")?;
            ctx.progress_token = progress_token(&params);
            let table = entry.tool_table();
            let Some(tool) = table.get(&name) else {
                return Err(CallError::new(
                    ErrorKind::UnknownTool,
                    format!("agent {} has no tool named {name:?}", entry.id),
                )
                .with("tool", name));
            };
            let arguments = validate_arguments(&entry.id, &name, tool, arguments)?;
            to_value(agent.call_tool(&ctx, &name, arguments).await?)
        }
        "resources/read" => {
            let params = object_params(params)?;
            let uri = string_param(&params, "uri")?;
            ctx.progress_token = progress_token(&params);
            to_value(agent.read_resource(&ctx, &uri).await?)
        }
        "prompts/get" => {
            let mut params = object_params(params)?;
            let name = string_param(&params, "name")?;
            let arguments = object_param(&mut params, "arguments")?;
            if !agent.prompts().iter().any(|p| p.name == name) {
                return Err(CallError::new(
                    ErrorKind::UnknownPrompt,
                    format!("agent {} has no prompt named {name:?}", entry.id),
                ));
            }
            to_value(agent.get_prompt(&ctx, &name, arguments).await?)
        }
        "dawn/describe" => to_value(entry.descriptor()),
        "completion/complete" => {
            let params: rmcp::model::CompleteRequestParams =
                serde_json::from_value(params.unwrap_or(Value::Null)).map_err(|e| {
                    CallError::new(
                        ErrorKind::InvalidParams,
                        format!("invalid completion request: {e}"),
                    )
                })?;
            to_value(agent.complete(&ctx, params).await?)
        }
        "logging/setLevel" => Ok(json!({})),
        other => Err(CallError::new(
            ErrorKind::MethodNotFound,
            format!("method {other:?} is not supported by agent {}", entry.id),
        )),
    }
}

fn progress_token(params: &JsonObject) -> Option<Value> {
    params
        .get("_meta")
        .and_then(|m| m.get("progressToken"))
        .filter(|t| t.is_string() || t.is_number())
        .cloned()
}

fn validate_arguments(
    agent: &AgentId,
    name: &str,
    tool: &ToolEntry,
    arguments: JsonObject,
) -> Result<JsonObject, CallError> {
    let validator = match &tool.validator {
        Ok(v) => v,
        Err(schema_error) => {
            return Err(CallError::new(
                ErrorKind::Internal,
                format!("tool {name} of agent {agent} has an invalid input schema: {schema_error}"),
            ));
        }
    };
    // Validate in place: wrap the map in a Value and unwrap it after, no copy.
    let instance = Value::Object(arguments);
    let errors: Vec<(String, String)> = validator
        .iter_errors(&instance)
        .take(MAX_REPORTED_ERRORS)
        .map(|e| {
            let path = e.instance_path().to_string();
            (
                if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                },
                e.to_string(),
            )
        })
        .collect();
    if errors.is_empty() {
        return match instance {
            Value::Object(arguments) => Ok(arguments),
            _ => Ok(JsonObject::new()),
        };
    }
    let summary = errors
        .iter()
        .map(|(path, msg)| format!("{path}: {msg}"))
        .collect::<Vec<_>>()
        .join("; ");
    Err(CallError::new(
        ErrorKind::InvalidParams,
        format!("invalid arguments for tool {name}: {summary}"),
    )
    .with(
        "errors",
        errors
            .into_iter()
            .map(|(path, message)| json!({ "path": path, "message": message }))
            .collect::<Vec<_>>(),
    ))
}
