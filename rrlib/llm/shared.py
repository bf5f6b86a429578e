"""One teacher engine per model and machine, shared by every notebook kernel and run that needs it.

A notebook that generates asks :func:`attach` for the engine of its :class:`~rrlib.llm.engines.EngineSpec`.
The first asker starts a small **supervisor** process (``python -m rrlib.llm.shared``, in a session
of its own, so that interrupting or closing a kernel does not touch it); the supervisor starts the
engine on a free loopback port and writes its address to a state file. Later askers, in the same
process or in any other (a second notebook, a runner beside a JupyterLab session), find the state
file and use the same engine.

* **Leases.** A process holds a lease (a shared ``flock`` on ``<key>.lease``) while it generates,
  and drops it when its generation ends, fails or is interrupted. The kernel drops the lock of a
  process that dies, even by ``kill -9``.
* **Idle stop.** The supervisor stops the engine, and exits, once no lease has been held for
  ``idle_s`` seconds (TEACHER_ENGINE_IDLE_S); the next asker starts a fresh one. Stopping and
  attaching both happen under one start lock (``<key>.lock``), so an engine is never stopped
  under a process that has just attached to it.
* **Which engine.** The key is the engine identity (binary or package versions, build flags, model
  file hash: what the generation cache keys on) plus the settings that shape the server (slots,
  threads, context, extra arguments), so different settings never share one engine.
* **Where.** State files live in ``RRLIB_ENGINE_DIR``, default ``~/.cache/rrlib/engines/shared``
  (machine-wide for one user); the engine's log is ``<key>.log`` next to them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from ..errors import ServerError
from .cache import identity_hash
from .engines import EngineProcess, EngineSpec

ENGINE_DIR_ENV = "RRLIB_ENGINE_DIR"
#: how often the supervisor looks at the leases and the engine
CHECK_S = 0.5
#: an engine log larger than this is moved to ``<key>.log.1`` when the next engine of its key starts
LOG_KEEP_BYTES = 20 * 2**20


def engine_dir() -> Path:
    path = os.environ.get(ENGINE_DIR_ENV, "").strip()
    return Path(path).expanduser() if path else Path.home() / ".cache" / "rrlib" / "engines" / "shared"


def engine_key(spec: EngineSpec) -> str:
    """What makes two asks the same engine: its identity and the settings that shape the server."""
    config = dataclasses.asdict(spec.config)
    for name in ("model", "startup_timeout_s"):  # the identity names the model by its file hash
        config.pop(name, None)
    return identity_hash({"identity": spec.identity, "config": config})[:16]


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)  # closing the descriptor drops the lock


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` (on this host) still runs: one owned by another user counts, a
    zombie its parent has not reaped yet does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited child its parent has not reaped yet is a zombie: not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_state(key: str, folder: Path | None = None) -> dict[str, Any] | None:
    path = (folder or engine_dir()) / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _healthy(state: dict[str, Any], patience_s: float = 30.0) -> bool:
    """The engine of ``state`` runs and answers its health URL. A live engine busy with other
    processes' requests may answer slowly: it is given ``patience_s`` before a second one is started."""
    deadline = time.monotonic() + patience_s
    while pid_alive(int(state.get("supervisor_pid", 0))) and pid_alive(int(state.get("engine_pid", 0))):
        try:
            if requests.get(state["root_url"] + state["health_path"], timeout=5).status_code == 200:
                return True
        except requests.RequestException:
            pass
        except KeyError:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return False


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 32 * 1024))
            return "\n".join(f.read().decode("utf-8", errors="replace").splitlines()[-lines:]) or "(empty log)"
    except OSError:
        return "(no log)"


class Lease:
    """A process's claim on a shared engine while it generates (see the module docstring)."""

    def __init__(self, key: str, state: dict[str, Any], fd: int | None, folder: Path):
        self.key, self.state, self._fd, self.folder = key, state, fd, folder

    @property
    def url(self) -> str:
        return self.state["url"]

    @property
    def log_path(self) -> Path:
        return Path(self.state["log"])

    def check_alive(self) -> None:
        """Raise :class:`ServerError` (with the end of its log) when the engine has died."""
        if not pid_alive(int(self.state["engine_pid"])):
            raise ServerError(
                f"the shared {self.state['name']} (pid {self.state['engine_pid']}, port {self.state['port']}) "
                f"died while serving. Last lines of its log {self.log_path}:\n{_log_tail(self.log_path)}"
            )

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def attach(spec: EngineSpec, idle_s: float, *, folder: Path | None = None) -> Lease:
    """A lease on the shared engine of ``spec``, starting it (through a supervisor) when none runs."""
    folder = folder or engine_dir()
    key = engine_key(spec)
    with _flock(folder / f"{key}.lock", fcntl.LOCK_EX):
        state = read_state(key, folder)
        if state is None or not _healthy(state):
            state = _start(spec, key, idle_s, folder)
        fd = os.open(folder / f"{key}.lease", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
    return Lease(key, state, fd, folder)


def _start(spec: EngineSpec, key: str, idle_s: float, folder: Path) -> dict[str, Any]:
    """Start a supervisor for ``spec`` and wait until its engine answers (called under the start lock)."""
    (folder / f"{key}.json").unlink(missing_ok=True)  # a dead engine's state
    spec_file = folder / f"{key}.spec.json"
    spec_file.write_text(
        json.dumps(
            {
                "command": spec.command,
                "env": spec.env,
                "health_path": spec.health_path,
                "name": spec.config.engine.replace("_", "-"),
                "startup_timeout_s": spec.config.startup_timeout_s,
            }
        )
    )
    log = folder / f"{key}.supervisor.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rrlib.llm.shared", "--key", key, "--dir", str(folder), "--idle-s", str(idle_s)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a kernel interrupt (SIGINT to its process group) never reaches it
            close_fds=True,
        )
    threading.Thread(target=proc.wait, name="rrlib-supervisor-reaper", daemon=True).start()  # no zombie
    deadline = time.monotonic() + spec.config.startup_timeout_s + 30
    while time.monotonic() < deadline:
        state = read_state(key, folder)
        if state is not None and state.get("supervisor_pid") == proc.pid:
            return state
        if proc.poll() is not None:
            raise ServerError(
                f"the shared {spec.config.engine} engine could not start (its supervisor exited with code "
                f"{proc.returncode}). Last lines of {log}:\n{_log_tail(log)}\nEngine log "
                f"{folder / f'{key}.log'}:\n{_log_tail(folder / f'{key}.log')}"
            )
        time.sleep(0.2)
    proc.terminate()
    raise ServerError(f"the shared {spec.config.engine} engine did not start within the startup timeout; see {log}.")


def running_engines(folder: Path | None = None) -> list[dict[str, Any]]:
    """The shared engines running now (their state files), for status displays and tests."""
    folder = folder or engine_dir()
    out = []
    for path in sorted(folder.glob("*.json")):
        if path.name.endswith(".spec.json"):
            continue
        state = read_state(path.stem, folder)
        if state and pid_alive(int(state.get("supervisor_pid", 0))):
            out.append(state)
    return out


def stop_engine(key: str, folder: Path | None = None, timeout: float = 30.0) -> bool:
    """Ask the supervisor of ``key`` to stop its engine now (SIGTERM); True when one was running."""
    state = read_state(key, folder)
    if not state or not pid_alive(int(state["supervisor_pid"])):
        return False
    os.kill(int(state["supervisor_pid"]), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(int(state["supervisor_pid"])):
        time.sleep(0.1)
    return True


# ---------------------------------------------------------------------------------------
# the supervisor (its own process)
# ---------------------------------------------------------------------------------------
def _lease_free(folder: Path, key: str) -> bool:
    fd = os.open(folder / f"{key}.lease", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def supervise(key: str, folder: Path, idle_s: float) -> int:
    spec = json.loads((folder / f"{key}.spec.json").read_text())
    log = folder / f"{key}.log"
    if log.is_file() and log.stat().st_size > LOG_KEEP_BYTES:  # one engine log per key, kept across restarts
        os.replace(log, log.with_suffix(".log.1"))
    engine = EngineProcess(
        spec["command"],
        name=spec["name"],
        health_path=spec["health_path"],
        startup_timeout_s=spec["startup_timeout_s"],
        log_path=log,
        env=spec["env"],
    )
    state_path = folder / f"{key}.json"

    def shutdown(*_):
        if (read_state(key, folder) or {}).get("supervisor_pid") == os.getpid():
            state_path.unlink(missing_ok=True)
        engine.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    engine.start()
    assert engine.proc is not None
    state = {
        "key": key,
        "name": spec["name"],
        "supervisor_pid": os.getpid(),
        "engine_pid": engine.proc.pid,
        "port": engine.port,
        "url": engine.url,
        "root_url": engine.root_url,
        "health_path": spec["health_path"],
        "log": str(engine.log_path),
        "idle_s": idle_s,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "startup_seconds": round(engine.startup_seconds, 2),
    }
    tmp = state_path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, state_path)
    print(f"{spec['name']} serving on {engine.url} (pid {engine.proc.pid}); stops after {idle_s:g} s idle", flush=True)
    last_used = time.monotonic()
    while True:
        time.sleep(CHECK_S)
        if not engine.running:
            print(f"{spec['name']} exited: {engine.proc.returncode}", flush=True)
            state_path.unlink(missing_ok=True)
            return 1
        if not _lease_free(folder, key):
            last_used = time.monotonic()
            continue
        if time.monotonic() - last_used < idle_s:
            continue
        with _flock(folder / f"{key}.lock", fcntl.LOCK_EX):  # no process attaches meanwhile
            if _lease_free(folder, key):
                state_path.unlink(missing_ok=True)
                engine.stop()
                print(f"{spec['name']} stopped after {idle_s:g} s idle", flush=True)
                return 0
        last_used = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="supervise one shared engine (started by rrlib.llm.shared.attach)")
    parser.add_argument("--key", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--idle-s", type=float, required=True)
    args = parser.parse_args(argv)
    return supervise(args.key, Path(args.dir), args.idle_s)


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "ENGINE_DIR_ENV",
    "Lease",
    "attach",
    "engine_dir",
    "engine_key",
    "read_state",
    "running_engines",
    "stop_engine",
]
