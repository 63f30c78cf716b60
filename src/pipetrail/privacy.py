"""Privacy operations whose every use is recorded: ``from pipetrail import privacy``.

``privacy.pseudonymize``, ``drop``, ``generalize``, ``aggregate`` and
``check_k_anonymity`` work on pandas DataFrames; called inside a step each one leaves a
record of what it did in the step's ledger event (see :mod:`pipetrail.data.privacy`).
"""

from __future__ import annotations

from pipetrail.data.privacy import KAnonymity as KAnonymity
from pipetrail.data.privacy import aggregate as aggregate
from pipetrail.data.privacy import check_k_anonymity as check_k_anonymity
from pipetrail.data.privacy import drop as drop
from pipetrail.data.privacy import generalize as generalize
from pipetrail.data.privacy import pseudonymize as pseudonymize

__all__ = [
    "KAnonymity",
    "aggregate",
    "check_k_anonymity",
    "drop",
    "generalize",
    "pseudonymize",
]
