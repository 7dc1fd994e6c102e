"""Model benchmark: TubeViT fp32/bf16 against a dense video ViT, inference and training.

    python benchmarks/bench_model.py                          # same as `tubevit bench model`
    python benchmarks/bench_model.py --model tubevit_base --threads 1

Results are recorded in docs/BENCHMARKS.md ("Model"). The implementation is tubevit/bench/model.py.
"""

import argparse
import sys

from tubevit.bench import model as bench_model

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="TubeViT model benchmark")
    bench_model.add_arguments(parser)
    sys.exit(bench_model.main(parser.parse_args()))
