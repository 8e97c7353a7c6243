"""What a version entry says about its payload (kind, dtype, shape, nbytes), checked against the
payload itself.

Entries carry these so listings, diffs, the ACL and the hooks never load a payload, which makes
them worth exactly what this check makes them worth: a peer could otherwise send a float64 (5, 7)
array under an entry that says ``<f4`` (3, 4), and ``ls`` and the ``check-dtype-shape`` hook
would judge the claim, not the data. A payload's id hashes its own dtype and shape
(:mod:`dcsync.model.hashing`), so the payload's header is the truth, and reading it costs one HDF5
dataset header or ``.npy`` header, never the data (a text payload, kept small, is read).

One function judges every path: objects received from a peer (the receive walk,
:func:`dcsync.repo.reach.walk_missing`: a push on the server; fetch, pull, clone and diff on the
client) and ``verify`` (which also covers a whole file before it is adopted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from dcsync.errors import CorruptObject, ProtocolError
from dcsync.model.hashing import ObjectId, dtype_string
from dcsync.model.objects import VersionEntry, Via
from dcsync.store.base import ObjectStore

__all__ = ["PayloadFacts", "claims_error", "disagreements", "stored_facts"]


@dataclass(frozen=True)
class PayloadFacts:
    """What a payload is, from its own header: the values an entry must repeat."""

    kind: Literal["array", "text"]
    dtype: str  # "" for text, as entries say it
    shape: tuple[int, ...]
    nbytes: int

    @classmethod
    def of_array(cls, dtype: np.dtype, shape: tuple[int, ...]) -> PayloadFacts:
        size = 1
        for n in shape:  # Python ints: a hostile header's product cannot wrap around
            size *= int(n)
        return cls("array", dtype_string(dtype), tuple(int(n) for n in shape), size * dtype.itemsize)

    @classmethod
    def of_text(cls, nbytes: int) -> PayloadFacts:
        return cls("text", "", (), nbytes)


def stored_facts(store: ObjectStore, oid: ObjectId) -> PayloadFacts:
    """A stored payload's facts: an array's dataset header (no data read), a text's UTF-8 length."""
    dtype, shape = store.payload_info(oid)
    if dtype is not None:
        return PayloadFacts.of_array(dtype, shape)
    value = store.read_payload(oid)
    if not isinstance(value, str):
        raise CorruptObject(f"object {oid} in {store.where} is stored as text but reads as an array")
    return PayloadFacts.of_text(len(value.encode("utf-8")))


def disagreements(entry: VersionEntry, facts: PayloadFacts) -> list[str]:
    """Each field of ``entry`` that the payload contradicts, naming the field and both values
    (empty when the entry tells the truth)."""
    out = []
    if entry.kind != facts.kind:
        out.append(f"kind {entry.kind!r} (the payload is {facts.kind!r})")
    if entry.dtype != facts.dtype:
        out.append(f"dtype {entry.dtype!r} (the payload is {facts.dtype!r})")
    if tuple(entry.shape) != facts.shape:
        out.append(f"shape {tuple(entry.shape)} (the payload is {facts.shape})")
    if entry.nbytes != facts.nbytes:
        out.append(f"nbytes {entry.nbytes} (the payload has {facts.nbytes})")
    return out


def claims_error(
    entry: VersionEntry, problems: list[str], *, what: Via | str, where: str, peer: str | None
) -> ProtocolError | CorruptObject:
    """The refusal of ``entry`` (``what`` names it: a :class:`Via`) whose claims ``problems``
    lists: :class:`ProtocolError` naming ``peer`` when the peer sent the entry (or the payload it
    is checked against), else the file's own :class:`CorruptObject`."""
    claims = ", ".join(problems)
    if peer is not None:
        return ProtocolError(f"{peer} sent {what} claiming {claims} for payload {entry.obj}")
    return CorruptObject(f"{what} in {where} claims {claims} for payload {entry.obj}")
