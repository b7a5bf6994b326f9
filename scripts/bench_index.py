"""Benchmark the index (utils/index) on generated 64-bit codes: build and add throughput, search q/s and
memory, for the embedded backend and Milvus Lite, and the time to add 1% to an index vs rebuilding it.

    python scripts/bench_index.py                                  # 1M and 10M embedded, 1M Milvus Lite
    python scripts/bench_index.py --sizes 1000000 --milvus-size 0  # quicker
    python scripts/bench_index.py --radius 0,1,2,3,4               # radius lookup: scan vs multi-index hashing

Codes are random (the model's encoding is not timed here: scripts/bench_inference.py measures it, and it
dominates a real build); every item gets a path and a content hash in the catalogue, as a real build
writes. "items/s" counts codes committed (segment file + catalogue rows). Memory: the bytes of codes and
ids a search holds, and the process's peak RSS growth while loading and searching.
"""
import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.index import Index  # noqa: E402

CHUNK = 100_000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000000,10000000", help="embedded index sizes (default %(default)s)")
    p.add_argument("--milvus-size", type=int, default=1_000_000, help="Milvus Lite index size (0: skip)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--bit", type=int, default=64)
    p.add_argument("--dir", default=None, help="scratch folder (default: a temporary one, deleted)")
    p.add_argument("--radius", default=None, metavar="R,R,...",
                   help="instead: time the exact radius lookup (utils/retrieval/radius.py), scan against multi-"
                        "index hashing and the per-query choice, on uniform and on clustered codes")
    p.add_argument("--radius-queries", type=int, default=200, help="queries per radius measurement")
    p.add_argument("--radius-crossover", action="store_true",
                   help="instead: on crowded codes, print the share of the database that multi-index hashing "
                        "must check beside its time against the scan (how MIH_MAX_FRACTION was chosen)")
    return p.parse_args(argv)


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(index, codes, start=0):
    for s in range(0, len(codes), CHUNK):
        part = codes[s:s + CHUNK]
        n0 = start + s
        index.add(part, [f"images/{i:09d}.jpg" for i in range(n0, n0 + len(part))], None,
                  [f"{i:064x}" for i in range(n0, n0 + len(part))])


def bench(backend, n, args, scratch, rng):
    nbytes = args.bit // 8
    codes = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    extra = rng.integers(0, 256, (n // 100, nbytes), dtype=np.uint8)
    queries = rng.integers(0, 256, (args.queries, nbytes), dtype=np.uint8)
    path = os.path.join(scratch, f"{backend}_{n}")
    uri = os.path.join(scratch, f"{backend}_{n}.db") if backend == "milvus" else None
    t = time.perf_counter()
    index = Index.create(path, args.bit, {"bench": 1}, backend, uri)
    fill(index, codes)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    fill(index, extra, n)
    add_s = time.perf_counter() - t
    rss0 = rss_mb()
    t = time.perf_counter()
    snap = index.snapshot()
    load_s = time.perf_counter() - t
    snap.search(queries[:8], args.k)  # compile / warm up
    t = time.perf_counter()
    if backend == "milvus":
        for s in range(0, len(queries), 100):
            snap.search(queries[s:s + 100], args.k)
    else:
        snap.search(queries, args.k)
    search_s = time.perf_counter() - t
    mem = snap.memory_bytes
    info = index.info()
    index.close()
    shutil.rmtree(path, ignore_errors=True)
    if uri and os.path.exists(uri):
        os.remove(uri)
    print(f"{backend:>8} {n:>10,}: build {n / build_s:>9,.0f} items/s ({build_s:6.1f} s), "
          f"add 1% {len(extra) / add_s:>9,.0f} items/s ({add_s:5.2f} s, {build_s / add_s:5.1f}x faster than the "
          f"build), load {load_s:5.2f} s, search top-{args.k} {len(queries) / search_s:>8,.0f} q/s, "
          f"codes+ids {'%.0f MB' % (mem / 2**20) if mem is not None else 'in Milvus'}, "
          f"peak RSS +{rss_mb() - rss0:,.0f} MB, disk {info['disk_bytes'] / 2**20:,.0f} MB", flush=True)


def clustered_codes(n, bits, rng, centres=100, flip=0.1):
    """Codes like a trained model's: `centres` random class codes, each bit flipped with probability `flip`."""
    c = rng.integers(0, 2, (centres, bits), dtype=np.uint8)
    x = c[rng.integers(0, centres, n)] ^ (rng.random((n, bits)) < flip).astype(np.uint8)
    return np.packbits(x, axis=1)


def bench_radius(n, radii, args, rng):
    from utils.retrieval.radius import RadiusIndex

    for kind in ("uniform", "clustered"):
        if kind == "uniform":
            codes = rng.integers(0, 256, (n, args.bit // 8), dtype=np.uint8)
        else:
            codes = clustered_codes(n, args.bit, rng)
        queries = codes[rng.integers(0, n, args.radius_queries)] ^ (rng.random((args.radius_queries, args.bit // 8))
                                                                     < 0.02).astype(np.uint8)
        index = RadiusIndex(codes, args.bit)
        for r in radii:
            times, found = {}, None
            for alg in ("scan", "mih", "auto"):
                index.search(queries[:2], r, algorithm=alg)  # compile / build the tables
                t = time.perf_counter()
                hits = index.search(queries, r, algorithm=alg)
                times[alg] = time.perf_counter() - t
                got = [h.indices for h in hits]
                if found is None:
                    found = got
                assert all(np.array_equal(a, b) for a, b in zip(found, got)), "algorithms disagree"
                if alg == "auto":
                    share = sum(h.algorithm == "mih" for h in hits) / len(queries)
            mean = np.mean([len(h) for h in found])
            q = len(queries)
            print(f"{kind:>9} {n:>11,} R={r}: {mean:10.1f} results/query | scan {q / times['scan']:>9,.0f} q/s | "
                  f"mih {q / times['mih']:>9,.0f} q/s ({times['scan'] / times['mih']:6.1f}x scan) | auto "
                  f"{q / times['auto']:>9,.0f} q/s ({times['scan'] / times['auto']:6.1f}x scan, mih for "
                  f"{share:.0%} of queries)", flush=True)


def radius_crossover(n, args, rng):
    from utils.retrieval.radius import RadiusIndex

    for centres in (20, 100, 1000):
        for flip in (0.01, 0.03):
            codes = clustered_codes(n, args.bit, rng, centres, flip)
            index = RadiusIndex(codes, args.bit)
            queries = codes[rng.integers(0, n, 50)]
            for r in (1, 2, 3):
                times = {}
                for alg in ("scan", "mih"):
                    index.search(queries[:2], r, algorithm=alg)
                    t = time.perf_counter()
                    index.search(queries, r, algorithm=alg)
                    times[alg] = (time.perf_counter() - t) / len(queries)
                m = max(r + 1, -(-args.bit // 64))
                keys = index._keys(queries, m)
                share = np.mean([np.subtract(*index._buckets(keys[i], m, limit=None)[::-1]).sum() / n
                                 for i in range(len(queries))])
                print(f"{centres:5d} centres, flip {flip:.2f}, R={r}: MIH checks {share:7.2%} of {n:,} | scan "
                      f"{times['scan'] * 1e3:6.2f} ms | mih {times['mih'] * 1e3:6.2f} ms | mih/scan "
                      f"{times['mih'] / times['scan']:5.2f}", flush=True)


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(0)
    if args.radius_crossover:
        radius_crossover(int(args.sizes.split(",")[0]), args, rng)
        return
    if args.radius is not None:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            bench_radius(n, [int(r) for r in args.radius.split(",")], args, rng)
        return
    scratch = args.dir or tempfile.mkdtemp(prefix="bench_index.")
    os.makedirs(scratch, exist_ok=True)
    try:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            bench("embedded", n, args, scratch, rng)
        if args.milvus_size:
            try:
                bench("milvus", args.milvus_size, args, scratch, rng)
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"  milvus: not measured ({type(exc).__name__}: {exc})")
    finally:
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
