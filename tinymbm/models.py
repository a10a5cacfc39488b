"""The three models of the multimodal (MBM) design: a CNN, an LSTM reader, and their sum.

The image model's formula is

    CNN(I; W, b) = max_{k∈K} Σ_i Σ_j W_ijk · I_ij + b_k

read as a cross-correlation of each kernel with the image plus its bias,
followed by max-pooling. The sequence model's formula is

    RNN(T; W, b) = max_{t∈T} Σ_i Σ_j W_ij · RNN_ij(t) + b_t

a linear readout of the LSTM's hidden state, pooled over time by a maximum
(``readout="max"``); the common variant reads only the last step
(``readout="last"``). The fusion is the plain sum of the two models' class
scores:

    MBM(I, T) = CNN(I) + RNN(T)
"""

from __future__ import annotations

from typing import Any

from tinymbm import functional as F
from tinymbm import nn
from tinymbm.errors import ShapeError
from tinymbm.tensor import Tensor


class CNN(nn.Module):
    """Two convolution blocks and three fully connected layers.

    conv 3×3 → 64 (padding 1), ReLU, max-pool 2×2, conv 3×3 → 128 (padding 1),
    ReLU, max-pool 2×2, linear → 1024, ReLU, linear → 512, ReLU, linear → classes.

    Args:
        in_channels: C of the input images (1 for MNIST, 3 for RGB).
        num_classes: number of class scores.
        image_size: H = W of the input; each pool halves it (rounding down), so
            fc1 takes 128 · (image_size // 4)² features.

    Shapes: (N, in_channels, image_size, image_size) -> (N, num_classes).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> None:
        super().__init__()
        if image_size < 4:
            raise ValueError(f"CNN: image_size must be at least 4 (two 2x2 pools), got {image_size}")
        self.in_channels = in_channels
        self.image_size = image_size
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(64, 128, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        side = image_size // 2 // 2
        self.flat_features = 128 * side * side
        self.fc1 = nn.Linear(self.flat_features, 1024)
        self.fc2 = nn.Linear(1024, 512)
        self.fc3 = nn.Linear(512, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Return the pooled feature maps, (N, 128, image_size // 4, image_size // 4)."""
        x = self.pool(F.relu(self.conv1(x)))
        return self.pool(F.relu(self.conv2(x)))

    def forward(self, x: Any) -> Tensor:
        if not isinstance(x, Tensor):
            x = Tensor(x)
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ShapeError(
                f"CNN: expected input of shape (N, {expected[0]}, {expected[1]}, {expected[2]}), "
                f"got {x.shape}"
            )
        x = self.features(x).flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class RNN(nn.Module):
    """An LSTM over a sequence, with a linear readout of its hidden states.

    Args:
        input_size: features per time step.
        hidden_size: H of the LSTM.
        num_layers: stacked LSTM layers.
        num_classes: number of class scores.
        readout: "last" scores the top layer's last hidden state,
            fc(h_T); "max" scores every step and takes the maximum over time
            per class, max_t fc(h_t).

    Shapes: (N, T, input_size) (batch first) -> (N, num_classes).
    """

    READOUTS = ("last", "max")

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, num_classes: int,
                 readout: str = "last") -> None:
        super().__init__()
        if readout not in self.READOUTS:
            raise ValueError(f"RNN: readout must be one of {self.READOUTS}, got {readout!r}")
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.readout = readout
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Any) -> Tensor:
        out, _ = self.lstm(x)
        if self.readout == "last":
            return self.fc(out[:, -1, :])
        scores = self.fc(out)
        return scores.max(dim=1)[0]

    def extra_repr(self) -> str:
        return f"readout={self.readout!r}"


class MBM(nn.Module):
    """The summed fusion: MBM(I, T) = CNN(I) + RNN(T).

    Both sub-models must return class scores of the same shape; the fusion
    adds them element by element, so each model's evidence counts in the
    same units (logits), and the gradient of the sum reaches both unchanged.
    """

    def __init__(self, cnn: nn.Module, rnn: nn.Module) -> None:
        super().__init__()
        self.cnn = cnn
        self.rnn = rnn

    def forward(self, image: Any, sequence: Any) -> Tensor:
        image_scores = self.cnn(image)
        sequence_scores = self.rnn(sequence)
        if image_scores.shape != sequence_scores.shape:
            raise ShapeError(
                f"MBM: the image model returned scores of shape {image_scores.shape} but the "
                f"sequence model returned {sequence_scores.shape}; both must give (N, num_classes)"
            )
        return image_scores + sequence_scores
