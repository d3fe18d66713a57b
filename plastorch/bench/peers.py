"""Optional peer libraries, imported only if installed.

The ``bench`` extra installs SpikingJelly, BindsNET and inferno with ``--no-deps``
next to the installed torch, so their optional dependencies may be missing.
Each loader returns a :class:`Peer` whose ``module`` is ``None`` and whose
``status`` says why when the library cannot be used; the suite then prints a
"not installed" (or "import failed") row instead of a time.

BindsNET's top-level ``__init__`` imports every sub-package, including datasets
(torchvision), analysis (pandas) and environments (gymnasium, opencv). When that
fails, :func:`load_bindsnet` registers an empty package object for ``bindsnet``
whose search path is the installed package directory and imports only
``bindsnet.network``, ``bindsnet.learning`` and ``bindsnet.models``, which need
torch, numpy and scipy. Nothing in site-packages is modified; the registration
lives in this process's ``sys.modules`` only.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import types
from dataclasses import dataclass
from functools import cache

__all__ = ["PEER_NAMES", "Peer", "load_bindsnet", "load_inferno", "load_peer", "load_spikingjelly"]

PEER_NAMES: tuple[str, ...] = ("spikingjelly", "bindsnet", "inferno")


@dataclass(frozen=True)
class Peer:
    """A peer library: its name, version, loaded module (or ``None``) and status line."""

    name: str
    version: str | None
    module: types.ModuleType | None
    status: str

    @property
    def available(self) -> bool:
        return self.module is not None

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}" if self.version else self.name


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _missing(name: str, distribution: str) -> Peer:
    return Peer(name, None, None, f"not installed (pip install --no-deps {distribution})")


def _failed(name: str, version: str | None, error: BaseException) -> Peer:
    return Peer(name, version, None, f"import failed: {type(error).__name__}: {error}")


@cache
def load_spikingjelly() -> Peer:
    """SpikingJelly's ``activation_based.learning`` (needs loguru, tensorboard, protobuf)."""
    version = _version("spikingjelly")
    if version is None:
        return _missing("spikingjelly", "spikingjelly")
    try:
        module = importlib.import_module("spikingjelly.activation_based.learning")
    except Exception as error:  # noqa: BLE001 - any import-time failure of an optional peer
        return _failed("spikingjelly", version, error)
    return Peer("spikingjelly", version, module, "ok")


@cache
def load_bindsnet() -> Peer:
    """BindsNET's network, learning and models packages (see the module docstring)."""
    version = _version("bindsnet")
    if version is None:
        return _missing("bindsnet", "bindsnet")
    try:
        module = importlib.import_module("bindsnet")
        status = "ok"
    except Exception as error:  # noqa: BLE001
        spec = importlib.util.find_spec("bindsnet")
        if spec is None or not spec.submodule_search_locations:
            return _failed("bindsnet", version, error)
        for name in [m for m in sys.modules if m == "bindsnet" or m.startswith("bindsnet.")]:
            del sys.modules[name]
        package = types.ModuleType("bindsnet")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        package.__file__ = spec.origin
        sys.modules["bindsnet"] = package
        try:
            # network first: bindsnet.learning and bindsnet.network import each other.
            for sub in ("network", "learning", "models"):
                setattr(package, sub, importlib.import_module(f"bindsnet.{sub}"))
        except Exception as inner:  # noqa: BLE001
            del sys.modules["bindsnet"]
            return _failed("bindsnet", version, inner)
        module = package
        status = (
            f"ok (network/learning/models only; 'import bindsnet' fails: "
            f"{type(error).__name__}: {error})"
        )
    return Peer("bindsnet", version, module, status)


@cache
def load_inferno() -> Peer:
    """inferno (``pip install inferno-ai``; needs einops)."""
    version = _version("inferno-ai")
    if version is None:
        return _missing("inferno", "inferno-ai")
    try:
        module = importlib.import_module("inferno")
        importlib.import_module("inferno.learn")
        importlib.import_module("inferno.neural")
    except Exception as error:  # noqa: BLE001
        return _failed("inferno", version, error)
    return Peer("inferno", version, module, "ok")


def load_peer(name: str) -> Peer:
    """Load a peer by name: one of :data:`PEER_NAMES`.

    Examples
    --------
    >>> load_peer("spikingjelly").name
    'spikingjelly'
    """
    loaders = {
        "spikingjelly": load_spikingjelly,
        "bindsnet": load_bindsnet,
        "inferno": load_inferno,
    }
    if name not in loaders:
        raise ValueError(f"peer must be one of {PEER_NAMES}, got {name!r}")
    return loaders[name]()
