"""Import-time stand-in for the compiled psana framework (not installable here).

``PSCalib.DCUtils`` imports psana and names these four types in ``isinstance`` checks of functions
that take events (``par_to_tsec``); nothing on the DCS save, load or lookup path calls them.
"""


class Source:
    pass


class Event:
    pass


class Env:
    pass


class EventId:
    pass
