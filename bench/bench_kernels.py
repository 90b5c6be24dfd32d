"""Kernel benchmark (the harness lives in fastdream.bench.kernels so `fastdream bench` runs it too).

    python bench/bench_kernels.py --json bench/results/<machine>-kernels.json
"""
import sys

import fastdream

fastdream.configure_process()  # before torch, as the CLI does (fastdream.process)

from fastdream.bench.kernels import main

if __name__ == "__main__":
    sys.exit(main())
