"""Issue 24, hints that fit: validate refuses K-shot sizes the data cannot hold, damaged cache lines
reach the results JSON, the manifest and the runner's console, and the resume hint repeats every
option the run was started with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_data_input_cleaning import _write_generic
from test_runner import write_notebook

from rrlib.__main__ import main
from rrlib.config.paths import RunPaths
from rrlib.config.provenance import write_results
from rrlib.errors import DataError
from rrlib.llm import CachedGenerator, GenerationRequest, GenerationResult, GenerationSettings
from rrlib.workbook import manifest as mf
from rrlib.workbook import runner as run


# --------------------------------------------------------------------------- K-shot sizes
def test_validate_refuses_kshot_sizes_the_shipped_data_cannot_hold(capsys):
    rc = main(["validate", "-p", "KSHOT_SIZES", "[100000]", "-p", "TRAIN_KSHOTS", "[100000]"])
    err = capsys.readouterr().err
    assert rc == 2 and "K=100000 needs more training examples than the data can give" in err, err
    assert "TRAIN_KSHOTS trains K=100000" in err and "at most" in err


def test_validate_refuses_a_train_kshot_larger_than_a_generic_files_users(tmp_path):
    data = _write_generic(tmp_path / "d", n_users=30)
    base = {"DATASET": "generic", "DOMAIN": "instruments", "DATA_DIR": str(data), "KCORE": 5}
    with pytest.raises(DataError, match=r"K=64 needs .*generic has 30 users with at least 5 interactions"):
        run.plan_run([], {**base, "KSHOT_SIZES": [8, 64], "TRAIN_KSHOTS": [8]}, outputs_dir=tmp_path / "out")
    # sizes it can hold pass, and so does a file notebook 01 will refuse (it names the problem itself)
    run.plan_run([], {**base, "KSHOT_SIZES": [8, 16], "TRAIN_KSHOTS": [8]}, outputs_dir=tmp_path / "out")
    (data / "interactions.csv").write_text("user,item,rating,timestamp\nu1,i1,banana,1\n")
    run.plan_run([], {**base, "KSHOT_SIZES": [64], "TRAIN_KSHOTS": [64]}, outputs_dir=tmp_path / "out")


def test_preflight_reads_the_exact_count_from_the_runs_data_card(tmp_path):
    paths = RunPaths.of(tmp_path / "run")
    paths.data_card_json.parent.mkdir(parents=True, exist_ok=True)
    paths.data_card_json.write_text(json.dumps({"splits": {"train": {"examples": 12}}}))
    params = {**run.defaults(), "RUN_DIR": str(paths.root), "KSHOT_SIZES": [8, 16], "TRAIN_KSHOTS": [8]}
    with pytest.raises(DataError, match=r"K=16 needs more training examples than the data holds: .*counts 12"):
        run.preflight(params, {"06_finetune": {"KSHOT_SIZES": [8, 16], "TRAIN_KSHOTS": [8]}})


# --------------------------------------------------------------------------- damaged cache
class _Echo:
    identity = {"backend": "fake", "name": "echo"}

    def generate(self, requests):
        return [GenerationResult(text="ok", prompt_tokens=1, completion_tokens=1) for _ in requests]


def _req(i: int) -> GenerationRequest:
    return GenerationRequest(({"role": "user", "content": f"q{i}"},), GenerationSettings(max_new_tokens=4), "t", "1")


def test_damaged_cache_lines_reach_the_stats_results_and_manifest(tmp_path):
    gen = CachedGenerator(_Echo(), tmp_path / "cache", progress=False)
    gen.generate([_req(0), _req(1)])
    assert gen.stats["cache_damaged_lines"] == 0
    with open(gen.cache.path, "ab") as f:
        f.write(b'{"key": "torn", "te')  # a crash mid-write
    gen2 = CachedGenerator(_Echo(), tmp_path / "cache", progress=False)
    with pytest.warns(Warning, match="damaged"):
        gen2.generate([_req(0), _req(2)])
    stats = dict(gen2.stats)
    assert stats["cache_damaged_lines"] == 1 and stats["cache_file"] == gen2.cache.path.name
    gen2.reset_stats()  # a new job of the same generator still reports the file's damage
    assert gen2.stats["cache_damaged_lines"] == 1
    paths = RunPaths.of(tmp_path / "run")
    write_results(paths, "02_item_descriptions", {"generation": {"descriptions": stats, "other": stats}}, {})
    summary = mf.step_summary(paths.root, "02_item_descriptions")
    assert summary["cache_damaged_lines"] == {gen2.cache.path.name: 1}  # one file, counted once


# --------------------------------------------------------------------------- resume hint
def _notebooks(folder: Path) -> Path:
    folder.mkdir()
    write_notebook(folder / "01_first.ipynb", "N_TEST = 600  # test examples\n", "x = 1")
    write_notebook(folder / "02_fails.ipynb", "TEACHER_BATCH_SIZE = 64  # batch\n", "raise RuntimeError('boom')")
    return folder


def test_the_resume_hint_repeats_every_option(tmp_path):
    nbs = _notebooks(tmp_path / "nbs")
    plan = run.plan_run(
        [], {"N_TEST": 100}, run_id="r1", only="02", notebook_dir=nbs, outputs_dir=tmp_path / "out", kernel="python3"
    )
    hint = run.resume_command(plan)
    for part in ("--run-id r1 --resume", f"--outputs {tmp_path / 'out'}", f"--notebooks {nbs}"):
        assert part in hint, hint
    assert "--kernel python3" in hint and "--only 02" in hint and "-p N_TEST 100" in hint
    # from the command line: the same command, with --resume and the run id once
    argv = ["python", "-m", "rrlib", "run", "--outputs", "/o u", "--run-id", "r1", "-p", "N_TEST", "100"]
    assert run.resume_command(plan, argv) == ("python -m rrlib run --run-id r1 --resume --outputs '/o u' -p N_TEST 100")
    failed = run.NotebookFailed(
        "02_fails", tmp_path, cell_index=1, exec_count=1, first_line="x", error="E", run_id="r1", resume=hint
    )
    assert str(failed).endswith(f"continue with: {hint}")


@pytest.mark.slow
def test_a_failed_run_prints_a_resume_hint_with_its_outputs_and_the_cache_damage(tmp_path, capsys):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    cache = tmp_path / "cache"
    stats = {"generated": 1, "cache_file": "abc.jsonl", "cache_damaged_lines": 3}
    write_notebook(
        nbs / "01_first.ipynb",
        "N_TEST = 600  # test examples\n",
        f"write_results(paths, '01_first', {{'generation': {stats!r}}}, PARAMS)",
    )
    write_notebook(nbs / "02_fails.ipynb", "TEACHER_BATCH_SIZE = 64  # batch\n", "raise RuntimeError('boom')")
    outputs = tmp_path / "elsewhere"
    argv = ["run", "--notebooks", str(nbs), "--outputs", str(outputs), "--run-id", "h", "--no-progress"]
    assert main(argv + ["-p", "CACHE_DIR", str(cache)]) == 1
    out = capsys.readouterr()
    console = out.out + out.err
    assert "warning: 01_first: the generation cache abc.jsonl had 3 damaged line(s)" in console
    assert f"--run-id h --resume --notebooks {nbs} --outputs {outputs} --no-progress -p CACHE_DIR {cache}" in console
    manifest = json.loads((outputs / "h" / "manifest.json").read_text())
    assert manifest["notebooks"]["01_first"]["cache_damaged_lines"] == {"abc.jsonl": 3}
