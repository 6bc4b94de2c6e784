#!/usr/bin/env python3
"""End-to-end: the HTTP request is exactly the one CONTRACT.md describes.

Sender -> From or MessagingServiceSid, MediaUrl repeated in order,
StatusCallback, params keys as given, ValidityPeriod from valid_for (unless
params has one), Attempt, Content-Type, and bodies that survive form encoding
byte for byte (emoji, CJK, newlines, & = % +, 1600 characters).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap, form, form_list, start  # noqa: E402

MG = "MG" + "0123456789abcdef" * 2
SENDERS = {"mg": MG, "num": "+15005550001", "sc": "12345", "alpha": "ACME",
           "wa": "whatsapp:+15005550002"}
CONTENT_SID = "HX" + "b5b62575e6e4ff6129ad7c8efe1f983e"

t = Tap()
pg, double = start()
for name, sender in SENDERS.items():
    pg.add_pool(name, sender, mps=1000, burst=100)

# (label, enqueue arguments, expected form fields besides To/sender/Attempt;
#  None = must be absent, "ANY" = any value)
CASES = []


def case(label, expect=None, **kw):
    n = len(CASES)
    kw.setdefault("to", f"+1415555{1000 + n:04d}")
    kw.setdefault("pool", "num")
    kw.setdefault("body", f"message {n}: {label}")
    CASES.append((label, kw, expect or {}))


case("Messaging Service sender", pool="mg")
case("+E164 sender", pool="num")
case("short code sender", pool="sc")
case("alphanumeric sender", pool="alpha")
MEDIA = ["https://example.com/a.jpg", "https://example.com/b.png?x=1&y=2",
         "https://example.com/c%20d.gif"]
case("three media URLs", media_urls=MEDIA, expect={"MediaUrl": MEDIA})
case("media only, body NULL", body=None, media_urls=MEDIA[:1],
     expect={"MediaUrl": MEDIA[:1], "Body": "EMPTY_OR_ABSENT"})
case("status_callback", status_callback="https://example.com/status?id=7&x=y",
     expect={"StatusCallback": "https://example.com/status?id=7&x=y"})
case("params ValidityPeriod and SmartEncoded",
     params={"ValidityPeriod": 600, "SmartEncoded": True},
     expect={"ValidityPeriod": "600", "SmartEncoded": "true"})
case("params number and false", params={"MaxPrice": 0.75, "ShortenUrls": False},
     expect={"MaxPrice": "0.75", "ShortenUrls": "false"})
case("valid_for 1 hour", valid_for="1 hour", expect={"ValidityPeriod": ("range", 3500, 3600)})
case("valid_for 20 hours (capped)", valid_for="20 hours",
     expect={"ValidityPeriod": ("range", 36000, 36000)})
case("valid_for with params ValidityPeriod", valid_for="1 hour",
     params={"ValidityPeriod": 120}, expect={"ValidityPeriod": "120"})
case("WhatsApp template (ContentSid, body NULL)", pool="wa", to="whatsapp:+14155551900",
     body=None, params={"ContentSid": CONTENT_SID, "ContentVariables": '{"1": "Ann & Bob"}'},
     expect={"ContentSid": CONTENT_SID, "ContentVariables": '{"1": "Ann & Bob"}',
             "Body": "EMPTY_OR_ABSENT"})
case("WhatsApp text", pool="wa", to="whatsapp:+14155551901", body="hello on WhatsApp")
BODIES = {
    "emoji": "Hello \U0001F44B\U0001F3FD world \U0001F389 \u2014 \u2713",
    "CJK": "\u4f60\u597d\uff0c\u4e16\u754c\u3002\u3053\u3093\u306b\u3061\u306f\u3002"
           "\uc548\ub155\ud558\uc138\uc694",
    "newlines": "line1\nline2\r\nline3\n",
    "ampersand": "&", "equals": "=", "percent": "%", "plus": "+",
    "a+b=c&d%20e": "a+b=c&d%20e",
    "mixed punctuation": "100% + 50% = 150%? a&b; c=d; e+f #hash ?q=1",
    "spaces kept": "  leading and trailing spaces  ",
    "quotes, tab, backslash": "tab\there 'single' \"double\" back\\slash",
    "escapes that must stay": "%2B%20%% %zz +%",
    "GSM extension characters": "\u20ac [brackets] {braces} ~^|\\",
    "1600 GSM characters": ("abcdefghi+" * 160),
    "1600 UCS-2 characters": ("\u5b57\u20ac" * 800),
}
for label, body in BODIES.items():
    case(f"body: {label}", body=body, expect={"Body": body})

ids = pg.enqueue_batch([kw for _, kw, _ in CASES])
done = pg.wait_terminal(ids, 30)
t.ok(done, f"all {len(ids)} rows reached a final status", pg.diagnose)
t.eq(pg.statuses(ids), {"sent": len(ids)}, "all rows are sent", pg.diagnose)
t.eq(double.stats()["spec_violations"], [], "no spec violations")

reqs = double.requests()
by_to = {}
for r in reqs:
    by_to.setdefault(form(r).get("To"), []).append(r)
t.eq(len(reqs), len(CASES), "one request per message")


def check(label, kw, expect):
    got = by_to.get(kw["to"], [])
    if len(got) != 1:
        t.ok(False, f"{label}: exactly one request", f"{len(got)} requests for {kw['to']}")
        return
    rec = got[0]
    f = form(rec)
    problems = []
    sender = SENDERS[kw["pool"]]
    if sender.startswith("MG"):
        if f.get("MessagingServiceSid") != sender or "From" in f:
            problems.append(f"want MessagingServiceSid={sender} and no From")
    elif f.get("From") != sender or "MessagingServiceSid" in f:
        problems.append(f"want From={sender} and no MessagingServiceSid")
    if f.get("To") != kw["to"]:
        problems.append(f"To {f.get('To')!r}")
    if f.get("Attempt") != "1":
        problems.append(f"Attempt {f.get('Attempt')!r}")
    ctype = {k.lower(): v for k, v in rec["headers"].items()}.get("content-type", "")
    if ctype.split(";")[0].strip() != "application/x-www-form-urlencoded":
        problems.append(f"Content-Type {ctype!r}")
    expected = dict(expect)
    if "Body" not in expected:
        expected["Body"] = kw["body"]
    allowed = {"To", "From", "MessagingServiceSid", "Attempt"} | set(expected)
    for name, want in expected.items():
        values = form_list(rec, name)
        if want == "EMPTY_OR_ABSENT":
            if values not in ([], [""]):
                problems.append(f"{name} {values!r}, want empty or absent")
        elif name == "MediaUrl":
            if values != want:
                problems.append(f"MediaUrl {values!r}, want {want!r}")
        elif isinstance(want, tuple):
            lo, hi = want[1], want[2]
            if len(values) != 1 or not values[0].isdigit() or not lo <= int(values[0]) <= hi:
                problems.append(f"{name} {values!r}, want one integer in {lo}..{hi}")
        elif values != [want]:
            problems.append(f"{name} {values!r}, want [{want!r}]")
    extra = sorted({k for k, _ in rec["form"]} - allowed)
    if extra:
        problems.append(f"unexpected fields {extra}")
    t.ok(not problems, f"request: {label}", "; ".join(problems) + f"\nform: {rec['form']!r}"[:3000])


for label, kw, expect in CASES:
    try:
        check(label, kw, expect)
    except Exception as exc:  # one broken case must not hide the others
        t.ok(False, f"request: {label} (crashed)", repr(exc))

# the bodies stored are the bodies sent (the enqueue side did not alter them either)
stored = dict(pg.sql("SELECT to_number, coalesce(body, '') FROM twilio_outbox"))
t.eq([kw["to"] for _, kw, _ in CASES if stored.get(kw["to"]) != (kw["body"] or "")], [],
     "the rows keep the bodies as given")

t.done()
