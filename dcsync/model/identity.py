"""Who and where this process is: the user and host that records carry, and the effective user.

Two names for "the user", on purpose. :func:`current_user` is the name the process goes by
(``getpass``: ``$LOGNAME``, ``$USER``..., then the password database): what a commit, a ref-log
record and a lock file record as their author, and what a client *claims* to a server. It is a
claim, not a proof: the environment sets it. :func:`effective_user` is the name of the effective
uid, the user the file system checks every access as; access decisions (the workspace ACL's
``current_identity``, a server's session identity) and "you may not write" messages rest on it.
"""

from __future__ import annotations

import getpass
import os
import pwd
import socket


def current_user() -> str:
    """The user name this process goes by, for records; its uid when it has none (a container
    with neither a passwd entry nor ``$USER``)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no environment variable naming one
        return str(os.getuid())


def current_host() -> str:
    """This machine's host name, as records and lock files name it."""
    return socket.gethostname()


def effective_user() -> str:
    """The name of the effective uid (its number when the password database has no entry)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
