"""Tests of the FSDD reader: WAV decoding, the take split, data resolution and the download.

Downloads are served by an http.server bound to 127.0.0.1 from archives the
tests build, so no test reaches outside the machine.
"""

import hashlib
import http.server
import io
import os
import tarfile
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import real_data_dir

from tinymbm.data import fsdd
from tinymbm.data.download import ChecksumError, DownloadError
from tinymbm.data.fsdd import (
    FSDD,
    TEST_TAKES,
    WavFormatError,
    download_recordings,
    load_checksums,
    parse_filename,
    read_wav,
)
from tinymbm.data.mnist import DatasetNotFoundError

# ---------------------------------------------------------------- helpers


def wav_bytes(samples, rate: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    """Encode integer samples as a WAV file with the given format."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        dtype = {1: np.uint8, 2: "<i2", 4: "<i4"}[width]
        writer.writeframes(np.asarray(samples).astype(dtype).tobytes())
    return buffer.getvalue()


def write_wav(path: Path, samples, **format_options) -> Path:
    path.write_bytes(wav_bytes(samples, **format_options))
    return path


def recording_samples(digit: int, take: int) -> np.ndarray:
    """Distinct, repeatable samples for one fake recording."""
    rng = np.random.default_rng(100 * digit + take)
    return rng.integers(-3000, 3000, size=400 + 10 * take)


def make_recordings(folder: Path, digits=(0, 1), speakers=("ann", "bob"), takes=range(8)) -> Path:
    """Write fake FSDD recordings into ``folder`` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for digit in digits:
        for speaker in speakers:
            for take in takes:
                write_wav(folder / f"{digit}_{speaker}_{take}.wav", recording_samples(digit, take))
    return folder


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No TINYMBM_DATA, an empty user cache and no proxies: only what a test sets up is found."""
    monkeypatch.delenv("TINYMBM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    return tmp_path


# ---------------------------------------------------------------- read_wav


def test_read_wav_values(tmp_path):
    samples = np.array([0, 1, -1, 16384, -32768, 32767])
    waveform = read_wav(write_wav(tmp_path / "a.wav", samples))
    np.testing.assert_array_equal(waveform, samples / 32768.0)


def test_read_wav_dtype_and_range(tmp_path):
    waveform = read_wav(write_wav(tmp_path / "a.wav", [-32768, 32767]))
    assert waveform.dtype == np.float32
    assert waveform.min() == -1.0
    assert waveform.max() < 1.0


def test_read_wav_empty_data(tmp_path):
    assert read_wav(write_wav(tmp_path / "a.wav", np.zeros(0))).shape == (0,)


def test_read_wav_truncated(tmp_path):
    path = write_wav(tmp_path / "a.wav", np.arange(100))
    path.write_bytes(path.read_bytes()[:-60])
    with pytest.raises(WavFormatError, match="declares 100 frames but the file contains 70"):
        read_wav(path)


def test_read_wav_odd_byte_count(tmp_path):
    path = write_wav(tmp_path / "a.wav", np.arange(10))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(WavFormatError, match="truncated"):
        read_wav(path)


NOT_WAV_CASES = [
    ("text", b"digit,label\n1,2\n"),
    ("empty", b""),
    ("riff_not_wave", b"RIFF\x24\x00\x00\x00AVI LIST"),
]


@pytest.mark.parametrize("case, content", NOT_WAV_CASES)
def test_read_wav_not_wav(tmp_path, case, content):
    path = tmp_path / "0_ann_1.wav"
    path.write_bytes(content)
    with pytest.raises(WavFormatError, match="not a readable WAV file") as info:
        read_wav(path)
    assert str(path) in str(info.value), case


WRONG_FORMAT_CASES = [
    # (format options, text the message must contain)
    ({"rate": 16000}, "found 16000 Hz, 1 channel(s), 16-bit"),
    ({"channels": 2}, "found 8000 Hz, 2 channel(s), 16-bit"),
    ({"width": 1}, "found 8000 Hz, 1 channel(s), 8-bit"),
    ({"width": 4}, "found 8000 Hz, 1 channel(s), 32-bit"),
]


@pytest.mark.parametrize("options, found", WRONG_FORMAT_CASES)
def test_read_wav_wrong_format(tmp_path, options, found):
    path = write_wav(tmp_path / "a.wav", np.zeros(20, dtype=np.int64), **options)
    with pytest.raises(WavFormatError) as info:
        read_wav(path)
    message = str(info.value)
    assert str(path) in message, options
    assert found in message, options
    assert "expected 8000 Hz, 1 channel, 16-bit PCM" in message, options


# ---------------------------------------------------------------- names and split


NAME_CASES = [
    ("7_jackson_32.wav", (7, "jackson", 32)),
    ("0_george_0.wav", (0, "george", 0)),
    ("9_yweweler_49.wav", (9, "yweweler", 49)),
]


@pytest.mark.parametrize("name, expected", NAME_CASES)
def test_parse_filename(name, expected):
    assert parse_filename(name) == expected


@pytest.mark.parametrize("name", ["10_jackson_1.wav", "7_jackson.wav", "7-jackson-3.wav", "a.wav"])
def test_parse_filename_rejects(name):
    with pytest.raises(ValueError, match="does not have the form"):
        parse_filename(name)


def test_split_sizes(tmp_path):
    folder = make_recordings(tmp_path / "rec")
    assert len(FSDD(folder, train=True)) == 2 * 2 * 3
    assert len(FSDD(folder, train=False)) == 2 * 2 * 5


def test_split_by_take(tmp_path):
    folder = make_recordings(tmp_path / "rec")
    train, test = FSDD(folder, train=True), FSDD(folder, train=False)
    assert set(train.takes.tolist()) == {5, 6, 7}
    assert set(test.takes.tolist()) == set(TEST_TAKES)
    assert not set(train.files) & set(test.files)


def test_dataset_attributes(tmp_path):
    folder = make_recordings(tmp_path / "rec")
    dataset = FSDD(folder, train=True)
    assert dataset.files[0] == "0_ann_5.wav"
    assert dataset.targets.dtype == np.int64
    assert dataset.targets.tolist() == [0] * 6 + [1] * 6
    assert dataset.speakers == (["ann"] * 3 + ["bob"] * 3) * 2
    assert all(recording.dtype == np.float32 for recording in dataset.recordings)
    np.testing.assert_array_equal(dataset.recordings[0], recording_samples(0, 5) / 32768.0)


def test_getitem_returns_waveform_and_label(tmp_path):
    dataset = FSDD(make_recordings(tmp_path / "rec"), train=False)
    waveform, label = dataset[len(dataset) - 1]
    assert isinstance(label, int)
    assert label == 1
    assert waveform.shape == (400 + 10 * 4,)


def test_getitem_applies_transform(tmp_path):
    dataset = FSDD(make_recordings(tmp_path / "rec"), transform=lambda w: w.shape[0])
    assert dataset[0] == (450, 0)


def test_ignores_other_files(tmp_path):
    folder = make_recordings(tmp_path / "rec")
    (folder / "README.md").write_text("not audio")
    assert len(FSDD(folder)) == 12


def test_rejects_badly_named_wav(tmp_path):
    folder = make_recordings(tmp_path / "rec")
    write_wav(folder / "hello.wav", np.zeros(10))
    with pytest.raises(ValueError, match="'hello.wav' does not have the form") as info:
        FSDD(folder)
    assert str(folder) in str(info.value)


def test_rejects_non_wav_recording(tmp_path):
    folder = make_recordings(tmp_path / "rec")
    (folder / "3_ann_7.wav").write_text("not audio")
    with pytest.raises(WavFormatError, match="3_ann_7.wav: not a readable WAV file"):
        FSDD(folder)


def test_missing_split(isolated):
    folder = make_recordings(isolated / "rec", takes=range(5))
    with pytest.raises(DatasetNotFoundError, match="contains no train recordings"):
        FSDD(folder, train=True)


# ---------------------------------------------------------------- resolution order


@pytest.mark.parametrize("layout", ["", "recordings", "fsdd/recordings"])
def test_root_layouts(isolated, layout):
    root = isolated / "data"
    folder = make_recordings(root / layout)
    dataset = FSDD(root)
    assert dataset.folder == folder, layout
    assert dataset.source == "root", layout


def test_env_var_layout(isolated, monkeypatch):
    folder = make_recordings(isolated / "data" / "fsdd" / "recordings")
    monkeypatch.setenv("TINYMBM_DATA", str(isolated / "data"))
    dataset = FSDD()
    assert dataset.folder == folder
    assert dataset.source == "TINYMBM_DATA"


def test_cache_layout(isolated):
    folder = make_recordings(isolated / "cache" / "tinymbm" / "fsdd" / "recordings")
    dataset = FSDD()
    assert dataset.folder == folder
    assert dataset.source == "cache"


def test_root_before_env_before_cache(isolated, monkeypatch):
    make_recordings(isolated / "cache" / "tinymbm" / "fsdd" / "recordings")
    env_folder = make_recordings(isolated / "env" / "fsdd" / "recordings")
    root_folder = make_recordings(isolated / "root")
    monkeypatch.setenv("TINYMBM_DATA", str(isolated / "env"))
    assert FSDD(isolated / "root").folder == root_folder
    assert FSDD(isolated / "empty").folder == env_folder
    monkeypatch.delenv("TINYMBM_DATA")
    assert FSDD().source == "cache"


def test_missing_data_message(isolated):
    with pytest.raises(DatasetNotFoundError) as info:
        FSDD(isolated / "nowhere")
    message = str(info.value)
    for place in [
        isolated / "nowhere" / "fsdd" / "recordings",
        isolated / "nowhere",
        isolated / "cache" / "tinymbm" / "fsdd" / "recordings",
    ]:
        assert str(place) in message, place
    assert "$TINYMBM_DATA is not set" in message
    assert "download=True" in message


def test_missing_data_is_file_not_found(isolated):
    with pytest.raises(FileNotFoundError):
        FSDD()


# ---------------------------------------------------------------- download


ARCHIVE_TOP = "free-spoken-digit-dataset-1.0.10"


def build_archive(recordings: dict[str, bytes], extra_members=()) -> bytes:
    """Build a .tar.gz laid out like the GitHub release archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        members = [(f"{ARCHIVE_TOP}/README.md", b"readme")]
        members += [(f"{ARCHIVE_TOP}/recordings/{name}", data) for name, data in recordings.items()]
        for name, data in [*members, *extra_members]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def fake_recordings() -> dict[str, bytes]:
    return {
        f"{digit}_ann_{take}.wav": wav_bytes(recording_samples(digit, take))
        for digit in (0, 1)
        for take in (0, 5, 6)
    }


def download_message(error: DownloadError) -> str:
    """Return the message a DownloadError was raised with.

    str() is not used because OSError.__str__ shows the ``filename`` attribute
    in place of the message.
    """
    return error.args[0]


def sums_of(recordings: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in recordings.items()}


class ArchiveServer:
    """Serve byte strings on 127.0.0.1, each with a Content-Length that may overstate it."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, int]] = {}
        routes = self.routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, length = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval makes shutdown() return quickly between tests.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def add(self, path: str, body: bytes, length: int | None = None) -> str:
        self.routes[path] = (body, len(body) if length is None else length)
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    archive_server = ArchiveServer()
    yield archive_server
    archive_server.close()


def test_download_good_archive(isolated, server):
    recordings = fake_recordings()
    url = server.add("/good.tar.gz", build_archive(recordings))
    folder = download_recordings(isolated / "fsdd", url, sums_of(recordings), progress=False)
    assert folder == isolated / "fsdd" / "recordings"
    assert sorted(os.listdir(folder)) == sorted(recordings)
    assert (folder / "1_ann_6.wav").read_bytes() == recordings["1_ann_6.wav"]


def test_download_leaves_no_temporary_files(isolated, server):
    recordings = fake_recordings()
    url = server.add("/good.tar.gz", build_archive(recordings))
    download_recordings(isolated / "fsdd", url, sums_of(recordings), progress=False)
    assert os.listdir(isolated / "fsdd") == ["recordings"]


def test_download_archive_sha256_checked(isolated, server):
    recordings = fake_recordings()
    archive = build_archive(recordings)
    url = server.add("/good.tar.gz", archive)
    good = hashlib.sha256(archive).hexdigest()
    download_recordings(isolated / "a", url, sums_of(recordings), good, progress=False)
    with pytest.raises(ChecksumError, match="failed verification"):
        download_recordings(isolated / "b", url, sums_of(recordings), "0" * 64, progress=False)
    assert not (isolated / "b" / "recordings").exists()


def test_download_ignores_unsafe_members(isolated, server):
    recordings = fake_recordings()
    evil = wav_bytes([1, 2, 3])
    extra = [
        ("../0_ann_7.wav", evil),
        (f"{ARCHIVE_TOP}/recordings/../../0_ann_8.wav", evil),
        ("/tmp/recordings/0_ann_9.wav", evil),
    ]
    url = server.add("/evil.tar.gz", build_archive(recordings, extra))
    folder = download_recordings(isolated / "x" / "fsdd", url, sums_of(recordings), progress=False)
    assert sorted(os.listdir(folder)) == sorted(recordings)
    assert sorted(os.listdir(isolated / "x")) == ["fsdd"]
    assert not Path("/tmp/recordings/0_ann_9.wav").exists()


def test_download_corrupt_recording(isolated, server):
    recordings = fake_recordings()
    sums = sums_of(recordings)
    recordings["0_ann_5.wav"] = wav_bytes(np.zeros(400))
    url = server.add("/corrupt.tar.gz", build_archive(recordings))
    with pytest.raises(ChecksumError, match="0_ann_5.wav in .* failed verification"):
        download_recordings(isolated / "fsdd", url, sums, progress=False)
    assert os.listdir(isolated / "fsdd") == []


def test_download_truncated_transfer(isolated, server):
    recordings = fake_recordings()
    archive = build_archive(recordings)
    url = server.add("/short.tar.gz", archive[: len(archive) // 2], length=len(archive))
    with pytest.raises(DownloadError) as info:
        download_recordings(isolated / "fsdd", url, sums_of(recordings), progress=False)
    assert "truncated" in download_message(info.value)
    assert os.listdir(isolated / "fsdd") == []


def test_download_truncated_archive(isolated, server):
    recordings = fake_recordings()
    archive = build_archive(recordings)
    url = server.add("/cut.tar.gz", archive[: len(archive) // 2])
    with pytest.raises(DownloadError) as info:
        download_recordings(isolated / "fsdd", url, sums_of(recordings), progress=False)
    assert "truncated or corrupt archive" in download_message(info.value)
    assert os.listdir(isolated / "fsdd") == []


def test_download_not_gzip(isolated, server):
    url = server.add("/page.html", b"<html>not found</html>")
    with pytest.raises(DownloadError) as info:
        download_recordings(isolated / "fsdd", url, {"0_ann_0.wav": "0" * 64}, progress=False)
    assert "truncated or corrupt archive" in download_message(info.value)


def test_download_missing_recording(isolated, server):
    recordings = fake_recordings()
    sums = {**sums_of(recordings), "9_ann_0.wav": "0" * 64}
    url = server.add("/good.tar.gz", build_archive(recordings))
    with pytest.raises(DownloadError) as info:
        download_recordings(isolated / "fsdd", url, sums, progress=False)
    assert "lacks 1 of 7 recordings, for example 9_ann_0.wav" in download_message(info.value)


def test_download_http_error(isolated, server):
    url = server.add("/exists", b"")
    with pytest.raises(DownloadError) as info:
        download_recordings(isolated / "fsdd", url + "-not", {}, progress=False)
    assert "404" in download_message(info.value)


def test_download_keeps_existing_recordings(isolated):
    folder = make_recordings(isolated / "fsdd" / "recordings")
    assert download_recordings(isolated / "fsdd", "http://127.0.0.1:9/unused") == folder


def test_download_refuses_foreign_folder(isolated):
    (isolated / "fsdd" / "recordings").mkdir(parents=True)
    (isolated / "fsdd" / "recordings" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        download_recordings(isolated / "fsdd", "http://127.0.0.1:9/unused")


def test_dataset_download_into_root(isolated, server, monkeypatch):
    recordings = fake_recordings()
    sums_file = isolated / "SHA256SUMS"
    sums_file.write_text(
        "".join(f"{digest}  recordings/{name}\n" for name, digest in sums_of(recordings).items())
    )
    monkeypatch.setattr(fsdd, "CHECKSUMS_FILE", sums_file)
    url = server.add("/good.tar.gz", build_archive(recordings))
    dataset = FSDD(isolated / "root", train=True, download=True, url=url)
    assert dataset.source == "download"
    assert dataset.folder == isolated / "root" / "fsdd" / "recordings"
    assert len(dataset) == 4


def test_dataset_download_failure_lists_places(isolated, server):
    url = server.add("/exists", b"")
    with pytest.raises(DatasetNotFoundError) as info:
        FSDD(isolated / "root", download=True, url=url + "-not")
    message = str(info.value)
    assert "404" in message
    assert str(isolated / "root" / "fsdd" / "recordings") in message


# ---------------------------------------------------------------- shipped sums and real data


def test_shipped_checksums_cover_dataset():
    checksums = load_checksums()
    assert len(checksums) == 3000
    assert all(fsdd.FILENAME_PATTERN.match(name) for name in checksums)


def test_shipped_checksums_match_real_files():
    folder = real_data_dir("fsdd") / "recordings"
    checksums = load_checksums()
    mismatched = [
        name
        for name, digest in checksums.items()
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest
    ]
    assert mismatched == []


@pytest.fixture(scope="module")
def real_splits():
    real_data_dir("fsdd")
    return FSDD(train=True), FSDD(train=False)


def test_real_split_sizes(real_splits):
    train, test = real_splits
    assert len(train) == 2700
    assert len(test) == 300


def test_real_split_per_digit(real_splits):
    train, test = real_splits
    assert np.bincount(train.targets).tolist() == [270] * 10
    assert np.bincount(test.targets).tolist() == [30] * 10


def test_real_speakers(real_splits):
    train, test = real_splits
    speakers = {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"}
    assert set(train.speakers) == speakers
    assert set(test.speakers) == speakers


def test_real_waveforms(real_splits):
    train, _ = real_splits
    lengths = [recording.shape[0] for recording in train.recordings]
    assert all(recording.dtype == np.float32 for recording in train.recordings)
    assert min(lengths) >= 1148
    assert max(lengths) <= 18262
    assert all(-1.0 <= recording.min() and recording.max() < 1.0 for recording in train.recordings)
