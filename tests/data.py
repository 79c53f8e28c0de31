"""Locate the project's read-only shared data (``shared/data`` beside the repository).

The one helper, :func:`shared_data`, is the only place tests learn where the data lives:
``$FUNCTIONARY_SHARED_DATA`` if set, else ``<repo root>/../shared/data``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["REPO_ROOT", "shared_data_root", "shared_data"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """The shared data directory (not checked for existence)."""
    env = os.environ.get("FUNCTIONARY_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path of ``shared/data/<parts...>``; fails loudly if it does not exist.

    Under pytest a missing path fails the calling test (``pytest.fail``) with a message that
    says where it looked; elsewhere it raises ``FileNotFoundError``.

    Examples
    --------
    >>> shared_data("bfcl")                                   # doctest: +SKIP
    PosixPath('/work/shared/data/bfcl')
    """
    root = shared_data_root()
    path = root.joinpath(*parts)
    if path.exists():
        return path
    how = ("$FUNCTIONARY_SHARED_DATA" if os.environ.get("FUNCTIONARY_SHARED_DATA")
           else "<repo>/../shared/data (set $FUNCTIONARY_SHARED_DATA to override)")
    what = "shared data directory" if not root.is_dir() else "shared data path"
    msg = f"{what} missing: {path} (looked in {how})"
    if "pytest" in sys.modules:
        import pytest

        pytest.fail(msg, pytrace=False)
    raise FileNotFoundError(msg)
