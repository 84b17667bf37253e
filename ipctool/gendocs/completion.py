"""The bash, zsh and fish completion scripts (completions/): typer's templates, which
run `ipctool` on each TAB, so they need regenerating only when typer changes them."""

from __future__ import annotations

from ipctool._click import COMPLETE_VAR, completion_script
from ipctool.gendocs import PROG, PROJECT, generated_note

COMPLETIONS = {"ipctool.bash": "bash", "_ipctool": "zsh", "ipctool.fish": "fish"}

# typer's zsh script only registers its function (compdef): right when the script is
# sourced, but autoloaded from site-functions the file is itself the completer `_ipctool`,
# and then TAB would complete nothing. funcstack[1] tells the two apart, as cobra's does.
ZSH_REGISTER = f"compdef _{PROG}_completion {PROG}"
ZSH_REGISTER_OR_RUN = f"""\
if [[ $funcstack[1] == _{PROG} ]]; then
  _{PROG}_completion "$@"
else
  {ZSH_REGISTER}
fi"""


def shell_script(shell: str) -> str:
    note = generated_note(PROJECT)
    script = completion_script(shell, PROG, COMPLETE_VAR)
    if shell != "zsh":
        return f"# {note}\n{script}\n"
    if not script.endswith(ZSH_REGISTER):
        raise SystemExit(f"gendocs: typer's zsh script no longer ends with {ZSH_REGISTER!r}")
    script = script.removesuffix(ZSH_REGISTER) + ZSH_REGISTER_OR_RUN
    first, _, rest = script.partition("\n")  # zsh reads the #compdef tag from line 1 only
    return f"{first}\n# {note}\n{rest}\n"


def completion_files() -> dict[str, str]:
    """Path relative to the source tree -> content."""
    return {f"completions/{name}": shell_script(shell) for name, shell in COMPLETIONS.items()}
