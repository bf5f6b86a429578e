"""Issue 11: ``rrlib validate`` and ``rrlib run`` refuse, before anything runs, what notebook 01
(dataset, files, prompt domain) and notebooks 04-07 (method names and kinds) would fail on."""

from __future__ import annotations

import pytest

from rrlib.__main__ import main
from rrlib.data import download
from rrlib.errors import DataError, MethodError, ParamError
from rrlib.workbook import runner as run


def _plan(tmp_path, **overrides):
    return run.plan_run([], {"CACHE_DIR": str(tmp_path / "cache"), **overrides}, outputs_dir=tmp_path / "outputs")


def _validate(tmp_path, capsys, *pairs: str) -> tuple[int, str]:
    args = ["validate", "--outputs", str(tmp_path / "outputs"), "-p", "CACHE_DIR", str(tmp_path / "cache")]
    for i in range(0, len(pairs), 2):
        args += ["-p", pairs[i], pairs[i + 1]]
    rc = main(args)
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_generic_dataset_needs_domain_and_data_dir(tmp_path, capsys):
    rc, out = _validate(tmp_path, capsys, "DATASET", "generic")
    assert rc == 2 and "DATASET='generic' implies no domain: set DOMAIN" in out
    rc, out = _validate(tmp_path, capsys, "DATASET", "generic", "DOMAIN", "beauty")
    assert rc == 2 and "DATASET=generic needs DATA_DIR" in out
    empty = tmp_path / "mine"
    empty.mkdir()
    with pytest.raises(DataError, match=r"mine has no interactions.csv or interactions.parquet"):
        _plan(tmp_path, DATASET="generic", DOMAIN="beauty", DATA_DIR=str(empty))
    with pytest.raises(DataError, match=r"DATA_DIR=.*does not exist"):
        _plan(tmp_path, DATASET="generic", DOMAIN="beauty", DATA_DIR=str(tmp_path / "absent"))
    (empty / "interactions.csv").write_text("user,item,rating,timestamp\nu,i,5,1\n")
    plan = _plan(tmp_path, DATASET="generic", DOMAIN="beauty", DATA_DIR=str(empty))
    assert plan.to_run[0] == "01_data_prep"


def test_run_refuses_before_creating_the_run_folder(tmp_path, capsys):
    rc = main(["run", "--outputs", str(tmp_path / "outputs"), "--run-id", "g", "-p", "DATASET", "generic"])
    assert rc == 2 and "set DOMAIN" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()


def test_paper_dataset_offline_without_files_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "is_online", lambda url, timeout=3.0: False)  # this machine, offline
    with pytest.raises(
        DataError,
        match=r"DATASET='ml1m': its files are not on this machine and ALLOW_DOWNLOAD "
        r"is false: put ratings.dat, movies.dat and users.dat into .*ml-1m",
    ):
        _plan(tmp_path, DATASET="ml1m", ALLOW_DOWNLOAD=False)
    with pytest.raises(
        DataError,
        match=r"DATASET='beauty': .*mcauleylab.* cannot be reached \(offline\): put "
        r"All_Beauty.json.gz",
    ):
        _plan(tmp_path, DATASET="beauty")
    monkeypatch.setattr(download, "is_online", lambda url, timeout=3.0: True)
    plan = _plan(tmp_path, DATASET="fashion")
    assert any("will download it" in w for w in plan.warnings)


def test_paper_dataset_with_its_files_passes(tmp_path, shared_data, monkeypatch):
    monkeypatch.setattr(download, "is_online", lambda url, timeout=3.0: False)
    plan = _plan(tmp_path, DATASET="ml1m", DATA_DIR=str(shared_data / "ml-1m"), ALLOW_DOWNLOAD=False)
    assert plan.to_run[0] == "01_data_prep"


def test_every_dataset_name_has_a_loader_and_every_domain_has_prompts(tmp_path):
    from rrlib.config.params import DATASET_NAMES, SCHEMA
    from rrlib.data.loaders import DATASETS
    from rrlib.prompts.teacher import ROLES

    assert set(DATASET_NAMES) == set(DATASETS)
    assert set(SCHEMA["DOMAIN"].choices) - {""} == set(ROLES)
    assert _plan(tmp_path, DATASET="ml_latest_small").to_run[0] == "01_data_prep"  # shipped: nothing to fetch
    with pytest.raises(ParamError, match="DATASET='imdb' is not one of"):
        _plan(tmp_path, DATASET="imdb")


def test_method_names_and_kinds(tmp_path):
    with pytest.raises(MethodError, match=r"METHODS has 'zeroshot_vanilla', which is not a finetuned LLM method"):
        _plan(tmp_path, METHODS=["zeroshot_vanilla"])
    with pytest.raises(MethodError, match=r"EVAL_METHODS has 'tallrec', a finetuned method: put it in METHODS"):
        _plan(tmp_path, EVAL_METHODS=["tallrec"])
    with pytest.raises(
        MethodError,
        match=r"parameter EVAL_METHODS names unknown method\(s\): sasrek \(did you mean: "
        r"sasrec\)",
    ):
        _plan(tmp_path, EVAL_METHODS=["sasrek", "caser"])
    with pytest.raises(MethodError, match=r"parameter METHODS names unknown method\(s\): reasoningrek"):
        _plan(tmp_path, METHODS=["reasoningrek"])
    with pytest.raises(MethodError, match=r"INSPECT_METHOD='sasrec' is not evaluated by this run"):
        _plan(tmp_path, INSPECT_METHOD="sasrec", EVAL_METHODS=["caser"])
    with pytest.raises(ParamError, match=r"TRAIN_KSHOTS has 48, which is not in KSHOT_SIZES"):
        _plan(tmp_path, TRAIN_KSHOTS=[48])


def test_checks_follow_the_notebooks_that_will_run(tmp_path):
    # 08 alone declares neither the dataset's domain nor METHODS: nothing to check there
    plan = run.plan_run(
        [],
        {"DATASET": "generic", "METHODS": ["zeroshot_vanilla"], "INSPECT_METHOD": "zeroshot_vanilla"},
        only="08",
        outputs_dir=tmp_path / "outputs",
    )
    assert plan.to_run == ["08_inspect_outputs"]
    with pytest.raises(MethodError):  # 06 trains METHODS
        run.plan_run([], {"METHODS": ["zeroshot_vanilla"]}, only="06", outputs_dir=tmp_path / "outputs")
