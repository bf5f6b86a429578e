"""Regenerate every notebook's cell tagged ``parameters`` from the schema (rrlib/config/params.py):
the names each notebook declares, with their defaults and help as comments, under one header per
section. ``--check`` changes nothing and exits 1 when a cell differs (tests run the same check).

    .venv/bin/python scripts/sync_parameter_cells.py            # rewrite the cells
    .venv/bin/python scripts/sync_parameter_cells.py --check    # report drift
    .venv/bin/python scripts/sync_parameter_cells.py --add 06_finetune SEEDS   # declare a parameter
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rrlib.config.params import notebook_parameters, parameters_cell, render_parameters_cell  # noqa: E402


def _cell_lines(text: str) -> list[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def sync(path: Path, check: bool, add: list[str]) -> bool:
    """True when the cell already matched the schema."""
    names = list(notebook_parameters(path)) + [n for n in add if n not in notebook_parameters(path)]
    wanted = render_parameters_cell(names)
    if parameters_cell(path) == wanted:
        return True
    if not check:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                cell["source"] = _cell_lines(wanted)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report drift, change nothing")
    parser.add_argument("--add", nargs="+", metavar=("NOTEBOOK", "NAME"), help="declare NAME(s) in NOTEBOOK")
    args = parser.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    add_to, add = (args.add[0], args.add[1:]) if args.add else ("", [])
    drift = [p.name for p in notebooks if not sync(p, args.check, add if p.stem == add_to else [])]
    if drift:
        print(("out of date: " if args.check else "rewrote: ") + ", ".join(drift))
    return 1 if drift and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
