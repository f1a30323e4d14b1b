//! gRPC pieces shared by the OTLP receiver and exporter: the Export method paths, a codec that
//! passes message bytes through untouched (so valid requests travel without re-encoding), and
//! the OTLP retry rules for gRPC status codes.

use crate::pipeline::Signal;
use crate::rpc_status::{RetryInfo, RpcStatus};
use bytes::{Buf, Bytes};
use prost::Message;
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

/// The `Export` method of `signal`'s OTLP service.
pub fn export_path(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    }
}

/// Whether a client may send the same request again after `status`, and after how long at
/// least: OTLP's table (PROTOCOLS.md §1.5). RESOURCE_EXHAUSTED is retryable only with RetryInfo.
pub fn retry_verdict(status: &Status) -> (bool, Option<Duration>) {
    let delay = retry_info(status);
    let retryable = match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::ResourceExhausted => delay.is_some(),
        _ => false,
    };
    (retryable, delay)
}

/// The delay of a `google.rpc.RetryInfo` in the status details, if any.
fn retry_info(status: &Status) -> Option<Duration> {
    let details = RpcStatus::decode(status.details()).ok()?;
    let any = details.details.iter().find(|d| d.type_url.ends_with("google.rpc.RetryInfo"))?;
    let d = RetryInfo::decode(&any.value[..]).ok()?.retry_delay?;
    Some(Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
}

/// A codec that hands the message bytes through untouched in both directions.
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}
