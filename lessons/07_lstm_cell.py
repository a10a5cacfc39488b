# %% [markdown]
# # Lesson 07: the LSTM cell, by hand and in the engine
#
# The sequence model of tinymbm reads a sequence one step at a time with an LSTM cell.
# At each step the cell takes the input x and its state (h, c), and computes four gates
# and a new state:
#
#     i = σ(W_ii x + b_ii + W_hi h + b_hi)        input gate
#     f = σ(W_if x + b_if + W_hf h + b_hf)        forget gate
#     g = tanh(W_ig x + b_ig + W_hg h + b_hg)     cell candidate
#     o = σ(W_io x + b_io + W_ho h + b_ho)        output gate
#     c' = f ⊙ c + i ⊙ g
#     h' = o ⊙ tanh(c')
#
# σ is the logistic sigmoid and ⊙ the elementwise product. This lesson computes one step
# with plain NumPy and compares it with `F.lstm_cell` and `nn.LSTMCell`. It shows how the
# four gates are stacked in one weight matrix and checks the cell's backward pass with
# gradcheck. Then it trains a small LSTM on MNIST digits read row by row, so that we can
# watch its gates over time and follow the gradient back through the 28 steps. That last
# part explains why the additive update c' = f ⊙ c + … lets an LSTM learn from inputs
# many steps back. The lesson ends by timing the reference kernel against the Numba kernel.
#
# # 第 07 课：LSTM 单元，手算与引擎实现
#
# tinymbm 的序列模型用 LSTM 单元逐步读取序列。每一步，单元接收输入 x 和状态 (h, c)，
# 算出四个门和新的状态：
#
#     i = σ(W_ii x + b_ii + W_hi h + b_hi)        输入门
#     f = σ(W_if x + b_if + W_hf h + b_hf)        遗忘门
#     g = tanh(W_ig x + b_ig + W_hg h + b_hg)     候选记忆
#     o = σ(W_io x + b_io + W_ho h + b_ho)        输出门
#     c' = f ⊙ c + i ⊙ g
#     h' = o ⊙ tanh(c')
#
# σ 是 logistic sigmoid 函数，⊙ 表示逐元素相乘。本课先用纯 NumPy 算出一步，并与 `F.lstm_cell`
# 和 `nn.LSTMCell` 的结果对照；接着说明四个门在同一个权重矩阵里如何堆叠，用 gradcheck 检验单元的
# 反向传播；然后在逐行读取的 MNIST 数字上训练一个小 LSTM，观察它的各个门随时间的变化，并沿着 28 个
# 时间步追踪梯度的回传。这一部分解释了为什么加法形式的更新 c' = f ⊙ c + … 能让 LSTM 学到许多步之前
# 的输入。最后比较参考内核与 Numba 内核的运行时间。

# %%
import sys
import time
from pathlib import Path

import numpy as np

try:
    import tinymbm as tm
except ModuleNotFoundError:
    # A checkout without `pip install -e .`: the package sits one folder above lessons/.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent))
    import tinymbm as tm
import tinymbm.functional as F
import tinymbm.inspect
from tinymbm import lesson, nn, optim, viz
from tinymbm.data import DataLoader, TensorDataset, load_mnist
from tinymbm.kernels import lstm as lstm_kernels
from tinymbm.models import RNN
from tinymbm.train import evaluate, fit

options = lesson.parse_args(
    "Lesson 07: the LSTM cell by hand, its gate layout, gradcheck, gates and gradients over time, kernel timings",
    name="07_lstm_cell",
    epochs=2,
)
clock = lesson.Clock()
rng = np.random.default_rng(options.seed)
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. One step by hand
#
# We pick a batch of N = 3 inputs of size I = 5 and a hidden size H = 4, draw every weight
# at random, and write the six equations exactly as above. Each gate has its own pair of
# matrices: W_ii (H, I) multiplies the input and W_hi (H, H) the previous hidden state.
# Everything is float64, so the engine must agree with NumPy to about 1e-15.
#
# ## 1. 手算一步
#
# 取一批 N = 3 个输入，输入维度 I = 5，隐藏维度 H = 4，所有权重随机生成，然后完全按照上面的
# 六个公式写出计算。每个门各有一对矩阵：W_ii (H, I) 乘以输入，W_hi (H, H) 乘以上一步的隐藏状态。
# 全部使用 float64，所以引擎的结果应与 NumPy 一致到约 1e-15。

# %%
N, I, H = 3, 5, 4
bound = 1 / np.sqrt(H)
x = rng.standard_normal((N, I))
h = rng.standard_normal((N, H))
c = rng.standard_normal((N, H))
W_ii, W_if, W_ig, W_io = (rng.uniform(-bound, bound, (H, I)) for _ in range(4))
W_hi, W_hf, W_hg, W_ho = (rng.uniform(-bound, bound, (H, H)) for _ in range(4))
b_ii, b_if, b_ig, b_io = (rng.uniform(-bound, bound, H) for _ in range(4))
b_hi, b_hf, b_hg, b_ho = (rng.uniform(-bound, bound, H) for _ in range(4))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


i = sigmoid(x @ W_ii.T + b_ii + h @ W_hi.T + b_hi)
f = sigmoid(x @ W_if.T + b_if + h @ W_hf.T + b_hf)
g = np.tanh(x @ W_ig.T + b_ig + h @ W_hg.T + b_hg)
o = sigmoid(x @ W_io.T + b_io + h @ W_ho.T + b_ho)
c_next = f * c + i * g
h_next = o * np.tanh(c_next)

print("i =\n", i)
print("f =\n", f)
print("c' = f ⊙ c + i ⊙ g =\n", c_next)
print("h' = o ⊙ tanh(c') =\n", h_next)

# %% [markdown]
# ## 2. The same step in the engine, and the gate layout
#
# The engine, like PyTorch, keeps the four input matrices in one `weight_ih` of shape
# (4H, I), stacked by rows in the order i, f, g, o. The four hidden matrices form
# `weight_hh` (4H, H), and the biases form `bias_ih` and `bias_hh` (4H,). One matrix
# product then gives all four pre-activations at once, which is faster than four small
# products. Rows 0:H belong to the input gate, H:2H to the forget gate, 2H:3H to the
# cell candidate and 3H:4H to the output gate. Below we stack our matrices that way,
# call `F.lstm_cell`, then load the same arrays into an `nn.LSTMCell` through its
# `state_dict` names.
#
# ## 2. 引擎中的同一步，以及门的排布
#
# 与 PyTorch 一样，引擎把四个输入矩阵放在同一个形状为 (4H, I) 的 `weight_ih` 里，按行依次堆叠
# i、f、g、o；四个隐藏矩阵组成 `weight_hh` (4H, H)，偏置组成 `bias_ih` 和 `bias_hh` (4H,)。
# 这样一次矩阵乘法就能得到四个门的全部预激活值，比做四次小的乘法更快。第 0:H 行属于输入门，
# H:2H 行属于遗忘门，2H:3H 行属于候选记忆，3H:4H 行属于输出门。下面按这个顺序堆叠我们的矩阵，
# 调用 `F.lstm_cell`，再通过 `state_dict` 中的名字把同样的数组载入一个 `nn.LSTMCell`。

# %%
weight_ih = np.concatenate([W_ii, W_if, W_ig, W_io])
weight_hh = np.concatenate([W_hi, W_hf, W_hg, W_ho])
bias_ih = np.concatenate([b_ii, b_if, b_ig, b_io])
bias_hh = np.concatenate([b_hi, b_hf, b_hg, b_ho])
print("weight_ih", weight_ih.shape, " weight_hh", weight_hh.shape, " bias_ih", bias_ih.shape)

engine_h, engine_c = F.lstm_cell(
    tm.tensor(x), (tm.tensor(h), tm.tensor(c)),
    tm.tensor(weight_ih), tm.tensor(weight_hh), tm.tensor(bias_ih), tm.tensor(bias_hh),
)
print(f"F.lstm_cell   max |h' - NumPy| = {np.abs(engine_h.numpy() - h_next).max():.1e}, "
      f"max |c' - NumPy| = {np.abs(engine_c.numpy() - c_next).max():.1e}")

cell = nn.LSTMCell(I, H).double()
print(cell)
for name, parameter in cell.named_parameters():
    print(f"  {name:<10} {parameter.shape}")
cell.load_state_dict({"weight_ih": weight_ih, "weight_hh": weight_hh, "bias_ih": bias_ih, "bias_hh": bias_hh})
module_h, module_c = cell(tm.tensor(x), (tm.tensor(h), tm.tensor(c)))
print(f"nn.LSTMCell   max |h' - NumPy| = {np.abs(module_h.numpy() - h_next).max():.1e}, "
      f"max |c' - NumPy| = {np.abs(module_c.numpy() - c_next).max():.1e}")

# %% [markdown]
# To see that the rows really mean what the layout states, we override the biases of two
# gates. A bias of +20 on rows H:2H and −20 on rows 0:H saturates the forget gate at 1
# and the input gate at 0, so the cell must keep its memory: c' = 1 ⊙ c + 0 ⊙ g = c.
# Swapping the signs makes the cell forget: c' = 0 ⊙ c + 1 ⊙ g = g. The other weights
# stay random, and the two results hold anyway, because σ(±20) is 1 or 0 to about 2e-9.
#
# 为了确认各行的含义确实与排布一致，我们改写两个门的偏置。在 H:2H 行加 +20、在 0:H 行加 −20，
# 遗忘门饱和为 1，输入门饱和为 0，于是单元必须保留记忆：c' = 1 ⊙ c + 0 ⊙ g = c。把正负号对调，
# 单元就会遗忘：c' = 0 ⊙ c + 1 ⊙ g = g。其余权重仍是随机的，但结论照样成立，因为 σ(±20) 与 1 或 0
# 只差约 2e-9。

# %%
def cell_with_gate_biases(input_gate_bias: float, forget_gate_bias: float) -> np.ndarray:
    """Return c' of our cell after adding the given biases to the rows of the input and forget gates."""
    shifted = bias_ih.copy()
    shifted[0:H] += input_gate_bias
    shifted[H:2 * H] += forget_gate_bias
    _, cell_state = F.lstm_cell(
        tm.tensor(x), (tm.tensor(h), tm.tensor(c)),
        tm.tensor(weight_ih), tm.tensor(weight_hh), tm.tensor(shifted), tm.tensor(bias_hh),
    )
    return cell_state.numpy()


remembered = cell_with_gate_biases(input_gate_bias=-20.0, forget_gate_bias=+20.0)
forgotten = cell_with_gate_biases(input_gate_bias=+20.0, forget_gate_bias=-20.0)
print(f"forget gate open, input gate shut:  max |c' - c| = {np.abs(remembered - c).max():.1e}")
print(f"forget gate shut, input gate open:  max |c' - g| = {np.abs(forgotten - g).max():.1e}")

# %% [markdown]
# ## 3. Gradcheck of the cell
#
# The backward pass of `F.lstm_cell` is written by hand: the kernel turns ∂L/∂h' and ∂L/∂c'
# into the gradient of the four pre-activations, and three matrix products turn those into
# the gradients of x, h and the weights. `tm.autograd.gradcheck` compares every one of them
# with central differences (L(w + ε) − L(w − ε)) / 2ε in float64. The output is h' and c'
# side by side, weighted by a random upstream gradient, so both outputs are checked. We run
# the check with each of the two kernels behind the op: the NumPy reference and Numba.
#
# ## 3. 单元的梯度检验
#
# `F.lstm_cell` 的反向传播是手写的：内核把 ∂L/∂h' 和 ∂L/∂c' 变成四个门预激活值的梯度，再用三次矩阵
# 乘法得到 x、h 和各权重的梯度。`tm.autograd.gradcheck` 在 float64 下用中心差分
# (L(w + ε) − L(w − ε)) / 2ε 逐一核对这些梯度。输出是并排拼接的 h' 和 c'，再乘以一个随机的上游梯度，
# 因此两个输出都会被检验。算子背后有两个内核：NumPy 参考实现和 Numba 实现，我们对两者各检验一次。

# %%
def cell_outputs(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
    h_next, c_next = F.lstm_cell(x, (h, c), weight_ih, weight_hh, bias_ih, bias_hh)
    return tm.cat([h_next, c_next], dim=1)


check_inputs = [
    tm.tensor(rng.standard_normal(shape), requires_grad=True)
    for shape in ((N, I), (N, H), (N, H), (4 * H, I), (4 * H, H), (4 * H,), (4 * H,))
]
for backend in ("reference", "numba"):
    lstm_kernels.backend = backend
    passed = tm.autograd.gradcheck(cell_outputs, check_inputs)
    print(f"gradcheck with the {backend:<9} kernel: {'passed' if passed else 'failed'} "
          f"(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh)")
lstm_kernels.backend = "numba"

# %% [markdown]
# ## 4. A small LSTM that reads digits row by row
#
# Gates of a cell with random weights mean nothing, so we first train a small reader. An
# MNIST image of 28 × 28 pixels becomes a sequence of T = 28 steps: at step t the cell reads
# row t, a vector of 28 pixel values. A single LSTM layer with H = 32 reads all rows, and a
# linear layer scores the ten classes from the last hidden state. This is
# `tinymbm.models.RNN` with `readout="last"`; lesson 08 trains the full-size model.
#
# ## 4. 逐行读取数字的小型 LSTM
#
# 随机权重的单元，其门值没有任何意义，所以先训练一个小的读取器。一张 28 × 28 的 MNIST 图像变成
# T = 28 步的序列：第 t 步读入第 t 行，即 28 个像素值组成的向量。一个 H = 32 的单层 LSTM 依次读完
# 所有行，再由一个线性层根据最后的隐藏状态给十个类别打分。这就是 `readout="last"` 的
# `tinymbm.models.RNN`；第 08 课会训练完整规模的模型。

# %%
train_split = load_mnist(options.data_dir, train=True, synthetic_size=options.limit)
test_split = load_mnist(options.data_dir, train=False)
limit = options.limit if options.limit is not None else len(train_split.labels)
train_rows = train_split.images[:limit].astype(np.float32) / 255
test_rows = test_split.images.astype(np.float32) / 255
print(f"data: {train_split.source}, {len(train_rows)} training and {len(test_rows)} test sequences "
      f"of T = {train_rows.shape[1]} rows × {train_rows.shape[2]} pixels")

reader = RNN(input_size=28, hidden_size=32, num_layers=1, num_classes=10, readout="last")
print(reader)
train_loader = DataLoader(TensorDataset(train_rows, train_split.labels[:limit]), batch_size=64, shuffle=True,
                          seed=options.seed)
test_loader = DataLoader(TensorDataset(test_rows, test_split.labels), batch_size=1000)
fit(reader, optim.Adam(reader.parameters(), lr=3e-3), train_loader, epochs=options.epochs)
test_loss, test_accuracy = evaluate(reader, test_loader)
print(f"after {options.epochs} epoch(s): test loss {test_loss:.4f}, test accuracy {test_accuracy:.4f}")

# %% [markdown]
# ## 5. The layer is the cell, applied 28 times
#
# `nn.LSTM` stores layer 0 under the names `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0` and
# `bias_hh_l0`, with the same shapes and gate order as `nn.LSTMCell`. So the trained layer's
# arrays load into a cell, and running the cell over the 28 rows by hand, carrying (h, c)
# from step to step, must give the layer's output at every step.
#
# ## 5. LSTM 层就是把单元重复应用 28 次
#
# `nn.LSTM` 把第 0 层的参数存为 `weight_ih_l0`、`weight_hh_l0`、`bias_ih_l0` 和 `bias_hh_l0`，
# 形状和门的顺序都与 `nn.LSTMCell` 相同。因此训练好的层的数组可以直接载入一个单元；手工把单元
# 沿 28 行逐步运行、把 (h, c) 一步步传下去，每一步的结果都必须与层的输出一致。

# %%
digit_index = 0
digit = test_rows[digit_index]
digit_label = int(test_split.labels[digit_index])

layer_state = reader.lstm.state_dict()
reader_cell = nn.LSTMCell(28, 32)
reader_cell.load_state_dict({name: layer_state[f"{name}_l0"]
                             for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})

with tm.no_grad():
    layer_output, _ = reader.lstm(tm.tensor(digit[None]))
    state = None
    largest_difference = 0.0
    for t in range(digit.shape[0]):
        cell_h, cell_c = reader_cell(tm.tensor(digit[t:t + 1]), state)
        state = (cell_h, cell_c)
        largest_difference = max(largest_difference,
                                 float(np.abs(cell_h.numpy() - layer_output.numpy()[:, t]).max()))
print(f"digit {digit_label}: max |h_t(cell loop) - h_t(nn.LSTM)| over all 28 steps = {largest_difference:.1e}")

# %% [markdown]
# ## 6. The gates over time, on one digit
#
# `tinymbm.inspect.lstm_trace` runs layer 0 one step at a time and records the four gates
# at every step. The heat maps show one column per row of the digit (the time step t) and
# one line per hidden unit. The last panel is ‖∂L/∂h_t‖ for the loss on this digit.
#
# Over the blank rows at the top the input is zero, so every unit's gates settle to fixed
# values. At the first row with ink the picture changes at once. The units split: some
# input gates open and others shut, and the candidate g swings towards ±1 as the stroke
# is read. A few units push their forget gate close to 1 and keep it there to the last row.
# Those units keep what they stored, which is how the reader carries the top of the digit
# to the end. The table puts the ink of each row next to the mean of each gate over the
# units, and the line after it lists the units whose forget gate stays above 0.9 over the
# last 10 rows. In quick mode the reader has barely trained and its gates stay near 0.5.
#
# ## 6. 一个数字上各个门随时间的变化
#
# `tinymbm.inspect.lstm_trace` 逐步运行第 0 层，并记录每一步四个门的值。热力图中每一列对应数字的
# 一行（时间步 t），每一行对应一个隐藏单元。最后一幅图是这张数字的损失对应的 ‖∂L/∂h_t‖。
#
# 图像顶部的空白行输入为零，所以每个单元的门值都稳定在固定的数值上。到了第一行有墨迹的地方，
# 情形立刻改变：各单元开始分化，有的输入门打开，有的关闭，候选记忆 g 随着笔画的读入摆向 ±1。
# 少数几个单元把遗忘门推到接近 1，并一直保持到最后一行。这些单元保留了它们存下的内容，读取器正是
# 靠它们把数字顶部的信息带到末尾。下面的表格把每一行的墨迹量与各个门在所有单元上的平均值并排列出，
# 表格后的一行列出在最后 10 行中遗忘门始终高于 0.9 的单元。快速模式下读取器几乎没有训练，
# 它的门值都停留在 0.5 附近。

# %%
def loss_of_last_state(labels: np.ndarray):
    """Return a function mapping h_T (N, H) to the cross-entropy of the reader's scores for ``labels``."""
    def loss(last_hidden: tm.Tensor) -> tm.Tensor:
        return F.cross_entropy(reader.fc(last_hidden), tm.tensor(labels))
    return loss


trace = tinymbm.inspect.lstm_trace(reader.lstm, digit, loss_fn=loss_of_last_state(np.array([digit_label])))
lesson.save_figure(viz.plot_images(digit[None], labels=[f"label {digit_label}"], columns=1), options.out,
                   "digit.png")
lesson.save_figure(viz.plot_lstm_trace(trace, title=f"gates of the trained reader on a {digit_label}, row by row"),
                   options.out, "gates_over_time.png")

print(" t   ink   mean i  mean f  mean g  mean o")
for t in range(digit.shape[0]):
    means = [trace["gates"][name][t].mean() for name in ("input", "forget", "cell", "output")]
    print(f"{t:2d}  {digit[t].sum():5.1f}  " + "  ".join(f"{value:6.3f}" for value in means))

memory_units = np.flatnonzero(trace["gates"]["forget"][-10:].min(axis=0) > 0.9)
print(f"units whose forget gate stays above 0.9 over the last 10 rows: {memory_units.tolist()}")

# %% [markdown]
# ## 7. The gradient through time
#
# Training needs to know how much the loss at the last step T depends on the state at an
# earlier step t. The chain rule gives it as a product of one Jacobian per step between t and T.
# In a plain tanh RNN, h' = tanh(W_ih x + b_ih + W_hh h + b_hh), each factor is
# ∂h'/∂h = diag(1 − h'²) W_hh. Over k steps the product of k such factors shrinks (or
# grows) roughly geometrically, so the loss soon stops telling the early steps anything.
#
# The LSTM's cell state has a second path. Because c' = f ⊙ c + i ⊙ g adds to c instead
# of squashing it, the direct part of ∂c'/∂c is diag(f), with no weight matrix and no
# tanh derivative in it. A unit that keeps f near 1 passes its gradient back almost
# unchanged, step after step. The gates decide, per unit and per step, how much of that
# path stays open.
#
# Below we measure ‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖ for the LSTM) for a loss at the last step,
# summed over 32 test digits, and divide each curve by its value at t = T. The curves are
# the trained reader, the same architecture untrained, and an untrained tanh RNN of the
# same size. A fifth curve is the mean over units of the product of the trained reader's
# forget gates from t + 1 to T: the gain of the additive path alone.
#
# ## 7. 沿时间回传的梯度
#
# 训练时需要知道：最后一步 T 的损失在多大程度上依赖更早的第 t 步的状态。链式法则给出的答案是
# t 到 T 之间每一步一个雅可比矩阵的连乘。在普通的 tanh RNN 中，h' = tanh(W_ih x + b_ih + W_hh h + b_hh)，
# 每个因子是 ∂h'/∂h = diag(1 − h'²) W_hh。k 个这样的因子相乘，大致按几何级数缩小（或放大），
# 于是损失很快就无法再给早期的时间步提供任何信息。
#
# LSTM 的记忆状态还有第二条通路。由于 c' = f ⊙ c + i ⊙ g 是在 c 上做加法而不是把它再压缩一遍，
# ∂c'/∂c 的直接部分就是 diag(f)，其中既没有权重矩阵，也没有 tanh 的导数。某个单元只要让 f 保持在
# 1 附近，它的梯度就能几乎不变地一步步往回传。各个门按单元、按时间步决定这条通路保留多少。
#
# 下面对 32 张测试数字在最后一步计算损失，测量 ‖∂L/∂h_t‖（LSTM 另测 ‖∂L/∂c_t‖），并把每条曲线
# 除以它在 t = T 处的值。几条曲线分别是：训练好的读取器、同样结构但未训练的模型、同样大小但未训练的
# tanh RNN。第五条曲线是训练好的读取器从 t + 1 到 T 的遗忘门连乘积在各单元上的平均值，
# 也就是只走加法通路时的增益。

# %%
def gates_by_hand(x_t: np.ndarray, h: np.ndarray, weights: list[np.ndarray]) -> list[np.ndarray]:
    """Return the activated gates [i, f, g, o], each (N, H), of one step, from the stacked weights."""
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    pre_activations = x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh
    pre_i, pre_f, pre_g, pre_o = np.split(pre_activations, 4, axis=1)
    return [sigmoid(pre_i), sigmoid(pre_f), np.tanh(pre_g), sigmoid(pre_o)]


def lstm_gradients_through_time(lstm: nn.LSTM, sequences: np.ndarray,
                                loss_fn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run layer 0 of ``lstm`` step by step; return ‖∂L/∂h_t‖ and ‖∂L/∂c_t‖ (T,) and the forget gates (T, N, H)."""
    weights = [getattr(lstm, f"{name}_l0") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    weight_arrays = [weight.numpy() for weight in weights]

    state = None
    hidden_states, cell_states, forget_gates, output_gates = [], [], [], []
    for t in range(sequences.shape[1]):
        h = np.zeros((len(sequences), lstm.hidden_size), dtype=np.float32) if state is None else state[0].numpy()
        _, f, _, o = gates_by_hand(sequences[:, t], h, weight_arrays)
        forget_gates.append(f)
        output_gates.append(o)

        state = F.lstm_cell(tm.tensor(sequences[:, t]), state, *weights)
        for tensor in state:
            tensor.retain_grad()
        hidden_states.append(state[0])
        cell_states.append(state[1])

    loss_fn(state[0]).backward()

    # c_t.grad holds only what step t + 1 sends back along the cell path. The op computes
    # h_t = o_t ⊙ tanh(c_t) internally, so the path through h_t is added here, as the
    # kernel's backward does: ∂L/∂c_t = c_t.grad + h_t.grad ⊙ o_t ⊙ (1 - tanh²(c_t)).
    cell_gradients = [
        c_t.grad + h_t.grad * o_t * (1 - np.tanh(c_t.numpy()) ** 2)
        for h_t, c_t, o_t in zip(hidden_states, cell_states, output_gates)
    ]
    return (np.array([np.linalg.norm(tensor.grad) for tensor in hidden_states]),
            np.array([np.linalg.norm(gradient) for gradient in cell_gradients]),
            np.stack(forget_gates))


def tanh_rnn_gradients_through_time(sequences: np.ndarray, hidden_size: int, readout: nn.Linear,
                                    labels: np.ndarray) -> np.ndarray:
    """Run an untrained tanh RNN (PyTorch's nn.RNN initialization); return ‖∂L/∂h_t‖ for t = 1..T."""
    scale = 1 / np.sqrt(hidden_size)
    weight_ih = tm.tensor(rng.uniform(-scale, scale, (hidden_size, sequences.shape[2])).astype(np.float32),
                          requires_grad=True)
    weight_hh = tm.tensor(rng.uniform(-scale, scale, (hidden_size, hidden_size)).astype(np.float32),
                          requires_grad=True)
    bias = tm.tensor(rng.uniform(-scale, scale, hidden_size).astype(np.float32), requires_grad=True)

    h = tm.zeros(sequences.shape[0], hidden_size)
    hidden_states = []
    for t in range(sequences.shape[1]):
        h = F.tanh(F.linear(tm.tensor(sequences[:, t]), weight_ih, bias) + F.linear(h, weight_hh))
        h.retain_grad()
        hidden_states.append(h)

    F.cross_entropy(readout(h), tm.tensor(labels)).backward()
    return np.array([np.linalg.norm(tensor.grad) for tensor in hidden_states])


batch_sequences = test_rows[:32]
batch_labels = test_split.labels[:32]
steps = np.arange(1, batch_sequences.shape[1] + 1)

trained_h, trained_c, forget_gates = lstm_gradients_through_time(reader.lstm, batch_sequences,
                                                                loss_of_last_state(batch_labels))
reader.zero_grad()

untrained = RNN(input_size=28, hidden_size=32, num_layers=1, num_classes=10)
untrained_h, _, _ = lstm_gradients_through_time(
    untrained.lstm, batch_sequences,
    lambda last_hidden: F.cross_entropy(untrained.fc(last_hidden), tm.tensor(batch_labels)),
)
tanh_h = tanh_rnn_gradients_through_time(batch_sequences, 32, untrained.fc, batch_labels)

# The direct path from c_t to c_T multiplies f_(t+1) ⊙ … ⊙ f_T; at t = T the product is empty (1).
forget_products = np.array([np.prod(forget_gates[t + 1:], axis=0).mean() for t in range(len(steps))])

curves = {
    "trained LSTM ‖∂L/∂h_t‖": trained_h / trained_h[-1],
    "trained LSTM ‖∂L/∂c_t‖": trained_c / trained_c[-1],
    "untrained LSTM ‖∂L/∂h_t‖": untrained_h / untrained_h[-1],
    "untrained tanh RNN ‖∂L/∂h_t‖": tanh_h / tanh_h[-1],
    "trained LSTM: mean of ∏ f over (t, T]": forget_products,
}
lesson.save_figure(viz.plot_lines(steps, curves, xlabel="time step t", ylabel="relative to t = T",
                                  title="gradient of a loss at the last step, back through time", log_y=True),
                   options.out, "gradient_through_time.png")
for label, values in curves.items():
    print(f"{label:<40} t = 1: {values[0]:.2e}   t = 14: {values[13]:.2e}")

# %% [markdown]
# Read the printed ratios at t = 1 against the plot. Both untrained models lose the
# gradient: over the 28 steps it falls by five to six orders of magnitude. The untrained
# LSTM falls even faster than the tanh RNN, because with random weights every gate sits
# near σ(0) = 0.5, so the cell path halves the gradient at each step and the output gate
# halves what reaches h. That is why some libraries start the forget-gate bias at 1
# (Keras' LSTM does, with `unit_forget_bias=True`). PyTorch and tinymbm draw that bias
# like every other one.
#
# Training changes the picture. In the default run (2 epochs, seed 0) the trained
# reader's ‖∂L/∂h_t‖ and ‖∂L/∂c_t‖ stay between about 0.2 and 2 times their values at
# t = T over all 28 steps. The ∏ f curve shows the part that the additive path carries
# alone. Along the inked rows it shrinks slowly, because the memory units keep f near 1.
# Over the blank top rows every f is about 0.6, and there the gradient also travels
# through the other paths (the recurrent weights and the gates), which training shaped
# as well. The additive path matters because its factor per step is f itself, a number
# the network sets directly through the forget gate's weights and bias, with no weight
# matrix and no tanh derivative multiplied in. A tanh RNN has no such path. In quick mode
# the reader has barely trained, so its curves look like the untrained ones.
#
# 请对照图形阅读打印出的 t = 1 处的比值。两个未训练的模型都丢失了梯度：28 步之内下降了五到六个
# 数量级。未训练的 LSTM 甚至比 tanh RNN 衰减得更快，因为权重随机时每个门都在 σ(0) = 0.5 附近，
# 记忆通路每一步把梯度减半，输出门又把传到 h 的梯度减半。这正是有些框架把遗忘门偏置初始化为 1 的
# 原因（Keras 的 LSTM 通过 `unit_forget_bias=True` 这样做）。PyTorch 和 tinymbm 则与其他偏置一样
# 随机初始化这个偏置。
#
# 训练改变了这一切。在默认运行（训练 2 轮，随机种子 0）中，训练后读取器的 ‖∂L/∂h_t‖ 和 ‖∂L/∂c_t‖
# 在全部 28 步内都保持在 t = T 处数值的约 0.2 到 2 倍之间。∏ f 曲线表示仅由加法通路承载的那一部分：在有墨迹的
# 行上它缩小得很慢，因为记忆单元让 f 保持在 1 附近。在顶部的空白行上，每个 f 都约为 0.6，这时梯度
# 还经由其他通路（循环权重和各个门）回传，而这些通路同样是训练塑造出来的。加法通路之所以重要，是因为
# 它每一步的因子就是 f 本身：网络通过遗忘门的权重和偏置直接设定这个数，其中既不乘权重矩阵，也不乘
# tanh 的导数。tanh RNN 没有这样的通路。快速模式下读取器几乎没有训练，所以它的曲线与未训练的模型相似。

# %% [markdown]
# ## 8. Reference kernel against Numba kernel
#
# The elementwise part of a step (four activations, the cell update, and their backward)
# runs in `tinymbm.kernels.lstm`. The reference version writes the equations with NumPy
# array operations, each of which walks over the whole array and writes a temporary array.
# The Numba version computes each element with scalar arithmetic in compiled loops,
# without those temporaries. We time both on a
# batch of N = 128 with H = 128, first the kernels alone, then a whole `F.lstm_layer`
# forward and backward over T = 28 steps, where the matrix products (the same BLAS calls
# for both backends) take their share of the time. We also check that the two backends
# give the same numbers.
#
# ## 8. 参考内核与 Numba 内核
#
# 每一步中逐元素的部分（四个激活函数、记忆更新及其反向传播）在 `tinymbm.kernels.lstm` 中运行。
# 参考实现用 NumPy 数组运算写出公式，每个运算都要遍历整个数组并写出一个临时数组；Numba 实现则在
# 编译后的循环里用标量运算逐个元素地计算，不产生这些临时数组。我们在 N = 128、H = 128 的批量上为两者计时：先只测内核，再测一个完整的
# `F.lstm_layer` 在 T = 28 步上的前向和反向。后者中矩阵乘法（两种后端调用的是同样的 BLAS）
# 也要占用一部分时间。我们同时检查两种后端给出的数值是否相同。

# %%
def best_time(function, repeats: int) -> float:
    """Return the shortest of ``repeats`` wall-clock timings of ``function()``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


repeats = 5 if options.limit is not None else 30
gates = rng.standard_normal((128, 4 * 128)).astype(np.float32)
state_c = rng.standard_normal((128, 128)).astype(np.float32)
grad_h = rng.standard_normal((128, 128)).astype(np.float32)
grad_c = rng.standard_normal((128, 128)).astype(np.float32)

timings = {}
results = {}
for backend in ("reference", "numba"):
    kernels = lstm_kernels.select(backend)
    forward_out = kernels.forward(gates, state_c)
    backward_out = kernels.backward(grad_h, grad_c, state_c, forward_out[2], forward_out[3])
    results[backend] = forward_out[:2] + backward_out
    timings[f"{backend} kernels"] = best_time(
        lambda kernels=kernels: kernels.backward(grad_h, grad_c, state_c, *kernels.forward(gates, state_c)[2:]),
        repeats * 10,
    )

kernel_difference = max(float(np.abs(a - b).max()) for a, b in zip(results["reference"], results["numba"]))
print(f"kernels: max |reference - numba| over h', c', d_gates, dc = {kernel_difference:.1e} (float32)")

sequence = tm.tensor(rng.standard_normal((28, 128, 28)).astype(np.float32))
layer = nn.LSTM(28, 128)
layer_weights = [getattr(layer, f"{name}_l0") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def layer_forward_backward() -> np.ndarray:
    output, _ = F.lstm_layer(sequence, None, *layer_weights)
    output.sum().backward()
    return output.numpy()


layer_outputs = {}
for backend in ("reference", "numba"):
    lstm_kernels.backend = backend
    layer_outputs[backend] = layer_forward_backward()
    timings[f"{backend} layer"] = best_time(layer_forward_backward, repeats)
lstm_kernels.backend = "numba"
layer.zero_grad()

print(f"layer:   max |reference - numba| over the outputs = "
      f"{np.abs(layer_outputs['reference'] - layer_outputs['numba']).max():.1e}")
for name, seconds in timings.items():
    print(f"{name:<18} {seconds * 1e3:8.2f} ms")
print(f"speed-up of Numba: kernels {timings['reference kernels'] / timings['numba kernels']:.1f}×, "
      f"whole layer {timings['reference layer'] / timings['numba layer']:.1f}×")
lesson.save_figure(viz.plot_bars({name: seconds * 1e3 for name, seconds in timings.items()}, ylabel="ms",
                                 title="one step's kernels (N=128, H=128) and one layer (T=28), forward + backward"),
                   options.out, "kernel_timings.png")

# %% [markdown]
# The kernels alone gain the most. In the whole layer the matrix products x @ W_ihᵀ and
# h @ W_hhᵀ, and their transposes in backward, cost the same for both backends. So the
# overall speed-up is smaller, because only the part of the time a kernel takes can shrink. The
# ratios vary from run to run, and on a busy machine they can drop close to 1, so read
# them from a run that had the cores to itself.
#
# 单看内核，加速最为明显。在整层中，矩阵乘法 x @ W_ihᵀ、h @ W_hhᵀ 以及反向传播中对应的转置乘法，
# 两种后端的开销完全相同，所以整体加速较小：能被缩短的只有内核所占的那部分时间。这些比值每次运行
# 都会有所不同，机器繁忙时甚至可能接近 1，所以要看独占 CPU 核心时的运行结果。

# %% [markdown]
# ## Summary
#
# - One LSTM step is six equations: i, f, o = σ(…), g = tanh(…), c' = f ⊙ c + i ⊙ g,
#   h' = o ⊙ tanh(c'). NumPy by hand, `F.lstm_cell` and `nn.LSTMCell` agree to float64
#   rounding.
# - The four gates share one `weight_ih` (4H, I), one `weight_hh` (4H, H) and two biases
#   (4H,), stacked i, f, g, o as in PyTorch, so one matrix product computes all gates.
#   Saturating the forget and input gates through their bias rows makes the cell keep c or
#   replace it with g.
# - `nn.LSTM` stores layer 0's arrays under the same names with the suffix `_l0`, and the
#   layer is the cell applied once per time step.
# - gradcheck passes for the cell with both the reference and the Numba kernel.
# - Through a tanh RNN the gradient of a late loss is multiplied by diag(1 − h'²) W_hh at
#   each step. The LSTM's additive path multiplies it by f instead, a factor the network
#   sets through its forget gate. Untrained, both models lose the gradient within 28 steps.
#   The trained reader keeps f near 1 in its memory units, and a loss at the last row
#   still reaches the first rows.
#
# ## 小结
#
# - LSTM 的一步就是六个公式：i、f、o = σ(…)，g = tanh(…)，c' = f ⊙ c + i ⊙ g，h' = o ⊙ tanh(c')。
#   NumPy 手算、`F.lstm_cell` 与 `nn.LSTMCell` 的结果一致到 float64 的舍入误差。
# - 四个门共用一个 `weight_ih` (4H, I)、一个 `weight_hh` (4H, H) 和两个偏置 (4H,)，按 i、f、g、o
#   的顺序堆叠，与 PyTorch 相同，所以一次矩阵乘法就能算出所有门。通过偏置行让遗忘门和输入门饱和，
#   单元要么原样保留 c，要么用 g 替换它。
# - `nn.LSTM` 的第 0 层以后缀 `_l0` 存放同样的数组；LSTM 层就是每个时间步应用一次单元。
# - 无论用参考内核还是 Numba 内核，单元都能通过 gradcheck。
# - 在 tanh RNN 中，后期损失的梯度每往回一步都要乘上 diag(1 − h'²) W_hh。LSTM 的加法通路改为乘以 f，
#   这个因子由网络通过遗忘门自行设定。未训练时，两种模型的梯度在 28 步之内都会消失。训练好的读取器
#   在记忆单元中让 f 接近 1，最后一行的损失仍能传回最前面的几行。
#
# ## Exercises
#
# 1. Initialize the forget-gate bias of the untrained LSTM to 1 (add 1 to rows H:2H of
#    `bias_ih_l0`) and redraw the gradient curves of section 7. How much slower does the
#    untrained curve decay, and why does the forget gate's factor per step change from
#    about 0.5 to about σ(1) ≈ 0.73?
# 2. Write a cell with a coupled input and forget gate, i = 1 − f (drop the input gate's
#    rows). Compute one step by hand and gradcheck it, built from tensor ops.
# 3. Time the two kernel backends for H = 16, 128 and 1024 with N = 128. Where does the
#    Numba kernel gain most, and what limits the gain for very large arrays?
#
# ## 练习
#
# 1. 把未训练 LSTM 的遗忘门偏置初始化为 1（给 `bias_ih_l0` 的第 H:2H 行加 1），重画第 7 节的梯度曲线。
#    未训练模型的曲线衰减慢了多少？为什么遗忘门每一步的因子会从约 0.5 变成约 σ(1) ≈ 0.73？
# 2. 写一个输入门与遗忘门耦合的单元：i = 1 − f（去掉输入门对应的行）。手算一步，并用张量运算搭建它、
#    做梯度检验。
# 3. 在 N = 128 时，分别取 H = 16、128、1024 为两种内核后端计时。Numba 内核在哪种规模下加速最多？
#    对于非常大的数组，是什么限制了加速？

# %%
clock.report()
