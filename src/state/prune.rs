//! Retention: finished tasks' rows, counted tasks and callback event ids, each deleted once
//! its time is up (see the module documentation of [`crate::state`]).

use std::time::Duration;

use redb::{Database, ReadableTable, ReadableTableMetadata};

use super::schema::{TargetRecord, COUNTED, EVENTS, TARGETS};
use crate::model::VISIBILITY_WINDOW;

/// How old and how many callback event ids [`Writer::prune`](super::Writer::prune) keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRetention {
    pub max_age: Duration,
    pub max_count: usize,
}

impl Default for EventRetention {
    fn default() -> EventRetention {
        EventRetention {
            max_age: Duration::from_secs(24 * 3600),
            max_count: 100_000,
        }
    }
}

#[allow(clippy::result_large_err)] // redb's own error type, rare and kept inside this module
pub(super) fn prune(
    db: &Database,
    now_ms: i64,
    retention: Duration,
    ev: EventRetention,
) -> Result<(), redb::Error> {
    let retention_ms = millis(retention);
    // `counted` entries are kept at least as long as the API shows a task after its end, so
    // that a task seen again is not counted again.
    let counted_ms = millis(retention.max(VISIBILITY_WINDOW));
    let events_ms = millis(ev.max_age);
    let txn = db.begin_write()?;
    {
        // Collect, then remove: cheaper in file space than `retain` in redb 2.6.
        let mut targets = txn.open_table(TARGETS)?;
        let mut gone = Vec::new();
        for row in targets.iter()? {
            let (k, v) = row?;
            // A row that does not decode is kept: load reports it.
            if let Ok(r) = serde_json::from_slice::<TargetRecord>(v.value()) {
                if r.ended_ms()
                    .is_some_and(|end| end.saturating_add(retention_ms) <= now_ms)
                {
                    gone.push(k.value().to_string());
                }
            }
        }
        for k in &gone {
            targets.remove(k.as_str())?;
        }
        let mut counted = txn.open_table(COUNTED)?;
        remove_older(&mut counted, now_ms, counted_ms)?;
        let mut events = txn.open_table(EVENTS)?;
        remove_older(&mut events, now_ms, events_ms)?;
        let excess = usize::try_from(events.len()?)
            .unwrap_or(usize::MAX)
            .saturating_sub(ev.max_count);
        if excess > 0 {
            let mut by_age = Vec::new();
            for row in events.iter()? {
                let (k, v) = row?;
                by_age.push((v.value(), k.value().to_string()));
            }
            by_age.sort_unstable();
            for (_, id) in by_age.into_iter().take(excess) {
                events.remove(id.as_str())?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// Remove the rows of `table` whose time value plus `keep_ms` is not after `now_ms`.
#[allow(clippy::result_large_err)] // redb's own error type, rare and kept inside this module
fn remove_older(
    table: &mut redb::Table<'_, &str, i64>,
    now_ms: i64,
    keep_ms: i64,
) -> Result<(), redb::Error> {
    let mut gone = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        if v.value().saturating_add(keep_ms) <= now_ms {
            gone.push(k.value().to_string());
        }
    }
    for k in &gone {
        table.remove(k.as_str())?;
    }
    Ok(())
}

/// `d` in ms, saturating.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
