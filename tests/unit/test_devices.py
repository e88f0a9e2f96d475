"""One process can build Accelerators of different precisions one after another (bamkd run)."""

from __future__ import annotations

from bamkd.runtime.devices import has_accelerator_device, make_accelerator


def test_precision_can_change_between_runs_in_one_process():
    assert make_accelerator("no").mixed_precision == "no"
    assert make_accelerator("bf16").mixed_precision == "bf16"
    assert make_accelerator("no").mixed_precision == "no"


def test_cpu_only_machine_uses_the_cpu():
    acc = make_accelerator("no")
    assert (acc.device.type == "cpu") == (not has_accelerator_device())
