"""One process can build Accelerators of different precisions one after another (bamkd run);
sharded set-ups are refused with the fix named."""

from __future__ import annotations

import pytest

from bamkd.errors import BamkdError
from bamkd.runtime.devices import SHARDED, has_accelerator_device, make_accelerator, refuse_sharding


def test_precision_can_change_between_runs_in_one_process():
    assert make_accelerator("no").mixed_precision == "no"
    assert make_accelerator("bf16").mixed_precision == "bf16"
    assert make_accelerator("no").mixed_precision == "no"


def test_cpu_only_machine_uses_the_cpu():
    acc = make_accelerator("no")
    assert (acc.device.type == "cpu") == (not has_accelerator_device())


@pytest.mark.parametrize("kind", SHARDED)
def test_sharded_training_is_refused_with_the_fix(kind):
    with pytest.raises(BamkdError, match=f"set up for {kind}.*MULTI_GPU or MULTI_CPU"):
        refuse_sharding(kind)


@pytest.mark.parametrize("kind", ["NO", "MULTI_CPU", "MULTI_GPU"])
def test_data_parallel_set_ups_pass(kind):
    refuse_sharding(kind)


def test_every_sharded_kind_is_one_accelerate_knows():
    from accelerate.utils import DistributedType

    assert set(SHARDED) <= {kind.value for kind in DistributedType}


def test_auto_precision_is_bf16_only_where_the_cpu_computes_in_it(monkeypatch):
    from bamkd.runtime import devices

    monkeypatch.setattr(devices, "has_accelerator_device", lambda: False)
    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: False)
    for native, expected in ((True, "bf16"), (False, "no")):
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda native=native: native)
        assert devices.resolve_precision("auto") == expected
        assert devices.resolve_precision("bf16") == "bf16"  # asked for: kept
        assert devices.resolve_precision("no") == "no"


def test_auto_is_resolved_when_the_config_is_built(monkeypatch):
    from bamkd.config import build_config
    from bamkd.runtime import devices

    monkeypatch.setattr(devices, "native_precision", lambda: "no")
    cfg = build_config("minilm", ["data.tasks=[mrpc]"])
    assert cfg.train.mixed_precision == "no"  # the preset says auto; config.yaml records this
    monkeypatch.setattr(devices, "native_precision", lambda: "bf16")
    assert (
        build_config(
            "tiny", ["data.tasks=[mrpc]", "train.mixed_precision=auto"]
        ).train.mixed_precision
        == "bf16"
    )


def test_cpu_bf16_probe_answers_a_bool():
    from bamkd.runtime.devices import cpu_has_native_bf16

    assert isinstance(cpu_has_native_bf16(), bool)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_that_emulates_it_is_warned_about_once(monkeypatch, caplog, native):
    from bamkd.runtime import devices

    if has_accelerator_device():
        pytest.skip("the warning is for CPU runs")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(devices, "_warned_emulated_bf16", False)
    with caplog.at_level("WARNING", logger="bamkd.runtime.devices"):
        make_accelerator("bf16")
        make_accelerator("bf16")
        make_accelerator("no")
    warnings = [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()]
    assert len(warnings) == (0 if native else 1)
    if warnings:
        assert "train.mixed_precision=auto" in warnings[0]
