"""Benchmarks behind ``tubevit bench``: the model's (``tubevit.bench.model``) and the
loader against the train step (``tubevit.bench.pipeline``); the data benchmark
lives with the data code (``tubevit.data.bench``)."""
