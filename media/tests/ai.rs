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
    assert_eq!(sim.handle.requests().chat_streams, 1, "no retry after the first chunk");
}

#[tokio::test]
async fn a_stall_longer_than_the_chunk_timeout_times_out_and_a_shorter_one_does_not() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    let tight = client(&sim, |c| c.chunk_timeout = Duration::from_millis(300));
    sim.faults().arm(AiFault::StallAfter { chunks: 2, stall: Duration::from_millis(100) }, 1);
    let (content, _) = collect(&tight, "Go").await.expect("a 100 ms stall fits a 300 ms chunk timeout");
    assert_eq!(content, expected("Go"));
    sim.faults().arm(AiFault::StallAfter { chunks: 2, stall: Duration::from_millis(900) }, 1);
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
    sim.faults().arm(AiFault::SlowFirstToken { delay: Duration::from_millis(100) }, 1);
    collect(&tight, "Go").await.expect("100 ms fits a 300 ms first-chunk timeout");
    sim.faults().arm(AiFault::SlowFirstToken { delay: Duration::from_millis(900) }, 1);
    let (content, stream) = collect(&tight, "Go").await.expect("one slow attempt, then a fast retry");
    assert_eq!(content, expected("Go"));
    assert_eq!(stream.attempts(), 2);
    sim.faults().arm(AiFault::SlowFirstToken { delay: Duration::from_millis(900) }, 2);
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

#[tokio::test]
async fn a_character_split_across_tcp_reads_survives() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A hand-written server: the simulator's chunks are whole words, so only
    // raw writes can cut a character in two on the wire.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let text = "Erzähl mir von 🦀 und Ω.";
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = vec![0u8; 64 * 1024];
        let _ = socket.read(&mut request).await.unwrap();
        let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
            let chunk = serde_json::json!({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            format!("data: {chunk}\n\n")
        };
        let body = [
            chunk(serde_json::json!({"role": "assistant"}), serde_json::Value::Null),
            chunk(serde_json::json!({"content": text}), serde_json::Value::Null),
            chunk(serde_json::json!({}), "stop".into()),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat();
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        let bytes = body.as_bytes();
        let cuts = [body.find('ä').unwrap() + 1, body.find('🦀').unwrap() + 1, body.find('🦀').unwrap() + 3];
        let mut from = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            socket.write_all(&bytes[from..cut]).await.unwrap();
            socket.flush().await.unwrap();
            // Separate reads on the client: the pieces are not coalesced.
            tokio::time::sleep(Duration::from_millis(20)).await;
            from = cut;
        }
    });
    let client = AiClient::new(AiConfig { base_url: url, ..AiConfig::default() }).unwrap();
    let mut stream = client.stream_chat(request("Go")).await.expect("the stream opens");
    let mut content = String::new();
    while let Some(delta) = stream.next_delta().await.expect("no break") {
        content.push_str(&delta);
    }
    assert_eq!(content, text);
}

#[tokio::test]
async fn every_attempt_is_counted_by_the_simulator() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    sim.faults().arm(AiFault::ServerError, 2);
    let (_, stream) = collect(&client(&sim, |_| {}), "Go").await.expect("the third attempt succeeds");
    let client = client(&sim, |_| {});
    client.complete_json(request("Rust")).await.unwrap();
    client.transcribe(Bytes::from_static(b"RIFF"), "answer.wav", "audio/wav").await.unwrap();
    let served = sim.handle.requests();
    assert_eq!(stream.attempts(), 3);
    assert_eq!((served.faulted, served.chat_streams, served.json_completions, served.transcriptions), (2, 1, 1, 1));
    assert_eq!(served.chat_completions, 0, "JSON mode is counted apart");
}

#[tokio::test]
async fn the_control_api_arms_clears_and_counts() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    let root = sim.url.trim_end_matches("/v1").to_owned();
    let http = reqwest::Client::new();
    let arm = |body: serde_json::Value| http.post(format!("{root}/_sim/faults")).json(&body).send();
    assert_eq!(arm(serde_json::json!({"fault": "server_error", "times": 5})).await.unwrap().status(), 204);
    http.delete(format!("{root}/_sim/faults")).send().await.unwrap().error_for_status().unwrap();
    let cut = serde_json::json!({"fault": "cut_after", "chunks": 2});
    assert_eq!(arm(cut).await.unwrap().status(), 204);
    let (partial, error) = collect(&client(&sim, |_| {}), "Go").await.err().expect("the armed cut");
    assert!(matches!(error, AiError::StreamBroken(_)) && !partial.is_empty(), "{error:?}");
    collect(&client(&sim, |_| {}), "Go").await.expect("the cut was armed once, the 500s were cleared");
    let bad = arm(serde_json::json!({"fault": "no_such_fault"})).await.unwrap();
    assert_eq!(bad.status(), 400);
    let served: serde_json::Value =
        http.get(format!("{root}/_sim/requests")).send().await.unwrap().json().await.unwrap();
    assert_eq!(served["chat_streams"], 2);
    assert_eq!(served["faulted"], 0);
}

#[tokio::test]
async fn bad_requests_get_openai_error_bodies_and_rate_limits_their_headers() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    let http = reqwest::Client::new();
    let chat = format!("{}/chat/completions", sim.url);
    let not_json = http.post(&chat).header("content-type", "application/json").body("{nope").send().await.unwrap();
    assert_eq!(not_json.status(), 400);
    let body: serde_json::Value = not_json.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let no_messages = http.post(&chat).json(&serde_json::json!({"model": "m"})).send().await.unwrap();
    assert_eq!(no_messages.status(), 400);
    let body: serde_json::Value = no_messages.json().await.unwrap();
    assert_eq!(body["error"]["param"], "messages");
    let no_file = reqwest::multipart::Form::new().text("model", "w");
    let answer = http.post(format!("{}/audio/transcriptions", sim.url)).multipart(no_file).send().await.unwrap();
    assert_eq!(answer.status(), 400);
    sim.faults().arm(AiFault::RateLimited { retry_after_secs: 7 }, 1);
    let limited = http
        .post(&chat)
        .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    let header = |name: &str| limited.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("retry-after"), "7");
    assert_eq!(header("x-ratelimit-remaining-requests"), "0");
    assert!(limited.headers().contains_key("x-ratelimit-limit-requests"));
    assert!(limited.headers().contains_key("x-ratelimit-reset-requests"));
}

#[tokio::test]
async fn a_slow_json_completion_times_out_as_a_request() {
    let sim = AiSimulator::spawn(AiSimConfig::fast()).await.unwrap();
    sim.faults().arm(AiFault::SlowFirstToken { delay: Duration::from_millis(600) }, 1);
    let tight = client(&sim, |c| {
        c.request_timeout = Duration::from_millis(200);
        c.max_retries = 0;
    });
    let error = tight.complete_json(request("Rust")).await.expect_err("too slow");
    assert_eq!(error, AiError::Timeout { phase: "request" });
}
