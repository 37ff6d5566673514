//! Why a key missed: the closest key the previous build of the same package
//! used for the same function, and which components differ.
//!
//! This module owns no files and no encodings; it compares [`CacheKey`]s
//! read from a package's previous [`BuildRoot`].
//!
//! # Invariants
//! - Only keys of the same tier and the same function id are candidates.
//! - The closest candidate has the most components equal; ties go to the
//!   first in the root's (sorted) key order, so the answer is deterministic.

use std::fmt;

use crate::compiler::keys::{CacheKey, Tier};
use crate::compiler::root::BuildRoot;
use crate::id::ObjectId;
use crate::key::Component;

/// How one component differs from the closest previous key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The value changed.
    Changed,
    /// A list has a different number of items.
    LengthDiffers {
        /// Items in the previous key.
        previous: usize,
        /// Items in this key.
        current: usize,
    },
}

/// One differing component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The component's name (`body_semantic_hash`, `type_arguments`, …).
    pub component: &'static str,
    /// For a list of the same length, the position of the differing item.
    pub index: Option<usize>,
    /// What differs.
    pub change: Change,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.change, self.index) {
            (Change::Changed, Some(i)) => write!(f, "{}[{i}] changed", self.component),
            (Change::Changed, None) => write!(f, "{} changed", self.component),
            (Change::LengthDiffers { previous, current }, _) => write!(
                f,
                "{} differ ({previous} item(s) before, {current} now)",
                self.component
            ),
        }
    }
}

/// What the comparison with the previous build found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The package has no previous build in this namespace (or its root is
    /// unreadable).
    NoPreviousBuild,
    /// The previous build used no key of this tier for this function (for
    /// the parse tier: no file with this content).
    NoPreviousKey,
    /// The previous build used exactly this key: its entry has since been
    /// removed, damaged or collected.
    SameKey,
    /// The closest previous key differs in these components.
    Differs(Vec<Difference>),
}

/// The answer to "why did this key miss?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The key that missed.
    pub key: CacheKey,
    /// The previous root of the package, if there was one.
    pub previous_root: Option<ObjectId>,
    /// The closest previous key for the same function, if any.
    pub closest: Option<CacheKey>,
    /// What differs.
    pub finding: Finding,
}

impl Explanation {
    /// The differing components (empty unless [`Finding::Differs`]).
    pub fn differences(&self) -> &[Difference] {
        match &self.finding {
            Finding::Differs(d) => d,
            _ => &[],
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tier = self.key.tier();
        match self.key.function_id() {
            Some(id) => write!(f, "{tier} key for `{id}`: ")?,
            None => write!(f, "{tier} key: ")?,
        }
        match &self.finding {
            Finding::NoPreviousBuild => f.write_str("no previous build of this package to compare with"),
            Finding::NoPreviousKey if tier == Tier::Parse => {
                f.write_str("no file of the previous build had this content")
            }
            Finding::NoPreviousKey => {
                f.write_str("the previous build used no key of this tier for this function")
            }
            Finding::SameKey => f.write_str(
                "the previous build used this exact key; its entry has since been removed, damaged or collected",
            ),
            Finding::Differs(differences) => {
                f.write_str("closest previous key differs: ")?;
                for (i, d) in differences.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{d}")?;
                }
                Ok(())
            }
        }
    }
}

/// Compares `key` with the keys of a package's previous build.
pub fn explain_against(key: &CacheKey, previous: Option<(ObjectId, &BuildRoot)>) -> Explanation {
    let Some((root_id, root)) = previous else {
        return Explanation {
            key: key.clone(),
            previous_root: None,
            closest: None,
            finding: Finding::NoPreviousBuild,
        };
    };
    let mut closest: Option<(&CacheKey, usize)> = None;
    for candidate in &root.keys {
        if candidate.tier() != key.tier() {
            continue;
        }
        if candidate == key {
            closest = Some((candidate, usize::MAX));
            break;
        }
        if key.function_id().is_none() || candidate.function_id() != key.function_id() {
            continue;
        }
        let equal = candidate
            .key()
            .components()
            .iter()
            .zip(key.key().components())
            .filter(|(a, b)| a == b)
            .count();
        if closest.is_none_or(|(_, best)| equal > best) {
            closest = Some((candidate, equal));
        }
    }
    let (closest, finding) = match closest {
        None => (None, Finding::NoPreviousKey),
        Some((c, _)) if c == key => (Some(c.clone()), Finding::SameKey),
        Some((c, _)) => (Some(c.clone()), Finding::Differs(differences(c, key))),
    };
    Explanation {
        key: key.clone(),
        previous_root: Some(root_id),
        closest,
        finding,
    }
}

fn differences(previous: &CacheKey, current: &CacheKey) -> Vec<Difference> {
    let mut out = Vec::new();
    for ((component, old), (_, new)) in previous.named_components().zip(current.named_components())
    {
        if old == new {
            continue;
        }
        match (old, new) {
            (Component::List(a), Component::List(b)) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    if x != y {
                        out.push(Difference {
                            component,
                            index: Some(i),
                            change: Change::Changed,
                        });
                    }
                }
            }
            (Component::List(a), Component::List(b)) => out.push(Difference {
                component,
                index: None,
                change: Change::LengthDiffers {
                    previous: a.len(),
                    current: b.len(),
                },
            }),
            _ => out.push(Difference {
                component,
                index: None,
                change: Change::Changed,
            }),
        }
    }
    out
}
