#!/usr/bin/env node
// Drive an OFFICIAL server-side JS SDK, unchanged, against a tracking server.
//
//   node tests/sdk/node_send.mjs <segment|rudder> <server_url> <write_key> <run_id>
//
// Sends identify, track, page, group and alias (in that order) with ids derived from
// run_id, flushes, and waits until the SDK itself reports delivery of every message.
// stdout: exactly one JSON line, logs and SDK chatter go to stderr:
//   {"sdk", "ok", "userId": "user-<run_id>", "anonymousId": "anon-<run_id>",
//    "groupId": "group-<run_id>", "previousId": "anon-<run_id>",
//    "messageIds": {"identify": id, "track": id, "page": id, "group": id, "alias": id},
//    "http_statuses": [...], "errors": [...], "elapsed_ms": n}
// messageIds are the ids the SDK generated (segment: "node-next-<ms>-<uuid>", rudder: a
// UUID). http_statuses: segment lists every attempt; rudder only the final status of
// each batch (its axios-retry swallows failed attempts).
// Exit codes: 0 delivered; 1 delivery error reported by the SDK; 2 usage; 3 timeout.
// Env: SDK_TIMEOUT_MS (default 20000) bounds the whole run.
// Both SDKs post to <server_url>/v1/batch; rudder gzips the body (its default).
import { createRequire } from 'node:module';
import zlib from 'node:zlib';

const require = createRequire(import.meta.url);

// SDK loggers write to console.log/info; keep stdout for our single JSON line.
for (const m of ['log', 'info', 'debug', 'warn']) console[m] = console.error.bind(console);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const [sdk, serverUrl, writeKey, runId] = process.argv.slice(2);
if (!['segment', 'rudder'].includes(sdk) || !serverUrl || !writeKey || !runId) {
  console.error('usage: node node_send.mjs <segment|rudder> <server_url> <write_key> <run_id>');
  process.exit(2);
}
const timeoutMs = Number(process.env.SDK_TIMEOUT_MS || 20000);
const started = Date.now();

// Identical logical payloads for both SDKs; every id contains run_id.
const ids = {
  userId: `user-${runId}`,
  anonymousId: `anon-${runId}`,
  groupId: `group-${runId}`,
  previousId: `anon-${runId}`,
};
const calls = [
  ['identify', {
    userId: ids.userId, anonymousId: ids.anonymousId,
    traits: { email: `${runId}@example.com`, name: 'Ada Lovelace', firstName: 'Ada', plan: 'pro', logins: 3 },
  }],
  ['track', {
    userId: ids.userId, anonymousId: ids.anonymousId, event: 'Order Completed',
    properties: {
      order_id: `order-${runId}`, revenue: 42.5, currency: 'USD',
      products: [{ product_id: 'p1', sku: 'SKU-1', name: 'Widget', price: 21.25, quantity: 2 }],
    },
  }],
  ['page', {
    userId: ids.userId, anonymousId: ids.anonymousId, name: 'Checkout', category: 'Shop',
    properties: { path: '/checkout', url: 'https://shop.example.com/checkout', title: 'Checkout' },
  }],
  ['group', {
    userId: ids.userId, anonymousId: ids.anonymousId, groupId: ids.groupId,
    traits: { name: 'Acme Inc', plan: 'enterprise', employees: 42 },
  }],
  ['alias', { userId: ids.userId, previousId: ids.previousId }],
];

const errors = [];
const httpStatuses = [];
const messageIds = {};

function finish(code, extra = {}) {
  out({
    sdk, ok: code === 0, ...ids, messageIds, http_statuses: httpStatuses,
    errors: errors.map(String), elapsed_ms: Date.now() - started, ...extra,
  });
  process.exit(code);
}

const timer = setTimeout(() => {
  errors.push(`timeout after ${timeoutMs} ms waiting for the ${sdk} SDK to report delivery`);
  finish(3);
}, timeoutMs);

// Resolve when the SDK invokes the per-message callback; collect errors.
function deliver(type, send) {
  return new Promise((resolve) => {
    send((err, info) => {
      if (err) errors.push(`${type}: ${err && err.message ? err.message : err}`);
      resolve(info);
    });
  });
}

async function runSegment() {
  const { Analytics } = require('@segment/analytics-node');
  const analytics = new Analytics({
    writeKey, host: serverUrl, flushAt: 20, flushInterval: 200, maxRetries: 3, httpRequestTimeout: 5000,
  });
  analytics.on('http_response', (r) => httpStatuses.push(r.status));
  analytics.on('error', (e) => console.error('segment error event:', e.code, e.reason?.message || e.reason));
  const pending = calls.map(([type, msg]) => deliver(type, (cb) => analytics[type](msg, cb)).then((ctx) => {
    if (ctx && ctx.event) messageIds[type] = ctx.event.messageId;
  }));
  await Promise.all(pending);
  await analytics.closeAndFlush({ timeout: timeoutMs });
}

async function runRudder() {
  const Analytics = require('@rudderstack/rudder-sdk-node');
  const analytics = new Analytics(writeKey, {
    dataPlaneUrl: serverUrl, // gzip stays at its default (true)
    flushAt: 20, flushInterval: 200, retryCount: 3, logLevel: 'error', timeout: 5000,
    errorHandler: () => {}, // failures reach the per-message callbacks; without a handler flush() throws
  });
  // The rudder node SDK exposes no response hook: watch its axios instance (each response
  // once, as axios-retry sends a retried response through the interceptor chain again).
  const seen = new WeakSet();
  const note = (res) => { if (res && !seen.has(res)) { seen.add(res); httpStatuses.push(res.status); } };
  analytics.axiosInstance.interceptors.response.use(
    (res) => { note(res); return res; },
    (err) => { note(err && err.response); return Promise.reject(err); },
  );
  const pending = calls.map(([type, msg]) => deliver(type, (cb) => analytics[type](msg, cb)).then((data) => {
    // The callback receives the batch payload that was posted (a gzip Buffer when gzip is on).
    let payload = data;
    if (Buffer.isBuffer(payload)) payload = JSON.parse(zlib.gunzipSync(payload).toString('utf8'));
    for (const m of (payload && payload.batch) || []) {
      if (m.type === type && (m.userId === msg.userId)) messageIds[type] = m.messageId;
    }
  }));
  analytics.flush();
  await Promise.all(pending);
}

try {
  await (sdk === 'segment' ? runSegment() : runRudder());
} catch (e) {
  errors.push(e && e.stack ? e.stack : e);
}
clearTimeout(timer);
if (!errors.length && !httpStatuses.some((s) => s >= 200 && s < 300)) errors.push('no 2xx response observed');
const non2xxFinal = httpStatuses.length && !(httpStatuses[httpStatuses.length - 1] >= 200 && httpStatuses[httpStatuses.length - 1] < 300);
if (!errors.length && non2xxFinal) errors.push(`last HTTP status was ${httpStatuses[httpStatuses.length - 1]}`);
if (!errors.length && Object.keys(messageIds).length !== calls.length) errors.push(`missing messageIds: got ${Object.keys(messageIds)}`);
finish(errors.length ? 1 : 0);
