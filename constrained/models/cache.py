"""Where built-in tokenizers and models are cached, and how they are written there safely."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """Return the cache root: $CONSTRAINED_CACHE_DIR, else $XDG_CACHE_HOME/constrained, else ~/.cache/constrained."""
    if explicit := os.environ.get("CONSTRAINED_CACHE_DIR"):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "constrained"


def build_once(target: Path, build: Callable[[Path], None]) -> bool:
    """Make sure directory `target` exists, calling `build(tmp_dir)` to create it if it does not.

    The build writes into a temp directory beside `target` that is renamed into place in one step,
    so a reader never sees a half-written directory; when two processes build at once, the first
    rename wins and the other's copy is discarded. Returns True when this call built it.
    """
    if target.is_dir():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared like any ~/.cache entry
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            return False  # another process finished first; its copy is as good as ours
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
