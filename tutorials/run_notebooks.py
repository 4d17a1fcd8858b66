#!/usr/bin/env python
"""Executes the tutorial notebooks with nbclient, in the Python that runs this script.

    python tutorials/run_notebooks.py                 # every tutorials/*.ipynb, nothing written
    python tutorials/run_notebooks.py 01_lif_and_hh.ipynb --timeout 300
    python tutorials/run_notebooks.py --inplace       # also store the outputs in the notebooks

Each notebook runs in a fresh IPython kernel started with this interpreter (``sys.executable``),
not with whatever "python3" kernelspec Jupyter would pick, and with the notebook's folder as the
working directory. The environment is inherited, so ``spikeforge`` must be importable here
(installed, or ``PYTHONPATH=python_shim`` with the library built in target/release).

The exit status is 0 when every notebook ran, 1 otherwise; a failure names the notebook, the
cell (its index and first line) and the error. Notebooks are only written back with --inplace.
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

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

HERE = Path(__file__).resolve().parent
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _ThisPython(KernelSpecManager):
    """Every kernel name resolves to an IPython kernel of the running interpreter."""

    def get_kernel_spec(self, kernel_name):
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name=f"Python ({sys.executable})",
            language="python",
            resource_dir=str(HERE),
        )


class NotebookFailed(Exception):
    pass


def _describe(nb, index: int) -> str:
    cell = nb.cells[index]
    code_number = sum(1 for c in nb.cells[: index + 1] if c.cell_type == "code")
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    return f"cell {index} (code cell #{code_number}, id {cell.get('id', '?')}): {first.strip()[:80]!r}"


def run_notebook(path: Path, timeout: int, inplace: bool) -> float:
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="sf-nb-") as socket_dir, contextlib.ExitStack() as stack:
        # The async manager, like nbclient's own default: with a blocking one, cell timeouts never fire.
        km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_ThisPython())
        if os.name == "posix":
            # IPC sockets, at an absolute path (the kernel runs in the notebook's folder): no TCP
            # ports to collide in CI, no "running over TCP without encryption" warning.
            km.transport = "ipc"
            km.ip = os.path.join(socket_dir, "kernel")
        client = NotebookClient(
            nb,
            km=km,
            timeout=timeout,
            allow_errors=False,
            record_timing=True,
            resources={"metadata": {"path": str(path.parent)}},
        )
        start = time.perf_counter()
        client.reset_execution_trackers()
        try:
            stack.enter_context(client.setup_kernel(cleanup_kc=True))  # we own km: shut the kernel down
            info = client.wait_for_reply(client.kc.kernel_info())
        except Exception as err:
            raise NotebookFailed(
                f"{path.name}: the kernel ({sys.executable} -m ipykernel) did not start: {err}"
            ) from None
        nb.metadata["language_info"] = info["content"]["language_info"]
        for index, cell in enumerate(nb.cells):
            try:
                client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except CellTimeoutError:
                raise NotebookFailed(f"{path.name}: {_describe(nb, index)} timed out after {timeout} s") from None
            except DeadKernelError as err:
                raise NotebookFailed(f"{path.name}: the kernel died in {_describe(nb, index)}\n{err}") from None
            except CellExecutionError as err:
                evalue = ANSI.sub("", err.evalue).strip().splitlines() or [""]
                detail = ANSI.sub("", str(err)).strip()
                raise NotebookFailed(
                    f"{path.name}: {_describe(nb, index)} raised {err.ename}: {evalue[0]}\n\n{detail}"
                ) from None
        elapsed = time.perf_counter() - start
    if inplace:
        nbformat.write(nb, path)
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to run (default: every .ipynb in tutorials/)"
    )
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed per cell (default 300)")
    parser.add_argument("--inplace", action="store_true", help="write the executed notebooks (with outputs) back")
    args = parser.parse_args(argv)

    paths = [p if p.exists() else HERE / p for p in args.notebooks] or sorted(HERE.glob("*.ipynb"))
    if not paths:
        print(f"no notebooks found in {HERE}", file=sys.stderr)
        return 1
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print("not found: " + ", ".join(missing), file=sys.stderr)
        return 1
    if importlib.util.find_spec("spikeforge") is None:
        print(
            f"spikeforge is not importable by {sys.executable}: install it, or build the library "
            "(cargo build --release) and set PYTHONPATH=python_shim",
            file=sys.stderr,
        )
        return 1

    failures = []
    for path in paths:
        print(f"running {path.name} ...", flush=True)
        try:
            elapsed = run_notebook(path, args.timeout, args.inplace)
        except NotebookFailed as err:
            failures.append(path.name)
            print(f"FAILED {err}", file=sys.stderr, flush=True)
            continue
        print(f"ok      {path.name} in {elapsed:.1f} s" + (" (outputs written)" if args.inplace else ""), flush=True)

    if failures:
        print(f"{len(failures)} of {len(paths)} notebook(s) failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    print(f"all {len(paths)} notebook(s) ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
