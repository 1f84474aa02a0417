"""The process heap's start-up objects kept out of the garbage collector's full passes.

OSDP gives a reader 200-400 ms to answer a poll (libosdp's response timeout): a control
panel that hears no answer in time marks the reader offline and starts a new Secure Channel
session (a handshake and a back-off: about a second or two without the reader), and a
reader with a Secure Channel that hears no poll in time drops the session. CPython's full
collection stops every thread of the process while it walks every tracked object: on a
busy 2-core machine, 0.15-0.33 s for the 250,000-450,000 objects of a test process hosting
the simulator (measured in the suite), enough to take every reader of that process offline
at once. Objects made at start-up (modules, configuration, models' Python side) live as
long as the process: after a last collection they are frozen into the permanent
generation, which later collections skip (CPython's ``gc.freeze``).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_startup_heap(what: str) -> int:
    """Collect once, then move every object now alive out of later collections' walk;
    return how many objects are frozen in all. ``what`` names the process for the log."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%s: %d start-up objects kept out of garbage collection passes", what, frozen)
    return frozen
