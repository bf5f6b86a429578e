"""Qualitative inspection of a run (notebook 08): the cases side by side (:mod:`.cases`), the
features a text draws on (:mod:`.highlight`), the self-contained HTML report (:mod:`.html`), the
scoring of the blind pairwise human evaluation of explanations (:mod:`.human_eval`), and each
family's own views (:mod:`.families`: :mod:`.recpie`, :mod:`.exp3rt`).
The faithfulness heuristics the report shows are computed by :mod:`rrlib.evaluate.faithfulness`."""
