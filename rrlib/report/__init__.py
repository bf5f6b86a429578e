"""Qualitative inspection of a run (notebook 07): the cases side by side (:mod:`.cases`), the
features a text draws on (:mod:`.highlight`) and the self-contained HTML report (:mod:`.html`).
The faithfulness heuristics the report shows are computed by :mod:`rrlib.evaluate.faithfulness`."""
