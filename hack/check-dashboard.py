#!/usr/bin/env python3
"""Checks the chart's Grafana dashboard (run by hack/deploy-check.sh; the standard library only).

    check-dashboard.py DASHBOARD.json README.md [RENDERED.yaml]

- the JSON parses, its template variables are `datasource` (Prometheus), `namespace` and `vault`;
- every panel has a unique id, a title and a place on the 24-column grid; every panel but a
  row reads the `${datasource}` variable and has targets, each with a non-empty `expr`;
- every vaultd metric an expression names is documented in the README's "## Metrics" table.
  Histograms are named only with
  `_bucket`, `_sum` or `_count`, other metrics only bare. Every vaultd selector filters on the
  `namespace` and `vault` variables, so no panel mixes vaults;
- RENDERED (`helm template` of templates/dashboard-configmap.yaml) is one ConfigMap with the
  sidecar label `grafana_dashboard: "1"` whose `strongroom-vault.json` is DASHBOARD, unchanged.
"""
import json
import re
import sys

HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
DATASOURCE = "${datasource}"

errors = []


def documented_metrics(readme):
    """Metric name -> type, from the first two columns of the README's Metrics table. A name
    written with a leading underscore (`_applied_index`) continues the first name of its row
    after that name's first two words (`vaultd_raft_`)."""
    section = re.search(r"^## Metrics\n(.*?)(?=^## )", readme, re.S | re.M)
    if not section:
        sys.exit("check-dashboard: README.md has no '## Metrics' section")
    metrics = {}
    for line in section.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2:
            continue
        names = re.findall(r"`([a-z0-9_]+)`", cells[0])
        if not names or not names[0].startswith("vaultd_"):
            continue
        prefix = "_".join(names[0].split("_")[:2])
        for name in names:
            metrics[prefix + name if name.startswith("_") else name] = cells[1]
    if len(metrics) < 20:
        sys.exit(f"check-dashboard: only {len(metrics)} metrics found in README.md's Metrics table")
    return metrics


def check_expr(where, expr, metrics):
    for match in re.finditer(r"\bvaultd_[a-z0-9_]+", expr):
        name = match.group(0)
        kind = metrics.get(name)
        series_of = re.sub("(" + "|".join(HISTOGRAM_SERIES) + ")$", "", name)
        if series_of != name and metrics.get(series_of) == "histogram":
            pass  # a histogram's series
        elif kind == "histogram":
            errors.append(f"{where}: histogram {name} needs one of {'/'.join(HISTOGRAM_SERIES)}")
        elif kind is None:
            errors.append(f"{where}: {name} is not a documented vaultd metric")
        selector = re.match(r"\{([^}]*)\}", expr[match.end():])
        if not selector or 'namespace="$namespace"' not in selector.group(1) or "$vault" not in selector.group(1):
            errors.append(f'{where}: {name} is not filtered by namespace="$namespace" and $vault')


def reads_variable(datasource):
    return isinstance(datasource, dict) and datasource.get("uid") == DATASOURCE


def check_dashboard(dashboard, metrics):
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource" or variables["datasource"].get("query") != "prometheus":
        errors.append("template variable datasource: not a Prometheus data source variable")
    for name in ("namespace", "vault"):
        variable = variables.get(name)
        if not variable or variable.get("type") != "query" or not reads_variable(variable.get("datasource")):
            errors.append(f"template variable {name}: not a query of ${{datasource}}")
    ids = set()
    panels = list(dashboard.get("panels", []))
    if not panels:
        errors.append("no panels")
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))  # a row's panels
        where = f"panel {panel.get('id')} ({panel.get('title')!r})"
        if not isinstance(panel.get("id"), int) or panel["id"] in ids:
            errors.append(f"{where}: missing or duplicate id")
        ids.add(panel.get("id"))
        if not panel.get("title"):
            errors.append(f"{where}: no title")
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in "xywh") or grid["x"] + grid["w"] > 24:
            errors.append(f"{where}: gridPos missing or wider than 24 columns")
        if panel.get("type") == "row":
            continue
        if panel.get("type") not in ("timeseries", "stat", "gauge", "table"):
            errors.append(f"{where}: type {panel.get('type')!r} is not a core panel this dashboard uses")
        if not reads_variable(panel.get("datasource")):
            errors.append(f"{where}: datasource is not {DATASOURCE}")
        targets = panel.get("targets") or []
        if not targets:
            errors.append(f"{where}: no targets")
        for target in targets:
            if "datasource" in target and not reads_variable(target["datasource"]):
                errors.append(f"{where}: target {target.get('refId')} has its own datasource")
            expr = target.get("expr", "").strip()
            if not expr:
                errors.append(f"{where}: target {target.get('refId')} has no expr")
            check_expr(f"{where} target {target.get('refId')}", expr, metrics)
    return ids


def block_scalar(rendered, key):
    """The text of a `key: |-` block scalar in helm's rendered YAML."""
    lines = rendered.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == f"{key}: |-":
            indent = len(line) - len(line.lstrip()) + 2
            body = []
            for following in lines[i + 1:]:
                if following.strip() and len(following) - len(following.lstrip()) < indent:
                    break
                body.append(following[indent:])
            return "\n".join(body).rstrip("\n")
    return None


def check_rendered(rendered, source):
    if len(re.findall(r"^kind: ConfigMap$", rendered, re.M)) != 1:
        errors.append("rendered: not exactly one ConfigMap")
    if not re.search(r'^    grafana_dashboard: "1"$', rendered, re.M):
        errors.append('rendered: no label grafana_dashboard: "1"')
    text = block_scalar(rendered, "strongroom-vault.json")
    if text is None:
        errors.append("rendered: no data key strongroom-vault.json")
        return
    try:
        if json.loads(text) != json.loads(source):
            errors.append("rendered: the ConfigMap's JSON differs from the dashboard file")
    except json.JSONDecodeError as e:
        errors.append(f"rendered: the ConfigMap's JSON does not parse: {e}")


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        source = f.read()
    with open(sys.argv[2]) as f:
        metrics = documented_metrics(f.read())
    try:
        dashboard = json.loads(source)
    except json.JSONDecodeError as e:
        sys.exit(f"check-dashboard: {sys.argv[1]} does not parse: {e}")
    ids = check_dashboard(dashboard, metrics)
    if len(sys.argv) == 4:
        with open(sys.argv[3]) as f:
            check_rendered(f.read(), source)
    for error in errors:
        print(f"check-dashboard: {error}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"check-dashboard: {len(ids)} panels ok")


if __name__ == "__main__":
    main()
