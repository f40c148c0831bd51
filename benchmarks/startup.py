"""Start-up cost: wall time of fresh interpreters importing rxalpaca, against a bare one.

    python benchmarks/startup.py                      # 15 interleaved rounds
    python benchmarks/startup.py --rounds 25 --base /tmp/old  # also an older tree's rxalpaca/

Each case is a new ``python -c`` process (bytecode cached, as for an installed package);
rounds interleave the cases so load on a shared machine hits them alike. Reported: the
median wall time per case, and the median over rounds of its excess over the bare
interpreter of the same round. ``python -X importtime -c "import rxalpaca"`` shows where the
time goes (docs/benchmarks.md, "Import time").
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "bare interpreter": "pass",
    "import rxalpaca": "import rxalpaca",
    "from rxalpaca import Trade": "from rxalpaca import Trade",
    "from rxalpaca import StreamClient, ops": "from rxalpaca import StreamClient, ops",
    "rxalpaca --help": "import sys; sys.argv = ['rxalpaca', '--help']\n"
    "from rxalpaca.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass",
}


_PRELUDE = (
    "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
    "sys.path.insert(0, {path!r})\n"
)


def _wall(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--base", help="a directory holding another rxalpaca/ to compare")
    args = parser.parse_args(argv)
    trees = {"this tree": None} | ({"base": args.base} if args.base else {})
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds + 1):  # the first round fills the bytecode caches: dropped
        for tree, path in trees.items():
            # Another tree: bypass an editable install's finder, put the tree first (the bare
            # case runs the same prelude).
            prelude = _PRELUDE.format(path=path) if path else ""
            for case, code in CASES.items():
                times.setdefault((tree, case), []).append(_wall(prelude + code, env))
    print("| tree | case | median wall ms | over bare, median ms |")
    print("|---|---|---:|---:|")
    for (tree, case), ts in times.items():
        bare = times[(tree, "bare interpreter")]
        over = [t - b for t, b in zip(ts[1:], bare[1:], strict=True)]
        print(
            f"| {tree} | {case} | {statistics.median(ts[1:]) * 1e3:.0f} "
            f"| {statistics.median(over) * 1e3:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
