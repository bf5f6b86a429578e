"""What every step reads about a run: the parameter schema and typed configuration
(:mod:`.params`), where a run's artifacts live (:mod:`.paths`) and the provenance every results
record carries (:mod:`.provenance`). It imports nothing else of rrlib, so any step may use it."""
