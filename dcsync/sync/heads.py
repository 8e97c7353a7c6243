"""``update_refs`` on the server: move pushed HEADs by compare-and-swap, fast-forward only.

Each move checks, before any lock, that everything the new HEAD needs arrived (in this session's
quarantine, or stored already) and is what its references promise; then, under the store's lock,
it compares HEAD with what the client expected, imports the needed objects, asks the ACL and the
pre-receive hook, and moves HEAD, in one crash-safe transaction. ``atomic`` puts every move in one
batch (:meth:`~dcsync.sync.stores.DetectorStores.batch`): all land or none. A new detector's store
is made only once what it needs has arrived, and removed again if its first push is refused.
post-receive runs after the commit point: it reacts, it cannot refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from dcsync.errors import DcsyncError, NotFastForward, ProtocolError, RefConflict
from dcsync.model.hashing import ObjectId
from dcsync.repo.graph import is_ancestor
from dcsync.repo.reach import walk_missing
from dcsync.store.base import ObjectStore
from dcsync.store.memory import MemoryStore
from dcsync.store.refs import HEAD, LogRecord
from dcsync.sync.methods import detector, object_id
from dcsync.sync.protocol import error_to_wire
from dcsync.sync.quarantine import Quarantine, Sessions
from dcsync.sync.stores import Batch, DetectorStores
from dcsync.workspace.acl import Identity
from dcsync.workspace.policy import Incoming, Policy


class Move(NamedTuple):
    detector: str
    old: ObjectId | None
    new: ObjectId


def parse_updates(updates: list[Any]) -> list[Move]:
    """The ``updates`` argument, checked: each names a detector once, and ids where ids go."""
    moves = []
    for update in updates:
        if not isinstance(update, dict):
            raise ProtocolError("each update is a map")
        old = update.get("old")
        det, new = detector(update.get("detector")), object_id(update.get("new"))
        moves.append(Move(det, None if old is None else object_id(old), new))
    if len({m.detector for m in moves}) != len(moves):  # atomic: the group holds its first lock
        raise ProtocolError("update_refs names a detector more than once")
    return moves


def received(
    store: ObjectStore, arrived: Quarantine, new: ObjectId, *, peer: str, detector: str
) -> list[ObjectId]:
    """The objects ``new`` needs that ``store`` lacks, each checked by the walk (:func:`walk_missing`)
    to have arrived, to be of the kind its reference promises, to keep the validity rules and, for
    trees, to be within the size limits (dcsync.model.limits)."""
    return [oid for oid, _, _ in walk_missing(store, arrived, new, peer=peer, detector=detector)]


@dataclass
class HeadMover:
    """Moves HEADs for one server session: its stores, quarantines, policy and caller."""

    stores: DetectorStores
    quarantines: Sessions
    policy: Policy
    who: Identity  # the authenticated caller: the ACL judges it, the log records it
    claimed: dict[str, Any] = field(default_factory=dict)  # what the client said in hello

    @property
    def claimant(self) -> str:
        """The client as it said it was (user@host): for logs and messages, never for decisions."""
        return f"{self.claimed.get('user') or '?'}@{self.claimed.get('host') or '?'}"

    @property
    def peer(self) -> str:
        return f"the client {self.claimant}"

    def update(self, moves: list[Move], *, atomic: bool, message: str) -> dict[str, Any]:
        """Apply ``moves``; per-detector results, and what post-receive hooks said."""
        unmoved = {m.detector: self.unmoved(m.detector, m.old) for m in moves if m.old == m.new}
        todo = [m for m in moves if m.detector not in unmoved]
        landed: list[Incoming] = []
        if atomic:
            for conflict in unmoved.values():
                if conflict is not None:
                    raise conflict
            with self.stores.batch(atomic=bool(todo)) as batch:  # nothing to move: no lock taken
                landed = [self.move(m, message, batch) for m in todo]
            results: list[dict[str, Any]] = [{"detector": m.detector, "ok": True} for m in moves]
        else:
            results = [self._one(m, unmoved, message, landed) for m in moves]
        notes = []
        for incoming in landed:  # after the commit point: post-receive reacts, it cannot refuse
            store = self.stores.open(incoming.detname)
            try:
                incoming.store = store
                notes.extend(self.policy.after(incoming))
            finally:
                store.close()
        for m in todo:
            if all(r["ok"] for r in results if r["detector"] == m.detector):
                self.quarantines.clear(m.detector)
        return {"results": results, "notes": notes}

    def _one(
        self, m: Move, unmoved: dict[str, DcsyncError | None], message: str, landed: list[Incoming]
    ) -> dict[str, Any]:
        """One move of a batch that is not atomic: its failure is its own result."""
        try:
            if m.detector in unmoved:
                conflict = unmoved[m.detector]
                if conflict is not None:
                    raise conflict
            else:
                with self.stores.batch(atomic=False) as batch:
                    landed.append(self.move(m, message, batch))
        except DcsyncError as exc:
            return {"detector": m.detector, "ok": False, "error": error_to_wire(exc)}
        return {"detector": m.detector, "ok": True}

    def unmoved(self, det: str, head: ObjectId | None) -> DcsyncError | None:
        """A no-op update (old = new): answered from HEAD as it is, with no lock taken, no hook run
        and nothing written (a log record for it would only be noise anyone could add). Returns
        the error to report for this detector (a conflict if HEAD is elsewhere), or None."""
        try:
            store = self.stores.open(det)
            try:
                current = store.head()
            finally:
                store.close()
        except DcsyncError as exc:
            return exc
        if current != head:
            return RefConflict(f"{det}: the remote HEAD is {current} (you expected {head}); pull first")
        return None

    def move(self, m: Move, message: str, batch: Batch) -> Incoming:
        """Move one HEAD from ``m.old`` to ``m.new`` (see the module docstring)."""
        quarantine = self.quarantines.get(m.detector)
        created = False
        needed: list[ObjectId] | None = None
        if m.old is None and not self.stores.exists(m.detector):
            # A new detector: check everything arrived before creating its store, so a refused
            # push leaves nothing behind. A concurrent push may be first: the CAS decides.
            needed = received(MemoryStore(), quarantine, m.new, peer=self.peer, detector=m.detector)
            created = self.stores.create(m.detector)
        if needed is None:
            # Walking and checking what arrived needs no lock: done on the committed store first,
            # so the lock covers only the commit. A reader sees committed states only, and
            # committed objects stay, so what it found stays found; the CAS under the lock catches
            # a HEAD that moved meanwhile, and importing skips objects that landed meanwhile.
            reader = self.stores.open(m.detector)
            try:
                needed = received(reader, quarantine, m.new, peer=self.peer, detector=m.detector)
            finally:
                reader.close()
        store = self.stores.open(m.detector)
        try:
            with batch.writing(store):
                return self._commit(store, m, needed, quarantine, message)
        except BaseException:
            if created:  # refused (ACL, hook, conflict): the store we made for it must not stay
                store.close()
                self.stores.discard_if_empty(m.detector)
            raise
        finally:
            store.close()

    def _commit(
        self, store: ObjectStore, m: Move, needed: list[ObjectId], quarantine: Quarantine, message: str
    ) -> Incoming:
        """The part of a move under the store's lock: CAS, import, checks, HEAD."""
        current = store.head()
        if current != m.old:
            raise RefConflict(
                f"{m.detector}: the remote HEAD moved to {current} (you expected {m.old}); pull first"
            )
        quarantine.import_into(store, needed)
        if m.old is not None and not is_ancestor(store, m.old, m.new):
            raise NotFastForward(f"{m.detector}: not a fast-forward of the remote HEAD; pull first")
        incoming = Incoming(
            m.detector,
            store,
            m.old,
            m.new,
            "push",
            self.who,
            str(self.claimed.get("host", "")),
            self.claimant,
            quarantine.payload_path,
        )
        self.policy.check(incoming, phase="pre-receive")
        store.set_ref(HEAD, m.old, m.new, self._record(m, message, incoming))
        return incoming

    def _record(self, m: Move, message: str, incoming: Incoming) -> LogRecord:
        # The record's user and served_as are the identity this session was authenticated as
        # (the SSH login the ACL judged): facts. What the client said about itself in hello is
        # kept, labelled as its claim.
        return LogRecord(
            HEAD,
            m.old,
            m.new,
            "push received",
            message or f"push by {self.who.user}",
            user=self.who.user,
            extra={
                "served_as": self.who.user,
                "claimed_user": self.claimed.get("user", ""),
                "claimed_host": self.claimed.get("host", ""),
                "promoted_from": [c["meta"]["promote"] for c in incoming.commits() if "promote" in c["meta"]],
            },
        )
