"""Neuron models that emit spikes: LIF, adaptive-threshold LIF, Izhikevich.

All take ``[B, *shape]`` per step (or ``[T, B, *shape]`` with ``step_mode="multi"``),
keep their state in registered buffers sized to the batch on the first call, and return
0/1 spikes in the input's dtype. Time is in ms, potentials in mV.
"""

from plastorch.neurons.base import SpikingNeuron
from plastorch.neurons.izhikevich import IZHIKEVICH_PRESETS, Izhikevich
from plastorch.neurons.lif import LIF, AdaptiveLIF

__all__ = ["SpikingNeuron", "LIF", "AdaptiveLIF", "Izhikevich", "IZHIKEVICH_PRESETS"]
