# %% [markdown]
# # Lesson 02: gradient checking
#
# Every op of the engine has a hand-written backward, and a wrong backward does not
# crash: the model still trains, only worse, and nothing tells you why. The cure is to
# compare each backward with a numerical derivative computed from the forward alone.
# This lesson does that by hand first, then with `tm.autograd.gradcheck`. We plant a
# bug in a custom Function and read the error that gradcheck raises. We measure how
# the error of a finite difference depends on the step ε, in float32 and in float64,
# which explains gradcheck's defaults. Finally we check a whole layer's backward
# against a random upstream gradient, and see why that gradient must be random.
#
# # 第 02 课：梯度检验
#
# 引擎中每个运算的反向传播都是手写的，而写错的反向传播并不会让程序崩溃：模型照样训练，只是
# 效果变差，也没有任何提示告诉你原因。解决办法是把每个反向传播与只用前向计算得到的数值导数
# 作比较。本课先手工做一遍，再用 `tm.autograd.gradcheck` 来做。我们在一个自定义 Function 中
# 故意埋下错误，并解读 gradcheck 抛出的报错信息。我们测量有限差分的误差如何随步长 ε 变化
# （分别在 float32 和 float64 下），由此解释 gradcheck 默认参数的由来。最后，用随机的上游梯度
# 检验一整层的反向传播，并说明这个上游梯度为什么必须是随机的。

# %%
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

try:
    import tinymbm as tm
except ModuleNotFoundError:
    # A checkout without `pip install -e .`: the package sits one folder above lessons/.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent))
    import tinymbm as tm
import tinymbm.functional as F
from tinymbm import lesson, nn, viz
from tinymbm.autograd import Context, Function, GradcheckError

options = lesson.parse_args(
    "Lesson 02: gradient checking with central differences and tm.autograd.gradcheck",
    name="02_gradient_checking",
)
clock = lesson.Clock()
rng = np.random.default_rng(options.seed)
np.set_printoptions(precision=6, suppress=True)

# %% [markdown]
# ## 1. Central differences by hand
#
# Taylor's formula gives f(x ± ε) = f(x) ± ε·f′(x) + ε²/2·f″(x) ± ε³/6·f‴(x) + …, so
#
#     (f(x + ε) − f(x − ε)) / (2ε) = f′(x) + ε²/6·f‴(x) + …
#
# The ε² terms cancel, so the central difference is accurate to O(ε²), where the
# one-sided (f(x + ε) − f(x)) / ε is only accurate to O(ε). For a function of a vector
# x we nudge one element x_j at a time to get ∂f/∂x_j.
#
# Our test function is the log-sum-exp f(x) = log Σ_i exp(x_i), whose gradient is the
# softmax: ∂f/∂x_j = exp(x_j) / Σ_i exp(x_i). We compare three columns: the central
# difference, the closed form, and `backward()`.
#
# ## 1. 手算中心差分
#
# 由泰勒公式 f(x ± ε) = f(x) ± ε·f′(x) + ε²/2·f″(x) ± ε³/6·f‴(x) + …，得到
#
#     (f(x + ε) − f(x − ε)) / (2ε) = f′(x) + ε²/6·f‴(x) + …
#
# ε² 项相互抵消，所以中心差分的误差是 O(ε²)，而单侧差分 (f(x + ε) − f(x)) / ε 的误差只有 O(ε)。
# 对向量 x 的函数，每次只微调一个元素 x_j，就得到 ∂f/∂x_j。
#
# 测试函数取 log-sum-exp：f(x) = log Σ_i exp(x_i)，它的梯度恰好是 softmax：
# ∂f/∂x_j = exp(x_j) / Σ_i exp(x_i)。下面比较三列：中心差分、解析式和 `backward()`。

# %%
def log_sum_exp(values: np.ndarray) -> float:
    return float(np.log(np.sum(np.exp(values))))


x0 = rng.standard_normal(5)
eps = 1e-6

central = np.zeros_like(x0)
for j in range(x0.size):
    x_plus = x0.copy()
    x_plus[j] += eps
    x_minus = x0.copy()
    x_minus[j] -= eps
    central[j] = (log_sum_exp(x_plus) - log_sum_exp(x_minus)) / (2 * eps)

softmax = np.exp(x0) / np.exp(x0).sum()

x = tm.tensor(x0, requires_grad=True)
x.exp().sum().log().backward()

print(" j   central difference   softmax (closed form)   backward()")
for j in range(x0.size):
    print(f"{j:>2}   {central[j]:.12f}       {softmax[j]:.12f}          {x.grad[j]:.12f}")
print(f"largest |central − closed form| = {np.abs(central - softmax).max():.2e}")
print(f"largest |backward − closed form| = {np.abs(x.grad - softmax).max():.2e}")

# %% [markdown]
# ## 2. `tm.autograd.gradcheck` on the engine's ops
#
# `gradcheck(fn, inputs)` does the same for every element of every input that
# requires grad. It copies the inputs to float64 and, for a non-scalar output, reduces
# the output with a fixed random upstream gradient v, checking L = Σ fn(inputs) ⊙ v.
# It returns True, or raises `GradcheckError`. Each input below is drawn at random
# (never all zeros, which would hide many bugs, e.g. one that drops a factor x). Inputs
# are kept away from points where the op has no derivative, such as log at 0. The kink
# of relu at 0 is left to chance: a normal sample falls within ε = 10⁻⁶ of 0 with a
# probability of about 10⁻⁶.
#
# ## 2. 用 `tm.autograd.gradcheck` 检验引擎的运算
#
# `gradcheck(fn, inputs)` 对每个需要梯度的输入的每个元素做同样的事。它先把输入复制为 float64；
# 若输出不是标量，就用一个固定的随机上游梯度 v 把输出归约成标量，检验 L = Σ fn(inputs) ⊙ v。
# 检验通过时返回 True，否则抛出 `GradcheckError`。下面每个输入都是随机抽取的（绝不用全零，
# 全零会掩盖许多错误，例如漏掉了一个因子 x）。输入也避开运算不可导的点，比如 log 在 0 处。
# relu 在 0 处的折点则交给概率：一个正态样本落在 0 附近 ε = 10⁻⁶ 以内的概率约为 10⁻⁶。

# %%
def random_input(*shape: int) -> tm.Tensor:
    return tm.tensor(rng.standard_normal(shape), requires_grad=True)


targets = rng.integers(0, 5, size=4)
linear_layer_inputs = (random_input(4, 6), random_input(3, 6), random_input(3))
away_from_zero = tm.tensor(rng.uniform(0.5, 2.0, size=4) * rng.choice([-1.0, 1.0], size=4), requires_grad=True)

checks = [
    ("a @ b (matmul)", lambda a, b: a @ b, (random_input(3, 4), random_input(4, 2))),
    ("a / b, b broadcast over rows", lambda a, b: a / b, (random_input(3, 4), away_from_zero)),
    ("x ** 3", lambda t: t**3, (random_input(3, 4),)),
    ("tanh", lambda t: t.tanh(), (random_input(3, 4),)),
    ("sigmoid", lambda t: t.sigmoid(), (random_input(3, 4),)),
    ("relu", lambda t: t.relu(), (random_input(3, 4),)),
    ("log of positive values", lambda t: t.log(), (tm.tensor(rng.uniform(0.5, 3.0, (3, 4)), requires_grad=True),)),
    ("sum over dim 1", lambda t: t.sum(dim=1), (random_input(3, 4),)),
    ("mean over dim 0, keepdim", lambda t: t.mean(dim=0, keepdim=True), (random_input(3, 4),)),
    ("max over dim 1 (values)", lambda t: t.max(dim=1)[0], (random_input(3, 4),)),
    ("indexing t[1:, ::2]", lambda t: t[1:, ::2], (random_input(3, 4),)),
    ("log_softmax over dim 1", lambda t: F.log_softmax(t, dim=1), (random_input(4, 5),)),
    ("cross_entropy", lambda t: F.cross_entropy(t, targets), (random_input(4, 5),)),
    ("linear x Wᵀ + b", F.linear, linear_layer_inputs),
]
for name, fn, inputs in checks:
    shapes = ", ".join(str(t.shape) for t in inputs)
    print(f"{name:<30} inputs {shapes:<24} gradcheck: {tm.autograd.gradcheck(fn, inputs)}")

# %% [markdown]
# ## 3. A deliberately wrong Function, and how to read the error
#
# Here is σ(x) = 1 / (1 + e⁻ˣ) as a custom Function whose backward omits a factor.
# The true derivative is σ′(x) = σ(x)·(1 − σ(x)), and this backward returns only
# σ(x). The error that gradcheck raises names the input (by position), the element
# index, the analytic value (from backward) and the numerical one (from the forward).
#
# Reading it: the analytic value is v·σ(x) and the numerical one v·σ(x)·(1 − σ(x)),
# where v is the upstream gradient at that element. So their ratio should be
# 1 / (1 − σ(x)) at the reported element, and we check that below. A ratio like this,
# a constant factor away, points to a missing or extra factor in the backward. A sign
# flip points to a wrong sign. An element that is off while its neighbours pass points
# to an indexing bug.
#
# ## 3. 故意写错的 Function，以及如何解读报错
#
# 下面把 σ(x) = 1 / (1 + e⁻ˣ) 写成一个自定义 Function，它的反向传播漏掉了一个因子。真正的导数
# 是 σ′(x) = σ(x)·(1 − σ(x))，而这个 backward 只返回 σ(x)。gradcheck 抛出的报错会指明是哪个
# 输入（按位置）、哪个元素下标，以及解析值（来自 backward）和数值（来自前向计算）。
#
# 如何解读：解析值是 v·σ(x)，数值是 v·σ(x)·(1 − σ(x))，其中 v 是该元素处的上游梯度。因此在报错
# 指出的元素上，两者之比应为 1 / (1 − σ(x))，下面就来验证这一点。像这样相差一个固定倍数，说明
# 反向传播里少了或多了一个因子；符号相反，说明符号写错了；某个元素出错而相邻元素都通过，说明
# 下标写错了。

# %%
class SigmoidMissingFactor(Function):
    """σ(x) = 1 / (1 + e⁻ˣ) with a planted bug: backward returns g·σ instead of g·σ·(1 − σ)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        s = 1 / (1 + np.exp(-x))
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx: Context, grad_output: np.ndarray) -> np.ndarray:
        (s,) = ctx.saved_tensors
        return grad_output * s


class SigmoidFixed(SigmoidMissingFactor):
    """σ(x) with the correct backward: ∂L/∂x = g·σ·(1 − σ)."""

    @staticmethod
    def backward(ctx: Context, grad_output: np.ndarray) -> np.ndarray:
        (s,) = ctx.saved_tensors
        return grad_output * s * (1 - s)


x = random_input(2, 3)
try:
    tm.autograd.gradcheck(SigmoidMissingFactor.apply, (x,))
except GradcheckError as error:
    message = str(error)
    print("GradcheckError:", message)

    index = tuple(int(i) for i in re.search(r"element \(([\d, ]+)\)", message).group(1).split(","))
    analytic, numerical = (float(value) for value in re.search(
        r"analytic gradient (\S+) but numerical (\S+)", message).groups())
    s = 1 / (1 + np.exp(-x.data[index]))
    print(f"\nat element {index}: x = {x.data[index]:+.4f}, σ(x) = {s:.4f}")
    print(f"analytic / numerical = {analytic / numerical:.6f}   1 / (1 − σ(x)) = {1 / (1 - s):.6f}")

print("\nafter the fix, gradcheck:", tm.autograd.gradcheck(SigmoidFixed.apply, (x,)))

# %% [markdown]
# ## 4. How the error of a finite difference depends on ε
#
# Two errors pull in opposite directions. The truncation error of a central difference
# is about ε²·|f‴|/6, so it shrinks as ε does. But f(x + ε) and f(x − ε) are each rounded
# to the dtype's precision u (the machine epsilon: 2.2·10⁻¹⁶ for float64, 1.2·10⁻⁷ for
# float32). Their difference therefore carries an error of about u·|f|, which the
# division by 2ε magnifies. The total, about ε²·|f‴|/6 + u·|f|/ε, is smallest near
# ε ≈ (3u·|f|/|f‴|)^(1/3), which is of the order of u^(1/3).
#
# We measure it for f = tanh at x = 0.5, evaluating f with the engine in float32 and in
# float64, and add the one-sided difference in float64 for comparison. On the log-log
# plot the right branch of each curve has slope 2 (central) or 1 (one-sided), and the
# left branch has slope −1 (rounding). For float32, steps below about 3·10⁻⁸ vanish
# entirely (x + ε rounds back to x), so the estimate becomes 0 and the error flattens
# at |f′(x)|.
#
# ## 4. 有限差分的误差如何随 ε 变化
#
# 两种误差方向相反。中心差分的截断误差约为 ε²·|f‴|/6，随 ε 减小而减小。但 f(x + ε) 和 f(x − ε)
# 各自都会按数据类型的精度 u（机器精度：float64 为 2.2·10⁻¹⁶，float32 为 1.2·10⁻⁷）舍入，两者
# 之差因此带有约 u·|f| 的误差，再除以 2ε 就被放大了。总误差约为 ε²·|f‴|/6 + u·|f|/ε，在
# ε ≈ (3u·|f|/|f‴|)^(1/3) 附近最小，量级与 u^(1/3) 相当。
#
# 我们以 f = tanh、x = 0.5 为例测量这一点：分别用引擎在 float32 和 float64 下计算 f，并加上
# float64 下的单侧差分作对比。在双对数坐标图上，每条曲线的右支斜率为 2（中心差分）或 1（单侧
# 差分），左支斜率为 −1（舍入误差）。对 float32 而言，小于约 3·10⁻⁸ 的步长会完全消失
# （x + ε 舍入后又变回 x），于是估计值变成 0，误差停在 |f′(x)| 不再变化。

# %%
def tanh_of(values: np.ndarray, dtype: type) -> np.ndarray:
    return tm.tensor(values.astype(dtype)).tanh().numpy()


x_point = 0.5
exact = 1 - np.tanh(x_point) ** 2
steps = np.logspace(-14, -0.5, 80)

errors = {}
for dtype in (np.float32, np.float64):
    plus = tanh_of(x_point + steps, dtype)
    minus = tanh_of(x_point - steps, dtype)
    estimate = (plus - minus) / (2 * steps.astype(dtype))
    errors[f"central, {np.dtype(dtype).name}"] = np.abs(estimate.astype(np.float64) - exact)
forward_estimate = (tanh_of(x_point + steps, np.float64) - np.tanh(x_point)) / steps
errors["one-sided, float64"] = np.abs(forward_estimate - exact)

table_steps = np.array([1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-10])
table = {
    "central, float32": (tanh_of(x_point + table_steps, np.float32) - tanh_of(x_point - table_steps, np.float32))
    / (2 * table_steps.astype(np.float32)),
    "central, float64": (tanh_of(x_point + table_steps, np.float64) - tanh_of(x_point - table_steps, np.float64))
    / (2 * table_steps),
    "one-sided, float64": (tanh_of(x_point + table_steps, np.float64) - np.tanh(x_point)) / table_steps,
}
print("ε                    " + "  ".join(f"{step:>7.0e}" for step in table_steps))
for label, estimate in table.items():
    error = np.abs(estimate.astype(np.float64) - exact)
    print(f"{label:<20} " + "  ".join(f"{value:>7.0e}" for value in error))
for dtype in (np.float32, np.float64):
    u = np.finfo(dtype).eps
    print(f"{np.dtype(dtype).name}: machine epsilon u = {u:.1e}, u^(1/3) = {u ** (1 / 3):.1e}")

# An error of exactly 0 (a lucky rounding) cannot be drawn on a log axis.
plotted = {label: np.maximum(error, 1e-17) for label, error in errors.items()}
figure = viz.plot_lines(steps, plotted, xlabel="step ε", ylabel="|numerical − exact| derivative",
                        title="finite-difference error of tanh′(0.5)", log_x=True, log_y=True)
lesson.save_figure(figure, options.out, "finite_difference_error.png")

# %% [markdown]
# The table shows why gradcheck computes in float64. In float32 the error stays above
# about 5·10⁻⁶ (apart from lucky roundings), and only for ε between about 10⁻³ and
# 10⁻². That window moves with |f| and f‴, which a general check does not know. At
# ε = 10⁻⁶ the float32 estimate is already off by 2·10⁻². In float64, every ε from
# 10⁻⁸ to 10⁻⁴ gives an error of about 2·10⁻⁹ or less, and gradcheck's default
# ε = 10⁻⁶ sits in the middle of that window. Its tolerances (atol = 10⁻⁵,
# rtol = 10⁻³) leave room for functions with larger third derivatives, and they are
# still far below the size of a real bug.
#
# 上表说明了 gradcheck 为什么要在 float64 下计算。在 float32 下，误差始终高于约 5·10⁻⁶（偶然
# 的舍入巧合除外），而且只在 ε 约为 10⁻³ 到 10⁻² 之间才能达到。这个窗口的位置随 |f| 和 f‴
# 变化，而通用的检验并不知道它们。取 ε = 10⁻⁶ 时，float32 的估计已经偏离了 2·10⁻²。在 float64
# 下，从 10⁻⁸ 到 10⁻⁴ 的每个 ε 误差都在约 2·10⁻⁹ 以内，gradcheck 默认的 ε = 10⁻⁶ 正好位于这个
# 窗口的中间。它的容差（atol = 10⁻⁵，rtol = 10⁻³）给三阶导数更大的函数留了余地，同时仍远小于
# 一个真正的错误所造成的偏差。

# %% [markdown]
# ## 5. Checking a layer's backward against a random upstream gradient
#
# A layer inside a network has no access to the loss itself: its backward receives
# G = ∂L/∂y, the gradient of the loss with respect to its output y, and must return
# ∂L/∂x and the gradients of its parameters. So we can check a layer without building
# any loss: pick a random G, call `y.backward(G)`, and compare with central differences
# of the scalar L = Σ G ⊙ y, whose gradient with respect to y is exactly G.
#
# For `nn.Linear`, y = x Wᵀ + b, and the backward should give ∂L/∂x = G W,
# ∂L/∂W = Gᵀ x and ∂L/∂b = Σ_n G_n (summed over the batch). We measure the relative
# error max |a − n| / max(|a|, |n|) per tensor. Around 10⁻⁸ or below is a pass.
#
# ## 5. 用随机上游梯度检验一层的反向传播
#
# 网络中的一层从不直接接触损失：它的反向传播收到的是 G = ∂L/∂y，即损失对其输出 y 的梯度，
# 并要返回 ∂L/∂x 以及各参数的梯度。所以检验一层时根本不必构造损失：随机取一个 G，调用
# `y.backward(G)`，再与标量 L = Σ G ⊙ y 的中心差分比较，因为 L 对 y 的梯度恰好就是 G。
#
# 对 `nn.Linear` 而言，y = x Wᵀ + b，反向传播应给出 ∂L/∂x = G W，∂L/∂W = Gᵀ x，
# ∂L/∂b = Σ_n G_n（在批次上求和）。我们对每个张量计算相对误差 max |a − n| / max(|a|, |n|)，
# 在 10⁻⁸ 左右或更小即为通过。

# %%
def numerical_gradient(loss_of: Callable[[], float], array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Estimate ∂L/∂array by central differences, nudging ``array`` in place one element at a time."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + eps
        plus = loss_of()
        array[index] = original - eps
        minus = loss_of()
        array[index] = original
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def relative_error(analytic: np.ndarray, numerical: np.ndarray) -> float:
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numerical)), 1e-12)
    return float(np.max(np.abs(analytic - numerical) / scale))


layer = nn.Linear(5, 3).double()
x = random_input(4, 5)
upstream = rng.standard_normal((4, 3))

y = layer(x)
y.backward(upstream)


def upstream_loss() -> float:
    with tm.no_grad():
        return float(np.sum(layer(x).numpy() * upstream))


for name, tensor in (("x", x), ("weight", layer.weight), ("bias", layer.bias)):
    numerical = numerical_gradient(upstream_loss, tensor.data)
    print(f"∂L/∂{name:<7} shape {tensor.shape!s:<7} relative error {relative_error(tensor.grad, numerical):.1e}")

weight = layer.weight.data
print("\nthe closed forms agree with backward():")
print(f"  max |x.grad − G W|      = {np.abs(x.grad - upstream @ weight).max():.1e}")
print(f"  max |weight.grad − Gᵀx| = {np.abs(layer.weight.grad - upstream.T @ x.data).max():.1e}")
print(f"  max |bias.grad − Σ_n G| = {np.abs(layer.bias.grad - upstream.sum(axis=0)).max():.1e}")

# %% [markdown]
# ## 6. Why the upstream gradient must be random
#
# It is tempting to check an op through `fn(x).sum()`, which is an upstream gradient of
# all ones. That can hide a bug completely. The softmax is the classic case:
# Σ_j softmax(x)_j = 1 for every x, so the gradient of its sum is zero, and a backward
# that returns zeros passes the check. A random upstream gradient weights every output
# differently, so the same broken backward fails at once.
#
# ## 6. 为什么上游梯度必须是随机的
#
# 人们很容易想通过 `fn(x).sum()` 来检验一个运算，这相当于上游梯度全为 1，却可能把错误完全
# 掩盖。softmax 就是典型的例子：对任何 x 都有 Σ_j softmax(x)_j = 1，所以其和的梯度为零，
# 一个直接返回零的反向传播也能通过检验。随机的上游梯度给每个输出不同的权重，同样错误的反向
# 传播会立刻被发现。

# %%
class SoftmaxZeroBackward(Function):
    """softmax over the last axis with a planted bug: backward returns zeros."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        # Subtracting the row maximum keeps exp from overflowing and leaves softmax unchanged.
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    @staticmethod
    def backward(ctx: Context, grad_output: np.ndarray) -> np.ndarray:
        return np.zeros_like(grad_output)


logits = random_input(3, 4)
passed = tm.autograd.gradcheck(lambda t: SoftmaxZeroBackward.apply(t).sum(), (logits,))
print("upstream of all ones, softmax(x).sum():", passed, "(the bug is hidden)")
try:
    tm.autograd.gradcheck(SoftmaxZeroBackward.apply, (logits,))
except GradcheckError as error:
    print("random upstream gradient, softmax(x): GradcheckError:", error)

# %% [markdown]
# ## Summary
#
# - The central difference (f(x + ε) − f(x − ε)) / (2ε) has error O(ε²), the one-sided
#   difference O(ε). Nudge one element at a time to get a gradient.
# - `tm.autograd.gradcheck(fn, inputs)` runs that check in float64 on every element and
#   names the input, element, analytic and numerical values when it fails. A constant
#   ratio between the two values points to a missing or extra factor.
# - Rounding error grows like u/ε while truncation error shrinks like ε², so the best
#   step is near u^(1/3). In float32 that leaves about 10⁻⁵ of error, so gradient
#   checks run in float64.
# - A layer's backward is checked with a random upstream gradient G through
#   L = Σ G ⊙ y. A gradient of all ones (a plain `.sum()`) can hide bugs, e.g. in softmax.
#
# ## 小结
#
# - 中心差分 (f(x + ε) − f(x − ε)) / (2ε) 的误差为 O(ε²)，单侧差分为 O(ε)。每次微调一个元素，
#   就能得到整个梯度。
# - `tm.autograd.gradcheck(fn, inputs)` 在 float64 下对每个元素做这项检验，失败时指明输入、
#   元素、解析值和数值。两者相差固定倍数，说明反向传播少了或多了一个因子。
# - 舍入误差像 u/ε 那样增长，截断误差像 ε² 那样减小，所以最佳步长在 u^(1/3) 附近。在 float32
#   下这样仍有约 10⁻⁵ 的误差，因此梯度检验要在 float64 下进行。
# - 检验一层的反向传播时，用随机上游梯度 G，通过 L = Σ G ⊙ y 来做。全为 1 的梯度（即直接
#   `.sum()`）可能掩盖错误，softmax 就是一例。
#
# ## Exercises
#
# 1. Plant a bug in the bias gradient of a linear Function: return the mean of G over
#    the batch instead of the sum. Which element does gradcheck name? Why does a batch
#    of size 1 hide this bug?
# 2. Repeat the ε study of section 4 for f(x) = x³ at x = 1, where f‴ = 6 everywhere.
#    Check that the best ε is close to (3u·|f|/|f‴|)^(1/3) in both dtypes.
# 3. Write a gradcheck that uses one-sided differences instead of central ones. With
#    eps = 10⁻⁶ in float64, how large an rtol does it need to pass on `tanh`?
#
# ## 练习
#
# 1. 在一个线性层 Function 的偏置梯度里埋一个错误：对 G 在批次上取平均而不是求和。gradcheck
#    会指出哪个元素？为什么批次大小为 1 时这个错误发现不了？
# 2. 对 f(x) = x³ 在 x = 1 处重做第 4 节的 ε 实验，此时 f‴ 处处等于 6。验证在两种数据类型下，
#    最佳 ε 都接近 (3u·|f|/|f‴|)^(1/3)。
# 3. 写一个用单侧差分代替中心差分的 gradcheck。在 float64 下取 eps = 10⁻⁶ 时，对 `tanh` 需要
#    多大的 rtol 才能通过？

# %%
clock.report()
