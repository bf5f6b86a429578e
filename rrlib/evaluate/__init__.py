"""Evaluation, notebook 07: what to evaluate (:mod:`.plan`), the LLM students' predictions
(:mod:`.llm`), AUC with bootstrap intervals and paired differences (:mod:`.metrics`), RMSE / MAE of
the rating task (:mod:`.rating`), NDCG / Recall / HitRate of the ranking task (:mod:`.ranking`), BERTScore
(:mod:`.bertscore`), faithfulness checks of reasoning (:mod:`.faithfulness`), the results and
the run's metrics.json (:mod:`.results`), tables (:mod:`.tables`) and plots (:mod:`.plots`), the
blind human-evaluation sheets (:mod:`.human_eval`). Each family's own views (:mod:`.families`:
:mod:`.recpie`, :mod:`.exp3rt`) come back as :mod:`.section` objects the notebook shows without
naming a method. Non-LLM methods are fitted by their own modules in :mod:`rrlib.methods`."""
