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


@pytest.mark.parametrize(
    ("capability", "expected"), [((7, 0), "no"), ((8, 0), "bf16"), ((9, 0), "bf16")]
)
def test_auto_precision_on_cuda_takes_bf16_from_ampere_on(monkeypatch, capability, expected):
    # torch.cuda.is_bf16_supported() says yes on a V100 too, where bf16 is emulated.
    from bamkd.runtime import devices

    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(devices.torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(devices.torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(devices.torch.version, "hip", None)
    assert devices.resolve_precision("auto") == expected


def test_cpu_probe_follows_torchs_instruction_set_checks(monkeypatch):
    from bamkd.runtime import devices

    for avx512_bf16, amx, expected in (
        (False, False, False),
        (True, False, True),
        (False, True, True),
    ):
        monkeypatch.setattr(
            devices.torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False
        )
        monkeypatch.setattr(
            devices.torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False
        )
        assert devices.cpu_has_native_bf16() is expected
    # A PyTorch without the probes: not native (oneDNN's check says yes on plain AVX-512).
    monkeypatch.delattr(devices.torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(devices.torch.cpu, "_is_amx_tile_supported", raising=False)
    assert devices.cpu_has_native_bf16() is False


def test_auto_is_resolved_when_the_config_is_built(monkeypatch):
    from bamkd.config import build_config
    from bamkd.runtime import devices

    for native in ("bf16", "no"):
        monkeypatch.setattr(devices, "native_precision", lambda native=native: native)
        # The minilm preset says auto; config.yaml then records what this machine resolved.
        assert build_config("minilm", ["data.tasks=[mrpc]"]).train.mixed_precision == native
        cfg = build_config("tiny", ["data.tasks=[mrpc]", "train.mixed_precision=auto"])
        assert cfg.train.mixed_precision == native


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


@pytest.mark.parametrize("kind", SHARDED)
def test_a_sharded_launch_is_refused_before_accelerate_builds_anything(monkeypatch, kind):
    from accelerate import Accelerator

    from bamkd.runtime import devices

    built = []
    monkeypatch.setattr(Accelerator, "__init__", lambda self, *a, **k: built.append(1))
    monkeypatch.setenv(f"ACCELERATE_USE_{kind}", "true")
    with pytest.raises(BamkdError, match=f"set up for {kind}"):
        devices.make_accelerator("no")
    assert not built


def test_bamkd_run_refuses_a_sharded_launch_before_writing_its_folder(
    monkeypatch, tmp_path, capsys
):
    from bamkd.cli import main

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(f"name: e\noutput_dir: {tmp_path / 'out'}\ntasks: [mrpc]\n")
    assert main(["run", str(experiment)]) == 2
    assert "set up for DEEPSPEED" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
