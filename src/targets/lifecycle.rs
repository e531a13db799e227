//! A target's lifecycle, decided from each answer by one pure function: its [`Phase`], the
//! StartTime last answered and since when its task is terminal. The scheduler keeps these
//! facts with each target's place in its queues and asks [`Lifecycle::answered`] what an
//! answer changes; the target table asks [`is_new_task`] the same question about its last
//! snapshot. The phases and their rules are described in `crate::scheduler`'s documentation.

use std::time::Duration;

use crate::model::Phase;

/// Where a target's task is, as the answers so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lifecycle {
    pub phase: Phase,
    /// StartTime of the last answer, ms since the epoch; 0 while unknown.
    pub start_time_ms: i64,
    /// When the current task was first answered as terminal, wall-clock ms since the epoch;
    /// `None` while it has not been.
    pub terminal_since_ms: Option<i64>,
}

/// A successful answer, as far as the lifecycle cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The task is terminal (`TaskSnapshot::is_terminal`).
    pub terminal: bool,
    /// StartTime in ms since the epoch; 0 if absent.
    pub start_time_ms: i64,
    /// EndTime in ms since the epoch; 0 if absent.
    pub end_time_ms: i64,
    /// The task failed (Status 4, or StopReason `StartTaskFailed`): it will never have files.
    pub failed: bool,
    /// Number of entries in its `RecordFileList` (0 for webcast answers).
    pub files: usize,
    /// It differs from the previous answer (always true for the first).
    pub changed: bool,
}

/// What kind of target answers: one that follows a room's newest task (a webcast target
/// without `task_id`), and one that records (whose files come after its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub room: bool,
    pub record: bool,
}

/// The one rule for "a new task": a room-following target whose answer's StartTime differs
/// from the previous answer's, unless that one had no StartTime and had not ended (the same
/// task starting). `prev_start_ms` and `prev_ended` describe the previous answer.
pub fn is_new_task(room: bool, prev_start_ms: i64, prev_ended: bool, next_start_ms: i64) -> bool {
    room && prev_start_ms != next_start_ms && (prev_start_ms != 0 || prev_ended)
}

impl Lifecycle {
    /// The facts after a successful answer at `wall_ms`; `expired`: the task is older than the
    /// API's 72 hours. Returns whether the answer is about a new task.
    pub fn answered(
        &mut self,
        answer: &Answer,
        shape: Shape,
        expired: bool,
        settle_timeout: Duration,
        wall_ms: i64,
    ) -> bool {
        let ended = self.terminal_since_ms.is_some();
        let new_task = is_new_task(shape.room, self.start_time_ms, ended, answer.start_time_ms);
        if answer.start_time_ms > 0 || new_task {
            self.start_time_ms = answer.start_time_ms;
        }
        if !answer.terminal || new_task {
            self.terminal_since_ms = None;
        }
        if answer.terminal && self.terminal_since_ms.is_none() {
            self.terminal_since_ms = Some(wall_ms);
        }
        // Two identical terminal answers in a row.
        let identical =
            !answer.changed && !new_task && matches!(self.phase, Phase::Settling | Phase::Done);
        // A finished recording's files are uploaded after its end: it needs a file list that
        // stays put. Any task target gives up after `settle_timeout` (a room keeps being
        // watched anyway).
        let needs_files = shape.record && !answer.failed;
        let settled = (identical && (answer.files > 0 || !needs_files))
            || (!shape.room
                && settle_timed_out(
                    answer.end_time_ms,
                    self.terminal_since_ms,
                    settle_timeout,
                    wall_ms,
                ));
        self.phase = if expired {
            Phase::Expired
        } else if !answer.terminal {
            Phase::Active
        } else if settled {
            Phase::Done
        } else {
            Phase::Settling
        };
        new_task
    }
}

/// Whether `settle_timeout` has passed since the task's EndTime or since it was first seen
/// terminal (`terminal_since_ms`), whichever is earlier, so an EndTime in the future (a skewed
/// clock) cannot keep a task settling for ever.
fn settle_timed_out(
    end_time_ms: i64,
    terminal_since_ms: Option<i64>,
    timeout: Duration,
    wall_ms: i64,
) -> bool {
    let end = (end_time_ms > 0).then_some(end_time_ms);
    let Some(from) = [end, terminal_since_ms].into_iter().flatten().min() else {
        return false;
    };
    let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    wall_ms >= from.saturating_add(timeout_ms)
}
