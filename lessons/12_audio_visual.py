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
# AV-MNIST figures.
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
# 比较它们的测试准确率，并与已发表的 AV-MNIST 结果对照。

# %%
import time

import numpy as np

import tinymbm as tm
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
        (("--lr",), {"type": float, "default": 1e-3, "help": "Adam learning rate of every model (default 0.001)"}),
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
                  "pass --data-dir, or call tinymbm.data.FSDD(download=True) once.")
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
# each of the 2,700 training recordings about 13 times.
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
# RNN 把 2,700 段训练录音中的每一段大约看 13 遍。

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


models = {
    "CNN(I)": ImageOnly(make_cnn()),
    "RNN(T)": AudioOnly(make_rnn()),
    "MBM(I, T)": MBM(make_cnn(), make_rnn()),
}
inputs_of = {"CNN(I)": "image", "RNN(T)": "audio", "MBM(I, T)": "image + audio"}
train_seconds = {}

for name, model in models.items():
    parameters = sum(p.data.size for p in model.parameters())
    print(f"\ntraining {name} on {len(train_pairs)} pairs, {options.epochs} epoch(s), {parameters:,} parameters")
    started = time.perf_counter()
    if options.epochs > 0:
        train_loader = DataLoader(train_pairs, batch_size=options.batch_size, shuffle=True, seed=options.seed)
        fit(model, optim.Adam(model.parameters(), lr=options.lr), train_loader, options.epochs)
    train_seconds[name] = time.perf_counter() - started
    print(f"{name}: trained in {train_seconds[name]:.0f} s ({clock.seconds():.0f} s since the start)")

# %% [markdown]
# ## 6. The results side by side
#
# We compute every model's test scores once, in batches and without a graph, and
# read the accuracies from them. Next to ours we print the AV-MNIST figures that
# Vielzeuf et al. published with CentralNet (ECCV Workshops 2018) for their image
# network, their audio network, and the weighted mean of the two networks' class
# scores, the late fusion closest to our sum. We also sum the scores of our two
# separately trained single models, a fusion that costs no training at all.
#
# ## 6. 结果对比
#
# 我们在不记录计算图的情况下分批算出每个模型在测试集上的分数，只算一次，再从中读出准确率。
# 在我们的结果旁边，我们列出 Vielzeuf 等人随 CentralNet（ECCV Workshops 2018）发表的 AV-MNIST 结果：
# 他们的图像网络、音频网络，以及两个网络类别分数的加权平均（与我们的求和最接近的后期融合）。
# 我们还把两个单独训练的单模态模型的分数直接相加，这种融合完全不需要额外训练。

# %%
test_loader = DataLoader(test_pairs, batch_size=500)


def test_scores(model: nn.Module) -> np.ndarray:
    """Return the model's (N, 10) test scores, computed batch by batch without a graph."""
    model.eval()
    scores = []
    with tm.no_grad():
        for batch_images, batch_sequences, _ in test_loader:
            scores.append(model(batch_images, batch_sequences).data)
    return np.concatenate(scores)


targets = test_pairs.targets
scores = {name: test_scores(model) for name, model in models.items()}
scores["CNN(I) + RNN(T), trained apart"] = scores["CNN(I)"] + scores["RNN(T)"]
predictions = {name: value.argmax(axis=1) for name, value in scores.items()}
accuracy = {name: float((value == targets).mean()) for name, value in predictions.items()}

published = {"CNN(I)": 0.728, "RNN(T)": 0.861, "MBM(I, T)": 0.947}
published_names = {"CNN(I)": "image network", "RNN(T)": "audio network",
                   "MBM(I, T)": "weighted mean of class scores"}
print(f"{'model':32s} {'inputs':14s} {'ours':>6s}   {'CentralNet AV-MNIST (published)':s}")
for name, value in accuracy.items():
    reference = f"{published[name]:.3f}  {published_names[name]}" if name in published else ""
    print(f"{name:32s} {inputs_of.get(name, 'image + audio'):14s} {value:6.3f}   {reference}")

print(
    "\nThe data differ, so the numbers compare only roughly: the published AV-MNIST audio is FSDD mixed with "
    "ESC-50 background noise and its images had 75% of their energy removed by PCA, while ours is clean FSDD, "
    f"images with {pca.energy_removed:.0%} of their variance removed ({pca.num_components} components), "
    f"{len(train_pairs):,} training pairs for {options.epochs} epoch(s), and a smaller LSTM audio network."
)

# The audio model's score of a test pair depends on its recording only, so its
# accuracy over the distinct recordings is the honest count of what it got right.
audio_model = models["RNN(T)"].rnn
audio_model.eval()
with tm.no_grad():
    recording_predictions = audio_model(tm.tensor(test_sequences)).data.argmax(axis=1)
used = np.unique(test_pairs.audio_index)
recording_accuracy = float((recording_predictions[used] == test_audio_targets[used]).mean())
print(f"RNN(T) on the {used.size} distinct test recordings: {recording_accuracy:.3f} "
      f"({int((recording_predictions[used] != test_audio_targets[used]).sum())} wrong)")

best_single = max(accuracy["CNN(I)"], accuracy["RNN(T)"])
gain = 100 * (accuracy["MBM(I, T)"] - best_single)
print(f"\nMBM minus the better single model: {gain:+.1f} points")
print(f"check: RNN(T) test accuracy {accuracy['RNN(T)']:.3f} >= 0.90: "
      f"{'yes' if accuracy['RNN(T)'] >= 0.90 else 'NO'}")
print(f"check: MBM(I, T) at least 2 points above the better single model ({gain:+.1f}): "
      f"{'yes' if gain >= 2.0 else 'NO'}")

ours = {name: accuracy[name] for name in ("CNN(I)", "RNN(T)", "MBM(I, T)")}
ours["sum, trained apart"] = accuracy["CNN(I) + RNN(T), trained apart"]
figure = viz.plot_grouped_bars({"ours (clean FSDD)": ours, "CentralNet, published (noisy audio)": published},
                               ylabel="test accuracy", title="AV-MNIST-style test accuracy")
lesson.save_figure(figure, options.out, "accuracy_bars.png")

# %% [markdown]
# ## 7. Confusion matrices
#
# Where each model errs. The image model confuses digits whose remaining fine
# strokes look alike; the audio model confuses digits that sound alike for some
# speakers. The two kinds of error rarely fall on the same pair, and that is what
# the sum exploits.
#
# ## 7. 混淆矩阵
#
# 下面看每个模型在哪里出错。图像模型会混淆剩余细笔画相似的数字；音频模型会混淆某些说话人念起来相近的数字。
# 这两类错误很少落在同一个数据对上，而求和融合正是利用了这一点。

# %%
for name, filename in (("CNN(I)", "confusion_cnn.png"), ("RNN(T)", "confusion_rnn.png"),
                       ("MBM(I, T)", "confusion_mbm.png")):
    matrix = viz.confusion_matrix(targets, predictions[name], 10)
    figure = viz.plot_confusion(matrix, title=f"{name}: test accuracy {accuracy[name]:.3f}")
    lesson.save_figure(figure, options.out, filename)

# %% [markdown]
# ## 8. Where the fusion helps
#
# We count the test pairs by which single model got them right, and how often MBM
# is right in each group. When the two single models disagree, MBM has to side with
# the more confident one; when both are wrong, it can still be right if the two
# wrong predictions differ and both models gave the true class a fair score.
#
# ## 8. 融合在哪里起作用
#
# 我们按两个单模态模型各自是否分对，对测试数据对分组计数，并统计每组中 MBM 分对的比例。
# 两个单模态模型意见不一致时，MBM 需要站在更有把握的一方；两者都错时，只要两个错误答案不同、
# 并且两个模型都给真实类别打了不低的分数，MBM 仍然可能分对。

# %%
cnn_right = predictions["CNN(I)"] == targets
rnn_right = predictions["RNN(T)"] == targets
mbm_right = predictions["MBM(I, T)"] == targets
print(f"{'CNN(I)':>7s} {'RNN(T)':>7s} {'pairs':>6s} {'MBM right':>10s}")
for cnn_ok in (True, False):
    for rnn_ok in (True, False):
        group = (cnn_right == cnn_ok) & (rnn_right == rnn_ok)
        share = f"{mbm_right[group].mean():10.1%}" if group.any() else f"{'-':>10s}"
        print(f"{'right' if cnn_ok else 'wrong':>7s} {'right' if rnn_ok else 'wrong':>7s} {group.sum():6d} {share}")

# %% [markdown]
# ## Summary
#
# - A recording becomes a sequence for the LSTM through frames, a Fourier
#   transform, mel bands and a log: (T, F) = (48, 40), standardised with the
#   training recordings' statistics.
# - Removing the leading principal components of the images (fit on training
#   images only) leaves the image model well short of its clean-MNIST accuracy, so
#   the audio has something to add.
# - MBM(I, T) = CNN(I) + RNN(T) trained jointly beats the better single model,
#   because the image and the audio rarely fail on the same pair. Summing two
#   separately trained models is a strong, free baseline.
# - The FSDD test split is small: 300 recordings, reused across the 10,000 test
#   pairs, so the audio accuracy moves in steps of about 1/300.
#
# ## 小结
#
# - 一段录音经过分帧、傅里叶变换、梅尔频带和取对数，变成 LSTM 可读的序列：(T, F) = (48, 40)，
#   并用训练录音的统计量做标准化。
# - 去掉图像的前几个主成分（只在训练图像上拟合）之后，图像模型的准确率远低于它在干净 MNIST 上的水平，
#   这样音频才有可补充之处。
# - 联合训练的 MBM(I, T) = CNN(I) + RNN(T) 超过较好的单模态模型，因为图像和音频很少在同一个数据对上同时出错。
#   把两个单独训练的模型的分数直接相加，是一个很强而且不花训练代价的基线。
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
