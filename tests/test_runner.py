"""The pipeline runner (rrlib.run, python -m rrlib) on tiny fake notebooks in a tmp folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest

from rrlib.__main__ import main
from rrlib.config.params import ParamError
from rrlib.workbook import runner as run

KERNELSPEC = {"name": "rrlib", "display_name": "Python (rrlib)", "language": "python"}
COMMON = (
    'DATASET = "embedded_beauty"  # dataset\nDATA_DIR = ""  # raw files\n'
    'RUN_DIR = "outputs/dev"  # run folder\nCACHE_DIR = "outputs/cache"  # cache\nSEED = 42  # seed\n'
)
HEADER = (
    "from pathlib import Path\nfrom rrlib.config.paths import RunPaths, resolve_path\n"
    "from rrlib.config.provenance import write_results\n"
    "from rrlib.config.params import from_namespace\nPARAMS = from_namespace(globals())\n"
    "paths = RunPaths.of(resolve_path(RUN_DIR))"
)


def write_notebook(path: Path, params: str, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {path.stem}"))
    pcell = nbformat.v4.new_code_cell(COMMON + params)
    pcell.metadata["tags"] = ["parameters"]
    nb.cells += [pcell, nbformat.v4.new_code_cell(HEADER)] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def fake_pipeline(tmp_path):
    """Three notebooks: 01 writes a table, 02 fails unless RUN_DIR/go exists, 03 records tokens."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    write_notebook(
        nbs / "01_first.ipynb",
        "N_TEST = 600  # test examples\n",
        "import pandas as pd\npd.DataFrame({'x': [1, 2, N_TEST]}).to_parquet(paths.interactions)",
        "write_results(paths, '01_first', {'rows': 3}, PARAMS)",
    )
    write_notebook(
        nbs / "02_second.ipynb",
        "TEACHER_BATCH_SIZE = 64  # batch\n",
        "marker = 1  # a first cell that works",
        "# the cell that fails until RUN_DIR/go exists\ngate = Path(RUN_DIR, 'go')\n"
        "if not gate.exists():\n    raise RuntimeError('gate closed')",
        "write_results(paths, '02_second', {'generation': {'profiles': {'prompt_tokens': 10, "
        "'completion_tokens': 5, 'cached': 1, 'generated': 2}, 'descriptions': {'prompt_tokens': 1, "
        "'completion_tokens': 1}}, 'model_identities': {'teacher': {'name': 'fake-teacher'}}}, PARAMS)",
    )
    write_notebook(
        nbs / "03_third.ipynb",
        "N_SHOWCASE = 12  # shown\n",
        "Path(paths.inspect, 'report.html').write_text('<html></html>')",
        "write_results(paths, '03_third', {'generation': {'completion_tokens': 7}}, PARAMS)",
    )
    return nbs


def _plan(nbs, tmp_path, **kw):
    return run.plan_run(
        kw.pop("files", ()), kw.pop("overrides", None), notebook_dir=nbs, outputs_dir=tmp_path / "outputs", **kw
    )


# ---------------------------------------------------------------------------------------
# validation before anything runs
# ---------------------------------------------------------------------------------------
def test_unknown_parameter_is_an_error_before_running(fake_pipeline, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("N_TEST: 5\nN_TESTS: 6\n")
    with pytest.raises(ParamError, match=r"bad.yaml: unknown parameter\(s\): N_TESTS \(did you mean: .*N_TEST"):
        _plan(fake_pipeline, tmp_path, files=[bad])
    rc = main(["run", "-f", str(bad), "--notebooks", str(fake_pipeline), "--outputs", str(tmp_path / "outputs")])
    assert rc == 2 and "N_TESTS" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()  # nothing was written


def test_wrong_type_names_file_and_parameter(fake_pipeline, tmp_path):
    bad = tmp_path / "types.yaml"
    bad.write_text("N_TEST: many\n")
    with pytest.raises(ParamError, match="types.yaml: parameter N_TEST must be an integer, got 'many'"):
        _plan(fake_pipeline, tmp_path, files=[bad])


def test_overrides_are_typed_by_the_schema():
    got = run.parse_overrides(
        [
            ("N_TEST", "5"),
            ("LEARNING_RATE", "1e-4"),
            ("KSHOT_SIZES", "[8, 16]"),
            ("GENERATE_REASONING", "false"),
            ("SHOWCASE_USER", "123"),
            ("TRAIN_KSHOTS", "[8]"),
        ]
    )
    assert got == {
        "N_TEST": 5,
        "LEARNING_RATE": 1e-4,
        "KSHOT_SIZES": [8, 16],
        "GENERATE_REASONING": False,
        "SHOWCASE_USER": "123",
        "TRAIN_KSHOTS": [8],
    }
    with pytest.raises(ParamError, match="N_TEST must be an integer"):
        run.parse_overrides([("N_TEST", "five")])
    with pytest.raises(ParamError, match="unknown parameter"):
        run.parse_overrides([("NOPE", "1")])
    with pytest.raises(ParamError, match="is not one of"):
        run.parse_overrides([("DATASET", "netflix")])


def test_cli_override_error_exit_code(fake_pipeline, tmp_path, capsys):
    rc = main(["validate", "-p", "SEED", "x", "--notebooks", str(fake_pipeline)])
    assert rc == 2 and "SEED must be an integer" in capsys.readouterr().err


def test_run_dir_is_chosen_by_the_runner(fake_pipeline, tmp_path):
    with pytest.raises(run.RunError, match="RUN_DIR=.*--run-id"):
        _plan(fake_pipeline, tmp_path, overrides={"RUN_DIR": "elsewhere"})


def test_each_notebook_gets_only_its_parameters(fake_pipeline, tmp_path):
    plan = _plan(fake_pipeline, tmp_path, overrides={"N_TEST": 3, "N_SHOWCASE": 2}, run_id="r1")
    assert plan.step_params["01_first"]["N_TEST"] == 3 and "N_SHOWCASE" not in plan.step_params["01_first"]
    assert plan.step_params["03_third"]["N_SHOWCASE"] == 2 and "N_TEST" not in plan.step_params["03_third"]
    assert all(p["RUN_DIR"] == str((tmp_path / "outputs" / "r1").resolve()) for p in plan.step_params.values())
    assert set(plan.step_params["02_second"]) == {
        "DATASET",
        "DATA_DIR",
        "RUN_DIR",
        "CACHE_DIR",
        "SEED",
        "TEACHER_BATCH_SIZE",
    }
    assert plan.kernel in ("rrlib", "python3")
    # a parameter no notebook declares is reported
    plan = _plan(fake_pipeline, tmp_path, overrides={"LORA_R": 4})
    assert any("LORA_R" in w for w in plan.warnings)


@pytest.mark.parametrize(
    "text,expected",
    [
        (None, ["01_first", "02_second", "03_third"]),
        ("01,03", ["01_first", "03_third"]),
        ("3,1", ["01_first", "03_third"]),
        ("02-03", ["02_second", "03_third"]),
        ("second", ["02_second"]),
    ],
)
def test_parse_only(fake_pipeline, text, expected):
    assert run.parse_only(text, list(run.discover_notebooks(fake_pipeline))) == expected


def test_parse_only_errors(fake_pipeline):
    steps = list(run.discover_notebooks(fake_pipeline))
    with pytest.raises(run.RunError, match="no notebook 09"):
        run.parse_only("09", steps)
    with pytest.raises(run.RunError, match="names no notebook"):
        run.parse_only("bogus", steps)


def test_default_run_id_and_bad_run_ids():
    import datetime as dt

    now = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert run.default_run_id(["params/smoke.yaml"], now) == "smoke-20250102T030405Z"
    assert run.default_run_id(["params/default.yaml", "x/gpu.yaml"], now) == "default_gpu-20250102T030405Z"
    assert run.default_run_id([], now) == "defaults-20250102T030405Z"
    for bad in ("../up", "a/b", "cache", "", "-x"):
        with pytest.raises(run.RunError, match="not allowed"):
            run.check_run_id(bad)


def test_existing_run_id_is_refused_without_resume(fake_pipeline, tmp_path):
    (tmp_path / "outputs" / "taken").mkdir(parents=True)
    with pytest.raises(run.RunError, match="already exists.*never overwritten.*--resume"):
        _plan(fake_pipeline, tmp_path, run_id="taken")
    with pytest.raises(run.RunError, match="there is no run 'absent'"):
        _plan(fake_pipeline, tmp_path, run_id="absent", resume=True)
    with pytest.raises(run.RunError, match="--resume needs --run-id"):
        _plan(fake_pipeline, tmp_path, resume=True)


def test_notebook_without_run_dir_is_rejected(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('DATASET = "embedded_beauty"  # d')
    cell.metadata["tags"] = ["parameters"]
    nb.cells.append(cell)
    nbformat.write(nb, str(nbs / "01_x.ipynb"))
    with pytest.raises(run.RunError, match="does not declare RUN_DIR"):
        run.plan_run(notebook_dir=nbs, outputs_dir=tmp_path / "out")


# ---------------------------------------------------------------------------------------
# running (real papermill, fake notebooks: a few seconds each)
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_failure_names_cell_keeps_partial_notebook_and_resume_continues(fake_pipeline, tmp_path, capsys):
    outputs = tmp_path / "outputs"
    args = [
        "run",
        "--notebooks",
        str(fake_pipeline),
        "--outputs",
        str(outputs),
        "--run-id",
        "r",
        "-p",
        "N_TEST",
        "9",
        "--no-progress",
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "notebook 02_second failed in cell" in err and "`gate = Path(RUN_DIR, 'go')`" in err
    assert "RuntimeError: gate closed" in err and "--run-id r --resume" in err
    run_dir = outputs / "r"
    partial = nbformat.read(str(run_dir / "notebooks" / "02_second.ipynb"), as_version=4)
    executed = [c for c in partial.cells if c.cell_type == "code" and c.get("execution_count")]
    assert any("marker = 1" in c.source for c in executed)  # the cells before the failure ran
    assert any(o.get("ename") == "RuntimeError" for c in partial.cells for o in c.get("outputs", []))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["notebooks"]["01_first"]["status"] == "completed"
    rec = manifest["notebooks"]["02_second"]
    assert rec["status"] == "failed" and rec["error"]["first_line"] == "gate = Path(RUN_DIR, 'go')"
    assert rec["error"]["message"] == "RuntimeError: gate closed"
    assert manifest["notebooks"]["03_third"]["status"] == "pending"

    # resuming with a parameter that changes results is refused; a harmless one is accepted
    with pytest.raises(run.RunError, match="N_TEST: recorded 9, now 10"):
        run.plan_run([], {"N_TEST": 10}, run_id="r", resume=True, notebook_dir=fake_pipeline, outputs_dir=outputs)
    first_01 = (run_dir / "notebooks" / "01_first.ipynb").stat().st_mtime_ns
    (run_dir / "go").write_text("")
    assert main(args + ["--resume", "-p", "TEACHER_BATCH_SIZE", "8"]) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert [a["ran"] for a in manifest["attempts"]] == [
        ["01_first", "02_second", "03_third"],
        ["02_second", "03_third"],
    ]
    assert manifest["attempts"][1]["changed_params"] == {"TEACHER_BATCH_SIZE": {"recorded": 64, "now": 8}}
    assert (run_dir / "notebooks" / "01_first.ipynb").stat().st_mtime_ns == first_01  # reused, not rerun
    assert len(list((run_dir / "results").glob("01_first-*.json"))) == 1
    assert (run_dir / "notebooks" / "02_second.failed-1.ipynb").is_file()  # the failed attempt is kept
    assert manifest["notebooks"]["02_second"]["attempt"] == 2
    injected = nbformat.read(str(run_dir / "notebooks" / "02_second.ipynb"), as_version=4)
    assert any(
        "TEACHER_BATCH_SIZE = 8" in c.source
        for c in injected.cells
        if "injected-parameters" in c.metadata.get("tags", [])
    )
    # nothing left to do: a further resume runs nothing and keeps everything
    assert (
        main(
            [
                "run",
                "--notebooks",
                str(fake_pipeline),
                "--outputs",
                str(outputs),
                "--run-id",
                "r",
                "--resume",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "nothing to run" in capsys.readouterr().out


@pytest.mark.slow
def test_only_then_resume_and_manifest_contents(fake_pipeline, tmp_path):
    outputs = tmp_path / "outputs"
    logs: list[str] = []
    run.run_pipeline(
        [],
        {"N_TEST": 4},
        run_id="m",
        only="01",
        notebook_dir=fake_pipeline,
        outputs_dir=outputs,
        log=logs.append,
        progress_bar=False,
    )
    run_dir = outputs / "m"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "incomplete"
    assert [s for s, r in manifest["notebooks"].items() if r["status"] == "completed"] == ["01_first"]
    with pytest.raises(run.RunError, match="already exists"):
        _plan(fake_pipeline, tmp_path, run_id="m")

    (run_dir / "go").write_text("")
    # --resume keeps the original --only selection ...
    kept = run.plan_run([], None, run_id="m", resume=True, notebook_dir=fake_pipeline, outputs_dir=outputs)
    assert kept.selected == ["01_first"] and kept.to_run == []
    # ... unless --only is given again
    start = time.time()
    manifest = run.run_pipeline(
        [],
        None,
        run_id="m",
        resume=True,
        only="01-03",
        notebook_dir=fake_pipeline,
        outputs_dir=outputs,
        log=logs.append,
        progress_bar=False,
    )
    assert time.time() - start < 120
    assert manifest["status"] == "completed"
    assert manifest["params"]["N_TEST"] == 4  # the recorded parameters were reused
    assert manifest["params"]["RUN_DIR"] == str(run_dir.resolve())
    assert manifest["seeds"] == {"SEED": 42}
    assert set(manifest["git"]) == {"commit", "dirty"}
    assert manifest["environment"]["packages"]["papermill"]
    nb2 = manifest["notebooks"]["02_second"]
    assert nb2["tokens"] == {
        "prompt_tokens": 11,
        "completion_tokens": 6,
        "cached": 1,
        "generated": 2,
        "total_tokens": 17,
    }
    assert manifest["notebooks"]["03_third"]["tokens"] == {"completion_tokens": 7, "total_tokens": 7}
    assert nb2["results_file"].startswith("results/02_second-")
    for rec in manifest["notebooks"].values():
        assert rec["status"] == "completed" and rec["seconds"] > 0 and rec["executed_notebook"]
        assert rec["peak_rss_mb"] is None or rec["peak_rss_mb"] > 10  # a kernel uses tens of MiB
    assert manifest["peak_rss_mb"] == max(r["peak_rss_mb"] for r in manifest["notebooks"].values())
    assert list(manifest["data"]["tables"]) == ["data/interactions.parquet"]
    assert len(manifest["data"]["tables"]["data/interactions.parquet"]) == 64
    assert manifest["models"]["teacher"]["recorded"]["02_second"] == {"teacher": {"name": "fake-teacher"}}
    assert manifest["models"]["teacher"]["requested"]["MODEL"] == "embedded"
    assert any("02_second done" in line for line in logs)
    assert not list(run_dir.glob(".manifest.json.tmp*"))  # atomic writes leave no temporary file


@pytest.mark.slow
def test_status_and_params_commands(fake_pipeline, tmp_path, capsys):
    outputs = tmp_path / "outputs"
    (outputs / "s").mkdir(parents=True)
    assert main(["status", "s", "--outputs", str(outputs)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["params", "--section", "inspect"]) == 0
    out = capsys.readouterr().out
    assert "SHOWCASE_FILTER" in out and "default" in out
    assert main(["params", "--yaml"]) == 0
    import yaml

    listed = yaml.safe_load(capsys.readouterr().out)
    from rrlib.config.params import defaults

    assert listed == defaults()


@pytest.mark.slow
def test_resume_keeps_the_only_selection_unless_given_again(fake_pipeline, tmp_path, capsys):
    outputs = tmp_path / "outputs"
    base = ["run", "--notebooks", str(fake_pipeline), "--outputs", str(outputs), "--run-id", "sel", "--no-progress"]
    assert main(base + ["--only", "01,02"]) == 1  # 02 fails: its gate file is not there yet
    run_dir = outputs / "sel"
    assert json.loads((run_dir / "manifest.json").read_text())["selected"] == ["01_first", "02_second"]
    (run_dir / "go").write_text("")
    capsys.readouterr()
    assert main(base + ["--resume"]) == 0  # runs 02 only, not the whole pipeline
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["attempts"][-1]["ran"] == ["02_second"]
    assert manifest["notebooks"]["03_third"]["status"] == "pending" and manifest["status"] == "incomplete"
    assert main(base + ["--resume", "--only", "03"]) == 0  # a new --only replaces it
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["attempts"][-1]["ran"] == ["03_third"] and manifest["status"] == "completed"
    assert manifest["selected"] == ["03_third"]


SLEEPER = (
    "Path(RUN_DIR, 'started').write_text(str(__import__('os').getpid()))\n"
    "import time\nwhile not Path(RUN_DIR, 'go').exists():\n    time.sleep(0.2)"
)


@pytest.mark.slow
def test_kill_9_of_the_runner_reads_interrupted_and_resumes(tmp_path, capsys, monkeypatch):
    import os
    import signal
    import subprocess
    import sys

    import psutil

    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    write_notebook(
        nbs / "01_sleepy.ipynb",
        "",
        "import os\nprint('key', os.environ['OPENAI_API_KEY'])",
        SLEEPER,
        "write_results(paths, '01_sleepy', {'rows': 1}, PARAMS)",
    )
    write_notebook(nbs / "02_after.ipynb", "", "write_results(paths, '02_after', {'rows': 2}, PARAMS)")
    outputs = tmp_path / "outputs"
    run_dir = outputs / "k9"
    secret = "sk-KILLCANARY-quxzywvtsrponm"
    monkeypatch.setenv("OPENAI_API_KEY", secret)  # printed by the notebook before the runner is killed
    env = dict(os.environ, PYTHONPATH=str(Path(run.__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rrlib",
            "run",
            "--notebooks",
            str(nbs),
            "--outputs",
            str(outputs),
            "--run-id",
            "k9",
            "--no-progress",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    kernels: list[psutil.Process] = []
    try:
        deadline = time.time() + 180
        while not (run_dir / "started").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert (run_dir / "started").exists(), "the notebook never started"
        kernels = psutil.Process(proc.pid).children(recursive=True)
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["status"] == "running" and manifest["attempts"][-1]["pid"] == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        for k in kernels:  # the kernel lives in its own session: end it by its id
            try:
                k.kill()
            except psutil.NoSuchProcess:
                pass
        if proc.poll() is None:
            proc.kill()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"  # what the dead runner left
    assert run.live_status(json.loads((run_dir / "manifest.json").read_text())) == "interrupted"
    capsys.readouterr()
    assert main(["status", "k9", "--outputs", str(outputs)]) == 0
    out = capsys.readouterr().out
    assert f"run k9: interrupted (the manifest says running, but runner process {proc.pid} is gone)" in out
    assert "01_sleepy                  interrupted" in out
    (run_dir / "go").write_text("")
    assert (
        main(["run", "--notebooks", str(nbs), "--outputs", str(outputs), "--run-id", "k9", "--resume", "--no-progress"])
        == 0
    )
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and [a["ran"] for a in manifest["attempts"]] == [
        ["01_sleepy", "02_after"],
        ["01_sleepy", "02_after"],
    ]
    killed = run_dir / "notebooks" / "01_sleepy.failed-1.ipynb"  # the killed attempt is kept, and scrubbed
    assert "key ***" in killed.read_text() and "KILLCANARY" not in killed.read_text()
    assert not [p for p in run_dir.rglob("*") if p.is_file() and "KILLCANARY" in p.read_text(errors="replace")]


def test_a_kernel_registered_from_another_environment_is_named(tmp_path, monkeypatch):
    import json as _json
    import sys as _sys

    from rrlib.workbook.runner import kernel_interpreter_mismatch

    for name, exe in (("elsewhere", "/opt/other-checkout/.venv/bin/python"), ("here", _sys.executable)):
        folder = tmp_path / "kernels" / name
        folder.mkdir(parents=True)
        spec = {"argv": [exe, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": name}
        (folder / "kernel.json").write_text(_json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    warning = kernel_interpreter_mismatch("elsewhere")
    assert "/opt/other-checkout/.venv/bin/python" in warning and _sys.executable in warning
    assert "ipykernel install" in warning
    assert kernel_interpreter_mismatch("here") == ""
    assert kernel_interpreter_mismatch("no-such-kernel") == ""
