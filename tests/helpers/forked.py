"""Run a function in a forked child that has become another OS user, and get its answer back.

A fork rather than ``runuser``: this interpreter lives under /root, which other users cannot
reach, and a forked child needs no module opened up (whatever the parent imported is there). The
child drops every group, takes ``gid`` then ``uid``, runs ``work`` and writes its JSON answer to a
pipe; it never returns into pytest. Root only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any


def run_as(uid: int, gid: int, work: Callable[[], Any]) -> Any:
    """``work()``'s answer (JSON-able), as the forked child that is ``uid``:``gid`` computed it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            data = json.dumps(work()).encode()
            while data:
                data = data[os.write(write_end, data) :]
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child failed before it could report"
    return json.loads(b"".join(chunks))
