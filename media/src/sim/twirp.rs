//! Twirp framing for the LiveKit simulator: both encodings (binary protobuf
//! from the Rust SDK, JSON from the JS SDK), answers in the request's
//! encoding, and Twirp's JSON error bodies.
//!
//! JSON answers mimic Go Twirp's defaults (`UseProtoNames`,
//! `EmitUnpopulated`): snake_case names, and the scalar fields of
//! `EgressInfo` written out even when default. The `livekit-protocol` serde
//! impls produce protojson (camelCase, defaults omitted), so the names are
//! rewritten and the top-level defaults filled in; nested messages keep
//! omitted defaults, which every protobuf JSON parser reads the same way.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub(crate) fn of(headers: &HeaderMap) -> Option<Self> {
        let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let mime = ct.split(';').next()?.trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/protobuf" | "application/x-protobuf" => Some(Self::Protobuf),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// A Twirp error: always JSON, with exactly `application/json` as content
/// type (the JS SDK compares it literally).
pub(crate) fn error(status: StatusCode, code: &str, msg: impl Into<String>) -> Response {
    let body = json!({"code": code, "msg": msg.into()}).to_string();
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A Twirp error not yet rendered, so handlers can return it cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TwirpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub msg: String,
}

impl TwirpError {
    pub(crate) fn new(status: StatusCode, code: &'static str, msg: impl Into<String>) -> Self {
        Self { status, code, msg: msg.into() }
    }
}

impl IntoResponse for TwirpError {
    fn into_response(self) -> Response {
        error(self.status, self.code, self.msg)
    }
}

pub(crate) fn decode<T>(encoding: Encoding, body: &[u8]) -> Result<T, TwirpError>
where
    T: prost::Message + Default + DeserializeOwned,
{
    let parsed = match encoding {
        Encoding::Protobuf => T::decode(body).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| {
        TwirpError::new(StatusCode::BAD_REQUEST, "malformed", format!("the request could not be decoded: {e}"))
    })
}

/// Which top-level defaults to write out in a JSON answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    EgressInfo,
    ListEgressResponse,
}

pub(crate) fn encode<T>(encoding: Encoding, msg: &T, shape: Shape) -> Response
where
    T: prost::Message + Serialize,
{
    match encoding {
        Encoding::Protobuf => {
            let mut resp = (StatusCode::OK, msg.encode_to_vec()).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/protobuf"));
            resp
        }
        Encoding::Json => {
            let mut value = match serde_json::to_value(msg) {
                Ok(v) => proto_names(v),
                Err(e) => {
                    return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
                }
            };
            match shape {
                Shape::EgressInfo => fill_egress_defaults(&mut value),
                Shape::ListEgressResponse => {
                    if let Some(obj) = value.as_object_mut() {
                        let items = obj.entry("items").or_insert_with(|| json!([]));
                        if let Some(items) = items.as_array_mut() {
                            items.iter_mut().for_each(fill_egress_defaults);
                        }
                        obj.entry("next_page_token").or_insert(Value::Null);
                    }
                }
            }
            let mut resp = (StatusCode::OK, value.to_string()).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
    }
}

/// Renames protojson's lowerCamelCase keys to proto (snake_case) names.
fn proto_names(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (snake(&k), proto_names(v))).collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(proto_names).collect()),
        other => other,
    }
}

fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn fill_egress_defaults(value: &mut Value) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    let defaults = [
        ("egress_id", json!("")),
        ("room_id", json!("")),
        ("room_name", json!("")),
        ("source_type", json!("EGRESS_SOURCE_TYPE_WEB")),
        ("status", json!("EGRESS_STARTING")),
        ("started_at", json!("0")),
        ("ended_at", json!("0")),
        ("updated_at", json!("0")),
        ("details", json!("")),
        ("error", json!("")),
        ("error_code", json!(0)),
        ("stream_results", json!([])),
        ("file_results", json!([])),
        ("segment_results", json!([])),
        ("image_results", json!([])),
        ("manifest_location", json!("")),
        ("backup_storage_used", json!(false)),
        ("retry_count", json!(0)),
    ];
    for (k, v) in defaults {
        obj.entry(k).or_insert(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_protocol as proto;

    #[test]
    fn json_answers_use_proto_names_and_write_defaults() {
        let info =
            proto::EgressInfo { egress_id: "EG_1".into(), updated_at: 1_735_689_620_123_456_789, ..Default::default() };
        let resp = encode(Encoding::Json, &info, Shape::EgressInfo);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let value = proto_names(serde_json::to_value(&info).unwrap());
        assert_eq!(value["egress_id"], "EG_1");
        assert_eq!(value["updated_at"], "1735689620123456789");
        let mut filled = value;
        fill_egress_defaults(&mut filled);
        assert_eq!(filled["status"], "EGRESS_STARTING");
        assert_eq!(filled["started_at"], "0");
        assert_eq!(filled["stream_results"], json!([]));
    }

    #[test]
    fn content_types_select_the_encoding() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json;charset=UTF-8".parse().unwrap());
        assert_eq!(Encoding::of(&h), Some(Encoding::Json));
        h.insert(header::CONTENT_TYPE, "application/protobuf".parse().unwrap());
        assert_eq!(Encoding::of(&h), Some(Encoding::Protobuf));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(Encoding::of(&h), None);
    }

    #[test]
    fn both_request_encodings_decode_to_the_same_message() {
        let req = proto::StopEgressRequest { egress_id: "EG_1".into() };
        let from_pb: proto::StopEgressRequest =
            decode(Encoding::Protobuf, &prost::Message::encode_to_vec(&req)).unwrap();
        let from_snake: proto::StopEgressRequest = decode(Encoding::Json, br#"{"egress_id":"EG_1"}"#).unwrap();
        let from_camel: proto::StopEgressRequest = decode(Encoding::Json, br#"{"egressId":"EG_1"}"#).unwrap();
        assert_eq!(from_pb, req);
        assert_eq!(from_snake, req);
        assert_eq!(from_camel, req);
    }
}
