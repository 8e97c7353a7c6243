"""Access control: who may do what in a workspace, from ``.dcsync/acl.toml``.

    kind = "experiment"            # repository | experiment | local
    group = "xpp12345"             # experiment: the Unix group whose members write
    owner = "alice"                # local: the owner (default: the directory's owner)

    [[rule]]
    principals = ["user:bob", "group:xppops"]      # user:NAME, group:NAME or "*"
    allow = ["read", "add", "set-default"]         # read add set-default remove admin
    detectors = ["epix*"]                          # optional globs (default: all)
    ctypes = ["pedestals", "pixel_*"]              # optional globs (default: all)

Permissions: ``read``; ``add`` (new versions, parameters, new detectors); ``set-default``;
``remove``; ``admin`` (the ACL itself, detector links). ``admin`` implies all the others.
Rules only grant; the kind's defaults come first:

- repository: everyone reads; only the persons the rules list write;
- experiment: everyone reads; members of ``group`` read, add, set defaults and remove; the
  workspace directory's owner is admin;
- local: the owner does everything, nobody else anything.

The server enforces this with the OS identity its SSH session runs as (user and all its groups);
the local API enforces it too, on every repository opened through its workspace (the workspace's
policy is the repository's commit guard). Every ACL change needs ``admin`` and is appended to
``.dcsync/acl.log``.
"""

from __future__ import annotations

import fnmatch
import grp
import json
import os
import pwd
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from dcsync.errors import AccessDenied, InputError, UsageError
from dcsync.model.identity import effective_user
from dcsync.model.times import now_ns

PERMISSIONS = ("read", "add", "set-default", "remove", "admin")
KINDS = ("local", "experiment", "repository")
ACL_FILE = "acl.toml"
ACL_LOG = "acl.log"


@dataclass(frozen=True)
class Identity:
    """A user and every group it belongs to (as the OS says)."""

    user: str
    groups: frozenset[str] = frozenset()

    @classmethod
    def of_user(cls, user: str) -> Identity:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            return cls(user)
        gids = os.getgrouplist(user, entry.pw_gid)
        return cls(user, frozenset(_group_name(g) for g in gids))

    def principals(self) -> set[str]:
        return {"*", f"user:{self.user}", *(f"group:{g}" for g in self.groups)}


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def current_identity() -> Identity:
    """Who this process runs as: the effective user (:func:`~dcsync.model.identity.effective_user`)
    and its groups (the process's own, and the user's in the group database)."""
    user = effective_user()
    groups = {_group_name(g) for g in (*os.getgroups(), os.getegid())}
    return Identity(user, frozenset(groups) | Identity.of_user(user).groups)


def check_principal(text: str) -> str:
    if text == "*" or (text.startswith(("user:", "group:")) and len(text.split(":", 1)[1]) > 0):
        return text
    raise UsageError(f"invalid principal {text!r}: use user:NAME, group:NAME or *")


def check_permissions(values: Iterable[str]) -> list[str]:
    out = []
    for value in values:
        if value not in PERMISSIONS:
            raise UsageError(f"invalid permission {value!r}: choose from {', '.join(PERMISSIONS)}")
        out.append(value)
    return out


@dataclass(frozen=True)
class Rule:
    principals: tuple[str, ...]
    allow: tuple[str, ...]
    detectors: tuple[str, ...] = ()
    ctypes: tuple[str, ...] = ()

    def grants(self, who: set[str], permission: str, detector: str | None, ctype: str | None) -> bool:
        if not who & set(self.principals):
            return False
        if permission not in self.allow and "admin" not in self.allow:
            return False
        if self.detectors and (
            detector is None or not any(fnmatch.fnmatchcase(detector, g) for g in self.detectors)
        ):
            return False
        return not self.ctypes or (
            ctype is not None and any(fnmatch.fnmatchcase(ctype, g) for g in self.ctypes)
        )

    def to_toml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"principals": list(self.principals), "allow": list(self.allow)}
        if self.detectors:
            out["detectors"] = list(self.detectors)
        if self.ctypes:
            out["ctypes"] = list(self.ctypes)
        return out


@dataclass
class ACL:
    kind: str
    group: str | None = None
    owner: str | None = None
    rules: list[Rule] = field(default_factory=list)
    where: str = "workspace"

    # -- loading and saving ------------------------------------------------------------------------
    @classmethod
    def load(cls, root: Path, kind: str) -> ACL:
        path = root / ".dcsync" / ACL_FILE
        owner = _owner_of(root)
        if not path.exists():
            return cls(kind, owner=owner, where=str(root))
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
            rules = [
                Rule(
                    tuple(check_principal(p) for p in _strings(r, "principals")),
                    tuple(check_permissions(_strings(r, "allow"))),
                    tuple(_strings(r, "detectors", ())),
                    tuple(_strings(r, "ctypes", ())),
                )
                for r in doc.get("rule", [])
            ]
        except (tomllib.TOMLDecodeError, KeyError, TypeError, UnicodeDecodeError, UsageError) as exc:
            raise InputError(f"{path} is not a valid ACL: {exc}") from exc
        found = str(doc.get("kind", kind))
        if found not in KINDS:  # an unknown kind must not silently get some other kind's defaults
            raise InputError(f"{path}: unknown location kind {found!r} (choose from {', '.join(KINDS)})")
        return cls(found, doc.get("group"), doc.get("owner") or owner, rules, str(root))

    def to_toml(self) -> str:
        doc: dict[str, Any] = {"kind": self.kind}
        if self.group:
            doc["group"] = self.group
        if self.owner:
            doc["owner"] = self.owner
        doc["rule"] = [r.to_toml() for r in self.rules]
        return tomli_w.dumps(doc)

    # -- decisions ---------------------------------------------------------------------------------
    def allows(
        self, who: Identity, permission: str, detector: str | None = None, ctype: str | None = None
    ) -> bool:
        check_permissions([permission])
        principals = who.principals()
        if self._default(who, permission):
            return True
        return any(rule.grants(principals, permission, detector, ctype) for rule in self.rules)

    def may_write(self, who: Identity, detector: str) -> bool:
        """Whether ``who`` may change something of ``detector``, in some ctype at least: the cheap
        check before a push uploads anything. Each change is judged exactly when the ref moves."""
        writes = ("add", "set-default", "remove")
        if any(self._default(who, p) for p in writes):
            return True
        principals = who.principals()
        return any(
            replace(rule, ctypes=()).grants(principals, p, detector, None)
            for rule in self.rules
            for p in writes
        )

    def _default(self, who: Identity, permission: str) -> bool:
        is_owner = self.owner is not None and who.user == self.owner
        if self.kind == "local":
            return is_owner
        if self.kind == "experiment":
            if is_owner:
                return True
            if permission == "read":
                return True
            return permission != "admin" and self.group is not None and self.group in who.groups
        # repository: everyone reads; the owner administers; writers come from the rules
        return permission == "read" or is_owner

    def require(
        self, who: Identity, permission: str, detector: str | None = None, ctype: str | None = None
    ) -> None:
        """Raise :class:`AccessDenied` naming the user, permission, detector and location."""
        if not self.allows(who, permission, detector, ctype):
            what = f" on {detector}" if detector else ""
            what += f" {ctype}" if ctype else ""
            raise AccessDenied(
                f"user {who.user} may not {permission}{what} in {self.kind} location {self.where}"
            )

    def summary(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "group": self.group,
            "owner": self.owner,
            "rules": [r.to_toml() for r in self.rules],
        }


def _strings(rule: Any, key: str, default: Any = None) -> list[str]:
    """A rule's list of names (a bare string would otherwise be read letter by letter)."""
    value = rule[key] if default is None else rule.get(key, default)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"rule {key!r} must be a list of strings, not {value!r}")
    return list(value)


def _owner_of(root: Path) -> str | None:
    try:
        return pwd.getpwuid(root.stat().st_uid).pw_name
    except (KeyError, OSError):
        return None


def save(root: Path, acl: ACL, who: Identity, action: str) -> None:
    """Write the ACL (the caller checked ``admin``) and log the change."""
    cfg = root / ".dcsync"
    tmp = cfg / f".{ACL_FILE}.{os.getpid()}.tmp"
    tmp.write_text(acl.to_toml(), encoding="utf-8")
    os.replace(tmp, cfg / ACL_FILE)
    record = {"time": now_ns(), "user": who.user, "action": action, "acl": acl.summary()}
    with open(cfg / ACL_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")


def required_permission(change_kind: str) -> str:
    """The permission a kind of change (dcsync.repo.diff.Change.kind) needs."""
    return {
        "added": "add",
        "changed": "add",
        "pars": "add",
        "removed": "remove",
        "default": "set-default",
        "links": "admin",
    }.get(change_kind, "admin")
