#!/usr/bin/env python3
"""Merge a chart's values.yaml with an overrides file, as `helm install -f`
would (maps merge key by key, anything else is replaced), and write the result.

    chart-values.py CHART/values.yaml OVERRIDES.yaml OUT.yaml

shared/tools/helm-lint lints a values file in place of values.yaml, so CI
lints (and schema-checks) the merged file.
"""
import sys

import yaml


def merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base.get(key), value) if key in base else value
        return out
    return over


def main():
    base_path, over_path, out_path = sys.argv[1:4]
    with open(base_path) as f:
        base = yaml.safe_load(f)
    with open(over_path) as f:
        over = yaml.safe_load(f) or {}
    with open(out_path, "w") as f:
        yaml.safe_dump(merge(base, over), f, sort_keys=False)


if __name__ == "__main__":
    main()
