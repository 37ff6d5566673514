//! Enumerating every live entry of the index: what gc keeps, what `clean`
//! and verify walk.
//!
//! The view is the one [`Index::lookup`] answers from: segments oldest
//! first, each later one overriding, then the journal; remove records hide
//! what they remove. Damaged records are skipped here (verify reports them
//! through [`Index::check`]).

use std::collections::HashMap;

use super::{Entry, EntryRef, Index, record};
use crate::error::Result;
use crate::id::DigestState;
use crate::key::KeyHash;

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
        entries.sort_unstable_by_key(Entry::key_hash);
        Ok(entries)
    }

    /// Hands every live entry to `f`, borrowed from the mapped files, in no
    /// particular order: what [`Index::entries`] lists, without a copy of
    /// each. `f` must not call back into this index (it runs under the
    /// index's read lock); collect what needs another look and look after.
    ///
    /// # Errors
    /// [`crate::Error::Io`] when the journal cannot be re-read; the first
    /// error `f` returns, which stops the walk.
    pub fn for_each_entry(&self, mut f: impl FnMut(EntryRef<'_>) -> Result<()>) -> Result<()> {
        self.refresh()?;
        let state = self.read_state();
        let records: usize = state.segments.iter().map(|seg| seg.len()).sum();
        let mut merged: HashMap<KeyHash, Option<&[u8]>, DigestState> =
            HashMap::with_capacity_and_hasher(records, DigestState::default());
        for seg in &state.segments {
            for (hash, body) in seg.iter().flatten() {
                if let Ok(view) = record::view(body)
                    && view.key_hash == hash
                {
                    merged.insert(hash, view.parts.map(|_| body));
                }
            }
        }
        if let Some(journal) = &state.journal {
            for (hash, body) in journal.latest() {
                let put = record::view(body).ok().and_then(|v| v.parts);
                merged.insert(hash, put.map(|_| body));
            }
        }
        for body in merged.into_values().flatten() {
            if let Ok(view) = record::view(body)
                && let Some(entry) = EntryRef::from_view(&view)
            {
                f(entry)?;
            }
        }
        Ok(())
    }
}
