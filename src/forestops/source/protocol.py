"""The course's batch data API as both sides of it must agree: groups, batches, error details.

The course server (`GET /data`, `GET /restart_data_generation`) numbers its batches from 1: its
per-group counter starts at -1 and jumps to 1 on the first call, and it answers 400 once the
counter reaches 10. Our server keeps that numbering, so a client written against either sees the
same `batch_number` values (1..10).
"""

from __future__ import annotations

from typing import Final

GROUPS: Final = range(1, 11)
N_BATCHES: Final = 10

COURSE_ALL_COLLECTED: Final = "Ya se recolectó toda la información minima necesaria"
"""The course server's exact 400 detail once a group has been served every batch."""

_ALL_COLLECTED_MARKERS: Final = ("all data was collected", "ya se recolect")


def all_collected_detail(group: int, n_batches: int) -> str:
    """Our 400 detail: says what happened in English, then the course's sentence, so clients that
    match the course's text keep working against this server too."""
    return (
        f"All data was collected for group {group}: all {n_batches} batches were served; "
        f"GET /restart_data_generation?group_number={group} starts over. {COURSE_ALL_COLLECTED}"
    )


def invalid_group_detail(group: int) -> str:
    return f"Invalid group number {group}: groups are {GROUPS.start}..{GROUPS.stop - 1}"


def is_all_collected(detail: object) -> bool:
    """Whether a 400 detail (ours or the course's, with or without accents) means 'done'."""
    text = str(detail).casefold()
    return any(marker in text for marker in _ALL_COLLECTED_MARKERS)
