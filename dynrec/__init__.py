"""dynrec: one casual monocular video to a dynamic 3D Gaussian scene, with honest metrics."""

__version__ = "0.1.0"

#: Version of the work-directory layout. A work dir written with a larger number is refused.
WORKDIR_SCHEMA = 1
