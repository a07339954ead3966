//! The archive tier on an S3-compatible server: `moto` in server mode
//! (PyPI, installed by `scripts/test.sh` into `.venv-moto`), on 127.0.0.1,
//! reached through `object_store`'s S3 client exactly as production would
//! reach AWS or MinIO. Required, not skipped: without the server the test
//! fails and says how to install it.

#[macro_use]
mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestDb;
use eventuall::replay::{Progress, verify};
use eventuall::store::registry::Registry;
use eventuall::store::{ExpectedVersion, Metadata, NewEvent, StreamId};
use object_store::ObjectStoreExt;
use object_store::path::Path;

contract!(an_archived_stream_round_trips_through_an_s3_bucket);

/// A moto server for one test, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("EVENTUALL_TEST_MOTO_SERVER") {
        return path.into();
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-moto/bin/moto_server");
    assert!(
        venv.exists(),
        "the S3 test needs moto's server: `python3 -m venv .venv-moto && .venv-moto/bin/pip install 'moto[server]==5.1.22'` \
         (scripts/test.sh does this), or set EVENTUALL_TEST_MOTO_SERVER"
    );
    venv
}

async fn start_moto(bucket: &str) -> Moto {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(moto_binary())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // CreateBucket is a PUT of the bucket's path.
        match http.put(format!("{}/{bucket}", moto.endpoint)).send().await {
            Ok(response) if response.status().is_success() => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("moto did not create the bucket: {other:?}"),
        }
    }
    moto
}

fn event(n: usize) -> NewEvent {
    NewEvent::new("Happened", "1", format!("{{\"n\":{n}}}"), Metadata::by("tester"))
}

async fn an_archived_stream_round_trips_through_an_s3_bucket(db: &TestDb) {
    let moto = start_moto("eventuall-archive").await;
    // SAFETY: nextest runs each test in a process of its own, so no other
    // thread reads the environment while it is set.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ENDPOINT", &moto.endpoint);
        std::env::set_var("AWS_ALLOW_HTTP", "true");
    }
    let archive_url = "s3://eventuall-archive/cold";
    let store = db.open_with_archive(archive_url).await;
    let s = StreamId::parse("test-s3").unwrap();
    let mut version = 0;
    for chunk in 0..5 {
        let events = (0..20).map(|i| event(chunk * 20 + i)).collect();
        version = store.append(&s, ExpectedVersion::Exact(version), events).await.unwrap().next_version;
    }
    let before = store.read_stream(&s, 1, 1_000).await.unwrap();

    let outcome = store.archive_stream(&s).await.unwrap();
    assert_eq!(outcome.events, 99);
    let segment = store.segments_of(&s).await.unwrap().remove(0);
    assert!(segment.location.starts_with("s3://eventuall-archive/cold/test/test-s3/"), "{segment:?}");
    // The bucket as another S3 client sees it.
    let bucket = object_store::aws::AmazonS3Builder::from_env().with_bucket_name("eventuall-archive").build().unwrap();
    let key = Path::from(format!("cold{}", &segment.location["s3://eventuall-archive/cold".len()..]));
    let bytes = bucket.get(&key).await.expect("the segment is an object in the bucket").bytes().await.unwrap();
    assert_eq!(bytes.len() as i64, segment.bytes);

    // A fresh store (no cache) reads it back from the bucket.
    store.shutdown().await;
    let store = db.open_with_archive(archive_url).await;
    assert_eq!(store.read_stream(&s, 1, 1_000).await.unwrap(), before);
    store.append(&s, ExpectedVersion::Exact(100), vec![event(100)]).await.unwrap();
    let grown = store.read_stream(&s, 1, 1_000).await.unwrap();
    assert_eq!(&grown[..100], &before[..]);
    assert_eq!(grown.len(), 101);
    let report = verify::verify(&store, Registry::standard(), &Progress::hidden()).await.unwrap();
    assert!(report.is_sound(), "{:?}", &report.problems[..report.problems.len().min(3)]);

    // Someone rewrites the object in the bucket: verify names it.
    let mut altered = bytes.to_vec();
    let at = altered.iter().rposition(|&c| c == b'5').unwrap();
    altered[at] = b'6';
    bucket.put(&key, altered.into()).await.unwrap();
    store.shutdown().await;
    let store = db.open_with_archive(archive_url).await;
    let report = verify::verify(&store, Registry::standard(), &Progress::hidden()).await.unwrap();
    assert!(report.problems.iter().any(|p| p.message.contains("altered")), "{:?}", report.problems);
    // Put it back and restore: the log is whole and hot again.
    bucket.put(&key, bytes.clone().into()).await.unwrap();
    store.shutdown().await;
    let store = db.open_with_archive(archive_url).await;
    let restored = store.restore_stream(&s).await.unwrap();
    assert_eq!(restored.events, 99);
    assert_eq!(store.read_stream(&s, 1, 1_000).await.unwrap(), grown);
    let gone = bucket.get(&key).await.unwrap_err();
    assert!(matches!(gone, object_store::Error::NotFound { .. }), "the restored segment is deleted: {gone}");
    store.shutdown().await;
}
