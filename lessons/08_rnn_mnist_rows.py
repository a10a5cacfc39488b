# %% [markdown]
# # Lesson 08: an LSTM reads MNIST row by row: the last step against the max over time
#
# An image is not a sequence, but it can be read as one. We feed a 28 × 28 digit to an LSTM
# one row at a time: T = 28 steps, each a vector of 28 pixel values. The model is
# `tinymbm.models.RNN`: two stacked LSTM layers with H = 128 hidden units, then a linear
# readout to the ten class scores. The readout comes in two forms:
#
# - `readout="last"` scores only the top layer's hidden state after the last row,
#   fc(h_T).
# - `readout="max"` scores the hidden state at every step and keeps, for each class, the
#   largest score over time:
#
#       RNN(T; W, b) = max_{t∈T} Σ_i Σ_j W_ij · RNN_ij(t) + b_t
#
# We train both on the same data with the same optimizer and compare their test accuracy,
# their learning curves, the confusion matrix, and, for the max readout, which row of the
# image wins the maximum for each class.
#
# # 第 08 课：LSTM 逐行读取 MNIST：只看最后一步，还是对时间取最大值
#
# 图像本不是序列，但可以当作序列来读。我们把一张 28 × 28 的数字图像逐行送入 LSTM：共 T = 28 步，
# 每一步是 28 个像素值组成的向量。模型是 `tinymbm.models.RNN`：两层堆叠的 LSTM，隐藏单元数
# H = 128，后接一个线性读出层，输出十个类别的分数。读出层有两种形式：
#
# - `readout="last"` 只对最后一行读完后顶层的隐藏状态打分，即 fc(h_T)。
# - `readout="max"` 对每一步的隐藏状态都打分，再对每个类别取各时间步中最大的分数：
#
#       RNN(T; W, b) = max_{t∈T} Σ_i Σ_j W_ij · RNN_ij(t) + b_t
#
# 我们用同样的数据和同样的优化器训练这两种模型，比较它们的测试准确率、学习曲线、混淆矩阵；
# 对于取最大值的读出方式，还要看每个类别的最大值出现在图像的哪一行。

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
from tinymbm import lesson, optim, viz
from tinymbm.data import DataLoader, TensorDataset, load_mnist
from tinymbm.models import RNN
from tinymbm.train import evaluate, fit

options = lesson.parse_args(
    "Lesson 08: a two-layer LSTM reads MNIST digits row by row, with the last-step and the max-over-time readouts",
    name="08_rnn_mnist_rows",
    epochs=3,
    extra=[
        (("--max-epochs",), {"type": int, "default": None,
                             "help": "epochs of the max readout (default: the same as --epochs)"}),
        (("--batch-size",), {"type": int, "default": 128, "help": "examples per training batch (default 128)"}),
        (("--lr",), {"type": float, "default": 2e-3, "help": "Adam learning rate (default 2e-3)"}),
    ],
)
clock = lesson.Clock()
max_epochs = options.epochs if options.max_epochs is None else options.max_epochs

# %% [markdown]
# ## 1. Digits as sequences
#
# The loader returns uint8 images of shape (N, 28, 28). Divided by 255 they become float32
# values in [0, 1], and that array is already a batch of sequences in the batch-first
# layout (N, T, I) that `nn.LSTM(batch_first=True)` expects: image n, row t, pixel i.
# In quick mode (`--limit`) the test set is cut to its first 250 digits, so that the
# evaluations stay short.
#
# ## 1. 把数字当作序列
#
# 数据加载器返回形状为 (N, 28, 28) 的 uint8 图像。除以 255 后变成 [0, 1] 区间内的 float32，
# 这个数组本身就是一批按 batch-first 排布 (N, T, I) 的序列，正是 `nn.LSTM(batch_first=True)`
# 需要的形式：第 n 张图像、第 t 行、第 i 个像素。快速模式（`--limit`）下测试集只取前 250 张，
# 以免评估耗时过长。

# %%
quick_test_size = 250
train_split = load_mnist(options.data_dir, train=True, synthetic_size=options.limit)
test_split = load_mnist(options.data_dir, train=False,
                        synthetic_size=quick_test_size if options.limit is not None else None)
train_limit = options.limit if options.limit is not None else len(train_split.labels)
test_limit = quick_test_size if options.limit is not None else len(test_split.labels)

train_sequences = train_split.images[:train_limit].astype(np.float32) / 255
train_labels = train_split.labels[:train_limit]
test_sequences = test_split.images[:test_limit].astype(np.float32) / 255
test_labels = test_split.labels[:test_limit]
print(f"data: {train_split.source}; training sequences {train_sequences.shape}, test sequences "
      f"{test_sequences.shape} (N, T, I)")
lesson.save_figure(viz.plot_images(test_sequences[:16], labels=list(test_labels[:16]),
                                   title="each image is read top to bottom, one row per time step"),
                   options.out, "digits.png")

# %% [markdown]
# ## 2. The model and its parameters
#
# `RNN(input_size=28, hidden_size=128, num_layers=2, num_classes=10)` contains an
# `nn.LSTM` and an `nn.Linear`. Layer 0 of the LSTM reads the 28 pixels of a row, layer 1 reads the
# 128 hidden values of layer 0, and each layer stacks its four gates (i, f, g, o) in
# matrices of 4H = 512 rows, as lesson 07 showed. Both readouts use the same parameters;
# only the forward pass differs.
#
# ## 2. 模型及其参数
#
# `RNN(input_size=28, hidden_size=128, num_layers=2, num_classes=10)` 包含一个 `nn.LSTM` 和一个
# `nn.Linear`。LSTM 的第 0 层读入一行的 28 个像素，第 1 层读入第 0 层的 128 个隐藏值；如第 07 课所示，
# 每一层把四个门 (i, f, g, o) 堆叠在 4H = 512 行的矩阵里。两种读出方式的参数完全相同，
# 区别只在前向计算。

# %%
def make_model(readout: str) -> RNN:
    return RNN(input_size=28, hidden_size=128, num_layers=2, num_classes=10, readout=readout)


tm.manual_seed(options.seed)
model = make_model("last")
print(model)
for name, parameter in model.named_parameters():
    print(f"  {name:<20} {parameter.shape!s:<12} {parameter.data.size:>7} values")
print(f"  total: {sum(parameter.data.size for parameter in model.parameters())} parameters")

# %% [markdown]
# ## 3. The two readouts, computed by hand
#
# Let h(t) be the top layer's hidden state after row t, W (10, 128) and b (10,) the weight
# and bias of the linear layer. The last-step readout is W h(T) + b. The max readout
# computes a score for every class at every step and keeps the largest per class:
#
#     score_k = max_{t∈T} ( Σ_j W_kj · h_j(t) + b_k )
#
# This is the formula RNN(T; W, b) = max_{t∈T} Σ_i Σ_j W_ij · RNN_ij(t) + b_t with RNN(t)
# the hidden state at step t: the sum over the hidden units is the linear layer's product,
# and the same bias is added at every step. Below we take the LSTM's output (N, T, H) for
# four digits, compute both readouts with NumPy, and compare them with the model. For the
# max readout we also print which row wins for the class the model predicts. The model is
# untrained here, so its predictions are still guesses.
#
# The max acts in backward as max-pooling does: only the winning step of each class
# receives that class's gradient. The model can therefore put its evidence for a class at
# whichever row shows it best, instead of carrying it to the end of the image.
#
# ## 3. 手算两种读出方式
#
# 设 h(t) 为读完第 t 行后顶层的隐藏状态，W (10, 128) 和 b (10,) 为线性层的权重和偏置。只看最后一步的
# 读出是 W h(T) + b。取最大值的读出在每一步为每个类别打分，再对每个类别保留最大的分数：
#
#     score_k = max_{t∈T} ( Σ_j W_kj · h_j(t) + b_k )
#
# 这就是公式 RNN(T; W, b) = max_{t∈T} Σ_i Σ_j W_ij · RNN_ij(t) + b_t，其中 RNN(t) 是第 t 步的
# 隐藏状态：对隐藏单元的求和就是线性层的矩阵乘法，每一步都加上同一个偏置。下面取四张数字在 LSTM 上的
# 输出 (N, T, H)，用 NumPy 算出两种读出，并与模型的结果对照。对于取最大值的读出，还打印出模型预测的
# 那个类别是在哪一行取得最大值的。此时模型尚未训练，所以它的预测还只是猜测。
#
# 在反向传播中，这个最大值的作用与最大池化相同：每个类别的梯度只流向它取得最大值的那一步。因此模型
# 可以把某个类别的证据放在最能体现它的那一行，而不必一路携带到图像的末尾。

# %%
sample = tm.tensor(test_sequences[:4])
with tm.no_grad():
    hidden_states, _ = model.lstm(sample)                         # (N, T, H)
h_all = hidden_states.numpy()
W, b = model.fc.weight.numpy(), model.fc.bias.numpy()

step_scores = h_all @ W.T + b                                     # (N, T, 10): a score per class per step
last_by_hand = step_scores[:, -1, :]
max_by_hand = step_scores.max(axis=1)

model.readout = "last"
with tm.no_grad():
    last_from_model = model(sample).numpy()
model.readout = "max"
with tm.no_grad():
    max_from_model = model(sample).numpy()
model.readout = "last"

print(f"last step: max |by hand - model| = {np.abs(last_by_hand - last_from_model).max():.1e}")
print(f"max over t: max |by hand - model| = {np.abs(max_by_hand - max_from_model).max():.1e}")
predicted = max_by_hand.argmax(axis=1)
winning_steps = step_scores.argmax(axis=1)                        # (N, 10): the step that wins per class
for n in range(len(predicted)):
    print(f"digit {n}: label {test_labels[n]}, max readout predicts {predicted[n]} "
          f"(its score wins at row {winning_steps[n, predicted[n]]}; rows run from 0 at the top to 27)")

# %% [markdown]
# ## 4. Training both readouts on the same budget
#
# Both models start from the same seed, see the same shuffled batches (the loader has its
# own seed), and use Adam with the same learning rate. Before training, the loss of an
# untrained classifier over ten classes should be close to log 10 ≈ 2.303, because its
# scores are nearly equal. A much larger value would point at a bug in the data or the
# model. `tinymbm.train.fit` then runs the epochs with a progress bar and evaluates on the
# test set after each epoch.
#
# The default run trains each readout for 3 epochs on all 60,000 training digits, with
# batches of 128 and a learning rate of 2e-3. Each epoch is 469 steps of Adam. On two
# CPU cores shared with other jobs, two runs of the whole lesson took about 200 s and
# 310 s, of which 90 to 185 s went to training each readout.
# `--max-epochs` sets the epochs of the max readout separately, for a run with less time.
# The table below compares the two readouts epoch by epoch, so a shorter max run is still
# compared at equal budgets.
#
# ## 4. 以相同的预算训练两种读出方式
#
# 两个模型从同一个随机种子出发，看到同样顺序的打乱批次（数据加载器有自己的种子），都用相同学习率的
# Adam。训练之前，一个十分类的未训练分类器的损失应接近 log 10 ≈ 2.303，因为它给各类的分数几乎相等；
# 如果大得多，说明数据或模型有错误。随后由 `tinymbm.train.fit` 带着进度条跑完各轮，并在每一轮之后
# 在测试集上评估。
#
# 默认运行在全部 60,000 张训练图像上把两种读出方式各训练 3 轮，批大小 128，学习率 2e-3，每轮是
# 469 步 Adam 更新。在与其他任务共用的两个 CPU 核上，整课的两次运行分别用时约 200 秒和 310 秒，
# 其中每种读出方式的训练用时 90 到 185 秒。
# `--max-epochs` 可以单独设定取最大值读出的训练轮数，供时间不够时使用。下面的表格逐轮比较两种读出
# 方式，所以即使取最大值读出训练的轮数较少，比较仍是在相同预算下进行的。

# %%
def train_readout(readout: str, epochs: int) -> tuple[RNN, dict, float]:
    """Train a fresh model with the given readout; return it, its history and the training time in seconds."""
    tm.manual_seed(options.seed)
    model = make_model(readout)
    train_loader = DataLoader(TensorDataset(train_sequences, train_labels), batch_size=options.batch_size,
                              shuffle=True, seed=options.seed)
    test_loader = DataLoader(TensorDataset(test_sequences, test_labels), batch_size=1000)

    initial_loss, _ = evaluate(model, DataLoader(TensorDataset(train_sequences[:128], train_labels[:128]),
                                                 batch_size=128))
    print(f"readout={readout!r}: initial loss {initial_loss:.3f} (log 10 = {np.log(10):.3f})")

    start = time.perf_counter()
    history = fit(model, optim.Adam(model.parameters(), lr=options.lr), train_loader, epochs=epochs,
                  val_loader=test_loader)
    return model, history, time.perf_counter() - start


last_model, last_history, last_seconds = train_readout("last", options.epochs)
max_model, max_history, max_seconds = train_readout("max", max_epochs)

# %% [markdown]
# ## 5. The two test accuracies side by side
#
# The table lists each readout's test accuracy after every epoch, and the plot shows the
# loss and accuracy curves of both runs (its "val" curves are the test set, evaluated
# after each epoch). In the default run (seed 0) the last-step readout reached 98.2 % after
# 3 epochs and the max readout 97.8 %. The max readout started slower, with 92.4 % against
# 94.3 % after the first epoch, and closed most of that gap by the third.
#
# ## 5. 两种读出方式的测试准确率对照
#
# 表格列出两种读出方式每一轮之后的测试准确率，图中画出两次训练的损失曲线和准确率曲线（图中标为
# "val" 的曲线就是每轮之后在测试集上的评估结果）。在默认运行（随机种子 0）中，只看最后一步的读出
# 3 轮后达到 98.2 %，取最大值的读出达到 97.8 %。取最大值的读出起步较慢，第一轮后是 92.4 %，而前者是
# 94.3 %，到第三轮时这个差距已基本消失。

# %%
print(f"{'epoch':>5}  {'last: test acc':>14}  {'max: test acc':>13}")
for epoch in range(max(options.epochs, max_epochs)):
    last_text = f"{last_history['val_acc'][epoch]:.4f}" if epoch < options.epochs else "-"
    max_text = f"{max_history['val_acc'][epoch]:.4f}" if epoch < max_epochs else "-"
    print(f"{epoch + 1:>5}  {last_text:>14}  {max_text:>13}")
print(f"training time: last {last_seconds:.0f} s for {options.epochs} epoch(s), "
      f"max {max_seconds:.0f} s for {max_epochs} epoch(s)")
print(f"final test accuracy: last {last_history['val_acc'][-1]:.4f} after {options.epochs} epoch(s), "
      f"max {max_history['val_acc'][-1]:.4f} after {max_epochs} epoch(s)")
lesson.save_figure(viz.plot_history({"last": last_history, "max": max_history},
                                    title="readout of the last step against the max over time"),
                   options.out, "history.png")

# %% [markdown]
# ## 6. Where the last-step model goes wrong
#
# The confusion matrix counts, for every true class (row), how often each class was
# predicted (column). The diagonal counts the correct predictions, and the largest entries off the
# diagonal name the pairs of digits the model mixes up.
#
# ## 6. 只看最后一步的模型错在哪里
#
# 混淆矩阵统计每个真实类别（行）被预测为各个类别（列）的次数。对角线上是预测正确的数量，
# 对角线以外最大的几项指出了模型最容易混淆的数字对。

# %%
def step_scores_of(model: RNN, sequences: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Return fc(h(t)) for every step, (N, T, 10), from the top layer's hidden states."""
    model.eval()
    scores = []
    with tm.no_grad():
        for start in range(0, len(sequences), batch_size):
            hidden_states, _ = model.lstm(tm.tensor(sequences[start:start + batch_size]))
            scores.append(model.fc(hidden_states).numpy())
    return np.concatenate(scores)


last_predictions = step_scores_of(last_model, test_sequences)[:, -1, :].argmax(axis=1)
matrix = viz.confusion_matrix(test_labels, last_predictions, num_classes=10)
lesson.save_figure(viz.plot_confusion(matrix, title="readout='last' on the test set"), options.out,
                   "confusion_last.png")
mistakes = [(int(matrix[i, j]), i, j) for i in range(10) for j in range(10) if i != j]
for count, true_class, predicted_class in sorted(mistakes, reverse=True)[:5]:
    print(f"a {true_class} read as a {predicted_class}: {count} times")

# %% [markdown]
# ## 7. Which row wins the maximum
#
# For the max-readout model we look, for every test digit, at the score of its true class
# and at the step t where that score reaches its maximum. The heat map counts these
# winning steps per class, as the share of the class's digits: one line per class, one
# column per image row. If the maximum always won at the last row, the max readout would
# be the last-step readout in disguise.
#
# In the default run it never waits that long: no class wins at row 27, and each class
# has its own band of rows. A 7 wins around row 9, just after its top bar. 1, 3, 4 and 9
# win in the middle rows (about 14 to 16), and 0, 2, 5, 6 and 8 only in the lower third
# (about 20 to 23), where they differ from their look-alikes. Each class's score peaks as
# soon as the rows read so far tell it apart, and the blank rows at the bottom add nothing.
#
# ## 7. 哪一行赢得最大值
#
# 对取最大值读出的模型，我们查看每张测试数字真实类别的分数，以及该分数在哪一步 t 取得最大值。
# 热力图按类别统计这些取胜的时间步占该类数字的比例：每个类别一行，图像的每一行对应一列。
# 如果最大值总是出现在最后一行，那么取最大值的读出就只是换了个样子的“最后一步”读出。
#
# 在默认运行中，它从不等到那么晚：没有哪个类别在第 27 行取胜，而且每个类别都有自己的一段行。
# 数字 7 在第 9 行左右取胜，正好在它顶部的横笔之后；1、3、4、9 在中间几行（约 14 到 16 行）取胜；
# 0、2、5、6、8 则要到下方三分之一处（约 20 到 23 行）才取胜，因为它们与形近的数字在那里才有区别。
# 每个类别的分数在已读的行足以把它区分出来时就达到峰值，底部的空白行不再提供任何信息。
#

# %%
max_step_scores = step_scores_of(max_model, test_sequences)            # (N, T, 10)
true_class_scores = max_step_scores[np.arange(len(test_labels)), :, test_labels]   # (N, T)
winning_step = true_class_scores.argmax(axis=1)                        # 0-based step index
counts = np.zeros((10, max_step_scores.shape[1]), dtype=np.int64)
np.add.at(counts, (test_labels, winning_step), 1)
shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)    # each class's row sums to 1

lesson.save_figure(viz.plot_heatmap(shares, xlabel="image row that wins the max (0 = top, 27 = last)",
                                    ylabel="true class",
                                    title="readout='max': share of each class's digits whose score peaks at each row"),
                   options.out, "winning_steps.png")
print("class  median winning row  share won at the last row")
for k in range(10):
    rows_of_class = winning_step[test_labels == k]
    if len(rows_of_class):
        print(f"{k:>5}  {np.median(rows_of_class):>18.0f}  {np.mean(rows_of_class == 27):>25.2f}")

# %% [markdown]
# ## Summary
#
# - An image of 28 × 28 pixels is a sequence of T = 28 rows of I = 28 pixels; in the
#   batch-first layout a batch is (N, T, I).
# - `models.RNN` stacks two LSTM layers and a linear readout. `readout="last"` scores h(T);
#   `readout="max"` scores every step and takes the maximum over time per class,
#   RNN(T; W, b) = max_{t∈T} Σ_i Σ_j W_ij · RNN_ij(t) + b_t. Both were checked against
#   NumPy by hand.
# - With Adam (learning rate 2e-3, batches of 128), 3 epochs bring the last-step reader to
#   about 98 % test accuracy on MNIST rows. The max readout learns a little slower and ends
#   about half a point lower on the same budget.
# - The max readout's gradient reaches only each class's winning step. The histogram of
#   winning steps shows that each class peaks at its own band of rows and that none waits
#   for the last row.
#
# ## 小结
#
# - 一张 28 × 28 的图像就是 T = 28 行、每行 I = 28 个像素的序列；按 batch-first 排布，一批数据的
#   形状是 (N, T, I)。
# - `models.RNN` 由两层 LSTM 和一个线性读出层组成。`readout="last"` 对 h(T) 打分；
#   `readout="max"` 对每一步打分，再对每个类别取时间上的最大值，即
#   RNN(T; W, b) = max_{t∈T} Σ_i Σ_j W_ij · RNN_ij(t) + b_t。两者都用 NumPy 手算核对过。
# - 用 Adam（学习率 2e-3，批大小 128）训练 3 轮，只看最后一步的读取器在 MNIST 逐行数据上的测试
#   准确率约为 98 %。在相同预算下，取最大值的读出学得稍慢，最终低约半个百分点。
# - 取最大值读出的梯度只流向每个类别取胜的那一步。取胜时间步的直方图表明，每个类别都在属于自己的
#   一段行上达到峰值，没有哪个类别等到最后一行。
#
# ## Exercises
#
# 1. Add a third readout, the mean over time, mean_t (W h(t) + b). Train it on the same
#    budget and place it in the table. Why does every step receive a gradient now?
# 2. Read the images column by column instead of row by row (transpose each image). Does
#    the accuracy change, and how does the winning-step histogram move?
# 3. Run the lesson with `--lr 1e-2` and with `--lr 3e-4`. Compare the last-step
#    readout's loss curves with those of the default run, and explain which learning rate
#    you would keep for 3 epochs.
#
# ## 练习
#
# 1. 增加第三种读出方式：对时间取平均，mean_t (W h(t) + b)。以相同的预算训练它，并把结果加入表格。
#    为什么现在每一步都能得到梯度？
# 2. 改为逐列而不是逐行读取图像（把每张图像转置）。准确率有变化吗？取胜时间步的直方图如何移动？
# 3. 分别用 `--lr 1e-2` 和 `--lr 3e-4` 运行本课，把只看最后一步的读出的损失曲线与默认运行的曲线
#    对比，并说明在 3 轮训练中你会选用哪个学习率。

# %%
clock.report()
