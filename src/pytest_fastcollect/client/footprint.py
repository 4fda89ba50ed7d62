"""Whether a rootdir is too big to start a daemon for without asking.

Runs in the client, at ``--daemon-start`` and ``--daemon-restart`` with new
paths. Without an ini file pytest takes the current directory as rootdir,
so ``pytest --daemon-start proj/tests`` started in the system temp directory
or in a home directory makes a daemon that watches (and replaces its warm
process for) everything under it. Such a start is refused unless confirmed
when the rootdir has no ini file and holds far more files than the warm
paths. A project with an ini file never is: its rootdir was chosen.
"""

from __future__ import annotations

import os

from pytest_fastcollect.paths import IGNORED_DIRS

# The rootdir must hold more than MIN_FILES files and more than RATIO times
# the files of the warm paths. Counting stops once the answer is known.
MIN_FILES = 1000
RATIO = 10
WARM_LIMIT = 10_000


def count_files(path: str, limit: int) -> int:
    """Files under ``path`` (a file counts 1), skipping the directories the
    daemon never watches and not following symlinks; at most ``limit``."""
    if not os.path.isdir(path):
        return 1 if os.path.exists(path) else 0
    total = 0
    stack = [path]
    while stack and total < limit:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    if is_dir:
                        name = entry.name
                        if name not in IGNORED_DIRS and not name.endswith(
                            (".egg-info", ".dist-info")
                        ):
                            stack.append(entry.path)
                    else:
                        total += 1
        except OSError:
            continue
    return min(total, limit)


def oversized(rootdir: str, has_ini: bool, warm_paths: list[str]) -> str | None:
    """Why starting here needs confirmation (one sentence), or None."""
    if has_ini:
        return None
    warm = min(sum(count_files(p, WARM_LIMIT) for p in warm_paths), WARM_LIMIT)
    threshold = max(MIN_FILES, RATIO * warm)
    found = count_files(rootdir, threshold + 1)
    if found <= threshold:
        return None
    return (
        f"the rootdir {rootdir} has no pytest ini file and holds more than {threshold:,} "
        f"files, against {warm:,} in the paths to warm up; a daemon would watch all of them"
    )
