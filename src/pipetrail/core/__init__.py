"""The pure model: steps, pipeline definitions, graphs, ids and clocks.

No I/O, and no imports of other pipetrail packages (only ``pipetrail.errors``).
"""
