//! A complete, if tiny, transport for herald-core: clients are lines on standard input, the
//! store and broker are the in-memory ports, and every output is printed. It shows everything
//! a real transport does — authenticate, feed inputs, carry out store and broker requests,
//! deliver, honour timers — in one loop, without any runtime.
//!
//! Run it and type, for example:
//!
//! ```text
//! connect 1 alice          # connection 1 is client alice, slot 0, ack mode
//! push alice {"hello":1}   # an application pushes to alice
//! ack 1 <ack id>           # the client acknowledges the batch it was sent
//! connect 2 alice          # a newer login of alice: connection 1 is kicked
//! ```
//!
//! `cargo run -p herald-core --example line_driver`
#![allow(clippy::print_stdout, reason = "an example that shows its outputs")]

use std::io::BufRead;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald_core::auth::{AuthConfig, Credentials, authenticate};
use herald_core::memory::now_or_never;
use herald_core::{
    AckId, Broker, ConnId, Hub, HubConfig, Input, MemoryBroker, MemoryStore, NodeId, Output,
    Published, Retention, publish,
};

#[allow(clippy::disallowed_methods, reason = "the driver owns the wall clock")]
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn main() {
    let store = MemoryStore::new(Retention::default());
    let bus = MemoryBroker::new();
    let broker = bus.node();
    let mut push_ids = herald_core::PushIds::new(1);
    let mut events = broker.events();
    let mut hub = Hub::new(HubConfig::new(NodeId::new("example").expect("valid")));
    let auth = AuthConfig::new("example-secret");

    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        #[allow(
            clippy::disallowed_methods,
            reason = "the driver owns the clock, not the core"
        )]
        let now = Instant::now();
        let words: Vec<&str> = line.split_whitespace().collect();
        let input = match words.as_slice() {
            ["connect", conn, client] => {
                // A real transport would take these credentials from the CONNECT packet;
                // here we sign them on the spot with the shared secret.
                let ts = unix_ms() / 1000;
                let sig = herald_core::auth::hmac_hex(&auth.secret, ts, client);
                let creds = Credentials {
                    auth: Some(serde_json::json!({"client_id": client, "ts": ts, "sig": sig})),
                    legacy: None,
                };
                match authenticate(&auth, &creds, ts) {
                    Ok(identity) => Input::Connect {
                        conn: ConnId(conn.parse().unwrap_or(0)),
                        identity,
                    },
                    Err(e) => {
                        println!("refused: {}", e.client_message());
                        continue;
                    }
                }
            }
            ["disconnect", conn] => Input::Disconnect {
                conn: ConnId(conn.parse().unwrap_or(0)),
            },
            ["ack", conn, ack] => Input::Ack {
                conn: ConnId(conn.parse().unwrap_or(0)),
                ack: AckId(ack.parse().unwrap_or(0)),
            },
            ["push", client, data] => {
                let body =
                    format!(r#"{{"send_id":"example","recv_id":["{client}"],"data":{data}}}"#);
                // The server's publish path: validate, append, notify.
                match now_or_never(publish(
                    &store,
                    &broker,
                    body.as_bytes(),
                    unix_ms(),
                    push_ids.next(unix_ms()),
                )) {
                    Published::Stored { stored, .. } => println!("pushed: {stored:?}"),
                    refused => println!("push refused: {refused:?}"),
                }
                // The notification arrives as a broker event, fed below.
                let Some(event) = next_event(&mut events) else {
                    continue;
                };
                Input::Broker(event)
            }
            _ => {
                println!(
                    "commands: connect <conn> <client> | disconnect <conn> | ack <conn> <ack> | push <client> <json>"
                );
                continue;
            }
        };
        hub.handle(now, input);
        // The rule: after every input, drain the outputs; results become inputs again.
        while let Some(output) = hub.poll_output() {
            match output {
                Output::Store { req, op } => {
                    let result = now_or_never(op.run(&store, unix_ms()));
                    hub.handle(now, Input::StoreDone { req, result });
                }
                Output::Broker { req, op } => {
                    let result = now_or_never(op.run(&broker, unix_ms()));
                    hub.handle(now, Input::BrokerDone { req, result });
                    while let Some(event) = next_event(&mut events) {
                        hub.handle(now, Input::Broker(event));
                    }
                }
                Output::Deliver {
                    conn,
                    ack,
                    messages,
                } => {
                    let json = serde_json::to_string(&messages).unwrap_or_default();
                    println!(
                        "to {conn:?}: message {json} (ack id {:?})",
                        ack.map(|a| a.0)
                    );
                }
                Output::Kick { conn, reason } => {
                    println!("to {conn:?}: kicked {{\"reason\":\"{}\"}}", reason.as_str())
                }
                Output::Close { conn, reason } => println!("close {conn:?}: {reason:?}"),
                Output::Wake { watch } => println!("wake {watch:?}"),
            }
        }
        // A real driver sleeps until poll_timeout(); here timers fire on the next line.
        if let Some(at) = hub.poll_timeout()
            && at <= now + Duration::from_millis(1)
        {
            hub.handle_timeout(now);
        }
    }
}

fn next_event(events: &mut herald_core::BrokerEvents) -> Option<herald_core::BrokerEvent> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match events.as_mut().poll_next(&mut cx) {
        std::task::Poll::Ready(e) => e,
        std::task::Poll::Pending => None,
    }
}
