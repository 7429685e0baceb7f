"""Pure parsers and formatters for the compact strings of `.dstack.yml`: ranges, memory sizes,
durations, CPU and GPU specs. Each `parse_*` raises `ValueError` with a message meant for users;
each `format_*` writes the canonical spelling, which parses back to the same value.
"""

from __future__ import annotations

import re
from typing import Any

GPU_VENDORS = {"nvidia": "nvidia", "amd": "amd", "google": "google", "tpu": "google", "intel": "intel",
               "tenstorrent": "tenstorrent", "tt": "tenstorrent"}
CPU_ARCHS = {"x86": "x86", "x86_64": "x86", "amd64": "x86", "arm": "arm", "arm64": "arm", "aarch64": "arm"}

_MEMORY_UNITS = {"MB": 1 / 1024, "GB": 1.0, "TB": 1024.0}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(MB|GB|TB)?\s*$", re.IGNORECASE)
_INT_RE = re.compile(r"^\s*\d+\s*$")
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# --- memory -----------------------------------------------------------------------------------

def parse_memory(value: Any) -> float:
    """`16GB`, `512MB`, `1TB`, or a bare number of GB -> GB (float)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 16GB, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a size cannot be negative ({value})")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a size like 16GB, got {value!r}")
    match = _MEMORY_RE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size: write a number with MB, GB or TB, e.g. 16GB")
    number, unit = match.groups()
    return float(number) * _MEMORY_UNITS[(unit or "GB").upper()]


def format_memory(gb: float) -> str:
    if gb == int(gb):
        return f"{int(gb)}GB"
    mb = gb * 1024
    if mb == int(mb):
        return f"{int(mb)}MB"
    return f"{gb!r}GB"


# --- ranges -----------------------------------------------------------------------------------

def split_range(text: str) -> tuple[str | None, str | None]:
    """`a..b` -> (a, b); `a..` -> (a, None); `..b` -> (None, b); `a` -> (a, a)."""
    if ".." not in text:
        return text, text
    low, _, high = text.partition("..")
    if ".." in high:
        raise ValueError(f"{text!r} has more than one '..'")
    low, high = low.strip() or None, high.strip() or None
    if low is None and high is None:
        raise ValueError("'..' needs a bound on at least one side, e.g. 2.. or ..8")
    return low, high


def parse_int_range(value: Any, what: str = "count") -> tuple[int | None, int | None]:
    if isinstance(value, bool):
        raise ValueError(f"expected a {what} like 2 or 1..4, got {value!r}")
    if isinstance(value, int):
        return _check_order(value, value)
    if isinstance(value, dict):
        return _check_order(*(_as_int(value.get(k), what) for k in ("min", "max")))
    if not isinstance(value, str):
        raise ValueError(f"expected a {what} like 2 or 1..4, got {value!r}")
    low, high = split_range(value)
    return _check_order(_as_int(low, what), _as_int(high, what))


def _as_int(text: Any, what: str) -> int | None:
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and _INT_RE.match(text):
        value = int(text)
    else:
        raise ValueError(f"{text!r} is not a whole number ({what})")
    if value < 0:
        raise ValueError(f"a {what} cannot be negative ({value})")
    return value


def parse_memory_range(value: Any) -> tuple[float | None, float | None]:
    if isinstance(value, dict):
        low, high = value.get("min"), value.get("max")
        return _check_order(
            parse_memory(low) if low is not None else None, parse_memory(high) if high is not None else None
        )
    if isinstance(value, str):
        low, high = split_range(value)
        return _check_order(
            parse_memory(low) if low is not None else None, parse_memory(high) if high is not None else None
        )
    size = parse_memory(value)
    return size, size


def _check_order(low, high):
    if low is not None and high is not None and low > high:
        raise ValueError(f"the range's lower bound ({low}) is above its upper bound ({high})")
    return low, high


def format_range(low, high, fmt=str) -> str:
    if low is not None and low == high:
        return fmt(low)
    return f"{fmt(low) if low is not None else ''}..{fmt(high) if high is not None else ''}"


# --- durations --------------------------------------------------------------------------------

MAX_DURATION = 366 * 86400  # a year: beyond it a timer is no longer a timer (and overflows some)


def parse_duration(value: Any, allow_off: bool = False) -> int | None:
    """Int seconds or `30s|15m|3h|2d|1w` -> seconds; `off` -> None when allowed. At most a year."""
    hint = " or off" if allow_off else ""
    seconds: int | None = None
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 15m, 3h, 2d or 1w, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a duration cannot be negative ({value})")
        seconds = value
    elif isinstance(value, str):
        if allow_off and value.strip().lower() == "off":
            return None
        if _INT_RE.match(value):
            seconds = int(value)
        else:
            match = _DURATION_RE.match(value.lower())
            if match:
                seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds is None:
        raise ValueError(f"{value!r} is not a duration: use seconds or 30s, 15m, 3h, 2d, 1w{hint}")
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is more than a year: use at most 366d{hint}")
    return seconds


def format_duration(seconds: int | None) -> str:
    if seconds is None:
        return "off"
    for unit in ("w", "d", "h", "m"):
        size = _DURATION_UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --- cpu --------------------------------------------------------------------------------------

def parse_cpu(value: Any) -> dict:
    """`8`, `2..8`, `arm:8..`, `x86:16` or `{arch, count}` -> {"arch", "min", "max"}."""
    if isinstance(value, dict):
        arch = value.get("arch")
        count = value.get("count", "2..")
        low, high = parse_int_range(count, "CPU count")
        return {"arch": _cpu_arch(arch) if arch is not None else None, "min": low, "max": high}
    if isinstance(value, str) and ":" in value:
        arch, _, count = value.partition(":")
        low, high = parse_int_range(count.strip(), "CPU count")
        return {"arch": _cpu_arch(arch.strip()), "min": low, "max": high}
    low, high = parse_int_range(value, "CPU count")
    return {"arch": None, "min": low, "max": high}


def _cpu_arch(text: Any) -> str:
    arch = CPU_ARCHS.get(str(text).lower())
    if arch is None:
        raise ValueError(f"unknown CPU architecture {text!r}: use x86 or arm")
    return arch


# --- gpu --------------------------------------------------------------------------------------

_GPU_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


def parse_gpu(value: Any) -> dict:
    """dstack's GPU grammar -> {"vendor", "names", "count", "memory", "total_memory", "compute_capability"}.

    A string is split on ':' and each token is recognised by its shape: a vendor, a count or count
    range, a memory size or range, or a comma-separated list of model names.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a GPU spec like 24GB, A100:2 or 1..2, got {value!r}")
    if isinstance(value, int):
        return _gpu(count=parse_int_range(value, "GPU count"))
    if isinstance(value, dict):
        return _gpu_from_dict(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a GPU spec like 24GB, A100:2 or 1..2, got {value!r}")
    seen: dict[str, Any] = {}
    for token in (t.strip() for t in value.split(":")):
        kind, parsed = _classify_gpu_token(token)
        if kind in seen:
            raise ValueError(f"{value!r} gives the GPU {kind} twice")
        seen[kind] = parsed
    return _gpu(**seen)


def _gpu(vendor=None, names=None, count=(1, 1), memory=None, total_memory=None, compute_capability=None):
    return {
        "vendor": vendor,
        "names": names,
        "count": {"min": count[0], "max": count[1]},
        "memory": {"min": memory[0], "max": memory[1]} if memory else None,
        "total_memory": {"min": total_memory[0], "max": total_memory[1]} if total_memory else None,
        "compute_capability": compute_capability,
    }


def _classify_gpu_token(token: str) -> tuple[str, Any]:
    if not token:
        raise ValueError("empty part between ':' in the GPU spec")
    if token.lower() in GPU_VENDORS:
        return "vendor", GPU_VENDORS[token.lower()]
    bounds = [b for b in split_range(token) if b is not None] if ".." in token else [token]
    if all(_INT_RE.match(b) for b in bounds):
        return "count", parse_int_range(token, "GPU count")
    if all(_MEMORY_RE.match(b) and re.search("[A-Za-z]", b) for b in bounds):
        return "memory", parse_memory_range(token)
    if ".." in token:
        raise ValueError(
            f"{token!r} is not a range of GPU models: list the models you accept, e.g. "
            f"{token.replace('..', ',')!r}"
        )
    return "names", _gpu_names(token)


def _gpu_names(value: Any) -> list[str]:
    names = value if isinstance(value, list) else str(value).split(",")
    cleaned = [str(n).strip() for n in names]
    for name in cleaned:
        if not _GPU_NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a GPU model name (e.g. A100, H100, A10G, L4)")
    return cleaned


def _gpu_from_dict(value: dict) -> dict:
    unknown = set(value) - {"vendor", "name", "count", "memory", "total_memory", "compute_capability"}
    if unknown:
        raise ValueError(f"unknown GPU field(s): {', '.join(sorted(unknown))}")
    vendor = value.get("vendor")
    if vendor is not None and str(vendor).lower() not in GPU_VENDORS:
        raise ValueError(f"unknown GPU vendor {vendor!r}: use one of nvidia, amd, google, intel")
    return _gpu(
        vendor=GPU_VENDORS[str(vendor).lower()] if vendor is not None else None,
        names=_gpu_names(value["name"]) if value.get("name") is not None else None,
        count=parse_int_range(value.get("count", 1), "GPU count"),
        memory=parse_memory_range(value["memory"]) if value.get("memory") is not None else None,
        total_memory=parse_memory_range(value["total_memory"]) if value.get("total_memory") is not None else None,
        compute_capability=(
            parse_compute_capability(value["compute_capability"])
            if value.get("compute_capability") is not None
            else None
        ),
    )


def parse_compute_capability(value: Any) -> str:
    text = str(value).strip()
    if not re.match(r"^\d+\.\d+$", text):
        raise ValueError(f"compute capability {value!r} must look like 8.0 or 9.0 (quote it in YAML)")
    return text


def format_gpu(spec: dict) -> str:
    parts = []
    if spec.get("vendor"):
        parts.append(spec["vendor"])
    if spec.get("names"):
        parts.append(",".join(spec["names"]))
    if spec.get("memory"):
        parts.append(format_range(spec["memory"]["min"], spec["memory"]["max"], format_memory))
    count = spec["count"]
    parts.append(format_range(count["min"], count["max"]))
    return ":".join(parts)
