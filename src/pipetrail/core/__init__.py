"""The pure model: steps, pipeline definitions, graphs, ids and clocks. No I/O, no internal imports."""
