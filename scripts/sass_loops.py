"""Counts the SASS instructions of the loops of compiled kernels: for each backward branch of
each function, the instructions from its target to it, by opcode (per step: divide by the steps
one iteration walks, e.g. an adjoint kernel's segment of k steps).

    python scripts/sass_loops.py [--per K] FILE...

FILE: a CUBIN, or a spikeforge cache blob (``<cache>/cuda/<key>.cubin``: a checksummed header,
then the CUBIN). Disassembles with ``cuobjdump -sass`` (or ``nvdisasm -c`` where there is no
cuobjdump); ``--per K`` also prints each loop's count divided by K. Prints one block per function
whose name contains ``--function`` (default ``sf_``).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
LABEL = re.compile(r"^\s*(\.L_x_\d+):")
FUNCTION = re.compile(r"(?:Function : |^\s*\.text\.)(\S+?)(?::|\s*$)")


def disassemble(cubin: Path) -> str:
    if shutil.which("cuobjdump"):
        return subprocess.run(["cuobjdump", "-sass", str(cubin)], capture_output=True, text=True, check=True).stdout
    return subprocess.run(["nvdisasm", "-c", str(cubin)], capture_output=True, text=True, check=True).stdout


def opcode(text: str) -> str:
    text = re.sub(r"^@!?U?P[T0-9]+\s+", "", text)
    return text.split()[0].split(".")[0]


def loops(listing: str, name_part: str):
    """Yields (function, [(label, instructions, Counter of opcodes)]) for each function."""
    functions: dict[str, tuple[list[str], dict[str, int]]] = {}
    current = None
    for line in listing.splitlines():
        f = FUNCTION.search(line)
        if f and not INSTRUCTION.search(line):
            current = f.group(1)
            functions.setdefault(current, ([], {}))
            continue
        if current is None:
            continue
        body, labels = functions[current]
        m = LABEL.match(line)
        if m:
            labels[m.group(1)] = len(body)
            continue
        m = INSTRUCTION.search(line)
        if m:
            # cuobjdump names branch targets by address, nvdisasm by label.
            labels[hex(int(m.group(1), 16))] = len(body)
            body.append(m.group(2))
    for name, (body, labels) in functions.items():
        if name_part not in name:
            continue
        found = []
        for i, text in enumerate(body):
            target = re.search(r"`\((\.L_x_\d+)\)|BRA (0x[0-9a-f]+)", text)
            if opcode(text) != "BRA" or not target:
                continue
            label = target.group(1) or hex(int(target.group(2), 16))
            if labels.get(label, len(body)) <= i:
                part = body[labels[label] : i + 1]
                found.append((label, len(part), collections.Counter(opcode(t) for t in part)))
        yield name, len(body), found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--per", type=float, default=0.0, help="steps an iteration of the loops walks")
    p.add_argument("--function", default="sf_", help="only functions whose name contains this")
    args = p.parse_args()
    for path in args.files:
        data = path.read_bytes()
        start = data.find(b"\x7fELF")
        if start < 0:
            print(f"{path}: no CUBIN", file=sys.stderr)
            continue
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(data[start:])
            f.flush()
            listing = disassemble(Path(f.name))
        for name, total, found in loops(listing, args.function):
            print(f"{path.name}: {name}: {total} instructions")
            for label, count, ops in found:
                per = f", {count / args.per:.1f} per step" if args.per else ""
                top = ", ".join(f"{k} {v}" for k, v in ops.most_common(12))
                print(f"  loop {label}: {count} instructions{per}: {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
