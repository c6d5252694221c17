"""The book's corpora by name: where each one lives online, its sha256, and where we look for it.

`resolve_corpus("the-verdict")` returns a local path to a verified file, looking in this order:

1. `$GPT_SCRATCH_DATA_DIR/<file>` when that variable is set and the file is there (tests and CI point it at
   `../shared/data`; offline users put the files there),
2. the cache, `$GPT_SCRATCH_CACHE/corpora/<file>` (default `~/.cache/gpt_scratch/corpora/<file>`),
3. a download from the public address into the cache, once, checked against the sha256 before it lands.

Anything that is not a known name is taken as a path to an existing file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "GPT_SCRATCH_DATA_DIR"
CACHE_ENV = "GPT_SCRATCH_CACHE"
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")  # set: never touch the network
DOWNLOAD_TIMEOUT = 60.0  # seconds, per network operation


@dataclass(frozen=True)
class Corpus:
    """A file the package knows by name: its public address and checksum."""

    name: str
    filename: str  # the file's name on disk, in GPT_SCRATCH_DATA_DIR and in the cache
    url: str
    sha256: str  # of the file itself (for a zip download: of the file extracted from it)
    description: str = ""
    archive_member: str | None = None  # set when `url` is a zip: the member to extract


CORPORA: dict[str, Corpus] = {
    corpus.name: corpus
    for corpus in [
        Corpus(
            name="the-verdict",
            filename="the-verdict.txt",
            url="https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/01_main-chapter-code/the-verdict.txt",
            sha256="b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
            description="Edith Wharton, 'The Verdict' (1908): the book's pretraining text (ch. 2 and 5)",
        ),
        Corpus(
            name="sms-spam",
            filename="SMSSpamCollection",
            url="https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
            sha256="7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
            description="UCI SMS Spam Collection, 'label<TAB>text' a line: the classification set (ch. 6)",
            archive_member="SMSSpamCollection",
        ),
        Corpus(
            name="alpaca-book",
            filename="instruction-data.json",
            url="https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data.json",
            sha256="7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
            description="1,100 Alpaca-style {instruction, input, output} records: the instruction set (ch. 7)",
        ),
    ]
}


class ChecksumError(ValueError):
    """A corpus file whose sha256 is not the one the registry expects."""


class CorpusNotAvailableError(FileNotFoundError):
    """A known corpus that is neither on disk nor downloadable (offline, address gone)."""


def cache_dir() -> Path:
    """Where downloaded corpora are kept: `$GPT_SCRATCH_CACHE/corpora`, default `~/.cache/gpt_scratch/corpora`."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "gpt_scratch"
    return Path(root).expanduser() / "corpora"


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_fingerprint(path: str | os.PathLike, block: int = 1 << 20) -> dict[str, Any]:
    """{"file", "bytes", "fingerprint"}: the size and the sha256 of the first, middle and last MiB, read in a
    moment however large the file (a stream's resume checks its files are the ones the run started on)."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for offset in sorted({0, max(0, size // 2 - block // 2), max(0, size - block)}):
            f.seek(offset)
            digest.update(f.read(block))
    return {"file": str(path), "bytes": size, "fingerprint": digest.hexdigest()}


def verify_checksum(path: Path, corpus: Corpus) -> None:
    actual = sha256_file(path)
    if actual != corpus.sha256:
        raise ChecksumError(
            f"{path}: sha256 mismatch for corpus '{corpus.name}': expected {corpus.sha256}, got {actual}. "
            f"The file is not the one the book uses; replace it with a fresh copy from {corpus.url}"
        )


def known_corpora() -> list[str]:
    return sorted(CORPORA)


def resolve_corpus(
    name_or_path: str | os.PathLike, *, download: bool = True, timeout: float = DOWNLOAD_TIMEOUT
) -> Path:
    """A local, verified path for a known corpus name, or the path itself for an existing file.

    Raises `ValueError` for a name that is neither known nor an existing file, `ChecksumError` for a file whose
    sha256 is wrong, and `CorpusNotAvailableError` when the corpus is not on disk and cannot be downloaded.
    """
    name = str(name_or_path)
    corpus = CORPORA.get(name)
    if corpus is None:
        path = Path(name).expanduser()
        if path.is_file():
            return path
        raise ValueError(
            f"Unknown corpus '{name}': it is neither a known corpus name ({', '.join(known_corpora())}) "
            f"nor an existing file."
        )

    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir:
        if not Path(data_dir).expanduser().is_dir():
            raise CorpusNotAvailableError(
                f"{DATA_DIR_ENV}={data_dir}: no such folder (looking for {corpus.filename})"
            )
        path = Path(data_dir).expanduser() / corpus.filename
        if path.is_file():
            verify_checksum(path, corpus)
            return path

    path = cache_dir() / corpus.filename
    if path.is_file():
        if sha256_file(path) == corpus.sha256:
            return path
        logger.warning("Cached %s has the wrong sha256; downloading it again", path)

    if not download:
        raise CorpusNotAvailableError(_not_available_message(corpus, "downloads are disabled"))
    offline = [v for v in OFFLINE_ENVS if os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")]
    if offline:
        raise CorpusNotAvailableError(_not_available_message(corpus, f"offline: {offline[0]} is set"))
    return download_corpus(corpus, path.parent, timeout=timeout)


def download_corpus(corpus: Corpus, dest_dir: Path, *, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Download `corpus` into `dest_dir`, verify its sha256 and only then move it into place (atomically)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / corpus.filename
    logger.info("Downloading corpus '%s' from %s to %s", corpus.name, corpus.url, dest)
    tmp_paths: list[Path] = []
    try:
        download = _fetch(corpus, dest_dir, timeout, tmp_paths)
        if corpus.archive_member is not None:
            download = _extract(corpus, download, dest_dir, tmp_paths)
        actual = sha256_file(download)
        if actual != corpus.sha256:
            raise ChecksumError(
                f"Downloaded {corpus.filename} from {corpus.url} has the wrong sha256: expected {corpus.sha256}, "
                f"got {actual}. Nothing was saved; the file online may have changed."
            )
        os.replace(download, dest)
    finally:
        for tmp in tmp_paths:
            tmp.unlink(missing_ok=True)
    return dest


def _temp_file(corpus: Corpus, dest_dir: Path, tmp_paths: list[Path]) -> tuple[int, Path]:
    """A temp file beside the destination (so that os.replace is atomic); the caller's `finally` removes it."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{corpus.filename}.", suffix=".part", dir=dest_dir)
    tmp_paths.append(Path(tmp_name))
    return fd, Path(tmp_name)


def _fetch(corpus: Corpus, dest_dir: Path, timeout: float, tmp_paths: list[Path]) -> Path:
    fd, tmp = _temp_file(corpus, dest_dir, tmp_paths)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(corpus.url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
    except (urllib.error.URLError, OSError) as e:  # URLError, HTTPError, timeouts, refused connections
        raise CorpusNotAvailableError(_not_available_message(corpus, f"download failed: {e}")) from e
    return tmp


def _extract(corpus: Corpus, archive: Path, dest_dir: Path, tmp_paths: list[Path]) -> Path:
    fd, tmp = _temp_file(corpus, dest_dir, tmp_paths)
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.namelist() if Path(m).name == corpus.archive_member]
            if not members:
                raise CorpusNotAvailableError(
                    _not_available_message(
                        corpus,
                        f"the zip from {corpus.url} holds no '{corpus.archive_member}' ({zf.namelist()})",
                    )
                )
            with zf.open(members[0]) as src:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    out.write(chunk)
    except zipfile.BadZipFile as e:
        raise CorpusNotAvailableError(
            _not_available_message(corpus, f"{corpus.url} did not return a zip file: {e}")
        ) from e
    return tmp


def _not_available_message(corpus: Corpus, reason: str) -> str:
    return (
        f"Corpus '{corpus.name}' is not available ({reason}). Provide the file '{corpus.filename}' "
        f"(sha256 {corpus.sha256}) yourself: get it from {corpus.url}"
        + (f" (extract '{corpus.archive_member}' from the zip)" if corpus.archive_member else "")
        + f", put it in a folder and set {DATA_DIR_ENV} to that folder, or put it at {cache_dir() / corpus.filename}."
    )
