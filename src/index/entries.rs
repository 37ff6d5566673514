//! Enumerating every live entry of the index: what gc keeps, what `clean`
//! and verify walk.
//!
//! The view is the one [`Index::lookup`] answers from: segments oldest
//! first, each later one overriding, then the journal; remove records hide
//! what they remove. Damaged records are skipped here (verify reports them
//! through [`Index::check`]).

use std::collections::HashMap;

use super::{Entry, Index, record};
use crate::error::Result;
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
        self.refresh()?;
        let state = self.read_state();
        let mut merged: HashMap<KeyHash, Option<&[u8]>> = HashMap::new();
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
        let mut entries: Vec<Entry> = merged
            .into_values()
            .flatten()
            .filter_map(|body| {
                let view = record::view(body).ok()?;
                let parts = record::decode_parts(view.parts?).ok()?;
                Some(Entry::from_view(&view, parts))
            })
            .collect();
        entries.sort_unstable_by_key(Entry::key_hash);
        Ok(entries)
    }
}
