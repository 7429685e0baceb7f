"""`.dstack/profiles.yml`: named sets of profile fields (backends, regions, spot policy, ...)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from dstack_iac.config.models import Model, ProfileFields
from dstack_iac.config.yaml_source import YamlSource, load_yaml, read_text_file

PROFILES_RELATIVE_PATH = Path(".dstack") / "profiles.yml"


class Profile(ProfileFields):
    name: str
    default: bool = False


class ProfilesFile(Model):
    profiles: list[Profile] = Field(default_factory=list)


def profile_files(work_dir: Path, home: Path | None = None) -> list[Path]:
    """Where profiles are looked up, in order: the working directory, then the home directory."""
    candidates = [work_dir / PROFILES_RELATIVE_PATH, (home or Path.home()) / PROFILES_RELATIVE_PATH]
    seen, found = set(), []
    for path in candidates:
        if path.is_file() and path.resolve() not in seen:
            seen.add(path.resolve())
            found.append(path)
    return found


def load_profiles_source(path: Path) -> YamlSource:
    return load_yaml(read_text_file(path, str(path)), str(path))
