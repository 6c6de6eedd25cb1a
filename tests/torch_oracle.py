"""PyTorch/torchvision as an optional test oracle.

The PyPI ``torchvision`` wheel ships CUDA-linked C++ ops (``nms``, ``roi_align``, ...)
that fail to load beside a CPU build of ``torch``; its import then stops while it
registers their meta kernels. The tests use only torchvision's pure-Python model
definitions, so the registration module is stubbed out before the import.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest


def torch() -> Any:
    """Returns ``torch`` or skips the test."""
    return pytest.importorskip("torch")


def torchvision() -> Any:
    """Returns ``torchvision`` (its models, without its C++ ops) or skips the test."""
    torch()
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    return pytest.importorskip("torchvision")


def keras() -> Any:
    """Returns ``keras`` on the JAX backend or skips the test."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")
