"""Forwarding to an OpenAI-compatible upstream: a second real `rightmodel serve` acts as the large
model, behind a fault-injecting proxy (delay, 5xx, resets, streams cut mid-way)."""
import json

import openai
import pytest

from conftest import FaultProxy, Server, leave_after

MSG = [{"role": "user", "content": "The capital of France is"}]


def cost(u):
    """What the gateway bills "large" for usage `u`: cache hits at the cached price."""
    cached = (u.prompt_tokens_details.cached_tokens or 0) if u.prompt_tokens_details else 0
    return ((u.prompt_tokens - cached) * 2.0 + cached * 0.5 + u.completion_tokens * 8.0) / 1e6


@pytest.fixture(scope="module")
def proxy(upstream_server):
    p = FaultProxy(upstream_server.port)
    yield p
    p.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, proxy):
    cfg = f"""
[[local]]
name = "small"
model = "gemma3-270m"
ctx_per_slot = 1024

[embedding]
name = "minilm-l6"
model = "minilm-l6"

[[upstream]]
name = "large"
base_url = "http://127.0.0.1:{proxy.port}/v1"
model = "gemma3-270m"
input_per_mtok = 2.0
output_per_mtok = 8.0
cached_input_per_mtok = 0.5
connect_timeout_ms = 1000
first_token_timeout_ms = 60000
total_timeout_ms = 20000
max_retries = 2
fallback = ["small"]

[[upstream]]
name = "large-nofallback"
base_url = "http://127.0.0.1:{proxy.port}/v1"
model = "gemma3-270m"
first_token_timeout_ms = 1500
max_retries = 1

[[upstream]]
name = "large-azure"
base_url = "http://127.0.0.1:{proxy.port}/v1?api-version=2024-10-21"
model = "gemma3-270m"
api_key_env = "RIGHTMODEL_TEST_AZURE_KEY"
api_key_header = "api-key"
headers = {{ "X-Team" = "search" }}

[[upstream]]
name = "dead"
base_url = "http://127.0.0.1:9/v1"
connect_timeout_ms = 300
max_retries = 1
fallback = ["small"]

[[upstream]]
name = "dead-then-large"
base_url = "http://127.0.0.1:9/v1"
connect_timeout_ms = 300
max_retries = 1
fallback = ["large-nofallback"]

[route]
candidates = ["small", "large"]
"""
    # A key mounted from a file ends in a newline.
    s = Server(tmp_path_factory.mktemp("gw"), cfg, "gateway", env={"RIGHTMODEL_TEST_AZURE_KEY": "sekrit\n"})
    yield s
    s.stop()


@pytest.fixture()
def gw(gateway, proxy):
    proxy.mode = {"kind": "pass"}
    return openai.OpenAI(base_url=gateway.url("/v1"), api_key="x", max_retries=0, timeout=60)


def failed_stream(gw, proxy, mode):
    """Streams from `large-nofallback` with the proxy in `mode`, expecting a refusal before the 200: the
    status the client got and how many times the upstream was asked."""
    proxy.mode = mode
    hits = proxy.hits
    with pytest.raises(openai.APIStatusError) as e:
        for _ in gw.chat.completions.create(model="large-nofallback", messages=MSG, max_tokens=4, stream=True):
            pass
    return e.value.status_code, proxy.hits - hits


def test_passthrough_matches_direct_call(gw, upstream_server):
    direct = openai.OpenAI(base_url=upstream_server.url("/v1"), api_key="x")
    want = direct.chat.completions.create(model="gemma3-270m", messages=MSG, max_tokens=10, temperature=0)
    r = gw.chat.completions.with_raw_response.create(model="large", messages=MSG, max_tokens=10, temperature=0)
    got = r.parse()
    assert r.headers["x-rightmodel-model"] == "large"
    assert got.model == "large"
    assert got.choices[0].message.content == want.choices[0].message.content
    assert got.usage.completion_tokens == want.usage.completion_tokens
    # The upstream's token breakdown (its cache hits) reaches the client.
    assert got.usage.prompt_tokens_details is not None
    assert got.usage.prompt_tokens_details.cached_tokens is not None


def test_cache_hits_are_billed_at_the_cached_price(gw, gateway):
    """The upstream reports the prompt tokens it reused from its cache; the log prices them at
    `cached_input_per_mtok`, not as full input."""
    msgs = [{"role": "user", "content": "Name three rivers of Europe, one per line."}]
    gw.chat.completions.create(model="large", messages=msgs, max_tokens=4, temperature=0)
    seen = {r["id"] for r in gateway.logs()}
    got = gw.chat.completions.create(model="large", messages=msgs, max_tokens=4, temperature=0)
    u = got.usage
    assert 0 < u.prompt_tokens_details.cached_tokens <= u.prompt_tokens, u
    row = gateway.wait_row(lambda r: r["id"] not in seen and r["served_model"] == "large")
    assert abs(row["cost_usd"] - cost(u)) < 1e-12
    assert row["cost_usd"] < (u.prompt_tokens * 2.0 + u.completion_tokens * 8.0) / 1e6
    assert row["cached_tokens"] == u.prompt_tokens_details.cached_tokens and row["input_tokens"] == u.prompt_tokens


def test_complete_answers_carry_what_they_cost(gw, gateway):
    """`x-rightmodel-cost-usd` is what the log bills: the upstream's usage at its prices, 0 for local."""
    r = gw.chat.completions.with_raw_response.create(model="large", messages=MSG, max_tokens=4, temperature=0)
    assert abs(float(r.headers["x-rightmodel-cost-usd"]) - cost(r.parse().usage)) < 1e-9
    row = gateway.wait_row(lambda x: x["id"] == r.headers["x-request-id"])
    assert abs(row["cost_usd"] - float(r.headers["x-rightmodel-cost-usd"])) < 1e-9
    r = gw.chat.completions.with_raw_response.create(model="small", messages=MSG, max_tokens=4, temperature=0)
    assert float(r.headers["x-rightmodel-cost-usd"]) == 0.0


def test_an_answer_without_usage_is_billed_an_estimate_and_says_so(gw, gateway, proxy):
    proxy.mode = {"kind": "no_usage"}
    r = gw.chat.completions.with_raw_response.create(model="large", messages=MSG, max_tokens=4, temperature=0)
    assert r.parse().usage is None
    billed = float(r.headers["x-rightmodel-cost-usd"])
    assert billed > 0
    row = gateway.wait_row(lambda x: x["id"] == r.headers["x-request-id"])
    assert abs(row["cost_usd"] - billed) < 1e-9 and "usage estimated" in row["error"], row


def test_usage_in_other_forms_is_read_or_estimated_never_a_failed_answer(gw, gateway, proxy):
    """Integral floats (`10.0`) are read as counts; a count that is not one (negative) leaves the answer
    billed by estimate; either way the client gets its answer."""
    proxy.mode = {"kind": "float_usage"}
    r = gw.chat.completions.with_raw_response.create(model="large", messages=MSG, max_tokens=4, temperature=0)
    u = r.parse().usage
    assert u.completion_tokens == 4 and u.prompt_tokens > 0
    row = gateway.wait_row(lambda x: x["id"] == r.headers["x-request-id"])
    assert row["status"] == 200 and row["output_tokens"] == 4 and row["error"] is None, row
    proxy.mode = {"kind": "bad_usage"}
    r = gw.chat.completions.with_raw_response.create(model="large", messages=MSG, max_tokens=4, temperature=0)
    assert r.parse().choices[0].message.content
    row = gateway.wait_row(lambda x: x["id"] == r.headers["x-request-id"])
    assert row["status"] == 200 and row["cost_usd"] > 0 and "usage estimated" in row["error"], row


def test_eval_route_compares_small_large_and_auto_through_the_gateway(gateway, tmp_path):
    """`rightmodel eval route` asks every model every case through the gateway and reports quality,
    latency, cost and the routing mix as a table, JSON, a chart and every answer."""
    import subprocess

    from conftest import BIN

    data = tmp_path / "cases.jsonl"
    data.write_text(
        "\n".join(json.dumps(c) for c in [
            {"prompt": "The capital of France is", "answer": "Paris"},
            {"prompt": "Prove that there are infinitely many primes, step by step, with every detail.", "answer": ["Euclid", "prime"]},
            {"messages": [{"role": "user", "content": "Two plus two equals"}], "answer": ["4", "four"]},
        ]) + "\n"
    )
    out = tmp_path / "report"
    r = subprocess.run(
        [str(BIN), "eval", "route", "--data", str(data), "--models", "small,large,auto",
         "--base-url", gateway.url("/v1"), "--max-tokens", "8", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    models = json.loads(r.stdout.strip().splitlines()[-1])["models"]
    by = {m["model"]: m for m in models}
    assert list(by) == ["small", "large", "auto"]
    assert all(m["requests"] == 3 and m["errors"] == 0 and 0 <= m["quality"] <= 1 for m in models)
    assert by["small"]["cost_usd"] == 0 and by["small"]["served"] == {"small": 3}
    assert by["large"]["cost_usd"] > 0 and by["large"]["served"] == {"large": 3}
    assert set(by["auto"]["served"]) <= {"small", "large"} and sum(by["auto"]["served"].values()) == 3
    assert by["auto"]["cost_usd"] <= by["large"]["cost_usd"] * 1.5
    answers = [json.loads(l) for l in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 9 and [a["case"] for a in answers[:3]] == [0, 0, 0]
    large_cost = sum(a["cost_usd"] for a in answers if a["model"] == "large")
    assert abs(large_cost - by["large"]["cost_usd"]) < 1e-12
    md = (out / "compare.md").read_text()
    assert "| small |" in md and "| large |" in md and "| auto |" in md and "compare.svg" in md
    assert (out / "compare.svg").read_text().startswith("<svg")
    assert "| model | quality (contains)" in r.stdout
    # Streamed: the same comparison with the time to the first token, costs from the usage chunks.
    r = subprocess.run(
        [str(BIN), "eval", "route", "--data", str(data), "--models", "small,large",
         "--base-url", gateway.url("/v1"), "--max-tokens", "8", "--stream", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    streamed = {m["model"]: m for m in json.loads(r.stdout.strip().splitlines()[-1])["models"]}
    assert all(m["errors"] == 0 and 0 < m["ttft_p50_ms"] <= m["p50_ms"] for m in streamed.values()), streamed
    assert streamed["small"]["cost_usd"] == 0 and streamed["large"]["cost_usd"] > 0, streamed
    assert streamed["large"]["served"] == {"large": 3}
    assert "first token p50 ms" in r.stdout


def test_log_summary_totals_the_rows(gw, gateway):
    """`logs --summary` adds up the log per served model and prices what `auto` saved."""
    import subprocess

    from conftest import BIN

    gw.chat.completions.create(model="auto", messages=MSG, max_tokens=4, temperature=0)
    gw.chat.completions.create(model="large", messages=MSG, max_tokens=4, temperature=0)
    for _ in range(50):
        before = gateway.logs()
        r = subprocess.run([str(BIN), "logs", "--db", str(gateway.db), "--summary", "--format", "json"],
                           capture_output=True, text=True, timeout=60)
        if len(gateway.logs()) == len(before):
            break
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["requests"] == len(before)
    by = {m["served_model"]: m for m in s["models"]}
    large = [x for x in before if x["served_model"] == "large"]
    assert by["large"]["requests"] == len(large)
    assert abs(by["large"]["cost_usd"] - sum(x["cost_usd"] for x in large)) < 1e-9
    assert by["large"]["output_tokens"] == sum(x["output_tokens"] for x in large)
    auto = [x for x in before if x["requested_model"] == "auto"]
    assert s["auto_requests"] == len(auto) > 0
    assert s["auto_cost_if_largest_usd"] > 0
    md = subprocess.run([str(BIN), "logs", "--db", str(gateway.db), "--summary"], capture_output=True, text=True, timeout=60)
    assert md.returncode == 0 and "| large |" in md.stdout and "`auto`:" in md.stdout, md.stdout


def test_eval_route_refuses_models_the_gateway_does_not_serve(gateway, tmp_path):
    import subprocess

    from conftest import BIN

    data = tmp_path / "cases.jsonl"
    data.write_text(json.dumps({"prompt": "Hi", "answer": "hello"}) + "\n")
    r = subprocess.run([str(BIN), "eval", "route", "--data", str(data), "--models", "small,gpt-9",
                        "--base-url", gateway.url("/v1")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "does not serve `gpt-9`" in r.stderr and "small" in r.stderr, r.stderr
    r = subprocess.run([str(BIN), "eval", "route", "--data", str(data), "--models", "small",
                        "--base-url", "http://127.0.0.1:9/v1"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "is the gateway running" in r.stderr, r.stderr
    data.write_text(json.dumps({"prompt": "Hi"}) + "\n")
    r = subprocess.run([str(BIN), "eval", "route", "--data", str(data), "--models", "small",
                        "--base-url", gateway.url("/v1")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "cases.jsonl:1" in r.stderr and "answer" in r.stderr, r.stderr


def test_streaming_passthrough_and_cost(gw, gateway):
    seen = {r["id"] for r in gateway.logs()}
    chunks = list(gw.chat.completions.create(
        model="large", messages=MSG, max_tokens=10, temperature=0, stream=True, stream_options={"include_usage": True}
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage.completion_tokens == 10
    assert all(c.model == "large" for c in chunks)
    row = gateway.wait_row(lambda r: r["stream"] and r["id"] not in seen)
    u = chunks[-1].usage
    assert row["served_model"] == "large"
    assert abs(row["cost_usd"] - cost(u)) < 1e-12


def test_several_choices_pass_through_and_auto_routes_them_directly(gw, gateway, proxy):
    """`n` reaches the upstream as sent and its choices come back, streamed under their indexes and billed in
    full; `auto` answers such a request with one model (no cascade); a local model writes at most 16
    choices, so n=17 there is a 400 naming `n`."""
    kw = dict(messages=MSG, max_tokens=6, temperature=1.0, seed=3)
    r = gw.chat.completions.with_raw_response.create(model="large", n=2, **kw)
    got = r.parse()
    assert [c.index for c in got.choices] == [0, 1] and json.loads(proxy.last_body)["n"] == 2
    row = gateway.wait_row(lambda x: x["id"] == r.headers["x-request-id"])
    assert row["output_tokens"] == got.usage.completion_tokens and abs(row["cost_usd"] - cost(got.usage)) < 1e-12
    seen = set()
    for chunk in gw.chat.completions.create(model="large", n=2, stream=True, **kw):
        seen.update(ch.index for ch in chunk.choices)
    assert seen == {0, 1}
    r = gw.chat.completions.with_raw_response.create(
        model="auto", n=2, extra_body={"rightmodel": {"strategy": "cascade"}}, **kw
    )
    decision = json.loads(r.headers["x-rightmodel-decision"])
    assert "cascade" not in decision["reason"] and len(r.parse().choices) == 2, decision
    with pytest.raises(openai.BadRequestError) as e:
        gw.completions.create(model="small", prompt="The capital of France is", max_tokens=4, n=17)
    assert e.value.param == "n"


def test_text_completion_streams_from_upstream(gw, gateway, upstream_server):
    """Legacy /v1/completions with stream=True on an upstream model: chunks pass through re-labelled,
    the text equals the upstream's own answer, usage is passed on when asked and logged with its cost."""
    direct = openai.OpenAI(base_url=upstream_server.url("/v1"), api_key="x")
    want = direct.completions.create(model="gemma3-270m", prompt="The capital of France is", max_tokens=8, temperature=0)
    seen = {r["id"] for r in gateway.logs()}
    chunks = list(gw.completions.create(model="large", prompt="The capital of France is", max_tokens=8, temperature=0,
                                        stream=True, stream_options={"include_usage": True}))
    assert all(c.model == "large" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == want.choices[0].text
    u = chunks[-1].usage
    assert u.completion_tokens == want.usage.completion_tokens
    row = gateway.wait_row(lambda r: r["stream"] and r["id"] not in seen)
    assert row["status"] == 200 and row["served_model"] == "large"
    assert abs(row["cost_usd"] - cost(u)) < 1e-12
    # Without include_usage the usage chunk is not passed on (it is still logged).
    plain = list(gw.completions.create(model="large", prompt="The capital of France is", max_tokens=8, temperature=0, stream=True))
    assert all(c.usage is None for c in plain)


def test_text_completion_stream_cut_mid_way_is_502(gw, proxy, gateway):
    proxy.mode = {"kind": "cut", "after_bytes": 700}
    got = []
    with pytest.raises(openai.APIError):
        for c in gw.completions.create(model="large", prompt="Once upon a time", max_tokens=40, temperature=0, stream=True):
            got.append(c)
    assert got, "part of the answer arrived before the upstream died"
    row = gateway.wait_row(lambda r: r["status"] == 502 and r["stream"] and r["endpoint"] == "/v1/completions")
    assert "mid-stream" in row["error"]


WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_tool_calls_pass_through_upstream(gw, gateway):
    """tools / tool_choice go upstream as sent and tool calls come back, whole or streamed."""
    kw = dict(messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=WEATHER, tool_choice="required",
              max_tokens=40, temperature=0)
    c = gw.chat.completions.create(model="large", **kw)
    call = c.choices[0].message.tool_calls[0]
    assert c.model == "large" and c.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    chunks = list(gw.chat.completions.create(model="large", stream=True, **kw))
    deltas = [d for ch in chunks if ch.choices for d in (ch.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == json.loads(call.function.arguments)


def test_tool_requests_route_and_fall_back_to_models_that_take_them(gw, gateway):
    """`auto` leaves a call the model must decide on (tool_choice auto) to a model that decides (the
    upstream, never the local one); a forced call may go local. A fallback chain skips a model that
    cannot take the request instead of stopping at it."""
    msgs = [{"role": "user", "content": "Weather in Oslo?"}]
    seen = {r["id"] for r in gateway.logs()}
    try:
        gw.chat.completions.create(model="auto", messages=msgs, tools=WEATHER, max_tokens=20)
    except openai.BadRequestError:
        pass  # the upstream here is itself a local model, which refuses tool_choice auto
    row = gateway.wait_row(lambda r: r["id"] not in seen and r["requested_model"] == "auto")
    assert row["served_model"] == "large"
    forced = gw.chat.completions.with_raw_response.create(
        model="auto", messages=msgs, tools=WEATHER, tool_choice="required", max_tokens=40, temperature=0)
    assert forced.parse().choices[0].message.tool_calls
    # `dead` (unreachable) falls back to the local `small`, which fills in the forced call, streamed.
    r = gw.chat.completions.with_raw_response.create(
        model="dead", messages=msgs, tools=WEATHER, tool_choice="required", max_tokens=40, temperature=0, stream=True)
    assert r.headers["x-rightmodel-model"] == "small"
    deltas = [d for ch in r.parse() if ch.choices for d in (ch.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].function.name == "get_weather"
    # With tool_choice auto the local fallback cannot serve: the outage is the error, not a 400.
    with pytest.raises(openai.APIStatusError) as e:
        gw.chat.completions.create(model="dead", messages=msgs, tools=WEATHER, max_tokens=20)
    assert e.value.status_code == 502


def test_retries_on_5xx_with_retry_after(gw, proxy, gateway):
    proxy.mode = {"kind": "fail", "remaining": 2, "status": 503, "retry_after": 0}
    hits = proxy.hits
    c = gw.chat.completions.create(model="large", messages=MSG, max_tokens=4, temperature=0)
    assert c.model == "large"
    assert proxy.hits - hits == 3


def test_retries_exhausted_fall_back_to_next_model(gw, proxy, gateway):
    proxy.mode = {"kind": "fail", "remaining": 10, "status": 500}
    r = gw.chat.completions.with_raw_response.create(model="large", messages=MSG, max_tokens=4, temperature=0)
    assert r.headers["x-rightmodel-model"] == "small"
    assert r.parse().model == "small"


def test_no_fallback_gives_502(gw, proxy):
    proxy.mode = {"kind": "fail", "remaining": 10, "status": 500}
    with pytest.raises(openai.APIStatusError) as e:
        gw.chat.completions.create(model="large-nofallback", messages=MSG, max_tokens=4)
    assert e.value.status_code == 502


def test_a_fallback_chain_that_fails_throughout_says_what_was_tried(gw, proxy, gateway):
    """When every model of a named model's chain fails, the error carries a decision (`fallback_failed`)
    listing each model and why it failed, in the response headers and in the log row."""
    proxy.mode = {"kind": "fail", "remaining": 10, "status": 500}
    r = gw.chat.completions.with_raw_response
    with pytest.raises(openai.APIStatusError) as e:
        r.create(model="dead-then-large", messages=MSG, max_tokens=4)
    assert e.value.status_code == 502
    h = e.value.response.headers
    d = json.loads(h["x-rightmodel-decision"])
    assert h["x-rightmodel-model"] == "large-nofallback" == d["served"], dict(h)
    assert d["reason"] == "fallback_failed" and d["requested"] == "dead-then-large", d
    assert [f["model"] for f in d["failed"]] == ["dead-then-large", "large-nofallback"], d
    assert all(f["error"] for f in d["failed"]), d
    row = gateway.wait_row(lambda x: x["id"] == h["x-request-id"])
    assert row["status"] == 502 and row["reason"] == "fallback_failed" and row["served_model"] == "large-nofallback", row
    assert json.loads(row["decision"])["failed"] == d["failed"], row


def test_a_connection_lost_at_once_is_retried_but_not_one_lost_later(gw, proxy):
    """A connection that breaks as soon as the request is sent (a pooled connection the server was closing)
    is retried; one that breaks after a while may have left the upstream generating (and billing), so the
    gateway does not ask again. Either way the client gets a 502 (its SDK decides about retrying)."""
    for seconds, tries in ((0, 2), (1.5, 1)):
        proxy.mode = {"kind": "reset", "seconds": seconds}
        hits = proxy.hits
        with pytest.raises(openai.APIStatusError) as e:
            gw.chat.completions.create(model="large-nofallback", messages=MSG, max_tokens=4)
        assert e.value.status_code == 502
        assert proxy.hits == hits + tries, seconds


def test_dead_upstream_falls_back(gw, gateway):
    r = gw.chat.completions.with_raw_response.create(model="dead", messages=MSG, max_tokens=4)
    assert r.headers["x-rightmodel-model"] == "small"
    # A named model's fallback says which model failed and why, in the response and in the log.
    d = json.loads(r.headers["x-rightmodel-decision"])
    assert d["reason"] == "fallback" and d["fallback_from"] == "dead" and d["served"] == "small", d
    assert d["failed"][0]["model"] == "dead" and d["failed"][0]["error"], d
    row = gateway.wait_row(lambda x: x["id"] == r.headers["x-request-id"])
    assert row["reason"] == "fallback" and json.loads(row["decision"])["fallback_from"] == "dead", row
    # A named model that answers itself carries no decision.
    r = gw.chat.completions.with_raw_response.create(model="small", messages=MSG, max_tokens=2)
    assert "x-rightmodel-decision" not in r.headers
    # Text completions follow the same chain, streamed or not, and name the model that answered.
    r = gw.completions.with_raw_response.create(model="dead", prompt="The capital of France is", max_tokens=4)
    assert r.headers["x-rightmodel-model"] == "small" and r.parse().model == "small"
    d = json.loads(r.headers["x-rightmodel-decision"])
    assert d["reason"] == "fallback" and d["fallback_from"] == "dead" and d["failed"][0]["model"] == "dead", d
    row = gateway.wait_row(lambda x: x["id"] == r.headers["x-request-id"])
    assert row["endpoint"] == "/v1/completions" and row["served_model"] == "small", row
    assert row["reason"] == "fallback" and json.loads(row["decision"])["failed"][0]["model"] == "dead", row
    chunks = list(gw.completions.create(model="dead", prompt="The capital of France is", max_tokens=4, stream=True))
    assert chunks and all(c.model == "small" for c in chunks)


def test_a_text_completion_stream_breaking_before_text_falls_back(gw, proxy):
    """As for chat: a text-completion stream that opens and breaks before any text has sent the client
    nothing, so the fallback answers the whole stream instead of the client getting an error event."""
    proxy.mode = {"kind": "break_after_role"}
    r = gw.completions.with_raw_response.create(model="large", prompt="The capital of France is", max_tokens=4,
                                                stream=True)
    assert r.headers["x-rightmodel-model"] == "small"
    chunks = list(r.parse())
    assert "".join(c.choices[0].text for c in chunks if c.choices) and all(c.model == "small" for c in chunks)


def test_images_and_logit_bias_go_to_upstreams_as_sent(gw, proxy):
    """Content the gateway does not read (an image part, `logit_bias`) is passed on to upstream models
    as it was sent; a local model refuses it by name instead of answering without it, and `auto` sends
    such a request to a model that can take it."""
    img = [{"type": "text", "text": "What is in this picture?"},
           {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]
    msgs = [{"role": "user", "content": img}]
    with pytest.raises(openai.BadRequestError) as e:
        gw.chat.completions.create(model="small", messages=msgs, max_tokens=2)
    assert e.value.param == "messages[0].content" and "`small` reads only text" in e.value.message, e.value
    with pytest.raises(openai.BadRequestError) as e:
        gw.chat.completions.create(model="small", messages=MSG, max_tokens=2, logit_bias={"100": -100})
    assert e.value.param == "logit_bias"
    # This test's upstream is itself a gateway on a local model, which refuses the image in turn: what
    # matters is what it was sent.
    for model in ["large", "auto"]:
        hits = proxy.hits
        with pytest.raises(openai.BadRequestError):
            gw.chat.completions.create(model=model, messages=msgs, max_tokens=2, logit_bias={"100": -100})
        assert proxy.hits == hits + 1, model
        sent = json.loads(proxy.last_body)
        assert sent["messages"][0]["content"] == img and sent["logit_bias"] == {"100": -100}, sent


def test_first_token_timeout_is_504(gw, proxy):
    """`first_token_timeout_ms` bounds the wait for a stream's first event: a stream that sends nothing in
    time is a 504 before anything reached the client, not asked again (the upstream may be generating). A
    non-streaming answer arrives whole, so only the total timeout bounds it: a slow answer is waited for,
    not re-sent and paid for again."""
    assert failed_stream(gw, proxy, {"kind": "delay", "seconds": 4}) == (504, 1)
    proxy.mode = {"kind": "delay", "seconds": 2}
    hits = proxy.hits
    r = gw.chat.completions.create(model="large-nofallback", messages=MSG, max_tokens=4)
    assert r.choices[0].message.content is not None
    assert proxy.hits == hits + 1, "a slow non-streaming answer was requested again"


def test_stream_keepalives_are_life_and_a_first_error_event_is_retried(gw, proxy):
    """Comments (keep-alives) before the first event are a live upstream thinking: waited for, not re-sent
    (and paid for again). A stream whose first event is an error is retried, then a 502 before the 200."""
    proxy.mode = {"kind": "keepalive_first", "seconds": 3}
    hits = proxy.hits
    chunks = list(gw.chat.completions.create(model="large-nofallback", messages=MSG, max_tokens=4, stream=True))
    assert chunks and proxy.hits == hits + 1
    assert failed_stream(gw, proxy, {"kind": "error_first"}) == (502, 2)


def test_stream_that_stalls_before_its_first_event_is_not_asked_again(gw, proxy):
    """200 and event-stream headers, then silence: nothing has reached the client, so it is a failed call
    (a 504, not a 200 whose stream breaks), and the stalled upstream is not asked again (it may still be
    generating); a fallback, where there is one, answers."""
    assert failed_stream(gw, proxy, {"kind": "stall_first", "seconds": 3}) == (504, 1)


def test_a_stream_that_ends_before_any_event_is_retried(gw, proxy):
    """`data: [DONE]` before any chunk is no answer: retried, then a 502 (it was a 200 with an empty stream)."""
    assert failed_stream(gw, proxy, {"kind": "done_first"}) == (502, 2)


def test_a_json_answer_to_a_stream_request_falls_back_at_once(gw, proxy):
    """A server that answers a stream request with a JSON body (an error, or a whole answer) is not asked
    again (each try could be billed); the fallback answers."""
    proxy.mode = {"kind": "json_for_stream"}
    hits = proxy.hits
    r = gw.chat.completions.with_raw_response.create(model="large", messages=MSG, max_tokens=4, stream=True)
    assert r.headers["x-rightmodel-model"] == "small"
    assert [c for c in r.parse() if c.choices and c.choices[0].delta.content]
    assert proxy.hits == hits + 1


def test_a_whole_json_answer_to_a_stream_request_is_passed_on(gw, proxy, gateway, upstream_server):
    """A server that ignores `stream` answers with one JSON completion, generated and billed: the client
    gets it as a stream (chat and text completions), with its usage and cost, from one upstream call."""
    direct = openai.OpenAI(base_url=upstream_server.url("/v1"), api_key="x")
    want = direct.chat.completions.create(model="gemma3-270m", messages=MSG, max_tokens=6, temperature=0)
    proxy.mode = {"kind": "ignore_stream"}
    hits, seen = proxy.hits, {r["id"] for r in gateway.logs()}
    r = gw.chat.completions.with_raw_response.create(model="large", messages=MSG, max_tokens=6, temperature=0,
                                                     stream=True, stream_options={"include_usage": True})
    assert r.headers["x-rightmodel-model"] == "large"
    chunks = list(r.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    u = chunks[-1].usage
    assert u.completion_tokens == want.usage.completion_tokens and proxy.hits == hits + 1
    row = gateway.wait_row(lambda r: r["stream"] and r["id"] not in seen)
    assert row["status"] == 200 and row["served_model"] == "large" and abs(row["cost_usd"] - cost(u)) < 1e-12

    want = direct.completions.create(model="gemma3-270m", prompt="Once upon a time", max_tokens=6, temperature=0)
    chunks = list(gw.completions.create(model="large", prompt="Once upon a time", max_tokens=6, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == want.choices[0].text


def test_an_https_upstream_signed_by_a_private_ca(tmp_path_factory, upstream_server):
    """`ca_file` trusts a private CA for one upstream (chat, streamed or not); without it the same
    server's certificate is refused; a `ca_file` that is missing or holds no certificate stops the start."""
    import ssl

    import trustme

    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    tls = FaultProxy(upstream_server.port, ssl_context=ctx)
    d = tmp_path_factory.mktemp("tls")
    (d / "tls").mkdir()
    ca.cert_pem.write_to_path(str(d / "tls" / "private-ca.pem"))
    upstreams = f"""
[[upstream]]
name = "private"
base_url = "https://127.0.0.1:{tls.port}/v1"
model = "gemma3-270m"
ca_file = "private-ca.pem"

[[upstream]]
name = "untrusted"
base_url = "https://127.0.0.1:{tls.port}/v1"
model = "gemma3-270m"
max_retries = 0
"""
    s = Server(d, upstreams, "tls")
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
        assert c.chat.completions.create(model="private", messages=MSG, max_tokens=3).choices[0].message.content
        chunks = list(c.chat.completions.create(model="private", messages=MSG, max_tokens=3, stream=True))
        assert any(ch.choices and ch.choices[0].delta.content for ch in chunks)
        hits = tls.hits
        with pytest.raises(openai.APIStatusError) as e:
            c.chat.completions.create(model="untrusted", messages=MSG, max_tokens=3)
        assert e.value.status_code == 502 and tls.hits == hits, "the untrusted certificate ends the call in the handshake"
    finally:
        s.stop()
        tls.close()
    (d / "bad").mkdir()
    (d / "bad" / "empty.pem").write_text("not a certificate\n")
    for ca_file, says in (("missing.pem", "missing.pem"), ("empty.pem", "holds no PEM certificate")):
        with pytest.raises(RuntimeError, match=says):
            Server(d, upstreams.replace("private-ca.pem", ca_file), "bad")


def test_out_of_quota_and_long_retry_after_are_not_waited_out(gw, proxy):
    """A 429 `insufficient_quota` cannot pass by retrying, and a Retry-After beyond 10 s is the client's
    (or the fallbacks') to handle: one try each, then 502."""
    import time

    for mode in ({"kind": "fail", "remaining": 5, "status": 429, "code": "insufficient_quota"},
                 {"kind": "fail", "remaining": 5, "status": 503, "retry_after": 30}):
        proxy.mode = mode
        hits, t0 = proxy.hits, time.time()
        with pytest.raises(openai.APIStatusError) as e:
            gw.chat.completions.create(model="large-nofallback", messages=MSG, max_tokens=4)
        assert e.value.status_code == 502
        assert proxy.hits == hits + 1 and time.time() - t0 < 5
    assert e.value.response.headers.get("retry-after") == "30", "the 503's Retry-After reaches the client"


def test_partial_usage_from_an_upstream_is_read(gw, proxy, gateway):
    """Some servers send usage without completion_tokens: the answer still arrives (it failed to parse and
    was lost after the upstream billed it), the total is derived, streamed or not."""
    proxy.mode = {"kind": "partial_usage"}
    c = gw.chat.completions.create(model="large-nofallback", messages=MSG, max_tokens=4, temperature=0)
    assert c.choices[0].message.content is not None
    assert c.usage.completion_tokens == 0 and c.usage.total_tokens == c.usage.prompt_tokens > 0
    # The answer is not free: without a count of its tokens, the gateway bills an estimate from its text.
    r = gw.chat.completions.with_raw_response.create(model="large", messages=MSG, max_tokens=4)
    assert r.headers["x-rightmodel-model"] == "large" and float(r.headers["x-rightmodel-cost-usd"]) > 0
    chunks = list(gw.chat.completions.create(model="large-nofallback", messages=MSG, max_tokens=4, stream=True,
                                             stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.prompt_tokens > 0
    # A text completion stream asked for usage gets its usage chunk too (the gateway's own count).
    chunks = list(gw.completions.create(model="large-nofallback", prompt="The capital of France is", max_tokens=4,
                                        stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0, chunks[-1]


def test_azure_style_upstreams_get_their_query_key_header_and_extra_headers(gw, proxy):
    """`base_url` with a query string keeps it at the end of each call's URL; `api_key_header` carries the
    (trimmed) key; configured headers go along."""
    c = gw.chat.completions.create(model="large-azure", messages=MSG, max_tokens=4)
    assert c.model == "large-azure"
    assert proxy.last_path == "/v1/chat/completions?api-version=2024-10-21"
    assert proxy.last_headers["api-key"] == "sekrit"
    assert "authorization" not in proxy.last_headers
    assert proxy.last_headers["x-team"] == "search"


def test_upstream_dies_mid_stream(gw, proxy, gateway):
    proxy.mode = {"kind": "cut", "after_bytes": 700}
    got = []
    with pytest.raises(openai.APIError):
        for c in gw.chat.completions.create(model="large", messages=MSG, max_tokens=40, temperature=0, stream=True):
            got.append(c)
    assert got, "part of the answer arrived before the upstream died"
    # Rows are written off the request's path: waited for by what this one says, not taken from an earlier
    # stream's 502.
    row = gateway.wait_row(lambda r: r["status"] == 502 and r["stream"] and "mid-stream" in (r["error"] or ""))
    assert row["requested_model"] == "large"


def test_auto_routes_with_decision_header(gw, gateway):
    r = gw.chat.completions.with_raw_response.create(model="auto", messages=MSG, max_tokens=4, temperature=0)
    assert r.headers["x-rightmodel-model"] in ("small", "large")
    import json

    d = json.loads(r.headers["x-rightmodel-decision"])
    assert d["served"] == r.headers["x-rightmodel-model"] and d["reason"]
    row = gateway.wait_row(lambda r: r["requested_model"] == "auto")
    assert row["reason"] and row["decision"]


def _decision(r):
    import json

    return json.loads(r.headers["x-rightmodel-decision"])


def test_auto_strong_share_override(gw):
    none = gw.chat.completions.with_raw_response.create(
        model="auto", messages=MSG, max_tokens=2, extra_body={"rightmodel": {"strong_share": 0.0}})
    assert none.headers["x-rightmodel-model"] == "small"
    all_ = gw.chat.completions.with_raw_response.create(
        model="auto", messages=MSG, max_tokens=2, extra_body={"rightmodel": {"threshold": 0.0}})
    assert all_.headers["x-rightmodel-model"] != "small"
    d = _decision(all_)
    assert d["score"] is not None and d["threshold"] <= d["score"]
    assert d["cost_if_largest_usd"] >= d["cost_usd"]


PROMPTS = [
    "hi", "What is 2+2?", "Name a colour.", "Translate 'cat' to French.",
    "Prove that there are infinitely many primes.",
    "Derive the Euler-Lagrange equation for a functional J[y] = integral of L(x, y, y') dx.",
    "In a Bayesian network with nodes A->B->C, is A independent of C given B? Explain d-separation.",
    "Which of the following statements about the Krebs cycle is correct? A) It occurs in the cytosol "
    "B) It produces FADH2 C) It consumes oxygen directly D) It is anaerobic",
]


def test_auto_sends_the_calibrated_share_to_the_strong_model(gw):
    """A request escalates exactly when its score reaches the threshold that `strong_share` calibrates
    (a local model's tier must not raise the bar), so a middling share sends some prompts each way."""
    served = []
    for p in PROMPTS:
        r = gw.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": p}], max_tokens=1,
            extra_body={"rightmodel": {"strong_share": 0.5}})
        d = _decision(r)
        assert (d["served"] == "large") == (d["score"] >= d["threshold"]), d
        served.append(d["served"])
    assert "large" in served and "small" in served, served


def test_auto_limits(gw):
    r = gw.chat.completions.with_raw_response.create(
        model="auto", messages=MSG, max_tokens=2,
        extra_body={"rightmodel": {"threshold": 0.0, "max_cost_usd": 1e-9}})
    # The paid model is excluded; the free one serves.
    assert r.headers["x-rightmodel-model"] == "small"
    excluded = {c["name"]: c.get("excluded") for c in _decision(r)["candidates"]}
    assert excluded["large"] == "max_cost"
    with pytest.raises(openai.UnprocessableEntityError) as e:
        gw.chat.completions.create(model="auto", messages=MSG, max_tokens=2,
                                   extra_headers={"x-rightmodel-max-latency-ms": "0.001"})
    assert "latency" in e.value.message
    with pytest.raises(openai.BadRequestError):
        gw.chat.completions.create(model="auto", messages=MSG, extra_body={"rightmodel": {"strong_share": 3}})


def small_and_large(proxy, price, tail):
    """A gateway config with the local `small`, the encoder, and `large` behind `proxy` at `price` dollars
    per million tokens both ways, followed by `tail` (route / budget sections)."""
    return f"""
[[local]]
name = "small"
model = "gemma3-270m"
ctx_per_slot = 512

[embedding]
name = "minilm-l6"
model = "minilm-l6"

[[upstream]]
name = "large"
base_url = "http://127.0.0.1:{proxy.port}/v1"
model = "gemma3-270m"
input_per_mtok = {price}
output_per_mtok = {price}
""" + tail


# A cascade that always tries the small model first and escalates (a base model is rarely 99% sure of
# every token).
ESCALATING_CASCADE = """
[route]
strategy = "cascade"
threshold = 0.0
min_confidence = 0.99
"""


def test_budget_sends_everything_local_when_spent(tmp_path, proxy):
    proxy.mode = {"kind": "pass"}
    cfg = small_and_large(proxy, price=1000.0, tail="""
[route]
threshold = 0.0

[budget]
daily_usd = 0.02
""")
    s = Server(tmp_path, cfg, "budget")
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
        first = c.chat.completions.with_raw_response.create(model="auto", messages=MSG, max_tokens=4)
        assert first.headers["x-rightmodel-model"] == "large"
        second = c.chat.completions.with_raw_response.create(model="auto", messages=MSG, max_tokens=4)
        assert second.headers["x-rightmodel-model"] == "small"
        d = _decision(second)
        assert d["budget"]["spent_today_usd"] > 0.001
        rows = s.wait_logs(2)
        assert rows[-1]["served_model"] == "small" and rows[-2]["cost_usd"] > 0.001
        # Named, a paid model serves until the budget is spent, then is refused until midnight UTC;
        # local ones still serve.
        with pytest.raises(openai.RateLimitError) as e:
            for _ in range(10):
                c.chat.completions.create(model="large", messages=MSG, max_tokens=4)
        assert e.value.body["code"] == "daily_budget_exhausted"
        assert int(e.value.response.headers["retry-after"]) > 0
        assert c.chat.completions.create(model="small", messages=MSG, max_tokens=4).choices
    finally:
        s.stop()
    # Spend survives a restart: the budget is restored from the request log.
    s2 = Server(tmp_path, cfg, "budget")
    try:
        c = openai.OpenAI(base_url=s2.url("/v1"), api_key="x", max_retries=0)
        r = c.chat.completions.with_raw_response.create(model="auto", messages=MSG, max_tokens=4)
        assert r.headers["x-rightmodel-model"] == "small"
    finally:
        s2.stop()


def test_auto_never_refuses_for_a_budget_a_free_model_can_do_without(tmp_path, proxy):
    """Concurrent `auto` requests racing for the last of the daily budget: each is served, by the paid model
    while the budget lasts and by the local one after (a request whose choice the budget overtook chooses
    again and says so), never refused with the budget's 429."""
    import concurrent.futures as cf

    proxy.mode = {"kind": "pass"}
    cfg = small_and_large(proxy, price=1000.0, tail="""
[route]
threshold = 0.0

[budget]
daily_usd = 0.03
""")
    s = Server(tmp_path, cfg, "budget-race")
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)

        def one(_):
            r = c.chat.completions.with_raw_response.create(model="auto", messages=MSG, max_tokens=4)
            return r.headers["x-rightmodel-model"], _decision(r)

        with cf.ThreadPoolExecutor(8) as ex:
            served = list(ex.map(one, range(8)))
        names = [m for m, _ in served]
        assert "small" in names and "large" in names, names
        for m, d in served:
            if "rerouted_from" in d:
                assert m == "small" and d["rerouted_from"] == "large", d
                assert d["rerouted_because"] == "daily_budget_exhausted", d
    finally:
        s.stop()


def test_cascade_records_both_attempts(tmp_path, proxy):
    proxy.mode = {"kind": "pass"}
    cfg = small_and_large(proxy, price=1.0, tail=ESCALATING_CASCADE)
    s = Server(tmp_path, cfg, "cascade")
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
        # A base model is rarely 99% sure of every token: the answer escalates.
        r = c.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "Write a poem about the sea."}], max_tokens=12, temperature=0)
        d = _decision(r)
        assert d["cascade"]["first"] == "small" and d["cascade"]["escalated"] is True
        assert r.headers["x-rightmodel-model"] == "large"
        # With no bar to clear, the small answer is kept, streamed after its confidence is known.
        r = c.chat.completions.with_raw_response.create(
            model="auto", messages=MSG, max_tokens=6, temperature=0, stream=True,
            extra_body={"rightmodel": {"strategy": "cascade"}}, extra_headers={})
        assert r.headers["x-rightmodel-model"] in ("small", "large")
        rows = s.wait_logs(2)
        assert "cascade" in rows[0]["decision"]
    finally:
        s.stop()


def test_cascade_escalation_that_falls_back_names_the_model_that_answered(tmp_path, proxy):
    """The large model of a cascade fails and its fallback answers: the decision, the header and the log
    agree on who served, and say what failed."""
    proxy.mode = {"kind": "pass"}
    cfg = small_and_large(proxy, price=1.0, tail="""
[[upstream]]
name = "dead"
base_url = "http://127.0.0.1:9/v1"
connect_timeout_ms = 300
max_retries = 1
input_per_mtok = 5.0
output_per_mtok = 5.0
fallback = ["large"]

[route]
candidates = ["small", "dead"]
strategy = "cascade"
threshold = 0.0
min_confidence = 0.99
""")
    s = Server(tmp_path, cfg, "cascade-fallback")
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
        for stream in (False, True):
            r = c.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": "Write a poem about the sea."}],
                max_tokens=8, temperature=0, stream=stream)
            d = _decision(r)
            assert d["cascade"]["escalated"] is True and d["cascade"]["escalated_to"] == "dead", d
            assert r.headers["x-rightmodel-model"] == "large"
            assert d["served"] == "large" and d["fallback_from"] == "dead" and d["failed"][0]["model"] == "dead", d
            if stream:
                list(r.parse())
        rows = s.wait_logs(2)
        assert all(x["served_model"] == "large" and json.loads(x["decision"])["served"] == "large" for x in rows), rows
    finally:
        s.stop()


def test_unsure_document_answers_escalate_to_the_strongest_upstream_with_the_passages(tmp_path, proxy):
    """A `docs:` question the documents do not answer goes to the strongest upstream (highest tier; `dead`,
    whose fallback `large` answers) with the passages as context; the decision says so and names who
    answered, and the log bills the upstream's usage. Named directly, a collection refuses JSON output."""
    import pathlib
    import subprocess

    from conftest import BIN, fresh_home

    proxy.mode = {"kind": "pass"}
    home, env = fresh_home(tmp_path)
    handbook = pathlib.Path(__file__).resolve().parent.parent / "crates" / "docs" / "tests" / "fixtures" / "docs"
    r = subprocess.run([str(BIN), "docs", "add", "handbook", str(handbook)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    cfg = small_and_large(proxy, price=1.0, tail="""
tier = 0.5

[[upstream]]
name = "dead"
base_url = "http://127.0.0.1:9/v1"
connect_timeout_ms = 300
max_retries = 1
tier = 0.9
fallback = ["large"]

[[docs]]
name = "handbook"
""")
    s = Server(tmp_path, cfg, "docs-escalation", env={"RIGHTMODEL_HOME": str(home)})
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0, timeout=120)
        r = c.chat.completions.with_raw_response.create(
            model="docs:handbook", max_tokens=8,
            messages=[{"role": "user", "content": "What is the boiling point of liquid nitrogen in kelvin?"}])
        d = _decision(r)
        assert d["reason"] == "docs_low_confidence_escalated", d
        assert r.headers["x-rightmodel-model"] == "large" and d["served"] == "large" and d["fallback_from"] == "dead", d
        extra = r.parse().model_extra["rightmodel"]
        assert extra["passages"] and extra["passages"][0]["n"] == 1 and extra["citations"], extra
        row = s.wait_row(lambda x: x["id"] == r.headers["x-request-id"])
        u = r.parse().usage
        assert row["served_model"] == "large" and row["input_tokens"] == u.prompt_tokens and row["cost_usd"] > 0, row
        assert u.prompt_tokens > 100, "the passages went with the question"
        assert abs(float(r.headers["x-rightmodel-cost-usd"]) - row["cost_usd"]) < 1e-9
        # A confident answer stays local and its row counts the question's tokens.
        r = c.chat.completions.with_raw_response.create(
            model="docs:handbook", messages=[{"role": "user", "content": "When was the museum founded?"}])
        assert r.headers["x-rightmodel-model"] == "docs:handbook", _decision(r)
        row = s.wait_row(lambda x: x["id"] == r.headers["x-request-id"])
        assert row["input_tokens"] > 0 and row["cost_usd"] == 0, row
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="docs:handbook", response_format={"type": "json_object"},
                                      messages=[{"role": "user", "content": "When was the museum founded?"}])
        assert e.value.body["param"] == "response_format"
        # The request's cost cap binds the escalation and its fallbacks: the free `dead` is tried, its paid
        # fallback `large` is not, and the documents answer.
        hits = proxy.hits
        r = c.chat.completions.with_raw_response.create(
            model="docs:handbook", max_tokens=8, extra_body={"rightmodel": {"max_cost_usd": 1e-9}},
            messages=[{"role": "user", "content": "What is the boiling point of liquid nitrogen in kelvin?"}])
        d = _decision(r)
        assert r.headers["x-rightmodel-model"] == "docs:handbook", d
        assert d["reason"] == "docs_low_confidence_escalation_failed" and proxy.hits == hits, d
        assert d["failed"][0]["model"] == "dead", d
    finally:
        s.stop()


def test_document_escalation_stays_within_the_route_candidates_or_the_collections_choice(tmp_path, proxy):
    """Unsure document answers escalate only to an upstream among `[route] candidates` (the stronger
    `pricey` is not one), or to the collection's own `escalate_to`."""
    import pathlib
    import subprocess

    from conftest import BIN, fresh_home

    proxy.mode = {"kind": "pass"}
    home, env = fresh_home(tmp_path)
    handbook = pathlib.Path(__file__).resolve().parent.parent / "crates" / "docs" / "tests" / "fixtures" / "docs"
    for name in ("handbook", "manual"):
        r = subprocess.run([str(BIN), "docs", "add", name, str(handbook)], capture_output=True, text=True, env=env,
                           timeout=300)
        assert r.returncode == 0, r.stderr
    cfg = small_and_large(proxy, price=1.0, tail=f"""
tier = 0.5

[[upstream]]
name = "pricey"
base_url = "http://127.0.0.1:{proxy.port}/v1"
model = "gemma3-270m"
tier = 0.9

[route]
candidates = ["small", "large"]

[[docs]]
name = "handbook"

[[docs]]
name = "manual"
escalate_to = "pricey"
""")
    s = Server(tmp_path, cfg, "docs-escalation-choice", env={"RIGHTMODEL_HOME": str(home)})
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0, timeout=120)
        for coll, expected in [("handbook", "large"), ("manual", "pricey")]:
            r = c.chat.completions.with_raw_response.create(
                model=f"docs:{coll}", max_tokens=8,
                messages=[{"role": "user", "content": "What is the boiling point of liquid nitrogen in kelvin?"}])
            d = _decision(r)
            assert d["reason"] == "docs_low_confidence_escalated", d
            assert r.headers["x-rightmodel-model"] == expected and d["served"] == expected, (coll, d)
        # A follow-up goes up completed from the conversation, not as the bare last turn, and the client's
        # temperature as it sent it.
        r = c.chat.completions.with_raw_response.create(
            model="docs:handbook", max_tokens=8, temperature=0.3,
            messages=[{"role": "user", "content": "What is the boiling point of liquid nitrogen in kelvin?"},
                      {"role": "assistant", "content": "I do not know."},
                      {"role": "user", "content": "And of liquid helium?"}])
        assert _decision(r)["reason"] == "docs_low_confidence_escalated", _decision(r)
        sent = json.loads(proxy.last_body)
        assert "nitrogen" in sent["messages"][-1]["content"] and "helium" in sent["messages"][-1]["content"], sent
        assert sent["temperature"] == 0.3, sent
    finally:
        s.stop()
    bad = small_and_large(proxy, price=1.0, tail="""
[[docs]]
name = "handbook"
escalate_to = "small"
""")
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    r = subprocess.run([str(BIN), "serve", "--config", str(path), "--check"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode != 0 and "docs[0].escalate_to" in r.stderr and "small" in r.stderr, r.stderr


def test_rightmodel_options_are_checked_and_bind_named_models(gw, proxy):
    """The `rightmodel` options and `x-rightmodel-*` headers are checked on every request and errors name
    what the client sent (a misspelt cap is not dropped); a named paid model must fit the request's cost
    cap (422 before any upstream call)."""
    for kwargs, param, says in [
        ({"extra_body": {"rightmodel": {"max_cost": 1e-9}}}, "rightmodel.max_cost", "unknown option"),
        ({"extra_body": {"rightmodel": {"strong_share": "0.3"}}}, "rightmodel.strong_share", "a number"),
        ({"extra_headers": {"x-rightmodel-explain": "maybe"}}, "x-rightmodel-explain", "true or false"),
        ({"extra_headers": {"x-rightmodel-strong-share": "2"}}, "x-rightmodel-strong-share", "between 0 and 1"),
        ({"extra_headers": {"x-rightmodel-max-cost": "1"}}, "x-rightmodel-max-cost", "Unknown option header"),
    ]:
        for model in ["auto", "small"]:
            with pytest.raises(openai.BadRequestError) as e:
                gw.chat.completions.create(model=model, messages=MSG, max_tokens=2, **kwargs)
            assert e.value.body["param"] == param and says in e.value.body["message"], (model, e.value.body)
    hits = proxy.hits
    with pytest.raises(openai.UnprocessableEntityError) as e:
        gw.chat.completions.create(model="large", messages=MSG, max_tokens=2, extra_body={"rightmodel": {"max_cost_usd": 1e-9}})
    assert e.value.body["code"] == "max_cost_exceeded" and e.value.body["param"] == "rightmodel.max_cost_usd"
    with pytest.raises(openai.UnprocessableEntityError):
        gw.completions.create(model="large", prompt="Hi", max_tokens=2, extra_headers={"x-rightmodel-max-cost-usd": "1e-9"})
    assert proxy.hits == hits
    # A free model fits any cost cap.
    gw.chat.completions.create(model="small", messages=MSG, max_tokens=2, extra_body={"rightmodel": {"max_cost_usd": 1e-9}})
    # A named model that returns no evidence does not serve a request asking for it, as `auto` would not.
    for model in ["small", "large"]:
        with pytest.raises(openai.UnprocessableEntityError) as e:
            gw.chat.completions.create(model=model, messages=MSG, max_tokens=2, extra_body={"rightmodel": {"explain": True}})
        assert e.value.body["code"] == "no_explainable_model" and e.value.body["param"] == "rightmodel.explain"
    with pytest.raises(openai.UnprocessableEntityError):
        gw.completions.create(model="small", prompt="Hi", max_tokens=2, extra_headers={"x-rightmodel-explain": "true"})
    assert proxy.hits == hits


def test_cascade_asks_an_upstream_small_model_for_logprobs(tmp_path, proxy):
    """The cascade's first model may be an upstream: it is asked for log-probabilities, so its answer is
    judged (not escalated for lack of them), and the client still gets none it did not ask for."""
    proxy.mode = {"kind": "pass"}
    cfg = small_and_large(proxy, price=1.0, tail=f"""
[[upstream]]
name = "mini"
base_url = "http://127.0.0.1:{proxy.port}/v1"
model = "gemma3-270m"
tier = 0.3
input_per_mtok = 0.1
output_per_mtok = 0.1

[route]
candidates = ["mini", "large"]
strategy = "cascade"
threshold = 0.0
min_confidence = 0.01
""")
    s = Server(tmp_path, cfg, "cascade-upstream")
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
        r = c.chat.completions.with_raw_response.create(model="auto", messages=MSG, max_tokens=6, temperature=0)
        d = _decision(r)
        assert d["cascade"]["first"] == "mini" and d["cascade"]["confidence"] > 0.01, d
        assert r.headers["x-rightmodel-model"] == "mini"
        assert r.parse().choices[0].logprobs is None
    finally:
        s.stop()


def test_cascade_credits_its_first_attempt_to_the_fallback_that_answered(tmp_path, proxy):
    """The cascade's small model is down and its fallback answers first: the decision names the fallback
    as the first attempt (its cost and tokens are the fallback's), and the planned model beside it."""
    proxy.mode = {"kind": "pass"}
    cfg = small_and_large(proxy, price=1.0, tail=f"""
[[upstream]]
name = "mini"
base_url = "http://127.0.0.1:1/v1"
model = "gemma3-270m"
tier = 0.3
input_per_mtok = 0.1
output_per_mtok = 0.1
fallback = ["mini2"]

[[upstream]]
name = "mini2"
base_url = "http://127.0.0.1:{proxy.port}/v1"
model = "gemma3-270m"
tier = 0.3
input_per_mtok = 0.2
output_per_mtok = 0.2

[route]
candidates = ["mini", "large"]
strategy = "cascade"
threshold = 0.0
min_confidence = 0.99
""")
    s = Server(tmp_path, cfg, "cascade-fallback-first")
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
        r = c.chat.completions.with_raw_response.create(model="auto", messages=MSG, max_tokens=6, temperature=0)
        d = _decision(r)
        assert d["cascade"]["escalated"] is True and r.headers["x-rightmodel-model"] == "large", d
        assert d["cascade"]["first"] == "mini2" and d["cascade"]["first_planned"] == "mini", d
        assert d["cascade"]["first_cost_usd"] > 0, d
    finally:
        s.stop()


def test_streamed_cascade_keeps_the_small_answer_when_the_large_stream_breaks_before_text(tmp_path, proxy):
    """The large model's stream opens and breaks before any text: nothing has reached the client, so the
    held small answer is streamed instead, and the header, the decision and the log say so."""
    proxy.mode = {"kind": "break_after_role"}
    cfg = small_and_large(proxy, price=1.0, tail=ESCALATING_CASCADE)
    s = Server(tmp_path, cfg, "cascade-break")
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
        r = c.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "Write a poem about the sea."}],
            max_tokens=8, temperature=0, stream=True)
        assert r.headers["x-rightmodel-model"] == "small"
        d = _decision(r)
        assert d["reason"] == "cascade_escalation_failed" and d["cascade"]["escalated"] is True, d
        chunks = list(r.parse())
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).strip()
        row = s.wait_row(lambda x: x["id"] == r.headers["x-request-id"])
        assert row["served_model"] == "small" and row["status"] == 200 and row["cost_usd"] == 0, row
    finally:
        proxy.mode = {"kind": "pass"}
        s.stop()


def test_cascade_bills_an_upstream_small_model_without_usage_when_it_escalates(tmp_path, proxy):
    """The small model is an upstream that reports no usage and the large one reports usage: the small call
    is billed by estimate (it used to be free once the large model's usage arrived)."""
    proxy.mode = {"kind": "no_usage"}  # complete answers only; the escalated stream keeps its usage
    cfg = small_and_large(proxy, price=10.0, tail=f"""
[[upstream]]
name = "mini"
base_url = "http://127.0.0.1:{proxy.port}/v1"
model = "gemma3-270m"
tier = 0.3
input_per_mtok = 0.5
output_per_mtok = 0.5

[route]
candidates = ["mini", "large"]
strategy = "cascade"
threshold = 0.0
min_confidence = 0.99
""")
    s = Server(tmp_path, cfg, "cascade-no-usage")
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
        r = c.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "Write a poem about the sea."}],
            max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True})
        d = _decision(r)
        assert d["cascade"]["escalated"] is True and r.headers["x-rightmodel-model"] == "large", d
        first = d["cascade"]["first_cost_usd"]
        assert first > 0, d
        last = [ch for ch in r.parse() if ch.usage][-1]
        usage = last.usage
        row = s.wait_row(lambda x: x["id"] == r.headers["x-request-id"])
        large = (usage.prompt_tokens + usage.completion_tokens) * 10.0 / 1e6
        assert abs(row["cost_usd"] - (first + large)) < 1e-9, (row, first, large)
        # The usage chunk of a stream says what the request cost, as the header does for whole answers.
        assert abs(last.model_extra["rightmodel"]["cost_usd"] - row["cost_usd"]) < 1e-9, last
    finally:
        proxy.mode = {"kind": "pass"}
        s.stop()


def test_key_allow_list_binds_fallbacks_and_routing(tmp_path, proxy):
    """A key's `models` list limits every model that serves it, not just the one it names: fallbacks
    skip models it may not use, and `auto` chooses among the ones it may."""
    import hashlib
    proxy.mode = {"kind": "pass"}
    h = lambda k: hashlib.sha256(k.encode()).hexdigest()
    cfg = small_and_large(proxy, price=1.0, tail=f"""
[[upstream]]
name = "dead"
base_url = "http://127.0.0.1:9/v1"
connect_timeout_ms = 300
max_retries = 1
fallback = ["large", "small"]

[route]
candidates = ["small", "large"]
threshold = 0.0

[[key]]
name = "open"
sha256 = "{h('sk-open')}"

[[key]]
name = "limited"
sha256 = "{h('sk-limited')}"
models = ["dead", "small"]

[[key]]
name = "dead-only"
sha256 = "{h('sk-dead-only')}"
models = ["dead"]
""")
    s = Server(tmp_path, cfg, "allow-list")
    try:
        mk = lambda key: openai.OpenAI(base_url=s.url("/v1"), api_key=key, max_retries=0, timeout=60)
        r = mk("sk-open").chat.completions.with_raw_response.create(model="dead", messages=MSG, max_tokens=4)
        assert r.headers["x-rightmodel-model"] == "large"
        r = mk("sk-limited").chat.completions.with_raw_response.create(model="dead", messages=MSG, max_tokens=4)
        assert r.headers["x-rightmodel-model"] == "small", "the fallback chain skipped `large`"
        r = mk("sk-limited").chat.completions.with_raw_response.create(model="auto", messages=MSG, max_tokens=4)
        assert r.headers["x-rightmodel-model"] == "small", "auto chose among the key's models"
        # The model list shows a key what it may ask for.
        assert sorted(m.id for m in mk("sk-limited").models.list().data) == ["auto", "dead", "small"]
        assert {"large", "small", "dead"} <= {m.id for m in mk("sk-open").models.list().data}
        with pytest.raises(openai.PermissionDeniedError) as e:
            mk("sk-limited").chat.completions.create(model="large", messages=MSG, max_tokens=4)
        assert e.value.body["code"] == "model_not_allowed"
        with pytest.raises(openai.PermissionDeniedError) as e:
            mk("sk-dead-only").chat.completions.create(model="auto", messages=MSG, max_tokens=4)
        assert e.value.body["code"] == "model_not_allowed" and e.value.body["param"] == "model"
    finally:
        s.stop()


def test_abandoned_paid_stream_is_charged_an_estimate(tmp_path, proxy):
    """A client that leaves mid-stream has still made the upstream work (and bill): the log row is a 499
    with a cost estimated from the prompt and the text already sent, not $0."""
    proxy.mode = {"kind": "pass"}
    s = Server(tmp_path, small_and_large(proxy, price=1000.0, tail=""), "abandon")
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
        stream = c.chat.completions.create(model="large", messages=[{"role": "user", "content": "Tell me a long story."}],
                                           max_tokens=400, temperature=0.8, seed=1, stream=True)
        leave_after(stream)
        rows = s.wait_logs(1)
        assert rows and rows[-1]["status"] == 499, rows
        assert rows[-1]["cost_usd"] > 0 and rows[-1]["input_tokens"] > 0 and rows[-1]["output_tokens"] > 0
        assert "estimated" in rows[-1]["error"]
    finally:
        s.stop()


def test_unusable_router_weights_in_the_home_do_not_stop_the_gateway(tmp_path, proxy):
    """Weights `router train` left in $RIGHTMODEL_HOME/router are used when they load; a broken file
    there falls back to the shipped weights instead of refusing to start."""
    from conftest import fresh_home
    proxy.mode = {"kind": "pass"}
    home, env = fresh_home(tmp_path)
    (home / "router").mkdir()
    (home / "router" / "router.json").write_text('{"version": 1}')
    s = Server(tmp_path, small_and_large(proxy, price=1.0, tail='[route]\ncandidates = ["small", "large"]\n'),
               "bad-home-router", env=env)
    try:
        gw = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0, timeout=60)
        r = gw.chat.completions.with_raw_response.create(model="auto", messages=MSG, max_tokens=2)
        assert _decision(r)["score"] is not None
        assert any("cannot use these router weights" in line for line in s.stderr_lines)
    finally:
        s.stop()


def test_concurrent_requests_cannot_overrun_a_key_limit(tmp_path, proxy):
    """Running paid requests hold their likely cost against the key's limit: of 8 concurrent slow calls only
    as many start as the limit covers (the rest get 429 insufficient_quota), instead of all of them."""
    import concurrent.futures
    import hashlib

    cfg = f"""
[[upstream]]
name = "pricey"
base_url = "http://127.0.0.1:{proxy.port}/v1"
model = "gemma3-270m"
input_per_mtok = 2000.0
output_per_mtok = 8000.0

[[key]]
name = "team"
sha256 = "{hashlib.sha256(b'sk-team').hexdigest()}"
daily_spend_usd = 5.0

[[key]]
name = "team2"
sha256 = "{hashlib.sha256(b'sk-team2').hexdigest()}"
daily_spend_usd = 5.0
"""
    s = Server(tmp_path, cfg, "key-limit")
    try:
        proxy.mode = {"kind": "delay", "seconds": 1.5}
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="sk-team", max_retries=0, timeout=60)
        # The second round gets a key of its own: what the first round's answers cost (their sampled
        # length) must not decide how many of the second round fit.
        clients = {"pricey": c, "auto": openai.OpenAI(base_url=s.url("/v1"), api_key="sk-team2", max_retries=0,
                                                      timeout=60)}

        def call(model):
            try:
                # The hold is the prompt plus max_tokens; the stop ends the answer early.
                clients[model].chat.completions.create(model=model, messages=MSG, max_tokens=256, stop=[".", "\n"])
                return 200
            except openai.RateLimitError as e:
                assert e.body["code"] == "insufficient_quota", e.body
                return 429

        # Named, then chosen by `auto` (which must see the holds too).
        for model in ["pricey", "auto"]:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                got = list(pool.map(call, [model] * 8))
            # Each call holds ~$2.06 (256 answer tokens at $8,000/Mtok): two fit under $5, and the check
            # and the hold are one step, so no third call slips in between them.
            assert got.count(200) == 2 and got.count(429) == 6, (model, got)
        rows = s.logs()
        for key in ["team", "team2"]:
            assert sum(r["cost_usd"] for r in rows if r["key_name"] == key) < 5.0, key
        # One call that would cost more than the whole limit is refused before the upstream is asked, and
        # not as "wait until tomorrow" (1,000 answer tokens at $8,000/Mtok hold $8 of the $5).
        proxy.mode = {"kind": "pass"}
        hits = proxy.hits
        with pytest.raises(openai.UnprocessableEntityError) as e:
            c.chat.completions.create(model="pricey", messages=MSG, max_tokens=1000)
        assert "more than Key `team`'s daily limit of $5.00" in e.value.body["message"], e.value.body
        assert e.value.body["code"] == "insufficient_quota" and e.value.body["param"] == "max_tokens"
        assert proxy.hits == hits
    finally:
        proxy.mode = {"kind": "pass"}
        s.stop()
