"""End-to-end test harness: starts the real `rightmodel` binary and talks to it over HTTP.

Servers listen on 127.0.0.1 with `--port 0`; the chosen port is read from the binary's
`rightmodel listening on http://...` line. Models come from the local store (the test script
runs `rightmodel pull all` first).
"""
import http.client
import http.server
import json
import os
import pathlib
import re
import signal
import socketserver
import subprocess
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "rightmodel"


class Server:
    """A `rightmodel serve` process."""

    def __init__(self, tmp: pathlib.Path, config: str, name: str = "server", env=None):
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = self.dir / "rightmodel.db"
        cfg = self.dir / "rightmodel.toml"
        text = config
        if "[server]" not in text:
            text = "[server]\n" + text
        text = text.replace("[server]", f"[server]\nlog_path = {json.dumps(str(self.db))}", 1)
        cfg.write_text(text)
        self.config_path = cfg
        e = dict(os.environ)
        e.update(env or {})
        if "RIGHTMODEL_HOME" not in (env or {}):
            # Its own home, sharing only the pulled models: the collections, classifiers and router
            # weights of the machine's home would show in its model list and decisions.
            e["RIGHTMODEL_HOME"] = str(own_home(self.dir / "home"))
        e.setdefault("RIGHTMODEL_LOG", "warn")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--config", str(cfg), "--port", "0"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=e,
            text=True,
        )
        self.stderr_lines = []
        self.port = None
        ready = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.stderr_lines.append(line)
                m = re.search(r"listening on http://[^:]+:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        ready.wait(timeout=180)
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.stderr_lines))
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, path=""):
        return self.base + path

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def logs(self):
        out = subprocess.run(
            [str(BIN), "logs", "--db", str(self.db), "--format", "json", "--tail", "1000"],
            capture_output=True, text=True, check=True,
        )
        return [json.loads(l) for l in out.stdout.splitlines() if l.strip()]

    def wait_row(self, pred, timeout=10):
        """The newest log row matching `pred`, waiting for it to be written (rows of streams are
        written when the stream ends, just after the client has read `[DONE]`)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            rows = [r for r in self.logs() if pred(r)]
            if rows:
                return rows[-1]
            time.sleep(0.1)
        raise AssertionError("no matching log row")

    def wait_logs(self, n, timeout=10):
        deadline = time.time() + timeout
        rows = []
        while time.time() < deadline:
            rows = self.logs()
            if len(rows) >= n:
                return rows
            time.sleep(0.1)
        return rows


def own_home(home):
    """`home` as a RIGHTMODEL_HOME whose model store is the already pulled one (kept when it exists, so
    a server started again with the same name finds what it left)."""
    real_models = pathlib.Path(os.environ.get("RIGHTMODEL_HOME", pathlib.Path.home() / ".cache" / "rightmodel")) / "models"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(real_models)
    return home


def fresh_home(tmp_path):
    """An empty RIGHTMODEL_HOME whose model store is the already pulled one."""
    home = tmp_path / "home"
    home.mkdir()
    own_home(home)
    return home, dict(os.environ, RIGHTMODEL_HOME=str(home))


def leave_after(stream, chunks=3):
    """Reads a chat stream until `chunks` chunks with text arrived, then closes it: a client that leaves
    mid-answer."""
    got = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            got += 1
        if got >= chunks:
            break
    stream.close()


def request(base, method, path, body=None, headers=None, raw=None, timeout=120):
    """Plain HTTP call; returns (status, headers, body bytes)."""
    m = re.match(r"http://([^:/]+):(\d+)", base)
    conn = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    out = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    return r.status, hdrs, out


class FaultProxy:
    """A small HTTP proxy in front of an upstream that can add delay, 5xx answers, connection resets
    and streams cut in the middle. `mode` is changed by tests between requests."""

    def __init__(self, upstream_port, ssl_context=None):
        self.upstream_port = upstream_port
        self.mode = {"kind": "pass"}
        self.hits = 0
        # What the last request looked like (path with query, headers), for tests of what is sent.
        self.last_path = None
        self.last_headers = {}
        self.last_body = b""
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self._forward()

            def do_POST(self):
                self._forward()

            def _forward(self):
                proxy.hits += 1
                proxy.last_path = self.path
                proxy.last_headers = {k.lower(): v for k, v in self.headers.items()}
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n) if n else b""
                proxy.last_body = body
                mode = proxy.mode
                kind = mode["kind"]
                if kind == "fail" and mode.get("remaining", 0) > 0:
                    mode["remaining"] -= 1
                    err = {"message": "injected failure", "type": "server_error", "code": mode.get("code")}
                    payload = json.dumps({"error": err}).encode()
                    self.send_response(mode.get("status", 503))
                    if mode.get("retry_after") is not None:
                        self.send_header("Retry-After", str(mode["retry_after"]))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if kind == "json_for_stream":
                    # A server that answers every request, streams included, with a JSON body.
                    payload = json.dumps({"error": {"message": "streaming is not supported", "type": "invalid_request_error"}}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if kind == "done_first":
                    # A stream that ends before any event.
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                    self.connection.close()
                    return
                if kind == "reset":
                    time.sleep(mode.get("seconds", 0))
                    self.connection.shutdown(2)
                    self.connection.close()
                    return
                if kind == "delay":
                    time.sleep(mode["seconds"])
                if kind == "error_first":
                    # A stream whose first event is an error object.
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    self.wfile.write(b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n')
                    self.wfile.flush()
                    self.connection.close()
                    return
                if kind == "break_after_role" and b'"stream": true' in body.replace(b'"stream":true', b'"stream": true'):
                    # A stream that opens (a role chunk) and breaks before any text.
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    role = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                                         "logprobs": None, "finish_reason": None}]}
                    self.wfile.write(b"data: " + json.dumps(role).encode() + b"\n\n")
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    self.connection.close()
                    return
                keepalive = kind == "keepalive_first"
                if kind == "stall_first":
                    # Headers at once, then nothing: a stuck backend behind a proxy that answers early.
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    self.wfile.flush()
                    time.sleep(mode["seconds"])
                    self.connection.close()
                    return
                if kind == "ignore_stream" and body:
                    # A server that ignores `stream` and answers every request whole, as JSON.
                    obj = json.loads(body)
                    obj.pop("stream", None)
                    obj.pop("stream_options", None)
                    body = json.dumps(obj).encode()
                up = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
                up.request(self.command, self.path, body=body, headers={"Content-Type": "application/json"})
                r = up.getresponse()
                self.send_response(r.status)
                ctype = r.getheader("Content-Type", "application/json")
                self.send_header("Content-Type", ctype)
                if "event-stream" in ctype:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    if kind == "partial_usage":
                        # Usage without completion_tokens, as some OpenAI-compatible servers send it.
                        data = r.read()
                        lines = []
                        for line in data.split(b"\n"):
                            if line.startswith(b"data: {"):
                                obj = json.loads(line[6:])
                                if obj.get("usage"):
                                    p = obj["usage"]["prompt_tokens"]
                                    obj["usage"] = {"prompt_tokens": p, "total_tokens": p}
                                line = b"data: " + json.dumps(obj).encode()
                            lines.append(line)
                        data = b"\n".join(lines)
                        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
                        up.close()
                        return
                    if keepalive:
                        # A live upstream that thinks before answering: comments only, for a while.
                        for _ in range(int(mode["seconds"] / 0.5)):
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(b": keep-alive\n\n"), b": keep-alive\n\n"))
                            self.wfile.flush()
                            time.sleep(0.5)
                    sent = 0
                    while True:
                        chunk = r.read1(4096) if hasattr(r, "read1") else r.read(4096)
                        if not chunk:
                            break
                        if kind == "cut" and sent + len(chunk) > mode["after_bytes"]:
                            chunk = chunk[: max(0, mode["after_bytes"] - sent)]
                            if chunk:
                                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                                self.wfile.flush()
                            self.connection.shutdown(2)
                            self.connection.close()
                            return
                        sent += len(chunk)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    data = r.read()
                    if kind == "no_usage":
                        # An upstream that reports no token usage.
                        obj = json.loads(data)
                        obj.pop("usage", None)
                        data = json.dumps(obj).encode()
                    if kind == "float_usage":
                        # Counts as some compatible servers send them: 10.0, not 10.
                        obj = json.loads(data)
                        obj["usage"] = {k: float(v) for k, v in obj["usage"].items() if isinstance(v, int)}
                        data = json.dumps(obj).encode()
                    if kind == "bad_usage":
                        obj = json.loads(data)
                        obj["usage"] = {"prompt_tokens": "many", "completion_tokens": -1}
                        data = json.dumps(obj).encode()
                    if kind == "partial_usage":
                        obj = json.loads(data)
                        p = obj["usage"]["prompt_tokens"]
                        obj["usage"] = {"prompt_tokens": p, "total_tokens": p}
                        data = json.dumps(obj).encode()
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                up.close()

        class Srv(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Srv(("127.0.0.1", 0), Handler)
        if ssl_context is not None:
            # HTTPS in front of the plain upstream (handshakes happen as connections are accepted).
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


LOCAL = """
[[local]]
name = "gemma3-270m"
model = "gemma3-270m"
slots = 4
ctx_per_slot = 1024

[embedding]
name = "minilm-l6"
model = "minilm-l6"
"""


@pytest.fixture(scope="session")
def local_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("local"), LOCAL, "local")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def upstream_server(tmp_path_factory):
    """A second rightmodel acting as the large model's OpenAI-compatible upstream."""
    s = Server(tmp_path_factory.mktemp("upstream"), LOCAL, "upstream")
    yield s
    s.stop()


@pytest.fixture()
def client(local_server):
    from openai import OpenAI

    return OpenAI(base_url=local_server.url("/v1"), api_key="unused", max_retries=0, timeout=120)


class FakeUpstream:
    """A scripted OpenAI-compatible upstream that answers at once, without a model, for tests of what the
    gateway does with an upstream's exact bytes. `mode` is changed by tests between requests:

    - `{"kind": "ok"}`: an answer ("Paris", 10 prompt and 2 completion tokens); streams put their usage
      where `usage` says: `"final"` (a chunk of its own after the finish, when `stream_options` asks, as
      OpenAI does), `"finish"` (in the finish chunk too) or `"every"` (on every chunk, cumulative);
      `stall` seconds after the last event, the stream neither sends `[DONE]` nor closes.
      `delay` seconds before it answers at all (a slow upstream: requests stay running meanwhile).
      `cut_after` events into a stream, the connection closes (an upstream dying mid-answer).
    - `{"kind": "status", "status": 500}`: that status with an error object.

    `requests` keeps every request body (parsed)."""

    TEXT = ["Par", "is"]
    USAGE = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}

    def __init__(self):
        self.mode = {"kind": "ok"}
        self.requests = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                fake.requests.append(body)
                mode = dict(fake.mode)
                if mode.get("delay"):
                    time.sleep(mode["delay"])
                if mode["kind"] == "status":
                    self._json(mode["status"], {"error": {"message": "injected", "type": "server_error",
                                                          "param": None, "code": None}})
                elif body.get("stream"):
                    self._stream(body, mode)
                else:
                    self._json(200, fake.answer(body))

            def _json(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body, mode):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                events = fake.events(body, mode.get("usage", "final"))
                cut = mode.get("cut_after")
                for event in events[:cut]:
                    self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                    self.wfile.flush()
                if cut is not None:
                    # The upstream dies mid-answer: the connection closes without the rest or [DONE].
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if mode.get("stall"):
                    time.sleep(mode["stall"])
                else:
                    self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        class Srv(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Srv(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, body):
        """The whole answer to a request `body`: `n` choices of the same text."""
        n = body.get("n") or 1
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": body.get("model"),
            "choices": [{"index": i, "message": {"role": "assistant", "content": "".join(self.TEXT)},
                         "finish_reason": "stop", "logprobs": None} for i in range(n)],
            "usage": dict(self.USAGE),
        }

    def events(self, body, usage):
        """The stream's events for a request `body`, usage placed as `usage` says (see the class)."""
        def chunk(delta, finish=None, choices=True):
            c = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": body.get("model"),
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else []}
            return c

        out = [chunk({"role": "assistant", "content": ""})]
        out += [chunk({"content": t}) for t in self.TEXT]
        out.append(chunk({}, "stop"))
        asked = (body.get("stream_options") or {}).get("include_usage")
        if usage == "every":
            for i, c in enumerate(out):
                done = i == len(out) - 1
                c["usage"] = dict(self.USAGE) if done else {"prompt_tokens": 10, "completion_tokens": min(i, 2),
                                                          "total_tokens": 10 + min(i, 2)}
        elif usage == "finish":
            out[-1]["usage"] = dict(self.USAGE)
        if asked and usage in ("final", "finish"):
            final = chunk({}, choices=False)
            final["usage"] = dict(self.USAGE)
            out.append(final)
        return out

    def close(self):
        self.server.shutdown()
