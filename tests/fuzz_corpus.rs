//! The fuzz targets' committed inputs as a stable regression test (issue
//! #22): every file in `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/`
//! goes through the same `eventuall::fuzzing` entry its `cargo fuzz` target
//! calls, so a crash a fuzzer once found stays found on the stable
//! toolchain, in every CI run. `scripts/fuzz.sh` runs the fuzzers themselves.

use std::path::{Path, PathBuf};

use eventuall::fuzzing;

/// Every target with its entry; `fuzz/Cargo.toml` has one `[[bin]]` each.
const TARGETS: [(&str, fn(&[u8])); 7] = [
    ("room_frame", fuzzing::room_frame),
    ("interview_frame", fuzzing::interview_frame),
    ("sync_frame", fuzzing::sync_frame),
    ("jwt", fuzzing::jwt),
    ("webhook", fuzzing::webhook),
    ("http_bodies", fuzzing::http_bodies),
    ("stored_payload", fuzzing::stored_payload),
];

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<_> = entries.map(|e| e.expect("a readable entry").path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Every input of `target` through `entry`; the files whose property fails.
fn failures(target: &str, entry: fn(&[u8])) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = files(&root.join("seeds").join(target));
    assert!(seeds.len() >= 5, "fuzz/seeds/{target} holds {} inputs: the seed corpus went missing", seeds.len());
    let mut failed = Vec::new();
    for path in seeds.iter().chain(&files(&root.join("regressions").join(target))) {
        let data = std::fs::read(path).expect("a readable input");
        if std::panic::catch_unwind(|| entry(&data)).is_err() {
            failed.push(format!("{target}: {}", path.display()));
        }
    }
    failed
}

#[test]
fn every_target_has_an_entry_here_and_in_the_fuzz_crate() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml")).unwrap();
    let bins = manifest.matches("[[bin]]").count();
    assert_eq!(bins, TARGETS.len(), "fuzz/Cargo.toml has {bins} targets, this test {}", TARGETS.len());
    for (target, _) in TARGETS {
        assert!(manifest.contains(&format!("name = \"{target}\"")), "{target} is not a fuzz target");
    }
}

/// Every seed and found crash of every target keeps its property (all
/// failures are reported at once).
#[test]
fn every_committed_input_keeps_its_property() {
    let failed: Vec<String> = TARGETS.iter().flat_map(|(target, entry)| failures(target, *entry)).collect();
    assert!(failed.is_empty(), "inputs that fail their property:\n{}", failed.join("\n"));
}

/// The harness fails on an input whose property fails (here a stand-in
/// property that refuses every heartbeat seed).
#[test]
fn an_input_that_breaks_its_property_fails_the_run() {
    let refuses_heartbeats: fn(&[u8]) = |data| assert!(!data.starts_with(br#"{"type":"heartbeat""#));
    let failed = failures("room_frame", refuses_heartbeats);
    assert!(failed.iter().any(|f| f.ends_with("/heartbeat")), "a failing property passed: {failed:?}");
}
