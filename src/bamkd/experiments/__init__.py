"""Experiments: the variants the paper compares, `bamkd run`'s plan of runs, and the report.

Built on the training loop and the outputs of finished runs; nothing below imports from here.
"""
