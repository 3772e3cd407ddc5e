"""Compiled grammars on disk, so a restarted server does not compile its schemas again.

One file per grammar, named by a hash of everything that decides the compiled result (the caller's
key: constraint, backend, tokenizer, vocabulary rows, EOS ids) and of the code that compiles it: the
versions of the mask libraries and the source of `constrained.compiler` and `grammars/`. A changed
library, tokenizer or compiler simply misses. Files are written to a temp name and renamed, so a
reader never sees half a file; a file whose checksum does not match (truncated, edited) is ignored
and written again. Failing to write (disk full, read-only) only logs: the cache is an optimisation.

The directory is bounded in bytes: past `max_bytes`, the least recently used entries (by mtime, which
a read refreshes) are deleted. Temp files left by a killed writer are deleted when a cache opens.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from functools import cache
from importlib import metadata, resources
from pathlib import Path

from constrained.engine.stats import DiskCacheStats
from constrained.models.cache import cache_dir

log = logging.getLogger(__name__)

_LIBRARIES = ("llguidance", "outlines-core")
_DIGEST = hashlib.sha256().digest_size
_STALE_TMP_S = 60.0  # a temp file older than this lost its writer (a write takes milliseconds)
_PRUNE_TO = 0.9  # pruning leaves this fraction of max_bytes, so it does not run on every write


def default_compile_cache_dir() -> Path:
    """`grammars/` under the cache root (~/.cache/constrained unless CONSTRAINED_CACHE_DIR says otherwise)."""
    return cache_dir() / "grammars"


class DiskCache:
    def __init__(self, directory: Path, max_bytes: int = 1 << 30):
        self.directory = Path(directory).expanduser()
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._bytes = 0  # this process's view of the directory's size: rescanned whenever it prunes
        self.stats = DiskCacheStats()  # updated under self._lock (api/metrics.py reads it)
        self._prune()

    def get(self, key: str) -> bytes | None:
        """The bytes stored under `key`, or None when absent or damaged; a hit becomes the most recently used."""
        path = self._path(key)
        try:
            stored = path.read_bytes()
        except OSError:
            self._count("misses")
            return None
        checksum, data = stored[:_DIGEST], stored[_DIGEST:]
        if hashlib.sha256(data).digest() != checksum:
            log.warning("ignoring damaged compile cache entry %s", path)
            self._count("failures")
            return None
        self._count("hits")
        try:
            os.utime(path)
        except OSError:
            pass
        return data

    def delete(self, key: str) -> None:
        """Remove the entry under `key`, if any (one that failed to load)."""
        self._count("failures")
        try:
            self._path(key).unlink()
        except OSError:
            pass

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
            self._count("failures")
            return
        with self._lock:
            self._bytes += _DIGEST + len(data)
            over = self._bytes > self.max_bytes
        if over:
            self._prune()

    def _prune(self) -> None:
        """Delete stale temp files, then the least recently used entries until the directory holds at most
        `_PRUNE_TO` of `max_bytes`."""
        entries, total, now = [], 0, time.time()
        with self._lock:
            for path in self.directory.glob("*/*"):
                try:
                    stat = path.stat()
                    if path.name.endswith(".tmp"):
                        if now - stat.st_mtime > _STALE_TMP_S:
                            path.unlink()
                        continue
                except OSError:  # gone meanwhile (another server sharing the directory)
                    continue
                entries.append((stat.st_mtime, stat.st_size, path))
                total += stat.st_size
            if total > self.max_bytes:
                entries.sort(key=lambda entry: entry[0])
                for _, size, path in entries:
                    if total <= self.max_bytes * _PRUNE_TO:
                        break
                    try:
                        path.unlink()
                    except OSError:
                        continue
                    total -= size
                    self.stats.evictions += 1
            self._bytes = total

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)

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
