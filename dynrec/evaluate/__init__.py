"""``dynrec evaluate``: metrics of a work dir, the report, plots and the side-by-side video.

* :mod:`~dynrec.evaluate.inputs` loads what the metrics need (work dir and ground truth);
* :mod:`~dynrec.evaluate.compute` computes each registered metric or says why it cannot;
* :mod:`~dynrec.evaluate.report`, :mod:`~dynrec.evaluate.plots`, :mod:`~dynrec.evaluate.video`
  write ``eval/metrics.json``, the table, ``eval/plots/*.png`` and ``eval/side_by_side.mp4``;
* :func:`evaluate` ties them together and writes ``WORK/eval/`` atomically.
"""

from __future__ import annotations

from dynrec.evaluate.compute import MetricResult
from dynrec.evaluate.core import evaluate, parse_metrics
from dynrec.evaluate.report import EvalReport, print_report

__all__ = ["EvalReport", "MetricResult", "evaluate", "parse_metrics", "print_report"]
