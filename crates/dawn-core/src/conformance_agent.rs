//! The built-in `conformance` agent: the fixtures the official MCP
//! conformance suite (`@modelcontextprotocol/conformance`) expects of a
//! server under test, for protocol revision 2025-11-25.
//!
//! A node serves it only when `mcp.conformance_agent = true`; it exists so
//! that `cargo xtask conformance` can run the suite against
//! `/mcp/agents/conformance` (directly) and
//! `/mcp/peers/{peer}/agents/conformance` (through a second node). Each
//! fixture behaves exactly as its scenario checks:
//!
//! | Scenario | Fixture |
//! |---|---|
//! | `tools-call-*` | tools `test_simple_text`, `test_image_content`, `test_audio_content`, `test_embedded_resource`, `test_multiple_content_types`, `test_tool_with_logging`, `test_tool_with_progress`, `test_error_handling`, `test_sampling`, `test_elicitation` |
//! | `elicitation-sep1034-defaults`, `elicitation-sep1330-enums` | tools `test_elicitation_sep1034_defaults`, `test_elicitation_sep1330_enums` |
//! | `json-schema-2020-12` | tool `json_schema_2020_12_tool` |
//! | `server-sse-polling` | tool `test_reconnection` |
//! | `resources-*` | `test://static-text`, `test://static-binary`, `test://watched-resource` (updated every few seconds while subscribed), template `test://template/{id}/data` |
//! | `prompts-*` | `test_simple_prompt`, `test_prompt_with_arguments`, `test_prompt_with_embedded_resource`, `test_prompt_with_image` |
//! | `completion-complete` | completions for the prompt arguments and the template's `id` |
//!
//! Sampling and elicitation go to the MCP client with
//! [`CallContext::request_client`], so they work through any number of node
//! hops, as do progress and log notifications.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use dawn_resilience::ErrorKind;
use rmcp::model::{
    CallToolResult, CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock,
    GetPromptResult, JsonObject, Prompt, PromptArgument, PromptMessage, ReadResourceResult,
    Reference, Resource, ResourceContents, ResourceTemplate, Role, Tool, ToolAnnotations,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    agent::{Agent, AgentHandle, CallContext},
    jsonrpc::CallError,
};

/// The id of the conformance agent.
pub(crate) const CONFORMANCE_AGENT_ID: &str = "conformance";

/// A 1x1 red PNG, base64.
const TEST_IMAGE_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

/// A minimal WAV file (44-byte header, one silent sample), base64.
const TEST_AUDIO_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

/// URIs of the direct resources.
const STATIC_TEXT_URI: &str = "test://static-text";
const STATIC_BINARY_URI: &str = "test://static-binary";
const WATCHED_URI: &str = "test://watched-resource";

/// The resource template and the parts around its one variable.
const TEMPLATE_URI: &str = "test://template/{id}/data";
const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";

/// How often `test://watched-resource` changes while someone watches it.
const WATCH_INTERVAL: Duration = Duration::from_secs(3);

/// Pause between the steps of the logging and progress tools (the suite
/// wants notifications spread over the call, ~50 ms apart).
const STEP_DELAY: Duration = Duration::from_millis(50);

/// Name given to log messages the agent sends.
const LOGGER: &str = "dawn.conformance";

/// What the agent remembers between calls.
#[derive(Default)]
struct State {
    /// Set by [`Agent::attach`]; used to announce resource updates.
    handle: Mutex<Option<AgentHandle>>,
    /// Revision of `test://watched-resource`, bumped on every update.
    watched_revision: AtomicU64,
    /// One ticker per subscribed URI, stopped on unsubscribe.
    tickers: Mutex<HashMap<String, CancellationToken>>,
}

/// The agent serving the MCP conformance suite's fixtures (see the module
/// documentation). Registered by the node when `mcp.conformance_agent` is
/// true.
#[derive(Default)]
pub(crate) struct ConformanceAgent {
    state: Arc<State>,
}

impl ConformanceAgent {
    /// A fresh agent.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The current content of `test://watched-resource`.
    fn watched_text(&self) -> String {
        let revision = self.state.watched_revision.load(Ordering::Relaxed);
        format!("Watched resource content (revision {revision})")
    }
}

impl Drop for ConformanceAgent {
    fn drop(&mut self) {
        for (_, ticker) in self
            .state
            .tickers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            ticker.cancel();
        }
    }
}

/// A JSON object literal as a tool input schema.
fn schema(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// The input schema of a tool without arguments.
fn no_arguments() -> JsonObject {
    schema(json!({ "type": "object", "properties": {} }))
}

/// The input schema of a tool with one required string argument.
fn one_string(name: &str, description: &str) -> JsonObject {
    schema(json!({
        "type": "object",
        "properties": { name: { "type": "string", "description": description } },
        "required": [name],
    }))
}

/// The input schema of `json_schema_2020_12_tool`, verbatim from the
/// `json-schema-2020-12` scenario: the gateway must list it unchanged
/// (`$schema`, `$defs` with `$anchor`, `allOf`/`anyOf`, `if`/`then`/`else`,
/// `additionalProperties`).
fn json_schema_2020_12() -> JsonObject {
    schema(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": {
                    "street": { "type": "string" },
                    "city": { "type": "string" }
                }
            }
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" },
            "contactMethod": { "type": "string", "enum": ["phone", "email"] },
            "phone": { "type": "string" },
            "email": { "type": "string" }
        },
        "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
        "if": {
            "properties": { "contactMethod": { "const": "phone" } },
            "required": ["contactMethod"]
        },
        "then": { "required": ["phone"] },
        "else": { "required": ["email"] },
        "additionalProperties": false
    }))
}

/// Annotations of the tools that only return fixed content.
fn read_only() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(true)
        .idempotent(true)
        .destructive(false)
        .open_world(false)
}

/// Annotations of the tools that ask the client something.
fn asks_client() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .open_world(true)
}

/// A string argument of a call; missing or non-string is invalid params.
fn string_argument<'a>(arguments: &'a JsonObject, name: &str) -> Result<&'a str, CallError> {
    arguments.get(name).and_then(Value::as_str).ok_or_else(|| {
        CallError::new(
            ErrorKind::InvalidParams,
            format!("argument {name:?} is required and must be a string"),
        )
    })
}

/// The `{id}` of a URI of the template `test://template/{id}/data`.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix(TEMPLATE_PREFIX)?
        .strip_suffix(TEMPLATE_SUFFIX)?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn unknown_resource(uri: &str) -> CallError {
    CallError::new(
        ErrorKind::UnknownResource,
        format!("agent {CONFORMANCE_AGENT_ID} has no resource {uri}"),
    )
    .with("uri", uri)
}

/// Whether the agent serves `uri` (directly or through the template).
fn serves(uri: &str) -> bool {
    matches!(uri, STATIC_TEXT_URI | STATIC_BINARY_URI | WATCHED_URI) || template_id(uri).is_some()
}

/// `text` as a tool result.
fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// The text of a sampling answer (`content` is one block, or a list of
/// blocks in 2025-11-25 when tools are involved).
fn sampled_text(answer: &Value) -> Option<String> {
    let content = answer.get("content")?;
    let blocks: Vec<&Value> = match content {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let texts: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    (!texts.is_empty()).then(|| texts.join("\n"))
}

/// The text a tool returns after an elicitation, from the client's answer.
fn elicitation_summary(prefix: &str, answer: &Value) -> String {
    let action = answer
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let content = answer.get("content").cloned().unwrap_or_else(|| json!({}));
    format!("{prefix}: action={action}, content={content}")
}

/// Values offered by `completion/complete`, filtered by the typed prefix.
fn completions(candidates: &[&str], typed: &str) -> Vec<String> {
    candidates
        .iter()
        .filter(|c| c.starts_with(typed))
        .map(|c| (*c).to_owned())
        .collect()
}

impl ConformanceAgent {
    /// Runs a tool that asks the client something (sampling or
    /// elicitation); a client that cannot answer yields an error result the
    /// model can read, not a protocol error.
    async fn ask_client(
        ctx: &CallContext,
        method: &str,
        params: Value,
    ) -> Result<Value, CallToolResult> {
        ctx.request_client(method, params).await.map_err(|e| {
            CallToolResult::error(vec![ContentBlock::text(format!(
                "the client did not answer {method}: {} (code {})",
                e.message, e.code
            ))])
        })
    }

    async fn elicit(ctx: &CallContext, prefix: &str, params: Value) -> CallToolResult {
        match Self::ask_client(ctx, "elicitation/create", params).await {
            Ok(answer) => text_result(elicitation_summary(prefix, &answer)),
            Err(result) => result,
        }
    }

    async fn with_logging(ctx: &CallContext) -> CallToolResult {
        let steps = [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ];
        for (i, step) in steps.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(STEP_DELAY).await;
            }
            ctx.log("info", LOGGER, json!(step)).await;
        }
        text_result("Tool with logging executed successfully")
    }

    async fn with_progress(ctx: &CallContext) -> CallToolResult {
        for (i, step) in [0.0, 50.0, 100.0].into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(STEP_DELAY).await;
            }
            let message = format!("Completed step {step} of 100");
            ctx.progress(step, Some(100.0), Some(&message)).await;
        }
        text_result("Tool with progress executed successfully")
    }

    async fn sampling(
        ctx: &CallContext,
        arguments: &JsonObject,
    ) -> Result<CallToolResult, CallError> {
        let prompt = string_argument(arguments, "prompt")?;
        let params = json!({
            "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
            "maxTokens": 100,
        });
        Ok(
            match Self::ask_client(ctx, "sampling/createMessage", params).await {
                Ok(answer) => match sampled_text(&answer) {
                    Some(text) => text_result(format!("LLM response: {text}")),
                    None => CallToolResult::error(vec![ContentBlock::text(format!(
                        "the sampling answer has no text content: {answer}"
                    ))]),
                },
                Err(result) => result,
            },
        )
    }

    async fn elicitation(
        ctx: &CallContext,
        arguments: &JsonObject,
    ) -> Result<CallToolResult, CallError> {
        let message = string_argument(arguments, "message")?;
        let params = json!({
            "mode": "form",
            "message": message,
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "username": { "type": "string", "description": "User's response" },
                    "email": { "type": "string", "description": "User's email address" }
                },
                "required": ["username", "email"]
            }
        });
        Ok(Self::elicit(ctx, "User response", params).await)
    }

    async fn elicitation_defaults(ctx: &CallContext) -> CallToolResult {
        let params = json!({
            "mode": "form",
            "message": "Please review and update the form fields with defaults",
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "name": { "type": "string", "description": "User name", "default": "John Doe" },
                    "age": { "type": "integer", "description": "User age", "default": 30 },
                    "score": { "type": "number", "description": "User score", "default": 95.5 },
                    "status": {
                        "type": "string",
                        "description": "User status",
                        "enum": ["active", "inactive", "pending"],
                        "default": "active"
                    },
                    "verified": { "type": "boolean", "description": "Verification status", "default": true }
                },
                "required": []
            }
        });
        Self::elicit(ctx, "Elicitation completed", params).await
    }

    async fn elicitation_enums(ctx: &CallContext) -> CallToolResult {
        let params = json!({
            "mode": "form",
            "message": "Please select options from the enum fields",
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "untitledSingle": {
                        "type": "string",
                        "description": "Select one option",
                        "enum": ["option1", "option2", "option3"]
                    },
                    "titledSingle": {
                        "type": "string",
                        "description": "Select one option with titles",
                        "oneOf": [
                            { "const": "value1", "title": "First Option" },
                            { "const": "value2", "title": "Second Option" },
                            { "const": "value3", "title": "Third Option" }
                        ]
                    },
                    "legacyEnum": {
                        "type": "string",
                        "description": "Select one option (legacy)",
                        "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"]
                    },
                    "untitledMulti": {
                        "type": "array",
                        "description": "Select multiple options",
                        "minItems": 1,
                        "maxItems": 3,
                        "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
                    },
                    "titledMulti": {
                        "type": "array",
                        "description": "Select multiple options with titles",
                        "minItems": 1,
                        "maxItems": 3,
                        "items": {
                            "anyOf": [
                                { "const": "value1", "title": "First Choice" },
                                { "const": "value2", "title": "Second Choice" },
                                { "const": "value3", "title": "Third Choice" }
                            ]
                        }
                    }
                },
                "required": []
            }
        });
        Self::elicit(ctx, "Elicitation completed", params).await
    }

    /// Starts announcing updates of `uri` every [`WATCH_INTERVAL`] until
    /// the last watcher leaves.
    fn start_ticker(&self, uri: &str) {
        let token = CancellationToken::new();
        {
            let mut tickers = self.state.tickers.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = tickers.insert(uri.to_owned(), token.clone()) {
                old.cancel();
            }
        }
        let state: Weak<State> = Arc::downgrade(&self.state);
        let uri = uri.to_owned();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(WATCH_INTERVAL);
            interval.tick().await;
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = interval.tick() => {}
                }
                let Some(state) = state.upgrade() else { break };
                if uri == WATCHED_URI {
                    state.watched_revision.fetch_add(1, Ordering::Relaxed);
                }
                let handle = state
                    .handle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if let Some(handle) = handle {
                    handle.resource_updated(&uri);
                }
            }
        });
    }
}

#[async_trait]
impl Agent for ConformanceAgent {
    fn id(&self) -> &str {
        CONFORMANCE_AGENT_ID
    }

    fn description(&self) -> String {
        "Fixtures of the official MCP conformance suite (testing only)".into()
    }

    fn tools(&self) -> Vec<Tool> {
        vec![
            Tool::new(
                "test_simple_text",
                "Returns one text block",
                no_arguments(),
            )
            .with_annotations(read_only()),
            Tool::new(
                "test_image_content",
                "Returns one image block (a 1x1 PNG)",
                no_arguments(),
            )
            .with_annotations(read_only()),
            Tool::new(
                "test_audio_content",
                "Returns one audio block (a tiny WAV file)",
                no_arguments(),
            )
            .with_annotations(read_only()),
            Tool::new(
                "test_embedded_resource",
                "Returns an embedded text resource",
                no_arguments(),
            )
            .with_annotations(read_only()),
            Tool::new(
                "test_multiple_content_types",
                "Returns a text, an image and an embedded resource block",
                no_arguments(),
            )
            .with_annotations(read_only()),
            Tool::new(
                "test_tool_with_logging",
                "Sends three info log messages ~50 ms apart while it runs",
                no_arguments(),
            )
            .with_annotations(read_only()),
            Tool::new(
                "test_tool_with_progress",
                "Reports progress 0, 50 and 100 of 100, ~50 ms apart, when the call carries a progress token",
                no_arguments(),
            )
            .with_annotations(read_only()),
            Tool::new(
                "test_error_handling",
                "Always fails with an error result (isError: true)",
                no_arguments(),
            )
            .with_annotations(read_only()),
            Tool::new(
                "test_reconnection",
                "Returns after a short pause (the SSE polling scenario calls it to observe the stream's priming event and retry field)",
                no_arguments(),
            )
            .with_annotations(read_only()),
            Tool::new(
                "test_sampling",
                "Asks the client's LLM to answer the prompt (sampling/createMessage) and returns the answer",
                one_string("prompt", "The prompt to send to the LLM"),
            )
            .with_annotations(asks_client()),
            Tool::new(
                "test_elicitation",
                "Asks the user for a username and an email (elicitation/create) and returns the answer",
                one_string("message", "The message to show the user"),
            )
            .with_annotations(asks_client()),
            Tool::new(
                "test_elicitation_sep1034_defaults",
                "Elicitation whose schema has a default for every primitive type (SEP-1034)",
                no_arguments(),
            )
            .with_annotations(asks_client()),
            Tool::new(
                "test_elicitation_sep1330_enums",
                "Elicitation whose schema has all five enum forms (SEP-1330)",
                no_arguments(),
            )
            .with_annotations(asks_client()),
            Tool::new(
                "json_schema_2020_12_tool",
                "Tool with JSON Schema 2020-12 features ($defs, $anchor, allOf/anyOf, if/then/else); returns its arguments",
                json_schema_2020_12(),
            )
            .with_annotations(read_only()),
        ]
    }

    fn resources(&self) -> Vec<Resource> {
        vec![
            Resource::new(STATIC_TEXT_URI, "static-text")
                .with_title("Static Text Resource")
                .with_description("A static text resource for testing")
                .with_mime_type("text/plain"),
            Resource::new(STATIC_BINARY_URI, "static-binary")
                .with_title("Static Binary Resource")
                .with_description("A static binary resource (a PNG image) for testing")
                .with_mime_type("image/png"),
            Resource::new(WATCHED_URI, "watched-resource")
                .with_title("Watched Resource")
                .with_description("A resource that changes every 3 seconds while subscribed")
                .with_mime_type("text/plain"),
        ]
    }

    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        vec![
            ResourceTemplate::new(TEMPLATE_URI, "template")
                .with_title("Resource Template")
                .with_description("A resource template with parameter substitution")
                .with_mime_type("application/json"),
        ]
    }

    fn prompts(&self) -> Vec<Prompt> {
        let required = |name: &str, description: &str| {
            PromptArgument::new(name)
                .with_description(description)
                .with_required(true)
        };
        vec![
            Prompt::new(
                "test_simple_prompt",
                Some("A simple prompt without arguments"),
                None,
            )
            .with_title("Simple Test Prompt"),
            Prompt::new(
                "test_prompt_with_arguments",
                Some("A prompt with required arguments"),
                Some(vec![
                    required("arg1", "First test argument"),
                    required("arg2", "Second test argument"),
                ]),
            )
            .with_title("Prompt With Arguments"),
            Prompt::new(
                "test_prompt_with_embedded_resource",
                Some("A prompt that includes an embedded resource"),
                Some(vec![required(
                    "resourceUri",
                    "URI of the resource to embed",
                )]),
            )
            .with_title("Prompt With Embedded Resource"),
            Prompt::new(
                "test_prompt_with_image",
                Some("A prompt that includes image content"),
                None,
            )
            .with_title("Prompt With Image"),
        ]
    }

    async fn call_tool(
        &self,
        ctx: &CallContext,
        name: &str,
        arguments: JsonObject,
    ) -> Result<CallToolResult, CallError> {
        Ok(match name {
            "test_simple_text" => text_result("This is a simple text response for testing."),
            "test_image_content" => {
                CallToolResult::success(vec![ContentBlock::image(TEST_IMAGE_BASE64, "image/png")])
            }
            "test_audio_content" => {
                CallToolResult::success(vec![ContentBlock::audio(TEST_AUDIO_BASE64, "audio/wav")])
            }
            "test_embedded_resource" => CallToolResult::success(vec![ContentBlock::resource(
                ResourceContents::text(
                    "This is an embedded resource content.",
                    "test://embedded-resource",
                )
                .with_mime_type("text/plain"),
            )]),
            "test_multiple_content_types" => CallToolResult::success(vec![
                ContentBlock::text("Multiple content types test:"),
                ContentBlock::image(TEST_IMAGE_BASE64, "image/png"),
                ContentBlock::resource(
                    ResourceContents::text(
                        json!({ "test": "data", "value": 123 }).to_string(),
                        "test://mixed-content-resource",
                    )
                    .with_mime_type("application/json"),
                ),
            ]),
            "test_tool_with_logging" => Self::with_logging(ctx).await,
            "test_tool_with_progress" => Self::with_progress(ctx).await,
            "test_error_handling" => CallToolResult::error(vec![ContentBlock::text(
                "This tool intentionally returns an error for testing",
            )]),
            "test_reconnection" => {
                tokio::time::sleep(STEP_DELAY).await;
                text_result("Reconnection test completed successfully.")
            }
            "test_sampling" => Self::sampling(ctx, &arguments).await?,
            "test_elicitation" => Self::elicitation(ctx, &arguments).await?,
            "test_elicitation_sep1034_defaults" => Self::elicitation_defaults(ctx).await,
            "test_elicitation_sep1330_enums" => Self::elicitation_enums(ctx).await,
            "json_schema_2020_12_tool" => text_result(format!(
                "JSON Schema 2020-12 tool called with: {}",
                Value::Object(arguments)
            )),
            other => {
                return Err(CallError::new(
                    ErrorKind::UnknownTool,
                    format!("agent {CONFORMANCE_AGENT_ID} has no tool {other:?}"),
                ));
            }
        })
    }

    async fn read_resource(
        &self,
        _ctx: &CallContext,
        uri: &str,
    ) -> Result<ReadResourceResult, CallError> {
        let contents = match uri {
            STATIC_TEXT_URI => {
                ResourceContents::text("This is the content of the static text resource.", uri)
                    .with_mime_type("text/plain")
            }
            STATIC_BINARY_URI => {
                ResourceContents::blob(TEST_IMAGE_BASE64, uri).with_mime_type("image/png")
            }
            WATCHED_URI => {
                ResourceContents::text(self.watched_text(), uri).with_mime_type("text/plain")
            }
            _ => {
                let id = template_id(uri).ok_or_else(|| unknown_resource(uri))?;
                let text = json!({
                    "id": id,
                    "templateTest": true,
                    "data": format!("Data for ID: {id}"),
                });
                ResourceContents::text(text.to_string(), uri).with_mime_type("application/json")
            }
        };
        Ok(ReadResourceResult::new(vec![contents]))
    }

    async fn get_prompt(
        &self,
        _ctx: &CallContext,
        name: &str,
        arguments: JsonObject,
    ) -> Result<GetPromptResult, CallError> {
        let messages = match name {
            "test_simple_prompt" => vec![PromptMessage::new_text(
                Role::User,
                "This is a simple prompt for testing.",
            )],
            "test_prompt_with_arguments" => {
                let arg1 = string_argument(&arguments, "arg1")?;
                let arg2 = string_argument(&arguments, "arg2")?;
                vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
                )]
            }
            "test_prompt_with_embedded_resource" => {
                let uri = string_argument(&arguments, "resourceUri")?;
                vec![
                    PromptMessage::new(
                        Role::User,
                        ContentBlock::resource(
                            ResourceContents::text("Embedded resource content for testing.", uri)
                                .with_mime_type("text/plain"),
                        ),
                    ),
                    PromptMessage::new_text(
                        Role::User,
                        "Please process the embedded resource above.",
                    ),
                ]
            }
            "test_prompt_with_image" => vec![
                PromptMessage::new(
                    Role::User,
                    ContentBlock::image(TEST_IMAGE_BASE64, "image/png"),
                ),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ],
            other => {
                return Err(CallError::new(
                    ErrorKind::UnknownPrompt,
                    format!("agent {CONFORMANCE_AGENT_ID} has no prompt {other:?}"),
                ));
            }
        };
        Ok(GetPromptResult::new(messages))
    }

    async fn complete(
        &self,
        _ctx: &CallContext,
        params: CompleteRequestParams,
    ) -> Result<CompleteResult, CallError> {
        let typed = params.argument.value.as_str();
        let values = match (&params.r#ref, params.argument.name.as_str()) {
            (Reference::Prompt(p), "arg1" | "arg2") if p.name == "test_prompt_with_arguments" => {
                completions(
                    &["paris", "park", "party", "testValue1", "testValue2"],
                    typed,
                )
            }
            (Reference::Prompt(p), "resourceUri")
                if p.name == "test_prompt_with_embedded_resource" =>
            {
                completions(&[STATIC_TEXT_URI, STATIC_BINARY_URI, WATCHED_URI], typed)
            }
            (Reference::Resource(r), "id") if r.uri == TEMPLATE_URI => {
                completions(&["123", "456", "789"], typed)
            }
            _ => Vec::new(),
        };
        let completion = CompletionInfo::with_all_values(values)
            .map_err(|e| CallError::new(ErrorKind::Internal, e))?;
        Ok(CompleteResult::new(completion))
    }

    async fn subscribe(&self, _ctx: &CallContext, uri: &str) -> Result<(), CallError> {
        if !serves(uri) {
            return Err(unknown_resource(uri));
        }
        self.start_ticker(uri);
        Ok(())
    }

    async fn unsubscribe(&self, _ctx: &CallContext, uri: &str) -> Result<(), CallError> {
        if let Some(ticker) = self
            .state
            .tickers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uri)
        {
            ticker.cancel();
        }
        Ok(())
    }

    fn attach(&self, handle: AgentHandle) {
        *self.state.handle.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_ids_are_one_path_segment() {
        assert_eq!(template_id("test://template/123/data"), Some("123"));
        assert_eq!(template_id("test://template//data"), None);
        assert_eq!(template_id("test://template/1/2/data"), None);
        assert_eq!(template_id("test://static-text"), None);
    }

    #[test]
    fn sampled_text_reads_single_and_list_content() {
        let single = json!({ "role": "assistant", "content": { "type": "text", "text": "hi" } });
        assert_eq!(sampled_text(&single).as_deref(), Some("hi"));
        let list = json!({ "content": [{ "type": "text", "text": "a" }, { "type": "text", "text": "b" }] });
        assert_eq!(sampled_text(&list).as_deref(), Some("a\nb"));
        assert_eq!(
            sampled_text(&json!({ "content": { "type": "image" } })),
            None
        );
    }

    #[test]
    fn every_tool_schema_compiles() {
        for tool in ConformanceAgent::new().tools() {
            let schema = Value::Object((*tool.input_schema).clone());
            assert!(
                jsonschema::validator_for(&schema).is_ok(),
                "schema of {} does not compile",
                tool.name
            );
        }
    }

    #[test]
    fn completions_filter_by_prefix() {
        assert_eq!(
            completions(&["paris", "park", "rome"], "par"),
            ["paris", "park"]
        );
        assert!(completions(&["paris"], "x").is_empty());
    }
}
