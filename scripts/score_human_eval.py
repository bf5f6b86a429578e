"""Score a blind pairwise human evaluation of explanations (rrlib.report.human_eval).

    python scripts/score_human_eval.py --key KEY.csv filled_alice.csv filled_bob.csv [--out DIR]

Reads the filled rating sheets (one CSV per rater), un-blinds them with the key written by
export_human_eval, prints win / tie / loss per method pair and criterion with the sign test's
p-value (pooled and by majority vote) and the inter-rater agreement (Cohen's and Fleiss' kappa),
and with --out writes results.csv, agreement.csv, judgements.csv and summary.md there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rrlib.errors import RRLibError
from rrlib.evaluate.tables import markdown_table
from rrlib.io import write_text_atomic
from rrlib.report.human_eval import score_human_eval


def summary_markdown(scores) -> str:
    res = scores.results
    view = res.assign(pair=res["label_1"] + " vs " + res["label_2"])[
        ["pair", "criterion", "aggregation", "n", "wins", "ties", "losses", "win_rate", "p_value"]
    ]
    text = "## Win / tie / loss of the first method (sign test, ties left out)\n\n" + markdown_table(view)
    text += "\n## Inter-rater agreement (on the un-blinded outcomes)\n\n" + markdown_table(scores.agreement)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sheets", nargs="+", help="filled sheet CSV files, one per rater")
    ap.add_argument("--key", required=True, help="the key CSV written by export_human_eval")
    ap.add_argument("--out", help="folder for results.csv, agreement.csv, judgements.csv, summary.md")
    ap.add_argument("--criteria", nargs="*", help="criterion columns to score (default: those of the key)")
    args = ap.parse_args(argv)
    try:
        scores = score_human_eval(args.sheets, args.key, args.criteria or None)
    except RRLibError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = summary_markdown(scores)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        scores.results.to_csv(out / "results.csv", index=False)
        scores.agreement.to_csv(out / "agreement.csv", index=False)
        scores.judgements.to_csv(out / "judgements.csv", index=False)
        write_text_atomic(out / "summary.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
