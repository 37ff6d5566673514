//! Enumerating every live entry of the index: what gc keeps, what `clean`
//! and verify walk.
//!
//! The view is the one [`Index::lookup`] answers from: segments oldest
//! first, each later one overriding, then the journal; remove records hide
//! what they remove. Damaged records are skipped here (verify reports them
//! through [`Index::check`]).

use super::record::{self, RecordView};
use super::{Entry, EntryRef, Index, State};
use crate::error::Result;
use crate::key::KeyHash;

/// One sorted source of decoded records: a segment, or the journal's latest.
type Run<'a> = Box<dyn Iterator<Item = (KeyHash, RecordView<'a>)> + 'a>;

impl Index {
    /// Every live entry, in key-hash order.
    ///
    /// Reads every segment and the journal once: O(entries). Picks up what
    /// other processes wrote first.
    ///
    /// # Errors
    /// [`crate::Error::Io`] when the journal cannot be re-read.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        self.for_each_entry(|entry| {
            entries.push(entry.to_entry());
            Ok(())
        })?;
        // Already in order unless a segment's slots are out of order
        // (damage verify reports); then this puts them back.
        entries.sort_unstable_by_key(Entry::key_hash);
        Ok(entries)
    }

    /// Hands every live entry to `f`, borrowed from the mapped files, in
    /// key-hash order: what [`Index::entries`] lists, without a copy of
    /// each. `f` must not call back into this index (it runs under the
    /// index's read lock); collect what needs another look and look after.
    ///
    /// Segments hold their records sorted by key hash, so the view is a merge
    /// of at most a few sorted runs (the journal's latest records sorted
    /// first): no table of every key is built.
    ///
    /// # Errors
    /// [`crate::Error::Io`] when the journal cannot be re-read; the first
    /// error `f` returns, which stops the walk.
    pub fn for_each_entry(&self, f: impl FnMut(EntryRef<'_>) -> Result<()>) -> Result<()> {
        self.refresh()?;
        let state = self.read_state();
        merge_live(&state, f)
    }
}

/// The merge behind [`Index::for_each_entry`], over a state the caller
/// already holds (a second read lock on it could wait behind a writer).
pub(super) fn merge_live<'s>(
    state: &'s State,
    mut f: impl FnMut(EntryRef<'s>) -> Result<()>,
) -> Result<()> {
    // Oldest first; a later run overrides an earlier one.
    let mut runs: Vec<Run<'_>> = Vec::new();
    for seg in &state.segments {
        runs.push(Box::new(seg.iter().filter_map(|entry| {
            let (hash, body) = entry.ok()?;
            let view = record::view(body).ok()?;
            (view.key_hash == hash).then_some((hash, view))
        })));
    }
    if let Some(journal) = &state.journal {
        let mut latest: Vec<(KeyHash, RecordView<'_>)> = journal
            .latest()
            .filter_map(|(hash, body)| Some((hash, record::view(body).ok()?)))
            .collect();
        latest.sort_unstable_by_key(|(hash, _)| *hash);
        runs.push(Box::new(latest.into_iter()));
    }
    // Each record is decoded once, above; the merge moves the views.
    let mut heads: Vec<Option<(KeyHash, RecordView<'_>)>> =
        runs.iter_mut().map(Iterator::next).collect();
    while let Some(hash) = heads.iter().flatten().map(|(h, _)| *h).min() {
        // The newest run holding this key decides; every run moves past it.
        let mut newest: Option<RecordView<'_>> = None;
        for (head, run) in heads.iter_mut().zip(runs.iter_mut()) {
            while head.as_ref().is_some_and(|(h, _)| *h == hash) {
                let next = run.next();
                newest = std::mem::replace(head, next).map(|(_, view)| view);
            }
        }
        if let Some(view) = newest
            && let Some(entry) = EntryRef::from_view(&view)
        {
            f(entry)?;
        }
    }
    Ok(())
}
