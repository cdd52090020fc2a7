"""Edges of the gateway against a scripted upstream (`FakeUpstream`, answers at once without a model):
estimates sized as admission holds them, `n` beyond what a local model holds, JSON schemas a local model
cannot follow, usage said once in a stream, decision headers on errors, a body that is not JSON on a
kept-alive connection, and a stream that stalls after its whole answer."""
import concurrent.futures
import hashlib
import http.client
import json
import subprocess
import time

import openai
import pytest

from conftest import BIN, FakeUpstream, Server, request

MSG = [{"role": "user", "content": "The capital of France is"}]


@pytest.fixture(scope="module")
def fake():
    f = FakeUpstream()
    yield f
    f.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake):
    cfg = f"""
[[local]]
name = "small"
model = "gemma3-270m"
slots = 4
queue = 8
ctx_per_slot = 512

[[upstream]]
name = "fake"
base_url = "http://127.0.0.1:{fake.port}/v1"
input_per_mtok = 10.0
output_per_mtok = 10.0
first_token_timeout_ms = 5000
max_retries = 0

[route]
candidates = ["small", "fake"]
threshold = 0.0

[budget]
daily_usd = 20.0
"""
    s = Server(tmp_path_factory.mktemp("edges"), cfg, "edges")
    yield s
    s.stop()


@pytest.fixture()
def gw(gateway, fake):
    fake.mode = {"kind": "ok"}
    return openai.OpenAI(base_url=gateway.url("/v1"), api_key="x", max_retries=0, timeout=60)


def decision(headers):
    return json.loads(headers["x-rightmodel-decision"])


def sse_chunks(body):
    """The data of an SSE body's events, `[DONE]` as the string."""
    out = []
    for line in body.decode().splitlines():
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_a_huge_max_tokens_is_sized_as_admission_holds_it(gw, gateway):
    # 2^32 - 1 as "no limit": at $10 per million tokens it would be $42,950, over the $20 budget; the hold
    # is sized on 4,096 answer tokens, and so are routing and max_cost_usd.
    r = gw.chat.completions.with_raw_response.create(model="auto", messages=MSG, max_tokens=4294967295)
    assert r.headers["x-rightmodel-model"] == "fake"
    d = decision(r.headers)
    est = {c["name"]: c for c in d["candidates"]}
    assert est["fake"]["cost_usd"] < 0.1 and est["fake"].get("excluded") is None, d
    r = gw.chat.completions.with_raw_response.create(
        model="fake", messages=MSG, max_tokens=2_000_000, extra_body={"rightmodel": {"max_cost_usd": 0.5}})
    assert r.parse().choices[0].message.content == "Paris"


def test_more_choices_than_a_local_model_holds_at_once_is_a_400_on_n(gw, gateway):
    # slots 4 + queue 8: 13 choices could never all be admitted (a 429 no retry gets past).
    with pytest.raises(openai.BadRequestError) as e:
        gw.chat.completions.create(model="small", messages=MSG, max_tokens=2, n=13)
    assert e.value.body["param"] == "n" and "at most 12 choices" in e.value.body["message"], e.value.body
    status, _, body = request(gateway.base, "POST", "/v1/completions",
                              {"model": "small", "prompt": "Hello", "max_tokens": 2, "n": 13})
    err = json.loads(body)["error"]
    assert status == 400 and err["param"] == "n" and "at most 12" in err["message"], err
    # `auto` leaves the local model out for them.
    r = gw.chat.completions.with_raw_response.create(
        model="auto", messages=MSG, max_tokens=2, n=13, extra_body={"rightmodel": {"threshold": 1.0}})
    assert r.headers["x-rightmodel-model"] == "fake"


UNANCHORED = {"type": "json_schema", "json_schema": {
    "name": "code", "strict": True, "schema": {"type": "string", "pattern": "[0-9]{3}", "maxLength": 12}}}


@pytest.mark.parametrize("schema, words", [
    ({"type": "string", "pattern": "[0-9]{3}", "maxLength": 12}, ["not anchored", "^[0-9]{3}$"]),
    ({"type": "string", "pattern": "(((("}, ["not anchored"]),
    ({"type": "string", "pattern": "^[0-9]{3}$", "maxLength": 12}, ["maxLength", "pattern"]),
])
def test_a_schema_a_local_model_cannot_follow_is_a_400_naming_what_to_change(gw, schema, words):
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}}
    with pytest.raises(openai.BadRequestError) as e:
        gw.chat.completions.create(model="small", messages=MSG, max_tokens=8, response_format=fmt)
    body = e.value.body
    assert body["type"] == "invalid_request_error" and body["param"].startswith("response_format"), body
    for w in words:
        assert w in body["message"], body


def test_a_schema_without_strict_is_followed_as_far_as_the_grammar_goes(gw):
    """Without `strict`, OpenAI takes a schema as guidance; a local model answers, following what its
    grammar can (the pattern it cannot is left out)."""
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": UNANCHORED["json_schema"]["schema"]}}
    r = gw.chat.completions.create(model="small", messages=MSG, max_tokens=8, response_format=fmt)
    assert r.choices[0].message.content.startswith('"'), r.choices[0].message.content


def test_auto_sends_a_schema_only_an_upstream_follows_to_an_upstream(gw):
    weak = {"rightmodel": {"threshold": 1.0}}
    r = gw.chat.completions.with_raw_response.create(
        model="auto", messages=MSG, max_tokens=8, response_format=UNANCHORED, extra_body=weak)
    assert r.headers["x-rightmodel-model"] == "fake", decision(r.headers)


def test_auto_without_an_upstream_answers_the_local_models_400(tmp_path):
    s = Server(tmp_path, '[[local]]\nname = "small"\nmodel = "gemma3-270m"\nctx_per_slot = 512\n', "local-only")
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="auto", messages=MSG, max_tokens=8, response_format=UNANCHORED)
        assert "not anchored" in e.value.body["message"], e.value.body
    finally:
        s.stop()


def test_auto_is_listed_only_with_models_to_choose_among(tmp_path):
    s = Server(tmp_path, '[embedding]\nname = "minilm-l6"\nmodel = "minilm-l6"\n', "encoder-only")
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
        assert [m.id for m in c.models.list()] == ["minilm-l6"]
        with pytest.raises(openai.NotFoundError):
            c.models.retrieve("auto")
    finally:
        s.stop()


@pytest.mark.parametrize("usage", ["final", "finish", "every"])
def test_a_stream_says_its_usage_once_at_the_end_and_only_when_asked(gateway, fake, usage):
    fake.mode = {"kind": "ok", "usage": usage}
    req = {"model": "fake", "messages": MSG, "max_tokens": 4, "stream": True}
    _, _, body = request(gateway.base, "POST", "/v1/chat/completions",
                         dict(req, stream_options={"include_usage": True}))
    chunks = sse_chunks(body)
    assert chunks[-1] == "[DONE]"
    with_usage = [c for c in chunks[:-1] if c.get("usage")]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-2], chunks
    assert with_usage[0]["choices"] == [] and with_usage[0]["usage"]["completion_tokens"] == 2
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-2]) == "Paris"
    _, _, body = request(gateway.base, "POST", "/v1/chat/completions", req)
    chunks = sse_chunks(body)
    assert chunks[-1] == "[DONE]" and not [c for c in chunks[:-1] if c.get("usage")], chunks


def test_errors_after_a_decision_carry_the_decision_headers(gw, gateway, fake):
    fake.mode = {"kind": "status", "status": 500}
    status, headers, body = request(gateway.base, "POST", "/v1/chat/completions",
                                    {"model": "auto", "messages": MSG, "max_tokens": 4})
    assert status == 502, body
    assert headers["x-rightmodel-model"] == "fake" and "x-request-id" in headers
    d = decision(headers)
    assert d["served"] == "fake" and d["reason"], d
    row = gateway.wait_row(lambda r: r["status"] == 502 and r["requested_model"] == "auto")
    assert row["served_model"] == "fake"
    # A named model that failed with no decision made keeps to x-request-id.
    status, headers, _ = request(gateway.base, "POST", "/v1/chat/completions",
                                 {"model": "fake", "messages": MSG, "max_tokens": 4})
    assert status == 502 and "x-rightmodel-decision" not in headers


def test_a_body_that_is_not_json_leaves_the_connection_usable(gateway, fake):
    fake.mode = {"kind": "ok"}
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        body = json.dumps({"model": "fake", "messages": MSG, "max_tokens": 4}).encode()
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "text/plain"})
        r = conn.getresponse()
        err = json.loads(r.read())["error"]
        assert r.status == 400 and "application/json" in err["message"], err
        # The same connection serves the next request.
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200, r.read()
        assert json.loads(r.read())["choices"][0]["message"]["content"] == "Paris"
    finally:
        conn.close()


def test_a_stream_that_stalls_after_its_whole_answer_ends_normally(gateway, fake):
    # Finish and usage sent, then neither [DONE] nor the end: waited on briefly, not for the 5 s gap.
    fake.mode = {"kind": "ok", "usage": "final", "stall": 20}
    t = time.time()
    _, _, body = request(gateway.base, "POST", "/v1/chat/completions",
                         {"model": "fake", "messages": MSG, "max_tokens": 4, "stream": True,
                          "stream_options": {"include_usage": True}})
    took = time.time() - t
    chunks = sse_chunks(body)
    assert b"event: error" not in body and chunks[-1] == "[DONE]", body
    assert chunks[-2]["usage"]["completion_tokens"] == 2
    assert took < 4.5, took
    row = gateway.wait_row(lambda r: r["stream"] and r["served_model"] == "fake" and r["latency_ms"] > 1000)
    assert row["status"] == 200 and row["output_tokens"] == 2, row


def keyed_gateway(tmp_path, fake, keys):
    """A gateway whose only model is `fake` at $500 per million answer tokens (prompts free, so a call's
    cost is its answer: 2 tokens, $0.001, and its hold is max_tokens at that price), with `keys` (name:
    daily_spend_usd); each key's secret is `sk-` and its name."""
    entries = "".join(f'''
[[key]]
name = "{name}"
sha256 = "{hashlib.sha256(f"sk-{name}".encode()).hexdigest()}"
daily_spend_usd = {limit}
''' for name, limit in keys.items())
    cfg = f"""
[[upstream]]
name = "fake"
base_url = "http://127.0.0.1:{fake.port}/v1"
input_per_mtok = 0.0
output_per_mtok = 500.0
first_token_timeout_ms = 10000
max_retries = 0

[route]
candidates = ["fake"]
""" + entries
    return Server(tmp_path, cfg, "keyed")


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]


def test_auto_with_a_nearly_spent_key_answers_the_keys_429_as_a_named_model_does(tmp_path, fake):
    """The key's limit leaves $0.0001, less than the only model that can serve costs: through `auto` the
    key's 429 with Retry-After (the limit resets at midnight), not a 422 blaming the gateway's budget."""
    fake.mode = {"kind": "ok"}
    s = keyed_gateway(tmp_path, fake, {"b": 0.0011})
    try:
        body = {"messages": MSG, "max_tokens": 2}
        key = {"Authorization": "Bearer sk-b"}
        status, _, out = request(s.base, "POST", "/v1/chat/completions", dict(body, model="fake"), headers=key)
        assert status == 200, out
        s.wait_row(lambda r: r["status"] == 200 and r["cost_usd"] > 0)
        answers = {}
        for model in ["fake", "auto"]:
            status, headers, out = request(s.base, "POST", "/v1/chat/completions",
                                           dict(body, model=model, tools=TOOLS), headers=key)
            answers[model] = (status, headers, json.loads(out)["error"])
        for model, (status, headers, err) in answers.items():
            assert status == 429 and err["code"] == "insufficient_quota", (model, err)
            assert "Key `b`'s daily limit of $0.0011 has $0.0001 left" in err["message"], (model, err)
            assert int(headers["retry-after"]) > 0, (model, headers)
            assert "budget.daily_usd" != err.get("param") and "$0.0000 " not in err["message"], (model, err)
    finally:
        s.stop()


def test_a_limit_held_by_running_requests_asks_for_a_short_wait_not_midnight(tmp_path, fake):
    """Two slow calls hold $0.002 each of a $0.0045 limit: a third is refused for a few seconds (what they
    hold comes back as they finish), a call after them fits, and once spent money alone leaves too
    little the refusal lasts until midnight."""
    s = keyed_gateway(tmp_path, fake, {"c": 0.0045})
    try:
        body = {"model": "fake", "messages": MSG, "max_tokens": 4}
        key = {"Authorization": "Bearer sk-c"}
        call = lambda: request(s.base, "POST", "/v1/chat/completions", body, headers=key)  # noqa: E731
        fake.mode = {"kind": "ok", "delay": 3}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            running = [pool.submit(call) for _ in range(2)]
            time.sleep(1.0)
            status, headers, out = call()
            assert [f.result()[0] for f in running] == [200, 200]
        err = json.loads(out)["error"]
        assert status == 429 and err["code"] == "insufficient_quota", err
        assert 1 <= int(headers["retry-after"]) <= 5, headers
        assert "running requests hold $0.004" in err["message"] and "is spent" not in err["message"], err
        fake.mode = {"kind": "ok"}
        # $0.002 spent (2 answer tokens each): the same call fits now.
        status, _, out = call()
        assert status == 200, out
        # $0.003 spent, nothing running: $0.0015 left, less than the $0.002 hold, until midnight.
        status, headers, out = call()
        err = json.loads(out)["error"]
        assert status == 429 and "hold" not in err["message"] and "has $0.0015 left" in err["message"], err
        assert int(headers["retry-after"]) > 5 or "00:00" in time.strftime("%H:%M", time.gmtime(time.time() + 5))
    finally:
        s.stop()


def cascade_gateway(tmp_path, fake, min_confidence):
    """`auto` as a cascade of `cheap` then `big`, both served by `fake` (which sends no log-probabilities:
    the small answer's confidence is 0, kept only with `min_confidence` 0)."""
    cfg = f"""
[[upstream]]
name = "cheap"
base_url = "http://127.0.0.1:{fake.port}/v1"
tier = 0.3
input_per_mtok = 1.0
output_per_mtok = 1.0
max_retries = 0

[[upstream]]
name = "big"
base_url = "http://127.0.0.1:{fake.port}/v1"
input_per_mtok = 100.0
output_per_mtok = 100.0
max_retries = 0

[route]
candidates = ["cheap", "big"]
strategy = "cascade"
threshold = 0.0
min_confidence = {min_confidence}
"""
    return Server(tmp_path, cfg, f"cascade-{min_confidence}")


def test_a_kept_cascade_says_cascade_confident_everywhere(tmp_path, fake):
    fake.mode = {"kind": "ok"}
    s = cascade_gateway(tmp_path, fake, 0.0)
    try:
        status, headers, out = request(s.base, "POST", "/v1/chat/completions",
                                       {"model": "auto", "messages": MSG, "max_tokens": 4})
        assert status == 200, out
        d = decision(headers)
        assert d["reason"] == "cascade_confident" and d["served"] == "cheap", d
        assert json.loads(out)["rightmodel"]["decision"]["reason"] == "cascade_confident"
        row = s.wait_row(lambda r: r["status"] == 200)
        assert row["reason"] == "cascade_confident" and json.loads(row["decision"])["reason"] == "cascade_confident"
        metrics = request(s.base, "GET", "/metrics")[2].decode()
        assert 'reason="cascade_confident"' in metrics and 'reason="cascade"' not in metrics
    finally:
        s.stop()


def test_an_escalated_cascade_reports_the_large_models_estimate_and_splits_its_tokens(tmp_path, fake):
    fake.mode = {"kind": "ok"}
    s = cascade_gateway(tmp_path, fake, 0.5)
    try:
        status, headers, out = request(s.base, "POST", "/v1/chat/completions",
                                       {"model": "auto", "messages": MSG, "max_tokens": 4})
        assert status == 200, out
        d = decision(headers)
        est = {c["name"]: c["cost_usd"] for c in d["candidates"]}
        assert d["served"] == "big" and d["reason"] == "cascade_low_confidence", d
        assert d["cost_usd"] == est["big"] and est["big"] > est["cheap"], d
        c = d["cascade"]
        assert (c["first_input_tokens"], c["first_output_tokens"]) == (10, 2), c
        s.wait_row(lambda r: r["status"] == 200)
        out = subprocess.run([str(BIN), "logs", "--db", str(s.db), "--summary", "--format", "json"],
                             capture_output=True, text=True, check=True).stdout
        models = {m["served_model"]: m for m in json.loads(out)["models"]}
        # The row holds both calls (20 prompt, 4 answer tokens); each model gets its own.
        assert (models["big"]["input_tokens"], models["big"]["output_tokens"]) == (10, 2), models
        assert (models["cheap"]["input_tokens"], models["cheap"]["output_tokens"]) == (10, 2), models
        assert models["cheap"]["requests"] == 0 and models["big"]["requests"] == 1, models
    finally:
        s.stop()


def test_a_summary_of_an_empty_period_bills_plus_zero(gateway):
    out = subprocess.run([str(BIN), "logs", "--db", str(gateway.db), "--summary", "--since", "2999-01-01T00:00:00Z"],
                         capture_output=True, text=True, check=True)
    assert "0 requests, $0.000000 billed." in out.stdout and "-0.0" not in out.stdout, out.stdout


# A prompt and a `max_tokens` that do not fit together in a local model's context (512 here).


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_a_max_tokens_beyond_a_local_models_context_is_a_400_naming_it(gateway, field):
    status, _, body = request(gateway.base, "POST", "/v1/chat/completions",
                              {"model": "small", "messages": MSG, field: 600})
    err = json.loads(body)["error"]
    assert status == 400 and err["type"] == "invalid_request_error", body
    assert err["param"] == field and err["code"] == "context_length_exceeded", err
    assert "maximum context length is 512 tokens" in err["message"] and "in the messages, 600 in the completion" in err["message"], err
    # Within the context it is served.
    status, _, body = request(gateway.base, "POST", "/v1/chat/completions",
                              {"model": "small", "messages": MSG, field: 4})
    assert status == 200, body


def test_a_text_completion_whose_max_tokens_does_not_fit_is_a_400_too(gateway):
    status, _, body = request(gateway.base, "POST", "/v1/completions",
                              {"model": "small", "prompt": "The capital of France is", "max_tokens": 510})
    err = json.loads(body)["error"]
    assert status == 400 and err["param"] == "max_tokens" and err["code"] == "context_length_exceeded", body
    assert "512 tokens" in err["message"] and "in the prompt, 510 in the completion" in err["message"], err
    status, _, body = request(gateway.base, "POST", "/v1/completions",
                              {"model": "small", "prompt": "The capital of France is", "max_tokens": 4})
    assert status == 200, body


def test_auto_does_not_choose_a_local_model_the_max_tokens_would_overflow(gateway, fake):
    # Threshold 1: every request is easy enough for the small model, unless it cannot fit.
    easy = {"x-rightmodel-threshold": "1.0"}
    for path, body in [("/v1/chat/completions", {"messages": MSG}), ("/v1/completions", {"prompt": "The capital of France is"})]:
        status, headers, out = request(gateway.base, "POST", path, dict(body, model="auto", max_tokens=4), headers=easy)
        assert status == 200 and headers["x-rightmodel-model"] == "small", out
        status, headers, out = request(gateway.base, "POST", path, dict(body, model="auto", max_tokens=600), headers=easy)
        assert status == 200 and headers["x-rightmodel-model"] == "fake", out
        d = decision(headers)
        assert d["served"] == "fake", d


# `model: "auto"` on /v1/completions: routed as chat is, the decision in the headers and the log.


def test_a_text_completion_with_auto_is_routed_and_says_so(gateway, fake):
    prompt = "The capital of France is"
    for threshold, served in [("1.0", "small"), ("0.0", "fake")]:
        status, headers, body = request(gateway.base, "POST", "/v1/completions",
                                        {"model": "auto", "prompt": prompt, "max_tokens": 4},
                                        headers={"x-rightmodel-threshold": threshold})
        assert status == 200, body
        assert headers["x-rightmodel-model"] == served and json.loads(body)["model"] == served
        d = decision(headers)
        assert d["served"] == served and d["reason"], d
        rid = headers["x-request-id"]
        row = gateway.wait_row(lambda r: r["id"] == rid)
        assert row["requested_model"] == "auto" and row["served_model"] == served and row["reason"] == d["reason"], row
        assert json.loads(row["decision"])["served"] == served
    # Streamed too.
    status, headers, body = request(gateway.base, "POST", "/v1/completions",
                                    {"model": "auto", "prompt": prompt, "max_tokens": 4, "stream": True},
                                    headers={"x-rightmodel-threshold": "1.0"})
    assert status == 200 and headers["x-rightmodel-model"] == "small" and decision(headers)["served"] == "small"
    assert sse_chunks(body)[-1] == "[DONE]"


def test_a_routed_text_completion_falls_back_as_chat_does(tmp_path, fake):
    cfg = f"""
[[local]]
name = "small"
model = "gemma3-270m"
ctx_per_slot = 512

[[upstream]]
name = "fake"
base_url = "http://127.0.0.1:{fake.port}/v1"
max_retries = 0
fallback = ["small"]

[route]
candidates = ["small", "fake"]
threshold = 0.0
"""
    s = Server(tmp_path, cfg, "completion-fallback")
    try:
        fake.mode = {"kind": "status", "status": 500}
        for stream in [False, True]:
            status, headers, body = request(s.base, "POST", "/v1/completions",
                                            {"model": "auto", "prompt": "The capital of France is", "max_tokens": 4,
                                             "stream": stream})
            assert status == 200 and headers["x-rightmodel-model"] == "small", body
            d = decision(headers)
            assert d["served"] == "small" and d["fallback_from"] == "fake" and d["failed"][0]["model"] == "fake", d
            rid = headers["x-request-id"]
            row = s.wait_row(lambda r: r["id"] == rid)
            assert row["served_model"] == "small" and json.loads(row["decision"])["fallback_from"] == "fake", row
    finally:
        fake.mode = {"kind": "ok"}
        s.stop()
