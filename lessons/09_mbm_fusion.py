# %% [markdown]
# # Lesson 09: MBM, the summed fusion of an image model and a sequence model
#
# This is the main lesson of tinymbm. The multimodal model MBM reads two inputs
# about the same thing, an image I and a token sequence T, and adds up the class
# scores of two models:
#
#     MBM(I, T) = CNN(I) + RNN(T)
#
# CNN(I; W, b) = max_{k∈K} Σ_i Σ_j W_ijk · I_ij + b_k is the image model (convolution
# and max-pooling, then fully connected layers), and
# RNN(T; W, b) = max_{t∈T} Σ_i Σ_j W_ij · RNN_ij(t) + b_t is the sequence model (an
# LSTM with a linear readout). Each returns 10 class scores (logits); MBM returns
# their sum, and a softmax of the sum gives its class probabilities.
#
# To see what the fusion buys, we need data where each input carries only part of
# the information. `tinymbm.data.PairedMNIST` pairs every MNIST digit with a short
# description: the image is blurred and partly covered by noise patches, and the
# description contains 3 to 5 hints such as "even", "big" (greater than 4) or "loop",
# mixed with filler words, and 5% of the hints are wrong. We train three models on
# the same pairs with the same budget: the CNN on the images alone, the RNN on the
# descriptions alone, and MBM on both, and compare their test accuracies.
#
# # 第 09 课：MBM——图像模型与序列模型的求和融合
#
# 这是 tinymbm 的核心一课。多模态模型 MBM 同时读取关于同一对象的两种输入：一张图像 I 和一个词元序列 T，
# 并把两个模型给出的类别分数相加：
#
#     MBM(I, T) = CNN(I) + RNN(T)
#
# 其中 CNN(I; W, b) = max_{k∈K} Σ_i Σ_j W_ijk · I_ij + b_k 是图像模型（卷积与最大池化，之后接全连接层），
# RNN(T; W, b) = max_{t∈T} Σ_i Σ_j W_ij · RNN_ij(t) + b_t 是序列模型（LSTM 加线性读出层）。
# 两者各自输出 10 个类别分数（logits），MBM 输出它们的和，对这个和做 softmax 就得到它的类别概率。
#
# 要看清融合带来了什么，数据中的每种输入都只能提供部分信息。`tinymbm.data.PairedMNIST`
# 为每个 MNIST 数字配上一段简短的描述：图像经过模糊处理，并被若干噪声方块遮住一部分；
# 描述包含 3 到 5 条提示，例如 "even"（偶数）、"big"（大于 4）或 "loop"（有闭合圈），
# 夹杂着无意义的填充词，而且有 5% 的提示是错的。我们在相同的数据对上、以相同的训练预算训练三个模型：
# 只看图像的 CNN、只看描述的 RNN，以及两者兼看的 MBM，然后比较它们的测试准确率。

# %%
# tinymbm comes before NumPy: it sets OpenBLAS's thread timeout, which NumPy's
# BLAS reads only when it loads, and the convolution runs on every core only then.
import tinymbm as tm

# isort: split
import numpy as np

import tinymbm.functional as F
from tinymbm import lesson, nn, optim, viz
from tinymbm.data import DataLoader
from tinymbm.data.paired import ATTRIBUTES, VOCABULARY, PairedMNIST, text_bayes_accuracy
from tinymbm.models import CNN, MBM, RNN
from tinymbm.train import fit

options = lesson.parse_args(
    "Train the CNN on degraded images, the RNN on token hints, and MBM = CNN + RNN on both",
    name="09_mbm_fusion",
    epochs=2,
    limit=12_000,
    extra=[
        (("--test-limit",), {"type": int, "default": None,
                             "help": "number of test pairs (default: all 10,000; 300 when --limit < 2000)"}),
        (("--batch-size",), {"type": int, "default": 64, "help": "pairs per training step (default 64)"}),
        (("--lr",), {"type": float, "default": 1e-3, "help": "Adam learning rate of every model (default 0.001)"}),
    ],
)
clock = lesson.Clock()

# %% [markdown]
# ## 1. The paired data
#
# Each example is (image, sequence, label). The image is (1, 28, 28) float32 in
# [0, 1]: an MNIST digit blurred (Gaussian, σ = 1 pixel), with two 11 × 11 squares
# replaced by random noise and a little Gaussian noise on top. The sequence is
# (T, F) = (8, 20): eight one-hot tokens from a vocabulary of 20, namely 12 hint
# tokens (a yes and a no token for each of six attributes of a digit) and 8 filler
# words. The pairs are built from the matching MNIST split, so the test images are
# never seen in training, and the same seed gives the same pairs on every run.
#
# The heavy CNN (64 and 128 channels, a 6,272 → 1,024 fully connected layer) costs
# about 5 ms per image and training step on 2 cores. So by default we train on the
# first 12,000 training pairs (`--limit`) for 2 epochs. We test on all 10,000 test pairs.
#
# ## 1. 配对数据
#
# 每个样本是 (image, sequence, label)。图像是 [0, 1] 区间内的 (1, 28, 28) float32 数组：
# 一个 MNIST 数字先经过高斯模糊（σ = 1 像素），再有两个 11 × 11 的方块被随机噪声替换，最后叠加少量高斯噪声。
# 序列的形状是 (T, F) = (8, 20)：8 个独热编码的词元，词表共 20 个词，包括 12 个提示词
# （数字的六种属性，每种属性各有一个"是"和一个"否"的词）和 8 个填充词。
# 数据对分别由对应的 MNIST 划分构建，因此测试图像从不出现在训练中；同一个随机种子每次都生成相同的数据对。
#
# 这个 CNN 很重（64 和 128 个通道，外加一个 6,272 → 1,024 的全连接层），在 2 个核上每张图像每步约需 5 毫秒，
# 所以默认只用前 12,000 个训练数据对（`--limit`）训练 2 个 epoch，并在全部 10,000 个测试数据对上测试。

# %%
quick = options.limit is not None and options.limit < 2000
test_limit = options.test_limit
if test_limit is None and quick:
    test_limit = 300

train_pairs = PairedMNIST(options.data_dir, train=True, seed=options.seed, limit=options.limit)
test_pairs = PairedMNIST(options.data_dir, train=False, seed=options.seed, limit=test_limit)
print(train_pairs)
print(test_pairs)

image, sequence, label = train_pairs[0]
print(f"one example: image {image.shape} {image.dtype}, sequence {sequence.shape} {sequence.dtype}, "
      f"label {int(label)} {label.dtype}")
print("vocabulary:", " ".join(VOCABULARY))

# %% [markdown]
# The six attributes and the digits for which each is "yes". All six together name
# one digit, but a description shows only 3 to 5 of them, so several digits often
# stay possible. We print the measured rate of wrong hints and the best accuracy
# that any model reading the descriptions alone can reach: the Bayes rule over the
# hints, computed exactly by `text_bayes_accuracy`.
#
# 下面列出六种属性，以及每种属性回答"是"的数字。六种属性合在一起能唯一确定一个数字，但每段描述只给出其中 3 到 5 种，
# 所以常常有好几个数字都说得通。我们打印实测的错误提示比例，以及任何只读描述的模型所能达到的最高准确率：
# 即基于这些提示的贝叶斯决策规则，由 `text_bayes_accuracy` 精确算出。

# %%
for name, yes, no, digits in ATTRIBUTES:
    print(f"{name:15s} {yes:>9s} / {no:<11s} yes for digits {' '.join(map(str, sorted(digits)))}")

wrong_rate = train_pairs.flipped.sum() / train_pairs.is_hint.sum()
text_bound = text_bayes_accuracy(train_pairs.description)
print(f"hints per description: {train_pairs.is_hint.sum(axis=1).mean():.2f} on average")
print(f"wrong hints: {wrong_rate:.3%} of all hints (set to {train_pairs.description.hint_noise:.0%})")
print(f"best possible accuracy from the descriptions alone: {text_bound:.3f}")

# %% [markdown]
# A few training pairs: the degraded image and, under it, its eight tokens, with
# the true label. Hints marked with `!` state the wrong value.
#
# 下面是几个训练数据对：上方是退化后的图像，下方是它的 8 个词元以及真实标签。带 `!` 的提示给出的是错误的属性值。

# %%
def caption(pairs: PairedMNIST, index: int) -> str:
    """Return the label and the tokens of one pair, four per line, wrong hints marked with '!'."""
    words = [word + ("!" if wrong else "") for word, wrong in zip(pairs.words(index), pairs.flipped[index])]
    lines = [" ".join(words[start:start + 4]) for start in range(0, len(words), 4)]
    return f"label {pairs.targets[index]}\n" + "\n".join(lines)


shown = np.arange(12)
figure = viz.plot_captioned_images(train_pairs.images[shown], [caption(train_pairs, i) for i in shown],
                                   columns=6, title="degraded images and their descriptions")
lesson.save_figure(figure, options.out, "example_pairs.png")

# %% [markdown]
# ## 2. Summing logits
#
# Write a = CNN(I) and b = RNN(T) for the two score vectors and z = a + b. The
# softmax of the sum is, for each class k,
#
#     softmax(a + b)_k = softmax(a)_k · softmax(b)_k / Σ_j softmax(a)_j · softmax(b)_j
#
# so MBM multiplies the two models' class probabilities and renormalises: in log
# space, the evidence of the two inputs adds up. A class that both models find
# likely wins; one model can overrule the other only with a large score gap. This
# is the rule for two independent pieces of evidence (up to the class prior), and
# here the blur and noise of an image are indeed independent of its description.
#
# Training needs no new machinery either. With the cross-entropy loss L, the
# gradient with respect to the sum is ∂L/∂z = softmax(z) - onehot(y) (divided by the
# batch size N for the mean), and since ∂z/∂a = ∂z/∂b = 1, both models receive the
# very same gradient:
#
#     ∂L/∂a = ∂L/∂b = ∂L/∂z
#
# Each model then backpropagates it through its own layers. Note what this
# means: each model is pushed by the error of the *sum*, so once the other model
# already gets an example right, that example teaches it little. We check the
# identity on an untrained MBM by keeping the gradients of a and b
# (`retain_grad`) after one backward pass.
#
# ## 2. 对 logits 求和
#
# 记两个分数向量为 a = CNN(I)、b = RNN(T)，并令 z = a + b。对每个类别 k，和的 softmax 为
#
#     softmax(a + b)_k = softmax(a)_k · softmax(b)_k / Σ_j softmax(a)_j · softmax(b)_j
#
# 也就是说，MBM 把两个模型的类别概率相乘后再归一化：在对数空间里，两种输入提供的证据相加。
# 两个模型都认为可能的类别胜出；只有分数差距足够大时，一个模型才能推翻另一个模型的判断。
# 这正是合并两条相互独立的证据的规则（相差一个类别先验），而在这里，图像的模糊和噪声确实与它的描述相互独立。
#
# 训练也不需要任何新机制。对交叉熵损失 L，它对和的梯度是 ∂L/∂z = softmax(z) - onehot(y)
# （取平均时再除以批大小 N）。由于 ∂z/∂a = ∂z/∂b = 1，两个模型收到的是完全相同的梯度：
#
#     ∂L/∂a = ∂L/∂b = ∂L/∂z
#
# 然后各自沿着自己的层反向传播。这意味着每个模型都由*和*的误差来驱动：如果另一个模型已经把某个样本分对了，
# 这个样本就教不了它多少东西。下面我们在一个未训练的 MBM 上做一次反向传播，用 `retain_grad`
# 保留 a 和 b 的梯度，来验证这个等式。

# %%
def make_cnn() -> CNN:
    """Build the image model with the weights that seed options.seed gives."""
    tm.manual_seed(options.seed)
    return CNN(in_channels=1, num_classes=10, image_size=28)


def make_rnn() -> RNN:
    """Build the sequence model with the weights that seed options.seed + 1 gives."""
    tm.manual_seed(options.seed + 1)
    return RNN(input_size=len(VOCABULARY), hidden_size=64, num_layers=1, num_classes=10)


probe = MBM(make_cnn(), make_rnn())
images = tm.tensor(train_pairs.images[:8])
sequences = tm.tensor(train_pairs.sequences[:8])
labels = tm.tensor(train_pairs.targets[:8])

a = probe.cnn(images)
b = probe.rnn(sequences)
a.retain_grad()
b.retain_grad()
z = a + b
loss = F.cross_entropy(z, labels)
loss.backward()

expected = (F.softmax(z, dim=1).data - np.eye(10, dtype=np.float32)[labels.data]) / len(labels.data)
print(f"initial loss {loss.item():.4f} (log 10 = {np.log(10):.4f})")
print(f"max |dL/da - dL/db|                 = {np.abs(a.grad - b.grad).max():.2e}")
print(f"max |dL/da - (softmax(z) - onehot)/N| = {np.abs(a.grad - expected).max():.2e}")

product = F.softmax(a, dim=1).data * F.softmax(b, dim=1).data
product /= product.sum(axis=1, keepdims=True)
print(f"max |softmax(a + b) - normalised softmax(a) * softmax(b)| = "
      f"{np.abs(F.softmax(z, dim=1).data - product).max():.2e}")

# %% [markdown]
# ## 3. Three models, one budget
#
# The three models see the same batches in the same order (one loader seed). They
# use the same optimizer (Adam, learning rate 0.001), the same number of epochs and
# the same initial weights. The CNN alone and the CNN inside MBM start from the
# same numbers, and so do the two RNNs. The single-input models are wrapped so
# that they take the pair (I, T) and ignore the input they do not read. So
# `tinymbm.train.fit` can feed all three the same `(images, sequences, labels)`
# batches. A small loss function records the loss of every training step for the
# curves below.
#
# ## 3. 三个模型，同一份预算
#
# 三个模型以相同的顺序看到相同的批次（数据加载器使用同一个随机种子），使用相同的优化器（Adam，学习率 0.001）、
# 相同的 epoch 数和相同的初始权重：单独的 CNN 与 MBM 内部的 CNN 从同样的数值出发，两个 RNN 也是如此。
# 单模态模型被包装成接收数据对 (I, T)，并忽略自己不读取的那一路输入；这样 `tinymbm.train.fit`
# 就能把同样的 `(images, sequences, labels)` 批次喂给三个模型。一个小小的损失函数会记下每一步的训练损失，用于下面的曲线。

# %%
class ImageOnly(nn.Module):
    """Score a pair (I, T) with CNN(I) alone."""

    def __init__(self, cnn: CNN) -> None:
        super().__init__()
        self.cnn = cnn

    def forward(self, image: tm.Tensor, sequence: tm.Tensor) -> tm.Tensor:
        return self.cnn(image)


class SequenceOnly(nn.Module):
    """Score a pair (I, T) with RNN(T) alone."""

    def __init__(self, rnn: RNN) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, image: tm.Tensor, sequence: tm.Tensor) -> tm.Tensor:
        return self.rnn(sequence)


class RecordedLoss:
    """Cross-entropy that also appends each training step's loss to ``steps``."""

    def __init__(self) -> None:
        self.steps: list[float] = []

    def __call__(self, output: tm.Tensor, targets: tm.Tensor) -> tm.Tensor:
        loss = F.cross_entropy(output, targets)
        if tm.is_grad_enabled():
            self.steps.append(loss.item())
        return loss


models = {
    "CNN(I)": ImageOnly(make_cnn()),
    "RNN(T)": SequenceOnly(make_rnn()),
    "MBM(I, T)": MBM(make_cnn(), make_rnn()),
}
inputs_of = {"CNN(I)": "image", "RNN(T)": "tokens", "MBM(I, T)": "image + tokens"}
step_losses: dict[str, list[float]] = {}
test_loader = DataLoader(test_pairs, batch_size=500)

for name, model in models.items():
    parameters = sum(p.data.size for p in model.parameters())
    print(f"\ntraining {name} on {len(train_pairs)} pairs, {options.epochs} epoch(s), {parameters:,} parameters")
    recorder = RecordedLoss()
    if options.epochs > 0:
        train_loader = DataLoader(train_pairs, batch_size=options.batch_size, shuffle=True, seed=options.seed)
        fit(model, optim.Adam(model.parameters(), lr=options.lr), train_loader, options.epochs, loss_fn=recorder)
    step_losses[name] = recorder.steps
    print(f"{name}: {clock.seconds():.0f} s since the start")

# %% [markdown]
# ## 4. The results side by side
#
# We compute every model's test scores once, in batches and without a graph,
# then read the accuracies, the confusion matrices and the per-example agreement
# from them. For MBM we also keep its two parts, CNN(I) and RNN(T), whose sum is
# its output.
#
# ## 4. 结果对比
#
# 我们在不记录计算图的情况下，分批算出每个模型在测试集上的分数，只算一次，然后从中读出准确率、混淆矩阵以及逐样本的对错情况。
# 对 MBM，我们还保留它的两个组成部分 CNN(I) 和 RNN(T)，它们的和就是 MBM 的输出。

# %%
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
predictions = {name: value.argmax(axis=1) for name, value in scores.items()}
accuracy = {name: float((value == targets).mean()) for name, value in predictions.items()}

print(f"{'model':12s} {'inputs':16s} {'test accuracy':>13s}")
for name in models:
    print(f"{name:12s} {inputs_of[name]:16s} {accuracy[name]:13.3f}")
print(f"{'(best text-only model, Bayes rule)':29s} {text_bound:13.3f}")

best_single = max(accuracy["CNN(I)"], accuracy["RNN(T)"])
print(f"\nMBM minus the better single model: {100 * (accuracy['MBM(I, T)'] - best_single):+.1f} points")
loss_of_mbm = F.cross_entropy(tm.tensor(scores["MBM(I, T)"]), tm.tensor(targets)).item()
print(f"MBM test loss: {loss_of_mbm:.4f}")

figure = viz.plot_bars(accuracy, ylabel="test accuracy", title="the same pairs, the same budget")
lesson.save_figure(figure, options.out, "accuracy_bars.png")

# %% [markdown]
# ## 5. Training curves and confusion matrices
#
# The loss of every training step, smoothed over 20 steps. RNN(T) stays near
# log 10 for the first few dozen steps, because the LSTM first has to learn to
# carry a hint to its last step. Then it levels off near what its hints allow. The
# CNN keeps improving. MBM falls fastest and ends below both.
# The confusion matrices show where each model errs. The image model mixes up
# digits that look alike once blurred and covered (4 and 9, 3, 5 and 8, 7 and 9).
# The sequence model mixes up digits with similar attributes (6 and 8 share
# even, big and loop). The fusion clears most of both.
#
# ## 5. 训练曲线与混淆矩阵
#
# 下图是每个训练步的损失，按 20 步做了平滑。最初几十步里 RNN(T) 的损失一直停在 log 10 附近，
# 因为 LSTM 先要学会把提示携带到最后一个时间步；之后它稳定在提示所允许的水平附近。CNN 持续改进；
# MBM 下降得最快，最终低于两者。混淆矩阵显示了每个模型在哪里出错：
# 图像模型会混淆模糊、遮挡后看起来相似的数字（4 与 9，3、5 与 8，7 与 9），
# 序列模型会混淆属性相似的数字（6 和 8 都是偶数、大于 4、有闭合圈），而融合模型消除了其中的大部分错误。

# %%
def smooth(values: list[float], width: int = 20) -> np.ndarray:
    """Return the running mean of ``values`` over ``width`` steps (fewer at the start)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, values.size + 1), width)
    return (sums[1:] - sums[np.maximum(np.arange(1, values.size + 1) - width, 0)]) / counts


steps = max(len(values) for values in step_losses.values())
curves = {name: smooth(values) for name, values in step_losses.items() if len(values) == steps}
if steps:
    figure = viz.plot_lines(np.arange(1, steps + 1), curves, xlabel="training step", ylabel="loss",
                            title="training loss (running mean over 20 steps)")
    lesson.save_figure(figure, options.out, "loss_curves.png")

for name, filename in (("CNN(I)", "confusion_cnn.png"), ("RNN(T)", "confusion_rnn.png"),
                       ("MBM(I, T)", "confusion_mbm.png")):
    matrix = viz.confusion_matrix(targets, predictions[name], 10)
    figure = viz.plot_confusion(matrix, title=f"{name}: test accuracy {accuracy[name]:.3f}")
    lesson.save_figure(figure, options.out, filename)

# %% [markdown]
# ## 6. Where the fusion helps
#
# We count the test pairs by which single model got them right. When both are
# right, MBM almost always is too. The interesting rows are the disagreements and
# the pairs that both single models got wrong: there MBM can still be right,
# because two weak votes for the same class add up to a strong one.
#
# ## 6. 融合在哪里起作用
#
# 我们按两个单模态模型各自是否分对，对测试数据对进行分组计数。两个模型都对时，MBM 几乎总是也对。
# 值得关注的是两者意见不一致的情况，以及两个单模态模型都错的情况：这时 MBM 仍然可能分对，
# 因为两张都投给同一个类别的弱票加起来就成了一张强票。

# %%
cnn_right = predictions["CNN(I)"] == targets
rnn_right = predictions["RNN(T)"] == targets
mbm_right = predictions["MBM(I, T)"] == targets
print(f"{'CNN(I)':>7s} {'RNN(T)':>7s} {'pairs':>6s} {'MBM right':>10s}")
for cnn_ok in (True, False):
    for rnn_ok in (True, False):
        group = (cnn_right == cnn_ok) & (rnn_right == rnn_ok)
        share = mbm_right[group].mean() if group.any() else float("nan")
        print(f"{'right' if cnn_ok else 'wrong':>7s} {'right' if rnn_ok else 'wrong':>7s} "
              f"{group.sum():6d} {share:10.1%}")

# %% [markdown]
# One test pair that both single models got wrong and MBM got right, if there is
# one: MBM's two parts, CNN(I) and RNN(T), and their sum, class by class. Note that
# these two parts were trained together inside MBM, so they are not the same
# numbers as the single models above.
#
# 下面展示一个两个单模态模型都分错、而 MBM 分对的测试数据对（如果存在的话）：逐个类别列出 MBM 的两个组成部分
# CNN(I)、RNN(T) 以及它们的和。注意这两部分是在 MBM 内部一起训练的，所以它们的数值与上面单独训练的模型并不相同。

# %%
rescued = np.flatnonzero(~cnn_right & ~rnn_right & mbm_right)
if rescued.size:
    index = int(rescued[0])
else:
    index = 0
    print("no test pair was wrong for both single models and right for MBM; showing test pair 0")
mbm = models["MBM(I, T)"]
with tm.no_grad():
    mbm.eval()
    part_image = mbm.cnn(tm.tensor(test_pairs.images[index:index + 1])).data[0]
    part_sequence = mbm.rnn(tm.tensor(test_pairs.sequences[index:index + 1])).data[0]

print(f"test pair {index}: label {targets[index]}, tokens: {' '.join(test_pairs.words(index))}")
print(f"single models predicted: CNN(I) {predictions['CNN(I)'][index]}, RNN(T) {predictions['RNN(T)'][index]}")
print(f"{'class':>5s} {'CNN(I)':>8s} {'RNN(T)':>8s} {'sum':>8s}")
for k in range(10):
    mark = "  <- MBM's answer" if k == int(np.argmax(part_image + part_sequence)) else ""
    print(f"{k:5d} {part_image[k]:8.2f} {part_sequence[k]:8.2f} {part_image[k] + part_sequence[k]:8.2f}{mark}")

rescued_shown = rescued[:6] if rescued.size else np.arange(min(6, len(test_pairs)))
captions = [caption(test_pairs, int(i)) + f"\nCNN {predictions['CNN(I)'][i]}  RNN {predictions['RNN(T)'][i]}"
            f"  MBM {predictions['MBM(I, T)'][i]}" for i in rescued_shown]
figure = viz.plot_captioned_images(test_pairs.images[rescued_shown], captions, columns=6,
                                   title="test pairs that both single models got wrong")
lesson.save_figure(figure, options.out, "rescued_pairs.png")

# %% [markdown]
# ## Summary
#
# - MBM(I, T) = CNN(I) + RNN(T) adds the class scores of two models. Through the
#   softmax, this multiplies their class probabilities: the evidence of the image
#   and of the description adds up in log space.
# - The backward pass of a sum copies the gradient: both models receive the same
#   ∂L/∂z = softmax(z) - onehot(y), so each one learns from the error of the fused
#   prediction.
# - On data where neither input suffices, the fused model beats the better single
#   model by a wide margin, and it even gets right many pairs that both single
#   models get wrong.
#
# ## 小结
#
# - MBM(I, T) = CNN(I) + RNN(T) 把两个模型的类别分数相加。经过 softmax，这相当于把它们的类别概率相乘：
#   图像和描述提供的证据在对数空间中相加。
# - 求和的反向传播会把梯度原样复制：两个模型收到同一个 ∂L/∂z = softmax(z) - onehot(y)，
#   因此每个模型都从融合预测的误差中学习。
# - 在任何一种输入单独都不够用的数据上，融合模型大幅超过较好的单模态模型，
#   甚至能分对许多两个单模态模型都分错的数据对。
#
# ## Exercises / 练习
#
# 1. Fuse the two trained single models without any training: add the scores of
#    the CNN(I) and RNN(T) trained above and measure the accuracy. How close does it
#    come to MBM trained jointly, and why might joint training differ?
#    不经任何训练直接融合两个已训练好的单模态模型：把上面单独训练的 CNN(I) 与 RNN(T) 的分数相加，测量准确率。
#    它离联合训练的 MBM 有多近？联合训练为什么可能得到不同的结果？
# 2. Set `Description(hint_noise=0.0)` and then `hint_noise=0.2` in `PairedMNIST`, and
#    compare `text_bayes_accuracy` with the accuracy RNN(T) reaches. What happens to
#    the gain of MBM over the CNN?
#    在 `PairedMNIST` 中分别设置 `Description(hint_noise=0.0)` 和 `hint_noise=0.2`，
#    比较 `text_bayes_accuracy` 与 RNN(T) 实际达到的准确率。MBM 相对 CNN 的提升会怎样变化？
# 3. Replace the sum by a weighted sum w · CNN(I) + (1 - w) · RNN(T) with a
#    learnable w in (0, 1) (a sigmoid of a Parameter). What value does w take, and
#    does the accuracy change?
#    把求和换成加权和 w · CNN(I) + (1 - w) · RNN(T)，其中 w ∈ (0, 1) 可学习（对一个 Parameter 取 sigmoid）。
#    w 最终取什么值？准确率有变化吗？

# %%
clock.report()
