"""Audio features in NumPy: short-time Fourier transform, mel filter banks, log scaling.

A recording becomes a (time, features) float32 array that an LSTM reads one
row per step. Notation: x the waveform of L samples, sr its sample rate,
n_fft the frame length in samples, hop the hop length in samples, w the
window, T the number of frames, K = n_fft // 2 + 1 the number of frequency
bins, M the number of mel bands.

Frames and the transform::

    T = 1 + (L - n_fft) // hop        (a clip shorter than n_fft is zero-padded to n_fft)
    X[t, k] = Σ_n w[n] x[t·hop + n] e^{-2πi k n / n_fft},   n = 0..n_fft-1,  k = 0..K-1

Bin k is centred on the frequency k · sr / n_fft Hz. At sr = 8000 Hz the
defaults are n_fft = 256 samples (32 ms, bins 31.25 Hz apart) and
hop = 128 samples (16 ms), so frames overlap by half.

The window is the periodic Hann window w[n] = 0.5 - 0.5 cos(2πn / n_fft),
which is what ``torch.hann_window`` returns by default.

The mel scale (the HTK formula) is mel(f) = 2595 log10(1 + f / 700). A mel
filter bank has M triangular filters whose centres are equally spaced on that
scale between f_min and f_max, and the mel spectrogram is
S[t, m] = Σ_k F[m, k] |X[t, k]|^p with F the (M, K) filter matrix and p the power
(1 for magnitude, 2 for power).

Log scaling is either log(S + eps) or log(1 + S). The first compresses
quiet bins the most; the second maps silence to exactly 0.
"""

from collections.abc import Sequence

import numpy as np

from tinymbm.errors import DTypeError, ShapeError

SAMPLE_RATE = 8000
"""Sample rate of the Free Spoken Digit Dataset, in Hz."""

_LOG_MODES = ("log", "log1p", None)
_ALIGN_MODES = ("start", "center", "end")


# ---------------------------------------------------------------- input checks


def _check_waveform(name: str, waveform: np.ndarray) -> np.ndarray:
    """Return ``waveform`` as a float64 1-D array, or raise naming what is wrong."""
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise ShapeError(
            f"{name}: expected a 1-D waveform of shape (L,), got shape {waveform.shape}"
        )
    if not (
        np.issubdtype(waveform.dtype, np.floating) or np.issubdtype(waveform.dtype, np.integer)
    ):
        raise DTypeError(
            f"{name}: expected a real-valued waveform (float or int), got dtype {waveform.dtype}"
        )
    return waveform.astype(np.float64)


def _check_positive_int(name: str, argument: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: {argument} must be a positive int, got {value!r}")
    return int(value)


# ---------------------------------------------------------------- STFT


def hann_window(n_fft: int) -> np.ndarray:
    """Return the periodic Hann window w[n] = 0.5 - 0.5 cos(2πn / n_fft), (n_fft,) float64."""
    n_fft = _check_positive_int("hann_window", "n_fft", n_fft)
    n = np.arange(n_fft)
    return 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)


def num_frames_for(length: int, n_fft: int, hop_length: int) -> int:
    """Return the frame count T = 1 + (max(L, n_fft) - n_fft) // hop of a clip of L samples."""
    return 1 + (max(length, n_fft) - n_fft) // hop_length


def frame_signal(waveform: np.ndarray, n_fft: int = 256, hop_length: int = 128) -> np.ndarray:
    """Cut a waveform into overlapping frames: frames[t, n] = x[t·hop + n].

    Args:
        waveform: (L,) samples. A clip shorter than ``n_fft`` is zero-padded to ``n_fft``.
        n_fft: frame length in samples.
        hop_length: distance between frame starts in samples.

    Returns:
        (T, n_fft) float64 array with T = 1 + (L - n_fft) // hop. Samples after
        the last whole frame are dropped.
    """
    x = _check_waveform("frame_signal", waveform)
    n_fft = _check_positive_int("frame_signal", "n_fft", n_fft)
    hop_length = _check_positive_int("frame_signal", "hop_length", hop_length)

    if x.shape[0] < n_fft:
        x = np.pad(x, (0, n_fft - x.shape[0]))

    num_frames = num_frames_for(x.shape[0], n_fft, hop_length)
    starts = np.arange(num_frames)[:, None] * hop_length
    return x[starts + np.arange(n_fft)[None, :]]


def stft(
    waveform: np.ndarray,
    n_fft: int = 256,
    hop_length: int = 128,
    window: np.ndarray | None = None,
) -> np.ndarray:
    """Compute X[t, k] = Σ_n w[n] x[t·hop + n] e^{-2πi k n / n_fft} for k = 0..n_fft // 2.

    Args:
        waveform: (L,) samples.
        n_fft: frame length in samples (256 = 32 ms at 8 kHz).
        hop_length: hop between frames in samples (128 = 16 ms at 8 kHz).
        window: (n_fft,) window w. Defaults to the periodic Hann window.

    Returns:
        (T, n_fft // 2 + 1) complex128 array with T = 1 + (L - n_fft) // hop.
        Bins above n_fft // 2 are left out because a real signal's spectrum is
        conjugate-symmetric, X[t, n_fft - k] = conj(X[t, k]).
    """
    frames = frame_signal(waveform, n_fft, hop_length)
    window = _resolve_window("stft", window, frames.shape[1])

    return np.fft.rfft(frames * window, axis=1)


def stft_reference(
    waveform: np.ndarray,
    n_fft: int = 256,
    hop_length: int = 128,
    window: np.ndarray | None = None,
) -> np.ndarray:
    """Compute the same X as :func:`stft`, as a literal triple loop over t, k and n.

    It is slow (T · K · n_fft complex products) and exists to be read and to
    check :func:`stft` against.
    """
    x = _check_waveform("stft_reference", waveform)
    n_fft = _check_positive_int("stft_reference", "n_fft", n_fft)
    hop_length = _check_positive_int("stft_reference", "hop_length", hop_length)
    w = _resolve_window("stft_reference", window, n_fft)

    if x.shape[0] < n_fft:
        x = np.pad(x, (0, n_fft - x.shape[0]))
    num_frames = num_frames_for(x.shape[0], n_fft, hop_length)
    num_bins = n_fft // 2 + 1

    spectrum = np.zeros((num_frames, num_bins), dtype=np.complex128)
    for t in range(num_frames):
        for k in range(num_bins):
            total = 0j
            for n in range(n_fft):
                total += w[n] * x[t * hop_length + n] * np.exp(-2j * np.pi * k * n / n_fft)
            spectrum[t, k] = total
    return spectrum


def _resolve_window(name: str, window: np.ndarray | None, n_fft: int) -> np.ndarray:
    if window is None:
        return hann_window(n_fft)
    window = np.asarray(window, dtype=np.float64)
    if window.shape != (n_fft,):
        raise ShapeError(
            f"{name}: window must have shape ({n_fft},) to match n_fft, got {window.shape}"
        )
    return window


# ---------------------------------------------------------------- mel scale


def hz_to_mel(frequency: np.ndarray | float) -> np.ndarray:
    """Convert Hz to mel with mel(f) = 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(frequency, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Convert mel to Hz with f(m) = 700 (10^(m / 2595) - 1), the inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_mels: int = 40,
    n_fft: int = 256,
    sample_rate: int = SAMPLE_RATE,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> np.ndarray:
    """Build M triangular filters F[m, k] over the K = n_fft // 2 + 1 STFT bins.

    The M + 2 edge frequencies e[0..M+1] are equally spaced in mel between
    f_min and f_max (default sample_rate / 2). Filter m rises linearly from 0
    at e[m] to 1 at e[m + 1] and falls back to 0 at e[m + 2]. Bin k sits at
    f_k = k · sample_rate / n_fft, so

        F[m, k] = max(0, min((f_k - e[m]) / (e[m+1] - e[m]), (e[m+2] - f_k) / (e[m+2] - e[m+1])))

    Filters are not area-normalised, so each peaks at 1.

    Returns:
        (n_mels, n_fft // 2 + 1) float64 array.

    Raises:
        ValueError: when f_min, f_max are out of order or beyond the Nyquist
            frequency, or when a filter falls between two bins and gets no
            weight (use fewer mel bands or a larger n_fft).
    """
    n_mels = _check_positive_int("mel_filterbank", "n_mels", n_mels)
    n_fft = _check_positive_int("mel_filterbank", "n_fft", n_fft)
    nyquist = sample_rate / 2
    if f_max is None:
        f_max = nyquist
    if not 0.0 <= f_min < f_max <= nyquist:
        raise ValueError(
            f"mel_filterbank: expected 0 <= f_min < f_max <= {nyquist} Hz (half the sample rate), "
            f"got f_min={f_min}, f_max={f_max}"
        )

    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    bin_frequencies = np.arange(n_fft // 2 + 1) * sample_rate / n_fft

    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_frequencies[None, :] - lower) / (centre - lower)
    falling = (upper - bin_frequencies[None, :]) / (upper - centre)
    filters = np.maximum(0.0, np.minimum(rising, falling))

    empty = np.flatnonzero(filters.sum(axis=1) == 0)
    if empty.size:
        raise ValueError(
            f"mel_filterbank: {empty.size} of {n_mels} mel filters cover no STFT bin "
            f"(first: filter {empty[0]}, {edges[empty[0]]:.1f}-{edges[empty[0] + 2]:.1f} Hz, "
            f"bins {sample_rate / n_fft:.2f} Hz apart); use fewer mel bands or a larger n_fft"
        )
    return filters


# ---------------------------------------------------------------- fixed length


def pad_or_trim(
    features: np.ndarray, num_frames: int, pad_value: float = 0.0, align: str = "start"
) -> np.ndarray:
    """Pad or cut a (T, F) array along time to exactly (num_frames, F).

    Args:
        features: (T, F) array.
        num_frames: the output's number of rows.
        pad_value: value of added rows. For features of silence use the
            value a silent frame has (log(eps) after log(S + eps), 0 after log(1 + S)).
        align: where the clip sits in the output. "start" pads or cuts at the
            end, "end" pads or cuts at the start, "center" splits the padding
            or the cut between both ends (the extra row goes at the end).

    Returns:
        (num_frames, F) array of the input's dtype.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ShapeError(f"pad_or_trim: expected a (T, F) array, got shape {features.shape}")
    num_frames = _check_positive_int("pad_or_trim", "num_frames", num_frames)
    if align not in _ALIGN_MODES:
        raise ValueError(f"pad_or_trim: align must be one of {_ALIGN_MODES}, got {align!r}")

    length = features.shape[0]
    if length >= num_frames:
        excess = length - num_frames
        start = {"start": 0, "end": excess, "center": excess // 2}[align]
        return features[start : start + num_frames]

    missing = num_frames - length
    before = {"start": 0, "end": missing, "center": missing // 2}[align]
    after = missing - before
    return np.pad(features, ((before, after), (0, 0)), constant_values=pad_value)


# ---------------------------------------------------------------- transforms


class Spectrogram:
    """Waveform (L,) -> log-magnitude spectrogram (T, n_fft // 2 + 1), float32.

    Computes S[t, k] = |X[t, k]|^power with X from :func:`stft`, then
    log(S + eps) (``log="log"``), log(1 + S) (``log="log1p"``) or S itself
    (``log=None``). With ``num_frames`` set, the output is padded with the
    value of silence or cut to exactly that many frames (see :func:`pad_or_trim`).

    Args:
        n_fft: frame length in samples (256 = 32 ms at 8 kHz).
        hop_length: hop in samples (128 = 16 ms at 8 kHz).
        power: exponent p of the magnitude (1 magnitude, 2 power).
        log: "log", "log1p" or None.
        eps: the floor added before the log in "log" mode.
        num_frames: fixed number of output frames, or None for T = 1 + (L - n_fft) // hop.
        align: where the clip sits among the frames ("start", "center", "end"),
            as in :func:`pad_or_trim`. The default "end" pads a short clip at the
            start and cuts a long one at the start.
    """

    def __init__(
        self,
        n_fft: int = 256,
        hop_length: int = 128,
        power: float = 1.0,
        log: str | None = "log",
        eps: float = 1e-6,
        num_frames: int | None = None,
        align: str = "end",
    ) -> None:
        name = type(self).__name__
        self.n_fft = _check_positive_int(name, "n_fft", n_fft)
        self.hop_length = _check_positive_int(name, "hop_length", hop_length)
        if log not in _LOG_MODES:
            raise ValueError(f"{name}: log must be one of {_LOG_MODES}, got {log!r}")
        if not eps > 0:
            raise ValueError(f"{name}: eps must be > 0, got {eps!r}")
        if num_frames is not None:
            num_frames = _check_positive_int(name, "num_frames", num_frames)
        if align not in _ALIGN_MODES:
            raise ValueError(f"{name}: align must be one of {_ALIGN_MODES}, got {align!r}")
        self.power = float(power)
        self.log = log
        self.eps = float(eps)
        self.num_frames = num_frames
        self.align = align
        self.window = hann_window(self.n_fft)

    def magnitude(self, waveform: np.ndarray) -> np.ndarray:
        """Return |X[t, k]|^power, shape (T, n_fft // 2 + 1), float64."""
        return np.abs(stft(waveform, self.n_fft, self.hop_length, self.window)) ** self.power

    def _scale(self, values: np.ndarray) -> np.ndarray:
        if self.log == "log":
            return np.log(values + self.eps)
        if self.log == "log1p":
            return np.log1p(values)
        return values

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        features = self._scale(self.magnitude(waveform))

        if self.num_frames is not None:
            silence = float(self._scale(np.float64(0.0)))
            features = pad_or_trim(features, self.num_frames, silence, self.align)

        return features.astype(np.float32)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_fft={self.n_fft}, hop_length={self.hop_length}, "
            f"power={self.power}, log={self.log!r}, num_frames={self.num_frames}, "
            f"align={self.align!r})"
        )


class MelSpectrogram(Spectrogram):
    """Waveform (L,) -> log-mel spectrogram (T, n_mels), float32.

    Computes S[t, m] = Σ_k F[m, k] |X[t, k]|^power with F from
    :func:`mel_filterbank`, then the log scaling and fixed length of
    :class:`Spectrogram`.

    The defaults give 48 frames × 40 mel bands for an 8 kHz clip: n_fft 256
    samples (32 ms), hop 128 samples (16 ms), so 48 frames cover
    256 + 47 · 128 = 6272 samples (0.78 s). That is longer than the median
    FSDD clip (0.42 s). With ``align="end"`` a shorter clip is padded with
    silence at the start, so the word ends at the last frame, which is the step
    whose hidden state an LSTM with a last-step readout scores. A longer clip
    loses its beginning; 68 of the 3,000 FSDD clips (2.3%) are longer.

    Measured once on 2 shared CPU cores: ``tinymbm.models.RNN(40, 64, 1, 10)``
    trained with Adam (lr 1e-3, batch 64) on these features, standardised with
    :class:`NormalizeFeatures`, reached 95% test accuracy on the FSDD split
    after 25 epochs, in about a minute. With ``align="start"`` (and lr 3e-3)
    the same model was still at 20% after 30 epochs, because its last steps
    read only padding.

    Args:
        sample_rate: in Hz.
        n_mels: number of mel bands M.
        f_min, f_max: frequency range of the filters in Hz (f_max defaults to sample_rate / 2).
        n_fft, hop_length, power, log, eps, num_frames, align: as in :class:`Spectrogram`.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = 256,
        hop_length: int = 128,
        n_mels: int = 40,
        f_min: float = 0.0,
        f_max: float | None = None,
        power: float = 1.0,
        log: str | None = "log",
        eps: float = 1e-6,
        num_frames: int | None = 48,
        align: str = "end",
    ) -> None:
        super().__init__(n_fft, hop_length, power, log, eps, num_frames, align)
        self.sample_rate = sample_rate
        self.filters = mel_filterbank(n_mels, self.n_fft, sample_rate, f_min, f_max)

    @property
    def n_mels(self) -> int:
        return self.filters.shape[0]

    def magnitude(self, waveform: np.ndarray) -> np.ndarray:
        """Return S[t, m] = Σ_k F[m, k] |X[t, k]|^power, shape (T, n_mels), float64."""
        return super().magnitude(waveform) @ self.filters.T

    def __repr__(self) -> str:
        return (
            f"MelSpectrogram(sample_rate={self.sample_rate}, n_fft={self.n_fft}, "
            f"hop_length={self.hop_length}, n_mels={self.n_mels}, power={self.power}, "
            f"log={self.log!r}, num_frames={self.num_frames}, align={self.align!r})"
        )


# ---------------------------------------------------------------- normalisation


def feature_mean_std(
    sequences: Sequence[np.ndarray] | np.ndarray, eps: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """Compute the per-feature mean and standard deviation over every frame of a data set.

    Args:
        sequences: a (N, T, F) array or a list of (T_i, F) arrays, usually the training set.
        eps: floor for the standard deviation, so a constant feature divides by eps, not 0.

    Returns:
        (mean, std), each (F,) float32:
        mean[f] = (1 / Σ_i T_i) Σ_i Σ_t s_i[t, f] and
        std[f] = max(eps, sqrt(mean over the same frames of (s_i[t, f] - mean[f])²)).
    """
    if isinstance(sequences, np.ndarray):
        if sequences.ndim != 3:
            raise ShapeError(
                f"feature_mean_std: expected a (N, T, F) array, got shape {sequences.shape}"
            )
        frames = sequences.reshape(-1, sequences.shape[-1])
    else:
        arrays = [np.asarray(sequence) for sequence in sequences]
        if not arrays:
            raise ValueError("feature_mean_std: expected at least one sequence, got none")
        feature_counts = {array.shape[-1] if array.ndim == 2 else None for array in arrays}
        if len(feature_counts) != 1 or None in feature_counts:
            shapes = sorted({array.shape for array in arrays})[:3]
            raise ShapeError(
                "feature_mean_std: expected (T_i, F) arrays that share F, "
                f"got shapes such as {shapes}"
            )
        frames = np.concatenate(arrays, axis=0)

    frames = frames.astype(np.float64)
    mean = frames.mean(axis=0)
    std = np.maximum(frames.std(axis=0), eps)
    return mean.astype(np.float32), std.astype(np.float32)


class NormalizeFeatures:
    """Standardise each feature: y[t, f] = (s[t, f] - mean[f]) / std[f], float32.

    Fit mean and std on the training set only (:func:`feature_mean_std`) and
    apply the same pair to the test set.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
            raise ShapeError(
                "NormalizeFeatures: mean and std must both have shape (F,), "
                f"got {self.mean.shape} and {self.std.shape}"
            )
        if np.any(self.std <= 0):
            raise ValueError("NormalizeFeatures: std must be > 0 in every feature")

    @classmethod
    def fit(cls, sequences: Sequence[np.ndarray] | np.ndarray) -> "NormalizeFeatures":
        """Build the transform from the mean and std of ``sequences`` (:func:`feature_mean_std`)."""
        return cls(*feature_mean_std(sequences))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features)
        if features.shape[-1] != self.mean.shape[0]:
            raise ShapeError(
                f"NormalizeFeatures: input has shape {features.shape}, "
                f"but mean and std have {self.mean.shape[0]} features"
            )
        return ((features - self.mean) / self.std).astype(np.float32)

    def __repr__(self) -> str:
        return f"NormalizeFeatures(num_features={self.mean.shape[0]})"
