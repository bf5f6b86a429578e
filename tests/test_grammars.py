"""Grammars of the parsed teacher answers (rrlib.prompts.grammars): what they accept and refuse,
the token budget they set, the cache key that includes them, how each backend sends them, the parse
rates notebooks 04 and 05 record and the manifest gathers, and real constrained generations with
the embedded 135M teacher on transformers (llguidance) and on llama-server (GBNF) where built."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_llm_server import Scripted, ok

import rrlib.llm.engine_backend as eb
import rrlib.llm.engines as eng
from rrlib.config.params import Config
from rrlib.errors import ParamError, ServerError
from rrlib.io import stable_hash
from rrlib.llm import CachedGenerator, LocalBackend, ServerBackend, teacher_backend
from rrlib.llm.base import GenerationRequest, GenerationSettings
from rrlib.llm.constrained import compile_grammar
from rrlib.prompts import exp3rt as xp
from rrlib.prompts import grammars as gr
from rrlib.prompts.teacher import REASONING_SECTIONS
from rrlib.workbook import manifest as mf

REPO = Path(__file__).resolve().parents[1]
MODEL_CACHE = REPO / "outputs" / "cache"  # the embedded checkpoint, built once and shared with other tests


@pytest.fixture(scope="module")
def matcher():
    """``accepts(grammar, text)``: whether the grammar accepts exactly ``text`` (llguidance on the
    embedded tokenizer, as the transformers backend decodes)."""
    import llguidance

    from rrlib.llm.constrained import ll_tokenizer
    from rrlib.llm.local import load_tokenizer

    tok = load_tokenizer("embedded", cache_dir=MODEL_CACHE)
    ll = ll_tokenizer(tok)

    def accepts(grammar: str, text: str) -> bool:
        m = llguidance.LLMatcher(ll, compile_grammar(grammar))
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return all(m.consume_token(i) for i in ids) and m.is_accepting()

    return accepts


PREFS = gr.preference_format(xp.MAX_ASPECTS, xp.MAX_ASPECT_WORDS)


def test_preference_grammar_accepts_exactly_what_parses(matcher):
    good = [
        "Liked: bright tone; stays in tune for weeks\nDisliked: none",
        'Liked: none\nDisliked: "flimsy" clip; no 9V adapter',
        "Liked: a b c d e f g h; two; three; four; five\nDisliked: price",
    ]
    for text in good:
        assert matcher(PREFS.gbnf, text), text
        assert xp.preferences_parse(text), text
    bad = [
        "Liked: bright, warm tone\nDisliked: none",  # a comma would split the aspect
        "Liked: a; b; c; d; e; f\nDisliked: none",  # 6 aspects
        "Liked: a b c d e f g h i\nDisliked: none",  # a 9-word aspect
        "Liked: tone",  # no Disliked line
        "Here is the list:\nLiked: tone\nDisliked: none",  # a preamble
        "Liked: 42\nDisliked: none",  # an aspect starts with a letter
        "Liked: tone\nDisliked: none\nThanks",  # nothing after the two lines
    ]
    for text in bad:
        assert not matcher(PREFS.gbnf, text), text
    # the aspect bounds are the parser's own, so the budget covers 2 x 5 aspects x 8 words
    assert PREFS.max_tokens >= gr.TOKENS_PER_WORD * 2 * xp.MAX_ASPECTS * xp.MAX_ASPECT_WORDS


def test_rating_reasoning_grammar_ends_with_the_true_rating(matcher):
    fmt = xp.rating_reasoning_format(4, words=8)
    assert fmt.gbnf.startswith('root ::= "Analysis: " text "\\nRating: 4"')
    assert matcher(fmt.gbnf, "Analysis: the bright strings suit a player who wants tone.\nRating: 4")
    assert not matcher(fmt.gbnf, "Analysis: bright strings.\nRating: 3")
    assert not matcher(fmt.gbnf, "Analysis: bright strings.")  # cut before the rating
    assert not matcher(fmt.gbnf, "Analysis: Rating: 4 because.\nRating: 4")  # no ':' inside a field
    assert not matcher(fmt.gbnf, "Analysis: " + " ".join(["word"] * 11) + "\nRating: 4")  # 10 words at most
    assert matcher(fmt.gbnf, "Analysis: " + " ".join(["word"] * 10) + "\nRating: 4")
    assert gr.field_words(8) == 10 and gr.rating_parse("Analysis: x\nRating: 4")
    out = xp.check_rating_reasoning("Analysis: the bright strings suit this player well.\nRating: 4", 4, 8)
    assert out.status == "ok"


def test_sectioned_grammars_and_their_parse_check(matcher):
    prof = gr.sections_format("exp3rt_user_profile", xp.USER_SECTIONS, 5)
    assert matcher(prof.gbnf, "Values: warm tone and sturdy build.\nAvoids: thin cables.")
    assert not matcher(prof.gbnf, "Avoids: thin cables.\nValues: warm tone.")  # order is fixed
    assert not matcher(prof.gbnf, "Values: warm tone.")
    reasoning = gr.sections_format("reasoning", REASONING_SECTIONS, 20)
    text = "Profile analysis: likes durable things.\nTarget analysis: this one is durable, so liked."
    assert matcher(reasoning.gbnf, text) and gr.sections_parse(REASONING_SECTIONS)(text)
    assert not gr.sections_parse(REASONING_SECTIONS)("Profile analysis: only the first part.")
    assert not gr.sections_parse(xp.USER_SECTIONS)("Values:\nAvoids: x")  # an empty section


def test_apply_raises_the_token_budget_to_the_grammar_and_keeps_the_rest():
    req = xp.TEMPLATES["preference_extraction"].request(
        "instruments", GenerationSettings(max_new_tokens=64, seed=3), tag="r1", review=xp.Review("Strings", 5, "Good.")
    )
    got = PREFS.apply(req)
    assert got.grammar == PREFS.gbnf and got.settings.max_new_tokens == PREFS.max_tokens > 64
    assert got.settings.seed == 3 and got.messages == req.messages and got.tag == "r1"
    big = GenerationRequest(req.messages, GenerationSettings(max_new_tokens=999), "t", "1")
    assert PREFS.apply(big).settings.max_new_tokens == 999  # never lowered


def test_every_grammar_compiles():
    for fmt in (
        PREFS,
        xp.rating_reasoning_format(1, 30),
        gr.sections_format("exp3rt_item_profile", xp.ITEM_SECTIONS, 20),
        gr.sections_format("reasoning", REASONING_SECTIONS, 100),
        gr.preference_format(1, 1),
    ):
        assert compile_grammar(fmt.gbnf)
    with pytest.raises(ValueError, match="does not compile"):
        compile_grammar('root ::= "a" missing_rule')


# --------------------------------------------------------------------------- the cache key
def test_the_cache_key_includes_the_grammar(tmp_path):
    msgs = ({"role": "user", "content": "hi"},)
    settings = GenerationSettings(max_new_tokens=8)
    free = GenerationRequest(msgs, settings, "t", "1")
    a = GenerationRequest(msgs, settings, "t", "1", grammar='root ::= "a"')
    b = GenerationRequest(msgs, settings, "t", "1", grammar='root ::= "b"')
    ident = {"name": "m"}
    assert len({free.key(ident), a.key(ident), b.key(ident)}) == 3
    # a free-text request keeps the key it had before grammars existed (cached texts stay valid)
    old = {"model": ident, "template": "t", "template_version": "1", "messages": [dict(msgs[0])]}
    assert free.key(ident) == stable_hash({**old, "settings": settings.as_dict()})

    class Echo:
        identity = ident

        def generate(self, requests):
            from rrlib.llm.base import GenerationResult

            return [GenerationResult(text=r.grammar or "free") for r in requests]

    gen = CachedGenerator(Echo(), tmp_path, progress=False)
    assert [r.text for r in gen.generate([free, a, b, a])] == ["free", 'root ::= "a"', 'root ::= "b"', 'root ::= "a"']
    records = [json.loads(line) for line in next(tmp_path.glob("generations/*.jsonl")).read_text().splitlines()]
    assert sorted(r.get("grammar", "") for r in records) == ["", 'root ::= "a"', 'root ::= "b"']


# --------------------------------------------------------------------------- how servers get it
@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("grammar", {"grammar": "G"}),
        ("structured_outputs", {"structured_outputs": {"grammar": "G"}}),
        ("guided_grammar", {"guided_grammar": "G"}),
    ],
)
def test_server_backend_sends_the_grammar_in_the_field_the_server_reads(field, expected):
    with Scripted(lambda body, n: (200, ok("Liked: x\nDisliked: none"), 0)) as srv:
        be = ServerBackend(srv.url, "fake-model", api_key_env="", grammar_field=field)
        msgs = ({"role": "user", "content": "hi"},)
        be.generate(
            [
                GenerationRequest(msgs, GenerationSettings(max_new_tokens=8), "t", "1", grammar="G"),
                GenerationRequest(msgs, GenerationSettings(max_new_tokens=8), "t", "1"),
            ]
        )
    sent = sorted(srv.chat_calls, key=lambda body: len(body))
    assert not {"grammar", "structured_outputs", "guided_grammar"} & set(sent[0])  # free text: nothing sent
    assert {k: sent[1][k] for k in expected} == expected


def test_a_server_that_cannot_constrain_is_refused_before_generating(tmp_path):
    base = {"TEACHER_BACKEND": "server", "SERVER_MODEL": "m", "SERVER_GRAMMAR": "none", "CACHE_DIR": str(tmp_path)}
    with pytest.raises(ParamError, match="SERVER_GRAMMAR is 'none'"):
        teacher_backend(Config.full(base))
    assert isinstance(teacher_backend(Config.full({**base, "TEACHER_CONSTRAINED": False})), ServerBackend)
    with pytest.raises(ServerError, match="SERVER_GRAMMAR is 'none'"):
        ServerBackend("http://127.0.0.1:9/v1", "m", grammar_field="none")._one(
            GenerationRequest(({"role": "user", "content": "x"},), GenerationSettings(), "t", "1", grammar="G")
        )


def test_engines_send_grammars_as_their_server_reads_them(tmp_path):
    spec = eng.EngineSpec(
        eng.EngineConfig("vllm"), ["true"], {}, "/health", None, {}, grammar_field="structured_outputs"
    )
    assert eb.EngineBackend(spec).client.grammar_field == "structured_outputs"
    assert eng.EngineSpec(eng.EngineConfig("llama_server"), ["true"], {}, "/health").grammar_field == "grammar"


# --------------------------------------------------------------------------- parse rates
def test_parse_rate_records_parsed_and_usable_answers():
    rec = gr.parse_rate(
        "preference_extraction",
        ["Liked: a\nDisliked: none", "Liked: none\nDisliked: none", None, "Liked: b\nDisliked: c"],
        xp.preferences_parse,
        constrained=True,
        usable=[True, False, False, False],
    )
    assert rec == {
        "task": "preference_extraction",
        "constrained": True,
        "n": 4,
        "n_parsed": 2,
        "rate": 0.5,
        "n_usable": 1,
        "usable_rate": 0.25,
    }
    assert gr.parse_rate("t", [], bool, constrained=False)["rate"] is None
    assert gr.describe("x", rec) == "x: 2 of 4 parse (50.0%), constrained"
    assert gr.describe("y", gr.parse_rate("y", [], bool, constrained=False)) == "y: no answers, free text"
    assert gr.parse_rates({"a": {"parse": rec}, "b": None, "c": {"n": 1}}) == {"a": rec}


def test_manifest_copies_and_gathers_the_parse_rates(tmp_path):
    from rrlib.config.paths import RunPaths

    paths = RunPaths.of(tmp_path / "run")
    paths.results.mkdir(parents=True, exist_ok=True)
    rec = {"task": "preference_extraction", "constrained": True, "n": 10, "n_parsed": 10, "rate": 1.0}
    (paths.results / "04_review_preferences-20260101T000000Z.json").write_text(
        json.dumps({"results": {"parse_rates": {"preference_extraction": rec, "junk": 3}}})
    )
    (paths.results / "05_reasoning_generation-20260101T000000Z.json").write_text(json.dumps({"results": {}}))
    summary = mf.step_summary(paths.root, "04_review_preferences")
    assert summary["parse_rates"] == {"preference_extraction": rec}
    assert "parse_rates" not in mf.step_summary(paths.root, "05_reasoning_generation")
    manifest = mf.refresh(mf.new_manifest("r", {}, ["04_review_preferences"]), paths.root)
    assert manifest["parse_rates"] == {"04_review_preferences": {"preference_extraction": rec}}


def test_extraction_summary_records_its_parse_rate():
    from rrlib.enrich import preferences as pf
    from rrlib.prompts.items import ItemCatalog

    class Writes:
        def __init__(self, texts):
            self.texts, self.seen = texts, []

        def generate(self, requests, desc=""):
            from rrlib.llm.base import GenerationResult

            self.seen += list(requests)
            return [GenerationResult(text=self.texts.pop(0), finish_reason="stop") for _ in requests]

    reviews = pd.DataFrame(
        {
            "review_id": ["u:1:0", "u:2:0"],
            "source": "user",
            "user_id": ["1", "2"],
            "item_id": ["i1", "i2"],
            "position": [0, 0],
            "rating": [5.0, 2.0],
            "text": ["Great tone.", "Broke."],
        }
    )
    items = pd.DataFrame({"item_id": ["i1", "i2"], "title": ["Strings", "Cable"]})
    catalog = ItemCatalog.from_tables(items, None)
    cfg = Config.full({"MAX_OUTPUT_RETRIES": 0})
    gen = Writes(["Liked: great tone\nDisliked: none", "I am not sure."])
    out = pf.extract_preferences(reviews, catalog, domain="instruments", cfg=cfg, generator=gen)
    assert all(r.grammar == PREFS.gbnf for r in gen.seen)
    assert out.summary["parse"]["n_parsed"] == 1 and out.summary["parse"]["rate"] == 0.5
    free = pf.extraction_requests(
        reviews, catalog, domain="instruments", cfg=Config.full({"TEACHER_CONSTRAINED": False})
    )
    assert all(r.grammar == "" for r in free.values())


# --------------------------------------------------------------------------- real generations
def _extraction_requests() -> list[GenerationRequest]:
    reviews = [
        ("Ernie Ball strings", 5, "These strings sound bright and stay in tune for weeks. A bit pricey but worth it."),
        ("Guitar cable", 2, "The cable crackles after two days and the jack is loose. Shipping was quick though."),
        ("Clip-on tuner", 4, "Accurate tuner with an easy to read display; the clip is a little weak."),
    ]
    st = xp.settings("preference_extraction", 42, repetition_penalty=1.1, tokens_per_word=1.6)
    template = xp.TEMPLATES["preference_extraction"]
    return [
        PREFS.apply(template.request("instruments", st, tag=t, review=xp.Review(t, r, text))) for t, r, text in reviews
    ]


def _rating_request(rating: int) -> GenerationRequest:
    st = xp.settings("exp3rt_rating_reasoning", 42, words=20, repetition_penalty=1.1, tokens_per_word=1.6)
    req = xp.TEMPLATES["exp3rt_rating_reasoning"].request(
        "instruments",
        st,
        user_profile="Values: bright tone; durable strings\nAvoids: noisy cables",
        item_title="Fender medium picks",
        item_attributes="",
        item_profile="Strengths: good grip\nWeaknesses: wear quickly",
        description="Medium celluloid guitar picks.",
        rating=rating,
        n_words=20,
    )
    return xp.rating_reasoning_format(rating, 20).apply(req)


def _check_constrained(results, requests) -> None:
    for res in results[:3]:
        assert xp.preferences_parse(res.text), res.text
        assert res.finish_reason == "stop"
    for res, req in zip(results[3:], requests[3:]):
        rating = int(req.grammar.rsplit("Rating: ", 1)[1][0])
        assert xp.parse_rating(res.text) == rating and res.text.startswith("Analysis: "), res.text


@pytest.mark.slow
def test_real_constrained_generation_on_transformers():
    requests = _extraction_requests() + [_rating_request(2), _rating_request(5)]
    be = LocalBackend("embedded", cache_dir=MODEL_CACHE, batch_size=8)
    try:
        results = be.generate(requests)
    finally:
        be.close()
    _check_constrained(results, requests)
    assert not any("grammar_error" in r.extra for r in results)


@pytest.mark.slow
@pytest.mark.server
def test_real_constrained_generation_on_llama_server(tmp_path):
    reason = eng.not_installed_reason("llama_server")
    if reason:
        pytest.skip(reason)
    requests = _extraction_requests() + [_rating_request(1), _rating_request(4)]
    params = {"TEACHER_ENGINE": "llama_server", "TEACHER_ENGINE_PARALLEL": 4, "CACHE_DIR": str(MODEL_CACHE)}
    with teacher_backend(Config.full(params)) as be:
        results = be.generate(requests)
    _check_constrained(results, requests)
