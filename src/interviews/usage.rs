//! AI usage per user and model, read from the `analytics_ai_calls` rows of
//! the `interviews` projection: calls, failures, latency p50/p95, tokens,
//! and the hints given.

use std::collections::BTreeMap;

use eventuall_projections::interviews::quantile;
use serde::Serialize;

use crate::store::{EventStore, StoreError};

#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelUsage {
    pub model: String,
    pub calls: u64,
    pub completed: u64,
    pub failed: u64,
    pub running: u64,
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AiUsage {
    pub user_id: String,
    pub models: Vec<ModelUsage>,
    pub hints_given: u64,
    /// Failed calls by outcome label (`timeout`, `stream_broken`, …).
    pub failures: BTreeMap<String, u64>,
}

type CallRow = (String, String, String, Option<i64>, Option<i64>, Option<i64>);

pub async fn ai_usage(store: &EventStore, user_id: &str) -> Result<AiUsage, StoreError> {
    let rows: Vec<CallRow> = store
        .query_as(
            "select model, kind, outcome, latency_ms, prompt_tokens, completion_tokens \
             from analytics_ai_calls where user_id = $1",
            &[user_id.into()],
        )
        .await?;
    let mut usage = AiUsage { user_id: user_id.to_owned(), ..AiUsage::default() };
    let mut by_model: BTreeMap<String, (ModelUsage, Vec<i64>)> = BTreeMap::new();
    for (model, kind, outcome, latency_ms, prompt_tokens, completion_tokens) in rows {
        let (entry, latencies) = by_model
            .entry(model.clone())
            .or_insert_with(|| (ModelUsage { model, ..ModelUsage::default() }, Vec::new()));
        entry.calls += 1;
        match outcome.as_str() {
            "completed" => {
                entry.completed += 1;
                latencies.extend(latency_ms);
                if kind == "hint" {
                    usage.hints_given += 1;
                }
            }
            "running" => entry.running += 1,
            failure => {
                entry.failed += 1;
                *usage.failures.entry(failure.to_owned()).or_default() += 1;
            }
        }
        entry.prompt_tokens += prompt_tokens.unwrap_or(0);
        entry.completion_tokens += completion_tokens.unwrap_or(0);
    }
    usage.models = by_model
        .into_values()
        .map(|(mut entry, mut latencies)| {
            entry.latency_p50_ms = quantile(&mut latencies, 0.5);
            entry.latency_p95_ms = quantile(&mut latencies, 0.95);
            entry
        })
        .collect();
    Ok(usage)
}
