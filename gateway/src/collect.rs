//! What a notebook cell keeps of a result while it streams in.
//!
//! A cell shows at most `max_result_rows` rows and `max_result_bytes` of
//! data; the rest of the result is only counted. Both caps apply as the
//! batches arrive: rows beyond them are never kept, and the rows kept are
//! copied out of their batch, so a kept slice does not pin a large batch's
//! buffers. The gateway then holds at most the cap plus the batch in hand,
//! whatever the result's size.

use arrow::array::{Array, UInt32Array};
use arrow::record_batch::RecordBatch;

/// The rows kept for display, and how many there were in all.
#[derive(Debug)]
pub struct Shown {
    max_rows: usize,
    max_bytes: usize,
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    total: usize,
}

impl Shown {
    /// Keeps up to `max_rows` rows and `max_bytes` bytes.
    pub fn new(max_rows: usize, max_bytes: usize) -> Self {
        Self {
            max_rows,
            max_bytes,
            batches: Vec::new(),
            rows: 0,
            bytes: 0,
            total: 0,
        }
    }

    /// Counts a batch, keeping what still fits of it.
    pub fn push(&mut self, batch: &RecordBatch) {
        self.total += batch.num_rows();
        let room_rows = self.max_rows.saturating_sub(self.rows);
        let room_bytes = self.max_bytes.saturating_sub(self.bytes);
        if room_rows == 0 || room_bytes == 0 || batch.num_rows() == 0 {
            return;
        }
        let mut take = room_rows.min(batch.num_rows());
        let size = data_bytes(&batch.slice(0, take));
        if size > room_bytes {
            // As many rows as fit at this slice's average row size.
            take = ((room_bytes as u128 * take as u128) / size.max(1) as u128) as usize;
            // The bytes are spent: later batches are only counted.
            self.bytes = self.max_bytes;
        }
        if take == 0 {
            return;
        }
        let kept = copy_rows(batch, take);
        if self.bytes < self.max_bytes {
            self.bytes += data_bytes(&kept);
        }
        self.rows += kept.num_rows();
        self.batches.push(kept);
    }

    /// The rows kept, in order.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// Rows seen in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes of the rows kept.
    pub fn kept_bytes(&self) -> usize {
        self.batches.iter().map(data_bytes).sum()
    }
}

/// Bytes of the rows in a batch (a slice counts only its own rows).
fn data_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or(c.get_array_memory_size())
        })
        .sum()
}

/// The first `n` rows, in buffers of their own.
fn copy_rows(batch: &RecordBatch, n: usize) -> RecordBatch {
    let indices = UInt32Array::from_iter_values(0..n as u32);
    arrow::compute::take_record_batch(batch, &indices).unwrap_or_else(|_| batch.slice(0, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn wide(rows: usize, width: usize) -> RecordBatch {
        let values: Vec<String> = (0..rows).map(|_| "x".repeat(width)).collect();
        RecordBatch::try_from_iter([(
            "s",
            Arc::new(arrow::array::StringArray::from(values)) as Arc<dyn Array>,
        )])
        .unwrap()
    }

    #[test]
    fn a_huge_result_keeps_only_what_fits_and_counts_the_rest() {
        let mut shown = Shown::new(10_000, 1 << 20);
        // 100 batches of 1,000 rows of 10 KiB: 1 GB seen, about 1 MiB kept.
        for _ in 0..100 {
            shown.push(&wide(1_000, 10 * 1024));
        }
        assert_eq!(shown.total(), 100_000);
        let kept_rows: usize = shown.batches().iter().map(|b| b.num_rows()).sum();
        assert!(kept_rows > 0 && kept_rows < 200, "{kept_rows}");
        assert!(
            shown.kept_bytes() <= (1 << 20) + 16 * 1024,
            "{}",
            shown.kept_bytes()
        );
        // Kept rows do not hold on to the batches they came from.
        let held: usize = shown
            .batches()
            .iter()
            .map(|b| b.get_array_memory_size())
            .sum();
        assert!(held < 2 << 20, "{held}");
    }

    #[test]
    fn small_results_are_kept_whole_up_to_the_row_cap() {
        let mut shown = Shown::new(10, 1 << 20);
        shown.push(&wide(4, 3));
        shown.push(&wide(8, 3));
        assert_eq!(shown.total(), 12);
        let kept_rows: usize = shown.batches().iter().map(|b| b.num_rows()).sum();
        assert_eq!(kept_rows, 10);
    }
}
