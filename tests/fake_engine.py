"""A fake OpenAI-compatible engine for the interrupt and shared-engine tests: GET /health,
GET /v1/models, POST /v1/chat/completions. A user message holding ``delay=<seconds>`` is answered
after that long, unless the client closes its connection first, which cancels it (as llama-server
does). Each answered or cancelled request is appended to the ``--log`` file.

    python tests/fake_engine.py --port 8080 --log /tmp/engine.log
"""

from __future__ import annotations

import argparse
import json
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG_LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    log_path = ""

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, what: str) -> None:
        if self.log_path:
            with LOG_LOCK, open(self.log_path, "a") as f:
                f.write(what + "\n")

    def do_GET(self) -> None:
        if self.path.endswith("/health"):
            self._send({"status": "ok"})
        elif self.path.endswith("/models"):
            self._send({"data": [{"id": "teacher"}]})
        else:
            self._send({"error": "not found"}, 404)

    def _client_gone(self) -> bool:
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        content = " ".join(m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user")
        found = re.search(r"delay=([0-9.]+)", content)
        deadline = time.monotonic() + (float(found.group(1)) if found else 0.0)
        while time.monotonic() < deadline:
            if self._client_gone():
                self._record(f"cancelled {content}")
                return
            time.sleep(0.05)
        self._record(f"done {content}")
        self._send(
            {
                "model": "teacher",
                "choices": [{"message": {"content": f"answer to {content}"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            }
        )


def serve(port: int, log_path: str = "") -> ThreadingHTTPServer:
    handler = type("FakeEngineHandler", (Handler,), {"log_path": log_path})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", default="")
    args, _ = parser.parse_known_args()
    serve(args.port, args.log).serve_forever()
