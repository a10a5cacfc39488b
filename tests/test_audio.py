"""Tests of the audio features: framing, STFT, mel filter banks, fixed length, normalisation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymbm.data.audio import (
    SAMPLE_RATE,
    MelSpectrogram,
    NormalizeFeatures,
    Spectrogram,
    feature_mean_std,
    frame_signal,
    hann_window,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    num_frames_for,
    pad_or_trim,
    stft,
    stft_reference,
)
from tinymbm.errors import DTypeError, ShapeError


def tone(frequency: float, length: int = 2048, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Return a unit-amplitude sine of ``frequency`` Hz, float32."""
    t = np.arange(length) / sample_rate
    return np.sin(2 * np.pi * frequency * t).astype(np.float32)


# ---------------------------------------------------------------- window and frames


def test_hann_window_formula():
    n_fft = 16
    n = np.arange(n_fft)
    expected = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    np.testing.assert_allclose(hann_window(n_fft), expected)


def test_hann_window_periodic():
    window = hann_window(8)
    assert window[0] == 0.0
    assert window[4] == pytest.approx(1.0)


FRAME_CASES = [
    # (L, n_fft, hop, expected T)
    (256, 256, 128, 1),
    (383, 256, 128, 1),
    (384, 256, 128, 2),
    (1000, 256, 128, 6),
    (100, 256, 128, 1),
    (50, 16, 8, 5),
    (50, 16, 16, 3),
]


@pytest.mark.parametrize("length, n_fft, hop, expected", FRAME_CASES)
def test_frame_signal_count(length, n_fft, hop, expected):
    frames = frame_signal(np.ones(length), n_fft, hop)
    assert frames.shape == (expected, n_fft), (length, n_fft, hop)
    assert num_frames_for(length, n_fft, hop) == expected, (length, n_fft, hop)


def test_frame_signal_content():
    x = np.arange(40, dtype=np.float64)
    frames = frame_signal(x, n_fft=8, hop_length=4)
    for t in range(frames.shape[0]):
        np.testing.assert_array_equal(frames[t], x[t * 4 : t * 4 + 8], err_msg=f"frame {t}")


def test_frame_signal_short_clip_zero_padded():
    frames = frame_signal(np.ones(5), n_fft=8, hop_length=4)
    np.testing.assert_array_equal(frames, [[1, 1, 1, 1, 1, 0, 0, 0]])


# ---------------------------------------------------------------- STFT


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("length, n_fft, hop", [(50, 16, 8), (37, 8, 3), (10, 16, 4)])
def test_stft_matches_reference(seed, length, n_fft, hop):
    x = np.random.default_rng(seed).standard_normal(length)
    np.testing.assert_allclose(
        stft(x, n_fft, hop),
        stft_reference(x, n_fft, hop),
        atol=1e-10,
        err_msg=f"seed={seed} L={length} n_fft={n_fft} hop={hop}",
    )


def test_stft_shape_dtype():
    spectrum = stft(np.zeros(1000), n_fft=256, hop_length=128)
    assert spectrum.shape == (6, 129)
    assert spectrum.dtype == np.complex128


@pytest.mark.parametrize("bin_index", [4, 20, 64, 100])
def test_stft_tone_peaks_at_bin(bin_index):
    frequency = bin_index * SAMPLE_RATE / 256
    magnitude = np.abs(stft(tone(frequency), n_fft=256, hop_length=128))
    peaks = magnitude.argmax(axis=1)
    assert np.all(peaks == bin_index), (frequency, peaks)


def test_stft_tone_between_bins_peaks_at_nearest():
    # 1010 Hz lies between bins 32 (1000 Hz) and 33 (1031.25 Hz), nearer 32.
    magnitude = np.abs(stft(tone(1010.0), n_fft=256, hop_length=128))
    assert np.all(magnitude.argmax(axis=1) == 32)


def test_stft_custom_window():
    x = np.random.default_rng(3).standard_normal(64)
    window = np.ones(16)
    np.testing.assert_allclose(
        stft(x, 16, 8, window), np.fft.rfft(frame_signal(x, 16, 8), axis=1), atol=1e-12
    )


def test_stft_window_wrong_length():
    with pytest.raises(ShapeError, match=r"window must have shape \(16,\)"):
        stft(np.zeros(64), 16, 8, window=np.ones(15))


BAD_WAVEFORMS = [
    (np.zeros((2, 100)), ShapeError, "1-D waveform"),
    (np.zeros(100, dtype=np.complex64), DTypeError, "real-valued"),
    (np.array(["a", "b"]), DTypeError, "real-valued"),
]


@pytest.mark.parametrize("waveform, error, message", BAD_WAVEFORMS)
def test_stft_bad_waveform(waveform, error, message):
    with pytest.raises(error, match=message):
        stft(waveform)


@pytest.mark.parametrize("argument", [{"n_fft": 0}, {"hop_length": -1}, {"n_fft": 2.5}])
def test_stft_bad_sizes(argument):
    with pytest.raises(ValueError, match="must be a positive int"):
        stft(np.zeros(100), **argument)


# ---------------------------------------------------------------- Spectrogram


def test_spectrogram_shape_dtype():
    features = Spectrogram()(tone(440.0, 3000))
    assert features.shape == (1 + (3000 - 256) // 128, 129)
    assert features.dtype == np.float32


def test_spectrogram_log_formula():
    x = tone(440.0, 1000)
    magnitude = np.abs(stft(x))
    np.testing.assert_allclose(Spectrogram(eps=1e-6)(x), np.log(magnitude + 1e-6), rtol=1e-5)


def test_spectrogram_log1p_formula():
    x = tone(440.0, 1000)
    magnitude = np.abs(stft(x))
    np.testing.assert_allclose(Spectrogram(log="log1p")(x), np.log1p(magnitude), rtol=1e-5)


def test_spectrogram_power_without_log():
    x = tone(440.0, 1000)
    np.testing.assert_allclose(Spectrogram(power=2.0, log=None)(x), np.abs(stft(x)) ** 2, rtol=1e-5)


SILENCE_CASES = [("log", np.log(1e-6)), ("log1p", 0.0), (None, 0.0)]


@pytest.mark.parametrize("log, silence", SILENCE_CASES)
def test_spectrogram_pads_with_silence(log, silence):
    features = Spectrogram(log=log, num_frames=10, align="start")(tone(440.0, 512))
    assert features.shape == (10, 129)
    np.testing.assert_allclose(features[3:], silence, rtol=1e-6, err_msg=f"log={log}")


def test_spectrogram_default_pads_at_start():
    x = tone(440.0, 512)
    features = Spectrogram(num_frames=10)(x)
    np.testing.assert_allclose(features[:7], np.log(1e-6), rtol=1e-6)
    np.testing.assert_allclose(features[7:], Spectrogram()(x), rtol=1e-6)


def test_spectrogram_trims_long_clip():
    features = Spectrogram(num_frames=4)(tone(440.0, 4000))
    assert features.shape == (4, 129)


@pytest.mark.parametrize(
    "argument, message",
    [
        ({"log": "db"}, "log must be one of"),
        ({"eps": 0.0}, "eps must be > 0"),
        ({"align": "left"}, "align must be one of"),
        ({"num_frames": 0}, "positive int"),
    ],
)
def test_spectrogram_bad_arguments(argument, message):
    with pytest.raises(ValueError, match=message):
        Spectrogram(**argument)


# ---------------------------------------------------------------- pad_or_trim


PAD_CASES = [
    # (T, num_frames, align, expected first source row per output row, -1 for padding)
    (3, 5, "start", [0, 1, 2, -1, -1]),
    (3, 5, "end", [-1, -1, 0, 1, 2]),
    (3, 6, "center", [-1, 0, 1, 2, -1, -1]),
    (5, 3, "start", [0, 1, 2]),
    (5, 3, "end", [2, 3, 4]),
    (6, 3, "center", [1, 2, 3]),
    (4, 4, "center", [0, 1, 2, 3]),
]


@pytest.mark.parametrize("length, num_frames, align, rows", PAD_CASES)
def test_pad_or_trim_layout(length, num_frames, align, rows):
    features = np.arange(length, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    result = pad_or_trim(features, num_frames, pad_value=-1.0, align=align)
    assert result.shape == (num_frames, 2)
    np.testing.assert_array_equal(result[:, 0], rows, err_msg=f"T={length} align={align}")


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(1, 30),
    num_frames=st.integers(1, 30),
    align=st.sampled_from(["start", "center", "end"]),
)
def test_pad_or_trim_keeps_overlap(length, num_frames, align):
    features = np.arange(1, length + 1, dtype=np.float64)[:, None]
    result = pad_or_trim(features, num_frames, pad_value=0.0, align=align)
    kept = result[result[:, 0] > 0, 0]
    assert result.shape == (num_frames, 1)
    assert kept.size == min(length, num_frames)
    assert np.all(np.diff(kept) == 1), (length, num_frames, align)


def test_pad_or_trim_keeps_dtype():
    assert pad_or_trim(np.zeros((2, 3), np.float32), 5).dtype == np.float32


def test_pad_or_trim_rejects_1d():
    with pytest.raises(ShapeError, match=r"expected a \(T, F\) array"):
        pad_or_trim(np.zeros(5), 3)


# ---------------------------------------------------------------- mel scale


def test_mel_of_1000_hz_is_1000():
    # The HTK constants put 1000 Hz at 999.99 mel, not exactly 1000.
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.02)


def test_mel_round_trip():
    frequencies = np.array([0.0, 100.0, 1000.0, 3999.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(frequencies)), frequencies, atol=1e-9)


def test_mel_filterbank_shape():
    assert mel_filterbank(40, 256, 8000).shape == (40, 129)


def test_mel_filterbank_peaks_at_most_one():
    filters = mel_filterbank(40, 256, 8000)
    assert np.all(filters.max(axis=1) <= 1.0)
    assert np.all(filters.min() >= 0.0)


def test_mel_filterbank_every_filter_nonempty():
    assert np.all(mel_filterbank(40, 256, 8000).sum(axis=1) > 0)


def test_mel_filterbank_centres_ascend():
    peaks = mel_filterbank(40, 256, 8000).argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0)


def test_mel_filterbank_triangle_value():
    # One filter spanning 0-2000-4000 Hz: bin 16 sits at 500 Hz, a quarter of the way up.
    filters = mel_filterbank(1, 256, 8000)
    edges = mel_to_hz(np.linspace(0, hz_to_mel(4000.0), 3))
    expected = 500.0 / edges[1]
    assert filters[0, 16] == pytest.approx(expected)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"n_mels": 128, "n_fft": 64}, "cover no STFT bin"),
        ({"f_max": 5000.0}, "f_max"),
        ({"f_min": 3000.0, "f_max": 2000.0}, "f_min"),
        ({"n_mels": 0}, "positive int"),
    ],
)
def test_mel_filterbank_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        mel_filterbank(**{"n_mels": 40, "n_fft": 256, "sample_rate": 8000, **arguments})


def test_mel_spectrogram_default_shape():
    features = MelSpectrogram()(tone(440.0, 3000))
    assert features.shape == (48, 40)
    assert features.dtype == np.float32


@pytest.mark.parametrize("frequency", [300.0, 1000.0, 2500.0])
def test_mel_spectrogram_tone_peaks_at_band(frequency):
    transform = MelSpectrogram(num_frames=None)
    band = transform(tone(frequency)).mean(axis=0).argmax()
    centres = mel_to_hz(np.linspace(0, hz_to_mel(4000.0), transform.n_mels + 2))[1:-1]
    assert abs(centres[band] - frequency) <= np.diff(centres).max(), (frequency, centres[band])


def test_mel_spectrogram_formula():
    transform = MelSpectrogram(num_frames=None, eps=1e-6)
    x = tone(700.0, 1500)
    expected = np.log(np.abs(stft(x)) @ transform.filters.T + 1e-6)
    np.testing.assert_allclose(transform(x), expected, rtol=1e-5)


# ---------------------------------------------------------------- normalisation


def test_feature_mean_std_uses_every_frame():
    rng = np.random.default_rng(4)
    sequences = [rng.standard_normal((length, 3)) for length in (2, 5, 9)]
    mean, std = feature_mean_std(sequences)
    frames = np.concatenate(sequences)
    np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(std, frames.std(axis=0), rtol=1e-5)


def test_feature_mean_std_array_input():
    sequences = np.random.default_rng(5).standard_normal((4, 6, 3))
    mean, std = feature_mean_std(sequences)
    np.testing.assert_allclose(mean, sequences.reshape(-1, 3).mean(axis=0), rtol=1e-5)
    assert mean.dtype == np.float32
    assert std.shape == (3,)


def test_feature_mean_std_constant_feature():
    _, std = feature_mean_std(np.ones((2, 4, 3)), eps=1e-3)
    np.testing.assert_allclose(std, 1e-3)


def test_feature_mean_std_mixed_widths():
    with pytest.raises(ShapeError, match="share F"):
        feature_mean_std([np.zeros((2, 3)), np.zeros((2, 4))])


def test_feature_mean_std_empty():
    with pytest.raises(ValueError, match="at least one sequence"):
        feature_mean_std([])


def test_normalize_features_standardises():
    rng = np.random.default_rng(6)
    sequences = 3.0 + 2.0 * rng.standard_normal((20, 8, 5))
    normalized = NormalizeFeatures.fit(sequences)(sequences)
    np.testing.assert_allclose(normalized.reshape(-1, 5).mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalized.reshape(-1, 5).std(axis=0), 1.0, rtol=1e-4)
    assert normalized.dtype == np.float32


def test_normalize_features_wrong_width():
    transform = NormalizeFeatures(np.zeros(5), np.ones(5))
    with pytest.raises(ShapeError, match="mean and std have 5 features"):
        transform(np.zeros((3, 4)))


def test_normalize_features_bad_std():
    with pytest.raises(ValueError, match="std must be > 0"):
        NormalizeFeatures(np.zeros(2), np.array([1.0, 0.0]))
