"""Build hook: put pytest-fastcollect.pth into site-packages. Everything else is in pyproject.toml.

The .pth line (see src/pytest_fastcollect/client/early.py) lets the
``pytest`` command hand its run to the daemon before pytest is imported. A
wheel's root lands in site-packages, so a plain build copies the file into
build_lib; an editable build (setuptools' editable_wheel, PEP 660) points
the ``install`` command at the wheel it is assembling, so the file goes
there. Either way it is listed in the wheel's RECORD, so ``pip uninstall``
removes it.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "pytest-fastcollect.pth"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src", PTH)


class BuildPyWithPth(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            target = self.get_finalized_command("install").install_lib
        else:
            target = self.build_lib
        self.copy_file(SOURCE, os.path.join(target, PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not self.editable_mode:
            outputs.append(os.path.join(self.build_lib, PTH))
        return outputs


setup(cmdclass={"build_py": BuildPyWithPth})
