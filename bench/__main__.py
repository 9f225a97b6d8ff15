"""`python -m bench`: run every benchmark; each writes its JSON under bench/results/.

``python -m bench raster recon`` runs only the named ones. The rasterizer benchmark takes
about a minute, cameras about 5, recon about 20 (two reconstructions of the `small` scene),
sirenpose about 40 (21 short reconstructions of `fast` scenes, one thread), families about 70
(one reconstruction per scene family on a seed never tuned on), masks about 30 (offline
preprocessing of one scene per family), tracks about 10 (the offline tracker on one scene per
family), real one to two hours on 2 cores (offline preprocessing
of the five real clips of ``../shared/realclips``, 3-22 minutes per clip in the cameras stage
alone, against their stereo pseudo ground truth; skipped without
``../shared``). ``python -m bench real ARGS`` passes ARGS on (``--recon``, ``--clips``,
``--videos``, ...; see ``bench/bench_real.py``).
"""

import sys

from bench import (
    bench_cameras,
    bench_families,
    bench_masks,
    bench_raster,
    bench_real,
    bench_recon,
    bench_sirenpose,
    bench_tracks,
)

BENCHES = {"raster": bench_raster.main, "cameras": bench_cameras.main, "recon": lambda: bench_recon.main([]),
           "families": lambda: bench_families.main([]), "masks": lambda: bench_masks.main([]),
           "tracks": lambda: bench_tracks.main([]),
           "sirenpose": lambda: bench_sirenpose.main([]), "real": lambda: bench_real.main([])}

if __name__ == "__main__":
    if sys.argv[1:2] == ["real"]:
        sys.exit(bench_real.main(sys.argv[2:]))
    names = sys.argv[1:] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        sys.exit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    for name in names:
        BENCHES[name]()
