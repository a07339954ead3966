//! The `livekit-api` EgressClient (through our `Egress` wrapper, binary
//! protobuf) and raw Twirp JSON (what the JS SDK speaks) against the
//! LiveKit simulator, with every request and lifecycle fault.

mod common;

use std::time::Duration;

use common::{egress, egress_config, eventually, sims};
use eventuall_media::livekit::proto::{self, EgressStatus};
use eventuall_media::livekit::{self as lk, Egress, EgressConfig, EgressError, StartSignal, StopOutcome};
use eventuall_media::sim::{EgressFault, ResponseLoss, SimConfig, Times, TwirpFault, TwirpMethod};
use livekit_api::access_token::{AccessToken, VideoGrants};
use serde_json::{Value, json};

const OUT: &str = "rtmp://example.net/live2/external-key";

fn outputs() -> Vec<String> {
    vec![OUT.to_owned()]
}

async fn wait_terminal(client: &Egress, id: &str) -> proto::EgressInfo {
    eventually("terminal egress", || async {
        let e = client.get_egress(id).await.unwrap().unwrap();
        lk::is_terminal(&e).then_some(e)
    })
    .await
}

#[tokio::test]
async fn start_list_and_stop_round_trip_over_protobuf() {
    let sims = sims().await;
    let client = egress(&sims);
    let page = "https://app.example.com/composite?saga=rt";
    let info = client.start_web_egress(page, &outputs(), StartSignal::Immediate).await.unwrap();
    assert!(info.egress_id.starts_with("EG_"));
    assert_eq!(info.source_type, proto::EgressSourceType::Web as i32);

    let found = client.find_active_egress_by_url(page).await.unwrap().expect("listed as active");
    assert_eq!(found.egress_id, info.egress_id);
    assert_eq!(client.find_active_egress_by_url("https://other").await.unwrap(), None);
    assert_eq!(client.get_egress("EG_unknown").await.unwrap(), None);

    eventually("active", || async {
        (lk::status(&client.get_egress(&info.egress_id).await.unwrap().unwrap()) == EgressStatus::EgressActive)
            .then_some(())
    })
    .await;
    let StopOutcome::Stopping(stopping) = client.stop_egress(&info.egress_id).await.unwrap() else {
        panic!("stoppable")
    };
    assert_eq!(lk::status(&stopping), EgressStatus::EgressEnding);
    let done = wait_terminal(&client, &info.egress_id).await;
    assert_eq!(lk::status(&done), EgressStatus::EgressComplete);
    assert!(client.list_active_egress().await.unwrap().is_empty());
    assert!(client.find_active_egress_by_url(page).await.unwrap().is_none());
    assert_eq!(client.stop_egress("EG_unknown").await, Err(EgressError::NotFound("egress does not exist".into())));
}

#[tokio::test]
async fn stopping_before_the_start_aborts_the_egress() {
    let mut config = SimConfig::fast();
    config.livekit.egress_start_delay = Duration::from_secs(5);
    let sims = common::sims_with(config).await;
    let client = egress(&sims);
    let info = client.start_web_egress("https://x/?saga=early", &outputs(), StartSignal::AwaitPage).await.unwrap();
    let StopOutcome::Stopping(stopped) = client.stop_egress(&info.egress_id).await.unwrap() else { panic!() };
    assert_eq!(lk::status(&stopped), EgressStatus::EgressAborted);
    assert_eq!(stopped.error, "Stop called before pipeline could start");
    assert_eq!(stopped.error_code, 412);
}

#[tokio::test]
async fn update_stream_adds_and_removes_outputs() {
    let sims = sims().await;
    let client = egress(&sims);
    let info = client.start_web_egress("https://x/?saga=u", &outputs(), StartSignal::Immediate).await.unwrap();
    eventually("active", || async {
        (lk::status(&client.get_egress(&info.egress_id).await.unwrap().unwrap()) == EgressStatus::EgressActive)
            .then_some(())
    })
    .await;
    let extra = "rtmp://example.net/live2/second-key".to_owned();
    let updated = client.client().update_stream(&info.egress_id, vec![extra.clone()], vec![]).await.unwrap();
    assert_eq!(updated.stream_results.len(), 2);
    let updated = client.client().update_stream(&info.egress_id, vec![], vec![OUT.into()]).await.unwrap();
    assert_eq!(updated.stream_results[0].status, proto::stream_info::Status::Finished as i32);
    assert_eq!(lk::status(&updated), EgressStatus::EgressActive);
    let last = client.client().update_stream(&info.egress_id, vec![], vec![extra]).await.unwrap();
    assert_eq!(lk::status(&last), EgressStatus::EgressComplete, "removing the last stream ends it");
    let err = client.client().update_stream(&info.egress_id, vec![OUT.into()], vec![]).await.unwrap_err();
    assert!(matches!(EgressError::from(err), EgressError::FailedPrecondition(m) if m.contains("cannot be updated")));
}

#[tokio::test]
async fn request_faults_keep_their_twirp_codes() {
    let sims = sims().await;
    let client = egress(&sims);
    let faults = sims.faults();
    let outs = outputs();
    let start = || client.start_web_egress("https://x/?saga=f", &outs, StartSignal::Immediate);

    faults.livekit_request(
        TwirpMethod::StartWebEgress,
        TwirpFault::SlowThenUnavailable { delay: Duration::from_millis(100) },
        Times::Once,
    );
    let started = std::time::Instant::now();
    let err = start().await.unwrap_err();
    assert_eq!(err, EgressError::Unavailable("no response from servers".into()));
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(err.twirp_code(), Some("unavailable"));

    faults.livekit_request(TwirpMethod::StartWebEgress, TwirpFault::ResourceExhausted, Times::Once);
    assert!(matches!(start().await, Err(EgressError::ResourceExhausted(_))));

    faults.livekit_request(TwirpMethod::StartWebEgress, TwirpFault::BadGatewayHtml, Times::Once);
    let err = start().await.unwrap_err();
    assert!(matches!(err, EgressError::Decode(_)), "a non-JSON 502 loses its status: {err:?}");
    assert_eq!(err.twirp_code(), None);

    assert!(sims.handle.livekit.egresses().is_empty(), "none of these created an egress");
}

#[tokio::test]
async fn a_start_whose_response_is_lost_is_found_by_page_url() {
    let sims = sims().await;
    let faults = sims.faults();
    let client = Egress::new(&EgressConfig { request_timeout: Duration::from_millis(300), ..egress_config(&sims) });

    faults.livekit_request(
        TwirpMethod::StartWebEgress,
        TwirpFault::CommitThenLose(ResponseLoss::InternalError),
        Times::Once,
    );
    let err = client.start_web_egress("https://x/?saga=lost-1", &outputs(), StartSignal::Immediate).await.unwrap_err();
    assert!(matches!(err, EgressError::Internal(_)));
    assert!(err.outcome_unknown());
    assert!(client.find_active_egress_by_url("https://x/?saga=lost-1").await.unwrap().is_some());

    faults.livekit_request(
        TwirpMethod::StartWebEgress,
        TwirpFault::CommitThenLose(ResponseLoss::Hang(Duration::from_secs(2))),
        Times::Once,
    );
    let err = client.start_web_egress("https://x/?saga=lost-2", &outputs(), StartSignal::Immediate).await.unwrap_err();
    assert_eq!(err, EgressError::Timeout);
    assert!(client.find_active_egress_by_url("https://x/?saga=lost-2").await.unwrap().is_some());

    faults.livekit_request(TwirpMethod::StartWebEgress, TwirpFault::CommitThenLose(ResponseLoss::Reset), Times::Once);
    let err = client.start_web_egress("https://x/?saga=lost-3", &outputs(), StartSignal::Immediate).await.unwrap_err();
    assert!(err.outcome_unknown(), "{err:?}");
    assert!(client.find_active_egress_by_url("https://x/?saga=lost-3").await.unwrap().is_some());
    assert_eq!(sims.handle.livekit.egresses().len(), 3, "one egress per call: no failover replay");
}

#[tokio::test]
async fn lifecycle_faults_end_egresses_with_the_documented_errors() {
    let sims = sims().await;
    let client = egress(&sims);
    let faults = sims.faults();
    let start = |saga: &'static str| {
        let client = &client;
        async move {
            client
                .start_web_egress(&format!("https://x/?saga={saga}"), &outputs(), StartSignal::AwaitPage)
                .await
                .unwrap()
                .egress_id
        }
    };

    faults.egress(EgressFault::AbortStartSignal, Times::Once);
    let aborted = wait_terminal(&client, &start("abort").await).await;
    assert_eq!(lk::status(&aborted), EgressStatus::EgressAborted);
    assert_eq!((aborted.error.as_str(), aborted.error_code), ("Start signal not received", 412));
    assert!(aborted.ended_at > 0);

    faults.egress(EgressFault::FailMidStream { after: Duration::from_millis(30) }, Times::Once);
    let failed = wait_terminal(&client, &start("fail").await).await;
    assert_eq!(lk::status(&failed), EgressStatus::EgressFailed);
    assert!(failed.started_at > 0, "it was active first");
    assert_eq!(failed.stream_results[0].status, proto::stream_info::Status::Failed as i32);

    faults.egress(EgressFault::LimitReached { after: Duration::from_millis(30) }, Times::Once);
    let limited = wait_terminal(&client, &start("limit").await).await;
    assert_eq!(lk::status(&limited), EgressStatus::EgressLimitReached);
    assert_eq!((limited.error.as_str(), limited.error_code), ("Session limit reached", 413));

    faults.egress(EgressFault::StuckStarting, Times::Once);
    let stuck = start("stuck").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let info = client.get_egress(&stuck).await.unwrap().unwrap();
    assert_eq!(lk::status(&info), EgressStatus::EgressStarting);
    assert_eq!(sims.handle.livekit.active_egresses().len(), 1);
}

fn bearer(grants: VideoGrants) -> String {
    let cfg = SimConfig::fast().livekit;
    let jwt = AccessToken::with_api_key(&cfg.api_key, &cfg.api_secret).with_grants(grants).to_jwt().unwrap();
    format!("Bearer {jwt}")
}

async fn twirp_json(url: &str, method: &str, auth: &str, body: Value) -> (u16, String, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/twirp/livekit.Egress/{method}"))
        .header("content-type", "application/json;charset=UTF-8")
        .header("authorization", auth)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, ct, resp.json().await.unwrap())
}

#[tokio::test]
async fn twirp_json_accepts_both_casings_and_answers_with_proto_names() {
    let sims = sims().await;
    let auth = bearer(VideoGrants { room_record: true, ..Default::default() });
    let camel = json!({"url": "https://x/?saga=js", "awaitStartSignal": true,
        "streamOutputs": [{"protocol": "RTMP", "urls": ["rtmps://global-live.mux.com:443/app/abcdefghijkl"]}]});
    let (status, ct, info) = twirp_json(&sims.livekit_url, "StartWebEgress", &auth, camel).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let id = info["egress_id"].as_str().unwrap().to_owned();
    assert_eq!(info["status"], "EGRESS_STARTING", "defaults are written out: {info}");
    assert_eq!(info["started_at"], "0");
    assert_eq!(info["web"]["await_start_signal"], true);
    assert_eq!(info["web"]["stream_outputs"][0]["urls"][0], "rtmps://global-live.mux.com:443/app/{abc...jkl}");
    assert!(info["updated_at"].as_str().unwrap().len() >= 19, "int64 nanoseconds as a string");

    let (status, _, list) =
        twirp_json(&sims.livekit_url, "ListEgress", &auth, json!({"egress_id": id, "active": true})).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["egress_id"], id.as_str());
    assert!(list["next_page_token"].is_null());

    let (status, _, stopped) = twirp_json(&sims.livekit_url, "StopEgress", &auth, json!({"egressId": id})).await;
    assert_eq!(status, 200, "{stopped}");
    let (status, _, again) = twirp_json(&sims.livekit_url, "StopEgress", &auth, json!({"egress_id": id})).await;
    assert_eq!(status, 412);
    assert_eq!(again["code"], "failed_precondition");
    assert!(again["msg"].as_str().unwrap().contains("cannot be stopped"));

    let (status, ct, missing) =
        twirp_json(&sims.livekit_url, "ListEgress", &auth, json!({"egress_id": "EG_nope"})).await;
    assert_eq!((status, ct.as_str()), (404, "application/json"));
    assert_eq!(missing, json!({"code": "not_found", "msg": "egress does not exist"}));

    let (status, _, route) = twirp_json(&sims.livekit_url, "StartTrackEgress", &auth, json!({})).await;
    assert_eq!((status, route["code"].as_str()), (404, Some("bad_route")));
}

#[tokio::test]
async fn requests_need_a_bearer_token_with_room_record() {
    let sims = sims().await;
    let url = &sims.livekit_url;
    let body = json!({"active": true});
    let without_grant = bearer(VideoGrants { room_join: false, room_list: true, ..Default::default() });
    let (status, _, err) = twirp_json(url, "ListEgress", &without_grant, body.clone()).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("unauthenticated")));
    let raw = bearer(VideoGrants { room_record: true, ..Default::default() }).replace("Bearer ", "");
    let (status, _, _) = twirp_json(url, "ListEgress", &raw, body.clone()).await;
    assert_eq!(status, 401, "the Bearer prefix is required");
    let (status, _, _) = twirp_json(url, "ListEgress", "Bearer not-a-jwt", body).await;
    assert_eq!(status, 401);

    let wrong = Egress::new(&EgressConfig { api_secret: "wrong".into(), ..egress_config(&sims) });
    assert!(matches!(wrong.list_active_egress().await, Err(EgressError::Unauthenticated(_))));
}
