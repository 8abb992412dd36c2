"""FusionBench, the peer library, as the tests and benchmarks use it: single modules, without its framework.

`import fusion_bench` pulls in lightning, hydra and transformers; the modules compared against need only torch, so
each is loaded under bare parent packages.
"""

import copy
import importlib
import importlib.util
import sys
import types
from pathlib import Path

from torch import Tensor, nn


def fusion_bench_module(dotted: str):
    """The module `dotted` (``fusion_bench.…``) of the installed FusionBench."""
    loaded = sys.modules.get("fusion_bench")  # a bare package from an earlier call has no spec to find
    root = Path(
        loaded.__path__[0]
        if loaded
        else importlib.util.find_spec("fusion_bench").submodule_search_locations[0]
    )
    parts = dotted.split(".")
    for depth in range(1, len(parts)):
        name = ".".join(parts[:depth])
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(root.joinpath(*parts[1:depth]))]
            sys.modules[name] = package
    return importlib.import_module(dotted)


def linearized_wrapper(module: nn.Module, theta0: dict[str, Tensor], theta: dict[str, Tensor]) -> nn.Module:
    """FusionBench's `LinearizedModelWraper` around a copy of `module` holding θ, linearized at θ0."""
    wrapper = fusion_bench_module(
        "fusion_bench.models.linearized.linearized_model_utils"
    ).LinearizedModelWraper
    init, moved = copy.deepcopy(module), copy.deepcopy(module)
    init.load_state_dict(theta0, strict=False)
    moved.load_state_dict(theta, strict=False)
    return wrapper(moved, init_model=init)
