# %% [markdown]
# # Lesson 01: tensors and autograd by hand
#
# A tensor is a NumPy array plus a record of how it was computed. When a tensor requires
# grad, every op applied to it is recorded in a graph, and `backward()` walks that graph
# from the output back to the inputs, applying the chain rule one op at a time.
#
# This lesson builds that picture from the ground up. We create tensors and look at
# their dtypes and at broadcasting. We differentiate a small expression by hand, let
# `backward()` do the same, and compare the two. Then we look at the parts of autograd
# that surprise people: gradients that accumulate (the reason `zero_grad` exists),
# `no_grad`, and how to see the gradient of an intermediate tensor.
#
# # 第 01 课：手算张量与自动求导
#
# 张量就是一个 NumPy 数组，外加它如何算出来的记录。若张量需要梯度（`requires_grad=True`），
# 作用在它上面的每个运算都会被记录进计算图；`backward()` 从输出沿着这张图回溯到输入，
# 逐个运算地套用链式法则。
#
# 本课从头搭起这幅图景。先创建张量，看看数据类型（dtype）和广播；再手工对一个小表达式求导，
# 让 `backward()` 也算一遍，两相对照。最后看自动求导中最容易让人意外的几处：梯度会累加
# （这正是 `zero_grad` 存在的原因）、`no_grad`，以及如何查看中间张量的梯度。

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
import tinymbm.inspect
from tinymbm import lesson, viz

options = lesson.parse_args(
    "Lesson 01: tensors, dtypes, broadcasting, and autograd by hand and by backward()",
    name="01_tensors_autograd",
)
clock = lesson.Clock()
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. Creating tensors, and their dtypes
#
# The dtype rules follow PyTorch. Python floats become float32, the usual training
# precision. A NumPy array keeps its floating dtype, so a float64 array gives a float64
# tensor (we use float64 below wherever we compare numbers to many digits). Integers
# become int64 and cannot require grad, because a gradient needs a continuous value to
# nudge.
#
# ## 1. 创建张量及其数据类型
#
# 数据类型规则与 PyTorch 一致。Python 浮点数变成 float32，这是训练时常用的精度；NumPy 数组
# 保留其浮点类型，所以 float64 数组得到 float64 张量（下文凡是要比较许多位有效数字的地方都用
# float64）。整数变成 int64，而且不能要求梯度，因为梯度需要一个可以连续微调的值。

# %%
a = tm.tensor([[1.0, 2.0], [3.0, 4.0]])
b = tm.tensor(np.array([0.5, -1.5]))
counts = tm.tensor([1, 2, 3])
noise = tm.randn(2, 3)

for name, value in (("a", a), ("b", b), ("counts", counts), ("noise", noise)):
    print(f"{name:<7} shape {value.shape!s:<8} dtype {value.dtype!s:<8} ndim {value.ndim}")

print("a * 2.0 stays", (a * 2.0).dtype, "(a Python scalar takes the tensor's dtype)")
print("a + b becomes", (a + b).dtype, "(float32 meeting float64 promotes to float64, as in NumPy)")
print("a.T =\n", a.T.numpy())
print("noise.reshape(3, 2) has shape", noise.reshape(3, 2).shape)

try:
    tm.tensor([1, 2, 3], requires_grad=True)
except TypeError as error:
    print("an int64 tensor cannot require grad:", error)

# %% [markdown]
# ## 2. Broadcasting, and where its gradient goes
#
# Adding a column of shape (3, 1) to a row of shape (4,) gives a (3, 4) grid: NumPy
# aligns shapes from the right and repeats every axis of size 1. Repeating a value means
# using it several times, so its gradient is the sum over the copies. For the sum of the
# grid, each entry of `column` is used 4 times and each entry of `row` 3 times.
#
# ## 2. 广播，以及广播的梯度流向何处
#
# 形状 (3, 1) 的列加上形状 (4,) 的行，得到 (3, 4) 的网格：NumPy 从右往左对齐形状，把长度为 1
# 的轴复制展开。复制一个值就等于多次使用它，所以它的梯度是各个副本梯度之和。对网格求和时，
# `column` 的每个元素用了 4 次，`row` 的每个元素用了 3 次。

# %%
column = tm.tensor([[1.0], [2.0], [3.0]], requires_grad=True)
row = tm.tensor([10.0, 20.0, 30.0, 40.0], requires_grad=True)
grid = column + row
print("grid shape:", grid.shape)
print(grid.numpy())

grid.sum().backward()
print("column.grad (each entry used 4 times):", column.grad.ravel())
print("row.grad    (each entry used 3 times):", row.grad)

# %% [markdown]
# ## 3. The chain rule by hand
#
# Take one neuron and a squared error:
#
#     L = (tanh(w·x + b) − y)²      with x = 1.5, y = 0.2, w = 0.8, b = −0.3
#
# Name every intermediate: z = w·x + b, a = tanh(z), d = a − y, L = d². Each step has a
# simple local derivative: ∂L/∂d = 2d, ∂d/∂a = 1, ∂a/∂z = 1 − a², ∂z/∂w = x, ∂z/∂b = 1.
# The chain rule multiplies them from the output backwards:
#
#     ∂L/∂w = ∂L/∂d · ∂d/∂a · ∂a/∂z · ∂z/∂w = 2d · 1 · (1 − a²) · x
#
# Below, plain Python floats compute the forward pass, then the backward pass one
# factor at a time, so each printed line is one application of the chain rule.
#
# ## 3. 手算链式法则
#
# 取一个神经元加平方误差：
#
#     L = (tanh(w·x + b) − y)²      其中 x = 1.5, y = 0.2, w = 0.8, b = −0.3
#
# 给每个中间量起个名字：z = w·x + b，a = tanh(z)，d = a − y，L = d²。每一步都有简单的局部导数：
# ∂L/∂d = 2d，∂d/∂a = 1，∂a/∂z = 1 − a²，∂z/∂w = x，∂z/∂b = 1。链式法则从输出往回把它们相乘：
#
#     ∂L/∂w = ∂L/∂d · ∂d/∂a · ∂a/∂z · ∂z/∂w = 2d · 1 · (1 − a²) · x
#
# 下面用普通的 Python 浮点数先算前向，再逐个因子地算反向，打印出的每一行就是一次链式法则。

# %%
x_value, y_value, w_value, b_value = 1.5, 0.2, 0.8, -0.3

z_value = w_value * x_value + b_value
a_value = math.tanh(z_value)
d_value = a_value - y_value
loss_value = d_value**2
print(f"forward:  z = w·x + b = {z_value:.6f}   a = tanh(z) = {a_value:.6f}   "
      f"d = a − y = {d_value:.6f}   L = d² = {loss_value:.6f}")

grad_d = 2 * d_value
grad_a = grad_d * 1.0
grad_z = grad_a * (1 - a_value**2)
grad_w = grad_z * x_value
grad_b = grad_z * 1.0
print("backward:")
print(f"  ∂L/∂d = 2d                    = {grad_d:+.6f}")
print(f"  ∂L/∂a = ∂L/∂d · 1             = {grad_a:+.6f}")
print(f"  ∂L/∂z = ∂L/∂a · (1 − a²)      = {grad_z:+.6f}")
print(f"  ∂L/∂w = ∂L/∂z · x             = {grad_w:+.6f}")
print(f"  ∂L/∂b = ∂L/∂z · 1             = {grad_b:+.6f}")

# %% [markdown]
# ## 4. The same gradient with `backward()`
#
# Now the same expression on float64 tensors. `tm.autograd.backward_steps` runs the
# backward pass one recorded op at a time and reports, for each op, the gradient that
# arrived at its output and the gradients it sent to its inputs. Read the lines top to
# bottom and compare them with the hand-computed factors above: `Pow` receives
# ∂L/∂L = 1 and sends 2d, `Tanh` receives ∂L/∂a and sends ∂L/∂z, and so on. Inputs that
# are constants (x, y, the exponent 2) receive nothing, shown as `-`.
#
# ## 4. 用 `backward()` 算同一个梯度
#
# 现在在 float64 张量上计算同一个表达式。`tm.autograd.backward_steps` 逐个记录下来的运算执行
# 反向传播，并报告每个运算的输出收到了什么梯度、又向各个输入送出了什么梯度。从上往下读这些行，
# 与上面的手算因子对照：`Pow` 收到 ∂L/∂L = 1，送出 2d；`Tanh` 收到 ∂L/∂a，送出 ∂L/∂z；依此类推。
# 常量输入（x、y 和指数 2）收不到梯度，显示为 `-`。

# %%
w = tm.tensor(w_value, requires_grad=True, dtype="float64")
b = tm.tensor(b_value, requires_grad=True, dtype="float64")
loss = ((w * x_value + b).tanh() - y_value) ** 2


def format_grads(grads: list) -> str:
    return ", ".join("-" if g is None else f"{float(np.asarray(g)):+.6f}" for g in grads)


for step in tm.autograd.backward_steps(loss):
    print(f"{step.op:<6} receives {format_grads(step.grad_outputs):<11} sends {format_grads(step.grad_inputs)}")

print(f"\nw.grad: backward() {w.grad.item():+.10f}   by hand {grad_w:+.10f}")
print(f"b.grad: backward() {b.grad.item():+.10f}   by hand {grad_b:+.10f}")
assert math.isclose(w.grad.item(), grad_w, rel_tol=1e-12), "backward() disagrees with the hand-computed ∂L/∂w"
assert math.isclose(b.grad.item(), grad_b, rel_tol=1e-12), "backward() disagrees with the hand-computed ∂L/∂b"
print("backward() and the hand computation agree to 12 significant digits")

# %% [markdown]
# ## 5. The diamond: one input, two paths
#
# When a value feeds two ops, its gradient is the sum over both paths. With
# u = x·x, v = 3·x and y = u·v (so y = 3x³):
#
#     ∂y/∂x = ∂y/∂u · ∂u/∂x + ∂y/∂v · ∂v/∂x = v · 2x + u · 3 = 9x²
#
# which is 36 at x = 2. The engine orders the backward pass so that a node sends its
# gradient on only after every consumer of its output has added its share. The printed
# tree shows x used three times (twice in u, once in v). The plot `diamond_graph.png`
# draws the same graph as boxes.
#
# ## 5. 菱形图：一个输入，两条路径
#
# 当一个值同时输入两个运算时，它的梯度是两条路径之和。令 u = x·x，v = 3·x，y = u·v（即 y = 3x³）：
#
#     ∂y/∂x = ∂y/∂u · ∂u/∂x + ∂y/∂v · ∂v/∂x = v · 2x + u · 3 = 9x²
#
# 在 x = 2 处等于 36。引擎安排反向传播的顺序，保证一个节点要等它输出的所有使用者都把各自那份
# 梯度加进来之后，才继续往下传。打印出的树显示 x 被用了三次（u 里两次，v 里一次）。
# 图 `diamond_graph.png` 用方框画出了同一张图。

# %%
x = tm.tensor(2.0, requires_grad=True, dtype="float64")
u = x * x
v = 3 * x
y = u * v
print(tinymbm.inspect.explain(y, names={"x": x}))

y.backward(retain_graph=True)
print(f"\nx.grad = {x.grad.item():.1f}   (9x² = {9 * 2.0**2:.1f})")
lesson.save_figure(viz.draw_graph(y, names={"x": x}), options.out, "diamond_graph.png")

# %% [markdown]
# ## 6. Gradients accumulate: why `zero_grad` exists
#
# `backward()` *adds* into `.grad` and never overwrites it. That is the right rule inside
# one graph (it is exactly the sum over paths above), and it lets a learner sum the
# gradients of several small batches before one update. But the engine cannot tell a
# new training step from one more contribution, so a second `backward()` without
# clearing doubles the gradient. This is why every training loop calls
# `optimizer.zero_grad()` (or `model.zero_grad()`) before `backward()`.
#
# A second point: after `backward()` the graph frees the values it saved for the
# backward pass. Calling `backward()` twice on the same graph then fails, unless the
# first call passed `retain_graph=True` (we did, above, so the graph could be drawn).
#
# ## 6. 梯度会累加：`zero_grad` 为何存在
#
# `backward()` 是把梯度*加*进 `.grad`，从不覆盖。在同一张图里这是正确的规则（正是上面所说的
# 按路径求和），也让我们能把几个小批次的梯度加在一起再做一次更新。但引擎分辨不出"新的一步
# 训练"和"又一份贡献"，所以不清零就再调用一次 `backward()`，梯度就会翻倍。这就是每个训练循环
# 都要在 `backward()` 之前调用 `optimizer.zero_grad()`（或 `model.zero_grad()`）的原因。
#
# 另外，`backward()` 执行完后，计算图会释放为反向传播保存的中间值。因此对同一张图第二次调用
# `backward()` 会报错，除非第一次调用时传了 `retain_graph=True`（上面就这样做了，以便画图）。

# %%
y.backward()
print(f"after a second backward() on the same graph: x.grad = {x.grad.item():.1f}  (36 + 36)")

try:
    y.backward()
except RuntimeError as error:
    print("a third backward() fails, because the second one freed the graph:\n ", error)

x.zero_grad()
print("after x.zero_grad(): x.grad =", x.grad)
y = (x * x) * (3 * x)
y.backward()
print(f"a fresh graph and one backward(): x.grad = {x.grad.item():.1f}")

# %% [markdown]
# ## 7. `no_grad`: computing without recording
#
# Inside `tm.no_grad()` no op records a graph: results have `requires_grad=False` and
# no `grad_fn`, and nothing is kept for a backward pass. Use it for evaluation, and for
# the parameter update itself, which must not become part of the next step's graph.
# Writing into a tensor that requires grad is rejected outside `no_grad`, because the
# change would bypass the graph. Below, ten steps of gradient descent on the neuron of
# section 3 combine everything so far: clear, forward, backward, update under
# `no_grad`.
#
# ## 7. `no_grad`：只计算，不记录
#
# 在 `tm.no_grad()` 之内，任何运算都不记录计算图：结果的 `requires_grad=False`，没有
# `grad_fn`，也不为反向传播保存任何东西。评估模型时用它；更新参数时也要用它，因为更新本身
# 不能成为下一步计算图的一部分。在 `no_grad` 之外向需要梯度的张量写入会被拒绝，因为这种修改
# 会绕过计算图。下面在第 3 节的神经元上做十步梯度下降，把前面的内容串起来：清零、前向、反向、
# 在 `no_grad` 中更新。

# %%
with tm.no_grad():
    prediction = (w * x_value + b).tanh()
print("inside no_grad: requires_grad =", prediction.requires_grad, " grad_fn =", prediction.grad_fn)

try:
    w[...] = 0.0
except RuntimeError as error:
    print("writing into w outside no_grad is rejected:", error)

learning_rate = 0.1
for step in range(10):
    w.zero_grad()
    b.zero_grad()
    loss = ((w * x_value + b).tanh() - y_value) ** 2
    loss.backward()
    with tm.no_grad():
        w[...] = w.data - learning_rate * w.grad
        b[...] = b.data - learning_rate * b.grad
    print(f"step {step}: L = {loss.item():.2e}   w = {w.item():+.4f}   b = {b.item():+.4f}")

# %% [markdown]
# ## 8. Looking inside: `retain_grad` and hooks
#
# Only leaves keep their gradient in `.grad`. An intermediate tensor's gradient is
# passed through and dropped, which saves memory. Two tools let us see it anyway:
#
# - `t.retain_grad()` keeps the gradient of the intermediate `t` in `t.grad`;
# - `t.register_hook(fn)` calls `fn(grad)` when the gradient of `t` is computed. If `fn`
#   returns a tensor, that tensor replaces the gradient, so a hook can also change what
#   flows further back (gradient clipping works this way).
#
# We reset w and b to the values of section 3, so the printed ∂L/∂z and ∂L/∂a can be
# compared with the hand-computed table.
#
# ## 8. 看进图的内部：`retain_grad` 与钩子
#
# 只有叶子张量把梯度保存在 `.grad` 里；中间张量的梯度只是传过去，随后就丢掉，以节省内存。
# 有两个工具可以看到它：
#
# - `t.retain_grad()` 让中间张量 `t` 的梯度留在 `t.grad` 里；
# - `t.register_hook(fn)` 在算出 `t` 的梯度时调用 `fn(grad)`。若 `fn` 返回一个张量，它就取代
#   原来的梯度，所以钩子还能改变继续往回传的内容（梯度裁剪就是这样做的）。
#
# 我们把 w 和 b 重设为第 3 节的值，这样打印出的 ∂L/∂z 和 ∂L/∂a 可以与手算表对照。

# %%
w = tm.tensor(w_value, requires_grad=True, dtype="float64")
b = tm.tensor(b_value, requires_grad=True, dtype="float64")
z = w * x_value + b
a = z.tanh()
z.retain_grad()
received_at_a = []
a.register_hook(lambda grad: received_at_a.append(grad.item()))
loss = (a - y_value) ** 2
loss.backward()
print(f"z.grad (retained)     = {z.grad.item():+.6f}   by hand ∂L/∂z = {grad_z:+.6f}")
print(f"a.grad (not retained) = {a.grad}")
print(f"the hook on a received  {received_at_a[0]:+.6f}   by hand ∂L/∂a = {grad_a:+.6f}")

w = tm.tensor(w_value, requires_grad=True, dtype="float64")
z = w * x_value + b
handle = z.register_hook(lambda grad: grad * 0.5)
((z.tanh() - y_value) ** 2).backward()
print(f"\nwith a hook that halves ∂L/∂z: w.grad = {w.grad.item():+.6f}  (half of {grad_w:+.6f})")
handle.remove()

# %% [markdown]
# ## 9. A function and its derivative, both from autograd
#
# For an elementwise function, each output depends only on its own input, so the
# gradient of f(x).sum() with respect to a vector x is the vector of derivatives f′(x).
# One `backward()` therefore gives f′ on a whole grid. We take f(x) = x·σ(x) (the
# "SiLU"), whose derivative is f′(x) = σ(x) + x·σ(x)·(1 − σ(x)), and compare.
#
# ## 9. 函数及其导数，都由自动求导得到
#
# 对逐元素函数而言，每个输出只依赖于自己对应的输入，所以 f(x).sum() 对向量 x 的梯度就是各点
# 导数 f′(x) 组成的向量。因此一次 `backward()` 就能得到整张网格上的 f′。这里取
# f(x) = x·σ(x)（即 "SiLU"），其导数为 f′(x) = σ(x) + x·σ(x)·(1 − σ(x))，两者相比较。

# %%
grid_x = tm.tensor(np.linspace(-6.0, 6.0, 241), requires_grad=True)
f = grid_x * grid_x.sigmoid()
f.sum().backward()

sigma = 1 / (1 + np.exp(-grid_x.data))
closed_form = sigma + grid_x.data * sigma * (1 - sigma)
print(f"largest |autograd f′ − closed-form f′| on the grid: {np.abs(grid_x.grad - closed_form).max():.2e}")

figure = viz.plot_lines(
    grid_x.data,
    {"f(x) = x·σ(x)": f.data, "f′(x) from backward()": grid_x.grad},
    xlabel="x",
    ylabel="value",
    title="SiLU and its derivative computed by autograd",
)
lesson.save_figure(figure, options.out, "silu_and_derivative.png")

# %% [markdown]
# ## Summary
#
# - A tensor is an array plus the record of how it was made. Python floats become
#   float32, NumPy float64 stays float64, and integers are int64 and cannot require grad.
# - Broadcasting repeats values, so the gradient of a broadcast operand is summed back
#   to its shape.
# - `backward()` is the chain rule applied op by op, from the output back to the leaves.
#   It matches a hand computation to machine precision.
# - A value used twice receives the sum of both paths' gradients. For the same reason,
#   `.grad` accumulates across `backward()` calls, and training loops clear it with
#   `zero_grad()`.
# - `no_grad` turns recording off, for evaluation and for parameter updates.
#   `retain_grad` and hooks expose (or change) the gradients of intermediate tensors.
#
# ## 小结
#
# - 张量是数组加上它的由来记录。Python 浮点数变成 float32，NumPy 的 float64 保持 float64，
#   整数是 int64，不能要求梯度。
# - 广播会复制值，因此被广播的操作数，其梯度要按求和还原回它自己的形状。
# - `backward()` 就是从输出到叶子、逐个运算地套用链式法则，结果与手算在机器精度内一致。
# - 一个值被用两次，就得到两条路径梯度之和。出于同样的原因，`.grad` 会在多次 `backward()`
#   之间累加，所以训练循环要用 `zero_grad()` 清零。
# - `no_grad` 关闭记录，用于评估和参数更新；`retain_grad` 和钩子可以查看（或修改）中间张量的梯度。
#
# ## Exercises
#
# 1. Replace tanh by σ in section 3, L = (σ(w·x + b) − y)², and redo the hand
#    derivation; the local derivative of σ is σ·(1 − σ). Check your numbers against
#    `backward()`.
# 2. Build y = x·x·x·x from a single x and predict `x.grad` at x = 2 before running
#    `backward()`. Then call `backward(retain_graph=True)` twice without `zero_grad` and
#    explain the value you get.
# 3. Register a hook on every intermediate of section 3 (z, a, d) that prints the
#    gradient it receives. Check that the hooks fire in the reverse order of the forward pass.
#
# ## 练习
#
# 1. 把第 3 节中的 tanh 换成 σ，即 L = (σ(w·x + b) − y)²，重新手工推导一遍；σ 的局部导数是
#    σ·(1 − σ)。用 `backward()` 核对你的结果。
# 2. 用同一个 x 构造 y = x·x·x·x，在运行 `backward()` 之前先预测 x = 2 处的 `x.grad`。然后不调用
#    `zero_grad`，连续两次调用 `backward(retain_graph=True)`，解释你得到的数值。
# 3. 在第 3 节的每个中间量（z、a、d）上注册一个钩子，打印它收到的梯度。验证这些钩子的触发顺序
#    恰好与前向计算的顺序相反。

# %%
clock.report()
