"""Build glue: compile the Swift engine, ship libwavelane.so and build the abi3 extension.

``build_ext`` (used by ``pip install .``, ``pip install -e .`` and
``python setup.py build_ext --inplace``):

1. runs ``swift build -c release --product wavelane ...`` in the repository root, unless
   ``WAVELANE_SKIP_SWIFT_BUILD=1`` (then an existing ``.build/release/libwavelane.so`` is reused;
   ``WAVELANE_LIB=/path/libwavelane.so`` points at another one). libcrypto, zlib and libstdc++
   are linked statically when their archives exist (Debian: libssl-dev, zlib1g-dev, libstdc++-dev),
   so the library needs only glibc at run time (``WAVELANE_STATIC_DEPS=0`` links them
   dynamically). The build prints what it builds and roughly how long it takes; when there is a
   terminal (``/dev/tty``) it streams the Swift build's output there, since pip hides a build
   backend's output unless ``pip install -v``;
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
import time

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
LIB_NAME = "libwavelane.so"
SWIFT_BUILD = [
    "swift", "build", "-c", "release", "--product", "wavelane",
    "-Xswiftc", "-static-stdlib", "-Xlinker", "-z", "-Xlinker", "nodelete",
    # Dynamic exclusivity checks off in every module of the release library, SwiftNIO's included
    # (Package.swift can only set it for our own targets): swift_beginAccess / endAccess and their
    # thread-local lookups were ~8% of the inbound profile, most of it in NIO's frame decoder.
    "-Xswiftc", "-enforce-exclusivity=unchecked",
]
# Linked statically into libwavelane.so when their archives exist: the library then needs only
# glibc at run time (what a manylinux wheel may assume). The Swift static stdlib's link line
# already hides the archives' symbols (--exclude-libs ALL), so the static libcrypto never
# interposes on the libcrypto.so.3 that Python's own ssl module loads.
STATIC_DEPS = {"libcrypto.a": "libcrypto", "libz.a": "zlib", "libstdc++.a": None}
STATIC_DIR = os.path.join(ROOT, ".build", "static-deps")
BUILD_MINUTES = "5-10 minutes on 2 cores (the first build also fetches the Swift packages)"


def _archive_path(name: str, pkg: "str | None") -> "str | None":
    """Where the static archive ``name`` is, or None (pkg-config's libdir, else the C++ compiler)."""
    candidates = []
    if pkg and shutil.which("pkg-config"):
        try:
            libdir = subprocess.run(
                ["pkg-config", "--variable=libdir", pkg], capture_output=True, text=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            libdir = ""
        if libdir:
            candidates.append(os.path.join(libdir, name))
    for cc in ("c++", "g++", "gcc", "cc"):
        if shutil.which(cc):
            try:
                found = subprocess.run(
                    [cc, f"-print-file-name={name}"], capture_output=True, text=True, timeout=30
                ).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                continue
            if os.path.isabs(found):  # prints the bare name when it finds nothing
                candidates.append(found)
            break
    for path in candidates:
        if os.path.isfile(path):
            return path
    return None


def prepare_static_deps() -> dict:
    """Fill .build/static-deps with links to the static archives; returns the environment for
    ``swift build`` (empty when nothing is linked statically).

    SwiftPM takes the libraries of the system-library targets from pkg-config and adds their
    ``-L`` (the system directory) before any flag a package can set, so the directory of
    archives reaches the link line through pkg-config: .build/static-deps/pkgconfig holds
    ``libcrypto.pc`` / ``zlib.pc`` with the system's compile flags and ``-L<static-deps>``, put
    first on ``PKG_CONFIG_PATH``. That directory then comes first on the search path, and
    ``-lcrypto -lz -lstdc++`` find ``libX.a`` there before ``libX.so``.
    ``WAVELANE_STATIC_DEPS=0`` empties it (dynamic linking); missing archives stay dynamic.
    Changing this does not by itself relink an up-to-date library (delete .build/release/libwavelane.so).
    """
    pcdir = os.path.join(STATIC_DIR, "pkgconfig")
    for name, pkg in STATIC_DEPS.items():
        for stale in (os.path.join(STATIC_DIR, name), os.path.join(pcdir, f"{pkg}.pc")):
            if os.path.lexists(stale):
                os.remove(stale)
    if os.environ.get("WAVELANE_STATIC_DEPS", "1") == "0":
        return {}
    os.makedirs(pcdir, exist_ok=True)
    missing = []
    for name, pkg in STATIC_DEPS.items():
        path = _archive_path(name, pkg)
        if path is None:
            missing.append(name)
            continue
        os.symlink(path, os.path.join(STATIC_DIR, name))
        if pkg:
            # Same compile flags as the system's .pc (its Cflags line), so nothing recompiles.
            includedir = _pkg_config("--variable=includedir", pkg)
            cflags = f"-I{includedir}" if includedir else ""
            lib = name[3:-2]  # libcrypto.a -> crypto
            with open(os.path.join(pcdir, f"{pkg}.pc"), "w") as f:
                f.write(
                    f"Name: {pkg}\nDescription: {pkg}, static archive for libwavelane.so\n"
                    f"Version: {_pkg_config('--modversion', pkg) or '0'}\n"
                    f"Libs: -L{STATIC_DIR} -l{lib}\nCflags: {cflags}\n"
                )
    if missing:
        print(f"wavelane: {', '.join(missing)} not found: linking them dynamically", flush=True)
    if len(missing) == len(STATIC_DEPS):
        return {}
    return {"PKG_CONFIG_PATH": os.pathsep.join(filter(None, [pcdir, os.environ.get("PKG_CONFIG_PATH")]))}


def _pkg_config(flag: str, pkg: str) -> str:
    try:
        return subprocess.run(["pkg-config", flag, pkg], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def swift_build_command() -> list:
    return list(SWIFT_BUILD)


def _terminal():
    """A writable /dev/tty when the build runs under a terminal (pip captures stdout/stderr)."""
    if os.environ.get("WAVELANE_BUILD_TTY", "1") == "0":
        return None
    try:
        tty = open("/dev/tty", "w")
    except OSError:
        return None
    if not tty.isatty():
        tty.close()
        return None
    return tty


def run_swift_build() -> None:
    """Run the Swift build, telling the user what it is and how long it takes.

    pip shows a build backend's output only with ``-v``; when stdout is not itself a terminal
    but the process has one, the Swift build's progress goes straight to it.
    """
    env = dict(os.environ, **prepare_static_deps())
    cmd = swift_build_command()
    intro = (
        f"wavelane: building the Swift engine (libwavelane.so, release) - about {BUILD_MINUTES}.\n"
        f"wavelane: running: {' '.join(cmd)}\n"
    )
    tty = None if sys.stdout.isatty() else _terminal()
    sys.stdout.write(intro)
    sys.stdout.flush()
    if tty is None:
        if not sys.stdout.isatty():
            print("wavelane: (pip hides this output: `pip install -v .` shows it)", flush=True)
        subprocess.check_call(cmd, cwd=ROOT, env=env)
        return
    with tty:
        tty.write(intro + "wavelane: streaming the build's output here (`pip install -v .` logs it instead)\n")
        tty.flush()
        started = time.monotonic()
        rc = subprocess.call(cmd, cwd=ROOT, env=env, stdout=tty, stderr=tty)
        tty.write(f"wavelane: Swift build finished in {time.monotonic() - started:.0f} s (exit {rc})\n")
        tty.flush()
    if rc != 0:
        raise subprocess.CalledProcessError(rc, cmd)

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
                    f"WAVELANE_SKIP_SWIFT_BUILD=1 but {lib} does not exist; run: {' '.join(swift_build_command())}"
                )
            return lib
        if shutil.which("swift") is None:
            raise SystemExit(
                "the Swift 6 toolchain (swift) is required on PATH to build Wavelane from source; "
                "the manylinux wheel (see README.md) needs no toolchain"
            )
        run_swift_build()
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
        if shutil.which("strip") and os.environ.get("WAVELANE_KEEP_DEBUG_INFO") != "1":
            for ext in self.extensions:
                subprocess.call(["strip", "--strip-unneeded", self.get_ext_fullpath(ext.name)])

    def build_extensions(self) -> None:
        # The interpreter's link flags may carry -Wl,-rpath,<its prefix>/lib (pyenv, --enable-shared);
        # the abi3 extension links no libpython, and a build machine's path has no place in a
        # wheel: the only run path it needs is $ORIGIN (libwavelane.so beside it).
        for attr in ("linker_so", "linker_so_cxx"):
            cmd = getattr(self.compiler, attr, None)
            if isinstance(cmd, list):
                setattr(self.compiler, attr, [a for a in cmd if not (a.startswith("-Wl,-rpath,") and "$ORIGIN" not in a)])
        super().build_extensions()

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

# Guarded so tests can import the helpers above; setuptools' build backend runs this file as __main__.
if __name__ == "__main__":
    setup(
        ext_modules=[
            Extension(
                "wavelane._native",
                sources=["python/wavelane/_native.c", "python/wavelane/_native_convert.c", "python/wavelane/_native_outbound.c"],
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
