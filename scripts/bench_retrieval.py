"""Benchmark utils.retrieval on COCO-scale synthetic codes and print a table.

    python scripts/bench_retrieval.py            # 117,218 db × 5,000 queries × 64 bits, top-10 over 1 M codes
    python scripts/bench_retrieval.py --quick    # small sizes, a few seconds (smoke test)

Data: 80 classes with random ±1 centre codes; each image has 1-3 labels, its code is the sign of the sum
of its label centres (ties: first label's centre) with each bit flipped with probability --flip.
Database codes are int8 ±1 (as in database_code_<bit>.npy), queries float32 ±1 (as from a network).

Steps
1. The plain per-query loop (DeepHash-pytorch CalcTopMap with a stable argsort and 0 for queries without
   relevant items) on --ref-queries queries; its time per query is extrapolated to all queries.
2. utils.retrieval.mean_average_precision on all queries (after a warm-up compile on a small input;
   best of --repeat runs); its per-query APs on the subset must equal the loop's to 1e-9. Peak extra
   memory: the rise of the process' peak RSS (VmHWM, reset through /proc/self/clear_refs before the call;
   ru_maxrss if that is unavailable) over the RSS before the call, and the peak of Python/numpy
   allocations seen by tracemalloc (numba's own buffers are not traced by it, RSS covers them).
3. Tie-aware mAP: value and time.
3b. The radius and R-based pass (utils.retrieval.rank_stats: precision / recall within radius 2, MAP@R,
   R-precision, precision@k / recall@k for k = 1, 10, 100, topK, the radius curve): time and peak extra
   memory, i.e. what every evaluation adds to the two mAP passes; and, for comparison, the two passes the
   report made before (precision_recall_at_k + pr_curve_hamming_radius), which this one pass replaces there.
   MAP@R and R-precision on the --ref-queries subset must equal a plain per-query loop to 1e-9.
4. Exact top-k over --search-db codes: the numba backend vs faiss IndexBinaryFlat (if installed), same
   distances required; our indices must equal a (distance, index) lexsort on a subset of queries.
"""
import argparse
import ctypes
import os
import resource
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils import retrieval  # noqa: E402
from utils.retrieval.kernels_numba import numba  # noqa: E402 - None without numba

try:
    import faiss
except ImportError:
    faiss = None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-db", type=int, default=117218, help="database size for mAP")
    p.add_argument("--n-query", type=int, default=5000, help="queries for mAP")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--topk", type=int, default=5000, help="mAP@topk (-1: whole database)")
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--flip", type=float, default=0.2, help="probability of flipping each bit of a class code")
    p.add_argument("--ref-queries", type=int, default=200, help="queries run through the plain loop")
    p.add_argument("--search-db", type=int, default=1_000_000, help="database size for exact top-k")
    p.add_argument("--search-queries", type=int, default=2000)
    p.add_argument("--search-k", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3, help="timed runs of the fast paths (best is reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    p.add_argument("--no-search", action="store_true", help="skip step 4 (exact top-k over --search-db codes)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_db, args.n_query, args.ref_queries, args.topk = 5000, 300, 50, 500
        args.search_db, args.search_queries, args.repeat = 20000, 200, 1
    return args


# ------------------------------------------------------------------------------------------------ data
def make_data(rng, n, centres, flip, chunk=100_000):
    """(codes ±1 int8 (n, bits), multi-hot labels uint8 (n, classes)), generated in chunks."""
    n_classes, bits = centres.shape
    codes = np.empty((n, bits), np.int8)
    labels = np.zeros((n, n_classes), np.uint8)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        m = e - s
        picks = rng.integers(0, n_classes, (m, 3))
        n_labels = rng.integers(1, 4, m)
        rows = np.arange(m)
        score = np.zeros((m, bits), np.int32)
        for c in range(3):
            use = c < n_labels
            labels[s + rows[use], picks[use, c]] = 1
            score[use] += centres[picks[use, c]]
        score = np.where(score == 0, centres[picks[:, 0]], score)
        flipped = rng.random((m, bits)) < flip
        codes[s:e] = np.where((score > 0) ^ flipped, 1, -1)
    return codes, labels



# ------------------------------------------------------------------------------------------ reference
def plain_loop_map(q_codes, db_codes, q_labels, db_labels, topk):
    """DeepHash-pytorch CalcTopMap, with a stable argsort and AP 0 for queries without relevant items."""
    bits = q_codes.shape[1]
    aps = []
    for i in range(len(q_codes)):
        gnd = (q_labels[i] @ db_labels.T > 0).astype(np.float32)
        hamm = 0.5 * (bits - q_codes[i] @ db_codes.T)
        ind = np.argsort(hamm, kind="stable")
        tgnd = gnd[ind][:topk]
        tsum = int(tgnd.sum())
        if tsum == 0:
            aps.append(0.0)
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.flatnonzero(tgnd) + 1.0
        aps.append(float(np.mean(count / tindex)))
    return np.array(aps)


# --------------------------------------------------------------------------------------------- memory
def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_extra_memory(fn):
    """Run fn(); → (result, extra peak RSS in MB, method, tracemalloc peak in MB).

    Free heap pages are returned to the system first (glibc malloc_trim), so memory the call needs is
    not hidden in pages an earlier step left resident.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (peak RSS) to the current RSS
        before, method = _status_kb("VmRSS"), "VmHWM after − VmRSS before (peak reset via /proc/self/clear_refs)"
    except OSError:
        before, method = None, "ru_maxrss delta (a lower bound when an earlier peak was higher)"
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    result = fn()
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if before is not None:
        extra = _status_kb("VmHWM") - before
    else:
        extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start
    return result, extra / 1024, method, traced_peak / 2**20


def best_times(fns, repeat):
    """{name: fn} → {name: (best time, output)}, runs interleaved so that all see the same machine load."""
    best, out = {name: float("inf") for name in fns}, {}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            out[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return {name: (best[name], out[name]) for name in fns}


# ------------------------------------------------------------------------------------------------ steps
def bench_map(args, queries, db, q_labels, db_labels):
    """Steps 1-3 → (table rows, notes, ok)."""
    topk = None if args.topk == -1 else args.topk
    k_label = "all" if topk is None else str(min(topk, args.n_db))
    backend = "numba" if retrieval.HAVE_NUMBA else "numpy"
    threads = numba.get_num_threads() if retrieval.HAVE_NUMBA else 1
    size = f"{args.n_query} q × {args.n_db} db"

    n_ref = min(args.ref_queries, args.n_query)
    db_f, db_labels_f, q_labels_f = db.astype(np.float32), db_labels.astype(np.float32), q_labels.astype(np.float32)
    t = time.perf_counter()
    ref_ap = plain_loop_map(queries[:n_ref], db_f, q_labels_f[:n_ref], db_labels_f, topk or args.n_db)
    t_ref = time.perf_counter() - t
    t_ref_all = t_ref / n_ref * args.n_query
    del db_f, db_labels_f, q_labels_f

    for tie in (False, True):  # warm-up: compile (or load from the cache) outside the timings
        retrieval.mean_average_precision(queries[:16], db[:500], q_labels[:16], db_labels[:500], topk=50,
                                         tie_aware=tie)

    def run_map(tie_aware=False):
        return retrieval.mean_average_precision(queries, db, q_labels, db_labels, topk=topk, tie_aware=tie_aware,
                                                return_per_query=True)

    timed = best_times({"plain": run_map, "tie": lambda: run_map(True)}, args.repeat)
    t_ours, (value, per_query) = timed["plain"]
    t_tie, (tie_value, _) = timed["tie"]
    diff = float(np.max(np.abs(per_query[:n_ref] - ref_ap)))
    same = diff <= 1e-9 and abs(per_query[:n_ref].mean() - ref_ap.mean()) <= 1e-9
    _, extra_rss, method, traced = peak_extra_memory(run_map)

    rows = [
        (f"mAP@{k_label} plain loop (stable argsort)", f"{n_ref} q × {args.n_db} db", f"{t_ref:.2f}",
         f"{1000 * t_ref / n_ref:.2f} ms/q", f"mAP(subset) {ref_ap.mean():.6f}"),
        ("  extrapolated to all queries", f"{args.n_query} q", f"{t_ref_all:.1f}", "", ""),
        (f"mAP@{k_label} utils.retrieval ({backend}, {threads} thr)", size, f"{t_ours:.3f}",
         f"{1e6 * t_ours / args.n_query:.1f} µs/q", f"mAP {value:.6f}"),
        ("  speedup over the plain loop", "", "", f"{t_ref_all / t_ours:.0f}×", ""),
        ("  peak extra memory", "", "", f"{extra_rss:.1f} MB RSS", f"{traced:.1f} MB traced"),
        (f"tie-aware mAP@{k_label}", size, f"{t_tie:.3f}", f"{1e6 * t_tie / args.n_query:.1f} µs/q",
         f"mAP {tie_value:.6f}"),
    ]
    notes = [f"identical: {'yes' if same else 'NO'} (per-query AP on the {n_ref} subset queries vs the plain loop, "
             f"max |Δ| = {diff:.1e}, tolerance 1e-9)",
             f"memory: {method}; tracemalloc: peak of Python/numpy allocations during the call"]
    r_rows, r_notes, r_ok = bench_rank_metrics(args, queries, db, q_labels, db_labels, topk)
    return rows + r_rows, notes + r_notes, same and r_ok


def plain_loop_r(q_codes, db_codes, q_labels, db_labels):
    """Per-query AP@R and R-precision by a stable argsort (queries without relevant items: nan)."""
    ap, rp = [], []
    bits = q_codes.shape[1]
    for i in range(len(q_codes)):
        dist = (bits - db_codes @ q_codes[i]) / 2
        rel = (db_labels @ q_labels[i]) > 0
        n_rel = int(rel.sum())
        if n_rel == 0:
            ap.append(np.nan)
            rp.append(np.nan)
            continue
        top = rel[np.argsort(dist, kind="stable")[:n_rel]]
        ap.append(float(np.sum(top * np.cumsum(top) / np.arange(1, n_rel + 1))) / n_rel)
        rp.append(top.sum() / n_rel)
    return np.array(ap), np.array(rp)


def bench_rank_metrics(args, queries, db, q_labels, db_labels, topk):
    """Step 3b → (table rows, notes, ok)."""
    from utils.report.evaluation import radius_r_metrics, report_ks

    ks = report_ks(topk, len(db))
    size = f"{args.n_query} q × {args.n_db} db"
    retrieval.rank_stats(queries[:16], db[:500], q_labels[:16], db_labels[:500], [1, 10])  # warm-up compile
    retrieval.precision_recall_at_k(queries[:16], db[:500], q_labels[:16], db_labels[:500], [1, 10])

    def run_stats():
        return retrieval.rank_stats(queries, db, q_labels, db_labels, ks)

    def run_old():
        retrieval.precision_recall_at_k(queries, db, q_labels, db_labels, ks)
        return retrieval.pr_curve_hamming_radius(queries, db, q_labels, db_labels)

    def run_map():  # timed again here, interleaved with the others, so that the ratio sees one machine load
        return retrieval.mean_average_precision(queries, db, q_labels, db_labels, topk=topk)

    timed = best_times({"stats": run_stats, "old": run_old, "map": run_map}, args.repeat)
    t_stats, stats = timed["stats"]
    t_old, _ = timed["old"]
    t_map1, _ = timed["map"]
    _, extra_rss, _, traced = peak_extra_memory(run_stats)
    m = radius_r_metrics(stats)
    n_ref = min(args.ref_queries, args.n_query)
    ap_ref, rp_ref = plain_loop_r(queries[:n_ref], db.astype(np.float32), q_labels[:n_ref].astype(np.float32),
                                  db_labels.astype(np.float32))
    has = np.isfinite(ap_ref)
    diff = max(float(np.max(np.abs(stats.ap_at_r[:n_ref][has] - ap_ref[has]), initial=0)),
               float(np.max(np.abs(stats.r_precision(per_query=True)[:n_ref][has] - rp_ref[has]), initial=0)))
    same = diff <= 1e-9 and bool(np.all(stats.n_relevant[:n_ref][~has] == 0))
    rows = [
        ("radius 2 + MAP@R + R-precision + P/R@k (rank_stats)", size, f"{t_stats:.3f}",
         f"{1e6 * t_stats / args.n_query:.1f} µs/q",
         f"MAP@R {m['map_at_r']:.6f}, P@r2 {m['precision_at_radius_2']:.4f}"),
        ("  against one mAP pass timed beside it", "", f"{t_map1:.3f}", f"{t_stats / t_map1:.2f}×",
         f"+{100 * t_stats / (2 * t_map1):.0f}% on the two mAP passes"),
        ("  peak extra memory", "", "", f"{extra_rss:.1f} MB RSS", f"{traced:.1f} MB traced"),
        ("  before: precision_recall_at_k + pr_curve (2 passes)", size, f"{t_old:.3f}", "", "what the report ran"),
    ]
    notes = [f"MAP@R / R-precision identical to a plain per-query loop on {n_ref} queries: "
             f"{'yes' if same else 'NO'} (max |Δ| = {diff:.1e}); R-precision {m['r_precision']:.6f}, "
             f"recall@r2 {m['recall_at_radius_2']:.4f}, queries retrieving within r2 "
             f"{m['queries_retrieving_at_radius_2']:.3f}"]
    return rows, notes, same


def bench_search(args, rng, centres):
    """Step 4 → (table rows, notes, ok)."""
    backend = "numba" if retrieval.HAVE_NUMBA else "numpy"
    sdb, _ = make_data(rng, args.search_db, centres, args.flip)
    sq = make_data(rng, args.search_queries, centres, args.flip)[0].astype(np.float32)
    nsq, k = len(sq), args.search_k
    size = f"{nsq} q × {args.search_db} db"
    retrieval.hamming_topk(sq[:8], sdb[:100], k, backend=backend)  # warm-up
    runs = {"ours": lambda: retrieval.hamming_topk(sq, sdb, k, backend=backend)}
    if faiss is not None:
        index = faiss.IndexBinaryFlat(8 * ((args.bits + 7) // 8))
        index.add(retrieval.pack_codes(sdb))
        sq_packed = retrieval.pack_codes(sq)
        index.search(sq_packed[:8], k)
        faiss_backend = retrieval.HammingIndex(sdb, backend="faiss")
        runs["faiss"] = lambda: index.search(sq_packed, k)
        runs["faiss backend"] = lambda: faiss_backend.search(sq, k)
    timed = best_times(runs, args.repeat)
    t_nb, (nb_d, nb_i) = timed["ours"]
    rows = [(f"top-{k} utils.retrieval ({backend})", size, f"{t_nb:.3f}", f"{nsq / t_nb:.0f} q/s", "")]

    n_check = min(nsq, 20)
    dist = retrieval.hamming_distance(sq[:n_check], sdb)
    order = np.lexsort((np.broadcast_to(np.arange(args.search_db), dist.shape), dist), axis=1)[:, :k]
    ok = np.array_equal(order, nb_i[:n_check]) and np.array_equal(np.take_along_axis(dist, order, 1),
                                                                  nb_d[:n_check])
    notes = [f"top-{k} ties by index on {n_check} queries vs lexsort((index, distance)): {'yes' if ok else 'NO'}"]
    if faiss is None:
        notes.append("faiss not installed: comparison skipped")
        return rows, notes, ok
    t_fa, (fa_d, _) = timed["faiss"]
    t_fb, (fb_d, fb_i) = timed["faiss backend"]
    same_faiss = np.array_equal(fa_d, nb_d)
    same_backend = np.array_equal(fb_d, nb_d) and np.array_equal(fb_i, nb_i)
    rows += [(f"top-{k} faiss IndexBinaryFlat ({faiss.omp_get_max_threads()} thr)", size, f"{t_fa:.3f}",
              f"{nsq / t_fa:.0f} q/s", f"ours/faiss {t_fa / t_nb:.2f}×"),
             (f"top-{k} utils.retrieval (faiss backend)", size, f"{t_fb:.3f}", f"{nsq / t_fb:.0f} q/s",
              "ties re-sorted by index")]
    notes.append(f"same distances as faiss IndexBinaryFlat: {'yes' if same_faiss else 'NO'}; faiss backend = "
                 f"numba backend (distances and indices): {'yes' if same_backend else 'NO'}")
    return rows, notes, ok and same_faiss and same_backend


HEADER = ("step", "size", "time (s)", "rate", "result")


def print_table(title, rows, notes):
    widths = [max(len(r[i]) for r in rows + [HEADER]) for i in range(len(HEADER))]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(title)
    print(line.format(*HEADER).rstrip())
    print(line.format(*["-" * w for w in widths]))
    for r in rows:
        print(line.format(*r).rstrip())
    print()
    for n in notes:
        print(n)


def main(argv=None):
    args = parse_args(argv)
    load_start = os.getloadavg()[0]  # other processes on the machine slow every timing
    rng = np.random.default_rng(args.seed)
    centres = np.where(rng.random((args.classes, args.bits)) < 0.5, 1, -1).astype(np.int32)
    db, db_labels = make_data(rng, args.n_db, centres, args.flip)
    q8, q_labels = make_data(rng, args.n_query, centres, args.flip)
    map_rows, map_notes, map_ok = bench_map(args, q8.astype(np.float32), db, q_labels, db_labels)
    search_rows, search_notes, search_ok = ([], [], True) if args.no_search else bench_search(args, rng, centres)
    title = (f"# {args.n_db} database × {args.n_query} queries × {args.bits} bits, {args.classes} classes "
             f"(1-3 labels each), flip {args.flip}, seed {args.seed}; {os.cpu_count()} CPUs; best of {args.repeat}; "
             f"load average at start {load_start:.2f}, at end {os.getloadavg()[0]:.2f}")
    print_table(title, map_rows + search_rows, map_notes + search_notes)
    return 0 if map_ok and search_ok else 1


if __name__ == "__main__":
    sys.exit(main())
