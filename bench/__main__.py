"""`python -m bench`: run every benchmark; each writes its JSON under bench/results/."""

from bench import bench_raster

if __name__ == "__main__":
    bench_raster.main()
