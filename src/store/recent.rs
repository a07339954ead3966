//! What this process appended lately, by position: lets a subscriber pass
//! over a stretch of the log it would read nothing of without reading it
//! (issue #21).
//!
//! At low rates every append is its own commit, and each commit woke every
//! projection to read it back from the database only to find heartbeats it
//! skips: two queries per projection per commit, more CPU than the
//! heartbeats themselves. The group-commit writer already knows what it
//! wrote; it records each append's positions and event kinds here before it
//! moves the head, and a subscriber asks for the end of the stretch after
//! its position that this process wrote and that holds nothing it reads.
//!
//! The answer is only ever a stretch whose every position this process
//! appended: positions are unique, so no other writer's event (another
//! node's, a tool's) can lie inside it. Anything the record cannot vouch
//! for (a gap, an older position than it keeps, a foreign write) answers
//! `None`, and the subscriber reads the log as before. An append is
//! recorded only when its positions are consecutive (its first to its last
//! position is exactly its events), which SQLite's single writer always
//! gives and PostgreSQL's sequence gives unless two writers' rows
//! interleave.

use std::collections::VecDeque;

/// Appends kept: a subscriber further behind than this reads the log.
const KEPT: usize = 4_096;

/// One append as committed: its positions and what it held (an append is
/// to one stream, so of one category).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LocalAppend {
    pub first: i64,
    pub last: i64,
    pub category: String,
    /// Its events' types, without repeats.
    pub event_types: Vec<String>,
}

impl LocalAppend {
    /// Events of `event_types` on `category`, appended at `first..=last`.
    pub fn new<'a>(first: i64, last: i64, category: &str, event_types: impl Iterator<Item = &'a str>) -> Self {
        let mut distinct: Vec<String> = Vec::new();
        for event_type in event_types {
            if !distinct.iter().any(|t| t == event_type) {
                distinct.push(event_type.to_owned());
            }
        }
        Self { first, last, category: category.to_owned(), event_types: distinct }
    }

    fn read_by(&self, reads: &impl Fn(&str, &str) -> bool) -> bool {
        self.event_types.iter().any(|t| reads(&self.category, t))
    }
}

/// The newest [`KEPT`] appends of this process, in position order.
#[derive(Debug, Default)]
pub struct RecentAppends {
    appends: VecDeque<LocalAppend>,
}

impl RecentAppends {
    /// Records committed appends (in position order; one that is not after
    /// the newest kept is left out, which only makes a later answer `None`).
    pub(crate) fn record(&mut self, appended: impl IntoIterator<Item = LocalAppend>) {
        for append in appended {
            let after_newest = self.appends.back().is_none_or(|newest| append.first > newest.last);
            if append.first <= append.last && after_newest {
                self.appends.push_back(append);
            }
        }
        while self.appends.len() > KEPT {
            self.appends.pop_front();
        }
    }

    /// The last position of the stretch right after `after` that this
    /// process appended and of which `reads(category, event_type)` reads
    /// nothing; `None` when there is no such stretch.
    pub fn unread_through(&self, after: i64, reads: impl Fn(&str, &str) -> bool) -> Option<i64> {
        let start = self.appends.partition_point(|a| a.last <= after);
        let mut through = after;
        for append in self.appends.range(start..) {
            // Consecutive with what came before, or the stretch ends here.
            if append.first > through + 1 || append.read_by(&reads) {
                break;
            }
            through = append.last;
        }
        (through > after).then_some(through)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(first: i64, last: i64, types: &[&str]) -> LocalAppend {
        LocalAppend::new(first, last, "room", types.iter().copied())
    }

    fn reads_opened(_: &str, event_type: &str) -> bool {
        event_type == "ConnectionOpened"
    }

    #[test]
    fn a_stretch_of_unread_appends_is_passed_up_to_the_first_read_one() {
        let mut recent = RecentAppends::default();
        recent.record([
            append(1, 3, &["HeartbeatReceived"]),
            append(4, 4, &["HeartbeatReceived"]),
            append(5, 6, &["HeartbeatReceived", "ConnectionOpened"]),
            append(7, 9, &["HeartbeatReceived"]),
        ]);
        assert_eq!(recent.unread_through(0, reads_opened), Some(4));
        assert_eq!(recent.unread_through(2, reads_opened), Some(4), "from inside an append");
        assert_eq!(recent.unread_through(4, reads_opened), None, "the next append is read");
        assert_eq!(recent.unread_through(6, reads_opened), Some(9));
        assert_eq!(recent.unread_through(9, reads_opened), None, "nothing after the newest");
    }

    #[test]
    fn a_gap_or_a_position_older_than_the_record_is_never_vouched_for() {
        let mut recent = RecentAppends::default();
        recent.record([append(5, 6, &["HeartbeatReceived"]), append(9, 9, &["HeartbeatReceived"])]);
        assert_eq!(recent.unread_through(3, reads_opened), None, "position 4 is not ours");
        assert_eq!(recent.unread_through(4, reads_opened), Some(6), "stops before the gap at 7-8");
        assert_eq!(recent.unread_through(6, reads_opened), None);
        assert_eq!(recent.unread_through(8, reads_opened), Some(9));
    }

    #[test]
    fn out_of_order_records_are_left_out_and_the_oldest_are_forgotten() {
        let mut recent = RecentAppends::default();
        recent.record([append(10, 12, &["HeartbeatReceived"]), append(11, 11, &["HeartbeatReceived"])]);
        assert_eq!(recent.appends.len(), 1);
        let many = (0..KEPT as i64 + 10).map(|i| append(100 + i, 100 + i, &["HeartbeatReceived"]));
        recent.record(many);
        assert_eq!(recent.appends.len(), KEPT);
        assert_eq!(recent.unread_through(99, reads_opened), None, "forgotten: read the log");
        assert_eq!(recent.unread_through(120, reads_opened), Some(100 + KEPT as i64 + 9));
    }
}
