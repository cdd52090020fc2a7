"""Forwarding to an OpenAI-compatible upstream: a second real `rightmodel serve` acts as the large
model, behind a fault-injecting proxy (delay, 5xx, resets, streams cut mid-way)."""
import openai
import pytest

from conftest import FaultProxy, Server

MSG = [{"role": "user", "content": "The capital of France is"}]


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

[[upstream]]
name = "large"
base_url = "http://127.0.0.1:{proxy.port}/v1"
model = "gemma3-270m"
input_per_mtok = 2.0
output_per_mtok = 8.0
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
name = "dead"
base_url = "http://127.0.0.1:9/v1"
connect_timeout_ms = 300
max_retries = 1
fallback = ["small"]
"""
    s = Server(tmp_path_factory.mktemp("gw"), cfg, "gateway")
    yield s
    s.stop()


@pytest.fixture()
def gw(gateway, proxy):
    proxy.mode = {"kind": "pass"}
    return openai.OpenAI(base_url=gateway.url("/v1"), api_key="x", max_retries=0, timeout=60)


def test_passthrough_matches_direct_call(gw, upstream_server):
    direct = openai.OpenAI(base_url=upstream_server.url("/v1"), api_key="x")
    want = direct.chat.completions.create(model="gemma3-270m", messages=MSG, max_tokens=10, temperature=0)
    r = gw.chat.completions.with_raw_response.create(model="large", messages=MSG, max_tokens=10, temperature=0)
    got = r.parse()
    assert r.headers["x-rightmodel-model"] == "large"
    assert got.model == "large"
    assert got.choices[0].message.content == want.choices[0].message.content
    assert got.usage.completion_tokens == want.usage.completion_tokens


def test_streaming_passthrough_and_cost(gw, gateway):
    chunks = list(gw.chat.completions.create(
        model="large", messages=MSG, max_tokens=10, temperature=0, stream=True, stream_options={"include_usage": True}
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage.completion_tokens == 10
    assert all(c.model == "large" for c in chunks)
    row = gateway.wait_logs(1)[-1]
    u = chunks[-1].usage
    assert row["served_model"] == "large" and row["stream"]
    assert abs(row["cost_usd"] - (u.prompt_tokens * 2.0 + u.completion_tokens * 8.0) / 1e6) < 1e-12


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


def test_connection_reset_is_retried_then_502(gw, proxy):
    proxy.mode = {"kind": "reset"}
    with pytest.raises(openai.APIStatusError) as e:
        gw.chat.completions.create(model="large-nofallback", messages=MSG, max_tokens=4)
    assert e.value.status_code == 502


def test_dead_upstream_falls_back(gw):
    r = gw.chat.completions.with_raw_response.create(model="dead", messages=MSG, max_tokens=4)
    assert r.headers["x-rightmodel-model"] == "small"


def test_first_token_timeout_is_504(gw, proxy):
    proxy.mode = {"kind": "delay", "seconds": 4}
    with pytest.raises(openai.APIStatusError) as e:
        gw.chat.completions.create(model="large-nofallback", messages=MSG, max_tokens=4)
    assert e.value.status_code == 504


def test_upstream_dies_mid_stream(gw, proxy, gateway):
    proxy.mode = {"kind": "cut", "after_bytes": 700}
    got = []
    with pytest.raises(openai.APIError):
        for c in gw.chat.completions.create(model="large", messages=MSG, max_tokens=40, temperature=0, stream=True):
            got.append(c)
    assert got, "part of the answer arrived before the upstream died"
    row = gateway.wait_logs(1)[-1]
    assert row["status"] == 502 and "mid-stream" in row["error"]


def test_auto_routes_with_decision_header(gw, gateway):
    r = gw.chat.completions.with_raw_response.create(model="auto", messages=MSG, max_tokens=4, temperature=0)
    assert r.headers["x-rightmodel-model"] in ("small", "large")
    import json

    d = json.loads(r.headers["x-rightmodel-decision"])
    assert d["served"] == r.headers["x-rightmodel-model"] and d["reason"]
    row = gateway.wait_logs(1)[-1]
    assert row["requested_model"] == "auto" and row["reason"] and row["decision"]
