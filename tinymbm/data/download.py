"""Download MNIST and Fashion-MNIST from their public mirrors, verified by SHA-256.

Each file goes to a temporary name in the target folder while its SHA-256 is
computed, and only a file whose sum equals the published one is renamed into
place (``os.replace``). A file with the wrong sum is deleted. When a mirror
fails (HTTP error, refused connection, timeout, wrong sum), the next one is
tried. Only the standard library (``urllib``) talks to the network.

Mirrors, first to last:

- an explicit ``mirrors=`` argument;
- else the environment variable ``TINYMBM_MNIST_MIRROR`` (MNIST) or
  ``TINYMBM_FASHION_MNIST_MIRROR`` (Fashion-MNIST): one or more base URLs
  separated by commas or spaces (``file://`` URLs work too);
- else the well-known public mirrors below.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

__all__ = [
    "MIRRORS",
    "SHA256",
    "SHA256_UNCOMPRESSED",
    "ChecksumError",
    "DownloadError",
    "download_dataset",
    "download_file",
    "resolve_mirrors",
    "sha256_file",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0

MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

MIRROR_ENV_VARS: dict[str, str] = {
    "mnist": "TINYMBM_MNIST_MIRROR",
    "fashion-mnist": "TINYMBM_FASHION_MNIST_MIRROR",
}

# The published SHA-256 sums of the distributed .gz files.
SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

# The SHA-256 sums of the same files decompressed, for checking raw copies on disk.
SHA256_UNCOMPRESSED: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

# Network faults that make a mirror fail. Any other error (a full disk, a
# permission problem) is not the mirror's fault, so it propagates.
NETWORK_ERRORS = (
    urllib.error.URLError,
    http.client.HTTPException,
    TimeoutError,
    ConnectionError,
    ssl.SSLError,
)


class ChecksumError(ValueError):
    """A file's SHA-256 differs from the published one. The file has been deleted.

    Attributes:
        filename: the file's name.
        expected: the published SHA-256 (hex).
        actual: the SHA-256 of the bytes received (hex).
    """

    def __init__(self, message: str, filename: str, expected: str, actual: str) -> None:
        super().__init__(message)
        self.filename = filename
        self.expected = expected
        self.actual = actual


class DownloadError(OSError):
    """Every mirror failed for a file.

    Attributes:
        filename: the file's name.
        attempts: one ``(url, reason)`` pair per URL tried, in order.
    """

    def __init__(self, message: str, filename: str, attempts: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.filename = filename
        self.attempts = attempts

    def __str__(self) -> str:
        # OSError.__str__ would print "[Errno None] None: <filename>" because
        # the filename attribute is set.
        return str(self.args[0])


def resolve_mirrors(dataset: str, mirrors: Sequence[str] | str | None = None) -> list[str]:
    """Return the base URLs to try for ``dataset``, first to last.

    Args:
        dataset: ``"mnist"`` or ``"fashion-mnist"``.
        mirrors: base URLs (a sequence, or one string of URLs separated by
            commas or spaces). ``None`` reads the dataset's environment variable,
            and when that is unset or empty, returns the public mirrors.
    """
    if dataset not in MIRRORS:
        raise ValueError(f"unknown dataset {dataset!r}, expected one of {sorted(MIRRORS)}")

    if mirrors is None:
        mirrors = os.environ.get(MIRROR_ENV_VARS[dataset], "") or MIRRORS[dataset]
    if isinstance(mirrors, str):
        mirrors = re.split(r"[,\s]+", mirrors.strip())

    urls = [m for m in mirrors if m]
    if not urls:
        raise ValueError(f"no mirror URL for {dataset}: got {mirrors!r}")
    return urls


def sha256_file(path: str | os.PathLike) -> str:
    """Return the SHA-256 of a file's bytes as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _describe_failure(error: BaseException, timeout: float) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, TimeoutError) or (
        isinstance(error, urllib.error.URLError) and isinstance(error.reason, TimeoutError)
    ):
        return f"timed out after {timeout:g} s"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return f"{type(error).__name__}: {error}"


def _fetch(url: str, target: Path, timeout: float, progress: bool, label: str) -> str:
    """Stream ``url`` into ``target`` and return the SHA-256 of the bytes received."""
    request = urllib.request.Request(url, headers={"User-Agent": "tinymbm"})
    digest = hashlib.sha256()

    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with (
            open(target, "wb") as f,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                disable=not progress,
            ) as bar,
        ):
            received = 0
            for chunk in iter(lambda: response.read(1 << 16), b""):
                f.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
                received += len(chunk)

    # http.client returns a short body without an error when the server closes
    # the connection early, so the length is compared here.
    if total is not None and received != total:
        raise ConnectionError(f"connection closed after {received} of {total} bytes")
    return digest.hexdigest()


def download_file(
    filename: str,
    folder: str | os.PathLike,
    sha256: str,
    mirrors: Sequence[str],
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> Path:
    """Download ``filename`` into ``folder`` from the first mirror that serves it intact.

    For each base URL ``m`` in ``mirrors`` the file is fetched from
    ``m.rstrip("/") + "/" + filename`` into a temporary file in ``folder``. If its
    SHA-256 equals ``sha256`` it is renamed to ``folder / filename``. Otherwise it
    is deleted and the next mirror is tried.

    Args:
        filename: the file's name on the mirror and on disk.
        folder: where to put it (created if missing).
        sha256: the expected SHA-256 (hex).
        mirrors: base URLs, tried in order.
        timeout: seconds to wait for the connection and for each read.
        progress: show a tqdm progress bar on stderr.

    Returns:
        The path of the verified file.

    Raises:
        ChecksumError: no mirror served the file intact and at least one served
            it with a different SHA-256; names the file, expected and actual sums.
        DownloadError: every mirror failed; names every URL tried and why.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    attempts: list[tuple[str, str]] = []
    mismatch: tuple[str, str] | None = None

    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".part")
        os.close(fd)
        temp = Path(temp_name)

        try:
            actual = _fetch(url, temp, timeout, progress, filename)
        except NETWORK_ERRORS as error:
            temp.unlink(missing_ok=True)
            reason = _describe_failure(error, timeout)
            attempts.append((url, reason))
            logger.warning("download of %s failed: %s", url, reason)
            continue
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

        if actual != sha256:
            temp.unlink()
            reason = f"SHA-256 mismatch: expected {sha256}, got {actual}"
            attempts.append((url, reason))
            mismatch = (url, actual)
            logger.warning("download of %s failed: %s; the file was deleted", url, reason)
            continue

        os.replace(temp, target)
        return target

    tried = "\n".join(f"  {url}: {reason}" for url, reason in attempts)
    if mismatch is not None:
        url, actual = mismatch
        raise ChecksumError(
            f"{filename}: SHA-256 mismatch: expected {sha256}, got {actual} (from {url}); "
            f"the file was deleted. URLs tried:\n{tried}",
            filename,
            sha256,
            actual,
        )
    raise DownloadError(
        f"could not download {filename}; every URL failed:\n{tried}",
        filename,
        attempts,
    )


def download_dataset(
    dataset: str,
    folder: str | os.PathLike,
    filenames: Sequence[str] | None = None,
    mirrors: Sequence[str] | str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> list[Path]:
    """Download the .gz files of ``dataset`` into ``folder``, skipping intact copies.

    A file already in ``folder`` is kept when its SHA-256 matches and replaced
    when it does not.

    Args:
        dataset: ``"mnist"`` or ``"fashion-mnist"``.
        folder: the target folder.
        filenames: which files (default: all four .gz files).
        mirrors: base URLs; see ``resolve_mirrors``.
        timeout: seconds to wait for the connection and for each read.
        progress: show tqdm progress bars.

    Returns:
        The paths of the verified files, in the order of ``filenames``.
    """
    urls = resolve_mirrors(dataset, mirrors)
    sums = SHA256[dataset]
    if filenames is None:
        filenames = list(sums)
    folder = Path(folder)
    paths = []

    for filename in filenames:
        if filename not in sums:
            raise ValueError(f"unknown {dataset} file {filename!r}, expected one of {sorted(sums)}")

        target = folder / filename
        if target.is_file():
            if sha256_file(target) == sums[filename]:
                paths.append(target)
                continue
            logger.warning("%s has the wrong SHA-256; downloading it again", target)
            target.unlink()

        paths.append(download_file(filename, folder, sums[filename], urls, timeout, progress))

    return paths
