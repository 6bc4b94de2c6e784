#!/usr/bin/env python3
"""Fake Twilio Messages API for end-to-end tests (python3 stdlib only).

Usage:
    twilio_double.py --port PORT [--host 127.0.0.1] [--account-sid AC...]
        [--auth-token TOKEN] [--api-key-sid SK... --api-key-secret SECRET]
        [--port-file FILE] [--verbose]

--port 0 picks a free port; --port-file receives the bound port once the
server listens. Defaults: account ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa,
token test-token. SIGTERM/SIGINT stop the server.

Twilio API (HTTP Basic auth: account sid + token, or API key sid + secret;
paths below /2010-04-01/Accounts/{AccountSid}):
    POST /2010-04-01/Accounts/{AccountSid}/Messages.json   201 Message JSON
    GET  /2010-04-01/Accounts/{AccountSid}/Messages.json   accepted messages,
         newest first; filters To, From (From or MessagingServiceSid),
         DateSent, DateSent>, DateSent< (UTC dates, inclusive, on date_sent:
         a message still queued has none and never matches), PageSize
         (default 50), Page and PageToken (next_page_uri carries both, as
         Twilio's does; a PageToken page starts after the message it names,
         so newer messages do not shift it)
    POST .../Calls.json          201 Call JSON (status queued), validated against
         the CreateCall schema (To, From, one of Url/Twiml/ApplicationSid)
    GET  .../Calls.json          calls newest first; To, From, Status, PageSize,
         Page, PageToken
    POST .../Calls/{CallSid}.json  Status=canceled (while queued or ringing,
         else 400/21220) or completed
Fault rules match.path may also be calls_create, calls_list, calls_update;
GET /_control/calls lists the calls, POST /_control/call_status
{"sid", "status"} sets one's status (ringing, in-progress, ...).
Every API answer carries Twilio-Concurrent-Requests: the requests of the
account in flight at the double when the request arrived, itself included.
Form fields are validated against twilio_oai.json (extracted from
Twilio's OpenAPI spec). Structural errors (unknown field, bad type, pattern
or format, missing To / sender / content, wrong Content-Type) answer 400 and
are added to spec_violations; a Body over 1600 chars (21617) and more than
10 MediaUrl (21623) answer 400 without being violations. Errors use
Twilio's shape {"code", "message", "more_info", "status"}.

Control API (JSON, no auth):
    GET  /_control/health              {"ok": true}
    GET  /_control/requests?since=SEQ  {"requests": [record with seq > SEQ]}
         record: seq, conn, time, mono, method, path, query, kind, auth_user,
         headers, form [[name, value]...], status, code, sid, dropped, fault,
         duration_ms (status is null while in flight and for drops)
    GET  /_control/stats     {"total", "created", "by_status": {"201": n},
                              "max_in_flight", "in_flight", "spec_violations"}
    GET  /_control/messages  {"messages": [...]} oldest first, with "_seq"
    GET  /_control/config    current settings and rules
    POST /_control/reset     clear requests, messages, settings and rules
                             (credentials are kept)
    POST /_control/config    any of: delay_ms, account_concurrency,
         sender_mps {sender or "*": mps}, sender_burst, sender_queue_limit,
         queued_for_s, retry_after, seed, auth_token, rules (replace),
         add_rules (append)
    POST /_control/seed      {"to", "from", "body", "count"}: store count
         messages as if sent from elsewhere (a busy recipient); {"sids": [...]}

queued_for_s: a created message stays in its initial status (queued, or
accepted with a Messaging Service) with date_sent null for that long, as in
Twilio's own queue, then is listed as sent.  sender_queue_limit: senders over
their sender_mps are queued, as Twilio queues them, instead of answered 429;
once a sender's queue holds that many messages, 400/21611 (queue full).

Order for a create request: auth (401/20003), account (404/20404),
validation (400), account_concurrency (more requests in flight -> 429/20429
at once), fault rule, sender rate (token bucket per sender = From, else
MessagingServiceSid; sender_mps {sender: mps, "*": default per sender},
burst sender_burst; over -> 429/20429, or with sender_queue_limit a queue
that answers 400/21611 when full), then delay_ms + the rule's delay_ms,
then the rule's error/drop or 201. retry_after sets Retry-After on the
enforcement 429s.

Fault rule: {"match": {"to": str|[str], "from": str|[str] (From or
MessagingServiceSid), "path": "messages_create"|"messages_list" or a list
(default messages_create)}, "count": N, "probability": p (seeded RNG),
"until": epoch secs, "duration_s": s, "action": {"status": 503,
"code": 20503, "message": str, "retry_after": "1", "delay_ms": 200,
"drop": true, "process": true, "early": true}}. Action keys may also sit at the top level.
The first live matching rule applies; count is spent only when it applies.
process=true stores the message as accepted, then errors or drops.  early=true
stores it when the request arrives and answers 201 after the delay.
"""

import argparse
import base64
import binascii
import email.utils
import hmac
import json
import math
import os
import random
import re
import secrets
import signal
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SPEC = json.loads(Path(__file__).with_name("twilio_oai.json").read_text())
MESSAGES_RE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
CALLS_RE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Calls\.json$")
CALL_RE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Calls/(CA[0-9a-fA-F]{32})\.json$")
CALLS = SPEC["calls"]
PATHS = ("messages_create", "messages_list", "calls_create", "calls_list", "calls_update")
E164, CHANNEL = r"\+[1-9]\d{1,14}", r"[a-z][a-z0-9-]*:\S+"
ALNUM = r"(?=[A-Za-z0-9 ]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9 ]{0,9}[A-Za-z0-9]"
TO_RE = re.compile(f"{E164}|{CHANNEL}")
SENDER_RE = re.compile(rf"{E164}|{CHANNEL}|\d{{3,8}}|{ALNUM}")
INT_RE = re.compile(r"-?\d+")
MG_RE = re.compile(SPEC["create"]["properties"]["MessagingServiceSid"]["pattern"])
GSM7 = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXT = "^{}\\[~]|€\f"
MAX_BODY, MAX_MEDIA = 1600, 10
MESSAGES = {
    20003: "Authenticate", 20004: "Method not allowed",
    20404: "The requested resource was not found",
    20429: "Too Many Requests", 20500: "Internal Server Error",
    20503: "Service Unavailable", 21200: "Invalid parameter",
    21211: "Invalid 'To' Phone Number", 21212: "Invalid 'From' Phone Number",
    21602: "Message body is required",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required",
    21611: "This 'From' number has exceeded the maximum number of queued messages",
    21617: "The concatenated message body exceeds the 1600 character limit",
    21619: "A text message body, media URL or content SID must be specified",
    21623: "Number of media files exceeds allowed limit",
}
DEFAULT_CODES = {400: 21200, 401: 20003, 404: 20404, 405: 20004,
                 429: 20429, 500: 20500, 503: 20503}
PARAM_CODES = {"To": 21211, "From": 21212, "FallbackFrom": 21212}
SETTING_TYPES = {"delay_ms": (int, float), "account_concurrency": (int, type(None)),
                 "sender_mps": dict, "sender_burst": (int, float), "seed": (int, str),
                 "retry_after": (str, int, type(None)), "auth_token": str,
                 "rules": list, "add_rules": list, "queued_for_s": (int, float),
                 "sender_queue_limit": (int, type(None))}
DEFAULT_SETTINGS = {"delay_ms": 0, "account_concurrency": None, "sender_mps": {},
                    "sender_burst": 1, "retry_after": None, "seed": 0, "queued_for_s": 0,
                    "sender_queue_limit": None}
RULE_KEYS = {"match", "count", "probability", "until", "duration_s", "action"}
ACTION_KEYS = {"status", "code", "message", "retry_after", "delay_ms", "drop", "process",
               "early"}
MATCH_KEYS = {"to", "from", "path"}


class ApiError(Exception):
    """A Twilio-style error answer; violation=True also records it as a spec violation."""

    def __init__(self, status, code=None, message=None, violation=False, retry_after=None):
        code = code or DEFAULT_CODES.get(status, 20500)
        super().__init__(message or MESSAGES.get(code, f"Error {code}"))
        self.status, self.code, self.violation = status, code, violation
        self.retry_after = retry_after

    def payload(self):
        return {"code": self.code, "message": str(self), "status": self.status,
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}"}

    def headers(self):
        headers = [("Retry-After", str(self.retry_after))] if self.retry_after is not None else []
        if self.status == 401:
            headers.append(("WWW-Authenticate", 'Basic realm="Twilio API"'))
        return headers


class Drop(Exception):
    """Close the connection without answering."""


def violation(code, message):
    return ApiError(400, code, message, violation=True)


def rfc2822(when):
    return email.utils.format_datetime(when.replace(microsecond=0))


def parse_when(value):
    """ISO 8601 date/date-time or RFC 2822 -> aware UTC datetime, else None."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return when.replace(tzinfo=when.tzinfo or timezone.utc).astimezone(timezone.utc)


def format_ok(name, fmt, value):
    if fmt == "phone-number":
        return bool((TO_RE if name == "To" else SENDER_RE).fullmatch(value))
    if fmt == "uri":
        url = urllib.parse.urlsplit(value)
        return url.scheme in ("http", "https") and bool(url.netloc)
    if fmt == "date-time":
        return parse_when(value) is not None
    return True


def check_value(name, value, schema):
    """Return a problem description for value against an extracted schema, or None."""
    kind = schema.get("type", "string")
    if kind == "integer":
        if not INT_RE.fullmatch(value):
            return "must be an integer"
        if not schema.get("minimum", -math.inf) <= int(value) <= schema.get("maximum", math.inf):
            return "is out of range"
    elif kind == "number":
        try:
            float(value)
        except ValueError:
            return "must be a number"
    elif kind == "boolean" and value.lower() not in ("true", "false"):
        return "must be true or false"
    if "enum" in schema and value not in schema["enum"]:
        return f"must be one of {schema['enum']}"
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return f"must match {schema['pattern']}"
    if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", math.inf):
        return "has a bad length"
    if not schema.get("ignoreFormat") and not format_ok(name, schema.get("format"), value):
        return f"is not a valid {schema['format']}"
    return None


def validate_create(pairs):
    """Raise ApiError unless pairs form a valid CreateMessageRequest; return {name: [values]}."""
    props, form = SPEC["create"]["properties"], {}
    for name, value in pairs:
        schema = props.get(name)
        if schema is None:
            raise violation(21200, f"Unknown parameter '{name}'")
        if name in form and schema["type"] != "array":
            raise violation(21200, f"Parameter '{name}' given more than once")
        form.setdefault(name, []).append(value)
        problem = check_value(name, value, schema.get("items", schema))
        if problem:
            raise violation(PARAM_CODES.get(name, 21200), f"Parameter '{name}' {problem}")
    if not all(first(form, name) for name in SPEC["create"]["required"]):
        raise violation(21211, "A 'To' phone number is required")
    senders, contents = SPEC["create"]["conditional"]
    if not any(first(form, name) for name in senders):
        raise violation(21603, None)
    if not any(first(form, name) for name in contents):
        raise violation(21619 if first(form, "MessagingServiceSid") else 21602, None)
    if len(first(form, "Body") or "") > MAX_BODY:
        raise ApiError(400, 21617)
    if len(form.get("MediaUrl", [])) > MAX_MEDIA:
        raise ApiError(400, 21623)
    return form


def validate_list(query):
    params = SPEC["list"]["parameters"]
    for name, value in query.items():
        if name == "From" and MG_RE.fullmatch(value):
            continue
        if name not in params:
            raise violation(21200, f"Unknown query parameter '{name}'")
        problem = check_value(name, value, params[name])
        if problem:
            raise violation(21200, f"Query parameter '{name}' {problem}")


def first(form, name):
    return form.get(name, [None])[0]


def num_segments(body):
    if all(c in GSM7 or c in GSM7_EXT for c in body):
        units, single, multi = len(body) + sum(c in GSM7_EXT for c in body), 160, 153
    else:
        units, single, multi = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / multi)


def as_list(value):
    return [value] if isinstance(value, str) else list(value)


def parse_rule(raw, now):
    """Normalise a fault rule from the control API; raise ValueError when malformed."""
    if not isinstance(raw, dict):
        raise ValueError("a rule must be an object")
    unknown = raw.keys() - RULE_KEYS - ACTION_KEYS
    action = dict(raw.get("action") or {}, **{k: raw[k] for k in raw.keys() & ACTION_KEYS})
    match = {k: as_list(v) for k, v in (raw.get("match") or {}).items()}
    unknown |= (action.keys() - ACTION_KEYS) | (match.keys() - MATCH_KEYS)
    if unknown:
        raise ValueError(f"unknown rule keys: {sorted(unknown)}")
    if not action.keys() & {"status", "drop", "delay_ms"}:
        raise ValueError("a rule action needs status, drop or delay_ms")
    if "status" in action:
        action.setdefault("code", DEFAULT_CODES.get(action["status"], 20500))
    if raw.get("count") is not None and not (isinstance(raw["count"], int) and raw["count"] > 0):
        raise ValueError("count must be a positive integer")
    match.setdefault("path", ["messages_create"])
    if not set(match["path"]) <= set(PATHS):
        raise ValueError(f"match.path must be one of {PATHS}")
    if not 0 <= raw.get("probability", 1) <= 1:
        raise ValueError("probability must be between 0 and 1")
    ends = [raw["until"]] if raw.get("until") is not None else []
    if raw.get("duration_s") is not None:
        ends.append(now + raw["duration_s"])
    return {"match": match, "count": raw.get("count"), "probability": raw.get("probability"),
            "until": min(ends, default=None), "action": action}


def rule_matches(match, kind, to, sender):
    return (kind in match["path"]
            and ("to" not in match or to in match["to"])
            and ("from" not in match or bool(set(sender) & set(match["from"]))))


def seed_args(body):
    args = json.loads(body or b"{}")
    if not isinstance(args, dict) or set(args) != {"to", "from", "body", "count"}:
        raise ValueError("seed takes to, from, body and count")
    return {"to": args["to"], "sender": args["from"], "body": args["body"], "count": args["count"]}


class State:
    """Everything the double remembers; all access goes through self.lock."""

    def __init__(self, credentials):
        self.lock = threading.Lock()
        self.credentials = credentials
        self.in_flight = self.conns = 0
        self.reset()

    def reset(self):
        with self.lock:
            self.requests, self.messages, self.violations = [], [], []
            self.calls = []
            self.rules, self.buckets = [], {}
            self.settings = dict(DEFAULT_SETTINGS, sender_mps={})
            self.rng = random.Random(self.settings["seed"])
            self.max_in_flight = self.in_flight

    def configure(self, cfg):
        if not isinstance(cfg, dict):
            raise ValueError("config must be a JSON object")
        unknown = cfg.keys() - SETTING_TYPES.keys()
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        for key, value in cfg.items():
            if not isinstance(value, SETTING_TYPES[key]):
                raise ValueError(f"bad type for config key {key}")
        now = time.time()
        new_rules = [parse_rule(r, now) for r in cfg.get("rules", []) + cfg.get("add_rules", [])]
        with self.lock:
            if "rules" in cfg:
                self.rules = []
            self.rules += new_rules
            if "auth_token" in cfg:
                self.credentials["auth_token"] = cfg["auth_token"]
            for key in cfg.keys() & DEFAULT_SETTINGS.keys():
                self.settings[key] = cfg[key]
            if "seed" in cfg:
                self.rng = random.Random(cfg["seed"])
            if cfg.keys() & {"sender_mps", "sender_burst"}:
                self.buckets = {}

    def next_conn(self):
        with self.lock:
            self.conns += 1
            return self.conns

    def begin(self, record):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            record["seq"] = len(self.requests) + 1
            record["concurrent"] = self.in_flight
            self.requests.append(record)

    def finish(self):
        with self.lock:
            self.in_flight -= 1

    def add_violation(self, record, error):
        with self.lock:
            self.violations.append({"seq": record["seq"], "method": record["method"],
                                    "path": record["path"], "code": error.code,
                                    "message": str(error)})

    def over_concurrency(self):
        with self.lock:
            limit = self.settings["account_concurrency"]
            return limit is not None and self.in_flight > limit

    def take_fault(self, kind, to, sender):
        """Return the action of the first live matching rule (spending its count), or None."""
        now = time.time()
        with self.lock:
            self.rules = [r for r in self.rules if r["until"] is None or r["until"] > now]
            for rule in self.rules:
                if not rule_matches(rule["match"], kind, to, sender):
                    continue
                if rule["probability"] is not None and self.rng.random() >= rule["probability"]:
                    continue
                if rule["count"] is not None:
                    rule["count"] -= 1
                    if rule["count"] <= 0:
                        self.rules.remove(rule)
                return rule["action"]
        return None

    def take_token(self, sender):
        """Token bucket per sender; False when the sender is over its configured rate.
        With sender_queue_limit the sender's queue takes the message instead, and
        a full queue raises 400/21611."""
        with self.lock:
            rates, burst = self.settings["sender_mps"], self.settings["sender_burst"]
            mps = rates.get(sender, rates.get("*"))
            if not mps:
                return True
            now = time.monotonic()
            limit = self.settings["sender_queue_limit"]
            if limit is not None:
                drained_at = max(self.buckets.get(sender, now), now)
                if math.ceil((drained_at - now) * mps - 1e-6) >= limit:
                    raise ApiError(400, 21611)
                self.buckets[sender] = drained_at + 1 / mps
                return True
            tokens, last = self.buckets.get(sender, (burst, now))
            tokens = min(burst, tokens + (now - last) * mps)
            allowed = tokens >= 1
            self.buckets[sender] = (tokens - 1 if allowed else tokens, now)
            return allowed

    def setting(self, key):
        with self.lock:
            return self.settings[key]

    def accept(self, form, seq):
        """Create a Message resource from a validated form and store it."""
        now = datetime.now(timezone.utc)
        media, body = form.get("MediaUrl", []), first(form, "Body") or ""
        if not body and first(form, "ContentSid"):
            # Twilio lists a template's rendered text
            body = f"Rendered {first(form, 'ContentSid')} {first(form, 'ContentVariables') or ''}".strip()
        service = first(form, "MessagingServiceSid")
        sid = ("MM" if media else "SM") + secrets.token_hex(16)
        account = self.credentials["account_sid"]
        uri = f"/2010-04-01/Accounts/{account}/Messages/{sid}.json"
        status = ("scheduled" if first(form, "ScheduleType") else
                  "accepted" if service else "queued")
        message = {
            "account_sid": account, "api_version": "2010-04-01", "body": body,
            "date_created": rfc2822(now), "date_sent": rfc2822(now),
            "date_updated": rfc2822(now), "direction": "outbound-api",
            "error_code": None, "error_message": None, "from": first(form, "From"),
            "messaging_service_sid": service, "num_media": str(len(media)),
            "num_segments": str(num_segments(body)), "price": None, "price_unit": "USD",
            "sid": sid, "status": status, "to": first(form, "To"), "uri": uri,
            "subresource_uris": {"media": uri[:-len(".json")] + "/Media.json"},
        }
        with self.lock:
            self.messages.append((now, seq, message))
            queued_for = self.settings["queued_for_s"]
        return self.listed(now, message, queued_for, now)

    @staticmethod
    def listed(created, message, queued_for, now):
        """The message as Twilio shows it at `now`: while in Twilio's queue
        (queued_for_s) in its initial status without date_sent, then sent."""
        if not queued_for:
            return message
        if (now - created).total_seconds() < queued_for:
            return dict(message, date_sent=None)
        return dict(message, status="sent",
                    date_sent=rfc2822(created + timedelta(seconds=queued_for)))

    def accept_call(self, form, seq):
        """Create a Call resource (queued) from a validated form and store it."""
        now = datetime.now(timezone.utc)
        sid = "CA" + secrets.token_hex(16)
        account = self.credentials["account_sid"]
        call = {
            "account_sid": account, "api_version": "2010-04-01", "sid": sid,
            "to": first(form, "To"), "from": first(form, "From"), "status": "queued",
            "date_created": rfc2822(now), "date_updated": rfc2822(now), "start_time": None,
            "end_time": None, "duration": None, "direction": "outbound-api",
            "parent_call_sid": None, "price": None, "price_unit": "USD", "queue_time": "0",
            "uri": f"/2010-04-01/Accounts/{account}/Calls/{sid}.json",
        }
        with self.lock:
            self.calls.append((now, seq, call))
        return dict(call)

    def update_call(self, sid, status):
        """Cancel (while queued or ringing) or complete a stored call; None if unknown."""
        with self.lock:
            for _, _, call in self.calls:
                if call["sid"] == sid:
                    if status == "canceled" and call["status"] not in ("queued", "ringing"):
                        raise ApiError(400, 21220, "Call is not in a state that can be canceled")
                    call["status"] = status
                    call["date_updated"] = rfc2822(datetime.now(timezone.utc))
                    return dict(call)
        return None

    def set_call_status(self, sid, status):
        with self.lock:
            for _, _, call in self.calls:
                if call["sid"] == sid:
                    call["status"] = status
                    return {"ok": True}
        raise ValueError(f"no call {sid}")

    def find_calls(self, to=None, sender=None, status=None):
        with self.lock:
            stored = [dict(c) for _, _, c in self.calls]
        return [c for c in reversed(stored)
                if (to is None or c["to"] == to) and (sender is None or c["from"] == sender)
                and (status is None or c["status"] == status)]

    def seed(self, to, sender, body, count):
        """Messages sent from elsewhere to `to` (a busy recipient); their sids."""
        service = sender if MG_RE.fullmatch(sender) else None
        form = {"To": [to], "Body": [body]}
        form["MessagingServiceSid" if service else "From"] = [sender]
        return [self.accept(form, 0)["sid"] for _ in range(int(count))]

    def find_messages(self, to=None, sender=None, on=None, after=None, before=None):
        with self.lock:
            stored = list(self.messages)
            queued_for = self.settings["queued_for_s"]
        now = datetime.now(timezone.utc)
        found = []
        for when, _, msg in reversed(stored):
            msg = self.listed(when, msg, queued_for, now)
            sent = parse_when(msg["date_sent"]) if msg["date_sent"] else None
            day = sent.date() if sent else None
            dated = on is not None or after is not None or before is not None
            if ((to is None or msg["to"] == to)
                    and (sender is None or sender in (msg["from"], msg["messaging_service_sid"]))
                    and (not dated or day is not None)
                    and (on is None or day == on) and (after is None or day >= after)
                    and (before is None or day <= before)):
                found.append(msg)
        return found

    def snapshot(self, what, since=0):
        with self.lock:
            if what == "requests":
                return {"requests": [dict(r) for r in self.requests if r["seq"] > since]}
            if what == "messages":
                return {"messages": [dict(m, _seq=seq) for _, seq, m in self.messages]}
            if what == "calls":
                return {"calls": [dict(c, _seq=seq) for _, seq, c in self.calls]}
            if what == "config":
                return json.loads(json.dumps({"settings": self.settings, "rules": self.rules}))
            by_status = {}
            for r in self.requests:
                if r["status"] is not None:
                    by_status[str(r["status"])] = by_status.get(str(r["status"]), 0) + 1
            return {"total": len(self.requests), "created": by_status.get("201", 0),
                    "by_status": by_status, "max_in_flight": self.max_in_flight,
                    "in_flight": self.in_flight, "spec_violations": list(self.violations)}


def basic_credentials(header):
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user, password


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TwilioDouble/1.0"
    # headers and body go out in two writes: without TCP_NODELAY the body
    # waits for the client's delayed ACK (40 ms) on a kept-alive connection
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        self.conn_id = self.server.state.next_conn()

    def log_message(self, fmt, *args):
        if self.server.verbose:
            super().log_message(fmt, *args)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        try:
            body = self.read_body()
            if url.path.startswith("/_control/"):
                self.control(url, body)
            else:
                self.api(url, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send_json(self, status, payload, headers=()):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    # -- control API -------------------------------------------------------

    def control(self, url, body):
        state = self.server.state
        query = dict(urllib.parse.parse_qsl(url.query))
        routes = {
            ("GET", "/_control/health"): lambda: {"ok": True},
            ("GET", "/_control/requests"):
                lambda: state.snapshot("requests", int(query.get("since", 0))),
            ("GET", "/_control/stats"): lambda: state.snapshot("stats"),
            ("GET", "/_control/messages"): lambda: state.snapshot("messages"),
            ("GET", "/_control/calls"): lambda: state.snapshot("calls"),
            ("POST", "/_control/call_status"):
                lambda: state.set_call_status(**json.loads(body or b"{}")),
            ("GET", "/_control/config"): lambda: state.snapshot("config"),
            ("POST", "/_control/reset"): lambda: state.reset() or {"ok": True},
            ("POST", "/_control/config"):
                lambda: state.configure(json.loads(body or b"{}")) or {"ok": True},
            ("POST", "/_control/seed"): lambda: {"sids": state.seed(**seed_args(body))},
        }
        route = routes.get((self.command, url.path))
        if route is None:
            return self.send_json(404, {"error": f"no control endpoint {self.command} {url.path}"})
        try:
            self.send_json(200, route())
        except (ValueError, TypeError) as exc:
            self.send_json(400, {"error": str(exc)})

    # -- Twilio API --------------------------------------------------------

    def api(self, url, body):
        state, start = self.server.state, time.monotonic()
        creds = basic_credentials(self.headers.get("Authorization"))
        record = {"conn": self.conn_id, "time": time.time(), "mono": start,
                  "method": self.command, "path": url.path, "query": url.query,
                  "kind": "unknown", "auth_user": creds and creds[0],
                  "headers": {k: v for k, v in self.headers.items()
                              if k.lower() != "authorization"},
                  "form": [], "status": None, "code": None, "sid": None,
                  "dropped": False, "fault": None, "duration_ms": None}
        state.begin(record)
        try:
            status, payload, headers = self.outcome(url, body, creds, record)
            record.update(status=status, duration_ms=round((time.monotonic() - start) * 1000, 3))
            if status is None:
                self.close_connection = True
            else:
                headers = list(headers) + [("Twilio-Concurrent-Requests", str(record["concurrent"]))]
                self.send_json(status, payload, headers)
        finally:
            state.finish()

    def outcome(self, url, body, creds, record):
        """Handle an API request: (status, payload, headers), status None to drop."""
        try:
            status, payload = self.route_api(url, body, creds, record)
            record["sid"] = payload.get("sid")
            return status, payload, []
        except ApiError as exc:
            record["code"] = exc.code
            if exc.violation:
                self.server.state.add_violation(record, exc)
            return exc.status, exc.payload(), exc.headers()
        except Drop:
            record["dropped"] = True
            return None, None, None

    def route_api(self, url, body, creds, record):
        for regex, prefix in ((MESSAGES_RE, "messages"), (CALLS_RE, "calls"), (CALL_RE, "call")):
            match = regex.match(url.path)
            if match:
                break
        else:
            raise ApiError(404, 20404, f"The requested resource {url.path} was not found")
        kind = {("messages", "POST"): "messages_create", ("messages", "GET"): "messages_list",
                ("calls", "POST"): "calls_create", ("calls", "GET"): "calls_list",
                ("call", "POST"): "calls_update"}.get((prefix, self.command))
        if kind is None:
            raise ApiError(405, 20004)
        record["kind"] = kind
        self.authenticate(creds)
        if match.group(1) != self.server.state.credentials["account_sid"]:
            raise ApiError(404, 20404, f"The requested resource {url.path} was not found")
        if kind == "messages_create":
            return 201, self.create(body, record)
        if kind == "calls_create":
            return 201, self.create_call(body, record)
        if kind == "calls_list":
            return 200, self.list_calls(url, record)
        if kind == "calls_update":
            return 200, self.update_call(match.group(2), body, record)
        return 200, self.list_messages(url, record)

    def read_form(self, body, record, content_type):
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != content_type:
            raise violation(21200, f"Content-Type must be {content_type}")
        try:
            pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                           errors="strict")
        except UnicodeDecodeError:
            raise violation(21200, "Request body is not valid UTF-8") from None
        record["form"] = [list(p) for p in pairs]
        return pairs

    def create_call(self, body, record):
        state = self.server.state
        pairs = self.read_form(body, record, CALLS["create"]["content_type"])
        props, form = CALLS["create"]["properties"], {}
        for name, value in pairs:
            schema = props.get(name)
            if schema is None:
                raise violation(21200, f"Unknown parameter '{name}'")
            if name in form and schema["type"] != "array":
                raise violation(21200, f"Parameter '{name}' given more than once")
            form.setdefault(name, []).append(value)
            problem = check_value(name, value, schema.get("items", schema))
            if problem:
                raise violation(PARAM_CODES.get(name, 21200), f"Parameter '{name}' {problem}")
        for name in CALLS["create"]["required"]:
            if not first(form, name):
                raise violation(21201 if name == "To" else 21213, f"'{name}' is required")
        if not any(first(form, name) for name in CALLS["create"]["conditional"][0]):
            raise violation(21205, "Url, Twiml or ApplicationSid is required")
        if state.over_concurrency():
            raise ApiError(429, 20429, retry_after=state.setting("retry_after"))
        record["fault"] = state.take_fault("calls_create", first(form, "To"), [first(form, "From")])
        action = record["fault"] or {}
        time.sleep((action.get("delay_ms", 0) + state.setting("delay_ms")) / 1000)
        if action.get("drop") or "status" in action:
            if action.get("process"):
                record["sid"] = state.accept_call(form, record["seq"])["sid"]
            self.fail(action)
        return state.accept_call(form, record["seq"])

    def update_call(self, sid, body, record):
        state = self.server.state
        pairs = self.read_form(body, record, CALLS["update"]["content_type"])
        form = dict(pairs)
        for name in form:
            if name not in CALLS["update"]["properties"]:
                raise violation(21200, f"Unknown parameter '{name}'")
        if form.get("Status") not in ("canceled", "completed"):
            raise violation(21200, "Status must be canceled or completed")
        record["fault"] = state.take_fault("calls_update", None, [])
        self.fail(record["fault"] or {})
        call = state.update_call(sid, form["Status"])
        if call is None:
            raise ApiError(404, 20404, f"The requested resource {self.path} was not found")
        record["sid"] = sid
        return call

    def list_calls(self, url, record):
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        params = CALLS["list"]["parameters"]
        for name, value in query.items():
            if name not in params:
                raise violation(21200, f"Unknown query parameter '{name}'")
            problem = check_value(name, value, params[name])
            if problem:
                raise violation(21200, f"Query parameter '{name}' {problem}")
        record["fault"] = self.server.state.take_fault(
            "calls_list", query.get("To"), [query.get("From")])
        action = record["fault"] or {}
        time.sleep(action.get("delay_ms", 0) / 1000)
        self.fail(action)
        found = self.server.state.find_calls(query.get("To"), query.get("From"), query.get("Status"))
        return self.page(url, query, found, "calls")

    def authenticate(self, creds):
        known = self.server.state.credentials
        pairs = [(known["account_sid"], known["auth_token"]),
                 (known["api_key_sid"], known["api_key_secret"])]
        if creds is None or not any(
                sid and secret is not None
                and hmac.compare_digest(creds[0].encode(), sid.encode())
                and hmac.compare_digest(creds[1].encode(), secret.encode())
                for sid, secret in pairs):
            raise ApiError(401, 20003)

    def create(self, body, record):
        state = self.server.state
        pairs = self.read_form(body, record, SPEC["create"]["content_type"])
        form = validate_create(pairs)
        if state.over_concurrency():
            raise ApiError(429, 20429, retry_after=state.setting("retry_after"))
        senders = [v for v in (first(form, "From"), first(form, "MessagingServiceSid")) if v]
        record["fault"] = state.take_fault("messages_create", first(form, "To"), senders)
        action = record["fault"] or {}
        failing = action.get("drop") or "status" in action
        if not failing and not state.take_token(senders[0]):
            raise ApiError(429, 20429, retry_after=state.setting("retry_after"))
        if action.get("early"):
            # stored (and listed) at once, answered after the delay
            message = state.accept(form, record["seq"])
            record["sid"] = message["sid"]
            time.sleep((action.get("delay_ms", 0) + state.setting("delay_ms")) / 1000)
            return message
        time.sleep((action.get("delay_ms", 0) + state.setting("delay_ms")) / 1000)
        if failing:
            if action.get("process"):
                record["sid"] = state.accept(form, record["seq"])["sid"]
            self.fail(action)
        return state.accept(form, record["seq"])

    def fail(self, action):
        """Raise the drop or error an action asks for, if any."""
        if action.get("drop"):
            raise Drop()
        if "status" in action:
            raise ApiError(action["status"], action["code"], action.get("message"),
                           retry_after=action.get("retry_after"))

    def list_messages(self, url, record):
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        validate_list(query)
        record["fault"] = self.server.state.take_fault(
            "messages_list", query.get("To"), [query.get("From")])
        action = record["fault"] or {}
        time.sleep(action.get("delay_ms", 0) / 1000)
        self.fail(action)
        day = {k: parse_when(query[k]).date() if k in query else None
               for k in ("DateSent", "DateSent>", "DateSent<")}
        found = self.server.state.find_messages(query.get("To"), query.get("From"),
                                                day["DateSent"], day["DateSent>"],
                                                day["DateSent<"])
        return self.page(url, query, found, "messages")

    @staticmethod
    def page(url, query, found, key):
        """One page of a list answer, newest first, with Twilio's paging fields."""
        size, page = int(query.get("PageSize", 50)), int(query.get("Page", 0))
        start = page * size
        token = query.get("PageToken")
        if token:
            after = token[2:]
            at = next((i for i, m in enumerate(found) if m["sid"] == after), None)
            if not token.startswith("PA") or at is None:
                raise ApiError(400, 21200, f"Invalid PageToken {token}")
            start = at + 1
        filters = {k: v for k, v in query.items() if k not in ("PageSize", "Page", "PageToken")}

        def page_uri(n, **extra):
            return url.path + "?" + urllib.parse.urlencode(dict(filters, PageSize=size, Page=n,
                                                                **extra))

        shown = found[start:start + size]
        more = len(found) > start + size
        return {key: shown, "page": page, "page_size": size,
                "first_page_uri": page_uri(0), "uri": url.path + "?" + url.query,
                "next_page_uri": page_uri(page + 1, PageToken="PA" + shown[-1]["sid"]) if more else None,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "start": start, "end": start + max(len(shown) - 1, 0)}


class DoubleServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, address, state, verbose):
        self.state, self.verbose = state, verbose
        super().__init__(address, Handler)

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def write_port_file(path, port):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Fake Twilio Messages API for tests.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--account-sid", default="AC" + "a" * 32)
    parser.add_argument("--auth-token", default="test-token")
    parser.add_argument("--api-key-sid")
    parser.add_argument("--api-key-secret")
    parser.add_argument("--port-file")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not re.search(SPEC["account_sid"]["pattern"], args.account_sid):
        parser.error("--account-sid must match " + SPEC["account_sid"]["pattern"])
    if (args.api_key_sid is None) != (args.api_key_secret is None):
        parser.error("--api-key-sid and --api-key-secret go together")
    return args


def main(argv=None):
    args = parse_args(argv)
    state = State({"account_sid": args.account_sid, "auth_token": args.auth_token,
                   "api_key_sid": args.api_key_sid, "api_key_secret": args.api_key_secret})
    server = DoubleServer((args.host, args.port), state, args.verbose)
    if args.port_file:
        write_port_file(args.port_file, server.server_address[1])
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
