"""Run names like dstack's: `adjective-animal-N`."""

from __future__ import annotations

import random

ADJECTIVES = (
    "amber", "bold", "brave", "calm", "clever", "cosmic", "crisp", "eager", "fancy", "gentle", "glad", "golden",
    "happy", "keen", "lively", "lucky", "mellow", "nimble", "proud", "quick", "quiet", "rapid", "shiny", "silent",
    "smart", "snowy", "sunny", "swift", "tidy", "witty", "wet", "zesty",
)
ANIMALS = (
    "badger", "beaver", "bison", "cobra", "crane", "dingo", "eagle", "falcon", "ferret", "gecko", "heron", "ibis",
    "jackal", "koala", "lemur", "lynx", "mangust", "marmot", "moose", "newt", "otter", "panda", "puffin", "quokka",
    "raven", "seal", "shrew", "tapir", "walrus", "wombat", "yak", "zebra",
)


def generate_run_name(taken: set[str], rng: random.Random | None = None) -> str:
    rng = rng or random.Random()
    for _ in range(1000):
        name = f"{rng.choice(ADJECTIVES)}-{rng.choice(ANIMALS)}-{rng.randint(1, 99)}"
        if name not in taken:
            return name
    raise RuntimeError("could not find a free run name")  # pragma: no cover - 100k names
