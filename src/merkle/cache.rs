//! A few recently read tile spans kept in memory, for many proofs in a row (an export's
//! one proof per record): neighbouring records' proofs read the same tiles, so a filtered
//! export reads each tile about once instead of once per record.

use std::collections::HashMap;
use std::sync::Mutex;

use super::proof::TileSource;
use super::{ProofError, TILE_WIDTH};
use crate::spec::hash::Hash32;

/// Spans kept before the cache starts again (a handful per tree level is enough for
/// records in `seq` order).
const KEEP: usize = 64;

pub struct CachedTiles<'a, T> {
    inner: &'a T,
    /// (level, tile index) → the tile's hashes from its start, as far as read.
    tiles: Mutex<HashMap<(u32, u64), Vec<Hash32>>>,
}

impl<'a, T: TileSource> CachedTiles<'a, T> {
    pub fn new(inner: &'a T) -> Self {
        CachedTiles {
            inner,
            tiles: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: TileSource> TileSource for CachedTiles<'_, T> {
    async fn hashes(&self, level: u32, start: u64, end: u64) -> Result<Vec<Hash32>, ProofError> {
        let tile = start / TILE_WIDTH;
        let base = tile * TILE_WIDTH;
        if end > base + TILE_WIDTH {
            return self.inner.hashes(level, start, end).await;
        }
        let (from, to) = ((start - base) as usize, (end - base) as usize);
        if let Some(known) = self.tiles.lock().expect("not poisoned").get(&(level, tile)) {
            if known.len() >= to {
                return Ok(known[from..to].to_vec());
            }
        }
        // Read from the tile's start, so later spans of the same tile are found.
        let read = self.inner.hashes(level, base, end).await?;
        let span = read[from..to].to_vec();
        let mut tiles = self.tiles.lock().expect("not poisoned");
        if tiles.len() >= KEEP {
            tiles.clear();
        }
        tiles.insert((level, tile), read);
        Ok(span)
    }
}
