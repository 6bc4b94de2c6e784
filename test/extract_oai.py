#!/usr/bin/env python3
"""Extract what test/twilio_double.py validates from Twilio's OpenAPI spec.

Usage:
    python3 test/extract_oai.py /path/to/twilio_api_v2010.json > test/twilio_oai.json

Input: spec/json/twilio_api_v2010.json from github.com/twilio/twilio-oai
(MIT licensed). Output: the CreateMessageRequest form schema of
POST /2010-04-01/Accounts/{AccountSid}/Messages.json ($refs resolved,
descriptions dropped), its x-twilio conditional groups mapped from the
spec's snake_case names to the form parameter names, and the query
parameters of the GET list operation on the same path; under "calls" the
same for .../Calls.json (CreateCall, ListCall) and the form of UpdateCall
(POST .../Calls/{Sid}.json), with the Call status enum.
"""

import hashlib
import json
import re
import sys

COMMIT = "d50069b44ea8cd23141385bdb6db48f16ff75bb5"
MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
CALLS_PATH = "/2010-04-01/Accounts/{AccountSid}/Calls.json"
CALL_PATH = "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json"
FORM = "application/x-www-form-urlencoded"
KEPT = ("type", "format", "pattern", "minLength", "maxLength", "enum",
        "minimum", "maximum", "items")


def resolve(spec, schema):
    """Follow a local $ref and keep only the validation keywords."""
    while "$ref" in schema:
        node = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    out = {key: schema[key] for key in KEPT if key in schema}
    if "items" in out:
        out["items"] = resolve(spec, out["items"])
    if schema.get("x-twilio", {}).get("ignoreFormat"):
        out["ignoreFormat"] = True
    return out


def snake(name):
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def operations(spec, path_name):
    """The create (POST) and list (GET) operations of a list path."""
    path = spec["paths"][path_name]
    post, get = path["post"], path["get"]
    form = post["requestBody"]["content"][FORM]["schema"]
    props = {name: resolve(spec, s) for name, s in form["properties"].items()}
    by_snake = {snake(name): name for name in props}
    groups = post.get("x-twilio", {}).get("conditional", [])
    create = {
        "operationId": post["operationId"],
        "content_type": FORM,
        "required": form.get("required", []),
        "conditional": [[by_snake[n] for n in g] for g in groups],
        "properties": props,
    }
    listing = {
        "operationId": get["operationId"],
        "parameters": {p["name"]: resolve(spec, p["schema"])
                       for p in get["parameters"] if p["in"] == "query"},
    }
    return post, create, listing


def extract(spec, sha256):
    post, create, listing = operations(spec, MESSAGES_PATH)
    _, call_create, call_list = operations(spec, CALLS_PATH)
    update = spec["paths"][CALL_PATH]["post"]
    update_form = update["requestBody"]["content"][FORM]["schema"]
    account = next(p for p in post["parameters"] if p["name"] == "AccountSid")
    return {
        "_provenance": {
            "repo": "https://github.com/twilio/twilio-oai",
            "path": "spec/json/twilio_api_v2010.json",
            "commit": COMMIT,
            "sha256": sha256,
            "license": "MIT, Copyright (C) 2023, Twilio, Inc.",
            "generated_by": "test/extract_oai.py",
        },
        "path": MESSAGES_PATH,
        "account_sid": resolve(spec, account["schema"]),
        "create": create,
        "list": listing,
        "calls": {
            "path": CALLS_PATH,
            "create": call_create,
            "list": call_list,
            "update": {
                "operationId": update["operationId"],
                "content_type": FORM,
                "properties": {name: resolve(spec, s)
                               for name, s in update_form["properties"].items()},
            },
            "statuses": spec["components"]["schemas"]["call_enum_status"]["enum"],
        },
    }


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    out = extract(json.loads(raw), hashlib.sha256(raw).hexdigest())
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
