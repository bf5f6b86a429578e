"""Running the workbook: the papermill runner behind ``python -m rrlib run`` (:mod:`.runner`) and
the run's record, ``manifest.json`` (:mod:`.manifest`). It sits above every step and imports
them; no step imports it."""
