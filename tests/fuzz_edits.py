"""Never-stale harness and edit fuzzer: warm runs must equal cold runs.

Importable (tests/test_never_stale.py and tests/test_fuzz.py use it) and a
command line for the full-size run::

    python tests/fuzz_edits.py --sequences 200 --seed 1
    python tests/fuzz_edits.py --seed 1 --sequence 17      # replay one sequence

Each sequence copies tests/data/stale_project to a temporary directory,
starts a daemon for it, and applies a seeded, bounded random sequence of
edits (every way an editor saves, syntax and import errors, tests added,
deleted and renamed, conftests, config, moved modules, new packages,
import-time environment). After every edit it runs one pytest command
through the daemon and the same command with ``--no-daemon``, immediately
(no waiting), and compares exit codes and per-test outcomes. Then the
selection check (tests/selection_check.py): the tests watch mode would rerun
after that edit, run alone, must give what a full run gives, and no other
test may have changed outcome. A difference prints a reproducer: the seed,
the sequence, both outputs and the daemon log.

Sequence ``i`` of seed ``s`` draws from its own RNG (``f"{s}:{i}"``), so it
replays alone. Timing is not part of the seed: pauses drawn by the RNG have
fixed lengths, but how they fall against the daemon's debounce and re-warm
timers does not.
"""

from __future__ import annotations

import argparse
import difflib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pytest_fastcollect.daemon_client import DaemonClient

from helpers import THIN, Project, Result, make_project

DATA = Path(__file__).resolve().parent / "data" / "stale_project"

# --------------------------------------------------------------------------
# Saving files the ways editors do
# --------------------------------------------------------------------------


class Style(str, Enum):
    INPLACE = "inplace"  # truncate and write: same inode (most editors, `>`)
    ATOMIC = "atomic"  # write a temp file, rename over (VS Code, Sublime, git)
    BACKUP = "backup"  # rename original to file~, write a new file, drop file~ (vim)
    SED = "sed"  # sed -i: its own temp file in the directory, then rename
    JETBRAINS = "jetbrains"  # file___jb_tmp___, original to file___jb_old___, swap, delete


def save(path: Path, text: str, style: Style = Style.INPLACE, keep_mtime: bool = False) -> None:
    """Write ``text`` to ``path`` as an editor with ``style`` would.

    ``keep_mtime`` puts back the previous modification time (to the
    nanosecond): a same-size rewrite then looks unchanged to anything that
    trusts (mtime, size), as CPython's pyc check does.
    """
    before = path.stat() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    if before is None or style is Style.INPLACE:
        with open(path, "w") as fh:
            fh.write(text)
    elif style is Style.ATOMIC:
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    elif style is Style.BACKUP:
        backup = path.with_name(path.name + "~")
        os.rename(path, backup)
        path.write_text(text)
        os.unlink(backup)
    elif style is Style.SED:
        _sed_write(path, text)
    elif style is Style.JETBRAINS:
        tmp = path.with_name(path.name + "___jb_tmp___")
        old = path.with_name(path.name + "___jb_old___")
        tmp.write_text(text)
        os.rename(path, old)
        os.rename(tmp, path)
        os.unlink(old)
    if keep_mtime and before is not None:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _sed_write(path: Path, text: str) -> None:
    """Replace the whole content with GNU ``sed -i`` (so sed does the save)."""
    if not path.read_text() or not text:
        # sed never runs its script on an empty file, and cannot emit nothing
        # through `r`: these cases are an ordinary in-place save.
        path.write_text(text)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write(text)
        source = fh.name
    try:
        # On the last line queue the new content, and delete every old line.
        subprocess.run(["sed", "-i", "-e", f"$r {source}", "-e", "d", str(path)], check=True)
    finally:
        os.unlink(source)


def edit(
    path: Path, old: str, new: str, style: Style = Style.INPLACE, keep_mtime: bool = False
) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    save(path, text.replace(old, new, 1), style, keep_mtime)


# --------------------------------------------------------------------------
# Outcomes of a run
# --------------------------------------------------------------------------

OUTCOME_WORDS = ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_DURATION = re.compile(r" in [0-9.]+s( \([0-9:]+\))?")
NOT_WARM = re.compile(r"pytest-fastcollect: .*running (pytest )?without (the daemon|it)")


@dataclass(frozen=True)
class Outcomes:
    exit_code: int
    tests: tuple[str, ...]  # sorted `-rA` lines ("PASSED tests/x.py::t", "FAILED ... - msg")
    summary: str  # the last line, durations removed

    def diff(self, other: Outcomes) -> list[str]:
        out = []
        if self.exit_code != other.exit_code:
            out.append(f"exit code: warm {self.exit_code}, cold {other.exit_code}")
        if self.tests != other.tests:
            out.extend(
                difflib.unified_diff(
                    list(other.tests), list(self.tests), "cold", "warm", lineterm="", n=0
                )
            )
        if self.summary != other.summary:
            out.append(f"summary: warm {self.summary!r}, cold {other.summary!r}")
        return out


def outcomes(result: Result) -> Outcomes:
    lines = result.stdout.splitlines()
    tests: list[str] = []
    in_summary = False
    for line in lines:
        if re.match(r"^=+ short test summary info =+$", line):
            in_summary = True
            continue
        if in_summary and line.split(" ", 1)[0] in OUTCOME_WORDS:
            tests.append(_HEX.sub("0x?", line.rstrip()))
        elif in_summary and line.startswith(("=", "!")):
            in_summary = False
    summary = next((ln for ln in reversed(lines) if ln.strip()), "")
    return Outcomes(result.returncode, tuple(sorted(tests)), _DURATION.sub("", summary.strip("= ")))


# --------------------------------------------------------------------------
# A project with a daemon, compared against cold runs
# --------------------------------------------------------------------------


@dataclass
class Comparison:
    args: list[str]
    env: dict[str, str]
    thin: bool
    warm: Result
    cold: Result
    problems: list[str]

    def report(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        return "\n".join(
            [
                f"command: {env + ' ' if env else ''}pytest {' '.join(self.args)}"
                + ("  (warm: pytest-fastcollect run)" if self.thin else ""),
                *(f"  ! {p}" for p in self.problems),
                "----- warm (through the daemon) -----",
                str(self.warm),
                "----- cold (--no-daemon) -----",
                str(self.cold),
            ]
        )


class StaleBench:
    """A copy of the example project in ``root`` with a daemon; runs warm vs cold."""

    def __init__(self, root: Path) -> None:
        root = Path(root)
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(DATA, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        self.root = root
        self.project: Project = make_project(root)
        # Users have bytecode caches: same-second rewrites must not load stale pycs.
        self.project.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self._client: DaemonClient | None = None

    def path(self, rel: str) -> Path:
        return self.root / rel

    def start(self) -> Result:
        result = self.project.start("tests")
        if result.returncode != 0:
            raise AssertionError(f"the daemon did not start:\n{result}")
        return result

    def cleanup(self) -> None:
        self.project.cleanup()
        shutil.rmtree(self.project.runtime, ignore_errors=True)

    def client(self) -> DaemonClient:
        if self._client is None:
            record = self.project.record()
            assert record is not None, "no daemon record"
            self._client = DaemonClient(str(record["socket_path"]))
        return self._client

    def status(self) -> dict[str, object]:
        return self.client().get_status()

    def replacements(self) -> dict[str, int]:
        reload = self.status()["reload"]
        assert isinstance(reload, dict)
        return dict(reload["replacements"])

    def log_tail(self, lines: int = 40) -> str:
        record = self.project.record()
        if record is None:
            return "(no daemon record)"
        try:
            text = Path(str(record["log_path"])).read_text(errors="replace")
        except OSError as exc:
            return f"(cannot read the daemon log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        record = self.project.record()
        try:
            return Path(str(record["log_path"])).read_text(errors="replace") if record else ""
        except OSError:
            return ""

    def wait_for_log(self, needle: str, after: str = "", timeout: float = 20.0) -> None:
        """Wait until ``needle`` is in the daemon log (after the first ``after`` line)."""
        deadline = time.monotonic() + timeout
        while needle not in (self.log_text().partition(after)[2] if after else self.log_text()):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {needle!r} after {after!r} in the daemon log after {timeout}s:\n"
                    + self.log_tail()
                )
            time.sleep(0.02)

    def warm(
        self, args: Sequence[str], env: dict[str, str] | None = None, thin: bool = False
    ) -> Result:
        if thin:
            cmd = [THIN, "run", "-rA", *args]
            proc = subprocess.run(
                cmd,
                cwd=self.root,
                env={**self.project.env, **(env or {})},
                capture_output=True,
                text=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            return Result(cmd, proc.returncode, proc.stdout, proc.stderr)
        return self.project.pytest("-rA", *args, env=env)

    def cold(self, args: Sequence[str], env: dict[str, str] | None = None) -> Result:
        return self.project.cold("-rA", *args, env=env)

    def compare(
        self,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        allow_cold: bool = False,
        thin: bool = False,
    ) -> Comparison:
        """Run ``args`` through the daemon (first, right away), then cold; list the differences.

        ``thin``: the warm run uses ``pytest-fastcollect run``, which reaches the
        daemon within milliseconds of the save (pytest itself takes ~0.3 s to start).
        """
        env = dict(env or {})
        warm = self.warm(args, env, thin)
        cold = self.cold(args, env)
        problems: list[str] = []
        refused = NOT_WARM.search(warm.stderr)
        # When pytest itself cannot start (a broken conftest or pytest_plugins
        # module), no warm process can exist either: a cold run is the answer.
        cannot_start = "test session starts" not in cold.stdout
        if refused and not (allow_cold or cannot_start):
            problems.append(f"the run did not go through the daemon: {refused.group(0)}")
        problems.extend(outcomes(warm).diff(outcomes(cold)))
        return Comparison(list(args), env, thin, warm, cold, problems)


# --------------------------------------------------------------------------
# The fuzzer: operations over the example project
# --------------------------------------------------------------------------

SYNTAX_MARK = "def fuzz_broken(:  # FUZZ-SYNTAX\n"
IMPORT_MARK = "import fuzz_missing_module  # FUZZ-IMPORT\n"
COMPUTE_BODIES = ("x * SCALE", "x * SCALE + 1", "x + x", "SCALE * x", "x * 2")
GREETINGS = ("hello ", "hallo ", "hi    ", "hey   ")  # same size on purpose: same-size rewrites
ADDOPTS = ('""', "\"-k 'not greet'\"", '"-x"', '"--tb=line"', "\"-k 'not compute'\"")
K_EXPRS = ("compute", "not greet", "colors or mode or gen", "registered", "offset", "gen or base")
GEN_TEMPLATES = (
    "def {name}():\n    from app.core import compute\n    assert compute({a}) == {b}\n",
    "def {name}(base):\n    assert base + {a} == {b}\n",
    "def {name}(offset):\n    assert offset * {a} == {b}\n",
    "def {name}():\n    from app.models import Color\n    assert len(Color) == {a}\n",
    # Imports what fills the registry itself: a run of one file sees the import
    # side effects of every module the warm process holds (see
    # test_never_stale.py::run_of_one_file_sees_only_its_own_imports).
    "def {name}():\n    import app.plugins\n    from app.registry import REGISTRY\n"
    "    assert len(REGISTRY) == {a}\n",
    "def {name}():\n    import dataclasses\n    from app.models import Point\n"
    "    assert len(dataclasses.fields(Point)) == {a}\n",
    # Without importing app.plugins: a run of this file alone must not see what
    # app.plugins registered (the daemon forks such a run from its base process).
    "def {name}():\n    from app.registry import REGISTRY\n    assert len(REGISTRY) == {a}\n",
    "def {name}():\n    from app.arrays import scaled\n    assert scaled([{a}]) == [{b}.0]\n",
    "import os\n\nCONF = os.environ.get('STALE_CONF', 'unset')\n\n\n"
    "def {name}():\n    assert CONF == '1'\n",
)
CONF_EFFECT = "import os\n\nos.environ['STALE_CONF'] = '1'\n"
EARLY_HOOK = "\n\ndef pytest_configure(config):\n    config.stash_fuzz = 1\n"


@dataclass
class Step:
    """One operation, recorded as it was applied (for the reproducer)."""

    op: str
    detail: str
    command: list[str] = field(default_factory=list)
    thin: bool = False  # the warm run goes through `pytest-fastcollect run`

    def __str__(self) -> str:
        tool = "pytest-fastcollect run" if self.thin else "pytest"
        cmd = f"  ->  {tool} {' '.join(self.command)}" if self.command else ""
        return f"{self.op}: {self.detail}{cmd}"


class FuzzState:
    """The project on disk plus what the next runs use; ops mutate both."""

    def __init__(self, bench: StaleBench, rng: random.Random) -> None:
        self.bench = bench
        self.rng = rng
        self.env: dict[str, str] = {}
        self.counter = 0
        self.pristine = {
            p.relative_to(DATA).as_posix(): p.read_text()
            for p in DATA.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    # file helpers ---------------------------------------------------------

    def exists(self, rel: str) -> bool:
        return self.bench.path(rel).exists()

    def read(self, rel: str) -> str:
        return self.bench.path(rel).read_text()

    def py_files(self, under: str = "") -> list[str]:
        return sorted(
            p.relative_to(self.bench.root).as_posix()
            for p in self.bench.root.rglob("*.py")
            if "__pycache__" not in p.parts
            and p.relative_to(self.bench.root).as_posix().startswith(under)
        )

    def test_files(self) -> list[str]:
        return [f for f in self.py_files("tests/") if os.path.basename(f).startswith("test_")]

    def write(self, rel: str, text: str) -> str:
        """Save with a random editor style; sometimes keep the mtime of a same-size rewrite."""
        path = self.bench.path(rel)
        style = self.rng.choice(list(Style))
        keep = (
            path.exists()
            and len(path.read_bytes()) == len(text.encode())
            and self.rng.random() < 0.5
        )
        save(path, text, style, keep_mtime=keep)
        return f"{rel} saved {style.value}{' keeping mtime' if keep else ''}"

    def fresh_name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # operations: each returns a description, or None if it does not apply now

    def op_const(self) -> str | None:
        text = self.read("app/core.py") if self.exists("app/core.py") else None
        if text is None or not re.search(r"^SCALE = \d$", text, re.M):
            return None
        return self.write(
            "app/core.py",
            re.sub(r"^SCALE = \d$", f"SCALE = {self.rng.randint(1, 9)}", text, flags=re.M),
        )

    def op_body(self) -> str | None:
        if not self.exists("app/core.py"):
            return None
        text = self.read("app/core.py")
        m = re.search(r"(def compute\(x\):\n    return )(.*)\n", text)
        if m is None:
            return None
        new = self.rng.choice([b for b in COMPUTE_BODIES if b != m.group(2)])
        return self.write("app/core.py", text[: m.start(2)] + new + text[m.end(2) :])

    def op_greet(self) -> str | None:
        if not self.exists("app/core.py"):
            return None
        text = self.read("app/core.py")
        m = re.search(r'return "([^"]*)" \+ name', text)
        if m is None:
            return None
        new = self.rng.choice([g for g in GREETINGS if g != m.group(1)])
        return self.write("app/core.py", text[: m.start(1)] + new + text[m.end(1) :])

    def op_enum(self) -> str | None:
        return self._toggle("app/models.py", "    GREEN = 2\n", "    GREEN = 2\n    BLUE = 3\n")

    def op_dataclass(self) -> str | None:
        return self._toggle(
            "app/models.py", "    x: int\n    y: int\n", "    x: int\n    y: int\n    z: int = 0\n"
        )

    def op_pydantic(self) -> str | None:
        return self._toggle("app/models.py", "    age: int\n", "    age: str\n")

    def op_registry(self) -> str | None:
        choice = self.rng.random()
        if choice < 0.5:
            return self._toggle("app/plugins.py", "class Beta:", "class Delta:")
        return self._toggle(
            "app/plugins.py",
            "    value = 2\n",
            "    value = 2\n\n\n@register\nclass Gamma:\n    value = 3\n",
        )

    def _toggle(self, rel: str, a: str, b: str) -> str | None:
        if not self.exists(rel):
            return None
        text = self.read(rel)
        if b in text:
            return self.write(rel, text.replace(b, a, 1))
        if a in text:
            return self.write(rel, text.replace(a, b, 1))
        return None

    def op_syntax(self) -> str | None:
        broken = [f for f in self.py_files() if SYNTAX_MARK in self.read(f)]
        if broken and self.rng.random() < 0.6:
            rel = self.rng.choice(broken)
            return "fix " + self.write(rel, self.read(rel).replace(SYNTAX_MARK, ""))
        candidates = [f for f in self.py_files() if os.path.basename(f) != "conftest.py"]
        rel = self.rng.choice(candidates)
        return "break " + self.write(rel, self.read(rel) + SYNTAX_MARK)

    def op_import_error(self) -> str | None:
        broken = [f for f in self.py_files() if IMPORT_MARK in self.read(f)]
        if broken and self.rng.random() < 0.6:
            rel = self.rng.choice(broken)
            return "fix " + self.write(rel, self.read(rel).replace(IMPORT_MARK, ""))
        candidates = [f for f in self.py_files() if os.path.basename(f) != "conftest.py"]
        rel = self.rng.choice(candidates)
        return "break " + self.write(rel, IMPORT_MARK + self.read(rel))

    def _gen_test(self) -> str:
        template = self.rng.choice(GEN_TEMPLATES)
        a = self.rng.randint(1, 4)
        b = self.rng.choice([a, 2 * a, a + 10, a + 1, 2, 3, 4])
        return template.format(name=self.fresh_name("test_gen_"), a=a, b=b)

    def op_add_test(self) -> str | None:
        files = self.test_files()
        if not files:
            return None
        rel = self.rng.choice(files)
        return "add a test to " + self.write(
            rel, self.read(rel).rstrip("\n") + "\n\n\n" + self._gen_test()
        )

    def _test_defs(self, text: str) -> list[re.Match[str]]:
        return list(re.finditer(r"^def (test_\w+)\(.*?(?=^\S|\Z)", text, re.M | re.S))

    def op_delete_test(self) -> str | None:
        files = [f for f in self.test_files() if self._test_defs(self.read(f))]
        if not files:
            return None
        rel = self.rng.choice(files)
        text = self.read(rel)
        m = self.rng.choice(self._test_defs(text))
        return f"delete {m.group(1)} from " + self.write(rel, text[: m.start()] + text[m.end() :])

    def op_rename_test(self) -> str | None:
        files = [f for f in self.test_files() if self._test_defs(self.read(f))]
        if not files:
            return None
        rel = self.rng.choice(files)
        text = self.read(rel)
        m = self.rng.choice(self._test_defs(text))
        new = self.fresh_name(m.group(1).split("_r")[0] + "_r")
        return f"rename {m.group(1)} to {new} in " + self.write(
            rel, text[: m.start(1)] + new + text[m.end(1) :]
        )

    def op_new_file(self) -> str | None:
        rel = f"tests/{self.fresh_name('test_genfile_')}.py"
        body = "\n\n".join(self._gen_test() for _ in range(self.rng.randint(1, 3)))
        return "new file " + self.write(rel, body)

    def op_delete_file(self) -> str | None:
        files = self.test_files()
        if not files:
            return None
        rel = self.rng.choice(files)
        self.bench.path(rel).unlink()
        return f"delete {rel}"

    def op_fixture(self) -> str | None:
        rel = self.rng.choice(
            [f for f in ("conftest.py", "tests/conftest.py") if self.exists(f)] or [None]
        )
        if rel is None:
            return None
        text = self.read(rel)
        m = re.search(r"return (\d+)\n", text)
        if m is None:
            return None
        return self.write(rel, text[: m.start(1)] + str(self.rng.randint(1, 12)) + text[m.end(1) :])

    def op_new_conftest(self) -> str | None:
        rel = "tests/sub/conftest.py"
        if self.exists(rel):
            self.bench.path(rel).unlink()
            return f"delete {rel}"
        return "new " + self.write(
            rel, "import pytest\n\n\n@pytest.fixture\ndef offset():\n    return 5\n"
        )

    def op_addopts(self) -> str | None:
        text = self.read("pyproject.toml")
        m = re.search(r"^addopts = (.*)$", text, re.M)
        if m is None:
            return None
        new = self.rng.choice([a for a in ADDOPTS if a != m.group(1)])
        return self.write("pyproject.toml", text[: m.start(1)] + new + text[m.end(1) :])

    def op_move(self) -> str | None:
        a, b = "app/helpers.py", "app/tools.py"
        src, dst = (a, b) if self.exists(a) else (b, a) if self.exists(b) else (None, None)
        if src is None or dst is None:
            return None
        os.rename(self.bench.path(src), self.bench.path(dst))
        detail = f"move {src} to {dst}"
        if self.exists("tests/test_helpers.py") and self.rng.random() < 0.6:
            text = self.read("tests/test_helpers.py")
            old_mod, new_mod = src[:-3].replace("/", "."), dst[:-3].replace("/", ".")
            if old_mod in text:
                detail += "; " + self.write("tests/test_helpers.py", text.replace(old_mod, new_mod))
        return detail

    def op_init(self) -> str | None:
        rel = "app/ns/__init__.py"
        if self.exists(rel):
            self.bench.path(rel).unlink()
            return f"delete {rel}"
        return "new " + self.write(rel, "FLAG = True\n")

    def op_rename_dir(self) -> str | None:
        a, b = "app/ns", "app/ns2"
        src, dst = (a, b) if self.exists(a) else (b, a) if self.exists(b) else (None, None)
        if src is None or dst is None:
            return None
        os.rename(self.bench.path(src), self.bench.path(dst))
        return f"rename directory {src} to {dst}"

    def op_package_init(self) -> str | None:
        return self._toggle("app/__init__.py", '"""\n', '"""\n\nVERSION = 1\n')

    def op_plugin(self) -> str | None:
        return self._toggle("app/plugin_fixtures.py", 'return "plugin"', 'return "plugins"')

    def op_fixture_module(self) -> str | None:
        return self._toggle("app/fixtures.py", "return 3", "return 4")

    def op_arrays(self) -> str | None:
        return self._toggle("app/arrays.py", "GAIN = 2.0\n", "GAIN = 3.0\n")

    def op_conftest_effect(self) -> str | None:
        """An import effect in the root conftest: a purge cannot undo it, so both
        adding and removing it replace the project layer."""
        return self._toggle(
            "conftest.py", '"""\n\nimport pytest\n', '"""\n\n' + CONF_EFFECT + "import pytest\n"
        )

    def op_early_hook(self) -> str | None:
        if not self.exists("tests/conftest.py"):
            return None
        text = self.read("tests/conftest.py")
        if EARLY_HOOK in text:
            return self.write("tests/conftest.py", text.replace(EARLY_HOOK, ""))
        return self.write("tests/conftest.py", text + EARLY_HOOK)

    def op_pytest_ini(self) -> str | None:
        rel = "pytest.ini"
        if self.exists(rel):
            self.bench.path(rel).unlink()
            return f"delete {rel}"
        addopts = self.rng.choice(["-k 'not greet'", "-x", ""])
        text = (
            "[pytest]\ntestpaths = tests\npythonpath = .\n"
            f"addopts = {addopts}\n"
            "asyncio_default_fixture_loop_scope = function\n"
        )
        return "new " + self.write(rel, text)

    def op_env(self) -> str | None:
        if self.env:
            self.env = {}
            return "unset STALE_MODE for the next runs"
        self.env = {"STALE_MODE": self.rng.choice(["other", "default", ""])}
        return f"STALE_MODE={self.env['STALE_MODE']} for the next runs"

    def op_touch(self) -> str | None:
        rel = self.rng.choice(self.py_files())
        os.utime(self.bench.path(rel))
        return f"touch {rel}"

    def op_revert(self) -> str | None:
        changed = [
            rel
            for rel, text in self.pristine.items()
            if not self.exists(rel) or self.read(rel) != text
        ]
        if not changed:
            return None
        rel = self.rng.choice(sorted(changed))
        return "revert " + self.write(rel, self.pristine[rel])

    def op_double_save(self) -> str | None:
        """A formatter rewriting the file just after the editor saved it."""
        first = self.op_body() or self.op_enum()
        if first is None:
            return None
        gap = self.rng.choice([0.0, 0.01, 0.03, 0.06, 0.1])
        time.sleep(gap)
        second = self.op_const() or self.op_greet() or self.op_dataclass()
        return f"{first}; {gap}s later {second}"

    def op_pause(self) -> str | None:
        # Land on the far side of the debounce timer or inside the re-warm window.
        seconds = self.rng.choice([0.03, 0.08, 0.3, 1.0, 1.2])
        time.sleep(seconds)
        return f"wait {seconds}s"

    OPS: tuple[tuple[str, float], ...] = (
        ("const", 3),
        ("body", 3),
        ("greet", 2),
        ("enum", 1.5),
        ("dataclass", 1.5),
        ("pydantic", 1.5),
        ("registry", 1),
        ("syntax", 2),
        ("import_error", 1.5),
        ("add_test", 3),
        ("delete_test", 2),
        ("rename_test", 2),
        ("new_file", 1.5),
        ("delete_file", 1),
        ("fixture", 1),
        ("new_conftest", 0.7),
        ("addopts", 0.5),
        ("move", 1),
        ("init", 0.7),
        ("env", 0.7),
        ("touch", 1),
        ("revert", 2),
        ("rename_dir", 0.5),
        ("package_init", 0.7),
        ("plugin", 0.7),
        ("fixture_module", 0.7),
        ("arrays", 0.7),
        ("conftest_effect", 0.5),
        ("early_hook", 0.4),
        ("pytest_ini", 0.4),
        ("double_save", 1.5),
        ("pause", 1.5),
    )

    def random_op(self) -> Step:
        names = [n for n, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        for _ in range(50):
            name = self.rng.choices(names, weights)[0]
            detail = getattr(self, f"op_{name}")()
            if detail is not None:
                return Step(name, detail)
        raise AssertionError("no operation applies")

    def random_command(self) -> list[str]:
        kind = self.rng.random()
        files = self.test_files()
        if kind < 0.45 or not files:
            return ["tests"]
        if kind < 0.75:
            return [self.rng.choice(files)]
        return ["tests", "-k", self.rng.choice(K_EXPRS)]


@dataclass
class Failure:
    seed: int
    index: int
    steps: list[Step]
    comparison: Comparison
    log: str

    def report(self) -> str:
        return "\n".join(
            [
                f"DIFFERENCE in sequence {self.index} of seed {self.seed}",
                f"reproduce: python tests/fuzz_edits.py --seed {self.seed} --sequence {self.index}",
                "sequence (each op applied right before its command; no waiting unless 'wait'):",
                *(f"  {n}. {s}" for n, s in enumerate(self.steps, 1)),
                self.comparison.report(),
                "----- daemon log (tail) -----",
                self.log,
            ]
        )


# Cycles the selection check judged, and how many of them selected a part of the tests.
SELECTION_STATS = {"cycles": 0, "partial": 0}


def run_sequence(
    seed: int,
    index: int,
    workdir: Path,
    max_steps: int = 6,
    echo: Callable[[str], None] | None = None,
) -> Failure | None:
    """One random sequence on a fresh copy with a fresh daemon: the first difference, or None."""
    from selection_check import SelectionCheck

    rng = random.Random(f"{seed}:{index}")
    bench = StaleBench(workdir / f"seq{index}")
    steps: list[Step] = []
    selection: SelectionCheck | None = None
    try:
        bench.start()
        selection = SelectionCheck(bench)
        state = FuzzState(bench, rng)
        for _ in range(rng.randint(2, max_steps)):
            step = state.random_op()
            if step.op == "pause" or rng.random() < 0.2:
                # A second op before the run: two saves land in one debounce window.
                steps.append(step)
                step = state.random_op()
            step.command = state.random_command()
            step.thin = rng.random() < 0.25
            steps.append(step)
            if echo is not None:
                echo(f"    {step}")
            comparison = bench.compare(step.command, state.env, thin=step.thin)
            if comparison.problems:
                return Failure(seed, index, steps, comparison, bench.log_tail())
            # Never too few: what watch mode would rerun after this edit.
            reuse = comparison.cold if step.command == list(selection.args) else None
            missed = selection.check(state.env, reuse)
            if missed is not None:
                return Failure(seed, index, steps, missed, bench.log_tail())
        return None
    finally:
        if selection is not None:
            SELECTION_STATS["cycles"] += selection.cycles
            SELECTION_STATS["partial"] += selection.partial
        bench.cleanup()


def fuzz(
    seed: int,
    sequences: Sequence[int],
    max_steps: int = 6,
    verbose: bool = False,
    workdir: Path | None = None,
) -> list[Failure]:
    failures: list[Failure] = []
    own = workdir is None
    base = Path(tempfile.mkdtemp(prefix="fc-fuzz-")) if workdir is None else workdir
    try:
        for index in sequences:
            started = time.monotonic()
            failure = run_sequence(seed, index, base, max_steps, echo=print if verbose else None)
            verdict = "DIFFERENCE" if failure else "ok"
            print(f"sequence {index}: {verdict} ({time.monotonic() - started:.1f}s)", flush=True)
            if failure is not None:
                failures.append(failure)
                print(failure.report(), flush=True)
    finally:
        if own:
            shutil.rmtree(base, ignore_errors=True)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sequences", type=int, default=200, help="how many sequences (default 200)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sequence", type=int, default=None, help="replay only this sequence")
    parser.add_argument("--max-steps", type=int, default=6, help="longest sequence (default 6)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every step")
    ns = parser.parse_args(argv)
    indices = [ns.sequence] if ns.sequence is not None else list(range(ns.sequences))
    started = time.monotonic()
    failures = fuzz(ns.seed, indices, ns.max_steps, ns.verbose)
    print(
        f"{len(indices)} sequences, seed {ns.seed}: {len(failures)} with differences "
        f"in {time.monotonic() - started:.0f}s; selection check: {SELECTION_STATS['cycles']} "
        f"edits, {SELECTION_STATS['partial']} of them selecting part of the tests",
        flush=True,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
