"""The size check the queue classes make when a message reaches them."""

from ipctool.api import too_large


def check_size(label: str, size: int, limit: int) -> None:
    """Refuse a message over the queue's `limit` bytes, naming the framings that fit."""
    if size > limit:
        raise too_large(label, size, limit, limit_of="the queue's")
