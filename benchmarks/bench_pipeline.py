"""Pipeline benchmark: the data loader against the train step it feeds.

    python benchmarks/bench_pipeline.py                       # same as `tubevit bench pipeline`
    python benchmarks/bench_pipeline.py --threads 1 --workers 0,1,2

Results are recorded in docs/BENCHMARKS.md ("Pipeline"). The implementation is tubevit/bench/pipeline.py.
"""

import argparse
import sys

from tubevit.bench import pipeline as bench_pipeline

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="TubeViT pipeline benchmark: loader vs train step")
    bench_pipeline.add_arguments(parser)
    sys.exit(bench_pipeline.main(parser.parse_args()))
