# The C accelerator's interface (_batch.c), for type checking; built optionally.

def send_many(msqid: int, messages: list[bytes], mtype: int, /) -> tuple[int, int]: ...
def receive_many(
    msqid: int, most: int, mtype: int, bufsize: int, /
) -> tuple[list[tuple[bytes, int]], int]: ...
def receive_pieces(
    msqid: int,
    mtype: int,
    bufsize: int,
    fd: int,
    block: bool,
    most: int,
    magic: bytes,
    control_size: int,
    /,
) -> tuple[int, int, int, int, bytes | None]: ...
def send_pieces(
    msqid: int, mtype: int, fd: int, size: int, most: int, magic: bytes, control_size: int, /
) -> tuple[int, bool, int, bytes | None]: ...
