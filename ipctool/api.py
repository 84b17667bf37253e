"""The public plugin API: everything a plugin author imports, and nothing else.

A plugin is a module registered under the entry-point group `ipctool`. Its
module implements `ipctool_mechanisms()` with `@hookimpl` and returns
`Mechanism` records; the verbs live in a second module (named by
`Mechanism.commands`) built with `new_app()` and the shared options. See the
README's "Writing a plugin" section. Names not listed in `__all__` are
internal and may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import typer

from ipctool.contract import VERBS, ContractCase, Mechanism
from ipctool.hookspecs import hookimpl
from ipctool.runner import APP_SETTINGS

if TYPE_CHECKING:
    from ipctool.children import HeldSignals, exit_status, pass_on, start_command
    from ipctool.errors import (
        ExitCode,
        IpcError,
        NotFound,
        PermissionDenied,
        Refused,
        StdoutClosed,
        Timeout,
        TooLarge,
        UsageError,
        WouldBlock,
        from_os_error,
        naming,
        say,
    )
    from ipctool.inet import HostPort, address_text, parse_host_port, resolve_addresses
    from ipctool.inetdiag import InetSock
    from ipctool.inetdiag import table as inet_table
    from ipctool.messages import (
        STREAM_CHANNEL_BASE,
        UNTIL_END,
        Ended,
        Inbox,
        Message,
        Outlet,
        receive,
        recv_framing,
        send_messages,
        too_large,
    )
    from ipctool.objects import IpcObject, ObjectSource, idle_for
    from ipctool.options import (
        Count,
        CString,
        Data,
        DryRun,
        Follow,
        Force,
        Json,
        KeepOpen,
        Lines,
        Mode,
        NoReply,
        Nowait,
        Null,
        OlderThan,
        ReadyFd,
        Stale,
        Stream,
    )
    from ipctool.options import Timeout as TimeoutOption
    from ipctool.output import data_fields, json_line, print_json, print_table, printable
    from ipctool.procfs import ProcView
    from ipctool.ready import announce_ready
    from ipctool.relay import relay
    from ipctool.sockets import (
        PEER_GONE,
        SOCKET_TYPES,
        SocketInbox,
        SocketOutlet,
        accept_connection,
        connect_socket,
        half_close,
        new_socket,
        receive_stream,
        send_stream,
        serve_connections,
        socket_errors,
        start_listening,
    )
    from ipctool.streams import (
        Framing,
        RecordWriter,
        framing_from_flags,
        require_stdio,
    )
    from ipctool.system import (
        iso_time,
        pid_alive,
        read_sysctl,
        read_table,
        user_name,
    )
    from ipctool.sysv_posix import SysvRow, find_sysv_row, pid_facts, removal_errors
    from ipctool.targets import (
        IpcTarget,
        format_key,
        parse_duration,
        parse_id,
        parse_ipc_target,
        parse_mode,
        parse_posix_name,
        parse_sysv_key,
        signed_key,
    )
    from ipctool.waiting import (
        Deadline,
        heartbeat_running,
        interrupts_deferred,
        retry_until,
        wait_fd,
        wait_fds,
        wait_for,
        waits_in_loop,
        when_ready,
    )

DEFAULT_MODE = 0o600  # objects are owner-only unless --mode says otherwise

# Where each name lives. A plugin's registration module, imported on every
# start, needs only hookimpl and Mechanism; the rest loads when first asked for.
_LAZY = {
    **dict.fromkeys(
        [
            "ExitCode",
            "IpcError",
            "NotFound",
            "PermissionDenied",
            "Refused",
            "StdoutClosed",
            "Timeout",
            "TooLarge",
            "UsageError",
            "WouldBlock",
            "from_os_error",
            "naming",
            "say",
        ],
        "ipctool.errors",
    ),
    **dict.fromkeys(
        [
            "Count",
            "CString",
            "Data",
            "DryRun",
            "Follow",
            "Force",
            "Json",
            "KeepOpen",
            "Lines",
            "Mode",
            "NoReply",
            "Nowait",
            "Null",
            "OlderThan",
            "ReadyFd",
            "Stale",
            "Stream",
        ],
        "ipctool.options",
    ),
    **dict.fromkeys(
        ["data_fields", "json_line", "print_json", "print_table", "printable"], "ipctool.output"
    ),
    **dict.fromkeys(["IpcObject", "ObjectSource", "idle_for"], "ipctool.objects"),
    **dict.fromkeys(
        ["SysvRow", "find_sysv_row", "pid_facts", "removal_errors"], "ipctool.sysv_posix"
    ),
    "ProcView": "ipctool.procfs",
    **dict.fromkeys(
        ["HeldSignals", "exit_status", "pass_on", "start_command"], "ipctool.children"
    ),
    "announce_ready": "ipctool.ready",
    **dict.fromkeys(
        ["HostPort", "address_text", "parse_host_port", "resolve_addresses"], "ipctool.inet"
    ),
    "InetSock": "ipctool.inetdiag",
    "relay": "ipctool.relay",
    **dict.fromkeys(
        [
            "STREAM_CHANNEL_BASE",
            "UNTIL_END",
            "Ended",
            "Inbox",
            "Message",
            "Outlet",
            "receive",
            "recv_framing",
            "send_messages",
            "too_large",
        ],
        "ipctool.messages",
    ),
    **dict.fromkeys(
        [
            "PEER_GONE",
            "SOCKET_TYPES",
            "SocketInbox",
            "SocketOutlet",
            "accept_connection",
            "connect_socket",
            "half_close",
            "new_socket",
            "receive_stream",
            "send_stream",
            "serve_connections",
            "socket_errors",
            "start_listening",
        ],
        "ipctool.sockets",
    ),
    **dict.fromkeys(
        [
            "Framing",
            "RecordWriter",
            "framing_from_flags",
            "require_stdio",
        ],
        "ipctool.streams",
    ),
    **dict.fromkeys(
        [
            "iso_time",
            "pid_alive",
            "read_sysctl",
            "read_table",
            "user_name",
        ],
        "ipctool.system",
    ),
    **dict.fromkeys(
        [
            "IpcTarget",
            "format_key",
            "parse_duration",
            "parse_id",
            "parse_ipc_target",
            "parse_mode",
            "parse_posix_name",
            "parse_sysv_key",
            "signed_key",
        ],
        "ipctool.targets",
    ),
    **dict.fromkeys(
        [
            "Deadline",
            "heartbeat_running",
            "interrupts_deferred",
            "retry_until",
            "wait_fd",
            "wait_fds",
            "wait_for",
            "waits_in_loop",
            "when_ready",
        ],
        "ipctool.waiting",
    ),
}
_RENAMED = {
    "TimeoutOption": ("ipctool.options", "Timeout"),
    "inet_table": ("ipctool.inetdiag", "table"),
}

__all__ = [  # a literal list, so linters and type checkers see every name
    "DEFAULT_MODE",
    "PEER_GONE",
    "SOCKET_TYPES",
    "STREAM_CHANNEL_BASE",
    "UNTIL_END",
    "VERBS",
    "CString",
    "ContractCase",
    "Count",
    "Data",
    "Deadline",
    "DryRun",
    "Ended",
    "ExitCode",
    "Follow",
    "Force",
    "Framing",
    "HeldSignals",
    "HostPort",
    "Inbox",
    "InetSock",
    "IpcError",
    "IpcObject",
    "IpcTarget",
    "Json",
    "KeepOpen",
    "Lines",
    "Mechanism",
    "Message",
    "Mode",
    "NoReply",
    "NotFound",
    "Nowait",
    "Null",
    "ObjectSource",
    "OlderThan",
    "Outlet",
    "PermissionDenied",
    "ProcView",
    "ReadyFd",
    "RecordWriter",
    "Refused",
    "SocketInbox",
    "SocketOutlet",
    "Stale",
    "StdoutClosed",
    "Stream",
    "SysvRow",
    "Timeout",
    "TimeoutOption",
    "TooLarge",
    "UsageError",
    "WouldBlock",
    "accept_connection",
    "address_text",
    "announce_ready",
    "connect_socket",
    "data_fields",
    "exit_status",
    "find_sysv_row",
    "format_key",
    "framing_from_flags",
    "from_os_error",
    "half_close",
    "heartbeat_running",
    "hookimpl",
    "idle_for",
    "inet_table",
    "interrupts_deferred",
    "iso_time",
    "json_line",
    "naming",
    "new_app",
    "new_socket",
    "parse_duration",
    "parse_host_port",
    "parse_id",
    "parse_ipc_target",
    "parse_mode",
    "parse_posix_name",
    "parse_sysv_key",
    "pass_on",
    "pid_alive",
    "pid_facts",
    "print_json",
    "print_table",
    "printable",
    "read_sysctl",
    "read_table",
    "receive",
    "receive_stream",
    "recv_framing",
    "relay",
    "removal_errors",
    "require_stdio",
    "resolve_addresses",
    "retry_until",
    "say",
    "send_messages",
    "send_stream",
    "serve_connections",
    "signed_key",
    "socket_errors",
    "start_command",
    "start_listening",
    "too_large",
    "user_name",
    "wait_fd",
    "wait_fds",
    "wait_for",
    "waits_in_loop",
    "when_ready",
]


def new_app(help: str, epilog: str | None = None) -> typer.Typer:
    """The typer app for one mechanism's verbs, set up as the core expects.

    Plain (not rich) help keeps `--help` fast; the callback keeps the app a
    group even while it has a single command.
    """
    app = typer.Typer(help=help, epilog=epilog, **APP_SETTINGS)

    @app.callback()
    def _group() -> None:
        pass

    return app


def __getattr__(name: str) -> Any:
    module, attribute = _RENAMED.get(name) or (_LAZY.get(name), name)
    if module is None:
        raise AttributeError(f"ipctool.api has no {name!r}; plugins use only the names in __all__")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
