"""The mechanism contract: what a plugin hands the core, and what it promises."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

VERBS = ("send", "recv", "inspect", "clean")

# Sections of `ipctool --help`, in this order; other families follow.
FAMILIES = ("Messages", "Memory", "Streams", "Network", "Signals")

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]*$")

# What the shared contract test sends by default: binary, with NUL, 0xff and newlines.
PAYLOAD = b"contract \x00\xff\xfe bytes\nand a second line\n"


class Mechanism:
    """One IPC mechanism: a command group `ipctool NAME` with the four verbs.

    `commands` is "module:attribute" naming the `typer.Typer` (made with
    `ipctool.api.new_app`) that holds `send`, `recv`, `inspect` and `clean`.
    It is imported only when this mechanism runs, so nothing heavy loads on
    another mechanism's calls or on `ipctool --help`.

    `objects` is "module:attribute" naming the mechanism's `ObjectSource`
    (ipctool.objects): given it, the core supplies the `inspect` and `clean`
    verbs (unless the commands app defines its own), and `ls`, `clean
    --stale`, `limits` and `top` see the mechanism's objects. It is imported
    only by those verbs.
    """

    # A plain class, not a dataclass: building a dataclass costs about half a
    # millisecond on every start, and this one is made on every start.
    __slots__ = ("commands", "family", "name", "objects", "summary")

    def __init__(
        self,
        name: str,
        summary: str,
        commands: str,
        family: str = "Other",
        objects: str | None = None,
    ) -> None:
        self.name = name
        self.summary = summary
        self.commands = commands
        self.family = family
        self.objects = objects

    def __repr__(self) -> str:
        return f"Mechanism(name={self.name!r}, commands={self.commands!r}, family={self.family!r})"


class ContractCase:
    """How the shared contract test drives one kind of object of a mechanism.

    new_target() returns a target nobody else uses (a unique key, name, path or
    address); remove(target) deletes the object without ipctool, so a failed
    test leaves nothing behind. recv_first: recv must be running before send
    (listeners, FIFOs); its recv calls announce_ready, and send goes to the
    target it announced once that line came. lasting: the object outlives
    both peers, so inspect and clean are checked on it (false for
    connections and signals). bad_target
    must be refused as a usage error. payload: the bytes send reads from stdin
    (b"" where the mechanism carries none, as signals); expected: what recv
    must print (default: the payload). send_target(target, receiver_pid):
    where send goes when that is not the recv target (signal: the pid of the
    waiting recv). stream: a byte-stream mechanism (fifo, unix, tcp), checked
    with 1 MiB of random bytes too. leftovers(): the targets of objects this
    test run created and left behind (found by the kit's run tag); the suite's
    leak check removes them with `remove` and fails the run. waits: recv on an
    existing, empty object waits (after saying it is ready), and while it waits
    the object is in use: clean must refuse it. counts: the mechanism carries
    counts rather than bytes (a semaphore): the payload is what send reads
    (usually b"") and recv prints `expected` for every unit it takes; the kit
    then checks that `send --count 3` makes exactly three `recv --nowait` succeed
    and a fourth exit 5 (would block), so nothing is lost or made up.
    """

    def __init__(
        self,
        mechanism: str,
        label: str,
        new_target: Callable[[], str],
        remove: Callable[[str], None],
        bad_target: str,
        recv_first: bool = False,
        lasting: bool = True,
        send_args: Sequence[str] = (),
        recv_args: Sequence[str] = (),
        payload: bytes = PAYLOAD,
        expected: bytes | None = None,
        send_target: Callable[[str, int], str] | None = None,
        stream: bool = False,
        leftovers: Callable[[], list[str]] | None = None,
        waits: bool = True,
        counts: bool = False,
    ) -> None:
        self.mechanism = mechanism
        self.label = label
        self.new_target = new_target
        self.remove = remove
        self.bad_target = bad_target
        self.recv_first = recv_first
        self.lasting = lasting
        self.send_args = tuple(send_args)
        self.recv_args = tuple(recv_args)
        self.payload = payload
        self.expected = expected
        self.send_target = send_target
        self.stream = stream
        self.waits = waits
        self.counts = counts
        self.leftovers = leftovers

    def __str__(self) -> str:
        return f"{self.mechanism}-{self.label}"
