"""cluster.yaml (`ray up`, Ray's autoscaler format) and deploy/rayjob.yaml (KubeRay), checked offline.

cluster.yaml goes through the same two steps `ray up` starts with (ray/autoscaler/_private/commands.py,
`_bootstrap_config`): `prepare_config` (merges ray/autoscaler/aws/defaults.yaml, setup commands, per-type
min/max workers; for AWS it only reads that YAML file) and `validate_config` (ray/autoscaler/ray-schema.json
via jsonschema, plus the head/min_workers checks). Neither needs boto3 or a network. What `ray up` does
next does need both and is not run here: resource autodetection (`describe_instance_types`, skipped for
types that declare `resources`, as both do) and `bootstrap_aws` (IAM role, key pair, subnets, security
group). These are private Ray APIs; pyproject.toml pins ray, and a test below ties the files to that pin.

Both files share storage through a file system mounted at the same path on every node (EFS over NFS on
AWS, a ReadWriteMany claim on Kubernetes): `sweeper run --storage` takes a path, never an object store.
"""
from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from sweeper.storage import OBJECT_STORES

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster.yaml"
RAYJOB = ROOT / "deploy" / "rayjob.yaml"
SETTINGS = ("SWEEPER_REPO", "SWEEPER_REV", "SWEEPER_EFS", "SWEEPER_STORAGE")
SHA = "0123456789abcdef0123456789abcdef01234567"
EFS = "fs-0123456789abcdef0"
URI = re.compile(r"\b(?:%s)" % "|".join(map(re.escape, OBJECT_STORES + ("file://",))))  # a storage URI


def _uncommented(text: str) -> str:
    return re.sub(r"(^|\s)#.*$", "", text, flags=re.MULTILINE)


def _is_shared_path(value: str) -> bool:
    """What `sweeper run --storage` accepts for a multi-node cluster: an absolute path, no scheme."""
    return value.startswith("/") and value != "/" and "://" not in value and not value.startswith(OBJECT_STORES)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


@pytest.fixture(scope="module")
def prepared(raw) -> dict:
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def _head(config: dict) -> dict:
    return config["available_node_types"][config["head_node_type"]]


def _gpu_types(config: dict) -> dict:
    return {name: t for name, t in config["available_node_types"].items()
            if name != config["head_node_type"] and t["resources"].get("GPU", 0) >= 1}


def _ray_start_lines(commands: list[str]) -> list[str]:
    return [c for c in commands if re.search(r"\bray start\b", c)]


# -- cluster.yaml ------------------------------------------------------------------------------------------
def test_cluster_yaml_passes_rays_own_validation(prepared):
    assert prepared["provider"]["type"] == "aws"
    assert prepared["cluster_synced_files"] == []  # filled from Ray's AWS defaults: prepare_config really ran


def test_the_validation_catches_a_misspelt_key(raw):
    bad = copy.deepcopy(raw)
    bad["head_start_ray_command"] = bad.pop("head_start_ray_commands")
    with pytest.raises(jsonschema.ValidationError, match="head_start_ray_command"):
        validate_config(prepare_config(bad))


def test_head_runs_no_trials(raw, prepared):
    assert _head(raw)["resources"] == {"CPU": 0}
    assert _head(prepared)["max_workers"] == 0
    # `ray start` gets {"CPU": 0} from the autoscaler (RAY_OVERRIDE_RESOURCES) and says so itself too
    (head_start,) = _ray_start_lines(prepared["head_start_ray_commands"])
    assert "--head" in head_start and "--num-cpus=0" in head_start


def test_an_autoscaling_gpu_worker_type(prepared):
    gpus = _gpu_types(prepared)
    assert gpus, "no worker type declares a GPU"
    for t in gpus.values():
        assert 0 <= t["min_workers"] <= t["max_workers"] <= prepared["max_workers"]
        assert t["max_workers"] > 0
        assert t["resources"].get("CPU", 0) >= 1
        assert all(isinstance(v, int) for v in t["resources"].values())  # Ray's schema wants integers


def _settings_command(raw: dict) -> str:
    first = raw["setup_commands"][0]
    assert all(f"{name}=" in first for name in SETTINGS), "the first setup command must name the settings"
    return first


def _setting(raw: dict, name: str) -> str:
    (value,) = re.findall(rf"'{name}=([^']*)'", _settings_command(raw))
    return value


def test_repository_revision_and_storage_are_named_in_one_place(raw):
    text = CLUSTER.read_text()
    _settings_command(raw)
    for name in SETTINGS:
        assert len(re.findall(rf"\b{name}=", text)) == 1, f"{name} is assigned more than once"
    storage = _setting(raw, "SWEEPER_STORAGE")
    assert _is_shared_path(storage), f"SWEEPER_STORAGE={storage}: a mount point, not an object store"
    assert _uncommented(text).count(storage) == 1, f"{storage} is spelt out more than once (use $SWEEPER_STORAGE)"
    assert not URI.search(text), f"no storage URI belongs in cluster.yaml: {URI.findall(text)}"
    assert re.fullmatch(r"fs-\w+", _setting(raw, "SWEEPER_EFS"))
    assert text.count(_setting(raw, "SWEEPER_EFS")) == 1
    uses = [c for c in raw["setup_commands"][1:] + raw["head_start_ray_commands"] if "$SWEEPER_STORAGE" in c]
    assert any("mlflow server --" in c for c in uses), "MLflow's artifacts must go to the storage"


def test_setup_installs_this_package_at_a_pinned_revision(raw, prepared):
    installs = [c for c in raw["setup_commands"] if "pip install" in c and "sweeper @ git+" in c]
    assert len(installs) == 1
    assert '"sweeper @ git+${SWEEPER_REPO}@${SWEEPER_REV}"' in installs[0]
    assert not re.search(r"@(main|master|HEAD)\b", CLUSTER.read_text())
    # setup_commands run on the head and on every worker
    assert installs[0] in prepared["head_setup_commands"] and installs[0] in prepared["worker_setup_commands"]


def _guard(raw: dict, tmp_path: Path, **values: str) -> subprocess.CompletedProcess:
    """Run the settings command (with `values` substituted) and the command that checks them, as on a node."""
    first = _settings_command(raw)
    for name, value in values.items():
        first, n = re.subn(rf"'{name}=[^']*'", f"'{name}={value}'", first)
        assert n == 1
    (guard,) = [c for c in raw["setup_commands"] if "SWEEPER_REV" in c and "exit 1" in c]
    env = dict(os.environ, HOME=str(tmp_path))
    script = f"({first}) && ({guard})"
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)


def test_a_node_refuses_an_unpinned_revision_the_placeholder_file_system_or_a_bucket(raw, tmp_path):
    as_shipped = _guard(raw, tmp_path)
    assert as_shipped.returncode != 0 and "SWEEPER_REV" in as_shipped.stderr
    assert _guard(raw, tmp_path, SWEEPER_REV="main", SWEEPER_EFS=EFS).returncode != 0
    placeholder = _guard(raw, tmp_path, SWEEPER_REV=SHA)  # still the placeholder file system id
    assert placeholder.returncode != 0 and "SWEEPER_EFS" in placeholder.stderr
    for bad in ("s3://mine/sweeper", "file:///mnt/sweeper", "mnt/sweeper", "/"):
        refused = _guard(raw, tmp_path, SWEEPER_REV=SHA, SWEEPER_EFS=EFS, SWEEPER_STORAGE=bad)
        assert refused.returncode != 0 and "SWEEPER_STORAGE" in refused.stderr, bad
    ok = _guard(raw, tmp_path, SWEEPER_REV=SHA, SWEEPER_EFS=EFS)
    assert ok.returncode == 0, ok.stderr
    env_file = (tmp_path / "sweeper.env").read_text()
    assert f"export SWEEPER_REV={SHA}" in env_file and "export RAY_AUTH_MODE=token" in env_file
    assert f"export SWEEPER_STORAGE={_setting(raw, 'SWEEPER_STORAGE')}" in env_file


def _mount_index(commands: list[str]) -> int:
    (i,) = [i for i, c in enumerate(commands) if re.search(r"\bmount -t nfs4\b", c)]
    return i


def test_every_node_mounts_the_shared_storage_before_ray_starts(raw, prepared):
    # the start commands, not the setup commands: Ray skips setup on a restarted stopped node
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        cmds = prepared[key]
        mount = cmds[_mount_index(cmds)]
        (ray_start,) = _ray_start_lines(cmds)
        assert _mount_index(cmds) < cmds.index(ray_start), f"{key}: mount after `ray start`"
        assert '"$SWEEPER_EFS.efs.$region.amazonaws.com:/" "$SWEEPER_STORAGE"' in mount
        assert "nfsvers=4.1" in mount and "mountpoint -q \"$SWEEPER_STORAGE\"" in mount
    assert prepared["head_start_ray_commands"][_mount_index(prepared["head_start_ray_commands"])] == \
        prepared["worker_start_ray_commands"][_mount_index(prepared["worker_start_ray_commands"])]
    for name, t in prepared["available_node_types"].items():  # no node type replaces the commands above
        assert not {"worker_start_ray_commands", "head_start_ray_commands"} & set(t), name
    nfs = [c for c in raw["setup_commands"] if "nfs-common" in c]
    assert nfs and all(c in prepared["worker_setup_commands"] and c in prepared["head_setup_commands"] for c in nfs)


@pytest.mark.parametrize("mounted", [False, True])
def test_the_mount_is_idempotent(raw, prepared, tmp_path, mounted):
    """The mount command with stubbed mountpoint/curl/sudo (first on PATH, as ~/sweeper-venv/bin is)."""
    assert _guard(raw, tmp_path, SWEEPER_REV=SHA, SWEEPER_EFS=EFS).returncode == 0  # writes ~/sweeper.env
    stubs = tmp_path / "sweeper-venv" / "bin"
    stubs.mkdir(parents=True)
    log = tmp_path / "calls"
    for name, body in {"mountpoint": f"exit {0 if mounted else 1}",
                       "curl": 'case "$*" in *placement/region*) echo us-west-2;; *) echo token;; esac',
                       "sudo": f'echo "$*" >> {log}'}.items():
        (stubs / name).write_text(f"#!/bin/bash\n{body}\n")
        (stubs / name).chmod(0o755)
    cmds = prepared["worker_start_ray_commands"]
    out = subprocess.run(["bash", "-c", cmds[_mount_index(cmds)]], env=dict(os.environ, HOME=str(tmp_path)),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    storage = _setting(raw, "SWEEPER_STORAGE")
    mounts = [c for c in calls if c.startswith("mount ")]
    if mounted:
        assert not mounts
    else:
        (mount,) = mounts
        assert mount.endswith(f"{EFS}.efs.us-west-2.amazonaws.com:/ {storage}")


def test_only_the_head_gets_aws_tooling(raw, prepared):
    # the autoscaler (on the head) needs boto3; workers need no AWS API and no instance profile
    assert any("boto3" in c for c in raw["head_setup_commands"])
    assert not any("boto3" in c for c in prepared["worker_setup_commands"])
    for name, t in _gpu_types(prepared).items():
        assert "IamInstanceProfile" not in t["node_config"], name


def test_head_starts_mlflow_on_loopback_then_ray(prepared):
    cmds = prepared["head_start_ray_commands"]
    (mlflow,) = [c for c in cmds if "mlflow server --" in c]
    args = shlex.split(mlflow[mlflow.index("mlflow server"):].split(">")[0])
    opt = dict(zip(args[2::2], args[3::2]))
    assert opt["--host"] == "127.0.0.1" and opt["--port"] == "5000"
    assert opt["--backend-store-uri"].startswith("sqlite:///$HOME/")  # the head's own disk
    assert "SWEEPER_STORAGE" not in opt["--backend-store-uri"], "SQLite over NFS is unsafe"
    assert opt["--artifacts-destination"].startswith("$SWEEPER_STORAGE/")
    assert _mount_index(cmds) < cmds.index(mlflow), "MLflow's artifacts need the mount"
    assert "0.0.0.0" not in " ".join(cmds)
    (ray_start,) = _ray_start_lines(cmds)
    assert cmds.index(mlflow) < cmds.index(ray_start), "MLflow must be up before Ray (and so any driver)"
    assert any("/health" in c for c in cmds[cmds.index(mlflow):cmds.index(ray_start)])
    assert ray_start.startswith("source ~/sweeper.env;"), "drivers `ray job submit` starts need SWEEPER_STORAGE"
    (worker_start,) = _ray_start_lines(prepared["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in worker_start


def test_token_authentication_is_on_everywhere(raw, prepared):
    from ray._private.authentication.authentication_token_setup import (AUTH_MODE_ENV_VAR,
                                                                        _get_default_token_path)

    text = CLUSTER.read_text()
    assert AUTH_MODE_ENV_VAR == "RAY_AUTH_MODE"  # the variable this Ray reads
    assert not re.search(r"RAY_AUTH_MODE\W{0,3}disabled", text, re.IGNORECASE)
    for cmd in _ray_start_lines(prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]):
        assert "RAY_AUTH_MODE=token ray start" in cmd
    # the token file Ray reads by default reaches every node (the head re-syncs file_mounts to its workers)
    token = "~/" + str(_get_default_token_path().relative_to(Path.home()))
    assert raw["file_mounts"].get(token) == token


def test_files_agree_with_the_pinned_ray():
    (pin,) = re.findall(r'"ray(?:\[[^\]]*\])?==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pin == ray.__version__
    assert _rayjob()["spec"]["rayClusterSpec"]["rayVersion"] == ray.__version__


# -- deploy/rayjob.yaml ------------------------------------------------------------------------------------
def _rayjob() -> dict:
    (job,) = [d for d in yaml.safe_load_all(RAYJOB.read_text()) if d and d.get("kind") == "RayJob"]
    return job


def _claims() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(RAYJOB.read_text())
            if d and d.get("kind") == "PersistentVolumeClaim"}


def _pods(job: dict) -> dict[str, dict]:
    spec = job["spec"]["rayClusterSpec"]
    pods = {"head": spec["headGroupSpec"]["template"]["spec"]}
    pods.update({g["groupName"]: g["template"]["spec"] for g in spec["workerGroupSpecs"]})
    return pods


def _claim_at(pod: dict, container: dict, path: str) -> str | None:
    """The claim `container` has mounted at `path`, None if none is."""
    names = [m["name"] for m in container.get("volumeMounts", []) if m["mountPath"].rstrip("/") == path.rstrip("/")]
    if not names:
        return None
    (volume,) = [v for v in pod.get("volumes", []) if v["name"] == names[0]]
    return volume["persistentVolumeClaim"]["claimName"]


def _containers(job: dict) -> dict[str, dict]:
    spec = job["spec"]["rayClusterSpec"]
    out = {f"head/{c['name']}": c for c in spec["headGroupSpec"]["template"]["spec"]["containers"]}
    for g in spec["workerGroupSpecs"]:
        out.update({f"{g['groupName']}/{c['name']}": c for c in g["template"]["spec"]["containers"]})
    out.update({f"submitter/{c['name']}": c for c in job["spec"]["submitterPodTemplate"]["spec"]["containers"]})
    return out


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_rayjob_runs_sweeper_with_the_same_storage_and_tracking_uri():
    job = _rayjob()
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["sweeper", "run"]
    opt = dict(zip(argv[3::2], argv[4::2]))
    assert opt["--address"] == "auto"
    assert opt["--storage"] == "$SWEEPER_STORAGE"  # the driver runs with the head container's env
    assert opt["--workdir"].startswith("$SWEEPER_STORAGE/"), "the reports must outlive the head pod"
    assert opt["--tracking-uri"] == "http://127.0.0.1:5000"
    storage = job["metadata"]["annotations"]["sweeper/storage"]
    text = RAYJOB.read_text()
    assert _is_shared_path(storage), f"{storage}: a mount point, not an object store"
    assert _uncommented(text).count(storage) == 1, f"{storage} is spelt out more than once (use the anchor)"
    assert not URI.search(text), f"no storage URI belongs in rayjob.yaml: {URI.findall(text)}"
    for name, c in _containers(job).items():
        assert _env(c)["SWEEPER_STORAGE"]["value"] == storage, name


def test_rayjob_mounts_one_readwritemany_claim_at_the_storage_path_everywhere():
    job = _rayjob()
    storage = job["metadata"]["annotations"]["sweeper/storage"]
    pods = _pods(job)
    shared = {_claim_at(pods[name.split("/")[0]], c, storage)
              for name, c in _containers(job).items() if not name.startswith("submitter/")}
    assert len(shared) == 1 and None not in shared, f"head, MLflow and workers must mount one claim: {shared}"
    (claim,) = shared
    spec = _claims()[claim]["spec"]
    assert spec["accessModes"] == ["ReadWriteMany"], "every node mounts it at once"
    assert spec["storageClassName"]
    assert len(job["spec"]["rayClusterSpec"]["workerGroupSpecs"]) == len(pods) - 1


def test_rayjob_head_has_no_cpus_and_runs_mlflow_on_loopback():
    head = _rayjob()["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    containers = head["template"]["spec"]["containers"]
    assert containers[0]["name"] == "ray-head"  # KubeRay treats the first container as Ray's
    (mlflow,) = [c for c in containers if c.get("command", [])[:2] == ["mlflow", "server"]]
    cmd = mlflow["command"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5000"
    assert cmd[cmd.index("--artifacts-destination") + 1].startswith("$(SWEEPER_STORAGE)/")
    # SQLite on its own ReadWriteOnce claim, not on the shared (NFS) one
    db = Path(cmd[cmd.index("--backend-store-uri") + 1].removeprefix("sqlite:///")).parent
    pod = head["template"]["spec"]
    db_claim = _claim_at(pod, mlflow, f"/{db.relative_to('/')}")
    shared = _claim_at(pod, mlflow, _rayjob()["metadata"]["annotations"]["sweeper/storage"])
    assert db_claim and db_claim != shared
    assert _claims()[db_claim]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert not str(db).startswith(_rayjob()["metadata"]["annotations"]["sweeper/storage"])


def test_rayjob_worker_group_requests_gpus_and_scales():
    groups = _rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    gpu = [g for g in groups if any(int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1
                                    for c in g["template"]["spec"]["containers"])]
    assert gpu, "no worker group requests nvidia.com/gpu"
    for g in gpu:
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] and g["maxReplicas"] > 0
    assert _rayjob()["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] is True


def test_rayjob_image_named_once_and_token_auth_on_everywhere():
    job = _rayjob()
    text = RAYJOB.read_text()
    assert not re.search(r"RAY_AUTH_MODE\W{0,20}disabled", text, re.IGNORECASE)
    image = job["metadata"]["annotations"]["sweeper/image"]
    containers = _containers(job)
    containers["autoscaler"] = job["spec"]["rayClusterSpec"]["autoscalerOptions"]
    for name, c in containers.items():
        if name != "autoscaler":
            assert c["image"] == image, name
        env = _env(c)
        assert env["RAY_AUTH_MODE"]["value"] == "token", name
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"], name  # from a Secret, not in the file
