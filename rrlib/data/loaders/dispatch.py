"""``load_dataset``: a dataset by name, from DATA_DIR, the download cache, a download, or the
copy shipped in the package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import ParamError
from .. import download as dl
from ..errors import DataError
from .amazon import load_amazon, load_amazon_instruments, load_embedded_beauty
from .base import RawDataset
from .generic import load_generic
from .movielens import has_ml_small, load_ml_latest_small, load_movielens, ml1m_ratings_file
from .release import load_release
from .values import check_date_order, check_encoding, rating_scale_param

DATASETS = (
    "embedded_beauty",
    "beauty",
    "fashion",
    "amazon2018",
    "amazon_instruments",
    "ml1m",
    "ml_latest_small",
    "release_beauty",
    "generic",
)

# The categories of Amazon Review Data (2018), as named in its file names.
AMAZON_2018_CATEGORIES = (
    "AMAZON_FASHION",
    "All_Beauty",
    "Appliances",
    "Arts_Crafts_and_Sewing",
    "Automotive",
    "Books",
    "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories",
    "Clothing_Shoes_and_Jewelry",
    "Digital_Music",
    "Electronics",
    "Gift_Cards",
    "Grocery_and_Gourmet_Food",
    "Home_and_Kitchen",
    "Industrial_and_Scientific",
    "Kindle_Store",
    "Luxury_Beauty",
    "Magazine_Subscriptions",
    "Movies_and_TV",
    "Musical_Instruments",
    "Office_Products",
    "Patio_Lawn_and_Garden",
    "Pet_Supplies",
    "Prime_Pantry",
    "Software",
    "Sports_and_Outdoors",
    "Tools_and_Home_Improvement",
    "Toys_and_Games",
    "Video_Games",
)
# prompt domain of the categories that have one (others need DOMAIN)
CATEGORY_DOMAINS = {
    "All_Beauty": "beauty",
    "Luxury_Beauty": "beauty",
    "AMAZON_FASHION": "fashion",
    "Clothing_Shoes_and_Jewelry": "fashion",
    "Musical_Instruments": "instruments",
    "Books": "books",
    "Movies_and_TV": "movies",
}


def _existing_dir(data_dir: str | Path) -> Path | None:
    if not data_dir:
        return None
    path = Path(data_dir)
    if not path.exists():
        raise DataError(
            f"DATA_DIR={str(data_dir)!r}: {path} does not exist. Point DATA_DIR at the folder "
            f"holding the dataset files, or set it to '' to use the download cache."
        )
    if not path.is_dir():
        raise DataError(f"DATA_DIR={str(data_dir)!r}: {path} is a file; DATA_DIR must be the folder that holds it.")
    return path


def amazon_files(folder: Path, category: str) -> tuple[Path | None, Path | None]:
    """The review file (full ``<Category>.json[.gz]`` first, else the 5-core ``<Category>_5...``)
    and the optional ``meta_<Category>.json[.gz]`` in ``folder``."""
    reviews = next(
        (
            folder / f"{s}{e}"
            for s in (category, f"{category}_5")
            for e in (".json.gz", ".json")
            if (folder / f"{s}{e}").is_file()
        ),
        None,
    )
    meta = next(
        (folder / f"meta_{category}{e}" for e in (".json.gz", ".json") if (folder / f"meta_{category}{e}").is_file()),
        None,
    )
    return reviews, meta


def detect_amazon_category(folder: Path | None) -> str:
    """The category of the single Amazon review file in ``folder`` (AMAZON_CATEGORY='')."""
    if folder is None:
        raise ParamError(
            "DATASET=amazon2018 needs AMAZON_CATEGORY (e.g. Musical_Instruments, "
            "Video_Games) or a DATA_DIR holding one <Category>[_5].json[.gz] file."
        )
    found = sorted(
        {
            p.name.split(".json")[0].removesuffix("_5")
            for p in folder.iterdir()
            if p.is_file() and p.name.endswith((".json", ".json.gz")) and not p.name.startswith("meta_")
        }
    )
    if len(found) != 1:
        raise DataError(
            f"DATASET=amazon2018 with AMAZON_CATEGORY='': {folder} holds "
            + (
                f"{len(found)} review categories ({found})"
                if found
                else "no <Category>.json[.gz] or <Category>_5.json[.gz] review file"
            )
            + ". Set AMAZON_CATEGORY to the category to read, e.g. Musical_Instruments."
        )
    return found[0]


def _load_amazon_2018(
    dataset: str, category: str, folder: Path | None, downloads: Path, allow_download: bool, scale
) -> RawDataset:
    cached = downloads / "amazon"
    label = f"Amazon Review Data (2018), {category}"
    for place in [p for p in (folder, cached) if p is not None]:
        reviews, meta = amazon_files(place, category)
        if reviews is not None:
            status = ""
            if place == cached:
                ledger = dl.ChecksumLedger(downloads)
                status = ledger.verify(reviews)["status"]
                if meta is not None:
                    ledger.verify(meta)
            raw = load_amazon(reviews, meta, dataset, label, checksum_status=status, rating_scale=scale)
            if reviews.name.startswith(f"{category}_5"):
                raw.notes.append(
                    f"{reviews.name} is the official 5-core file"
                    + (
                        f"; the paper used the full {category}.json.gz (user k-core only), so figures will differ"
                        if dataset in dl.AMAZON_CATEGORIES
                        else ""
                    )
                )
            raw.source["category"] = category
            return raw
    where = folder or cached
    if category not in AMAZON_2018_CATEGORIES:
        raise DataError(
            f"Amazon 2018 category {category!r} not found in {where}, and it is not one of the "
            f"published categories {list(AMAZON_2018_CATEGORIES)}, so it cannot be downloaded. "
            f"Check AMAZON_CATEGORY (spelling and case as in the file names)."
        )
    urls = dl.amazon_urls(category, meta=False)
    if allow_download and any(dl.is_online(u) for u in urls):
        reviews = dl.fetch_amazon(category, downloads, meta=False)
        notes = []
        try:
            meta = dl.fetch_amazon(category, downloads, meta=True)
        except DataError as e:
            meta = None
            notes.append(f"metadata download failed ({e}); titles fall back to review headlines")
        raw = load_amazon(
            reviews,
            meta,
            dataset,
            label,
            rating_scale=scale,
            checksum_status="sha256 recorded at download (no published checksum)",
        )
        raw.notes += notes
        raw.source["category"] = category
        return raw
    raise DataError(
        f"Amazon {category} not found: put {category}.json.gz or the 5-core {category}_5.json.gz (and optionally "
        f"meta_{category}.json.gz) from {urls[0]} (metadata: {dl.amazon_urls(category, meta=True)[0]}) into {where}"
        + (f" (or into {cached})" if folder else " (or set DATA_DIR to the folder that holds them)")
        + (
            ". Download is off (ALLOW_DOWNLOAD=false)."
            if not allow_download
            else ". Downloading failed: the UCSD hosts cannot be reached from this machine."
        )
    )


def _load_ml1m(folder: Path | None, downloads: Path, allow_download: bool, scale) -> RawDataset:
    cached = downloads / "ml-1m"
    for place in [p for p in (folder, cached) if p is not None]:
        if ml1m_ratings_file(place) is not None:
            raw = load_movielens(place, scale)
            if place == cached:
                ledger = dl.ChecksumLedger(downloads)
                for rec in raw.source["files"][1:]:
                    rec["checksum_status"] = ledger.verify(Path(rec["path"]))["status"]
            return raw
    where = folder or cached
    if allow_download and dl.is_online(dl.ML1M_URL):
        return load_movielens(dl.fetch_ml1m(downloads), scale)
    raise DataError(
        f"MovieLens-1M not found: put ratings.dat, movies.dat and users.dat (from {dl.ML1M_URL}, "
        f"unzipped) into {where}"
        + (f" (or into {cached})" if folder else " (or set DATA_DIR to the folder that holds them)")
        + (
            ". Download is off (ALLOW_DOWNLOAD=false)."
            if not allow_download
            else ". Downloading failed: files.grouplens.org cannot be reached from this machine."
        )
    )


def load_dataset(
    dataset: str,
    data_dir: str | Path = "",
    cache_dir: str | Path = "outputs/cache",
    allow_download: bool = True,
    *,
    encoding: str = "utf-8",
    date_order: str = "auto",
    rating_scale: Any = None,
    amazon_category: str = "",
) -> RawDataset:
    """Read ``dataset`` (one of :data:`DATASETS`) as described in :mod:`rrlib.data.loaders`.

    ``encoding`` (ENCODING) applies to CSV files read from DATA_DIR; ``date_order`` (DATE_ORDER)
    to slash dates; ``rating_scale`` (RATING_SCALE, [low, high]) replaces the dataset's own
    scale when given; ``amazon_category`` (AMAZON_CATEGORY) names the amazon2018 category."""
    if dataset not in DATASETS:
        raise DataError(
            f"DATASET={dataset!r} is unknown; choose one of {list(DATASETS)} "
            f"(generic = your own interactions.csv/items.csv in DATA_DIR)."
        )
    encoding, date_order = check_encoding(encoding), check_date_order(date_order)
    scale = rating_scale_param(rating_scale, None)  # None: each loader applies its own scale
    if amazon_category and dataset != "amazon2018":
        raise ParamError(
            f"AMAZON_CATEGORY={amazon_category!r} applies to DATASET=amazon2018 only (DATASET is "
            f"{dataset!r}); set it to ''."
        )
    folder = _existing_dir(data_dir)
    downloads = Path(cache_dir) / "downloads"
    if dataset == "embedded_beauty":
        raw = load_embedded_beauty(scale)
        if folder is not None:
            raw.notes.append(f"DATA_DIR={folder} ignored: embedded_beauty always reads the shipped copy")
        return raw
    if dataset == "release_beauty":
        return load_release(folder, encoding, scale)
    if dataset == "generic":
        if folder is None:
            raise DataError(
                "DATASET=generic needs DATA_DIR: the folder holding interactions.csv (or "
                ".parquet) and optionally items.csv."
            )
        return load_generic(folder, encoding, date_order, scale)
    if dataset == "ml_latest_small":
        if folder is not None and not has_ml_small(folder):
            raise DataError(
                f"DATA_DIR={folder} holds no ratings.csv (or ratings.csv.gz) of ml-latest-small. Put "
                f"the unzipped ml-latest-small files there, or set DATA_DIR to '' to use the copy "
                f"shipped with the package."
            )
        return load_ml_latest_small(folder, encoding, date_order, scale)
    if dataset == "amazon_instruments":
        return load_amazon_instruments(folder, encoding, scale)
    if dataset == "ml1m":
        return _load_ml1m(folder, downloads, allow_download, scale)
    category = dl.AMAZON_CATEGORIES.get(dataset) or amazon_category or detect_amazon_category(folder)
    return _load_amazon_2018(dataset, category, folder, downloads, allow_download, scale)
