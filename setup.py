"""File name and wheel tags for the Rust library, which Python loads with ctypes.

Everything else is in pyproject.toml. setuptools-rust builds the library (`binding = "NoBinding"`)
but names and tags it as a CPython extension module: `_spikeforge.cpython-312-x86_64-linux-gnu.so`
in a `cp312-cp312-linux_x86_64` wheel. It is a plain C-ABI shared library that neither links nor
calls libpython, so any Python 3 can load it: it is named `_spikeforge.so`, and the wheel is tagged
`py3-none-<platform>` (not pure Python, not tied to a CPython version or ABI).
"""

import os

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext

NATIVE_LIBRARY = "_spikeforge"


class BuildExt(build_ext):
    def get_ext_filename(self, fullname):
        if fullname.rsplit(".", 1)[-1] == NATIVE_LIBRARY:
            return os.path.join(*fullname.split(".")) + ".so"
        return super().get_ext_filename(fullname)


class BdistWheel(bdist_wheel):
    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(cmdclass={"build_ext": BuildExt, "bdist_wheel": BdistWheel})
