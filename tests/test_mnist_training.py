"""Training on real MNIST: a small MLP reaches 97% test accuracy in one epoch."""

import numpy as np
from conftest import real_data_dir

import tinymbm as tm
import tinymbm.functional as F
from tinymbm import nn, optim
from tinymbm.data import MNIST, DataLoader, TensorDataset
from tinymbm.train import evaluate


def normalized(images):
    # MNIST's published pixel mean and standard deviation, on the 0-1 scale.
    return ((images.astype(np.float32) / 255.0 - 0.1307) / 0.3081).reshape(len(images), -1)


def test_mlp_one_epoch_reaches_97_percent():
    root = real_data_dir("mnist")
    train, test = MNIST(root, train=True), MNIST(root, train=False)
    tm.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
    peak_lr = 3e-3
    optimizer = optim.Adam(model.parameters(), lr=peak_lr)
    train_loader = DataLoader(TensorDataset(normalized(train.data), train.targets), batch_size=64, shuffle=True, seed=0)
    test_loader = DataLoader(TensorDataset(normalized(test.data), test.targets), batch_size=1000)

    # The learning rate decays linearly to 0 over the epoch: large steps early,
    # fine ones at the end, which is what one epoch needs to settle.
    for step, (images, labels) in enumerate(train_loader):
        optimizer.param_groups[0]["lr"] = peak_lr * (1 - step / len(train_loader))
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _, accuracy = evaluate(model, test_loader)

    print(f"MLP test accuracy after one epoch: {accuracy:.4f}")
    assert accuracy >= 0.97
