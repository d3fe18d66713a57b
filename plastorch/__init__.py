"""plastorch: synaptic plasticity rules for spiking neural networks in PyTorch.

>>> import torch, plastorch
>>> fc = torch.nn.Linear(64, 10, bias=False)
>>> learner = plastorch.Learner(fc, torch.nn.Identity(), plastorch.rules.STDP(1e-3, -1e-3))
"""

from . import bounds, distributed, functional, layers, monitors, rules
from .functional import Update, correlate
from .learner import Learner
from .rules import MSTDP, MSTDPET, STDP

__version__ = "0.1.0"

__all__ = [
    "MSTDP",
    "MSTDPET",
    "STDP",
    "Learner",
    "Update",
    "bounds",
    "correlate",
    "distributed",
    "functional",
    "layers",
    "monitors",
    "rules",
]
