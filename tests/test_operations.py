"""What an operator sees of a running gateway: `/healthz` (liveness) and `/readyz` (readiness) as upstreams
fail, Prometheus metrics by HTTP status for requests that have no log row, the dropped-rows counter, the
header-read timeout that disconnects slow clients, and a key's model list on `/v1/classify`. These
gateways serve upstreams only (no model to load), so they start at once."""
import hashlib
import json
import socket
import time

from conftest import Server, request


def dead_port():
    """A local port nothing listens on: calls to it fail at once (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def upstream(name, port, extra=""):
    return f"""
[[upstream]]
name = "{name}"
base_url = "http://127.0.0.1:{port}/v1"
max_retries = 0
connect_timeout_ms = 500
{extra}
"""


def check(body, name):
    return next(c for c in body["checks"] if c["name"] == name)


def chat(base, model, key=None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return request(base, "POST", "/v1/chat/completions", headers=headers,
                   body={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})


def test_readyz_fails_when_no_model_can_serve_and_healthz_stays_live(tmp_path):
    srv = Server(tmp_path, upstream("only", dead_port()), name="readyz-down")
    try:
        status, headers, body = request(srv.base, "GET", "/readyz")
        r = json.loads(body)
        assert status == 200 and r["status"] == "ready", r
        assert check(r, "model:only")["state"] == "unknown"
        assert check(r, "request_log")["status"] == "ok" and check(r, "request_log")["fatal"] is True
        assert headers.get("cache-control") == "no-store"
        for _ in range(3):
            status, _, _ = chat(srv.base, "only")
            assert status == 502
        status, _, body = request(srv.base, "GET", "/readyz")
        r = json.loads(body)
        # The only chat model is down: the gateway cannot do its job.
        assert status == 503 and r["status"] == "not_ready", r
        up = check(r, "model:only")
        assert up["status"] == "failed" and up["state"] == "down" and up["consecutive_failures"] == 3, up
        assert up["fatal"] is False and up["last_error"], up
        assert check(r, "serving")["status"] == "failed" and check(r, "serving")["chat_models_available"] == []
        # Liveness is not readiness: the process answers.
        status, _, body = request(srv.base, "GET", "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        srv.stop()


def test_readyz_is_degraded_not_failed_while_another_model_serves(tmp_path):
    from conftest import FakeUpstream

    fake = FakeUpstream()
    cfg = upstream("dead", dead_port()) + upstream("live", fake.port)
    srv = Server(tmp_path, cfg, name="readyz-degraded")
    try:
        for _ in range(3):
            assert chat(srv.base, "dead")[0] == 502
        assert chat(srv.base, "live")[0] == 200
        status, _, body = request(srv.base, "GET", "/readyz")
        r = json.loads(body)
        assert status == 200 and r["status"] == "degraded", r
        assert check(r, "model:dead")["state"] == "down"
        assert check(r, "model:live")["state"] == "up" and check(r, "model:live")["status"] == "ok"
        assert check(r, "serving")["chat_models_available"] == ["live"]
    finally:
        srv.stop()
        fake.close()


def test_streams_that_break_mid_way_count_as_upstream_failures(tmp_path):
    """An upstream whose streams open and then die is failing, though each call opened fine: three
    broken streams in a row read `down`; a stream that ends whole makes it `up` again."""
    from conftest import FakeUpstream

    fake = FakeUpstream()
    srv = Server(tmp_path, upstream("flaky", fake.port), name="readyz-streams")
    try:
        fake.mode = {"kind": "ok", "cut_after": 2}  # the role, then "Par"
        body = {"model": "flaky", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        for _ in range(3):
            status, _, text = request(srv.base, "POST", "/v1/chat/completions", body=body)
            # The stream had started (200): it ends with an error event instead of [DONE].
            assert status == 200 and b'"error"' in text and b"data: [DONE]" not in text, text
        status, _, r = request(srv.base, "GET", "/readyz")
        up = check(json.loads(r), "model:flaky")
        assert status == 503 and up["state"] == "down" and up["consecutive_failures"] == 3, up
        assert "mid-stream" in up["last_error"] or "before [DONE]" in up["last_error"], up
        fake.mode = {"kind": "ok"}
        status, _, text = request(srv.base, "POST", "/v1/chat/completions", body=body)
        assert status == 200 and b"data: [DONE]" in text
        status, _, r = request(srv.base, "GET", "/readyz")
        up = check(json.loads(r), "model:flaky")
        assert status == 200 and up["state"] == "up" and up["consecutive_failures"] == 0, up
    finally:
        srv.stop()
        fake.close()


def metric(text, name, **labels):
    """The value of the sample of `name` with (at least) `labels`, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_requests_without_a_log_row_are_counted_by_status_and_dropped_rows_are_a_counter(tmp_path):
    srv = Server(tmp_path, upstream("u", dead_port()), name="metrics")
    try:
        assert request(srv.base, "GET", "/v1/models")[0] == 200
        assert request(srv.base, "GET", "/no/such/path")[0] == 404
        assert request(srv.base, "DELETE", "/v1/models")[0] == 405
        assert request(srv.base, "GET", "/healthz")[0] == 200
        _, _, body = request(srv.base, "GET", "/metrics")
        text = body.decode()
        assert metric(text, "rightmodel_http_responses_total", route="/v1/models", method="GET", status="200") == 1
        assert metric(text, "rightmodel_http_responses_total", route="unmatched", method="GET", status="404") == 1
        assert metric(text, "rightmodel_http_responses_total", route="/v1/models", method="DELETE", status="405") == 1
        assert metric(text, "rightmodel_http_responses_total", route="/healthz", method="GET", status="200") == 1
        # The client's path is not a label value.
        assert "/no/such/path" not in text
        assert "# TYPE rightmodel_log_rows_dropped_total counter" in text
        assert metric(text, "rightmodel_log_rows_dropped_total") == 0
        assert "rightmodel_log_rows_dropped " not in text
    finally:
        srv.stop()


def test_a_client_that_sends_its_headers_too_slowly_is_disconnected(tmp_path):
    srv = Server(tmp_path, "[server]\nheader_read_timeout_secs = 1\n" + upstream("u", dead_port()), name="slowloris")
    try:
        # Headers a line at a time, never finished: closed after the timeout, not held.
        slow = socket.create_connection(("127.0.0.1", srv.port))
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        start = time.time()
        closed = False
        while time.time() - start < 8:
            try:
                slow.sendall(b"X-Slow: 1\r\n")
                slow.settimeout(0.3)
                data = slow.recv(4096)
                if data == b"" or data.startswith(b"HTTP/1.1 408"):
                    closed = True
                    break
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
        elapsed = time.time() - start
        slow.close()
        assert closed and elapsed < 4, f"closed={closed} after {elapsed:.1f} s"
        # A silent connection too.
        silent = socket.create_connection(("127.0.0.1", srv.port))
        silent.settimeout(5)
        start = time.time()
        try:
            data = silent.recv(4096)
        except socket.timeout:
            data = None
        elapsed = time.time() - start
        silent.close()
        assert data is not None and (data == b"" or data.startswith(b"HTTP/1.1 408")), data
        assert elapsed < 4, f"{elapsed:.1f} s"

        # A client that sends its request in time is served.
        assert request(srv.base, "GET", "/healthz")[0] == 200
    finally:
        srv.stop()


def test_classify_refuses_a_model_outside_a_keys_list_as_chat_does(tmp_path):
    h = lambda k: hashlib.sha256(k.encode()).hexdigest()
    cfg = upstream("u", dead_port()) + f"""
[[classifier]]
name = "sentiment"

[[key]]
name = "narrow"
sha256 = "{h('sk-narrow')}"
models = ["u"]
"""
    srv = Server(tmp_path, cfg, name="classify-key")
    try:
        auth = {"Authorization": "Bearer sk-narrow"}
        for model in ["sentiment", "nope"]:
            c_status, _, c_body = chat(srv.base, model, key="sk-narrow")
            k_status, _, k_body = request(srv.base, "POST", "/v1/classify", headers=auth,
                                          body={"model": model, "input": ["great"]})
            c_err, k_err = json.loads(c_body)["error"], json.loads(k_body)["error"]
            assert (k_status, k_err["code"], k_err["type"]) == (c_status, c_err["code"], c_err["type"]), (c_body, k_body)
            assert k_status == 403 and k_err["code"] == "model_not_allowed" and k_err["param"] == "model"
    finally:
        srv.stop()
