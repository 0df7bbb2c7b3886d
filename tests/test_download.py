"""The FashionMNIST downloader, driven against a local HTTP server on 127.0.0.1 (never the internet).

The server serves a small valid set of gzipped IDX files written here, plus a truncated copy, one with the
wrong content and one whose connection breaks off mid-body. The checksums passed to the downloader are
those of the small set, so the real download code runs end to end.
"""
import gzip
import hashlib
import http.server
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from build_notebooks import shared_helpers_namespace
from conftest import ROOT, idx_gz


@pytest.fixture(scope="module")
def helpers():
    return shared_helpers_namespace()


IMAGES = idx_gz(np.arange(5 * 28 * 28).reshape(5, 28, 28) % 256, 2051)
LABELS = idx_gz(np.arange(5) % 10, 2049)
CHECKSUMS = {"tiny-images-idx3-ubyte": hashlib.sha256(gzip.decompress(IMAGES)).hexdigest(),
             "tiny-labels-idx1-ubyte": hashlib.sha256(gzip.decompress(LABELS)).hexdigest()}
# the real files, to serve for the whole-tool test: the Debian package's or a copy in data/
REAL_DIR = next((d for d in (Path("/usr/share/datasets/fashion-mnist"), ROOT / "data" / "FashionMNIST" / "raw")
                 if (d / "train-images-idx3-ubyte.gz").exists()), Path("/nonexistent"))
FILES = {  # path on the server -> body
    "/good/tiny-images-idx3-ubyte.gz": IMAGES, "/good/tiny-labels-idx1-ubyte.gz": LABELS,
    "/truncated/tiny-images-idx3-ubyte.gz": IMAGES[: len(IMAGES) // 2],
    "/wrong/tiny-images-idx3-ubyte.gz": idx_gz(np.zeros((5, 28, 28)), 2051),
}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the stdlib's name)
        if self.path.startswith("/cut/"):  # promises the whole file, sends half, hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(IMAGES)))
            self.end_headers()
            self.wfile.write(IMAGES[: len(IMAGES) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        real = REAL_DIR / self.path[len("/real/"):] if self.path.startswith("/real/") else None
        body = real.read_bytes() if real is not None and real.is_file() else FILES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_files_arrive_and_parse(helpers, server, tmp_path):
    paths = helpers["fetch_idx_files"](tmp_path, CHECKSUMS, mirrors=(f"{server}/good/",))
    images = helpers["read_idx"](paths["tiny-images-idx3-ubyte"], CHECKSUMS["tiny-images-idx3-ubyte"])
    labels = helpers["read_idx"](paths["tiny-labels-idx1-ubyte"])
    assert images.shape == (5, 28, 28) and labels.tolist() == [0, 1, 2, 3, 4]
    assert leftovers(tmp_path) == ["tiny-images-idx3-ubyte.gz", "tiny-labels-idx1-ubyte.gz"]


def test_falls_back_to_the_next_mirror(helpers, server, tmp_path):
    mirrors = (f"{server}/missing/", f"{server}/wrong/", f"{server}/good/")
    paths = helpers["fetch_idx_files"](tmp_path, CHECKSUMS, mirrors=mirrors)
    assert all(p.exists() for p in paths.values())


@pytest.mark.parametrize("mirror, reason", [("truncated", "cannot be read"), ("wrong", "wrong content"),
                                            ("cut", "IncompleteRead|incomplete"), ("missing", "404")])
def test_bad_download_named_and_nothing_kept(helpers, server, tmp_path, mirror, reason):
    with pytest.raises(FileNotFoundError, match=r"tiny-images-idx3-ubyte.gz: could not be downloaded") as err:
        helpers["fetch_idx_files"](tmp_path, CHECKSUMS, mirrors=(f"{server}/{mirror}/",))
    assert re.search(reason, str(err.value)), str(err.value)
    assert "Fix:" in str(err.value)
    assert leftovers(tmp_path) == [], "a failed download left a file that a later run could trust"


def test_bad_file_on_disk_is_fetched_again(helpers, server, tmp_path, capsys):
    (tmp_path / "tiny-images-idx3-ubyte.gz").write_bytes(FILES["/truncated/tiny-images-idx3-ubyte.gz"])
    (tmp_path / "tiny-labels-idx1-ubyte.gz").write_bytes(LABELS)
    helpers["fetch_idx_files"](tmp_path, CHECKSUMS, mirrors=(f"{server}/good/",))
    assert (tmp_path / "tiny-images-idx3-ubyte.gz").read_bytes() == IMAGES
    assert "tiny-images-idx3-ubyte.gz: cannot be read" in capsys.readouterr().out


def fetch_tool(data_dir, mirror):
    env = {"HW_FASHION_MIRRORS": mirror, "HW_DEBIAN_FASHION_DIR": str(data_dir / "no-debian-package"),
           "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "tools/fetch_data.py", "--no-apt", "--data-dir", str(data_dir)],
                          cwd=ROOT, capture_output=True, text=True, env=env)


def test_fetch_tool_fails_cleanly(server, tmp_path):
    """tools/fetch_data.py, the `make data` step: a failed download is one clear message, no traceback."""
    proc = fetch_tool(tmp_path, f"{server}/missing/")
    assert proc.returncode == 1
    assert "train-images-idx3-ubyte.gz: could not be downloaded" in proc.stderr and "Fix:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert leftovers(tmp_path / "FashionMNIST" / "raw") == []


@pytest.mark.skipif(not REAL_DIR.exists(), reason="no copy of FashionMNIST to serve")
def test_fetch_tool_downloads_the_real_files(server, tmp_path):
    """The whole path with the real files and their published checksums, served from 127.0.0.1."""
    proc = fetch_tool(tmp_path, f"{server}/real/")
    assert proc.returncode == 0, proc.stderr
    raw = tmp_path / "FashionMNIST" / "raw"
    assert f"FashionMNIST from {raw}: train (60000, 28, 28), test (10000, 28, 28)" in proc.stdout
    assert len(leftovers(raw)) == 4
