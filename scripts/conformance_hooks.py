"""schemathesis hooks for hermes' NDJSON stream (`/v1/label/stream`).

Requests: the generated value (one StreamLine object, or anything in negative mode) is sent as
one NDJSON line. Responses: the stream answers one line per input line; the first line is
validated against the documented schema (a LabelResult or a StreamLineError).
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson_request(ctx, value):
    return (json.dumps(value) + "\n").encode("utf-8")


@schemathesis.deserializer("application/x-ndjson")
def ndjson_response(ctx, response):
    text = response.content.decode("utf-8")
    lines = [line for line in text.split("\n") if line]
    if len(lines) != 1:
        raise ValueError(f"expected exactly one output line for one input line, got {len(lines)}")
    return json.loads(lines[0])
