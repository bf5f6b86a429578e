"""Notebook 08's explorer: one example's view (prompt, teacher's reasoning, every method's answer
with P(Yes), what the faithfulness checks found), the widget's choices and buttons, its static
snapshot for saved notebooks, and (slow, headless Chromium) a click-through in a real JupyterLab,
which also takes the screenshot kept in docs/ (``RRLIB_SCREENSHOT_DIR=docs``)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_inspect import _write_synthetic_run

from rrlib.config.paths import RunPaths
from rrlib.report.explorer import ExplorerData, example_view_html, explorer, scoped_css

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data(tmp_path) -> ExplorerData:
    run = tmp_path / "run"
    _write_synthetic_run(run)
    return ExplorerData.from_run(RunPaths.of(run), "reasoningrec", domain="beauty")


def test_one_example_shows_prompt_reasoning_answers_and_findings(data):
    page = example_view_html(data, "test:u2")
    assert 'data-example-id="test:u2"' in page and "Coconut Lotion" in page
    assert "The prompt reasoningrec read" in page and "[system]" in page
    assert "reasoningrec (lead)" in page and "zeroshot_reasoningrec" in page and "user_like_rate" in page
    assert "P(Yes) 0.950" in page and "(no text: probability only)" in page
    assert "contradiction" in page and "cites liked" in page
    assert '<mark class="liked">moisturizing</mark>' in page  # a liked-history feature in the target text


def test_the_teacher_reasoning_is_the_ground_truth_where_there_is_one(data):
    text, kind = data.teacher_reasoning("test:u1")
    assert text and kind.startswith("ground truth")
    assert data.teacher_reasoning("test:u2") == ("", "")


def test_the_widget_steps_filters_and_keeps_a_static_snapshot(data):
    box = explorer(data)
    assert list(box.example.options) == ["test:u2", "test:u1", "test:u3"]  # notebook 01's seeded order
    assert box.example.value == "test:u2" and "1</b> of 3" in box.where.value
    box.next_button.click()
    assert box.example.value == "test:u1" and 'data-example-id="test:u1"' in box.pane.value
    box.previous_button.click()
    box.previous_button.click()
    assert box.example.value == "test:u3"  # wraps around
    box.show.value = "wrong"
    assert list(box.example.options) == ["test:u2", "test:u3"] and "1</b> of 2" in box.where.value
    box.user.value = "u3"
    assert list(box.example.options) == ["test:u3"]
    box.show.value = "correct"
    assert list(box.example.options) == [] and "No test example" in box.pane.value
    bundle = explorer(data)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "static snapshot" in bundle["text/html"] and 'data-example-id="test:u2"' in bundle["text/html"]


def test_the_styles_are_scoped_to_the_explorer():
    css = scoped_css("body{margin:0}\ntable,th{x:1}\n@media (max-width:9px){.grid{y:2}}", ".rr")
    assert css.splitlines() == [".rr{margin:0}", ".rr table,.rr th{x:1}", "@media (max-width:9px){.rr .grid{y:2}}"]


# ---------------------------------------------------------------------------------------
# headless Chromium, a real JupyterLab and the rrlib kernel
# ---------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class _Page:
    """The smallest Chrome DevTools Protocol client: evaluate JavaScript, take a screenshot."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=120, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        out = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return out.get("result", {}).get("value")

    def wait(self, expression: str, timeout: float = 120, what: str = ""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.5)
        raise TimeoutError(f"waited {timeout:g} s for {what or expression}")


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(600)
def test_click_through_the_explorer_in_jupyterlab(tmp_path):
    import nbformat
    import requests

    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium; .ci/run installs it)")
    from rrlib.workbook.runner import choose_kernel

    home = tmp_path / "lab"  # JupyterLab's root folder: the notebook and the synthetic run
    run = Path(os.environ["RRLIB_EXPLORER_RUN"]) if os.environ.get("RRLIB_EXPLORER_RUN") else home / "run"
    home.mkdir()
    if not os.environ.get("RRLIB_EXPLORER_RUN"):
        _write_synthetic_run(run)
    method, domain = (
        os.environ.get("RRLIB_EXPLORER_METHOD", "reasoningrec"),
        os.environ.get("RRLIB_EXPLORER_DOMAIN", "beauty"),
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": choose_kernel(), "display_name": "rrlib", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from rrlib.config.paths import RunPaths\nfrom rrlib.report.explorer import run_explorer\n"
            f"run_explorer(RunPaths.of({str(run)!r}), {method!r}, domain={domain!r})"
        )
    ]
    nbformat.write(nb, home / "explore.ipynb")

    port, debug_port, token = _free_port(), _free_port(), "rrlib-explorer-test"
    lab = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "jupyter"),
            "lab",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--ServerApp.token={token}",
            f"--ServerApp.root_dir={home}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "lab.log", "wb"),
        cwd=home,
        start_new_session=True,
    )
    chrome = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert lab.poll() is None and time.monotonic() < deadline, (tmp_path / "lab.log").read_text()[-2000:]
            time.sleep(0.5)
        chrome = subprocess.Popen(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1500,1150",
                f"--remote-debugging-port={debug_port}",
                "--remote-allow-origins=*",
                f"--user-data-dir={tmp_path / 'chromium'}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                targets = requests.get(f"http://127.0.0.1:{debug_port}/json/list", timeout=2).json()
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "Chromium's debugging port never answered"
            time.sleep(0.5)
        page = _Page(pages[0]["webSocketDebuggerUrl"])
        page.call("Page.enable")
        page.call("Emulation.setFocusEmulationEnabled", enabled=True)  # JupyterLab tracks the focused notebook
        page.call("Page.navigate", url=f"http://127.0.0.1:{port}/lab/tree/explore.ipynb?token={token}")
        page.wait("!!(window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell'))", 180, "the notebook")
        panel = "Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.sessionContext)"
        page.js(f"window.jupyterapp.shell.activateById({panel}.id); window.jupyterapp.shell.collapseLeft()")
        page.wait(
            f"(() => {{ const k = {panel}.sessionContext.session?.kernel; "
            "return !!k && k.status === 'idle' && k.connectionStatus === 'connected' })()",
            120,
            "the rrlib kernel",
        )
        page.js("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        first = page.wait(
            "(document.querySelector('.rr-pane [data-example-id]') || {}).dataset?.exampleId", 180, "the explorer"
        )
        where = page.js("document.querySelector('.rr-explorer-widget').innerText")
        assert " of " in where

        # click: next, then back to the first, then a filter and a user
        page.js("document.querySelector('button.rr-next').click()")
        second = page.wait(
            f"(() => {{ const e = document.querySelector('.rr-pane [data-example-id]'); "
            f"return e && e.dataset.exampleId !== {json.dumps(first)} ? e.dataset.exampleId : null }})()",
            60,
            "the next example",
        )
        assert second != first
        page.js("document.querySelector('button.rr-prev').click()")
        page.wait(
            f"document.querySelector('.rr-pane [data-example-id]').dataset.exampleId === {json.dumps(first)}",
            60,
            "the previous example",
        )
        page.js(
            "(() => { const s = document.querySelector('.rr-show select'); s.value = 'wrong'; "
            "s.dispatchEvent(new Event('change', {bubbles: true})); })()"
        )
        n_wrong = len(ExplorerData.from_run(RunPaths.of(run), method, domain=domain).example_ids("wrong"))
        page.wait(
            f"document.querySelector('.rr-example select').options.length === {n_wrong} && "
            f"document.querySelector('.rr-explorer-widget').innerText.includes('1 of {n_wrong}')",
            60,
            "the 'wrong' filter",
        )
        page.js(  # for the picture: no news toast
            "Array.from(document.querySelectorAll('button')).filter(b => b.innerText.trim() === 'No')"
            ".forEach(b => b.click())"
        )
        time.sleep(1.0)
        shot = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
        (tmp_path / "explorer.png").write_bytes(shot)
        assert len(shot) > 20_000
        if os.environ.get("RRLIB_SCREENSHOT_DIR"):
            target = Path(os.environ["RRLIB_SCREENSHOT_DIR"])
            target = target if target.is_absolute() else ROOT / target
            target.mkdir(parents=True, exist_ok=True)
            (target / "explorer.png").write_bytes(shot)
    finally:
        for proc in (chrome, lab):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
