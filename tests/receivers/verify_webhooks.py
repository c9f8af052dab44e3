#!/usr/bin/env python3
"""Verify Standard Webhooks signatures with an independent implementation.

The tests check Pulseboard's webhook signatures with the reference Python library
`standardwebhooks` (PyPI; pinned in scripts/tools.sh, in the --test-tools venv) rather than
with the Rust code that made them. scripts/local-stack.sh exports the command as
PULSEBOARD_WEBHOOK_VERIFY ("<venv python> <this file>").

Input, on stdin, one JSON object a line:

    {"secret": "whsec_...",
     "headers": {"webhook-id": "...", "webhook-timestamp": "...", "webhook-signature": "v1,..."},
     "body": "<the request body exactly as sent>"}

Output, on stdout, one JSON line per input line, in order, flushed at once (so a test can
keep the process open and ask one question at a time):

    {"ok": true}
    {"ok": false, "error": "No matching signature found"}

`Webhook(secret).verify(body, headers)` checks the headers are there, the timestamp is
within 5 minutes of now, any of the space-separated signatures matches HMAC-SHA256 (key:
the base64 secret after `whsec_`) of `{id}.{timestamp}.{body}`, and that the body is JSON.
The exit status is 0 once stdin ends, whatever the verdicts; 2 if the library is missing.
"""

import json
import sys

try:
    from standardwebhooks import Webhook, WebhookVerificationError
except ImportError as e:  # pragma: no cover - an install problem, not a verdict
    print(
        f"verify_webhooks.py: {e}; run it with the venv python of `scripts/tools.sh --test-tools`",
        file=sys.stderr,
    )
    sys.exit(2)


def verdict(line: str) -> dict:
    try:
        case = json.loads(line)
    except json.JSONDecodeError as e:
        return {"ok": False, "error": f"input line is not JSON: {e}"}
    if not isinstance(case, dict):
        return {"ok": False, "error": "input line is not a JSON object"}
    secret, headers, body = case.get("secret"), case.get("headers"), case.get("body")
    if not isinstance(secret, str) or not isinstance(headers, dict) or not isinstance(body, str):
        return {
            "ok": False,
            "error": 'input needs "secret" (string), "headers" (object) and "body" (string)',
        }
    if not all(isinstance(v, str) for v in headers.values()):
        return {"ok": False, "error": "every header value must be a string"}
    try:
        webhook = Webhook(secret)
    except Exception as e:  # bad base64, empty secret
        return {"ok": False, "error": f"bad secret: {type(e).__name__}: {e}"}
    try:
        webhook.verify(body, headers)
    except WebhookVerificationError as e:
        return {"ok": False, "error": str(e)}
    except json.JSONDecodeError as e:
        return {"ok": False, "error": f"signature matches, but the body is not JSON: {e}"}
    except Exception as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    return {"ok": True}


def main() -> int:
    for line in sys.stdin:
        print(json.dumps(verdict(line)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
