//! A user's interviews and AI quota: the single writer of
//! `user_interviews-{userId}` (the seed's `UserInterviews` object).
//!
//! The quota is the seed's rate limit (100 AI requests per user per 24 h,
//! both numbers arriving in the command): a fixed window that opens at the
//! first request after the previous one closed. Every AI call of every
//! interview of the user reserves from it here, one decision at a time on
//! one stream, so two tabs answering at once cannot overshoot it, and a
//! restart forgets nothing.

use std::collections::BTreeMap;

use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::{MAX_JOB_DESCRIPTION_CHARS, clean_skills, clean_title};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterviewEntry {
    pub title: String,
    pub job_description: String,
    pub skills: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub archived: bool,
    pub deleted: bool,
}

/// The AI requests used in the current window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiQuota {
    pub window_start: i64,
    pub used: u32,
}

impl AiQuota {
    /// Whether a window is open at `at`: one was opened by a request and has
    /// not yet run its length.
    pub fn is_open(&self, at: i64, window_ms: i64) -> bool {
        self.used > 0 && at < self.window_start + window_ms
    }

    /// Requests used at `at` (0 once the window has closed).
    pub fn used_at(&self, at: i64, window_ms: i64) -> u32 {
        if self.is_open(at, window_ms) { self.used } else { 0 }
    }

    /// When the window open at `at` closes (`at + window_ms` if none is open).
    pub fn resets_at(&self, at: i64, window_ms: i64) -> i64 {
        if self.is_open(at, window_ms) { self.window_start + window_ms } else { at + window_ms }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInterviews {
    pub interviews: BTreeMap<String, InterviewEntry>,
    pub quota: AiQuota,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DirectoryCommand {
    Create {
        interview_id: String,
        title: String,
        job_description: String,
        skills: Vec<String>,
        at: i64,
    },
    Rename {
        interview_id: String,
        title: String,
        at: i64,
    },
    SetSkills {
        interview_id: String,
        skills: Vec<String>,
        at: i64,
    },
    Archive {
        interview_id: String,
        at: i64,
    },
    Delete {
        interview_id: String,
        at: i64,
    },
    /// Reserves `calls` AI requests of a quota of `limit` per `window_ms`.
    ReserveAi {
        interview_id: String,
        calls: u32,
        limit: u32,
        window_ms: i64,
        at: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DirectoryEvent {
    InterviewCreated {
        interview_id: String,
        title: String,
        job_description: String,
        skills: Vec<String>,
        at: i64,
    },
    InterviewRenamed {
        interview_id: String,
        title: String,
        at: i64,
    },
    SkillsSet {
        interview_id: String,
        skills: Vec<String>,
        at: i64,
    },
    InterviewArchived {
        interview_id: String,
        at: i64,
    },
    InterviewDeleted {
        interview_id: String,
        at: i64,
    },
    /// `used` is the window's total after this reservation.
    AiQuotaReserved {
        interview_id: String,
        calls: u32,
        window_start: i64,
        used: u32,
        at: i64,
    },
}

impl DomainEvent for DirectoryEvent {
    fn event_type(&self) -> String {
        match self {
            DirectoryEvent::InterviewCreated { .. } => "InterviewCreated",
            DirectoryEvent::InterviewRenamed { .. } => "InterviewRenamed",
            DirectoryEvent::SkillsSet { .. } => "SkillsSet",
            DirectoryEvent::InterviewArchived { .. } => "InterviewArchived",
            DirectoryEvent::InterviewDeleted { .. } => "InterviewDeleted",
            DirectoryEvent::AiQuotaReserved { .. } => "AiQuotaReserved",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl DirectoryEvent {
    pub fn interview_id(&self) -> &str {
        match self {
            DirectoryEvent::InterviewCreated { interview_id, .. }
            | DirectoryEvent::InterviewRenamed { interview_id, .. }
            | DirectoryEvent::SkillsSet { interview_id, .. }
            | DirectoryEvent::InterviewArchived { interview_id, .. }
            | DirectoryEvent::InterviewDeleted { interview_id, .. }
            | DirectoryEvent::AiQuotaReserved { interview_id, .. } => interview_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("interview {0} exists already")]
    Exists(String),
    #[error("no interview {0}")]
    Unknown(String),
    #[error("a title is 1 to {} characters", super::MAX_TITLE_CHARS)]
    InvalidTitle,
    #[error("a job description has at most {MAX_JOB_DESCRIPTION_CHARS} characters")]
    JobDescriptionTooLong,
    #[error("at most {} skills of at most {} characters each", super::MAX_SKILLS, super::MAX_SKILL_CHARS)]
    InvalidSkills,
    #[error("the AI request limit of {limit} is used up until {reset_at}")]
    RateLimited { limit: u32, remaining: u32, reset_at: i64 },
}

impl DirectoryCommand {
    /// The command's name, for the audit metadata of its events.
    pub fn name(&self) -> &'static str {
        match self {
            DirectoryCommand::Create { .. } => "CreateInterview",
            DirectoryCommand::Rename { .. } => "RenameInterview",
            DirectoryCommand::SetSkills { .. } => "SetSkills",
            DirectoryCommand::Archive { .. } => "ArchiveInterview",
            DirectoryCommand::Delete { .. } => "DeleteInterview",
            DirectoryCommand::ReserveAi { .. } => "ReserveAi",
        }
    }
}

impl UserInterviews {
    /// A live (not deleted) interview.
    pub fn entry(&self, interview_id: &str) -> Option<&InterviewEntry> {
        self.interviews.get(interview_id).filter(|e| !e.deleted)
    }

    fn live(&self, interview_id: &str) -> Result<&InterviewEntry, DirectoryError> {
        self.entry(interview_id).ok_or_else(|| DirectoryError::Unknown(interview_id.into()))
    }

    pub fn decide(&self, command: DirectoryCommand) -> Result<Vec<DirectoryEvent>, DirectoryError> {
        Ok(match command {
            DirectoryCommand::Create { interview_id, title, job_description, skills, at } => {
                let title = clean_title(&title).ok_or(DirectoryError::InvalidTitle)?;
                if job_description.chars().count() > MAX_JOB_DESCRIPTION_CHARS {
                    return Err(DirectoryError::JobDescriptionTooLong);
                }
                let skills = clean_skills(&skills).ok_or(DirectoryError::InvalidSkills)?;
                if let Some(existing) = self.interviews.get(&interview_id) {
                    // A retried create (same id, same content) changes nothing.
                    if existing.title == title && existing.job_description == job_description {
                        return Ok(vec![]);
                    }
                    return Err(DirectoryError::Exists(interview_id));
                }
                vec![DirectoryEvent::InterviewCreated { interview_id, title, job_description, skills, at }]
            }
            DirectoryCommand::Rename { interview_id, title, at } => {
                let title = clean_title(&title).ok_or(DirectoryError::InvalidTitle)?;
                if self.live(&interview_id)?.title == title {
                    vec![]
                } else {
                    vec![DirectoryEvent::InterviewRenamed { interview_id, title, at }]
                }
            }
            DirectoryCommand::SetSkills { interview_id, skills, at } => {
                let skills = clean_skills(&skills).ok_or(DirectoryError::InvalidSkills)?;
                if self.live(&interview_id)?.skills == skills {
                    vec![]
                } else {
                    vec![DirectoryEvent::SkillsSet { interview_id, skills, at }]
                }
            }
            DirectoryCommand::Archive { interview_id, at } => {
                if self.live(&interview_id)?.archived {
                    vec![]
                } else {
                    vec![DirectoryEvent::InterviewArchived { interview_id, at }]
                }
            }
            DirectoryCommand::Delete { interview_id, at } => match self.interviews.get(&interview_id) {
                None => return Err(DirectoryError::Unknown(interview_id)),
                Some(entry) if entry.deleted => vec![],
                Some(_) => vec![DirectoryEvent::InterviewDeleted { interview_id, at }],
            },
            DirectoryCommand::ReserveAi { interview_id, calls, limit, window_ms, at } => {
                let used = self.quota.used_at(at, window_ms);
                let reset_at = self.quota.resets_at(at, window_ms);
                if used + calls > limit {
                    return Err(DirectoryError::RateLimited { limit, remaining: limit.saturating_sub(used), reset_at });
                }
                let window_start = if self.quota.is_open(at, window_ms) { self.quota.window_start } else { at };
                vec![DirectoryEvent::AiQuotaReserved { interview_id, calls, window_start, used: used + calls, at }]
            }
        })
    }
}

impl Aggregate for UserInterviews {
    crate::decided::decided_aggregate!("user_interviews", DirectoryCommand, DirectoryEvent, DirectoryError);

    fn apply(&mut self, event: DirectoryEvent) {
        match event {
            DirectoryEvent::InterviewCreated { interview_id, title, job_description, skills, at } => {
                self.interviews.insert(
                    interview_id,
                    InterviewEntry {
                        title,
                        job_description,
                        skills,
                        created_at: at,
                        updated_at: at,
                        archived: false,
                        deleted: false,
                    },
                );
            }
            DirectoryEvent::InterviewRenamed { interview_id, title, at } => {
                if let Some(entry) = self.interviews.get_mut(&interview_id) {
                    entry.title = title;
                    entry.updated_at = at;
                }
            }
            DirectoryEvent::SkillsSet { interview_id, skills, at } => {
                if let Some(entry) = self.interviews.get_mut(&interview_id) {
                    entry.skills = skills;
                    entry.updated_at = at;
                }
            }
            DirectoryEvent::InterviewArchived { interview_id, at } => {
                if let Some(entry) = self.interviews.get_mut(&interview_id) {
                    entry.archived = true;
                    entry.updated_at = at;
                }
            }
            DirectoryEvent::InterviewDeleted { interview_id, at } => {
                if let Some(entry) = self.interviews.get_mut(&interview_id) {
                    entry.deleted = true;
                    entry.updated_at = at;
                }
            }
            DirectoryEvent::AiQuotaReserved { window_start, used, .. } => {
                self.quota = AiQuota { window_start, used };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    const DAY: i64 = 86_400_000;

    fn directory() -> TestFramework<UserInterviews> {
        TestFramework::with(())
    }

    fn created(id: &str, at: i64) -> DirectoryEvent {
        DirectoryEvent::InterviewCreated {
            interview_id: id.into(),
            title: "Backend".into(),
            job_description: "Rust and SQL".into(),
            skills: vec![],
            at,
        }
    }

    fn reserve(calls: u32, at: i64) -> DirectoryCommand {
        DirectoryCommand::ReserveAi { interview_id: "i1".into(), calls, limit: 3, window_ms: DAY, at }
    }

    fn reserved(calls: u32, window_start: i64, used: u32, at: i64) -> DirectoryEvent {
        DirectoryEvent::AiQuotaReserved { interview_id: "i1".into(), calls, window_start, used, at }
    }

    #[test]
    fn creating_an_interview_records_it_cleaned() {
        directory()
            .given_no_previous_events()
            .when(DirectoryCommand::Create {
                interview_id: "i1".into(),
                title: "  Backend ".into(),
                job_description: "Rust and SQL".into(),
                skills: vec![],
                at: 5,
            })
            .then_expect_events(vec![created("i1", 5)]);
    }

    #[test]
    fn a_retried_create_changes_nothing_and_a_different_one_is_refused() {
        let create = |title: &str| DirectoryCommand::Create {
            interview_id: "i1".into(),
            title: title.into(),
            job_description: "Rust and SQL".into(),
            skills: vec![],
            at: 9,
        };
        directory().given(vec![created("i1", 5)]).when(create("Backend")).then_expect_events(vec![]);
        directory()
            .given(vec![created("i1", 5)])
            .when(create("Other"))
            .then_expect_error(DirectoryError::Exists("i1".into()));
    }

    #[test]
    fn titles_must_not_be_blank() {
        directory()
            .given(vec![created("i1", 5)])
            .when(DirectoryCommand::Rename { interview_id: "i1".into(), title: " ".into(), at: 6 })
            .then_expect_error(DirectoryError::InvalidTitle);
    }

    #[test]
    fn a_deleted_interview_cannot_be_renamed_and_deleting_twice_is_quiet() {
        let deleted = DirectoryEvent::InterviewDeleted { interview_id: "i1".into(), at: 6 };
        directory()
            .given(vec![created("i1", 5), deleted.clone()])
            .when(DirectoryCommand::Rename { interview_id: "i1".into(), title: "New".into(), at: 7 })
            .then_expect_error(DirectoryError::Unknown("i1".into()));
        directory()
            .given(vec![created("i1", 5), deleted])
            .when(DirectoryCommand::Delete { interview_id: "i1".into(), at: 7 })
            .then_expect_events(vec![]);
    }

    #[test]
    fn the_quota_opens_a_window_at_the_first_request() {
        directory().given_no_previous_events().when(reserve(1, 100)).then_expect_events(vec![reserved(1, 100, 1, 100)]);
    }

    #[test]
    fn the_quota_refuses_what_would_overshoot_the_limit() {
        // 2 of 3 used: one more fits, two do not.
        let given = vec![reserved(2, 100, 2, 100)];
        directory().given(given.clone()).when(reserve(1, 200)).then_expect_events(vec![reserved(1, 100, 3, 200)]);
        directory().given(given).when(reserve(2, 200)).then_expect_error(DirectoryError::RateLimited {
            limit: 3,
            remaining: 1,
            reset_at: 100 + DAY,
        });
    }

    #[test]
    fn the_quota_window_closes_exactly_at_its_length() {
        let full = vec![reserved(3, 100, 3, 100)];
        // One millisecond before the window closes: still refused.
        directory()
            .given(full.clone())
            .when(reserve(1, 100 + DAY - 1))
            .then_expect_error(DirectoryError::RateLimited { limit: 3, remaining: 0, reset_at: 100 + DAY });
        // At the close: a new window opens.
        directory().given(full).when(reserve(1, 100 + DAY)).then_expect_events(vec![reserved(
            1,
            100 + DAY,
            1,
            100 + DAY,
        )]);
    }
}
