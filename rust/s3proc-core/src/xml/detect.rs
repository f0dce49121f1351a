//! Finding the record element: a bounded look at the start of the document.

use std::collections::HashMap;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::input::Input;
use super::{xml_error, XmlOptions};
use crate::error::{Error, Result};

/// How far detection reads once it has a candidate.
pub(super) const DETECT_BYTES: u64 = 1 << 20;

/// Which elements are records.
#[derive(Clone, Debug)]
pub(super) enum Target {
    /// Elements at this path of local names from the root (the root included).
    Path(Vec<String>),
    /// Outermost elements with this local name, wherever they are.
    Named(String),
}

/// What detection found.
pub(super) struct Found {
    pub(super) root: String,
    pub(super) target: Target,
    pub(super) reason: String,
}

/// An element open during detection.
struct Open {
    name: String,
    /// How often each child name was seen.
    children: HashMap<String, u32>,
    /// It has attributes or child elements.
    rich: bool,
}

/// The best repetition seen: the shallowest, then the most repeated.
struct Candidate {
    path: Vec<String>,
    count: u32,
}

/// Reads the start of the document and decides which elements are records.
///
/// The rule: with `record_element` set, every outermost element of that
/// local name. Otherwise, among the elements that repeat under one parent
/// (same local name, same parent) within the first [`DETECT_BYTES`], the
/// shallowest, and at equal depth the most repeated one (the first seen on
/// a tie): children of the root when they repeat, else the first level under
/// the root where something repeats. When nothing repeats in the whole
/// document, the root's only child if it has attributes or children (a file
/// of one record), else the root itself is the one record.
///
/// # Errors
/// [`Error::Parse`] for malformed XML, or when nothing repeats within
/// `max_record_bytes` and the document goes on.
pub(super) fn detect(
    reader: &mut Reader<Input>,
    options: &XmlOptions,
    source_name: &str,
) -> Result<Found> {
    let mut buf = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut root = None;
    let mut best: Option<Candidate> = None;
    // The root's element children: how many, and the first one's name and richness.
    let mut root_children = 0u32;
    let mut first_child: Option<(String, bool)> = None;
    reader.get_mut().limit(options.max_record_bytes);
    loop {
        buf.clear();
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(_) if reader.get_ref().over_limit() && best.is_some() => break,
            Err(_) if reader.get_ref().over_limit() => {
                return Err(Error::parse(
                    source_name,
                    reader.get_ref().line(),
                    format!(
                        "no element repeats in the first {} bytes (max_record_bytes) and the \
                         document goes on: name the record element (record_element)",
                        options.max_record_bytes
                    ),
                ))
            }
            Err(e) => return Err(xml_error(source_name, reader.get_ref().line(), e)),
        };
        let (start, empty) = match &event {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                let Some(closed) = stack.pop() else { break };
                if stack.len() == 1 && root_children == 1 {
                    first_child = Some((closed.name, closed.rich));
                }
                if stack.is_empty() {
                    break;
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = std::str::from_utf8(start.local_name().into_inner()).map_err(|_| {
            Error::parse(
                source_name,
                reader.get_ref().line(),
                "invalid UTF-8 in a name",
            )
        })?;
        let rich = !start.attributes_raw().trim_ascii().is_empty();
        let depth = stack.len();
        if depth >= options.max_depth {
            // The main pass reports it where it happens.
            break;
        }
        match stack.last_mut() {
            None => {
                root = Some(name.to_owned());
                if let Some(wanted) = &options.record_element {
                    return Ok(Found {
                        root: name.to_owned(),
                        target: Target::Named(wanted.clone()),
                        reason: "named by the record_element option".into(),
                    });
                }
            }
            Some(parent) => {
                parent.rich = true;
                if depth == 1 {
                    root_children += 1;
                }
                let count = parent.children.entry(name.to_owned()).or_insert(0);
                *count += 1;
                let count = *count;
                let better = match &best {
                    _ if count < 2 => false,
                    None => true,
                    Some(b) => {
                        depth + 1 < b.path.len() || (depth + 1 == b.path.len() && count > b.count)
                    }
                };
                if better {
                    let mut path: Vec<String> = stack.iter().map(|o| o.name.clone()).collect();
                    path.push(name.to_owned());
                    best = Some(Candidate { path, count });
                }
            }
        }
        if empty {
            if depth == 0 {
                break;
            }
            if depth == 1 && root_children == 1 {
                first_child = Some((name.to_owned(), rich));
            }
        } else {
            stack.push(Open {
                name: name.to_owned(),
                children: HashMap::new(),
                rich,
            });
        }
        if reader.get_ref().consumed() > DETECT_BYTES && best.is_some() {
            break;
        }
    }
    let Some(root) = root else {
        // No element at all: the main pass says why (empty, or not XML).
        return Ok(Found {
            root: String::new(),
            target: Target::Path(Vec::new()),
            reason: String::new(),
        });
    };
    Ok(match (best, first_child) {
        (Some(best), _) => {
            let depth = best.path.len() - 1;
            let name = &best.path[depth];
            let reason = if depth == 1 {
                format!(
                    "the root's children <{name}> repeat ({} seen first)",
                    best.count
                )
            } else {
                format!(
                    "the first level under the root where elements repeat: <{name}> at depth {depth} \
                     ({} under one <{}> seen first)",
                    best.count,
                    best.path[depth - 1]
                )
            };
            Found {
                root,
                target: Target::Path(best.path),
                reason,
            }
        }
        (None, Some((child, true))) if root_children == 1 => Found {
            target: Target::Path(vec![root.clone(), child]),
            root,
            reason: "nothing repeats: the root's only child is the one record".into(),
        },
        (None, _) => Found {
            target: Target::Path(vec![root.clone()]),
            root,
            reason: "nothing repeats: the root element is the one record".into(),
        },
    })
}
