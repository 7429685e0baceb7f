"""Property tests: parse -> format -> parse is stable for the resource and duration grammars."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dstack_iac.config import grammar
from dstack_iac.config.models import GPUSpec

sizes = st.integers(min_value=0, max_value=4096).map(float) | st.sampled_from([0.5, 0.25, 1.5, 2.5])
counts = st.integers(min_value=0, max_value=64)


def ordered(strategy):
    return st.tuples(strategy | st.none(), strategy | st.none()).filter(lambda t: t != (None, None)).map(
        lambda t: tuple(sorted(t)) if None not in t else t
    )


@given(ordered(counts))
def test_int_range_round_trip(bounds):
    text = grammar.format_range(*bounds)
    assert grammar.parse_int_range(text) == bounds
    assert grammar.format_range(*grammar.parse_int_range(text)) == text


@given(ordered(sizes))
def test_memory_range_round_trip(bounds):
    text = grammar.format_range(*bounds, grammar.format_memory)
    assert grammar.parse_memory_range(text) == bounds


@given(st.integers(min_value=0, max_value=10**7))
def test_duration_round_trip(seconds):
    text = grammar.format_duration(seconds)
    assert grammar.parse_duration(text) == seconds


@given(
    vendor=st.sampled_from([None, "nvidia", "amd", "google", "intel"]),
    names=st.none() | st.lists(st.sampled_from(["A100", "H100", "A10G", "L4", "T4", "V100"]), min_size=1, max_size=3, unique=True),
    memory=st.none() | ordered(st.sampled_from([16.0, 24.0, 40.0, 80.0])),
    count=ordered(st.integers(min_value=1, max_value=8)),
)
def test_gpu_spec_round_trip(vendor, names, memory, count):
    spec = {
        "vendor": vendor, "names": names, "count": {"min": count[0], "max": count[1]},
        "memory": {"min": memory[0], "max": memory[1]} if memory else None,
        "total_memory": None, "compute_capability": None,
    }
    text = grammar.format_gpu(spec)
    assert grammar.parse_gpu(text) == spec
    assert str(GPUSpec.model_validate(text)) == text


@pytest.mark.parametrize(
    "text,expected",
    [
        ("24GB", {"memory": (24, 24), "count": (1, 1)}),
        ("A100:2", {"names": ["A100"], "count": (2, 2)}),
        ("1..2", {"count": (1, 2)}),
        ("40GB..80GB:2", {"memory": (40, 80), "count": (2, 2)}),
        ("nvidia:24GB:1..2", {"vendor": "nvidia", "memory": (24, 24), "count": (1, 2)}),
        ("A10G,A100", {"names": ["A10G", "A100"], "count": (1, 1)}),
        ("tpu:2", {"vendor": "google", "count": (2, 2)}),
    ],
)
def test_gpu_examples(text, expected):
    parsed = grammar.parse_gpu(text)
    assert parsed["count"] == {"min": expected["count"][0], "max": expected["count"][1]}
    assert parsed["names"] == expected.get("names")
    assert parsed["vendor"] == expected.get("vendor")
    memory = expected.get("memory")
    assert parsed["memory"] == ({"min": memory[0], "max": memory[1]} if memory else None)


def test_gpu_dict_form():
    spec = GPUSpec.model_validate(
        {"vendor": "nvidia", "name": ["A100", "H100"], "count": "2..", "memory": "40GB..",
         "total_memory": "160GB..", "compute_capability": "8.0"}
    )
    assert spec.names == ["A100", "H100"] and (spec.count.min, spec.count.max) == (2, None)
    assert spec.total_memory.min == 160 and spec.compute_capability == "8.0"


@pytest.mark.parametrize("text,gb", [("512MB", 0.5), ("1TB", 1024), ("16", 16), ("16GB", 16)])
def test_memory_units(text, gb):
    assert grammar.parse_memory(text) == gb
