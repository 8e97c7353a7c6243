"""The public API is what ``dcsync.__all__`` says, and every name in it exists."""

from __future__ import annotations

import dcsync


def test_all_is_complete_and_resolvable() -> None:
    public = {name for name in dir(dcsync) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(dcsync, name)).__name__ == "module"}
    public.discard("annotations")  # from __future__ import annotations
    assert public - modules == set(dcsync.__all__) - {"__version__"}
    for name in dcsync.__all__:
        assert hasattr(dcsync, name)
