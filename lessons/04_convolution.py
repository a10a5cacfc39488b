# %% [markdown]
# # Lesson 04: convolution, from the formula to the Numba kernel
#
# The image model of tinymbm is built on one formula:
#
#     CNN(I; W, b) = max_{k∈K} Σ_i Σ_j W_ijk · I_ij + b_k
#
# The double sum Σ_i Σ_j W_ijk · I_ij slides kernel k over the image I and multiplies
# it with each patch under it: a cross-correlation. Adding b_k gives the response of
# kernel k at one position. The max over K keeps the largest response inside each
# small window of positions: the max-pooling that follows the convolution.
#
# This lesson computes one output by hand, then the whole convolution with plain
# Python loops written from the formula. Then it runs the engine's two kernels: the
# reference kernel (loops, meant to be read) and the Numba kernel (meant to be run).
# All of them must give the same numbers, and we time them against each other.
# It ends with the output-size formula and with a few filters applied to a real digit.
#
# tinymbm 的图像模型建立在一个公式之上：
#
#     CNN(I; W, b) = max_{k∈K} Σ_i Σ_j W_ijk · I_ij + b_k
#
# 双重求和 Σ_i Σ_j W_ijk · I_ij 让第 k 个卷积核在图像 I 上滑动，与它覆盖的每个图块逐元素相乘再求和，
# 这就是互相关（cross-correlation）。再加上偏置 b_k，就得到卷积核 k 在某个位置上的响应。
# 对 K 取最大值，是在每个小窗口内只保留最大的响应，也就是紧跟在卷积之后的最大池化。
#
# 本课先手算一个输出，再用照着公式写的纯 Python 循环算出整个卷积，然后调用引擎的两个内核：
# 参考内核（用循环写成，供阅读）和 Numba 内核（供实际运行）。它们必须给出相同的结果，
# 我们还会比较它们的运行时间。最后讲解输出尺寸公式，并把几个滤波器作用在一张真实的手写数字上。

# %%
# tinymbm comes before NumPy: it sets OpenBLAS's thread timeout, which NumPy's
# BLAS reads only when it loads, and the convolution runs on every core only then.
import tinymbm as tm

# isort: split
import time

import numpy as np

import tinymbm.functional as F
from tinymbm import lesson, viz
from tinymbm.data import load_mnist
from tinymbm.kernels import conv

options = lesson.parse_args(
    "Convolution: one output by hand, the formula as loops, the engine's reference and Numba kernels",
    name="04_convolution",
)
clock = lesson.Clock()
rng = np.random.default_rng(options.seed)

# %% [markdown]
# ## 1. The data: real digits
#
# We take digits from the MNIST test split. When real MNIST is not on disk, the
# loader prints one line and returns synthetic digits instead. Pixels become float64 values in [0, 1],
# so every comparison below can use tight tolerances.
#
# ## 1. 数据：真实的手写数字
#
# 我们从 MNIST 测试集中取几张数字图像（如果磁盘上没有真实的 MNIST，会改用合成数字，并打印一行提示）。
# 像素值转换为 [0, 1] 区间内的 float64，这样下面的所有比较都可以使用很严格的容差。

# %%
digits = load_mnist(options.data_dir, train=False)
images = digits.images[:8].astype(np.float64) / 255.0
print(f"source: {digits.source}, images {digits.images.shape}, first labels {digits.labels[:8].tolist()}")
figure = viz.plot_images(images, labels=digits.labels[:8].tolist(), title="the digits of this lesson")
lesson.save_figure(figure, options.out, "digits.png")

# %% [markdown]
# ## 2. One output by hand
#
# Take a 5×5 image I, one 3×3 kernel W (a vertical-edge detector: +1 on the left
# column, -1 on the right) and a bias b = 0.5. The output at row 0, column 0 is the
# sum of the nine products W_ij · I_ij of the kernel with the top-left 3×3 patch,
# plus b. We print every product so the sum can be checked with pencil and paper.
#
# ## 2. 手算一个输出
#
# 取一张 5×5 的图像 I、一个 3×3 的卷积核 W（竖直边缘检测器：左列为 +1，右列为 -1）和偏置 b = 0.5。
# 第 0 行第 0 列的输出，等于卷积核与左上角 3×3 图块的九个乘积 W_ij · I_ij 之和，再加上 b。
# 下面把每个乘积都打印出来，方便用纸笔核对。

# %%
small_image = np.array([
    [0, 0, 1, 1, 1],
    [0, 0, 1, 1, 1],
    [0, 0, 1, 1, 1],
    [0, 0, 0, 1, 1],
    [0, 0, 0, 0, 1],
], dtype=np.float64)
edge_kernel = np.array([
    [1, 0, -1],
    [1, 0, -1],
    [1, 0, -1],
], dtype=np.float64)
bias_value = 0.5

patch = small_image[0:3, 0:3]
terms = []
for i in range(3):
    for j in range(3):
        terms.append(f"({edge_kernel[i, j]:g})·{patch[i, j]:g}")
by_hand = float(np.sum(edge_kernel * patch)) + bias_value
print("patch I[0:3, 0:3]:\n", patch)
print("Σ_i Σ_j W_ij · I_ij + b =", " + ".join(terms), f"+ {bias_value} = {by_hand}")

# %% [markdown]
# The sum is -3, so the output is -3 + 0.5 = -2.5: the patch is dark on the left and bright
# on the right, the opposite of what +1 on the left and -1 on the right rewards.
# The engine's kernel must give the same number at position (0, 0). Its arrays are in
# NCHW layout: N images, C channels, H rows, W columns; the weight is
# (filters, channels, KH, KW) as in PyTorch.
#
# 这里结果是 -3 + 0.5 = -2.5：这个图块左暗右亮，恰好与"左 +1、右 -1"所奖励的方向相反。
# 引擎的内核在位置 (0, 0) 必须给出同一个数。内核的数组采用 NCHW 布局：N 张图像、C 个通道、
# H 行、W 列；权重的形状与 PyTorch 一致，为 (滤波器数, 通道数, KH, KW)。

# %%
engine_output = conv.reference_conv2d_forward(
    small_image[None, None], edge_kernel[None, None], np.array([bias_value]), stride=(1, 1), padding=(0, 0)
)
print("engine output (1, 1, 3, 3):\n", engine_output[0, 0])
assert engine_output[0, 0, 0, 0] == by_hand
print(f"position (0, 0): by hand {by_hand}, engine {engine_output[0, 0, 0, 0]}")

# %% [markdown]
# ## 3. The whole convolution as plain loops
#
# Now the formula for every output position, channel and kernel. With stride s and
# zero padding p, the output of kernel k at row oh and column ow is
#
#     y[n, k, oh, ow] = Σ_c Σ_i Σ_j W[k, c, i, j] · I[n, c, oh·s + i - p, ow·s + j - p] + b[k]
#
# where reading I outside the image gives 0. The function below pads the image with
# zeros first, so the loops never leave the array. The engine's reference kernel
# checks the bounds instead: two readings of one formula.
#
# ## 3. 用纯循环计算整个卷积
#
# 现在对每个输出位置、每个通道和每个卷积核套用公式。设步幅为 s、零填充为 p，卷积核 k 在第 oh 行、
# 第 ow 列的输出为
#
#     y[n, k, oh, ow] = Σ_c Σ_i Σ_j W[k, c, i, j] · I[n, c, oh·s + i - p, ow·s + j - p] + b[k]
#
# 其中读取图像范围之外的 I 得到 0。下面的函数先给图像补零，因此循环永远不会越界；
# 引擎的参考内核则改为逐个检查边界。这是同一个公式的两种写法。


# %%
def conv2d_loops(image: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """Compute y[n, k, oh, ow] = Σ_c Σ_i Σ_j W[k, c, i, j] · I[n, c, oh·s + i - p, ow·s + j - p] + b[k].

    image (N, C, H, W), weight (K, C, KH, KW), bias (K,) -> y (N, K, OH, OW),
    with OH = (H + 2p - KH) // s + 1 and OW = (W + 2p - KW) // s + 1.
    """
    n_images, channels, height, width = image.shape
    kernels, _, kernel_h, kernel_w = weight.shape
    padded = np.pad(image, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h = (height + 2 * padding - kernel_h) // stride + 1
    out_w = (width + 2 * padding - kernel_w) // stride + 1
    y = np.zeros((n_images, kernels, out_h, out_w))

    for n in range(n_images):
        for k in range(kernels):
            for oh in range(out_h):
                for ow in range(out_w):
                    total = bias[k]
                    for c in range(channels):
                        for i in range(kernel_h):
                            for j in range(kernel_w):
                                total += weight[k, c, i, j] * padded[n, c, oh * stride + i, ow * stride + j]
                    y[n, k, oh, ow] = total
    return y


# %% [markdown]
# ## 4. Four versions, one result
#
# We run two real digits through four random 3×3 kernels with the lesson's loops, the
# engine's reference kernel, the Numba kernel, and the differentiable op `F.conv2d`
# (which calls the Numba kernel and records the graph for backward). Two settings:
# stride 1 with padding 1 (the CNN's setting, the output keeps the 28×28 size), and
# stride 2 without padding. In float64 the four must agree to about 1e-12.
#
# ## 4. 四种实现，一个答案
#
# 取两张真实数字和四个随机的 3×3 卷积核，分别用本课的循环、引擎的参考内核、Numba 内核以及可求导算子
# `F.conv2d`（它调用 Numba 内核，并为反向传播记录计算图）计算。测试两种设置：步幅 1、填充 1
# （CNN 使用的设置，输出保持 28×28），以及步幅 2、不填充。在 float64 下，四者应当一致到约 1e-12。

# %%
x = images[:2, None]  # (2, 1, 28, 28)
weight = rng.standard_normal((4, 1, 3, 3))
bias = rng.standard_normal(4)

for stride, padding in [(1, 1), (2, 0)]:
    y_loops = conv2d_loops(x, weight, bias, stride, padding)
    y_reference = conv.reference_conv2d_forward(x, weight, bias, (stride, stride), (padding, padding))
    y_numba = conv.conv2d_forward(x, weight, bias, (stride, stride), (padding, padding))
    y_op = F.conv2d(tm.tensor(x), tm.tensor(weight), tm.tensor(bias), stride=stride, padding=padding).numpy()

    for name, y in [("reference", y_reference), ("numba", y_numba), ("F.conv2d", y_op)]:
        np.testing.assert_allclose(y, y_loops, rtol=1e-12, atol=1e-12, err_msg=f"{name}, stride {stride}")
    differences = {name: float(np.abs(y - y_loops).max())
                   for name, y in [("reference", y_reference), ("numba", y_numba), ("F.conv2d", y_op)]}
    print(f"stride {stride}, padding {padding}: output {y_loops.shape}; max |difference| from the loops:",
          ", ".join(f"{name} {value:.1e}" for name, value in differences.items()))

# %% [markdown]
# The backward kernels come in the same two versions. For a loss L with upstream
# gradient dy = ∂L/∂y, the three gradients are db[k] = Σ_n Σ_oh Σ_ow dy[n, k, oh, ow],
# dW[k, c, i, j] = Σ_n Σ_oh Σ_ow dy[n, k, oh, ow] · I[n, c, oh·s + i - p, ow·s + j - p],
# and dI, where each pixel collects dy · W from every window that read it. The
# reference and Numba versions must agree on all three.
#
# 反向传播的内核同样有两个版本。设损失为 L，上游梯度为 dy = ∂L/∂y，三个梯度分别是
# db[k] = Σ_n Σ_oh Σ_ow dy[n, k, oh, ow]，
# dW[k, c, i, j] = Σ_n Σ_oh Σ_ow dy[n, k, oh, ow] · I[n, c, oh·s + i - p, ow·s + j - p]，
# 以及 dI：每个像素从读取过它的每个窗口收集 dy · W。参考版本与 Numba 版本在三者上都必须一致。

# %%
grad_output = rng.standard_normal((2, 4, 28, 28))
pairs = {
    "dI": (conv.reference_conv2d_backward_input(grad_output, weight, x.shape, (1, 1), (1, 1)),
           conv.conv2d_backward_input(grad_output, weight, x.shape, (1, 1), (1, 1))),
    "dW": (conv.reference_conv2d_backward_weight(grad_output, x, weight.shape, (1, 1), (1, 1)),
           conv.conv2d_backward_weight(grad_output, x, weight.shape, (1, 1), (1, 1))),
    "db": (conv.reference_conv2d_backward_bias(grad_output), conv.conv2d_backward_bias(grad_output)),
}
for name, (from_reference, from_numba) in pairs.items():
    np.testing.assert_allclose(from_numba, from_reference, rtol=1e-10, atol=1e-10, err_msg=name)
    print(f"{name}: shape {from_numba.shape}, max |numba - reference| = {np.abs(from_numba - from_reference).max():.1e}")

# %% [markdown]
# ## 5. How much faster is the Numba kernel?
#
# Same result, very different cost. The loops and the reference kernel run one
# multiply-add per Python step. The Numba kernel gathers every 3×3 patch into a
# column of a matrix (im2col), so the whole convolution becomes one matrix product
# that BLAS runs, and the gathering itself is compiled machine code.
# We time eight digits through sixteen 3×3 kernels (stride 1, padding 1) in float64,
# taking the best of several runs for the fast kernel. The first call of a Numba
# function compiles it (or loads it from the on-disk cache), so we call it once
# before timing. The ratios depend on the machine and on its load: the Numba kernel
# runs its loops on several threads, and when other programs keep the cores busy,
# each parallel loop can wait milliseconds for its threads, which shrinks the ratio
# on small inputs like this one.
#
# ## 5. Numba 内核快多少？
#
# 结果相同，代价却相差悬殊。循环版本和参考内核每一步 Python 只做一次乘加。Numba 内核先把每个
# 3×3 图块收集成矩阵的一列（im2col），于是整个卷积变成一次由 BLAS 完成的矩阵乘法，而收集过程本身
# 也是编译后的机器码。我们让八张数字通过十六个 3×3 卷积核（步幅 1、填充 1，float64）并计时，
# 快速内核取多次运行中的最好成绩。Numba 函数第一次调用时会编译（或从磁盘缓存加载），
# 所以计时前先调用一次。这些比值取决于机器及其当前负载：Numba 内核在多个线程上运行循环，
# 如果其他程序占满了 CPU 核心，每个并行循环都可能要等待几毫秒才能让线程开始工作，
# 对于这样的小输入，比值会因此明显变小。


# %%
def best_time(function, repeats: int) -> float:
    """Return the shortest wall time, in seconds, of ``repeats`` calls of ``function()``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


x_timed = images[:8, None]
weight_timed = rng.standard_normal((16, 1, 3, 3))
bias_timed = rng.standard_normal(16)
conv.conv2d_forward(x_timed, weight_timed, bias_timed, (1, 1), (1, 1))  # compile or load from the cache

seconds = {
    "lesson loops": best_time(lambda: conv2d_loops(x_timed, weight_timed, bias_timed, 1, 1), repeats=1),
    "reference kernel": best_time(
        lambda: conv.reference_conv2d_forward(x_timed, weight_timed, bias_timed, (1, 1), (1, 1)), repeats=1),
    "numba kernel": best_time(
        lambda: conv.conv2d_forward(x_timed, weight_timed, bias_timed, (1, 1), (1, 1)), repeats=20),
}
for name, value in seconds.items():
    print(f"{name:>16}: {value * 1e3:9.3f} ms   ({value / seconds['numba kernel']:8.0f}× the Numba time)")

figure = viz.plot_bars({name: value * 1e3 for name, value in seconds.items()},
                       ylabel="milliseconds per call (log scale)",
                       title="conv2d forward, 8 digits × 16 kernels of 3×3, float64")
figure.axes[0].set_yscale("log")
lesson.save_figure(figure, options.out, "timings.png")

# %% [markdown]
# The CNN of lesson 06 runs a much larger convolution at every training step: 64
# images of 64 channels, 14×14, through 128 kernels of 3×3. That is
# 64 · 128 · 14 · 14 · 64 · 9 ≈ 925 million multiply-adds. We time the Numba kernel
# on it in float32, the dtype the CNN trains in, and estimate how long the reference
# kernel would take from its time per multiply-add measured above.
#
# 第 06 课的 CNN 每个训练步都要做一次大得多的卷积：64 张 64 通道、14×14 的特征图，经过 128 个
# 3×3 卷积核，共约 64 · 128 · 14 · 14 · 64 · 9 ≈ 9.25 亿次乘加。我们在 CNN 训练所用的 float32 下
# 为 Numba 内核计时，并根据上面测得的参考内核每次乘加的耗时，估算参考内核需要多久。

# %%
x_large = rng.standard_normal((64, 64, 14, 14)).astype(np.float32)
weight_large = rng.standard_normal((128, 64, 3, 3)).astype(np.float32)
bias_large = np.zeros(128, dtype=np.float32)
conv.conv2d_forward(x_large, weight_large, bias_large, (1, 1), (1, 1))  # compile for float32

numba_large = best_time(lambda: conv.conv2d_forward(x_large, weight_large, bias_large, (1, 1), (1, 1)), repeats=3)
multiply_adds_small = 8 * 16 * 28 * 28 * 1 * 9
multiply_adds_large = 64 * 128 * 14 * 14 * 64 * 9
reference_estimate = seconds["reference kernel"] / multiply_adds_small * multiply_adds_large
print(f"numba kernel: {numba_large * 1e3:.1f} ms for {multiply_adds_large / 1e6:.0f} million multiply-adds "
      f"({multiply_adds_large / numba_large / 1e9:.1f} G multiply-adds per second)")
print(f"reference kernel, estimated: {reference_estimate:.0f} s for the same call "
      f"(about {reference_estimate / numba_large:.0f}× slower)")

# %% [markdown]
# ## 6. The output size, and a stride that does not divide
#
# Along one axis, an input of H pixels padded with p zeros on each side has
# H + 2p positions. A kernel of size K fits at the start positions 0, s, 2s, …,
# as long as the last one still ends inside, so
#
#     H_out = floor((H + 2p - K) / s) + 1
#
# When s does not divide H + 2p - K, the floor drops the remainder: the last
# pixels of the input are read by no window at all. The table checks the formula
# against the engine for several cases. Then we count, for an 8×8 input with K = 3
# and s = 2, how many windows read each pixel. Convolving an all-ones gradient back
# through an all-ones kernel (the input-gradient kernel) gives exactly these counts.
#
# ## 6. 输出尺寸，以及不能整除的步幅
#
# 沿一个维度，H 个像素的输入在两侧各补 p 个零后共有 H + 2p 个位置。大小为 K 的卷积核可以放在
# 起始位置 0, s, 2s, …，只要最后一个窗口仍落在范围之内，因此
#
#     H_out = floor((H + 2p - K) / s) + 1
#
# 当 s 不能整除 H + 2p - K 时，向下取整会丢掉余数：输入末尾的几个像素不会被任何窗口读取。
# 下表把这个公式与引擎的结果逐一对照。随后，对一张 8×8 的输入、K = 3、s = 2，统计每个像素被多少个
# 窗口读取：把全 1 的梯度通过全 1 的卷积核反向传回（即输入梯度内核），恰好得到这些次数。

# %%
print(" H   K  s  p   (H + 2p - K) / s   H_out formula   engine")
for height, kernel, stride, padding in [(28, 3, 1, 1), (28, 3, 1, 0), (28, 3, 2, 0), (28, 3, 2, 1),
                                        (28, 5, 3, 0), (8, 3, 2, 0), (7, 3, 2, 0)]:
    by_formula = (height + 2 * padding - kernel) // stride + 1
    engine_shape = conv.conv2d_forward(
        np.zeros((1, 1, height, height)), np.zeros((1, 1, kernel, kernel)), None, (stride, stride), (padding, padding)
    ).shape
    assert engine_shape[2] == by_formula
    print(f"{height:2d}  {kernel:2d} {stride:2d} {padding:2d}   {(height + 2 * padding - kernel) / stride:16.2f}"
          f"   {by_formula:13d}   {engine_shape[2]:6d}")

reads = conv.reference_conv2d_backward_input(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), (1, 1, 8, 8),
                                             (2, 2), (0, 0))
print("\nhow many 3×3 windows with stride 2 read each pixel of an 8×8 input:")
print(reads[0, 0].astype(int))
print("the last row and column are read by no window:", bool(reads[0, 0, 7].max() == 0 and reads[0, 0, :, 7].max() == 0))

# %% [markdown]
# ## 7. Filters on a real digit, then the max
#
# Finally the formula on a digit with four hand-made 3×3 kernels: a vertical edge,
# a horizontal edge, a diagonal edge and a blur. Each feature map (stride 1,
# padding 1, so 28×28) lights up where the digit has that pattern. The max of the
# formula then keeps the strongest response in each 2×2 window: 14×14 maps that
# still show where each pattern is, at a quarter of the size. We compute one pooled
# output literally, as the max over the window's four positions of
# Σ_i Σ_j W_ijk · I_ij + b_k, and check it against the pooled map.
#
# ## 7. 在真实数字上应用滤波器，再取最大值
#
# 最后把公式用在一张数字上，使用四个手工设计的 3×3 卷积核：竖直边缘、水平边缘、斜向边缘和模糊。
# 每张特征图（步幅 1、填充 1，因此是 28×28）在数字具有相应图案的地方变亮。公式中的最大值随后在每个
# 2×2 窗口内保留最强的响应：得到 14×14 的特征图，尺寸只有四分之一，但仍能看出每种图案的位置。
# 我们按字面计算一个池化后的输出，即在窗口的四个位置上取 Σ_i Σ_j W_ijk · I_ij + b_k 的最大值，
# 并与池化后的特征图核对。

# %%
hand_kernels = np.array([
    [[1, 0, -1], [1, 0, -1], [1, 0, -1]],       # vertical edge
    [[1, 1, 1], [0, 0, 0], [-1, -1, -1]],       # horizontal edge
    [[0, 1, 1], [-1, 0, 1], [-1, -1, 0]],       # diagonal edge
    [[1, 1, 1], [1, 1, 1], [1, 1, 1]],          # blur
], dtype=np.float64)[:, None] / np.array([3, 3, 3, 9], dtype=np.float64)[:, None, None, None]
hand_bias = np.zeros(4)
digit = images[:1, None]  # (1, 1, 28, 28)

feature_maps = conv.conv2d_forward(digit, hand_kernels, hand_bias, (1, 1), (1, 1))  # (1, 4, 28, 28)
pooled = feature_maps.reshape(1, 4, 14, 2, 14, 2).max(axis=(3, 5))                 # (1, 4, 14, 14)

k = 0
row, column = np.unravel_index(int(pooled[0, k].argmax()), pooled[0, k].shape)
window_responses = [
    float(np.sum(hand_kernels[k, 0] * np.pad(digit[0, 0], 1)[2 * row + a: 2 * row + a + 3,
                                                             2 * column + d: 2 * column + d + 3]) + hand_bias[k])
    for a in range(2) for d in range(2)
]
print(f"kernel {k}, strongest pooled output ({row}, {column}): max of {np.round(window_responses, 4).tolist()} "
      f"= {max(window_responses):.4f}; pooled map: {pooled[0, k, row, column]:.4f}")
assert np.isclose(max(window_responses), pooled[0, k, row, column])

lesson.save_figure(viz.plot_filters(hand_kernels, title="hand-made 3×3 kernels"), options.out, "filters.png")
lesson.save_figure(viz.plot_feature_maps(feature_maps, title="feature maps of one digit (28×28)"),
                   options.out, "feature_maps.png")
lesson.save_figure(viz.plot_feature_maps(pooled, title="after the max over 2×2 windows (14×14)"),
                   options.out, "pooled_maps.png")

# %% [markdown]
# ## Summary
#
# - Σ_i Σ_j W_ijk · I_ij + b_k is a cross-correlation plus bias: the kernel is not
#   flipped, as in PyTorch's `conv2d`. The max over K is the max-pooling after it.
# - The formula written as loops, the engine's reference kernel, its Numba kernel
#   and `F.conv2d` agree to about 1e-12 in float64, forward and backward.
# - The Numba kernel turns the convolution into one matrix product (im2col + BLAS).
#   It is usually a thousand times faster than the loops or more (section 5 prints
#   this run's ratio), which is what makes training the CNN of lesson 06 possible.
# - H_out = floor((H + 2p - K) / s) + 1. When s does not divide H + 2p - K, the
#   last pixels are read by no window.
#
# ## 小结
#
# - Σ_i Σ_j W_ijk · I_ij + b_k 是互相关加偏置：卷积核不翻转，与 PyTorch 的 `conv2d` 相同。
#   对 K 取最大值，就是其后的最大池化。
# - 按公式写的循环、引擎的参考内核、Numba 内核以及 `F.conv2d`，在 float64 下前向和反向都一致到约 1e-12。
# - Numba 内核把卷积变成一次矩阵乘法（im2col + BLAS），通常比循环快一千倍以上（第 5 节打印了本次运行的比值），
#   正因如此，第 06 课的 CNN 才能在合理的时间内训练完。
# - H_out = floor((H + 2p - K) / s) + 1。当 s 不能整除 H + 2p - K 时，末尾的像素不会被任何窗口读取。
#
# ## Exercises
#
# 1. Change `conv2d_loops` so that it flips the kernel (a true convolution:
#    W[k, c, KH-1-i, KW-1-j]). Which of the hand-made kernels give different
#    feature maps, and why does training not care which of the two a layer uses?
# 2. For H = 28 and K = 5, list every stride s from 1 to 6 with padding 0 for which
#    some pixels are read by no window. Check your list with the counting trick of
#    section 6.
# 3. Time the Numba kernel for batches of 1, 8, 64 and 256 images. Is the time per
#    image constant? Explain what you see with the cost of im2col and of one call.
#
# ## 练习
#
# 1. 修改 `conv2d_loops`，让它翻转卷积核（真正的卷积：W[k, c, KH-1-i, KW-1-j]）。哪些手工卷积核
#    会得到不同的特征图？为什么对训练来说，一层用哪一种都无所谓？
# 2. 取 H = 28、K = 5、不填充，列出 1 到 6 之间所有会让某些像素不被任何窗口读取的步幅 s，
#    并用第 6 节的计数方法检验你的答案。
# 3. 分别用 1、8、64、256 张图像为 Numba 内核计时。每张图像的耗时是否不变？
#    结合 im2col 的开销和单次调用的开销解释你看到的现象。

# %%
clock.report()
