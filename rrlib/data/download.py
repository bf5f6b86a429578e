"""Fetching the paper datasets from their official sources, with checksums.

Downloads land in ``CACHE_DIR/downloads/`` and are only attempted when ``ALLOW_DOWNLOAD``
is true and the source host answers. Integrity:

* MovieLens-1M ``ratings.dat`` is checked against the published git blob id
  (``sha1(b"blob <size>\\0" + content)``, what ``git hash-object`` prints).
* Files without a published checksum (the UCSD Amazon 2018 category and metadata files,
  ``movies.dat``, ``users.dat``) are trust-on-first-use: their sha256 is recorded in
  ``CACHE_DIR/downloads/checksums.json`` on first download and verified on every later use,
  so a truncated or silently replaced file is caught.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import socket
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from rrlib.io import sha256_file

from .errors import DataError

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML1M_RATINGS_GIT_BLOB = "77a7c4b150f588c23bb9e1f068aa996c0b413695"
ML1M_FILES = ("ratings.dat", "movies.dat", "users.dat")

# Official hosts of Amazon Review Data (2018), tried in order (the group has moved it twice).
AMAZON_2018_MIRRORS = (
    "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2",
    "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2",
    "https://jmcauley.ucsd.edu/data/amazon_v2",
)
AMAZON_CATEGORIES = {"beauty": "All_Beauty", "fashion": "AMAZON_FASHION"}  # the paper's; amazon2018: any

LEDGER_NAME = "checksums.json"
_CHUNK = 1 << 20


def git_blob_sha1(path: Path) -> str:
    """The id ``git hash-object`` gives a file: sha1 of ``b"blob <size>\\0" + content``."""
    path = Path(path)
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def is_online(url: str, timeout: float = 3.0) -> bool:
    """True when the host of ``url`` accepts a TCP connection (no data is sent)."""
    host = urlparse(url).hostname
    port = 443 if url.startswith("https") else 80
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ChecksumLedger:
    """sha256 of downloaded files without a published checksum (trust on first use)."""

    def __init__(self, downloads: Path):
        self.path = Path(downloads) / LEDGER_NAME
        self.entries = json.loads(self.path.read_text()) if self.path.exists() else {}

    def _key(self, file: Path) -> str:
        return str(Path(file).resolve().relative_to(self.path.parent.resolve()))

    def record(self, file: Path, url: str) -> str:
        digest = sha256_file(file)
        self.entries[self._key(file)] = {
            "sha256": digest,
            "url": url,
            "recorded_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=2, sort_keys=True))
        tmp.replace(self.path)
        return digest

    def verify(self, file: Path) -> dict:
        """Checksum status of a cached file: verified against the ledger, or unrecorded."""
        digest = sha256_file(file)
        try:
            entry = self.entries.get(self._key(file))
        except ValueError:  # not under the downloads folder
            entry = None
        if entry is None:
            return {"sha256": digest, "status": "recorded now (no published checksum)"}
        if entry["sha256"] != digest:
            raise DataError(
                f"{file}: sha256 {digest} differs from the {entry['sha256']} recorded when it was "
                f"downloaded on {entry['recorded_at']} from {entry['url']}. The file was changed or "
                f"truncated: delete it and run again to download it afresh."
            )
        return {"sha256": digest, "status": f"verified against sha256 recorded at download ({entry['recorded_at']})"}


def download_file(urls: list[str] | tuple[str, ...], dest: Path, desc: str = "") -> str:
    """Stream the first URL that works into ``dest`` (via a .part file). Returns the URL used."""
    import requests
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        part = dest.with_name(dest.name + ".part")
        try:
            with requests.get(url, stream=True, timeout=60) as r:
                r.raise_for_status()
                total = int(r.headers.get("content-length") or 0) or None
                with open(part, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=desc or dest.name) as bar:
                    for chunk in r.iter_content(_CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
            part.replace(dest)
            return url
        except Exception as e:  # try the next mirror; report all failures together
            errors.append(f"{url}: {e}")
            part.unlink(missing_ok=True)
    raise DataError(f"could not download {dest.name}: " + "; ".join(errors))


def fetch_ml1m(downloads: Path) -> Path:
    """Download and unpack ml-1m.zip into ``downloads/ml-1m``; verify ratings.dat."""
    folder = Path(downloads) / "ml-1m"
    archive = Path(downloads) / "ml-1m.zip"
    if not archive.exists():
        download_file([ML1M_URL], archive, "ml-1m.zip")
    with zipfile.ZipFile(archive) as z:
        for name in ML1M_FILES + ("README",):
            target = folder / name
            if not target.exists():
                folder.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(f"ml-1m/{name}"))
    blob = git_blob_sha1(folder / "ratings.dat")
    if blob != ML1M_RATINGS_GIT_BLOB:
        raise DataError(
            f"{folder / 'ratings.dat'}: git blob id {blob} is not the published "
            f"{ML1M_RATINGS_GIT_BLOB}; the download is corrupt. Delete {archive} and "
            f"{folder} and run again."
        )
    ledger = ChecksumLedger(downloads)
    for name in ("movies.dat", "users.dat"):
        if ledger.entries.get(ledger._key(folder / name)) is None:
            ledger.record(folder / name, ML1M_URL)
    return folder


def amazon_urls(category: str, meta: bool) -> list[str]:
    sub, name = ("metaFiles2", f"meta_{category}.json.gz") if meta else ("categoryFiles", f"{category}.json.gz")
    return [f"{m}/{sub}/{name}" for m in AMAZON_2018_MIRRORS]


def fetch_amazon(category: str, downloads: Path, meta: bool) -> Path:
    """Download one Amazon 2018 category (or its metadata) file into ``downloads/amazon``
    and record its sha256 (no checksum is published for these files)."""
    name = f"meta_{category}.json.gz" if meta else f"{category}.json.gz"
    dest = Path(downloads) / "amazon" / name
    if not dest.exists():
        url = download_file(amazon_urls(category, meta), dest, name)
        ChecksumLedger(downloads).record(dest, url)
    return dest
