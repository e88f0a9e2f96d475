"""Experiments: the variants compared, `bamkd run`'s plan of runs, the report and its measurements.

Built on the training loop and the outputs of finished runs; nothing below imports from here.
"""
