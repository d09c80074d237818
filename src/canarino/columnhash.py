"""Keyed pseudonyms of whole Arrow columns, hashed by DataFusion in one call per column.

Hashing one short value with :mod:`hashlib` costs about a microsecond, nearly all of it
Python's call overhead; a dump of a million rows holds about three million identifier
forms. DataFusion (Apache Arrow's query engine, in Rust) hashes a whole column per call,
with the CPU's SHA extensions where it has them, at a third of the cost.

HMAC-SHA256 is SHA-256 over the outer key pad and the SHA-256 of the inner key pad and
the message (RFC 2104), so two nested ``sha256`` calls give the very bytes
:meth:`canarino.normalize.Pseudonymizer.digest` gives; the tests compare them.

DataFusion runs queries on a thread pool that does not survive ``fork()``: a forked
child of a process that has used it would wait forever. So a hasher is only ever made
in a process that has not made one before forking (the trace's worker processes), and
a process whose parent made one gets none and keeps to :mod:`hashlib`.
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

# The process that made a hasher; a forked child inherits the value and so knows.
_MADE_IN: int | None = None
_TABLE = "column_to_hash"


class ColumnHasher:
    """HMAC-SHA256 of many messages under one key, given as its two 64-byte pads."""

    def __init__(self, inner_pad: bytes, outer_pad: bytes) -> None:
        from datafusion import SessionConfig, SessionContext, col, lit
        from datafusion import functions as f

        # One partition: the trace already runs one worker process per CPU.
        self._ctx = SessionContext(SessionConfig().with_target_partitions(1))
        self._expr = f.sha256(
            f.concat(lit(outer_pad), f.sha256(f.concat(lit(inner_pad), col("m"))))
        )
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return "ColumnHasher(<key hidden>)"

    @classmethod
    def start(cls, inner_pad: bytes, outer_pad: bytes) -> ColumnHasher | None:
        """A hasher for this process, or None when DataFusion cannot be used safely here."""
        global _MADE_IN
        if _MADE_IN is not None and os.getpid() != _MADE_IN:
            return None
        try:
            hasher = cls(inner_pad, outer_pad)
        except ImportError:
            return None
        _MADE_IN = os.getpid()
        return hasher

    def usable(self) -> bool:
        """False in a process forked after this hasher was made."""
        return self._pid == os.getpid()

    def digests(self, prefix: bytes, messages: pa.Array) -> npt.NDArray[np.uint8]:
        """The ``(n, 32)`` HMACs of ``prefix`` + each binary message."""
        if not len(messages):
            return np.zeros((0, 32), dtype=np.uint8)
        joined = pc.binary_join_element_wise(pa.scalar(prefix), messages, pa.scalar(b""))
        # from_arrow registers the column as a table of the session: without taking it
        # off again, every column hashed would stay in memory for the process's life.
        frame = self._ctx.from_arrow(pa.table({"m": joined}), name=_TABLE)
        try:
            table = frame.select(self._expr.alias("d")).to_arrow_table()
        finally:
            self._ctx.deregister_table(_TABLE)
        out = table.column(0).combine_chunks().cast(pa.binary())
        n = len(out)
        offsets = np.frombuffer(out.buffers()[1], dtype=np.int32)[out.offset : out.offset + n + 1]
        if out.null_count or n != len(messages) or offsets[-1] - offsets[0] != 32 * n:
            raise RuntimeError("the column hasher returned an incomplete result")
        # Every digest is 32 bytes, so the value buffer is the (n, 32) array itself.
        data = np.frombuffer(out.buffers()[2], dtype=np.uint8)
        return data[offsets[0] : offsets[0] + 32 * n].reshape(-1, 32)
