# %% [markdown]
# # Lesson 10: the original MBM example program, fixed and run
#
# The MBM design, MBM(I, T) = CNN(I) + RNN(T), was published with a short
# PyTorch example program. It defines the three models and a training loop, and
# it is the program most readers would try first. As printed, it does not run.
# This lesson shows the program unchanged and lists what is wrong with it. It
# works out what the layer sizes cost at the program's 224 × 224 input size. Then
# it runs the same program, fixed, on tinymbm, at an input size that fits in memory.
#
# # 第 10 课：修正并运行 MBM 的原始示例程序
#
# MBM 的设计 MBM(I, T) = CNN(I) + RNN(T) 发表时附带了一段简短的 PyTorch 示例程序。
# 它定义了三个模型和一个训练循环，也是大多数读者会最先尝试运行的程序。但按原样，它无法运行。
# 本课先原封不动地展示这段程序，列出其中的错误，计算它的各层在 224 × 224 输入下的开销，
# 然后在 tinymbm 上以一个内存放得下的输入尺寸运行修正后的同一段程序。

# %%
# tinymbm comes before NumPy: it sets OpenBLAS's thread timeout, which NumPy's
# BLAS reads only when it loads, and the convolution runs on every core only then.
import tinymbm as tm

# isort: split
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from tinymbm import lesson, models, viz
from tinymbm.data import ImageFolder, load_mnist

options = lesson.parse_args(
    "The original MBM example program: what is wrong, what it costs at 224 x 224, and the fixed version run",
    name="10_article_program",
    epochs=2,
    limit=2000,
    extra=[
        (("--image-size",), {"type": int, "default": None,
                             "help": "side S of the resized images (default 56; 28 when --limit < 2000)"}),
    ],
)
clock = lesson.Clock()

# %% [markdown]
# ## 1. The program as published
#
# ```python
# import torch
# import torch.nn as nn
# import torchvision.transforms as transforms
# import torchvision.datasets as datasets
# from torch.utils.data import DataLoader
# transform = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),])
# dataset = datasets.ImageFolder(root='data', transform=transform)
# dataloader = DataLoader(dataset, batch_size=32, shuffle=True)
# class CNN(nn.Module):
#     def __init__(self):
#         super(CNN, self).__init__()
#         self.conv1 = nn.Conv2d(3, 64, kernel_size=3, padding=1)
#         self.conv2 = nn.Conv2d(64, 128, kernel_size=3, padding=1)
#         self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
#         self.fc1 = nn.Linear(128 * 56 * 56, 1024)
#         self.fc2 = nn.Linear(1024, 512)
#         self.fc3 = nn.Linear(512, 10)
#     def forward(self, x):
#         x = self.pool(F.relu(self.conv1(x)))
#         x = self.pool(F.relu(self.conv2(x)))
#         x = x.view(-1, 128 * 56 * 56)
#         x = F.relu(self.fc1(x))
#         x = F.relu(self.fc2(x))
#         x = self.fc3(x)
#         return x
# class RNN(nn.Module):
#     def __init__(self, input_size, hidden_size, num_layers, num_classes):
#         super(RNN, self).__init__()
#         self.hidden_size = hidden_size
#         self.num_layers = num_layers
#         self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
#         self.fc = nn.Linear(hidden_size, num_classes)
#     def forward(self, x):
#         h0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(device)
#         c0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(device)
#         out, _ = self.lstm(x, (h0, c0))
#         out = self.fc(out[:, -1, :])
#         return out
# class MBM(nn.Module):
#     def __init__(self, cnn, rnn):
#         super(MBM, self).__init__()
#         self.cnn = cnn
#         self.rnn = rnn
#     def forward(self, x, y):
#         x = self.cnn(x)
#         y = self.rnn(y)
#         return x + y
# cnn = CNN().to(device)
# rnn = RNN(input_size, hidden_size, num_layers, num_classes).to(device)
# mbm = MBM(cnn, rnn).to(device)
# optimizer = optim.Adam(mbm.parameters(), lr=0.001)
# criterion = nn.CrossEntropyLoss()
# for epoch in range(num_epochs):
#     for i, (images, labels) in enumerate(dataloader):
#         images = images.to(device)
#         labels = labels.to(device)
#         outputs = mbm(images, labels)
#         loss = criterion(outputs, labels)
#         optimizer.zero_grad()
#         loss.backward()
#         optimizer.step()
# ```
#
# The models themselves are sound. The CNN has two convolution blocks (3 → 64 → 128
# channels, each followed by ReLU and a 2 × 2 max-pool) and three fully connected
# layers. The RNN is an LSTM read at its last step, `fc(out[:, -1, :])`. MBM returns
# the sum `x + y` of the two models' class scores. The trouble is everything around them.
#
# ## 1. 原样发表的程序
#
# （程序代码见上方英文部分。）模型本身没有问题：两个卷积块（通道数 3 → 64 → 128，每个卷积后接 ReLU 和
# 2 × 2 最大池化）加三个全连接层；一个在最后一个时间步读出的 LSTM，即 `fc(out[:, -1, :])`；
# 以及返回两个模型类别分数之和 `x + y` 的 MBM。问题出在模型周围的其他代码上。

# %% [markdown]
# ## 2. What is wrong with it
#
# 1. `F` and `optim` are used but never imported (`import torch.nn.functional as F`,
#    `import torch.optim as optim` are missing), so the first forward pass raises
#    a `NameError`, and so does the optimizer line before it.
# 2. `device`, `input_size`, `hidden_size`, `num_layers`, `num_classes` and
#    `num_epochs` are never defined.
# 3. The labels are fed to the RNN as its input: `mbm(images, labels)`. This is a
#    label leak. Were it made to run, the model would read the label and learn to
#    copy it. It would reach perfect training accuracy and learn nothing usable,
#    because at prediction time there is no label to feed. It does not even have the
#    right form: the labels are an integer tensor of shape (N,), while an LSTM with
#    `batch_first=True` expects a float sequence (N, T, input_size). The RNN needs
#    a real sequence that belongs to each image.
# 4. `ImageFolder(root='data')` needs a folder `data/` with one sub-folder per
#    class, each holding image files; the program neither creates nor describes it.
# 5. The 10 classes are hard-coded in `fc3`, whatever the folder holds, and
#    `128 * 56 * 56` in `fc1` and `view` is right only for 224 × 224 inputs (two
#    2 × 2 pools take 224 to 56).
# 6. At 224 × 224 the model is enormous, as the next step computes.
#
# ## 2. 它错在哪里
#
# 1. 程序用到了 `F` 和 `optim`，却从未导入它们（缺少 `import torch.nn.functional as F` 和
#    `import torch.optim as optim`），因此创建优化器的那一行以及第一次前向传播都会抛出 `NameError`。
# 2. `device`、`input_size`、`hidden_size`、`num_layers`、`num_classes` 和 `num_epochs` 都没有定义。
# 3. 标签被当作 RNN 的输入：`mbm(images, labels)`。这是标签泄漏：即使让它跑起来，模型也会读到答案并学会照抄，
#    训练准确率达到 100%，却学不到任何有用的东西，因为预测时根本没有标签可喂。而且它的形式也不对：
#    标签是形状为 (N,) 的整数张量，而 `batch_first=True` 的 LSTM 需要的是浮点序列 (N, T, input_size)。
#    RNN 需要的是属于每张图像的一个真实序列。
# 4. `ImageFolder(root='data')` 要求存在一个 `data/` 文件夹，每个类别一个子文件夹，里面放图像文件；
#    程序既没有创建它，也没有说明它。
# 5. `fc3` 把类别数硬编码为 10，与文件夹里实际有多少类无关；`fc1` 和 `view` 中的 `128 * 56 * 56`
#    只对 224 × 224 的输入成立（两次 2 × 2 池化把 224 变成 56）。
# 6. 在 224 × 224 下，这个模型非常庞大，下一步我们就来计算它的开销。

# %% [markdown]
# ## 3. What the layer sizes cost at 224 × 224
#
# For a square input of side S with C channels, the layers give, per image:
#
# - conv1: 64 · C · 3 · 3 + 64 parameters, output 64 × S × S, and
#   64 · S² · (C · 9) multiply-adds;
# - conv2 (after a pool, on S/2 × S/2): 128 · 64 · 9 + 128 parameters, output
#   128 × (S/2)², and 128 · (S/2)² · 576 multiply-adds;
# - fc1 (after the second pool): 128 · (S/4)² · 1024 + 1024 parameters and as many
#   multiply-adds; fc2 and fc3 are small.
#
# We count 2 FLOPs per multiply-add, 4 bytes per float32, and for the activations
# of a batch of 32 every layer output that the backward pass keeps (each conv,
# ReLU and pool output). Training with Adam keeps four float32 values per
# parameter: the weight, its gradient, and Adam's two moment estimates. These are
# formulas, not allocations: building this model at 224 would take gigabytes.
# To trust the formulas, we check their parameter count against
# `tinymbm.models.CNN` built at small sizes.
#
# ## 3. 这些层大小在 224 × 224 下的开销
#
# 对边长为 S、通道数为 C 的方形输入，每张图像的各层开销如下：
#
# - conv1：参数 64 · C · 3 · 3 + 64 个，输出 64 × S × S，乘加次数 64 · S² · (C · 9)；
# - conv2（池化之后，作用在 S/2 × S/2 上）：参数 128 · 64 · 9 + 128 个，输出 128 × (S/2)²，乘加次数 128 · (S/2)² · 576；
# - fc1（第二次池化之后）：参数 128 · (S/4)² · 1024 + 1024 个，乘加次数与参数量相当；fc2 和 fc3 很小。
#
# 每次乘加记 2 次浮点运算（FLOP），每个 float32 占 4 字节；批大小为 32 时的激活内存，
# 统计反向传播需要保留的每一层输出（每个卷积、ReLU 和池化的输出）。用 Adam 训练时，每个参数要保存 4 个
# float32 数值：权重本身、它的梯度，以及 Adam 的两个矩估计。这些都只是公式计算，并不真正分配内存：
# 在 224 下构建这个模型需要好几 GB。为了确认公式可信，我们在较小尺寸下用 `tinymbm.models.CNN`
# 的实际参数量来核对。

# %%
def layer_costs(side: int, channels: int = 3, num_classes: int = 10) -> list[dict]:
    """Return one row per layer: name, output shape, parameters, MACs per image, output floats."""
    half, quarter = side // 2, side // 4
    flat = 128 * quarter * quarter
    return [
        {"layer": "conv1", "shape": (64, side, side), "params": 64 * channels * 9 + 64,
         "macs": 64 * side * side * channels * 9, "kept": 2 * 64 * side * side},
        {"layer": "pool1", "shape": (64, half, half), "params": 0, "macs": 0, "kept": 64 * half * half},
        {"layer": "conv2", "shape": (128, half, half), "params": 128 * 64 * 9 + 128,
         "macs": 128 * half * half * 64 * 9, "kept": 2 * 128 * half * half},
        {"layer": "pool2", "shape": (128, quarter, quarter), "params": 0, "macs": 0, "kept": flat},
        {"layer": "fc1", "shape": (1024,), "params": flat * 1024 + 1024, "macs": flat * 1024, "kept": 2 * 1024},
        {"layer": "fc2", "shape": (512,), "params": 1024 * 512 + 512, "macs": 1024 * 512, "kept": 2 * 512},
        {"layer": "fc3", "shape": (num_classes,), "params": 512 * num_classes + num_classes,
         "macs": 512 * num_classes, "kept": num_classes},
    ]


def print_cost_table(side: int, batch: int = 32) -> list[dict]:
    """Print the per-layer cost table for S = side and return its rows."""
    rows = layer_costs(side)
    print(f"input 3 x {side} x {side}, batch {batch} (conv and ReLU outputs are both kept, hence 2x)")
    print(f"{'layer':6s} {'output':>16s} {'parameters':>14s} {'weights':>10s} {'GFLOP/image':>12s} "
          f"{'activations':>12s}")
    for row in rows:
        shape = " x ".join(map(str, row["shape"]))
        print(f"{row['layer']:6s} {shape:>16s} {row['params']:14,d} {row['params'] * 4 / 1e6:8.1f} MB "
              f"{2 * row['macs'] / 1e9:12.3f} {row['kept'] * batch * 4 / 1e6:9.1f} MB")

    params = sum(row["params"] for row in rows)
    gflops = sum(2 * row["macs"] for row in rows) / 1e9
    activations = sum(row["kept"] for row in rows) * batch * 4
    # im2col turns every 3 x 3 x 64 receptive field of conv2 into a column of its own.
    columns = 64 * 9 * batch * (side // 2) ** 2 * 4
    print(f"total: {params:,} parameters = {params * 4 / 1e9:.2f} GB of float32 weights; "
          f"{gflops:.2f} GFLOP per image forward (about 3x that to train)")
    print(f"training with Adam: weights + gradients + 2 moments = {4 * params * 4 / 1e9:.2f} GB; "
          f"activations of a batch of {batch}: {activations / 1e9:.2f} GB; conv2's im2col buffer: "
          f"{columns / 1e9:.2f} GB")
    return rows


rows_224 = print_cost_table(224)
fc1_share = rows_224[4]["params"] / sum(row["params"] for row in rows_224)
print(f"fc1 holds {fc1_share:.2%} of the parameters")

for side in (28, 56):
    built = models.CNN(in_channels=3, num_classes=10, image_size=side)
    counted = sum(parameter.data.size for parameter in built.parameters())
    formula = sum(row["params"] for row in layer_costs(side))
    print(f"S = {side}: tinymbm.models.CNN has {counted:,} parameters, the formula gives {formula:,}")
    assert counted == formula
    del built

figure = viz.plot_bars({row["layer"]: row["params"] / 1e6 for row in rows_224 if row["params"]},
                       ylabel="parameters (millions)", title="parameters per layer at 224 x 224")
lesson.save_figure(figure, options.out, "parameters_224.png")

# %% [markdown]
# fc1 alone has 128 · 56 · 56 · 1024 ≈ 411 million weights, 1.6 GB in float32, and
# Adam's two moment buffers bring it to about 5 GB before a single gradient or
# activation is stored. The fixed program below keeps the layers but sizes fc1 for
# the input it gets: at S = 56 it has 128 · 14 · 14 · 1024 ≈ 25.7 million weights,
# and at S = 28 about 6.4 million.
#
# 仅 fc1 就有 128 · 56 · 56 · 1024 ≈ 4.11 亿个权重，float32 下占 1.6 GB；再加上 Adam 的两个矩缓冲区，
# 在还没存任何梯度和激活之前就已经约 5 GB。下面修正后的程序保留所有层，但按实际输入尺寸确定 fc1 的大小：
# S = 56 时它有 128 · 14 · 14 · 1024 ≈ 2570 万个权重，S = 28 时约 640 万个。

# %%
side = options.image_size or (28 if options.limit is not None and options.limit < 2000 else 56)
rows_side = print_cost_table(side)

# %% [markdown]
# ## 4. An ImageFolder tree to read
#
# The program reads its images with `ImageFolder`, so we give it one: MNIST digits
# saved as RGB PNG files (the grey value copied to R, G and B), one sub-folder per
# class, under `--out`. The training tree takes the first `--limit` / 10 digits of
# each class from the MNIST training split, the test tree the first 50 per class
# (20 in quick mode) from the test split.
#
# First, what the original line does when the folder is missing: tinymbm's
# `ImageFolder` raises a `FileNotFoundError` that describes the expected layout.
#
# ## 4. 准备一个 ImageFolder 目录树
#
# 程序用 `ImageFolder` 读取图像，所以我们给它准备一个：把 MNIST 数字保存为 RGB 格式的 PNG 文件
# （灰度值复制到 R、G、B 三个通道），每个类别一个子文件夹，放在 `--out` 目录下。训练目录树取 MNIST 训练集中
# 每个类别的前 `--limit` / 10 个数字，测试目录树取测试集中每个类别的前 50 个（快速模式下 20 个）。
#
# 先看看文件夹不存在时原来那一行会怎样：tinymbm 的 `ImageFolder` 会抛出 `FileNotFoundError`，
# 并说明它期望的目录结构。

# %%
try:
    ImageFolder(root=Path(options.out) / "no-such-folder")
except FileNotFoundError as error:
    print(f"{type(error).__name__}: {error}")


def write_image_folder(root: Path, images: np.ndarray, labels: np.ndarray, per_class: int) -> int:
    """Save the first ``per_class`` digits of each class as RGB PNGs in root/<digit>/; return the count."""
    count = 0
    for digit in range(10):
        folder = root / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        for index in np.flatnonzero(labels == digit)[:per_class]:
            rgb = np.repeat(images[index][:, :, None], 3, axis=2)
            Image.fromarray(rgb).save(folder / f"{index:05d}.png")
            count += 1
    return count


folder_root = Path(options.out) / "imagefolder"
shutil.rmtree(folder_root, ignore_errors=True)
train_digits = load_mnist(options.data_dir, train=True)
test_digits = load_mnist(options.data_dir, train=False)
quick = options.limit is not None and options.limit < 2000
per_class_train = max(1, (options.limit or len(train_digits.labels)) // 10)
per_class_test = 20 if quick else 50
written_train = write_image_folder(folder_root / "train", train_digits.images, train_digits.labels, per_class_train)
written_test = write_image_folder(folder_root / "test", test_digits.images, test_digits.labels, per_class_test)
print(f"wrote {written_train} training and {written_test} test PNG files under {folder_root}")

# %% [markdown]
# ## 5. The program, fixed, on tinymbm
#
# The program below follows the original line by line. tinymbm mirrors PyTorch's
# names, so `torch.nn`, `torch.optim`, `torchvision.transforms`, `ImageFolder` and
# `DataLoader` all have tinymbm counterparts with the same signatures. Each change
# is marked `fixed:`. The sequence for the RNN is the image itself read row by
# row: T = S time steps, each the S pixels of one row (the mean of R, G and B).
# That is a real sequence that belongs to each image and does not contain the
# label. Lesson 09 pairs images with a different modality instead.
#
# ## 5. 在 tinymbm 上运行修正后的程序
#
# 下面的程序逐行对应原程序。tinymbm 沿用 PyTorch 的命名，`torch.nn`、`torch.optim`、`torchvision.transforms`、
# `ImageFolder` 和 `DataLoader` 在 tinymbm 中都有签名相同的对应物。每处修改都标注了 `fixed:`。
# RNN 的输入序列就是逐行读取的图像本身：共 T = S 个时间步，每一步是某一行的 S 个像素（R、G、B 的平均值）。
# 这是属于每张图像的真实序列，而且不包含答案；第 09 课则把图像与另一种模态配对。

# %%
import tinymbm.functional as F  # fixed: F was used but never imported
from tinymbm import nn, optim  # fixed: optim was used but never imported
from tinymbm.data import DataLoader, transforms

# fixed: every name the program used without defining it
device = "cpu"                   # tinymbm runs on the CPU, so the .to(device) calls go
image_size = side                # fixed: 224 x 224 needs about 5 GB for fc1 with Adam
input_size = image_size          # one image row per time step
hidden_size = 128
num_layers = 2
num_epochs = options.epochs

transform = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor()])
dataset = ImageFolder(root=folder_root / "train", transform=transform)  # fixed: a folder that exists
dataloader = DataLoader(dataset, batch_size=32, shuffle=True, seed=options.seed)
num_classes = len(dataset.classes)   # fixed: from the folder, not hard-coded


class CNN(nn.Module):
    def __init__(self, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(64, 128, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.side = image_size // 4  # fixed: 56 was right only for 224 x 224 inputs
        self.fc1 = nn.Linear(128 * self.side * self.side, 1024)
        self.fc2 = nn.Linear(1024, 512)
        self.fc3 = nn.Linear(512, num_classes)  # fixed: num_classes, not 10

    def forward(self, x: tm.Tensor) -> tm.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 128 * self.side * self.side)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


class RNN(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int, num_classes: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: tm.Tensor) -> tm.Tensor:
        h0 = tm.zeros(self.num_layers, x.size(0), self.hidden_size)
        c0 = tm.zeros(self.num_layers, x.size(0), self.hidden_size)
        out, _ = self.lstm(x, (h0, c0))
        out = self.fc(out[:, -1, :])
        return out


class MBM(nn.Module):
    def __init__(self, cnn: CNN, rnn: RNN) -> None:
        super().__init__()
        self.cnn = cnn
        self.rnn = rnn

    def forward(self, x: tm.Tensor, y: tm.Tensor) -> tm.Tensor:
        x = self.cnn(x)
        y = self.rnn(y)
        return x + y


def image_rows(images: tm.Tensor) -> tm.Tensor:
    """fixed: a real sequence for the RNN: (N, 3, S, S) -> (N, T = S, input_size = S), one row per step."""
    return images.mean(dim=1)


cnn = CNN(image_size, num_classes)
rnn = RNN(input_size, hidden_size, num_layers, num_classes)
mbm = MBM(cnn, rnn)
optimizer = optim.Adam(mbm.parameters(), lr=0.001)
criterion = nn.CrossEntropyLoss()
print(f"{len(dataset)} training images of {num_classes} classes, resized to {image_size} x {image_size}; "
      f"MBM has {sum(p.data.size for p in mbm.parameters()):,} parameters")

losses = []
for epoch in range(num_epochs):
    bar = tqdm(dataloader, desc=f"epoch {epoch + 1}/{num_epochs}", unit="batch")
    for i, (images, labels) in enumerate(bar):
        sequences = image_rows(images)
        outputs = mbm(images, sequences)   # fixed: was mbm(images, labels), a label leak
        loss = criterion(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if i % 20 == 0:
            tqdm.write(f"epoch {epoch + 1} step {i:3d}: loss {losses[-1]:.4f}")

# %% [markdown]
# The accuracy on the test tree, read through the same transform. The original
# program stops after training, so this part is new.
#
# 下面用同样的变换读取测试目录树，计算准确率。原程序在训练后就结束了，这一部分是新增的。

# %%
test_set = ImageFolder(root=folder_root / "test", transform=transform)
correct = 0
mbm.eval()
with tm.no_grad():
    for images, labels in DataLoader(test_set, batch_size=100):
        predictions = mbm(images, image_rows(images)).data.argmax(axis=1)
        correct += int((predictions == labels.data).sum())
print(f"fixed program, MBM test accuracy on {len(test_set)} images: {correct / len(test_set):.3f}")

if losses:
    figure = viz.plot_curve(losses, xlabel="training step", ylabel="loss",
                            title=f"the fixed program at {image_size} x {image_size}")
    lesson.save_figure(figure, options.out, "fixed_program_loss.png")
shown = [dataset[i] for i in np.linspace(0, len(dataset) - 1, 16).astype(int)]
figure = viz.plot_images(np.stack([image.data[0] for image, _ in shown]), labels=[label for _, label in shown],
                         title=f"the ImageFolder images after Resize(({image_size}, {image_size})) and ToTensor")
lesson.save_figure(figure, options.out, "imagefolder_samples.png")

# %% [markdown]
# ## 6. The label leak, made visible
#
# What would the original call `mbm(images, labels)` do? In tinymbm the LSTM
# rejects the integer labels at once. Suppose we "fixed" only that, by turning the
# labels into one-hot float sequences of length 1. Then the RNN reads the label:
# trained for 100 steps of 32 labels, it reaches near-perfect training accuracy.
# At prediction time there is no label, so we can only feed it an empty
# (all-zero) sequence, and its accuracy falls to chance.
#
# ## 6. 让标签泄漏现形
#
# 原来的调用 `mbm(images, labels)` 会发生什么？在 tinymbm 中，LSTM 会立即拒绝整数标签。
# 假设我们只"修正"这一点，把标签转换成长度为 1 的独热浮点序列。那么 RNN 就读到了答案：只训练 100 步（每步 32 个标签），
# 训练准确率就接近 100%。但预测时没有标签，只能喂给它一个空的（全零）序列，准确率随即跌到随机猜测的水平。

# %%
images, labels = next(iter(dataloader))
try:
    mbm(images, labels)
except (TypeError, ValueError) as error:
    print(f"mbm(images, labels) raises {type(error).__name__}: {error}")

leaky = RNN(input_size=num_classes, hidden_size=32, num_layers=1, num_classes=num_classes)
leaky_optimizer = optim.Adam(leaky.parameters(), lr=0.01)
all_labels = np.asarray(dataset.targets)
eye = np.eye(num_classes, dtype=np.float32)
rng = np.random.default_rng(options.seed)
for step in range(100):
    batch = rng.choice(all_labels, size=32)
    loss = criterion(leaky(tm.tensor(eye[batch][:, None, :])), tm.tensor(batch))
    leaky_optimizer.zero_grad()
    loss.backward()
    leaky_optimizer.step()

with tm.no_grad():
    with_answer = leaky(tm.tensor(eye[all_labels][:, None, :])).data.argmax(axis=1)
    without_answer = leaky(tm.zeros(len(all_labels), 1, num_classes)).data.argmax(axis=1)
print(f"RNN fed the labels: training accuracy {(with_answer == all_labels).mean():.3f}; "
      f"with no label to feed: {(without_answer == all_labels).mean():.3f}")

# %% [markdown]
# ## Summary
#
# - The published MBM program misses two imports and six definitions. It feeds the
#   labels to the RNN, which is a label leak and the wrong shape and dtype for an
#   LSTM. It relies on an undescribed `data/` folder, and it hard-codes 10 classes
#   and the 224 × 224 input size.
# - At 224 × 224, fc1 alone has about 411 million weights (1.6 GB in float32,
#   about 6.6 GB with its gradient and Adam's two moments), and one image costs
#   about 2.85 GFLOP forward. Sizing fc1 from the input (128 · (S/4)²) keeps the
#   design and makes it trainable.
# - Fixed, with a real sequence per image, the program trains on tinymbm
#   unchanged in structure: PyTorch's names carry over one for one.
#
# ## 小结
#
# - 发表的 MBM 程序缺少两个导入和六个定义，把标签喂给了 RNN（标签泄漏，而且对 LSTM 来说形状和数据类型都不对），
#   依赖一个没有说明的 `data/` 文件夹，并把 10 个类别和 224 × 224 的输入尺寸写死在代码里。
# - 在 224 × 224 下，仅 fc1 就有约 4.11 亿个权重（float32 下 1.6 GB，连同梯度和 Adam 的两个矩约 6.6 GB），
#   每张图像的前向传播约需 2.85 GFLOP。按输入尺寸确定 fc1 的大小（128 · (S/4)²），既保留了原设计，又使它可以训练。
# - 修正之后，用每张图像自己的真实序列作为输入，这段程序在结构不变的情况下就能在 tinymbm 上训练：
#   PyTorch 的名称可以一一对应地沿用。
#
# ## Exercises / 练习
#
# 1. Replace the row sequence by the column sequence (`images.mean(dim=1).transpose(1, 2)`).
#    Does the accuracy change? Why might columns be harder or easier for an LSTM read
#    at its last step?
#    把逐行序列换成逐列序列（`images.mean(dim=1).transpose(1, 2)`）。准确率会变吗？
#    对于只在最后一步读出的 LSTM，为什么逐列读取可能更难或更容易？
# 2. Use `layer_costs` to find the largest S for which training with Adam
#    (weights, gradients, two moments, activations of a batch of 32) fits in 2 GB.
#    用 `layer_costs` 求出：在用 Adam 训练（权重、梯度、两个矩，以及批大小为 32 的激活）总共不超过 2 GB 时，
#    S 最大可以取多少。
# 3. Put a global max-pool over the 128 feature maps before fc1 (so fc1 has 128
#    inputs at any S). How many parameters are left at 224, and what does the
#    accuracy do at S = 56?
#    在 fc1 之前对 128 个特征图做全局最大池化（这样无论 S 多大，fc1 都只有 128 个输入）。
#    在 224 下还剩多少参数？在 S = 56 时准确率会怎样？

# %%
clock.report()
