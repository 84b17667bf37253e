"""The size check every msgq path shares (both kinds of queue, new and existing)."""

from ipctool.api import TooLarge


def check_size(
    label: str, size: int, limit: int, *, new: bool = False, whole: bool = True, cut: bool = False
) -> None:
    """Refuse a message over `limit` bytes, naming the framings that would fit.

    cut: stdin was read only until it passed the limit, so `size` is a lower bound.
    """
    if size <= limit:
        return
    whose = "a new queue's" if new else "the queue's"
    amount = f"more than {limit} bytes" if cut else f"{size} bytes"
    if whole:
        what, hint = "message", "--stream splits any size; --lines/--null send a message per record"
    else:  # --lines/--null: the records before this one have gone already
        what, hint = "record", "--stream carries data of any size (earlier records were sent)"
    raise TooLarge(label, f"a {what} of {amount} is over {whose} {limit}-byte limit; {hint}")
