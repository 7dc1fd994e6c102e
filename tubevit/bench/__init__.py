"""Benchmarks behind ``tubevit bench``: the model's (``tubevit.bench.model``); the data benchmark
lives with the data code (``tubevit.data.bench``)."""
