"""rrlib.config.params: layering, override parsing and notebook parameter extraction."""

from __future__ import annotations

import json

import pytest

from rrlib.config.params import (
    SCHEMA,
    ParamError,
    defaults,
    from_namespace,
    load_params,
    load_yaml,
    notebook_parameters,
    parse_override,
    select_for_notebook,
    validate,
)


def test_layering_order(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("N_TEST: 10\nSEED: 1\n")
    b.write_text("N_TEST: 20\n")
    p = load_params([a, b], {"SEED": 7})
    assert (p["N_TEST"], p["SEED"], p["N_VALID"]) == (20, 7, SCHEMA["N_VALID"].default)


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(ParamError, match="does not exist"):
        load_params([tmp_path / "missing.yaml"])
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ParamError, match="list.yaml must be a mapping"):
        load_params([bad])
    broken = tmp_path / "broken.yaml"
    broken.write_text("N_TEST: [1,\n")
    with pytest.raises(ParamError, match="broken.yaml is not valid YAML"):
        load_params([broken])


def test_cross_checks_and_ranges():
    with pytest.raises(ParamError, match="TRAIN_KSHOTS has 48, which is not in KSHOT_SIZES"):
        load_params([], {"TRAIN_KSHOTS": [48]})
    with pytest.raises(ParamError, match="must be >= "):
        validate({"N_TEST": -1})
    with pytest.raises(ParamError, match="true or false"):
        validate({"ALLOW_DOWNLOAD": "yes"})
    assert validate({"LEARNING_RATE": 1})["LEARNING_RATE"] == 1.0


@pytest.mark.parametrize(
    "name,text,value",
    [
        ("LEARNING_RATE", "1e-4", 1e-4),
        ("LEARNING_RATE", "3.0e-5", 3e-5),
        ("LEARNING_RATE", "2", 2.0),
        ("N_TEST", "16", 16),
        ("KSHOT_SIZES", "[8, 16]", [8, 16]),
        ("METHODS", "[tallrec]", ["tallrec"]),
        ("GENERATE_REASONING", "false", False),
        ("SHOWCASE_USER", "00123", "00123"),
        ("DATA_DIR", "", ""),
    ],
)
def test_parse_override(name, text, value):
    assert parse_override(name, text) == value
    assert validate({name: parse_override(name, text)})


def test_notebook_parameters_and_selection(tmp_path):
    def nb(*cells):
        path = tmp_path / f"nb{len(list(tmp_path.iterdir()))}.ipynb"
        path.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": m, "source": s} for m, s in cells]}))
        return path

    good = nb(({"tags": ["parameters"]}, "SEED = 3  # seed\nN_TEST = 5  # n\n"), ({}, "X = 1"))
    assert notebook_parameters(good) == {"SEED": 3, "N_TEST": 5}
    assert select_for_notebook(defaults(), good) == {"SEED": 42, "N_TEST": SCHEMA["N_TEST"].default}
    with pytest.raises(ParamError, match="exactly one cell tagged 'parameters', found 0"):
        notebook_parameters(nb(({}, "SEED = 1")))
    with pytest.raises(ParamError, match="found 2"):
        notebook_parameters(nb(({"tags": ["parameters"]}, "SEED = 1"), ({"tags": ["parameters"]}, "N_TEST = 1")))


def test_from_namespace_validates_what_a_notebook_holds():
    assert from_namespace({"SEED": 1, "other": 2, "__name__": "x"}) == {"SEED": 1}
    with pytest.raises(ParamError, match="SEED must be an integer"):
        from_namespace({"SEED": "1"})


# --------------------------------------------------------------------------- issue 11 probes
@pytest.mark.parametrize(
    "name,value", [("KSHOT_SIZES", [-8]), ("KSHOT_SIZES", [0]), ("KSHOT_SIZES", [64, 0]), ("TRAIN_KSHOTS", [0])]
)
def test_kshot_sizes_must_be_positive(name, value):
    other = {"KSHOT_SIZES": value} if name == "TRAIN_KSHOTS" else {"TRAIN_KSHOTS": []}
    with pytest.raises(ParamError, match=rf"parameter {name}=.* must be >= 1 \(each element\)"):
        load_params([], {name: value, **other})
    with pytest.raises(ParamError, match=r"must be >= 1"):  # notebook 01 itself refuses them too
        from rrlib.data.pipeline import full_params

        full_params({name: value, **other})


def test_non_finite_numbers_are_refused_from_yaml_cli_and_notebooks(tmp_path):
    from rrlib.workbook.runner import parse_overrides

    bad = tmp_path / "nan.yaml"
    bad.write_text("LEARNING_RATE: .nan\n")
    with pytest.raises(ParamError, match=r"nan.yaml: parameter LEARNING_RATE=nan must be a finite number"):
        load_params([bad])
    bad.write_text("SERVER_TIMEOUT_S: .inf\n")
    with pytest.raises(ParamError, match=r"parameter SERVER_TIMEOUT_S=inf must be a finite number"):
        load_params([bad])
    for name, text in (
        ("LEARNING_RATE", "nan"),
        ("SERVER_TIMEOUT_S", "inf"),
        ("LEARNING_RATE", "-inf"),
        ("TEACHER_REPETITION_PENALTY", "NaN"),
    ):
        with pytest.raises(ParamError, match=rf"-p: parameter {name}=.* must be a finite number"):
            parse_overrides([(name, text)])
    with pytest.raises(ParamError, match="LORA_DROPOUT=nan must be a finite number"):
        from_namespace({"LORA_DROPOUT": float("nan")})
    with pytest.raises(ParamError, match="SERVER_TIMEOUT_S=.* must be <= 86400"):
        validate({"SERVER_TIMEOUT_S": 1e9})


@pytest.mark.parametrize(
    "typo,meant",
    [
        ("KCOREE", "KCORE"),
        ("MAX_EPOCH", "MAX_EPOCHS"),
        ("kcore", "KCORE"),
        ("LEARNING_RATES", "LEARNING_RATE"),
        ("SERVER_TIMEOUT", "SERVER_TIMEOUT_S"),
    ],
)
def test_misspelt_names_get_close_matches(typo, meant, tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text(f"{typo}: 5\n")
    with pytest.raises(ParamError, match=rf"typo.yaml: unknown parameter\(s\): {typo} \(did you mean: {meant}[,)]"):
        load_params([f])


def test_a_preset_that_sets_a_name_twice_is_refused(tmp_path):
    # PyYAML would keep the second value silently (two merged branches once both appended EVAL_METHODS)
    f = tmp_path / "twice.yaml"
    f.write_text("N_TEST: 5\nSEED: 1\nN_TEST: 7\n")
    with pytest.raises(ParamError, match=r"line 3 sets N_TEST again \(first set on line 1\)"):
        load_yaml(f)
