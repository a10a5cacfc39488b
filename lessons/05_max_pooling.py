# %% [markdown]
# # Lesson 05: max-pooling, and where its gradient goes
#
# In CNN(I; W, b) = max_{k∈K} Σ_i Σ_j W_ijk · I_ij + b_k the max keeps the largest
# response in each window of positions: max-pooling. Its forward pass is one line,
# but its backward pass contains every hard case of the engine. The gradient of a
# window goes to one input position only, and ties must pick one. Overlapping
# windows add up, padding must never win, and NaN must not vanish. This lesson shows each
# case on a small printed example, checks the engine against loops written from
# the formula, draws the gradient mask on a real digit, and times the reference
# and Numba kernels.
#
# 在 CNN(I; W, b) = max_{k∈K} Σ_i Σ_j W_ijk · I_ij + b_k 中，最大值运算在每个位置窗口内保留最大的响应，
# 这就是最大池化。它的前向计算只有一行，反向传播却集中了引擎中所有的棘手情形：一个窗口的梯度只流向
# 一个输入位置；出现并列最大值时必须选出一个；重叠的窗口会把梯度累加；填充永远不能胜出；NaN 也不能
# 悄悄消失。本课用打印出来的小例子逐一展示这些情形，把引擎与照着公式写的循环进行对照，在一张真实的
# 手写数字上画出梯度掩码，并比较参考内核与 Numba 内核的运行时间。

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
from tinymbm.kernels import pool

options = lesson.parse_args(
    "Max-pooling: the forward formula, where the gradient goes (ties, overlap, padding, NaN), the kernels timed",
    name="05_max_pooling",
)
clock = lesson.Clock()
rng = np.random.default_rng(options.seed)

# %% [markdown]
# ## 1. The forward pass on a 4×4 example
#
# With a K×K window, stride s and padding p, output (oh, ow) is the maximum over
# the window's positions that lie inside the input:
#
#     y[oh, ow] = max_{0 ≤ i, j < K} x[oh·s + i - p, ow·s + j - p]
#
# and its size follows the same formula as the convolution,
# H_out = floor((H + 2p - K) / s) + 1. Besides y, the engine keeps for each
# window the flat position h·W + w of the input pixel that won it (`indices`):
# the backward pass needs only that.
#
# ## 1. 在 4×4 的例子上做前向计算
#
# 设窗口大小为 K×K、步幅为 s、填充为 p，输出 (oh, ow) 等于窗口内所有落在输入范围之内的位置上的最大值：
#
#     y[oh, ow] = max_{0 ≤ i, j < K} x[oh·s + i - p, ow·s + j - p]
#
# 输出尺寸与卷积的公式相同：H_out = floor((H + 2p - K) / s) + 1。除了 y，引擎还为每个窗口记录胜出像素
# 的扁平位置 h·W + w（`indices`）；反向传播只需要这个信息。

# %%
x_small = np.array([
    [1.0, 3.0, 2.0, 0.0],
    [4.0, 2.0, 1.0, 5.0],
    [0.0, 1.0, 7.0, 2.0],
    [6.0, 2.0, 3.0, 1.0],
])
y_small, indices_small = pool.max_pool2d_forward(x_small[None, None], (2, 2), (2, 2), (0, 0))
print("x:\n", x_small)
print("y = max over each 2×2 window (stride 2):\n", y_small[0, 0])
print("indices (h·W + w of each winner):\n", indices_small[0, 0])
print("as (row, column):", [divmod(int(i), 4) for i in indices_small[0, 0].ravel()])

# %% [markdown]
# ## 2. The formula as loops, and the gradient it implies
#
# For a loss L with upstream gradient dy = ∂L/∂y, the derivative of a max with
# respect to its inputs is 1 for the input that is the maximum and 0 for every
# other. So the whole of dy[oh, ow] goes to the winner of window (oh, ow):
#
#     dx[h, w] = Σ dy[oh, ow] over the windows (oh, ow) that position (h, w) won
#
# The functions below compute both directions as plainly as possible. The winner
# is the first position, in row-major order, whose value is the maximum. The engine
# uses the same rule, and the next sections show why that rule matters.
#
# ## 2. 用循环写出公式，以及由它推出的梯度
#
# 设损失为 L，上游梯度为 dy = ∂L/∂y。最大值对其各个输入的导数是：对取到最大值的那个输入为 1，
# 对其余输入都为 0。因此 dy[oh, ow] 全部流向窗口 (oh, ow) 的胜出者：
#
#     dx[h, w] = Σ dy[oh, ow]，对位置 (h, w) 胜出的所有窗口 (oh, ow) 求和
#
# 下面的函数以尽可能直白的方式计算两个方向。胜出者是按行优先顺序第一个取到最大值的位置，与引擎的
# 规则相同；后面几节会说明这条规则为什么重要。


# %%
def max_pool2d_loops(x: np.ndarray, kernel_size: int, stride: int, padding: int) -> tuple[np.ndarray, np.ndarray]:
    """Compute y[oh, ow] = max of window (oh, ow) of the 2-D x, and the (row, column) of its first maximum.

    x (H, W) -> y (OH, OW) and winners (OH, OW, 2), with OH = (H + 2p - K) // s + 1.
    Positions in the padding are skipped, so they never win; NaN beats every number.
    """
    height, width = x.shape
    out_h = (height + 2 * padding - kernel_size) // stride + 1
    out_w = (width + 2 * padding - kernel_size) // stride + 1
    y = np.zeros((out_h, out_w))
    winners = np.zeros((out_h, out_w, 2), dtype=int)

    for oh in range(out_h):
        for ow in range(out_w):
            best, best_position = None, None
            for i in range(kernel_size):
                for j in range(kernel_size):
                    h, w = oh * stride + i - padding, ow * stride + j - padding
                    if not (0 <= h < height and 0 <= w < width):
                        continue
                    value = x[h, w]
                    if best is None or (np.isnan(value) and not np.isnan(best)) or value > best:
                        best, best_position = value, (h, w)
            y[oh, ow] = best
            winners[oh, ow] = best_position
    return y, winners


def max_pool2d_backward_loops(grad_output: np.ndarray, winners: np.ndarray, input_shape: tuple[int, int]) -> np.ndarray:
    """Compute dx[h, w] = Σ dy[oh, ow] over the windows that (h, w) won."""
    dx = np.zeros(input_shape)
    for oh in range(grad_output.shape[0]):
        for ow in range(grad_output.shape[1]):
            h, w = winners[oh, ow]
            dx[h, w] += grad_output[oh, ow]
    return dx


# %% [markdown]
# Now the autograd op `F.max_pool2d` on the same input: we call `backward` with an
# upstream gradient dy = [[1, 2], [3, 4]], so each window's value is easy to follow
# to where it lands in x.grad. The loops must agree with it.
#
# 现在对同一输入调用自动求导算子 `F.max_pool2d`：以上游梯度 dy = [[1, 2], [3, 4]] 调用 `backward`，
# 这样很容易追踪每个窗口的梯度值落在 x.grad 的哪个位置。循环版本必须与它一致。

# %%
dy_small = np.array([[1.0, 2.0], [3.0, 4.0]])
x_tensor = tm.tensor(x_small[None, None], requires_grad=True)
y_tensor = F.max_pool2d(x_tensor, kernel_size=2, stride=2)
y_tensor.backward(tm.tensor(dy_small[None, None]))

y_loops, winners_small = max_pool2d_loops(x_small, kernel_size=2, stride=2, padding=0)
dx_loops = max_pool2d_backward_loops(dy_small, winners_small, x_small.shape)
print("x.grad from F.max_pool2d:\n", x_tensor.grad[0, 0])
assert np.array_equal(y_tensor.numpy()[0, 0], y_loops)
assert np.array_equal(x_tensor.grad[0, 0], dx_loops)
print("the loops give the same y and the same gradient: True")

# %% [markdown]
# ## 3. Ties: the first maximum takes the whole gradient
#
# When two positions of a window hold the same maximum, max is not differentiable
# there, and any split of dy between them that sums to dy is a valid choice. The
# engine (like PyTorch) gives all of dy to the first maximum in row-major order. It
# neither copies dy to every tied position, which would multiply the gradient by
# the number of ties, nor splits it. So Σ dx = Σ dy always holds for
# non-overlapping windows. The central difference (f(x + ε) - f(x - ε)) / 2ε gives
# something else at a tie. Raising either tied value by ε raises the max, but
# lowering it does not, so the difference is 1/2 for each. This is why gradient checks of max-pool
# use inputs without ties.
#
# ## 3. 并列最大值：第一个最大值拿走全部梯度
#
# 当窗口中有两个位置取到相同的最大值时，max 在该点不可导，只要把 dy 分给它们且总和等于 dy，任何分法
# 都说得通。引擎（与 PyTorch 一样）把 dy 全部交给按行优先顺序的第一个最大值：既不把 dy 复制给每个
# 并列位置（那样会让梯度乘以并列的个数），也不平分。因此对于互不重叠的窗口，Σ dx = Σ dy 始终成立。
# 中心差分 (f(x + ε) - f(x - ε)) / 2ε 在并列点看到的却是另一回事：把任一并列值增加 ε，最大值随之增加；
# 减小 ε 时最大值却不变，所以它给每个位置报告 1/2。这就是为什么最大池化的梯度检验要使用没有并列值的输入。

# %%
x_tie = np.array([
    [1.0, 5.0, 2.0, 2.0],
    [5.0, 0.0, 2.0, 2.0],
    [0.0, 0.0, 9.0, 9.0],
    [0.0, 0.0, 9.0, 9.0],
])
x_tensor = tm.tensor(x_tie[None, None], requires_grad=True)
F.max_pool2d(x_tensor, kernel_size=2).sum().backward()
print("x with ties:\n", x_tie)
print("x.grad (dy = 1 everywhere): one 1 per window, at the first maximum:\n", x_tensor.grad[0, 0])
print(f"Σ dx = {x_tensor.grad.sum():.0f}, Σ dy = 4")


def pooled_sum(values: np.ndarray) -> float:
    return float(pool.reference_max_pool2d_forward(values[None, None], (2, 2), (2, 2), (0, 0))[0].sum())


epsilon = 1e-6
numerical = np.zeros_like(x_tie)
for h in range(4):
    for w in range(4):
        bumped_up, bumped_down = x_tie.copy(), x_tie.copy()
        bumped_up[h, w] += epsilon
        bumped_down[h, w] -= epsilon
        numerical[h, w] = (pooled_sum(bumped_up) - pooled_sum(bumped_down)) / (2 * epsilon)
print("central differences at the same x (ties split the credit):\n", np.round(numerical, 3))

# %% [markdown]
# ## 4. Overlapping windows add up
#
# With a 3×3 window and stride 1, neighbouring windows share pixels. A pixel that
# is the maximum of several windows receives the sum of their gradients. Below, the
# 7 in the middle of a 5×5 input is the maximum of all nine windows, so with dy = 1
# its gradient is 9.
#
# ## 4. 重叠的窗口会把梯度累加
#
# 当窗口为 3×3、步幅为 1 时，相邻窗口共享像素。一个像素若是多个窗口的最大值，就会收到这些窗口梯度的总和。
# 下面 5×5 输入正中央的 7 是全部九个窗口的最大值，所以在 dy = 1 时它的梯度是 9。

# %%
x_overlap = rng.uniform(0.0, 1.0, size=(5, 5))
x_overlap[2, 2] = 7.0
x_tensor = tm.tensor(x_overlap[None, None], requires_grad=True)
y_overlap = F.max_pool2d(x_tensor, kernel_size=3, stride=1)
y_overlap.sum().backward()
print("y (3×3 windows, stride 1):\n", y_overlap.numpy()[0, 0])
print("x.grad:\n", x_tensor.grad[0, 0])
_, winners_overlap = max_pool2d_loops(x_overlap, kernel_size=3, stride=1, padding=0)
assert np.array_equal(x_tensor.grad[0, 0], max_pool2d_backward_loops(np.ones((3, 3)), winners_overlap, (5, 5)))

# %% [markdown]
# ## 5. Padding never wins
#
# Convolution pads with zeros, but max-pooling must not: a zero in the padding would
# beat every negative value at the border, and the output would report a 0 that is
# not in the input. The engine treats padding as -inf, so it only ever returns real
# input values, and the gradient never flows into the padding. We compare it with
# the mistake: pad with zeros, then pool.
#
# ## 5. 填充永远不会胜出
#
# 卷积用零填充，最大池化却不能这样做：填充区里的 0 会胜过边界上所有的负值，输出就会出现一个输入中根本不存在的 0。
# 引擎把填充当作 -inf 处理，因此输出的永远是真实的输入值，梯度也不会流进填充区。下面把它与错误做法对比：
# 先补零，再做池化。

# %%
x_negative = -np.arange(1.0, 17.0).reshape(4, 4)
engine_padded = F.max_pool2d(tm.tensor(x_negative[None, None]), kernel_size=3, stride=2, padding=1).numpy()[0, 0]
zero_padded = np.pad(x_negative, 1)
mistake = pool.reference_max_pool2d_forward(zero_padded[None, None], (3, 3), (2, 2), (0, 0))[0][0, 0]
print("x (all negative):\n", x_negative)
print("engine, 3×3 windows, stride 2, padding 1:\n", engine_padded)
print("zeros padded first, then pooled (wrong):\n", mistake)
assert (engine_padded < 0).all()

# %% [markdown]
# ## 6. NaN counts as the maximum
#
# A NaN in the input means something upstream has already gone wrong (a division by
# zero, an overflow). If max-pooling skipped it, the network would carry on with
# finite numbers and hide the bug. The engine treats NaN as larger than every number,
# as NumPy's `max` and PyTorch do: the window's output is NaN, and that window's
# gradient goes to the NaN position.
#
# ## 6. NaN 被视为最大值
#
# 输入中出现 NaN，说明上游已经出了问题（除以零、溢出等）。如果最大池化把它跳过，网络会带着有限的数值
# 继续运行，从而掩盖这个错误。引擎与 NumPy 的 `max` 和 PyTorch 一样，把 NaN 视为比任何数都大：
# 该窗口的输出为 NaN，梯度也流向 NaN 所在的位置。

# %%
x_nan = x_small.copy()
x_nan[0, 0] = np.nan
x_tensor = tm.tensor(x_nan[None, None], requires_grad=True)
y_nan = F.max_pool2d(x_tensor, kernel_size=2)
y_nan.backward(tm.tensor(dy_small[None, None]))
print("x with a NaN:\n", x_nan)
print("y:\n", y_nan.numpy()[0, 0])
print("x.grad:\n", x_tensor.grad[0, 0])
print("np.max of the first window:", np.max(x_nan[:2, :2]))

# %% [markdown]
# ## 7. The gradient mask on a real digit
#
# On a digit, max-pooling 2×2 with stride 2 keeps one pixel of each window; with
# dy = 1 everywhere, x.grad is a mask of the winners. On the strokes the winner is
# the brightest pixel. On the black background every window is a four-way tie of
# zeros, so the top-left pixel of each window wins, which draws a regular grid.
# With 3×3 windows and stride 2 the windows overlap, so a bright pixel on a stroke
# can win several windows, and the mask then counts the wins.
#
# ## 7. 真实数字上的梯度掩码
#
# 在一张数字图像上做 2×2、步幅 2 的最大池化，每个窗口只保留一个像素；当 dy 处处为 1 时，x.grad 就是
# 胜出像素的掩码。在笔画上，胜出的是最亮的像素；在黑色背景上，每个窗口都是四个 0 并列，于是每个窗口
# 左上角的像素胜出，形成一张规则的网格。改用 3×3 窗口、步幅 2 时窗口相互重叠，笔画上较亮的像素可以
# 赢下多个窗口，此时掩码记录的是胜出的次数。

# %%
digits = load_mnist(options.data_dir, train=False)
print(f"source: {digits.source}, label of the digit: {digits.labels[0]}")
digit = digits.images[0].astype(np.float64) / 255.0

masks = {}
pooled_maps = {}
for kernel_size in (2, 3):
    x_tensor = tm.tensor(digit[None, None], requires_grad=True)
    pooled_tensor = F.max_pool2d(x_tensor, kernel_size=kernel_size, stride=2)
    pooled_tensor.sum().backward()
    masks[kernel_size] = x_tensor.grad[0, 0]
    pooled_maps[kernel_size] = pooled_tensor.numpy()[0, 0]
    counts = np.bincount(masks[kernel_size].astype(int).ravel())
    print(f"{kernel_size}×{kernel_size} windows, stride 2: output {pooled_maps[kernel_size].shape}, "
          f"pixels by number of windows won: {dict(enumerate(counts.tolist()))}")

figure = viz.plot_image_row(
    [digit, pooled_maps[2], masks[2], masks[3]],
    ["digit (28×28)", "max-pooled 2×2 (14×14)", "gradient mask, 2×2 stride 2", "gradient mask, 3×3 stride 2"],
    title="where the gradient of max-pooling goes",
)
lesson.save_figure(figure, options.out, "gradient_masks.png")

# %% [markdown]
# ## 8. The kernels: reference and Numba, same results, timed
#
# The engine's pooling kernels come in two versions behind one signature:
# `reference_max_pool2d_forward` / `reference_max_pool2d_backward`, loops written
# from the formula, and the Numba versions, which run one image plane per thread.
# Random inputs have no ties, so the gradient can also be checked against central
# differences (`gradcheck`, in float64). Then we time both versions on a batch of
# 8 feature maps with 64 channels of 28×28, the size the first pooling layer of the
# CNN sees, with the best of several runs for Numba after one call to compile it.
#
# ## 8. 内核：参考版本与 Numba 版本，结果相同，并比较耗时
#
# 引擎的池化内核有两个版本，签名相同：`reference_max_pool2d_forward` / `reference_max_pool2d_backward`
# 是照着公式写的循环；Numba 版本则每个线程处理一个图像平面。随机输入不会出现并列值，因此还可以用中心差分
# 检验梯度（`gradcheck`，float64）。随后在一批 8 张、64 通道、28×28 的特征图上为两个版本计时，
# 这正是 CNN 第一个池化层的输入尺寸；Numba 版本先调用一次完成编译，再取多次运行中的最好成绩。

# %%
x_random = rng.standard_normal((8, 64, 28, 28))
y_reference, indices_reference = pool.reference_max_pool2d_forward(x_random, (2, 2), (2, 2), (0, 0))
y_numba, indices_numba = pool.max_pool2d_forward(x_random, (2, 2), (2, 2), (0, 0))
grad_output = rng.standard_normal(y_numba.shape)
dx_reference = pool.reference_max_pool2d_backward(grad_output, indices_reference, x_random.shape)
dx_numba = pool.max_pool2d_backward(grad_output, indices_numba, x_random.shape)
assert np.array_equal(y_reference, y_numba)
assert np.array_equal(indices_reference, indices_numba)
assert np.array_equal(dx_reference, dx_numba)
print("reference and Numba kernels: identical y, indices and dx")

x_check = tm.tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
print("gradcheck, 3×3 windows, stride 2, padding 1:",
      tm.autograd.gradcheck(lambda t: F.max_pool2d(t, kernel_size=3, stride=2, padding=1), [x_check]))


def best_time(function, repeats: int) -> float:
    """Return the shortest wall time, in seconds, of ``repeats`` calls of ``function()``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


seconds = {
    "reference forward": best_time(lambda: pool.reference_max_pool2d_forward(x_random, (2, 2), (2, 2), (0, 0)), 1),
    "numba forward": best_time(lambda: pool.max_pool2d_forward(x_random, (2, 2), (2, 2), (0, 0)), 20),
    "reference backward": best_time(
        lambda: pool.reference_max_pool2d_backward(grad_output, indices_reference, x_random.shape), 1),
    "numba backward": best_time(lambda: pool.max_pool2d_backward(grad_output, indices_numba, x_random.shape), 20),
}
for name, value in seconds.items():
    print(f"{name:>18}: {value * 1e3:9.3f} ms")
print(f"Numba is {seconds['reference forward'] / seconds['numba forward']:.0f}× faster forward and "
      f"{seconds['reference backward'] / seconds['numba backward']:.0f}× faster backward on this machine now")

figure = viz.plot_bars({name: value * 1e3 for name, value in seconds.items()},
                       ylabel="milliseconds per call (log scale)",
                       title="max_pool2d 2×2 on 8 × 64 × 28 × 28, float64")
figure.axes[0].set_yscale("log")
lesson.save_figure(figure, options.out, "timings.png")

# %% [markdown]
# ## Summary
#
# - Max-pooling takes y[oh, ow] = max over a window, and its output size is
#   H_out = floor((H + 2p - K) / s) + 1, as for the convolution.
# - Its gradient goes whole to one input per window: the first maximum in row-major
#   order. A tie does not copy or split it, so Σ dx = Σ dy for non-overlapping
#   windows; central differences split it instead, which is why gradient checks
#   avoid ties.
# - Where windows overlap, a pixel that wins several windows receives the sum.
# - Padding is -inf for max-pooling, never 0, and NaN counts as the maximum so that a
#   bug upstream stays visible.
# - The reference and Numba kernels return identical outputs, winners and gradients.
#
# ## 小结
#
# - 最大池化计算 y[oh, ow] = 窗口内的最大值，输出尺寸与卷积相同：H_out = floor((H + 2p - K) / s) + 1。
# - 每个窗口的梯度整体流向一个输入：按行优先顺序的第一个最大值。并列时既不复制也不平分，因此对于
#   互不重叠的窗口，Σ dx = Σ dy；中心差分则会平分梯度，所以梯度检验要避开并列值。
# - 窗口重叠时，赢下多个窗口的像素会收到这些梯度之和。
# - 对最大池化而言，填充相当于 -inf，而不是 0；NaN 被视为最大值，使上游的错误保持可见。
# - 参考内核与 Numba 内核给出完全相同的输出、胜出位置和梯度。
#
# ## Exercises
#
# 1. Write a version of `max_pool2d_backward_loops` that copies dy to every tied
#    maximum. On the digit of section 7, how much larger does Σ dx become than Σ dy,
#    and why would that distort training?
# 2. For 3×3 windows with stride 2 on a 28×28 input, what is the largest number of
#    windows one pixel can win, and which pixels can reach it? Build an input on
#    which some pixel does, and compare with the counts printed in section 7.
# 3. Average-pooling replaces the max by the mean of the window. Write its backward
#    pass as loops. Where does its gradient go, and does it need `indices`?
#
# ## 练习
#
# 1. 写一个 `max_pool2d_backward_loops` 的变体，把 dy 复制给每个并列的最大值。在第 7 节的数字上，
#    Σ dx 比 Σ dy 大多少？为什么这会扭曲训练？
# 2. 在 28×28 的输入上使用 3×3 窗口、步幅 2，一个像素最多能赢下多少个窗口？哪些像素能做到？
#    构造一个让某个像素达到这个上限的输入，并与第 7 节打印的计数进行比较。
# 3. 平均池化把最大值换成窗口内的平均值。用循环写出它的反向传播。它的梯度流向哪里？它需要 `indices` 吗？

# %%
clock.report()
