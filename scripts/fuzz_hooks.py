"""schemathesis hooks for scripts/fuzz.sh (loaded through SCHEMATHESIS_HOOKS).

1. `positive_data_acceptance_or_stated_rule` replaces schemathesis' `positive_data_acceptance`
   (which the run excludes): a schema-valid request must be accepted, except when the API
   refuses it for one of the rules below, which docs/openapi.yaml states in words but JSON
   Schema cannot (rules across fields or parameters, or about what is stored). Each is matched
   on the error JSON's `error` code and message, so any other 400 still fails the run.
2. `DocumentedStatuses` records which documented status codes each operation answered and
   writes the ones never seen to $FUZZ_OUT/unreached-statuses.txt (a report, not a failure:
   many need state a fuzzer rarely builds; `make statuses` checks them against the tests).
"""

import json
import os
import re

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

# (status, error code, message pattern): refusals of schema-valid requests the contract
# makes on purpose.
STATED_RULES = [
    # Paging: the two styles cannot be mixed (API.md, Lists); a data download as the raw file
    # (`format=raw`) answers the whole file, so paging parameters do not apply to it.
    (400, "bad_request", r"use either offset/limit or page/page_size, not both|does not apply to format=raw"),
    # A reference to something that does not exist (or that this caller cannot see): a role,
    # group, user, Klip, dashboard or data source named in the body.
    (400, "validation_failed", r"does not exist|not found|unknown (role|group|user|klip|dashboard|data source)"),
    # Rules across fields of one body.
    # (A Klip's value unless it counts, its time column with a bucket or range, and a url data
    # source's endpoint are in the document as if/then rules, so they are not listed here.)
    (400, "validation_failed", r"is required for an email channel|is required for a webhook or slack channel|requires|only with|not with|not both|must differ|must be .+ when "),
    # A report covers a dashboard or Klips: one of the two, which a generator-friendly schema
    # states in words.
    (400, "validation_failed", r"give dashboard_id or klip_ids|a report covers a dashboard or klip_ids"),
    # A number the database cannot store (0, or magnitude 1e-130 to 1e125) inside free JSON.
    (400, "validation_failed", r"numbers must be 0 or of magnitude"),
    # An empty object key deep inside free JSON (a layout's state): the document states it in
    # words, since a recursive schema breaks the client generators.
    (400, "validation_failed", r"object keys must not be empty, at any depth"),
    # A date of the calendar's shape that is no day of it (`2026-02-30`, year 0): the pattern
    # the document gives cannot count a month's days.
    (400, "validation_failed", r"must be YYYY-MM-DD or RFC 3339"),
    # Rows appended with other columns than the data source has: a rule about what is stored.
    (400, "bad_request", r"appended rows must have the columns"),
    # A data push whose body does not parse as the source's format (e.g. no CSV header).
    (400, "bad_request", r"CSV has no header row|not valid CSV|not valid JSON|is empty"),
    # `If-Match` with a version that is not the current one: the point of the header.
    (412, "precondition_failed", r"does not match the current version"),
    # Data pushed in a format other than the source's own (its `format` decides).
    (415, "unsupported_media_type", r"takes .* \(its format is"),
    # A value the URL parser, a cron parser or the time zone database refuses although it
    # matches the documented pattern.
    (400, "validation_failed", r"is not a valid URL|not a valid cron|unknown time zone|is not a valid header|must have 5 fields|is not an IANA time zone|must be within|never comes due"),
    # A channel URL the egress guard refuses (a private, loopback or metadata address, a host
    # that does not resolve, not http(s)), or fields of another type of channel (API.md
    # notifications): rules about where a URL leads and across fields.
    (400, "validation_failed", r"refused: |could not resolve host|only http and https|the URL has no|is only for (email|webhook and slack) channels|cannot change|is not an email address"),
    # Only a webhook channel has a signing secret to rotate.
    (400, "bad_request", r"only webhook channels have a signing secret"),
]


def _stated(response) -> bool:
    text = response.content.decode("utf-8", "replace")
    # JSONP (a GET with `callback`): `name(<the JSON>);`.
    jsonp = re.fullmatch(r"\s*[A-Za-z0-9_]+\((.*)\);\s*", text, re.S)
    if jsonp:
        text = jsonp.group(1)
    try:
        body = json.loads(text)
    except (ValueError, TypeError):
        return False
    if not isinstance(body, dict):
        return False
    messages = [str(body.get("message", ""))]
    messages += [str(d.get("message", "")) for d in body.get("details") or [] if isinstance(d, dict)]
    patterns = [
        pattern
        for status, code, pattern in STATED_RULES
        if response.status_code == status and body.get("error") == code
    ]
    # Every problem named must be one of the stated rules (a body may break several).
    return bool(patterns) and all(
        any(re.search(p, m) for p in patterns) for m in messages[1:] or messages
    )


@schemathesis.check
def positive_data_acceptance_or_stated_rule(ctx, response, case):
    if _stated(response):
        return None
    return positive_data_acceptance(ctx, response, case)


@schemathesis.check
class DocumentedStatuses:
    """Which documented statuses each operation answered during the run."""

    def __init__(self):
        self.seen = {}
        self.documented = {}

    def after_response(self, ctx, response, case):
        # The unsupported-method check sends other methods to an operation's path (405).
        if case.method.upper() != case.operation.method.upper():
            return
        label = case.operation.label
        self.seen.setdefault(label, set()).add(str(response.status_code))
        if label not in self.documented:
            responses = case.operation.definition.raw.get("responses", {})
            self.documented[label] = {code for code in responses if code.isdigit()}

    def after_run(self, ctx):
        out = os.environ.get("FUZZ_OUT")
        if not out:
            return
        lines = []
        for label in sorted(self.documented):
            missing = sorted(self.documented[label] - self.seen.get(label, set()))
            if missing:
                lines.append(f"{label}: {', '.join(missing)}")
        with open(os.path.join(out, "unreached-statuses.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
