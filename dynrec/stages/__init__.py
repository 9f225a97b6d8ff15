"""Stages: one module per stage, each defining ``STAGE``. They never import each other;
they meet only through artifacts. The registry lives in :mod:`dynrec.pipeline.registry`."""
