#!/usr/bin/env python3
"""A tiny webhook receiver for trying Pulseboard's notifications by hand (stdlib only).

    python3 scripts/webhook-receiver.py --port 8088 --secret whsec_...
    python3 scripts/webhook-receiver.py --port 8089 --slack

It listens on 127.0.0.1 and prints each POST it gets.

Standard Webhooks mode (--secret): every POST must carry `webhook-id`, `webhook-timestamp`
and `webhook-signature`. The signature is checked here, independently of Pulseboard's code:
HMAC-SHA256 keyed by the base64-decoded secret (after `whsec_`) over
`{webhook-id}.{webhook-timestamp}.{body}`, base64-encoded, in the header as `v1,<base64>`;
the header may hold several space-separated signatures (during a secret rotation) and one
match is enough (compared in constant time). The timestamp must be within 5 minutes of now.
A good delivery prints its event type, id and JSON body and is answered 204; a bad one
prints why and is answered 401. A webhook-id seen before is marked as a redelivery.

Slack mode (--slack): no signature (Slack's incoming webhooks have none); prints the text and
blocks of each Slack-style post and answers 200 `ok`, as Slack does.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 5 * 60
MAX_BODY = 5 * 1024 * 1024

_print_lock = threading.Lock()


def say(text: str) -> None:
    with _print_lock:
        print(text, flush=True)


def decode_secret(secret: str) -> bytes:
    raw = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"the secret is not base64 after 'whsec_': {e}") from None
    if not key:
        raise ValueError("the secret is empty")
    return key


def check_signature(key: bytes, headers, body: bytes, now: float) -> str | None:
    """None when the delivery is genuine, else why not."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    if not timestamp.isdigit():
        return f"webhook-timestamp is not whole seconds: {timestamp!r}"
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return f"webhook-timestamp {timestamp} is more than 5 minutes from now ({int(now)})"
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(expected, value.encode()):
            return None
    return "no signature matches (wrong secret, or the body was changed)"


def pretty(body: bytes) -> tuple[object | None, str]:
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, body.decode("utf-8", "replace")
    return parsed, json.dumps(parsed, indent=2, ensure_ascii=False)


def make_handler(key: bytes | None, slack: bool):
    seen: set[str] = set()
    seen_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "pulseboard-webhook-receiver"

        def log_message(self, format, *args):  # quiet: we print our own lines
            pass

        def answer(self, status: int, text: str = "") -> None:
            data = text.encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

        def do_GET(self):
            self.answer(405, "POST webhooks here\n")

        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                self.answer(400, "bad Content-Length\n")
                return
            body = self.rfile.read(length)
            stamp = time.strftime("%H:%M:%S")
            if slack:
                self.slack(stamp, body)
                return
            why = check_signature(key, self.headers, body, time.time())
            if why is not None:
                say(f"[{stamp}] POST {self.path}: REJECTED (401): {why}")
                self.answer(401, why + "\n")
                return
            msg_id = self.headers["webhook-id"]
            with seen_lock:
                again = msg_id in seen
                seen.add(msg_id)
            parsed, text = pretty(body)
            event = parsed.get("type", "?") if isinstance(parsed, dict) else "?"
            note = "  (redelivery: this id was seen before)" if again else ""
            say(f"[{stamp}] {event}  id {msg_id}  signature ok{note}\n{text}\n")
            self.answer(204)

        def slack(self, stamp: str, body: bytes) -> None:
            parsed, text = pretty(body)
            lines = [f"[{stamp}] Slack post to {self.path}"]
            if isinstance(parsed, dict):
                if parsed.get("text"):
                    lines.append(f"  text: {parsed['text']}")
                for block in parsed.get("blocks") or []:
                    if not isinstance(block, dict):
                        continue
                    inner = block.get("text")
                    shown = inner.get("text") if isinstance(inner, dict) else None
                    kind = block.get("type", "?")
                    lines.append(f"  [{kind}] {shown}" if shown else f"  [{kind}]")
            lines.append(text)
            say("\n".join(lines) + "\n")
            self.answer(200, "ok")

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Print webhooks sent to 127.0.0.1:PORT, checking Standard Webhooks signatures."
    )
    parser.add_argument("--port", type=int, default=8088)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--secret", help="the endpoint's signing secret, whsec_...")
    mode.add_argument(
        "--slack", action="store_true", help="print Slack-style posts, no signature check"
    )
    args = parser.parse_args()
    key = None
    if args.secret is not None:
        try:
            key = decode_secret(args.secret)
        except ValueError as e:
            parser.error(str(e))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(key, args.slack))
    what = "Slack-style posts" if args.slack else "Standard Webhooks (signatures checked)"
    say(f"listening on http://127.0.0.1:{server.server_port}/ for {what}; Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
