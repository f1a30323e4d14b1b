#!/usr/bin/env node
// switchyard test peer: the legacy Node.js Jaeger client (`jaeger-client` 3.19, OpenTracing API)
// sends ONE known trace to 127.0.0.1:PORT, either
//   udp   UDPSender: Agent.emitBatch as one Thrift BINARY datagram (first bytes 0x80 0x01; what
//         the Node client sends to a jaeger-agent's 6832), or
//   http  HTTPSender: POST http://127.0.0.1:PORT/api/traces, body = a bare Thrift BINARY Batch
//         struct (no message envelope), what it sends to a collector's 14268.
//         Wire facts (HTTPSender source + observed): header `Content-Type: application/x-thrift`
//         and `Connection: keep-alive`; it calls req.write(body) then req.end() without setting a
//         Content-Length, so Node sends `Transfer-Encoding: chunked` (the whole batch in one chunk
//         followed by the zero-length terminator). A response status >= 400 is an error.
//
// Usage (after scripts/install-peers.sh):
//   node tests/peers/node/jaeger_send.js udp|http PORT [--service NAME] [--trace-id-128] [--timeout SECS]
//
// Prints exactly one JSON line on stdout describing what was sent:
//   {"service": ..., "spans": [{"name", "trace_id" (32 hex, zero-padded when 64-bit),
//    "span_id" (16 hex), "parent_span_id" (16 hex or ""), "kind", "references"}]}
// Exit status: 0 = sent (udp: datagram handed to the kernel; http: 2xx/3xx response),
// 1 = the client reported a failure (reason on stderr) or timeout, 2 = bad usage.
//
// The trace (same shape for every legacy peer):
//   "GET /checkout"  span.kind=server, http.method="GET", http.status_code=200, cart.items=3,
//                    cart.total=12.5, cart.gift=true, log {event: "cache-miss", sku: "sku-42"}
//                    NB: the Node client encodes EVERY JS number as a DOUBLE tag (200.0, 3.0).
//   "charge-card"    child of the root, span.kind=client, error=true, log {event: "retry", attempt: 2}
//   "send-receipt"   FOLLOWS_FROM the root (OpenTracing reference; the client also makes it the
//                    parent, so parentSpanId = root), span.kind=producer
// Process tags: deployment.environment="test" plus what the client adds on its own
// (jaeger.version "Node-3.19.0", hostname, ip).
//
// Only 127.0.0.1:PORT is contacted: const sampler (no sampling-strategy polling), no throttler.
// initTracer() (not initTracerFromEnv) ignores JAEGER_* variables.
'use strict';

const path = require('path');
const { initTracer, opentracing } = require(path.join(__dirname, 'node_modules', 'jaeger-client'));

const PROG = 'jaeger_send.js';

function die(msg, code = 1) {
  process.stderr.write(`${PROG}: ${msg}\n`);
  process.exit(code);
}

function usage(msg) {
  die(`${msg}\nusage: node ${PROG} udp|http PORT [--service NAME] [--trace-id-128] [--timeout SECS]`, 2);
}

function parseArgs(argv) {
  const pos = [];
  const opts = { traceId128: false, timeout: 10, service: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--trace-id-128') opts.traceId128 = true;
    else if (a === '--service') opts.service = argv[++i];
    else if (a === '--timeout') opts.timeout = Number(argv[++i]);
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else pos.push(a);
  }
  if (pos.length !== 2) usage('need MODE and PORT');
  const [mode, portStr] = pos;
  if (mode !== 'udp' && mode !== 'http') usage(`bad mode ${mode}`);
  const port = Number(portStr);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) usage(`bad port ${portStr}`);
  if (!(opts.timeout > 0)) usage('bad --timeout');
  if (opts.service === undefined || opts.service === '') usage('bad --service');
  return { mode, port, ...opts, service: opts.service || `node-jaeger-${mode}` };
}

const hex = (buf, width) => Buffer.from(buf).toString('hex').padStart(width, '0');

function summary(span, kind, references = []) {
  const ctx = span.context();
  return {
    name: span.operationName,
    trace_id: hex(ctx.traceId, 32),
    span_id: hex(ctx.spanId, 16),
    parent_span_id: ctx.parentId && ctx.parentId.length ? hex(ctx.parentId, 16) : '',
    kind,
    references: references.map(([type, c]) => ({ type, trace_id: hex(c.traceId, 32), span_id: hex(c.spanId, 16) })),
  };
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const errors = [];
  const logger = {
    info() {},
    error(msg) {
      errors.push(String(msg));
    },
  };

  const reporter =
    args.mode === 'udp'
      ? { agentHost: '127.0.0.1', agentPort: args.port, agentSocketType: 'udp4' }
      : { collectorEndpoint: `http://127.0.0.1:${args.port}/api/traces`, timeoutMs: Math.ceil(args.timeout * 1000) };
  // one batch: the periodic flush never fires before close()
  reporter.flushIntervalMs = 3600 * 1000;

  const tracer = initTracer(
    { serviceName: args.service, sampler: { type: 'const', param: 1 }, reporter },
    { logger, tags: { 'deployment.environment': 'test' }, traceId128bit: args.traceId128 },
  );

  const T = opentracing.Tags;
  const root = tracer.startSpan('GET /checkout', {
    tags: {
      [T.SPAN_KIND]: T.SPAN_KIND_RPC_SERVER,
      'http.method': 'GET',
      'http.status_code': 200,
      'cart.items': 3,
      'cart.total': 12.5,
      'cart.gift': true,
    },
  });
  root.log({ event: 'cache-miss', sku: 'sku-42' });

  const charge = tracer.startSpan('charge-card', {
    childOf: root.context(),
    tags: { [T.SPAN_KIND]: T.SPAN_KIND_RPC_CLIENT, [T.ERROR]: true },
  });
  charge.log({ event: 'retry', attempt: 2 });
  charge.finish();

  const receipt = tracer.startSpan('send-receipt', {
    references: [opentracing.followsFrom(root.context())],
    tags: { [T.SPAN_KIND]: T.SPAN_KIND_MESSAGING_PRODUCER },
  });
  receipt.finish();
  root.finish();

  const timer = setTimeout(() => die(`tracer.close() did not complete within ${args.timeout} s`), args.timeout * 1000);
  // close() flushes the sender (one datagram / one POST), waits for the send callback or the
  // HTTP response, then closes the socket / agent.
  tracer.close(() => {
    clearTimeout(timer);
    if (errors.length) die(`jaeger-client failed to report: ${errors.join('; ')}`);
    const out = {
      service: args.service,
      spans: [
        summary(root, 'server'),
        summary(charge, 'client'),
        summary(receipt, 'producer', [['follows_from', root.context()]]),
      ],
    };
    process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));
  });
}

main();
