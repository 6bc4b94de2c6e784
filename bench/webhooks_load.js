// Open-loop load generator for bench/webhooks: POSTs status callbacks signed
// by Twilio's helper library (twilio-node) to the webhook listener at a fixed
// rate over keep-alive connections, and prints the acknowledgement latency.
//
//   node bench/webhooks_load.js CONFIG.json
// CONFIG: {port, public_url, token, rate, seconds, connections, status, sids}
// Latency is measured from when a request was due (not when it went out), so
// a stalled listener cannot hide behind a stalled generator.
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const twilio = require(path.join(__dirname, '..', 'test', 'webhooks', 'node_modules', 'twilio'));

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const total = Math.round(cfg.rate * cfg.seconds);
const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.connections });
const url = cfg.public_url.replace(/\/+$/, '') + '/twilio/status';

// everything signed before the clock starts
const requests = [];
for (let i = 0; i < total; i++) {
  const sid = cfg.sids[i % cfg.sids.length];
  const params = {
    MessageSid: sid, SmsSid: sid, MessageStatus: cfg.status, SmsStatus: cfg.status,
    AccountSid: 'AC' + 'a'.repeat(32), From: '+15005550100', To: '+14155550100',
    ApiVersion: '2010-04-01',
  };
  const body = new URLSearchParams(params).toString();
  requests.push({
    body,
    headers: {
      'Content-Type': 'application/x-www-form-urlencoded',
      'Content-Length': Buffer.byteLength(body),
      'X-Twilio-Signature': twilio.getExpectedTwilioSignature(cfg.token, url, params),
      'I-Twilio-Idempotency-Token': `bench-${cfg.status}-${i}-${Date.now()}`,
    },
  });
}

const latencies = [];
const statuses = {};
let done = 0;
let next = 0;
const start = process.hrtime.bigint();
const interval = 1e9 / cfg.rate;

function send(i) {
  const due = start + BigInt(Math.round(i * interval));
  const req = http.request({
    host: '127.0.0.1', port: cfg.port, path: '/twilio/status', method: 'POST',
    agent, headers: requests[i].headers,
  }, (res) => {
    res.resume();
    res.on('end', () => {
      latencies.push(Number(process.hrtime.bigint() - due) / 1e6);
      statuses[res.statusCode] = (statuses[res.statusCode] || 0) + 1;
      if (++done === total) finish();
    });
  });
  req.on('error', (e) => {
    statuses[e.code || 'error'] = (statuses[e.code || 'error'] || 0) + 1;
    if (++done === total) finish();
  });
  req.end(requests[i].body);
}

function tick() {
  const elapsed = Number(process.hrtime.bigint() - start);
  while (next < total && next * interval <= elapsed) send(next++);
  if (next < total) setTimeout(tick, 1);
}

function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))] : null;
}

function finish() {
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  const s = latencies.slice().sort((a, b) => a - b);
  const r = (x) => (x === null ? null : Math.round(x * 100) / 100);
  console.log(JSON.stringify({
    requests: total, statuses, seconds: r(secs), rate: r(total / secs),
    p50_ms: r(pct(s, 50)), p90_ms: r(pct(s, 90)), p99_ms: r(pct(s, 99)), max_ms: r(s[s.length - 1]),
  }));
  agent.destroy();
}

tick();
