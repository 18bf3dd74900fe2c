"""Adapters to simulation engines (phonopy, i-PI). Each imports its engine lazily and
names the extra to install when it is missing."""

from __future__ import annotations

import importlib


def require(module: str, extra: str, package: str | None = None):
    """Import ``module`` or raise an ``ImportError`` naming the ase_gnnp extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{package or module} is needed for this; install it with "
            f"pip install 'ase_gnnp[{extra}]'"
        ) from err
