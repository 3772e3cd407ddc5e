"""Compiled grammars on disk, so a restarted server does not compile its schemas again.

One file per grammar, named by a hash of everything that decides the compiled result (the caller's
key: constraint, backend, tokenizer, vocabulary rows, EOS ids) and of the code that compiles it: the
versions of the mask libraries and the source of `constrained.compiler` and `grammars/`. A changed
library, tokenizer or compiler simply misses. Files are written to a temp name and renamed, so a
reader never sees half a file; a file whose checksum does not match (truncated, edited) is ignored
and written again. Failing to write (disk full, read-only) only logs: the cache is an optimisation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from functools import cache
from importlib import metadata, resources
from pathlib import Path

from constrained.models.cache import cache_dir

log = logging.getLogger(__name__)

_LIBRARIES = ("llguidance", "outlines-core")
_DIGEST = hashlib.sha256().digest_size


def default_compile_cache_dir() -> Path:
    """`grammars/` under the cache root (~/.cache/constrained unless CONSTRAINED_CACHE_DIR says otherwise)."""
    return cache_dir() / "grammars"


class DiskCache:
    def __init__(self, directory: Path):
        self.directory = Path(directory).expanduser()

    def get(self, key: str) -> bytes | None:
        """The bytes stored under `key`, or None when absent or damaged."""
        try:
            stored = self._path(key).read_bytes()
        except OSError:
            return None
        checksum, data = stored[:_DIGEST], stored[_DIGEST:]
        if hashlib.sha256(data).digest() != checksum:
            log.warning("ignoring damaged compile cache entry %s", self._path(key))
            return None
        return data

    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, atomically."""
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            with os.fdopen(fd, "wb") as file:
                file.write(hashlib.sha256(data).digest() + data)
            os.replace(tmp, target)
        except OSError as exc:
            log.warning("could not write compile cache entry %s: %s", target, exc)

    def _path(self, key: str) -> Path:
        name = hashlib.sha256(f"{key}:{code_fingerprint()}".encode()).hexdigest()
        return self.directory / name[:2] / name


@cache
def code_fingerprint() -> str:
    """Hash of the mask libraries' versions and of the compiler's own source and grammar files."""
    digest = hashlib.sha256()
    for library in _LIBRARIES:
        digest.update(f"{library}=={metadata.version(library)};".encode())
    compiler_dir = Path(__file__).parent
    grammars = resources.files("grammars")
    sources = sorted(compiler_dir.rglob("*.py")) + sorted(Path(str(grammars)).glob("*.lark"))
    for source in sources:
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()
