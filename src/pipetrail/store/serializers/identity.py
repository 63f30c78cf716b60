"""Whether a serializer registered under a taken name is the one registered before.

A pipeline file or a notebook cell run again in one process defines its serializer class
anew: a new class object, of the same qualified name, which must replace the earlier
entry rather than be refused as a different serializer under a taken name. Owns
:func:`same_serializer`, that decision, and :func:`serializer_origin`, how a refusal names
a serializer. Imports only ``pipetrail.hashing`` (the code fingerprint) and the standard
library, besides the serializers' ``base``.
"""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, Any

from pipetrail.store.serializers.base import qualified_type_name

if TYPE_CHECKING:
    from pipetrail.store.serializers.base import Serializer

__all__ = ["same_serializer", "serializer_origin"]


def same_serializer(earlier: Serializer, later: Serializer) -> bool:
    """Whether ``later`` is ``earlier`` defined again (its module run once more).

    The same qualified class name, and the same defining file or the same code: the
    methods' and that of the project functions and classes they call (a notebook cell run
    again is compiled under a new file name).
    """
    if qualified_type_name(earlier) != qualified_type_name(later):
        return False
    if type(earlier) is type(later):
        return True
    file = _defined_in(earlier)
    return (file is not None and file == _defined_in(later)) or _code(earlier) == _code(later)


def serializer_origin(serializer: Serializer) -> str:
    """The serializer's qualified class name and, when known, the file defining it."""
    file = _defined_in(serializer)
    where = f" (defined in {file})" if file else ""
    return f"{qualified_type_name(serializer)}{where}"


def _defined_in(serializer: Serializer) -> str | None:
    """The file ``serializer``'s class is defined in (None: not known).

    The file its methods were compiled from, first: ``inspect`` would name the file of
    the module now in ``sys.modules`` under the class's module name, which another module
    of that name loaded since (a pipeline file of the same name in another folder) has
    replaced.
    """
    cls = type(serializer)
    codes = [f.__code__ for f in vars(cls).values() if inspect.isfunction(f)]
    file = codes[0].co_filename if codes else None
    if file is None:
        try:
            file = inspect.getsourcefile(cls)
        except (OSError, TypeError):
            file = None
    if file is not None and os.path.isabs(file):
        file = os.path.realpath(file)
    return file


def _code(serializer: Serializer) -> tuple[tuple[str, Any], ...]:
    """The code of each method of ``serializer``'s class, by the project's code fingerprint.

    Per method, the digest of each piece of project code it covers (the method, and the
    helper functions and classes it calls, recursively), never where it was compiled.
    The values that code reads (module globals, whose state may differ from one run of
    a cell to the next) are left out: the question is whether the code is the same. A
    class whose module is no longer loaded (a file run by path) is not project code to
    the fingerprint, which covers none of it: its methods' own code counts then.
    """
    # Imported here: only a serializer taking a name from another file gets this far.
    from pipetrail.hashing.code import code_fingerprint
    from pipetrail.hashing.code_source import code_object_digest

    return tuple(
        (name, code_fingerprint(func).parts or code_object_digest(func.__code__))
        for name, func in sorted(vars(type(serializer)).items())
        if inspect.isfunction(func)
    )
