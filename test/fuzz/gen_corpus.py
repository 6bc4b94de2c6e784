#!/usr/bin/env python3
"""Write the seed corpora test/fuzz/corpus/{form,response}/ (run from anywhere).

The files are committed; run this again only to change them.  Inputs that
libFuzzer found and that are kept as regressions (crash-* / finding-*) are
left alone.  Shapes follow /work/shared/TWILIO_FACTS.md (Message resource,
error body, Messages list).
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SID = "SM" + "0123456789abcdef0123456789ABCDEF"
MMSID = "MM" + "fedcba9876543210fedcba9876543210"
AC = "AC" + "0123456789abcdef0123456789abcdef"
MG = "MG" + "0123456789abcdef0123456789abcdef"
DATE = "Thu, 24 Aug 2023 05:01:45 +0000"


def message(sid=SID, status="queued", body="Hello from twilio_outbox", **extra):
    m = {
        "account_sid": AC,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": DATE,
        "date_sent": None,
        "date_updated": DATE,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": "+15017122661",
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{AC}/Messages/{sid}/Media.json"},
        "to": "+15558675310",
        "uri": f"/2010-04-01/Accounts/{AC}/Messages/{sid}.json",
    }
    m.update(extra)
    return m


def page(messages, **extra):
    p = {
        "end": max(len(messages) - 1, 0),
        "first_page_uri": f"/2010-04-01/Accounts/{AC}/Messages.json?PageSize=50&Page=0",
        "next_page_uri": None,
        "page": 0,
        "page_size": 50,
        "previous_page_uri": None,
        "messages": messages,
        "start": 0,
        "uri": f"/2010-04-01/Accounts/{AC}/Messages.json?PageSize=50&Page=0",
    }
    p.update(extra)
    return p


def error(code, message, status):
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


def j(obj, ascii_only=False):
    return json.dumps(obj, ensure_ascii=ascii_only, indent=None).encode("utf-8")


def response_seeds():
    created = j(message())
    s = {}
    s["message_created.json"] = created
    s["message_created_pretty.json"] = json.dumps(message(), indent=2).encode()
    s["message_mms_accepted.json"] = j(message(MMSID, "accepted", messaging_service_sid=MG, num_media="1"))
    s["message_scheduled.json"] = j(message(status="scheduled"))
    s["message_mixed_case_sid.json"] = j(message("SM" + "AbCdEf0123456789aBcDeF0123456789"))
    s["message_failed_error_code.json"] = j(message(status="failed", error_code=30007,
                                                    error_message="Carrier violation"))
    s["error_21211.json"] = j(error(21211, "The 'To' number +1555 is not a valid phone number.", 400))
    s["error_20003.json"] = j(error(20003, "Authenticate", 401))
    s["error_20429.json"] = j(error(20429, "Too Many Requests", 429))
    s["error_20500.json"] = j(error(20500, "An internal server error has occurred", 500))
    s["error_code_as_string.json"] = b'{"code": "21610", "message": "Attempt to send to unsubscribed recipient", "status": 400}'
    s["error_code_edges.json"] = b'{"code": 2147483647, "status": 0, "message": "", "sid": null}'
    s["error_code_negative_float.json"] = b'{"code": -1, "code2": 1.5e3, "message": ["not", "a", "string"]}'
    s["list_two.json"] = j(page([message(), message(MMSID, "delivered", body="Second \u2014 caf\u00e9 \U0001F44B")]))
    s["list_escaped_unicode.json"] = j(page([message(body="caf\u00e9 \u20ac \U0001F600")]), ascii_only=True)
    s["list_empty.json"] = j(page([]))
    s["list_body_null.json"] = j(page([message(body=None), {"sid": SID}]))
    s["list_nested_odd.json"] = (b'{"messages": [1, "x", null, [{"sid": "SMnested"}], {"sid": {"x": 1}, "body": [1],'
                                 b' "date_created": 5}, {"sid": "' + SID.encode() + b'", "body": "ok",'
                                 b' "messages": [{"sid": "SMdeeper"}]}], "messages2": [{"sid": "SMnot"}]}')
    s["list_twice.json"] = b'{"messages": [{"sid": "SMa"}], "page": 0, "messages": [{"sid": "SMb"}, {"sid": "SMc"}]}'
    s["list_messages_not_array.json"] = b'{"messages": {"a": [{"sid": "SMx"}]}, "b": [{"sid": "SMy"}]}'
    s["list_long_date.json"] = j(page([message(date_created="Thu, 24 Aug 2023 05:01:45 +0000 " + "\u00e9" * 40)]))
    # more messages than TOB_LIST_MAX (200)
    many = [{"sid": "SM%032x" % i, "body": "body %d" % i, "date_created": DATE} for i in range(202)]
    s["list_202_messages.json"] = j(page(many))
    s["truncated_object.json"] = created[:120]
    s["truncated_in_escape.json"] = b'{"sid": "' + SID.encode() + b'", "message": "caf\\u00'
    s["truncated_after_key.json"] = b'{"sid"'
    s["unterminated_string.json"] = b'{"sid": "SM'
    nest = lambda n: b'{"sid": "' + SID.encode() + b'", "x": ' + b"[" * (n - 1) + b"]" * (n - 1) + b"}"
    s["nested_32.json"] = nest(32)
    s["nested_33.json"] = nest(33)
    s["nested_5000_unclosed.json"] = b'{"sid": "' + SID.encode() + b'", "x": ' + b"[" * 5000
    s["nested_objects_40.json"] = b'{"a":' * 40 + b'1' + b'}' * 40
    s["brackets_in_strings.json"] = (b'{"sid": "' + SID.encode() + b'", "message": "[[[[{{{{ \\" ]]]] \\\\", "x": "'
                                     + b"[" * 40 + b'"}')
    s["escaped_key.json"] = b'{"s\\u0069d": "' + SID.encode() + b'", "st\\u0061tus": "sent"}'
    s["escapes_all.json"] = b'{"message": "\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20ac\\ud83d\\ude00", "status": "sent"}'
    s["nul_escape.json"] = b'{"sid": "' + SID.encode() + b'", "message": "a\\u0000b"}'
    s["raw_nul.json"] = b'{"sid": "SM\x00", "status": "sent"}'
    s["raw_control_char.json"] = b'{"status": "se\x01nt"}'
    s["lone_high_surrogate.json"] = b'{"sid": "' + SID.encode() + b'", "message": "\\ud800x"}'
    s["lone_low_surrogate.json"] = b'{"message": "\\udc00"}'
    s["invalid_utf8.json"] = (b'{"sid": "SM\xff\xfe", "status": "s\xc0\xafnt", "message": "\xed\xa0\x80 surrogate",'
                              b' "body": "\xf4\x90\x80\x80"}')
    s["list_invalid_utf8.json"] = (b'{"messages": [{"sid": "' + SID.encode() + b'", "body": "caf\xe9",'
                                   b' "date_created": "Thu\xff"}]}')
    s["long_message_clip.json"] = j({"code": 21617, "message": "x" * 254 + "\u00e9\u00e9" + "y" * 20})
    s["long_status.json"] = j({"sid": SID, "status": "d" * 30 + "\U0001F600" + "z"})
    sid63, sid64 = "SM" + "a" * 61, "SM" + "a" * 62
    s["sid_63_bytes.json"] = j({"sid": sid63})
    s["sid_64_bytes.json"] = j({"sid": sid64})
    s["duplicate_keys.json"] = b'{"sid": "SMfirst", "status": "queued", "sid": "SM\xff", "status": "sent"}'
    s["huge_numbers.json"] = (b'{"code": 99999999999999999999999999999999, "price": -1.5e-309, "n": 1e400,'
                              b' "m": -0, "k": 0.000000000000000000000001, "sid": "' + SID.encode() + b'"}')
    s["bad_numbers.json"] = b'{"code": 01, "x": 1.}'
    s["number_with_word.json"] = b'{"code": 1abc}'
    s["keywords.json"] = b'{"a": true, "b": false, "c": null, "d": [true, false, null], "sid": "SMk"}'
    s["bad_keyword.json"] = b'{"a": nul}'
    s["trailing_garbage.json"] = created + b" x"
    s["trailing_comma.json"] = b'{"sid": "SMx",}'
    s["two_objects.json"] = b'{"sid": "SMa"}{"sid": "SMb"}'
    s["top_level_array.json"] = j([message()])
    s["top_level_string.json"] = b'"' + SID.encode() + b'"'
    s["top_level_null.json"] = b"null"
    s["empty_object.json"] = b"{}"
    s["empty.json"] = b""
    s["whitespace_only.json"] = b" \t\r\n"
    s["leading_whitespace.json"] = b"\r\n\t " + created + b"\n"
    s["leading_vertical_tab.json"] = b"\x0b" + created
    s["utf8_bom.json"] = b"\xef\xbb\xbf" + created
    s["html_502.html"] = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                          b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
                          b"</body>\r\n</html>\r\n")
    s["html_with_brace.html"] = b"{<html><body>{\"sid\": \"SMx\"}</body></html>"
    s["xml_error.xml"] = (b'<?xml version="1.0" encoding="UTF-8"?>\n<TwilioResponse><RestException>'
                          b"<Code>20404</Code><Message>The requested resource was not found</Message>"
                          b"</RestException></TwilioResponse>")
    return s


def form_seeds():
    s = {}
    s["body_emoji"] = b"Body\0Hello \xf0\x9f\x91\x8b world \xe2\x80\x94 caf\xc3\xa9"
    s["to_plus"] = b"To\0+15558675309"
    s["reserved_chars"] = b"Body\0a&b=c%d+e f/g?h#i;j:k@l$m,n!o*p'q(r)s"
    s["newlines"] = b"Body\0line1\nline2\r\nline3\ttab"
    s["media_url"] = b"MediaUrl\0https://example.com/a b.png?x=1&y=%20#frag"
    s["status_callback"] = b"StatusCallback\0https://hooks.example.com/twilio/status?id=42&sig=a+b/c="
    s["date_sent_gt"] = b"DateSent>\x002024-01-01"
    s["unreserved_only"] = b"Param.With~Unreserved-_\0~._-AZaz09"
    s["percent_literal"] = b"Body\0100% sure %41%2B"
    s["empty_value"] = b"Body\0"
    s["empty_both"] = b"\0"
    s["empty_input"] = b""
    s["no_nul_half"] = b"ValidityPeriod14400"
    s["invalid_utf8"] = b"Body\0\xff\xfe\xc0\xaf\xed\xa0\x80"
    s["all_bytes"] = b"All\0" + bytes(range(1, 256))
    s["three_parts"] = b"Attempt\x002\0ignored after the second NUL"
    s["long_value"] = b"Body\0" + ("\u00e9" * 800).encode()
    return s


def write(kind, seeds):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print(f"{d}: {len(seeds)} seeds")


if __name__ == "__main__":
    write("response", response_seeds())
    write("form", form_seeds())
