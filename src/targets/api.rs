//! The registration API's input: the body of `POST` and `DELETE /api/v1/targets`, a JSON array of
//! targets with the same fields as the config's `targets:` entries (`kind`, `app_id`, `room_id`,
//! `task_id`, `labels`).
//!
//! The body is checked as JSON first (so YAML that is not JSON is refused), then with the
//! config's own rules ([`config::parse_targets`]), so an ID, a label or a duplicate is judged
//! exactly as in a file. Every problem is listed with the target's index, the field and the fix,
//! worded for JSON (`"task_id": "..."`, not `task_id: ...`). `DELETE` takes the same entries and
//! ignores their `labels`. Work and answers are bounded: a body of at most [`MAX_BODY_BYTES`]
//! and [`MAX_TARGETS`] entries (counted before anything else is looked at), at most
//! [`MAX_LABELS`] labels per target, and at most [`MAX_PROBLEMS_LISTED`] problems in an answer
//! (then how many more there are).

use crate::config::{self, Pos};
use crate::model::{Target, TargetKey};

/// The largest body accepted: about 8,000 targets with a few labels each.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// The most targets one request may carry.
pub const MAX_TARGETS: usize = 10_000;
/// The most problems an answer lists; the rest are counted.
pub const MAX_PROBLEMS_LISTED: usize = 100;
/// The most labels a registered target may carry: each is written on every series of the
/// target, in every scrape.
pub const MAX_LABELS: usize = 64;

/// One thing wrong with a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyProblem {
    /// The target's position in the array, when the problem is about one target.
    pub index: Option<usize>,
    /// The field, when the problem is about one (`app_id`, `labels.team`, an unknown key).
    pub field: Option<String>,
    /// Where in the body (line and column), when known.
    pub pos: Option<Pos>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Larger than the limit (answer 413).
    #[error("the request body is larger than {limit} bytes; send the targets in smaller batches")]
    TooLarge { limit: usize },
    /// More than [`MAX_TARGETS`] entries (answer 413).
    #[error("the request body has {count} targets; send at most {MAX_TARGETS} per request")]
    TooMany { count: usize },
    /// The body could not be read from the connection.
    #[error("the request body could not be read: {0}")]
    Read(String),
    /// The body did not arrive in time (answer 408).
    #[error("the request body did not arrive in time (--web.read-timeout)")]
    TimedOut,
    /// Not a valid list of targets (answer 400): the first [`MAX_PROBLEMS_LISTED`] problems,
    /// and how many more there were.
    #[error("{}", invalid_summary(.problems, *.more, "; "))]
    Invalid {
        problems: Vec<BodyProblem>,
        more: usize,
    },
}

/// `N problem(s) in the request body: a; b; c` (`and N more` after the listed ones).
fn invalid_summary(problems: &[BodyProblem], more: usize, separator: &str) -> String {
    let mut text = format!(
        "{} problem(s) in the request body: {}",
        problems.len() + more,
        problems
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join(separator)
    );
    if more > 0 {
        text.push_str(&format!("{separator}and {more} more"));
    }
    text
}

impl BodyError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge { .. } | BodyError::TooMany { .. } => 413,
            BodyError::TimedOut => 408,
            BodyError::Read(_) | BodyError::Invalid { .. } => 400,
        }
    }

    /// The answer body, in the Prometheus API's error shape plus the list of problems:
    /// `{"status":"error","errorType":"bad_data","error":"...","problems":[{"index":0,
    /// "field":"app_id","line":2,"column":14,"message":"..."}]}`; past
    /// [`MAX_PROBLEMS_LISTED`], `"more_problems": N` says how many were left out.
    pub fn to_json(&self) -> String {
        let (problems, more): (Vec<serde_json::Value>, usize) = match self {
            BodyError::Invalid { problems, more } => {
                (problems.iter().map(problem_json).collect(), *more)
            }
            _ => (Vec::new(), 0),
        };
        let error = match self {
            BodyError::Invalid { problems, more: 0 } => {
                format!("{} problem(s) in the request body", problems.len())
            }
            BodyError::Invalid { problems, more } => format!(
                "{} problem(s) in the request body; the first {} are listed, and {more} more",
                problems.len() + more,
                problems.len()
            ),
            other => other.to_string(),
        };
        let mut answer = serde_json::json!({
            "status": "error",
            "errorType": "bad_data",
            "error": error,
            "problems": problems,
        });
        if more > 0 {
            answer["more_problems"] = more.into();
        }
        answer.to_string()
    }
}

fn problem_json(p: &BodyProblem) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    if let Some(i) = p.index {
        o.insert("index".into(), i.into());
    }
    if let Some(f) = &p.field {
        o.insert("field".into(), f.as_str().into());
    }
    if let Some(pos) = p.pos {
        o.insert("line".into(), pos.line.into());
        o.insert("column".into(), pos.col.into());
    }
    o.insert("message".into(), p.message.as_str().into());
    serde_json::Value::Object(o)
}

/// The targets of a `POST` body, or every problem with it.
pub fn parse_register(body: &[u8]) -> Result<Vec<Target>, BodyError> {
    let text = json_array(body)?;
    let targets = config::parse_targets(text, "body").map_err(|e| invalid(e, true))?;
    let crowded: Vec<BodyProblem> = targets
        .iter()
        .enumerate()
        .filter(|(_, t)| t.labels.len() > MAX_LABELS)
        .map(|(index, t)| BodyProblem {
            index: Some(index),
            field: Some("labels".into()),
            pos: None,
            message: format!(
                "`[{index}].labels` has {} labels; a target may carry at most {MAX_LABELS}",
                t.labels.len()
            ),
        })
        .collect();
    if crowded.is_empty() {
        return Ok(targets);
    }
    let more = crowded.len().saturating_sub(MAX_PROBLEMS_LISTED);
    let problems = crowded.into_iter().take(MAX_PROBLEMS_LISTED).collect();
    Err(BodyError::Invalid { problems, more })
}

/// The keys of a `DELETE` body, or every problem with it. Entries are written as for `POST`;
/// their `labels` are ignored (not even checked).
pub fn parse_deregister(body: &[u8]) -> Result<Vec<TargetKey>, BodyError> {
    json_array(body)?;
    let problem = |message: String| one_problem(None, message);
    let items: Vec<serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| problem(format!("the body is not valid JSON: {e}")))?;
    // One entry per line, without labels; places in this text are not the body's, so only the
    // index and field are kept.
    let mut text = String::from("[\n");
    for (i, mut item) in items.into_iter().enumerate() {
        if let Some(o) = item.as_object_mut() {
            o.remove("labels");
        }
        if i > 0 {
            text.push_str(",\n");
        }
        text.push_str(&item.to_string());
    }
    text.push_str("\n]\n");
    let targets = config::parse_targets(&text, "body").map_err(|e| invalid(e, false))?;
    Ok(targets.into_iter().map(|t| t.key).collect())
}

/// A body refused for one reason about the whole of it.
fn one_problem(pos: Option<Pos>, message: String) -> BodyError {
    BodyError::Invalid {
        problems: vec![BodyProblem {
            index: None,
            field: None,
            pos,
            message,
        }],
        more: 0,
    }
}

/// The body as text if it is within the limits and a JSON array.
fn json_array(body: &[u8]) -> Result<&str, BodyError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let one = |pos, message: String| Err(one_problem(pos, message));
    let Ok(text) = std::str::from_utf8(body) else {
        return one(
            None,
            "the body is not UTF-8 text; send JSON encoded as UTF-8".into(),
        );
    };
    let first = text
        .trim_start_matches([' ', '\t', '\r', '\n'])
        .chars()
        .next();
    match first {
        None => {
            return one(
                None,
                "the body is empty; send a JSON array of targets, e.g. [{\"kind\": \"record\", \"app_id\": \"...\", \"room_id\": \"...\", \"task_id\": \"...\"}]".into(),
            )
        }
        Some('[') => {}
        Some(_) => {
            return one(
                Some(Pos::new(1, 1)),
                "the body must be a JSON array of targets (`[{...}, ...]`), even for one target".into(),
            )
        }
    }
    match serde_json::from_str::<Entries>(text) {
        Ok(Entries(count)) if count > MAX_TARGETS => Err(BodyError::TooMany { count }),
        Ok(_) => Ok(text),
        Err(e) => {
            let pos = (e.line() > 0).then(|| Pos::new(e.line(), e.column().max(1)));
            // The place is given apart; serde_json's text ends with it.
            let text = e.to_string();
            let what = text
                .rsplit_once(" at line ")
                .map_or(&*text, |(what, _)| what);
            one(pos, format!("the body is not valid JSON: {what}"))
        }
    }
}

/// The number of entries of a JSON array, counted without keeping them.
struct Entries(usize);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
        struct Count;
        impl<'de> serde::de::Visitor<'de> for Count {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Entries, A::Error> {
                let mut n = 0usize;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Entries(n))
            }
        }
        d.deserialize_seq(Count)
    }
}

/// The config's problems as body problems: index and field taken out of the path
/// (`targets[3].labels.team`), the wording made JSON's; the first [`MAX_PROBLEMS_LISTED`].
fn invalid(err: config::ConfigError, keep_pos: bool) -> BodyError {
    let all = err.into_problems();
    let more = all.len().saturating_sub(MAX_PROBLEMS_LISTED);
    let problems = all
        .into_iter()
        .take(MAX_PROBLEMS_LISTED)
        .map(|p| {
            let (index, field) = place(&p.message);
            BodyProblem {
                index,
                field,
                pos: p.pos.filter(|_| keep_pos),
                message: reword(&p.message),
            }
        })
        .collect();
    BodyError::Invalid { problems, more }
}

/// The target index and field a config message is about.
fn place(message: &str) -> (Option<usize>, Option<String>) {
    let Some(start) = message.find("`targets[") else {
        return (None, None);
    };
    let rest = &message[start + "`targets[".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let index = digits.parse().ok();
    let after = &rest[digits.len()..];
    // `unknown key `x` in `targets[1]``, `duplicate key `x` in ...`: the key is the field.
    for lead in ["unknown key `", "duplicate key `"] {
        if let Some(key) = message.strip_prefix(lead).and_then(|m| m.split('`').next()) {
            return (index, Some(key.to_owned()));
        }
    }
    let field = after
        .strip_prefix("].")
        .and_then(|f| f.split('`').next())
        .map(str::to_owned);
    (index, field)
}

/// A config message worded for a JSON body.
fn reword(message: &str) -> String {
    let mut m = message.replace("`targets[", "`[");
    for key in ["kind", "app_id", "room_id", "task_id"] {
        m = m.replace(&format!("`{key}: ...`"), &format!("`\"{key}\": \"...\"`"));
        for kind in ["record", "webcast"] {
            m = m.replace(
                &format!("`{key}: {kind}`"),
                &format!("`\"{key}\": \"{kind}\"`"),
            );
        }
    }
    m.replace("a mapping with keys", "an object with keys")
        .replace(
            "a mapping of `name: value` pairs",
            "an object of `\"name\": \"value\"` pairs",
        )
        .replace("found a mapping", "found an object")
        .replace("found a list", "found an array")
        .replace("found an empty value", "found null")
        .replace(
            "give it one (quote it if it looks like a number or `null`) or remove it",
            "give it a string value or remove it",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_reads_index_and_field() {
        assert_eq!(
            place("`targets[12].labels.team`: label name ..."),
            (Some(12), Some("labels.team".into()))
        );
        assert_eq!(
            place("unknown key `taskid` in `targets[1]`; did you mean `task_id`?"),
            (Some(1), Some("taskid".into()))
        );
        assert_eq!(place("`targets[0]` has no `kind`"), (Some(0), None));
        assert_eq!(place("YAML syntax error"), (None, None));
    }

    #[test]
    fn entries_labels_and_problems_are_capped() {
        let many = format!("[{}{{}}]", "{}, ".repeat(MAX_TARGETS));
        assert_eq!(
            parse_register(many.as_bytes()),
            Err(BodyError::TooMany {
                count: MAX_TARGETS + 1
            })
        );
        assert_eq!(BodyError::TooMany { count: 1 }.status(), 413);

        let labels: Vec<String> = (0..=MAX_LABELS)
            .map(|i| format!("\"l{i}\": \"x\""))
            .collect();
        let crowded = format!(
            "[{{\"kind\": \"record\", \"app_id\": \"a\", \"room_id\": \"r\", \"task_id\": \"t\", \"labels\": {{{}}}}}]",
            labels.join(", ")
        );
        let Err(BodyError::Invalid { problems, more: 0 }) = parse_register(crowded.as_bytes())
        else {
            panic!("{MAX_LABELS} labels and one more are refused");
        };
        assert!(problems[0].message.contains("at most 64"), "{problems:?}");

        let bad = format!("[{}{{}}]", "{}, ".repeat(300));
        let err = parse_register(bad.as_bytes()).unwrap_err();
        let BodyError::Invalid { problems, more } = &err else {
            panic!("{err}");
        };
        assert_eq!(problems.len(), MAX_PROBLEMS_LISTED);
        assert!(*more > 0);
        let json: serde_json::Value = serde_json::from_str(&err.to_json()).unwrap();
        assert_eq!(
            json["problems"].as_array().map(Vec::len),
            Some(MAX_PROBLEMS_LISTED)
        );
        assert_eq!(json["more_problems"], *more);
        assert!(err.to_string().ends_with(&format!("and {more} more")));
    }

    #[test]
    fn reword_speaks_json() {
        assert_eq!(
            reword("`targets[0]` has no `kind`; add `kind: record` or `kind: webcast`"),
            "`[0]` has no `kind`; add `\"kind\": \"record\"` or `\"kind\": \"webcast\"`"
        );
        assert_eq!(
            reword("`targets[2]` must be a mapping with keys (kind), found a list"),
            "`[2]` must be an object with keys (kind), found an array"
        );
    }
}
