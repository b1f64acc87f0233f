//! The bounded queue of notifications waiting for Redis (count and bytes; queued and in
//! flight both count), taken a pipeline of bytes at a time.

use std::collections::VecDeque;

use super::link::PIPELINE_BYTES;

/// Notifications waiting for Redis: queued, or in the batch being sent.
#[derive(Default)]
pub(super) struct Queue {
    /// Queued `(channel, payload)`, oldest first.
    pub(super) notes: VecDeque<(String, String)>,
    /// Queued and in flight, counted against `max_pending`.
    pub(super) count: usize,
    /// Their channel and payload bytes, counted against `max_pending_bytes`.
    pub(super) bytes: usize,
}

impl Queue {
    /// Queues what fits within `max` notifications and `max_bytes`; returns how many did not.
    pub(super) fn push(
        &mut self,
        notes: Vec<(String, String)>,
        max: usize,
        max_bytes: usize,
    ) -> usize {
        let mut dropped = 0;
        for note in notes {
            let size = note.0.len() + note.1.len();
            if self.count + 1 > max || self.bytes + size > max_bytes {
                dropped += 1;
                continue;
            }
            self.count += 1;
            self.bytes += size;
            self.notes.push_back(note);
        }
        dropped
    }

    /// Takes the oldest queued notifications, about [`PIPELINE_BYTES`] (at least one); they
    /// still count against the bound until [`Queue::release`].
    pub(super) fn take_batch(&mut self) -> Vec<(String, String)> {
        let mut batch = Vec::new();
        let mut used = 0;
        while let Some(front) = self.notes.front() {
            let size = front.0.len() + front.1.len();
            if !batch.is_empty() && used + size > PIPELINE_BYTES {
                break;
            }
            used += size;
            batch.extend(self.notes.pop_front());
        }
        batch
    }

    /// Counts a sent batch out of the bound.
    pub(super) fn release(&mut self, batch: &[(String, String)]) {
        self.count -= batch.len();
        self.bytes -= batch.iter().map(|n| n.0.len() + n.1.len()).sum::<usize>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(n: usize) -> (String, String) {
        (format!("c{n}"), "x".repeat(n))
    }

    #[test]
    fn past_the_count_or_the_bytes_notifications_are_not_queued() {
        let mut q = Queue::default();
        assert_eq!(q.push(vec![note(10), note(10)], 3, 100), 0);
        assert_eq!(
            q.push(vec![note(10), note(10)], 3, 100),
            1,
            "the fourth is over 3"
        );
        let batch = q.take_batch();
        assert_eq!(
            batch,
            vec![note(10), note(10), note(10)],
            "in order, one batch"
        );
        assert_eq!(q.count, 3, "in flight still counts");
        assert_eq!(q.push(vec![note(1)], 3, 100), 1);
        q.release(&batch);
        assert_eq!((q.count, q.bytes), (0, 0));
        assert_eq!(
            q.push(vec![note(60), note(60)], 3, 100),
            1,
            "over 100 bytes"
        );
    }

    #[test]
    fn batches_hold_about_a_pipeline_of_bytes_and_at_least_one() {
        let mut q = Queue::default();
        let big = PIPELINE_BYTES / 2;
        q.push(
            vec![note(big), note(big), note(2 * big), note(1)],
            10,
            usize::MAX,
        );
        let sizes = |b: Vec<(String, String)>| b.iter().map(|n| n.1.len()).collect::<Vec<_>>();
        assert_eq!(sizes(q.take_batch()), vec![big]);
        assert_eq!(sizes(q.take_batch()), vec![big]);
        assert_eq!(sizes(q.take_batch()), vec![2 * big], "alone though over");
        assert_eq!(sizes(q.take_batch()), vec![1]);
        assert!(q.take_batch().is_empty());
    }
}
