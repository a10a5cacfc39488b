"""The Free Spoken Digit Dataset (FSDD): 3,000 recordings of six speakers saying 0-9.

Each recording is a WAV file named ``{digit}_{speaker}_{take}.wav``, for example
``7_jackson_32.wav``: speaker "jackson" saying "seven", take 32. Every file is
linear PCM, 8,000 Hz, mono, 16-bit signed little-endian, 0.14 s to 2.28 s
long. Each of the six speakers recorded 50 takes (0-49) of each digit.

The dataset's own split is by take: takes 0-4 are the test set (300 files),
takes 5-49 the training set (2,700 files). All six voices appear in both
parts, so test accuracy measures new takes of known speakers.

Samples are read with the standard library's ``wave`` module and scaled to
float32 in [-1, 1) as x = s / 32768 for the 16-bit integer s.

Where the recordings are looked for, in order (the first folder that contains a
file named like a recording wins):

1. ``root``, when given: ``root/fsdd/recordings``, ``root/recordings``, then
   ``root`` itself;
2. the environment variable ``TINYMBM_DATA``, in the same three layouts;
3. the user cache, ``$XDG_CACHE_HOME/tinymbm/fsdd/recordings``, by default
   ``~/.cache/tinymbm/fsdd/recordings``;
4. with ``download=True`` only: the release archive of the upstream GitHub
   repository, extracted into ``root/fsdd/recordings`` when ``root`` is given,
   else into the user cache.

The data is licensed CC BY-SA 4.0 by its authors (Zohar Jackson and the
other speakers); cite the repository Jakobovski/free-spoken-digit-dataset,
release v1.0.10.
"""

import gzip
import hashlib
import http.client
import logging
import os
import re
import shutil
import ssl
import tarfile
import tempfile
import urllib.error
import urllib.request
import wave
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tinymbm.data.datasets import Dataset
from tinymbm.data.download import ChecksumError, DownloadError
from tinymbm.data.mnist import DATA_ENV_VAR, DatasetNotFoundError, cache_dir

logger = logging.getLogger(__name__)

SAMPLE_RATE = 8000
"""Sample rate of every recording, in Hz."""

NUM_CHANNELS = 1
SAMPLE_WIDTH = 2
"""Bytes per sample (16-bit PCM)."""

TEST_TAKES = range(5)
"""Takes 0-4 of every (digit, speaker) pair form the test set, and takes 5-49 the training set."""

RELEASE = "v1.0.10"
ARCHIVE_URL = (
    "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
)
# NOTE: GitHub builds tag archives on request and does not publish their
# SHA-256, so the archive's bytes are not pinned. Each extracted WAV is
# checked instead against the per-file sums shipped beside this module.
ARCHIVE_SHA256: str | None = None

CHECKSUMS_FILE = Path(__file__).with_name("fsdd_sha256sums.txt")
"""SHA-256 of each of the 3,000 v1.0.10 recordings, as lines ``<hex>  recordings/<name>``."""

FILENAME_PATTERN = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[A-Za-z]+)_(?P<take>[0-9]+)\.wav$")


class WavFormatError(ValueError):
    """A recording is not a readable 8 kHz mono 16-bit PCM WAV file (the file is named)."""


# ---------------------------------------------------------------- reading one file


def parse_filename(filename: str) -> tuple[int, str, int]:
    """Split ``{digit}_{speaker}_{take}.wav`` into (digit, speaker, take).

    Raises:
        ValueError: the name does not have that form.
    """
    match = FILENAME_PATTERN.match(filename)
    if match is None:
        raise ValueError(
            f"FSDD: file name {filename!r} does not have the form "
            "'{digit}_{speaker}_{take}.wav', for example '7_jackson_32.wav'"
        )
    return int(match["digit"]), match["speaker"], int(match["take"])


def read_wav(path: str | os.PathLike) -> np.ndarray:
    """Read an 8 kHz mono 16-bit PCM WAV file into float32 samples in [-1, 1).

    Returns:
        (L,) float32 array, x[n] = s[n] / 32768 for the 16-bit samples s.

    Raises:
        WavFormatError: the file is not a WAV file, is truncated (its header
            declares more frames than the file contains) or has another sample
            rate, channel count, sample width or compression.
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as reader:
            channels = reader.getnchannels()
            sample_width = reader.getsampwidth()
            rate = reader.getframerate()
            compression = reader.getcomptype()
            declared_frames = reader.getnframes()
            data = reader.readframes(declared_frames)
    except (wave.Error, EOFError) as error:
        raise WavFormatError(f"{path}: not a readable WAV file ({error})") from error

    found = (rate, channels, sample_width, compression)
    if found != (SAMPLE_RATE, NUM_CHANNELS, SAMPLE_WIDTH, "NONE"):
        raise WavFormatError(
            f"{path}: expected {SAMPLE_RATE} Hz, {NUM_CHANNELS} channel, "
            f"{8 * SAMPLE_WIDTH}-bit PCM, found {rate} Hz, {channels} channel(s), "
            f"{8 * sample_width}-bit, compression {compression!r}"
        )

    frames_read = len(data) // SAMPLE_WIDTH
    if frames_read < declared_frames or len(data) % SAMPLE_WIDTH:
        raise WavFormatError(
            f"{path}: truncated WAV file: the header declares {declared_frames} frames "
            f"but the file contains {frames_read}"
        )

    samples = np.frombuffer(data, dtype="<i2")
    return (samples.astype(np.float32) / np.float32(32768.0)).astype(np.float32)


# ---------------------------------------------------------------- finding the data


def default_cache_dir() -> Path:
    """Return the FSDD cache folder, by default ``~/.cache/tinymbm/fsdd``."""
    return cache_dir() / "fsdd"


def _contains_recordings(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    return any(FILENAME_PATTERN.match(entry.name) for entry in os.scandir(folder))


def candidate_folders(root: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """Return the folders looked in, in order, each with its origin.

    The origin is "root", "TINYMBM_DATA" or "cache".
    """
    candidates = []

    def add_layouts(base: Path, origin: str) -> None:
        for folder in (base / "fsdd" / "recordings", base / "recordings", base):
            candidates.append((folder, origin))

    if root is not None:
        add_layouts(Path(root).expanduser(), "root")
    env_value = os.environ.get(DATA_ENV_VAR, "")
    if env_value:
        add_layouts(Path(env_value).expanduser(), DATA_ENV_VAR)
    candidates.append((default_cache_dir() / "recordings", "cache"))
    return candidates


def find_recordings(root: str | os.PathLike | None = None) -> tuple[Path, str] | None:
    """Return the first (folder, origin) that contains FSDD recordings, or None."""
    for folder, origin in candidate_folders(root):
        if _contains_recordings(folder):
            return folder, origin
    return None


def _download_target(root: str | os.PathLike | None) -> Path:
    """Return the folder that receives ``recordings/`` on download: ``root/fsdd`` or the cache."""
    return default_cache_dir() if root is None else Path(root).expanduser() / "fsdd"


def _not_found_message(root: str | os.PathLike | None, error: DownloadError | None) -> str:
    lines = [
        "FSDD not found: no folder contains files named '{digit}_{speaker}_{take}.wav'. Looked in:"
    ]
    for folder, origin in candidate_folders(root):
        state = "no such folder" if not folder.is_dir() else "no recordings"
        lines.append(f"  {folder}  (from {origin}: {state})")
    if not os.environ.get(DATA_ENV_VAR):
        lines.append(f"  ${DATA_ENV_VAR} is not set")

    if error is None:
        lines.append("No download was requested (download=False).")
    else:
        lines.append(f"The download of {error.filename} failed:")
        lines.extend(f"  {url}: {reason}" for url, reason in error.attempts)

    target = _download_target(root)
    lines.append(
        f"To fix this, set {DATA_ENV_VAR} to a folder that contains fsdd/recordings/, pass "
        f"root=, or pass download=True with network access to fetch release {RELEASE} "
        f"into {target}."
    )
    return "\n".join(lines)


# ---------------------------------------------------------------- download


def load_checksums(path: str | os.PathLike | None = None) -> dict[str, str]:
    """Read a SHA256SUMS file into {base name: hex digest}, dropping the folders of each path.

    ``path`` defaults to :data:`CHECKSUMS_FILE`.
    """
    path = CHECKSUMS_FILE if path is None else path
    checksums = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ValueError(
                f"{path}, line {number}: expected '<sha256 hex>  <path>', got {line!r}"
            )
        checksums[parts[1].lstrip("*").rsplit("/", 1)[-1]] = parts[0].lower()
    return checksums


def _fetch(url: str, destination: Path, timeout: float, progress: bool) -> str:
    """Stream ``url`` into ``destination`` and return the SHA-256 of the bytes received.

    Raises:
        DownloadError: the request failed, or fewer bytes arrived than the
            response's Content-Length announced.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "tinymbm"})
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            with (
                open(destination, "wb") as out,
                tqdm(
                    total=expected, unit="B", unit_scale=True, desc="FSDD", disable=not progress
                ) as bar,
            ):
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (
        urllib.error.URLError,
        http.client.HTTPException,
        TimeoutError,
        ConnectionError,
        ssl.SSLError,
    ) as error:
        raise DownloadError(
            f"FSDD: download of {url} failed: {error}", url, [(url, str(error))]
        ) from error

    if expected is not None and received != expected:
        reason = f"truncated: received {received} of {expected} bytes"
        raise DownloadError(f"FSDD: download of {url} is {reason}", url, [(url, reason)])
    return digest.hexdigest()


def _extract_recordings(archive: Path, destination: Path, checksums: dict[str, str]) -> None:
    """Copy the WAV files under ``*/recordings/`` of a .tar.gz into ``destination``, verified.

    Members are chosen by the last two parts of their path and written under
    their validated base name, so no member path (absolute, with ``..``, or a
    link) can place a file outside ``destination``.

    Raises:
        ChecksumError: a recording's SHA-256 differs from ``checksums``.
        DownloadError: the archive is not a complete .tar.gz, or lacks a
            recording that ``checksums`` lists.
    """
    written = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if len(parts) < 2 or parts[-2] != "recordings":
                    continue
                name = parts[-1]
                if not member.isfile() or not FILENAME_PATTERN.match(name) or name not in checksums:
                    continue

                data = tar.extractfile(member).read()
                found = hashlib.sha256(data).hexdigest()
                if found != checksums[name]:
                    raise ChecksumError(
                        f"FSDD: {name} in {archive.name} failed verification: "
                        f"SHA-256 {found}, expected {checksums[name]}",
                        name,
                        checksums[name],
                        found,
                    )
                (destination / name).write_bytes(data)
                written.add(name)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        reason = f"truncated or corrupt archive: {error}"
        raise DownloadError(
            f"FSDD: {archive} is a {reason}", archive.name, [(str(archive), reason)]
        ) from error

    missing = sorted(set(checksums) - written)
    if missing:
        reason = f"lacks {len(missing)} of {len(checksums)} recordings, for example {missing[0]}"
        raise DownloadError(
            f"FSDD: archive {archive.name} {reason}", archive.name, [(str(archive), reason)]
        )


def download_recordings(
    folder: str | os.PathLike | None = None,
    url: str | None = None,
    checksums: dict[str, str] | None = None,
    archive_sha256: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Fetch the FSDD release archive, verify it and extract its recordings.

    The archive goes to a temporary name in the target folder and is renamed
    once it is complete. Its WAV files are extracted into a temporary folder,
    each checked against ``checksums``, and the folder is renamed to
    ``recordings/`` only when every listed file is there. The archive is
    deleted afterwards, whether or not that succeeded. A ``recordings/``
    folder that already contains recordings is returned as it is.

    Args:
        folder: the folder to contain ``recordings/``. Defaults to :func:`default_cache_dir`.
        url: archive address. Defaults to :data:`ARCHIVE_URL`.
        checksums: {file name: SHA-256 hex} of the recordings to expect.
            Defaults to the 3,000 sums of :data:`CHECKSUMS_FILE`.
        archive_sha256: SHA-256 of the archive itself, checked before
            extraction when given. Defaults to :data:`ARCHIVE_SHA256`.
        timeout: seconds to wait for the connection and for each read.
        progress: show a tqdm progress bar on stderr.

    Returns:
        The ``recordings/`` folder.

    Raises:
        DownloadError: the fetch failed or was truncated, or the archive is
            corrupt or incomplete.
        ChecksumError: the archive or one of its recordings has another SHA-256.
        FileExistsError: ``recordings/`` exists, is not empty and contains no recordings.
        After a DownloadError or ChecksumError no new file is left in ``folder``.
    """
    url = ARCHIVE_URL if url is None else url
    checksums = load_checksums() if checksums is None else checksums
    archive_sha256 = ARCHIVE_SHA256 if archive_sha256 is None else archive_sha256
    target = default_cache_dir() if folder is None else Path(folder).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    recordings = target / "recordings"
    if _contains_recordings(recordings):
        return recordings
    if recordings.exists() and any(recordings.iterdir()):
        raise FileExistsError(
            f"FSDD: {recordings} is not empty and contains no FSDD recordings. "
            "Remove it or move it away, then download again."
        )

    logger.info("downloading %s to %s", url, target)
    handle, partial_name = tempfile.mkstemp(prefix=".fsdd-", suffix=".tar.gz.part", dir=target)
    os.close(handle)
    partial = Path(partial_name)
    archive = target / f"fsdd-{RELEASE}.tar.gz"
    extracting = None
    try:
        found = _fetch(url, partial, timeout, progress)
        if archive_sha256 is not None and found != archive_sha256.lower():
            raise ChecksumError(
                f"FSDD: archive from {url} failed verification: "
                f"SHA-256 {found}, expected {archive_sha256}",
                url,
                archive_sha256,
                found,
            )
        os.replace(partial, archive)

        extracting = Path(tempfile.mkdtemp(prefix=".recordings-", dir=target))
        _extract_recordings(archive, extracting, checksums)
        # mkdtemp creates the folder readable by its owner only.
        extracting.chmod(0o755)
        if recordings.exists() and not any(recordings.iterdir()):
            recordings.rmdir()
        os.replace(extracting, recordings)
        extracting = None
    finally:
        partial.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)
        if extracting is not None:
            shutil.rmtree(extracting, ignore_errors=True)
    return recordings


# ---------------------------------------------------------------- the dataset


class FSDD(Dataset):
    """The Free Spoken Digit Dataset, one split, loaded into memory.

    Args:
        root: a folder to look in first: a folder of WAV files, or one that contains
            ``recordings/`` or ``fsdd/recordings/``. With ``download=True`` the
            recordings are downloaded into ``root/fsdd/recordings``.
        train: the training split (takes 5-49, 2,700 files) if True, else the
            test split (takes 0-4, 300 files).
        download: fetch and verify the release archive when no folder contains
            recordings.
        transform: applied to each (L,) float32 waveform in ``__getitem__``,
            for example :class:`tinymbm.data.audio.MelSpectrogram`.
        url: archive address for the download. Defaults to :data:`ARCHIVE_URL`.
        timeout: seconds a download waits for the connection and for each read.

    Attributes:
        folder: the folder the recordings were read from.
        source: where that folder came from: "root", "TINYMBM_DATA", "cache"
            or "download".
        files: base names, sorted by (digit, speaker, take).
        recordings: list of (L_i,) float32 waveforms in [-1, 1). L_i varies
            from file to file.
        targets: (N,) int64 digit labels.
        speakers: list of speaker names, one per recording.
        takes: (N,) int64 take numbers.

    ``dataset[i]`` returns ``(waveform, label)`` or ``(transform(waveform), label)``
    with ``label`` an int.

    Raises:
        DatasetNotFoundError: no folder contains recordings and no download was
            requested, or the download failed. The message lists each folder
            looked in and how to get the data.
        ChecksumError: a downloaded recording has the wrong SHA-256.
        WavFormatError: a file is not an 8 kHz mono 16-bit PCM WAV, or is truncated.
        ValueError: a ``.wav`` file's name is not ``{digit}_{speaker}_{take}.wav``.
    """

    classes = tuple(str(digit) for digit in range(10))

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        download: bool = False,
        transform: Callable[[np.ndarray], Any] | None = None,
        url: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else None
        self.train = bool(train)
        self.transform = transform
        self.folder, self.source = self._locate(download, url, timeout)

        entries = []
        for entry in os.scandir(self.folder):
            if not entry.name.endswith(".wav"):
                continue
            try:
                digit, speaker, take = parse_filename(entry.name)
            except ValueError as error:
                raise ValueError(f"{self.folder}: {error}") from None
            if (take in TEST_TAKES) != self.train:
                entries.append((digit, speaker, take, entry.name))
        if not entries:
            raise DatasetNotFoundError(
                f"FSDD: {self.folder} contains no {self.split} recordings "
                f"(takes {'5-49' if self.train else '0-4'})"
            )
        entries.sort()

        self.files = [name for *_, name in entries]
        self.targets = np.array([digit for digit, *_ in entries], dtype=np.int64)
        self.speakers = [speaker for _, speaker, *_ in entries]
        self.takes = np.array([take for _, _, take, _ in entries], dtype=np.int64)
        self.recordings = [read_wav(self.folder / name) for name in self.files]

    @property
    def split(self) -> str:
        return "train" if self.train else "test"

    def _locate(self, download: bool, url: str | None, timeout: float) -> tuple[Path, str]:
        found = find_recordings(self.root)
        if found is not None:
            return found
        if not download:
            raise DatasetNotFoundError(_not_found_message(self.root, None))

        try:
            return download_recordings(
                _download_target(self.root), url, timeout=timeout
            ), "download"
        except DownloadError as error:
            raise DatasetNotFoundError(_not_found_message(self.root, error)) from error

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        waveform = self.recordings[index]
        if self.transform is not None:
            waveform = self.transform(waveform)
        return waveform, int(self.targets[index])

    def __repr__(self) -> str:
        return (
            f"FSDD(split={self.split!r}, examples={len(self)}, "
            f"folder={str(self.folder)!r}, source={self.source!r})"
        )
