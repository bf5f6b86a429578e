"""Qualitative inspection of a run (notebook 08): the cases side by side (:mod:`.cases`), the
features a text draws on (:mod:`.highlight`), the self-contained HTML report (:mod:`.html`) and the blind
pairwise human evaluation of explanations (:mod:`.human_eval`).
The faithfulness heuristics the report shows are computed by :mod:`rrlib.evaluate.faithfulness`."""
