"""A workbook error reads well in a notebook: one short box with its kind, its message (which names
the parameter and the fix) and the cell line that raised it, no rrlib frames; ``%xmode verbose``
brings the full traceback back. Notebook 01's data card flags every K-shot size the data cannot hold."""

from __future__ import annotations

import pandas as pd
import pytest

from rrlib.errors import DataError, full_tracebacks

CELL = (
    "import pandas as pd\n"
    "from rrlib.data import kshot\n"
    "examples = pd.DataFrame({'split': ['train'] * 20, 'sample_rank': range(20), 'label': [1, 0] * 10})\n"
    "kshot(examples, 256)\n"
)


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    sh = InteractiveShell.instance()
    sh.run_line_magic("xmode", "context")
    yield sh
    sh.run_line_magic("xmode", "context")
    full_tracebacks(False)


def test_the_kshot_error_names_the_parameter_and_the_fix():
    examples = pd.DataFrame({"split": ["train"] * 20, "sample_rank": range(20), "label": [1, 0] * 10})
    from rrlib.data import kshot

    with pytest.raises(DataError, match=r"K=256 .*KSHOT_SIZES.*holds only 20.*at most 20"):
        kshot(examples, 256)
    with pytest.raises(ValueError):  # still a ValueError for callers that catch one
        kshot(examples, 21)


def test_a_workbook_error_is_one_short_box_in_a_notebook(shell, capsys):
    shell.run_cell(CELL)
    out = capsys.readouterr().out
    assert "DataError" in out and "KSHOT_SIZES" in out and "line 4: kshot(examples, 256)" in out
    assert "schema.py" not in out and "Traceback" not in out
    assert len(out.strip().splitlines()) <= 4 and "%xmode verbose" in out


def test_xmode_verbose_or_the_switch_bring_the_full_traceback_back(shell, capsys):
    shell.run_line_magic("xmode", "verbose")
    shell.run_cell(CELL)
    assert "schema.py" in capsys.readouterr().out
    shell.run_line_magic("xmode", "context")
    full_tracebacks(True)
    shell.run_cell(CELL)
    assert "schema.py" in capsys.readouterr().out


def test_other_errors_keep_their_traceback(shell, capsys):
    shell.run_cell("def f():\n    raise KeyError('x')\nf()")
    out = capsys.readouterr().out
    assert "KeyError" in out and "Traceback" in out


def test_the_data_card_flags_every_kshot_size_the_data_cannot_hold(tmp_path):
    from rrlib.config.params import defaults
    from rrlib.config.paths import RunPaths
    from rrlib.data import kshot_table, prepare, splits_table

    params = {**defaults(), "MAX_USERS": 24, "KSHOT_SIZES": [16, 64, 128], "TRAIN_KSHOTS": [16]}
    card = prepare(params, RunPaths.of(tmp_path / "run"), progress=False)
    flags = [f for f in card["flags"] if f.startswith("KSHOT_SIZES")]
    assert len(flags) == 1 and "64, 128" in flags[0] and "16," not in flags[0] and "at most 24" in flags[0]
    table = kshot_table(card).data
    assert list(table["available"]) == ["yes", "NO: too large", "NO: too large"]
    assert "background-color" in kshot_table(card).to_html()
    splits = splits_table(card)
    assert str(splits["examples"].dtype) == "Int64" and splits.loc["test", "examples"] == 24
