#!/usr/bin/env bash
# Validates everything under deploy/ and the docs it links to:
# - every YAML file parses, and the dashboard is valid JSON;
# - the generated PrometheusRule and dashboard are up to date (monitoring/build.py --check);
# - the plain ConfigMap carries the same config as the kustomize component;
# - every quarantine_* metric named in deploy/ and docs/ is registered in src/ops/metrics.rs;
# - every runbook.md#anchor and operations.md#anchor points at an existing heading;
# - promtool: the rules check, their unit tests pass, and every dashboard query parses;
# - promtool: the dashboard's queries (as generated recording rules) show what they should,
#   a single diverted record included (prometheus/dashboard.test.yaml);
# - amtool: the Alertmanager example config and its templates check, alerts route to the
#   receivers the comments promise, and a rendered notification carries the runbook URL,
#   topic, group and reason;
# - kubectl kustomize builds both example overlays;
# - kubernetes-validate --strict: the plain manifests and the overlays' output;
# - the Containerfile: hadolint, its compile command, its user, the image the manifests use.
# Needs python3 with PyYAML. promtool (Debian: prometheus), amtool (Debian:
# prometheus-alertmanager), kubernetes-validate (PyPI; scripts/setup.sh installs it into
# $QUARANTINE_CACHE/deploy-venv) and kubectl are used when present; a missing one is
# reported as skipped, not as passed, or as a failure with QUARANTINE_DEPLOY_CHECK_STRICT=1
# (scripts/test.sh sets it, except for kubectl, which no registry here provides).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
failures=0
pass() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; failures=$((failures + 1)); }
skip() {
    if [ "${QUARANTINE_DEPLOY_CHECK_STRICT:-0}" = 1 ] && [ "${2:-}" != optional ]; then
        fail "$1"
    else
        echo "skip  $1"
    fi
}
cache="${QUARANTINE_CACHE:-$HOME/.cache/quarantine}"
PATH="$PATH:$cache/deploy-venv/bin"

if ! python3 -c 'import yaml' 2>/dev/null; then
    echo "python3 with PyYAML is required (pip install pyyaml)" >&2
    exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# All python-side checks; prints ok/FAIL lines and writes the dashboard queries as a rules
# file for promtool.
python3 - "$tmp/dashboard-queries.rules.yaml" <<'EOF'
import glob, json, os, re, sys, yaml

bad = 0
def ok(msg): print("ok    " + msg)
def fail(msg):
    global bad
    bad += 1
    print("FAIL  " + msg)

# 1. YAML and JSON parse.
yamls = sorted(glob.glob("deploy/**/*.yaml", recursive=True))
for path in yamls:
    try:
        list(yaml.safe_load_all(open(path, encoding="utf-8")))
    except yaml.YAMLError as e:
        fail(f"{path}: {e}")
ok(f"{len(yamls)} YAML files parse")
dash_path = "deploy/monitoring/grafana/quarantine-dashboard.json"
try:
    dash = json.load(open(dash_path, encoding="utf-8"))
    ok(f"{dash_path} is valid JSON")
except ValueError as e:
    fail(f"{dash_path}: {e}")
    dash = {"panels": []}

# 2. The embedded config equals the component's file, and it parses.
cm = yaml.safe_load(open("deploy/kubernetes/plain/configmap.yaml", encoding="utf-8"))
component = open("deploy/kubernetes/kustomize/components/quarantine-config/quarantine.yaml", encoding="utf-8").read()
if cm["data"]["quarantine.yaml"] == component:
    ok("plain/configmap.yaml matches components/quarantine-config/quarantine.yaml")
else:
    fail("plain/configmap.yaml differs from components/quarantine-config/quarantine.yaml")
yaml.safe_load(component)
pm = [yaml.safe_load(open(p, encoding="utf-8")) for p in (
    "deploy/kubernetes/plain/podmonitor.yaml",
    "deploy/kubernetes/kustomize/components/quarantine-monitoring/podmonitor.yaml")]
if pm[0] == pm[1]:
    ok("the component's PodMonitor matches plain/podmonitor.yaml")
else:
    fail("components/quarantine-monitoring/podmonitor.yaml differs from plain/podmonitor.yaml")

# The sidecar container is written out four times (plain and component, classic and
# native); apart from the variant's own fields they must agree.
def sidecar(path):
    spec = yaml.safe_load(open(path, encoding="utf-8"))["spec"]["template"]["spec"]
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        if c["name"] == "quarantine":
            c = dict(c)
            c.pop("restartPolicy", None)
            c.pop("lifecycle", None)
            return c, spec.get("terminationGracePeriodSeconds"), spec["volumes"]
    raise SystemExit(f"{path}: no quarantine container")
variants = ["deploy/kubernetes/plain/deployment-sidecar.yaml",
            "deploy/kubernetes/plain/deployment-native-sidecar.yaml",
            "deploy/kubernetes/kustomize/components/quarantine-sidecar/patch.yaml",
            "deploy/kubernetes/kustomize/components/quarantine-native-sidecar/patch.yaml"]
first = sidecar(variants[0])
differ = [path for path in variants[1:] if sidecar(path) != first]
for path in differ:
    fail(f"{path}: the quarantine container, grace period or volumes differ from {variants[0]}")
if not differ:
    ok("the four sidecar variants agree (container, grace period, volumes)")

# 3. Metric names against src/ops/metrics.rs.
src = open("src/ops/metrics.rs", encoding="utf-8").read()
registered = set(re.findall(r'register\(\s*"([a-z0-9_]+)"', src))
# Collectors (build info, partition state) name their metrics in src/ops/collectors.rs.
registered |= set(re.findall(r'encode_descriptor\(\s*"([a-z0-9_]+)"',
                             open("src/ops/collectors.rs", encoding="utf-8").read()))
known = {f"quarantine_{n}{s}" for n in registered for s in ("", "_total", "_bucket", "_sum", "_count")}
files = [p for p in glob.glob("deploy/**/*", recursive=True) + glob.glob("docs/**/*.md", recursive=True)
         if os.path.isfile(p) and p.endswith((".yaml", ".json", ".md", ".py"))]
used = {}
for path in files:
    for name in re.findall(r"\bquarantine_[a-z0-9_]+", open(path, encoding="utf-8").read()):
        used.setdefault(name, set()).add(path)
unknown = {n: p for n, p in used.items() if n not in known}
for name, paths in sorted(unknown.items()):
    fail(f"metric {name} (in {', '.join(sorted(paths))}) is not registered in src/ops/metrics.rs")
if not unknown:
    ok(f"{len(used)} metric names are registered in src/ops/metrics.rs")

# 4. Anchors into the docs.
def slugs(path):
    out = set()
    for line in open(path, encoding="utf-8"):
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            title = m.group(1).strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out
targets = {"runbook.md": slugs("docs/runbook.md"), "operations.md": slugs("docs/operations.md")}
links = 0
for path in files:
    for doc, anchor in re.findall(r"(runbook\.md|operations\.md)#([A-Za-z0-9_\-]+)", open(path, encoding="utf-8").read()):
        links += 1
        if anchor not in targets[doc]:
            fail(f"{path}: {doc}#{anchor} has no heading")
for path in ("docs/runbook.md", "docs/operations.md"):
    for anchor in re.findall(r"\]\(#([A-Za-z0-9_\-]+)\)", open(path, encoding="utf-8").read()):
        links += 1
        if anchor not in targets[os.path.basename(path)]:
            fail(f"{path}: #{anchor} has no heading")
ok(f"{links} links into docs/ checked")

# 5. Every alert has summary, description and a runbook_url.
rules = yaml.safe_load(open("deploy/monitoring/prometheus/quarantine-alerts.rules.yaml", encoding="utf-8"))
alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
for r in alerts:
    missing = {"summary", "description", "runbook_url"} - set(r.get("annotations", {}))
    if missing or "severity" not in r.get("labels", {}):
        fail(f"alert {r['alert']}: missing {sorted(missing) or 'severity'}")
    elif not r["annotations"]["runbook_url"].endswith("#" + r["alert"].lower()):
        fail(f"alert {r['alert']}: runbook_url should end with #{r['alert'].lower()}")
ok(f"{len(alerts)} alerts carry severity, summary, description and runbook_url")

# 6. Dashboard queries as recording rules, for promtool to parse.
subst = {"$__rate_interval": "5m", "$__range": "1h", "$topn": "10",
         "$namespace": ".*", "$pod": ".*", "$topic": ".*", "$group": ".*"}
recs = []
for p in dash["panels"]:
    for t in p.get("targets", []):
        expr = t["expr"]
        for k, v in subst.items():
            expr = expr.replace(k, v)
        recs.append({"record": f"dashboard:panel_{p['id']}_{t['refId'].lower()}", "expr": expr})
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recs}]}, open(sys.argv[1], "w"))
ok(f"{len(recs)} dashboard queries extracted")
sys.exit(min(bad, 100))
EOF
failures=$((failures + $?))

if python3 deploy/monitoring/build.py --check; then
    pass "prometheusrule.yaml and the dashboard are up to date"
else
    fail "generated monitoring files are stale"
fi

if command -v promtool >/dev/null 2>&1; then
    if promtool check rules deploy/monitoring/prometheus/quarantine-alerts.rules.yaml >"$tmp/out" 2>&1; then
        pass "promtool check rules: $(grep -o '[0-9]* rules found' "$tmp/out")"
    else
        cat "$tmp/out"; fail "promtool check rules"
    fi
    if promtool test rules deploy/monitoring/prometheus/quarantine-alerts.test.yaml >"$tmp/out" 2>&1; then
        pass "promtool test rules: alert unit tests pass"
    else
        cat "$tmp/out"; fail "promtool test rules"
    fi
    if promtool test rules deploy/monitoring/prometheus/dashboard.test.yaml >"$tmp/out" 2>&1; then
        pass "promtool test rules: dashboard panels show a single diverted record"
    else
        cat "$tmp/out"; fail "promtool test rules (dashboard)"
    fi
    if promtool check rules "$tmp/dashboard-queries.rules.yaml" >"$tmp/out" 2>&1; then
        pass "promtool: every dashboard query parses"
    else
        cat "$tmp/out"; fail "dashboard queries"
    fi
else
    skip "promtool not installed (apt-get install prometheus): rules, rule tests and dashboard queries not checked"
fi

am=deploy/monitoring/alertmanager
if command -v amtool >/dev/null 2>&1; then
    if amtool check-config "$am/alertmanager.yaml" >"$tmp/out" 2>&1; then
        pass "amtool check-config $am/alertmanager.yaml (templates included)"
    else
        cat "$tmp/out"; fail "amtool check-config"
    fi
    # labels -> the receivers alertmanager.yaml's comments promise
    while read -r want labels; do
        if amtool config routes test --config.file="$am/alertmanager.yaml" \
            --verify.receivers="$want" $labels >"$tmp/out" 2>&1; then
            pass "route: $labels -> $want"
        else
            cat "$tmp/out"; fail "route: $labels should go to $want"
        fi
    done <<'ROUTES'
pagerduty-kafka-oncall,slack-kafka-alerts alertname=QuarantineDLQWriteFailing severity=critical namespace=shop pod=orders-1
slack-kafka-alerts alertname=QuarantineDiversionSpike severity=warning namespace=shop topic=orders group=billing
tickets-dlq-triage,slack-kafka-dlq alertname=QuarantineRecordDiverted severity=info namespace=shop topic=orders group=billing reason=crash-loop
ROUTES
    if amtool template render --template.glob="$am/quarantine.tmpl" --template.data="$am/example-alert.json" \
        --template.text='{{ template "quarantine.title" . }} {{ template "quarantine.slack.text" . }} {{ template "quarantine.pagerduty.description" . }}' \
        >"$tmp/out" 2>&1 \
        && grep -q 'runbook.md#quarantinerecorddiverted' "$tmp/out" \
        && grep -q 'topic order.confirmed' "$tmp/out" && grep -q 'group orders' "$tmp/out" \
        && grep -q 'reason crash-loop' "$tmp/out"; then
        pass "amtool template render: a notification carries runbook URL, topic, group and reason"
    else
        cat "$tmp/out"; fail "notification template lacks runbook URL/topic/group/reason"
    fi
else
    skip "amtool not installed (apt-get install prometheus-alertmanager): Alertmanager example not checked"
fi

if command -v kubectl >/dev/null 2>&1; then
    for overlay in overlay overlay-classic; do
        dir=deploy/kubernetes/kustomize/example/$overlay
        if kubectl kustomize "$dir" >"$tmp/$overlay.yaml" 2>"$tmp/out"; then
            pass "kubectl kustomize $dir"
        else
            cat "$tmp/out"; fail "kubectl kustomize $dir"
        fi
    done
    if grep -q 'name: quarantine' "$tmp/overlay.yaml" && grep -q 'restartPolicy: Always' "$tmp/overlay.yaml" \
        && grep -q 'value: localhost:9092' "$tmp/overlay.yaml"; then
        pass "overlay injects the native sidecar and points the app at localhost:9092"
    else
        fail "overlay output lacks the injected sidecar"
    fi
else
    skip "kubectl not installed: kustomize overlays not built" optional
fi

if command -v kubernetes-validate >/dev/null 2>&1; then
    manifests=(deploy/kubernetes/plain/*.yaml)
    for overlay in overlay overlay-classic; do
        [ -s "$tmp/$overlay.yaml" ] && manifests+=("$tmp/$overlay.yaml")
    done
    # Custom resources (PodMonitor, ServiceMonitor) have no schema there: a warning only.
    if kubernetes-validate --strict --quiet "${manifests[@]}" >"$tmp/out" 2>&1; then
        pass "kubernetes-validate --strict: ${#manifests[@]} manifest files"
    else
        cat "$tmp/out"; fail "kubernetes-validate --strict"
    fi
else
    skip "kubernetes-validate not installed (scripts/setup.sh puts it in the deploy-venv)"
fi

# The container image: hadolint, the build stage's command = the release build, non-root,
# and the manifests reference the image scripts/build-image.sh tags.
if scripts/build-image.sh --check >"$tmp/out" 2>&1; then
    pass "Containerfile: $(tail -n 1 "$tmp/out")"
else
    cat "$tmp/out"; fail "Containerfile checks (scripts/build-image.sh --check)"
fi

if [ "$failures" -eq 0 ]; then
    echo "deploy/check.sh: all checks passed"
else
    echo "deploy/check.sh: $failures check(s) failed"
    exit 1
fi
