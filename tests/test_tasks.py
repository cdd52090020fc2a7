"""Task small models through the gateway: a classifier trained by the CLI served on /v1/classify,
and a document collection answering `docs:NAME` chat requests with citations."""
import json
import pathlib
import subprocess

import openai

from conftest import BIN, LOCAL, Server, fresh_home, request

ROOT = pathlib.Path(__file__).resolve().parent.parent


def cli(env, *args):
    """Runs the rightmodel CLI with `env`; fails the test with its stderr on a non-zero exit."""
    r = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout


HANDBOOK = ROOT / "crates" / "docs" / "tests" / "fixtures" / "docs"


def test_classifier_trained_by_cli_is_served(tmp_path):
    home, env = fresh_home(tmp_path)
    data = ROOT / "crates" / "tasks" / "tests" / "fixtures" / "sentiment.csv"
    cli(env, "train", "classify", "--data", data, "--text-col", "text", "--label-col", "label",
        "--name", "sentiment", "--valid-split", "0.25")
    s = Server(tmp_path, LOCAL, "clf", env={"RIGHTMODEL_HOME": str(home)})
    try:
        status, headers, body = request(s.base, "POST", "/v1/classify",
                                        body={"model": "sentiment", "input": ["I loved it, wonderful!", "Terrible and boring."], "explain": True})
        assert status == 200, body
        data = json.loads(body)["data"]
        assert len(data) == 2
        for p in data:
            assert set(p) >= {"label", "confidence", "probs", "in_domain", "explanation"}
            assert 0 <= p["in_domain"] <= 1
        status, _, body = request(s.base, "POST", "/v1/classify", body={"model": "nope", "input": ["x"]})
        assert status == 404
        # A request cannot make the server load a directory by path, even a real classifier's.
        real = str(home / "classifiers" / "sentiment")
        for path in [real, real + "/", "../classifiers/sentiment", "classifiers/sentiment"]:
            status, _, body = request(s.base, "POST", "/v1/classify", body={"model": path, "input": ["x"]})
            assert status == 404, (path, body)
        # `explain` costs one encoder pass per word (of a text's first 64): a request is capped in passes.
        status, _, body = request(s.base, "POST", "/v1/classify",
                                  body={"model": "sentiment", "input": ["word " * 5000], "explain": True})
        assert status == 200, body
        status, _, body = request(s.base, "POST", "/v1/classify",
                                  body={"model": "sentiment", "input": ["word " * 64] * 100, "explain": True})
        assert status == 400 and json.loads(body)["error"]["param"] == "explain"
        # A very long text costs what the encoder reads of it, not its length.
        status, _, body = request(s.base, "POST", "/v1/classify",
                                  body={"model": "sentiment", "input": ["I loved this film. " * 20000], "explain": True})
        assert status == 200, body
        status, _, body = request(s.base, "POST", "/v1/classify", body={"model": "sentiment", "input": []})
        assert status == 400
        # An empty text is named by its place; a misspelt field is refused, not ignored.
        status, _, body = request(s.base, "POST", "/v1/classify", body={"model": "sentiment", "input": ["good", " "]})
        assert status == 400 and json.loads(body)["error"]["param"] == "input[1]", body
        status, _, body = request(s.base, "POST", "/v1/classify", body={"model": "sentiment", "input": ["good"], "explian": True})
        assert status == 400 and json.loads(body)["error"]["param"] == "explian", body
        # `explain` asked the gateway's other ways, as on chat: the `rightmodel` option and the header.
        for extra, headers in [({"rightmodel": {"explain": True}}, None), ({}, {"x-rightmodel-explain": "true"})]:
            status, _, body = request(s.base, "POST", "/v1/classify", body={"model": "sentiment", "input": ["good"], **extra},
                                      headers=headers)
            assert status == 200 and "explanation" in json.loads(body)["data"][0], body
        # A model of another kind is named as such.
        status, _, body = request(s.base, "POST", "/v1/classify", body={"model": "gemma3-270m", "input": ["x"]})
        assert status == 400 and json.loads(body)["error"]["code"] == "model_not_classifier", body
        # A damaged classifier is a 500 that does not say where this host keeps its files.
        broken = home / "classifiers" / "broken"
        broken.mkdir()
        (broken / "classifier.json").write_text("{garbage")
        status, _, body = request(s.base, "POST", "/v1/classify", body={"model": "broken", "input": ["x"]})
        assert status == 500 and str(home) not in body.decode() and "cannot be loaded" in body.decode(), body
    finally:
        s.stop()


def test_docs_model_answers_with_citations(tmp_path):
    """`docs:NAME` answers with citations; with `rerank_lm` and `read_lm` the local model re-orders the first
    passages and reads the answer span, and the decision says so."""
    home, env = fresh_home(tmp_path)
    cli(env, "docs", "add", "handbook", HANDBOOK)
    cli(env, "docs", "add", "manual", HANDBOOK)
    cli(env, "docs", "add", "unlisted", HANDBOOK)
    cfg = LOCAL + '\n[[docs]]\nname = "handbook"\nrerank_lm = "gemma3-270m"\nread_lm = "gemma3-270m"\n'
    cfg += '\n[[docs]]\nname = "manual"\nread_lm = "gemma3-270m"\n'
    s = Server(tmp_path, cfg, "docs", env={"RIGHTMODEL_HOME": str(home), "RIGHTMODEL_LOG": "info"})
    try:
        # The re-ranked collection's passages are decoded into the reader's cache at start (the one that
        # is only read is not: reading shows sentences, not whole passages).
        warmed = [l for l in s.stderr_lines if "warming the passage cache" in l]
        assert len(warmed) == 1 and "handbook" in warmed[0], warmed
        # Two collections on one local model share one reading thread (and its context).
        _, _, metrics = request(s.base, "GET", "/metrics")
        assert "\nrightmodel_passage_readers 1\n" in metrics.decode(), metrics
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
        # Collections are models: the configured ones and those in the home folder.
        ids = [m.id for m in c.models.list().data]
        assert {"docs:handbook", "docs:manual", "docs:unlisted"} <= set(ids), ids
        raw = c.chat.completions.with_raw_response.create(
            model="docs:handbook", messages=[{"role": "user", "content": "When was the museum founded?"}])
        body = raw.parse()
        assert raw.headers["x-rightmodel-model"] == "docs:handbook"
        decision = json.loads(raw.headers["x-rightmodel-decision"])
        assert decision["reranked_by"] == "gemma3-270m" and decision["read_by"] == "gemma3-270m", decision
        extra = body.model_extra["rightmodel"]
        assert extra["citations"], extra
        # The answer is the span the model read, cited inside the answer sentence.
        assert body.choices[0].message.content.startswith("1852"), body.choices[0].message.content
        span, cit = extra["span"], extra["citations"][0]
        assert span["text"] == "1852" and cit["start"] <= span["start"] < span["end"] <= cit["end"], (span, cit)
        # Sources are named relative to the collection's folder: clients do not learn the host's paths.
        assert cit["file"] == "museum.txt", cit
        assert not any(str(tmp_path) in json.dumps(x) or str(HANDBOOK) in json.dumps(x) for x in [extra, body.choices[0].message.content])
        text = (pathlib.Path(HANDBOOK) / cit["file"]).read_text()
        assert text[cit["start"]:cit["end"]] == cit["text"]
        # The written answer counts its tokens, and is cut by `stop` and `max_tokens` as a model's would be
        # (the structured citations stay whole).
        full = body.choices[0].message.content
        assert body.usage.completion_tokens > 2 and "\n[1] museum.txt:" in full
        cut = c.chat.completions.create(model="docs:handbook", stop=["\n"],
                                        messages=[{"role": "user", "content": "When was the museum founded?"}])
        assert cut.choices[0].message.content == full.split("\n")[0] and cut.choices[0].finish_reason == "stop"
        short = c.chat.completions.create(model="docs:handbook", max_tokens=2,
                                          messages=[{"role": "user", "content": "When was the museum founded?"}])
        assert short.choices[0].finish_reason == "length" and 0 < short.usage.completion_tokens <= 2, short
        assert full.startswith(short.choices[0].message.content) and short.model_extra["rightmodel"]["citations"]
        assert text[span["start"]:span["end"]] == span["text"]
        # The second collection reads with the same model.
        other = c.chat.completions.with_raw_response.create(
            model="docs:manual", messages=[{"role": "user", "content": "When was the museum founded?"}])
        assert json.loads(other.headers["x-rightmodel-decision"])["read_by"] == "gemma3-270m"
        assert other.parse().choices[0].message.content.startswith("1852")
        # A follow-up is completed from the previous question ("its" is the museum's); the decision
        # shows what the documents were asked.
        turns = [{"role": "user", "content": "When was the museum founded?"},
                 {"role": "assistant", "content": "1852"},
                 {"role": "user", "content": "Who was its first director?"}]
        follow = c.chat.completions.with_raw_response.create(model="docs:unlisted", messages=turns)
        assert follow.parse().choices[0].message.content.startswith("Henry Cole"), follow.parse()
        assert json.loads(follow.headers["x-rightmodel-decision"])["question"] == "Who was its first director? (museum founded)"
        with_missing = c.chat.completions.with_raw_response
        try:
            with_missing.create(model="docs:missing", messages=[{"role": "user", "content": "x"}])
            assert False, "expected 404"
        except openai.NotFoundError:
            pass
    finally:
        s.stop()


def test_served_collection_sees_changes_made_while_running(tmp_path):
    """`docs add` / `docs remove` in another process while the server runs: the next request answers
    from the new index (never a replaced one), and a removed collection is a 404."""
    home, env = fresh_home(tmp_path)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "opening.txt").write_text("The reading room opens at 9 o'clock every morning.\n")
    cli(env, "docs", "add", "notes", notes)
    cfg = LOCAL + '\n[[docs]]\nname = "notes"\nrerank_lm = "gemma3-270m"\n'
    s = Server(tmp_path, cfg, "docs-live", env={"RIGHTMODEL_HOME": str(home), "RIGHTMODEL_LOG": "info"})
    warmings = lambda: [l for l in s.stderr_lines if "warming the passage cache" in l]
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
        def ask():
            r = c.chat.completions.create(
                model="docs:notes", messages=[{"role": "user", "content": "When does the reading room open?"}])
            return r.model_extra["rightmodel"]["citations"][0]["text"]
        assert "9 o'clock" in ask()
        (notes / "opening.txt").write_text("The reading room opens at 11 o'clock every morning.\n")
        cli(env, "docs", "add", "notes", notes)
        cited = ask()
        assert "11 o'clock" in cited and " 9 o'clock" not in cited, cited
        # The reopened collection's new passages are warmed into its reader's cache, as at start.
        assert len(warmings()) == 2, warmings()
        cli(env, "docs", "remove", "notes")
        try:
            ask()
            assert False, "expected 404 after `docs remove`"
        except openai.NotFoundError:
            pass
    finally:
        s.stop()


def test_docs_ask_generate_cites_passages(tmp_path):
    """`docs ask --generate`: the local model writes an answer from the passages and it cites them."""
    home, env = fresh_home(tmp_path)
    cli(env, "docs", "add", "handbook", HANDBOOK)
    answer = json.loads(cli(env, "docs", "ask", "handbook", "When was the museum founded?", "--generate", "--json"))
    g = answer["generated"]
    assert g["text"].strip() and g["model"] == "gemma3-270m"
    assert g["cited"] and len(g["cited"]) == len(g["citations"])
    for n, c in zip(g["cited"], g["citations"]):
        assert f"[{n}]" in g["text"]
        passage = answer["passages"][n - 1]
        assert (c["file"], c["start"], c["end"]) == (passage["file"], passage["start"], passage["end"])
    # --rerank-lm: the first passages carry the model's log-likelihood of the question, the answer stays right;
    # --read-lm: the model read the answer span.
    answer = json.loads(cli(env, "docs", "ask", "handbook", "Who was the museum's first director?", "--rerank-lm",
                            "--read-lm", "--json"))
    assert answer["answer"] == "Henry Cole" and answer["read_by"] == "gemma3-270m", answer["answer"]
    scored = [p["question_log_likelihood"] for p in answer["passages"] if "question_log_likelihood" in p]
    assert len(scored) == min(3, len(answer["passages"])) and all(v < 0 for v in scored), answer["passages"]


def test_auto_lets_a_routed_classifier_answer_in_its_domain(tmp_path):
    """`[[classifier]] route = true`: `auto` sends in-domain requests the classifier is sure of to it (its label is
    the reply), others to the language model; a classifier retrained while the server runs is reloaded."""
    home, env = fresh_home(tmp_path)
    data = ROOT / "crates" / "tasks" / "tests" / "fixtures" / "sentiment.csv"
    cli(env, "train", "classify", "--data", data, "--text-col", "text", "--label-col", "label",
        "--name", "sentiment", "--valid-split", "0.25")
    cfg = LOCAL + '\n[[classifier]]\nname = "sentiment"\nroute = true\n'
    s = Server(tmp_path, cfg, "routed-clf", env={"RIGHTMODEL_HOME": str(home)})
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0, timeout=60)
        r = c.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "i found the film wonderful and brilliant"}],
            max_tokens=8, extra_body={"rightmodel": {"explain": True}})
        assert r.headers["x-rightmodel-model"] == "sentiment"
        d = json.loads(r.headers["x-rightmodel-decision"])
        assert d["reason"] == "domain_match", d
        body = json.loads(r.http_response.text)
        assert body["choices"][0]["message"]["content"] == "positive"
        assert body["usage"]["completion_tokens"] == 1, body["usage"]
        pred = body["rightmodel"]["prediction"]
        assert pred["label"] == "positive" and pred["explanation"]["tokens"]
        r = c.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=4)
        assert r.headers["x-rightmodel-model"] == "gemma3-270m"
        # The same kind of text after earlier turns belongs to a conversation: a language model follows it.
        r = c.chat.completions.with_raw_response.create(
            model="auto", max_tokens=4,
            messages=[{"role": "user", "content": "Write a story about dragons."},
                      {"role": "assistant", "content": "Once upon a time"},
                      {"role": "user", "content": "i found the film wonderful and brilliant"}])
        assert r.headers["x-rightmodel-model"] == "gemma3-270m", r.headers["x-rightmodel-decision"]
        # The explain header is read as the router reads it; the stream carries the prediction at the end.
        chunks = list(c.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "the script is wonderful and brilliant"}],
            stream=True, extra_headers={"x-rightmodel-explain": "1"}))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "positive"
        last = [ch.model_extra.get("rightmodel") for ch in chunks if ch.model_extra.get("rightmodel")]
        assert last and last[-1]["prediction"]["explanation"]["tokens"]
        # A request the classifier cannot honour (JSON output) goes to a language model; named directly, 400.
        fmt = {"type": "json_object"}
        r = c.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "i found the film wonderful and brilliant"}],
            max_tokens=8, response_format=fmt)
        assert r.headers["x-rightmodel-model"] == "gemma3-270m"
        try:
            c.chat.completions.create(model="sentiment", messages=[{"role": "user", "content": "great"}],
                                      response_format=fmt)
            raise AssertionError("a classifier named directly accepted a JSON response format")
        except openai.BadRequestError as e:
            assert e.param == "response_format"
        assert "sentiment" in [m.id for m in c.models.list().data]
        # Retrained under the same name with other labels: the server answers with the new classifier.
        other = tmp_path / "mood.csv"
        other.write_text("text,label\n" + "".join(
            f"{t},{l}\n" for t, l in [("so happy today", "happy"), ("what a joy", "happy"), ("i feel great", "happy"),
                                      ("lovely sunny day", "happy"), ("so sad today", "sad"), ("what a loss", "sad"),
                                      ("i feel awful", "sad"), ("gloomy rainy day", "sad")]))
        cli(env, "train", "classify", "--data", other, "--text-col", "text", "--label-col", "label",
            "--name", "sentiment", "--valid-split", "0.25", "--force")
        status, _, out = request(s.base, "POST", "/v1/classify", body={"model": "sentiment", "input": ["so happy"]})
        assert status == 200 and set(json.loads(out)["data"][0]["probs"]) == {"happy", "sad"}
    finally:
        s.stop()
