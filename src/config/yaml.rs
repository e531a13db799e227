//! A YAML document loaded into a small tree whose nodes remember where they start, so that
//! every later finding can name a line and column.
//!
//! Built on `yaml-rust2`'s event parser. Anchors and aliases are expanded (with a cap, so a
//! "billion laughs" document is refused rather than exhausting memory); nesting is capped too,
//! so no input can overflow the stack. Tags are ignored. Only one document is allowed.
//!
//! The tree is small for what it holds (a config may list 10,000 targets): positions are two
//! `u32`s, lists and mappings are boxed slices without spare room, and equal scalar texts are
//! shared rather than repeated.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

pub use crate::model::Pos;

fn pos_of(m: &Marker) -> Pos {
    Pos::new(m.line().max(1), m.col().saturating_add(1))
}

/// One node of the tree and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// What a node holds. Scalars keep their text exactly as written (quotes removed); a plain
/// empty value, `~` or `null` is [`Value::Null`]. Kept small, as a large config has many
/// nodes: boxed slices carry no spare capacity, and equal scalars (every `app_id:` key, every
/// `kind: record`) share one text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Scalar(Rc<str>),
    Seq(Box<[Node]>),
    Map(Box<[(Node, Node)]>),
}

impl Value {
    /// How the node is called in messages: "a mapping", "a list", ...
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Null => "an empty value",
            Value::Scalar(_) => "a single value",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// The text is not YAML (or is YAML this loader refuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Deepest nesting accepted; the config needs 4 levels.
pub const MAX_DEPTH: usize = 32;
/// Most nodes alias expansion may create.
pub const MAX_ALIAS_NODES: usize = 100_000;

/// A list or mapping being read: where it starts, its anchor, and its nodes so far (a
/// mapping's keys and values alternate).
struct Frame {
    pos: Pos,
    anchor: usize,
    map: bool,
    nodes: Vec<Node>,
}

/// How many nodes `node` holds, itself included.
fn size(node: &Node) -> usize {
    let pair = |(k, v): &(Node, Node)| size(k) + size(v);
    match &node.value {
        Value::Null | Value::Scalar(_) => 1,
        Value::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(pair).sum::<usize>(),
    }
}

/// A tab in a line's leading white space, the usual cause of a syntax error, placed and named.
fn indenting_tab(text: &str) -> Option<SyntaxError> {
    let fix = "YAML syntax error: a tab in the indentation; YAML indents with spaces only: replace the tab with spaces";
    text.lines().enumerate().find_map(|(i, line)| {
        let col = line
            .find(|c: char| c != ' ')
            .filter(|&c| line[c..].starts_with('\t'))?;
        Some(refuse(Pos::new(i + 1, col + 1), fix.into()))
    })
}

/// A `[` or `{` left open on an earlier line than the error, the usual cause of an error
/// the parser only notices lines later: placed at the bracket, with where the parser gave up.
fn unclosed_bracket(text: &str, stack: &[Frame], at: Pos, info: &str) -> Option<SyntaxError> {
    stack.iter().rev().find_map(|frame| {
        let line = text
            .lines()
            .nth((frame.pos.line as usize).checked_sub(1)?)?;
        let open = line.chars().nth((frame.pos.col as usize).checked_sub(1)?)?;
        let close = match open {
            '[' => ']',
            '{' => '}',
            _ => return None,
        };
        (frame.pos.line < at.line).then(|| {
            refuse(
                frame.pos,
                format!(
                    "YAML syntax error: this `{open}` is not closed (the parser gave up at \
                     {at}: {info}); close it with `{close}`"
                ),
            )
        })
    })
}

fn refuse(pos: Pos, message: String) -> SyntaxError {
    SyntaxError { pos, message }
}

/// Loads the single document in `text`; `Ok(None)` when there is none (empty file, only
/// comments).
pub fn load(text: &str) -> Result<Option<Node>, SyntaxError> {
    parse(text, None)
}

/// Like [`load`], but when the document is a list, each of its items is handed to `item` as
/// soon as it is complete instead of being kept: the root is then returned as an empty list.
/// A targets file of 100,000 entries is thus checked one entry at a time, never held as a
/// whole tree. Anchors stay usable across items.
pub fn load_list(text: &str, item: &mut dyn FnMut(Node)) -> Result<Option<Node>, SyntaxError> {
    parse(text, Some(item))
}

/// Shared texts are forgotten past this many while streaming, so a long list's unique IDs are
/// not all kept alive by the sharing set.
const MAX_SHARED_STREAMING: usize = 1024;

/// What the loader keeps between events: open lists and mappings, anchors (each with its
/// size), shared texts, and counts for the caps.
#[derive(Default)]
struct Loader {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    texts: HashSet<Rc<str>>,
    expanded: usize,
    documents: usize,
}

fn parse(
    text: &str,
    mut stream: Option<&mut dyn FnMut(Node)>,
) -> Result<Option<Node>, SyntaxError> {
    let mut parser = Parser::new_from_str(text);
    let mut l = Loader::default();
    let mut root: Option<Node> = None;
    loop {
        let (event, marker) = parser.next_token().map_err(|e| {
            let at = pos_of(e.marker());
            indenting_tab(text)
                .or_else(|| unclosed_bracket(text, &l.stack, at, e.info()))
                .unwrap_or_else(|| refuse(at, format!("YAML syntax error: {}", e.info())))
        })?;
        if event == Event::StreamEnd {
            break;
        }
        let Some((node, anchor)) = l.node(event, pos_of(&marker))? else {
            continue;
        };
        if anchor != 0 {
            let n = size(&node);
            l.anchors.insert(anchor, (node.clone(), n));
        }
        match (l.stack.as_mut_slice(), stream.as_mut()) {
            ([], _) => root = Some(node),
            ([list], Some(item)) if !list.map => {
                item(node);
                if l.texts.len() > MAX_SHARED_STREAMING {
                    l.texts.clear();
                }
            }
            ([.., frame], _) => frame.nodes.push(node),
        }
    }
    Ok(root)
}

impl Loader {
    /// The node an event completes, with its anchor; `None` for events that complete none.
    fn node(&mut self, event: Event, pos: Pos) -> Result<Option<(Node, usize)>, SyntaxError> {
        Ok(Some(match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd | Event::StreamEnd => {
                return Ok(None)
            }
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(refuse(
                        pos,
                        "a second YAML document starts here; the config is one document: \
                         remove this `---` and what follows, or merge it"
                            .into(),
                    ));
                }
                return Ok(None);
            }
            Event::Alias(id) => (self.alias(id, pos)?, 0),
            Event::Scalar(text, style, anchor, _tag) => {
                let value = if style == TScalarStyle::Plain
                    && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Value::Null
                } else if let Some(shared) = self.texts.get(text.as_str()) {
                    Value::Scalar(Rc::clone(shared))
                } else {
                    let shared: Rc<str> = Rc::from(text);
                    self.texts.insert(Rc::clone(&shared));
                    Value::Scalar(shared)
                };
                (Node { pos, value }, anchor)
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    let why = format!(
                        "nesting deeper than {MAX_DEPTH} levels; the config needs at most 4"
                    );
                    return Err(refuse(pos, why));
                }
                let map = matches!(event, Event::MappingStart(..));
                let nodes = Vec::new();
                self.stack.push(Frame {
                    pos,
                    anchor,
                    map,
                    nodes,
                });
                return Ok(None);
            }
            Event::SequenceEnd | Event::MappingEnd => self.end(pos)?,
        }))
    }

    /// The node an alias stands for, counted against [`MAX_ALIAS_NODES`].
    fn alias(&mut self, id: usize, pos: Pos) -> Result<Node, SyntaxError> {
        let Some((node, n)) = self.anchors.get(&id) else {
            return Err(refuse(pos, "alias to an unknown anchor".into()));
        };
        self.expanded = self.expanded.saturating_add(*n);
        if self.expanded > MAX_ALIAS_NODES {
            return Err(refuse(
                pos,
                format!(
                    "aliases expand to more than {MAX_ALIAS_NODES} nodes; write the \
                     values out instead of nesting aliases"
                ),
            ));
        }
        Ok(node.clone())
    }

    /// The list or mapping that ends at `pos`, with its anchor.
    fn end(&mut self, pos: Pos) -> Result<(Node, usize), SyntaxError> {
        let Some(frame) = self.stack.pop() else {
            let message = "YAML syntax error: unbalanced collection end".into();
            return Err(refuse(pos, message));
        };
        let (mut pos, mut nodes) = (frame.pos, frame.nodes.into_iter());
        let value = if frame.map {
            let pairs = std::iter::from_fn(|| Some((nodes.next()?, nodes.next()?)));
            Value::Map(pairs.collect())
        } else {
            Value::Seq(nodes.collect())
        };
        // A block mapping's start event is marked at its first `:`; the mapping is better
        // placed at its first key.
        if let Value::Map(entries) = &value {
            pos = entries.first().map_or(pos, |(k, _)| pos.min(k.pos));
        }
        Ok((Node { pos, value }, frame.anchor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(node: &Node) -> &str {
        match &node.value {
            Value::Scalar(s) => s,
            _ => "",
        }
    }

    #[test]
    fn a_streamed_list_hands_over_each_item_in_order_with_anchors_kept() {
        let text = "- &a {k: 1}\n- [2, 3]\n- *a\n";
        let mut items = Vec::new();
        let root = load_list(text, &mut |n| items.push(n)).unwrap().unwrap();
        assert!(matches!(root.value, Value::Seq(ref s) if s.is_empty()));
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].pos, Pos::new(2, 3));
        assert!(matches!(items[1].value, Value::Seq(ref s) if s.len() == 2));
        // The alias resolves to the first item.
        assert_eq!(items[2].value, items[0].value);
        // A mapping is not streamed: the callback sees nothing, the tree is whole.
        let mut seen = 0;
        let root = load_list("a: [1, 2]\n", &mut |_| seen += 1)
            .unwrap()
            .unwrap();
        assert_eq!(seen, 0);
        assert!(matches!(root.value, Value::Map(ref m) if m.len() == 1));
        // A syntax error after some items is still an error, at its place.
        let err = load_list("- 1\n- [2\n", &mut |_| ()).unwrap_err();
        assert!(err.pos.line >= 2, "{err:?}");
    }

    #[test]
    fn a_tab_in_the_indentation_is_placed_and_named() {
        let err = load("api:\n  region: x\n\ttimeout: 5s\n").unwrap_err();
        assert_eq!(err.pos, Pos::new(3, 1), "{err:?}");
        assert!(
            err.message.contains("replace the tab with spaces"),
            "{err:?}"
        );
        // A tab inside a value is no indentation problem.
        assert!(load("a: \"x\ty\"\n").is_ok());
    }

    #[test]
    fn positions_are_one_based_line_and_column() {
        let root = load("a: 1\nb:\n  - x\n  - 'y'\n").unwrap().unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(entries[0].1.pos, Pos { line: 1, col: 4 });
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[1].pos, Pos { line: 4, col: 5 });
        assert_eq!(scalar(&items[1]), "y");
    }

    #[test]
    fn block_mappings_start_at_their_first_key() {
        let root = load("l:\n  - k: 1\n    j: 2\n  - {a: b}\n")
            .unwrap()
            .unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        assert_eq!(root.pos, Pos { line: 1, col: 1 });
        let Value::Seq(items) = &entries[0].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[0].pos, Pos { line: 2, col: 5 });
        assert_eq!(items[1].pos, Pos { line: 4, col: 5 });
    }

    #[test]
    fn syntax_error_has_position() {
        let err = load("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(err.message.contains("YAML syntax error"), "{err:?}");
        assert!(err.pos.line >= 2, "{err:?}");
    }

    #[test]
    fn empty_and_comment_only_documents_have_no_root() {
        assert_eq!(load("").unwrap(), None);
        assert_eq!(load("# nothing\n").unwrap(), None);
    }

    #[test]
    fn aliases_expand_and_are_capped() {
        let root = load("a: &x {k: v}\nb: *x\n").unwrap().unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].1.value, entries[1].1.value);

        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = load(&bomb).unwrap_err();
        assert!(err.message.contains("aliases expand"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = "[".repeat(10_000);
        assert!(load(&deep).is_err());
        let mut block = String::new();
        for i in 0..200 {
            block.push_str(&" ".repeat(i));
            block.push_str("k:\n");
        }
        let err = load(&block).unwrap_err();
        assert!(err.message.contains("nesting"), "{err:?}");
    }

    #[test]
    fn nodes_stay_small() {
        // A config of 10,000 targets has some 200,000 nodes.
        assert!(std::mem::size_of::<Node>() <= 32);
        let root = load("- {k: v}\n- {k: v}\n").unwrap().unwrap();
        let Value::Seq(items) = &root.value else {
            panic!("not a seq")
        };
        let text = |item: &Node| match &item.value {
            Value::Map(entries) => match &entries[0].1.value {
                Value::Scalar(s) => Some(Rc::clone(s)),
                _ => None,
            },
            _ => None,
        };
        let (a, b) = (text(&items[0]).unwrap(), text(&items[1]).unwrap());
        assert!(Rc::ptr_eq(&a, &b), "equal scalars share their text");
    }

    #[test]
    fn second_document_is_refused() {
        let err = load("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
    }
}
