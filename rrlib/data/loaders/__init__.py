"""Readers for every supported dataset, each returning one :class:`RawDataset`.

One module per source: :mod:`.movielens`, :mod:`.amazon`, :mod:`.release`, :mod:`.generic`;
:mod:`.values` checks what they share (encodings, CSV lines, timestamps, ratings) and
:mod:`.dispatch` picks the reader by name. Datasets (parameter ``DATASET``):

``embedded_beauty``
    Amazon Review Data (2018) All_Beauty official 5-core file, shipped inside the package
    (``rrlib/resources/embedded_beauty``, see its PROVENANCE.md). Runs offline; no metadata file,
    so titles fall back to review headlines (below).
``ml_latest_small``
    MovieLens ml-latest-small (2018-09 release: 610 users, 100,836 half-star ratings 0.5-5,
    9,742 movies, 3,683 user tags), shipped in ``rrlib/resources/ml_latest_small`` with its
    README (GroupLens terms allow redistribution under the same terms) and checked against the
    release's git blob ids on load; or the unzipped files from ``DATA_DIR``. Titles as ML-1M;
    user tags become item attributes only after the split, never from a user's own target
    (:mod:`rrlib.data.tags`). Movie ids are ML-1M's, so the release's 25-word ML-1M summaries
    (``DESCRIPTIONS_IMPORT: release:ml1m_summaries``) cover part of it.
``amazon_instruments``
    Amazon product data (2014), Musical Instruments 5-core (10,261 reviews, 1,429 users, 900
    items), shipped in ``rrlib/resources/amazon_instruments_2014`` (CSV, sha256-checked); or from
    ``DATA_DIR`` as that CSV or the original ``reviews_Musical_Instruments_5.json[.gz]``. No
    metadata: titles fall back to review headlines. Prompt domain ``instruments``.
``beauty`` / ``fashion``
    The paper's datasets: the FULL Amazon 2018 category files ``All_Beauty.json[.gz]`` /
    ``AMAZON_FASHION.json[.gz]`` plus the optional ``meta_<Category>.json[.gz]``, read from
    ``DATA_DIR``; the user k-core is applied later. The 5-core files ``<Category>_5.json[.gz]``
    are accepted when the full file is absent (noted in the data card).
``amazon2018``
    Any Amazon 2018 category: ``<Category>.json[.gz]`` or ``<Category>_5.json[.gz]`` (+ optional
    ``meta_<Category>.json[.gz]``), the category named by ``AMAZON_CATEGORY`` (e.g.
    ``Musical_Instruments``) or, when that is '', taken from the single review file in ``DATA_DIR``.
``ml1m``
    MovieLens-1M ``ratings.dat`` (plain or ``.gz``; a file named ``ratings*.dat[.gz]`` is also
    accepted), ``movies.dat`` and optional ``users.dat`` from ``DATA_DIR`` (``::``-separated;
    UTF-8 when the bytes decode as UTF-8, else latin-1 as GroupLens ships them). Titles
    ``"Name, The (1995)"`` become title ``"The Name"`` with ``year: 1995; genres: ...``
    attributes. Never committed to this project (GroupLens terms).
``release_beauty``
    The Beauty split released with the ReasoningRec code (MIT): ``ratings.csv``
    (item,user,rating,timestamp), ``processed_item_information.json`` (title, brand, price)
    and ``user_{train,valid,test}.json`` (per user, an item-id window whose LAST id is the
    target and whose other ids are the history). The shipped copy is used unless ``DATA_DIR``
    holds these files (directly or in ``beauty/``).
``generic``
    Bring your own data: ``DATA_DIR`` holds

    * ``interactions.csv`` or ``interactions.parquet`` with columns ``user``, ``item``,
      ``rating`` (number on RATING_SCALE, default [1, 5]), ``timestamp`` (see
      :mod:`.values` for the accepted formats) and optionally ``review`` (free text) and
      ``summary`` (review headline);
    * optionally ``items.csv`` or ``items.parquet`` with column ``item``, optional ``title``
      and ``description``, and any further columns (brand, price, genre, ...), which become
      free-text attributes ``"column: value; ..."``. Interaction items missing from it are
      counted in the data card's notes.

    Set ``DOMAIN`` (movies, beauty, fashion or instruments) to choose the prompt wording.

Checks on every reader: ratings must be finite numbers on the dataset's scale (MovieLens-1M
and Amazon 1-5 stars, ml-latest-small 0.5-5 in half stars; generic: RATING_SCALE); timestamps
are detected per column and refused when ambiguous or mixed; CSV files are read with ENCODING
(utf-8 by default, or auto) and every error names the physical line of the file.

Paper datasets are looked up in ``DATA_DIR``, then in ``CACHE_DIR/downloads``; when absent
and ``ALLOW_DOWNLOAD`` is true and the official host answers, they are downloaded there
and checksummed (see :mod:`rrlib.data.download`); otherwise a :class:`DataError` says which
files to put where.

Titles of items without metadata: the item's most frequent review headline (``summary``),
ignoring star boilerplate such as "Five Stars", followed by the item id in brackets
(``title_source = review_summary``); with no usable headline, ``"item <id>"``
(``title_source = id``). Headlines written at validation/test targets are never used, so
a held-out rating cannot leak through a title; the fallback is therefore filled in by
:mod:`rrlib.data.processing` once the split is known, not here.
"""

from .amazon import (
    AMAZON_REQUIRED,
    AMAZON_SCALE,
    EMBEDDED_BEAUTY,
    EMBEDDED_BEAUTY_SHA256,
    INSTRUMENTS_DIR,
    load_amazon,
    load_amazon_instruments,
    load_embedded_beauty,
    read_amazon_2014_csv,
    read_amazon_meta,
    read_amazon_reviews,
)
from .base import (
    AMAZON_2014_CITATION,
    AMAZON_CITATION,
    ML1M_CITATION,
    RAW_INTERACTION_COLUMNS,
    RAW_ITEM_COLUMNS,
    RAW_TAG_COLUMNS,
    RELEASE_CITATION,
    RESOURCES,
    RawDataset,
    clean_text,
)
from .dispatch import (
    AMAZON_2018_CATEGORIES,
    CATEGORY_DOMAINS,
    DATASETS,
    amazon_files,
    detect_amazon_category,
    load_dataset,
)
from .generic import GENERIC_REQUIRED, load_generic
from .movielens import (
    ML_SMALL_BLOBS,
    ML_SMALL_DIR,
    load_ml_latest_small,
    load_movielens,
    movielens_title,
    read_ml1m_movies,
    read_ml1m_ratings,
    read_ml1m_users,
)
from .release import RELEASE_ROOT, RELEASE_SPLIT_FILES, load_release, release_files
from .values import (
    ACCEPTED_TIMESTAMPS,
    DATE_ORDERS,
    GENERIC_SCALE,
    RatingScale,
    Rows,
    check_ratings,
    decode,
    parse_timestamps,
    read_csv_text,
)

__all__ = [
    "ACCEPTED_TIMESTAMPS",
    "AMAZON_2014_CITATION",
    "AMAZON_2018_CATEGORIES",
    "AMAZON_CITATION",
    "AMAZON_REQUIRED",
    "AMAZON_SCALE",
    "CATEGORY_DOMAINS",
    "DATASETS",
    "DATE_ORDERS",
    "EMBEDDED_BEAUTY",
    "EMBEDDED_BEAUTY_SHA256",
    "GENERIC_REQUIRED",
    "GENERIC_SCALE",
    "INSTRUMENTS_DIR",
    "ML1M_CITATION",
    "ML_SMALL_BLOBS",
    "ML_SMALL_DIR",
    "RAW_INTERACTION_COLUMNS",
    "RAW_ITEM_COLUMNS",
    "RAW_TAG_COLUMNS",
    "RELEASE_CITATION",
    "RELEASE_ROOT",
    "RELEASE_SPLIT_FILES",
    "RESOURCES",
    "RatingScale",
    "RawDataset",
    "Rows",
    "amazon_files",
    "check_ratings",
    "clean_text",
    "decode",
    "detect_amazon_category",
    "load_amazon",
    "load_amazon_instruments",
    "load_dataset",
    "load_embedded_beauty",
    "load_generic",
    "load_ml_latest_small",
    "load_movielens",
    "load_release",
    "movielens_title",
    "parse_timestamps",
    "read_amazon_2014_csv",
    "read_amazon_meta",
    "read_amazon_reviews",
    "read_csv_text",
    "read_ml1m_movies",
    "read_ml1m_ratings",
    "read_ml1m_users",
    "release_files",
]
