//! Mux Video REST resources as we read and write them. Field names follow the
//! API (snake_case). Every response type ignores unknown fields and defaults
//! missing ones, because Mux adds fields without notice and some models lag
//! (mux-node-sdk#180 lacked `active_asset_id` for a while).

use serde::{Deserialize, Deserializer, Serialize};

/// Who may play a playback id. `signed` needs a JWT; `drm` needs a DRM config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaybackPolicy {
    Public,
    Signed,
    Drm,
    #[serde(other)]
    Unknown,
}

/// `standard` keeps a 60 s default reconnect window; `reduced`/`low` trade
/// resilience for latency (their default window is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencyMode {
    Standard,
    Reduced,
    Low,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybackId {
    pub id: String,
    pub policy: PlaybackPolicy,
}

/// Settings copied onto every asset recorded from a live stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewAssetSettings {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub playback_policies: Vec<PlaybackPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<String>,
}

/// `POST /video/v1/live-streams`. Put the saga id in `passthrough`: Mux has
/// no idempotency key, so it is the only way to find a stream whose create
/// response was lost.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CreateLiveStream {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub playback_policies: Vec<PlaybackPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_asset_settings: Option<NewAssetSettings>,
    /// Seconds (0–1800) a disconnected encoder may come back into the same asset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect_window: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_mode: Option<LatencyMode>,
    /// Test streams are watermarked, capped at 5 minutes and deleted after 24 h.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveStreamStatus {
    /// No encoder, or connected but not yet broadcasting.
    Idle,
    /// Broadcasting, or inside the reconnect window after a disconnect.
    Active,
    Disabled,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LiveStream {
    pub id: String,
    #[serde(default)]
    pub stream_key: String,
    pub status: LiveStreamStatus,
    #[serde(default)]
    pub playback_ids: Vec<PlaybackId>,
    #[serde(default)]
    pub new_asset_settings: Option<NewAssetSettings>,
    #[serde(default)]
    pub reconnect_window: Option<f64>,
    #[serde(default)]
    pub latency_mode: Option<LatencyMode>,
    #[serde(default)]
    pub max_continuous_duration: Option<u64>,
    #[serde(default)]
    pub passthrough: Option<String>,
    #[serde(default)]
    pub test: Option<bool>,
    /// Unix seconds. A string in REST responses, a number in webhooks.
    #[serde(default, deserialize_with = "unix_seconds")]
    pub created_at: Option<u64>,
    /// The asset being recorded right now, if an encoder is connected.
    #[serde(default)]
    pub active_asset_id: Option<String>,
    /// Assets recorded from this stream, newest last (Mux keeps ten).
    #[serde(default)]
    pub recent_asset_ids: Vec<String>,
    #[serde(default)]
    pub active_ingest_protocol: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetStatus {
    Preparing,
    Ready,
    Errored,
    #[serde(other)]
    Unknown,
}

/// Why an asset errored, as Mux reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AssetErrors {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub messages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Asset {
    pub id: String,
    pub status: AssetStatus,
    #[serde(default, deserialize_with = "unix_seconds")]
    pub created_at: Option<u64>,
    /// Seconds of media; grows while the asset is live, final once the
    /// stream has gone idle.
    #[serde(default)]
    pub duration: Option<f64>,
    #[serde(default)]
    pub is_live: Option<bool>,
    #[serde(default)]
    pub live_stream_id: Option<String>,
    /// `live_rtmp` for recordings, `on_demand_clip` for clips.
    #[serde(default)]
    pub ingest_type: Option<String>,
    /// Set on clips: the asset they were cut from.
    #[serde(default)]
    pub source_asset_id: Option<String>,
    #[serde(default)]
    pub playback_ids: Vec<PlaybackId>,
    #[serde(default)]
    pub passthrough: Option<String>,
    #[serde(default)]
    pub errors: Option<AssetErrors>,
}

/// A clip cut from an existing asset: `POST /video/v1/assets` with a
/// `mux://assets/{id}` input. Times are seconds relative to the source asset;
/// a missing `end_time` on a still-live source means "up to now".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateClip {
    pub source_asset_id: String,
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    /// Put the clip's natural key here so a lost create can be reconciled.
    pub passthrough: Option<String>,
    /// Empty means Mux's default (no playback id).
    pub playback_policies: Vec<PlaybackPolicy>,
}

/// Wire form of [`CreateClip`].
#[derive(Serialize)]
pub(crate) struct CreateAssetBody<'a> {
    pub inputs: Vec<ClipInput>,
    #[serde(skip_serializing_if = "<[PlaybackPolicy]>::is_empty")]
    pub playback_policies: &'a [PlaybackPolicy],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct ClipInput {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
}

impl CreateClip {
    pub(crate) fn body(&self) -> CreateAssetBody<'_> {
        CreateAssetBody {
            inputs: vec![ClipInput {
                url: format!("mux://assets/{}", self.source_asset_id),
                start_time: self.start_time,
                end_time: self.end_time,
            }],
            playback_policies: &self.playback_policies,
            passthrough: self.passthrough.as_deref(),
        }
    }
}

/// Accepts `"1527110899"`, `1527110899` or `null`: REST responses send a
/// string, webhook payloads a number.
fn unix_seconds<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Float(f64),
        Text(String),
    }
    match Option::<Raw>::deserialize(de)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        // Seconds never need sub-second precision here; truncation is intended.
        Some(Raw::Float(f)) if f >= 0.0 => Ok(Some(f as u64)),
        Some(Raw::Float(f)) => Err(serde::de::Error::custom(format!("negative timestamp {f}"))),
        Some(Raw::Text(s)) => s.parse().map(Some).map_err(|_| serde::de::Error::custom(format!("bad timestamp {s:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_is_read_from_a_string_or_a_number() {
        let rest: LiveStream = serde_json::from_str(r#"{"id":"a","status":"idle","created_at":"1527110899"}"#).unwrap();
        let hook: LiveStream = serde_json::from_str(r#"{"id":"a","status":"idle","created_at":1527110899}"#).unwrap();
        assert_eq!(rest.created_at, Some(1_527_110_899));
        assert_eq!(hook.created_at, Some(1_527_110_899));
    }

    #[test]
    fn unknown_fields_and_statuses_are_tolerated() {
        let stream: LiveStream = serde_json::from_str(
            r#"{"id":"a","status":"brand_new","created_at":"1","connected":true,"srt_passphrase":"x"}"#,
        )
        .unwrap();
        assert_eq!(stream.status, LiveStreamStatus::Unknown);
    }

    #[test]
    fn a_clip_is_posted_as_a_mux_assets_input() {
        let clip = CreateClip {
            source_asset_id: "src".into(),
            start_time: Some(10.0),
            end_time: Some(51.1),
            passthrough: Some("clip:1".into()),
            playback_policies: vec![PlaybackPolicy::Public],
        };
        let json = serde_json::to_value(clip.body()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "inputs":[{"url":"mux://assets/src","start_time":10.0,"end_time":51.1}],
                "playback_policies":["public"],
                "passthrough":"clip:1"
            })
        );
    }
}
