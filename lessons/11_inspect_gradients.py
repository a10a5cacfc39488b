# %% [markdown]
# # Lesson 11: inspecting gradients step by step
#
# `loss.backward()` is one line, and when a model does not learn, that line is where
# the cause hides: a gradient that vanishes on its way back, a layer that receives
# nothing, a NaN born in one op and spread to every weight. This lesson opens the
# backward pass up. We walk through the backward pass of a tiny CNN one op at a time
# and print the gradient that arrives at each op and the gradients it sends on. We
# print and draw the recorded graph, and attach hooks to layers. We record how the
# gradient of every layer evolves over a few hundred training steps. Then we turn to
# the LSTM and measure how the gradient that reaches early time steps shrinks as
# sequences grow, and why. We end with anomaly mode, which names the op that
# produced a NaN.
#
# # 第 11 课：逐步检查梯度
#
# `loss.backward()` 只有一行，而模型学不动时，答案往往就藏在这一行里：梯度在回传途中消失了，
# 某一层什么也没收到，或者某个运算产生了 NaN，随后扩散到所有权重。本课把反向传播拆开来看。
# 我们逐个运算地走完一个小型 CNN 的反向传播，打印每个运算收到的梯度以及它继续传出的梯度。
# 我们把记录下来的计算图打印出来并画成图，再给各层挂上钩子（hook）。我们记录训练几百步的过程中
# 每一层梯度的变化。接着转向 LSTM，测量序列变长时传到早期时间步的梯度缩小了多少，并解释原因。
# 最后介绍异常检测模式，它能指出是哪个运算产生了 NaN。

# %%
import sys
from collections import OrderedDict
from pathlib import Path

# tinymbm comes before NumPy: it sets OpenBLAS's thread timeout, which NumPy's
# BLAS reads only when it loads, and the convolution runs on every core only then.
try:
    import tinymbm as tm
except ModuleNotFoundError:
    # A checkout without `pip install -e .`: the package sits one folder above lessons/.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent))
    import tinymbm as tm

# isort: split
import numpy as np
from tqdm import tqdm

import tinymbm.functional as F
from tinymbm import lesson, nn, optim, viz
from tinymbm.data import DataLoader, TensorDataset, load_mnist
from tinymbm.inspect import GradientFlowRecorder, explain, gradient_table, lstm_trace
from tinymbm.train import evaluate

options = lesson.parse_args(
    "Lesson 11: step through backward, draw the graph, hook layers, watch gradient flow, "
    "vanishing LSTM gradients and anomaly mode",
    name="11_inspect_gradients",
    epochs=1,
    limit=9600,
)
clock = lesson.Clock()
np.set_printoptions(precision=4, suppress=True, linewidth=110)

# %% [markdown]
# ## 1. Data and a tiny CNN
#
# We use real MNIST digits (synthetic MNIST-style digits, with one printed line,
# when MNIST is not on disk), scaled to [0, 1] and standardised with the usual
# MNIST mean 0.1307 and standard deviation 0.3081. The model is two blocks of
# convolution → ReLU → max-pooling and one linear layer. Each block computes
# CNN(I; W, b) = max_{k∈K} Σ_i Σ_j W_ijk · I_ij + b_k: the double sum with b_k is the
# convolution, and the max over each 2×2 window K is the pooling. Shapes for one
# image: (1, 28, 28) → conv1 (8, 28, 28) → pool1 (8, 14, 14) → conv2 (16, 14, 14)
# → pool2 (16, 7, 7) → flatten (784) → fc (10 class scores).
#
# ## 1. 数据与一个小型 CNN
#
# 我们使用真实的 MNIST 手写数字（如果磁盘上没有 MNIST，会改用合成的 MNIST 风格数字，并打印一行
# 提示）。像素先缩放到 [0, 1]，再用 MNIST 常用的均值 0.1307 和标准差 0.3081 做标准化。模型由两个
# “卷积 → ReLU → 最大池化”块和一个线性层组成。每个块计算
# CNN(I; W, b) = max_{k∈K} Σ_i Σ_j W_ijk · I_ij + b_k：带 b_k 的双重求和是卷积，对每个 2×2 窗口 K
# 取最大值是池化。单张图像的形状变化为：(1, 28, 28) → conv1 (8, 28, 28) → pool1 (8, 14, 14)
# → conv2 (16, 14, 14) → pool2 (16, 7, 7) → 展平 (784) → fc（10 个类别分数）。

# %%
MEAN, STD = 0.1307, 0.3081


def standardise(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), standardised."""
    return ((images.astype(np.float32) / 255.0 - MEAN) / STD)[:, None]


train_split = load_mnist(options.data_dir, train=True)
test_split = load_mnist(options.data_dir, train=False)
train_images = standardise(train_split.images[: options.limit])
train_labels = train_split.labels[: options.limit].astype(np.int64)
test_images = standardise(test_split.images[:1000])
test_labels = test_split.labels[:1000].astype(np.int64)
print(f"source: {train_split.source}; training on {len(train_images)} digits, testing on {len(test_images)}")


def tiny_cnn() -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, kernel_size=3, padding=1)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(8, 16, kernel_size=3, padding=1)),
        ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(16 * 7 * 7, 10)),
    ]))


model = tiny_cnn()
print(model)
images = tm.tensor(train_images[:2])
labels = train_labels[:2]
print("two digits:", images.shape, "labels", labels.tolist())
lesson.save_figure(viz.plot_images(train_images[:2, 0], labels=labels.tolist(), columns=2,
                                   title="the two digits we follow"), options.out, "digits.png")

# %% [markdown]
# ## 2. The recorded graph as text
#
# Every op that touches a tensor requiring grad records a node (the output's
# `grad_fn`) that remembers its inputs. `explain` prints these nodes as a tree
# from the loss down to the leaves. A leaf is a tensor no op produced: the weights
# (`requires_grad`) and the images (`constant`: no gradient is computed for them).
# Reading the tree from the bottom up is the forward pass, and from the top down
# is the order in which backward visits the ops.
#
# ## 2. 以文本形式查看记录下来的计算图
#
# 每个作用于需要梯度的张量的运算，都会记录一个节点（即输出的 `grad_fn`），节点记住了它的输入。
# `explain` 把这些节点打印成一棵树，从损失一直到叶子。叶子是不由任何运算产生的张量：权重
# （`requires_grad`）和图像（`constant`，不为它计算梯度）。自下而上读这棵树就是前向计算的顺序，
# 自上而下读则是反向传播访问各个运算的顺序。

# %%
loss = F.cross_entropy(model(images), labels)
print(f"loss = {loss.item():.4f} (an untrained model scores about log 10 = {np.log(10):.4f})")
names = {"images": images, **dict(model.named_parameters())}
print(explain(loss, names=names))

# %% [markdown]
# ## 3. Backward, one op at a time
#
# `tm.autograd.backward_steps(loss)` performs the same backward as `loss.backward()`,
# but yields after every op a record of what happened there. Each op receives
# dL/dy, the gradient of the loss with respect to its output y, and applies the
# chain rule, dL/dx = dL/dy · ∂y/∂x, once for each of its inputs x. The table row
# shows the op, its output shape, the norm of the gradient that arrived
# (`|grad in|`), and the norms of the gradients it sent on (`|grads out|`), one per
# input that needs one. For `Linear` these are dL/dx, dL/dW and dL/db, and for
# `Conv2d` they are dL/dW and dL/db (the images need no gradient). At the first
# max-pooling op we stop and print the numbers: each 2×2 window passes its whole
# gradient to the position that won the max, and the other three positions
# receive exactly 0.
#
# ## 3. 逐个运算地执行反向传播
#
# `tm.autograd.backward_steps(loss)` 执行与 `loss.backward()` 完全相同的反向传播，但每处理完一个
# 运算就交出一条记录，说明这一步发生了什么。每个运算收到 dL/dy，即损失对其输出 y 的梯度，然后对
# 每个输入 x 应用一次链式法则 dL/dx = dL/dy · ∂y/∂x。表格的每一行列出运算名、输出形状、收到的
# 梯度的范数（`|grad in|`），以及它传出的各个梯度的范数（`|grads out|`，每个需要梯度的输入一个）。
# 对 `Linear` 来说依次是 dL/dx、dL/dW 和 dL/db；对 `Conv2d` 来说是 dL/dW 和 dL/db（图像不需要梯度）。
# 到第一个最大池化运算时，我们停下来打印具体数值：每个 2×2 窗口把全部梯度交给取得最大值的那个
# 位置，另外三个位置得到的恰好是 0。

# %%
steps = []
paused = False
for step in tm.autograd.backward_steps(loss):
    steps.append(step)
    print(step)
    if step.op == "MaxPool2d" and not paused:
        paused = True
        arriving = step.grad_outputs[0][0, 0]
        leaving = step.grad_inputs[0][0, 0]
        print("\n  -- paused at pool2, digit 0, channel 0 --")
        print("  dL/dy arriving at the pooled map (top-left 2×2 of 7×7):\n", arriving[:2, :2])
        print("  dL/dx sent to the 14×14 map before pooling (top-left 4×4):\n", leaving[:4, :4])
        windows = leaving.reshape(7, 2, 7, 2).transpose(0, 2, 1, 3).reshape(49, 4)
        print(f"  non-zero entries per 2×2 window (max over the 49 windows): {(windows != 0).sum(axis=1).max()}")
        print(f"  window sums equal the arriving gradient: {np.allclose(windows.sum(axis=1), arriving.ravel())}\n")

# The step-by-step pass leaves exactly the gradients that loss.backward() leaves.
reference = tiny_cnn()
reference.load_state_dict(model.state_dict())
F.cross_entropy(reference(images), labels).backward()
same = all(np.array_equal(a.grad, b.grad) for a, b in zip(model.parameters(), reference.parameters()))
print(f"same gradients as loss.backward(): {same}")

# %% [markdown]
# After backward every parameter stores its gradient in `.grad`; `gradient_table`
# lists their norms. The same numbers appear above as the `|grads out|` of the op
# that used each parameter.
#
# 反向传播结束后，每个参数的 `.grad` 中都保存着它的梯度；`gradient_table` 列出它们的范数。
# 这些数值与上表中使用该参数的运算的 `|grads out|` 一致。

# %%
print(gradient_table(model))

# %% [markdown]
# ## 4. The graph as a picture
#
# `viz.draw_graph` draws the same graph: orange boxes are ops, green boxes are
# leaves that require grad, and grey boxes are constants. Given the records of
# `backward_steps`, each op also shows the norm of the gradient that reached it, and
# each leaf shows the norm of its `.grad`.
#
# ## 4. 把计算图画出来
#
# `viz.draw_graph` 画出同一张计算图：橙色框是运算，绿色框是需要梯度的叶子，灰色框是常量。
# 传入 `backward_steps` 的记录后，每个运算框还会显示到达它的梯度的范数，每个叶子框显示其
# `.grad` 的范数。

# %%
graph_figure = viz.draw_graph(loss, steps=steps, names=names)
lesson.save_figure(graph_figure, options.out, "graph.png")

# %% [markdown]
# ## 5. Hooks on layers
#
# A module hook watches a layer without editing its code. `register_forward_hook`
# calls `hook(module, inputs, output)` after the layer's forward, and
# `register_full_backward_hook` calls `hook(module, grad_input, grad_output)` once
# the gradients with respect to the layer's inputs are known. Both return a handle
# whose `remove()` detaches the hook. The backward hooks fire from the output back
# to the input, the reverse of the forward order. conv1's `grad_input` is None
# because the images do not require grad. Pooling passes on the norm of its
# gradient unchanged (each value goes to exactly one position), and ReLU can only
# shrink it (it zeroes the gradient wherever its input was negative). To call the
# hooks, the engine routes each hooked layer's inputs and output through identity
# ops, which `explain` would list while the hooks are attached.
#
# ## 5. 给层挂上钩子
#
# 模块钩子可以在不改动层代码的前提下观察它。`register_forward_hook` 在该层前向计算之后调用
# `hook(module, inputs, output)`；`register_full_backward_hook` 在该层输入的梯度算出之后调用
# `hook(module, grad_input, grad_output)`。两者都返回一个句柄，调用其 `remove()` 即可卸下钩子。
# 反向钩子从输出往输入方向依次触发，与前向顺序相反。conv1 的 `grad_input` 是 None，因为图像不需要
# 梯度。池化把梯度原样传下去，范数不变（每个值恰好交给一个位置）；ReLU 只会让范数变小（输入为负
# 的位置梯度被置零）。为了调用这些钩子，引擎会让挂了钩子的层的输入和输出经过恒等运算；钩子挂着时，
# `explain` 也会列出这些运算。


# %%
def norm_text(grads: tuple) -> str:
    return ", ".join("None" if g is None else f"{np.linalg.norm(g.numpy()):.4g}" for g in grads)


def attach_hooks(label: str, layer: nn.Module) -> list:
    """Register a forward and a backward hook on ``layer`` that print under ``label``."""

    def forward_hook(module: nn.Module, inputs: tuple, output: tm.Tensor) -> None:
        print(f"  forward  {label:<8} output {tuple(output.shape)}")

    def backward_hook(module: nn.Module, grad_input: tuple, grad_output: tuple) -> None:
        print(f"  backward {label:<8} |grad_output| {norm_text(grad_output):<10} |grad_input| {norm_text(grad_input)}")

    return [layer.register_forward_hook(forward_hook), layer.register_full_backward_hook(backward_hook)]


handles = []
for label, layer in model.named_children():
    handles += attach_hooks(label, layer)

model.zero_grad()
F.cross_entropy(model(images), labels).backward()
for handle in handles:
    handle.remove()

# %% [markdown]
# ## 6. Gradient flow over a few hundred training steps
#
# One backward pass is a snapshot. To see whether every layer keeps learning, we
# train the CNN with SGD (momentum 0.9) and, after each `loss.backward()`, let a
# `GradientFlowRecorder` store the mean and maximum |gradient| of each weight. On
# a log scale a layer whose gradient is orders of magnitude below the others
# learns orders of magnitude more slowly. In this short network all three stay
# within about one order of magnitude of each other, and conv1, the layer nearest
# the input, even has the largest mean |gradient|: nothing vanishes at this depth.
# The fc gradient falls as the loss falls, because a digit that is already
# classified well contributes little gradient. The histograms show the gradient
# values of the last step.
#
# ## 6. 几百个训练步中的梯度流动
#
# 一次反向传播只是一张快照。为了看清每一层是否一直在学习，我们用 SGD（动量 0.9）训练这个 CNN，
# 并在每次 `loss.backward()` 之后让 `GradientFlowRecorder` 记录每个权重的平均和最大 |梯度|。
# 在对数坐标下，如果某一层的梯度比其他层小几个数量级，它的学习速度也就慢几个数量级；在这个很浅的
# 网络里，三层的梯度彼此相差不超过大约一个数量级；最靠近输入的 conv1 的平均 |梯度| 甚至最大，
# 在这样的深度下梯度并没有消失。fc 的梯度随损失一起下降，因为已经分类正确的数字贡献的梯度很小。
# 直方图显示的是最后一步的梯度数值分布。

# %%
tm.manual_seed(options.seed)
model = tiny_cnn()
optimizer = optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
train_loader = DataLoader(TensorDataset(train_images, train_labels), batch_size=32, shuffle=True,
                          seed=options.seed)
test_loader = DataLoader(TensorDataset(test_images, test_labels), batch_size=250)
recorder = GradientFlowRecorder(model)
losses = []
for epoch in range(options.epochs):
    for batch_images, batch_labels in tqdm(train_loader, desc=f"epoch {epoch + 1}/{options.epochs}", unit="batch"):
        optimizer.zero_grad()
        batch_loss = F.cross_entropy(model(batch_images), batch_labels)
        batch_loss.backward()
        recorder.record()
        optimizer.step()
        losses.append(batch_loss.item())

test_loss, test_accuracy = evaluate(model, test_loader)
last = min(20, len(losses))
print(f"{len(losses)} steps: first loss {losses[0]:.3f}, mean of the last {last} {np.mean(losses[-last:]):.3f}")
print(f"test loss {test_loss:.4f}, test accuracy {test_accuracy:.3f}")
mean, maximum = recorder.as_arrays()
for index, name in enumerate(recorder.names):
    print(f"  {name:<14} mean |grad| first step {mean[0, index]:.3e}, last step {mean[-1, index]:.3e}")
print(gradient_table(model))
lesson.save_figure(viz.plot_grad_flow(recorder.names, mean, maximum, title="tiny CNN"), options.out,
                   "grad_flow.png")
lesson.save_figure(viz.plot_grad_histograms(model, title="gradients of the last step"), options.out,
                   "grad_histograms.png")

# %% [markdown]
# ## 7. The LSTM: gradients that fade with distance
#
# The LSTM cell updates its state with
#
#     i = σ(W_ii x + b_ii + W_hi h + b_hi),  f = σ(…),  g = tanh(…),  o = σ(…),
#     c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c').
#
# The gradient that reaches step t from a loss on the last step T is a product of
# T − t Jacobians ∂h_{s+1}/∂h_s. On the cell path ∂c'/∂c = f, so each step back
# multiplies the gradient by roughly the forget gate. At initialisation the biases
# are small, so f ≈ σ(0) = 0.5. `lstm_trace` runs an LSTM one step at a time and
# returns |dL/dh_t| for every t (with L = Σ h_T) and the gate activations. We feed
# it MNIST digits read row by row, one row of 28 pixels per time step, with several
# digits in a row to make sequences of 10, 50 and 200 steps. We compute in float64,
# because in float32 the gradient after 200 steps underflows to exactly 0.
#
# ## 7. LSTM：梯度随距离衰减
#
# LSTM 单元按下式更新状态：
#
#     i = σ(W_ii x + b_ii + W_hi h + b_hi),  f = σ(…),  g = tanh(…),  o = σ(…),
#     c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c').
#
# 对最后一步 T 上的损失而言，传到第 t 步的梯度是 T − t 个雅可比矩阵 ∂h_{s+1}/∂h_s 的乘积。在细胞
# 状态这条路径上 ∂c'/∂c = f，所以每往回走一步，梯度大约乘以一次遗忘门。初始化时偏置很小，
# f ≈ σ(0) = 0.5。`lstm_trace` 逐步运行 LSTM，返回每个 t 上的 |dL/dh_t|（取 L = Σ h_T）以及各个门的
# 激活值。我们把 MNIST 数字逐行输入，每个时间步一行（28 个像素），并把几个数字首尾相接，组成
# 长度为 10、50 和 200 的序列。计算使用 float64，因为在 float32 下，200 步之后的梯度会下溢为 0。

# %%
LENGTHS = (10, 50, 200)
HIDDEN = 32
# 8 sequences, each made of 8 digits stacked vertically: 8 × 28 = 224 rows of 28 pixels.
row_sequences = test_images[:64, 0].reshape(8, 8 * 28, 28).astype(np.float64)
tm.manual_seed(options.seed)
lstm = nn.LSTM(28, HIDDEN, batch_first=True).double()


def trace_lengths(lstm: nn.LSTM, label: str) -> dict:
    traces = {}
    print(f"{label}:")
    print(f"  {'T':>4} {'|dL/dh_T|':>10} {'|dL/dh_1|':>10} {'ratio':>10} {'factor per step':>16} {'mean f':>7}")
    for length in LENGTHS:
        trace = lstm_trace(lstm, row_sequences[:, :length])
        norms = trace["grad_norms"]
        factor = (norms[0] / norms[-1]) ** (1 / (length - 1))
        print(f"  {length:>4} {norms[-1]:>10.4g} {norms[0]:>10.3g} {norms[0] / norms[-1]:>10.3g} "
              f"{factor:>16.3f} {trace['gates']['forget'].mean():>7.3f}")
        traces[length] = trace
    return traces


traces = trace_lengths(lstm, "fresh LSTM")
lesson.save_figure(
    viz.plot_grad_norms_over_time({f"T = {length}": traces[length]["grad_norms"] for length in LENGTHS},
                                  title="|dL/dh_t| of a fresh LSTM, L = sum of h_T"),
    options.out, "lstm_grad_vs_t.png",
)
lesson.save_figure(viz.plot_lstm_trace(traces[50], title="fresh LSTM, T = 50 (first sequence)"),
                   options.out, "lstm_gates_T50.png")

float32_trace = lstm_trace(nn.LSTM(28, HIDDEN, batch_first=True), row_sequences[:, :200])
print(f"float32, T = 200: {int((float32_trace['grad_norms'] == 0).sum())} of 200 steps have |dL/dh_t| = 0 exactly")

# %% [markdown]
# The factor per step is the geometric mean of |dL/dh_{t-1}| / |dL/dh_t|. It stays
# near 0.5 to 0.7, so the gradient reaching step 1 falls exponentially with T.
# Gate heat maps show the forget gate hovering around 0.5. A common remedy is a
# larger forget-gate bias, so that f starts close to 1 and the cell path keeps the
# gradient. The gates are stacked i, f, g, o, so the forget gate's bias is entries
# H … 2H − 1 of `bias_ih_l0`. We add 3, which makes f ≈ σ(3) ≈ 0.95, and trace again.
#
# 每步的衰减因子是 |dL/dh_{t-1}| / |dL/dh_t| 的几何平均。它停留在 0.5 到 0.7 附近，因此到达第 1 步的
# 梯度随 T 呈指数下降。门的热力图显示，遗忘门在 0.5 上下徘徊。常用的补救办法是增大遗忘门的偏置，
# 让 f 一开始就接近 1，使细胞状态这条路径能把梯度保留下来。各个门按 i、f、g、o 的顺序堆叠，
# 所以遗忘门的偏置是 `bias_ih_l0` 的第 H 到 2H − 1 个元素。我们给它加 3，使 f ≈ σ(3) ≈ 0.95，
# 再追踪一次。

# %%
with tm.no_grad():
    lstm.bias_ih_l0.data[HIDDEN: 2 * HIDDEN] += 3.0
biased = trace_lengths(lstm, "forget-gate bias + 3")
curves = {f"T = {length}": traces[length]["grad_norms"] for length in LENGTHS}
curves["T = 200, forget bias + 3"] = biased[200]["grad_norms"]
lesson.save_figure(viz.plot_grad_norms_over_time(curves, title="|dL/dh_t|: fresh LSTM vs forget-gate bias + 3"),
                   options.out, "lstm_forget_bias.png")

# %% [markdown]
# ## 8. Anomaly mode: which op made the NaN?
#
# A NaN does not stop the program. The log of a negative number is NaN, every op
# that reads a NaN returns NaN, and the loss comes out NaN with no hint of where the
# NaN first appeared. Inside `with tm.autograd.detect_anomaly():` the engine checks
# the output of every op in forward and every gradient in backward. It raises on
# the first NaN or infinity and names the op and the line of your code that created
# it. We provoke both cases: the log of a negative score in forward, and in backward
# the square root of ReLU features, whose derivative 1 / (2√x) is infinite where
# ReLU output 0.
#
# ## 8. 异常检测模式：是哪个运算产生了 NaN？
#
# NaN 不会让程序停下来。负数的对数是 NaN，任何读到 NaN 的运算都返回 NaN，最后损失变成 NaN，却看不出
# NaN 最早出现在哪里。在 `with tm.autograd.detect_anomaly():` 中，引擎会检查前向计算中每个运算的输出和
# 反向传播中的每个梯度。它在遇到第一个 NaN 或无穷大时抛出异常，并指出是哪个运算、由你代码中的哪一行
# 创建的。我们分别制造这两种情况：前向计算中对负的分数取对数；反向传播中对 ReLU 特征开平方根，
# 由于 ReLU 输出为 0 的位置上导数 1 / (2√x) 为无穷大。

# %%
scores = model(images)
with np.errstate(invalid="ignore", divide="ignore"):
    silent = scores.log().sum()
    print(f"without anomaly mode: loss = {silent.item()} (and no hint where the NaN came from)")

    with tm.autograd.detect_anomaly():
        try:
            model(images).log().sum()
        except RuntimeError as error:
            print(f"forward:  RuntimeError: {error}")

        features = model.relu1(model.conv1(images))
        root_loss = features.sqrt().sum()
        print(f"forward of sqrt(features) is finite: {np.isfinite(root_loss.item())}; "
              f"{int((features.numpy() == 0).sum())} features are exactly 0")
        try:
            root_loss.backward()
        except RuntimeError as error:
            print(f"backward: RuntimeError: {error}")

# %% [markdown]
# ## Summary / 小结
#
# - `backward_steps` performs backward one op at a time. Each record contains the
#   gradient that arrived (dL/dy) and the gradients sent on (dL/dx = dL/dy · ∂y/∂x),
#   and running it to the end leaves the same `.grad` as `loss.backward()`.
# - `explain` and `draw_graph` show the recorded graph. Module hooks show each
#   layer's `grad_output` and `grad_input` without changing its code, firing from
#   the output back.
# - `GradientFlowRecorder` and `plot_grad_flow` follow each layer's gradient over
#   training. A layer whose gradient sits orders of magnitude below the rest learns
#   that much more slowly.
# - In an LSTM the gradient reaching step t shrinks by about the forget gate per step
#   back (∂c'/∂c = f): at f ≈ 0.5 it vanishes after a few dozen steps, and a forget-gate
#   bias near +3 lets it reach hundreds of steps back.
# - `detect_anomaly` turns a silent NaN into an error that names the first op producing
#   it and the line that created that op.
#
# - `backward_steps` 逐个运算地执行反向传播。每条记录包含到达的梯度（dL/dy）和传出的梯度
#   （dL/dx = dL/dy · ∂y/∂x）；把它运行到底，留下的 `.grad` 与 `loss.backward()` 完全相同。
# - `explain` 和 `draw_graph` 展示记录下来的计算图。模块钩子在不改动层代码的前提下展示每一层的
#   `grad_output` 和 `grad_input`，触发顺序从输出往回。
# - `GradientFlowRecorder` 和 `plot_grad_flow` 跟踪训练过程中每一层的梯度。梯度比其他层小几个数量级的
#   层，学习速度也相应慢几个数量级。
# - 在 LSTM 中，每往回一步，传到第 t 步的梯度大约乘以一次遗忘门（∂c'/∂c = f）：f ≈ 0.5 时，几十步之后
#   梯度就消失了；把遗忘门偏置设为 +3 左右，梯度可以传回几百步。
# - `detect_anomaly` 把悄无声息的 NaN 变成一个报错，指出最先产生它的运算以及创建该运算的代码行。
#
# ## Exercises / 练习
#
# 1. Replace ReLU with `nn.Sigmoid()` in both blocks, retrain, and compare the
#    gradient-flow plots. Which layer's gradient drops, and by roughly what factor?
#    (Hint: σ'(x) ≤ 1/4.)
# 2. Trace the LSTM with `loss_fn=lambda h: h[:, 0].sum()` (one hidden unit only), then
#    again with the forget-gate bias lowered by 3 instead of raised. Predict the factor
#    per step before you run it.
# 3. Register a backward hook on `fc` that returns `grad_input` multiplied by 0. What
#    happens to the gradients of conv1 and conv2, and what does the gradient-flow plot
#    show if you train that way?
#
# 1. 把两个块中的 ReLU 换成 `nn.Sigmoid()`，重新训练，比较梯度流动图。哪一层的梯度下降了，大约
#    降低了多少倍？（提示：σ'(x) ≤ 1/4。）
# 2. 用 `loss_fn=lambda h: h[:, 0].sum()`（只取一个隐藏单元）追踪 LSTM；再把遗忘门偏置减小 3（而不是
#    增加 3）后追踪一次。运行之前先预测每步的衰减因子。
# 3. 在 `fc` 上注册一个反向钩子，让它返回乘以 0 的 `grad_input`。conv1 和 conv2 的梯度会怎样？
#    如果这样训练，梯度流动图会显示什么？

# %%
clock.report()
