#!/usr/bin/env python3
"""make deploy-check: checks deploy/ without a container engine or a cluster.

What it checks, and why each matters when the files cannot be run here:
  * every YAML file parses and passes yamllint (deploy/.yamllint);
  * docker-compose.yml: build contexts, Dockerfiles and bind-mounted files
    exist; depends_on names services that exist; named volumes are declared;
  * Dockerfile: every COPY source exists; bookworm base images; a non-root
    USER; a HEALTHCHECK on /healthz;
  * k8s/: the kustomization lists existing files; every manifest has
    apiVersion, kind and a name; selectors of the Deployment, Service and
    PodDisruptionBudget match the pod labels; probes use declared ports;
    envFrom names a ConfigMap/Secret that is in the manifests;
    `kubectl kustomize` renders it (when kubectl is installed; offline);
  * every SHOPSTREAM_* variable set in compose or k8s is a config key of
    `bin/shopstream run --help` (the processor ignores unknown variables, so a
    typo there would be silent);
  * Prometheus (promtool check config, when installed) and Grafana
    provisioning files parse and point at what compose defines; dashboards
    in deploy/grafana/ are JSON.
Exit status 0 when all is well, 1 with one line per problem otherwise.
"""
import os
import re
import shutil
import subprocess
import sys

try:
    import yaml
except ImportError:  # deps.sh installs python3-yaml for /usr/bin/python3
    sys.stderr.write("deploy-check: PyYAML missing (apt-get install python3-yaml)\n")
    sys.exit(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
problems = []
warnings = []

# Keys that other, not yet merged, branches add to stream/config.c. Remove a
# key once it is in `shopstream run --help`.
PENDING_KEYS = set()


def problem(msg):
    problems.append(msg)


def rel(path):
    return os.path.relpath(path, ROOT)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def yaml_files():
    for dirpath, _, files in os.walk(DEPLOY):
        for name in sorted(files):
            if name.endswith((".yml", ".yaml")) and not name.startswith("."):
                yield os.path.join(dirpath, name)


def check_yaml():
    for path in yaml_files():
        try:
            load_all(path)
        except yaml.YAMLError as e:
            problem(f"{rel(path)}: does not parse: {e}")
    if shutil.which("yamllint"):
        r = subprocess.run(["yamllint", "-f", "parsable", "-c", os.path.join(DEPLOY, ".yamllint"), DEPLOY],
                           capture_output=True, text=True)
        for line in r.stdout.splitlines():
            problem(f"yamllint: {line}")
    else:
        warnings.append("yamllint not installed: lint skipped (apt-get install yamllint)")


def config_keys():
    """Config keys of the built binary, or None when it is not built."""
    binary = os.path.join(ROOT, "bin", "shopstream")
    if not os.access(binary, os.X_OK):
        return None
    out = subprocess.run([binary, "run", "--help"], capture_output=True, text=True).stdout
    keys = set(re.findall(r"^  ([a-z][a-z0-9_.]*[a-z0-9])\s", out, re.M))
    return keys | PENDING_KEYS


def env_to_key_ok(var, keys):
    """SHOPSTREAM_REDIS_WAIT_REPLICAS -> redis.wait_replicas must exist."""
    if not var.startswith("SHOPSTREAM_"):
        return True
    if var.startswith("SHOPSTREAM_KAFKA_"):
        return True  # any librdkafka property
    if keys is None:
        return True
    names = {"SHOPSTREAM_" + re.sub(r"[.-]", "_", k).upper() for k in keys}
    return var in names


def check_env(where, env, keys):
    for var in env:
        if not env_to_key_ok(var, keys):
            problem(f"{where}: {var} is not a config key of 'shopstream run --help'")


def check_compose(keys):
    path = os.path.join(DEPLOY, "docker-compose.yml")
    base = os.path.dirname(path)
    doc = load_all(path)[0]
    services = doc.get("services", {})
    volumes = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        b = svc.get("build")
        if b:
            ctx = os.path.normpath(os.path.join(base, b["context"] if isinstance(b, dict) else b))
            if not os.path.isdir(ctx):
                problem(f"compose {name}: build context {rel(ctx)} missing")
            df = os.path.join(ctx, b.get("dockerfile", "Dockerfile")) if isinstance(b, dict) else None
            if df and not os.path.isfile(df):
                problem(f"compose {name}: Dockerfile {rel(df)} missing")
        if "image" not in svc and not b:
            problem(f"compose {name}: neither image nor build")
        for v in svc.get("volumes", []):
            src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith((".", "/")):
                full = os.path.normpath(os.path.join(base, src))
                if not os.path.exists(full):
                    problem(f"compose {name}: mounted {src} ({rel(full)}) missing")
            elif src and src not in volumes:
                problem(f"compose {name}: volume {src} not declared")
        deps = svc.get("depends_on", [])
        for d in deps if isinstance(deps, list) else deps.keys():
            if d not in services:
                problem(f"compose {name}: depends_on unknown service {d}")
        env = svc.get("environment", {})
        check_env(f"compose {name}", env if isinstance(env, dict) else [e.split("=")[0] for e in env], keys)
    instances = [n for n, s in services.items() if "shopstream" in str(s.get("image", ""))]
    if len(instances) < 2:
        problem("compose: fewer than two shopstream instances")
    return services


def check_dockerfile():
    path = os.path.join(DEPLOY, "Dockerfile")
    text = open(path).read()
    lines = [l.strip() for l in text.replace("\\\n", " ").splitlines() if l.strip() and not l.lstrip().startswith("#")]
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    if len(froms) < 2:
        problem("Dockerfile: not multi-stage")
    for f in froms:
        if "bookworm" not in f:
            problem(f"Dockerfile: base image is not Debian bookworm: {f}")
    for l in lines:
        if l.upper().startswith("COPY ") and "--from=" not in l:
            for src in l.split()[1:-1]:
                if src != "." and not os.path.exists(os.path.join(ROOT, src)):
                    problem(f"Dockerfile: COPY source {src} missing")
    users = [l for l in lines if l.upper().startswith("USER ")]
    if not users or users[-1].split()[1].split(":")[0] in ("root", "0"):
        problem("Dockerfile: the runtime stage does not switch to a non-root USER")
    if not any(l.upper().startswith("HEALTHCHECK") and "/healthz" in l for l in lines):
        problem("Dockerfile: no HEALTHCHECK on /healthz")
    if not os.path.isfile(os.path.join(ROOT, ".dockerignore")):
        problem(".dockerignore missing (build output would be sent as context)")


def check_k8s(keys):
    kdir = os.path.join(DEPLOY, "k8s")
    kust = load_all(os.path.join(kdir, "kustomization.yaml"))[0]
    docs = []
    for res in kust.get("resources", []):
        p = os.path.join(kdir, res)
        if not os.path.isfile(p):
            problem(f"k8s: kustomization lists missing {res}")
            continue
        for d in load_all(p):
            docs.append((res, d))
    listed = set(kust.get("resources", []))
    for name in os.listdir(kdir):
        if name.endswith(".yaml") and name != "kustomization.yaml" and name not in listed:
            problem(f"k8s: {name} is not in kustomization.yaml")
    by_kind = {}
    for res, d in docs:
        for field in ("apiVersion", "kind"):
            if field not in d:
                problem(f"k8s {res}: no {field}")
        if not d.get("metadata", {}).get("name"):
            problem(f"k8s {res}: no metadata.name")
        by_kind.setdefault(d.get("kind"), {})[d.get("metadata", {}).get("name")] = (res, d)
    deps = by_kind.get("Deployment", {})
    if not deps:
        problem("k8s: no Deployment")
    for name, (res, d) in deps.items():
        spec = d["spec"]
        pod_labels = spec["template"]["metadata"].get("labels", {})
        sel = spec["selector"].get("matchLabels", {})
        if any(pod_labels.get(k) != v for k, v in sel.items()):
            problem(f"k8s {res}: selector {sel} does not match pod labels {pod_labels}")
        for c in spec["template"]["spec"]["containers"]:
            ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe"):
                pr = c.get(probe)
                if not pr:
                    problem(f"k8s {res}: container {c['name']} has no {probe}")
                    continue
                hg = pr.get("httpGet", {})
                if hg.get("path") != "/healthz":
                    problem(f"k8s {res}: {probe} is not on /healthz")
                if hg.get("port") not in ports:
                    problem(f"k8s {res}: {probe} port {hg.get('port')} is not a container port")
            for ef in c.get("envFrom", []):
                for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if ref in ef and ef[ref]["name"] not in by_kind.get(kind, {}):
                        problem(f"k8s {res}: envFrom {kind} {ef[ref]['name']} is not in the manifests")
            check_env(f"k8s {res}", [e["name"] for e in c.get("env", [])], keys)
        for kind in ("Service", "PodDisruptionBudget"):
            for oname, (ores, od) in by_kind.get(kind, {}).items():
                s = od["spec"].get("selector", {})
                s = s.get("matchLabels", s)
                if any(pod_labels.get(k) != v for k, v in s.items()):
                    problem(f"k8s {ores}: selector {s} matches no pod of Deployment {name}")
    for kind in ("ConfigMap", "Secret", "Service", "PodDisruptionBudget"):
        if kind not in by_kind:
            problem(f"k8s: no {kind}")
    for _, (res, d) in by_kind.get("ConfigMap", {}).items():
        check_env(f"k8s {res}", d.get("data", {}), keys)
    for _, (res, d) in by_kind.get("Secret", {}).items():
        check_env(f"k8s {res}", d.get("stringData", {}) or d.get("data", {}), keys)
    if shutil.which("kubectl"):
        r = subprocess.run(["kubectl", "kustomize", kdir], capture_output=True, text=True)
        if r.returncode != 0:
            problem(f"kubectl kustomize: {r.stderr.strip()}")
    else:
        warnings.append("kubectl not installed: 'kubectl kustomize' skipped")


def check_monitoring(services):
    prom_path = os.path.join(DEPLOY, "compose", "prometheus.yml")
    prom = load_all(prom_path)[0]
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "config", prom_path], capture_output=True, text=True)
        if r.returncode != 0:
            problem(f"promtool check config {rel(prom_path)}: {(r.stdout + r.stderr).strip()}")
    else:
        warnings.append("promtool not installed: Prometheus config only parsed")
    for job in prom.get("scrape_configs", []):
        for sc in job.get("static_configs", []):
            for t in sc.get("targets", []):
                if t.split(":")[0] not in services:
                    problem(f"prometheus.yml: target {t} is no compose service")
    ds = load_all(os.path.join(DEPLOY, "compose", "grafana", "datasources", "prometheus.yml"))[0]
    for d in ds.get("datasources", []):
        host = re.sub(r"^https?://", "", d.get("url", "")).split(":")[0]
        if host not in services:
            problem(f"grafana datasource {d.get('name')}: {host} is no compose service")
    dash = os.path.join(DEPLOY, "grafana")
    boards = [n for n in os.listdir(dash) if n.endswith(".json")]
    if not boards:
        warnings.append("deploy/grafana/ holds no dashboard JSON yet")
    for n in boards:
        try:
            import json
            json.load(open(os.path.join(dash, n)))
        except ValueError as e:
            problem(f"deploy/grafana/{n}: not JSON: {e}")


def main():
    keys = config_keys()
    if keys is None:
        warnings.append("bin/shopstream not built: SHOPSTREAM_* names not checked against config keys")
    check_yaml()
    services = check_compose(keys)
    check_dockerfile()
    check_k8s(keys)
    check_monitoring(services)
    if not shutil.which("docker") or subprocess.run(["docker", "compose", "version"],
                                                    capture_output=True).returncode != 0:
        warnings.append("'docker compose config' not available: compose checked by this script only")
    for w in warnings:
        print(f"deploy-check: note: {w}")
    for p in problems:
        print(f"deploy-check: {p}")
    print(f"deploy-check: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
