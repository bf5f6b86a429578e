"""The committed notebooks follow the workbook's conventions: no outputs, the rrlib kernel, one
`parameters` cell whose names, defaults and comments are exactly rrlib/config/params.py's (as
scripts/sync_parameter_cells.py renders them), derived values next."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from rrlib.config.params import COMMON, SCHEMA, notebook_parameters, parameters_cell, render_parameters_cell
from rrlib.config.paths import STEPS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNELSPEC = {"name": "rrlib", "display_name": "Python (rrlib)", "language": "python"}


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _parameters_cell(nb: dict) -> tuple[int, dict]:
    tagged = [(i, c) for i, c in enumerate(nb["cells"]) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"expected exactly one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def test_every_pipeline_notebook_exists():
    assert [p.stem for p in NOTEBOOKS] == list(STEPS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = _load(path)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs: clear them before committing"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"
        assert "papermill" not in cell.get("metadata", {}), f"{path.name} cell {i}: papermill metadata"
    assert "injected-parameters" not in json.dumps(nb), f"{path.name} is an executed copy"
    assert nb["metadata"].get("kernelspec") == KERNELSPEC, f"{path.name}: kernelspec must be {KERNELSPEC}"
    assert "papermill" not in nb["metadata"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_matches_the_schema(path):
    nb = _load(path)
    index, cell = _parameters_cell(nb)
    assert index <= 2, f"{path.name}: the parameters cell should be near the top (cell {index})"
    declared = notebook_parameters(path)
    unknown = sorted(set(declared) - set(SCHEMA))
    assert not unknown, f"{path.name} declares {unknown}, which rrlib/config/params.py does not define"
    missing = sorted(set(COMMON) - set(declared))
    assert not missing, f"{path.name} must declare the common parameters {missing}"
    differ = {
        k: (v, SCHEMA[k].default)
        for k, v in declared.items()
        if v != SCHEMA[k].default or type(v) is not type(SCHEMA[k].default)
    }
    assert not differ, f"{path.name}: defaults differ from rrlib/config/params.py (notebook, schema): {differ}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_generated_from_the_schema_comments_included(path):
    wanted = render_parameters_cell(notebook_parameters(path))
    assert parameters_cell(path) == wanted, (
        f"{path.name}: the parameters cell drifted from rrlib/config/params.py (defaults, help comments or section "
        f"headers); run `python scripts/sync_parameter_cells.py`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_are_upper_case_literals_with_one_line_comments(path):
    _, cell = _parameters_cell(_load(path))
    source = "".join(cell["source"])
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), (
            f"{path.name}: the parameters cell may only assign literals (line {node.lineno})"
        )
        name = node.targets[0].id
        assert name.isupper(), f"{path.name}: parameter {name} is not UPPER_CASE"
        ast.literal_eval(node.value)
    for line in source.splitlines():
        if re.match(r"^[A-Z_0-9]+\s*=", line):
            assert "#" in line, f"{path.name}: `{line}` needs a one-line comment"
            # papermill infers parameters line by line and cannot parse a line holding two '='
            assert line.count("=") == 1, f"{path.name}: `{line}`: avoid '=' in the comment (papermill warns)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_derived_values_next_and_results_written_last(path):
    nb = _load(path)
    index, _ = _parameters_cell(nb)
    code = [c for c in nb["cells"][index + 1 :] if c["cell_type"] == "code"]
    assert code and "from_namespace(globals())" in "".join(code[0]["source"]), (
        f"{path.name}: the cell after the parameters must derive PARAMS = from_namespace(globals())"
    )
    last = "".join(code[-1]["source"])
    assert "write_results(" in last and f'"{path.stem}"' in last, (
        f'{path.name}: the last code cell must call write_results(paths, "{path.stem}", ...)'
    )
