//! Property tests of every parser of outside input (issue #22, fuzzing):
//! y-sync frames, JWTs, LiveKit webhook bodies and signatures, stored event
//! payloads through the upcaster registry. Arbitrary input and mutations of
//! valid input never panic, and nothing unsigned or altered is accepted.
//! The socket text frames of the event room and interview sockets have the
//! same properties next to their classifiers (`http/party.rs`,
//! `http/interviews.rs`). Runs a bounded number of cases (proptest's
//! default 256 per property; `PROPTEST_CASES` raises it for a long run).
//! Inputs proptest found that failed are kept in `tests/parsers.proptest-regressions`.

use eventuall::auth::{Authenticator, Claims, Role};
use eventuall::replay::registry::Registry;
use eventuall_domain::queue::sync::decode_frame;
use eventuall_media::livekit::WebhookVerifier;
use eventuall_media::sim::sign_livekit_webhook;
use proptest::prelude::*;

fn valid_token(auth: &Authenticator) -> String {
    let claims = Claims {
        sub: "alice".into(),
        exp: eventuall::store::now_millis() / 1000 + 3600,
        name: None,
        role: Role::Participant,
        events: Some(vec!["e1".into()]),
    };
    auth.issue(&claims)
}

/// A y-sync step 1 with an empty state vector, an awareness update and a
/// step 2 carrying a small Yjs update: the shapes real clients send.
fn valid_sync_frames() -> Vec<Vec<u8>> {
    vec![vec![0, 0, 1, 0], vec![0, 1, 2, 0, 0], vec![1, 6, 1, 1, 2, 2, b'{', b'}']]
}

const WEBHOOK: &str = r#"{"event":"participant_joined","id":"EV_1","createdAt":"1735689610","room":{"sid":"RM_1","name":"launch"},"participant":{"sid":"PA_1","identity":"alice","name":"Alice","state":"ACTIVE"}}"#;

#[test]
fn the_valid_inputs_the_mutations_start_from_are_valid() {
    for frame in valid_sync_frames() {
        assert!(decode_frame(&frame).is_ok(), "{frame:?}");
    }
    let auth = Authenticator::new("fuzz-secret");
    assert!(auth.verify(&valid_token(&auth)).is_ok());
}

proptest! {
    #[test]
    fn sync_frames_of_any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn mutated_sync_frames_never_panic(
        which in 0usize..3,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = valid_sync_frames()[which].clone();
        let i = at.index(frame.len());
        frame[i] = byte;
        let _ = decode_frame(&frame);
        let _ = decode_frame(&frame[..cut.index(frame.len())]);
    }

    #[test]
    fn arbitrary_strings_are_not_tokens(token in ".{0,300}") {
        let auth = Authenticator::new("fuzz-secret");
        prop_assert!(auth.verify(&token).is_err());
        let bearer = format!("Bearer {}", token);
        prop_assert!(auth.verify_bearer(Some(&bearer)).is_err());
    }

    /// One character of a signed token changed: refused, or (a change the
    /// base64 decoding cannot see) read as exactly the same caller.
    #[test]
    fn a_token_changed_anywhere_is_refused_or_unchanged(at in any::<prop::sample::Index>(), c in "[A-Za-z0-9_.=-]") {
        let auth = Authenticator::new("fuzz-secret");
        let token = valid_token(&auth);
        let original = auth.verify(&token).expect("the valid token verifies");
        let i = at.index(token.len());
        let mut mutated: Vec<char> = token.chars().collect();
        mutated[i] = c.chars().next().unwrap();
        let mutated: String = mutated.into_iter().collect();
        if let Ok(caller) = auth.verify(&mutated) {
            prop_assert_eq!(caller.user_id(), original.user_id());
            prop_assert_eq!(caller.is_moderator(), original.is_moderator());
        }
    }

    #[test]
    fn arbitrary_webhooks_are_refused(body in proptest::collection::vec(any::<u8>(), 0..400), auth in ".{0,300}") {
        let verifier = WebhookVerifier::new([("devkey", "secret")]);
        prop_assert!(verifier.verify(&body, &auth).is_err());
    }

    /// A signed webhook whose body changed by one byte is refused (its
    /// `sha256` claim no longer matches); its signature alone never verifies
    /// another body.
    #[test]
    fn a_webhook_body_changed_by_a_byte_is_refused(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let verifier = WebhookVerifier::new([("devkey", "secret")]);
        let signed = sign_livekit_webhook("devkey", "secret", WEBHOOK.to_owned(), None);
        prop_assert!(verifier.verify(signed.body.as_bytes(), &signed.authorization).is_ok());
        let mut body = signed.body.into_bytes();
        let i = at.index(body.len());
        prop_assume!(body[i] != byte);
        body[i] = byte;
        prop_assert!(verifier.verify(&body, &signed.authorization).is_err());
    }

    /// Any stored payload, of any category and version, is checked without
    /// a panic: decoded, or a decode error the audit reports.
    #[test]
    fn stored_payloads_are_checked_without_panics(
        category in prop::sample::select(vec!["room", "queue", "recording", "recording_coordinator", "interview", "user_interviews", "unknown"]),
        version in prop::sample::select(vec!["1", "2", "0", ""]),
        payload in prop_oneof![
            ".{0,200}",
            Just(r#"{"ConnectionOpened":{"connection_id":"c","client_id":null,"user_id":"u","name":"n","kind":"WebSocket","at":1}}"#.to_owned()),
            Just(r#"{"ConnectionOpened":{"connection_id":7}}"#.to_owned()),
            Just("null".to_owned()),
            Just("[]".to_owned()),
        ],
    ) {
        let registry = Registry::standard();
        let _ = registry.upcast(category, "Any", version, &payload);
        let _ = registry.check(category, "Any", version, &payload);
    }
}
