#!/usr/bin/env python
"""Builds the tutorial notebooks from their sources, or checks them (CI).

    python tutorials/build.py                     # rebuild every notebook after editing a source
    python tutorials/build.py 02_custom_kernels   # rebuild one
    python tutorials/build.py --check             # CI: run every source, check every notebook is
                                                  # up to date with its source; writes nothing

A tutorial is a jupytext ``py:percent`` file, ``tutorials/NN_name.py``: cells start at ``# %%``
(code) or ``# %% [markdown]`` (text, as comments). Building converts it with jupytext, executes it
with nbclient in a fresh IPython kernel of the interpreter that runs this script (not whatever
"python3" kernelspec Jupyter would pick), with ``tutorials/`` as the working directory, and writes
``NN_name.ipynb`` next to it with the outputs (text, plots as PNG), so that a reader sees them
without running anything. The environment is inherited: ``spikeforge`` must be importable here
(installed, or ``PYTHONPATH=python_shim`` and ``SPIKEFORGE_LIBRARY`` naming the built library).

``--check`` executes every source (converted from the .py, not the stored notebook) and checks that
each committed notebook has the source's cells, in order, executed. The exit status is 0 when all is
well, 1 otherwise; a failure names the tutorial, the cell (its index and first line) and the error,
or the command that rebuilds a stale notebook.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

HERE = Path(__file__).resolve().parent
SOURCE_GLOB = "[0-9][0-9]_*.py"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
NOTEBOOK_METADATA = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


class TutorialFailed(Exception):
    pass


class _ThisPython(KernelSpecManager):
    """Every kernel name resolves to an IPython kernel of the running interpreter."""

    def get_kernel_spec(self, kernel_name):
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name=f"Python ({sys.executable})",
            language="python",
            resource_dir=str(HERE),
        )


def rebuild_command(source: Path) -> str:
    return f"python tutorials/build.py {source.stem}"


def notebook_from_source(source: Path) -> nbformat.NotebookNode:
    """The notebook of a py:percent source, without outputs, with ids that depend on position only."""
    nb = jupytext.read(source, fmt="py:percent")
    nb.metadata = nbformat.from_dict(NOTEBOOK_METADATA)
    for index, cell in enumerate(nb.cells):
        cell.id = f"cell-{index:02d}"  # stable ids: a rebuild changes only what changed
        cell.metadata = nbformat.NotebookNode()
    return nb


def _describe(nb: nbformat.NotebookNode, index: int) -> str:
    cell = nb.cells[index]
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    return f"cell {index} ({cell.cell_type}): {first.strip()[:80]!r}"


def execute(nb: nbformat.NotebookNode, name: str, timeout: int) -> float:
    """Runs every cell of ``nb`` in place (outputs stored in it); returns the seconds it took."""
    # The inline backend stores figures as PNG; an MPLBACKEND from the caller (Agg in CI) would stop it.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    with tempfile.TemporaryDirectory(prefix="sf-nb-") as socket_dir, contextlib.ExitStack() as stack:
        # The async manager, like nbclient's own default: with a blocking one, cell timeouts never fire.
        km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_ThisPython())
        if os.name == "posix":
            # IPC sockets at an absolute path (the kernel runs in tutorials/): no TCP ports to
            # collide in CI, no "running over TCP without encryption" warning.
            km.transport = "ipc"
            km.ip = os.path.join(socket_dir, "kernel")
        client = NotebookClient(
            nb,
            km=km,
            timeout=timeout,
            allow_errors=False,
            record_timing=False,  # no timestamps in the stored notebook: a rebuild diffs only outputs
            coalesce_streams=True,  # one stdout output per cell, not split where the kernel flushed
            resources={"metadata": {"path": str(HERE)}},
        )
        start = time.perf_counter()
        client.reset_execution_trackers()
        try:
            stack.enter_context(client.setup_kernel(cleanup_kc=True, env=env))  # we own km: shut it down
            info = client.wait_for_reply(client.kc.kernel_info())
        except Exception as err:
            raise TutorialFailed(f"{name}: the kernel ({sys.executable} -m ipykernel) did not start: {err}") from None
        nb.metadata["language_info"] = info["content"]["language_info"]
        for index, cell in enumerate(nb.cells):
            try:
                client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except CellTimeoutError:
                raise TutorialFailed(f"{name}: {_describe(nb, index)} timed out after {timeout} s") from None
            except DeadKernelError as err:
                raise TutorialFailed(f"{name}: the kernel died in {_describe(nb, index)}\n{err}") from None
            except CellExecutionError as err:
                evalue = ANSI.sub("", err.evalue).strip().splitlines() or [""]
                detail = ANSI.sub("", str(err)).strip()
                raise TutorialFailed(
                    f"{name}: {_describe(nb, index)} raised {err.ename}: {evalue[0]}\n\n{detail}"
                ) from None
        return time.perf_counter() - start


def staleness(source: Path) -> str | None:
    """Why the committed notebook of ``source`` is not its built form, or None when it is."""
    notebook = source.with_suffix(".ipynb")
    if not notebook.is_file():
        return f"tutorials/{notebook.name} does not exist"
    want = notebook_from_source(source)
    have = nbformat.read(notebook, as_version=4)
    cells = lambda nb: [(c.cell_type, c.source) for c in nb.cells]
    if cells(want) != cells(have):
        if len(want.cells) != len(have.cells):
            return f"tutorials/{notebook.name} has {len(have.cells)} cells, {source.name} has {len(want.cells)}"
        index = next(k for k, (w, h) in enumerate(zip(cells(want), cells(have))) if w != h)
        return f"{_describe(want, index)} of {source.name} differs in tutorials/{notebook.name}"
    unrun = [k for k, c in enumerate(have.cells) if c.cell_type == "code" and c.execution_count is None]
    if unrun:
        return f"tutorials/{notebook.name} was stored without running cells {unrun} (no outputs)"
    return None


def sources(names: list[str]) -> list[Path]:
    if not names:
        found = sorted(HERE.glob(SOURCE_GLOB))
        if not found:
            raise TutorialFailed(f"no tutorial sources ({SOURCE_GLOB}) in {HERE}")
        return found
    paths = []
    for name in names:
        path = HERE / (Path(name).stem + ".py")
        if not path.is_file():
            raise TutorialFailed(f"no tutorial source {path}")
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tutorials", nargs="*", help=f"tutorials to build, e.g. 01_lif_and_hh (default: {SOURCE_GLOB})")
    parser.add_argument("--check", action="store_true", help="run the sources and check the notebooks; write nothing")
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed per cell (default 300)")
    args = parser.parse_args(argv)

    try:
        paths = sources(args.tutorials)
    except TutorialFailed as err:
        print(err, file=sys.stderr)
        return 1
    if importlib.util.find_spec("spikeforge") is None:
        print(
            f"spikeforge is not importable by {sys.executable}: install it, or build the library "
            "(cargo build --release), set PYTHONPATH=python_shim and "
            "SPIKEFORGE_LIBRARY=target/release/libspikeforge.so",
            file=sys.stderr,
        )
        return 1

    failures = []
    if args.check:
        for source in paths:
            reason = staleness(source)
            if reason:
                failures.append(source.name)
                print(
                    f"STALE   {reason}.\n        The .py is the source: rebuild the notebook with "
                    f"`{rebuild_command(source)}` and commit it (tutorials/README.md).",
                    file=sys.stderr,
                    flush=True,
                )
    for source in paths:
        print(f"running {source.name} ...", flush=True)
        nb = notebook_from_source(source)
        try:
            elapsed = execute(nb, source.name, args.timeout)
        except TutorialFailed as err:
            failures.append(source.name)
            print(f"FAILED  {err}", file=sys.stderr, flush=True)
            continue
        if not args.check:
            nbformat.validate(nb)
            nbformat.write(nb, source.with_suffix(".ipynb"))
        written = "" if args.check else f", wrote {source.with_suffix('.ipynb').name}"
        print(f"ok      {source.name} in {elapsed:.1f} s{written}", flush=True)

    if failures:
        print(f"failed: {', '.join(sorted(set(failures)))}", file=sys.stderr)
        return 1
    print(f"all {len(paths)} tutorial(s) " + ("ran and match their notebooks" if args.check else "built"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
