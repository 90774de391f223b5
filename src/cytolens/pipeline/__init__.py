"""The one runner: pipelines of steps over a whole acquisition.

- :class:`Step` / :class:`Item`: the contract every capability's steps
  follow (``cytolens.focus.steps``, ``cytolens.segment.steps``,
  ``cytolens.restore.steps``).
- :func:`run_pipeline`: steps over inputs, in this process or on
  dask.distributed workers; journal and resume, provenance (RO-Crate),
  failures that stay alone, combined tables, one report.
- :func:`load_pipeline`: a pipeline from YAML (``cytolens run pipeline.yaml``).
"""

from cytolens.pipeline.config import STEPS, Pipeline, load_pipeline, make_step, make_steps
from cytolens.pipeline.runner import RunResult, run_pipeline
from cytolens.pipeline.step import Item, Step, StepParams

__all__ = [
    "STEPS",
    "Item",
    "Pipeline",
    "RunResult",
    "Step",
    "StepParams",
    "load_pipeline",
    "make_step",
    "make_steps",
    "run_pipeline",
]
