#!/usr/bin/env node
// switchyard test peer: sends traces, metrics or logs with the real OpenTelemetry
// JS SDK + OTLP/HTTP JSON exporters (POST application/json to ENDPOINT/v1/<signal>)
// and writes a JSON summary of exactly what the SDK handed to the exporter, so the
// Rust integration tests can compare it with what came out of switchyard.
// Exit status: 0 = every export succeeded, 1 = an export failed, 2 = bad usage.
//
// Usage (after scripts/install-peers.sh):
//   node tests/peers/node/send.js --signal traces|metrics|logs \
//       --endpoint http://127.0.0.1:PORT --out SUMMARY.json [--count N] [--timeout SECS]
'use strict';

// Make the peer deterministic: ignore OTEL_* settings inherited from the test
// environment (the SDK reads them when objects are constructed).
for (const key of Object.keys(process.env)) {
  if (key.startsWith('OTEL_')) delete process.env[key];
}

const fs = require('fs');
const crypto = require('crypto');
const api = require('@opentelemetry/api');
const { SeverityNumber } = require('@opentelemetry/api-logs');
const { ExportResultCode } = require('@opentelemetry/core');
const { resourceFromAttributes, defaultResource } = require('@opentelemetry/resources');

const SERVICE_NAME = 'node-sender';
const SCOPE = 'switchyard.peer.node';
const SIGNAL_PATHS = { traces: '/v1/traces', metrics: '/v1/metrics', logs: '/v1/logs' };

function die(msg, code = 1) {
  process.stderr.write(`send.js: ${msg}\n`);
  process.exit(code);
}

function parseArgs(argv) {
  const args = { count: 3, timeout: 10 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) die(`${a} needs a value`, 2);
      return argv[++i];
    };
    switch (a) {
      case '--signal': args.signal = next(); break;
      case '--endpoint': args.endpoint = next(); break;
      case '--out': args.out = next(); break;
      case '--count': args.count = Number(next()); break;
      case '--timeout': args.timeout = Number(next()); break;
      case '-h': case '--help':
        process.stdout.write('usage: send.js --signal traces|metrics|logs --endpoint http://127.0.0.1:PORT ' +
          '--out SUMMARY.json [--count N] [--timeout SECS]\n');
        process.exit(0);
        break;
      default: die(`unknown argument ${a}`, 2);
    }
  }
  if (!SIGNAL_PATHS[args.signal]) die('--signal must be traces, metrics or logs', 2);
  if (!args.endpoint || !/^https?:\/\//.test(args.endpoint)) die('--endpoint must be a URL like http://127.0.0.1:PORT', 2);
  if (!args.out) die('--out is required', 2);
  if (!Number.isInteger(args.count) || args.count < 1) die('--count must be an integer >= 1', 2);
  if (!(args.timeout > 0)) die('--timeout must be > 0', 2);
  return args;
}

// ---------------------------------------------------------------- summary helpers

// HrTime [sec, nanos] -> BigInt nanoseconds (exact; Number would lose precision).
function hrToNs(hr) {
  if (!hr) return 0n;
  return BigInt(hr[0]) * 1000000000n + BigInt(hr[1]);
}

function plain(v) {
  if (v === undefined || v === null) return null;
  if (typeof v === 'bigint') return v;
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (typeof v === 'object') {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = plain(x);
    return o;
  }
  return v;
}

const attrs = (a) => plain(a || {});

// Marks a double so that an integral value is still written with a decimal point
// (5 -> 5.0), as OTLP double fields are; JSON.stringify alone would write 5.
function dbl(n) {
  return typeof n === 'number' && Number.isInteger(n) ? `__double__${n}` : n;
}

// JSON with BigInt written as bare integers and dbl() values as n.0.
function toJson(obj) {
  const text = JSON.stringify(obj, (_k, v) => (typeof v === 'bigint' ? `__bigint__${v.toString()}` : v), 2);
  return text.replace(/"__bigint__(-?\d+)"/g, '$1').replace(/"__double__(-?\d+)"/g, '$1.0') + '\n';
}

// ---------------------------------------------------------------- export checking

const failures = [];
let exportCalls = 0;

function resultName(code) {
  return code === ExportResultCode.SUCCESS ? 'SUCCESS' : code === ExportResultCode.FAILED ? 'FAILED' : String(code);
}

// Wraps an OTLP exporter; every export result is recorded; everything else is delegated.
function checked(kind, inner, onExport) {
  const wrapper = {
    export(items, resultCallback) {
      if (onExport) onExport(items);
      inner.export(items, (result) => {
        exportCalls += 1;
        if (!result || result.code !== ExportResultCode.SUCCESS) {
          const err = result && result.error ? `: ${result.error.message || result.error}` : '';
          failures.push(`${kind} export returned ${resultName(result && result.code)}${err}`);
        }
        resultCallback(result);
      });
    },
    shutdown: () => inner.shutdown(),
    forceFlush: () => (inner.forceFlush ? inner.forceFlush() : Promise.resolve()),
  };
  if (inner.selectAggregationTemporality) {
    wrapper.selectAggregationTemporality = (t) => inner.selectAggregationTemporality(t);
  }
  if (inner.selectAggregation) wrapper.selectAggregation = (t) => inner.selectAggregation(t);
  return wrapper;
}

// Awaits an SDK promise; a rejection (e.g. BatchSpanProcessor.forceFlush rejects
// when the export fails) is recorded as a failure so the summary is still written.
async function settle(what, promise) {
  try {
    await promise;
  } catch (e) {
    failures.push(`${what} failed: ${e && e.message ? e.message : e}`);
  }
}

// ---------------------------------------------------------------- traces

async function sendTraces(args, resource) {
  const { BasicTracerProvider, BatchSpanProcessor, SimpleSpanProcessor, InMemorySpanExporter } =
    require('@opentelemetry/sdk-trace-base');
  const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');

  const otlp = new OTLPTraceExporter({
    url: args.endpoint.replace(/\/+$/, '') + SIGNAL_PATHS.traces,
    timeoutMillis: args.timeout * 1000,
  });
  const memory = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource,
    spanProcessors: [
      new SimpleSpanProcessor(memory),
      // one batch, exported on forceFlush -> one OTLP request with every span
      new BatchSpanProcessor(checked('span', otlp), {
        scheduledDelayMillis: 3600000,
        maxExportBatchSize: Math.max(512, args.count + 1),
        maxQueueSize: Math.max(2048, args.count + 1),
        exportTimeoutMillis: args.timeout * 1000 + 5000,
      }),
    ],
  });
  const tracer = provider.getTracer(SCOPE, '1.0.0');

  // No context manager is registered, so parents are passed explicitly.
  const n = args.count;
  const root = tracer.startSpan('root', { kind: api.SpanKind.SERVER, attributes: { s: 'root' } });
  const rootCtx = api.trace.setSpan(api.ROOT_CONTEXT, root);
  for (let k = 0; k < n - 1; k++) {
    const child = tracer.startSpan(`child-${k}`, { kind: api.SpanKind.CLIENT }, rootCtx);
    child.setAttributes({ s: `child-${k}`, i: 42 + k, f: 1.5, b: true, arr: ['a', 'b'] });
    if (k === 0) child.addEvent('ev', { k: 'v' });
    if (k === n - 2) child.setStatus({ code: api.SpanStatusCode.ERROR, message: 'boom' }); // the last child fails
    child.end();
  }
  root.setAttributes({ i: 42 + n, f: 1.5, b: true, arr: ['a', 'b'] });
  root.end();

  await settle('forceFlush', provider.forceFlush());
  const finished = memory.getFinishedSpans(); // read before shutdown: shutdown() clears the in-memory exporter
  await settle('shutdown', provider.shutdown());

  const spans = finished.map((s) => ({
    trace_id: s.spanContext().traceId,
    span_id: s.spanContext().spanId,
    parent_span_id: s.parentSpanContext ? s.parentSpanContext.spanId : '',
    name: s.name,
    kind: s.kind + 1, // API enum is 0-based, OTLP is 1-based
    start_time_unix_nano: hrToNs(s.startTime),
    end_time_unix_nano: hrToNs(s.endTime),
    attributes: attrs(s.attributes),
    events: s.events.map((e) => ({ name: e.name, time_unix_nano: hrToNs(e.time), attributes: attrs(e.attributes) })),
    status: { code: s.status.code, message: s.status.message || '' },
    scope: s.instrumentationScope ? s.instrumentationScope.name : '',
  }));
  return { spans };
}

// ---------------------------------------------------------------- metrics

async function sendMetrics(args, resource) {
  const { MeterProvider, PeriodicExportingMetricReader, DataPointType } = require('@opentelemetry/sdk-metrics');
  const { OTLPMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-http');

  const exported = [];
  const otlp = new OTLPMetricExporter({
    url: args.endpoint.replace(/\/+$/, '') + SIGNAL_PATHS.metrics,
    timeoutMillis: args.timeout * 1000,
  });
  // Long interval (the timer is unref'd): the only export happens on shutdown,
  // which collects + exports once (forceFlush *and* shutdown would export twice).
  const reader = new PeriodicExportingMetricReader({
    exporter: checked('metric', otlp, (rm) => exported.push(rm)),
    exportIntervalMillis: 3600000,
    exportTimeoutMillis: args.timeout * 1000 + 5000,
  });
  const provider = new MeterProvider({ resource, readers: [reader] });
  const meter = provider.getMeter(SCOPE, '1.0.0');

  const n = args.count;
  // INT value type so the sums go out as asInt (JS instruments default to DOUBLE)
  const counter = meter.createCounter('node.requests', {
    unit: '1', description: 'requests handled by node-sender', valueType: api.ValueType.INT,
  });
  for (let k = 0; k < n; k++) counter.add(k + 1, { route: '/a', ok: true });
  counter.add(10, { route: '/b', ok: false });

  const hist = meter.createHistogram('node.latency', { unit: 'ms', description: 'request latency' });
  for (const v of [1.0, 7.5, 30.0, 250.0]) hist.record(v, { route: '/a' });

  const updown = meter.createUpDownCounter('node.inflight', {
    unit: '{request}', description: 'in-flight requests', valueType: api.ValueType.INT,
  });
  updown.add(5, { pool: 'p1' });
  updown.add(-2, { pool: 'p1' });

  const gauge = meter.createObservableGauge('node.gauge', { unit: 'Cel', description: 'temperature' });
  gauge.addCallback((result) => {
    result.observe(21.5, { room: 'lab' });
    result.observe(-3, { room: 'fridge' });
  });

  await settle('shutdown', provider.shutdown());

  const metrics = [];
  for (const rm of exported) {
    for (const sm of rm.scopeMetrics) {
      for (const m of sm.metrics) {
        const d = m.descriptor;
        const entry = { name: d.name, unit: d.unit || '', description: d.description || '' };
        if (m.dataPointType === DataPointType.SUM) {
          entry.type = 'sum';
          entry.is_monotonic = !!m.isMonotonic;
          entry.aggregation_temporality = m.aggregationTemporality + 1; // SDK DELTA=0, OTLP DELTA=1
        } else if (m.dataPointType === DataPointType.GAUGE) {
          entry.type = 'gauge';
        } else if (m.dataPointType === DataPointType.HISTOGRAM) {
          entry.type = 'histogram';
          entry.aggregation_temporality = m.aggregationTemporality + 1;
        } else {
          entry.type = `datapointtype-${m.dataPointType}`;
        }
        entry.points = m.dataPoints.map((p) => {
          const pt = {
            attributes: attrs(p.attributes),
            start_time_unix_nano: hrToNs(p.startTime),
            time_unix_nano: hrToNs(p.endTime),
          };
          if (m.dataPointType === DataPointType.HISTOGRAM) {
            pt.count = p.value.count;
            pt.sum = dbl(p.value.sum);
            pt.bucket_counts = p.value.buckets.counts.slice();
            pt.explicit_bounds = p.value.buckets.boundaries.map(dbl);
            pt.min = dbl(p.value.min);
            pt.max = dbl(p.value.max);
          } else {
            // INT instruments go out as asInt, DOUBLE ones as asDouble
            pt.value = d.valueType === api.ValueType.INT ? p.value : dbl(p.value);
          }
          return pt;
        });
        entry.scope = sm.scope ? sm.scope.name : '';
        metrics.push(entry);
      }
    }
  }
  return { metrics };
}

// ---------------------------------------------------------------- logs

async function sendLogs(args, resource) {
  const { LoggerProvider, BatchLogRecordProcessor, SimpleLogRecordProcessor, InMemoryLogRecordExporter } =
    require('@opentelemetry/sdk-logs');
  const { OTLPLogExporter } = require('@opentelemetry/exporter-logs-otlp-http');
  const { BasicTracerProvider } = require('@opentelemetry/sdk-trace-base');

  const otlp = new OTLPLogExporter({
    url: args.endpoint.replace(/\/+$/, '') + SIGNAL_PATHS.logs,
    timeoutMillis: args.timeout * 1000,
  });
  const memory = new InMemoryLogRecordExporter();
  const provider = new LoggerProvider({
    resource,
    processors: [
      new SimpleLogRecordProcessor({ exporter: memory }),
      new BatchLogRecordProcessor({
        exporter: checked('log', otlp),
        scheduledDelayMillis: 3600000,
        maxExportBatchSize: Math.max(512, args.count + 1),
        maxQueueSize: Math.max(2048, args.count + 1),
        exportTimeoutMillis: args.timeout * 1000 + 5000,
      }),
    ],
  });
  const logger = provider.getLogger(SCOPE, '1.0.0');
  // spans of this tracer go nowhere; it only provides an active span context
  const tracer = new BasicTracerProvider({ resource }).getTracer(SCOPE);

  const n = args.count;
  for (let k = 0; k < n; k++) {
    const record = {
      timestamp: Date.now(),
      body: `log-${k}`,
      severityNumber: SeverityNumber.WARN,
      severityText: 'WARN',
      attributes: { s: `v${k}`, i: 42 + k, f: 1.5, b: k % 2 === 0, arr: ['a', 'b'] },
    };
    if (k === n - 1) {
      // last record is emitted inside a span -> carries trace_id/span_id
      const span = tracer.startSpan('log-parent');
      logger.emit({ ...record, context: api.trace.setSpan(api.ROOT_CONTEXT, span) });
      span.end();
    } else {
      logger.emit(record);
    }
  }

  await settle('forceFlush', provider.forceFlush());
  const finished = memory.getFinishedLogRecords(); // read before shutdown: shutdown() clears the in-memory exporter
  await settle('shutdown', provider.shutdown());

  const logs = finished.map((r) => ({
    body: plain(r.body),
    severity_number: r.severityNumber || 0,
    severity_text: r.severityText || '',
    attributes: attrs(r.attributes),
    trace_id: r.spanContext ? r.spanContext.traceId : '',
    span_id: r.spanContext ? r.spanContext.spanId : '',
    time_unix_nano: hrToNs(r.hrTime),
    observed_time_unix_nano: hrToNs(r.hrTimeObserved),
    scope: r.instrumentationScope ? r.instrumentationScope.name : '',
  }));
  return { logs };
}

// ---------------------------------------------------------------- main

async function main() {
  const args = parseArgs(process.argv.slice(2));
  // Hard stop so a wedged exporter can never hang a test.
  setTimeout(() => die('timed out waiting for the SDK to finish'), (args.timeout * 3 + 10) * 1000).unref();
  const resource = defaultResource().merge(
    resourceFromAttributes({ 'service.name': SERVICE_NAME, 'test.run': crypto.randomUUID() }),
  );

  let body;
  if (args.signal === 'traces') body = await sendTraces(args, resource);
  else if (args.signal === 'metrics') body = await sendMetrics(args, resource);
  else body = await sendLogs(args, resource);

  const summary = { resource: attrs(resource.attributes), ...body, exports: exportCalls };
  fs.writeFileSync(args.out, toJson(summary));

  if (exportCalls === 0) die(`no ${args.signal} export completed`);
  if (failures.length > 0) die(`${args.signal} export to ${args.endpoint} failed: ${failures.join('; ')}`);
  process.exit(0);
}

main().catch((e) => die(`unexpected error: ${e && e.stack ? e.stack : e}`));
