"""The known-corpora registry: GPT_SCRATCH_DATA_DIR, the cache, a download from a local server, and the errors."""

import dataclasses
import functools
import hashlib
import http.server
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from gpt_scratch.data import corpora
from gpt_scratch.data.corpora import (
    CORPORA,
    ChecksumError,
    CorpusNotAvailableError,
    cache_dir,
    resolve_corpus,
    sha256_file,
)

README_SIZES = {"the-verdict": 20_479, "sms-spam": 477_907, "alpaca-book": 203_524}  # ../shared/README.md


class _Server:
    """A local http.server on 127.0.0.1 that serves one folder and counts the requests it gets."""

    def __init__(self, directory: Path):
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory))
        )
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(directory: Path) -> _Server:
        servers.append(_Server(directory))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def no_data_dir(monkeypatch, tmp_path):
    """No GPT_SCRATCH_DATA_DIR, and an empty cache in tmp_path: the state of a user's first run."""
    monkeypatch.delenv(corpora.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(corpora.CACHE_ENV, str(tmp_path / "cache"))
    for name in corpora.OFFLINE_ENVS:  # downloads from the local test server only
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _point(monkeypatch, name: str, url: str) -> None:
    monkeypatch.setitem(CORPORA, name, dataclasses.replace(CORPORA[name], url=url))


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/the-verdict.txt"  # nothing listens there any more


def test_registry_matches_shared_readme(shared):
    assert set(CORPORA) == {"the-verdict", "sms-spam", "alpaca-book"}
    for name, corpus in CORPORA.items():
        path = shared / "data" / corpus.filename
        assert path.stat().st_size == README_SIZES[name]
        assert sha256_file(path) == corpus.sha256
        assert corpus.url.startswith("https://")
    assert (
        CORPORA["sms-spam"].url.endswith(".zip") and CORPORA["sms-spam"].archive_member == "SMSSpamCollection"
    )


@pytest.mark.parametrize("name", ["the-verdict", "sms-spam", "alpaca-book"])
def test_resolves_from_data_dir(name, shared):
    # conftest sets GPT_SCRATCH_DATA_DIR=../shared/data
    assert resolve_corpus(name) == shared / "data" / CORPORA[name].filename


def test_path_passes_through(shared):
    path = shared / "data" / "the-verdict.txt"
    assert resolve_corpus(path) == path
    assert resolve_corpus(str(path)) == path


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="Unknown corpus 'the-verdikt'") as e:
        resolve_corpus("the-verdikt")
    for name in CORPORA:
        assert name in str(e.value)


def test_wrong_file_in_data_dir_names_file_and_hashes(monkeypatch, tmp_path):
    bad = tmp_path / "the-verdict.txt"
    bad.write_text("not the verdict")
    monkeypatch.setenv(corpora.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(ChecksumError) as e:
        resolve_corpus("the-verdict")
    message = str(e.value)
    assert str(bad) in message
    assert CORPORA["the-verdict"].sha256 in message
    assert hashlib.sha256(b"not the verdict").hexdigest() in message


def test_data_dir_without_the_file_falls_back_to_cache(monkeypatch, tmp_path, shared):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(corpora.DATA_DIR_ENV, str(tmp_path / "empty"))
    monkeypatch.setenv(corpora.CACHE_ENV, str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "corpora" / "the-verdict.txt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes((shared / "data" / "the-verdict.txt").read_bytes())
    _point(monkeypatch, "the-verdict", _closed_port_url())  # would fail if it tried to download
    assert resolve_corpus("the-verdict") == cached


def test_downloads_once_into_cache(no_data_dir, monkeypatch, serve, shared):
    server = serve(shared / "data")
    _point(monkeypatch, "the-verdict", server.url("the-verdict.txt"))
    assert cache_dir() == no_data_dir / "cache" / "corpora"

    path = resolve_corpus("the-verdict")
    assert path == cache_dir() / "the-verdict.txt"
    assert path.read_bytes() == (shared / "data" / "the-verdict.txt").read_bytes()
    assert server.requests == ["/the-verdict.txt"]
    assert sorted(p.name for p in cache_dir().iterdir()) == ["the-verdict.txt"]  # no temp files left

    assert resolve_corpus("the-verdict") == path
    assert len(server.requests) == 1  # the second call reads the cache


def test_corrupt_cache_is_downloaded_again(no_data_dir, monkeypatch, serve, shared):
    server = serve(shared / "data")
    _point(monkeypatch, "the-verdict", server.url("the-verdict.txt"))
    cached = cache_dir() / "the-verdict.txt"
    cached.parent.mkdir(parents=True)
    cached.write_text("half a download")
    assert resolve_corpus("the-verdict") == cached
    assert sha256_file(cached) == CORPORA["the-verdict"].sha256
    assert len(server.requests) == 1


def test_zip_download_is_extracted_and_verified(no_data_dir, monkeypatch, serve, shared):
    site = no_data_dir / "site"
    site.mkdir()
    with zipfile.ZipFile(site / "sms+spam+collection.zip", "w") as zf:  # laid out as the UCI zip
        zf.write(shared / "data" / "SMSSpamCollection", "SMSSpamCollection")
        zf.writestr("readme", "SMS Spam Collection v.1")
    server = serve(site)
    _point(monkeypatch, "sms-spam", server.url("sms+spam+collection.zip"))

    path = resolve_corpus("sms-spam")
    assert path == cache_dir() / "SMSSpamCollection"
    assert sha256_file(path) == CORPORA["sms-spam"].sha256
    assert sorted(p.name for p in cache_dir().iterdir()) == ["SMSSpamCollection"]


def test_zip_without_the_member(no_data_dir, monkeypatch, serve):
    site = no_data_dir / "site"
    site.mkdir()
    with zipfile.ZipFile(site / "x.zip", "w") as zf:
        zf.writestr("readme", "nothing else")
    _point(monkeypatch, "sms-spam", serve(site).url("x.zip"))
    with pytest.raises(CorpusNotAvailableError, match="holds no 'SMSSpamCollection'"):
        resolve_corpus("sms-spam")
    assert list(cache_dir().iterdir()) == []


def test_download_with_wrong_checksum_saves_nothing(no_data_dir, monkeypatch, serve):
    site = no_data_dir / "site"
    site.mkdir()
    (site / "the-verdict.txt").write_text("a different text")
    _point(monkeypatch, "the-verdict", serve(site).url("the-verdict.txt"))
    with pytest.raises(ChecksumError) as e:
        resolve_corpus("the-verdict")
    assert CORPORA["the-verdict"].sha256 in str(e.value)
    assert hashlib.sha256(b"a different text").hexdigest() in str(e.value)
    assert list(cache_dir().iterdir()) == []  # neither the file nor a temp file


def test_offline_error_says_what_to_provide_and_where(no_data_dir, monkeypatch):
    url = _closed_port_url()
    _point(monkeypatch, "the-verdict", url)
    with pytest.raises(CorpusNotAvailableError) as e:
        resolve_corpus("the-verdict", timeout=5)
    message = str(e.value)
    for needed in ["the-verdict.txt", url, corpora.DATA_DIR_ENV, CORPORA["the-verdict"].sha256]:
        assert needed in message
    assert list(cache_dir().iterdir()) == []


def test_http_error_is_not_available(no_data_dir, monkeypatch, serve):
    site = no_data_dir / "site"
    site.mkdir()
    _point(monkeypatch, "alpaca-book", serve(site).url("instruction-data.json"))  # 404
    with pytest.raises(CorpusNotAvailableError, match="404"):
        resolve_corpus("alpaca-book")


def test_download_disabled(no_data_dir):
    with pytest.raises(CorpusNotAvailableError, match="downloads are disabled"):
        resolve_corpus("the-verdict", download=False)
