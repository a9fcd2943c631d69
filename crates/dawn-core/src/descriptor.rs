//! `AgentDescriptor`: everything a client needs to use an agent without
//! asking it first (tools with schemas, resources, templates, prompts).

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};
use serde::{Deserialize, Serialize};

use crate::node::{AgentSummary, ToolSummary};

/// A full description of one agent, as shared with other nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentDescriptor {
    /// The agent id.
    pub id: String,
    /// What the agent does.
    #[serde(default)]
    pub description: String,
    /// Its tools, with input schemas and annotations.
    #[serde(default)]
    pub tools: Vec<Tool>,
    /// Its resources.
    #[serde(default)]
    pub resources: Vec<Resource>,
    /// Its resource templates.
    #[serde(default)]
    pub resource_templates: Vec<ResourceTemplate>,
    /// Its prompts.
    #[serde(default)]
    pub prompts: Vec<Prompt>,
}

impl AgentDescriptor {
    /// The short form used by listings.
    pub fn summary(&self) -> AgentSummary {
        AgentSummary {
            id: self.id.clone(),
            description: self.description.clone(),
            tools: self
                .tools
                .iter()
                .map(|t| ToolSummary {
                    name: t.name.to_string(),
                    description: t.description.as_deref().unwrap_or_default().to_owned(),
                    read_only: t
                        .annotations
                        .as_ref()
                        .and_then(|a| a.read_only_hint)
                        .unwrap_or(false),
                })
                .collect(),
            resources: self.resources.len(),
            prompts: self.prompts.len(),
        }
    }
}
