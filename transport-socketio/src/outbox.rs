//! What a session has waiting for its client, and the bounds on it.
//!
//! Two things wait: the app's emits, in the session's mailbox until the session takes them,
//! and the session's outgoing queue ([`Outbox`]), which also holds what the session makes
//! itself: CONNECT answers and refusals, pongs, pings, closes. A client that never polls, or
//! stops reading its WebSocket, lets both grow, and a client can make the session answer at
//! will (a CONNECT to an unknown namespace is one small packet in and one refusal out). So
//! both are counted in one [`Backlog`] per session: bytes of everything waiting, control
//! packets included, plus emits not yet taken in packets. Past either bound the session is
//! closed, which frees all of it.
//!
//! One packet larger than the byte bound is let through when nothing else waits: the bound
//! limits what piles up behind a client, and never refuses a single large message outright.
//!
//! The other way, what the client sent and the session has not handled yet (while it is
//! blocked writing to a client that does not read, say) is bounded by the same number of
//! bytes: past it the server stops reading that client's WebSocket until the session catches
//! up, and refuses its polling POSTs (the session closes).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;

use futures::task::AtomicWaker;

use crate::engineio::packet::Packet as EioPacket;

/// What a queued packet costs beyond its payload: its queue slot and its allocation.
pub(crate) const PACKET_OVERHEAD: usize = 64;

/// The bytes a packet is counted for.
pub(crate) fn cost(p: &EioPacket) -> usize {
    PACKET_OVERHEAD
        + match p {
            EioPacket::Open(s)
            | EioPacket::Ping(s)
            | EioPacket::Pong(s)
            | EioPacket::Message(s) => s.len(),
            EioPacket::Binary(b) => b.len(),
            EioPacket::Close | EioPacket::Upgrade | EioPacket::Noop => 0,
        }
}

/// What one session has waiting to be sent; shared by the session and the app's handles.
#[derive(Debug)]
pub(crate) struct Backlog {
    /// Packets of the app's emits not yet taken by the session.
    packets: AtomicUsize,
    /// Bytes of everything waiting: emits not yet taken, the outgoing queue, and what is
    /// being written to the client.
    bytes: AtomicUsize,
    /// Bound on `packets` ([`crate::ServerConfig::queue_limit`]).
    packet_limit: usize,
    /// Bound on `bytes` ([`crate::ServerConfig::queue_bytes`]).
    byte_limit: usize,
    /// A bound was passed: the session is to close. Set once, never cleared.
    over: AtomicBool,
    /// The session, when it waits on a client that does not read ([`Backlog::passed`]): it
    /// ends at once instead of after its write timeout.
    over_waker: AtomicWaker,
    /// Bytes a polling client posted that wait in the session's mailbox (bounded by
    /// `byte_limit`). A WebSocket's frames wait nowhere: the session reads them itself.
    inbound: AtomicUsize,
    /// The session has ended: its mailbox takes nothing more.
    ended: AtomicBool,
}

impl Backlog {
    /// A backlog with these bounds.
    pub(crate) fn new(packet_limit: usize, byte_limit: usize) -> Backlog {
        Backlog {
            packets: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            packet_limit,
            byte_limit,
            over: AtomicBool::new(false),
            over_waker: AtomicWaker::new(),
            inbound: AtomicUsize::new(0),
            ended: AtomicBool::new(false),
        }
    }

    /// Counts an emit of `packets` packets and `bytes` bytes the app hands the session;
    /// `false` (nothing counted) when it would pass a bound, and the session is told.
    pub(crate) fn admit(&self, packets: usize, bytes: usize) -> bool {
        let before = self.packets.fetch_add(packets, Ordering::Relaxed);
        if before + packets > self.packet_limit {
            self.packets.fetch_sub(packets, Ordering::Relaxed);
            self.signal();
            return false;
        }
        if !self.charge(bytes) {
            self.packets.fetch_sub(packets, Ordering::Relaxed);
            self.refund(bytes);
            return false;
        }
        true
    }

    /// The session took an emit of `packets` packets out of its mailbox.
    pub(crate) fn taken(&self, packets: usize) {
        let _ = self
            .packets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(packets))
            });
    }

    /// Counts `bytes` more waiting; `false` when that passes the bound (and something else
    /// was already waiting), in which case the session is told.
    pub(crate) fn charge(&self, bytes: usize) -> bool {
        let before = self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if before > 0 && before + bytes > self.byte_limit {
            self.signal();
            return false;
        }
        true
    }

    /// `bytes` are no longer waiting (sent, or dropped).
    pub(crate) fn refund(&self, bytes: usize) {
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(bytes))
            });
    }

    /// Bytes waiting now.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    fn signal(&self) {
        self.over.store(true, Ordering::Release);
        self.over_waker.wake();
    }

    /// Resolves once a bound has been passed (at once if one was).
    pub(crate) async fn passed(&self) {
        futures::future::poll_fn(|cx| {
            if self.over.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.over_waker.register(cx.waker());
            if self.over.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// `bytes` from the client were put in the session's mailbox.
    pub(crate) fn received(&self, bytes: usize) {
        self.inbound.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The session took `bytes` from the client out of its mailbox.
    pub(crate) fn handled(&self, bytes: usize) {
        let _ = self
            .inbound
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(bytes))
            });
    }

    /// Whether what the client sent and the session has not handled is within the bound
    /// (always, once the session has ended).
    pub(crate) fn has_room(&self) -> bool {
        self.ended.load(Ordering::Acquire)
            || self.inbound.load(Ordering::Relaxed) <= self.byte_limit
    }

    /// The session ended: there is room for anything (it is dropped).
    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }
}

/// A session's outgoing queue, counted in its [`Backlog`].
pub(crate) struct Outbox {
    packets: VecDeque<EioPacket>,
    /// The bytes of `packets`, as charged.
    bytes: usize,
    backlog: std::sync::Arc<Backlog>,
}

impl Outbox {
    pub(crate) fn new(backlog: std::sync::Arc<Backlog>) -> Outbox {
        Outbox {
            packets: VecDeque::new(),
            bytes: 0,
            backlog,
        }
    }

    /// The backlog this queue is counted in.
    pub(crate) fn backlog(&self) -> &std::sync::Arc<Backlog> {
        &self.backlog
    }

    /// Queues a packet the session made; `false` when that passes the byte bound (the packet
    /// is queued anyway: the caller closes the session).
    #[must_use]
    pub(crate) fn push(&mut self, p: EioPacket) -> bool {
        let n = cost(&p);
        self.bytes += n;
        self.packets.push_back(p);
        self.backlog.charge(n)
    }

    /// Queues a packet of an emit whose bytes [`Backlog::admit`] already counted.
    pub(crate) fn push_admitted(&mut self, p: EioPacket) {
        self.bytes += cost(&p);
        self.packets.push_back(p);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Everything queued, and the bytes it was counted for: they stay counted until the
    /// caller has handed them on and calls [`Backlog::refund`].
    pub(crate) fn take(&mut self) -> (VecDeque<EioPacket>, usize) {
        let bytes = std::mem::take(&mut self.bytes);
        (std::mem::take(&mut self.packets), bytes)
    }

    /// Everything queued, no longer counted (for an answer built at once).
    pub(crate) fn drain(&mut self) -> Vec<EioPacket> {
        let (packets, bytes) = self.take();
        self.backlog.refund(bytes);
        packets.into()
    }
}

impl Drop for Outbox {
    /// What a closed session still held is no longer waiting.
    fn drop(&mut self) {
        self.backlog.refund(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::Arc;

    #[test]
    fn the_byte_bound_lets_one_large_packet_through_alone_and_nothing_behind_it() {
        let backlog = Arc::new(Backlog::new(100, 1000));
        let mut out = Outbox::new(backlog.clone());
        assert!(
            out.push(EioPacket::Message("x".repeat(5000))),
            "alone: let through"
        );
        assert!(backlog.passed().now_or_never().is_none());
        assert!(!out.push(EioPacket::Pong(String::new())), "behind it: over");
        assert!(
            backlog.passed().now_or_never().is_some(),
            "the session is told"
        );
        let (packets, bytes) = out.take();
        assert_eq!(packets.len(), 2);
        assert_eq!(backlog.bytes(), bytes, "counted until handed on");
        backlog.refund(bytes);
        assert_eq!(backlog.bytes(), 0);
    }

    #[test]
    fn an_emit_over_a_bound_is_refused_and_not_counted() {
        let backlog = Backlog::new(3, 1000);
        assert!(backlog.admit(2, 600));
        assert!(!backlog.admit(1, 600), "bytes over");
        assert!(backlog.passed().now_or_never().is_some());
        assert!(!backlog.admit(2, 10), "packets over");
        assert_eq!(backlog.bytes(), 600);
        backlog.taken(2);
        backlog.refund(600);
        assert!(backlog.admit(3, 10));
    }

    #[test]
    fn posted_bytes_have_room_until_the_bound_and_again_once_handled_or_ended() {
        let backlog = Backlog::new(10, 1000);
        backlog.received(1500);
        assert!(!backlog.has_room(), "over the bound");
        backlog.handled(1000);
        assert!(backlog.has_room(), "handled: room again");
        backlog.received(2000);
        assert!(!backlog.has_room());
        backlog.end();
        assert!(backlog.has_room(), "the session ended");
    }

    #[test]
    fn a_dropped_outbox_gives_its_bytes_back() {
        let backlog = Arc::new(Backlog::new(10, 1000));
        let mut out = Outbox::new(backlog.clone());
        assert!(out.push(EioPacket::Message("abc".into())));
        assert_eq!(backlog.bytes(), PACKET_OVERHEAD + 3);
        drop(out);
        assert_eq!(backlog.bytes(), 0);
    }
}
