"""Peak memory of the holistic run for T = 5, 50, 100, to separate the allocator from what the loop keeps.

MALLOC_MMAP_THRESHOLD_=131072 OMP_NUM_THREADS=1 python benchmarks/memory_allocator_check.py
"""

from holomerge_lab.analysis import bench

if __name__ == "__main__":
    r = bench.memory_by_tasks((5, 50, 100), methods=("holistic",), test_per_task=10)
    for row in r["rows"]:
        print(row["tasks"], row["rss_after_prepare"] >> 20, row["peak_rss"] >> 20, flush=True)
