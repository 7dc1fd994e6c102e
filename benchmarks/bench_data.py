"""Data benchmark: sparse clip decoding vs whole-file decoding, clips/s per worker.

    python benchmarks/bench_data.py            # same as `tubevit bench-data`
    python benchmarks/bench_data.py --quick    # smoke test (2 s clips)

Results are recorded in docs/BENCHMARKS.md ("Data"). The implementation is
tubevit/data/bench.py.
"""

import argparse
import sys

from tubevit.cli import bench_data

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=bench_data.HELP)
    bench_data.add_arguments(parser)
    sys.exit(bench_data.run(parser.parse_args()))
