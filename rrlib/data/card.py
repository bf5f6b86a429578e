"""The data card (JSON + Markdown) and the two data plots of notebook 01."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rrlib.config.provenance import utc_now

from .audit import ROWS as AUDIT_ROWS
from .audit import SPLITS, degenerate_flags, leakage_audit, problems
from .inputs import input_cleaning_markdown
from .processing import Built

FIGURE2_PNG = "figure2_users_vs_k.png"
RATINGS_PNG = "rating_distribution.png"
DATA_PARAMS = (
    "DATASET",
    "DATA_DIR",
    "SEED",
    "KCORE",
    "LIKE_THRESHOLD",
    "HISTORY_LEN",
    "PROFILE_ITEMS",
    "COLLAPSE_COPIES",
    "DEDUP",
    "RELEASE_WINDOWS",
    "TIE_ORDER",
    "REVIEWS_PER_ITEM",
    "REVIEW_WORDS",
    "KSHOT_SIZES",
    "KSHOT_SAMPLING",
    "N_VALID",
    "N_TEST",
    "MAX_USERS",
    "LEAKAGE_THRESHOLD",
    "ALLOW_DOWNLOAD",
    "DOMAIN",
    "AMAZON_CATEGORY",
    "ENCODING",
    "DATE_ORDER",
    "RATING_SCALE",
)


def _rate(x) -> float | None:
    x = pd.Series(x, dtype=float)
    return round(float(x.mean()), 4) if len(x) else None


def build_card(built: Built, source: dict[str, Any], params: dict[str, Any], domain: str) -> dict[str, Any]:
    inter, items, users, ex = built.interactions, built.items, built.users, built.examples
    figure2 = built.figure2 if built.figure2 is not None else pd.DataFrame({"k": [], "users": []})
    n_users, n_items, n_inter = inter["user_id"].nunique(), inter["item_id"].nunique(), len(inter)
    per_user = inter.groupby("user_id").size()
    splits = {}
    for split in ("train", "valid", "test"):
        part = ex[ex["split"] == split]
        n_sub = {"valid": params["N_VALID"], "test": params["N_TEST"]}.get(split, 0)
        sub = part[part["sample_rank"] < n_sub] if n_sub else part
        hist = part["history_item_ids"].map(len)
        splits[split] = {
            "examples": int(len(part)),
            "like_rate": _rate(part["label"]),
            "mean_history_len": round(float(hist.mean()), 2) if len(part) else None,
            "subsample": int(len(sub)) if split != "train" else None,
            "subsample_like_rate": _rate(sub["label"]) if split != "train" else None,
        }
    train = ex[ex["split"] == "train"]
    kshot = {}
    for k in params["KSHOT_SIZES"]:
        labels = train.loc[train["sample_rank"] < k, "label"] if k <= len(train) else pd.Series(dtype=int)
        kshot[str(k)] = {
            "available": k <= len(train),
            "sampling": params["KSHOT_SAMPLING"],
            "like_rate": _rate(labels) if k <= len(train) else None,
            "liked": int(labels.sum()) if k <= len(train) else None,
            "disliked": int((1 - labels).sum()) if k <= len(train) else None,
        }
    audit = leakage_audit(inter, ex, users, params)
    audit["problems"] = problems(audit)
    audit["passed"] = not audit["problems"]
    n_prof = users["profile_item_ids"].map(len)
    n_rev = items["sampled_reviews"].map(len)
    ratings = inter["rating"].value_counts().sort_index()
    card = {
        "title": f"Data card: {source.get('dataset')}",
        "written_at": utc_now(),
        "dataset": params["DATASET"],
        "domain": domain,
        "source": source,
        "parameters": {k: params[k] for k in DATA_PARAMS if k in params},
        "raw": built.stats["raw"],
        "copies": built.stats["copies"],
        "duplicates": built.stats["dedup"],
        "ties": built.stats["ties"],
        "kcore": built.stats["kcore"],
        "max_users": built.stats.get("max_users"),
        "final": {
            "users": int(n_users),
            "items": int(n_items),
            "interactions": int(n_inter),
            "sparsity": round(1 - n_inter / (n_users * n_items), 6),
            "interactions_per_user_mean": round(float(per_user.mean()), 2),
            "interactions_per_user_median": float(per_user.median()),
            "interactions_per_user_max": int(per_user.max()),
            "like_rate": _rate(inter["liked"]),
        },
        "splits": splits,
        "kshot_sampling": params["KSHOT_SAMPLING"],
        "kshot": kshot,
        "audit": audit,
        "profiles": {
            "users_with_profile_items": int((n_prof > 0).sum()),
            "mean_profile_items": round(float(n_prof.mean()), 2),
            "users_without_profile_items": int((n_prof == 0).sum()),
        },
        "items": {
            "title_source": {k: int(v) for k, v in items["title_source"].value_counts().items()},
            "with_metadata_description": int((items["metadata_description"] != "").sum()),
            "with_sampled_reviews": int((n_rev > 0).sum()),
            "mean_sampled_reviews": round(float(n_rev.mean()), 2) if len(items) else 0.0,
        },
        "reviews": built.stats["reviews"],
        "rating_distribution": {f"{r:g}": int(c) for r, c in ratings.items()},
        "figure2_users_with_at_least_k": {int(k): int(u) for k, u in zip(figure2["k"], figure2["users"])},
        "flags": kshot_flags(kshot, len(train), params.get("TRAIN_KSHOTS"))
        + degenerate_flags(inter, audit, built.stats["copies"]),
        "notes": built.stats["notes"],
        "input_cleaning": built.stats.get("input_cleaning", {}),
    }
    if "release_cleaning" in built.stats:
        card["release_cleaning"] = built.stats["release_cleaning"]
    if "windows" in built.stats:
        card["release_windows"] = built.stats["windows"]
    if "examples_built" in built.stats:
        card["examples_dropped_empty_history"] = built.stats["examples_built"]["dropped_empty_history"]
    return card


def kshot_flags(kshot: dict[str, dict[str, Any]], n_train: int, train_kshots: list[int] | None = None) -> list[str]:
    """One flag naming every K-shot size the train split cannot hold (notebooks 02-06 stop on it)."""
    too_big = [int(k) for k, v in kshot.items() if not v["available"]]
    if not too_big:
        return []
    sizes = ", ".join(str(k) for k in too_big)
    trained = sorted(set(too_big) & set(train_kshots or []))
    return [
        f"KSHOT_SIZES {sizes}: larger than the {n_train} training examples (one per user); notebooks 02-06 "
        f"stop on {'it' if len(too_big) == 1 else 'them'}"
        + (f" (TRAIN_KSHOTS trains {', '.join(map(str, trained))})" if trained else "")
        + f". Set KSHOT_SIZES and TRAIN_KSHOTS to at most {n_train}, or keep more users (MAX_USERS, KCORE)."
    ]


def splits_table(card: dict[str, Any]) -> pd.DataFrame:
    """The data card's splits as a table whose counts stay integers (blank where not applicable)."""
    table = pd.DataFrame(card["splits"]).T
    for col in ("examples", "subsample"):
        if col in table:
            table[col] = pd.array(table[col].tolist(), dtype="Int64")
    for col in ("like_rate", "mean_history_len", "subsample_like_rate"):
        if col in table:
            table[col] = pd.to_numeric(table[col], errors="coerce")
    return table.rename_axis("split")


def kshot_table(card: dict[str, Any]):
    """The K-shot sizes as a styled table: a size the train split cannot hold is marked red."""
    rows = {int(k): v for k, v in card["kshot"].items()}
    table = pd.DataFrame(rows).T.rename_axis("K")
    for col in ("liked", "disliked"):
        table[col] = pd.array(table[col].tolist(), dtype="Int64")
    table["like_rate"] = pd.to_numeric(table["like_rate"], errors="coerce")
    table["available"] = table["available"].map({True: "yes", False: "NO: too large"})

    def mark(row: pd.Series) -> list[str]:
        bad = row["available"] != "yes"
        return ["background-color: #fde2e1; color: #8a1c14; font-weight: bold" if bad else ""] * len(row)

    return table.style.apply(mark, axis=1).format({"like_rate": "{:.3f}"}, na_rep="")


def flags_html(flags: list[str]) -> str:
    """The data card's flags as one visible warning box (HTML); a quiet line when there are none."""
    import html as _html

    if not flags:
        return "<p>No flags.</p>"
    items = "".join(f"<li>{_html.escape(f)}</li>" for f in flags)
    return (
        '<div style="border-left: 6px solid #d9822b; background: #fff4e5; padding: 6px 12px; margin: 4px 0">'
        f'<b>&#9888; {len(flags)} flag{"s" if len(flags) > 1 else ""}</b><ul style="margin: 4px 0">{items}</ul></div>'
    )


def _md_table(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _fmt(v: Any) -> Any:
    return f"{v:.4g}" if isinstance(v, float) else v


def audit_markdown(audit: dict[str, Any]) -> list[str]:
    """The leakage audit section of the data card."""
    a = audit
    rows = [[label] + [_fmt(a["splits"][s][k]) for s in SPLITS] for k, label in AUDIT_ROWS]
    sets = [
        [name, v["examples"], v["liked"], v["disliked"], f"{v['parameter']}={v['requested']}"]
        for name, v in a["eval_sets"].items()
    ]
    u = a["users"]
    out = [
        "## Leakage audit",
        "",
        f"Policies: {', '.join(f'{k}={v}' for k, v in a['policies'].items() if v is not None)}; "
        f"LEAKAGE_THRESHOLD={a['threshold']:g}. **{'passed' if a['passed'] else 'REFUSED'}**.",
        "",
        _md_table(rows, ["figure"] + list(SPLITS)),
        "",
        f"Users who give one rating to everything: {u['constant_raters']} of {u['users']} "
        f"({_fmt(u['constant_rater_share'])}). User like-rate prior (training like-rate): "
        f"{a['user_like_rate_prior']}.",
        "",
        _md_table(sets, ["set used to train/evaluate", "examples", "liked", "disliked", "sized by"]),
        "",
    ]
    out += [f"- **{p['kind']}** ({p['split']}): {p['message']}" for p in a.get("problems", [])]
    return out + ([""] if a.get("problems") else [])


def card_markdown(card: dict[str, Any]) -> str:
    """The data card as Markdown (``data_card.md``): one section per part of the JSON card, in
    the order a reader checks them: source, size, cleaning, splits, texts, labels, audit."""
    src = card["source"]
    out = [
        f"# {card['title']}",
        "",
        f"{src.get('description', '')}. Domain: **{card['domain']}**. Written {card['written_at']}.",
        "",
    ]
    if card.get("flags"):
        out += ["## Flags", ""] + [f"- ⚠ {x}" for x in card["flags"]] + [""]
    out += _source_markdown(card)
    out += _size_markdown(card)
    out += _cleaning_markdown(card)
    out += _splits_markdown(card)
    out += _texts_markdown(card)
    out += [
        "## Rating distribution",
        "",
        _md_table([[r, c] for r, c in card["rating_distribution"].items()], ["rating", "count"]),
        "",
    ]
    out += audit_markdown(card["audit"])
    if card.get("release_cleaning"):
        out += _json_section("Deviations from the authors' windows", card["release_cleaning"])
    if card.get("release_windows"):
        out += _json_section("Released windows", card["release_windows"])
    if card["notes"]:
        out += ["## Notes", ""] + [f"- {n}" for n in card["notes"]] + [""]
    out += input_cleaning_markdown(card.get("input_cleaning"))
    out += _json_section("Parameters", card["parameters"])
    return "\n".join(out)


def _json_section(title: str, value: Any) -> list[str]:
    """A card section shown as the JSON it was recorded as (windows, parameters)."""
    return [f"## {title}", "", "```", json.dumps(value, indent=1), "```", ""]


def _source_markdown(card: dict[str, Any]) -> list[str]:
    """The files read (with their checksums), the license and the citation."""
    src = card["source"]
    files = [
        [x["role"], Path(x["path"]).name, f"{x['bytes']:,}", x["sha256"][:16] + "…", x.get("checksum_status", "")]
        for x in src["files"]
    ]
    return [
        "## Source",
        "",
        _md_table(files, ["file", "name", "bytes", "sha256", "checksum"]),
        "",
        f"License: {src.get('license', '')}. Cite: {src.get('citation', '')}",
        "",
    ]


def _size_markdown(card: dict[str, Any]) -> list[str]:
    """Users, items and interactions at each stage: raw, after cleaning and the k-core, final."""
    f, raw, kcore = card["final"], card["raw"], card["kcore"]
    stages = [
        ["raw", raw["users"], raw["items"], raw["interactions"], ""],
        [
            f"after copy collapse, dedup, user k-core (k={kcore['k']})",
            kcore["users"],
            kcore["items"],
            kcore["interactions"],
            "",
        ],
        ["final (tables)", f["users"], f["items"], f["interactions"], f["sparsity"]],
    ]
    return [
        "## Size",
        "",
        _md_table(stages, ["stage", "users", "items", "interactions", "sparsity"]),
        "",
        f"Interactions per user: mean {f['interactions_per_user_mean']}, median "
        f"{f['interactions_per_user_median']}, max {f['interactions_per_user_max']}. "
        f"Overall like rate {f['like_rate']}.",
        "",
    ]


def _cleaning_markdown(card: dict[str, Any]) -> list[str]:
    """What the cleaning found and removed: copied reviews, duplicate rows, timestamp ties."""
    c, d, t = card["copies"], card["duplicates"], card["ties"]
    return [
        "## Copies, duplicates and ties",
        "",
        f"- Copied reviews (same user, text and rating on different item ids): {c['copy_sets']} copy "
        f"sets of {c['rows_in_copy_sets']} rows by {c['users_affected']} users over "
        f"{c['items_in_copy_sets']} items ({c['listing_sets']} distinct listing sets, the largest "
        f"{c['largest_listing_set']} listings; {c['copy_sets_spanning_days']} sets span several days). "
        f"Policy `{c['policy']}` removed {c['rows_removed']} rows (collapsing removes "
        f"{c['rows_that_would_be_removed']}); {c['items_left_without_rows']} items were left with no rows.",
        f"- Duplicate user-item rows: {d['duplicate_rows_extra']} extra rows over {d['duplicate_pairs']} "
        f"pairs ({d['exact_duplicate_rows']} exact copies, {d['pairs_with_conflicting_ratings']} pairs "
        f"with conflicting ratings). Policy `{d['policy']}` removed {d['rows_removed']} rows.",
        f"- Same-timestamp ties: {t['interactions_sharing_a_timestamp']} interactions of "
        f"{t['users_with_ties']} users; order `{t['policy']}`. Targets tied with a neighbour "
        f"(the tie order chose them): {t.get('targets_tied_with_a_neighbour', 'n/a')}; examples with a "
        f"history item at the target's timestamp: "
        f"{t.get('examples_with_history_item_at_target_timestamp', 'n/a')}.",
        "",
    ]


def _splits_markdown(card: dict[str, Any]) -> list[str]:
    """The evaluation splits and the K-shot training sets."""
    splits = [
        [s, v["examples"], v["like_rate"], v["mean_history_len"], v["subsample"], v["subsample_like_rate"]]
        for s, v in card["splits"].items()
    ]
    kshots = [[k, v["available"], v["liked"], v["disliked"], v["like_rate"]] for k, v in card["kshot"].items()]
    return [
        "## Splits",
        "",
        _md_table(splits, ["split", "examples", "like rate", "mean history", "subsample", "subsample like rate"]),
        "",
        f"K-shot sampling: `{card['kshot_sampling']}` (nested: each K is a prefix of one seeded order).",
        "",
        _md_table(kshots, ["K-shot", "available", "liked", "disliked", "like rate"]),
        "",
    ]


def _texts_markdown(card: dict[str, Any]) -> list[str]:
    """The texts the prompts are built from: item titles and descriptions, sampled reviews (and
    those kept out of the pool so no target's review leaks), user profiles."""
    items, reviews, profiles = card["items"], card["reviews"], card["profiles"]
    return [
        "## Items, reviews and profiles",
        "",
        f"- Title sources: {items['title_source']}; metadata descriptions: {items['with_metadata_description']}.",
        f"- Algorithm 1: {items['with_sampled_reviews']} items have sampled reviews (mean "
        f"{items['mean_sampled_reviews']}); reviews excluded from the pool: "
        f"{reviews['eval_target_reviews_excluded']} written at validation/test targets, "
        f"{reviews.get('train_target_reviews_excluded', 0)} at training targets, "
        f"{reviews.get('copies_of_target_reviews_excluded', 0)} same-user copies of a target's review.",
        f"- Profiles: {profiles['users_with_profile_items']} users have profile items (mean "
        f"{profiles['mean_profile_items']}); {profiles['users_without_profile_items']} "
        f"have none (their whole sequence is inside the test window).",
        "",
    ]


def plot_figure2(figure2: pd.DataFrame, kcore: int | None, path: Path, title: str) -> Path:
    """Paper Figure 2: users with at least k interactions (before the k-core) against k."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=110)
    ax = fig.add_subplot()
    ax.plot(figure2["k"], figure2["users"], marker="o", markersize=3)
    if kcore:
        ax.axvline(kcore, color="tab:red", linestyle="--", label=f"k-core = {kcore}")
        ax.legend()
    ax.set_yscale("log")
    ax.set_xlabel("k (interactions per user)")
    ax.set_ylabel("users with at least k interactions")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_ratings(distribution: dict[str, int], threshold: float, path: Path, title: str) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=110)
    ax = fig.add_subplot()
    r = np.array([float(k) for k in distribution])
    c = np.array(list(distribution.values()))
    ax.bar([f"{x:g}" for x in r], c, color=["tab:green" if x > threshold else "tab:gray" for x in r])
    ax.set_xlabel(f"rating (green: liked, rating > {threshold:g})")
    ax.set_ylabel("interactions")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
