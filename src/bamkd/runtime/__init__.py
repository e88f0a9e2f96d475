"""Plumbing for run folders: files, checkpoints, manifests, signals, devices, progress, metrics.

Nothing here is the method. Most modules import no other part of bamkd beyond `bamkd.errors`
and `runtime.storage`; `runs` (the run-folder layout, which reads configs) and `manifest` (which
fingerprints data files) sit higher. tests/unit/test_layers.py holds the exact order.
"""
