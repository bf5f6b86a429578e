"""OpenAI-compatible chat-completions client (vLLM, llama.cpp server, Ollama, TGI, ...).

* The API key is read from the environment variable named by ``SERVER_API_KEY_ENV`` at request
  time (surrounding whitespace stripped) and sent only in the Authorization header: it is never
  stored in the identity, the cache, logs or error messages. Every error text (HTTP errors,
  bodies without ``choices``, non-JSON bodies, exceptions raised by ``requests``, the last error
  after retries) and every generated text is passed through :func:`rrlib.errors.mask_secrets`
  before it is truncated, so a server that echoes the key (or its ``Authorization`` header)
  back leaves ``***`` instead. So is every other value taken from a reply or a listing before
  it is stored or compared: ``finish_reason`` (also cut to 40 characters), the model ids of
  ``GET /models`` and of each reply. ``usage`` token counts must be whole numbers: anything else
  is an error naming the server and the field, never a crash in ``int()``.
* Requests run concurrently (``SERVER_CONCURRENCY`` threads) and results are yielded as each one
  completes, so the cache saves them one by one.
* Connection errors, timeouts, HTTP 429 and 5xx are retried with exponential backoff and jitter
  (honouring ``Retry-After``); after ``SERVER_RETRIES`` retries the error names the URL and the
  last status. Other 4xx fail at once with the server's own message.
* Identity: the configured model name plus the model id the server reports at ``GET /models``,
  not the URL, so the same model behind another host or port shares the cache, while a server
  that swapped its model under the same URL does not. A served id that differs from
  ``SERVER_MODEL`` (a one-model server answers any name) is recorded as ``sha256:<16 hex>`` of
  the (masked) id, in the identity and in each result's ``extra.served_model``: the server
  chose that text, so it is never stored as written.
* Truncation: the server's tokenizer is not available here, so prompt length is estimated at
  4 characters per token and the local backend's policy is applied (cut the middle of the longest
  user message, marked ``[...]``); the server's own ``prompt_tokens`` is reported.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlparse

import requests

from rrlib.errors import mask_secrets

from .base import (
    TRUNCATION_MARKER,
    Closeable,
    GenerationRequest,
    GenerationResult,
    Message,
    PromptTooLongError,
    ServerError,
    in_request_order,
)

CHARS_PER_TOKEN = 4
#: how a GBNF grammar is sent (SERVER_GRAMMAR): the request field each server family reads
GRAMMAR_FIELDS = ("grammar", "structured_outputs", "guided_grammar", "none")


def grammar_payload(field: str, grammar: str) -> dict:
    """The request fields that carry ``grammar`` (GBNF) to a server reading ``field``."""
    if field == "grammar":  # llama.cpp's server, llama-cpp-python's server
        return {"grammar": grammar}
    if field == "structured_outputs":  # vLLM (its xgrammar and guidance backends read GBNF)
        return {"structured_outputs": {"grammar": grammar}}
    if field == "guided_grammar":  # vLLM before structured_outputs
        return {"guided_grammar": grammar}
    raise ServerError(
        "this request must follow a grammar, but SERVER_GRAMMAR is 'none' (the server cannot constrain "
        "its answers); set SERVER_GRAMMAR to the field the server reads, or TEACHER_CONSTRAINED: false."
    )


#: a finish_reason is a short word (stop, length); longer server text is cut (after masking)
FINISH_REASON_CHARS = 40


def check_base_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ServerError(f"SERVER_URL={url!r} is not an http(s) URL; expected e.g. http://127.0.0.1:8080/v1.")
    return url.rstrip("/")


class ServerBackend(Closeable):
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout_s: float = 120.0,
        retries: int = 4,
        max_prompt_tokens: int = 2048,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        extra_body: dict | None = None,
        liveness: Callable[[], None] | None = None,
        grammar_field: str = "grammar",
    ):
        """``extra_body``: fields added to every chat request (e.g. llama.cpp's ``cache_prompt``).
        ``grammar_field``: how a request's GBNF grammar is sent (:data:`GRAMMAR_FIELDS`): llama.cpp
        and llama-cpp-python read ``grammar``, vLLM ``structured_outputs`` (``guided_grammar`` before
        it); ``none`` refuses a request that carries a grammar (it would come back unconstrained).
        ``liveness``: called on a connection error, timeout or 5xx before retrying; it raises
        when the server process is known to be dead (see :mod:`rrlib.llm.engines`), so a
        crash is reported with its signal and log instead of as a refused connection."""
        if not model:
            raise ServerError("SERVER_MODEL is empty: name the model the server serves (see its GET /v1/models).")
        self.base_url = check_base_url(base_url)
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = max(1, int(concurrency))
        self.timeout_s = float(timeout_s)
        self.retries = max(0, int(retries))
        self.max_prompt_tokens = max_prompt_tokens
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.extra_body = dict(extra_body or {})
        self.liveness = liveness
        if grammar_field not in GRAMMAR_FIELDS:
            raise ServerError(f"grammar_field={grammar_field!r} is not one of {list(GRAMMAR_FIELDS)} (SERVER_GRAMMAR).")
        self.grammar_field = grammar_field
        self._identity: dict[str, Any] | None = None
        self._local = threading.local()

    # HTTP -----------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _mask(self, text: object, patterns: bool = True) -> str:
        return mask_secrets(text, env_names=[self.api_key_env], patterns=patterns)

    def _error(self, text: object) -> ServerError:
        return ServerError(self._mask(text))

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            session = requests.Session()
            conns = getattr(self._local, "conns", None)
            if conns is not None:  # a worker of iter_generate: its connections can be cut on interrupt
                adapter = _tracking_adapter(conns)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
            self._local.session = session
        return self._local.session

    def _cancelled(self) -> bool:
        stop = getattr(self._local, "stop", None)
        return stop is not None and stop.is_set()

    def _worker_init(self, stop: threading.Event, conns: "_Connections") -> None:
        self._local.stop, self._local.conns = stop, conns

    def _request(self, method: str, path: str, payload: dict | None = None) -> dict:
        url = f"{self.base_url}{path}"
        last = ""
        for attempt in range(self.retries + 1):
            if self._cancelled():
                raise ServerError(f"{method} {url}: cancelled (the generation was interrupted)")
            retry_after = None
            try:
                resp = self._session().request(
                    method, url, json=payload, headers=self._headers(), timeout=self.timeout_s
                )
            except requests.Timeout:
                last = f"timed out after {self.timeout_s:g} s (SERVER_TIMEOUT_S)"
            except requests.ConnectionError as e:
                last = f"connection failed ({type(e).__name__}); is the server running?"
            except (requests.RequestException, UnicodeError) as e:  # e.g. InvalidHeader, which quotes the key
                raise self._error(
                    f"{method} {url} could not be sent: {type(e).__name__}: {self._mask(e)[:300]} "
                    f"(check the key in ${self.api_key_env} for line breaks or odd "
                    f"characters, and SERVER_URL)"
                ) from None
            else:
                if resp.status_code < 400:
                    try:
                        return resp.json()
                    except ValueError:
                        raise self._error(
                            f"{method} {url} returned HTTP {resp.status_code} with a body that "
                            f"is not JSON: {self._mask(resp.text)[:300]!r}"
                        ) from None
                message = self._server_message(resp)
                if resp.status_code != 429 and resp.status_code < 500:
                    raise self._error(f"{method} {url} was refused with HTTP {resp.status_code}: {message}")
                last = f"HTTP {resp.status_code}: {message}"
                retry_after = _retry_after(resp)
            if self.liveness is not None:
                self.liveness()  # a dead server process: raise its own story now, do not retry
            if attempt < self.retries:
                delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                delay = retry_after if retry_after is not None else delay * (0.5 + random.random())
                time.sleep(min(delay, self.max_backoff_s))
        raise self._error(
            f"{method} {url} failed after {self.retries + 1} attempts; last error: {last}. "
            f"Check that the server at {self.base_url} is up (SERVER_URL), or raise "
            f"SERVER_RETRIES / SERVER_TIMEOUT_S."
        )

    def _server_message(self, resp: requests.Response) -> str:
        """The server's own error message, masked, then cut to 500 characters."""
        try:
            body = resp.json()
            err = body.get("error", body) if isinstance(body, dict) else body
            msg = err.get("message", err) if isinstance(err, dict) else err
            return self._mask(msg)[:500]
        except ValueError:
            return self._mask(resp.text or resp.reason or "")[:500]

    # identity ---------------------------------------------------------------------------
    @property
    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            listing = self._request("GET", "/models")
            if not isinstance(listing, dict) or not isinstance(listing.get("data", []), list):
                raise self._error(
                    f"GET {self.base_url}/models returned {self._mask(listing)[:300]}, not a model "
                    f"list ({{'data': [{{'id': ...}}]}}); is SERVER_URL an OpenAI-compatible /v1 URL?"
                )
            # masked at once: a listing is server-controlled text, and may echo the key
            served = [self._mask(m.get("id", "")) for m in listing.get("data", []) if isinstance(m, dict)]
            if self.model in served:
                served_id = self.model
            elif len(served) == 1:
                served_id = self._served_label(served[0])  # llama.cpp serves one model whatever name is asked
            else:
                raise self._error(
                    f"SERVER_MODEL={self.model!r} is not served by {self.base_url}; it serves {served or 'no models'}."
                )
            self._identity = {"backend": "server", "name": self.model, "served_model": served_id}
        return self._identity

    # prompts ----------------------------------------------------------------------------
    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Estimated (4 characters per token, plus a few per message for the template)."""
        return sum(len(m.get("content", "")) // CHARS_PER_TOKEN + 4 for m in messages)

    def fit_prompt(self, messages: Sequence[Message], limit: int) -> tuple[list[Message], bool]:
        msgs = [dict(m) for m in messages]
        excess = self.count_tokens(msgs) - limit
        if excess <= 0:
            return msgs, False
        users = [i for i, m in enumerate(msgs) if m.get("role") == "user"]
        if not users:
            raise PromptTooLongError(f"prompt exceeds {limit} tokens and has no user message to shorten.")
        target = max(users, key=lambda i: len(msgs[i]["content"]))
        content = msgs[target]["content"]
        keep = len(content) - excess * CHARS_PER_TOKEN - len(TRUNCATION_MARKER)
        if keep < 2:
            raise PromptTooLongError(
                f"prompt cannot fit {limit} tokens even after cutting its longest user "
                f"message; shorten the system message or raise MAX_PROMPT_TOKENS."
            )
        head, tail = keep - keep // 2, keep // 2
        msgs[target]["content"] = content[:head] + TRUNCATION_MARKER + (content[-tail:] if tail else "")
        return msgs, True

    # generation -------------------------------------------------------------------------
    def _one(self, req: GenerationRequest) -> GenerationResult:
        messages, truncated = self.fit_prompt(req.messages, self.max_prompt_tokens)
        s = req.settings
        payload = {
            "model": self.model,
            "messages": messages,
            "max_tokens": s.max_new_tokens,
            "temperature": 0.0 if s.greedy else s.temperature,
            "top_p": 1.0 if s.greedy else s.top_p,
            "seed": s.seed,
            "stream": False,
            **self.extra_body,
        }
        if s.repetition_penalty != 1.0:
            # not in the OpenAI spec: vLLM and TGI read repetition_penalty, llama.cpp repeat_penalty
            payload.update(repetition_penalty=s.repetition_penalty, repeat_penalty=s.repetition_penalty)
        if req.grammar:
            payload.update(grammar_payload(self.grammar_field, req.grammar))
        start = time.perf_counter()
        body = self._request("POST", "/chat/completions", payload)
        seconds = time.perf_counter() - start
        try:
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise self._error(
                f"{self.base_url}/chat/completions returned an unexpected body (no "
                f"choices[0].message): {self._mask(body)[:300]}"
            ) from None
        usage = body.get("usage") or {}
        if not isinstance(usage, dict):
            raise self._error(
                f"{self.base_url}/chat/completions returned a 'usage' field that is not an object "
                f"({self._mask(usage)[:80]!r}); the server does not follow the OpenAI chat-completions format."
            )
        if not isinstance(text, str):
            raise self._error(
                f"{self.base_url}/chat/completions returned choices[0].message.content that is not text "
                f"({type(text).__name__}: {self._mask(text)[:80]!r})."
            )
        return GenerationResult(
            text=self._mask(text.strip(), patterns=False),
            prompt_tokens=self._token_count(usage, "prompt_tokens"),
            completion_tokens=self._token_count(usage, "completion_tokens"),
            finish_reason=self._mask(choice.get("finish_reason") or "")[:FINISH_REASON_CHARS],
            truncated_prompt=truncated,
            seconds=seconds,
            extra={"served_model": self._served_label(self._mask(body.get("model") or ""))},
        )

    def _served_label(self, served: str) -> str:
        """How a model id the server reports (already masked) is recorded: as is when it is
        SERVER_MODEL (or empty), else as ``sha256:<16 hex>`` of it. The id is text the server
        chose: a hash still tells two served models apart (the cache keys on it) but stores
        nothing the server wrote, so an id that carries a secret in a form not masked here (or
        any other text) never reaches the cache, the results files or the manifest."""
        if not served or served == self.model:
            return served
        return "sha256:" + hashlib.sha256(served.encode("utf-8", "replace")).hexdigest()[:16]

    def _token_count(self, usage: dict, field: str) -> int:
        """``usage[field]`` as a token count (absent or null: 0); anything else than a whole
        non-negative number is an error naming the server and the field (value masked)."""
        value = usage.get(field)
        if value is None:
            return 0
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 and float(value).is_integer():
            return int(value)
        raise self._error(
            f"{self.base_url}/chat/completions returned usage.{field}={self._mask(value)[:80]!r}, which is "
            f"not a token count (a whole number >= 0). The server at {self.base_url} (SERVER_URL) does not "
            f"report usage in the OpenAI format; fix or update the server."
        )

    def generate(self, requests_: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return in_request_order(len(requests_), self.iter_generate(requests_))

    #: :meth:`iter_generate` also sends the requests appended to its list while it runs
    streams_appended = True

    def _check_fits(self, requests_: Sequence[GenerationRequest], start: int = 0) -> None:
        for i in range(start, len(requests_)):
            req = requests_[i]
            try:
                self.fit_prompt(req.messages, self.max_prompt_tokens)
            except PromptTooLongError as e:
                raise PromptTooLongError(f"request {i} ({req.tag or req.template}): {e}") from e

    def iter_generate(self, requests_: Sequence[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        """Yield ``(request index, result)`` as each request completes. Requests the caller
        appends to ``requests_`` (a list) between two results are sent too, so retries keep the
        server's slots busy. On a permanent error, requests not yet sent are cancelled, those in
        flight are still collected and yielded, and then the first error is raised."""
        self._check_fits(requests_)  # fail before sending anything
        stop, conns = threading.Event(), _Connections()
        pool = ThreadPoolExecutor(
            max_workers=self.concurrency,
            thread_name_prefix="rrlib-server",
            initializer=functools.partial(self._worker_init, stop, conns),
        )
        error: BaseException | None = None
        finished = False
        try:
            pending = {pool.submit(self._one, req): i for i, req in enumerate(requests_)}
            sent = len(requests_)
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    if fut.cancelled():
                        continue
                    exc = fut.exception()
                    if exc is not None:
                        if error is None:  # stop sending; still collect the requests in flight
                            error = exc
                            _cancel(pending)
                        continue
                    yield i, fut.result()
                    if error is None and len(requests_) > sent:  # appended by the caller meanwhile
                        try:
                            self._check_fits(requests_, sent)
                        except PromptTooLongError as e:
                            error = e
                            _cancel(pending)
                            continue
                        pending.update({pool.submit(self._one, requests_[j]): j for j in range(sent, len(requests_))})
                        sent = len(requests_)
            finished = True
        finally:
            if not finished:
                # interrupted (KeyboardInterrupt, or the caller closed the stream): cut the requests
                # in flight instead of waiting for them (a server cancels a request whose connection
                # closes: llama-server frees its slot), and send nothing more
                stop.set()
                conns.cut()
            pool.shutdown(wait=finished, cancel_futures=True)
        if error is not None:
            raise error


class _Connections:
    """The HTTP connections a stream's workers opened, so that an interrupt can cut them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: list = []

    def add(self, conn) -> None:
        with self._lock:
            self._conns.append(conn)

    def cut(self) -> None:
        import socket

        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the worker blocked on its answer
                except OSError:
                    pass


def _tracking_adapter(conns: _Connections) -> requests.adapters.HTTPAdapter:
    """A requests adapter whose connections register in ``conns`` when they connect."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class Conn(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            conns.add(self)

    class ConnS(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            conns.add(self)

    class Pool(HTTPConnectionPool):
        ConnectionCls = Conn

    class PoolS(HTTPSConnectionPool):
        ConnectionCls = ConnS

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": PoolS}

    return Adapter()


def _cancel(pending) -> None:
    for fut in pending:
        fut.cancel()


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
