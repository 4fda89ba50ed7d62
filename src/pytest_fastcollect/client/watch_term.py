"""Watch mode's terminal: keys in raw mode, headers and footers, clearing the screen.

Runs in the client (the thin client too: standard library only). On a tty,
keys are read one at a time with echo off (``ICANON`` and ``ECHO`` cleared;
``ISIG`` kept, so Ctrl-C is still SIGINT and quits); the terminal is put
back as it was for every run (pytest, ``--pdb`` and tests reading stdin see
an ordinary terminal), for every prompt, and on the way out whatever the
way. Without a tty (an editor's panel, a CI log) nothing is read from stdin
and output is plain lines.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, TextIO

KEYS_HELP = "Enter rerun · a all · f failed · p file · t name · q quit"
KEYS = {
    "\n": "rerun",
    "\r": "rerun",
    "a": "all",
    "f": "failed",
    "p": "file",
    "t": "name",
    "q": "quit",
}


class Terminal:
    def __init__(self, out: TextIO, stdin_fd: int = 0, clear: bool = False) -> None:
        self.out = out
        self.fd = stdin_fd
        self.keys = _isatty(stdin_fd) and _isatty(out.fileno())
        self.color = self.keys and not os.environ.get("NO_COLOR")
        self.clear = clear and self.keys
        self._saved: list[Any] | None = None

    # -- modes ----------------------------------------------------------------------------

    def enter_keys(self) -> None:
        """Keys one at a time, not echoed (until ``restore``)."""
        if not self.keys:
            return
        import termios

        if self._saved is None:
            self._saved = termios.tcgetattr(self.fd)
        mode = termios.tcgetattr(self.fd)
        mode[3] &= ~(termios.ICANON | termios.ECHO)
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)

    def restore(self) -> None:
        if self._saved is None:
            return
        import termios

        try:
            termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)
        except (OSError, termios.error):
            pass

    @contextlib.contextmanager
    def cooked(self) -> Iterator[None]:
        """The terminal as the user had it (a run, a prompt); keys again afterwards."""
        self.restore()
        try:
            yield
        finally:
            self.enter_keys()

    def read_key(self) -> str | None:
        """The action of the key typed, if it is one of ours."""
        try:
            data = os.read(self.fd, 64).decode(errors="replace")
        except OSError:
            return None
        if not data:
            return "quit"  # the terminal is gone
        if data.startswith("\x1b"):
            return None  # arrows and the like
        return KEYS.get(data[-1].lower() if data[-1] not in "\r\n" else data[-1])

    def prompt(self, text: str) -> str:
        with self.cooked():
            self.write(self.style(text, "1"))
            line = sys.stdin.readline()
        return line.strip()

    # -- output ---------------------------------------------------------------------------

    def style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def rule(self, text: str, code: str) -> str:
        width = shutil.get_terminal_size((80, 24)).columns if self.keys else 0
        line = f"── {text} "
        line += "─" * max(width - len(line), 0) if width else "──"
        return self.style(line, code)

    def header(self, text: str) -> None:
        if self.clear:
            self.write("\x1b[H\x1b[2J\x1b[3J")
        self.write(self.rule(text, "1;36") + "\n")

    def footer(self, text: str) -> None:
        hint = f" · {KEYS_HELP}" if self.keys else ""
        self.write(self.rule(text + hint, "2") + "\n")

    def line(self, text: str) -> None:
        self.write(self.style(text, "2") + "\n")


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
