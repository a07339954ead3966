//! AI interview rooms (the second seed's app): a user's directory of
//! interviews and each interview's conversation with the AI.
//!
//! - [`directory`]: [`UserInterviews`], stream `user_interviews-{userId}`:
//!   the interviews a user created, renamed, gave skills, archived or
//!   deleted, and the user's AI quota (the seed's per-user rate limit),
//!   reserved one AI call at a time so that two tabs cannot overshoot it.
//! - [`conversation`]: [`Interview`], stream `interview-{interviewId}`: the
//!   messages, the state machine `idle → ai.* → idle` (one AI call at a
//!   time), hint scheduling and a record of every AI call (model, prompt
//!   size, latency, tokens, outcome).
//!
//! Streamed partial AI text is not an event: only the finished (or failed)
//! message is. What the AI was asked is the stream itself (every message
//! before the call) plus the prompt template's version in the call record.

pub mod conversation;
pub mod directory;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use conversation::{
    AiCall, AiCallKind, AiCallStart, AnswerSource, Interview, InterviewCommand, InterviewError, InterviewEvent,
    InterviewState, Message, MessageRole, MessageStatus, MessageType, TokenUsage,
};
pub use directory::{AiQuota, DirectoryCommand, DirectoryError, DirectoryEvent, InterviewEntry, UserInterviews};

/// Longest accepted title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest accepted job description, in characters.
pub const MAX_JOB_DESCRIPTION_CHARS: usize = 20_000;
/// Most skills an interview keeps, and the longest skill.
pub const MAX_SKILLS: usize = 50;
pub const MAX_SKILL_CHARS: usize = 100;
/// Longest accepted typed answer, in characters.
pub const MAX_ANSWER_CHARS: usize = 20_000;

/// An id of a user (the token's `sub`) or of an interview, usable in a
/// stream name: 1 to 128 printable ASCII characters, no spaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ids are 1 to 128 printable ASCII characters without spaces")]
pub struct InvalidKey;

impl StreamKey {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidKey> {
        let valid = !raw.is_empty() && raw.len() <= Self::MAX_LEN && raw.bytes().all(|b| b.is_ascii_graphic());
        if valid { Ok(Self(raw.to_owned())) } else { Err(InvalidKey) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StreamKey {
    type Error = InvalidKey;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<StreamKey> for String {
    fn from(key: StreamKey) -> Self {
        key.0
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A title as stored: trimmed, 1 to [`MAX_TITLE_CHARS`] characters.
pub fn clean_title(raw: &str) -> Option<String> {
    let title = raw.trim();
    (!title.is_empty() && title.chars().count() <= MAX_TITLE_CHARS).then(|| title.to_owned())
}

/// A typed answer as the interview takes it: trimmed, 1 to
/// [`MAX_ANSWER_CHARS`] characters. The socket's `USER_MESSAGE` is checked
/// with it before the interview is asked (and by the fuzz targets).
pub fn clean_answer(raw: &str) -> Option<String> {
    let answer = raw.trim();
    (!answer.is_empty() && answer.chars().count() <= MAX_ANSWER_CHARS).then(|| answer.to_owned())
}

/// Skills as stored: trimmed, non-empty, de-duplicated (case-insensitively
/// in Unicode's sense, so "Ɖ" and "ɖ" are one skill; first spelling wins),
/// at most [`MAX_SKILLS`]; `None` if one is too long.
pub fn clean_skills(raw: &[String]) -> Option<Vec<String>> {
    let mut skills: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for skill in raw.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if skill.chars().count() > MAX_SKILL_CHARS {
            return None;
        }
        if seen.insert(skill.to_lowercase()) {
            skills.push(skill.to_owned());
        }
    }
    skills.truncate(MAX_SKILLS);
    Some(skills)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_without_spaces() {
        assert!(StreamKey::parse("user@example.com").is_ok());
        assert!(StreamKey::parse(&"a".repeat(128)).is_ok());
        assert_eq!(StreamKey::parse(""), Err(InvalidKey));
        assert_eq!(StreamKey::parse("a b"), Err(InvalidKey));
        assert_eq!(StreamKey::parse("ü"), Err(InvalidKey));
        assert_eq!(StreamKey::parse(&"a".repeat(129)), Err(InvalidKey));
    }

    #[test]
    fn titles_and_skills_are_cleaned() {
        assert_eq!(clean_title("  Rust dev  "), Some("Rust dev".into()));
        assert_eq!(clean_title("   "), None);
        assert_eq!(clean_title(&"x".repeat(MAX_TITLE_CHARS + 1)), None);
        assert_eq!(clean_answer(" \n yes \t"), Some("yes".into()));
        assert_eq!(clean_answer(" \n "), None);
        assert_eq!(clean_answer(&"é".repeat(MAX_ANSWER_CHARS)), Some("é".repeat(MAX_ANSWER_CHARS)));
        assert_eq!(clean_answer(&"x".repeat(MAX_ANSWER_CHARS + 1)), None);
        let skills = vec![" Rust ".to_owned(), "rust".into(), "".into(), "SQL".into()];
        assert_eq!(clean_skills(&skills), Some(vec!["Rust".into(), "SQL".into()]));
        // Found by the http_bodies fuzz target: case beyond ASCII.
        let skills = vec!["rƉt".to_owned(), "rɖt".into(), "Élan".into(), "élan".into()];
        assert_eq!(clean_skills(&skills), Some(vec!["rƉt".into(), "Élan".into()]));
        assert_eq!(clean_skills(&["x".repeat(MAX_SKILL_CHARS + 1)]), None);
    }
}
