"""`python -m bench.peak COMMAND...`: run a command; print its wall time and the peak memory of its process
tree (PSS, each shared page counted once, and the sum of RSS)."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import tree_memory


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    child = subprocess.Popen(argv)
    pss = rss = 0
    while child.poll() is None:
        pss, rss = max(pss, tree_memory("pss", child.pid)), max(rss, tree_memory("rss", child.pid))
        time.sleep(0.5)
    print(f"{' '.join(argv)}: exit {child.returncode}, {time.perf_counter() - started:.0f} s, peak PSS of the "
          f"process tree {pss / 1e9:.2f} GB, peak RSS summed over it {rss / 1e9:.2f} GB", flush=True)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
