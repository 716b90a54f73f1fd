"""YAML as people write numbers: `1e-4` is a float (YAML 1.2), not the string PyYAML's YAML 1.1 rule makes
of it. Everything else is PyYAML's safe loader."""
from __future__ import annotations

import re

import yaml


class Loader(yaml.SafeLoader):
    pass


# YAML 1.2's float: digits with an optional dot and an optional exponent (the 1.1 rule needs the dot).
_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                     |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                     |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                     |[-+]?\.(?:inf|Inf|INF)
                     |\.(?:nan|NaN|NAN))$""", re.X)
Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for first in list("-+0123456789."):
    Loader.yaml_implicit_resolvers[first] = [
        (tag, rx) for tag, rx in Loader.yaml_implicit_resolvers.get(first, []) if tag != "tag:yaml.org,2002:float"]
Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def load(text: str):
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
