"""Evaluations: offline (replayed history, held-out weeks), live (challenges judged on their
grades) and of the drift detectors. ``shopstream eval`` and ``shopstream models judge``
run them; ``trainers/`` holds the trainers only."""
