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
