// Sign Twilio webhook requests with Twilio's own helper library, so that the
// tests check our validator against an independent implementation.
//
// Reads one JSON object per line on stdin: {"token", "url", "params"} and
// writes one line per input: the X-Twilio-Signature the library expects,
// and whether twilio.validateRequest accepts it (a self-check).
'use strict';
const readline = require('readline');
const twilio = require('twilio');

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  const { token, url, params } = JSON.parse(line);
  const sig = twilio.getExpectedTwilioSignature(token, url, params);
  const ok = twilio.validateRequest(token, sig, url, params);
  process.stdout.write(JSON.stringify({ signature: sig, valid: ok }) + '\n');
});
