"""A run's parameters: the overrides, checked and validated, on top of any params files.

:func:`resolve_run_params` is what the runner calls for every run. Most runs use no
params file, so the files' reading, layering and error reporting stay in
:mod:`pipetrail.execution.params_files`, imported only when a run has files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.core.param_limits import check_params_limits

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pipetrail.core.pipeline import PipelineDefinition
    from pipetrail.execution.params_files import ParamsFile

__all__ = ["OVERRIDE_ORIGIN", "resolve_run_params"]

OVERRIDE_ORIGIN = "override (-p or run() argument)"


def resolve_run_params(
    definition: PipelineDefinition,
    params: Mapping[str, Any],
    files: Sequence[ParamsFile] = (),
) -> dict[str, Any]:
    """Validate the merged ``files`` plus ``params`` against the pipeline's parameters.

    Without files this is :meth:`PipelineDefinition.resolve_params`. With files, an
    error names, for each bad key, where its value came from: the file, or an override.

    Raises:
        ParamError: an unknown key, a value of the wrong type, a missing parameter, or a
            value past the limits (:func:`~pipetrail.core.param_limits.check_params_limits`).
    """
    check_params_limits(params, origin=OVERRIDE_ORIGIN)
    if not files:
        return definition.resolve_params(params)
    from pipetrail.execution.params_files import resolve_with_files

    return resolve_with_files(definition, params, files)
