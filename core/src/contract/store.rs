//! The store half of the contract suite: [`store_suite`] and its checks of a [`MessageStore`].

use std::future::Future;
use std::time::Duration;

use super::{ContractConfig, KEEP, check, new_message, ok, slot};
use crate::ids::{ClientId, MessageId};
use crate::message::{Message, NewMessage};
use crate::ports::{MessageStore, Retention};

fn ids(msgs: &[Message]) -> Vec<u64> {
    msgs.iter().map(|m| m.id.0).collect()
}

/// Runs every store check against stores built by `make`, which is called once per check
/// with the [`Retention`] that check needs.
///
/// # Panics
/// When a check fails, with a message naming it.
pub async fn store_suite<S, F, Fut>(cfg: &ContractConfig, mut make: F)
where
    S: MessageStore,
    F: FnMut(Retention) -> Fut,
    Fut: Future<Output = S>,
{
    store_ping(&make(KEEP).await).await;
    store_ids_in_append_order(cfg, &make(KEEP).await).await;
    store_batch_append(cfg, &make(KEEP).await).await;
    store_unacked_after_and_limit(cfg, &make(KEEP).await).await;
    store_ack_per_slot(cfg, &make(KEEP).await).await;
    store_ack_ignores_unknown_and_duplicates(cfg, &make(KEEP).await).await;
    store_ack_through(cfg, &make(KEEP).await).await;
    store_history_since_and_limit(cfg, &make(KEEP).await).await;
    store_ttl(
        cfg,
        &make(Retention {
            cap: 10_000,
            ttl: Duration::from_secs(60),
        })
        .await,
    )
    .await;
    store_cap(cfg, &make(Retention { cap: 3, ..KEEP }).await).await;
}

async fn append_one<S: MessageStore>(
    check: &str,
    store: &S,
    client: &ClientId,
    msg: &NewMessage,
    now_ms: u64,
) -> MessageId {
    let r = ok(
        check,
        "append",
        store
            .append(msg, std::slice::from_ref(client), now_ms)
            .await,
    );
    check!(
        check,
        r.len() == 1,
        "append to 1 recipient gave {} results",
        r.len()
    );
    ok(
        check,
        "append (the recipient's entry)",
        r.into_iter().next().unwrap_or_else(|| unreachable!()),
    )
}

/// `ping` answers.
async fn store_ping<S: MessageStore>(store: &S) {
    ok("store::ping", "ping", store.ping().await);
}

/// Ids start at 1, increase by append order, and the stored message reads back unchanged.
async fn store_ids_in_append_order<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::ids_in_append_order";
    let a = cfg.client("-ids-a");
    let b = cfg.client("-ids-b");
    let mut got = Vec::new();
    for n in 0..5 {
        got.push(
            append_one(C, store, &a, &new_message(n, None), cfg.base_ms + n)
                .await
                .0,
        );
    }
    check!(
        C,
        got == [1, 2, 3, 4, 5],
        "ids of 5 appends to a fresh client: {got:?}"
    );
    let first_b = append_one(C, store, &b, &new_message(9, None), cfg.base_ms + 10).await;
    check!(
        C,
        first_b == MessageId(1),
        "another client's first id: {first_b}"
    );
    let six = append_one(C, store, &a, &new_message(5, None), cfg.base_ms + 11).await;
    check!(
        C,
        six == MessageId(6),
        "a's sixth id after b's append: {six}"
    );

    let read = ok(
        C,
        "unacked",
        store
            .unacked(&a, slot(0), MessageId::ZERO, 100, cfg.base_ms + 20)
            .await,
    );
    check!(
        C,
        ids(&read) == [1, 2, 3, 4, 5, 6],
        "unacked ids: {:?}",
        ids(&read)
    );
    let expected = new_message(2, None).to_message(MessageId(3), cfg.base_ms + 2);
    check!(
        C,
        read[2] == expected,
        "message 3 read back as {:?}, expected {expected:?}",
        read[2]
    );
}

/// One append to many recipients: one result per recipient in their order, each recipient
/// in its own sequence.
async fn store_batch_append<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::batch_append";
    let b = cfg.client("-batch-b");
    append_one(C, store, &b, &new_message(0, None), cfg.base_ms).await;
    append_one(C, store, &b, &new_message(1, None), cfg.base_ms).await;
    let mut recipients: Vec<ClientId> = (0..60)
        .map(|i| cfg.client(&format!("-batch-{i}")))
        .collect();
    recipients.insert(30, b.clone());
    let msg = new_message(7, None);
    let r = ok(
        C,
        "append",
        store.append(&msg, &recipients, cfg.base_ms + 5).await,
    );
    check!(
        C,
        r.len() == recipients.len(),
        "{} results for {} recipients",
        r.len(),
        recipients.len()
    );
    for (i, (client, id)) in recipients.iter().zip(&r).enumerate() {
        let id = match id {
            Ok(id) => *id,
            Err(e) => panic!("contract check {C} failed: recipient {i} ({client}) failed: {e}"),
        };
        let want = if *client == b {
            MessageId(3)
        } else {
            MessageId(1)
        };
        check!(
            C,
            id == want,
            "recipient {i} ({client}) got id {id}, expected {want}"
        );
        let read = ok(
            C,
            "unacked",
            store
                .unacked(client, slot(0), MessageId::ZERO, 10, cfg.base_ms + 6)
                .await,
        );
        let last = read.last().map(|m| (m.id, &m.data));
        check!(
            C,
            last == Some((want, &msg.data)),
            "recipient {i} ({client}) reads {:?}",
            ids(&read)
        );
    }
    let empty = ok(
        C,
        "append to no recipient",
        store.append(&msg, &[], cfg.base_ms).await,
    );
    check!(C, empty.is_empty(), "append to no recipient gave {empty:?}");
}

/// `unacked` returns ids after the cursor, at most `limit`, oldest first.
async fn store_unacked_after_and_limit<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::unacked_after_and_limit";
    let a = cfg.client("-unacked-a");
    for n in 0..6 {
        append_one(C, store, &a, &new_message(n, None), cfg.base_ms + n).await;
    }
    let now = cfg.base_ms + 100;
    let cases: [(u64, usize, &[u64]); 6] = [
        (0, 100, &[1, 2, 3, 4, 5, 6]),
        (2, 2, &[3, 4]),
        (2, 100, &[3, 4, 5, 6]),
        (5, 1, &[6]),
        (6, 10, &[]),
        (0, 0, &[]),
    ];
    for (after, limit, want) in cases {
        let got = ok(
            C,
            "unacked",
            store
                .unacked(&a, slot(2), MessageId(after), limit, now)
                .await,
        );
        check!(
            C,
            ids(&got) == want,
            "after {after} limit {limit}: {:?}, expected {want:?}",
            ids(&got)
        );
    }
    let none = ok(
        C,
        "unacked of an unknown client",
        store
            .unacked(
                &cfg.client("-unacked-none"),
                slot(0),
                MessageId::ZERO,
                10,
                now,
            )
            .await,
    );
    check!(C, none.is_empty(), "unknown client has {:?}", ids(&none));
}

/// `ack_through`: everything up to `through` is acknowledged for that slot alone, ids above it
/// one by one, and a lower `through` later never brings anything back.
async fn store_ack_through<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::ack_through";
    let a = cfg.client("-through-a");
    for n in 0..6 {
        append_one(C, store, &a, &new_message(n, None), cfg.base_ms + n).await;
    }
    let now = cfg.base_ms + 100;
    let a = &a;
    let view = |s: i64| async move {
        let got = ok(
            C,
            "unacked",
            store.unacked(a, slot(s), MessageId::ZERO, 100, now).await,
        );
        ids(&got)
    };
    // The session held 1 and 2 (acknowledged now), and 4 out of order.
    ok(
        C,
        "ack_through",
        store
            .ack_through(
                a,
                slot(2),
                &[MessageId(1), MessageId(2), MessageId(4)],
                MessageId(2),
            )
            .await,
    );
    let got = view(2).await;
    check!(
        C,
        got == [3, 5, 6],
        "slot 2 sees {got:?}, expected [3, 5, 6]"
    );
    let got = view(0).await;
    check!(C, got == [1, 2, 3, 4, 5, 6], "slot 0 sees {got:?}");
    // A later session acknowledges 3 with an older view: nothing comes back.
    ok(
        C,
        "ack_through",
        store
            .ack_through(a, slot(2), &[MessageId(3)], MessageId(1))
            .await,
    );
    let got = view(2).await;
    check!(C, got == [5, 6], "slot 2 sees {got:?}, expected [5, 6]");
    // Ids at or below `through` may be recorded by `through` alone; listed, they are
    // acknowledged either way.
    ok(
        C,
        "ack_through",
        store
            .ack_through(a, slot(2), &[MessageId(5), MessageId(6)], MessageId(6))
            .await,
    );
    let got = view(2).await;
    check!(C, got.is_empty(), "slot 2 sees {got:?}, expected nothing");
    let after = ok(
        C,
        "unacked",
        store.unacked(a, slot(2), MessageId(1), 100, now).await,
    );
    check!(C, after.is_empty(), "slot 2 after 1 sees {:?}", ids(&after));
}

/// Acknowledging for one slot leaves every other slot's view alone.
async fn store_ack_per_slot<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::ack_per_slot";
    let a = cfg.client("-ackslot-a");
    for n in 0..5 {
        append_one(C, store, &a, &new_message(n, None), cfg.base_ms + n).await;
    }
    let now = cfg.base_ms + 100;
    ok(
        C,
        "ack",
        store.ack(&a, slot(0), &[MessageId(1), MessageId(3)]).await,
    );
    ok(C, "ack", store.ack(&a, slot(15), &[MessageId(2)]).await);
    let views = [
        (0, vec![2, 4, 5]),
        (3, vec![1, 2, 3, 4, 5]),
        (15, vec![1, 3, 4, 5]),
        (1, vec![1, 2, 3, 4, 5]),
    ];
    for (s, want) in views {
        let got = ok(
            C,
            "unacked",
            store.unacked(&a, slot(s), MessageId::ZERO, 100, now).await,
        );
        check!(
            C,
            ids(&got) == want,
            "slot {s} sees {:?}, expected {want:?}",
            ids(&got)
        );
    }
    let all: Vec<MessageId> = (1..=5).map(MessageId).collect();
    ok(C, "ack", store.ack(&a, slot(3), &all).await);
    let got = ok(
        C,
        "unacked",
        store.unacked(&a, slot(3), MessageId::ZERO, 100, now).await,
    );
    check!(
        C,
        got.is_empty(),
        "slot 3 acked everything but sees {:?}",
        ids(&got)
    );
    let got = ok(
        C,
        "unacked",
        store.unacked(&a, slot(0), MessageId::ZERO, 100, now).await,
    );
    check!(
        C,
        ids(&got) == [2, 4, 5],
        "slot 0 after slot 3's acks sees {:?}",
        ids(&got)
    );
    let hist = ok(C, "history", store.history(&a, 0, 100, now).await);
    check!(
        C,
        ids(&hist) == [1, 2, 3, 4, 5],
        "history must ignore acks, got {:?}",
        ids(&hist)
    );
}

/// Unknown ids, unknown clients, duplicate and repeated acks are ignored without error.
async fn store_ack_ignores_unknown_and_duplicates<S: MessageStore>(
    cfg: &ContractConfig,
    store: &S,
) {
    const C: &str = "store::ack_ignores_unknown_and_duplicates";
    let a = cfg.client("-ackdup-a");
    for n in 0..3 {
        append_one(C, store, &a, &new_message(n, None), cfg.base_ms + n).await;
    }
    ok(
        C,
        "ack of unknown ids",
        store
            .ack(
                &a,
                slot(0),
                &[MessageId(0), MessageId(99), MessageId(u64::MAX / 2)],
            )
            .await,
    );
    ok(
        C,
        "ack with duplicates",
        store.ack(&a, slot(0), &[MessageId(2), MessageId(2)]).await,
    );
    ok(
        C,
        "repeated ack",
        store.ack(&a, slot(0), &[MessageId(2)]).await,
    );
    ok(C, "empty ack", store.ack(&a, slot(0), &[]).await);
    ok(
        C,
        "ack of an unknown client",
        store
            .ack(&cfg.client("-ackdup-none"), slot(0), &[MessageId(1)])
            .await,
    );
    let got = ok(
        C,
        "unacked",
        store
            .unacked(&a, slot(0), MessageId::ZERO, 100, cfg.base_ms + 100)
            .await,
    );
    check!(
        C,
        ids(&got) == [1, 3],
        "slot 0 sees {:?}, expected [1, 3]",
        ids(&got)
    );
    let next = append_one(C, store, &a, &new_message(3, None), cfg.base_ms + 101).await;
    check!(
        C,
        next == MessageId(4),
        "acks must not disturb the sequence: next id {next}"
    );
}

/// `history` returns messages stored at or after `since`, at most `limit`, oldest first.
async fn store_history_since_and_limit<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::history_since_and_limit";
    let a = cfg.client("-hist-a");
    let base = cfg.base_ms;
    for (n, t) in [100u64, 200, 300, 400].into_iter().enumerate() {
        append_one(C, store, &a, &new_message(n as u64, None), base + t).await;
    }
    ok(C, "ack", store.ack(&a, slot(0), &[MessageId(2)]).await);
    let now = base + 1000;
    let cases: [(u64, usize, &[u64]); 5] = [
        (0, 100, &[1, 2, 3, 4]),
        (base + 200, 2, &[2, 3]),
        (base + 201, 100, &[3, 4]),
        (base + 401, 100, &[]),
        (base, 1, &[1]),
    ];
    for (since, limit, want) in cases {
        let got = ok(C, "history", store.history(&a, since, limit, now).await);
        check!(
            C,
            ids(&got) == want,
            "since {since} limit {limit}: {:?}, expected {want:?}",
            ids(&got)
        );
    }
    let got = ok(C, "history", store.history(&a, base + 300, 10, now).await);
    let ts: Vec<u64> = got.iter().map(|m| m.ts).collect();
    check!(C, ts == [base + 300, base + 400], "store times {ts:?}");
    let none = ok(
        C,
        "history of an unknown client",
        store.history(&cfg.client("-hist-none"), 0, 10, now).await,
    );
    check!(C, none.is_empty(), "unknown client has {:?}", ids(&none));
}

/// Default and per-message TTL: reads skip what expired at `now_ms`; purge drops and counts it.
/// The store's retention TTL is 60 s.
async fn store_ttl<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::ttl";
    let a = cfg.client("-ttl-a");
    let t0 = cfg.base_ms;
    append_one(C, store, &a, &new_message(0, None), t0).await; // expires t0 + 60 s
    append_one(
        C,
        store,
        &a,
        &new_message(1, Some(Duration::from_secs(1))),
        t0,
    )
    .await; // t0 + 1 s
    append_one(
        C,
        store,
        &a,
        &new_message(2, Some(Duration::from_secs(3600))),
        t0,
    )
    .await; // t0 + 1 h
    let views: [(u64, &[u64]); 4] = [
        (t0 + 999, &[1, 2, 3]),
        (t0 + 1000, &[1, 3]),
        (t0 + 59_999, &[1, 3]),
        (t0 + 60_000, &[3]),
    ];
    for (now, want) in views {
        let got = ok(
            C,
            "unacked",
            store.unacked(&a, slot(0), MessageId::ZERO, 100, now).await,
        );
        check!(
            C,
            ids(&got) == want,
            "unacked at +{} ms: {:?}, expected {want:?}",
            now - t0,
            ids(&got)
        );
        let got = ok(C, "history", store.history(&a, 0, 100, now).await);
        check!(
            C,
            ids(&got) == want,
            "history at +{} ms: {:?}, expected {want:?}",
            now - t0,
            ids(&got)
        );
    }
    let report = ok(C, "purge", store.purge(t0 + 1000).await);
    check_count(cfg, C, "expired by purge at +1 s", report.expired, 1);
    let report = ok(C, "purge", store.purge(t0 + 60_000).await);
    check_count(cfg, C, "expired by purge at +60 s", report.expired, 1);
    // Purged messages stay gone even for a reader whose clock is behind.
    let got = ok(C, "history", store.history(&a, 0, 100, t0).await);
    check!(
        C,
        ids(&got) == [3],
        "after purge, history at +0 ms: {:?}, expected [3]",
        ids(&got)
    );
    let next = append_one(C, store, &a, &new_message(3, None), t0 + 60_001).await;
    check!(
        C,
        next == MessageId(4),
        "ids continue after expiry: next id {next}"
    );
}

/// The per-client cap: purge leaves the newest `cap` messages and counts the dropped ones.
/// The store's cap is 3.
async fn store_cap<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::cap";
    let a = cfg.client("-cap-a");
    let b = cfg.client("-cap-b");
    for n in 0..7 {
        append_one(C, store, &a, &new_message(n, None), cfg.base_ms + n).await;
    }
    for n in 0..2 {
        append_one(C, store, &b, &new_message(n, None), cfg.base_ms + n).await;
    }
    ok(C, "ack", store.ack(&a, slot(0), &[MessageId(7)]).await);
    let now = cfg.base_ms + 100;
    let report = ok(C, "purge", store.purge(now).await);
    check_count(cfg, C, "capped by purge", report.capped, 4);
    check_count(cfg, C, "expired by purge", report.expired, 0);
    let got = ok(C, "history", store.history(&a, 0, 100, now).await);
    check!(
        C,
        ids(&got) == [5, 6, 7],
        "a keeps {:?}, expected the newest 3: [5, 6, 7]",
        ids(&got)
    );
    let got = ok(
        C,
        "unacked",
        store.unacked(&a, slot(0), MessageId::ZERO, 100, now).await,
    );
    check!(
        C,
        ids(&got) == [5, 6],
        "a's slot 0 sees {:?}, expected [5, 6]",
        ids(&got)
    );
    let got = ok(C, "history", store.history(&b, 0, 100, now).await);
    check!(
        C,
        ids(&got) == [1, 2],
        "b under the cap keeps {:?}",
        ids(&got)
    );
    let again = ok(C, "purge", store.purge(now).await);
    if cfg.exact_purge_counts {
        check!(
            C,
            again.capped == 0,
            "a second purge capped {} more",
            again.capped
        );
    }
    let next = append_one(C, store, &a, &new_message(8, None), now).await;
    check!(
        C,
        next == MessageId(8),
        "ids continue after the cap: next id {next}"
    );
}

/// Checks a purge count: exact, or a lower bound when the store may hold other runs' data.
fn check_count(cfg: &ContractConfig, check: &str, what: &str, got: u64, want: u64) {
    if cfg.exact_purge_counts {
        check!(check, got == want, "{what}: {got}, expected {want}");
    } else {
        check!(
            check,
            got >= want,
            "{what}: {got}, expected at least {want}"
        );
    }
}
