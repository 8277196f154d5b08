"""A profile taken with N GPUs per engine sizes engines of N GPUs unless the user says otherwise."""

from __future__ import annotations

import logging

import pytest

from sla_planner.config import PlannerConfig
from sla_planner.perf import adopt_profile_gpus, load_profile

TP2 = "builtin:a100_sxm-qwen3_32b-vllm-tp2"


def test_unset_engine_gpus_follow_the_profile() -> None:
    models = load_profile(TP2)
    assert models.num_gpu == 2
    cfg = adopt_profile_gpus(PlannerConfig.from_sources(None, env={}, overrides={"max_gpu_budget": 64}), models)
    assert (cfg.prefill_engine_num_gpu, cfg.decode_engine_num_gpu) == (2, 2)
    assert cfg.max_gpu_budget == 64
    assert "prefill_engine_num_gpu" not in cfg.model_fields_set


def test_engine_gpus_the_user_set_are_kept_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    models = load_profile(TP2)
    cfg = PlannerConfig.from_sources(None, env={}, overrides={"prefill_engine_num_gpu": 1})
    with caplog.at_level(logging.WARNING, logger="sla_planner"):
        adopted = adopt_profile_gpus(cfg, models)
    assert (adopted.prefill_engine_num_gpu, adopted.decode_engine_num_gpu) == (1, 2)
    assert "taken with 2 GPU(s) per engine" in caplog.text


def test_profiles_without_metadata_change_nothing() -> None:
    cfg = PlannerConfig.from_sources(None, env={}, overrides={})
    assert adopt_profile_gpus(cfg, load_profile("builtin:example")) is cfg
