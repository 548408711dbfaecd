"""`mmprep download` against a local HTTP server: fetch, resume, checksum, zip members, offline errors."""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import socket
import threading
import zipfile
from functools import partial

import pytest

from mmprep.download import download_recipe, fetch
from mmprep.errors import PrepError
from mmprep.recipes import load_recipe, recipe_names


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support (enough for resume tests)."""

    def log_message(self, *args):
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng:
            return super().send_head()
        try:
            data = open(path, "rb").read()
        except OSError:
            self.send_error(404)
            return None
        start = int(rng.split("=")[1].split("-")[0])
        if start >= len(data):
            self.send_error(416)
            return None
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        return io.BytesIO(data[start:])


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_RangeHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_resumes_a_partial_download_and_checks_sha256(server, tmp_path):
    root, url = server
    payload = bytes(range(256)) * 4000
    (root / "dump.json.gz").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "raw" / "dump.json.gz"
    dest.parent.mkdir()
    (dest.parent / "dump.json.gz.part").write_bytes(payload[:1000])
    assert fetch(f"{url}/dump.json.gz", dest, digest, quiet=True) == digest
    assert dest.read_bytes() == payload
    assert not (dest.parent / "dump.json.gz.part").exists()


def test_fetch_rejects_a_wrong_checksum_and_keeps_nothing(server, tmp_path):
    root, url = server
    (root / "f.bin").write_bytes(b"abc")
    dest = tmp_path / "f.bin"
    with pytest.raises(PrepError, match="sha256 mismatch"):
        fetch(f"{url}/f.bin", dest, "0" * 64, quiet=True)
    assert not dest.exists() and not (tmp_path / "f.bin.part").exists()


def test_fetch_http_error_and_offline_are_one_line_errors(server, tmp_path):
    _, url = server
    with pytest.raises(PrepError, match="HTTP 404"):
        fetch(f"{url}/missing.gz", tmp_path / "missing.gz", quiet=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(PrepError, match="are you offline"):
        fetch(f"http://127.0.0.1:{closed_port}/x.gz", tmp_path / "x.gz", quiet=True, timeout=5)


def test_download_recipe_with_zip_member_and_present_files(server, tmp_path):
    root, url = server
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-1m/ratings.dat", "1::1193::5::978300760\n")
        z.writestr("ml-1m/movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n")
    (root / "ml-1m.zip").write_bytes(buf.getvalue())
    recipe_file = tmp_path / "ml.yaml"
    recipe_file.write_text(
        "name: ml\nsource: movielens\nfiles:\n"
        f"  interactions:\n    - name: ratings.dat\n      url: {url}/ml-1m.zip\n      member: ml-1m/ratings.dat\n"
        f"  items:\n    - name: movies.dat\n      url: {url}/ml-1m.zip\n      member: ml-1m/movies.dat\n"
    )
    raw = tmp_path / "raw"
    statuses = [s for _, s in download_recipe(load_recipe(recipe_file), raw, quiet=True)]
    assert statuses == ["extracted from ml-1m.zip", "extracted from ml-1m.zip"]
    assert (raw / "ratings.dat").read_text() == "1::1193::5::978300760\n"
    statuses = [s for _, s in download_recipe(load_recipe(recipe_file), raw, quiet=True)]
    assert statuses == ["present", "present"]


def test_bundled_recipe_pins_the_bundled_sample():
    recipe = load_recipe("all-beauty")
    (f,) = recipe.files
    assert f.sha256 == "8e49737fefaec9290187c69bf92889452df8be0ab5e36c9476520d6639683279"


def test_unknown_recipe_lists_known_ones():
    with pytest.raises(PrepError, match="known: .*baby.*sports"):
        load_recipe("no-such-dataset")


def test_bundled_sample_matches_its_pinned_checksum():
    from tests.paths import REPO

    statuses = [s for _, s in download_recipe(load_recipe("all-beauty"), REPO / "data", quiet=True)]
    assert statuses == ["present"]


@pytest.mark.parametrize("name", recipe_names())
def test_every_shipped_recipe_loads_and_names_known_roles(name):
    from mmprep.interop import IMPORTERS
    from mmprep.sources import get_source

    recipe = load_recipe(name)
    if recipe.source.startswith("import-"):
        assert recipe.source.removeprefix("import-") in IMPORTERS
    else:
        roles = get_source(recipe.source).roles
        # image_features (the Amazon 2014 .b file) is read by `mmprep features`, not by the source reader
        assert {f.role for f in recipe.files} <= set(roles) | {"image_features"}, (name, roles)
        assert any(f.role == "interactions" and not f.optional for f in recipe.files)


# ------------------------------------------------------------------------------ hostile recipes (issue 13)


def _recipe(tmp_path, entry: str) -> object:
    path = tmp_path / "hostile.yaml"
    path.write_text(f"name: hostile\nsource: amazon2018\nfiles:\n  interactions:\n    - {entry}\n")
    return path


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.org/a.gz",
        "data:text/plain,hello",
        "example.org/a.gz",
        "http:///a.gz",
    ],
)
def test_odd_urls_are_one_line(tmp_path, url):
    from tests.mmprep.oneline import one_line_error, run_cli

    recipe = _recipe(tmp_path, f"{{name: a.json.gz, url: '{url}'}}")
    result = run_cli("download", "--dataset", recipe, "--raw-dir", tmp_path / "raw")
    one_line_error(result, str(recipe), "unsupported URL")
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    ("entry", "what"),
    [
        ("{name: ../evil.json.gz, url: 'http://127.0.0.1:9/a'}", "file name '../evil.json.gz'"),
        ("{name: /tmp/evil.json.gz, url: 'http://127.0.0.1:9/a'}", "file name '/tmp/evil.json.gz'"),
        ("{name: a.csv, url: 'http://127.0.0.1:9/x.zip', member: ../../a.csv}", "zip member '../../a.csv'"),
    ],
)
def test_names_that_escape_the_raw_dir_are_refused(tmp_path, entry, what):
    from tests.mmprep.oneline import one_line_error, run_cli

    recipe = _recipe(tmp_path, entry)
    result = run_cli("download", "--dataset", recipe, "--raw-dir", tmp_path / "raw")
    one_line_error(result, str(recipe), what, "outside --raw-dir")
    assert not (tmp_path / "raw").exists() and not (tmp_path / "evil.json.gz").exists()


def test_unpinned_download_warns_and_records_its_sha256(server, tmp_path, caplog):
    root, url = server
    payload = b"some raw file\n" * 100
    (root / "a.json").write_bytes(payload)
    recipe = load_recipe(_recipe(tmp_path, f"{{name: a.json, url: '{url}/a.json'}}"))
    with caplog.at_level(logging.WARNING, logger="mmprep.download"):
        download_recipe(recipe, tmp_path / "raw", quiet=True)
    digest = hashlib.sha256(payload).hexdigest()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "a.json: no sha256 pinned" in warnings[0] and digest in warnings[0]
    assert (tmp_path / "raw" / "a.json.sha256").read_text() == f"{digest}  a.json\n"


def test_damaged_zip_is_downloaded_again_or_refused(server, tmp_path, caplog):
    root, url = server
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("d/ratings.csv", "1,2,3,4\n" * 1000)
    good = buf.getvalue()
    (root / "d.zip").write_bytes(good)
    recipe = load_recipe(
        _recipe(tmp_path, f"{{name: ratings.csv, url: '{url}/d.zip', member: d/ratings.csv}}")
    )
    raw = tmp_path / "raw"
    raw.mkdir()
    damaged = bytearray(good)
    damaged[46] ^= 0xFF  # inside the deflated data of the member
    (raw / "d.zip").write_bytes(bytes(damaged))
    with caplog.at_level(logging.WARNING, logger="mmprep.download"):
        download_recipe(recipe, raw, quiet=True)
    assert any(
        "damaged zip archive" in r.getMessage() and "downloading it again" in r.getMessage()
        for r in caplog.records
    )
    assert (raw / "ratings.csv").read_text() == "1,2,3,4\n" * 1000
    assert (raw / "d.zip").read_bytes() == good

    (root / "d.zip").write_bytes(bytes(damaged))  # the server itself serves a damaged archive
    for p in raw.iterdir():
        p.unlink()
    with pytest.raises(PrepError, match="damaged zip archive .*delete it and run mmprep download again"):
        download_recipe(recipe, raw, quiet=True)
    assert not (raw / "ratings.csv").exists() and not (raw / "ratings.csv.part").exists()
