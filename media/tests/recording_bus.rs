//! The linked simulators driven by the real clients: a web egress streaming
//! to a Mux stream key drives the Mux live stream through its states,
//! stopping it finalises the recording, and clips are cut from it. Plus the
//! ingest and asset faults as the saga would observe them.

mod common;

use std::time::Duration;

use common::{egress, eventually, mux, mux_ingest_url, sims};
use eventuall_media::livekit::proto::{self, EgressStatus};
use eventuall_media::livekit::{self as lk, StartSignal, StopOutcome};
use eventuall_media::mux::{
    AssetStatus, CreateClip, CreateLiveStream, LiveStreamStatus, MuxError, NewAssetSettings, PlaybackPolicy,
};
use eventuall_media::sim::{AssetFault, AssetKind, IngestFault, IngestPhase, Times};

fn stream_request(passthrough: &str) -> CreateLiveStream {
    CreateLiveStream {
        passthrough: Some(passthrough.into()),
        playback_policies: vec![PlaybackPolicy::Public],
        new_asset_settings: Some(NewAssetSettings {
            playback_policies: vec![PlaybackPolicy::Public],
            passthrough: Some(passthrough.into()),
        }),
        ..CreateLiveStream::default()
    }
}

async fn egress_status(client: &lk::Egress, id: &str) -> EgressStatus {
    lk::status(&client.get_egress(id).await.unwrap().expect("egress exists"))
}

#[tokio::test]
async fn a_recording_flows_from_egress_to_mux_stream_to_clip() {
    let sims = sims().await;
    let (mux, egress) = (mux(&sims), egress(&sims));
    let stream = mux.create_live_stream(&stream_request("saga-7")).await.unwrap();
    let page = "https://app.example.com/composite?saga=7";

    let started =
        egress.start_web_egress(page, &[mux_ingest_url(&stream.stream_key)], StartSignal::AwaitPage).await.unwrap();
    assert_eq!(lk::status(&started), EgressStatus::EgressStarting);
    assert_eq!(lk::web_url(&started), Some(page));
    let Some(proto::egress_info::Request::Web(web)) = &started.request else { panic!("web request") };
    assert!(web.await_start_signal);
    let shown = &web.stream_outputs[0].urls[0];
    assert!(!shown.contains(&stream.stream_key), "stream key redacted: {shown}");
    assert!(shown.starts_with("rtmps://global-live.mux.com:443/app/{"), "{shown}");
    assert!(started.updated_at > 1_700_000_000_000_000_000, "nanoseconds");

    let live = eventually("mux stream active", || async {
        let s = mux.get_live_stream(&stream.id).await.unwrap();
        (s.status == LiveStreamStatus::Active).then_some(s)
    })
    .await;
    let asset_id = live.active_asset_id.clone().expect("active asset");
    assert_eq!(live.recent_asset_ids, vec![asset_id.clone()]);
    assert_eq!(live.active_ingest_protocol.as_deref(), Some("rtmp"));
    let info = egress.get_egress(&started.egress_id).await.unwrap().unwrap();
    assert_eq!(lk::status(&info), EgressStatus::EgressActive);
    assert_eq!(info.stream_results.len(), 1);
    assert_eq!(info.stream_results[0].status, proto::stream_info::Status::Active as i32);
    assert!(info.started_at > 0);

    let asset = mux.get_asset(&asset_id).await.unwrap();
    assert_eq!(asset.status, AssetStatus::Ready);
    assert_eq!(asset.is_live, Some(true));
    assert_eq!(asset.live_stream_id.as_deref(), Some(stream.id.as_str()));
    assert_eq!(asset.ingest_type.as_deref(), Some("live_rtmp"));
    assert_eq!(asset.passthrough.as_deref(), Some("saga-7"));

    // 1 ms of broadcast is 1 s of media in the fast config.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let StopOutcome::Stopping(stopping) = egress.stop_egress(&started.egress_id).await.unwrap() else {
        panic!("a running egress stops");
    };
    assert_eq!(lk::status(&stopping), EgressStatus::EgressEnding);

    let ended = eventually("egress complete", || async {
        let e = egress.get_egress(&started.egress_id).await.unwrap().unwrap();
        lk::is_terminal(&e).then_some(e)
    })
    .await;
    assert_eq!(lk::status(&ended), EgressStatus::EgressComplete);
    assert!(ended.ended_at >= ended.started_at);
    assert_eq!(ended.stream_results[0].status, proto::stream_info::Status::Finished as i32);
    assert!(ended.stream_results[0].duration > 0);
    assert!(matches!(
        egress.stop_egress(&started.egress_id).await.unwrap(),
        StopOutcome::AlreadyStopped { message } if message.contains("EGRESS_COMPLETE")
    ));

    let idle = eventually("mux stream idle", || async {
        let s = mux.get_live_stream(&stream.id).await.unwrap();
        (s.status == LiveStreamStatus::Idle).then_some(s)
    })
    .await;
    assert!(idle.active_asset_id.is_none());
    let recorded = mux.get_asset(&asset_id).await.unwrap();
    assert_eq!(recorded.is_live, Some(false));
    assert_eq!(recorded.status, AssetStatus::Ready);
    let duration = recorded.duration.expect("final duration");
    assert!(duration >= 50.0, "recorded {duration} s");

    let clip_req = CreateClip {
        source_asset_id: asset_id.clone(),
        start_time: Some(10.0),
        end_time: Some(30.5),
        passthrough: Some("clip:alice:saga-7".into()),
        playback_policies: vec![PlaybackPolicy::Public],
    };
    let clip = mux.create_clip(&clip_req).await.unwrap();
    assert_eq!(clip.status, AssetStatus::Preparing);
    assert_eq!(clip.source_asset_id.as_deref(), Some(asset_id.as_str()));
    assert_eq!(clip.ingest_type.as_deref(), Some("on_demand_clip"));
    let ready = eventually("clip ready", || async {
        let c = mux.get_asset(&clip.id).await.unwrap();
        (c.status == AssetStatus::Ready).then_some(c)
    })
    .await;
    assert_eq!(ready.duration, Some(20.5));
    assert_eq!(mux.find_asset_by_passthrough("clip:alice:saga-7").await.unwrap().map(|a| a.id), Some(clip.id));

    mux.delete_live_stream(&stream.id).await.unwrap();
    assert!(sims.handle.leftovers().is_empty(), "{:?}", sims.handle.leftovers());
}

#[tokio::test]
async fn clips_outside_the_recording_are_invalid() {
    let sims = sims().await;
    let (mux, egress) = (mux(&sims), egress(&sims));
    let stream = mux.create_live_stream(&stream_request("bounds")).await.unwrap();
    let started = egress
        .start_web_egress("https://x/?saga=b", &[format!("mux://{}", stream.stream_key)], StartSignal::Immediate)
        .await
        .unwrap();
    let asset_id = eventually("asset", || async {
        let s = mux.get_live_stream(&stream.id).await.unwrap();
        (s.status == LiveStreamStatus::Active).then(|| s.active_asset_id.unwrap())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    egress.stop_egress(&started.egress_id).await.unwrap();
    let duration = eventually("final duration", || async {
        let a = mux.get_asset(&asset_id).await.unwrap();
        (a.is_live == Some(false)).then(|| a.duration.unwrap())
    })
    .await;
    let clip = |start: f64, end: f64| CreateClip {
        source_asset_id: asset_id.clone(),
        start_time: Some(start),
        end_time: Some(end),
        ..CreateClip::default()
    };
    assert!(matches!(mux.create_clip(&clip(1.0, duration + 1.0)).await, Err(MuxError::InvalidParameters(_))));
    assert!(matches!(mux.create_clip(&clip(2.0, 2.5)).await, Err(MuxError::InvalidParameters(_))));
    assert!(matches!(
        mux.create_clip(&CreateClip { source_asset_id: "missing".into(), ..clip(0.0, 1.0) }).await,
        Err(MuxError::InvalidParameters(_))
    ));
    assert!(mux.create_clip(&clip(0.0, duration)).await.is_ok());
}

#[tokio::test]
async fn an_unknown_or_disabled_stream_key_fails_the_egress() {
    let sims = sims().await;
    let (mux, egress) = (mux(&sims), egress(&sims));
    let disabled = mux.create_live_stream(&stream_request("off")).await.unwrap();
    mux.disable_live_stream(&disabled.id).await.unwrap();

    for url in [mux_ingest_url("no-such-key"), mux_ingest_url(&disabled.stream_key)] {
        let started = egress.start_web_egress("https://x/?saga=k", &[url], StartSignal::Immediate).await.unwrap();
        let ended = eventually("egress failed", || async {
            let e = egress.get_egress(&started.egress_id).await.unwrap().unwrap();
            lk::is_terminal(&e).then_some(e)
        })
        .await;
        assert_eq!(lk::status(&ended), EgressStatus::EgressFailed);
        assert_eq!(ended.error, "All streams stopped");
        assert_eq!(ended.stream_results[0].status, proto::stream_info::Status::Failed as i32);
        assert!(ended.stream_results[0].error.contains("refused"), "{}", ended.stream_results[0].error);
    }
    assert!(sims.handle.mux.assets().is_empty());
}

#[tokio::test]
async fn disabling_the_stream_mid_broadcast_fails_the_egress_and_ends_the_recording() {
    let sims = sims().await;
    let (mux, egress) = (mux(&sims), egress(&sims));
    let stream = mux.create_live_stream(&stream_request("cut")).await.unwrap();
    let started = egress
        .start_web_egress("https://x/?saga=cut", &[mux_ingest_url(&stream.stream_key)], StartSignal::Immediate)
        .await
        .unwrap();
    eventually("active", || async {
        (mux.get_live_stream(&stream.id).await.unwrap().status == LiveStreamStatus::Active).then_some(())
    })
    .await;
    mux.disable_live_stream(&stream.id).await.unwrap();
    let ended = eventually("egress failed", || async {
        let e = egress.get_egress(&started.egress_id).await.unwrap().unwrap();
        lk::is_terminal(&e).then_some(e)
    })
    .await;
    assert_eq!(lk::status(&ended), EgressStatus::EgressFailed);
    assert_eq!(ended.stream_results[0].status, proto::stream_info::Status::Failed as i32);
    let snapshot = &sims.handle.mux.live_streams()[0];
    assert_eq!(snapshot.status, LiveStreamStatus::Disabled);
    assert_eq!(snapshot.phase, IngestPhase::Idle);
    assert!(!snapshot.encoder_connected);
    assert!(!sims.handle.mux.assets()[0].is_live);
}

#[tokio::test]
async fn complete_ends_the_recording_and_drops_the_encoder_after_the_grace_period() {
    let sims = sims().await;
    let (mux, egress) = (mux(&sims), egress(&sims));
    let stream = mux.create_live_stream(&stream_request("complete")).await.unwrap();
    let started = egress
        .start_web_egress("https://x/?saga=c", &[mux_ingest_url(&stream.stream_key)], StartSignal::Immediate)
        .await
        .unwrap();
    eventually("active", || async {
        (mux.get_live_stream(&stream.id).await.unwrap().status == LiveStreamStatus::Active).then_some(())
    })
    .await;
    mux.complete_live_stream(&stream.id).await.unwrap();
    let s = mux.get_live_stream(&stream.id).await.unwrap();
    assert_eq!(s.status, LiveStreamStatus::Idle, "recording ends at once");
    assert!(sims.handle.mux.live_streams()[0].encoder_connected, "encoder kept for the grace period");
    let ended = eventually("encoder dropped", || async {
        let e = egress.get_egress(&started.egress_id).await.unwrap().unwrap();
        lk::is_terminal(&e).then_some(e)
    })
    .await;
    assert_eq!(lk::status(&ended), EgressStatus::EgressFailed);
    assert!(sims.handle.leftovers().is_empty());
}

#[tokio::test]
async fn a_reconnect_inside_the_window_continues_the_same_asset() {
    let mut config = eventuall_media::sim::SimConfig::fast();
    config.mux.reconnect_window_override = Some(Duration::from_millis(800));
    let sims = common::sims_with(config).await;
    let (mux, egress) = (mux(&sims), egress(&sims));
    let stream = mux.create_live_stream(&stream_request("flap")).await.unwrap();
    let url = mux_ingest_url(&stream.stream_key);
    let first =
        egress.start_web_egress("https://x/?saga=f", std::slice::from_ref(&url), StartSignal::Immediate).await.unwrap();
    let asset = eventually("active", || async {
        let s = mux.get_live_stream(&stream.id).await.unwrap();
        (s.status == LiveStreamStatus::Active).then(|| s.active_asset_id.unwrap())
    })
    .await;
    egress.stop_egress(&first.egress_id).await.unwrap();
    let disconnected = mux.get_live_stream(&stream.id).await.unwrap();
    assert_eq!(disconnected.status, LiveStreamStatus::Active, "active during the reconnect window");
    assert_eq!(sims.handle.mux.live_streams()[0].phase, IngestPhase::Disconnected);

    let second = egress.start_web_egress("https://x/?saga=f2", &[url], StartSignal::Immediate).await.unwrap();
    eventually("reconnected", || async {
        let s = sims.handle.mux.live_streams();
        (s[0].phase == IngestPhase::Active && s[0].encoder_connected).then_some(())
    })
    .await;
    let s = mux.get_live_stream(&stream.id).await.unwrap();
    assert_eq!(s.active_asset_id.as_deref(), Some(asset.as_str()));
    assert_eq!(s.recent_asset_ids.len(), 1);
    egress.stop_egress(&second.egress_id).await.unwrap();
}

#[tokio::test]
async fn a_stream_stuck_idle_never_records_although_the_egress_is_active() {
    let sims = sims().await;
    let (mux, egress) = (mux(&sims), egress(&sims));
    sims.faults().mux_ingest(IngestFault::StuckIdle, Times::Once);
    let stream = mux.create_live_stream(&stream_request("stuck")).await.unwrap();
    let started = egress
        .start_web_egress("https://x/?saga=s", &[mux_ingest_url(&stream.stream_key)], StartSignal::Immediate)
        .await
        .unwrap();
    eventually("egress active", || async {
        (egress_status(&egress, &started.egress_id).await == EgressStatus::EgressActive).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = mux.get_live_stream(&stream.id).await.unwrap();
    assert_eq!(s.status, LiveStreamStatus::Idle);
    assert!(s.active_asset_id.is_none());
    assert!(sims.handle.mux.assets().is_empty());
    egress.stop_egress(&started.egress_id).await.unwrap();
}

#[tokio::test]
async fn a_stream_that_only_connects_has_a_preparing_asset_and_stays_idle() {
    let sims = sims().await;
    let (mux, egress) = (mux(&sims), egress(&sims));
    sims.faults().mux_ingest(IngestFault::OnlyConnected, Times::Once);
    let stream = mux.create_live_stream(&stream_request("conn")).await.unwrap();
    egress
        .start_web_egress("https://x/?saga=c", &[mux_ingest_url(&stream.stream_key)], StartSignal::Immediate)
        .await
        .unwrap();
    eventually("connected", || async {
        (sims.handle.mux.live_streams()[0].phase == IngestPhase::Connected).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = mux.get_live_stream(&stream.id).await.unwrap();
    assert_eq!(s.status, LiveStreamStatus::Idle);
    assert_eq!(sims.handle.mux.live_streams()[0].phase, IngestPhase::Connected);
    let asset = mux.get_asset(&s.active_asset_id.expect("asset created on connect")).await.unwrap();
    assert_eq!(asset.status, AssetStatus::Preparing);
}

#[tokio::test]
async fn asset_and_clip_faults_surface_as_errored_or_stuck_preparing() {
    let sims = sims().await;
    let (mux, egress) = (mux(&sims), egress(&sims));
    let faults = sims.faults();
    let stream = mux.create_live_stream(&stream_request("faulty")).await.unwrap();
    let started = egress
        .start_web_egress("https://x/?saga=a", &[mux_ingest_url(&stream.stream_key)], StartSignal::Immediate)
        .await
        .unwrap();
    let asset_id = eventually("active", || async {
        let s = mux.get_live_stream(&stream.id).await.unwrap();
        (s.status == LiveStreamStatus::Active).then(|| s.active_asset_id.unwrap())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    egress.stop_egress(&started.egress_id).await.unwrap();
    eventually("recording final", || async {
        (mux.get_asset(&asset_id).await.unwrap().is_live == Some(false)).then_some(())
    })
    .await;

    faults.mux_asset(AssetKind::Clip, AssetFault::Errored, Times::Once);
    faults.mux_asset(AssetKind::Clip, AssetFault::StuckPreparing, Times::Once);
    let clip = |p: &str| CreateClip {
        source_asset_id: asset_id.clone(),
        start_time: Some(0.0),
        end_time: Some(5.0),
        passthrough: Some(p.into()),
        ..CreateClip::default()
    };
    let errored = mux.create_clip(&clip("e")).await.unwrap();
    let stuck = mux.create_clip(&clip("s")).await.unwrap();
    let errored = eventually("clip errored", || async {
        let a = mux.get_asset(&errored.id).await.unwrap();
        (a.status == AssetStatus::Errored).then_some(a)
    })
    .await;
    assert!(!errored.errors.unwrap().messages.is_empty());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(mux.get_asset(&stuck.id).await.unwrap().status, AssetStatus::Preparing);

    // A live recording that errors.
    faults.mux_asset(AssetKind::LiveRecording, AssetFault::Errored, Times::Once);
    let second = mux.create_live_stream(&stream_request("faulty-2")).await.unwrap();
    egress
        .start_web_egress("https://x/?saga=a2", &[mux_ingest_url(&second.stream_key)], StartSignal::Immediate)
        .await
        .unwrap();
    let live_asset = eventually("stream active", || async {
        let s = mux.get_live_stream(&second.id).await.unwrap();
        (s.status == LiveStreamStatus::Active).then(|| s.active_asset_id.unwrap())
    })
    .await;
    assert_eq!(mux.get_asset(&live_asset).await.unwrap().status, AssetStatus::Errored);
}

/// A live stream fed by a real egress, active: `(stream id, egress id, asset id)`.
async fn broadcasting(sims: &eventuall_media::sim::Simulators, passthrough: &str) -> (String, String, String) {
    let (mux, egress) = (mux(sims), egress(sims));
    let stream = mux.create_live_stream(&stream_request(passthrough)).await.unwrap();
    let page = format!("https://app.example.com/composite?saga={passthrough}");
    let started =
        egress.start_web_egress(&page, &[mux_ingest_url(&stream.stream_key)], StartSignal::Immediate).await.unwrap();
    let live = eventually("mux stream active", || async {
        let s = mux.get_live_stream(&stream.id).await.unwrap();
        (s.status == LiveStreamStatus::Active).then_some(s)
    })
    .await;
    (stream.id, started.egress_id, live.active_asset_id.expect("active asset"))
}

#[tokio::test]
async fn an_ingest_blip_inside_the_reconnect_window_keeps_the_stream_active_on_one_asset() {
    let mut config = eventuall_media::sim::SimConfig::fast();
    config.mux.reconnect_window_override = Some(Duration::from_secs(2));
    let sims = common::sims_with(config).await;
    let client = mux(&sims);
    let (stream_id, egress_id, asset_id) = broadcasting(&sims, "blip").await;

    assert!(sims.handle.mux.interrupt_ingest(&stream_id, Some(Duration::from_millis(300))));
    let during = client.get_live_stream(&stream_id).await.unwrap();
    assert_eq!(sims.handle.mux.live_streams()[0].phase, IngestPhase::Disconnected);
    assert_eq!(during.status, LiveStreamStatus::Active, "active for the whole reconnect window");
    assert_eq!(during.active_asset_id.as_deref(), Some(asset_id.as_str()));

    eventually("encoder back", || async {
        let s = &sims.handle.mux.live_streams()[0];
        (s.phase == IngestPhase::Active && s.encoder_connected).then_some(())
    })
    .await;
    let after = client.get_live_stream(&stream_id).await.unwrap();
    assert_eq!(after.active_asset_id.as_deref(), Some(asset_id.as_str()), "the same recording continues");
    assert_eq!(after.recent_asset_ids, vec![asset_id]);

    egress(&sims).stop_egress(&egress_id).await.unwrap();
    client.complete_live_stream(&stream_id).await.unwrap();
    eventually("nothing left", || async { sims.handle.leftovers().is_empty().then_some(()) }).await;
}

#[tokio::test]
async fn an_ingest_outage_past_the_reconnect_window_ends_the_asset_and_starts_another() {
    let mut config = eventuall_media::sim::SimConfig::fast();
    config.mux.reconnect_window_override = Some(Duration::from_millis(100));
    let sims = common::sims_with(config).await;
    let client = mux(&sims);
    let (stream_id, egress_id, first) = broadcasting(&sims, "outage").await;

    assert!(sims.handle.mux.interrupt_ingest(&stream_id, Some(Duration::from_millis(600))));
    let idle = eventually("stream idle after the window", || async {
        let s = client.get_live_stream(&stream_id).await.unwrap();
        (s.status == LiveStreamStatus::Idle).then_some(s)
    })
    .await;
    assert!(idle.active_asset_id.is_none());
    assert_eq!(client.get_asset(&first).await.unwrap().is_live, Some(false), "the first asset is final");

    let back = eventually("a new recording after the reconnection", || async {
        let s = client.get_live_stream(&stream_id).await.unwrap();
        (s.status == LiveStreamStatus::Active).then_some(s)
    })
    .await;
    let second = back.active_asset_id.expect("active asset");
    assert_ne!(second, first);
    assert_eq!(back.recent_asset_ids, vec![first, second]);

    egress(&sims).stop_egress(&egress_id).await.unwrap();
    client.complete_live_stream(&stream_id).await.unwrap();
    eventually("nothing left", || async { sims.handle.leftovers().is_empty().then_some(()) }).await;
}

#[tokio::test]
async fn an_interrupted_encoder_that_hangs_up_meanwhile_does_not_come_back() {
    let sims = sims().await;
    let (stream_id, egress_id, _) = broadcasting(&sims, "gone").await;
    assert!(sims.handle.mux.interrupt_ingest(&stream_id, Some(Duration::from_millis(200))));
    egress(&sims).stop_egress(&egress_id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let s = &sims.handle.mux.live_streams()[0];
    assert!(!s.encoder_connected, "{s:?}");
    assert_eq!(s.phase, IngestPhase::Idle);
    assert!(sims.handle.leftovers().is_empty(), "{:?}", sims.handle.leftovers());
}
