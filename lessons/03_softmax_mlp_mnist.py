# %% [markdown]
# # Lesson 03: softmax regression and an MLP on MNIST
#
# MNIST contains 70,000 grey-scale digits of 28 × 28 pixels, 60,000 for training and
# 10,000 for testing. We train two classifiers on it: softmax regression, a single
# linear layer, and a multilayer perceptron (MLP) with one hidden layer of 256 ReLU
# units. Their test accuracies end up side by side.
#
# Along the way we keep three rituals that catch most bugs before a long run: seed
# every random draw first, check that the initial loss is close to log 10, and make
# sure the model can overfit a tiny subset. At the end we look at what the MLP gets
# wrong, with a confusion matrix and a grid of misclassified digits.
#
# # 第 03 课：在 MNIST 上训练 softmax 回归和多层感知机
#
# MNIST 包含 70,000 张 28 × 28 像素的灰度手写数字，其中 60,000 张用于训练，10,000 张用于测试。
# 我们在上面训练两个分类器：softmax 回归（只有一个线性层），以及带一个 256 个 ReLU 单元隐藏层的
# 多层感知机（MLP），最后把两者的测试准确率放在一起比较。
#
# 途中我们坚持三个习惯，它们能在长时间训练之前发现大多数错误：先给所有随机数设定种子；检查初始
# 损失是否接近 log 10；确认模型能把一个很小的子集过拟合。最后用混淆矩阵和一张误分类数字的网格图，
# 看看 MLP 错在哪里。

# %%
import math
import sys
from pathlib import Path

import numpy as np

try:
    import tinymbm as tm
except ModuleNotFoundError:
    # A checkout without `pip install -e .`: the package sits one folder above lessons/.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent))
    import tinymbm as tm
import tinymbm.functional as F
from tinymbm import lesson, nn, optim, viz
from tinymbm.data import DataLoader, TensorDataset, load_mnist
from tinymbm.train import evaluate, fit

DEFAULT_EPOCHS = 8
options = lesson.parse_args(
    "Lesson 03: softmax regression and an MLP on MNIST, with the training rituals",
    name="03_softmax_mlp_mnist",
    epochs=DEFAULT_EPOCHS,
)
clock = lesson.Clock()

BATCH_SIZE = 128
NUM_CLASSES = 10
quick = options.limit is not None
# Quick mode validates on fewer images, so the synthetic fallback (used when no real MNIST
# is found) has fewer digits to render.
VALIDATION_SIZE = 1000 if quick else 5000

# %% [markdown]
# ## 1. Ritual one: seed first
#
# Weight initialization, shuffling and any synthetic data all draw from one random
# generator, so seeding it before anything else makes the whole run repeatable: the
# same command prints the same numbers. `lesson.parse_args` already seeds it with
# `--seed`, and we do it once more here so the ritual stays visible. The data loaders
# get their own seed, so the order of the batches is repeatable too.
#
# ## 1. 习惯一：先设种子
#
# 权重初始化、数据打乱以及合成数据都从同一个随机数生成器取数，因此在做任何事之前先给它设定种子，
# 整个运行就可以复现：同样的命令打印同样的数字。`lesson.parse_args` 已经用 `--seed` 设过种子，
# 这里再设一次，好让这个习惯一目了然。数据加载器有自己的种子，所以批次的顺序也可以复现。

# %%
tm.manual_seed(options.seed)
print("seed:", options.seed)

# %% [markdown]
# ## 2. The data
#
# `load_mnist` looks for the real MNIST files in `--data-dir`, then in `$TINYMBM_DATA`,
# then in the user cache. If none of them has the files, it prints one line and
# returns synthetic MNIST-style digits instead, so the lesson still runs offline.
#
# Each image becomes a vector x of 784 pixel values, scaled to [0, 1] and then
# standardized with the mean and standard deviation of the training pixels:
# x ← (x − mean) / std. We hold out the last 5,000 training images (1,000 in quick mode)
# as a validation set for the curves. The test set is used only once, at the end. With `--limit N` the
# models train on the first N images only (quick mode).
#
# ## 2. 数据
#
# `load_mnist` 依次在 `--data-dir`、`$TINYMBM_DATA` 和用户缓存目录中查找真实的 MNIST 文件。若都
# 找不到，它会打印一行说明，改用合成的 MNIST 风格数字，所以本课离线也能运行。
#
# 每张图像展开成 784 个像素值组成的向量 x，先缩放到 [0, 1]，再用训练集像素的均值和标准差做标准化：
# x ← (x − mean) / std。训练集最后 5,000 张图像（快速模式下为 1,000 张）留作验证集，用来画学习曲线；
# 测试集只在最后用一次。
# 加上 `--limit N` 时，模型只用前 N 张图像训练（快速模式）。

# %%
train_split = load_mnist(options.data_dir, train=True,
                         synthetic_size=options.limit + VALIDATION_SIZE if quick else None, seed=options.seed)
test_split = load_mnist(options.data_dir, train=False, synthetic_size=1000 if quick else None, seed=options.seed)
print(f"data source: {train_split.source}; {len(train_split.images)} training and "
      f"{len(test_split.images)} test images of shape {train_split.images.shape[1:]}")

pixels = train_split.images.reshape(len(train_split.images), -1).astype(np.float32) / 255
train_end = len(pixels) - VALIDATION_SIZE
mean = float(pixels[:train_end].mean())
std = float(pixels[:train_end].std())
print(f"training pixel mean {mean:.4f}, std {std:.4f}")


def standardize(images: np.ndarray) -> np.ndarray:
    """Map uint8 images (N, 28, 28) to float32 vectors (N, 784) with x ← (x / 255 − mean) / std."""
    return ((images.reshape(len(images), -1).astype(np.float32) / 255 - mean) / std).astype(np.float32)


labels = train_split.labels
train_count = min(options.limit, train_end) if quick else train_end
x_train, y_train = standardize(train_split.images[:train_count]), labels[:train_count]
x_val, y_val = standardize(train_split.images[train_end:]), labels[train_end:]
x_test, y_test = standardize(test_split.images), test_split.labels
print(f"train {x_train.shape}, validation {x_val.shape}, test {x_test.shape}")
print("training examples per class:", np.bincount(y_train, minlength=NUM_CLASSES))

train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=BATCH_SIZE, shuffle=True, seed=options.seed)
val_loader = DataLoader(TensorDataset(x_val, y_val), batch_size=1000)
test_loader = DataLoader(TensorDataset(x_test, y_test), batch_size=1000)

figure = viz.plot_images(train_split.images[:16], labels=labels[:16], title="the first training images and labels")
lesson.save_figure(figure, options.out, "training_samples.png")

# %% [markdown]
# ## 3. The two models
#
# Softmax regression computes one score per class, s = x Wᵀ + b, with W of shape
# (10, 784) and b of shape (10,). The softmax turns the scores into probabilities,
# p_k = exp(s_k) / Σ_j exp(s_j), and the loss of an example with label y is the cross
# entropy −log p_y, averaged over the batch (`F.cross_entropy` computes it from s
# directly, through a stable log-softmax). Each row of W is a 28 × 28 template that
# is compared with the image.
#
# The MLP puts a hidden layer in between: h = relu(x W₁ᵀ + b₁) with 256 units, then
# s = h W₂ᵀ + b₂. The ReLU makes the model nonlinear, so it can combine pieces of
# strokes instead of matching one template per class.
#
# ## 3. 两个模型
#
# softmax 回归为每个类别计算一个分数：s = x Wᵀ + b，其中 W 的形状为 (10, 784)，b 的形状为 (10,)。
# softmax 把分数变成概率 p_k = exp(s_k) / Σ_j exp(s_j)；标签为 y 的样本，其损失是交叉熵 −log p_y，
# 再在批次上取平均（`F.cross_entropy` 直接从 s 出发，通过数值稳定的 log-softmax 计算）。W 的每一行
# 都是一个 28 × 28 的模板，拿来与图像比对。
#
# MLP 在中间加了一个隐藏层：h = relu(x W₁ᵀ + b₁)，共 256 个单元，然后 s = h W₂ᵀ + b₂。ReLU 让模型
# 成为非线性的，于是它能组合笔画的各个局部，而不只是每个类别匹配一个模板。

# %%
def make_softmax_regression() -> nn.Module:
    return nn.Linear(28 * 28, NUM_CLASSES)


def make_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(28 * 28, 256), nn.ReLU(), nn.Linear(256, NUM_CLASSES))


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


softmax_regression = make_softmax_regression()
mlp = make_mlp()
print(mlp)
print(f"parameters: softmax regression {count_parameters(softmax_regression):,}, MLP {count_parameters(mlp):,}")

# %% [markdown]
# ## 4. Ritual two: the initial loss should be about log 10
#
# Freshly initialized weights are small, so the initial scores are close to each
# other and p is close to uniform, p_k ≈ 1/10. The cross entropy is then
# −log(1/10) = log 10 ≈ 2.303. A much larger initial loss means the initial scores
# are far too large (a bad initialization or unscaled inputs). A much smaller one
# means the labels leak into the inputs or the loss is computed wrongly.
#
# Softmax regression starts a little above log 10 here. Its scores s = x Wᵀ + b sum
# 784 standardized pixels, each weighted by a W drawn from U(−1/28, 1/28), so each
# score has a standard deviation of about 0.6 and the probabilities are not quite
# uniform. We accept anything within 0.3 of log 10.
#
# ## 4. 习惯二：初始损失应约为 log 10
#
# 刚初始化的权重很小，所以各类的初始分数彼此接近，p 接近均匀分布，即 p_k ≈ 1/10，交叉熵就是
# −log(1/10) = log 10 ≈ 2.303。初始损失大得多，说明初始分数太大（初始化不当，或输入没有缩放）；
# 小得多，则说明标签泄漏到了输入中，或者损失算错了。
#
# 这里 softmax 回归的初始损失略高于 log 10。它的分数 s = x Wᵀ + b 是 784 个标准化像素的加权和，
# 权重 W 取自 U(−1/28, 1/28)，因此每个分数的标准差约为 0.6，概率并不完全均匀。我们接受与 log 10
# 相差 0.3 以内的任何值。

# %%
probe_x, probe_y = tm.tensor(x_train[:1000]), tm.tensor(y_train[:1000])
for name, model in (("softmax regression", softmax_regression), ("MLP", mlp)):
    with tm.no_grad():
        initial_loss = F.cross_entropy(model(probe_x), probe_y).item()
    print(f"{name:<19} initial loss {initial_loss:.4f}   log 10 = {math.log(10):.4f}")
    assert abs(initial_loss - math.log(10)) < 0.3, f"{name}: initial loss {initial_loss:.3f} is far from log 10"

# %% [markdown]
# ## 5. Ritual three: overfit a tiny subset
#
# A model with 200,000 parameters must be able to memorize 50 examples. If it cannot
# drive the training loss close to 0 and reach 100% accuracy on them, something is
# broken: the loss, the backward pass, the optimizer step or the labels. A long run on
# all the data would only hide the problem. This loop is written out by hand, since it
# is the loop that `fit` runs for us later: clear the gradients, forward, loss,
# backward, step.
#
# ## 5. 习惯三：先过拟合一个很小的子集
#
# 一个有 20 万个参数的模型，必须能记住 50 个样本。如果它不能把训练损失压到接近 0、并在这些样本
# 上达到 100% 的准确率，那就一定有什么地方坏了（损失、反向传播、优化器的更新或标签），而在全部
# 数据上长时间训练只会把问题掩盖起来。这个循环是手写的，因为后面 `fit` 替我们执行的正是它：
# 梯度清零、前向、计算损失、反向、更新。

# %%
tiny_x, tiny_y = tm.tensor(x_train[:50]), tm.tensor(y_train[:50])
tiny_model = make_mlp()
tiny_optimizer = optim.Adam(tiny_model.parameters(), lr=1e-3)
tiny_losses = []
for step in range(101):
    tiny_optimizer.zero_grad()
    scores = tiny_model(tiny_x)
    loss = F.cross_entropy(scores, tiny_y)
    loss.backward()
    tiny_optimizer.step()
    tiny_losses.append(loss.item())
    if step % 20 == 0:
        accuracy = float((scores.argmax(dim=1).numpy() == y_train[:50]).mean())
        print(f"step {step:>3}: loss {loss.item():.4f}, accuracy on the 50 examples {accuracy:.2f}")

with tm.no_grad():
    tiny_accuracy = float((tiny_model(tiny_x).argmax(dim=1).numpy() == y_train[:50]).mean())
assert tiny_accuracy == 1.0, f"the MLP did not overfit 50 examples (accuracy {tiny_accuracy:.2f})"
print("the MLP memorized all 50 examples")
figure = viz.plot_curve(tiny_losses, xlabel="step", ylabel="training loss", title="overfitting 50 examples")
lesson.save_figure(figure, options.out, "overfit_tiny_subset.png")

# %% [markdown]
# ## 6. Training softmax regression
#
# Now the real run. `tinymbm.train.fit` runs the loop of section 5 over every batch of
# every epoch, shows a progress bar, and evaluates on the validation set after each
# epoch. Softmax regression trains with SGD with momentum 0.9 and learning rate 0.01.
#
# ## 6. 训练 softmax 回归
#
# 现在开始正式训练。`tinymbm.train.fit` 在每个 epoch 的每个批次上执行第 5 节的循环，显示进度条，
# 并在每个 epoch 结束后在验证集上评估。softmax 回归用带动量 0.9、学习率 0.01 的 SGD 训练。

# %%
softmax_optimizer = optim.SGD(softmax_regression.parameters(), lr=0.01, momentum=0.9)
softmax_history = fit(softmax_regression, softmax_optimizer, train_loader, options.epochs, val_loader=val_loader)
softmax_test_loss, softmax_test_accuracy = evaluate(softmax_regression, test_loader)
print(f"softmax regression: validation accuracy per epoch {np.round(softmax_history['val_acc'], 4).tolist()}")

templates = softmax_regression.weight.numpy().reshape(NUM_CLASSES, 28, 28)
figure = viz.plot_images(templates, labels=list(range(NUM_CLASSES)), columns=10,
                         title="softmax regression: each row of W as a 28 × 28 template")
lesson.save_figure(figure, options.out, "softmax_templates.png")

# %% [markdown]
# The plot `softmax_templates.png` shows each row of W as an image: light pixels push
# the score of that class up, dark ones push it down. The templates are noisy, but on
# real MNIST parts of each digit show through: light where that digit's strokes
# usually lie, dark where the strokes of competing digits lie. This is the one
# template per class of section 3.
#
# 图 `softmax_templates.png` 把 W 的每一行画成一张图：亮的像素提高该类的分数，暗的像素降低它。
# 这些模板噪声很大，但在真实的 MNIST 上仍能看出每个数字的局部：该数字笔画常落的位置偏亮，与它
# 相互竞争的数字的笔画位置偏暗。这就是第 3 节所说的"每类一个模板"。

# %% [markdown]
# ## 7. Training the MLP
#
# The MLP trains with Adam at learning rate 10⁻³, the usual starting point. Adam scales
# each parameter's step by a running estimate of its gradient's size, which usually
# makes it less sensitive to the learning rate than plain SGD.
#
# ## 7. 训练 MLP
#
# MLP 用学习率为 10⁻³ 的 Adam 训练，这是常用的起点。Adam 根据每个参数梯度大小的滑动估计来缩放
# 该参数的步长，因此通常比普通 SGD 对学习率更不敏感。

# %%
mlp_optimizer = optim.Adam(mlp.parameters(), lr=1e-3)
mlp_history = fit(mlp, mlp_optimizer, train_loader, options.epochs, val_loader=val_loader)
mlp_test_loss, mlp_test_accuracy = evaluate(mlp, test_loader)
print(f"MLP: validation accuracy per epoch {np.round(mlp_history['val_acc'], 4).tolist()}")

# %% [markdown]
# ## 8. Side by side
#
# Both models, evaluated once on the 10,000 test images they never saw in training.
# On real MNIST with the default settings, the MLP should clear 97% test accuracy, and
# the lesson checks it. Softmax regression usually stays near 92%. The curves show the
# training loss and accuracy (solid) next to the validation ones (dashed). A widening
# gap between them is the start of overfitting.
#
# ## 8. 并排比较
#
# 两个模型都只在训练中从未见过的 10,000 张测试图像上评估一次。在真实 MNIST 上用默认设置时，MLP 的
# 测试准确率应超过 97%，本课会检查这一点；softmax 回归通常停在 92% 左右。学习曲线中实线是训练集
# 的损失和准确率，虚线是验证集的。两者之间的差距越拉越大，就是过拟合的开始。

# %%
print(f"{'model':<20} {'test loss':>10} {'test accuracy':>14}")
print(f"{'softmax regression':<20} {softmax_test_loss:>10.4f} {softmax_test_accuracy:>14.4f}")
print(f"{'MLP 784-256-10':<20} {mlp_test_loss:>10.4f} {mlp_test_accuracy:>14.4f}")

if train_split.source == "mnist" and not quick and options.epochs >= DEFAULT_EPOCHS:
    assert mlp_test_accuracy >= 0.97, f"the MLP reached only {mlp_test_accuracy:.4f} test accuracy on MNIST"
    print("check passed: the MLP clears 97% test accuracy on real MNIST")

figure = viz.plot_bars({"softmax regression": softmax_test_accuracy, "MLP": mlp_test_accuracy},
                       ylabel="test accuracy", title=f"test accuracy ({train_split.source})")
lesson.save_figure(figure, options.out, "test_accuracy.png")
figure = viz.plot_history({"softmax regression": softmax_history, "MLP": mlp_history},
                          title="training (solid) and validation (dashed)")
lesson.save_figure(figure, options.out, "learning_curves.png")

# %% [markdown]
# ## 9. What the MLP gets wrong
#
# The confusion matrix M counts, for every pair of classes (i, j), the test images of
# class i that the model predicted as class j. The diagonal contains the correct
# predictions; the largest entries off the diagonal name the pairs of digits the model
# confuses most. The grid shows misclassified test images with their true and
# predicted labels. Several of them are hard for a human too.
#
# ## 9. MLP 错在哪里
#
# 混淆矩阵 M 对每一对类别 (i, j) 计数：属于类别 i、却被模型预测为类别 j 的测试图像有多少张。对角线
# 上是预测正确的数目；对角线外最大的几项，指出了模型最常混淆的数字对。网格图展示被分错的测试图像，
# 并标出真实标签和预测标签，其中有好几张连人也很难认。

# %%
def predict(model: nn.Module, inputs: np.ndarray, batch_size: int = 2000) -> np.ndarray:
    """Return the predicted class (the index of the largest score) of every row of ``inputs``."""
    model.eval()
    predictions = []
    with tm.no_grad():
        for start in range(0, len(inputs), batch_size):
            scores = model(tm.tensor(inputs[start : start + batch_size]))
            predictions.append(scores.argmax(dim=1).numpy())
    return np.concatenate(predictions)


predictions = predict(mlp, x_test)
matrix = viz.confusion_matrix(y_test, predictions, NUM_CLASSES)
off_diagonal = matrix - np.diag(np.diag(matrix))
print("most frequent confusions (true → predicted: count):")
for flat_index in np.argsort(off_diagonal, axis=None)[::-1][:5]:
    true_class, predicted_class = np.unravel_index(flat_index, matrix.shape)
    print(f"  {true_class} → {predicted_class}: {off_diagonal[true_class, predicted_class]}")
lesson.save_figure(viz.plot_confusion(matrix, title="MLP confusion matrix (test set)"), options.out,
                   "confusion_matrix.png")

wrong = np.flatnonzero(predictions != y_test)
print(f"{len(wrong)} of {len(y_test)} test images misclassified")
first_wrong = wrong[:32]
captions = [f"{y_test[i]}→{predictions[i]}" for i in first_wrong]
figure = viz.plot_images(test_split.images[first_wrong], labels=captions, title="misclassified test digits (true→predicted)")
lesson.save_figure(figure, options.out, "misclassified.png")

# %% [markdown]
# ## Summary
#
# - Three rituals before a long run: seed first, check that the initial loss is about
#   log C for C classes (log 10 ≈ 2.303 here), and overfit a tiny subset.
# - Softmax regression, s = x Wᵀ + b, learns one template per class and reaches about
#   92% on MNIST. One hidden layer of 256 ReLU units lifts that to about 98%.
# - Hold out a validation set for the curves and model choices, and touch the test
#   set once, at the end.
# - The confusion matrix and the misclassified digits show *which* mistakes a model
#   makes, which a single accuracy number hides.
#
# ## 小结
#
# - 长时间训练之前的三个习惯：先设种子；检查初始损失是否约为 log C（C 为类别数，这里是
#   log 10 ≈ 2.303）；先过拟合一个很小的子集。
# - softmax 回归 s = x Wᵀ + b 为每个类别学一个模板，在 MNIST 上约达 92%；加一个 256 个 ReLU 单元的
#   隐藏层，就能提高到约 98%。
# - 留出验证集用来画曲线、做模型选择；测试集只在最后用一次。
# - 混淆矩阵和误分类数字揭示模型犯的是*哪些*错误，这是单个准确率数字看不出来的。
#
# ## Exercises
#
# 1. Multiply the initial weights of softmax regression by 10 (inside `tm.no_grad()`)
#    and print the initial loss again. Which ritual catches the problem, and how does
#    the training curve change?
# 2. Train the MLP with SGD (momentum 0.9) at learning rates 0.001, 0.01 and 0.1 and
#    compare the curves with Adam's. Which setting is closest to Adam after one epoch?
# 3. Try 784-512-256-10 and a hidden layer of only 32 units. How do the parameter
#    count, the test accuracy and the gap between training and validation accuracy
#    change?
#
# ## 练习
#
# 1. 把 softmax 回归的初始权重乘以 10（在 `tm.no_grad()` 中进行），再打印一次初始损失。哪个习惯
#    能发现这个问题？训练曲线又会怎样变化？
# 2. 用 SGD（动量 0.9）分别以学习率 0.001、0.01 和 0.1 训练 MLP，并与 Adam 的曲线比较。哪种设置
#    在一个 epoch 之后最接近 Adam？
# 3. 试试 784-512-256-10，以及只有 32 个单元的隐藏层。参数量、测试准确率以及训练与验证准确率之间
#    的差距各会怎样变化？

# %%
clock.report()
