"""``python -m ops.bench NAME [--quick]``: run benchmarks, print one JSON document on stdout.

Exit codes: 0 success, 1 a benchmark failed (traceback on stderr, nothing on stdout), 2 usage
error such as an unknown benchmark name.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import traceback
from collections.abc import Sequence

from ops.bench.harness import ALL, REGISTRY, BenchError, run_named

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in (*REGISTRY, ALL))
    lines = [f"  {spec.name:<{width}}  {spec.summary}" for spec in REGISTRY.values()]
    lines.append(f'  {ALL:<{width}}  every benchmark above, as {{"benches": [...]}}')
    parser = argparse.ArgumentParser(
        prog="python -m ops.bench",
        description="Run a benchmark and print its results as one JSON object on stdout; "
        "progress and logs go to stderr.",
        epilog="benchmarks:\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", metavar="NAME", help="a benchmark name, or 'all'")
    parser.add_argument("--quick", action="store_true", help="a tiny run, for tests and CI")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.name != ALL and args.name not in REGISTRY:
        known = ", ".join([*REGISTRY, ALL])
        print(f"ops.bench: unknown benchmark {args.name!r}; known: {known}", file=sys.stderr)
        return EXIT_USAGE
    try:
        # Anything a benchmark prints goes to stderr so stdout holds only the JSON document.
        with contextlib.redirect_stdout(sys.stderr):
            document = run_named(args.name, quick=args.quick)
    except BenchError as exc:
        print(f"ops.bench: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception:
        traceback.print_exc(file=sys.stderr)
        print(f"ops.bench: benchmark {args.name!r} failed", file=sys.stderr)
        return EXIT_FAILED
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
