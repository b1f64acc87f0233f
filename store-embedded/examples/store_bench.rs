//! The embedded store's write path on its own: pushes of one message to `--batch` of
//! `--clients` queues, each copy then acknowledged the way sessions do it (one `ack` call per
//! recipient, all in flight together, so the store batches them as it does under load).
//!
//! `cargo run --release -p herald-store-embedded --example store_bench -- [--clients 10000]
//!  [--batch 100] [--pushes 1000] [--dir PATH]`
//!
//! Prints one JSON line: wall time and process CPU time (all threads) per stored and
//! acknowledged message copy, for the appends and the acks separately.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a bench binary's output"
)]

use std::time::{Duration, Instant};

use futures::future::join_all;
use futures_executor::block_on;
use herald_core::{ClientId, MessageId, MessageStore, NewMessage, Payload, Slot};
use herald_store_embedded::{EmbeddedConfig, EmbeddedStore};

/// Store times: a fixed instant, advanced by a millisecond per push.
const T0: u64 = 1_764_000_000_000;

/// The process's CPU time so far (user + system, every thread), from /proc.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and
    // 13th, in clock ticks (100 a second on Linux).
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

struct Args {
    clients: usize,
    batch: usize,
    pushes: usize,
    dir: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        clients: 10_000,
        batch: 100,
        pushes: 1_000,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let n = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--clients" => a.clients = n()?.max(1),
            "--batch" => a.batch = n()?.max(1),
            "--pushes" => a.pushes = n()?.max(1),
            "--dir" => a.dir = Some(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    a.batch = a.batch.min(a.clients);
    Ok(a)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("store_bench: {e}");
            std::process::exit(2);
        }
    };
    let tmp = std::env::temp_dir().join(format!("herald-store-bench-{}", std::process::id()));
    let dir = a.dir.clone().map_or(tmp.clone(), Into::into);
    let store = EmbeddedStore::open(EmbeddedConfig::new(&dir)).expect("open the store");
    let clients: Vec<ClientId> = (0..a.clients)
        .map(|i| ClientId::new(&format!("bench-{i}")).expect("a valid id"))
        .collect();
    let msg = NewMessage {
        from: "bench".into(),
        channel: vec!["bench".into()],
        data: Payload::from_json(r#"{"s":123456,"t":1764000000000000,"pad":"0123456789abcdef"}"#)
            .expect("valid JSON"),
        ttl: None,
        push: None,
    };
    // A fixed pseudo-random sequence (xorshift), so runs are comparable.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut append_wall, mut append_cpu) = (Duration::ZERO, Duration::ZERO);
    let (mut ack_wall, mut ack_cpu) = (Duration::ZERO, Duration::ZERO);
    for p in 0..a.pushes {
        let start = next() as usize % a.clients;
        let stride = 1 + next() as usize % (a.clients - 1).max(1);
        let recipients: Vec<ClientId> = (0..a.batch)
            .map(|i| clients[(start + i * stride) % a.clients].clone())
            .collect();
        let (w, c) = (Instant::now(), cpu());
        let ids = block_on(store.append(&msg, &recipients, T0 + p as u64)).expect("append");
        append_wall += w.elapsed();
        append_cpu += cpu().saturating_sub(c);
        let (w, c) = (Instant::now(), cpu());
        let acks = recipients
            .iter()
            .zip(&ids)
            .filter_map(|(client, id)| id.as_ref().ok().map(|id| (client, *id)))
            .map(|(client, id): (&ClientId, MessageId)| {
                let store = &store;
                async move { store.ack(client, Slot::default(), &[id]).await }
            });
        for r in block_on(join_all(acks)) {
            r.expect("ack");
        }
        // An ack answers once queued; the store thread applies and writes the queue before
        // it answers any later request, so a ping's answer closes the measurement.
        block_on(store.ping()).expect("ping");
        ack_wall += w.elapsed();
        ack_cpu += cpu().saturating_sub(c);
    }
    drop(store);
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let copies = (a.pushes * a.batch) as f64;
    let us = |d: Duration| (d.as_secs_f64() * 1e6 / copies * 100.0).round() / 100.0;
    println!(
        "{}",
        serde_json::json!({
            "clients": a.clients, "batch": a.batch, "pushes": a.pushes,
            "append_wall_us_per_copy": us(append_wall), "append_cpu_us_per_copy": us(append_cpu),
            "ack_wall_us_per_copy": us(ack_wall), "ack_cpu_us_per_copy": us(ack_cpu),
        })
    );
}
