"""Registers, spills and static shared memory of the microcircuit's CUDA kernels: the generated
source (bench_microcircuit.py's network at a small scale, with the full model's longest delays,
which size the rings and the delay buckets) compiled by NVRTC to PTX, then by ``ptxas -v`` for
``--arch`` (nvcc's ptxas on PATH). Occupancy decides how many of the delivery kernel's blocks
run at once; spills show code too large for the registers.

Usage::

    python bench/microcircuit_resources.py [--scale 0.02] [--arch 90] [--keep DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_microcircuit as mc  # noqa: E402
from spikeforge.kernels import compile_cuda  # noqa: E402
from spikeforge.network import _abi  # noqa: E402
from spikeforge.network.spec import network_spec  # noqa: E402

# the full model's longest delays (ms): normal, clipped below at dt, over tens of millions of draws
LONGEST = {False: 5.8, True: 2.9}  # excitatory, inhibitory source


def source(scale: float) -> str:
    net, _ = mc.build(mc.Circuit(scale), "per_step")
    variant = net._default_variant("float32", steps=1)
    longest = tuple((name, LONGEST[name.split("_")[1].endswith("I")]) for name, _ in variant.max_delay)
    spec = network_spec(
        net.members,
        dt=net.dt,
        deterministic=net.deterministic,
        variant=dataclasses.replace(variant, max_delay=longest),
    )
    out = _abi.network_source(json.dumps(spec), "cuda")
    if not out.get("ok"):
        raise SystemExit(out["error"])
    return out["source"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.02)
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--keep", help="write the source and PTX here")
    args = parser.parse_args(argv)
    if shutil.which("ptxas") is None:
        parser.error("needs ptxas (nvcc's) on PATH")
    cu = source(args.scale)
    kernels = re.findall(r"__global__ void __launch_bounds__\(\d+\) (\w+)\(", cu)
    ptx = compile_cuda(cu, kernels, arch=(args.arch // 10, args.arch % 10))
    with tempfile.TemporaryDirectory() as tmp:
        where = args.keep or tmp
        os.makedirs(where, exist_ok=True)
        with open(os.path.join(where, "microcircuit.cu"), "w") as f:
            f.write(cu)
        path = os.path.join(where, "microcircuit.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        done = subprocess.run(
            ["ptxas", f"-arch=sm_{args.arch}", "-v", path, "-o", os.path.join(where, "microcircuit.cubin")],
            capture_output=True,
            text=True,
        )
    report = done.stdout + done.stderr
    kernel = None
    for line in report.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            kernel = m.group(1)
        elif kernel and ("registers" in line or "spill" in line):
            print(f"{kernel}: {line.split('info    :')[-1].strip()}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
