"""EXP3RT step 3 end to end on CPU, without a teacher: the EXP3RT profiles and rating reasoning
that notebooks 04-05 would write are built from the real review texts of the embedded data; then
the rating students train (LoRA, RMSE early stopping), predict test ratings (reasoning first,
expected rating read after 'Rating: ', cached) and rerank a retriever's candidates, and the
rating and ranking tables get their rows."""

import numpy as np
import pandas as pd
import pytest
from test_finetune import TEST_OVERRIDES, _link_embedded_model, _words

from rrlib.config.params import Config, load_params
from rrlib.config.paths import RunPaths

pytestmark = pytest.mark.slow

OVERRIDES = dict(
    TEST_OVERRIDES,
    MAX_EPOCHS=1,
    N_TEST=6,
    N_VALID_EVAL=3,
    REASONING_MAX_NEW_TOKENS=8,
    METHODS=["exp3rt", "tallrec_rating"],
    RANK_USERS=2,
    RANK_CANDIDATES=3,
    RANK_K=[2],
    EVAL_METHODS=["exp3rt_zeroshot", "global_mean", "popularity", "bpr_mf", "exp3rt_rerank"],
    BOOTSTRAP_SAMPLES=20,
)


def _write_exp3rt_tables(paths: RunPaths, cfg: Config) -> None:
    from rrlib.data import load_tables
    from rrlib.enrich.preferences import rank_examples
    from rrlib.methods.retrieval import RetrievalConfig, candidate_lists
    from rrlib.prompts.exp3rt import integer_rating
    from rrlib.reasoning import reasoning_examples

    t = load_tables(paths)
    allowed = t.interactions[t.interactions["target_of"].fillna("") == ""]
    user_text = allowed.groupby("user_id")["review_text"].apply(lambda s: _words(" ".join(s), 20))
    item_text = {
        i: _words(" ".join(r["text"] for r in revs[:2]), 20)
        for i, revs in zip(t.items["item_id"], t.items["sampled_reviews"])
    }
    for kind, texts, path in (
        ("user", user_text.to_dict(), paths.review_user_profiles),
        ("item", item_text, paths.review_item_profiles),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {
                "id": list(texts),
                "kind": kind,
                "status": "ok",
                "profile": [f"Values: {v}" if kind == "user" else f"Strengths: {v}" for v in texts.values()],
            }
        ).to_parquet(path)
    train = reasoning_examples(t.examples, cfg)
    paths.rating_reasoning.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "example_id": train["example_id"],
            "method": "exp3rt",
            "view": "exp3rt",
            "rating": train["target_rating"].map(integer_rating),
            "status": "ok",
            "reasoning": [
                f"Analysis: the item suits what this customer values, {r % 3} small issues." for r in range(len(train))
            ],
        }
    ).to_parquet(paths.rating_reasoning)
    candidates, _ = candidate_lists(
        "bpr_mf",
        t.interactions,
        t.examples,
        rank_examples(t.examples, cfg),
        RetrievalConfig.from_config(cfg),
        cfg.exp3rt.rank_protocols,
    )
    candidates.to_parquet(paths.candidates)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from rrlib.data import prepare

    root = tmp_path_factory.mktemp("exp3rt")
    params = load_params(overrides=dict(OVERRIDES, RUN_DIR=str(root / "run"), CACHE_DIR=str(root / "cache")))
    paths = RunPaths.of(root / "run")
    _link_embedded_model(root / "cache")
    prepare(params, paths, progress=False)
    cfg = Config(params)
    _write_exp3rt_tables(paths, cfg)
    return cfg, paths


def test_rating_students_train_predict_rerank_and_fill_the_tables(run):
    from rrlib import predictions as pr
    from rrlib.data import eval_subset, load_tables
    from rrlib.evaluate import exp3rt as ex3
    from rrlib.evaluate.llm import predict_llm
    from rrlib.evaluate.plan import evaluation_plan
    from rrlib.evaluate.results import score_predictions
    from rrlib.finetune import train, training_data
    from rrlib.prompts.exp3rt import RatingContext
    from rrlib.student.prompts import PromptContext

    cfg, paths = run
    ctx = PromptContext.from_run(paths, "beauty", "exp3rt")
    assert isinstance(ctx, RatingContext)
    data = training_data("exp3rt", 4, cfg, paths, ctx)
    assert data.task == "rating" and len(data.pairs) == 4 and len(data.valid_messages) == 3
    assert all(
        p["completion"][0]["content"].startswith("Analysis:") and "\nRating: " in p["completion"][0]["content"]
        for p in data.pairs
    )
    only = training_data("tallrec_rating", 4, cfg, paths, ctx)
    assert all(p["completion"][0]["content"].startswith("Rating: ") for p in only.pairs)

    summaries = {m: train(m, 4, cfg, paths, ctx) for m in ("exp3rt", "tallrec_rating")}
    for s in summaries.values():
        assert s["valid_metric"] == "valid_rmse" and 0 < s["best_valid_rmse"] < 4 and s["best_valid_auc"] is None
    again = train("exp3rt", 4, cfg, paths, ctx)
    assert again["status"] == "already_trained"

    tables = load_tables(paths)
    test = eval_subset(tables.examples, "test", cfg.data.n_test)
    rows = [predict_llm(m, 4, test, cfg, ctx, paths.adapter_dir(m, 4)) for m in summaries]
    rows.append(predict_llm("exp3rt_zeroshot", 0, test, cfg, ctx, None))
    for r in rows:
        assert (r["task"] == "rating").all() and r["predicted_rating"].between(1, 5).all()
        assert r["rating_argmax"].isin([1, 2, 3, 4, 5]).all()
    assert rows[0]["predicted_rating"].nunique() > 1
    assert (rows[0]["generated_text"].str.len() > 0).all() and (rows[1]["generated_text"] == "").all()
    cached = predict_llm("exp3rt", 4, test, cfg, ctx, paths.adapter_dir("exp3rt", 4))
    assert cached.attrs["stats"]["scores_computed"] == 0
    np.testing.assert_allclose(cached["predicted_rating"], rows[0]["predicted_rating"])

    from rrlib.methods import rating as rating_baselines

    base, _ = rating_baselines.predict(["global_mean"], tables, test, cfg)
    predictions = pd.concat([*rows, base], ignore_index=True)
    results, _ = score_predictions(
        predictions, {}, dataset="t", n_boot=20, seed=0, bertscore_model="embedded", bertscore_layers=6, progress=False
    )
    view = ex3.rating_view(results)
    assert set(view["method"]) == {"EXP3RT", "TALLRec (rating)", "Zero-shot EXP3RT", "Global mean rating"}
    assert (results.loc[results["method"] == "exp3rt", "rating_reference"] == "global_mean").all()

    plan = evaluation_plan(cfg)
    rplan = ex3.ranking_plan(cfg, paths, plan.finetuned)
    assert rplan.retrievers == ["popularity", "bpr_mf"] and [r[0] for r in rplan.rerankers] == ["exp3rt_rerank"]
    ranking = ex3.run_rankings(paths, cfg, rplan, tables, {"exp3rt": ctx})
    assert set(ranking.results["method"]) == {"popularity", "bpr_mf", "exp3rt_rerank"}
    rr = pr.load_rankings(paths.rankings)
    reranked = rr[rr["method"] == "exp3rt_rerank"]
    cands = pd.read_parquet(paths.candidates)
    # the same candidates per user and protocol, reordered by the expected rating (higher first)
    assert set(reranked["protocol"]) == {"retrieved", "sampled"}
    for (protocol, user), g in reranked.groupby(["protocol", "user_id"]):
        own = cands[(cands["user_id"] == user) & (cands["protocol"] == protocol)]
        assert set(g["item_id"]) == set(own["item_id"]) and g["is_target"].sum() == 1
        assert g.sort_values("rank")["score"].is_monotonic_decreasing
    # the retrievers rank every liked test user; the reranker's paired difference is on its own users
    res = ranking.results[ranking.results["cutoff"] == 10].set_index(["protocol", "method"])
    n_liked = int(tables.examples.query("split == 'test'")["label"].sum())
    assert res.loc[("retrieved", "bpr_mf"), "n_users"] == n_liked
    assert res.loc[("retrieved", "exp3rt_rerank"), "delta_n_users"] == 2
    md = ranking.files["ranking_md"].read_text()
    assert "NDCG@10" in md and "EXP3RT rerank" in md and "sampled unrated" in md


def test_multitask_pairs_hold_steps_1_and_2_from_allowed_reviews_only(run):
    from rrlib.data import load_tables
    from rrlib.enrich.preferences import user_reviews
    from rrlib.finetune import multitask_pairs
    from rrlib.prompts.exp3rt import RatingContext

    cfg, paths = run
    t = load_tables(paths)
    users = sorted(t.examples["user_id"].astype(str).unique())[:3]
    reviews = user_reviews(t.interactions, users, cfg.exp3rt.exp3rt_reviews_per_user, cfg.exp3rt.exp3rt_review_words)
    prefs = pd.DataFrame(
        {
            "review_id": reviews["review_id"],
            "source": "user",
            "user_id": reviews["user_id"],
            "item_id": reviews["item_id"],
            "position": reviews["position"],
            "rating": reviews["rating"],
            "liked": [["scent"]] * len(reviews),
            "disliked": [[]] * len(reviews),
            "preferences": "Liked: scent\nDisliked: none",
            "status": "ok",
        }
    )
    prefs.to_parquet(paths.preferences)
    ctx = RatingContext.from_run(paths, "beauty")
    pairs = multitask_pairs(paths, cfg, ctx)
    n_profiles = sum(len(pd.read_parquet(p)) for p in (paths.review_user_profiles, paths.review_item_profiles))
    extraction = [p for p in pairs if p["completion"][0]["content"] == "Liked: scent\nDisliked: none"]
    assert len(extraction) == len(prefs) and len(pairs) <= len(prefs) + n_profiles
    # every extraction prompt quotes one of the allowed reviews, never a target's own review
    targets = t.interactions[t.interactions["target_of"].fillna("") != ""]
    target_texts = {_words(x, 50) for x in targets["review_text"] if len(str(x).split()) > 8}
    prompts = "\n".join(p["prompt"][-1]["content"] for p in extraction)
    assert all(_words(x, 50) not in prompts for x in target_texts)
    assert any(_words(x, 8) in prompts for x in reviews["text"])
