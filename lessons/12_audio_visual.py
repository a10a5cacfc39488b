# %% [markdown]
# # Lesson 12: audio-visual fusion on real spoken digits
#
# In lesson 09 the second input of MBM was a made-up description. Here it is a
# real recording: a person saying the digit. Each MNIST image is paired with a
# recording of the same digit from the Free Spoken Digit Dataset (FSDD), as in
# the AV-MNIST benchmark. Three models read these pairs:
#
# - the image model CNN(I; W, b) = max_{k∈K} Σ_i Σ_j W_ijk · I_ij + b_k
#   (convolution and max-pooling, then fully connected layers), on the image I;
# - the sequence model RNN(T; W, b) = max_{t∈T} Σ_i Σ_j W_ij · RNN_ij(t) + b_t
#   (an LSTM with a linear readout), on the recording turned into a sequence T
#   of log-mel spectrum frames, one frame per step;
# - the fusion MBM(I, T) = CNN(I) + RNN(T), which sums the class scores of the two.
#
# Clean MNIST digits are too easy: the CNN alone would leave nothing for the audio
# to add. So, as AV-MNIST does, we degrade the images by removing their leading
# principal components. We train the three models on the same pairs with the same
# budget and compare their test accuracies with each other and with the published
# AV-MNIST figures. On the way we meet a pitfall of training a sum: the part that
# learns faster can leave the other part with almost no training signal. A loss
# for each part, added to the loss of the sum, fixes it.
#
# # 第 12 课：真实语音数字上的视听融合
#
# 在第 09 课中，MBM 的第二路输入是人为构造的文字描述；这一课换成真实的录音：一个人念出这个数字。
# 和 AV-MNIST 基准一样，每张 MNIST 图像都配上一段来自 Free Spoken Digit Dataset（FSDD）、
# 念的是同一个数字的录音。三个模型读取这些数据对：
#
# - 图像模型 CNN(I; W, b) = max_{k∈K} Σ_i Σ_j W_ijk · I_ij + b_k（卷积与最大池化，之后接全连接层），读取图像 I；
# - 序列模型 RNN(T; W, b) = max_{t∈T} Σ_i Σ_j W_ij · RNN_ij(t) + b_t（LSTM 加线性读出层），
#   读取由录音转换成的序列 T：每一步是一帧对数梅尔频谱；
# - 融合模型 MBM(I, T) = CNN(I) + RNN(T)，把两个模型的类别分数相加。
#
# 干净的 MNIST 数字太容易了：单靠 CNN 就几乎全对，音频没有可以补充的余地。所以我们像 AV-MNIST 那样，
# 去掉图像的前几个主成分来使其退化。我们在相同的数据对上、以相同的训练预算训练三个模型，
# 比较它们的测试准确率，并与已发表的 AV-MNIST 结果对照。途中我们会遇到训练求和模型的一个陷阱：
# 学得快的那一部分可能让另一部分几乎收不到训练信号。在和的损失之外再给每个部分加一个损失，就能解决这个问题。

# %%
# tinymbm comes before NumPy: it sets OpenBLAS's thread timeout, which NumPy's
# BLAS reads only when it loads, and the convolution runs on every core only then.
import tinymbm as tm

# isort: split
import sys
import time
from collections.abc import Callable

import numpy as np

import tinymbm.functional as F
from tinymbm import lesson, nn, optim, viz
from tinymbm.data import (
    AVMNIST,
    FSDD,
    DataLoader,
    DatasetNotFoundError,
    MelSpectrogram,
    NormalizeFeatures,
    PrincipalComponentRemoval,
    load_mnist,
)
from tinymbm.data.fsdd import SAMPLE_RATE
from tinymbm.models import CNN, MBM, RNN
from tinymbm.train import fit

options = lesson.parse_args(
    "Lesson 12: pair degraded MNIST images with FSDD recordings and train CNN(I), RNN(T) and MBM = CNN + RNN",
    name="12_audio_visual",
    epochs=3,
    limit=12_000,
    extra=[
        (("--test-limit",), {"type": int, "default": None,
                             "help": "number of test pairs (default: all 10,000; 500 when --limit < 2000)"}),
        (("--batch-size",), {"type": int, "default": 32, "help": "pairs per training step (default 32)"}),
        (("--lr",), {"type": float, "default": 2e-3, "help": "Adam learning rate of every model (default 0.002)"}),
        (("--remove-energy",), {"type": float, "default": 0.75,
                                "help": "fraction of the image variance removed by PCA, in (0, 1) (default 0.75)"}),
    ],
)
clock = lesson.Clock()

# %% [markdown]
# ## 1. The recordings
#
# FSDD contains 3,000 WAV files: six speakers each say every digit 50 times (takes
# 0-49), as 8,000 Hz mono 16-bit audio. The dataset's own split is by take: takes
# 0-4 form the test set (300 recordings, 30 per digit) and takes 5-49 the training
# set (2,700 recordings). All six voices appear in both parts, so the test measures
# new takes of known speakers. `tinymbm.data.FSDD` reads the files into float32
# waveforms in [-1, 1).
#
# Without the real files (no `--data-dir`, no `TINYMBM_DATA`, nothing in the
# cache), the lesson says so in one line and falls back to synthetic stand-ins:
# for each digit, two tones that glide along the digit's own fixed pair of
# frequency paths, at a random speed, loudness and pitch scale, with noise. They
# keep the lesson runnable offline, but its numbers then say nothing about speech.
#
# ## 1. 录音
#
# FSDD 共有 3,000 个 WAV 文件：六位说话人把每个数字各念 50 遍（第 0-49 次录音），
# 格式为 8,000 Hz、单声道、16 位。数据集自带的划分按录音序号进行：第 0-4 次录音构成测试集
# （300 段录音，每个数字 30 段），第 5-49 次构成训练集（2,700 段录音）。六位说话人在两部分中都出现，
# 所以测试衡量的是已知说话人的新录音。`tinymbm.data.FSDD` 把文件读成取值在 [-1, 1) 内的 float32 波形。
#
# 如果找不到真实文件（没有 `--data-dir`、没有设置 `TINYMBM_DATA`、缓存中也没有），
# 本课会用一行文字说明这一点，并改用合成的替代数据：每个数字对应两条沿该数字固定频率轨迹滑动的音调，
# 速度、响度和音高比例随机，并叠加噪声。这样本课在离线时也能运行，但此时得到的数字与语音无关。

# %%
def synthetic_recordings(per_digit: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Make stand-in recordings: per digit d, two tones gliding along d's fixed frequency paths.

    Returns ``per_digit`` float32 waveforms at SAMPLE_RATE Hz for each digit 0-9,
    0.3 to 0.7 s long, and their (10 · per_digit,) int64 labels.
    """
    # Start and end frequencies (Hz) of the two tones, one row per digit, the same on every run.
    paths = np.random.default_rng(1234).uniform([250, 900, 250, 900], [850, 2600, 850, 2600], size=(10, 4))
    rng = np.random.default_rng(seed)

    recordings, labels = [], []
    for digit in range(10):
        for _ in range(per_digit):
            length = int(SAMPLE_RATE * rng.uniform(0.3, 0.7))
            progress = np.linspace(0.0, 1.0, length)
            scale = rng.uniform(0.9, 1.1)
            low = scale * (paths[digit, 0] + (paths[digit, 2] - paths[digit, 0]) * progress)
            high = scale * (paths[digit, 1] + (paths[digit, 3] - paths[digit, 1]) * progress)

            # The phase is the running sum of the frequency, so each tone glides without jumps.
            wave = np.sin(2 * np.pi * np.cumsum(low) / SAMPLE_RATE)
            wave += 0.5 * np.sin(2 * np.pi * np.cumsum(high) / SAMPLE_RATE)
            wave = wave * np.hanning(length) + rng.normal(0.0, 0.05, length)
            recordings.append((rng.uniform(0.2, 0.6) * wave / np.abs(wave).max()).astype(np.float32))
            labels.append(digit)
    return recordings, np.array(labels, dtype=np.int64)


def load_recordings(train: bool) -> tuple[list[np.ndarray], np.ndarray, list[str], str]:
    """Return one FSDD split as (waveforms, labels, speakers, source), or synthetic stand-ins."""
    try:
        fsdd = FSDD(options.data_dir, train=train)
    except DatasetNotFoundError:
        if train:
            print("tinymbm: FSDD not found, so using synthetic two-tone stand-ins for the recordings; "
                  "for the real data set TINYMBM_DATA=/path/to/data (a folder containing fsdd/recordings/), "
                  "pass --data-dir, or call tinymbm.data.FSDD(download=True) once.", file=sys.stderr)
        waveforms, labels = synthetic_recordings(270 if train else 30, seed=options.seed + (0 if train else 1))
        return waveforms, labels, ["synthetic"] * len(labels), "synthetic"
    return fsdd.recordings, fsdd.targets, fsdd.speakers, "fsdd"


train_waveforms, train_audio_targets, train_speakers, audio_source = load_recordings(train=True)
test_waveforms, test_audio_targets, _, _ = load_recordings(train=False)

durations = np.array([len(waveform) / SAMPLE_RATE for waveform in train_waveforms])
print(f"recordings: {len(train_waveforms)} training, {len(test_waveforms)} test ({audio_source})")
print(f"speakers: {', '.join(sorted(set(train_speakers)))}")
print(f"training clip length: min {durations.min():.2f} s, median {np.median(durations):.2f} s, "
      f"max {durations.max():.2f} s")
print(f"test recordings per digit: {np.bincount(test_audio_targets, minlength=10).tolist()}")

# %% [markdown]
# ## 2. From a waveform to a sequence
#
# The LSTM reads a sequence of vectors, so each recording becomes a (T, F) array of
# spectrum frames, with `MelSpectrogram`:
#
# 1. Frames: the waveform x is cut into frames of n_fft = 256 samples (32 ms) every
#    hop = 128 samples (16 ms), and each frame is multiplied by a Hann window w.
# 2. Spectrum: X[t, k] = Σ_n w[n] x[t·hop + n] e^{-2πi k n / n_fft}, the discrete
#    Fourier transform of frame t, for frequency bins k = 0..128 (31.25 Hz apart).
# 3. Mel bands: S[t, m] = Σ_k F[m, k] |X[t, k]|, with F a bank of 40 triangular
#    filters spaced evenly on the mel scale mel(f) = 2595 log10(1 + f / 700), which
#    is finer at low frequencies, where speech carries most of its detail.
# 4. Log: log(S + eps), because loudness differences span orders of magnitude.
# 5. Fixed length: T = 48 frames (0.78 s). A shorter clip is padded with the value
#    of silence at the start, so the word ends at the last frame: the step whose
#    hidden state the RNN's last-step readout scores.
#
# Then each of the F = 40 bands is standardised with the mean and standard
# deviation of the training recordings (never the test ones). The plot shows one
# training recording per digit before that standardisation: time runs to the
# right, low frequencies at the bottom, bright is loud.
#
# ## 2. 从波形到序列
#
# LSTM 读取的是向量序列，所以我们用 `MelSpectrogram` 把每段录音变成一个由频谱帧组成的 (T, F) 数组：
#
# 1. 分帧：把波形 x 切成长度 n_fft = 256 个采样点（32 毫秒）的帧，帧移 hop = 128 个采样点（16 毫秒），
#    每一帧乘以汉宁窗 w。
# 2. 频谱：X[t, k] = Σ_n w[n] x[t·hop + n] e^{-2πi k n / n_fft}，即第 t 帧的离散傅里叶变换，
#    频率仓 k = 0..128，相邻两仓相距 31.25 Hz。
# 3. 梅尔频带：S[t, m] = Σ_k F[m, k] |X[t, k]|，其中 F 是 40 个三角滤波器组成的滤波器组，
#    它们在梅尔刻度 mel(f) = 2595 log10(1 + f / 700) 上均匀分布；梅尔刻度在低频处更细，而语音的细节大多在低频。
# 4. 取对数：log(S + eps)，因为响度的差别可以跨越几个数量级。
# 5. 固定长度：T = 48 帧（0.78 秒）。较短的录音在开头用静音对应的值补齐，使这个词结束在最后一帧，
#    也就是 RNN 按最后一步读出时打分所用的那个隐藏状态。
#
# 然后用训练录音（绝不用测试录音）的均值和标准差，对 F = 40 个频带分别做标准化。
# 下图展示了每个数字的一段训练录音在标准化之前的样子：时间从左向右，低频在下，越亮表示越响。

# %%
mel = MelSpectrogram()
print(mel)
train_sequences = np.stack([mel(waveform) for waveform in train_waveforms])
test_sequences = np.stack([mel(waveform) for waveform in test_waveforms])
normalize = NormalizeFeatures.fit(train_sequences)
print(f"sequences: training {train_sequences.shape}, test {test_sequences.shape} (recordings, T, F)")

shown = [int(np.flatnonzero(train_audio_targets == digit)[0]) for digit in range(10)]
figure = viz.plot_spectrograms(
    [train_sequences[i] for i in shown],
    [f"'{train_audio_targets[i]}' {train_speakers[i]}, {durations[i]:.2f} s" for i in shown],
    title="log-mel spectrograms, one training recording per digit (48 frames of 16 ms)",
)
lesson.save_figure(figure, options.out, "spectrograms.png")

train_sequences = normalize(train_sequences)
test_sequences = normalize(test_sequences)

# %% [markdown]
# ## 3. Degrading the images
#
# A PCA is fit on the flattened MNIST *training* images x (784 pixels): their mean
# μ and the eigenvectors v_j of their covariance, sorted by eigenvalue λ_j, largest
# first. The k leading components are then removed from every image of both
# splits:
#
#     x' = x - Σ_{j≤k} v_j v_jᵀ (x - μ)
#
# with k the fewest components whose eigenvalues carry the fraction
# `--remove-energy` (0.75 by default) of the total variance. What remains is the
# mean image plus the fine detail: the broad strokes that separate most digits are
# gone, but not all of the digit's shape. The plot shows the same images before
# (top) and after (bottom); each is drawn on its own grey scale.
#
# ## 3. 使图像退化
#
# 在展平后的 MNIST *训练*图像 x（784 个像素）上拟合 PCA：求出它们的均值 μ，以及协方差矩阵的特征向量 v_j，
# 按特征值 λ_j 从大到小排列。然后从两个划分的每张图像中去掉前 k 个主成分：
#
#     x' = x - Σ_{j≤k} v_j v_jᵀ (x - μ)
#
# 其中 k 是使特征值之和达到总方差的 `--remove-energy` 比例（默认 0.75）所需的最少主成分数。
# 剩下的是均值图像加上细节：区分大多数数字的大致笔画没有了，但数字的形状并没有全部丢失。
# 下图上排是原图，下排是退化后的同一批图像；每张图各用自己的灰度范围绘制。

# %%
train_mnist = load_mnist(options.data_dir, train=True)
test_mnist = load_mnist(options.data_dir, train=False)


def as_images(raw: np.ndarray) -> np.ndarray:
    """Return uint8 images (N, 28, 28) as float32 (N, 1, 28, 28) in [0, 1]."""
    return (raw.astype(np.float32) / 255.0)[:, None]


train_images = as_images(train_mnist.images)
test_images = as_images(test_mnist.images)

started = time.perf_counter()
pca = PrincipalComponentRemoval(energy=options.remove_energy).fit(train_images)
print(f"PCA fit on {len(train_images):,} training images ({train_mnist.source}) "
      f"in {time.perf_counter() - started:.1f} s: {pca}")
print(f"removed {pca.num_components} of 784 components, carrying {pca.energy_removed:.1%} of the variance")

train_limit = len(train_images) if options.limit is None else min(options.limit, len(train_images))
quick = train_limit < 2000
if options.test_limit is not None:
    test_limit = min(options.test_limit, len(test_images))
elif quick:
    test_limit = 500
else:
    test_limit = len(test_images)

degraded_train = pca(train_images[:train_limit])
degraded_test = pca(test_images[:test_limit])

examples = [int(np.flatnonzero(test_mnist.labels[:test_limit] == digit)[0]) for digit in range(10)]
figure = viz.plot_images(
    np.concatenate([test_images[examples], degraded_test[examples]]),
    [f"original {digit}" for digit in range(10)] + [f"degraded {digit}" for digit in range(10)],
    columns=10,
    title=f"test images before and after removing {pca.num_components} principal components",
)
lesson.save_figure(figure, options.out, "degraded_images.png")

# %% [markdown]
# ## 4. The pairs
#
# `AVMNIST.from_arrays` pairs each image with a recording of the same digit from the
# same split. Within each digit, the recordings are shuffled and dealt out in
# turn, so every recording is used about equally often. The seed fixes the pairs. There are far fewer recordings than images, so each training recording
# recurs in several pairs, always with a different image. The same holds for the
# test set: its pairs reuse the 300 test recordings (takes 0-4), about 33 times
# each for all 10,000 test images. So the audio model's test accuracy is in fact
# measured on 300 recordings, each weighted by how often it recurs.
#
# ## 4. 数据对
#
# `AVMNIST.from_arrays` 为每张图像从同一划分中挑一段念同一个数字的录音：在每个数字内部，
# 先把录音打乱，再依次分配出去，所以每段录音被使用的次数大致相同，而随机种子决定了具体的配对。
# 录音比图像少得多，因此每段训练录音会出现在好几个数据对中，每次搭配的图像都不同。测试集也是如此：
# 它的数据对反复使用这 300 段测试录音（第 0-4 次录音），全部 10,000 张测试图像时每段约用 33 次。
# 所以音频模型的测试准确率实际上是在 300 段录音上测得的，每段录音按它出现的次数加权。

# %%
train_pairs = AVMNIST.from_arrays(
    degraded_train, train_mnist.labels[:train_limit], train_sequences, train_audio_targets, seed=options.seed,
)
test_pairs = AVMNIST.from_arrays(
    degraded_test, test_mnist.labels[:test_limit], test_sequences, test_audio_targets, seed=options.seed + 1,
)
print(train_pairs)
print(test_pairs)

for name, pairs in (("training", train_pairs), ("test", test_pairs)):
    uses = np.bincount(pairs.audio_index, minlength=len(pairs.audio_targets))
    print(f"{name}: {len(pairs)} pairs, {int((uses > 0).sum())} distinct recordings, "
          f"each used {uses[uses > 0].min()} to {uses.max()} times")

image, sequence, label = train_pairs[0]
print(f"one pair: image {image.shape} {image.dtype}, sequence {sequence.shape} {sequence.dtype}, label {label}")

# %% [markdown]
# ## 5. Three models, one budget
#
# As in lesson 09, the three models see the same batches in the same order (one
# loader seed), with the same optimizer (Adam), learning rate and number of
# epochs. They also start from the same initial weights: the CNN alone and the
# CNN inside MBM start from the same numbers, and so do the two RNNs. The RNN is
# two stacked LSTM layers of H = 64 hidden units over the F = 40 mel bands, read
# out at the last step. The single-input models are wrapped to take the pair
# (I, T) and ignore the input they do not read, so `tinymbm.train.fit` feeds all
# three the same `(images, sequences, labels)` batches.
#
# The budget is set by the CNN: its 64 and 128 channels and its 6,272 → 1,024
# fully connected layer cost far more per example than the small LSTM. So by
# default we train on the first 12,000 training images (`--limit`), each with its
# recording, for 3 epochs (`--epochs`), in batches of 32 (`--batch-size`). That is
# 36,000 examples and 3,375 Adam steps per model. In that budget the RNN sees
# each of the 2,700 training recordings about 13 times. With Adam's default
# learning rate of 0.001 it is still far from converged after those steps, so all
# models use 0.002 (`--lr`).
#
# ## 5. 三个模型，同一份预算
#
# 与第 09 课一样，三个模型以相同的顺序看到相同的批次（数据加载器使用同一个随机种子），
# 使用相同的优化器（Adam）、学习率和 epoch 数。它们还从相同的初始权重出发：单独的 CNN 与 MBM 内部的 CNN
# 数值相同，两个 RNN 也是如此。RNN 由两层堆叠的 LSTM 组成，每层 H = 64 个隐藏单元，
# 输入是 F = 40 个梅尔频带，按最后一步读出。单模态模型被包装成接收数据对 (I, T)，并忽略自己不读取的那一路输入，
# 这样 `tinymbm.train.fit` 就能把同样的 `(images, sequences, labels)` 批次喂给三个模型。
#
# 预算由 CNN 决定：它有 64 和 128 个通道，外加一个 6,272 → 1,024 的全连接层，每个样本的计算量远大于小小的 LSTM。
# 所以默认只用前 12,000 张训练图像（`--limit`）及其配对的录音训练 3 个 epoch（`--epochs`），批大小为 32
# （`--batch-size`），即每个模型 36,000 个样本、3,375 步 Adam 更新。在这份预算内，
# RNN 把 2,700 段训练录音中的每一段大约看 13 遍。如果用 Adam 默认的学习率 0.001，
# 走完这些步数时 RNN 离收敛还很远，所以所有模型都用 0.002（`--lr`）。

# %%
class ImageOnly(nn.Module):
    """Score a pair (I, T) with CNN(I) alone."""

    def __init__(self, cnn: CNN) -> None:
        super().__init__()
        self.cnn = cnn

    def forward(self, image: tm.Tensor, sequence: tm.Tensor) -> tm.Tensor:
        return self.cnn(image)


class AudioOnly(nn.Module):
    """Score a pair (I, T) with RNN(T) alone."""

    def __init__(self, rnn: RNN) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, image: tm.Tensor, sequence: tm.Tensor) -> tm.Tensor:
        return self.rnn(sequence)


def make_cnn() -> CNN:
    """Build the image model with the weights that seed options.seed gives."""
    tm.manual_seed(options.seed)
    return CNN(in_channels=1, num_classes=10, image_size=28)


def make_rnn() -> RNN:
    """Build the audio model with the weights that seed options.seed + 1 gives."""
    tm.manual_seed(options.seed + 1)
    return RNN(input_size=train_sequences.shape[2], hidden_size=64, num_layers=2, num_classes=10)


def train(name: str, model: nn.Module, loss_fn: Callable = F.cross_entropy) -> None:
    """Train ``model`` on the training pairs with the shared budget and print how long it took."""
    parameters = sum(p.data.size for p in model.parameters())
    print(f"\ntraining {name} on {len(train_pairs)} pairs, {options.epochs} epoch(s), {parameters:,} parameters")
    started = time.perf_counter()
    if options.epochs > 0:
        train_loader = DataLoader(train_pairs, batch_size=options.batch_size, shuffle=True, seed=options.seed)
        fit(model, optim.Adam(model.parameters(), lr=options.lr), train_loader, options.epochs, loss_fn=loss_fn)
    print(f"{name}: trained in {time.perf_counter() - started:.0f} s ({clock.seconds():.0f} s since the start)")


image_model = ImageOnly(make_cnn())
audio_model = AudioOnly(make_rnn())
mbm = MBM(make_cnn(), make_rnn())
train("CNN(I)", image_model)
train("RNN(T)", audio_model)
train("MBM(I, T)", mbm)

# %% [markdown]
# ## 6. First results, and what each part of MBM learned
#
# We compute the test scores without a graph. Since MBM(I, T) = CNN(I) + RNN(T),
# we compute its two parts separately: CNN(I) over the test images in batches,
# and RNN(T) once per test recording, then looked up for each pair (a pair's audio
# score depends on its recording only). We check on a few pairs that the sum of
# the parts equals what `mbm(images, sequences)` returns.
#
# Besides the three models, we print two more rows. "Trained apart" sums the
# scores of the separately trained CNN(I) and RNN(T), a fusion that costs no
# training at all. And for MBM we score each of its two parts on its own: how
# well does the CNN inside MBM classify the images alone, and the RNN inside MBM
# the recordings alone?
#
# ## 6. 初步结果，以及 MBM 的两个部分各学到了什么
#
# 我们在不记录计算图的情况下计算测试分数。由于 MBM(I, T) = CNN(I) + RNN(T)，我们分别计算它的两个部分：
# CNN(I) 分批作用于测试图像；RNN(T) 对每段测试录音只算一次，再按数据对查表取用（一个数据对的音频分数只取决于它的录音）。
# 我们在几个数据对上检验，两部分之和与 `mbm(images, sequences)` 的返回值相等。
#
# 除了三个模型，我们还多打印两行。"trained apart"（分开训练）把单独训练的 CNN(I) 与 RNN(T) 的分数相加，
# 这种融合完全不需要额外训练。对 MBM，我们分别单独评估它的两个部分：MBM 内部的 CNN 单看图像能分对多少？
# MBM 内部的 RNN 单听录音又能分对多少？

# %%
targets = test_pairs.targets
test_batches = [slice(start, start + 500) for start in range(0, len(test_pairs), 500)]


def image_scores(cnn: CNN) -> np.ndarray:
    """Return CNN(I) for every test pair, (N, 10), computed in batches without a graph."""
    cnn.eval()
    with tm.no_grad():
        return np.concatenate([cnn(tm.tensor(test_pairs.images[batch])).data for batch in test_batches])


def recording_scores(rnn: RNN) -> np.ndarray:
    """Return RNN(T) for every test recording, (R, 10), computed without a graph."""
    rnn.eval()
    with tm.no_grad():
        return rnn(tm.tensor(test_pairs.sequences)).data


def accuracy_of(scores: np.ndarray) -> float:
    """Return the fraction of test pairs whose highest score is the true digit."""
    return float((scores.argmax(axis=1) == targets).mean())


def mbm_parts(model: MBM) -> tuple[np.ndarray, np.ndarray]:
    """Return MBM's two parts over the test pairs, CNN(I) and RNN(T), each (N, 10)."""
    return image_scores(model.cnn), recording_scores(model.rnn)[test_pairs.audio_index]


audio_by_recording = recording_scores(audio_model.rnn)
scores = {
    "CNN(I)": image_scores(image_model.cnn),
    "RNN(T)": audio_by_recording[test_pairs.audio_index],
}
mbm_image_part, mbm_audio_part = mbm_parts(mbm)
scores["MBM(I, T)"] = mbm_image_part + mbm_audio_part
scores["CNN(I) + RNN(T), trained apart"] = scores["CNN(I)"] + scores["RNN(T)"]

with tm.no_grad():
    mbm.eval()
    few = slice(0, 8)
    direct = mbm(tm.tensor(test_pairs.images[few]), tm.tensor(test_pairs.sequences[test_pairs.audio_index[few]]))
print(f"max |mbm(I, T) - (CNN part + RNN part)| on 8 pairs: "
      f"{np.abs(direct.data - scores['MBM(I, T)'][few]).max():.1e}")

for name, value in scores.items():
    print(f"{name:32s} test accuracy {accuracy_of(value):.3f}")
print(f"{'  its CNN part alone':32s} test accuracy {accuracy_of(mbm_image_part):.3f}")
print(f"{'  its RNN part alone':32s} test accuracy {accuracy_of(mbm_audio_part):.3f}")

# %% [markdown]
# ## 7. Why the sum starves the slower part, and a fix
#
# Each part inside MBM is weaker on its own than the same model trained alone,
# the RNN part by far, although all of them saw the same pairs. Lesson 09 showed
# where to look. With a = CNN(I), b = RNN(T), z = a + b and the cross-entropy L of
# the sum, both parts receive the same gradient
#
#     ∂L/∂a = ∂L/∂b = (softmax(z) - onehot(y)) / N
#
# The CNN learns faster than the RNN: compare the training accuracies after the
# first epoch in the progress bars above. So the sum soon gets most training pairs
# right, mostly thanks to the CNN. On those pairs softmax(z) is already close to
# onehot(y) and the shared gradient is close to zero, so the RNN learns only from
# the few pairs that the sum still gets wrong. Neither part is ever asked to be
# right on its own, only to make the sum right. On the test pairs, the RNN part
# is then too weak to correct the mistakes the CNN makes on new images.
#
# A standard remedy, used by CentralNet too, is to give each part its own loss
# next to the loss of the fusion:
#
#     L = CE(a + b, y) + CE(a, y) + CE(b, y)
#
# Now ∂L/∂b = (softmax(z) - onehot(y)) / N + (softmax(b) - onehot(y)) / N, and the
# second term vanishes only when the RNN classifies the pair by itself. The model
# and its output are unchanged, MBM(I, T) = CNN(I) + RNN(T). Only the training
# signal differs. We train it on the same pairs, with the same budget and the same
# initial weights.
#
# ## 7. 为什么求和会让学得慢的部分"挨饿"，以及一个补救办法
#
# 虽然看到的数据对完全相同，MBM 内部的每个部分单独使用时都不如单独训练的同一个模型，RNN 部分差得尤其多。
# 第 09 课已经指明了该从哪里找原因：记 a = CNN(I)、b = RNN(T)、z = a + b，L 为和的交叉熵，两个部分收到的是同一个梯度
#
#     ∂L/∂a = ∂L/∂b = (softmax(z) - onehot(y)) / N
#
# CNN 比 RNN 学得快：对比上面进度条中第一个 epoch 结束时的训练准确率即可看出。于是和很快就能分对大部分训练数据对，
# 这主要归功于 CNN。在这些数据对上 softmax(z) 已经接近 onehot(y)，共同的梯度接近于零，
# 所以 RNN 只能从和仍然分错的少数数据对中学习。两个部分都从未被要求单独分对，只被要求让和分对。
# 到了测试数据对上，RNN 部分太弱，纠正不了 CNN 在新图像上犯的错误。
#
# 一个常用的补救办法（CentralNet 也用了它）是在融合的损失之外，再给每个部分各加一个自己的损失：
#
#     L = CE(a + b, y) + CE(a, y) + CE(b, y)
#
# 这样 ∂L/∂b = (softmax(z) - onehot(y)) / N + (softmax(b) - onehot(y)) / N，
# 其中第二项只有在 RNN 自己就能分对这个数据对时才会消失。模型及其输出都没有变，仍是 MBM(I, T) = CNN(I) + RNN(T)，
# 变的只是训练信号。我们在相同的数据对上、以相同的预算和相同的初始权重训练它。

# %%
class PartsMBM(MBM):
    """MBM(I, T) = CNN(I) + RNN(T) that keeps the two parts of its last forward pass for the loss."""

    def forward(self, image: tm.Tensor, sequence: tm.Tensor) -> tm.Tensor:
        self.parts = (self.cnn(image), self.rnn(sequence))
        return self.parts[0] + self.parts[1]


class SumAndPartsLoss:
    """L = CE(a + b, y) + CE(a, y) + CE(b, y), with (a, b) the parts of the model's last forward pass."""

    def __init__(self, model: PartsMBM) -> None:
        self.model = model

    def __call__(self, output: tm.Tensor, targets: tm.Tensor) -> tm.Tensor:
        image_part, audio_part = self.model.parts
        loss = F.cross_entropy(output, targets)
        return loss + F.cross_entropy(image_part, targets) + F.cross_entropy(audio_part, targets)


parts_mbm = PartsMBM(make_cnn(), make_rnn())
train("MBM(I, T), part losses", parts_mbm, loss_fn=SumAndPartsLoss(parts_mbm))

parts_image_part, parts_audio_part = mbm_parts(parts_mbm)
scores["MBM(I, T), part losses"] = parts_image_part + parts_audio_part
print(f"{'MBM(I, T), part losses':32s} test accuracy {accuracy_of(scores['MBM(I, T), part losses']):.3f}")
print(f"{'  its CNN part alone':32s} test accuracy {accuracy_of(parts_image_part):.3f}")
print(f"{'  its RNN part alone':32s} test accuracy {accuracy_of(parts_audio_part):.3f}")

# %% [markdown]
# ## 8. The results side by side
#
# Next to ours we print the AV-MNIST figures that Vielzeuf et al. published with
# CentralNet (ECCV Workshops 2018) for their image network, their audio network,
# and the weighted mean of the two networks' class scores, the late fusion
# closest to our sum. The audio model's accuracy over the test pairs counts each
# of the 300 test recordings about 33 times, so we also print its accuracy over
# the distinct recordings.
#
# ## 8. 结果对比
#
# 在我们的结果旁边，我们列出 Vielzeuf 等人随 CentralNet（ECCV Workshops 2018）发表的 AV-MNIST 结果：
# 他们的图像网络、音频网络，以及两个网络类别分数的加权平均（与我们的求和最接近的后期融合）。
# 音频模型在测试数据对上的准确率把 300 段测试录音中的每一段大约计了 33 次，所以我们也打印它在互不相同的录音上的准确率。

# %%
accuracy = {name: accuracy_of(value) for name, value in scores.items()}
inputs_of = {"CNN(I)": "image", "RNN(T)": "audio"}
published = {"CNN(I)": 0.728, "RNN(T)": 0.861, "MBM(I, T)": 0.947}
published_names = {"CNN(I)": "image network", "RNN(T)": "audio network",
                   "MBM(I, T)": "weighted mean of class scores"}

print(f"{'model':32s} {'inputs':14s} {'ours':>6s}   CentralNet AV-MNIST (published)")
for name, value in accuracy.items():
    reference = f"{published[name]:.3f}  {published_names[name]}" if name in published else ""
    print(f"{name:32s} {inputs_of.get(name, 'image + audio'):14s} {value:6.3f}   {reference}")

print(
    "\nThe data differ, so the numbers compare only roughly: the published AV-MNIST audio is FSDD mixed with "
    "ESC-50 background noise and its images had 75% of their energy removed by PCA, while ours is clean FSDD, "
    f"images with {pca.energy_removed:.1%} of their variance removed ({pca.num_components} components), "
    f"{len(train_pairs):,} training pairs for {options.epochs} epoch(s), and a small two-layer LSTM as the audio "
    f"network ({sum(p.data.size for p in audio_model.parameters()):,} parameters)."
)

used = np.unique(test_pairs.audio_index)
recording_right = audio_by_recording.argmax(axis=1)[used] == test_pairs.audio_targets[used]
print(f"RNN(T) on the {used.size} distinct test recordings: {recording_right.mean():.3f} "
      f"({int((~recording_right).sum())} wrong)")

best_single = max(accuracy["CNN(I)"], accuracy["RNN(T)"])
print(f"\ncheck: RNN(T) test accuracy {accuracy['RNN(T)']:.3f} >= 0.90: "
      f"{'yes' if accuracy['RNN(T)'] >= 0.90 else 'NO'}")
for name in ("MBM(I, T)", "MBM(I, T), part losses"):
    gain = 100 * (accuracy[name] - best_single)
    print(f"check: {name} at least 2 points above the better single model ({gain:+.1f}): "
          f"{'yes' if gain >= 2.0 else 'NO'}")

ours = {
    "CNN(I)": accuracy["CNN(I)"],
    "RNN(T)": accuracy["RNN(T)"],
    "MBM(I, T)": accuracy["MBM(I, T), part losses"],
    "MBM, sum loss only": accuracy["MBM(I, T)"],
    "sum, trained apart": accuracy["CNN(I) + RNN(T), trained apart"],
}
figure = viz.plot_grouped_bars({"ours (clean FSDD)": ours, "CentralNet, published (noisy audio)": published},
                               ylabel="test accuracy",
                               title="AV-MNIST-style test accuracy (our MBM(I, T): trained with part losses)")
lesson.save_figure(figure, options.out, "accuracy_bars.png")

# %% [markdown]
# ## 9. Confusion matrices
#
# Where each model errs. The image model confuses digits whose remaining fine
# strokes look alike, and the audio model confuses digits that sound alike for
# some speakers. The audio model's errors come in blocks of about 33 pairs,
# because each misheard test recording recurs in about 33 pairs. The two kinds of
# error rarely fall on the same pair, and that is what the sum exploits.
#
# ## 9. 混淆矩阵
#
# 下面看每个模型在哪里出错。图像模型会混淆剩余细笔画相似的数字，音频模型会混淆某些说话人念起来相近的数字。
# 音频模型的错误以大约 33 个数据对为一块出现，因为每段听错的测试录音会在大约 33 个数据对中反复出现。
# 这两类错误很少落在同一个数据对上，而求和融合正是利用了这一点。

# %%
for name, filename in (("CNN(I)", "confusion_cnn.png"), ("RNN(T)", "confusion_rnn.png"),
                       ("MBM(I, T)", "confusion_mbm.png"), ("MBM(I, T), part losses", "confusion_mbm_parts.png")):
    matrix = viz.confusion_matrix(targets, scores[name].argmax(axis=1), 10)
    figure = viz.plot_confusion(matrix, title=f"{name}: test accuracy {accuracy[name]:.3f}")
    lesson.save_figure(figure, options.out, filename)

# %% [markdown]
# ## 10. Where the fusion helps
#
# We count the test pairs by which single model got them right, and how often
# each MBM is right in each group. When the two single models disagree, MBM has to
# side with the more confident part. When both are wrong, it can still be right if
# the two wrong predictions differ and both parts gave the true digit a fair score.
#
# ## 10. 融合在哪里起作用
#
# 我们按两个单模态模型各自是否分对，对测试数据对分组计数，并统计每组中两个 MBM 各自分对的比例。
# 两个单模态模型意见不一致时，MBM 需要站在更有把握的那一部分一边。两者都错时，只要两个错误的预测不同，
# 并且两个部分都给真实数字打了不低的分数，MBM 仍然可能分对。

# %%
right = {name: value.argmax(axis=1) == targets for name, value in scores.items()}
print(f"{'CNN(I)':>7s} {'RNN(T)':>7s} {'pairs':>6s} {'MBM right':>10s} {'MBM, part losses, right':>24s}")
for cnn_ok in (True, False):
    for rnn_ok in (True, False):
        group = (right["CNN(I)"] == cnn_ok) & (right["RNN(T)"] == rnn_ok)
        shares = [f"{right[name][group].mean():.1%}" if group.any() else "-"
                  for name in ("MBM(I, T)", "MBM(I, T), part losses")]
        print(f"{'right' if cnn_ok else 'wrong':>7s} {'right' if rnn_ok else 'wrong':>7s} {group.sum():6d} "
              f"{shares[0]:>10s} {shares[1]:>24s}")

# %% [markdown]
# ## Summary
#
# - A recording becomes a sequence for the LSTM through frames, a Fourier
#   transform, mel bands and a log: (T, F) = (48, 40), standardised with the
#   training recordings' statistics.
# - Removing the leading principal components of the images (fit on training
#   images only) makes the image model err often enough that the audio has
#   something to add.
# - The image and the audio rarely fail on the same pair, so summing the class
#   scores of an image model and an audio model beats the better of the two by
#   several points. That holds as long as each part is trained to classify well:
#   apart, or together with a loss of its own.
# - Trained together with the loss of the sum alone, MBM(I, T) = CNN(I) + RNN(T)
#   gains less than its parts trained apart would: between +0.2 and +3.2 points
#   over the CNN in our runs on 2 cores, which differed only in the order of
#   floating-point sums. The faster CNN makes the shared gradient vanish before
#   the RNN has learned much, so the RNN part stays weak. A cross-entropy for
#   each part, added to that of the sum, keeps both parts learning.
# - The FSDD test split is small: 300 recordings, reused across the 10,000 test
#   pairs, so the audio accuracy moves in steps of about 1/300.
#
# ## 小结
#
# - 一段录音经过分帧、傅里叶变换、梅尔频带和取对数，变成 LSTM 可读的序列：(T, F) = (48, 40)，
#   并用训练录音的统计量做标准化。
# - 去掉图像的前几个主成分（只在训练图像上拟合）之后，图像模型出错的次数多到足以让音频有可补充之处。
# - 图像和音频很少在同一个数据对上同时出错，所以把图像模型和音频模型的类别分数相加，
#   只要每个部分都被训练成好的分类器（分开训练，或一起训练但各有自己的损失），就能比其中较好的那个高出几个百分点。
# - 如果只用和的损失一起训练，MBM(I, T) = CNN(I) + RNN(T) 的提升不如把两个部分分开训练再相加：
#   在 2 核机器上的几次运行中，它比 CNN 高出 +0.2 到 +3.2 个百分点，这几次运行只在浮点数求和的顺序上不同。
#   学得快的 CNN 让共同的梯度在 RNN 学到多少东西之前就消失了，所以 RNN 部分一直很弱。
#   在和的交叉熵之外再给每个部分加一个交叉熵，就能让两个部分都持续学习。
# - FSDD 的测试划分很小：只有 300 段录音，在 10,000 个测试数据对中反复使用，
#   所以音频准确率的变化步长约为 1/300。
#
# ## Exercises / 练习
#
# 1. Add white noise to every waveform before `MelSpectrogram`, at a signal-to-noise
#    ratio of 10 dB and then 0 dB (scale the noise so that the ratio of the mean
#    squares is 10 and then 1). How do RNN(T) and the gain of MBM change? The
#    published AV-MNIST audio is noisy in a similar spirit.
#    在 `MelSpectrogram` 之前给每段波形加白噪声，信噪比先取 10 dB、再取 0 dB
#    （调整噪声的幅度，使信号与噪声的均方之比分别为 10 和 1）。RNN(T) 和 MBM 的提升会怎样变化？
#    已发表的 AV-MNIST 音频也是以类似的思路加了噪声。
# 2. Run with `--remove-energy 0.5` and `--remove-energy 0.9`. How many components
#    are removed each time, and how do the accuracy of CNN(I) and the gain of MBM
#    over the better single model move?
#    分别用 `--remove-energy 0.5` 和 `--remove-energy 0.9` 运行。每次去掉了多少个主成分？
#    CNN(I) 的准确率以及 MBM 相对较好单模态模型的提升如何变化？
# 3. Build the RNN with `readout="max"` (the maximum over time of the per-step
#    class scores) and compare it with the last-step readout on the audio alone.
#    Why does padding the clips at the start favour the last-step readout?
#    用 `readout="max"`（对每一步的类别分数取时间上的最大值）构建 RNN，并在只用音频时与按最后一步读出的方式比较。
#    为什么在录音开头补齐会让按最后一步读出的方式占便宜？

# %%
clock.report()
