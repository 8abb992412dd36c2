"""Peak memory of a run at T = 5 and T = 100 rotated-mnist domains, each T in a fresh process (bench.memory_by_tasks,
the small MEMORY_SETTINGS: what is measured is what the loop keeps and its transient working memory, not accuracy).

OMP_NUM_THREADS=1 python benchmarks/memory_growth.py                      # holistic only
OMP_NUM_THREADS=1 python benchmarks/memory_growth.py holistic,fisher,...  # these methods, in one process per T
"""

import json
import sys
import time

from holomerge_lab.analysis import bench

if __name__ == "__main__":
    methods = tuple(sys.argv[1].split(",")) if len(sys.argv) > 1 else ("holistic",)
    began = time.time()
    result = bench.memory_by_tasks((5, 100), methods=methods)
    rows = [
        {"tasks": r["tasks"], "rss_after_prepare_mib": r["rss_after_prepare"] >> 20, "peak_rss_mib": r["peak_rss"] >> 20}
        for r in result["rows"]
    ]
    print(json.dumps({"methods": methods, "rows": rows, "peak_growth": round(result["peak_growth"], 4),
                      "seconds": round(time.time() - began)}))  # fmt: skip
