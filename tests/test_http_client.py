"""``mt/http_client.py`` and the HTTP decoder's reading of answers, against a small loopback
server whose answers the test chooses (what a real server does rarely or never: stale
keep-alive connections, U+FFFD at a cut, 401, non-JSON, no answer)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from streamst.errors import RemoteModelError
from streamst.mt.http_client import JsonClient

Handler = Callable[[BaseHTTPRequestHandler, dict], tuple[int, bytes, bool]]  # -> status, body, close after


@pytest.fixture
def fake() -> Iterator[dict]:
    """A loopback HTTP/1.1 server; ``state["answer"]`` decides each answer."""
    state: dict = {"requests": [], "connections": set(), "answer": None}

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def log_message(self, *a) -> None:
            pass

        def _serve(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n)) if n else {}
            state["requests"].append((self.command, self.path, dict(self.headers), body))
            state["connections"].add(self.client_address)
            status, data, close = state["answer"](self, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            if close:  # drop the connection without saying so (a server's idle timeout)
                self.close_connection = True

        do_GET = do_POST = _serve

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    state["url"] = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    yield state
    srv.shutdown()
    srv.server_close()


def ok(doc: dict, close: bool = False) -> Handler:
    return lambda h, body: (200, json.dumps(doc).encode(), close)


def test_connections_are_reused_and_a_stale_one_is_retried_once(fake) -> None:
    fake["answer"] = ok({"x": 1})
    c = JsonClient(fake["url"])
    assert [c.post("/completions", {"i": i})["x"] for i in range(3)] == [1, 1, 1]
    assert len(fake["connections"]) == 1 and fake["requests"][0][1] == "/v1/completions"
    fake["answer"] = ok({"x": 2}, close=True)  # each answer closes its connection silently
    assert [c.post("/completions", {})["x"] for _ in range(3)] == [2, 2, 2]
    # the first went over the kept connection; the next two found theirs closed and retried fresh
    assert len(fake["connections"]) == 3 and len(fake["requests"]) == 6
    c.close()


def test_http_errors_are_one_line_with_the_servers_message(fake) -> None:
    c = JsonClient(fake["url"])
    fake["answer"] = lambda h, b: (422, b'{"detail": "Unexpected fields in the request: {\'top_k\'}"}', False)
    with pytest.raises(RemoteModelError, match=r"answered HTTP 422: Unexpected fields in the request: \{'top_k'\}$"):
        c.post("/completions", {})
    fake["answer"] = lambda h, b: (500, b'{"error": {"message": "CUDA out of memory"}}', False)
    with pytest.raises(RemoteModelError, match="HTTP 500: CUDA out of memory"):
        c.post("/completions", {})
    fake["answer"] = lambda h, b: (200, b"<html>proxy login</html>", False)
    with pytest.raises(RemoteModelError, match="not a JSON object.*OpenAI-compatible"):
        c.get("/models")


def test_a_server_that_does_not_answer_times_out(fake) -> None:
    release = threading.Event()

    def hang(h, body):
        release.wait(10)
        return 200, b"{}", False

    fake["answer"] = hang
    try:
        with pytest.raises(RemoteModelError, match=r"did not answer within 0\.2 s"):
            JsonClient(fake["url"], timeout_s=0.2).post("/completions", {})
    finally:
        release.set()


def translator(fake, tokenizer, **kw):
    from streamst.mt.openai_http import HttpOptions, OpenAIHttpTranslator

    return OpenAIHttpTranslator(tokenizer, HttpOptions(base_url=fake["url"], model="m", **kw))


@pytest.fixture(scope="module")
def tokenizer(tiny_models_root):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_models_root / "store" / "tiny" / "qwen"))


def test_answers_map_onto_proposals(fake, tokenizer, monkeypatch) -> None:
    monkeypatch.setenv("MY_MT_KEY", "sk-test")
    fake["answer"] = ok({"data": [{"id": "m"}]})
    mt = translator(fake, tokenizer, api_key_env="MY_MT_KEY", extra_body=(("top_k", 20),))
    fake["answer"] = ok({"choices": [{"text": " world \ufffd", "finish_reason": "stop"}],
                         "usage": {"completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 41}}})
    p = mt.open_stream("de", "en").propose("Hallo Welt", "Hello", max_new_tokens=5)
    assert (p.text, p.continuation, p.complete, p.steps, p.reused_tokens) == ("Hello world ", " world ", True, 3, 41)
    method, path, headers, body = fake["requests"][-1]
    assert (method, path, headers["Authorization"]) == ("POST", "/v1/completions", "Bearer sk-test")
    assert body["max_tokens"] == 5 and body["temperature"] == 0 and body["stop"] == ["<|im_end|>"]
    assert body["top_k"] == 20 and body["prompt"].endswith("Hallo Welt<|im_end|>\n<|im_start|>assistant\n"
                                                           "<think>\n\n</think>\n\nHello")
    fake["answer"] = ok({"choices": [{"text": " wor", "finish_reason": "length"}], "usage": {}})
    assert not mt.open_stream("de", "en").propose("Hallo Welt", "Hello", max_new_tokens=1).complete
    fake["answer"] = ok({"choices": []})
    with pytest.raises(RemoteModelError, match="without choices"):
        mt.translate("Hallo", "de", "en")


def test_auth_and_missing_endpoint_errors_say_what_to_do(fake, tokenizer) -> None:
    fake["answer"] = lambda h, b: (401, b'{"error": {"message": "invalid api key"}}', False)
    with pytest.raises(RemoteModelError, match=r"HTTP 401: invalid api key\); set the API key in \$STREAMST_MT_API_KEY"):
        translator(fake, tokenizer, check=False).translate("Hallo", "de", "en")
    fake["answer"] = lambda h, b: (404, b'{"detail": "Not Found"}', False)
    with pytest.raises(RemoteModelError, match="has no /completions endpoint"):
        translator(fake, tokenizer, check=False).translate("Hallo", "de", "en")
    fake["answer"] = lambda h, b: (404, b'{"error": {"message": "The model `m2` does not exist."}}', False)
    with pytest.raises(RemoteModelError, match="does not serve model 'm'"):
        translator(fake, tokenizer, check=False).translate("Hallo", "de", "en")


def test_after_an_idle_gap_every_pooled_connection_may_be_stale(fake) -> None:
    """Two requests in flight leave two pooled connections; the server then drops both (its
    keep-alive timeout, shorter than a pause between utterances). The next request still
    succeeds: the retry opens a fresh connection instead of taking the other stale one."""
    gate = threading.Barrier(2)

    def both(h, body):
        gate.wait(10)  # both requests are in flight at once: two connections
        return 200, json.dumps({"x": 1}).encode(), True  # answered, then closed silently

    fake["answer"] = both
    c = JsonClient(fake["url"])
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lambda i: c.post("/completions", {})["x"], range(2))) == [1, 1]
    fake["answer"] = ok({"x": 2})
    assert c.post("/completions", {})["x"] == 2
    assert c.post("/completions", {})["x"] == 2  # and the fresh connection is kept and reused
    assert len(fake["connections"]) == 3
    c.close()
