//! How a target's state is written as series: the per-target families, each target's label
//! prefix and tails, the hot and cold parts in blocks, and the page of ready chunks a scrape is
//! served from (see the table's module documentation).

use super::*;

/// Where each family's tails end in a target's tails (a target's text is far below 4 GiB).
pub(super) type Ends = [u32; N_FAMILIES];

/// One per-target metric family.
pub(super) struct Family {
    pub(super) name: &'static str,
    /// `name{`: what every series line of the family starts with.
    pub(super) open: &'static str,
    pub(super) help: &'static str,
}

macro_rules! family {
    ($name:literal, $help:literal) => {
        Family {
            name: concat!("volcengine_rtc_", $name),
            open: concat!("volcengine_rtc_", $name, "{"),
            help: $help,
        }
    };
}

pub(super) const STATUS: usize = 0;
pub(super) const START: usize = 1;
pub(super) const END: usize = 2;
pub(super) const DURATION: usize = 3;
pub(super) const STOP_REASON: usize = 4;
pub(super) const FILES: usize = 5;
pub(super) const SIZE: usize = 6;
pub(super) const FILE_SIZE: usize = 7;
pub(super) const FILE_DURATION: usize = 8;
pub(super) const MAX_RUNNING: usize = 9;
pub(super) const FOLLOWED: usize = 10;
pub(super) const UP: usize = 11;
pub(super) const LAST_SUCCESS: usize = 12;
pub(super) const N_FAMILIES: usize = 13;

/// The per-target families, in render order (indexed by the constants above).
pub(super) const FAMILIES: [Family; N_FAMILIES] = [
    family!(
        "task_status",
        "Task Status from the API: 0 unknown, 1 not started, 2 running, 3 ended, 4 failed."
    ),
    family!("task_start_timestamp_seconds", "Task StartTime."),
    family!(
        "task_end_timestamp_seconds",
        "Task EndTime; absent until the task ended."
    ),
    family!(
        "task_duration_seconds",
        "EndTime minus StartTime once ended; time since StartTime as of the last poll while not ended."
    ),
    family!(
        "task_stop_reason",
        "1 for a terminal task; reason is its StopReason."
    ),
    family!("record_files", "Number of files in RecordFileList."),
    family!("record_size_bytes", "Sum of the recorded files' Size."),
    family!(
        "record_file_size_bytes",
        "One recorded file's Size; file is its Vid, else ObjectKey, else position."
    ),
    family!(
        "record_file_duration_seconds",
        "One recorded file's Duration; file is its Vid, else ObjectKey, else position."
    ),
    family!(
        "webcast_max_running_time_seconds",
        "Web-capture task MaxRunningTime."
    ),
    family!(
        "webcast_followed_task_info",
        "1 for a room-following webcast target (no task_id): the task it follows now, by StartTime (start_time, RFC 3339 UTC) and UserId, as GetWebCastTask answers without a TaskId."
    ),
    family!(
        "target_up",
        "1 if the target's last poll succeeded, else 0."
    ),
    family!(
        "target_last_success_timestamp_seconds",
        "When the target's last successful poll happened."
    ),
];

pub(super) const STOPS_NAME: &str = "volcengine_rtc_task_stops_total";
/// The stop counter's family name in OpenMetrics (without `_total`).
pub(super) const STOPS_FAMILY: &str = "volcengine_rtc_task_stops";
pub(super) const STOPS_HELP: &str =
    "Terminal tasks seen, each task counted once when first seen terminal.";

/// StopReasons the API documents per kind; their counters start at 0.
pub(super) fn known_reasons(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Record => &[
            "IdleTimeOut",
            "StartTaskFailed",
            "StopByAPI",
            "UnknownStopReason",
        ],
        Kind::Webcast => &[
            "ExceedMaxRunningTime",
            "StartTaskFailed",
            "StopByAPI",
            "UnknownStopReason",
        ],
    }
}

/// The part of every family a target's lines are in: targets that may still change (hot), or
/// targets the poller has parked (cold), whose chunks stay as they are while others change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Part {
    #[default]
    Hot = 0,
    Cold = 1,
}

/// The page order of the parts: cold, then hot.
pub(super) const PART_ORDER: [Part; 2] = [Part::Cold, Part::Hot];

/// A target's place in the layout: its part and its slot there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Place {
    pub(super) part: Part,
    pub(super) slot: usize,
}

impl Place {
    pub(super) fn block(self) -> usize {
        self.slot / BLOCK
    }
}

/// One part of every family: its targets in slot order, in blocks of [`BLOCK`] slots, with no
/// free slot between them (a target leaving is replaced by the part's last one).
#[derive(Default)]
pub(super) struct Layout {
    /// The target in each slot.
    pub(super) slots: Vec<TargetId>,
    /// `generations[block][family]`: bumped whenever that family's lines in the block change.
    pub(super) generations: Vec<[u64; N_FAMILIES]>,
}

impl Layout {
    /// The lines of the families in `families` (bit `f` for family `f`) changed in `block`.
    pub(super) fn bump(&mut self, block: usize, families: u32) {
        if let Some(g) = self.generations.get_mut(block) {
            for (f, g) in g.iter_mut().enumerate() {
                if families & (1 << f) != 0 {
                    *g += 1;
                }
            }
        }
    }
}

/// A chunk and the generation of its (family, block) it was built from.
pub(super) struct Cached {
    pub(super) generation: u64,
    pub(super) chunk: Arc<Chunk>,
}

pub(super) fn label_prefix(target: &Target) -> Box<str> {
    let key = &target.key;
    let mut s = String::new();
    push_label(&mut s, "kind", key.kind.as_str());
    s.push(',');
    push_label(&mut s, "app_id", &key.app_id);
    s.push(',');
    push_label(&mut s, "room_id", &key.room_id);
    s.push(',');
    push_label(&mut s, "task_id", key.task_id.as_deref().unwrap_or(""));
    for (name, value) in target.labels.iter() {
        s.push(',');
        push_label(&mut s, name, value);
    }
    s.into_boxed_str()
}

/// The `file` label of each file, made unique: a repeated label gets `#2`, `#3`, … appended
/// (skipping any that another file already has as its own label).
pub(super) fn file_labels(files: &[RecordFile]) -> Vec<String> {
    let mut seen: HashSet<String> = HashSet::with_capacity(files.len());
    // Per repeated label, the next suffix to try, so n copies cost O(n), not O(n²).
    let mut next: HashMap<String, u64> = HashMap::new();
    let mut labels = Vec::with_capacity(files.len());
    for (position, file) in files.iter().enumerate() {
        let base = file.label(position);
        let label = if seen.contains(&base) {
            let n = next.entry(base.clone()).or_insert(2);
            let mut label = format!("{base}#{n}");
            while seen.contains(&label) {
                *n += 1;
                label = format!("{base}#{n}");
            }
            *n += 1;
            label
        } else {
            base
        };
        seen.insert(label.clone());
        labels.push(label);
    }
    labels
}

pub(super) fn tail_int(t: &mut String, v: i64) {
    let _ = writeln!(t, "}} {v}");
}

pub(super) fn tail_secs(t: &mut String, ms: i64) {
    t.push_str("} ");
    push_millis_as_seconds(t, ms);
    t.push('\n');
}

pub(super) fn tail_labelled(t: &mut String, name: &str, value: &str) {
    t.push(',');
    push_label(t, name, value);
}

impl Entry {
    /// The families this target has lines in (bit `f` for family `f`).
    pub(super) fn families(&self) -> u32 {
        let mut families = 0;
        let mut start = 0;
        for (f, &end) in self.ends.iter().enumerate() {
            if end > start {
                families |= 1 << f;
            }
            start = end;
        }
        families
    }

    /// This target's tails of family `f` (kept in the hot part only).
    pub(super) fn tails(&self, f: usize) -> &[u8] {
        family_tails(&self.text, &self.ends, f)
    }

    /// This target's tails as its state makes them, and where each family's end.
    pub(super) fn made_tails(&self) -> (String, Ends) {
        let kind = self.target.as_ref().map_or(Kind::Record, |t| t.key.kind);
        let mut t = String::new();
        let mut ends: Ends = [0; N_FAMILIES];
        if !self.expired {
            self.write_tails(kind, &mut t, &mut ends);
        }
        (t, ends)
    }

    /// Re-format this target's tails from its state; returns which families' tails changed
    /// (bit `f` for family `f`).
    pub(super) fn rebuild(&mut self) -> u32 {
        let kind = self.target.as_ref().map_or(Kind::Record, |t| t.key.kind);
        let prefix_len = match (&self.target, self.place.part) {
            (Some(target), Part::Cold) => label_prefix(target).len(),
            _ => self.prefix.len(),
        };
        let old_families = self.families();
        let old_text = std::mem::take(&mut self.text);
        let old_ends = self.ends;
        let mut t = String::with_capacity(old_text.len());
        let mut ends: Ends = [0; N_FAMILIES];
        if !self.expired {
            self.write_tails(kind, &mut t, &mut ends);
        }
        let mut body_len = t.len();
        let mut start = 0;
        for (f, &end) in ends.iter().enumerate() {
            let end = end as usize;
            let lines = t
                .as_bytes()
                .get(start..end)
                .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
            body_len += lines * (FAMILIES[f].open.len() + prefix_len);
            start = end;
        }
        self.ends = ends;
        self.body_len = body_len;
        if self.place.part == Part::Cold {
            // Its old tails are not kept: say every family it had or has lines in.
            return old_families | self.families();
        }
        t.shrink_to_fit();
        self.text = t;
        let mut changed = 0;
        let mut start = 0;
        for (f, &end) in old_ends.iter().enumerate() {
            let end = end as usize;
            if old_text.as_bytes().get(start..end).unwrap_or_default() != self.tails(f) {
                changed |= 1 << f;
            }
            start = end;
        }
        changed
    }

    pub(super) fn write_tails(&self, kind: Kind, t: &mut String, ends: &mut Ends) {
        let follows_room = kind == Kind::Webcast
            && self
                .target
                .as_ref()
                .is_some_and(|t| t.key.task_id.is_none());
        let mut close = |f: usize, t: &String| ends[f] = u32::try_from(t.len()).unwrap_or(u32::MAX);
        if let Some(s) = &self.snapshot {
            let terminal = s.is_terminal();
            tail_int(t, s.status);
            close(STATUS, t);
            if s.start_time_ms > 0 {
                tail_secs(t, s.start_time_ms);
            }
            close(START, t);
            if s.end_time_ms > 0 {
                tail_secs(t, s.end_time_ms);
            }
            close(END, t);
            if s.start_time_ms > 0 {
                let until = if s.end_time_ms > 0 {
                    s.end_time_ms
                } else if terminal {
                    self.terminal_since_ms.unwrap_or(self.polled_at_ms)
                } else {
                    self.polled_at_ms
                };
                tail_secs(t, until.saturating_sub(s.start_time_ms).max(0));
            }
            close(DURATION, t);
            if terminal {
                tail_labelled(t, "reason", &s.stop_reason);
                t.push_str("} 1\n");
            }
            close(STOP_REASON, t);
            if kind == Kind::Record {
                tail_int(t, i64::try_from(s.files.len()).unwrap_or(i64::MAX));
                close(FILES, t);
                let total = s
                    .files
                    .iter()
                    .filter_map(|f| f.size_bytes)
                    .fold(0i64, i64::saturating_add);
                tail_int(t, total);
                close(SIZE, t);
                let labels = file_labels(&s.files);
                for (file, label) in s.files.iter().zip(&labels) {
                    if let Some(size) = file.size_bytes {
                        tail_labelled(t, "file", label);
                        tail_int(t, size);
                    }
                }
                close(FILE_SIZE, t);
                for (file, label) in s.files.iter().zip(&labels) {
                    if let Some(ms) = file.duration_ms {
                        tail_labelled(t, "file", label);
                        tail_secs(t, ms);
                    }
                }
                close(FILE_DURATION, t);
            } else {
                for f in [FILES, SIZE, FILE_SIZE, FILE_DURATION] {
                    close(f, t);
                }
            }
            if let (Kind::Webcast, Some(max)) = (kind, s.max_running_time_s) {
                tail_int(t, max);
            }
            close(MAX_RUNNING, t);
            if follows_room && s.start_time_ms > 0 {
                tail_labelled(t, "start_time", &rfc3339_ms(s.start_time_ms));
                tail_labelled(t, "user_id", s.user_id.as_deref().unwrap_or(""));
                t.push_str("} 1\n");
            }
            close(FOLLOWED, t);
        } else {
            for f in STATUS..=FOLLOWED {
                close(f, t);
            }
        }
        if let Some(up) = self.up {
            tail_int(t, i64::from(up));
        }
        close(UP, t);
        if let Some(ms) = self.last_success_ms {
            tail_secs(t, ms);
        }
        close(LAST_SUCCESS, t);
    }

    pub(super) fn clear_series(&mut self) {
        self.text = String::new();
        self.ends = [0; N_FAMILIES];
        self.body_len = 0;
    }
}

impl Store {
    /// About how many bytes [`Store::render`] appends (at least that many, unless targets are
    /// recorded in between): for sizing the output buffer once.
    #[cfg(test)]
    pub(super) fn render_size_hint(&self) -> usize {
        Self::size_hint(&self.read())
    }

    #[cfg(test)]
    pub(super) fn size_hint(inner: &Inner) -> usize {
        let headers: usize = FAMILIES
            .iter()
            .map(|f| 2 * f.name.len() + f.help.len() + 32)
            .sum();
        let body: usize = inner.entries.iter().map(|e| e.body_len).sum();
        let stops = 2 * STOPS_NAME.len() + STOPS_HELP.len() + 32 + inner.stops.len() * 128;
        headers + body + stops
    }

    /// Append the per-target families and `volcengine_rtc_task_stops_total` in text format
    /// 0.0.4 (a copy of [`Store::page`]'s chunks).
    #[cfg(test)]
    pub(super) fn render(&self, out: &mut Vec<u8>) {
        let mut page = Page::new();
        self.page(Format::Text, None, &mut page);
        if let Err(err) = page.write_to(out) {
            tracing::error!(error = %err, "reading a compressed chunk back failed");
        }
    }

    /// Append the per-target families and the stop counter to `page` in `format`:
    /// `# HELP`/`# TYPE` once per family, then all of the family's series. Families with no
    /// series are left out, except the stop counter, which is always there. The chunks of
    /// (family, block) pairs that changed since the last call are rebuilt first; the others
    /// are shared as they are.
    ///
    /// In OpenMetrics each stop counter gets a `_created` sample: when its reason was first
    /// counted, or `started` (seconds since the epoch) for the reasons counted from the
    /// start; without `started` those have none.
    pub fn page(&self, format: Format, started: Option<f64>, page: &mut Page) {
        let mut chunks = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        let inner = self.read();
        let mut scratch = Vec::new();
        for (p, (part, chunks)) in inner.parts.iter().zip(chunks.iter_mut()).enumerate() {
            let wanted = part.generations.len() * N_FAMILIES;
            if chunks.len() < wanted {
                let empty = Arc::new(Chunk::new(Vec::new()));
                chunks.resize_with(wanted, || Cached {
                    generation: 0,
                    chunk: empty.clone(),
                });
            }
            for (b, generations) in part.generations.iter().enumerate() {
                let Some(cached) = chunks.get_mut(b * N_FAMILIES..(b + 1) * N_FAMILIES) else {
                    continue;
                };
                if cached
                    .iter()
                    .zip(generations)
                    .all(|(c, &g)| c.generation == g)
                {
                    continue;
                }
                let entries = part
                    .slots
                    .get(b * BLOCK..((b + 1) * BLOCK).min(part.slots.len()))
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|&id| inner.entries.get(id))
                    .filter(|e| e.target.is_some());
                if p == Part::Cold as usize {
                    // Parked targets: their tails made again once for the block, their
                    // chunks kept compressed only.
                    let made: Vec<(Box<str>, String, Ends)> = entries
                        .map(|e| {
                            let (text, ends) = e.made_tails();
                            let prefix = e.target.as_deref().map(label_prefix);
                            (prefix.unwrap_or_default(), text, ends)
                        })
                        .collect();
                    for (f, (cached, &generation)) in cached.iter_mut().zip(generations).enumerate()
                    {
                        if cached.generation == generation {
                            continue;
                        }
                        scratch.clear();
                        let rows = made
                            .iter()
                            .map(|(prefix, text, ends)| (&**prefix, family_tails(text, ends, f)));
                        family_lines(f, rows, &mut scratch);
                        let chunk = Chunk::compressed(&scratch)
                            .unwrap_or_else(|_| Chunk::new(scratch.clone()));
                        cached.chunk = Arc::new(chunk);
                        cached.generation = generation;
                    }
                } else {
                    for (f, (cached, &generation)) in cached.iter_mut().zip(generations).enumerate()
                    {
                        if cached.generation == generation {
                            continue;
                        }
                        let mut text = Vec::new();
                        let rows = entries.clone().map(|e| (&*e.prefix, e.tails(f)));
                        family_lines(f, rows, &mut text);
                        cached.chunk = Arc::new(Chunk::new(text));
                        cached.generation = generation;
                    }
                }
            }
        }
        let stops = stops_text(&inner, format, started);
        drop(inner);
        for (f, header) in self.headers.iter().enumerate() {
            let family = PART_ORDER.iter().flat_map(|&p| {
                let part = &chunks[p as usize];
                (0..part.len() / N_FAMILIES).filter_map(move |b| part.get(b * N_FAMILIES + f))
            });
            let mut lines = family.filter(|c| !c.chunk.is_empty()).peekable();
            if lines.peek().is_none() {
                continue;
            }
            page.push(header.clone());
            for cached in lines {
                page.push(cached.chunk.clone());
            }
        }
        drop(chunks);
        page.push_text(stops);
    }
}

/// The tails of family `f` in `text`, whose families end at `ends`.
pub(super) fn family_tails<'a>(text: &'a str, ends: &Ends, f: usize) -> &'a [u8] {
    let start = f.checked_sub(1).map_or(0, |g| ends[g] as usize);
    text.as_bytes()
        .get(start..ends[f] as usize)
        .unwrap_or_default()
}

/// Appends family `f`'s lines of `rows`, each a target's label prefix and tails, to `out`.
pub(super) fn family_lines<'a>(
    f: usize,
    rows: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    out: &mut Vec<u8>,
) {
    let fam = &FAMILIES[f];
    let len: usize = rows
        .clone()
        .map(|(prefix, tails)| {
            let lines = tails.iter().filter(|&&c| c == b'\n').count();
            tails.len() + lines * (fam.open.len() + prefix.len())
        })
        .sum();
    out.reserve_exact(len);
    for (prefix, tails) in rows {
        for line in tails.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(fam.open.as_bytes());
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(line);
        }
    }
}

impl Inner {
    /// Target `id`'s lines of the families in `changed` (bit `f` for family `f`) changed.
    pub(super) fn bump(&mut self, id: TargetId, changed: u32) {
        if let Some(e) = self.entries.get(id).filter(|e| e.target.is_some()) {
            let place = e.place;
            self.parts[place.part as usize].bump(place.block(), changed);
        }
    }

    /// Puts target `id`'s lines at the end of `part`.
    pub(super) fn place(&mut self, id: TargetId, part: Part) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        let layout = &mut self.parts[part as usize];
        let slot = layout.slots.len();
        layout.slots.push(id);
        let blocks = layout.slots.len().div_ceil(BLOCK);
        if layout.generations.len() < blocks {
            layout.generations.resize(blocks, [1; N_FAMILIES]);
        }
        e.place = Place { part, slot };
        layout.bump(e.place.block(), e.families());
        match part {
            Part::Cold => {
                e.text = String::new();
                e.prefix = Box::default();
            }
            Part::Hot => {
                if e.text.is_empty() {
                    e.text = e.made_tails().0;
                }
                if e.prefix.is_empty() {
                    e.prefix = e.target.as_deref().map(label_prefix).unwrap_or_default();
                }
            }
        }
    }

    /// Takes target `id`'s lines out of its part; the part's last target takes its slot.
    pub(super) fn unplace(&mut self, id: TargetId) {
        let Some(e) = self.entries.get(id) else {
            return;
        };
        let (place, families) = (e.place, e.families());
        let layout = &mut self.parts[place.part as usize];
        if layout.slots.get(place.slot) != Some(&id) {
            return;
        }
        layout.bump(place.block(), families);
        layout.slots.swap_remove(place.slot);
        let last = layout.slots.len();
        if let Some(&moved) = layout.slots.get(place.slot) {
            if let Some(m) = self.entries.get_mut(moved) {
                let families = m.families();
                layout.bump(last / BLOCK, families);
                layout.bump(place.block(), families);
                m.place.slot = place.slot;
            }
        }
    }
}

/// The stop counter family in `format`.
pub(super) fn stops_text(inner: &Inner, format: Format, started: Option<f64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + inner.stops.len() * 256);
    let family = match format {
        Format::Text => STOPS_NAME,
        Format::OpenMetrics => STOPS_FAMILY,
    };
    push_header(&mut out, format, family, STOPS_HELP, "counter");
    let mut labels = String::with_capacity(128);
    let mut line = String::with_capacity(256);
    for ((kind, app_id, reason), stops) in &inner.stops {
        labels.clear();
        push_label(&mut labels, "kind", kind.as_str());
        labels.push(',');
        push_label(&mut labels, "app_id", app_id);
        labels.push_str(",reason=\"");
        push_label_value(&mut labels, reason);
        labels.push('"');
        line.clear();
        let _ = writeln!(line, "{STOPS_NAME}{{{labels}}} {}", stops.count);
        if format == Format::OpenMetrics {
            if let Some(ms) = stops.created_ms {
                let _ = write!(line, "{STOPS_FAMILY}_created{{{labels}}} ");
                push_millis_as_seconds(&mut line, ms);
                line.push('\n');
            } else if let Some(secs) = started {
                let _ = write!(line, "{STOPS_FAMILY}_created{{{labels}}} ");
                push_float(&mut line, secs);
                line.push('\n');
            }
        }
        out.extend_from_slice(line.as_bytes());
    }
    out
}
