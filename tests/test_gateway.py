"""The gateway through the official openai SDK: chat, streaming, embeddings, models, errors."""
import base64
import json
import math
import signal
import struct
import time

import openai
import pytest

from conftest import LOCAL, Server, leave_after, request


def wait_for(cond, timeout=30.0):
    """Polls `cond` until it holds (fails the test after `timeout` seconds)."""
    import time

    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_models_list(client):
    ids = {m.id for m in client.models.list().data}
    assert {"auto", "gemma3-270m", "minilm-l6"} <= ids
    # One model, as the list shows it; an unknown one is OpenAI's 404.
    m = client.models.retrieve("gemma3-270m")
    assert m.id == "gemma3-270m" and m.object == "model" and m.owned_by == "rightmodel"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such/model")
    assert e.value.code == "model_not_found"


def test_chat_completion(client):
    r = client.chat.completions.with_raw_response.create(
        model="gemma3-270m",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
        seed=1,
    )
    assert r.headers["x-rightmodel-model"] == "gemma3-270m"
    c = r.parse()
    assert c.model == "gemma3-270m"
    assert c.choices[0].message.role == "assistant"
    assert c.choices[0].finish_reason in ("stop", "length")
    assert c.usage.prompt_tokens > 0 and 0 < c.usage.completion_tokens <= 8
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens


def test_chat_is_deterministic_at_temperature_zero(client):
    kw = dict(model="gemma3-270m", messages=[{"role": "user", "content": "Name a color."}], max_tokens=6, temperature=0)
    a = client.chat.completions.create(**kw).choices[0].message.content
    second = client.chat.completions.create(**kw)
    assert a == second.choices[0].message.content
    # The repeated prompt came from the KV cache, and usage says so where OpenAI clients look for it.
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert 0 < cached < second.usage.prompt_tokens, second.usage


def test_without_prompt_caching_every_prompt_is_computed_afresh(client):
    """`rightmodel.cache_prompt: false` (llama.cpp server's `cache_prompt`) computes the whole prompt,
    so a greedy answer does not depend on what earlier requests left in the KV cache."""
    kw = dict(model="gemma3-270m", messages=[{"role": "user", "content": "Count: one, two,"}], max_tokens=12,
              temperature=0)
    client.chat.completions.create(**kw)  # the prompt is now cached
    fresh = [client.chat.completions.create(**kw, extra_body={"rightmodel": {"cache_prompt": False}})
             for _ in range(2)]
    assert [r.usage.prompt_tokens_details.cached_tokens for r in fresh] == [0, 0]
    assert fresh[0].choices[0].message.content == fresh[1].choices[0].message.content
    text = "".join(
        ch.delta.content or ""
        for chunk in client.chat.completions.create(**kw, stream=True, extra_body={"rightmodel": {"cache_prompt": False}})
        for ch in chunk.choices
    )
    assert text == fresh[0].choices[0].message.content
    c = client.completions.create(model="gemma3-270m", prompt="Count: one, two,", max_tokens=4, temperature=0,
                                  extra_body={"rightmodel": {"cache_prompt": False}})
    assert c.usage.prompt_tokens_details is None or not c.usage.prompt_tokens_details.cached_tokens
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**kw, extra_body={"rightmodel": {"cache_prompt": "no"}})
    assert e.value.param == "rightmodel.cache_prompt"
    # llama.cpp's server takes it at the top level of the body: so does a local model here; and as a header.
    top = client.chat.completions.create(**kw, extra_body={"cache_prompt": False})
    assert top.usage.prompt_tokens_details.cached_tokens == 0
    assert top.choices[0].message.content == fresh[0].choices[0].message.content
    header = client.chat.completions.create(**kw, extra_headers={"x-rightmodel-cache-prompt": "false"})
    assert header.usage.prompt_tokens_details.cached_tokens == 0
    done = dict(model="gemma3-270m", prompt="Count: one, two, three,", max_tokens=4, temperature=0)
    client.completions.create(**done)
    assert client.completions.create(**done).usage.prompt_tokens_details.cached_tokens > 0
    c = client.completions.create(**done, extra_headers={"x-rightmodel-cache-prompt": "false"})
    assert c.usage.prompt_tokens_details.cached_tokens == 0
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**kw, extra_body={"cache_prompt": "no"})
    assert e.value.param == "cache_prompt"


def test_streaming_with_usage(client):
    # Both answers compared below find the prompt in the KV cache: a cold prompt and a cached one are
    # computed in different batch shapes, and on CPUs with AVX512-FP16 (half-precision steps in ggml)
    # that alone can flip a near-tie of greedy decoding ("Name: 1000" vs "-1\n-2\n...").
    client.chat.completions.create(
        model="gemma3-270m", messages=[{"role": "user", "content": "Count: one, two,"}], max_tokens=12, temperature=0
    )
    stream = client.chat.completions.create(
        model="gemma3-270m",
        messages=[{"role": "user", "content": "Count: one, two,"}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    assert finish in ("stop", "length")
    assert usage is not None and usage.completion_tokens > 0
    full = client.chat.completions.create(
        model="gemma3-270m", messages=[{"role": "user", "content": "Count: one, two,"}], max_tokens=12, temperature=0
    )
    assert text == full.choices[0].message.content


def test_stream_without_usage_has_no_usage_chunk(client):
    chunks = list(
        client.chat.completions.create(
            model="gemma3-270m", messages=[{"role": "user", "content": "Hi"}], max_tokens=3, stream=True
        )
    )
    assert all(c.usage is None for c in chunks)


def test_several_choices_from_a_local_model(local_server, client):
    """`n` choices are generated side by side, each its own sample (the client's seed plus its index), billed
    as OpenAI bills them (the prompt once, every choice's tokens) and streamed under their indexes."""
    msgs = [{"role": "user", "content": "Name an animal."}]
    kw = dict(model="gemma3-270m", messages=msgs, max_tokens=8, temperature=1.0, seed=7)
    r = client.chat.completions.create(n=3, **kw)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.message.content for c in r.choices]
    assert len(set(texts)) > 1, texts
    one = client.chat.completions.create(**kw)
    assert r.usage.prompt_tokens == one.usage.prompt_tokens
    assert 3 <= r.usage.completion_tokens <= 3 * 8
    text, finished, ids, usage = {}, set(), set(), None
    for chunk in client.chat.completions.create(n=3, stream=True, stream_options={"include_usage": True}, **kw):
        ids.add(chunk.id)
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            text[ch.index] = text.get(ch.index, "") + (ch.delta.content or "")
            if ch.finish_reason:
                finished.add(ch.index)
    assert len(ids) == 1 and finished == {0, 1, 2} and set(text) == {0, 1, 2}
    assert usage.prompt_tokens == one.usage.prompt_tokens and 3 <= usage.completion_tokens <= 3 * 8
    # The log bills every choice.
    local_server.wait_row(lambda row: row["stream"] and row["output_tokens"] == usage.completion_tokens)


def test_stop_sequence(client):
    c = client.chat.completions.create(
        model="gemma3-270m", messages=[{"role": "user", "content": "List three fruits, one per line."}],
        max_tokens=30, temperature=0, stop=["\n"],
    )
    assert "\n" not in c.choices[0].message.content


def test_logprobs(client):
    c = client.chat.completions.create(
        model="gemma3-270m", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0,
        logprobs=True, top_logprobs=3,
    )
    content = c.choices[0].logprobs.content
    assert len(content) == c.usage.completion_tokens
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        # greedy: the chosen token is the most likely one
        assert abs(t.top_logprobs[0].logprob - t.logprob) < 1e-4
    # The tokens of a stop sequence are not part of the answer, nor of its log-probabilities.
    for seed in range(3):
        c = client.chat.completions.create(
            model="gemma3-270m", messages=[{"role": "user", "content": "Write three fruits, one per line."}],
            max_tokens=40, temperature=1, seed=seed, stop=["\n"], logprobs=True)
        content = c.choices[0].logprobs.content
        tokens = "".join(t.token for t in content)
        # (A token that ends the answer's text and starts the stop, such as ".\n", stays.)
        assert tokens.rstrip("\n") == c.choices[0].message.content, (tokens, c.choices[0].message.content)
        assert not content or content[-1].token != "\n", content[-1]


def test_json_response_format(client):
    c = client.chat.completions.create(
        model="gemma3-270m", messages=[{"role": "user", "content": "Is the sky blue? Answer in JSON."}],
        max_tokens=30, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}},
    )
    assert isinstance(json.loads(c.choices[0].message.content)["ok"], bool)


def test_schemas_no_value_satisfies_are_400_and_the_server_lives_on(client):
    """Such schemas aborted the process (a C++ exception) or hung the engine (a wrapped repetition)."""
    msgs = [{"role": "user", "content": "json"}]
    for schema in ({"type": "integer", "minimum": 5, "maximum": 1},
                   {"type": "string", "minLength": 3, "maxLength": 1},
                   {"type": "integer", "exclusiveMinimum": 5, "maximum": 5},
                   {"type": "integer", "minimum": 1.2, "maximum": 1.8},
                   {"type": "array", "items": {"type": "string"}, "maxItems": 100000},
                   {"type": "object", "properties": {f"p{i}": {"type": "object"} for i in range(600)}}):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(
                model="gemma3-270m", messages=msgs, max_tokens=8,
                response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
        assert e.value.param == "response_format.json_schema.schema", schema
    # Data inside a schema (defaults, examples) is not read as schema keywords.
    c = client.chat.completions.create(
        model="gemma3-270m", messages=msgs, max_tokens=12, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"n": {"type": "integer", "default": {"minimum": 5, "maximum": 1}}},
            "examples": [{"minLength": 99999}]}}})
    assert c.choices[0].message.content is not None
    # A forced tool call ignores the client's stop sequences (JSON whitespace may hold them).
    c = client.chat.completions.create(
        model="gemma3-270m", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=WEATHER, tool_choice="required", stop=["\n"], max_tokens=60, temperature=0)
    assert json.loads(c.choices[0].message.tool_calls[0].function.arguments)["city"]
    ok = client.chat.completions.create(model="gemma3-270m", messages=msgs, max_tokens=4)
    assert ok.choices[0].message.content is not None


def test_text_completion(client):
    c = client.completions.create(model="gemma3-270m", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert c.choices[0].text.split()[:2] == ["the", "capital"]
    assert c.usage.prompt_tokens == 6
    # Log-probabilities, whole and streamed; offsets are in characters.
    c = client.completions.create(model="gemma3-270m", prompt="Say it in Japanese: hello ->", max_tokens=6,
                                  temperature=0, logprobs=2)
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.text_offset) == 6
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(6)]
    chunks = list(client.completions.create(model="gemma3-270m", prompt="Say it in Japanese: hello ->", max_tokens=6,
                                            temperature=0, logprobs=2, stream=True))
    streamed = [t for ch in chunks if ch.choices and ch.choices[0].logprobs for t in ch.choices[0].logprobs.tokens]
    assert streamed == lp.tokens
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="gemma3-270m", prompt="x", max_tokens=0)
    assert e.value.param == "max_tokens"


def test_several_text_completions_from_a_local_model(local_server, client):
    """Text completions take `n` as chat does: choices side by side, each its own sample, the prompt
    billed once, streamed under their indexes with one usage chunk."""
    kw = dict(model="gemma3-270m", prompt="My favourite animal is the", max_tokens=6, temperature=1.0, seed=11)
    r = client.completions.create(n=3, **kw)
    assert [c.index for c in r.choices] == [0, 1, 2] and all(c.finish_reason for c in r.choices)
    assert len({c.text for c in r.choices}) > 1, [c.text for c in r.choices]
    one = client.completions.create(**kw)
    assert r.usage.prompt_tokens == one.usage.prompt_tokens and 3 <= r.usage.completion_tokens <= 18
    text, finished, usage = {}, set(), None
    for chunk in client.completions.create(n=3, stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            text[ch.index] = text.get(ch.index, "") + ch.text
            if ch.finish_reason:
                finished.add(ch.index)
    assert finished == {0, 1, 2} and set(text) == {0, 1, 2}
    assert usage.prompt_tokens == one.usage.prompt_tokens and 3 <= usage.completion_tokens <= 18
    local_server.wait_row(lambda row: row["endpoint"] == "/v1/completions" and row["stream"]
                          and row["output_tokens"] == usage.completion_tokens)


def test_concurrent_embedding_requests_share_batches_but_not_rows(client):
    """Requests arriving together are embedded in shared encoder calls; each still gets its own rows."""
    from concurrent.futures import ThreadPoolExecutor
    texts = [[f"Sentence number {i} about topic {i % 5}."] + (["An extra line."] if i % 3 == 0 else []) for i in range(24)]
    alone = [[d.embedding for d in client.embeddings.create(model="minilm-l6", input=t).data] for t in texts]
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda t: client.embeddings.create(model="minilm-l6", input=t), texts))
    for t, a, r in zip(texts, alone, together):
        assert [d.index for d in r.data] == list(range(len(t)))
        assert r.usage.prompt_tokens > 0
        for x, y in zip(a, (d.embedding for d in r.data)):
            assert sum(p * q for p, q in zip(x, y)) > 0.9999


def test_a_model_sent_to_an_endpoint_that_does_not_serve_it_hears_which_does(client):
    """A chat model asked for embeddings, or the encoder asked for a completion, is a 400 naming the endpoint
    that serves it (a name no model has stays a 404); options are checked on /v1/embeddings as on chat."""
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="gemma3-270m", input="hello")
    assert e.value.code == "model_not_supported" and "/v1/chat/completions" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="minilm-l6", prompt="hello", max_tokens=2)
    assert e.value.code == "model_not_supported" and "/v1/embeddings" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="minilm-l6", messages=[{"role": "user", "content": "hello"}])
    assert e.value.code == "model_not_supported" and "/v1/embeddings" in e.value.message
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-encoder", input="hello")
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="minilm-l6", input="hello", extra_body={"rightmodel": {"bogus": 1}})
    assert e.value.param == "rightmodel.bogus"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="minilm-l6", input="hello", extra_headers={"x-rightmodel-bogus": "1"})
    assert e.value.param == "x-rightmodel-bogus"


def test_embeddings_float_and_base64(client):
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."]
    r = client.embeddings.create(model="minilm-l6", input=texts)
    v = [d.embedding for d in r.data]
    assert [d.index for d in r.data] == [0, 1, 2]
    cos = lambda a, b: sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    assert abs(cos(v[0], v[1]) - 0.755) < 0.01
    assert abs(cos(v[0], v[2]) - 0.247) < 0.01
    assert r.usage.prompt_tokens > 0
    one = client.embeddings.create(model="minilm-l6", input="A man is eating food.", encoding_format="base64")
    raw = base64.b64decode(one.data[0].embedding)
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(decoded) == 384
    assert max(abs(a - b) for a, b in zip(decoded, v[0])) < 1e-6
    # Token ids as tiktoken's cl100k_base makes them (LangChain's OpenAIEmbeddings sends them by default)
    # embed the text they encode: [9906, 1917] is "Hello world".
    text = client.embeddings.create(model="minilm-l6", input=["Hello world", "A man is eating food."])
    ids = client.embeddings.create(model="minilm-l6", input=[[9906, 1917], [32, 893, 374, 12459, 3691, 13]])
    for a, b in zip(text.data, ids.data):
        assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding)) < 1e-5
    one = client.embeddings.create(model="minilm-l6", input=[9906, 1917])
    assert len(one.data) == 1 and max(abs(x - y) for x, y in zip(one.data[0].embedding, text.data[0].embedding)) < 1e-5
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="minilm-l6", input=[[9906], [999999]])
    assert e.value.body["param"] == "input" and "input[1]" in e.value.body["message"]


def test_errors_are_openai_shaped(local_server, client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    for n in (0, 17, 129):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="gemma3-270m", messages=[{"role": "user", "content": "x"}], n=n)
        assert e.value.param == "n", n
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="gemma3-270m", messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    assert e.value.param == "tool_choice", "a local model does not decide on its own to call a tool"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="gemma3-270m", messages=[{"role": "user", "content": "x"}],
            functions=[{"name": "f", "parameters": {}}],
        )
    assert e.value.param == "functions"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gemma3-270m", messages=[])
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gemma3-270m", messages=[{"role": "user"}])
    assert e.value.param == "messages[0].content"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="minilm-l6", input=["a", 1])
    assert "input[1]" in e.value.message
    status, _, body = request(local_server.base, "GET", "/v1/models/%ff")
    assert status == 400 and json.loads(body)["error"]["param"] == "model"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gemma3-270m", messages=[{"role": "user", "content": "x"}], temperature=5)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="minilm-l6", input=[])


WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
                   "required": ["city", "unit"]}}}]


def test_local_model_makes_a_forced_tool_call(client):
    """A named tool_choice makes the local model fill in the call; its arguments follow the schema."""
    c = client.chat.completions.create(
        model="gemma3-270m", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=WEATHER, tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=60, temperature=0)
    ch = c.choices[0]
    # A named function finishes with "stop", as OpenAI's does ("required" finishes with "tool_calls").
    assert ch.finish_reason == "stop" and ch.message.content is None
    call = ch.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    assert isinstance(args["city"], str) and args["unit"] in ("C", "F")
    # The result goes back as a `tool` message; with tool_choice "none" the model answers in text.
    follow = client.chat.completions.create(
        model="gemma3-270m", max_tokens=12, temperature=0, tools=WEATHER, tool_choice="none",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}, ch.message,
                  {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}])
    assert follow.choices[0].message.content and not follow.choices[0].message.tool_calls
    # Streaming: the call arrives as tool-call deltas.
    chunks = list(client.chat.completions.create(
        model="gemma3-270m", messages=[{"role": "user", "content": "Weather in Rome?"}],
        tools=WEATHER, tool_choice="required", max_tokens=60, temperature=0, stream=True))
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather"
    assert "city" in json.loads("".join(d.function.arguments or "" for d in deltas))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    # A schema the grammar cannot follow is a 400 on `tools`.
    bad = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}}}]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gemma3-270m", messages=[{"role": "user", "content": "x"}],
                                       tools=bad, tool_choice="required")
    assert e.value.param == "tools"


def test_raw_http_errors(local_server):
    base = local_server.base
    s, h, b = request(base, "POST", "/v1/chat/completions", raw=b"{not json")
    assert s == 400 and json.loads(b)["error"]["type"] == "invalid_request_error"
    s, h, b = request(base, "POST", "/v1/chat/completions", body={"model": 3, "messages": "x"})
    assert s == 400 and "error" in json.loads(b)
    s, h, b = request(base, "POST", "/v1/chat/completions", raw=b"x" * (5 * 1024 * 1024))
    assert s == 413 and json.loads(b)["error"]["message"]
    s, h, b = request(base, "GET", "/v1/nothing")
    assert s == 404 and json.loads(b)["error"]["code"] == "unknown_url"
    s, h, b = request(base, "GET", "/v1/chat/completions")
    assert s == 405 and json.loads(b)["error"]["code"] == "method_not_allowed"
    s, h, b = request(base, "POST", "/v1/chat/completions",
                      body={"model": "gemma3-270m", "messages": [{"role": "user", "content": "word " * 3000}]})
    assert s == 400 and "tokens" in json.loads(b)["error"]["message"]


def test_health_and_metrics(local_server, client):
    client.chat.completions.create(model="gemma3-270m", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    s, _, b = request(local_server.base, "GET", "/healthz")
    assert s == 200 and json.loads(b)["status"] == "ok"
    s, h, b = request(local_server.base, "GET", "/metrics")
    text = b.decode()
    assert s == 200
    assert 'rightmodel_requests_total{endpoint="/v1/chat/completions",model="gemma3-270m",outcome="ok"}' in text
    assert "rightmodel_time_to_first_token_seconds_bucket" in text
    assert 'rightmodel_tokens_total{direction="output",model="gemma3-270m"}' in text


def test_every_request_is_logged(local_server, client):
    before = len(local_server.logs())
    client.chat.completions.create(model="gemma3-270m", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    rows = local_server.wait_logs(before + 2)
    ok, bad = rows[-2], rows[-1]
    assert ok["served_model"] == "gemma3-270m" and ok["status"] == 200 and ok["output_tokens"] > 0
    assert ok["latency_ms"] > 0 and ok["ttft_ms"] is not None
    assert bad["status"] == 404 and bad["requested_model"] == "nope" and bad["error"]


def test_a_local_stream_cut_by_its_client_logs_the_work_done(local_server, client):
    """A local answer abandoned mid-stream costs nothing, but its row still counts the prompt and the
    text already sent (estimated, and marked so), so `logs --summary` and the token metrics do not
    undercount."""
    stream = client.chat.completions.create(
        model="gemma3-270m", messages=[{"role": "user", "content": "Write a long story about a cut stream."}],
        max_tokens=200, temperature=0.8, seed=3, stream=True)
    leave_after(stream)
    row = local_server.wait_row(lambda r: r["status"] == 499 and r["served_model"] == "gemma3-270m")
    assert row["input_tokens"] > 5 and row["output_tokens"] > 0 and row["cost_usd"] == 0, row
    assert "estimated" in row["error"], row


def test_a_local_answer_abandoned_before_it_is_complete_logs_the_work_done(local_server):
    """A client that gives up on a non-streamed local answer (its timeout) leaves a 499 row that counts
    the text generated so far, for chat and for text completions."""
    c = openai.OpenAI(base_url=local_server.url("/v1"), api_key="x", max_retries=0, timeout=1.0)
    prompt = "Write a very long story about a lighthouse keeper and the sea, in many chapters."
    for endpoint in ("chat", "completions"):
        before = {r["id"] for r in local_server.logs()}
        for seed in range(5):  # a sampled answer may end before the timeout: try another
            try:
                if endpoint == "chat":
                    c.chat.completions.create(model="gemma3-270m", messages=[{"role": "user", "content": prompt}],
                                              max_tokens=600, temperature=0.9, seed=seed)
                else:
                    c.completions.create(model="gemma3-270m", prompt=prompt, max_tokens=600, temperature=0.9,
                                         seed=seed)
            except openai.APITimeoutError:
                break
        else:
            pytest.skip("every answer ended within the client's timeout")
        row = local_server.wait_row(lambda r: r["id"] not in before and r["status"] == 499)
        assert row["output_tokens"] > 0 and "estimated" in row["error"], (endpoint, row)


def test_concurrent_requests_share_the_model(client):
    import concurrent.futures as cf

    def one(i):
        return client.chat.completions.create(
            model="gemma3-270m", messages=[{"role": "user", "content": f"Number {i}:"}], max_tokens=6, temperature=0
        ).usage.completion_tokens

    with cf.ThreadPoolExecutor(8) as ex:
        assert all(n > 0 for n in ex.map(one, range(8)))


def test_keys_rate_and_model_limits(tmp_path):
    import hashlib

    h = lambda k: hashlib.sha256(k.encode()).hexdigest()
    cfg = "[server]\nmetrics_require_key = true\n" + LOCAL + f"""
[[key]]
name = "alice"
sha256 = "{h('sk-alice')}"
requests_per_minute = 3

[[key]]
name = "bob"
sha256 = "{h('sk-bob')}"
models = ["minilm-l6"]
"""
    s = Server(tmp_path, cfg, "keys", env={"RIGHTMODEL_LOG": "info"})
    try:
        mk = lambda key: openai.OpenAI(base_url=s.url("/v1"), api_key=key, max_retries=0)
        msg = [{"role": "user", "content": "x"}]
        with pytest.raises(openai.AuthenticationError):
            mk("sk-wrong").chat.completions.create(model="gemma3-270m", messages=msg, max_tokens=1)
        status, _, _ = request(s.base, "GET", "/v1/models")
        assert status == 401
        # metrics_require_key: /metrics wants a key like the API.
        assert request(s.base, "GET", "/metrics")[0] == 401
        status, _, body = request(s.base, "GET", "/metrics", headers={"Authorization": "Bearer sk-bob"})
        assert status == 200 and b"rightmodel_requests_total" in body
        with pytest.raises(openai.PermissionDeniedError):
            mk("sk-bob").chat.completions.create(model="gemma3-270m", messages=msg, max_tokens=1)
        assert mk("sk-bob").embeddings.create(model="minilm-l6", input="x").data
        # A model the key may not use is not shown to it one by one either.
        assert mk("sk-bob").models.retrieve("minilm-l6").id == "minilm-l6"
        with pytest.raises(openai.NotFoundError):
            mk("sk-bob").models.retrieve("gemma3-270m")
        alice = mk("sk-alice")
        for _ in range(3):
            alice.chat.completions.create(model="gemma3-270m", messages=msg, max_tokens=1)
        with pytest.raises(openai.RateLimitError) as e:
            alice.chat.completions.create(model="gemma3-270m", messages=msg, max_tokens=1)
        assert int(e.value.response.headers["retry-after"]) >= 1
        # Listing models takes nothing from the key's rate; the limited request's row names its key.
        assert request(s.base, "GET", "/v1/models", headers={"Authorization": "BEARER sk-alice"})[0] == 200
        rows = s.wait_logs(7)
        assert {r["key_name"] for r in rows if r["key_name"]} == {"alice", "bob"}
        limited = [r for r in rows if r["status"] == 429]
        assert limited and all(r["key_name"] == "alice" for r in limited), limited
        # The metrics count a limit as load, apart from client mistakes.
        body = request(s.base, "GET", "/metrics", headers={"Authorization": "Bearer sk-bob"})[2].decode()
        assert 'outcome="rate_limited"' in body, body
        log_text = s.db.read_bytes()
        assert b"sk-alice" not in log_text and b"sk-bob" not in log_text
        # SIGHUP reads the keys again: bob's secret is rotated and he may chat now, alice is revoked,
        # carol arrives. A file that does not parse changes nothing.
        text = s.config_path.read_text()
        s.config_path.write_text(text + "\n[[key]\n")
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any("keys not reloaded" in l for l in s.stderr_lines))
        models = lambda key: request(s.base, "GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})[0]
        assert models("sk-alice") == 200
        keys = f"""
[[key]]
name = "bob"
sha256 = "{h('sk-bob-2')}"

[[key]]
name = "carol"
sha256 = "{h('sk-carol')}"
"""
        s.config_path.write_text(text.split("[[key]]")[0] + keys)
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any("keys reloaded" in l for l in s.stderr_lines))
        assert models("sk-alice") == 401 and models("sk-bob") == 401
        assert mk("sk-bob-2").chat.completions.create(model="gemma3-270m", messages=msg, max_tokens=1).choices
        assert mk("sk-carol").embeddings.create(model="minilm-l6", input="x").data
    finally:
        s.stop()


def test_graceful_shutdown_drains_streams(tmp_path):
    import threading

    s = Server(tmp_path, LOCAL, "drain")
    c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
    result = {}

    def consume():
        stream = c.chat.completions.create(
            model="gemma3-270m", messages=[{"role": "user", "content": "Tell a long story."}],
            max_tokens=120, temperature=0, stream=True,
        )
        n = 0
        finish = None
        for ch in stream:
            for x in ch.choices:
                n += 1
                finish = x.finish_reason or finish
        result["finish"] = finish

    t = threading.Thread(target=consume)
    t.start()
    import time

    time.sleep(0.8)
    rc = s.stop()
    t.join(timeout=60)
    assert result.get("finish") == "length", result
    assert rc == 0
    rows = s.logs()
    assert rows and rows[-1]["status"] == 200


def test_requests_cut_by_the_end_of_the_grace_period_say_so(tmp_path):
    """A stream still running when the shutdown grace period ends gets an error event (not a silent cut), a
    whole answer still being written gets a 503 in OpenAI's shape (not a closed connection), and their log
    rows say 503 (the server ended them), not 499 (a client that left)."""
    import threading
    import time

    s = Server(tmp_path, "[server]\nshutdown_grace_secs = 1\n" + LOCAL, "cut")
    c = openai.OpenAI(base_url=s.url("/v1"), api_key="x", max_retries=0)
    result = {}

    def consume(kind):
        try:
            if kind == "whole":
                c.chat.completions.create(
                    model="gemma3-270m", messages=[{"role": "user", "content": "Tell a long story."}],
                    max_tokens=900, temperature=0)
                result[kind] = "finished"
                return
            if kind == "chat":
                stream = c.chat.completions.create(
                    model="gemma3-270m", messages=[{"role": "user", "content": "Tell a long story."}],
                    max_tokens=900, temperature=0, stream=True)
            else:
                stream = c.completions.create(
                    model="gemma3-270m", prompt="Once upon a time, in a land far away,", max_tokens=900, temperature=0,
                    stream=True)
            for _ in stream:
                pass
            result[kind] = "finished"
        except openai.APIStatusError as e:
            result[kind] = f"{e.status_code} {e.message}"
        except openai.APIError as e:
            result[kind] = str(e)

    threads = [threading.Thread(target=consume, args=(k,)) for k in ("chat", "text", "whole")]
    for t in threads:
        t.start()
    time.sleep(0.8)
    s.stop()
    for t in threads:
        t.join(timeout=60)
    assert "shutting down" in result.get("chat", ""), result
    assert "shutting down" in result.get("text", ""), result
    assert result.get("whole", "").startswith("503") and "shut down" in result["whole"], result
    rows = s.logs()
    assert len(rows) >= 3 and all(r["status"] == 503 for r in rows[-3:]), rows[-3:]


def test_a_prompt_longer_than_the_context_is_context_length_exceeded(local_server, client):
    """OpenAI's code, param and wording, which clients (LiteLLM, agent frameworks) match to shorten the
    conversation: for a prompt measured in tokens, and for one refused by its size alone."""
    long = "hello there " * 1500  # about 3,000 tokens; a slot holds 1,024
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gemma3-270m", messages=[{"role": "user", "content": long}],
                                       max_tokens=4)
    assert e.value.code == "context_length_exceeded"
    assert e.value.param == "messages"
    assert "maximum context length is 1024 tokens" in e.value.message
    huge = "x" * (3 << 20)  # refused before tokenising
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gemma3-270m", messages=[{"role": "user", "content": huge}],
                                       max_tokens=4, stream=True)
    assert (e.value.code, e.value.param) == ("context_length_exceeded", "messages")
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="gemma3-270m", prompt=long, max_tokens=4)
    assert (e.value.code, e.value.param) == ("context_length_exceeded", "prompt")
    assert "maximum context length" in e.value.message
    # The model serves on.
    ok = client.chat.completions.create(model="gemma3-270m", messages=[{"role": "user", "content": "Hi"}],
                                        max_tokens=2)
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_completions_accept_the_no_op_values_older_clients_send(client):
    """best_of=1, an empty logit_bias and an empty suffix change nothing and are accepted; real values are
    refused naming the field."""
    c = client.completions.create(model="gemma3-270m", prompt="The capital of France is", max_tokens=3,
                                  temperature=0, best_of=1, logit_bias={}, suffix="")
    assert c.choices[0].text
    for field, value in (("best_of", 2), ("logit_bias", {"50256": -100}), ("suffix", "end")):
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model="gemma3-270m", prompt="x", max_tokens=2, **{field: value})
        assert e.value.param == field and e.value.code == "unsupported_parameter"


def test_token_id_prompts_get_a_clear_answer_from_local_models(client):
    """OpenAI's schema allows token ids as the prompt; a local model asks for text, naming the field (it was
    a serde message about an untagged enum)."""
    for prompt in ([1, 2, 3], [[1, 2, 3]]):
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model="gemma3-270m", prompt=prompt, max_tokens=2)
        assert e.value.param == "prompt" and "token ids" in e.value.message


def test_every_request_leaves_one_row_even_when_its_client_leaves_at_once(local_server):
    """A client that sends a request and closes the connection at once (a timeout of a few
    milliseconds, a killed script) can have its request dropped before the handler ever runs; it
    still gets its row (499, or 200 when the answer was done first), exactly one per request. A
    client that closes half way through its body is logged as 499 too, not as a bad request."""
    import socket

    def sent_then_closed(body, cut=None, chunked=False):
        head = (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + (b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: %d\r\n\r\n" % len(body)))
        if chunked:
            body = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
        with socket.create_connection(("127.0.0.1", local_server.port)) as s:
            s.sendall(head + (body[:cut] if cut else body))
            if cut:
                time.sleep(0.3)

    before = len([r for r in local_server.logs() if r["endpoint"] == "/v1/embeddings"])
    for i in range(12):
        sent_then_closed(json.dumps({"model": "minilm-l6", "input": f"gone at once {i}"}).encode())
    sent_then_closed(json.dumps({"model": "minilm-l6", "input": "cut half way"}).encode(), cut=20)
    sent_then_closed(json.dumps({"model": "minilm-l6", "input": "chunks cut half way"}).encode(), cut=20, chunked=True)
    deadline = time.time() + 15
    while time.time() < deadline:
        rows = [r for r in local_server.logs() if r["endpoint"] == "/v1/embeddings"][before:]
        if len(rows) >= 14:
            break
        time.sleep(0.2)
    assert len(rows) == 14, rows
    assert all(r["status"] in (200, 499) for r in rows), rows
    cut = [r for r in rows if r["error"] and "while sending the request body" in r["error"]]
    assert len(cut) == 2 and all(r["status"] == 499 for r in cut), rows


def test_bodies_refused_from_their_headers_say_so_before_the_upload(local_server):
    """A Content-Length over the limit is a 413 before the body is sent (a client asking
    `Expect: 100-continue` uploads nothing), a compressed body is named as such (400), and error
    answers carry the request id of their log row, like successful ones."""
    import socket

    head = (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\nExpect: 100-continue\r\n\r\n")
    with socket.create_connection(("127.0.0.1", local_server.port), timeout=10) as s:
        s.sendall(head)
        first = s.recv(4096).decode("latin-1")
    assert first.startswith("HTTP/1.1 413"), first
    rid = [l.split(":", 1)[1].strip() for l in first.split("\r\n") if l.lower().startswith("x-request-id:")]
    assert rid, first
    row = local_server.wait_row(lambda r: r["id"] == rid[0])
    assert row["status"] == 413 and row["endpoint"] == "/v1/embeddings", row

    status, headers, body = request(local_server.base, "POST", "/v1/embeddings", raw=b"\x1f\x8b\x08\x00compressed",
                                    headers={"Content-Encoding": "gzip"})
    assert status == 400 and "Content-Encoding" in json.loads(body)["error"]["message"], (status, body)
    assert headers.get("x-request-id"), headers
    status, headers, body = request(local_server.base, "POST", "/v1/embeddings", body={"model": "nope", "input": "x"})
    assert status == 404 and headers.get("x-request-id"), (status, headers)
    assert local_server.wait_row(lambda row: row["id"] == headers["x-request-id"])["status"] == 404


def test_an_oversized_upload_without_expect_still_reads_its_413(local_server):
    """A client that sends a body far over the limit without waiting for `100 Continue` gets its 413
    rather than a reset connection: the gateway reads and drops the upload before answering. The same
    for a chunked upload (no Content-Length to judge by), while a small chunked body is served."""
    import socket

    head = b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    chunk = b"x" * (1024 * 1024)

    def exchange(headers, pieces, until_close=False):
        """Sends the request, then reads its answer's head (or everything until the server closes)."""
        with socket.create_connection(("127.0.0.1", local_server.port), timeout=30) as s:
            s.sendall(head + headers + b"\r\n")
            for piece in pieces:
                s.sendall(piece)
            answer = b""
            while until_close or b"\r\n\r\n" not in answer:
                got = s.recv(65536)
                if not got:
                    break
                answer += got
        return answer

    def assert_logged_413(answer):
        text = answer.decode("latin-1")
        assert text.startswith("HTTP/1.1 413"), text[:200]
        rid = [l.split(":", 1)[1].strip() for l in text.split("\r\n") if l.lower().startswith("x-request-id:")]
        assert rid, text[:400]
        assert local_server.wait_row(lambda r: r["id"] == rid[0])["status"] == 413

    size = 40 * 1024 * 1024
    assert_logged_413(exchange(b"Content-Length: %d\r\n" % size, [chunk] * (size // len(chunk))))

    def chunked(parts):
        return [b"%x\r\n" % len(p) + p + b"\r\n" for p in parts] + [b"0\r\n\r\n"]

    assert_logged_413(exchange(b"Transfer-Encoding: chunked\r\n", chunked([chunk] * (size // len(chunk)))))
    body = json.dumps({"model": "minilm-l6", "input": "chunked hello"}).encode()
    answer = exchange(b"Transfer-Encoding: chunked\r\nConnection: close\r\n", chunked([body[:10], body[10:]]),
                      until_close=True)
    assert answer.startswith(b"HTTP/1.1 200") and b'"embedding"' in answer, answer[:300]


def test_connections_beyond_the_cap_wait_for_one_to_close(tmp_path):
    """`max_connections` bounds the sockets held open: an idle one at the cap keeps the next client
    waiting (not refused, not served) until it closes."""
    import socket

    srv = Server(tmp_path, "[server]\nmax_connections = 1\n", name="capped")
    try:
        idle = socket.create_connection(("127.0.0.1", srv.port))
        time.sleep(0.3)
        with pytest.raises(Exception):
            request(srv.base, "GET", "/healthz", timeout=1.5)
        idle.close()
        status, _, _ = request(srv.base, "GET", "/healthz", timeout=10)
        assert status == 200
    finally:
        srv.stop()
