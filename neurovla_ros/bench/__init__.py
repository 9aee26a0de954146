"""Benchmarks: ``neurovla bench NAME`` runs ``neurovla_ros.bench.NAME.main(argv)``.

Each prints progress, writes plots under ``bench_out/`` and prints one JSON line last.
"""
