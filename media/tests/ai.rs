//! The AI client against the AI simulator over real HTTP: streamed replies,
//! JSON completions, transcriptions, and every fault on both sides of the
//! client's timeouts and retry rules.

use std::time::{Duration, Instant};

use bytes::Bytes;
use eventuall_media::ai::{AiClient, AiConfig, AiError, ChatMessage, ChatRequest, Role};
use eventuall_media::sim::{AiFault, AiSimConfig, AiSimulator, reply_text, transcript_of};

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage { role: Role::System, content: "You interview candidates.".into() },
            ChatMessage { role: Role::User, content: text.into() },
        ],
        max_tokens: None,
        temperature: None,
    }
}

fn expected(text: &str) -> String {
    reply_text(&[("system".into(), "You interview candidates.".into()), ("user".into(), text.into())])
}

fn client(sim: &AiSimulator, tune: impl FnOnce(&mut AiConfig)) -> AiClient {
    let mut config = AiConfig {
        base_url: sim.url.clone(),
        backoff: Duration::from_millis(5),
        first_chunk_timeout: Duration::from_secs(5),
        chunk_timeout: Duration::from_secs(5),
        ..AiConfig::default()
    };
    tune(&mut config);
    AiClient::new(config).expect("client builds")
}

async fn collect(
    client: &AiClient,
    text: &str,
) -> Result<(String, eventuall_media::ai::ChatStream), (String, AiError)> {
    let mut stream = client.stream_chat(request(text)).await.map_err(|e| (String::new(), e))?;
    let mut content = String::new();
    loop {
        match stream.next_delta().await {
            Ok(Some(delta)) => content.push_str(&delta),
            Ok(None) => return Ok((content, stream)),
            Err(error) => return Err((content, error)),
        }
    }
}

#[tokio::test]
async fn a_streamed_reply_arrives_whole_with_its_usage() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    let (content, stream) = collect(&client(&sim, |_| {}), "Rust").await.expect("the reply streams");
    assert_eq!(content, expected("Rust"));
    let usage = stream.usage().expect("include_usage was asked for");
    assert_eq!(usage.completion_tokens, 12, "one token per content chunk");
    assert_eq!(usage.prompt_tokens, 4);
    assert_eq!(stream.finish_reason().as_deref(), Some("stop"));
    assert_eq!(stream.model().as_deref(), Some("@cf/meta/llama-3.1-8b-instruct"));
    assert_eq!(stream.attempts(), 1);
    assert_eq!(sim.handle.requests().chat_streams, 1);
}

#[tokio::test]
async fn rate_limits_and_server_errors_before_the_first_chunk_are_retried() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    sim.faults().arm(AiFault::RateLimited { retry_after_secs: 0 }, 1);
    sim.faults().arm(AiFault::ServerError, 1);
    let (content, stream) = collect(&client(&sim, |_| {}), "Go").await.expect("the third attempt succeeds");
    assert_eq!(content, expected("Go"));
    assert_eq!(stream.attempts(), 3);
}

#[tokio::test]
async fn retries_stop_after_the_configured_count() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    sim.faults().arm(AiFault::ServerError, 3);
    let (_, error) = collect(&client(&sim, |c| c.max_retries = 2), "Go").await.err().expect("three failures");
    assert!(matches!(error, AiError::Status { status: 500, .. }), "{error:?}");
    assert_eq!(error.outcome(), "server_error");
    sim.faults().clear();
    sim.faults().arm(AiFault::ServerError, 2);
    collect(&client(&sim, |c| c.max_retries = 2), "Go").await.expect("two failures and a success fit in two retries");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    sim.faults().arm(AiFault::RateLimited { retry_after_secs: 1 }, 1);
    let started = Instant::now();
    collect(&client(&sim, |_| {}), "Go").await.expect("the retry succeeds");
    assert!(started.elapsed() >= Duration::from_millis(950), "waited for retry-after: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_stream_cut_after_its_first_chunk_is_broken_and_not_retried() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    sim.faults().arm(AiFault::CutAfter { chunks: 3 }, 1);
    let (partial, error) = collect(&client(&sim, |_| {}), "Go").await.err().expect("the stream breaks");
    assert!(matches!(error, AiError::StreamBroken(_)), "{error:?}");
    assert!(!partial.is_empty() && expected("Go").starts_with(&partial), "the partial text is a prefix: {partial:?}");
    assert_eq!(sim.handle.requests().chat_streams, 1, "no retry after the first chunk");
}

#[tokio::test]
async fn an_error_event_mid_stream_breaks_it() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    sim.faults().arm(AiFault::ErrorEvent, 1);
    let (_, error) = collect(&client(&sim, |_| {}), "Go").await.err().expect("the stream breaks");
    assert!(matches!(&error, AiError::StreamBroken(m) if m.contains("server had an error")), "{error:?}");
}

#[tokio::test]
async fn a_stall_longer_than_the_chunk_timeout_times_out_and_a_shorter_one_does_not() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    let tight = client(&sim, |c| c.chunk_timeout = Duration::from_millis(300));
    sim.faults().arm(AiFault::StallAfter { chunks: 2, stall_ms: 100 }, 1);
    let (content, _) = collect(&tight, "Go").await.expect("a 100 ms stall fits a 300 ms chunk timeout");
    assert_eq!(content, expected("Go"));
    sim.faults().arm(AiFault::StallAfter { chunks: 2, stall_ms: 900 }, 1);
    let (_, error) = collect(&tight, "Go").await.err().expect("a 900 ms stall does not");
    assert_eq!(error, AiError::Timeout { phase: "chunk" });
}

#[tokio::test]
async fn a_slow_first_token_past_the_timeout_is_retried_then_given_up() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    let tight = client(&sim, |c| {
        c.first_chunk_timeout = Duration::from_millis(300);
        c.max_retries = 1;
    });
    sim.faults().arm(AiFault::SlowFirstToken { delay_ms: 100 }, 1);
    collect(&tight, "Go").await.expect("100 ms fits a 300 ms first-chunk timeout");
    sim.faults().arm(AiFault::SlowFirstToken { delay_ms: 900 }, 1);
    let (content, stream) = collect(&tight, "Go").await.expect("one slow attempt, then a fast retry");
    assert_eq!(content, expected("Go"));
    assert_eq!(stream.attempts(), 2);
    sim.faults().arm(AiFault::SlowFirstToken { delay_ms: 900 }, 2);
    let (_, error) = collect(&tight, "Go").await.err().expect("both attempts too slow");
    assert_eq!(error, AiError::Timeout { phase: "first_chunk" });
}

#[tokio::test]
async fn a_missing_or_wrong_api_key_is_refused() {
    let sim = AiSimulator::spawn(AiSimConfig { api_key: Some("sk-test".into()), ..AiSimConfig::fast() }).await.unwrap();
    let (_, error) = collect(&client(&sim, |_| {}), "Go").await.err().expect("no key");
    assert!(
        matches!(&error, AiError::Status { status: 401, code: Some(code), .. } if code == "invalid_api_key"),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    collect(&client(&sim, |c| c.api_key = Some("sk-test".into())), "Go").await.expect("the right key");
}

#[tokio::test]
async fn json_completions_and_transcriptions_are_read() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    let client = client(&sim, |_| {});
    let json = client.complete_json(request("We need Kubernetes and Rust, and more rust.")).await.expect("json");
    assert_eq!(json.value, serde_json::json!({"skills": ["Kubernetes", "Rust"]}));
    assert!(json.usage.is_some());
    let audio = Bytes::from(vec![7u8; 3200]);
    let transcription = client.transcribe(audio, "answer.wav", "audio/wav").await.expect("transcription");
    assert_eq!(transcription.text, transcript_of(3200));
    sim.faults().arm(AiFault::Transcript { text: "Custom words".into() }, 1);
    let transcription = client.transcribe(Bytes::from_static(b"x"), "answer.webm", "audio/webm").await.unwrap();
    assert_eq!(transcription.text, "Custom words");
    sim.faults().arm(AiFault::ServerError, 1);
    let retried = client.transcribe(Bytes::from_static(b"x"), "answer.webm", "audio/webm").await.unwrap();
    assert_eq!(retried.attempts, 2);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let client = AiClient::new(AiConfig {
        base_url: url,
        max_retries: 1,
        backoff: Duration::from_millis(1),
        ..AiConfig::default()
    })
    .unwrap();
    let error = client.stream_chat(request("Go")).await.err().expect("nobody listens");
    assert_eq!(error.outcome(), "connect", "{error:?}");
    assert!(AiClient::new(AiConfig { base_url: "localhost:1".into(), ..AiConfig::default() }).is_err());
}
