"""Layers: modules that hold parameters, with PyTorch's names, shapes and initializations."""

from tinymbm.nn import init
from tinymbm.nn.activation import Flatten, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from tinymbm.nn.container import ModuleList, Sequential
from tinymbm.nn.conv import Conv2d
from tinymbm.nn.linear import Identity, Linear
from tinymbm.nn.loss import CrossEntropyLoss, MSELoss, NLLLoss
from tinymbm.nn.module import Module, Parameter
from tinymbm.nn.pooling import MaxPool2d
from tinymbm.nn.rnn import LSTM, LSTMCell

__all__ = [
    "LSTM",
    "Conv2d",
    "CrossEntropyLoss",
    "Flatten",
    "Identity",
    "LSTMCell",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "ModuleList",
    "NLLLoss",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "init",
]
