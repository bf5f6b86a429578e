"""Issue 11, secrets: a server that echoes the API key back in every kind of reply leaves no
trace of it in errors, tracebacks, the generation cache, the run folder or the console."""

from __future__ import annotations

import json
import traceback
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import nbformat
import pytest
from loopback import LoopbackServer

from rrlib.__main__ import main
from rrlib.errors import mask_secrets
from rrlib.llm import CachedGenerator, GenerationRequest, GenerationSettings, ServerBackend, ServerError
from rrlib.workbook import runner as run

#: no 6-character window of it can occur in a hex hash, so a partial leak is found too
SECRET = "sk-LEAKCANARY-quxzywvtsrponmlkj"
KEY_ENV = "RRLIB_TEST_ECHO_KEY"


def leaks(text: str, secret: str = SECRET) -> list[str]:
    """The 6-character windows of the secret found in ``text`` (a cut key leaks in part)."""
    return sorted({secret[i : i + 6] for i in range(len(secret) - 5) if secret[i : i + 6] in text})


class EchoServer(LoopbackServer):
    """A loopback OpenAI-like server that echoes the Authorization header it receives into
    its reply; ``mode`` says which kind of reply."""

    def __init__(self, mode: str = "ok"):
        self.mode = mode
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, payload):
                self._send(status, json.dumps(payload).encode())

            def do_GET(self):
                auth = self.headers.get("Authorization", "")
                if outer.mode == "models":  # two models, one named after the key: identity error
                    return self._json(200, {"data": [{"id": "other"}, {"id": auth}]})
                if outer.mode in ("everything", "usage"):  # one model, named after the key
                    return self._json(200, {"object": auth, "data": [{"id": f"m {auth}", "owned_by": auth}]})
                self._json(200, {"data": [{"id": "fake-model"}]})

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.calls += 1
                auth = self.headers.get("Authorization", "")
                mode = outer.mode
                if mode == "no_choices":
                    return self._json(200, {"oops": auth})
                if mode == "no_choices_long":  # the key straddles the 300-character cut
                    return self._json(200, {"oops": "x" * 273 + auth})
                if mode == "not_json":
                    return self._send(200, f"<html>proxy says {auth}</html>".encode(), "text/html")
                if mode == "4xx":
                    return self._json(401, {"error": {"message": f"invalid api key: {auth}"}})
                if mode == "4xx_long":  # the key straddles the 500-character cut of server messages
                    return self._json(400, {"error": {"message": "y" * 485 + auth}})
                if mode == "headers":  # a debugging proxy that returns the request headers
                    return self._json(400, {"detail": "bad request", "received_headers": dict(self.headers)})
                if mode == "5xx":
                    return self._json(500, {"error": {"message": f"engine crashed serving {auth}"}})
                if mode == "5xx_text":
                    return self._send(502, f"bad gateway for {auth}".encode(), "text/plain")
                if mode == "everything":  # the key in every field of the reply
                    return self._json(
                        200,
                        {
                            "id": auth,
                            "object": auth,
                            "model": f"m {auth}",
                            "system_fingerprint": auth,
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": f"your key is {auth}", "name": auth},
                                    "finish_reason": f"stop {auth}",
                                    "logprobs": auth,
                                }
                            ],
                            "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12, "note": auth},
                        },
                    )
                if mode == "usage":  # a token count that is the key
                    return self._json(
                        200,
                        {
                            "model": "fake-model",
                            "choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": auth, "completion_tokens": 2},
                        },
                    )
                if mode == "content":
                    return self._json(
                        200,
                        {
                            "model": f"m {auth}",
                            "choices": [
                                {
                                    "message": {"role": "assistant", "content": f"your key is {auth}"},
                                    "finish_reason": "stop",
                                }
                            ],
                        },
                    )
                raise AssertionError(mode)

        super().__init__(Handler)


def _request(i: int = 0) -> GenerationRequest:
    return GenerationRequest(
        ({"role": "user", "content": f"Describe product {i}."},),
        GenerationSettings(max_new_tokens=8),
        "t",
        "1",
        tag=str(i),
    )


def _everything_under(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.mark.parametrize(
    "mode", ["no_choices", "no_choices_long", "not_json", "4xx", "4xx_long", "headers", "5xx", "5xx_text", "models"]
)
def test_every_error_reply_is_masked(mode, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with EchoServer(mode) as srv:
        be = ServerBackend(srv.url, "fake-model", api_key_env=KEY_ENV, retries=1, backoff_s=0.01)
        with pytest.raises(ServerError) as err:
            CachedGenerator(be, tmp_path, progress=False).generate([_request(0), _request(1)])
    shown = "".join(traceback.format_exception(err.value)) + repr(err.value)
    assert "***" in shown, shown  # the echo arrived and was masked, not dropped
    assert leaks(shown) == [], shown
    assert leaks(_everything_under(tmp_path)) == []


def test_generated_text_that_echoes_the_key_is_masked_in_results_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with EchoServer("content") as srv:
        gen = CachedGenerator(ServerBackend(srv.url, "fake-model", api_key_env=KEY_ENV), tmp_path, progress=False)
        out = gen.generate([_request(0)])
    assert out[0].text == "your key is Bearer ***"
    assert leaks(json.dumps(out[0].extra)) == [] and leaks(_everything_under(tmp_path)) == []


def test_a_server_echoing_the_key_in_every_field_leaves_it_in_no_record(tmp_path, monkeypatch):
    """Issue 24: finish_reason, the served model id (listing and reply) and every other field
    of every endpoint echo the key; none of it reaches a result, the identity or the cache."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    with EchoServer("everything") as srv:
        be = ServerBackend(srv.url, "fake-model", api_key_env=KEY_ENV)
        gen = CachedGenerator(be, tmp_path, progress=False)
        out = gen.generate([_request(0), _request(1)])
        identity = be.identity
    assert out[0].text == "your key is Bearer ***"
    assert out[0].finish_reason == "stop Bearer ***"
    assert (out[0].prompt_tokens, out[0].completion_tokens) == (7, 5)
    # a served id that is not SERVER_MODEL is recorded by its hash, not as the server wrote it
    assert identity["served_model"].startswith("sha256:") and len(identity["served_model"]) == 23
    assert out[0].extra["served_model"] == identity["served_model"]
    stored = _everything_under(tmp_path)
    assert "sha256:" in stored and "stop Bearer ***" in stored
    shown = json.dumps([identity, [(r.text, r.finish_reason, r.extra) for r in out], gen.stats])
    assert leaks(shown) == [] and leaks(stored) == []


def test_a_served_model_matching_server_model_is_kept_by_name(monkeypatch):
    with EchoServer("content") as srv:  # its listing serves "fake-model" only
        assert ServerBackend(srv.url, "fake-model").identity["served_model"] == "fake-model"


def test_a_usage_count_that_is_not_a_number_names_the_server_and_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with EchoServer("usage") as srv:
        be = ServerBackend(srv.url, "fake-model", api_key_env=KEY_ENV, retries=0)
        with pytest.raises(ServerError, match=r"usage\.prompt_tokens='Bearer \*\*\*'.*not a token count") as err:
            CachedGenerator(be, tmp_path, progress=False).generate([_request(0)])
    assert srv.url in str(err.value)
    assert leaks("".join(traceback.format_exception(err.value))) == [] and leaks(_everything_under(tmp_path)) == []


def test_requests_exception_quoting_the_key_is_masked(tmp_path, monkeypatch):
    # a key with a line break inside makes requests refuse the header, quoting its value
    secret = "sk-LEAKCANARY-quxzy\rwvtsrponmlkj"
    monkeypatch.setenv(KEY_ENV, secret)
    with EchoServer("content") as srv:
        be = ServerBackend(srv.url, "fake-model", api_key_env=KEY_ENV, retries=0)
        with pytest.raises(ServerError, match=r"could not be sent: InvalidHeader.*line breaks") as err:
            be.generate([_request(0)])
        assert srv.calls == 0
    shown = "".join(traceback.format_exception(err.value))
    assert leaks(shown, secret) == [] and leaks(shown, "LEAKCANARY-quxzy") == [], shown


def test_mask_secrets_forms_and_patterns(monkeypatch):
    value = 'sk-LEAKCANARY-"quux"\\zyx'  # a quote and a backslash: escaped differently by JSON and repr
    monkeypatch.setenv(KEY_ENV, value)
    text = f"{json.dumps({'h': value})} {value!r} {value}"
    assert "LEAKCANARY" not in mask_secrets(text, env_names=[KEY_ENV], patterns=False)
    assert mask_secrets("Authorization: Bearer abcdefghijkl") == "Authorization: Bearer ***"
    assert mask_secrets("key sk-abcdefghijklmnopqrst!") == "key ***!"
    # ordinary words survive: short tokens, and 'sk-' inside a word
    assert (
        mask_secrets("desk-organizer-abcdefghijklmnop, Bearer of news")
        == "desk-organizer-abcdefghijklmnop, Bearer of news"
    )
    monkeypatch.setenv(KEY_ENV, "ollama")  # dummy keys of local servers are too short to be secrets
    assert mask_secrets("served by ollama", env_names=[KEY_ENV]) == "served by ollama"


# --------------------------------------------------------------------------- whole runs
KERNELSPEC = {"name": "rrlib", "display_name": "Python (rrlib)", "language": "python"}


def _notebook(path: Path, params: str, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    pcell = nbformat.v4.new_code_cell(params)
    pcell.metadata["tags"] = ["parameters"]
    nb.cells = [pcell] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))


PARAMS_CELL = (
    'DATASET = "embedded_beauty"  # d\nRUN_DIR = "outputs/dev"  # r\nCACHE_DIR = "outputs/cache"  # c\n'
    'SERVER_URL = "http://127.0.0.1:8080/v1"  # u\nSERVER_API_KEY_ENV = "OPENAI_API_KEY"  # k\n'
)


@pytest.mark.slow
def test_a_run_whose_server_echoes_the_key_keeps_it_out_of_the_run_folder(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET)
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(
        nbs / "01_leaky.ipynb",
        PARAMS_CELL,
        "import os, traceback\nfrom pathlib import Path\nprint('the key is', os.environ[SERVER_API_KEY_ENV])",
        "from rrlib.llm import CachedGenerator, GenerationRequest, GenerationSettings, ServerBackend\n"
        "be = ServerBackend(SERVER_URL, 'fake-model', api_key_env=SERVER_API_KEY_ENV, retries=0)\n"
        "req = GenerationRequest(({'role': 'user', 'content': 'hi'},), GenerationSettings(), 't', '1')\n"
        "try:\n    CachedGenerator(be, CACHE_DIR, progress=False).generate([req])\n"
        "except Exception as e:  # what the kernel itself saw\n"
        "    Path(RUN_DIR, 'seen.txt').write_text(''.join(traceback.format_exception(e)))\n    raise",
    )
    outputs = tmp_path / "outputs"
    with EchoServer("no_choices") as srv:
        rc = main(
            [
                "run",
                "--notebooks",
                str(nbs),
                "--outputs",
                str(outputs),
                "--run-id",
                "leak",
                "--no-progress",
                "--log-output",
                "-p",
                "SERVER_URL",
                srv.url,
                "-p",
                "SERVER_API_KEY_ENV",
                KEY_ENV,
                "-p",
                "CACHE_DIR",
                str(tmp_path / "cache"),
            ]
        )
    assert rc == 1
    captured = capsys.readouterr()
    run_dir = outputs / "leak"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    message = manifest["notebooks"]["01_leaky"]["error"]["message"]
    assert message.startswith("ServerError:") and "unexpected body" in message and "Bearer ***" in message
    assert "unexpected body" in (run_dir / "seen.txt").read_text()  # the backend masked it in the kernel
    assert "the key is ***" in (run_dir / "notebooks" / "01_leaky.ipynb").read_text()
    assert leaks(_everything_under(run_dir)) == []
    assert leaks(_everything_under(tmp_path / "cache")) == []
    assert leaks(captured.out + captured.err + caplog.text) == []
    assert "the key is ***" in captured.out + captured.err + caplog.text  # --log-output streamed it, masked


@pytest.mark.slow
def test_runner_masks_a_key_that_a_notebook_raises_itself(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, SECRET)
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(
        nbs / "01_raw.ipynb",
        PARAMS_CELL,
        "import os\nraise RuntimeError(f'login failed for {os.environ[SERVER_API_KEY_ENV]}')",
    )
    outputs = tmp_path / "outputs"
    with pytest.raises(run.NotebookFailed) as err:
        run.run_pipeline(
            [],
            {"SERVER_API_KEY_ENV": KEY_ENV},
            run_id="raw",
            notebook_dir=nbs,
            outputs_dir=outputs,
            log=print,
            progress_bar=False,
        )
    assert "RuntimeError: login failed for ***" in str(err.value)
    run_dir = outputs / "raw"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["notebooks"]["01_raw"]["error"]["message"] == "RuntimeError: login failed for ***"
    assert leaks(_everything_under(run_dir)) == [] and leaks(str(err.value)) == []
    captured = capsys.readouterr()
    assert leaks(captured.out + captured.err) == []


@pytest.mark.slow
def test_notebooks_01_02_against_a_server_echoing_the_key_everywhere_leave_it_nowhere(tmp_path, monkeypatch, capsys):
    """Issue 24: the real notebooks 01 and 02 (smoke preset) with the teacher on a server that
    echoes the key in every field of /models and /chat/completions: the key is in no file of the
    run folder (results/02_item_descriptions-*.json, the manifest, the tables) or the cache."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    outputs, cache = tmp_path / "outputs", tmp_path / "cache"
    with EchoServer("everything") as srv:
        rc = main(
            ["run", "-f", "params/smoke.yaml", "--only", "01,02", "--outputs", str(outputs), "--run-id", "echo"]
            + ["--no-progress", "-p", "TEACHER_BACKEND", "server", "-p", "SERVER_URL", srv.url]
            + ["-p", "SERVER_MODEL", "fake-model", "-p", "SERVER_API_KEY_ENV", KEY_ENV, "-p", "CACHE_DIR", str(cache)]
        )
        calls = srv.calls
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    assert calls > 0
    run_dir = outputs / "echo"
    results = json.loads(next((run_dir / "results").glob("02_item_descriptions-*.json")).read_text())
    served = results["results"]["model_identities"]["teacher"]["served_model"]
    assert served.startswith("sha256:")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["models"]["teacher"]["recorded"]["02_item_descriptions"]["teacher"]["served_model"] == served
    assert leaks(_everything_under(run_dir)) == [] and leaks(_everything_under(cache)) == []
    import pandas as pd  # Parquet pages may be compressed: read them as tables too

    tables = [pd.read_parquet(p).to_json() for p in sorted(run_dir.rglob("*.parquet"))]
    assert tables and leaks("\n".join(tables)) == []
    assert leaks(captured.out + captured.err) == []
