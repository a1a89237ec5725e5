"""Which processes are still alive (a plain module: tests in any folder import it; Linux /proc)."""

from __future__ import annotations

from pathlib import Path


def live_processes_of_session(sid: int) -> list[int]:
    """Processes of session ``sid`` that are not zombies: a command started with
    ``start_new_session=True`` has its workers in its session, orphaned or not."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live
