//! The in-process "RTMP bus" linking the two simulators: an egress output
//! URL that names a Mux stream key becomes an encoder connection on the Mux
//! simulator, and Mux hanging up (disable, delete, end of the `complete`
//! grace) is reported back to the egress as a failed stream.
//!
//! Also owns LiveKit's stream-key redaction, since it is about the same URLs.

/// Mux ended an encoder connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IngestDropped {
    pub connection: u64,
}

/// Why Mux refused an encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IngestRefused {
    #[error("rtmp connection refused: unknown stream key")]
    UnknownKey,
    #[error("rtmp connection refused: live stream is disabled")]
    Disabled,
    #[error("rtmp connection refused: stream key already in use")]
    AlreadyConnected,
}

/// The Mux stream key an output URL publishes to, if it is a Mux ingest URL:
/// `rtmp(s)://host[:port]/app/{key}` or `mux://{key}`.
pub(crate) fn mux_stream_key(url: &str) -> Option<&str> {
    if let Some(key) = url.strip_prefix("mux://") {
        return (!key.is_empty() && !key.contains('/')).then_some(key);
    }
    let rest = url.strip_prefix("rtmps://").or_else(|| url.strip_prefix("rtmp://"))?;
    let (_host, path) = rest.split_once('/')?;
    let key = path.strip_prefix("app/")?;
    (!key.is_empty() && !key.contains('/')).then_some(key)
}

/// LiveKit never echoes a stream key: `rtmps://h/app/STREAMKEY123` becomes
/// `rtmps://h/app/{STR...123}` and `mux://KEY` becomes `mux://{KEY…}` alike.
/// The visible prefix/suffix shrink with the key: 3 chars each for keys of
/// 9+ chars, 2 for 6+, 1 for 3+, none below.
pub(crate) fn redact_stream_url(url: &str) -> String {
    let (head, key) = if let Some(key) = url.strip_prefix("mux://") {
        ("mux://", key)
    } else if url.starts_with("rtmp://") || url.starts_with("rtmps://") {
        match url.rfind('/') {
            Some(i) if i + 1 < url.len() && url[..i].contains("://") && !url[..i].ends_with('/') => {
                (&url[..=i], &url[i + 1..])
            }
            _ => return url.to_owned(),
        }
    } else {
        return url.to_owned();
    };
    let chars: Vec<char> = key.chars().collect();
    let keep = match chars.len() {
        n if n >= 9 => 3,
        n if n >= 6 => 2,
        n if n >= 3 => 1,
        _ => 0,
    };
    let prefix: String = chars[..keep].iter().collect();
    let suffix: String = chars[chars.len() - keep..].iter().collect();
    format!("{head}{{{prefix}...{suffix}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mux_ingest_urls_yield_their_key() {
        assert_eq!(mux_stream_key("rtmps://global-live.mux.com:443/app/abc-123"), Some("abc-123"));
        assert_eq!(mux_stream_key("rtmp://global-live.mux.com:5222/app/k"), Some("k"));
        assert_eq!(mux_stream_key("mux://8e0a2ae"), Some("8e0a2ae"));
        assert_eq!(mux_stream_key("rtmp://a.rtmp.youtube.com/live2/key"), None);
        assert_eq!(mux_stream_key("https://example.com/app/key"), None);
        assert_eq!(mux_stream_key("rtmps://h/app/"), None);
    }

    #[test]
    fn stream_keys_are_redacted_like_livekit() {
        assert_eq!(
            redact_stream_url("rtmps://global-live.mux.com:443/app/8e0cafe2ae"),
            "rtmps://global-live.mux.com:443/app/{8e0...2ae}"
        );
        assert_eq!(redact_stream_url("mux://stream"), "mux://{st...am}");
        assert_eq!(redact_stream_url("rtmp://h/app/ab"), "rtmp://h/app/{...}");
        assert_eq!(redact_stream_url("https://example.com/page"), "https://example.com/page");
    }
}
