"""The journal: the only writer of state.

It records what the controller knows of each host (state, since, health, holds), every
intent before its command is sent and every outcome after it is verified, and recent
load. `snapshot()` turns that record into the planner's input. `MemoryJournal` keeps it
in memory (simulator, tests); a durable store implements the same methods.
"""

from powerpool.journal.memory import Intent, MemoryJournal

__all__ = ["Intent", "MemoryJournal"]
