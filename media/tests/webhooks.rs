//! Webhooks end to end: the simulators sign and POST them like the real
//! services; `WebhookVerifier` / `verify_webhook` accept the genuine ones
//! and reject every injected fault with the specified error.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use base64::Engine;
use common::{egress, eventually, mux, mux_ingest_url, sims};
use eventuall_media::livekit::proto::EgressStatus;
use eventuall_media::livekit::{StartSignal, WebhookVerifier, WebhookVerifyError};
use eventuall_media::mux::{CreateLiveStream, DEFAULT_TOLERANCE, MuxWebhookError, MuxWebhookEvent, verify_webhook};
use eventuall_media::sim::{DeliveryOutcome, SimConfig, Times, WebhookFault, sign_livekit_webhook};
use serde_json::Value;

#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

async fn receiver() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(|State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes| async move {
                inbox.lock().unwrap().push(Received { headers, body });
                "ok"
            }),
        )
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, inbox)
}

async fn wait_for(inbox: &Inbox, count: usize) -> Vec<Received> {
    eventually("webhooks", || async {
        let got = inbox.lock().unwrap().clone();
        (got.len() >= count).then_some(got)
    })
    .await
}

fn verifier() -> WebhookVerifier {
    let cfg = SimConfig::fast().livekit;
    WebhookVerifier::new([("APIother", "other-secret".to_owned()), (cfg.api_key.as_str(), cfg.api_secret)])
}

fn auth(r: &Received) -> &str {
    r.headers.get("authorization").unwrap().to_str().unwrap()
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn egress_webhooks_are_sent_and_signed_like_livekit() {
    let sims = sims().await;
    let (url, inbox) = receiver().await;
    sims.handle.livekit.set_webhook_url(Some(url));
    let client = egress(&sims);
    let info = client
        .start_web_egress("https://x/?saga=hooks", &["rtmp://example.net/live2/key".into()], StartSignal::Immediate)
        .await
        .unwrap();
    wait_for(&inbox, 2).await;
    client.stop_egress(&info.egress_id).await.unwrap();
    let got = wait_for(&inbox, 4).await;

    let verifier = verifier();
    let events: Vec<_> = got.iter().map(|r| verifier.verify(&r.body, auth(r)).unwrap()).collect();
    let names: Vec<_> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["egress_started", "egress_updated", "egress_updated", "egress_ended"]);
    let statuses: Vec<_> = events.iter().map(|e| e.egress_info.as_ref().unwrap().status).collect();
    assert_eq!(
        statuses,
        [
            EgressStatus::EgressStarting as i32,
            EgressStatus::EgressActive as i32,
            EgressStatus::EgressEnding as i32,
            EgressStatus::EgressComplete as i32
        ]
    );
    assert!(events.iter().all(|e| e.id.starts_with("EV_") && e.created_at > 0));

    let first = &got[0];
    assert_eq!(first.headers["content-type"], "application/webhook+json");
    assert!(!auth(first).starts_with("Bearer"), "raw JWT, no Bearer prefix");
    let body: Value = serde_json::from_slice(&first.body).unwrap();
    assert!(body["egressInfo"].get("status").is_none(), "STARTING (0) is omitted: {body}");
    assert!(body["egressInfo"]["updatedAt"].is_string(), "int64 as string");
    let active: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(active["egressInfo"]["status"], "EGRESS_ACTIVE");

    let claims = jwt_claims(auth(first));
    assert_eq!(claims["iss"], SimConfig::fast().livekit.api_key);
    assert_eq!(claims["exp"].as_u64().unwrap(), claims["iat"].as_u64().unwrap() + 300);
    assert_eq!(claims["nbf"], claims["iat"]);
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&first.body));
    assert_eq!(claims["sha256"], hash);
}

#[tokio::test]
async fn participant_webhooks_carry_room_and_participant() {
    let sims = sims().await;
    let (url, inbox) = receiver().await;
    sims.handle.livekit.set_webhook_url(Some(url));
    sims.handle.livekit.participant_joined("show-42", "alice", "Alice");
    sims.handle.livekit.participant_left("show-42", "alice", "Alice");
    let got = wait_for(&inbox, 2).await;
    let verifier = verifier();
    let joined = verifier.verify(&got[0].body, auth(&got[0])).unwrap();
    let left = verifier.verify(&got[1].body, auth(&got[1])).unwrap();
    assert_eq!(joined.event, "participant_joined");
    assert_eq!(left.event, "participant_left");
    let (room, who) = (joined.room.unwrap(), joined.participant.unwrap());
    assert_eq!((room.name.as_str(), room.num_participants), ("show-42", 1));
    assert_eq!((who.identity.as_str(), who.name.as_str()), ("alice", "Alice"));
    assert_eq!(left.participant.unwrap().sid, who.sid, "same participant sid on leave");
    assert_eq!(left.room.unwrap().sid, room.sid);
}

#[tokio::test]
async fn webhook_faults_are_rejected_with_the_right_error() {
    let sims = sims().await;
    let (url, inbox) = receiver().await;
    sims.handle.livekit.set_webhook_url(Some(url));
    let faults = sims.faults();
    let lk = &sims.handle.livekit;
    for fault in [
        WebhookFault::BadSignature,
        WebhookFault::UnknownKey,
        WebhookFault::BodyHashMismatch,
        WebhookFault::Expired,
        WebhookFault::Drop,
        WebhookFault::Duplicate,
    ] {
        faults.webhook(fault, Times::Once);
        lk.participant_joined("r", &format!("{fault:?}"), "x");
    }
    let got = wait_for(&inbox, 6).await;
    let v = verifier();
    let results: Vec<_> = got.iter().map(|r| v.verify(&r.body, auth(r)).map(|e| e.id)).collect();
    assert_eq!(results[0], Err(WebhookVerifyError::BadSignature));
    assert_eq!(results[1], Err(WebhookVerifyError::UnknownKey("APIrotatedAway".into())));
    assert_eq!(results[2], Err(WebhookVerifyError::BadSignature), "body re-serialised by a proxy");
    assert_eq!(results[3], Err(WebhookVerifyError::Expired));
    // The dropped one never arrives; the duplicate arrives twice with one id.
    let dup_a = results[4].clone().unwrap();
    assert_eq!(results[5], Ok(dup_a));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(inbox.lock().unwrap().len(), 6);
    let log = lk.webhooks();
    assert_eq!(log.len(), 7);
    assert_eq!(log[4].outcome, DeliveryOutcome::Dropped);
    assert!(
        log.iter()
            .filter(|w| w.outcome != DeliveryOutcome::Dropped)
            .all(|w| w.outcome == DeliveryOutcome::Delivered { status: 200 })
    );
}

#[tokio::test]
async fn the_verifier_handles_bearer_tampering_wrong_keys_and_leeway() {
    let cfg = SimConfig::fast().livekit;
    let body = r#"{"event":"room_started","room":{"name":"r"},"id":"EV_1","createdAt":"1"}"#.to_owned();
    let signed = sign_livekit_webhook(&cfg.api_key, &cfg.api_secret, body.clone(), None);
    let v = verifier();
    assert_eq!(v.verify(body.as_bytes(), &signed.authorization).unwrap().event, "room_started");
    let bearer = format!("Bearer {}", signed.authorization);
    assert_eq!(v.verify(body.as_bytes(), &bearer).unwrap().id, "EV_1", "Bearer prefix tolerated");
    let tampered = body.replace("\"r\"", "\"s\"");
    assert_eq!(v.verify(tampered.as_bytes(), &signed.authorization), Err(WebhookVerifyError::BadSignature));
    let only_other = WebhookVerifier::new([("APIother", "other-secret")]);
    assert_eq!(
        only_other.verify(body.as_bytes(), &signed.authorization),
        Err(WebhookVerifyError::UnknownKey(cfg.api_key.clone()))
    );
    let same_key_other_secret = WebhookVerifier::new([(cfg.api_key.as_str(), "rotated-secret")]);
    assert_eq!(
        same_key_other_secret.verify(body.as_bytes(), &signed.authorization),
        Err(WebhookVerifyError::BadSignature)
    );
    assert!(matches!(v.verify(body.as_bytes(), "garbage"), Err(WebhookVerifyError::Malformed(_))));
    assert!(matches!(v.verify(body.as_bytes(), ""), Err(WebhookVerifyError::Malformed(_))));

    // 60 s leeway: expired 30 s ago still passes, 120 s ago does not.
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let token = |exp: u64| {
        use sha2::Digest;
        let claims = serde_json::json!({"iss": cfg.api_key, "iat": exp - 300, "nbf": exp - 300, "exp": exp,
            "sha256": base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body.as_bytes()))});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(cfg.api_secret.as_bytes()),
        )
        .unwrap()
    };
    assert!(v.verify(body.as_bytes(), &token(now - 30)).is_ok());
    assert_eq!(v.verify(body.as_bytes(), &token(now - 120)), Err(WebhookVerifyError::Expired));
}

#[tokio::test]
async fn mux_webhooks_follow_the_live_stream_sequence_and_verify() {
    let sims = sims().await;
    let (url, inbox) = receiver().await;
    sims.handle.mux.set_webhook_url(Some(url));
    let (mux, egress) = (mux(&sims), egress(&sims));
    let stream = mux.create_live_stream(&CreateLiveStream::default()).await.unwrap();
    let started = egress
        .start_web_egress("https://x/?saga=m", &[mux_ingest_url(&stream.stream_key)], StartSignal::Immediate)
        .await
        .unwrap();
    wait_for(&inbox, 5).await;
    egress.stop_egress(&started.egress_id).await.unwrap();
    let got = wait_for(&inbox, 8).await;
    let secret = SimConfig::fast().mux.webhook_secret;
    let kinds: Vec<String> = got
        .iter()
        .map(|r| {
            let sig = r.headers["mux-signature"].to_str().unwrap();
            verify_webhook(&secret, sig, &r.body, SystemTime::now(), DEFAULT_TOLERANCE).unwrap();
            assert_eq!(
                verify_webhook("wrong", sig, &r.body, SystemTime::now(), DEFAULT_TOLERANCE),
                Err(MuxWebhookError::BadSignature)
            );
            serde_json::from_slice::<MuxWebhookEvent>(&r.body).unwrap().kind
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "video.live_stream.connected",
            "video.asset.created",
            "video.live_stream.recording",
            "video.live_stream.active",
            "video.asset.ready",
            "video.live_stream.disconnected",
            "video.live_stream.idle",
            "video.asset.live_stream_completed",
        ]
    );
    let active: Value = serde_json::from_slice(&got[3].body).unwrap();
    assert!(active["data"]["created_at"].is_number(), "webhook created_at is a number");
    assert_eq!(active["data"]["status"], "active");
}
