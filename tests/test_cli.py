"""The binary's own commands: output on stdout, diagnostics on stderr, clear errors and exit codes."""
import json
import signal
import subprocess

from conftest import BIN, fresh_home


def run(*args, input=None, env=None):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, input=input, timeout=300, env=env)


def test_every_command_has_help_with_an_example():
    for cmd in [["serve"], ["pull"], ["models"], ["generate"], ["chat"], ["embed"], ["bench"], ["logs"],
                ["router", "train"], ["train", "classify"], ["classify"], ["docs", "add"], ["eval", "docs"], ["eval", "route"],
                ["router"], ["train"], ["docs"], ["eval"]]:
        r = run(*cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        assert "Example" in r.stdout, cmd


def test_generate_streams_only_the_completion():
    r = run("generate", "--max-tokens", "8", "The capital of France is")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["the", "capital"]
    assert "The capital of France is" not in r.stdout


def test_generate_says_when_the_context_window_stops_it():
    """`--ctx` sizes the window (up to what the model was trained with); a window that fills before
    `--max-tokens` is said on stderr, not passed off as a finished answer."""
    r = run("generate", "--ctx", "64", "--max-tokens", "200", "Once upon a time there was a cat who")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and "context window of 64 tokens is full" in r.stderr, r.stderr
    r = run("generate", "--ctx", "100000", "hi")
    assert r.returncode == 1 and "32768" in r.stderr, r.stderr
    r = run("generate", "--stop", "", "hi")
    assert r.returncode == 1 and "must not be empty" in r.stderr, r.stderr


def test_embed_prints_json_lines():
    r = run("embed", "first text", "second text")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    assert [x["index"] for x in rows] == [0, 1] and len(rows[0]["embedding"]) == 384


def test_embed_reads_a_file_as_classify_does(tmp_path):
    """The input's format is decided once: JSON lines behind a byte-order mark are JSON lines, a plain
    text line may start with `{`, and a bad JSON line is named by file and line."""
    j = tmp_path / "bom.jsonl"
    j.write_bytes(b'\xef\xbb\xbf{"text": "hello"}\n{"text": "world"}\n')
    r = run("embed", "--input", str(j))
    assert r.returncode == 0, r.stderr
    assert [json.loads(l)["text"] for l in r.stdout.splitlines()] == ["hello", "world"]
    code = tmp_path / "code.txt"
    code.write_text("function f() {\n{ return 1; }\n")
    r = run("embed", "--input", str(code))
    assert r.returncode == 0, r.stderr
    assert [json.loads(l)["text"] for l in r.stdout.splitlines()] == ["function f() {", "{ return 1; }"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": 5}\n')
    r = run("embed", "--input", str(bad))
    assert r.returncode == 1 and "bad.jsonl" in r.stderr and "line 2" in r.stderr, r.stderr


def test_models_lists_the_defaults():
    r = run("models", "--json")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "gemma3-270m" in text and "Q4_K_M" in text and "minilm-l6" in text


def test_bad_inputs_fail_clearly(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 10)
    r = run("generate", "--model", str(bad), "hi")
    assert r.returncode == 1 and "error:" in r.stderr and "bad.gguf" in r.stderr
    assert "panicked" not in r.stderr
    r = run("generate", "--model", "no-such-model", "hi")
    assert r.returncode == 1 and "gemma3-270m" in r.stderr
    r = run("embed", "--input", str(tmp_path / "missing.txt"))
    assert r.returncode == 1 and "missing.txt" in r.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\nport = 'eighty'\n")
    r = run("serve", "--config", str(cfg), "--check")
    assert r.returncode == 1 and "port" in r.stderr and "line 2" in r.stderr
    # What `serve` would refuse after loading, `--check` refuses first: a model of the wrong kind, and a
    # context the model does not have.
    cfg.write_text('[[local]]\nname = "small"\nmodel = "gemma3-270m"\n\n[embedding]\nname = "e"\nmodel = "gemma3-270m"\n')
    r = run("serve", "--config", str(cfg), "--check")
    assert r.returncode == 1 and "not a sentence encoder" in r.stderr, r.stderr
    cfg.write_text('[[local]]\nname = "small"\nmodel = "gemma3-270m"\nctx_per_slot = 10000000\n')
    r = run("serve", "--config", str(cfg), "--check")
    assert r.returncode == 1 and "ctx_per_slot" in r.stderr and "32768" in r.stderr, r.stderr
    r = run("logs", "--db", str(tmp_path / "none.db"))
    assert r.returncode == 1 and "none.db" in r.stderr
    # No home folder at all: a clear error, not a store in the shared temporary folder.
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "RIGHTMODEL_HOME")}
    r = subprocess.run([str(BIN), "models"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "set RIGHTMODEL_HOME" in r.stderr, r.stderr


def test_openmp_spin_is_shortened_unless_the_user_chose():
    """libgomp reads its settings before `main`, so the binary restarts itself once with a short spin
    count (same PID, same arguments, same streams); a value the user set is kept."""
    import os
    import pathlib
    import time
    if not pathlib.Path("/proc/self/environ").exists():
        return
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    for extra, want in (({}, b"GOMP_SPINCOUNT=1000"), ({"GOMP_SPINCOUNT": "77"}, b"GOMP_SPINCOUNT=77")):
        # `embed --input -` waits on its stdin, so the process stays up to be looked at.
        p = subprocess.Popen([str(BIN), "embed", "--input", "-"], env={**env, **extra},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 10
            seen = b""
            while time.time() < deadline and want not in seen:
                time.sleep(0.1)
                try:
                    seen = pathlib.Path(f"/proc/{p.pid}/environ").read_bytes()
                except OSError:
                    break
            assert want in seen.split(b"\0"), seen
        finally:
            p.kill()
            p.wait()


def test_docs_add_that_adds_nothing_leaves_no_collection(tmp_path):
    home, env = fresh_home(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    r = run("docs", "add", "c1", str(empty), env=env)
    assert r.returncode == 1 and "empty" in r.stderr
    r = run("docs", "add", "c2", str(tmp_path / "missing.txt"), env=env)
    assert r.returncode == 1 and "missing.txt" in r.stderr
    # A dangling link inside a folder is skipped with a warning; the other files are indexed.
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.md").write_text("The office opens at nine.\n\nLunch is at noon.\n")
    (folder / "broken.md").symlink_to(tmp_path / "nowhere.md")
    r = run("docs", "add", "c3", str(folder), env=env)
    assert r.returncode == 0 and "skipped" in r.stderr and "broken.md" in r.stderr, r.stderr
    listed = run("docs", "list", env=env).stdout
    assert "c3" in listed and "c1" not in listed and "c2" not in listed, listed
    # Interrupted before anything was written, a new collection is removed, not left empty.
    big = tmp_path / "big.txt"
    big.write_text("".join(f"Room {i} of the archive holds box {i * 7} of the letters.\n\n" for i in range(20000)))
    p = subprocess.Popen([str(BIN), "docs", "add", "c4", str(big)], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Without a terminal the progress is written as lines: the first says the files are being read.
    first = p.stderr.readline()
    assert "reading" in first, first
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "removed" in err, (p.returncode, err)
    assert "c4" not in run("docs", "list", env=env).stdout
    assert not (home / "docs" / "c4").exists()


def test_an_upstream_key_variable_that_is_not_set_stops_the_gateway_before_it_serves(tmp_path):
    """Every call would fail with the upstream's 401: `serve --check` and `serve` both say which variable."""
    import os

    cfg = tmp_path / "gw.toml"
    cfg.write_text('[[upstream]]\nname = "big"\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "RIGHTMODEL_TEST_UNSET_KEY"\n')
    env = {k: v for k, v in os.environ.items() if k != "RIGHTMODEL_TEST_UNSET_KEY"}
    for args in (["--check"], ["--port", "0"]):
        r = run("serve", "--config", str(cfg), *args, env=env)
        assert r.returncode != 0 and "RIGHTMODEL_TEST_UNSET_KEY" in r.stderr, (args, r.stderr)
    r = run("serve", "--config", str(cfg), "--check", env=dict(env, RIGHTMODEL_TEST_UNSET_KEY="sk-test"))
    assert r.returncode == 0, r.stderr


def test_check_names_a_model_file_that_is_not_there(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[[local]]\nname = "mine"\nmodel = "models/missing.gguf"\n')
    r = run("serve", "--config", str(cfg), "--check")
    assert r.returncode != 0 and "mine" in r.stderr and "missing.gguf" in r.stderr, r.stderr


def test_eval_outputs_are_checked_before_any_work_and_never_replace_an_input(tmp_path):
    """`eval docs` and `eval route` refuse, before indexing or asking, an output that is their input or
    that exists without --force, and an output folder that cannot be made."""
    _, env = fresh_home(tmp_path)
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"version": "1.1", "data": []}))
    before = squad.read_text()
    for extra in ([], ["--force"]):
        r = run("eval", "docs", "--squad", str(squad), "--dump", str(squad), *extra, env=env)
        assert r.returncode == 1 and "--squad input" in r.stderr, r.stderr
    assert squad.read_text() == before
    dump = tmp_path / "dump.jsonl"
    dump.write_text("my notes\n")
    r = run("eval", "docs", "--squad", str(squad), "--dump", str(dump), env=env)
    assert r.returncode == 1 and "already exists" in r.stderr and "--force" in r.stderr, r.stderr
    assert dump.read_text() == "my notes\n"
    report = tmp_path / "report"
    report.mkdir()
    (report / "docs_eval.md").write_text("mine")
    r = run("eval", "docs", "--squad", str(squad), "--out", str(report), env=env)
    assert r.returncode == 1 and "docs_eval.md" in r.stderr and "--force" in r.stderr, r.stderr
    r = run("eval", "docs", "--squad", str(squad), "--out", str(squad / "sub"), env=env)
    assert r.returncode == 1 and "is a file" in r.stderr, r.stderr

    cmp = tmp_path / "cmp"
    cmp.mkdir()
    data = cmp / "answers.jsonl"
    data.write_text('{"prompt": "2+2?", "answer": "4"}\n')
    # No gateway runs: every refusal comes before the first request.
    gone = ["--base-url", "http://127.0.0.1:9/v1"]
    r = run("eval", "route", "--data", str(data), "--models", "a", "--out", str(cmp), "--force", *gone, env=env)
    assert r.returncode == 1 and "--data input" in r.stderr, r.stderr
    assert data.read_text().startswith('{"prompt"')
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "compare.md").write_text("mine")
    r = run("eval", "route", "--data", str(data), "--models", "a", "--out", str(tmp_path / "earlier"), *gone, env=env)
    assert r.returncode == 1 and "compare.md" in r.stderr and "--force" in r.stderr, r.stderr
    r = run("eval", "route", "--data", str(data), "--models", "a", "--base-url", "notaurl", env=env)
    assert r.returncode == 1 and "not a valid URL" in r.stderr and "gateway running" not in r.stderr, r.stderr


def test_router_train_replaces_a_router_only_with_force(tmp_path):
    home, env = fresh_home(tmp_path)
    data = tmp_path / "r.csv"
    data.write_text("prompt,weak_correct,strong_correct\n" + "".join(f"question {i},{i % 2},1\n" for i in range(20)))
    (home / "router").mkdir()
    (home / "router" / "router.json").write_text("not a router")
    r = run("router", "train", "--data", str(data), "--folds", "0", env=env)
    assert r.returncode == 1 and "default router folder" in r.stderr and "--force" in r.stderr, r.stderr
    assert (home / "router" / "router.json").read_text() == "not a router"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "router.json").write_text("{}")
    r = run("router", "train", "--data", str(data), "--folds", "0", "--out", str(mine), env=env)
    assert r.returncode == 1 and "--out" in r.stderr and "--force" in r.stderr, r.stderr
    assert (mine / "router.json").read_text() == "{}"


def test_bench_checks_llama_bench_before_benchmarking(tmp_path):
    r = run("bench", "--llama-bench", str(tmp_path / "nonexistent"))
    assert r.returncode == 1 and "--llama-bench" in r.stderr and "nonexistent" in r.stderr, r.stderr
    plain = tmp_path / "llama-bench"
    plain.write_text("#!/bin/sh\n")
    r = run("bench", "--llama-bench", str(plain))
    assert r.returncode == 1 and "not executable" in r.stderr, r.stderr


def test_serve_check_finds_what_serve_would_refuse(tmp_path):
    """`serve --check` fails, naming the key, on configs `serve` would refuse or serve only with errors;
    it creates nothing while checking."""
    _, env = fresh_home(tmp_path)
    (tmp_path / "notes.txt").write_text("not a model, not a database")
    up = '[[upstream]]\nname = "a"\nbase_url = "http://127.0.0.1:9/v1"\n'
    empty_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    cases = [
        ('[[upstream]]\nname = "a"\nbase_url = "http://"\n', "upstream[0].base_url"),
        ('[[upstream]]\nname = "a"\nbase_url = "http://exa mple.com/v1"\n', "upstream[0].base_url"),
        ('[[upstream]]\nname = "a"\nbase_url = "https://api.openai.com:99999/v1"\n', "upstream[0].base_url"),
        ('[[local]]\nname = "m"\nmodel = "notes.txt"\n', "not a GGUF file"),
        (f'[server]\nhost = "not a host"\n{up}', "server.host"),
        (f'[server]\nlog_path = "notes.txt/rm.db"\n{up}', "server.log_path"),
        (f'[server]\nlog_path = "notes.txt"\n{up}', "not an SQLite database"),
        (f'{up}[[key]]\nname = "k"\nsha256 = "{empty_hash}"\n', "key[0].sha256"),
    ]
    cfg = tmp_path / "gw.toml"
    for text, says in cases:
        cfg.write_text(text)
        r = run("serve", "--config", str(cfg), "--check", env=env)
        assert r.returncode == 1 and says in r.stderr and "configuration is valid" not in r.stderr, (text, r.stderr)
    cfg.write_text(f'[server]\nlog_path = "state/deeper/rm.db"\n{up}')
    r = run("serve", "--config", str(cfg), "--check", env=env)
    assert r.returncode == 0 and "configuration is valid" in r.stderr, r.stderr
    assert not (tmp_path / "state").exists()
    r = run("serve", "--hash-key", "")
    assert r.returncode == 1 and "empty" in r.stderr and r.stdout == "", (r.stdout, r.stderr)


def test_docs_add_progress_has_a_real_length(tmp_path):
    """Without a terminal the progress is written as lines: none of them is an empty `0/0` bar."""
    _, env = fresh_home(tmp_path)
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(3):
        (folder / f"n{i}.md").write_text(f"Note {i}: the office opens at nine.\n")
    r = run("docs", "add", "notes", str(folder), env=env)
    assert r.returncode == 0, r.stderr
    assert "0/0" not in r.stderr, r.stderr
    assert "reading" in r.stderr and "/3 " in r.stderr, r.stderr


def test_docs_ask_refuses_more_passages_than_a_search_considers(tmp_path):
    _, env = fresh_home(tmp_path)
    for k in ["100000", "101"]:
        r = run("docs", "ask", "any", "a question", "-k", k, env=env)
        assert r.returncode == 2 and "at most 100 passages" in r.stderr, r.stderr
    r = run("docs", "ask", "any", "a question", "-k", "100", env=env)
    assert "at most" not in r.stderr and "no collection `any`" in r.stderr, r.stderr


def test_logs_names_a_folder_or_missing_database_without_creating_one(tmp_path):
    r = run("logs", "--db", str(tmp_path))
    assert r.returncode == 1 and "is a folder, not a request log" in r.stderr, r.stderr
    assert "disk I/O" not in r.stderr
    r = run("logs", "--db", str(tmp_path / "none.db"), "--summary")
    assert r.returncode == 1 and "no request log at" in r.stderr, r.stderr
    assert not (tmp_path / "none.db").exists()


def test_a_home_that_is_a_file_is_named_as_such(tmp_path):
    import os

    home = tmp_path / "home-file"
    home.write_text("not a folder")
    env = dict(os.environ, RIGHTMODEL_HOME=str(home))
    for args in (["docs", "list"], ["classify", "--model", "x"], ["serve", "--check"], ["models"]):
        r = run(*args, env=env, input="")
        assert r.returncode == 1 and "RIGHTMODEL_HOME" in r.stderr and "is a file, not a folder" in r.stderr, (args, r.stderr)
        assert "rightmodel pull" not in r.stderr, (args, r.stderr)
    assert run("pull", "--help", env=env).returncode == 0


def test_a_hard_link_to_an_input_is_not_written_over(tmp_path):
    import os

    _, env = fresh_home(tmp_path)
    squad = tmp_path / "a.json"
    squad.write_text(json.dumps({"version": "1.1", "data": []}))
    os.link(squad, tmp_path / "b.json")
    r = run("eval", "docs", "--squad", str(squad), "--dump", str(tmp_path / "b.json"), "--force", env=env)
    assert r.returncode == 1 and "--squad input" in r.stderr, r.stderr
    assert json.loads(squad.read_text()) == {"version": "1.1", "data": []}


def test_router_train_warns_when_the_strong_share_cannot_be_reached(tmp_path):
    """The same warning as `router calibrate`: identical prompts tie, so no threshold splits them."""
    _, env = fresh_home(tmp_path)
    data = tmp_path / "r.csv"
    data.write_text("prompt,weak_correct,strong_correct\n" + "".join(f"the same question,{i % 2},1\n" for i in range(20)))
    r = run("router", "train", "--data", str(data), "--folds", "0", "--out", str(tmp_path / "router"), env=env)
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stderr and "no threshold can split" in r.stderr, r.stderr


def test_classifier_files_are_readable_and_eval_names_its_default_folder(tmp_path):
    """Every file of a trained classifier gets a new file's mode (the heads were 0600); `eval classify`
    names its default report folder as such when it refuses to replace a report there."""
    import pathlib
    import stat

    home, env = fresh_home(tmp_path)
    data = pathlib.Path(__file__).resolve().parent.parent / "crates" / "tasks" / "tests" / "fixtures" / "sentiment.csv"
    r = run("train", "classify", "--data", str(data), "--text-col", "text", "--label-col", "label",
            "--name", "s", "--valid-split", "0.25", env=env)
    assert r.returncode == 0, r.stderr
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    want = stat.S_IMODE(plain.stat().st_mode)
    clf = home / "classifiers" / "s"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in clf.iterdir() if p.is_file()}
    assert "head.safetensors" in modes and all(m == want for m in modes.values()), (oct(want), modes)
    report = tmp_path / "rightmodel-eval-s"
    report.mkdir()
    (report / "report.md").write_text("mine")
    r = subprocess.run([str(BIN), "eval", "classify", "--model", "s", "--data", str(data)], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 1 and "default report folder" in r.stderr and "--force" in r.stderr, r.stderr
    assert (report / "report.md").read_text() == "mine"


def test_interrupted_training_removes_its_unfinished_classifier(tmp_path):
    import time

    home, env = fresh_home(tmp_path)
    data = tmp_path / "big.csv"
    data.write_text("text,label\n" + "".join(
        f"{'a wonderful and moving film' if i % 2 else 'a dull and tiresome plot'} number {i},{'pos' if i % 2 else 'neg'}\n"
        for i in range(4000)))
    root = home / "classifiers"
    p = subprocess.Popen([str(BIN), "train", "classify", "--data", str(data), "--text-col", "text", "--label-col",
                          "label", "--name", "big"], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (root.is_dir() and any(".partial-" in e.name for e in root.iterdir())):
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    assert any(".partial-" in e.name for e in root.iterdir())
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "unfinished classifier was removed" in err, (p.returncode, err)
    assert list(root.iterdir()) == [], list(root.iterdir())


def test_interrupted_eval_route_reports_what_was_answered(tmp_path):
    """Ctrl-C during `eval route`: nothing more is sent, the prompts every model answered are reported
    as a partial run, and the exit status is 130."""
    import http.server
    import threading
    import time

    class Gateway(http.server.BaseHTTPRequestHandler):
        asked = 0

        def log_message(self, *args):
            pass

        def reply(self, obj):
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.reply({"object": "list", "data": [{"id": "a"}, {"id": "b"}]})

        def do_POST(self):
            self.rfile.read(int(self.headers["content-length"]))
            Gateway.asked += 1
            if Gateway.asked > 4:
                time.sleep(20)  # in flight when the run is stopped
            self.reply({"id": "x", "object": "chat.completion", "created": 0, "model": "a",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "yes"},
                                     "finish_reason": "stop"}]})

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _, env = fresh_home(tmp_path)
        data = tmp_path / "cases.jsonl"
        data.write_text("".join(json.dumps({"prompt": f"Question {i}?", "answer": "yes"}) + "\n" for i in range(10)))
        out = tmp_path / "report"
        p = subprocess.Popen([str(BIN), "eval", "route", "--data", str(data), "--models", "a,b", "--out", str(out),
                              "--base-url", f"http://127.0.0.1:{server.server_address[1]}/v1"],
                             env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while Gateway.asked < 5 and time.time() < deadline:
            assert p.poll() is None, p.communicate()
            time.sleep(0.05)
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
        assert p.returncode == 130, (p.returncode, stderr)
        assert "stopped after 2 of 10 prompts" in stderr, stderr
        assert "wrote " in stdout and "compare.md" in stdout, stdout
        md = (out / "compare.md").read_text()
        assert "**Partial run:** interrupted after 2 of 10 prompts" in md, md
        assert len((out / "answers.jsonl").read_text().splitlines()) == 4
        assert Gateway.asked == 5, "nothing is sent after the interrupt"
    finally:
        server.shutdown()


def test_measuring_and_reading_commands_refuse_what_they_cannot_use(tmp_path):
    import sqlite3

    _, env = fresh_home(tmp_path)
    # bench gateway: rates out of bounds, before anything runs.
    for rate in ["1000000000", "1e9", "0", "-5"]:
        r = run("bench", "gateway", "--rates", rate, env=env)
        assert r.returncode == 2 and "from 1 to 10000" in r.stderr, (rate, r.stderr)
    # logs on another SQLite database: named as not a request log, and left untouched.
    other = tmp_path / "OTHER.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE notes (body TEXT)")
    con.commit()
    con.close()
    before = other.read_bytes()
    for extra in [[], ["--summary"], ["--since", "2026-12-01"]]:
        r = run("logs", "--db", str(other), *extra, env=env)
        assert r.returncode == 1 and "OTHER.sqlite is not a rightmodel request log" in r.stderr, r.stderr
        assert "no such table" not in r.stderr, r.stderr
    assert other.read_bytes() == before and sorted(p.name for p in tmp_path.glob("OTHER*")) == ["OTHER.sqlite"]
    # docs add: a PDF is refused by name, even when its bytes are UTF-8; in a folder it is skipped.
    pdf = tmp_path / "handbook.pdf"
    pdf.write_text("%PDF-1.4\nBT (The office opens at nine.) Tj ET\n%%EOF\n")
    r = run("docs", "add", "h", str(pdf), env=env)
    assert r.returncode == 1 and "handbook.pdf: a PDF document" in r.stderr and ".txt" in r.stderr, r.stderr
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.md").write_text("The office opens at nine.\n")
    (folder / "disguised.txt").write_text("%PDF-1.4\nBT (Lunch is at noon.) Tj ET\n%%EOF\n")
    r = run("docs", "add", "h", str(folder), env=env)
    assert r.returncode == 0 and "skipped" in r.stderr and "disguised.txt: a PDF document" in r.stderr, r.stderr
