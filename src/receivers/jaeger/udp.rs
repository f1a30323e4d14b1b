//! The agent's UDP endpoints: one datagram is one `emitBatch` call (Thrift compact on 6831,
//! binary on 6832). A reader takes datagrams into a bounded queue; workers decode, translate and
//! submit them. UDP has no way to refuse, so whatever cannot be taken (too large, queue full,
//! undecodable, refused downstream) is counted and logged at a limited rate.

use super::UdpConfig;
use super::thrift::{Protocol, decode_agent_message};
use crate::pipeline::Intake;
use crate::receivers::bad_input::BadInput;
use bytes::Bytes;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

pub async fn serve(
    cfg: UdpConfig,
    protocol: Protocol,
    socket: UdpSocket,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
) {
    let transport = match protocol {
        Protocol::Compact => "udp_thrift_compact",
        Protocol::Binary => "udp_thrift_binary",
    };
    let bad = Arc::new(BadInput::new(intake.clone(), transport));
    let (tx, rx) = mpsc::channel::<Bytes>(cfg.queue_size);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..cfg.workers {
        let (rx, intake, bad) = (rx.clone(), intake.clone(), bad.clone());
        workers.spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(datagram) = next else { break };
                handle(protocol, &datagram, &intake, &bad, transport).await;
            }
        });
    }
    // One byte more than the limit, so that an over-size datagram shows as such, not truncated.
    let mut buf = vec![0u8; cfg.max_packet_size + 1];
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = shutdown.cancelled() => break,
        };
        let n = match received {
            Ok((n, _from)) => n,
            Err(e) => {
                // Errors such as ICMP port unreachable reports are about earlier sends: go on.
                tracing::debug!(error = %e, "UDP receive failed");
                continue;
            }
        };
        if n > cfg.max_packet_size {
            bad.report(
                "too_large",
                &format!("dropped a datagram over max_packet_size ({} bytes)", cfg.max_packet_size),
            );
            continue;
        }
        if tx.try_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
            bad.report("queue_full", &format!("dropped a datagram: the queue of {} is full", cfg.queue_size));
        }
    }
    // Datagrams already taken are still decoded and submitted.
    drop(tx);
    while workers.join_next().await.is_some() {}
}

async fn handle(protocol: Protocol, datagram: &[u8], intake: &Intake, bad: &BadInput, transport: &str) {
    let batch = match decode_agent_message(protocol, datagram) {
        Ok(b) => b,
        Err(e) => {
            bad.report("malformed", &format!("dropped an undecodable {protocol:?} Thrift datagram: {e}"));
            return;
        }
    };
    if batch.spans.is_empty() {
        return;
    }
    if let Err(refusal) = intake.submit(transport, super::to_batch(batch)).await {
        // Counted in otelcol_receiver_refused_spans by the intake.
        bad.warn("refused", &format!("dropped spans: {}", refusal.message));
    }
}
