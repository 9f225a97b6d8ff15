"""Many videos: ``dynrec batch`` runs each through preprocess → reconstruct → evaluate on Ray
(a local instance by default, a cluster with ``--address``) and gathers one summary.
See docs/batch.md. A consumer of work dirs: nothing in the pipeline or the stages imports it."""
