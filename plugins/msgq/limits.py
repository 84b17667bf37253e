"""The size check every msgq path shares (both kinds of queue, new and existing)."""

from ipctool.api import TooLarge


def check_size(label: str, size: int, limit: int, new: bool = False) -> None:
    """Refuse a message over `limit` bytes, naming the framings that fit."""
    if size > limit:
        whose = "a new queue's" if new else "the queue's"
        raise TooLarge(
            label,
            f"a {size}-byte message is over {whose} {limit}-byte limit; "
            "--stream splits any size, --lines/--null send one message per record",
        )
