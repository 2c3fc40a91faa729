"""One device choice for every role: the GPU of this process, else float32 on the CPU."""

from __future__ import annotations

import logging

import pytest
import torch

from ume.models.device import choose_device

pytestmark = pytest.mark.unit


def test_on_a_cpu_half_precision_and_flash_attention_fall_back_once(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="ume.models.device"):
        dev = choose_device("bfloat16", "flash_attention_2", role="test_cpu")
        again = choose_device("bfloat16", "flash_attention_2", role="test_cpu")
    assert (dev.gpu, dev.device, dev.dtype, dev.attn_implementation) == (
        False,
        "cpu",
        "float32",
        "sdpa",
    )
    assert again == dev
    assert [r.getMessage() for r in caplog.records].count(
        "no GPU: models.test_cpu runs in float32 with sdpa attention "
        "(config: bfloat16, flash_attention_2)"
    ) == 1  # once per model and setting, not per load
    assert dev.trainer_flags() == {"use_cpu": True, "bf16": False, "fp16": False}
    # a float32 config runs as configured (eager stays eager)
    plain = choose_device("float32", "eager", role="test_cpu")
    assert (plain.dtype, plain.attn_implementation) == ("float32", "eager")


def test_on_a_gpu_the_process_takes_its_local_rank_in_the_configured_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    dev = choose_device("bfloat16", "flash_attention_2", role="reasoner")
    assert (dev.device, dev.dtype, dev.attn_implementation) == (
        "cuda:1",
        "bfloat16",
        "flash_attention_2",
    )
    assert dev.trainer_flags() == {"use_cpu": False, "bf16": True, "fp16": False}
    monkeypatch.delenv("LOCAL_RANK")
    assert choose_device(role="reasoner").device == "cuda:0"
    assert choose_device("float16", role="reasoner").trainer_flags()["fp16"]
