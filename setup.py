"""Build glue: compile the Swift engine, ship libwavelane.so and build the abi3 extension.

``build_ext`` (used by ``pip install .``, ``pip install -e .`` and
``python setup.py build_ext --inplace``):

1. runs ``swift build -c release --product wavelane ...`` in the repository root, unless
   ``WAVELANE_SKIP_SWIFT_BUILD=1`` (then an existing ``.build/release/libwavelane.so`` is reused;
   ``WAVELANE_LIB=/path/libwavelane.so`` points at another one);
2. copies ``libwavelane.so`` next to the extension (and into ``python/wavelane/`` for in-place
   and editable builds);
3. builds ``wavelane._native`` against the stable ABI (Py_LIMITED_API 3.9, tag abi3) with
   ``-Wl,-rpath,$ORIGIN`` so the extension finds the library beside it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
LIB_NAME = "libwavelane.so"
SWIFT_BUILD = [
    "swift", "build", "-c", "release", "--product", "wavelane",
    "-Xswiftc", "-static-stdlib", "-Xlinker", "-z", "-Xlinker", "nodelete",
]

try:  # setuptools >= 70.1 ships bdist_wheel itself
    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:  # pragma: no cover - older setuptools: the wheel package
    try:
        from wheel.bdist_wheel import bdist_wheel as _bdist_wheel
    except ImportError:
        _bdist_wheel = None


class BuildWavelane(build_ext):
    """build_ext that builds and bundles the Swift engine first."""

    def _swift_library(self) -> str:
        override = os.environ.get("WAVELANE_LIB")
        if override:
            if not os.path.isfile(override):
                raise SystemExit(f"WAVELANE_LIB={override} does not exist")
            return override
        lib = os.path.join(ROOT, ".build", "release", LIB_NAME)
        if os.environ.get("WAVELANE_SKIP_SWIFT_BUILD") == "1":
            if not os.path.isfile(lib):
                raise SystemExit(
                    f"WAVELANE_SKIP_SWIFT_BUILD=1 but {lib} does not exist; run: {' '.join(SWIFT_BUILD)}"
                )
            return lib
        if shutil.which("swift") is None:
            raise SystemExit("the Swift toolchain (swift) is required on PATH to build Wavelane")
        print("running:", " ".join(SWIFT_BUILD), flush=True)
        subprocess.check_call(SWIFT_BUILD, cwd=ROOT)
        return lib

    def run(self) -> None:
        lib = self._swift_library()
        ext_dir = os.path.dirname(os.path.abspath(self.get_ext_fullpath("wavelane._native")))
        targets = {ext_dir}
        if self.inplace or getattr(self, "editable_mode", False):
            targets.add(os.path.join(ROOT, "python", "wavelane"))
        for target in targets:
            os.makedirs(target, exist_ok=True)
            dest = os.path.join(target, LIB_NAME)
            if os.path.abspath(dest) != os.path.abspath(lib):
                # Copy to a temporary name then rename: never rewrite a mapped library in place.
                tmp = dest + ".tmp"
                shutil.copyfile(lib, tmp)
                # The release build carries DWARF (~17 MB); the installed library does not need it.
                if shutil.which("strip") and os.environ.get("WAVELANE_KEEP_DEBUG_INFO") != "1":
                    subprocess.call(["strip", "--strip-unneeded", tmp])
                os.replace(tmp, dest)
        for ext in self.extensions:
            ext.library_dirs = [ext_dir] + list(ext.library_dirs)
        super().run()

    def get_outputs(self) -> list:
        ext_dir = os.path.dirname(os.path.abspath(self.get_ext_fullpath("wavelane._native")))
        return super().get_outputs() + [os.path.join(ext_dir, LIB_NAME)]


cmdclass = {"build_ext": BuildWavelane}

if _bdist_wheel is not None:

    class BdistWheelAbi3(_bdist_wheel):
        """Tag wheels cp39-abi3: the extension uses only the 3.9 stable ABI."""

        def finalize_options(self) -> None:
            super().finalize_options()
            self.root_is_pure = False
            self.py_limited_api = "cp39"

    cmdclass["bdist_wheel"] = BdistWheelAbi3

setup(
    ext_modules=[
        Extension(
            "wavelane._native",
            sources=["python/wavelane/_native.c"],
            include_dirs=[os.path.join("Sources", "CWavelane", "include")],
            libraries=["wavelane"],
            define_macros=[("Py_LIMITED_API", "0x03090000")],
            extra_compile_args=["-O2", "-Wall"],
            extra_link_args=["-Wl,-rpath,$ORIGIN"],
            py_limited_api=True,
        )
    ],
    cmdclass=cmdclass,
)
