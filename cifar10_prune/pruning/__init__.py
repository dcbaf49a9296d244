"""ISTA channel pruning for any functional Keras 3 CNN (Ye et al., ICLR 2018): the library.

    from cifar10_prune import pruning

    groups = pruning.find_groups(model)        # what can be pruned, and what goes together
    print("\\n".join(pruning.explain(model)))  # why, batch norm by batch norm
    model.compile(optimizer=pruning.ISTA(0.1, l1_penalty=0.005,
                                         penalties=pruning.penalties(model)), ...)
    model.fit(...)                             # gammas reach exactly zero
    slim = pruning.compress(model)             # same function in inference mode, fewer channels

Modules: `groups` (which channels go together, from the graph), `readers` (reader-side pruning:
constant channels leave the convs reading them, the tensor keeps them), `explanation`
(`explain`), `rho` (the penalty weights), `ista` (the optimizer, `coupled`, the sparsity metrics),
`compression` (`plan`, `compress`), `constants` (which channels are constant, and their values),
`borders` (the ones channels that make the fold exact at zero-padded borders), `counting`
(`estimate`: the costs the current zeros would leave), `budget` (`Budget`: a callback adapting
lambda until they meet a target), `ema` (the TF1-style weight averages, and the `MovingAverage`
callback), `layers` (`EmptyConv2D`).
This package never imports the CIFAR-10 recipe around it (a test checks); the recipe is one of
its users. Nor does it import TensorFlow: it runs on every Keras 3 backend (TensorFlow, JAX,
PyTorch; tests/test_backends.py).
"""
from cifar10_prune.pruning.budget import Budget
from cifar10_prune.pruning.compression import Plan, compress, copy_weights, plan
from cifar10_prune.pruning.counting import Costs, estimate
from cifar10_prune.pruning.ema import ExponentialMovingAverage, MovingAverage
from cifar10_prune.pruning.explanation import explain
from cifar10_prune.pruning.groups import Analysis, Group, analyze, find_groups
from cifar10_prune.pruning.ista import ISTA, coupled, format_zeros, penalized, sparsity
from cifar10_prune.pruning.layers import EmptyConv2D
from cifar10_prune.pruning.rho import penalties

__all__ = ["Analysis", "Budget", "Costs", "EmptyConv2D", "ExponentialMovingAverage", "Group",
           "ISTA", "MovingAverage", "Plan", "analyze", "compress", "copy_weights", "coupled",
           "estimate", "explain", "find_groups", "format_zeros", "penalized", "penalties", "plan",
           "sparsity"]
