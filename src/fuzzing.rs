//! Entry points the `cargo fuzz` targets (`fuzz/fuzz_targets/`) and the
//! corpus regression test (`tests/fuzz_corpus.rs`) share: one function per
//! parser family of outside input, taking the fuzzer's bytes and panicking
//! when a property fails. A target is one call of one of them; the stable
//! test feeds them every committed corpus and crash file, so what a fuzzer
//! once found stays found without a nightly toolchain (issue #22).
//!
//! Every function checks its parser against a statement of the contract
//! written here, independently of the parser's own code where that is
//! possible: a frame is a heartbeat exactly when it is JSON with
//! `"type":"heartbeat"`, a token is accepted only when its HMAC (computed
//! here from SHA-256, not by `jsonwebtoken`) is right and its claims say
//! what the caller says, a webhook only when its JWT is signed by one of
//! the keys and its `sha256` claim is the body's, and so on. Where a
//! parser only reads what it is given a signature for (tokens, webhooks),
//! an input whose first line is a directive has this module sign it first,
//! so that the fuzzer reaches the claim checks behind the signature.
//!
//! Inputs are text where the parser reads text, with a header line where a
//! target covers several parsers (`http_bodies`: the body's route;
//! `stored_payload`: category and version), so corpus files stay readable.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cqrs_es::Aggregate;
use eventuall_domain::interview::{
    self, DirectoryCommand, DirectoryEvent, MAX_ANSWER_CHARS, MAX_JOB_DESCRIPTION_CHARS, MAX_SKILL_CHARS, MAX_SKILLS,
    MAX_TITLE_CHARS, UserInterviews,
};
use eventuall_domain::queue::sync::{Session, decode_frame, encode};
use eventuall_domain::queue::{AwarenessRegistry, QueueDoc, Role as QueueRole};
use eventuall_media::livekit::{WebhookVerifier, WebhookVerifyError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use yrs::sync::Message;

use crate::auth::Authenticator;
use crate::http::extract::{MAX_USER_ID_CHARS, body_user_id};
use crate::outlet::Outbound;
use crate::store::registry::Registry;

/// The secret the `jwt` target's tokens are signed with.
pub const JWT_SECRET: &str = "fuzz-secret";

/// The keys the `webhook` target's verifier holds: LiveKit's development
/// key and a second one, so that choosing the key by `iss` is exercised.
pub const WEBHOOK_KEYS: [(&str, &str); 2] = [("devkey", "secret"), ("APIsecond", "second-secret")];

/// A first line asking this module to sign the rest (see the module docs).
const SIGN: &str = "sign";
/// A first line `claims:{…}`: sign these claims as the token.
const CLAIMS: &str = "claims:";

static AUTH: LazyLock<Authenticator> = LazyLock::new(|| Authenticator::new(JWT_SECRET));
static WEBHOOKS: LazyLock<WebhookVerifier> = LazyLock::new(|| WebhookVerifier::new(WEBHOOK_KEYS));

fn now_secs() -> i64 {
    crate::store::now_millis() / 1000
}

/// The first line and the rest (everything after the first `\n`).
fn split_line(text: &str) -> (&str, &str) {
    text.split_once('\n').unwrap_or((text, ""))
}

/// The `code` of an error frame, checking the frame's contract shape.
fn error_code(frame: &Outbound) -> String {
    let Outbound::Text(text) = frame else { panic!("a refusal must be a text frame: {frame:?}") };
    let frame: Value = serde_json::from_str(text).expect("an error frame is JSON");
    assert_eq!(frame["type"], "error", "{frame}");
    assert!(frame["message"].is_string(), "{frame}");
    frame["code"].as_str().expect("an error frame has a string code").to_owned()
}

/// The code the contract gives a text frame that is not JSON or has no
/// string `type`; `None` when it is JSON with a string `type`.
fn envelope_refusal(text: &str) -> Result<(Value, String), &'static str> {
    let value: Value = serde_json::from_str(text).map_err(|_| "invalid_json")?;
    let kind = value.get("type").and_then(Value::as_str).ok_or("invalid_request")?.to_owned();
    Ok((value, kind))
}

/// A text frame of an event room socket: a heartbeat exactly when it is
/// JSON with `"type":"heartbeat"`, else an error frame with the code the
/// contract gives its fault.
pub fn room_frame(data: &[u8]) {
    // Text frames reach the handler as UTF-8 (the WebSocket layer refuses others).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let expected = match envelope_refusal(text) {
        Ok((_, kind)) if kind == "heartbeat" => None,
        Ok(_) => Some("unknown_message_type"),
        Err(code) => Some(code),
    };
    match crate::http::party::classify(text) {
        Ok(crate::http::party::ClientMessage::Heartbeat) => {
            assert_eq!(expected, None, "accepted as a heartbeat: {text:?}")
        }
        Err(frame) => assert_eq!(Some(error_code(&frame).as_str()), expected, "{text:?}"),
    }
}

/// A text frame of an interview socket: classified as the contract says
/// (the four types; `USER_MESSAGE` needs a string `content`), and a typed
/// answer taken exactly when it has 1 to 20,000 characters once trimmed.
pub fn interview_frame(data: &[u8]) {
    use crate::http::interviews::ClientMessage;
    let Ok(text) = std::str::from_utf8(data) else { return };
    let expected = match envelope_refusal(text) {
        Err(code) => Err(code),
        Ok((value, kind)) => match kind.as_str() {
            "GET_ALL_MESSAGES" | "USER_TYPING" | "USER_RECORDING" => Ok(kind),
            "USER_MESSAGE" if value.get("content").is_some_and(Value::is_string) => Ok(kind),
            "USER_MESSAGE" => Err("invalid_request"),
            _ => Err("unknown_message_type"),
        },
    };
    let got = match crate::http::interviews::classify(text) {
        Ok(ClientMessage::GetAllMessages) => Ok("GET_ALL_MESSAGES".to_owned()),
        Ok(ClientMessage::UserTyping) => Ok("USER_TYPING".to_owned()),
        Ok(ClientMessage::UserRecording) => Ok("USER_RECORDING".to_owned()),
        Ok(ClientMessage::UserMessage { content }) => {
            let value: Value = serde_json::from_str(text).expect("classified frames are JSON");
            assert_eq!(value["content"].as_str(), Some(content.as_str()), "{text:?}");
            let trimmed = content.trim();
            let fits = !trimmed.is_empty() && trimmed.chars().count() <= MAX_ANSWER_CHARS;
            match interview::clean_answer(&content) {
                Some(answer) => assert!(fits && answer == trimmed, "answer taken: {content:?}"),
                None => assert!(!fits, "answer refused: {content:?}"),
            }
            Ok("USER_MESSAGE".to_owned())
        }
        Err(frame) => Err(error_code(&frame)),
    };
    match (&got, &expected) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?}"),
        (Err(a), Err(b)) => assert_eq!(a, b, "{text:?}"),
        _ => panic!("{text:?}: classified {got:?}, the contract says {expected:?}"),
    }
}

/// A binary frame of the queue's y-websocket: decoded messages encode back
/// to themselves; a participant's frame never yields an update; a
/// moderator's update, integrated and repaired, leaves a queue that keeps
/// its invariants (each user once, in one list), needs no second repair,
/// and reads back the same from its own snapshot.
pub fn sync_frame(data: &[u8]) {
    let decoded = decode_frame(data);
    if let Ok(messages) = &decoded {
        // Custom and auth messages are ignored, never re-encoded (yrs does
        // not encode an empty custom message back to what it decoded).
        let relayed = messages.iter().filter(|m| !matches!(m, Message::Custom(..) | Message::Auth(_)));
        for message in relayed {
            assert_eq!(decode_frame(&encode(message)).as_ref(), Ok(&vec![message.clone()]), "{message:?}");
        }
    }
    let doc = QueueDoc::new();
    let mut awareness = AwarenessRegistry::new();
    let as_participant = Session::new(QueueRole::Participant).on_frame(data, &doc, &mut awareness);
    assert_eq!(as_participant.is_ok(), decoded.is_ok(), "a participant's frame: {as_participant:?}");
    if let Ok(outcome) = as_participant {
        assert_eq!(outcome.update, None, "a participant's frame became an update");
    }
    let mut awareness = AwarenessRegistry::new();
    let Ok(outcome) = Session::new(QueueRole::Moderator).on_frame(data, &doc, &mut awareness) else {
        return;
    };
    assert!(decoded.is_ok(), "a frame that does not decode was handled");
    let Some(update) = outcome.update else { return };
    let mut doc = QueueDoc::new();
    if doc.apply_update(&update).is_err() {
        return;
    }
    doc.repair();
    assert!(doc.repair().is_none(), "a repaired queue needed a second repair");
    let view = doc.view();
    let mut users = BTreeSet::new();
    for entry in view.pending.iter().chain(&view.live) {
        assert!(users.insert(entry.user_id.clone()), "{} is queued twice: {view:?}", entry.user_id);
    }
    let reread = QueueDoc::from_state(&doc.encode_state()).expect("a queue's own snapshot reads back");
    assert_eq!(reread.view(), view, "the snapshot reads back another queue");
}

/// HMAC-SHA256 (RFC 2104), written out so that token checks do not trust
/// the code they check.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new().chain_update(block.map(|b| b ^ 0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(block.map(|b| b ^ 0x5c)).chain_update(inner).finalize().into()
}

/// `header.claims.signature`, signed with `secret`.
fn sign_jwt(header: &str, claims: &str, secret: &str) -> String {
    let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(secret.as_bytes(), signed.as_bytes()));
    format!("{signed}.{signature}")
}

/// A compact JWT's header and claims, when `secret`'s HMAC over its first
/// two segments is its third; `None` for any other string.
fn signed_parts(token: &str, secret: &str) -> Option<(Value, Value)> {
    let mut segments = token.split('.');
    let (header, claims, signature) = (segments.next()?, segments.next()?, segments.next()?);
    if segments.next().is_some() {
        return None;
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let expected = hmac_sha256(secret.as_bytes(), format!("{header}.{claims}").as_bytes());
    if signature != expected {
        return None;
    }
    let json = |segment: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(segment).ok()?).ok();
    Some((json(header)?, json(claims)?))
}

/// A JWT for the client API. Accepted only when signed with the secret
/// (HMAC checked here), HS256, unexpired, not before its `nbf`, with a
/// non-empty `sub`, and then the caller is what the claims say; the
/// `Authorization: Bearer` form gives the same answer. A first line
/// `sign` signs the next two lines (header, claims) first: the claim
/// checks behind the signature, and a plainly valid token is accepted.
pub fn jwt(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (first, rest) = split_line(text);
    let (token, plainly_valid) = if first == SIGN {
        let (header, claims) = split_line(rest);
        (sign_jwt(header, claims, JWT_SECRET), plainly_valid_token(header, claims))
    } else {
        (text.to_owned(), false)
    };
    let verdict = AUTH.verify(&token);
    if token == token.trim() && !token.contains(' ') {
        assert_eq!(AUTH.verify_bearer(Some(&format!("Bearer {token}"))), verdict, "the Bearer form differs");
        assert_eq!(AUTH.verify_bearer(Some(&format!("bearer  {token} "))), verdict, "the bearer form differs");
    }
    let caller = match verdict {
        Ok(caller) => caller,
        Err(_) => {
            assert!(!plainly_valid, "a valid token was refused: {text:?}");
            return;
        }
    };
    let (header, claims) = signed_parts(&token, JWT_SECRET).expect("an accepted token is signed with the secret");
    assert_eq!(header["alg"], "HS256", "accepted with {header}");
    let now = now_secs();
    assert_eq!(claims["sub"].as_str(), Some(caller.user_id()), "{claims}");
    assert!(!caller.user_id().is_empty());
    assert_eq!(claims["exp"].as_i64(), Some(caller.claims.exp), "{claims}");
    // One second of slack: the check and this assertion read the clock apart.
    assert!(caller.claims.exp >= now - 1, "accepted after its exp: {claims}");
    if let Some(nbf) = claims.get("nbf") {
        assert!(nbf.as_f64().is_some_and(|nbf| nbf <= (now + 1) as f64), "accepted before its nbf: {claims}");
    }
    assert_eq!(caller.is_moderator(), claims["role"] == "moderator", "{claims}");
    let events = claims.get("events").filter(|e| !e.is_null()).map(|e| {
        e.as_array().expect("events is a list").iter().map(|e| e.as_str().expect("event ids are strings").to_owned())
    });
    assert_eq!(caller.claims.events, events.map(Iterator::collect), "{claims}");
}

/// Whether a header and claims are a token the contract plainly accepts:
/// canonical JSON (no duplicate keys), `{"alg":"HS256"}` with at most
/// `typ: JWT`, a non-empty `sub`, an integer `exp` an hour or more ahead,
/// nothing else but the optional claims with their documented types.
fn plainly_valid_token(header: &str, claims: &str) -> bool {
    let canonical = |text: &str| {
        serde_json::from_str::<Value>(text)
            .ok()
            .filter(|v| serde_json::to_string(v).is_ok_and(|written| written == text))
    };
    let (Some(header), Some(claims)) = (canonical(header), canonical(claims)) else { return false };
    let header_ok = header.as_object().is_some_and(|h| {
        h.get("alg").is_some_and(|a| a == "HS256") && h.iter().all(|(k, v)| k == "alg" || (k == "typ" && v == "JWT"))
    });
    let Some(claims) = claims.as_object() else { return false };
    let now = now_secs();
    header_ok
        && claims.iter().all(|(key, value)| match key.as_str() {
            "sub" => value.as_str().is_some_and(|s| !s.is_empty()),
            "exp" => value.as_i64().is_some_and(|exp| exp > now + 3600),
            "name" => value.is_string(),
            "role" => value == "participant" || value == "moderator",
            "events" => value.as_array().is_some_and(|events| events.iter().all(Value::is_string)),
            _ => false,
        })
        && claims.contains_key("sub")
        && claims.contains_key("exp")
}

/// A LiveKit webhook: the first line is the `Authorization` value and the
/// rest the body. Accepted only when its JWT is HS256-signed by the key its
/// `iss` names (HMAC checked here), within `exp`/`nbf` give or take the 60 s
/// leeway, and its `sha256` claim is the body's hash. A first line `sign`
/// has the body signed properly first: then it is refused only as
/// malformed, and refused once any byte of the body changes. A first line
/// `claims:{…}` signs those claims with the first key.
pub fn webhook(data: &[u8]) {
    let Some(newline) = data.iter().position(|&b| b == b'\n') else {
        assert!(WEBHOOKS.verify(&[], &String::from_utf8_lossy(data)).is_err(), "an empty body was accepted");
        return;
    };
    let (first, body) = (&data[..newline], &data[newline + 1..]);
    let Ok(first) = std::str::from_utf8(first) else {
        // Header values reach the verifier as text; any text works here.
        return webhook_checked(body, &String::from_utf8_lossy(first));
    };
    if first == SIGN {
        let Ok(body_text) = std::str::from_utf8(body) else { return webhook_checked(body, first) };
        let (key, secret) = WEBHOOK_KEYS[0];
        let signed = eventuall_media::sim::sign_livekit_webhook(key, secret, body_text.to_owned(), None);
        let verdict = WEBHOOKS.verify(signed.body.as_bytes(), &signed.authorization);
        assert!(
            matches!(verdict, Ok(_) | Err(WebhookVerifyError::Malformed(_))),
            "a properly signed webhook was refused: {verdict:?}"
        );
        let bearer = WEBHOOKS.verify(signed.body.as_bytes(), &format!("Bearer {}", signed.authorization));
        assert_eq!(bearer, verdict, "the Bearer form differs");
        if verdict.is_ok() && !body.is_empty() {
            let mut changed = body.to_vec();
            changed[body.len() / 2] ^= 0x01;
            assert!(WEBHOOKS.verify(&changed, &signed.authorization).is_err(), "a changed body was accepted");
        }
        webhook_checked(signed.body.as_bytes(), &signed.authorization);
    } else if let Some(claims) = first.strip_prefix(CLAIMS) {
        let (_, secret) = WEBHOOK_KEYS[0];
        webhook_checked(body, &sign_jwt(r#"{"alg":"HS256","typ":"JWT"}"#, claims, secret));
    } else {
        webhook_checked(body, first);
    }
}

/// Verifies a webhook and, when it is accepted, checks why it may be.
fn webhook_checked(body: &[u8], authorization: &str) {
    let Ok(event) = WEBHOOKS.verify(body, authorization) else { return };
    let token = authorization.trim();
    let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
    let signed = WEBHOOK_KEYS
        .iter()
        .find_map(|(key, secret)| signed_parts(token, secret).filter(|(_, claims)| claims["iss"] == *key));
    let (header, claims) = signed.expect("an accepted webhook is signed by the key its iss names");
    assert_eq!(header["alg"], "HS256", "accepted with {header}");
    let hash = claims["sha256"].as_str().and_then(|h| STANDARD.decode(h).ok());
    assert_eq!(hash.as_deref(), Some(&Sha256::digest(body)[..]), "accepted with another body's hash: {claims}");
    let now = now_secs() as f64;
    assert!(claims["exp"].as_f64().is_some_and(|exp| exp >= now - 61.0), "accepted after its exp: {claims}");
    if let Some(nbf) = claims.get("nbf") {
        assert!(nbf.as_f64().is_some_and(|nbf| nbf <= now + 61.0), "accepted before its nbf: {claims}");
    }
    let parsed: eventuall_media::livekit::proto::WebhookEvent =
        serde_json::from_slice(body).expect("an accepted body is a WebhookEvent");
    assert_eq!(parsed, event);
}

/// A JSON object's keys.
fn keys(value: &Value) -> BTreeSet<&str> {
    value.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default()
}

/// Parses `body` as the handler does; when it parses, the body was an
/// object of only `allowed` keys (the types refuse unknown fields).
fn parse_body<T: DeserializeOwned>(body: &[u8], allowed: &[&str]) -> Option<T> {
    let parsed = serde_json::from_slice::<T>(body).ok()?;
    let value: Value = serde_json::from_slice(body).expect("a parsed body is JSON");
    assert!(keys(&value).iter().all(|k| allowed.contains(k)), "unknown fields accepted: {value}");
    Some(parsed)
}

/// A `userId` of a body passes the handlers' check exactly when it has 1
/// to 256 characters.
fn check_user_id(user_id: &str) {
    let chars = user_id.chars().count();
    let fits = (1..=MAX_USER_ID_CHARS).contains(&chars);
    assert_eq!(body_user_id(user_id).is_ok(), fits, "userId of {chars} characters");
}

/// An HTTP JSON body: the first line names the route, the rest is the
/// body. Each is parsed into the handler's type and checked as its handler
/// checks it: `userId`s have 1 to 256 characters, an interview's title,
/// job description and skills are stored only within their limits.
/// Unknown routes are ignored (they never reach a parser).
pub fn http_bodies(data: &[u8]) {
    use crate::http::{interviews, queue, rooms};
    let newline = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let route = std::str::from_utf8(&data[..newline]).unwrap_or_default();
    let body = data.get(newline + 1..).unwrap_or_default();
    match route {
        "stage" => {
            if let Some(request) = parse_body::<rooms::StageRequest>(body, &["userId"]) {
                check_user_id(&request.user_id);
            }
        }
        "queue/add" => {
            if let Some(request) = parse_body::<queue::AddRequest>(body, &["userId", "name"]) {
                check_user_id(&request.user_id);
            }
        }
        "queue/move" => {
            if let Some(request) = parse_body::<queue::MoveRequest>(body, &["userId", "list", "index"]) {
                check_user_id(&request.user_id);
            }
        }
        "queue/user" => {
            if let Some(request) = parse_body::<queue::UserRequest>(body, &["userId"]) {
                check_user_id(&request.user_id);
            }
        }
        "interviews/create" => {
            if let Some(request) = parse_body::<interviews::CreateRequest>(body, &["title", "jobDescription", "skills"])
            {
                interview_created(request);
            }
        }
        "interviews/rename" => {
            if let Some(interviews::RenameRequest { title: Some(title) }) =
                parse_body::<interviews::RenameRequest>(body, &["title"])
            {
                interview_renamed(title);
            }
        }
        "internal/room-command" => {
            // Read before the caller is known to be a node: parsing alone must hold.
            let _ = serde_json::from_slice::<crate::cluster::route::RoomCommandBody>(body);
        }
        _ => {}
    }
}

/// What a created interview stores: within every limit, or refused.
fn interview_created(request: crate::http::interviews::CreateRequest) {
    let job_description = request.job_description.unwrap_or_default();
    let skills = request.skills.unwrap_or_default();
    let command = DirectoryCommand::Create {
        interview_id: "i1".into(),
        title: request.title.clone(),
        job_description: job_description.clone(),
        skills: skills.clone(),
        at: 1,
    };
    let Ok(events) = UserInterviews::default().decide(command) else { return };
    let [DirectoryEvent::InterviewCreated { title, job_description: stored, skills: kept, .. }] = events.as_slice()
    else {
        panic!("a create stored {events:?}")
    };
    check_title(&request.title, title);
    assert_eq!(stored, &job_description);
    assert!(stored.chars().count() <= MAX_JOB_DESCRIPTION_CHARS);
    assert!(kept.len() <= MAX_SKILLS, "{} skills kept", kept.len());
    let mut seen = BTreeSet::new();
    for skill in kept {
        assert!(!skill.is_empty() && skill.trim() == skill && skill.chars().count() <= MAX_SKILL_CHARS, "{skill:?}");
        assert!(skills.iter().any(|s| s.trim() == skill), "{skill:?} was not asked for");
        assert!(seen.insert(skill.to_lowercase()), "{skill:?} kept twice");
    }
}

fn interview_renamed(title: String) {
    let directory = UserInterviews::default();
    let create = DirectoryCommand::Create {
        interview_id: "i1".into(),
        title: "Before".into(),
        job_description: String::new(),
        skills: vec![],
        at: 1,
    };
    let directory = directory.decide(create).expect("a plain create").into_iter().fold(directory, |mut d, e| {
        cqrs_es::Aggregate::apply(&mut d, e);
        d
    });
    let rename = DirectoryCommand::Rename { interview_id: "i1".into(), title: title.clone(), at: 2 };
    match directory.decide(rename) {
        Ok(events) => match events.as_slice() {
            [] => assert_eq!(title.trim(), "Before"),
            [DirectoryEvent::InterviewRenamed { title: stored, .. }] => check_title(&title, stored),
            other => panic!("a rename stored {other:?}"),
        },
        Err(_) => assert!(title.trim().is_empty() || title.trim().chars().count() > MAX_TITLE_CHARS, "{title:?}"),
    }
}

fn check_title(asked: &str, stored: &str) {
    assert_eq!(stored, asked.trim());
    assert!(!stored.is_empty() && stored.chars().count() <= MAX_TITLE_CHARS, "{stored:?}");
}

/// A stored event payload through the upcaster registry: the first line is
/// the stream category, the second the `event_version`, the rest the
/// payload. `check` and `decode` agree; a current payload is not rewritten;
/// what decodes writes back to a payload that decodes to the same event;
/// an unknown category needs only JSON.
pub fn stored_payload(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (category, rest) = split_line(text);
    let (version, payload) = split_line(rest);
    let registry = Registry::standard();
    let checked = registry.check(category, "Fuzzed", version, payload);
    let upcast = registry.upcast(category, "Fuzzed", version, payload);
    if !registry.knows(category) {
        assert_eq!(checked.is_ok(), serde_json::from_str::<serde::de::IgnoredAny>(payload).is_ok());
        return;
    }
    if checked.is_ok() {
        assert!(upcast.is_ok(), "checked but not upcast: {upcast:?}");
    }
    let Ok(current) = upcast else { return };
    use eventuall_domain::{interview, queue, recording, room};
    let decodes = match category {
        "room" => round_trip::<room::EventRoom>(registry, &current),
        "queue" => round_trip::<queue::Queue>(registry, &current),
        "coordinator" => round_trip::<recording::Coordinator>(registry, &current),
        "recording" => round_trip::<recording::RecordingSession>(registry, &current),
        "user_interviews" => round_trip::<interview::UserInterviews>(registry, &current),
        "interview" => round_trip::<interview::Interview>(registry, &current),
        other => panic!("category {other} is registered but not fuzzed: add it here"),
    };
    assert_eq!(checked.is_ok(), decodes, "check says {checked:?}");
}

/// Whether `payload` decodes as `A`'s event; when it does, the event
/// written back is checked, and decodes to the same event.
fn round_trip<A: Aggregate>(registry: &Registry, payload: &str) -> bool
where
    A::Event: DeserializeOwned + Serialize + Debug,
{
    let Ok(event) = serde_json::from_str::<A::Event>(payload) else { return false };
    let written = serde_json::to_string(&event).expect("events serialise");
    let version = registry.upcast(A::TYPE, "Fuzzed", "1", &written).map(|p| p.into_owned());
    assert_eq!(version.as_deref(), Ok(written.as_str()), "a current payload was rewritten");
    assert_eq!(registry.check(A::TYPE, "Fuzzed", "1", &written), Ok(()), "written back: {written}");
    let again: A::Event = serde_json::from_str(&written).expect("a written event decodes");
    let (first, second) = (serde_json::to_value(&event).unwrap(), serde_json::to_value(&again).unwrap());
    assert!(same_json(&first, &second), "{event:?} came back as {again:?}");
    true
}

/// JSON equality that allows the last bit of a float: serde_json parses
/// floats to within one unit in the last place (no `float_roundtrip`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            x == y || (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()) * 2.0
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
