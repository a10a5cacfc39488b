"""MNIST: where the files are found, downloads from a local server, load_mnist, real data.

Every download here goes to an HTTP server on 127.0.0.1 that the test starts;
the cache is redirected to tmp_path through XDG_CACHE_HOME.
"""

import gzip
import hashlib
import http.server
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tinymbm.data import (
    MNIST,
    ChecksumError,
    DatasetNotFoundError,
    DownloadError,
    FashionMNIST,
    IDXError,
    load_mnist,
    write_idx,
)
from tinymbm.data.download import (
    SHA256,
    download_dataset,
    download_file,
    resolve_mirrors,
)

# Read before the isolation fixture clears the variable (tests/conftest.py sets it
# to the shared data folder when that exists).
REAL_DATA = os.environ.get("TINYMBM_DATA")

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

ENV_VARS = (
    "TINYMBM_DATA",
    "TINYMBM_MNIST_MIRROR",
    "TINYMBM_FASHION_MNIST_MIRROR",
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No data location from the environment, no proxy, and a cache under tmp_path."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "tinymbm"


@pytest.fixture
def real_mnist() -> Path:
    """The folder that contains mnist/ and fashion-mnist/, or skip."""
    if not REAL_DATA or not (Path(REAL_DATA) / "mnist").is_dir():
        pytest.skip("real MNIST not found: set TINYMBM_DATA to a folder containing mnist/")
    return Path(REAL_DATA)


def make_split(folder: Path, n: int, train: bool = True, compress: bool = True, size=(28, 28)):
    """Write a small fake split: image k is filled with the value k, label k % 10."""
    prefix = "train" if train else "t10k"
    suffix = ".gz" if compress else ""
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, *size))
    labels = (np.arange(n) % 10).astype(np.uint8)
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", np.ascontiguousarray(images))
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return folder


# ---------------------------------------------------------------- local HTTP server


class FileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RouteHandler)
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.requests: list[str] = []

    def url(self, prefix: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{prefix}/"

    def add(self, prefix: str, filename: str, body: bytes, behaviour: str = "ok") -> None:
        """Serve ``body`` at /prefix/filename; behaviour "truncated" or "slow" misbehaves."""
        self.routes[f"/{prefix}/{filename}"] = (behaviour, body)


class RouteHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path not in self.server.routes:
            self.send_error(404)
            return

        behaviour, body = self.server.routes[self.path]
        if behaviour == "slow":
            time.sleep(1.5)
        # A truncated response promises more bytes than it sends, then closes.
        length = len(body) + (1000 if behaviour == "truncated" else 0)
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def server():
    file_server = FileServer()
    thread = threading.Thread(target=file_server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield file_server
    file_server.shutdown()
    file_server.server_close()


@pytest.fixture
def dead_url() -> str:
    """A 127.0.0.1 URL whose port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- resolution order


def test_mnist_explicit_root_beats_env(tmp_path, monkeypatch, isolated_env):
    make_split(tmp_path / "root", 5)
    make_split(tmp_path / "env" / "mnist", 6)
    make_split(isolated_env / "mnist", 7)
    monkeypatch.setenv("TINYMBM_DATA", str(tmp_path / "env"))

    dataset = MNIST(root=tmp_path / "root")

    assert dataset.source == "root"
    assert len(dataset) == 5


def test_mnist_env_beats_cache(tmp_path, monkeypatch, isolated_env):
    make_split(tmp_path / "env" / "mnist", 6)
    make_split(isolated_env / "mnist", 7)
    monkeypatch.setenv("TINYMBM_DATA", str(tmp_path / "env"))

    dataset = MNIST()

    assert dataset.source == "TINYMBM_DATA"
    assert len(dataset) == 6


def test_mnist_cache_last(isolated_env):
    make_split(isolated_env / "mnist", 7)

    dataset = MNIST()

    assert dataset.source == "cache"
    assert len(dataset) == 7


def test_mnist_root_without_files_falls_through(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    make_split(tmp_path / "env" / "mnist", 6)
    monkeypatch.setenv("TINYMBM_DATA", str(tmp_path / "env"))

    dataset = MNIST(root=tmp_path / "empty")

    assert dataset.source == "TINYMBM_DATA"


@pytest.mark.parametrize("layout", ["", "mnist", "MNIST/raw"])
def test_mnist_root_layouts(tmp_path, layout):
    make_split(tmp_path / "root" / layout, 4)

    dataset = MNIST(root=tmp_path / "root")

    assert dataset.folder == tmp_path / "root" / layout, layout
    assert len(dataset) == 4, layout


def test_mnist_env_pointing_at_files(tmp_path, monkeypatch):
    make_split(tmp_path / "files", 3)
    monkeypatch.setenv("TINYMBM_DATA", str(tmp_path / "files"))

    assert len(MNIST()) == 3


def test_mnist_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other"))
    make_split(tmp_path / "other" / "tinymbm" / "mnist", 2)

    assert MNIST().folder == tmp_path / "other" / "tinymbm" / "mnist"


def test_mnist_splits_need_own_files(tmp_path):
    make_split(tmp_path, 4, train=True)
    make_split(tmp_path, 3, train=False, compress=False)

    assert len(MNIST(tmp_path, train=True)) == 4
    assert len(MNIST(tmp_path, train=False)) == 3


def test_fashion_uses_own_folder(tmp_path):
    make_split(tmp_path / "mnist", 4)
    make_split(tmp_path / "fashion-mnist", 5)

    assert len(FashionMNIST(tmp_path)) == 5
    assert len(MNIST(tmp_path)) == 4


# ---------------------------------------------------------------- not found


def test_mnist_not_found_message(tmp_path, isolated_env):
    (tmp_path / "root").mkdir()
    write_idx(tmp_path / "root" / "train-images-idx3-ubyte.gz", np.zeros((1, 28, 28), np.uint8))

    with pytest.raises(DatasetNotFoundError) as info:
        MNIST(root=tmp_path / "root")
    message = str(info.value)

    for place in (tmp_path / "root", tmp_path / "root" / "mnist", isolated_env / "mnist"):
        assert str(place) in message, place
    assert "missing train-labels-idx1-ubyte[.gz]" in message
    assert "$TINYMBM_DATA is not set" in message
    assert "download=False" in message
    assert "set TINYMBM_DATA" in message


def test_not_found_is_file_not_found():
    assert issubclass(DatasetNotFoundError, FileNotFoundError)


# ---------------------------------------------------------------- contents


def test_mnist_item_types(tmp_path):
    dataset = MNIST(make_split(tmp_path, 12))
    image, label = dataset[11]

    assert dataset.data.dtype == np.uint8
    assert dataset.data.shape == (12, 28, 28)
    assert dataset.targets.dtype == np.int64
    assert isinstance(image, np.ndarray)
    assert image.shape == (28, 28)
    assert int(image[0, 0]) == 11
    assert type(label) is int
    assert label == 1


def test_mnist_transforms_applied(tmp_path):
    dataset = MNIST(
        make_split(tmp_path, 3),
        transform=lambda image: image.sum(),
        target_transform=lambda label: label + 100,
    )

    assert dataset[2] == (2 * 28 * 28, 102)
    assert dataset.arrays() is None


def test_mnist_arrays_without_transform(tmp_path):
    dataset = MNIST(make_split(tmp_path, 3))

    images, labels = dataset.arrays()

    assert images is dataset.data
    assert labels is dataset.targets


def test_mnist_classes():
    assert MNIST.classes[3] == "3 - three"
    assert FashionMNIST.classes[9] == "Ankle boot"


def test_mnist_wrong_image_size(tmp_path):
    make_split(tmp_path, 3, size=(27, 28))

    with pytest.raises(IDXError, match="images are 27x28, expected 28x28"):
        MNIST(tmp_path)


def test_mnist_label_count_mismatch(tmp_path):
    make_split(tmp_path, 3)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))

    with pytest.raises(IDXError, match="2 labels but .* has 3 images"):
        MNIST(tmp_path)


def test_mnist_label_out_of_range(tmp_path):
    make_split(tmp_path, 3)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 10, 1], np.uint8))

    with pytest.raises(IDXError, match="label 10 is out of range"):
        MNIST(tmp_path)


def test_mnist_truncated_file(tmp_path):
    make_split(tmp_path, 3, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])

    with pytest.raises(IDXError, match="truncated"):
        MNIST(tmp_path)


def test_mnist_verify_rejects_unknown_file(tmp_path):
    make_split(tmp_path, 3)

    with pytest.raises(ChecksumError, match="SHA-256 mismatch") as info:
        MNIST(tmp_path, verify=True)
    assert (tmp_path / info.value.filename).exists()


# ---------------------------------------------------------------- downloads


def test_download_file_verified(tmp_path, server):
    body = b"some bytes " * 1000
    server.add("m1", "file.gz", body)

    path = download_file("file.gz", tmp_path / "d", sha256(body), [server.url("m1")], progress=False)

    assert path == tmp_path / "d" / "file.gz"
    assert path.read_bytes() == body
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.gz"]


def test_download_mismatch_deletes_file(tmp_path, server):
    server.add("m1", "file.gz", b"corrupt")
    expected = sha256(b"good")

    with pytest.raises(ChecksumError) as info:
        download_file("file.gz", tmp_path, expected, [server.url("m1")], progress=False)
    message = str(info.value)

    assert "file.gz" in message
    assert expected in message
    assert sha256(b"corrupt") in message
    assert info.value.actual == sha256(b"corrupt")
    assert list(tmp_path.iterdir()) == []


def test_download_first_mirror_404(tmp_path, server):
    body = b"payload"
    server.add("good", "file.gz", body)

    path = download_file(
        "file.gz", tmp_path, sha256(body), [server.url("missing"), server.url("good")],
        progress=False,
    )

    assert path.read_bytes() == body
    assert server.requests == ["/missing/file.gz", "/good/file.gz"]


def test_download_bad_mirror_then_good(tmp_path, server):
    body = b"payload"
    server.add("bad", "file.gz", b"tampered")
    server.add("good", "file.gz", body)

    path = download_file(
        "file.gz", tmp_path, sha256(body), [server.url("bad"), server.url("good")], progress=False
    )

    assert path.read_bytes() == body


def test_download_truncated_response(tmp_path, server):
    server.add("m1", "file.gz", b"x" * 5000, behaviour="truncated")

    with pytest.raises(DownloadError, match="connection closed after 5000 of 6000 bytes"):
        download_file("file.gz", tmp_path, sha256(b"x"), [server.url("m1")], progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_timeout(tmp_path, server):
    server.add("m1", "file.gz", b"late", behaviour="slow")

    with pytest.raises(DownloadError, match="timed out after 0.3 s"):
        download_file(
            "file.gz", tmp_path, sha256(b"late"), [server.url("m1")], timeout=0.3, progress=False
        )


def test_download_unreachable(tmp_path, dead_url):
    with pytest.raises(DownloadError) as info:
        download_file("file.gz", tmp_path, sha256(b""), [dead_url], progress=False)

    assert info.value.attempts[0][0] == dead_url + "file.gz"
    assert dead_url + "file.gz" in str(info.value)


def test_download_dataset_skips_intact_file(tmp_path, server, monkeypatch):
    body = b"labels"
    monkeypatch.setitem(SHA256["mnist"], "t10k-labels-idx1-ubyte.gz", sha256(body))
    server.add("m1", "t10k-labels-idx1-ubyte.gz", body)
    files = ["t10k-labels-idx1-ubyte.gz"]

    download_dataset("mnist", tmp_path, files, [server.url("m1")], progress=False)
    download_dataset("mnist", tmp_path, files, [server.url("m1")], progress=False)

    assert server.requests == ["/m1/t10k-labels-idx1-ubyte.gz"]


def test_resolve_mirrors_order(monkeypatch):
    monkeypatch.setenv("TINYMBM_MNIST_MIRROR", "http://127.0.0.1:1/a/, http://127.0.0.1:1/b/")

    assert resolve_mirrors("mnist") == ["http://127.0.0.1:1/a/", "http://127.0.0.1:1/b/"]
    assert resolve_mirrors("mnist", ["http://127.0.0.1:1/c/"]) == ["http://127.0.0.1:1/c/"]
    assert resolve_mirrors("fashion-mnist")[0].startswith("http://fashion-mnist.s3-website")


def serve_real_test_split(server, real_mnist, prefix="m1"):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        server.add(prefix, name, (real_mnist / "mnist" / name).read_bytes())


def test_mnist_download_into_cache(server, real_mnist, isolated_env):
    serve_real_test_split(server, real_mnist)

    dataset = MNIST(train=False, download=True, mirrors=[server.url("m1")])

    assert dataset.source == "download"
    assert dataset.folder == isolated_env / "mnist"
    assert len(dataset) == 10_000
    assert MNIST(train=False).source == "cache"


def test_mnist_download_into_root(tmp_path, server, real_mnist):
    serve_real_test_split(server, real_mnist)

    dataset = MNIST(tmp_path / "data", train=False, download=True, mirrors=[server.url("m1")])

    assert dataset.folder == tmp_path / "data" / "mnist"
    assert (tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


def test_mnist_download_mirror_from_env(server, real_mnist, monkeypatch):
    serve_real_test_split(server, real_mnist)
    monkeypatch.setenv("TINYMBM_MNIST_MIRROR", server.url("m1"))

    assert len(MNIST(train=False, download=True)) == 10_000


def test_mnist_download_checksum_mismatch(server, isolated_env):
    server.add("m1", "t10k-images-idx3-ubyte.gz", b"not mnist")

    with pytest.raises(ChecksumError, match="t10k-images-idx3-ubyte.gz: SHA-256 mismatch"):
        MNIST(train=False, download=True, mirrors=[server.url("m1")])
    assert not (isolated_env / "mnist" / "t10k-images-idx3-ubyte.gz").exists()


def test_mnist_offline_message(dead_url, isolated_env):
    other = dead_url.replace("/mnist/", "/other/")

    with pytest.raises(DatasetNotFoundError) as info:
        MNIST(train=False, download=True, mirrors=[dead_url, other], timeout=2)
    message = str(info.value)

    assert dead_url + "t10k-images-idx3-ubyte.gz" in message
    assert other + "t10k-images-idx3-ubyte.gz" in message
    assert str(isolated_env / "mnist") in message
    assert "set TINYMBM_DATA" in message
    assert "root=" in message
    assert isinstance(info.value.__cause__, DownloadError)


# ---------------------------------------------------------------- load_mnist


def test_load_mnist_real_source(tmp_path):
    make_split(tmp_path / "mnist", 4)

    result = load_mnist(tmp_path)

    assert result.source == "mnist"
    assert result.images.shape == (4, 28, 28)


def test_load_mnist_fashion_source(tmp_path):
    make_split(tmp_path / "fashion-mnist", 4)

    assert load_mnist(tmp_path, fashion=True).source == "fashion-mnist"


def test_load_mnist_fallback_one_line(capsys):
    images, labels, source = load_mnist(train=False, synthetic_size=30)
    lines = capsys.readouterr().err.strip().splitlines()

    assert source == "synthetic"
    assert images.shape == (30, 28, 28)
    assert labels.dtype == np.int64
    assert len(lines) == 1
    assert "synthetic" in lines[0]
    assert "TINYMBM_DATA" in lines[0]


def test_load_mnist_no_fallback_raises():
    with pytest.raises(DatasetNotFoundError):
        load_mnist(fallback=False)


# ---------------------------------------------------------------- real MNIST


@pytest.mark.parametrize("train, counts", [(True, TRAIN_COUNTS), (False, TEST_COUNTS)])
def test_real_mnist_class_counts(real_mnist, monkeypatch, train, counts):
    monkeypatch.setenv("TINYMBM_DATA", str(real_mnist))

    dataset = MNIST(train=train)

    assert dataset.source == "TINYMBM_DATA"
    assert len(dataset) == sum(counts), f"train={train}"
    assert np.bincount(dataset.targets, minlength=10).tolist() == counts, f"train={train}"
    assert dataset.data.max() == 255


def test_real_mnist_verify(real_mnist):
    assert len(MNIST(real_mnist, train=False, verify=True)) == 10_000


def test_real_mnist_raw_copy_verify(tmp_path, real_mnist):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(real_mnist / "mnist" / f"{name}.gz") as source, open(tmp_path / name, "wb") as target:
            shutil.copyfileobj(source, target)

    dataset = MNIST(tmp_path, train=False, verify=True)

    assert dataset.targets[:5].tolist() == [7, 2, 1, 0, 4]


def test_real_fashion_mnist_counts(real_mnist):
    if not (real_mnist / "fashion-mnist").is_dir():
        pytest.skip(f"Fashion-MNIST not found in {real_mnist}")

    dataset = FashionMNIST(real_mnist, train=False, verify=True)

    assert np.bincount(dataset.targets).tolist() == [1000] * 10
